/**
 * The Egress port for Sink.kafka: exactly once for read_committed consumers.
 *
 * One egress slot per process: the contiguous key-group range [lo, hi) of the partitions it hosts, named
 * `eddy.<namespace>.egress.<lo>-<hi>`. Committed epochs are published in order, in a background loop: every
 * transaction takes all epochs that are complete (every hosted partition published them) up to a record budget,
 * sends their records and an EGRESS_DONE marker (egressMarkers.ts) and commits.
 *
 * Transactions overlap: the slot has `transactionsInFlight` transactional producers (ids: the slot's name, then
 * `<slot>#1`, ...) used in turn. T(n+1) begins and sends its records as soon as T(n)'s records are acknowledged (so
 * partition offsets stay in epoch order) while T(n) commits, but commits only after T(n) committed; if T(n) fails,
 * T(n+1) is aborted. One producer would wait for each commit and then for the broker to write its markers
 * (CONCURRENT_TRANSACTIONS on the next AddPartitionsToTxn) before sending again.
 * A transactional id's next transaction begins, with every partition the slot may write added, as soon as its
 * previous one committed (`prepared`), so sending an epoch's records is one Produce request.
 *
 * A transaction counts as published once its marker is read back committed from the marker topic (confirmLoop), and
 * a producer's next transaction waits for that: a broker stopped mid-commit can lose a commit it acknowledged.
 *
 * Recovery first fences every transactional id of the slot (InitProducerId: a zombie holding it is fenced and its
 * open transaction aborted), ends hanging transactions of its producers (hangingTransactions.ts), then reads the
 * markers, then republishes the committed epochs the log still holds whose records no marker covers.
 * `publishedThrough` is the last epoch durable in Kafka and read back; the log keeps later ones. Watchdogs fail the
 * egress when a transaction does not complete, or its records do not become visible (checkStalled, checkVisible).
 *
 * Every record carries the header `eddy-id: <key group>:<sequence>`. A record without a key goes to partition
 * `key group mod partitions`; with a key, to Kafka's default (murmur2) partition of the key.
 */
import { Effect } from "effect"
import "../../kafkajs/kafkajsAbortFix.ts"
import { addPartitions, transactionWithEos, type EosManager } from "../../kafkajs/kafkajsTransactions.ts"
import { Kafka, logLevel as kafkaLogLevel, Partitioners, type Admin, type Message, type Producer, type TopicMessages, type Transaction } from "kafkajs"
// Default import: Node's CommonJS export detection does not find ConfigResourceTypes in kafkajs's index.
import kafkajs from "kafkajs"
import { EGRESS_ID_HEADER, type KafkaSinkSpec } from "../../workflows/kafka.ts"
import { toJson } from "../../workflows/json.ts"
import { forEachEgress, type EgressBatch } from "../engine/EpochRecord.ts"
import { EgressError, type EgressService } from "../ports/Egress.ts"
import { decodeMarker, encodeMarker, markerAheadOfLog, MARKER_VERSION, toRepublish, type EgressMarker } from "./egressMarkers.ts"
import { createTopicsReady } from "./kafkaCreateTopics.ts"
import { isUnreachable, reasonOf } from "./kafkaErrors.ts"
import { readPartitionThrough } from "./KafkaIngress.ts"
import { hangingTransactions } from "./hangingTransactions.ts"
import { openTransactionAdmin, partitionKey, type CoordinatorTransaction, type TransactionAdmin } from "../../kafkajs/kafkajsTransactionAdmin.ts"
import { fetchTaken, openFetchClient, type FetchClient } from "../../kafkajs/kafkajsFetch.ts"
import { kafkaTrace } from "./kafkaTrace.ts"

export interface KafkaEgressOptions {
  readonly brokers: ReadonlyArray<string>
  /** Names the marker topic and the transactional ids: one namespace per log. */
  readonly namespace: string
  readonly sinks: ReadonlyMap<string, KafkaSinkSpec<unknown>>
  /** Key groups [lo, hi) of the partitions this process hosts (lo = hi: none, nothing to publish). */
  readonly lo: number
  readonly hi: number
  /** Partitions hosted here: an epoch is complete once each of them published it. */
  readonly partitions: number
  /** Records per transaction, about (default 20,000; an epoch is never split). */
  readonly maxTransactionRecords?: number
  /** Bound on connecting and setting up topics (default 10 s). */
  readonly connectTimeoutMs?: number
  /** Transactions open at once, each on its own transactional id (default 2; 1: one at a time). */
  readonly transactionsInFlight?: number
  /**
   * Tests (fault injection): called when a transaction's records are acknowledged ("sent") and right before it
   * commits ("committing"), with its epochs; a rejection fails the transaction.
   */
  readonly testHook?: (step: "sent" | "committing", epochs: ReadonlyArray<number>) => Promise<void>
  /** A transaction begun ahead and unused for this long is aborted (default 5 s; tests). */
  readonly preparedIdleMs?: number
  /**
   * Committed records not visible to read_committed readers after this long, or no transaction completed this long
   * while epochs wait (or not read back in twice as long), fail the egress (default 30 s; tests).
   */
  readonly hangAfterMs?: number
  /** How often that is checked (default 5 s; tests). */
  readonly hangCheckMs?: number
}

export const markerTopicOf = (namespace: string): string => `eddy.${namespace}.egress-done`
export const slotOf = (namespace: string, lo: number, hi: number): string => `eddy.${namespace}.egress.${lo}-${hi}`
/** The i-th transactional id of a slot (the first is the slot's name, as before transactions overlapped). */
export const transactionalIdOf = (slot: string, i: number): string => (i === 0 ? slot : `${slot}#${i}`)

const encoder = new TextEncoder()
const TRANSACTION_TIMEOUT_MS = 15_000
/** Suffix of the key of the record a slot writes when it recovers (not a marker: readers skip it). */
const RECOVERY_KEY = ".recovering"
const toBuffer = (v: Uint8Array | string): Buffer => (typeof v === "string" ? Buffer.from(v) : Buffer.from(v.buffer, v.byteOffset, v.byteLength))

/** A transaction begun ahead (see `prepared`) and unused for this long is aborted (the broker's timeout is 15 s). */
const PREPARED_IDLE_MS = 5_000

/** A committed record not visible to read_committed readers after this long means a hanging transaction. */
const HANG_AFTER_MS = 2 * TRANSACTION_TIMEOUT_MS
const HANG_CHECK_MS = 5_000
/** Bound on a recovery (fencing, reading the markers, republishing what they do not cover). */
const RECOVERY_MS = 120_000

/** Records per produce request (see transact). */
const REQUEST_RECORDS = 4000

/** Splits per-topic messages into requests of at most `max` records, keeping order within each topic. */
const chunks = (topics: ReadonlyArray<TopicMessages>, max: number): TopicMessages[][] => {
  const out: TopicMessages[][] = []
  let current: TopicMessages[] = []
  let n = 0
  for (const t of topics) {
    for (let i = 0; i < t.messages.length; ) {
      const take = Math.min(max - n, t.messages.length - i)
      current.push({ topic: t.topic, messages: t.messages.slice(i, i + take) })
      n += take
      i += take
      if (n >= max) {
        out.push(current)
        current = []
        n = 0
      }
    }
  }
  if (current.length > 0) out.push(current)
  return out
}

interface Ready {
  readonly e: number
  readonly batches: ReadonlyArray<EgressBatch>
}

export const makeKafkaEgress = (options: KafkaEgressOptions) =>
  Effect.gen(function* () {
    const { brokers, namespace, lo, hi } = options
    const at = brokers.join(",")
    const fail = (what: string, cause: unknown): EgressError =>
      cause instanceof EgressError
        ? cause
        : new EgressError({
            message: isUnreachable(cause)
              ? `Kafka egress: cannot reach Kafka at ${at} while ${what} — is it running? (npm run infra:up, or set EDDY_KAFKA_BROKERS): ${reasonOf(cause)}`
              : `Kafka egress (Kafka at ${at}): ${what} failed: ${reasonOf(cause)}`,
            cause,
          })
    const attempt = <A>(what: string, f: () => Promise<A>) => Effect.tryPromise({ try: f, catch: (cause) => fail(what, cause) })

    if (options.partitions === 0 || lo >= hi) {
      // A process hosting no partition (the coordinator) publishes nothing.
      const none: EgressService = { recover: () => Effect.void, publish: () => Effect.void, flush: Effect.void, publishedThrough: Effect.succeed(Number.MAX_SAFE_INTEGER) }
      return none
    }
    const slot = slotOf(namespace, lo, hi)
    const markerTopic = markerTopicOf(namespace)
    const kafka = new Kafka({
      clientId: `eddy-egress-${namespace}`,
      brokers: [...brokers],
      logLevel: kafkaLogLevel.NOTHING,
      connectionTimeout: 3_000,
      requestTimeout: 10_000,
      retry: { retries: 3, initialRetryTime: 100, maxRetryTime: 1_000 },
    })
    const admin: Admin = kafka.admin()
    const inFlight = Math.max(1, options.transactionsInFlight ?? kafkaTrace.transactionsInFlight ?? 2)
    const makeProducer = (i: number): Producer => kafka.producer({
      transactionalId: transactionalIdOf(slot, i),
      idempotent: true,
      maxInFlightRequests: 1,
      allowAutoTopicCreation: false,
      createPartitioner: Partitioners.DefaultPartitioner,
      // A transaction left open by a killed process holds read_committed readers back until its successor fences
      // it or this times out.
      transactionTimeout: TRANSACTION_TIMEOUT_MS,
      // CONCURRENT_TRANSACTIONS right after a commit is retried soon rather than after 300 ms.
      retry: { retries: 12, initialRetryTime: 5, maxRetryTime: 1_000 },
    })
    const producers: ReadonlyArray<Producer> = Array.from({ length: inFlight }, (_, i) => makeProducer(i))
    /** Per producer, kafkajs's transaction manager (known after its first transaction began). */
    const eos: Array<EosManager | undefined> = producers.map(() => undefined)
    const openTransaction = (i: number): Promise<Transaction> => {
      const { tx, eos: m } = transactionWithEos(producers[i]!, eos[i])
      eos[i] = m
      return tx
    }
    /**
     * Per producer, its next transaction, begun as soon as its previous one committed, with every partition it may
     * write already added (AddPartitionsToTxn, off the critical path); resolves to undefined if that failed (the
     * transaction is then begun when its records are ready, as without this). Aborted if unused for a while, so an
     * idle slot holds no open transaction (the broker would time it out and fence the producer).
     */
    const prepared: Array<{ readonly tx: Promise<Transaction | undefined>; readonly timer: ReturnType<typeof setTimeout> } | undefined> = producers.map(() => undefined)
    let closing = false
    /** DescribeTransactions, DescribeProducers, WriteTxnMarkers, last stable offsets (hanging transactions). */
    let txAdmin: TransactionAdmin | undefined
    /** The liveness checks' timer (checkStalled, checkVisible), started once everything they read exists. */
    const timers: { watchdog?: ReturnType<typeof setInterval> } = {}
    /** Takes producer i's prepared transaction, if any (undefined: none, or preparing it failed). */
    const takePrepared = async (i: number): Promise<Transaction | undefined> => {
      const p = prepared[i]
      if (p === undefined) return undefined
      prepared[i] = undefined
      clearTimeout(p.timer)
      return p.tx
    }
    yield* Effect.addFinalizer(() =>
      Effect.promise(async () => {
        closing = true
        await Promise.all(producers.map(async (_, i) => (await takePrepared(i))?.abort().catch(() => undefined)))
        clearInterval(timers.watchdog)
        confirmWake?.()
        await Promise.all([...producers.map((p) => p.disconnect().catch(() => undefined)), admin.disconnect().catch(() => undefined), txAdmin?.disconnect().catch(() => undefined)])
      }).pipe(
        Effect.interruptible,
        Effect.timeout(5_000),
        Effect.ignore,
      ),
    )
    const timeoutMs = options.connectTimeoutMs ?? 10_000
    const topicPartitions = new Map<string, number>()
    yield* attempt("connecting and creating topics", async () => {
      await Promise.all([admin.connect(), ...producers.map((p) => p.connect())])
      const sinkTopics = new Map<string, number>()
      for (const s of options.sinks.values()) sinkTopics.set(s.topic, Math.max(sinkTopics.get(s.topic) ?? 1, s.partitions))
      const ready = await createTopicsReady(admin, [
        {
          topic: markerTopic,
          numPartitions: 1,
          configEntries: [
            { name: "cleanup.policy", value: "compact" },
            { name: "min.compaction.lag.ms", value: "60000" },
          ],
        },
        ...[...sinkTopics].map(([topic, numPartitions]) => ({ topic, numPartitions })),
      ])
      for (const topic of sinkTopics.keys()) topicPartitions.set(topic, ready.partitions.get(topic)!)
      txAdmin = await openTransactionAdmin(kafka, [markerTopic, ...sinkTopics.keys()])
      const described = await admin.describeConfigs({
        includeSynonyms: false,
        resources: [{ type: kafkajs.ConfigResourceTypes.TOPIC, name: markerTopic, configNames: ["cleanup.policy"] }],
      })
      const policy = described.resources[0]?.configEntries.find((e) => e.configName === "cleanup.policy")?.configValue
      if (policy !== undefined && !policy.includes("compact") && policy !== "delete") {
        throw new EgressError({ message: `Kafka egress: marker topic ${markerTopic} has cleanup.policy=${policy}` })
      }
    }).pipe(
      Effect.timeoutFail({
        duration: timeoutMs,
        onTimeout: () => new EgressError({ message: `Kafka egress: cannot reach Kafka at ${at}: no answer within ${timeoutMs} ms — is it running? (npm run infra:up, or set EDDY_KAFKA_BROKERS)` }),
      }),
    )

    /** Kafka messages of some batches, per topic, in (epoch, key group, sequence) order. */
    const messagesOf = (epochs: ReadonlyArray<Ready>): Map<string, Message[]> => {
      const byTopic = new Map<string, Message[]>()
      for (const { e, batches } of epochs) {
        forEachEgress(batches, (sink, kg, seq, value) => {
          const spec = options.sinks.get(sink)
          if (spec === undefined) throw new EgressError({ message: `assertion: Kafka egress got records of sink '${sink}', which is not a Kafka sink` })
          let encoded: Buffer
          let key: Buffer | null
          let headers: Record<string, string>
          try {
            encoded = toBuffer(spec.encode === undefined ? toJson(value) : spec.encode(value, e))
            const k = spec.key?.(value)
            key = k === undefined || k === null ? null : toBuffer(k)
            headers = { ...(spec.headers?.(value) ?? {}), [EGRESS_ID_HEADER]: `${kg}:${seq}` }
          } catch (err) {
            throw new EgressError({ message: `Kafka sink '${sink}': encoding record ${kg}:${seq} failed: ${reasonOf(err)}`, cause: err })
          }
          const m: Message = key === null ? { value: encoded, headers, partition: kg % (topicPartitions.get(spec.topic) ?? 1) } : { key, value: encoded, headers }
          let l = byTopic.get(spec.topic)
          if (l === undefined) byTopic.set(spec.topic, (l = []))
          l.push(m)
        })
      }
      return byTopic
    }

    interface Begun {
      readonly tx: Transaction
      readonly epochs: ReadonlyArray<number>
      readonly begin: number
      readonly sent: number
      readonly firsts: ReadonlyArray<{ readonly topic: string; readonly partition: number; readonly offset: number }>
      /** The offset of its marker record in the marker topic (undefined: no offset in the produce answer). */
      readonly markerOffset: number | undefined
    }

    /**
     * Begins a transaction on producer i with the epochs' records and the marker "published (after, through], and
     * everything up to `before`" (no after/before: everything up to through), and sends them; the caller commits.
     * Undefined if the epochs have no records.
     */
    const beginAndSend = async (i: number, epochs: ReadonlyArray<Ready>, after: number | undefined, before: number): Promise<Begun | undefined> => {
      const byTopic = messagesOf(epochs)
      if (byTopic.size === 0) return undefined
      const id = transactionalIdOf(slot, i)
      const through = epochs.at(-1)!.e
      const marker: EgressMarker = after === undefined || before >= after ? { v: MARKER_VERSION, slot: id, lo, hi, through } : { v: MARKER_VERSION, slot: id, lo, hi, through, after, before }
      const topicMessages: TopicMessages[] = [...byTopic].map(([topic, messages]) => ({ topic, messages }))
      topicMessages.push({ topic: markerTopic, messages: [{ key: id, value: Buffer.from(encoder.encode(encodeMarker(marker))) }] })
      const begin = Date.now()
      /** Per partition, the offset of the transaction's first record there. */
      const firsts = new Map<string, { readonly topic: string; readonly partition: number; readonly offset: number }>()
      const tx = (await takePrepared(i)) ?? (await openTransaction(i))
      try {
        // kafkajs encodes a produce request into one growing buffer: its cost grows faster than the record count
        // (measured: 20k records per request ~9k records/s, 4k ~27k records/s), so a transaction sends several.
        for (const part of chunks(topicMessages, REQUEST_RECORDS)) {
          for (const r of await tx.sendBatch({ topicMessages: part, acks: -1 })) {
            const key = partitionKey(r.topicName, r.partition)
            if (!firsts.has(key) && r.baseOffset !== undefined) firsts.set(key, { topic: r.topicName, partition: r.partition, offset: Number(r.baseOffset) })
          }
        }
        await options.testHook?.("sent", epochs.map((x) => x.e))
      } catch (err) {
        await tx.abort().catch(() => undefined)
        throw err
      }
      return { tx, epochs: epochs.map((x) => x.e), begin, sent: Date.now(), firsts: [...firsts.values()], markerOffset: firsts.get(partitionKey(markerTopic, 0))?.offset }
    }

    const commit = async (t: Begun): Promise<void> => {
      try {
        await options.testHook?.("committing", t.epochs)
        await t.tx.commit()
      } catch (err) {
        await t.tx.abort().catch(() => undefined)
        throw err
      }
      kafkaTrace.transaction?.({ epochs: t.epochs, begin: t.begin, sent: t.sent, committed: Date.now() })
      watchVisible(t.firsts)
    }

    /**
     * Liveness: records of a committed transaction must become visible to read_committed readers (the partition's
     * last stable offset passes them). If one does not within HANG_AFTER_MS, a transaction hangs on its partition (see
     * hangingTransactions.ts; the coordinator will never end it): the egress fails, and the recovery that follows
     * ends it. Per partition, the oldest committed offset not yet seen visible, and the newest after it.
     */
    const unseen = new Map<string, { topic: string; partition: number; oldest: { offset: number; at: number }; newest?: { offset: number; at: number } }>()
    const watchVisible = (firsts: ReadonlyArray<{ readonly topic: string; readonly partition: number; readonly offset: number }>) => {
      const at = Date.now()
      for (const f of firsts) {
        const key = partitionKey(f.topic, f.partition)
        const u = unseen.get(key)
        if (u === undefined) unseen.set(key, { topic: f.topic, partition: f.partition, oldest: { offset: f.offset, at } })
        else u.newest = { offset: f.offset, at }
      }
    }
    /**
     * Liveness of the producers: while epochs wait to be published, some transaction must complete (commit, or fail
     * and fail the egress) within STALL_MS. kafkajs's transactional producer, its broker stopped in the middle of a
     * commit, was seen to wait for ever (no answer, no error, no timeout): the egress fails instead, and the recovery
     * that follows fences the stuck transaction and republishes its epochs.
     */
    let progressAt = Date.now()
    const checkStalled = () => {
      if (failure !== undefined || closing) return
      const now = Date.now()
      const bound = options.hangAfterMs ?? HANG_AFTER_MS
      // Reading a marker back may also wait for another slot's transaction on the shared marker topic (a killed
      // process's lasts until the coordinator times it out, up to ~25 s): twice the bound for that.
      if (drained()) progressAt = now
      else if (now - progressAt > (publishing() ? bound : 2 * bound)) {
        failWith(new EgressError({ message: `Kafka egress: no transaction completed (and read back) in ${now - progressAt} ms while epochs ${durable + 1}..${next - 1} wait to be published: its producer is stuck; recovery fences it and publishes them` }))
      }
    }
    const watch = () => {
      checkStalled()
      void checkVisible()
    }
    let checking = false
    const checkVisible = async () => {
      if (checking || unseen.size === 0 || failure !== undefined || txAdmin === undefined) return
      checking = true
      try {
        const byTopic = new Map<string, number[]>()
        for (const u of unseen.values()) byTopic.set(u.topic, [...(byTopic.get(u.topic) ?? []), u.partition])
        const lso = await txAdmin.lastStableOffsets([...byTopic].map(([topic, partitions]) => ({ topic, partitions })))
        const now = Date.now()
        for (const [key, u] of unseen) {
          const stable = lso.get(key)
          if (stable === undefined) continue
          if (stable > u.oldest.offset) {
            if (u.newest === undefined || stable > u.newest.offset) unseen.delete(key)
            else {
              u.oldest = u.newest
              delete u.newest
            }
          } else if (now - u.oldest.at > (options.hangAfterMs ?? HANG_AFTER_MS)) {
            failWith(new EgressError({ message: `Kafka egress: records committed at ${u.topic}/${u.partition} offset ${u.oldest.offset} are not visible to read_committed readers after ${now - u.oldest.at} ms (last stable offset ${stable}): a transaction hangs on that partition; recovery ends it` }))
          }
        }
      } catch {
        // The broker away: asked again at the next check (the transactions' own failures report an unreachable Kafka).
      } finally {
        checking = false
      }
    }

    const maxRecords = options.maxTransactionRecords ?? 20_000
    /** How many of the ready epochs (at least one) the next transaction takes. */
    const takeCount = (epochs: ReadonlyArray<{ readonly batches: ReadonlyArray<EgressBatch> }>, from: number): number => {
      let n = from
      let records = 0
      while (n < epochs.length && (n === from || records < maxRecords)) {
        for (const b of epochs[n]!.batches) records += b[3].length
        n++
      }
      return n - from
    }

    /** Every partition a transaction of this slot may write: the sink topics' and the marker's. */
    const allPartitions = (): Array<{ topic: string; partitions: number[] }> => [
      ...[...topicPartitions].map(([topic, n]) => ({ topic, partitions: Array.from({ length: n }, (_, p) => p) })),
      { topic: markerTopic, partitions: [0] },
    ]
    /** Begins producer i's next transaction ahead (see `prepared`); its previous transaction has ended. */
    const prepare = (i: number) => {
      const m = eos[i]
      if (closing || failure !== undefined || m === undefined || prepared[i] !== undefined) return
      const tx = (async () => {
        const t = await openTransaction(i)
        try {
          await addPartitions(m, allPartitions())
          return t
        } catch {
          await t.abort().catch(() => undefined)
          return undefined
        }
      })().catch(() => undefined)
      const state = {
        tx,
        timer: setTimeout(() => {
          if (prepared[i] !== state) return
          prepared[i] = undefined
          // The producer takes its next transaction after this abort.
          producerFree[i] = tx.then((t) => t?.abort()).catch(() => undefined)
        }, options.preparedIdleMs ?? PREPARED_IDLE_MS),
      }
      state.timer.unref?.()
      prepared[i] = state
    }

    /** The coordinator's state of each id; undefined if the brokers do not have DescribeTransactions (Kafka < 3.0). */
    const describeBeforeFence = async (ids: ReadonlyArray<string>): Promise<ReadonlyArray<CoordinatorTransaction> | undefined> => {
      try {
        return await txAdmin!.describeTransactions(ids)
      } catch (err) {
        if ((err as { type?: unknown }).type === "UNSUPPORTED_VERSION") return undefined
        throw err
      }
    }
    const endHanging = async (before: ReadonlyArray<CoordinatorTransaction>) => {
      const found = hangingTransactions(before, await txAdmin!.describeProducers(allPartitions()))
      for (const h of found) {
        await txAdmin!.writeMarker(h)
        // Rare (a broker fault) and worth knowing about: said on stderr, like the runtime's other warnings.
        console.error(`eddy: Kafka egress (${slot}): ended a hanging transaction of producer ${h.producerId} (epoch ${h.producerEpoch}) on ${h.topic}/${h.partition} from offset ${h.startOffset}: ${h.commit ? "COMMIT (its coordinator committed it)" : "ABORT"}`)
      }
    }

    const pending = new Map<number, { count: number; batches: EgressBatch[] }>()
    const ready: Ready[] = []
    let next = 1
    /** Every epoch up to it is durable in Kafka (its transaction committed and read back, or it had no records). */
    let durable = 0
    /** Every epoch up to it is in a transaction begun (or had no records). */
    let claimed = 0
    let failure: EgressError | undefined
    /** A transaction is being begun and sent (one at a time: partition offsets stay in epoch order). */
    let sending = false
    /** Transactions begun and not yet committed (or failed). */
    let committing = 0
    /** The previous transaction's commit: the next one commits after it. */
    let lastCommit: Promise<void> = Promise.resolve()
    /** Per producer, its last transaction's end: the producer takes the next one after it. */
    const producerFree: Array<Promise<void>> = producers.map(() => Promise.resolve())
    let turn = 0
    let waiters: Array<() => void> = []

    /** Runs the waiting checks (flush, whenDurable): each waits again if what it waits for has not come. */
    const settle = () => {
      const w = waiters
      waiters = []
      for (const f of w) f()
    }
    const failWith = (err: unknown) => {
      failure ??= fail(`publishing epochs to Kafka (transactional id ${slot})`, err)
      settle()
    }

    /**
     * Committed transactions not yet read back: a transaction counts as published (`durable`) only once its marker is
     * read back committed from the marker topic (read_committed, in order). Why: a broker stopped while a transaction
     * commits (Kafka 4.4) answered the commit and logged CompleteCommit, yet wrote no markers; the producer's next
     * transaction, aborted (idle, timed out or fenced), then closed the committed records as aborted. The producer
     * was told "committed" and nothing failed: the epochs would have been lost. Read back, a marker found aborted fails
     * the egress (its epochs are not durable, so the log keeps them and recovery republishes them); one never read
     * (hanging) fails it after HANG_AFTER_MS (checkStalled).
     */
    const unconfirmed: Array<{ readonly through: number; readonly markerOffset: number | undefined }> = []
    let confirmWake: (() => void) | undefined
    /** Epochs on their way to Kafka: waiting for a transaction, being sent, or being committed. */
    const publishing = () => sending || committing > 0 || ready.length > 0
    /** Nothing on its way and every commit read back: every epoch handed over is durable. */
    const drained = () => !publishing() && unconfirmed.length === 0
    /** Resolves once every epoch up to `through` is durable (read back); rejects if the egress fails first. */
    const whenDurable = (through: number): Promise<void> =>
      new Promise<void>((resolve, reject) => {
        const check = () => {
          if (failure !== undefined) reject(failure)
          else if (durable >= through) resolve()
          else waiters.push(check)
        }
        check()
      })
    const toConfirm = (through: number, markerOffset: number | undefined) => {
      if (markerOffset === undefined && unconfirmed.length === 0) {
        durable = through
        settle()
      } else unconfirmed.push({ through, markerOffset })
      confirmWake?.()
    }
    const confirmLoop = async () => {
      let fetcher: FetchClient | undefined
      let delay = 50
      while (!closing && failure === undefined) {
        // Transactions with no records (no marker) are durable once those before them are.
        while (unconfirmed.length > 0 && unconfirmed[0]!.markerOffset === undefined) durable = unconfirmed.shift()!.through
        settle()
        if (unconfirmed.length === 0) {
          await new Promise<void>((resolve) => (confirmWake = resolve))
          confirmWake = undefined
          continue
        }
        const from = unconfirmed[0]!.markerOffset!
        try {
          fetcher ??= await openFetchClient(kafka, [markerTopic])
          const taken = (await fetchTaken(fetcher, markerTopic, new Map([[0, from]]), 200, 1 << 20)).get(0)
          if (taken !== undefined) {
            const committed = new Set(taken.messages.map((m) => Number(m.offset)))
            while (unconfirmed.length > 0) {
              const head = unconfirmed[0]!
              if (head.markerOffset !== undefined) {
                if (head.markerOffset >= taken.next) break
                if (!committed.has(head.markerOffset)) {
                  failWith(new EgressError({ message: `Kafka egress: the transaction that published epochs through ${head.through} was committed (Kafka said so), but its marker at ${markerTopic} offset ${head.markerOffset} reads back aborted: the broker lost its commit; recovery republishes them` }))
                  return
                }
              }
              durable = head.through
              progressAt = Date.now()
              unconfirmed.shift()
            }
            settle()
          }
          delay = 50
        } catch {
          // The broker away: asked again (checkStalled fails the egress if it stays away).
          await new Promise((r) => setTimeout(r, delay))
          delay = Math.min(delay * 2, 1_000)
          await fetcher?.disconnect().catch(() => undefined)
          fetcher = undefined
        }
      }
      await fetcher?.disconnect().catch(() => undefined)
    }

    /** Chains a commit after the previous one; the epochs are durable once it is done. */
    const chain = (t: Begun | undefined, through: number): Promise<void> => {
      const previous = lastCommit
      committing++
      const done = (async () => {
        try {
          await previous
        } catch (err) {
          // T(n) failed: T(n+1) must not commit, or readers would see later epochs without T(n)'s (recovery would
          // republish them after, out of order).
          await t?.tx.abort().catch(() => undefined)
          throw err
        }
        if (t !== undefined) await commit(t)
        toConfirm(through, t?.markerOffset)
      })()
      lastCommit = done
      void done.then(
        () => {
          committing--
          progressAt = Date.now()
          settle()
        },
        (err: unknown) => {
          committing--
          failWith(err)
        },
      )
      return done
    }

    const pump = async () => {
      if (sending || failure !== undefined) return
      sending = true
      try {
        while (ready.length > 0 && failure === undefined) {
          if (ready.every((r) => r.batches.length === 0)) {
            // Nothing to send: these epochs are durable once the transactions before them are.
            const through = ready.splice(0).at(-1)!.e
            claimed = through
            void chain(undefined, through).catch(() => undefined)
            continue
          }
          const i = turn
          turn = (turn + 1) % producers.length
          // The producer's previous transaction must have ended (committed, unless something failed); epochs that
          // completed meanwhile join this transaction.
          await producerFree[i]!.catch(() => undefined)
          if (failure !== undefined) break
          const take = ready.splice(0, takeCount(ready, 0))
          const through = take.at(-1)!.e
          const t = await beginAndSend(i, take, claimed, durable)
          claimed = through
          const done = chain(t, through)
          // The producer's next transaction begins once this one is read back: its marker's `before` (the durable
          // epochs) then includes this one's, and the newest markers of the two ids cover every epoch (egressMarkers.ts).
          producerFree[i] = done.then(() => whenDurable(through)).catch(() => undefined)
          // Registered before the loop waits on it: the next transaction of this producer takes what this prepares.
          done.then(() => prepare(i), () => undefined)
        }
      } catch (err) {
        failWith(err)
      } finally {
        sending = false
        settle()
      }
    }

    void confirmLoop()
    timers.watchdog = setInterval(watch, options.hangCheckMs ?? HANG_CHECK_MS)
    timers.watchdog.unref?.()

    const service: EgressService = {
      recover: (committed, lastEpoch) =>
        attempt(`recovering (transactional id ${slot})`, async () => {
          // Nothing is begun ahead before recovery; should it be (a second recovery), it ends first.
          await Promise.all(producers.map(async (_, i) => (await takePrepared(i))?.abort().catch(() => undefined)))
          // What the coordinator holds for each id (read before the fence below bumps their epochs): the verdicts of
          // transactions that may hang (hangingTransactions.ts).
          const ids = producers.map((_, i) => transactionalIdOf(slot, i))
          const before = await describeBeforeFence(ids)
          // InitProducerId on every transactional id of the slot (the later ones first): fences a zombie holding
          // it and aborts its open transaction, so nothing the zombie has not committed yet can commit after this.
          for (let i = producers.length - 1; i >= 0; i--) {
            const t = await openTransaction(i)
            await t.abort()
          }
          // A transaction of these producers still open now hangs: ended as its coordinator decided, before this
          // slot writes anything (the recovery record below would be read past it, and readers stop at it).
          if (before !== undefined) await endHanging(before)
          // The first id's transaction writes a recovery record to the marker topic; every marker committed before
          // it is below its offset, so reading through it sees them all, even while another slot's open
          // transaction holds the topic's last stable offset back (markers of all slots share the topic).
          const fence = await openTransaction(0)
          let at: number
          try {
            const meta = await fence.send({ topic: markerTopic, acks: -1, messages: [{ key: slot + RECOVERY_KEY, value: String(Date.now()), partition: 0 }] })
            at = Number(meta[0]?.baseOffset)
            await fence.commit()
          } catch (err) {
            await fence.abort().catch(() => undefined)
            throw err
          }
          if (!Number.isSafeInteger(at)) throw new EgressError({ message: `Kafka egress: no offset for the recovery record in ${markerTopic}` })
          const records = await readPartitionThrough(kafka, { brokers }, markerTopic, 0, 1, at, TRANSACTION_TIMEOUT_MS * 2)
          const markers: EgressMarker[] = []
          for (const r of records) {
            if (r.value === null || (r.key !== null && Buffer.from(r.key).toString("utf8").endsWith(RECOVERY_KEY))) continue
            const m = decodeMarker(Buffer.from(r.value).toString("utf8"))
            if (typeof m === "string") throw new EgressError({ message: `Kafka egress: ${markerTopic} offset ${r.offset}: ${m}` })
            markers.push(m)
          }
          const last = Math.max(lastEpoch ?? 0, committed.at(-1)?.e ?? 0)
          const ahead = markerAheadOfLog(markers, last, lo, hi)
          if (ahead !== undefined) {
            throw new EgressError({
              message: `Kafka egress: marker topic ${markerTopic} says epochs through ${ahead.through} were published, but the log has committed only through ${last}: namespace '${namespace}' belongs to another log (give this run its own namespace, or delete the topic)`,
            })
          }
          // One transaction at a time: after each, everything up to its last epoch is published (markers or
          // republished), so its marker claims every epoch up to there.
          const again = toRepublish(committed, markers).map((c) => ({ e: c.e, batches: c.egress }))
          // Durable: what the markers read cover; what is republished once read back (confirmLoop).
          durable = again.length > 0 ? again[0]!.e - 1 : last
          for (let i = 0; i < again.length; ) {
            const n = takeCount(again, i)
            const t = await beginAndSend(0, again.slice(i, i + n), undefined, durable)
            if (t !== undefined) await commit(t)
            // Read back before the next: its marker claims every epoch up to its own last.
            toConfirm(again[i + n - 1]!.e, t?.markerOffset)
            await whenDurable(again[i + n - 1]!.e)
            i += n
          }
          toConfirm(last, undefined)
          claimed = last
          next = last + 1
        }).pipe(
          // A Kafka client that waits for ever (see checkStalled) must not hold the app's start for ever.
          Effect.timeoutFail({
            duration: RECOVERY_MS,
            onTimeout: () => new EgressError({ message: `Kafka egress: recovery (transactional id ${slot}) did not complete within ${RECOVERY_MS} ms` }),
          }),
        ),
      publish: (e, _partition, egress) =>
        Effect.suspend(() => {
          if (failure !== undefined) return Effect.fail(failure)
          let p = pending.get(e)
          if (p === undefined) pending.set(e, (p = { count: 0, batches: [] }))
          p.count++
          for (const b of egress) p.batches.push(b)
          for (let r = pending.get(next); r !== undefined && r.count === options.partitions; r = pending.get(next)) {
            pending.delete(next)
            kafkaTrace.ready?.(next, Date.now())
            // Batches arrive per partition in ascending key group; partitions own ascending ranges, but may publish
            // in any order: sort so a transaction's records are in (key group, sequence) order.
            if (r.batches.length > 0) ready.push({ e: next, batches: r.batches.sort((a, b) => a[1] - b[1] || a[2] - b[2]) })
            else if (drained()) durable = claimed = next
            else ready.push({ e: next, batches: [] })
            next++
          }
          void pump()
          return Effect.void
        }),
      flush: Effect.async<void, EgressError>((resume) => {
        const check = () => {
          if (failure !== undefined) resume(Effect.fail(failure))
          else if (drained()) resume(Effect.void)
          else waiters.push(check)
        }
        check()
      }),
      publishedThrough: Effect.sync(() => durable),
    }
    return service
  })

export const KafkaEgress = { make: makeKafkaEgress } as const

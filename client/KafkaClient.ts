// The kafkajs patches first: kafkajs's own read_committed filter lets records of some aborted transactions through.
import "../kafkajs/kafkajsAbortFix.ts"
import { Kafka, logLevel, type Admin, type Consumer, type Producer } from "kafkajs"
import { randomUUID } from "node:crypto"
import { targetString, type Answer, type EddyClient, type RequestOptions, type StateOptions, type Target } from "./Client.ts"
import { BadRequest, clientError, InvalidPayload, Timeout, Unavailable, type ClientError } from "./errors.ts"

export interface KafkaClientOptions {
  /** The app's requests topic (`kafka.requests` of its actor system). */
  readonly requests: string
  /** The topic it answers on (`kafka.replies`). */
  readonly replies: string
  /** Bootstrap brokers, `host:port`. Default: EDDY_KAFKA_BROKERS (comma-separated), else 127.0.0.1:21092. */
  readonly brokers?: ReadonlyArray<string>
  /** Default per-call timeout (30 s). */
  readonly timeoutMs?: number
  /**
   * Where `state` and `list` go (Client.http or Client.nats of the same app): Kafka carries asks and tells only.
   * Closed with this client.
   */
  readonly queries?: EddyClient
}

/** An answer record on the replies topic (ActorSystem's KafkaAnswer, as JSON). */
interface AnswerRecord {
  readonly key?: unknown
  readonly reply?: unknown
  readonly error?: { readonly tag: string; readonly message: string }
  readonly epoch?: unknown
}

interface Pending {
  readonly resolve: (a: Answer<unknown>) => void
  readonly reject: (e: ClientError) => void
  readonly timer: ReturnType<typeof setTimeout>
}

interface Queued {
  /** What its answer comes under: the call's idempotency key, or its correlation id. */
  readonly key: string
  readonly record: { readonly key: string; readonly value: string }
  readonly deadline: number
  /** Has an idempotency key: may be produced again after a failed Produce (it runs once all the same). */
  readonly keyed: boolean
}

/** Records per Produce request: kafkajs's encoding slows down superlinearly past a few thousand. */
const PRODUCE_CHUNK = 2_000

const reasonOf = (err: unknown): string => (err instanceof Error ? err.message : String(err))

const defaultBrokers = (): ReadonlyArray<string> =>
  (process.env["EDDY_KAFKA_BROKERS"] ?? "127.0.0.1:21092")
    .split(",")
    .map((b) => b.trim())
    .filter((b) => b !== "")

/**
 * The client API through an app's Kafka topics, for high-volume producers: a call is a record on the requests topic
 * (Kafka key: its target, so one target's requests stay in order), its answer the record under its key on the
 * replies topic, read with read_committed. The calls of one tick go as one Produce request, by an idempotent
 * producer (its own retries write a record once). Once the broker has a record, the app reads it exactly once, so a
 * call is never sent again after that. A call without an idempotency key is its record: it carries a correlation id
 * (`ref`) its answer comes under, and the app keeps nothing for it after its epoch. A call with a key may be produced
 * again after a failed Produce, until its timeout: a key runs once.
 *
 * Every client reads the whole replies topic (from where it stood at connect) and keeps the answers to its own
 * calls: give each group of clients with much traffic a replies topic of its own (an actor system per topic pair).
 */
export const kafkaClient = async (options: KafkaClientOptions): Promise<EddyClient> => {
  const brokers = options.brokers ?? defaultBrokers()
  const at = brokers.join(",")
  const defaultTimeout = options.timeoutMs ?? 30_000
  const kafka = new Kafka({ clientId: "eddy-client", brokers: [...brokers], logLevel: logLevel.NOTHING, connectionTimeout: 3_000, retry: { retries: 2 } })
  const admin: Admin = kafka.admin()
  // Retries without end (each at most a second apart), as an idempotent producer should: a record is written once,
  // and the calls waiting on it time out on their own.
  const producer: Producer = kafka.producer({ allowAutoTopicCreation: false, idempotent: true, retry: { retries: Number.MAX_SAFE_INTEGER, initialRetryTime: 100, maxRetryTime: 1_000 } })
  const consumer: Consumer = kafka.consumer({ groupId: `eddy-client-${randomUUID()}`, readUncommitted: false, maxWaitTimeInMs: 50, retry: { retries: 5 } })
  const pending = new Map<string, Pending>()
  // Correlation ids: this client's prefix and a counter.
  const prefix = randomUUID()
  let refs = 0
  let queued: Queued[] = []
  let flushing = false
  let closed: string | undefined

  const unavailable = (err: unknown) => new Unavailable(`cannot reach Kafka at ${at} (set EDDY_KAFKA_BROKERS): ${reasonOf(err)}`)
  try {
    await admin.connect()
    // Where the replies topic stands now: every answer to a call made from here on lies beyond it.
    const start = await admin.fetchTopicOffsets(options.replies).catch((err: unknown) => {
      throw new Unavailable(`replies topic ${options.replies} on ${at}: ${reasonOf(err)} (it exists once an app with kafka.replies = '${options.replies}' has started)`)
    })
    await admin.fetchTopicOffsets(options.requests).catch((err: unknown) => {
      throw new Unavailable(`requests topic ${options.requests} on ${at}: ${reasonOf(err)} (create it, with the partitions the app's kafka.partitions says)`)
    })
    await producer.connect()
    await consumer.connect()
    await consumer.subscribe({ topic: options.replies, fromBeginning: false })
    // The group commits no offsets: after a rejoin (the consumer restarts itself when the broker was away) it would
    // start at the topic's end, past answers it has not read. So every join goes on from where this client stands.
    const position = new Map(start.map((p) => [p.partition, p.offset]))
    const joined = new Promise<void>((resolve) =>
      consumer.on(consumer.events.GROUP_JOIN, () => {
        for (const [partition, offset] of position) consumer.seek({ topic: options.replies, partition, offset })
        resolve()
      }),
    )
    await consumer.run({
      autoCommit: false,
      eachBatch: async ({ batch }) => {
        for (const m of batch.messages) if (m.value !== null) answered(m.value.toString("utf8"))
        position.set(batch.partition, String(Number(batch.lastOffset()) + 1))
      },
    })
    await joined
  } catch (err) {
    await Promise.all([admin.disconnect(), producer.disconnect(), consumer.disconnect()]).catch(() => undefined)
    throw err instanceof Unavailable ? err : unavailable(err)
  } finally {
    await admin.disconnect().catch(() => undefined)
  }

  function answered(text: string): void {
    let a: AnswerRecord
    try {
      a = JSON.parse(text) as AnswerRecord
    } catch {
      return // not an answer of Eddy's: someone else writes to the topic
    }
    const p = typeof a.key === "string" ? pending.get(a.key) : undefined
    // Not ours, or answered already (a duplicate read again by the app is answered again, with the same answer).
    if (p === undefined) return
    pending.delete(a.key as string)
    clearTimeout(p.timer)
    if (a.error !== undefined) p.reject(clientError(a.error.tag, a.error.message))
    else p.resolve({ reply: a.reply, epoch: typeof a.epoch === "number" ? a.epoch : 0 })
  }

  const fail = (key: string, e: ClientError) => {
    const p = pending.get(key)
    if (p === undefined) return
    pending.delete(key)
    clearTimeout(p.timer)
    p.reject(e)
  }

  /** Sends what the callers queued, one Produce per chunk; a chunk that fails goes again until its calls time out. */
  const flush = async (): Promise<void> => {
    flushing = true
    let delay = 50
    try {
      while (queued.length > 0 && closed === undefined) {
        const batch = queued.filter((q) => pending.has(q.key))
        queued = []
        const failed: Queued[] = []
        const sends: Array<Promise<void>> = []
        for (let i = 0; i < batch.length; i += PRODUCE_CHUNK) {
          const chunk = batch.slice(i, i + PRODUCE_CHUNK)
          sends.push(
            producer.send({ topic: options.requests, acks: -1, messages: chunk.map((q) => q.record) }).then(
              () => undefined,
              (err: unknown) => {
                // Not written (a non-retriable failure): the call's answer. Maybe written (the producer gave up
                // retrying): a keyed call is produced again (it runs once all the same); a call without a key waits
                // for the answer its record gets, if it got in, until its timeout.
                const definite = (err as { retriable?: unknown }).retriable === false
                for (const q of chunk) {
                  if (definite) fail(q.key, new Unavailable(`producing to ${options.requests} on ${at}: ${reasonOf(err)}`))
                  else if (q.keyed) failed.push(q)
                }
              },
            ),
          )
        }
        await Promise.all(sends)
        if (failed.length > 0) {
          await new Promise((r) => setTimeout(r, delay))
          delay = Math.min(delay * 2, 1_000)
          queued = [...failed.filter((q) => q.deadline > Date.now()), ...queued]
        } else delay = 50
      }
    } finally {
      flushing = false
    }
  }

  const call = (target: Target, message: unknown, o: RequestOptions, tell: boolean): Promise<Answer<unknown>> => {
    if (closed !== undefined) return Promise.reject(new Unavailable(closed))
    const to = targetString(target)
    const slash = to.indexOf("/")
    if (slash <= 0 || slash === to.length - 1) return Promise.reject(new InvalidPayload(`target '${to}' is not of the form type/id`))
    const keyed = o.idempotencyKey !== undefined
    const key = o.idempotencyKey ?? `${prefix}:${++refs}`
    if (pending.has(key)) return Promise.reject(new BadRequest(`a call with idempotency key '${key}' is already waiting for its answer on this client`))
    let value: string
    try {
      value = JSON.stringify({ target: to, message, ...(keyed ? { key } : { ref: key }), ...(tell ? { tell: true } : {}) })
    } catch (err) {
      return Promise.reject(new InvalidPayload(`message to ${to} is not JSON: ${reasonOf(err)}`))
    }
    const timeoutMs = o.timeoutMs ?? defaultTimeout
    return new Promise<Answer<unknown>>((resolve, reject) => {
      const timer = setTimeout(
        () => fail(key, new Timeout(`no answer on ${options.replies} within ${timeoutMs} ms (is the app reading ${options.requests}?); the request may still run once: retry with the same idempotency key`)),
        timeoutMs,
      )
      pending.set(key, { resolve, reject, timer })
      queued.push({ key, record: { key: to, value }, deadline: Date.now() + timeoutMs, keyed })
      if (!flushing && queued.length === 1) setImmediate(() => void flush())
    })
  }

  const noQueries = (what: string) =>
    new BadRequest(`${what} does not go through Kafka: give Client.kafka a 'queries' client of the same app (Client.http or Client.nats)`)

  return {
    ask: async <R>(target: Target, message: unknown, o: RequestOptions = {}): Promise<Answer<R>> => (await call(target, message, o, false)) as Answer<R>,
    tell: async (target, message, o = {}) => ({ epoch: (await call(target, message, o, true)).epoch }),
    state: <S>(target: Target, o?: StateOptions): Promise<S | undefined> => (options.queries === undefined ? Promise.reject(noQueries("a state read")) : options.queries.state<S>(target, o)),
    list: (type) => (options.queries === undefined ? Promise.reject(noQueries("a listing")) : options.queries.list(type)),
    close: async () => {
      if (closed !== undefined) return
      closed = "this Kafka client is closed"
      for (const key of [...pending.keys()]) fail(key, new Unavailable(closed))
      await Promise.all([producer.disconnect(), consumer.disconnect(), options.queries?.close()]).catch(() => undefined)
    },
  }
}

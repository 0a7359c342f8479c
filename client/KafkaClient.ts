// The kafkajs patches first: kafkajs's own read_committed filter lets records of some aborted transactions through.
import "../kafkajs/kafkajsAbortFix.ts"
import { Kafka, logLevel, type Admin, type Consumer, type Producer } from "kafkajs"
import { randomUUID } from "node:crypto"
import type { Answer, EddyClient, RequestOptions, StateOptions, Target } from "./Client.ts"
import { callOf, ClientSession, type Call } from "./batching.ts"
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
  readonly key: string
  readonly record: { readonly key: string; readonly value: string }
  readonly deadline: number
}

/** Records per Produce request: kafkajs's encoding slows down superlinearly past a few thousand. */
const PRODUCE_CHUNK = 2_000

const reasonOf = (err: unknown): string => (err instanceof Error ? err.message : String(err))

const defaultBrokers = (): ReadonlyArray<string> =>
  (process.env["EDDY_KAFKA_BROKERS"] ?? "127.0.0.1:21092")
    .split(",")
    .map((b) => b.trim())
    .filter((b) => b !== "")

/** The request record's value: what the actor system's Kafka decoder reads (docs/client.md). */
const requestValue = (c: Call): string => {
  try {
    return JSON.stringify(
      c.key !== undefined
        ? { target: c.target, message: c.message, key: c.key, ...(c.tell === true ? { tell: true } : {}) }
        : { target: c.target, message: c.message, session: c.session, seq: c.seq, ack: c.ack, timeoutMs: c.timeoutMs, ...(c.tell === true ? { tell: true } : {}) },
    )
  } catch (err) {
    throw new InvalidPayload(`message to ${c.target} is not JSON: ${reasonOf(err)}`)
  }
}

/**
 * The client API through an app's Kafka topics, for high-volume producers: a call is a record on the requests topic
 * (Kafka key: its target, so one target's requests stay in order), its answer the record under its key on the
 * replies topic, read with read_committed. The calls of one tick go as one Produce request. A Produce that fails is
 * sent again with the same keys until the call's timeout; once the broker has the record, the app reads it exactly
 * once, so nothing is sent again after that. Calls without an idempotency key are numbered in the client's session,
 * as over HTTP and NATS, so the app keeps no entry per call.
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
  const producer: Producer = kafka.producer({ allowAutoTopicCreation: false })
  const consumer: Consumer = kafka.consumer({ groupId: `eddy-client-${randomUUID()}`, readUncommitted: false, maxWaitTimeInMs: 50, retry: { retries: 5 } })
  const pending = new Map<string, Pending>()
  const session = new ClientSession()
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
    const joined = new Promise<void>((resolve) => consumer.on(consumer.events.GROUP_JOIN, () => resolve()))
    await consumer.run({
      autoCommit: false,
      eachBatch: async ({ batch }) => {
        for (const m of batch.messages) if (m.value !== null) answered(m.value.toString("utf8"))
      },
    })
    await joined
    for (const p of start) consumer.seek({ topic: options.replies, partition: p.partition, offset: p.offset })
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
                // A retriable failure (broker restarting, leader moving) is worth another Produce with the same keys:
                // a request that did get in runs once all the same. Anything else is this call's answer.
                if ((err as { retriable?: unknown }).retriable === false) for (const q of chunk) fail(q.key, new Unavailable(`producing to ${options.requests} on ${at}: ${reasonOf(err)}`))
                else failed.push(...chunk)
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

  const send = (c: Call): Promise<Answer<unknown>> => {
    if (closed !== undefined) return Promise.reject(new Unavailable(closed))
    const slash = c.target.indexOf("/")
    if (slash <= 0 || slash === c.target.length - 1) return Promise.reject(new InvalidPayload(`target '${c.target}' is not of the form type/id`))
    let value: string
    try {
      value = requestValue(c)
    } catch (err) {
      return Promise.reject(err)
    }
    const key = c.key ?? `${c.session}:${c.seq}`
    if (pending.has(key)) return Promise.reject(new BadRequest(`a call with idempotency key '${key}' is already waiting for its answer on this client`))
    return new Promise<Answer<unknown>>((resolve, reject) => {
      const timer = setTimeout(
        () => fail(key, new Timeout(`no answer on ${options.replies} within ${c.timeoutMs} ms (is the app reading ${options.requests}?); the request may still run once: retry with the same idempotency key`)),
        c.timeoutMs,
      )
      pending.set(key, { resolve, reject, timer })
      queued.push({ key, record: { key: c.target, value }, deadline: Date.now() + c.timeoutMs })
      if (!flushing && queued.length === 1) setImmediate(() => void flush())
    })
  }

  const call = (target: Target, message: unknown, o: RequestOptions, tell: boolean): Promise<Answer<unknown>> => {
    const c = callOf(target, message, o, defaultTimeout, tell, session)
    return session.settled(c.seq, send(c))
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

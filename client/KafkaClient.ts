// The kafkajs patches first: kafkajs's own read_committed filter lets records of some aborted transactions through.
import "../kafkajs/kafkajsAbortFix.ts"
import { Kafka, logLevel, type Admin, type Producer } from "kafkajs"
import { fetchTaken, openFetchClient, type FetchClient } from "../kafkajs/kafkajsFetch.ts"
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
 * call is never sent again. A call without an idempotency key is its record: it carries a correlation id (`ref`) its
 * answer comes under, and the app keeps nothing for it after its epoch.
 *
 * Every client reads the whole replies topic (from where it stood at connect) and keeps the answers to its own
 * calls: give each group of clients with much traffic a replies topic of its own (an actor system per topic pair).
 */
export const kafkaClient = async (options: KafkaClientOptions): Promise<EddyClient> => {
  const brokers = options.brokers ?? defaultBrokers()
  const at = brokers.join(",")
  const defaultTimeout = options.timeoutMs ?? 30_000
  // Start-up fails fast (the admin client: Unavailable when Kafka is not there). Then the producer retries without
  // end, at most a second apart, while the broker is away: an idempotent producer's retries write a record once, and
  // the calls waiting on it time out on their own. (Its cluster connection has its own retries: with few, a send fails
  // while the broker restarts, and a call without a key cannot be sent again.)
  const config = { clientId: "eddy-client", brokers: [...brokers], logLevel: logLevel.NOTHING, connectionTimeout: 3_000 }
  const quick = new Kafka({ ...config, retry: { retries: 2 } })
  const admin: Admin = quick.admin()
  const producer: Producer = new Kafka({ ...config, retry: { retries: Number.MAX_SAFE_INTEGER, initialRetryTime: 100, maxRetryTime: 1_000 } }).producer({
    allowAutoTopicCreation: false,
    idempotent: true,
  })
  // Answers are read by Fetch requests from this client's own positions, not by a consumer group: a group commits
  // offsets it would not need, and kafkajs's consumer, restarting while the broker came back, could stay unjoined.
  let fetcher: FetchClient | undefined
  const position = new Map<number, number>()
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
    for (const p of start) position.set(p.partition, Number(p.offset))
    await producer.connect()
    fetcher = await openFetchClient(quick, [options.replies])
  } catch (err) {
    await Promise.all([admin.disconnect(), producer.disconnect(), fetcher?.disconnect()]).catch(() => undefined)
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
    // Not ours, or answered already (a duplicate read again by the app is answered again, with the same answer).
    const p = typeof a.key === "string" ? take(a.key) : undefined
    if (p === undefined) return
    if (a.error !== undefined) p.reject(clientError(a.error.tag, a.error.message))
    else p.resolve({ reply: a.reply, epoch: typeof a.epoch === "number" ? a.epoch : 0 })
  }

  /** The call waiting under `key`, no longer waiting (its timer stopped); undefined if none. */
  function take(key: string): Pending | undefined {
    const p = pending.get(key)
    if (p === undefined) return undefined
    pending.delete(key)
    clearTimeout(p.timer)
    return p
  }

  const fail = (key: string, e: ClientError) => take(key)?.reject(e)

  /**
   * Reads the replies topic from this client's positions, read_committed, until closed: one Fetch per partition
   * leader at a time (a long poll: it returns as soon as there are records). A failed Fetch (the broker away, a
   * leader moved) is retried on fresh connections with fresh metadata, at most a second apart.
   */
  const read = async (): Promise<void> => {
    let delay = 50
    while (closed === undefined) {
      try {
        fetcher ??= await openFetchClient(quick, [options.replies])
        for (const [partition, taken] of await fetchTaken(fetcher, options.replies, position, 100, 4 << 20)) {
          for (const m of taken.messages) if (m.value !== null) answered(m.value.toString("utf8"))
          position.set(partition, taken.next)
        }
        delay = 50
      } catch {
        if (closed !== undefined) return
        await new Promise((r) => setTimeout(r, delay))
        delay = Math.min(delay * 2, 1_000)
        // Fresh connections and metadata: kafkajs's pool, asked again while a broker is away, can keep dead sockets.
        await fetcher?.disconnect().catch(() => undefined)
        fetcher = undefined
      }
    }
  }
  const reading = read()

  /**
   * Sends what the callers queued, one Produce per chunk. The producer retries without end while the broker is away
   * (its retries write a record once), so a send that fails failed for good (a record too large, no access, the
   * broker lost the producer's state): the calls hear why; whatever got written runs once all the same.
   */
  const flush = async (): Promise<void> => {
    flushing = true
    try {
      while (queued.length > 0 && closed === undefined) {
        const batch = queued.filter((q) => pending.has(q.key))
        queued = []
        const sends: Array<Promise<void>> = []
        for (let i = 0; i < batch.length; i += PRODUCE_CHUNK) {
          const chunk = batch.slice(i, i + PRODUCE_CHUNK)
          sends.push(
            producer.send({ topic: options.requests, acks: -1, messages: chunk.map((q) => q.record) }).then(
              () => undefined,
              (err: unknown) => {
                const e = new Unavailable(`producing to ${options.requests} on ${at} failed: ${reasonOf(err)}; a request that was written runs once (ask again with the same idempotency key to learn its outcome)`)
                for (const q of chunk) fail(q.key, e)
              },
            ),
          )
        }
        await Promise.all(sends)
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
      queued.push({ key, record: { key: to, value } })
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
      await reading
      await Promise.all([producer.disconnect(), fetcher?.disconnect(), options.queries?.close()]).catch(() => undefined)
    },
  }
}

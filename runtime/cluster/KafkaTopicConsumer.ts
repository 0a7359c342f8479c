/**
 * One fetch loop for the splits of one topic that a process opens together. The ingress keeps its positions in the
 * epoch records, so it assigns partitions itself and uses no consumer group (nothing to join, heartbeat, rebalance
 * or delete; kafkajs's consumer needs one, so kafkajsFetch.ts sends its Fetch requests without it).
 *
 * Why one loop for several splits: a loop per split meant one Fetch request per split per round; at ~80 k records/s
 * over 4 partitions that was ~1000 requests/s, each a socket write and a response to decode on the engine's thread.
 * One loop asks for all its partitions (led by one broker) in one request.
 *
 * Why the next Fetch goes out before the records are handed on: the broker then holds a request when records
 * arrive and answers at once, instead of the records waiting for the engine's thread to finish an epoch and ask.
 * kafkajs's consumer asked only after its batches were processed (at 24 k records/s, 43 fetches a second, each
 * record fetched ~16 ms after the broker appended it).
 *
 * Splits join through a ConsumerPool: those whose start is asked for within the same turn of the event loop (the
 * engine prepares all its splits in one loop) share a loop; a split opened later gets its own.
 */
import "../../kafkajs/kafkajsAbortFix.ts"
import type { Admin, Kafka } from "kafkajs"
import type { KafkaRecord } from "../../workflows/kafka.ts"
import { openFetchClient, takeRecords, type FetchClient, type FetchedMessage, type FetchedPartition } from "../../kafkajs/kafkajsFetch.ts"
import { isUnreachable, reasonOf } from "./kafkaReasons.ts"

export class KafkaIngressError extends Error {
  override readonly name = "KafkaIngressError"
}

export interface KafkaIngressOptions {
  readonly brokers: ReadonlyArray<string>
  readonly clientId?: string
  /** Records buffered per split before its consumer pauses (default 50,000). */
  readonly maxBuffered?: number
  /**
   * Bound on waiting for records known to exist, and on retrying a broker that cannot be reached (default 60 s): a
   * split that stalls this long fails the process.
   */
  readonly stallMs?: number
}

/** What a split's feed reports: fetched records, progress over control records, failure. */
export interface FeedEvents {
  /** Records fetched, in offset order (none below an offset reported before); `at`: when (Date.now()). */
  records(records: ReadonlyArray<KafkaRecord>, at: number): void
  /** Every offset below this has been fetched (a batch of control records reaches no `records`). */
  fetchedTo(offset: number): void
  failed(error: Error): void
}

export interface FeedSpec {
  readonly topic: string
  readonly partition: number
  readonly partitions: number
  readonly bounded: boolean
  readonly splitId: string
}

/** Where a split starts: the last stable offset found (its end) and its position (moved up past deleted records). */
export interface FeedStart {
  readonly end: number
  readonly position: number
}

/** Shared by every record without headers (most): one object less per record for the collector. */
const NO_HEADERS: Readonly<Record<string, string>> = Object.freeze({})

const headersOf = (m: FetchedMessage): Readonly<Record<string, string>> => {
  let out: Record<string, string> | undefined
  if (m.headers === undefined) return NO_HEADERS
  for (const k in m.headers) {
    const v = m.headers[k]
    if (v === undefined) continue
    const one = Array.isArray(v) ? v[v.length - 1] : v
    if (one !== undefined) (out ??= {})[k] = typeof one === "string" ? one : one.toString("utf8")
  }
  return out ?? NO_HEADERS
}

/** A split's membership of a topic consumer. */
export interface Member {
  readonly spec: FeedSpec
  readonly started: Promise<FeedStart>
  pause(): void
  resume(): void
  /** Stops this split's records; the consumer ends with its last member. */
  leave(): Promise<void>
}

interface Joining {
  readonly spec: FeedSpec
  readonly from: number
  readonly events: FeedEvents
  readonly resolve: (start: FeedStart) => void
  readonly reject: (error: Error) => void
  /** The consumer the split joined, set when the turn's joins are grouped (before `started` can settle). */
  consumer: TopicConsumer | undefined
}

interface Slot {
  readonly joining: Joining
  /** Every offset below this has been fetched (records passed on, control records and aborted ones skipped). */
  fetched: number
  /** Consumed (not a bounded split that was already at its end). */
  active: boolean
  paused: boolean
  left: boolean
}

const MAX_WAIT_MS = 100
const MAX_BYTES_PER_PARTITION = 1_048_576

interface Asked {
  readonly partition: number
  readonly fetchOffset: number
}

/** A Fetch in flight: the positions it asked from, and its answer. */
interface Round {
  readonly asked: ReadonlyArray<Asked>
  readonly answer: Promise<ReadonlyArray<FetchedPartition>>
}

class TopicConsumer {
  private client: FetchClient | undefined
  private admin: Admin | undefined
  private readonly slots = new Map<number, Slot>()
  private readonly starting: Promise<void>
  private ending: Promise<void> | undefined
  private running: Promise<void> | undefined
  private closed = false
  /** Fetch answers received: a failure after some is a new one, retried from the shortest pause. */
  private answered = 0
  /** Loops waiting for a partition to be resumed, or for the end. */
  private waiting: Array<() => void> = []

  constructor(
    private readonly kafka: Kafka,
    private readonly options: KafkaIngressOptions,
    private readonly topic: string,
    joining: ReadonlyArray<Joining>,
    private readonly onEnd: () => void,
  ) {
    for (const j of joining) this.slots.set(j.spec.partition, { joining: j, fetched: j.from, active: false, paused: false, left: false })
    const partitions = joining.map((j) => j.spec.partition).join("-")
    this.starting = this.connect().catch((cause: unknown) => {
      const error = this.fail(`opening ${topic}[${partitions}]`, cause)
      for (const s of this.slots.values()) s.joining.reject(error)
    })
  }

  private fail(what: string, cause: unknown): Error {
    if (cause instanceof KafkaIngressError) return cause
    const at = this.options.brokers.join(",")
    const message = isUnreachable(cause)
      ? `cannot reach Kafka at ${at} while ${what} — is it running? (npm run infra:up, or set EDDY_KAFKA_BROKERS): ${reasonOf(cause)}`
      : `Kafka at ${at}: ${what} failed: ${reasonOf(cause)}`
    return new KafkaIngressError(message)
  }

  private async connect(): Promise<void> {
    const topic = this.topic
    const admin = (this.admin = this.kafka.admin())
    await admin.connect()
    const meta = await admin.fetchTopicMetadata({ topics: [topic] }).catch((cause: unknown) => {
      throw isUnreachable(cause) ? cause : new KafkaIngressError(`Kafka ingress: topic ${topic} cannot be read (${reasonOf(cause)}); create it before the run`)
    })
    const count = meta.topics[0]?.partitions.length ?? 0
    for (const { joining } of this.slots.values()) {
      if (count !== joining.spec.partitions) {
        throw new KafkaIngressError(
          `Kafka ingress: topic ${topic} has ${count} partitions but Source.kafka was given partitions: ${joining.spec.partitions}; they must match (records of other partitions would be ignored)`,
        )
      }
    }
    // ListOffsets with read_committed (kafkajs's default): the high end is the last stable offset.
    const offsets = await admin.fetchTopicOffsets(topic)
    const starts = new Map<number, FeedStart>()
    for (const [partition, slot] of this.slots) {
      const o = offsets.find((x) => x.partition === partition)
      if (o === undefined) throw new KafkaIngressError(`Kafka ingress: topic ${topic} has no partition ${partition}`)
      const end = Number(o.high)
      // Records below the log start offset were deleted by retention: the split starts at the first one that exists.
      const position = Math.max(slot.joining.from, Number(o.low))
      slot.fetched = position
      slot.active = !(slot.joining.spec.bounded && position >= end)
      starts.set(partition, { end, position })
    }
    if ([...this.slots.values()].some((s) => s.active)) {
      this.client = await openFetchClient(this.kafka, [topic])
      this.running = this.run()
    }
    for (const [partition, start] of starts) this.slots.get(partition)!.joining.resolve(start)
  }

  /** Fetch loops, one per leading broker, restarted (after a pause) when a retriable failure ends one. */
  private async run(): Promise<void> {
    let failingSince: number | undefined
    let backoff = 100
    while (!this.closed) {
      const live = [...this.slots].filter(([, s]) => s.active && !s.left).map(([p]) => p)
      const stop = { now: false }
      const answeredBefore = this.answered
      let failure: unknown
      try {
        const client = (this.client ??= await openFetchClient(this.kafka, [this.topic]))
        const leaders = client.leaders(this.topic, live)
        const led = [...leaders.values()].reduce((n, ps) => n + ps.length, 0)
        if (led < live.length) throw Object.assign(new Error(`no leader known for ${live.length - led} of partitions ${live.join(", ")} of ${this.topic}`), { retriable: true })
        const loops = [...leaders].map(([nodeId, partitions]) =>
          this.loop(client, nodeId, partitions, stop).catch((cause: unknown) => {
            stop.now = true
            this.changed()
            failure ??= cause
          }),
        )
        await Promise.all(loops)
        if (failure === undefined) return
      } catch (cause) {
        failure = cause
      }
      if (this.closed) return
      if (this.answered > answeredBefore) {
        failingSince = undefined
        backoff = 100
      }
      const next = await this.recover(failure)
      if (next === "fatal") {
        const error = this.fail(`reading ${this.topic}`, failure)
        for (const s of this.slots.values()) if (s.active && !s.left) s.joining.events.failed(error)
        return
      }
      if (next === "mended") {
        failingSince = undefined
        backoff = 100
        continue
      }
      // A broker restarting or a leader moving is retried as long as a stalled split is waited for.
      const retryFor = this.options.stallMs ?? 60_000
      failingSince ??= Date.now()
      if (Date.now() - failingSince > retryFor) {
        const error = this.fail(`reading ${this.topic} (retried for ${Math.round(retryFor / 1000)} s)`, failure)
        for (const s of this.slots.values()) if (s.active && !s.left) s.joining.events.failed(error)
        return
      }
      await new Promise((r) => setTimeout(r, backoff))
      backoff = Math.min(2_000, backoff * 2)
      // A leader that moved needs fresh metadata. A broker that is away gets fresh connections: kafkajs's pool, asked
      // again and again while it is down, piles listeners on its dead sockets (Node's MaxListenersExceededWarning).
      if (!isUnreachable(failure)) await this.client?.refresh().catch(() => undefined)
      else {
        await this.client?.disconnect().catch(() => undefined)
        this.client = undefined
      }
    }
  }

  /**
   * What to do after a failure: positions below the log start (retention deleted records not yet read) move up to
   * it, as at the start ("mended"); a broker that cannot be reached or a leader that moved is retried after a pause
   * ("retry"); anything else fails the splits ("fatal").
   */
  private async recover(failure: unknown): Promise<"mended" | "retry" | "fatal"> {
    const type = (failure as { type?: unknown } | undefined)?.type
    if (type === "OFFSET_OUT_OF_RANGE" && this.admin !== undefined) {
      const offsets = await this.admin.fetchTopicOffsets(this.topic).catch(() => undefined)
      if (offsets === undefined) return "retry"
      let moved = false
      for (const [partition, s] of this.slots) {
        const o = offsets.find((x) => x.partition === partition)
        if (o !== undefined && s.fetched < Number(o.low)) {
          s.fetched = Number(o.low)
          moved = true
        }
      }
      return moved ? "mended" : "fatal"
    }
    if (failure instanceof KafkaIngressError) return "fatal"
    return (failure as { retriable?: unknown } | undefined)?.retriable === true || isUnreachable(failure) ? "retry" : "fatal"
  }

  /** The positions to ask `partitions` from now (paused and departed splits are not asked). */
  private asking(partitions: ReadonlyArray<number>): ReadonlyArray<Asked> {
    const out: Asked[] = []
    for (const p of partitions) {
      const s = this.slots.get(p)!
      if (s.active && !s.left && !s.paused) out.push({ partition: p, fetchOffset: s.fetched })
    }
    return out
  }

  private send(client: FetchClient, nodeId: string, asked: ReadonlyArray<Asked>): Round {
    const answer = client.fetch(nodeId, { topics: [{ topic: this.topic, partitions: asked }], maxWaitMs: MAX_WAIT_MS, maxBytesPerPartition: MAX_BYTES_PER_PARTITION })
    const partitions = answer.then((topics) => topics.find((t) => t.topic === this.topic)?.partitions ?? [])
    // A loop that ends by a throw leaves its next Fetch unawaited: its failure must not become an unhandled rejection.
    partitions.catch(() => undefined)
    return { asked, answer: partitions }
  }

  private async loop(client: FetchClient, nodeId: string, partitions: ReadonlyArray<number>, stop: { now: boolean }): Promise<void> {
    let round: Round | undefined
    while (!this.closed && !stop.now) {
      if (round === undefined) {
        const asked = this.asking(partitions)
        if (asked.length === 0) {
          await new Promise<void>((r) => this.waiting.push(r))
          continue
        }
        round = this.send(client, nodeId, asked)
      }
      const answer = await round.answer
      this.answered++
      if (this.closed || stop.now) return
      const at = Date.now()
      const taken: Array<{ readonly slot: Slot; readonly records: ReadonlyArray<KafkaRecord>; readonly moved: boolean }> = []
      for (const pd of answer) {
        const s = this.slots.get(pd.partition)
        const from = round.asked.find((a) => a.partition === pd.partition)?.fetchOffset
        // Paused or left since it was asked for, or moved on by an answer before this one: refetched later.
        if (s === undefined || from === undefined || s.left || s.paused || s.fetched !== from) continue
        const t = takeRecords(pd, from)
        if (t.next === from) continue
        s.fetched = t.next
        const records = t.messages.map((m): KafkaRecord => ({ topic: this.topic, partition: pd.partition, offset: Number(m.offset), key: m.key ?? null, value: m.value ?? null, timestamp: Number(m.timestamp), headers: headersOf(m) }))
        taken.push({ slot: s, records, moved: records.length === 0 || records[records.length - 1]!.offset + 1 < t.next })
      }
      // The next Fetch goes out before the records are handed on (see the module's comment).
      const asked = this.asking(partitions)
      round = asked.length === 0 ? undefined : this.send(client, nodeId, asked)
      for (const t of taken) {
        if (t.records.length > 0) t.slot.joining.events.records(t.records, at)
        // Control records (a commit marker) or aborted ones after the last record: the position moved past them.
        if (t.moved) t.slot.joining.events.fetchedTo(t.slot.fetched)
      }
    }
    // A Fetch still in flight is answered within MAX_WAIT_MS; its records are asked for again by whoever runs next.
    await round?.answer.catch(() => undefined)
  }

  private changed(): void {
    const waiting = this.waiting
    this.waiting = []
    for (const wake of waiting) wake()
  }

  pause(partition: number): void {
    const s = this.slots.get(partition)
    if (s !== undefined) s.paused = true
  }

  resume(partition: number): void {
    const s = this.slots.get(partition)
    if (s === undefined || !s.paused) return
    s.paused = false
    this.changed()
  }

  async leave(partition: number): Promise<void> {
    const s = this.slots.get(partition)
    if (s === undefined || s.left) return this.ending
    s.left = true
    await this.starting
    if ([...this.slots.values()].some((x) => !x.left)) return
    this.ending ??= (async () => {
      this.closed = true
      this.changed()
      await this.running?.catch(() => undefined)
      await this.client?.disconnect().catch(() => undefined)
      await this.admin?.disconnect().catch(() => undefined)
      this.onEnd()
    })()
    return this.ending
  }
}

/** Hands out topic consumers: splits that join in the same turn of the event loop share one. */
export class ConsumerPool {
  private readonly waiting = new Map<string, Joining[]>()
  private scheduled = false
  private live = 0

  /** Topic consumers running (a fetch loop each, or starting one); for tests. */
  get consumers(): number {
    return this.live
  }

  constructor(
    private readonly kafka: Kafka,
    private readonly options: KafkaIngressOptions,
  ) {}

  join(spec: FeedSpec, from: number, events: FeedEvents): Member {
    let resolve: (start: FeedStart) => void = () => undefined
    let reject: (error: Error) => void = () => undefined
    const started = new Promise<FeedStart>((res, rej) => {
      resolve = res
      reject = rej
    })
    const joining: Joining = { spec, from, events, resolve, reject, consumer: undefined }
    const list = this.waiting.get(spec.topic) ?? []
    list.push(joining)
    this.waiting.set(spec.topic, list)
    if (!this.scheduled) {
      this.scheduled = true
      setImmediate(() => this.flush())
    }
    const settled = started.then(
      () => undefined,
      () => undefined,
    )
    return {
      spec,
      started,
      pause: () => joining.consumer?.pause(spec.partition),
      resume: () => joining.consumer?.resume(spec.partition),
      leave: () => settled.then(() => joining.consumer?.leave(spec.partition)),
    }
  }

  private flush(): void {
    this.scheduled = false
    const groups = [...this.waiting]
    this.waiting.clear()
    for (const [topic, joining] of groups) {
      // A partition joined twice in one turn (not done by the engine) gets a second consumer.
      const rounds: Joining[][] = []
      for (const j of joining) {
        const round = rounds.find((r) => !r.some((x) => x.spec.partition === j.spec.partition))
        if (round === undefined) rounds.push([j])
        else round.push(j)
      }
      for (const round of rounds) {
        this.live++
        const c = new TopicConsumer(this.kafka, this.options, topic, round, () => this.live--)
        for (const j of round) j.consumer = c
      }
    }
  }
}

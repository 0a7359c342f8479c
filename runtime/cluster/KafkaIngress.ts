/**
 * Kafka ingress: a Source.kafka split is one partition of its topic, and its position is the next offset to read.
 * kafkajs has no manual assignment, so each opened split uses a consumer in a fresh group (never committing
 * offsets, deleted on close) whose assigner hands it exactly that partition, and seeks it to the logged position.
 * Records are read with isolation read_committed.
 *
 * Epoch cuts are by offsets, so a replay reads exactly what the original epoch read: an epoch's budget B admits the
 * records at offsets [p, p+B). While the split is behind the end offset found when it was opened (the last stable
 * offset), a read waits until it has every record below min(p+B, end): reading a topic that was filled before the
 * run gives the same epochs on every run and after every crash. Past that end the split is live: a read returns what
 * has arrived, waiting at most the epoch's wait for the first record.
 */
import { randomUUID } from "node:crypto"
import "./kafkajsAbortFix.ts"
import { AssignerProtocol, Kafka, logLevel as kafkaLogLevel, type Admin, type Consumer, type KafkaMessage, type PartitionAssigner } from "kafkajs"
import type { KafkaRecord } from "../../workflows/kafka.ts"
import type { SeekableSplit, SplitOpener } from "../engine/ingress.ts"
import type { SourceSplit } from "../engine/Plan.ts"
import { isUnreachable, reasonOf } from "./kafkaReasons.ts"
import { kafkaTrace } from "./kafkaTrace.ts"

export class KafkaIngressError extends Error {
  override readonly name = "KafkaIngressError"
}

export interface KafkaIngressOptions {
  readonly brokers: ReadonlyArray<string>
  readonly clientId?: string
  /** Records buffered per split before its consumer pauses (default 50,000). */
  readonly maxBuffered?: number
  /** Bound on waiting for records known to exist (default 60 s): a split that stalls fails the process. */
  readonly stallMs?: number
}

const headersOf = (m: KafkaMessage): Record<string, string> => {
  const out: Record<string, string> = {}
  for (const [k, v] of Object.entries(m.headers ?? {})) {
    if (v === undefined) continue
    const one = Array.isArray(v) ? v[v.length - 1] : v
    if (one !== undefined) out[k] = typeof one === "string" ? one : one.toString("utf8")
  }
  return out
}

/** An assigner that gives every member the one chosen partition (the group has a single member: us). */
const fixedAssigner =
  (topic: string, partition: number): PartitionAssigner =>
  () => ({
    name: "eddy-fixed",
    version: 1,
    assign: ({ members }) =>
      Promise.resolve(
        members.map((m) => ({
          memberId: m.memberId,
          memberAssignment: AssignerProtocol.MemberAssignment.encode({ version: 1, assignment: { [topic]: [partition] }, userData: Buffer.alloc(0) }),
        })),
      ),
    protocol: ({ topics }) => ({ name: "eddy-fixed", metadata: AssignerProtocol.MemberMetadata.encode({ version: 1, topics, userData: Buffer.alloc(0) }) }),
  })

/** What a split's feed reports: fetched records, progress over control records, failure. */
export interface FeedEvents {
  /** Records fetched, in offset order (none below an offset reported before); `at`: when (Date.now()). */
  records(records: ReadonlyArray<KafkaRecord>, at: number): void
  /** Every offset below this has been fetched (a batch of control records reaches no `records`). */
  fetchedTo(offset: number): void
  failed(error: Error): void
}

/** Where a split's records come from: a kafkajs consumer on this thread (ConsumerFeed) or in the ingress's thread. */
export interface SplitFeed {
  /**
   * Connects and seeks to `position`; the last stable offset found (the split's end) and the position to start at
   * (moved up to the log start if retention deleted records). Rejects with a KafkaIngressError.
   */
  start(position: number, events: FeedEvents): Promise<{ readonly end: number; readonly position: number }>
  pause(): void
  resume(): void
  close(): Promise<void>
}

export interface FeedSpec {
  readonly topic: string
  readonly partition: number
  readonly partitions: number
  readonly bounded: boolean
  readonly splitId: string
}

/** A kafkajs consumer in a fresh group whose assigner hands it exactly one partition, seeked to the position. */
export class ConsumerFeed implements SplitFeed {
  private consumer: Consumer | undefined
  private admin: Admin | undefined
  private started: Promise<unknown> | undefined
  private closed = false
  private readonly groupId: string

  constructor(
    private readonly kafka: Kafka,
    private readonly options: KafkaIngressOptions,
    private readonly spec: FeedSpec,
  ) {
    this.groupId = `eddy.ingress.${spec.splitId.replace(/[^A-Za-z0-9._-]/g, "_")}.${randomUUID()}`
  }

  private fail(what: string, cause: unknown): Error {
    if (cause instanceof KafkaIngressError) return cause
    const at = this.options.brokers.join(",")
    const message = isUnreachable(cause)
      ? `cannot reach Kafka at ${at} while ${what} — is it running? (npm run infra:up, or set EDDY_KAFKA_BROKERS): ${reasonOf(cause)}`
      : `Kafka at ${at}: ${what} failed: ${reasonOf(cause)}`
    return new KafkaIngressError(message)
  }

  start(position: number, events: FeedEvents): Promise<{ end: number; position: number }> {
    const { topic, partition } = this.spec
    const started = this.connect(position, events).catch((cause: unknown) => {
      throw this.fail(`opening ${topic}[${partition}]`, cause)
    })
    this.started = started.catch(() => undefined)
    return started
  }

  private async connect(from: number, events: FeedEvents): Promise<{ end: number; position: number }> {
    const { topic, partition, partitions, bounded } = this.spec
    const admin = (this.admin = this.kafka.admin())
    await admin.connect()
    const meta = await admin.fetchTopicMetadata({ topics: [topic] }).catch((cause: unknown) => {
      throw isUnreachable(cause) ? cause : new KafkaIngressError(`Kafka ingress: topic ${topic} cannot be read (${reasonOf(cause)}); create it before the run`)
    })
    const count = meta.topics[0]?.partitions.length ?? 0
    if (count !== partitions) {
      throw new KafkaIngressError(
        `Kafka ingress: topic ${topic} has ${count} partitions but Source.kafka was given partitions: ${partitions}; they must match (records of other partitions would be ignored)`,
      )
    }
    // ListOffsets with read_committed (kafkajs's default): the high end is the last stable offset.
    const offsets = (await admin.fetchTopicOffsets(topic)).find((o) => o.partition === partition)
    if (offsets === undefined) throw new KafkaIngressError(`Kafka ingress: topic ${topic} has no partition ${partition}`)
    const end = Number(offsets.high)
    // Records below the log start offset were deleted by retention: the split starts at the first one that exists.
    const position = Math.max(from, Number(offsets.low))
    if (bounded && position >= end) return { end, position }
    /** Every offset below this has been fetched (records passed on, control records and aborted ones skipped). */
    let fetched = position
    const consumer = (this.consumer = this.kafka.consumer({
      groupId: this.groupId,
      partitionAssigners: [fixedAssigner(topic, partition)],
      readUncommitted: false,
      allowAutoTopicCreation: false,
      maxWaitTimeInMs: 100,
      sessionTimeout: 30_000,
      heartbeatInterval: 3_000,
      retry: { retries: 5, initialRetryTime: 100, maxRetryTime: 2_000, restartOnFailure: async () => false },
    }))
    await consumer.connect()
    consumer.on(consumer.events.CRASH, (event) => events.failed(this.fail(`reading ${topic}[${partition}]`, event.payload.error)))
    // A batch of control records only (a transaction's commit marker) reaches no eachBatch, but moves the offset.
    consumer.on(consumer.events.END_BATCH_PROCESS, (event) => {
      if (event.payload.topic !== topic || event.payload.partition !== partition) return
      const last = Number(event.payload.lastOffset)
      if (last + 1 > fetched) {
        fetched = last + 1
        events.fetchedTo(fetched)
      }
    })
    await consumer.subscribe({ topic, fromBeginning: true })
    await consumer.run({
      autoCommit: false,
      eachBatchAutoResolve: true,
      eachBatch: ({ batch }) => {
        if (batch.topic !== topic || batch.partition !== partition) return Promise.resolve()
        const at = Date.now()
        const out: KafkaRecord[] = []
        for (const m of batch.messages) {
          const offset = Number(m.offset)
          // Before the seek took effect, or a refetch: already had.
          if (offset < fetched) continue
          out.push({ topic, partition, offset, key: m.key ?? null, value: m.value ?? null, timestamp: Number(m.timestamp), headers: headersOf(m) })
          fetched = offset + 1
        }
        if (out.length > 0) events.records(out, at)
        return Promise.resolve()
      },
    })
    consumer.seek({ topic, partition, offset: String(position) })
    return { end, position }
  }

  pause(): void {
    this.consumer?.pause([{ topic: this.spec.topic, partitions: [this.spec.partition] }])
  }

  resume(): void {
    this.consumer?.resume([{ topic: this.spec.topic, partitions: [this.spec.partition] }])
  }

  async close(): Promise<void> {
    if (this.closed) return
    this.closed = true
    await this.started
    await this.consumer?.disconnect().catch(() => undefined)
    if (this.consumer !== undefined) await this.admin?.deleteGroups([this.groupId]).catch(() => undefined)
    await this.admin?.disconnect().catch(() => undefined)
  }
}

class KafkaSplit implements SeekableSplit, FeedEvents {
  private buffer: KafkaRecord[] = []
  private head = 0
  /** Every offset below this has been fetched (records buffered, control records and aborted ones skipped). */
  private fetched: number
  /** The last stable offset when the split was opened: below it, epoch cuts are exact. */
  private end = 0
  private failure: Error | undefined
  private started: Promise<void> | undefined
  private paused = false
  private wake: (() => void) | undefined
  /** The engine's wake-up: records arrived after a read reported the split quiet. */
  private arrival: (() => void) | undefined
  /** The last read said quiet and no wake has been sent since: the next records send one. */
  private quietReported = false
  private closed = false

  constructor(
    private readonly feed: SplitFeed,
    private readonly options: KafkaIngressOptions,
    private readonly topic: string,
    private readonly partition: number,
    private readonly bounded: boolean,
    private position: number,
  ) {
    this.fetched = position
  }

  prepare(): void {
    this.started ??= this.feed.start(this.position, this).then(
      ({ end, position }) => {
        this.end = end
        if (position > this.position) {
          this.position = position
          this.fetched = Math.max(this.fetched, position)
        }
      },
      (cause: unknown) => {
        this.failure ??= cause instanceof Error ? cause : new KafkaIngressError(String(cause))
      },
    )
  }

  records(records: ReadonlyArray<KafkaRecord>, at: number): void {
    kafkaTrace.fetched?.(records, at)
    for (const r of records) {
      if (r.offset < this.fetched) continue
      this.buffer.push(r)
      this.fetched = r.offset + 1
    }
    if (this.buffer.length - this.head >= (this.options.maxBuffered ?? 50_000) && !this.paused) {
      this.paused = true
      this.feed.pause()
    }
    this.notify()
    // The engine may be idle, waiting for this: one wake per read that reported the split quiet (a read that left
    // records, or a bounded split, needs none).
    if (this.quietReported && this.head < this.buffer.length) {
      this.quietReported = false
      this.arrival?.()
    }
  }

  fetchedTo(offset: number): void {
    if (offset > this.fetched) this.fetched = offset
    this.notify()
  }

  failed(error: Error): void {
    this.failure ??= error
    this.notify()
    this.arrival?.()
  }

  onData(wake: () => void): void {
    this.arrival = wake
  }

  private notify(): void {
    const w = this.wake
    this.wake = undefined
    w?.()
  }

  private waitForData(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const t = setTimeout(() => {
        this.wake = undefined
        resolve()
      }, ms)
      this.wake = () => {
        clearTimeout(t)
        resolve()
      }
    })
  }

  async read(budget: number, waitMs: number): Promise<{ atoms: ReadonlyArray<ReadonlyArray<unknown>>; position: number; exhausted: boolean; quiet: boolean }> {
    this.prepare()
    await this.started
    if (this.failure !== undefined) throw this.failure
    const target = this.position + budget
    if (this.bounded && this.position >= this.end) return { atoms: [], position: this.position, exhausted: true, quiet: false }
    // Behind the end found at open: the cut is exact (wait for everything below it). Past it: live.
    const limit = this.position < this.end ? Math.min(target, this.end) : target
    if (this.position < this.end) {
      const deadline = Date.now() + (this.options.stallMs ?? 60_000)
      while (this.fetched < limit) {
        if (this.failure !== undefined) throw this.failure
        if (Date.now() > deadline) {
          throw new KafkaIngressError(`Kafka ingress: ${this.topic}[${this.partition}] stalled at offset ${this.fetched} while offsets up to ${limit} exist`)
        }
        await this.waitForData(200)
      }
    } else if (this.head === this.buffer.length && waitMs > 0) {
      await this.waitForData(waitMs)
      if (this.failure !== undefined) throw this.failure
    }
    const atoms: Array<ReadonlyArray<unknown>> = []
    while (this.head < this.buffer.length && this.buffer[this.head]!.offset < limit) atoms.push([this.buffer[this.head++]!])
    if (this.head > 4096 && this.head * 2 > this.buffer.length) {
      this.buffer = this.buffer.slice(this.head)
      this.head = 0
    }
    this.position = this.fetched >= limit ? limit : Math.max(this.position, this.fetched)
    if (this.paused && this.buffer.length - this.head < (this.options.maxBuffered ?? 50_000) / 2) {
      this.paused = false
      this.feed.resume()
    }
    const exhausted = this.bounded && this.position >= this.end
    // Live, everything fetched handed out and no failure pending: the next records arrive through `arrival`.
    const quiet = !exhausted && !this.bounded && this.position >= this.end && this.head === this.buffer.length && this.failure === undefined
    this.quietReported = quiet
    return { atoms, position: this.position, exhausted, quiet }
  }

  async close(): Promise<void> {
    if (this.closed) return
    this.closed = true
    await this.feed.close()
  }
}

export const newIngressKafka = (options: KafkaIngressOptions): Kafka =>
  new Kafka({
    clientId: options.clientId ?? "eddy-ingress",
    brokers: [...options.brokers],
    logLevel: kafkaLogLevel.NOTHING,
    connectionTimeout: 3_000,
    retry: { retries: 5, initialRetryTime: 100, maxRetryTime: 2_000 },
  })

/**
 * The connector the runtime gives the engine: opens Source.kafka splits, one consumer each, on this thread or (with
 * `feeds`, see KafkaIngressThread.ts) in the ingress's worker thread.
 */
export const kafkaSplitOpener = (options: KafkaIngressOptions, feeds?: (spec: FeedSpec) => SplitFeed): SplitOpener => {
  let kafka: Kafka | undefined
  return (split: SourceSplit, position: number) => {
    const c = split.source.connector
    if (c?.kind !== "kafka") return undefined
    const spec: FeedSpec = { topic: c.topic, partition: split.split, partitions: c.partitions, bounded: c.bounded, splitId: split.id }
    const feed = feeds?.(spec) ?? new ConsumerFeed((kafka ??= newIngressKafka(options)), options, spec)
    return new KafkaSplit(feed, options, c.topic, split.split, c.bounded, position)
  }
}

/**
 * Every record of one topic partition (read_committed) up to and including the one at offset `through`. Reading
 * until a given committed record, rather than to the last stable offset found at the start, sees every record
 * committed before it even while another producer's transaction holds the last stable offset back.
 */
export const readPartitionThrough = async (
  kafka: Kafka,
  options: KafkaIngressOptions,
  topic: string,
  partition: number,
  partitions: number,
  through: number,
  timeoutMs: number,
): Promise<KafkaRecord[]> => {
  const feed = new ConsumerFeed(kafka, options, { topic, partition, partitions, bounded: false, splitId: `${topic}#${partition}` })
  const split = new KafkaSplit(feed, options, topic, partition, false, 0)
  const out: KafkaRecord[] = []
  const deadline = Date.now() + timeoutMs
  try {
    for (;;) {
      const r = await split.read(1_000_000, 200)
      for (const atom of r.atoms) out.push(atom[0] as KafkaRecord)
      if (r.position > through) return out
      if (Date.now() > deadline) {
        throw new KafkaIngressError(`reading ${topic}[${partition}] did not reach offset ${through} within ${timeoutMs} ms (stopped at ${r.position}): a transaction holds it back`)
      }
    }
  } finally {
    await split.close()
  }
}

/**
 * Kafka ingress: a Source.kafka split is one partition of its topic, and its position is the next offset to read.
 * The splits of a topic opened together share one fetch loop (KafkaTopicConsumer.ts; no consumer group), which asks
 * for each partition from its logged position. Records are read with isolation read_committed.
 *
 * Epoch cuts are by offsets, so a replay reads exactly what the original epoch read: an epoch's budget B admits the
 * records at offsets [p, p+B). While the split is behind the end offset found when it was opened (the last stable
 * offset), a read waits until it has every record below min(p+B, end): reading a topic that was filled before the
 * run gives the same epochs on every run and after every crash. Past that end the split is live: a read returns what
 * has arrived, waiting at most the epoch's wait for the first record.
 */
import "../../kafkajs/kafkajsAbortFix.ts"
import { Kafka, logLevel as kafkaLogLevel } from "kafkajs"
import type { KafkaRecord } from "../../workflows/kafka.ts"
import type { SeekableSplit, SplitOpener } from "../engine/ingress.ts"
import type { SourceSplit } from "../engine/Plan.ts"
import { kafkaTrace } from "./kafkaTrace.ts"
import { ConsumerPool, KafkaIngressError, type FeedEvents, type FeedSpec, type FeedStart, type KafkaIngressOptions, type Member } from "./KafkaTopicConsumer.ts"

export { KafkaIngressError, type FeedEvents, type FeedSpec, type FeedStart, type KafkaIngressOptions } from "./KafkaTopicConsumer.ts"

/** Where a split's records come from: a topic consumer on this thread (ConsumerFeed) or in the ingress's thread. */
export interface SplitFeed {
  /**
   * Connects and seeks to `position`; the last stable offset found (the split's end) and the position to start at
   * (moved up to the log start if retention deleted records). Rejects with a KafkaIngressError.
   */
  start(position: number, events: FeedEvents): Promise<FeedStart>
  pause(): void
  resume(): void
  close(): Promise<void>
}

/** A split's share of a topic consumer (KafkaTopicConsumer.ts): the splits opened together share one fetch loop. */
export class ConsumerFeed implements SplitFeed {
  private member: Member | undefined

  constructor(
    private readonly pool: ConsumerPool,
    private readonly spec: FeedSpec,
  ) {}

  start(position: number, events: FeedEvents): Promise<FeedStart> {
    this.member = this.pool.join(this.spec, position, events)
    return this.member.started
  }

  pause(): void {
    this.member?.pause()
  }

  resume(): void {
    this.member?.resume()
  }

  close(): Promise<void> {
    return this.member?.leave() ?? Promise.resolve()
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
  let pool: ConsumerPool | undefined
  return (split: SourceSplit, position: number) => {
    const c = split.source.connector
    if (c?.kind !== "kafka") return undefined
    const spec: FeedSpec = { topic: c.topic, partition: split.split, partitions: c.partitions, bounded: c.bounded, splitId: split.id }
    const feed = feeds?.(spec) ?? new ConsumerFeed((pool ??= new ConsumerPool(newIngressKafka(options), options)), spec)
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
  const feed = new ConsumerFeed(new ConsumerPool(kafka, options), { topic, partition, partitions, bounded: false, splitId: `${topic}#${partition}` })
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

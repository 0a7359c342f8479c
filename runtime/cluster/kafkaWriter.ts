/**
 * The Kafka log's single writer. Appends queue in call order; one loop sends everything queued (up to a batch size)
 * as one produce request — one record batch per topic — waits for acks=all, and assigns each record its offset
 * (the batch's base offset plus its index). While a request is in flight the next batch gathers (group commit
 * without a linger timer). Requests never overlap, so an acknowledged record implies every earlier one was
 * acknowledged; a failed request poisons the writer, because what happens to later records after a gap is unknown:
 * only a restart (recovery from the log) may continue.
 */
import type { Message, Producer } from "kafkajs"
import { LogError, type LogPosition, type LogStream } from "../ports/Log.ts"
import { kafkaError } from "./kafkaErrors.ts"
import type { Topics } from "./kafkaTopics.ts"

interface Pending {
  readonly stream: LogStream
  readonly value: Buffer
  readonly resolve: (position: LogPosition) => void
  readonly reject: (error: LogError) => void
}

export interface WriterSettings {
  readonly brokers: ReadonlyArray<string>
  /** A request carries records up to about this many bytes (a larger record goes alone). */
  readonly maxBatchBytes: number
  /** Larger payloads are refused (the topics' max.message.bytes leaves room for framing). */
  readonly maxRecordBytes: number
  /** Broker-side wait for the acks of one request. */
  readonly ackTimeoutMs: number
}

/** Kafka's framing per record in a v2 batch, roughly: lengths, deltas, headers count. */
const RECORD_OVERHEAD = 32

export class KafkaWriter {
  private queue: Array<Pending> = []
  private running = false
  private failure: LogError | undefined
  private idleWaiters: Array<() => void> = []

  constructor(
    private readonly producer: Producer,
    private readonly topics: Topics,
    private readonly settings: WriterSettings,
  ) {}

  write(stream: LogStream, payload: Uint8Array): Promise<LogPosition> {
    if (this.failure !== undefined) return Promise.reject(this.failure)
    if (payload.length > this.settings.maxRecordBytes) {
      return Promise.reject(
        new LogError({
          message: `log record of ${payload.length} bytes exceeds the Kafka log's limit of ${this.settings.maxRecordBytes} bytes (option maxRecordBytes); large records must be chunked`,
        }),
      )
    }
    return new Promise<LogPosition>((resolve, reject) => {
      // Copied now: the caller may reuse its buffer as soon as append returns.
      this.queue.push({ stream, value: Buffer.from(payload), resolve, reject })
      if (!this.running) void this.run()
    })
  }

  /** Resolves once everything queued so far was sent (or failed). */
  drained(): Promise<void> {
    if (!this.running && this.queue.length === 0) return Promise.resolve()
    return new Promise((resolve) => this.idleWaiters.push(resolve))
  }

  private takeBatch(): Array<Pending> {
    let bytes = 0
    let n = 0
    while (n < this.queue.length) {
      const size = (this.queue[n] as Pending).value.length + RECORD_OVERHEAD
      if (n > 0 && bytes + size > this.settings.maxBatchBytes) break
      bytes += size
      n++
    }
    return this.queue.splice(0, n)
  }

  private async run(): Promise<void> {
    this.running = true
    try {
      while (this.queue.length > 0) {
        const batch = this.takeBatch()
        if (this.failure !== undefined) {
          for (const p of batch) p.reject(this.failure)
          continue
        }
        await this.send(batch)
      }
    } finally {
      this.running = false
      const waiters = this.idleWaiters
      this.idleWaiters = []
      for (const w of waiters) w()
    }
  }

  private async send(batch: ReadonlyArray<Pending>): Promise<void> {
    const byStream: Record<LogStream, Array<Pending>> = { wal: [], control: [] }
    for (const p of batch) byStream[p.stream].push(p)
    const streams = (["wal", "control"] as const).filter((s) => byStream[s].length > 0)
    try {
      const meta = await this.producer.sendBatch({
        acks: -1,
        timeout: this.settings.ackTimeoutMs,
        topicMessages: streams.map((s) => ({
          topic: this.topics[s],
          messages: byStream[s].map((p): Message => ({ value: p.value, partition: 0 })),
        })),
      })
      const bases = streams.map((s) => {
        const m = meta.find((r) => r.topicName === this.topics[s] && r.partition === 0)
        const base = m?.baseOffset === undefined ? NaN : Number(m.baseOffset)
        if (m === undefined || m.errorCode !== 0 || !Number.isSafeInteger(base)) {
          throw new Error(`no offset in the produce response for ${this.topics[s]} (${JSON.stringify(m)})`)
        }
        return base
      })
      streams.forEach((s, j) => byStream[s].forEach((p, i) => p.resolve({ part: 0, offset: (bases[j] as number) + i })))
    } catch (cause) {
      this.failure = kafkaError(this.settings.brokers, `appending to ${this.topics.wal}/${this.topics.control} (the log must be reopened)`, cause)
      for (const p of batch) p.reject(this.failure)
    }
  }
}

import "../../kafkajs/kafkajsAbortFix.ts"
import { Kafka, logLevel, type Consumer, type Producer } from "kafkajs"
import { randomUUID } from "node:crypto"
import type { Call, Invoker } from "./workloads.ts"

export interface KafkaRequestTopics {
  readonly brokers: ReadonlyArray<string>
  /** The actor system's requests topic (ActorSystemOptions.kafka.requests). */
  readonly requests: string
  /** Where it answers, read_committed. */
  readonly replies: string
}

interface Pending {
  readonly resolve: (reply: unknown) => void
  readonly reject: (err: Error) => void
  readonly timer: ReturnType<typeof setTimeout>
}

/** Records per Produce request: kafkajs's encoding slows down superlinearly past a few thousand. */
const PRODUCE_CHUNK = 2000

/**
 * Eddy through its Kafka ingress, the way a high-volume producer talks to it: each call is a request record
 * `{ target, message, key }` (Kafka key: the target, so one target's requests stay in order), and its answer is the
 * record with that key on the replies topic, read by a read_committed consumer. The calls of one tick go as one
 * Produce request.
 */
export class KafkaInvoker implements Invoker {
  private readonly producer: Producer
  private readonly consumer: Consumer
  private readonly pending = new Map<string, Pending>()
  private queued: Array<{ key: string; value: string }> = []
  private flushing = false
  private readonly prefix = randomUUID().slice(0, 8)
  private n = 0

  private constructor(
    private readonly topics: KafkaRequestTopics,
    private readonly timeoutMs: number,
  ) {
    const kafka = new Kafka({ clientId: "eddy-bench-client", brokers: [...topics.brokers], logLevel: logLevel.NOTHING })
    this.producer = kafka.producer({ allowAutoTopicCreation: false })
    this.consumer = kafka.consumer({ groupId: `eddy-bench-${this.prefix}`, readUncommitted: false, maxWaitTimeInMs: 100 })
  }

  static async connect(topics: KafkaRequestTopics, timeoutMs: number): Promise<KafkaInvoker> {
    const k = new KafkaInvoker(topics, timeoutMs)
    await k.producer.connect()
    await k.consumer.connect()
    await k.consumer.subscribe({ topic: topics.replies, fromBeginning: true })
    // Joined once the group has its assignment: calls made before would be answered too (fromBeginning), but their
    // latency would include the join.
    const joined = new Promise<void>((resolve) => k.consumer.on(k.consumer.events.GROUP_JOIN, () => resolve()))
    await k.consumer.run({
      eachBatch: async ({ batch }) => {
        for (const m of batch.messages) {
          if (m.value === null) continue
          const a = JSON.parse(m.value.toString("utf8")) as { key: string; reply?: unknown; error?: { tag: string; message: string } }
          const p = k.pending.get(a.key)
          if (p === undefined) continue // answered already (a retried request's second answer), or not ours
          k.pending.delete(a.key)
          clearTimeout(p.timer)
          if (a.error !== undefined) p.reject(new Error(`${a.error.tag}: ${a.error.message}`))
          else p.resolve(a.reply)
        }
      },
    })
    await joined
    return k
  }

  call(c: Call): Promise<unknown> {
    const id = c.key ?? c.eddyKey
    if (id === undefined) throw new Error(`call of ${c.object}.${c.handler} has no key`)
    const target = `${c.object}/${id}`
    const key = `${this.prefix}-${++this.n}`
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(key)
        reject(new Error(`no answer on ${this.topics.replies} within ${this.timeoutMs / 1000} s`))
      }, this.timeoutMs)
      this.pending.set(key, { resolve, reject, timer })
      this.queued.push({ key: target, value: JSON.stringify({ target, message: { op: c.handler, ...c.arg }, key }) })
      if (this.queued.length === 1 && !this.flushing) setImmediate(() => void this.flush())
    })
  }

  /** Sends what the callers queued, one Produce request per chunk; what arrives meanwhile goes next. */
  private async flush(): Promise<void> {
    this.flushing = true
    try {
      while (this.queued.length > 0) {
        const batch = this.queued
        this.queued = []
        const sends: Array<Promise<unknown>> = []
        for (let i = 0; i < batch.length; i += PRODUCE_CHUNK) sends.push(this.producer.send({ topic: this.topics.requests, acks: -1, messages: batch.slice(i, i + PRODUCE_CHUNK) }))
        await Promise.all(sends).catch((err: unknown) => {
          // The requests' outcome is unknown: their callers time out (a retry with the same key would run once).
          process.stderr.write(`kafka invoker: produce failed: ${err instanceof Error ? err.message : String(err)}\n`)
        })
      }
    } finally {
      this.flushing = false
    }
  }

  async close(): Promise<void> {
    for (const p of this.pending.values()) clearTimeout(p.timer)
    await Promise.all([this.producer.disconnect(), this.consumer.disconnect()])
  }
}

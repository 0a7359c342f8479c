import "../../kafkajs/kafkajsAbortFix.ts"
import { Kafka, logLevel, type IHeaders } from "kafkajs"
import { createTopicsReady } from "../../runtime/cluster/kafkaCreateTopics.ts"
import { readEndpoints } from "../../runtime/config/Endpoints.ts"

/** Test helpers over a real Kafka: create, fill and read topics (read_committed). They fail if Kafka is absent. */
export const kafkaClient = (): Kafka => new Kafka({ clientId: "eddy-test", brokers: [...readEndpoints().kafka.brokers], logLevel: logLevel.NOTHING, connectionTimeout: 3000, retry: { retries: 3 } })

export const uniqueName = (name: string): string => `${name}-${Date.now().toString(36)}${Math.floor(Math.random() * 1e6).toString(36)}`

export const createTopic = async (kafka: Kafka, topic: string, partitions: number): Promise<void> => {
  const admin = kafka.admin()
  await admin.connect()
  try {
    await createTopicsReady(admin, [{ topic, numPartitions: partitions }])
  } finally {
    await admin.disconnect()
  }
}

export interface Produced {
  readonly key?: string
  readonly value: string | Buffer
  readonly partition?: number
}

/** Produces records in order (per partition), returning each one's partition and offset. */
export const produce = async (kafka: Kafka, topic: string, records: ReadonlyArray<Produced>): Promise<Array<{ partition: number; offset: number }>> => {
  const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1, allowAutoTopicCreation: false })
  await producer.connect()
  const out: Array<{ partition: number; offset: number }> = []
  try {
    for (let i = 0; i < records.length; i += 1000) {
      const chunk = records.slice(i, i + 1000)
      // One request per partition keeps offsets in order; the response gives each partition's base offset.
      const byPartition = new Map<number, number[]>()
      chunk.forEach((r, j) => {
        const p = r.partition ?? 0
        let l = byPartition.get(p)
        if (l === undefined) byPartition.set(p, (l = []))
        l.push(j)
      })
      const meta = await producer.send({ topic, acks: -1, messages: chunk.map((r) => ({ value: r.value, partition: r.partition ?? 0, ...(r.key === undefined ? {} : { key: r.key }) })) })
      const base = new Map(meta.map((m) => [m.partition, Number(m.baseOffset)]))
      chunk.forEach((r, j) => {
        const p = r.partition ?? 0
        out[i + j] = { partition: p, offset: base.get(p)! + byPartition.get(p)!.indexOf(j) }
      })
    }
  } finally {
    await producer.disconnect()
  }
  return out
}

export interface Consumed {
  readonly partition: number
  readonly offset: number
  readonly key: string | null
  readonly value: string
  readonly headers: Record<string, string>
  readonly timestamp: number
}

const headersOf = (h: IHeaders | undefined): Record<string, string> => {
  const out: Record<string, string> = {}
  for (const [k, v] of Object.entries(h ?? {})) if (v !== undefined) out[k] = (Array.isArray(v) ? v[0]! : v).toString()
  return out
}

/** Every record of `topic` up to its current end, as a read_committed consumer sees it, per partition in offset order. */
export const readCommitted = async (kafka: Kafka, topic: string, timeoutMs = 60_000): Promise<Consumed[]> => {
  const admin = kafka.admin()
  await admin.connect()
  const ends = new Map((await admin.fetchTopicOffsets(topic)).map((o) => [o.partition, { low: Number(o.low), high: Number(o.high) }]))
  const groupId = uniqueName("eddy-test-reader")
  const consumer = kafka.consumer({ groupId, readUncommitted: false, maxWaitTimeInMs: 100 })
  const got: Consumed[] = []
  const reached = new Map<number, number>()
  const done = () => [...ends].every(([p, e]) => e.high <= e.low || (reached.get(p) ?? 0) >= e.high)
  try {
    if (done()) return got
    await consumer.connect()
    await consumer.subscribe({ topic, fromBeginning: true })
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`reading ${topic} timed out; reached ${JSON.stringify([...reached])} of ${JSON.stringify([...ends])}`)), timeoutMs)
      consumer.on(consumer.events.END_BATCH_PROCESS, (e) => {
        reached.set(e.payload.partition, Math.max(reached.get(e.payload.partition) ?? 0, Number(e.payload.lastOffset) + 1))
        if (done()) {
          clearTimeout(timer)
          resolve()
        }
      })
      consumer
        .run({
          autoCommit: false,
          eachBatch: async ({ batch }) => {
            for (const m of batch.messages) {
              const offset = Number(m.offset)
              if (offset >= ends.get(batch.partition)!.high) break
              got.push({ partition: batch.partition, offset, key: m.key?.toString() ?? null, value: m.value?.toString() ?? "", headers: headersOf(m.headers), timestamp: Number(m.timestamp) })
            }
          },
        })
        .catch(reject)
    })
  } finally {
    await consumer.disconnect().catch(() => undefined)
    await admin.deleteGroups([groupId]).catch(() => undefined)
    await admin.disconnect()
  }
  const seen = new Set<string>()
  return got.filter((r) => (seen.has(`${r.partition}:${r.offset}`) ? false : (seen.add(`${r.partition}:${r.offset}`), true))).sort((a, b) => a.partition - b.partition || a.offset - b.offset)
}

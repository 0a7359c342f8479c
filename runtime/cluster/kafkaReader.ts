/**
 * readAll for the Kafka log. kafkajs has no manual partition assignment, so each read uses a fresh consumer group
 * (never committing offsets, deleted afterwards), starts from the earliest retained offset, and stops at the high
 * watermark each partition had when the read began. Records appended during the read are not returned.
 */
import { randomUUID } from "node:crypto"
import type { Admin, Kafka } from "kafkajs"
import type { LogEntry, LogStream } from "../ports/Log.ts"
import type { Topics } from "./kafkaTopics.ts"

interface Target {
  readonly stream: LogStream
  readonly topic: string
  readonly partition: number
  /** Offset after the last record to read. */
  readonly high: number
  readonly entries: Array<LogEntry>
  done: boolean
}

export interface ReaderSettings {
  readonly app: string
  readonly maxFetchBytes: number
  readonly timeoutMs: number
}

const streams: ReadonlyArray<LogStream> = ["wal", "control"]

/** Partitions with records, and where each read must stop. */
const targetsOf = async (admin: Admin, topics: Topics): Promise<Array<Target>> => {
  const targets: Array<Target> = []
  for (const stream of streams) {
    for (const o of await admin.fetchTopicOffsets(topics[stream])) {
      const high = Number(o.high)
      if (high > Number(o.low)) targets.push({ stream, topic: topics[stream], partition: o.partition, high, entries: [], done: false })
    }
  }
  return targets.sort((a, b) => streams.indexOf(a.stream) - streams.indexOf(b.stream) || a.partition - b.partition)
}

export const readTopics = async (kafka: Kafka, admin: Admin, topics: Topics, s: ReaderSettings): Promise<Array<LogEntry>> => {
  const targets = await targetsOf(admin, topics)
  if (targets.length === 0) return []
  const byKey = new Map(targets.map((t) => [`${t.topic}:${t.partition}`, t]))
  const groupId = `eddy.${s.app}.reader.${randomUUID()}`
  const consumer = kafka.consumer({
    groupId,
    allowAutoTopicCreation: false,
    maxBytesPerPartition: s.maxFetchBytes,
    maxBytes: s.maxFetchBytes * 2,
    maxWaitTimeInMs: 100,
    retry: { retries: 3, initialRetryTime: 100, maxRetryTime: 1000, restartOnFailure: async () => false },
  })
  let timer: NodeJS.Timeout | undefined
  try {
    await consumer.connect()
    await consumer.subscribe({ topics: [...new Set(targets.map((t) => t.topic))], fromBeginning: true })
    await new Promise<void>((resolve, reject) => {
      timer = setTimeout(() => {
        const left = targets.filter((t) => !t.done).map((t) => `${t.topic}[${t.partition}] at ${t.entries.length} records, up to offset ${t.high}`)
        reject(new Error(`reading the log timed out after ${s.timeoutMs} ms (${left.join("; ")})`))
      }, s.timeoutMs)
      consumer.on(consumer.events.CRASH, (event) => reject(event.payload.error))
      consumer
        .run({
          autoCommit: false,
          eachBatch: async ({ batch }) => {
            const t = byKey.get(`${batch.topic}:${batch.partition}`)
            if (t === undefined || t.done) return
            for (const m of batch.messages) {
              const offset = Number(m.offset)
              if (offset >= t.high) break
              // A refetch after a rebalance may repeat records already taken.
              const last = t.entries.at(-1)
              if (last !== undefined && offset <= last.position.offset) continue
              t.entries.push({ stream: t.stream, position: { part: t.partition, offset }, payload: new Uint8Array(m.value ?? []) })
              if (offset === t.high - 1) t.done = true
            }
            if (targets.every((x) => x.done)) resolve()
          },
        })
        .catch(reject)
    })
  } finally {
    clearTimeout(timer)
    await consumer.disconnect().catch(() => undefined)
    await admin.deleteGroups([groupId]).catch(() => undefined)
  }
  return targets.flatMap((t) => t.entries)
}

/**
 * readAll for the Kafka log: every record of the log's partitions from the earliest retained offset up to the high
 * watermark each partition had when the read began (records appended during the read are not returned). Fetch
 * requests go straight to the partitions' leaders (kafkajsFetch.ts): no consumer group to join and delete, so a
 * recovery does not wait for a group to form (3 s by default on a broker left at group.initial.rebalance.delay.ms).
 */
import type { Admin, Kafka } from "kafkajs"
import type { LogEntry, LogStream } from "../ports/Log.ts"
import { openFetchClient, takeRecords, type FetchClient } from "../../kafkajs/kafkajsFetch.ts"
import type { Topics } from "./kafkaTopics.ts"

interface Target {
  readonly stream: LogStream
  readonly topic: string
  readonly partition: number
  /** Offset after the last record to read. */
  readonly high: number
  /** Offset to fetch from next. */
  position: number
  readonly entries: Array<LogEntry>
}

export interface ReaderSettings {
  readonly maxFetchBytes: number
  readonly timeoutMs: number
}

const streams: ReadonlyArray<LogStream> = ["wal", "control"]

/** Partitions with records, and where each read must start and stop. */
const targetsOf = async (admin: Admin, topics: Topics): Promise<Array<Target>> => {
  const targets: Array<Target> = []
  for (const stream of streams) {
    for (const o of await admin.fetchTopicOffsets(topics[stream])) {
      const high = Number(o.high)
      const low = Number(o.low)
      if (high > low) targets.push({ stream, topic: topics[stream], partition: o.partition, high, position: low, entries: [] })
    }
  }
  return targets.sort((a, b) => streams.indexOf(a.stream) - streams.indexOf(b.stream) || a.partition - b.partition)
}

/** One Fetch to `nodeId` for the targets it leads; the records below each one's end are taken. */
const fetchOnce = async (client: FetchClient, nodeId: string, led: ReadonlyArray<Target>, s: ReaderSettings): Promise<void> => {
  const byTopic = new Map<string, Target[]>()
  for (const t of led) byTopic.set(t.topic, [...(byTopic.get(t.topic) ?? []), t])
  const topics = [...byTopic].map(([topic, ts]) => ({ topic, partitions: ts.map((t) => ({ partition: t.partition, fetchOffset: t.position })) }))
  const asked = new Map(led.map((t) => [`${t.topic}:${t.partition}`, t.position]))
  for (const answer of await client.fetch(nodeId, { topics, maxWaitMs: 100, maxBytesPerPartition: s.maxFetchBytes })) {
    for (const pd of answer.partitions) {
      const key = `${answer.topic}:${pd.partition}`
      const t = led.find((x) => x.topic === answer.topic && x.partition === pd.partition)
      const from = asked.get(key)
      if (t === undefined || from === undefined || t.position !== from) continue
      const taken = takeRecords(pd, from)
      for (const m of taken.messages) {
        const offset = Number(m.offset)
        if (offset >= t.high) break
        t.entries.push({ stream: t.stream, position: { part: t.partition, offset }, payload: new Uint8Array(m.value ?? []) })
      }
      t.position = Math.min(taken.next, t.high)
    }
  }
}

export const readTopics = async (kafka: Kafka, admin: Admin, topics: Topics, s: ReaderSettings): Promise<Array<LogEntry>> => {
  const targets = await targetsOf(admin, topics)
  if (targets.length === 0) return []
  const deadline = Date.now() + s.timeoutMs
  const client = await openFetchClient(kafka, [...new Set(targets.map((t) => t.topic))])
  try {
    for (;;) {
      const left = targets.filter((t) => t.position < t.high)
      if (left.length === 0) break
      if (Date.now() > deadline) {
        const where = left.map((t) => `${t.topic}[${t.partition}] at ${t.entries.length} records, up to offset ${t.high}`)
        throw new Error(`reading the log timed out after ${s.timeoutMs} ms (${where.join("; ")})`)
      }
      try {
        const byLeader = new Map<string, Target[]>()
        for (const topic of new Set(left.map((t) => t.topic))) {
          const ofTopic = left.filter((t) => t.topic === topic)
          for (const [nodeId, partitions] of client.leaders(topic, ofTopic.map((t) => t.partition))) {
            byLeader.set(nodeId, [...(byLeader.get(nodeId) ?? []), ...ofTopic.filter((t) => partitions.includes(t.partition))])
          }
        }
        if ([...byLeader.values()].reduce((n, ts) => n + ts.length, 0) < left.length) throw Object.assign(new Error("a log partition has no known leader"), { retriable: true })
        await Promise.all([...byLeader].map(([nodeId, led]) => fetchOnce(client, nodeId, led, s)))
      } catch (cause) {
        // A leader that moved or a broker that is away: fresh metadata, and again until the deadline.
        if ((cause as { retriable?: unknown }).retriable !== true) throw cause
        await new Promise((r) => setTimeout(r, 200))
        await client.refresh().catch(() => undefined)
      }
    }
  } finally {
    await client.disconnect().catch(() => undefined)
  }
  return targets.flatMap((t) => t.entries)
}

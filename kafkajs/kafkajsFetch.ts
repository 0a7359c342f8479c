/**
 * Fetch requests without a kafkajs consumer: the ingress assigns partitions itself and keeps its positions in the
 * epoch records, so it needs no consumer group, only kafkajs's connections, metadata and Fetch protocol (its
 * cluster: kafkajsCluster.ts). Records come out of kafkajs's decoder (ours, kafkajsDecoding.ts) and
 * are filtered here as its consumer would: below the fetched offset, aborted (kafkajsAbortFix.ts's filter), control.
 */
import type { Kafka } from "kafkajs"
import { connectCluster, READ_COMMITTED } from "./kafkajsCluster.ts"
import { filterAbortedMessages } from "./kafkajsAbortFix.ts"

/** A record as kafkajs's fetch response decodes it (offsets and timestamps as decimal strings). */
export interface FetchedMessage {
  readonly offset: string
  readonly timestamp: string
  readonly key: Buffer | null
  readonly value: Buffer | null
  readonly headers?: Readonly<Record<string, Buffer | string | ReadonlyArray<Buffer | string> | undefined>>
  readonly isControlRecord?: boolean
  readonly batchContext: { readonly producerId: string; readonly inTransaction: boolean; readonly firstOffset?: string; readonly lastOffsetDelta?: number }
}

export interface FetchedPartition {
  readonly partition: number
  readonly highWatermark: string
  readonly abortedTransactions?: ReadonlyArray<{ readonly producerId: string; readonly firstOffset: string }>
  readonly messages: ReadonlyArray<FetchedMessage>
}

interface FetchResponse {
  readonly responses: ReadonlyArray<{ readonly topicName: string; readonly partitions: ReadonlyArray<FetchedPartition> }>
}

export interface FetchRequest {
  readonly topics: ReadonlyArray<{ readonly topic: string; readonly partitions: ReadonlyArray<{ readonly partition: number; readonly fetchOffset: number }> }>
  readonly maxWaitMs: number
  readonly maxBytesPerPartition: number
}

export interface FetchedTopic {
  readonly topic: string
  readonly partitions: ReadonlyArray<FetchedPartition>
}

/** Connections to the brokers that lead some topics' partitions, and read_committed Fetch requests to them. */
export interface FetchClient {
  /** The partitions' leaders from the metadata held (refreshed by `refresh`): node id → partitions. */
  leaders(topic: string, partitions: ReadonlyArray<number>): ReadonlyMap<string, ReadonlyArray<number>>
  /** One Fetch to one broker; throws kafkajs's errors (a partition's error code fails the whole request). */
  fetch(nodeId: string, request: FetchRequest): Promise<ReadonlyArray<FetchedTopic>>
  refresh(): Promise<void>
  disconnect(): Promise<void>
}

export const openFetchClient = async (kafka: Kafka, topics: ReadonlyArray<string>): Promise<FetchClient> => {
  const cluster = await connectCluster(kafka, topics)
  return {
    leaders: (topic, partitions) => new Map(Object.entries(cluster.findLeaderForPartitions(topic, partitions))),
    fetch: async (nodeId, r) => {
      const broker = await cluster.findBroker({ nodeId })
      const count = r.topics.reduce((n, t) => n + t.partitions.length, 0)
      const response = (await broker.fetch({
        isolationLevel: READ_COMMITTED,
        maxWaitTime: r.maxWaitMs,
        minBytes: 1,
        maxBytes: r.maxBytesPerPartition * Math.max(2, count),
        topics: r.topics.map((t) => ({ topic: t.topic, partitions: t.partitions.map((p) => ({ partition: p.partition, fetchOffset: String(p.fetchOffset), maxBytes: r.maxBytesPerPartition })) })),
      })) as FetchResponse
      return response.responses.map((t) => ({ topic: t.topicName, partitions: t.partitions }))
    },
    refresh: () => cluster.refreshMetadata(),
    disconnect: () => cluster.disconnect(),
  }
}

/** A partition's fetched records as a reader sees them, and the offset to fetch from next. */
export interface TakenRecords {
  readonly messages: ReadonlyArray<FetchedMessage>
  /** Every offset below this was fetched (records, control records, aborted ones); `from` when nothing came. */
  readonly next: number
}

/** The last offset of the record batch `m` came in: compaction can leave a batch's last offsets without records. */
const batchEnd = (m: FetchedMessage): number => {
  const { firstOffset, lastOffsetDelta } = m.batchContext
  const own = Number(m.offset)
  return firstOffset === undefined || lastOffsetDelta === undefined ? own : Math.max(own, Number(firstOffset) + lastOffsetDelta)
}

/**
 * What a read_committed reader takes from one partition of a Fetch response asked from `from`: records at or after
 * it (a response starts at the first record of the batch holding `from`), without aborted transactions' records and
 * control records. The position moves past the last batch returned (kafkajs drops a batch the response cut short),
 * so a commit marker or compacted records at its end are not asked for again.
 */
export const takeRecords = (p: FetchedPartition, from: number): TakenRecords => {
  const all = p.messages
  if (all.length === 0) return { messages: [], next: from }
  const next = Math.max(from, batchEnd(all[all.length - 1]!) + 1)
  let first = 0
  while (first < all.length && Number(all[first]!.offset) < from) first++
  if (first === all.length) return { messages: [], next }
  const within = first === 0 ? all : all.slice(first)
  const kept = filterAbortedMessages({ messages: within as FetchedMessage[], abortedTransactions: p.abortedTransactions ?? [] }) as FetchedMessage[]
  const messages = kept.some((m) => m.isControlRecord === true) ? kept.filter((m) => m.isControlRecord !== true) : kept
  return { messages, next }
}

/**
 * A reader's one round on some partitions of `topic`: one Fetch per partition leader (read_committed, a long poll of
 * up to `maxWaitMs`), from each partition's position, and what it takes there (takeRecords). Throws if a partition's
 * leader is unknown or a Fetch fails (the caller reconnects and tries again).
 */
export const fetchTaken = async (
  client: FetchClient,
  topic: string,
  positions: ReadonlyMap<number, number>,
  maxWaitMs: number,
  maxBytesPerPartition: number,
): Promise<Map<number, TakenRecords>> => {
  const leaders = client.leaders(topic, [...positions.keys()])
  let led = 0
  for (const ps of leaders.values()) led += ps.length
  if (led < positions.size) throw new Error(`no leader known for some partitions of ${topic}`)
  const out = new Map<number, TakenRecords>()
  await Promise.all(
    [...leaders].map(async ([node, partitions]) => {
      const topics = [{ topic, partitions: partitions.map((partition) => ({ partition, fetchOffset: positions.get(partition)! })) }]
      for (const t of await client.fetch(node, { topics, maxWaitMs, maxBytesPerPartition })) {
        for (const p of t.partitions) {
          const from = positions.get(p.partition)
          if (from !== undefined) out.set(p.partition, takeRecords(p, from))
        }
      }
    }),
  )
  return out
}

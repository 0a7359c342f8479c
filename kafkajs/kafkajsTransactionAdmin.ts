/**
 * Three Kafka admin requests kafkajs 2.2 does not have, the ones Kafka's own `kafka-transactions.sh` uses to find and
 * end a hanging transaction (KIP-664): DescribeTransactions (what the transaction coordinator holds for a
 * transactional id), DescribeProducers (the producers a partition knows, and the first offset of each one's open
 * transaction) and WriteTxnMarkers (a COMMIT or ABORT marker written to partitions, as the coordinator would), plus
 * read_committed end offsets (the last stable offset). Sent over kafkajs's connections (kafkajsCluster.ts); the
 * encodings follow Kafka's message schemas (clients/src/main/resources/common/message/*.json). All three are
 * "flexible" versions: compact strings and arrays, tagged fields. kafkajs writes request header v1, so the body
 * starts with the header's empty tagged fields (header v2 = v1 + tagged fields); kafkajs strips only the response's
 * correlation id, so a response body starts with the response header's tagged fields.
 */
import { createRequire } from "node:module"
import type { Kafka } from "kafkajs"
import { connectCluster, type Cluster, type ProtocolRequest } from "./kafkajsCluster.ts"
import { forgetTxnCoordinators } from "./kafkajsTransactions.ts"

const require = createRequire(import.meta.url)

interface Encoder {
  writeInt8(v: number): Encoder
  writeInt16(v: number): Encoder
  writeInt32(v: number): Encoder
  writeInt64(v: number | string): Encoder
  writeBoolean(v: boolean): Encoder
  writeUVarInt(v: number): Encoder
  writeUVarIntString(v: string | null): Encoder
  readonly buffer: Buffer
}
interface Decoder {
  readInt16(): number
  readInt32(): number
  readInt64(): bigint | number | string
  readUVarInt(): number
  readUVarIntString(): string | null
  readTaggedFields(): unknown
}
const EncoderClass = require("kafkajs/src/protocol/encoder.js") as new () => Encoder
const DecoderClass = require("kafkajs/src/protocol/decoder.js") as new (b: Buffer) => Decoder
const { createErrorFromCode } = require("kafkajs/src/protocol/error.js") as { createErrorFromCode(code: number): Error }
const TRANSACTION_COORDINATOR = (require("kafkajs/src/protocol/coordinatorTypes.js") as { TRANSACTION: number }).TRANSACTION

const API = { WriteTxnMarkers: 27, DescribeProducers: 61, DescribeTransactions: 65 } as const

const compactArray = <T>(e: Encoder, xs: ReadonlyArray<T>, write: (e: Encoder, x: T) => void): void => {
  e.writeUVarInt(xs.length + 1)
  for (const x of xs) write(e, x)
}
const readCompactArray = <T>(d: Decoder, read: (d: Decoder) => T): T[] => {
  const n = d.readUVarInt()
  const out: T[] = []
  for (let i = 0; i < n - 1; i++) out.push(read(d))
  return out
}
const int64 = (v: bigint | number | string): number => Number(v)
const NO_TAGS = 0

const request = <A>(apiKey: number, apiName: string, write: (e: Encoder) => void, read: (d: Decoder) => A): ProtocolRequest<A> => ({
  request: {
    apiKey,
    apiVersion: apiKey === API.WriteTxnMarkers ? 1 : 0,
    apiName,
    encode: async () => {
      const e = new EncoderClass()
      e.writeUVarInt(NO_TAGS) // request header v2's tagged fields
      write(e)
      e.writeUVarInt(NO_TAGS)
      return e
    },
  },
  response: {
    decode: async (payload) => {
      const d = new DecoderClass(payload)
      d.readTaggedFields() // response header v1's tagged fields
      return read(d)
    },
    parse: async (a) => a,
  },
})

export type TransactionStateName = "Empty" | "Ongoing" | "PrepareCommit" | "PrepareAbort" | "CompleteCommit" | "CompleteAbort" | "PrepareEpochFence" | "Dead" | string

/** What a transaction coordinator holds for a transactional id (undefined: it knows none). */
export interface CoordinatorTransaction {
  readonly transactionalId: string
  readonly state: TransactionStateName
  readonly producerId: number
  readonly producerEpoch: number
}

/** A producer a partition knows, with its open transaction's first offset (-1: none open). */
export interface PartitionProducer {
  readonly producerId: number
  readonly producerEpoch: number
  readonly lastTimestamp: number
  readonly coordinatorEpoch: number
  readonly currentTxnStartOffset: number
}

export interface TopicPartitions {
  readonly topic: string
  readonly partitions: ReadonlyArray<number>
}

export interface TransactionAdmin {
  /** The coordinators' states of these transactional ids (ids a coordinator does not know are left out). */
  describeTransactions(ids: ReadonlyArray<string>): Promise<ReadonlyArray<CoordinatorTransaction>>
  /** Per partition, the producers it knows. */
  describeProducers(topics: ReadonlyArray<TopicPartitions>): Promise<ReadonlyArray<{ readonly topic: string; readonly partition: number; readonly producers: ReadonlyArray<PartitionProducer> }>>
  /** Writes one producer's COMMIT (commit true) or ABORT marker to partitions, as its transaction coordinator would. */
  writeMarker(marker: { readonly producerId: number; readonly producerEpoch: number; readonly coordinatorEpoch: number; readonly commit: boolean; readonly topic: string; readonly partition: number }): Promise<void>
  /** Per partition, its last stable offset (where read_committed readers stop). */
  lastStableOffsets(topics: ReadonlyArray<TopicPartitions>): Promise<ReadonlyMap<string, number>>
  disconnect(): Promise<void>
}

/** A partition's key in lastStableOffsets' answer. */
export const partitionKey = (topic: string, partition: number): string => `${topic}\u0000${partition}`

const fail = (code: number, what: string): void => {
  if (code === 0) return
  const err = createErrorFromCode(code)
  err.message = `${what}: ${err.message}`
  throw err
}

/** The leaders of some partitions: node id → the partitions (per topic) it leads. */
const byLeader = (cluster: Cluster, topics: ReadonlyArray<TopicPartitions>): Map<string, TopicPartitions[]> => {
  const out = new Map<string, TopicPartitions[]>()
  for (const t of topics) {
    for (const [node, partitions] of Object.entries(cluster.findLeaderForPartitions(t.topic, t.partitions))) {
      let l = out.get(node)
      if (l === undefined) out.set(node, (l = []))
      l.push({ topic: t.topic, partitions })
    }
  }
  return out
}

/** Requests on one connected cluster (openTransactionAdmin reconnects after a failure). */
const requestsOn = (cluster: Cluster): Omit<TransactionAdmin, "disconnect"> => ({
  describeTransactions: async (ids) => {
    const out: CoordinatorTransaction[] = []
    for (const id of ids) {
      const coordinator = await cluster.findGroupCoordinator({ groupId: id, coordinatorType: TRANSACTION_COORDINATOR })
      const states = await coordinator.connectionPool.send(
        request(
          API.DescribeTransactions,
          "DescribeTransactions",
          (e) => compactArray(e, [id], (e, x) => e.writeUVarIntString(x)),
          (d) => {
            d.readInt32() // throttle time
            return readCompactArray(d, (d) => {
              const errorCode = d.readInt16()
              const transactionalId = d.readUVarIntString() ?? ""
              const state = d.readUVarIntString() ?? ""
              d.readInt32() // timeout
              d.readInt64() // start time
              const producerId = int64(d.readInt64())
              const producerEpoch = d.readInt16()
              readCompactArray(d, (d) => {
                d.readUVarIntString()
                readCompactArray(d, (d) => d.readInt32())
                d.readTaggedFields()
              })
              d.readTaggedFields()
              return { errorCode, transactionalId, state, producerId, producerEpoch }
            })
          },
        ),
      )
      for (const s of states) {
        if (s.errorCode === TRANSACTIONAL_ID_NOT_FOUND) continue
        fail(s.errorCode, `DescribeTransactions(${s.transactionalId})`)
        out.push({ transactionalId: s.transactionalId, state: s.state, producerId: s.producerId, producerEpoch: s.producerEpoch })
      }
    }
    return out
  },
  describeProducers: async (topics) => {
    const out: Array<{ topic: string; partition: number; producers: PartitionProducer[] }> = []
    for (const [node, led] of byLeader(cluster, topics)) {
      const broker = await cluster.findBroker({ nodeId: node })
      const answer = await broker.connectionPool.send(
        request(
          API.DescribeProducers,
          "DescribeProducers",
          (e) =>
            compactArray(e, led, (e, t) => {
              e.writeUVarIntString(t.topic)
              compactArray(e, t.partitions, (e, p) => e.writeInt32(p))
              e.writeUVarInt(NO_TAGS)
            }),
          (d) => {
            d.readInt32() // throttle time
            return readCompactArray(d, (d) => {
              const topic = d.readUVarIntString() ?? ""
              const partitions = readCompactArray(d, (d) => {
                const partition = d.readInt32()
                const errorCode = d.readInt16()
                const errorMessage = d.readUVarIntString()
                const producers = readCompactArray(d, (d): PartitionProducer => {
                  const producerId = int64(d.readInt64())
                  const producerEpoch = d.readInt32()
                  d.readInt32() // last sequence
                  const lastTimestamp = int64(d.readInt64())
                  const coordinatorEpoch = d.readInt32()
                  const currentTxnStartOffset = int64(d.readInt64())
                  d.readTaggedFields()
                  return { producerId, producerEpoch, lastTimestamp, coordinatorEpoch, currentTxnStartOffset }
                })
                d.readTaggedFields()
                return { partition, errorCode, errorMessage, producers }
              })
              d.readTaggedFields()
              return { topic, partitions }
            })
          },
        ),
      )
      for (const t of answer) {
        for (const p of t.partitions) {
          fail(p.errorCode, `DescribeProducers(${t.topic}/${p.partition})${p.errorMessage === null ? "" : ` ${p.errorMessage}`}`)
          out.push({ topic: t.topic, partition: p.partition, producers: p.producers })
        }
      }
    }
    return out
  },
  writeMarker: async (m) => {
    const leader = byLeader(cluster, [{ topic: m.topic, partitions: [m.partition] }])
    const node = [...leader.keys()][0]
    if (node === undefined) throw new Error(`WriteTxnMarkers: no leader known for ${m.topic}/${m.partition}`)
    const broker = await cluster.findBroker({ nodeId: node })
    const answer = await broker.connectionPool.send(
      request(
        API.WriteTxnMarkers,
        "WriteTxnMarkers",
        (e) =>
          compactArray(e, [m], (e, m) => {
            e.writeInt64(m.producerId).writeInt16(m.producerEpoch).writeBoolean(m.commit)
            compactArray(e, [m.topic], (e, topic) => {
              e.writeUVarIntString(topic)
              compactArray(e, [m.partition], (e, p) => e.writeInt32(p))
              e.writeUVarInt(NO_TAGS)
            })
            e.writeInt32(m.coordinatorEpoch)
            e.writeUVarInt(NO_TAGS)
          }),
        (d) =>
          readCompactArray(d, (d) => {
            d.readInt64() // producer id
            const topics = readCompactArray(d, (d) => {
              const topic = d.readUVarIntString() ?? ""
              const partitions = readCompactArray(d, (d) => {
                const partition = d.readInt32()
                const errorCode = d.readInt16()
                d.readTaggedFields()
                return { partition, errorCode }
              })
              d.readTaggedFields()
              return { topic, partitions }
            })
            d.readTaggedFields()
            return topics
          }),
      ),
    )
    for (const t of answer.flat()) for (const p of t.partitions) fail(p.errorCode, `WriteTxnMarkers(${t.topic}/${p.partition})`)
  },
  lastStableOffsets: async (topics) => {
    const answer = await cluster.fetchTopicsOffset(topics.map((t) => ({ topic: t.topic, partitions: t.partitions.map((partition) => ({ partition })), fromBeginning: false })))
    const out = new Map<string, number>()
    for (const t of answer) for (const p of t.partitions) out.set(partitionKey(t.topic, p.partition), Number(p.offset))
    return out
  },
})

/** How long a request is retried while it fails with a retriable error (the broker away or still loading). */
const RETRY_MS = 15_000

/**
 * The admin requests, each retried while it fails with a retriable error (a coordinator loading or moved, a leader
 * moved, the broker away: common right after a broker restart) on a fresh cluster (kafkajs's pool can keep a dead
 * socket after the broker went away), for up to RETRY_MS.
 */
export const openTransactionAdmin = async (kafka: Kafka, topics: ReadonlyArray<string>): Promise<TransactionAdmin> => {
  let cluster: Cluster | undefined = await connectCluster(kafka, topics)
  const retried = async <A>(f: (r: Omit<TransactionAdmin, "disconnect">) => Promise<A>): Promise<A> => {
    const until = Date.now() + RETRY_MS
    for (let attempt = 1; ; attempt++) {
      try {
        cluster ??= await connectCluster(kafka, topics)
        return await f(requestsOn(cluster))
      } catch (err) {
        if ((err as { retriable?: unknown }).retriable !== true || Date.now() >= until) throw err
        forgetTxnCoordinators()
        await cluster?.disconnect().catch(() => undefined)
        cluster = undefined
        await new Promise((r) => setTimeout(r, Math.min(1_000, 50 * attempt)))
      }
    }
  }
  return {
    describeTransactions: (ids) => retried((r) => r.describeTransactions(ids)),
    describeProducers: (topics) => retried((r) => r.describeProducers(topics)),
    writeMarker: (m) => retried((r) => r.writeMarker(m)),
    lastStableOffsets: (topics) => retried((r) => r.lastStableOffsets(topics)),
    disconnect: async () => {
      await cluster?.disconnect()
      cluster = undefined
    },
  }
}

/** DescribeTransactions' answer for an id its coordinator has no state of. */
const TRANSACTIONAL_ID_NOT_FOUND = 105

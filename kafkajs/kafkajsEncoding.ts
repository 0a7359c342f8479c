/**
 * Three of kafkajs 2.2's produce-path internals replaced by equivalents that write the same bytes with less work (the
 * Kafka egress's CPU on the engine's thread; profiled at 20k records/s, kafkajs was ~24% of the Eddy process, most
 * of it here and in the garbage it made):
 *
 * - `src/producer/groupMessagesPerPartition.js` copied each partition's array for every message (`[...current,
 *   message]`): quadratic in the records per request (why a 20k-record request encoded at a third of a 4k one's
 *   rate). Here: one push per message, the same object of arrays.
 * - `src/protocol/recordBatch/record/v0/index.js` encoded each record with a fresh 512-byte zeroed Encoder per record
 *   and per header, a `Buffer.from([...])` per varint and Long arithmetic for the timestamp delta. Here: the exact
 *   size is computed first and the record written into one buffer of that size. Inputs this fast path does not
 *   cover (a timestamp delta outside ±2^30, key or value neither string nor Buffer nor null, header values neither
 *   string nor Buffer) go to kafkajs's own encoder, which also keeps its errors for bad input.
 * - `src/protocol/requests/produce/v3/request.js` (also used by versions 4-7) copied every message into a new object
 *   (`{ ...message, offsetDelta, timestampDelta }`: a fifth of the egress thread's busy time at 24k records/s live),
 *   then built each partition's record batch through four growing, zero-filled Encoders. Here, when the request is
 *   uncompressed and no message carries its own timestamp: each record's bytes as above, then the batch written once
 *   into a buffer of its exact size. Anything else goes to kafkajs's encoding of the whole request.
 *
 * test/unit/kafkajsEncoding.test.ts compares all three against kafkajs's originals byte for byte. Loaded by
 * kafkajsAbortFix.ts (imported everywhere before "kafkajs"): the modules must be replaced before kafkajs's producer
 * and produce request modules require them.
 */
import { createRequire } from "node:module"
import { assertNotLoaded, replaceModule } from "./kafkajsModules.ts"

const require = createRequire(import.meta.url)

interface EncoderLike {
  buf: Buffer
  offset: number
  readonly buffer: Buffer
}
type EncoderClass = { new (initialSize?: number): EncoderLike; prototype: EncoderLike }
export interface RecordInput {
  readonly offsetDelta?: number
  readonly timestampDelta?: unknown
  readonly key?: unknown
  readonly value?: unknown
  readonly headers?: Record<string, unknown>
}
type RecordEncoder = (record: RecordInput) => EncoderLike
type Partitioner = (args: { topic: string; partitionMetadata: unknown; message: unknown }) => number
type GroupArgs = { topic: string; partitionMetadata: ReadonlyArray<unknown>; messages: ReadonlyArray<unknown>; partitioner: Partitioner }
type Group = (args: GroupArgs) => Record<string, unknown[]>

const recordPath = require.resolve("kafkajs/src/protocol/recordBatch/record/v0/index.js")
const groupPath = require.resolve("kafkajs/src/producer/groupMessagesPerPartition.js")
const dependents = [require.resolve("kafkajs/src/protocol/requests/produce/v3/request.js"), require.resolve("kafkajs/src/producer/sendMessages.js")]
const Encoder = require("kafkajs/src/protocol/encoder.js") as EncoderClass
/** The Encoder's writers used for a produce request's outer parts. */
interface EncoderWriter extends EncoderLike {
  writeString(v: string | null): EncoderWriter
  writeInt16(v: number): EncoderWriter
  writeInt32(v: number): EncoderWriter
  writeArray(v: ReadonlyArray<EncoderLike>): EncoderWriter
}
const EncoderApi = Encoder as unknown as new () => EncoderWriter

/** kafkajs's own record encoder and grouping (tests compare against them). */
export const originalRecord = require(recordPath) as RecordEncoder & { __eddy?: true }
export const originalGroupMessagesPerPartition = require(groupPath) as Group & { __eddy?: true }
/** kafkajs's v3 produce request, loaded once the record module is replaced (tests compare against it). */
export let originalProduceRequest: ProduceRequestFactory | undefined

const MSB = 0x80
const LOW = 0x7f
const UINT32_HIGH = 0xffffff80
const zigZag = (v: number): number => (v << 1) ^ (v >> 31)
const sizeOfVarInt = (v: number): number => {
  let z = zigZag(v)
  let n = 1
  while ((z & UINT32_HIGH) !== 0) {
    n++
    z >>>= 7
  }
  return n
}
const writeVarInt = (buf: Buffer, at: number, v: number): number => {
  let z = zigZag(v)
  while ((z & UINT32_HIGH) !== 0) {
    buf[at++] = (z & LOW) | MSB
    z >>>= 7
  }
  buf[at++] = z & LOW
  return at
}
const byteLength = (v: string | Buffer): number => (typeof v === "string" ? Buffer.byteLength(v, "utf8") : v.length)
const writeBytes = (buf: Buffer, at: number, v: string | Buffer | null | undefined, size: number): number => {
  if (v === null || v === undefined) return writeVarInt(buf, at, -1)
  at = writeVarInt(buf, at, size)
  if (typeof v === "string") buf.write(v, at, size, "utf8")
  else v.copy(buf, at)
  return at + size
}
const isBytes = (v: unknown): v is string | Buffer | null | undefined => v === null || v === undefined || typeof v === "string" || Buffer.isBuffer(v)
const SMALL = 2 ** 30

/**
 * A record's v0 bytes (its length varint first), as kafkajs writes them; undefined for inputs the fast path does not
 * cover (see the module comment), which kafkajs's own encoder must take.
 */
const recordBytes = (offsetDelta: unknown, timestampDelta: unknown, key: unknown, value: unknown, headers: Record<string, unknown>): Buffer | undefined => {
  if (typeof timestampDelta !== "number" || !Number.isInteger(timestampDelta) || timestampDelta < -SMALL || timestampDelta >= SMALL || !isBytes(key) || !isBytes(value) || typeof offsetDelta !== "number") {
    return undefined
  }
  const hk: string[] = []
  const hv: Array<string | Buffer> = []
  for (const k of Object.keys(headers)) {
    const v = headers[k]
    if (Array.isArray(v)) {
      for (const x of v as unknown[]) {
        if (typeof x !== "string" && !Buffer.isBuffer(x)) return undefined
        hk.push(k)
        hv.push(x)
      }
    } else {
      if (typeof v !== "string" && !Buffer.isBuffer(v)) return undefined
      hk.push(k)
      hv.push(v)
    }
  }
  const keySize = key === null || key === undefined ? -1 : byteLength(key)
  const valueSize = value === null || value === undefined ? -1 : byteLength(value)
  let body = 1 + sizeOfVarInt(timestampDelta) + sizeOfVarInt(offsetDelta) + (keySize < 0 ? 1 : sizeOfVarInt(keySize) + keySize) + (valueSize < 0 ? 1 : sizeOfVarInt(valueSize) + valueSize)
  body += sizeOfVarInt(hk.length)
  const hkSize: number[] = []
  const hvSize: number[] = []
  for (let i = 0; i < hk.length; i++) {
    const ks = Buffer.byteLength(hk[i]!, "utf8")
    const vs = byteLength(hv[i]!)
    hkSize.push(ks)
    hvSize.push(vs)
    body += sizeOfVarInt(ks) + ks + sizeOfVarInt(vs) + vs
  }
  const buf = Buffer.allocUnsafe(sizeOfVarInt(body) + body)
  let at = writeVarInt(buf, 0, body)
  buf[at++] = 0
  at = writeVarInt(buf, at, timestampDelta)
  at = writeVarInt(buf, at, offsetDelta)
  at = writeBytes(buf, at, key, keySize)
  at = writeBytes(buf, at, value, valueSize)
  at = writeVarInt(buf, at, hk.length)
  for (let i = 0; i < hk.length; i++) {
    at = writeVarInt(buf, at, hkSize[i]!)
    buf.write(hk[i]!, at, hkSize[i]!, "utf8")
    at += hkSize[i]!
    at = writeBytes(buf, at, hv[i], hvSize[i]!)
  }
  if (at !== buf.length) throw new Error(`assertion: Kafka record encoded to ${at} bytes, expected ${buf.length}`)
  return buf
}

/** An Encoder holding exactly these bytes (kafkajs reads .buf and .buffer, i.e. buf[0, offset)). */
const encoderOf = (buf: Buffer): EncoderLike => {
  const e = Object.create(Encoder.prototype) as EncoderLike
  e.buf = buf
  e.offset = buf.length
  return e
}

/** kafkajs's record v0 encoding (see the module comment), the same bytes. */
export const fastRecord: RecordEncoder = (record) => {
  const { offsetDelta = 0, timestampDelta = 0, key, value, headers = {} } = record
  const buf = recordBytes(offsetDelta, timestampDelta, key, value, headers)
  return buf === undefined ? originalRecord(record) : encoderOf(buf)
}

/** kafkajs's groupMessagesPerPartition in linear time: the same object of per-partition arrays, in message order. */
export const fastGroupMessagesPerPartition: Group = ({ topic, partitionMetadata, messages, partitioner }) => {
  const result: Record<string, unknown[]> = {}
  if (partitionMetadata.length === 0) return result
  for (const message of messages) {
    const partition = partitioner({ topic, partitionMetadata, message })
    const current = result[partition]
    if (current === undefined) result[partition] = [message]
    else current.push(message)
  }
  return result
}

/** A message as kafkajs's producer hands it to the produce request (the fields the encoding reads). */
interface MessageLike {
  readonly key?: unknown
  readonly value?: unknown
  readonly headers?: Record<string, unknown>
  readonly timestamp?: unknown
}
export interface ProduceArgs {
  readonly acks: number
  readonly timeout: number
  readonly transactionalId?: string | null
  readonly producerId?: unknown
  readonly producerEpoch?: number
  readonly compression?: number
  readonly topicData: ReadonlyArray<{
    readonly topic: string
    readonly partitions: ReadonlyArray<{ readonly partition: number; readonly firstSequence?: number; readonly messages: ReadonlyArray<MessageLike> }>
  }>
}
interface ProduceRequest {
  readonly apiKey: number
  readonly apiVersion: number
  readonly apiName: string
  readonly expectResponse: () => boolean
  readonly encode: () => Promise<EncoderLike>
}
type ProduceRequestFactory = (args: ProduceArgs) => ProduceRequest

interface LongLike {
  getHighBits(): number
  getLowBits(): number
}
const Long = require("kafkajs/src/utils/long.js") as { fromValue(v: unknown): LongLike; fromInt(v: number): LongLike }
const crc32C = require("kafkajs/src/protocol/recordBatch/crc32C/index.js") as (b: Buffer) => number
const COMPRESSION_NONE = (require("kafkajs/src/protocol/message/compression/index.js") as { Types: { None: number } }).Types.None
const requestPath = require.resolve("kafkajs/src/protocol/requests/produce/v3/request.js")
const requestDependents = [4, 5, 6, 7].map((v) => require.resolve(`kafkajs/src/protocol/requests/produce/v${v}/request.js`))

/** Bytes of a partition's entry before its records: partition, size, first offset, length, then the batch header. */
const ENTRY_HEADER = 69
/** Where the batch's CRC goes, and where what it covers (attributes to the end) starts. */
const CRC_AT = 25
const CRC_FROM = 29
const TRANSACTIONAL = 16

const writeLong = (buf: Buffer, at: number, v: LongLike): void => {
  buf.writeInt32BE(v.getHighBits(), at)
  buf.writeInt32BE(v.getLowBits(), at + 4)
}

/**
 * One partition's entry of a v3 produce request (partition, record set size, record batch v2), uncompressed, in a
 * buffer of its exact size; undefined if kafkajs's encoding must take it (no messages, a message's own timestamp,
 * a record the fast path does not cover).
 */
const partitionEntry = (
  data: ProduceArgs["topicData"][number]["partitions"][number],
  producerId: LongLike,
  producerEpoch: number,
  transactional: boolean,
): Buffer | undefined => {
  const { partition, firstSequence, messages } = data
  const n = messages.length
  if (n === 0 || (firstSequence !== undefined && typeof firstSequence !== "number")) return undefined
  // kafkajs: without timestamps, every record's is the request's Date.now() (delta 0).
  const now = Date.now()
  const records: Buffer[] = new Array<Buffer>(n)
  let size = 0
  for (let i = 0; i < n; i++) {
    const m = messages[i]!
    if (m.timestamp !== undefined && m.timestamp !== null) return undefined
    const r = recordBytes(i, 0, m.key, m.value, m.headers ?? {})
    if (r === undefined) return undefined
    records[i] = r
    size += r.length
  }
  const buf = Buffer.allocUnsafe(ENTRY_HEADER + size)
  // The batch: everything after its length field (partition 4, record set size 4, first offset 8, length 4).
  const batchLength = ENTRY_HEADER - 20 + size
  buf.writeInt32BE(partition, 0)
  buf.writeInt32BE(12 + batchLength, 4) // the record set: first offset, the batch's length, the batch
  buf.writeInt32BE(0, 8) // first offset (int64) 0
  buf.writeInt32BE(0, 12)
  buf.writeInt32BE(batchLength, 16)
  buf.writeInt32BE(0, 20) // partition leader epoch
  buf.writeInt8(2, 24) // magic
  buf.writeInt16BE(transactional ? TRANSACTIONAL : 0, 29) // attributes: no compression, create time
  buf.writeInt32BE(n - 1, 31) // last offset delta
  const ts = Long.fromValue(now)
  writeLong(buf, 35, ts) // first timestamp
  writeLong(buf, 43, ts) // max timestamp
  writeLong(buf, 51, producerId)
  buf.writeInt16BE(producerEpoch, 59)
  buf.writeInt32BE(firstSequence ?? 0, 61)
  buf.writeInt32BE(n, 65)
  let at = ENTRY_HEADER
  for (const r of records) at += r.copy(buf, at)
  if (at !== buf.length) throw new Error(`assertion: Kafka record batch encoded to ${at} bytes, expected ${buf.length}`)
  buf.writeUInt32BE(crc32C(buf.subarray(CRC_FROM)), CRC_AT)
  return buf
}

/** The whole request as kafkajs's v3 encode writes it, or undefined (compressed, or a partition kafkajs must take). */
const encodeProduce = (args: ProduceArgs): EncoderLike | undefined => {
  if ((args.compression ?? COMPRESSION_NONE) !== COMPRESSION_NONE) return undefined
  const transactionalId = args.transactionalId === undefined ? null : args.transactionalId
  const producerId = args.producerId === undefined ? Long.fromInt(-1) : Long.fromValue(args.producerId)
  const producerEpoch = args.producerEpoch ?? 0
  const topics: EncoderLike[] = []
  for (const t of args.topicData) {
    const entries: EncoderLike[] = []
    for (const p of t.partitions) {
      const entry = partitionEntry(p, producerId, producerEpoch, !!transactionalId)
      if (entry === undefined) return undefined
      entries.push(encoderOf(entry))
    }
    topics.push(new EncoderApi().writeString(t.topic).writeArray(entries))
  }
  return new EncoderApi().writeString(transactionalId).writeInt16(args.acks).writeInt32(args.timeout).writeArray(topics)
}

/** kafkajs's v3 produce request (see the module comment), encoding the same bytes. */
export const fastProduceRequest = (original: ProduceRequestFactory): ProduceRequestFactory => (args) => {
  const request = original(args)
  return {
    ...request,
    encode: async () => {
      const fast = encodeProduce(args)
      if (fast !== undefined) {
        produceEncodings.fast++
        return fast
      }
      produceEncodings.kafkajs++
      return request.encode()
    },
  }
}

/** Tests: produce requests encoded here, and those left to kafkajs. */
export const produceEncodings = { fast: 0, kafkajs: 0 }

if (require.cache[recordPath]?.exports !== fastRecord) {
  assertNotLoaded([...dependents, ...requestDependents], "kafkajsEncoding.ts", "its produce encoding cannot be replaced")
  replaceModule(recordPath, fastRecord)
  replaceModule(groupPath, fastGroupMessagesPerPartition)
  // Loaded after the record module's replacement, so kafkajs's own path (the fallback) uses it too.
  originalProduceRequest = require(requestPath) as ProduceRequestFactory
  replaceModule(requestPath, fastProduceRequest(originalProduceRequest))
}

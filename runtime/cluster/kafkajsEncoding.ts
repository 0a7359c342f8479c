/**
 * Two of kafkajs 2.2's produce-path internals replaced by equivalents that write the same bytes with less work (the
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
 *
 * test/unit/kafkajsEncoding.test.ts compares both against kafkajs's originals byte for byte. Loaded by
 * kafkajsAbortFix.ts (imported everywhere before "kafkajs"): the modules must be replaced before kafkajs's producer
 * and produce request modules require them.
 */
import { createRequire } from "node:module"
import { replaceModule } from "./kafkajsModules.ts"

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

/** kafkajs's own record encoder and grouping (tests compare against them). */
export const originalRecord = require(recordPath) as RecordEncoder & { __eddy?: true }
export const originalGroupMessagesPerPartition = require(groupPath) as Group & { __eddy?: true }

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

/** kafkajs's record v0 encoding (see the module comment), the same bytes. */
export const fastRecord: RecordEncoder = (record) => {
  const { offsetDelta = 0, timestampDelta = 0, key, value, headers = {} } = record
  if (typeof timestampDelta !== "number" || !Number.isInteger(timestampDelta) || timestampDelta < -SMALL || timestampDelta >= SMALL || !isBytes(key) || !isBytes(value) || typeof offsetDelta !== "number") {
    return originalRecord(record)
  }
  const hk: string[] = []
  const hv: Array<string | Buffer> = []
  for (const k of Object.keys(headers)) {
    const v = headers[k]
    if (Array.isArray(v)) {
      for (const x of v as unknown[]) {
        if (typeof x !== "string" && !Buffer.isBuffer(x)) return originalRecord(record)
        hk.push(k)
        hv.push(x)
      }
    } else {
      if (typeof v !== "string" && !Buffer.isBuffer(v)) return originalRecord(record)
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
  // An Encoder holding exactly these bytes (kafkajs reads .buf and .buffer, i.e. buf[0, offset)).
  const e = Object.create(Encoder.prototype) as EncoderLike
  e.buf = buf
  e.offset = buf.length
  return e
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

if (require.cache[recordPath]?.exports !== fastRecord) {
  for (const d of dependents) {
    if (require.cache[d] !== undefined) throw new Error("assertion: kafkajs was loaded before runtime/cluster/kafkajsEncoding.ts; its produce encoding cannot be replaced")
  }
  replaceModule(recordPath, fastRecord)
  replaceModule(groupPath, fastGroupMessagesPerPartition)
}

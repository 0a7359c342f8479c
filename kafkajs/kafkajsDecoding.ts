/**
 * kafkajs 2.2's record decoder (`src/protocol/recordBatch/record/v0/decoder.js`) replaced by an equivalent that
 * returns the same objects with less work (the Kafka ingress's CPU on the engine's thread): per record it parsed the
 * batch's first offset and first timestamp from their decimal strings into Longs, added the deltas in Long arithmetic
 * and printed the results back (Long.fromString and Long.toString were ~2.6% of the engine thread at 33k records/s),
 * read the timestamp delta as a Long, and merged the headers with an object spread per header. Here: the batch's
 * first offset and timestamp are parsed once per batch, the arithmetic is on numbers, the headers go into one object.
 * Inputs outside this fast path (a varint or varlong longer than numbers hold exactly, offsets or timestamps beyond
 * 2^53) go to kafkajs's own decoder from the record's start, which keeps its results and errors for them.
 *
 * test/unit/kafkajsDecoding.test.ts compares both on records written by kafkajs's own encoder. Loaded by
 * kafkajsAbortFix.ts (imported everywhere before "kafkajs"): the module must be replaced before kafkajs's record
 * batch decoder requires it.
 */
import { createRequire } from "node:module"
import { assertNotLoaded, replaceModule } from "./kafkajsModules.ts"

const require = createRequire(import.meta.url)

interface DecoderLike {
  readonly buffer: Buffer
  offset: number
}
export interface BatchContext {
  readonly firstOffset?: string
  readonly firstTimestamp?: string
  readonly magicByte?: number
  readonly isControlBatch?: boolean
  readonly timestampType?: number
  readonly maxTimestamp?: string
}
type RecordDecoder = (decoder: DecoderLike, batchContext?: BatchContext) => unknown

const recordPath = require.resolve("kafkajs/src/protocol/recordBatch/record/v0/decoder.js")
const dependent = require.resolve("kafkajs/src/protocol/recordBatch/v0/decoder.js")
const LOG_APPEND_TIME = 1

/** kafkajs's own record decoder (the fallback, and what tests compare against). */
export const originalRecordDecoder = require(recordPath) as RecordDecoder

/** Per batch context (one object per record batch): its first offset and first timestamp as numbers. */
const parsed = new WeakMap<BatchContext, { readonly offset: number; readonly timestamp: number }>()

/** Thrown inside the fast path when the input needs kafkajs's own decoder (one object: no stack taken per throw). */
const FALLBACK = new Error("kafkajs record decoding: outside the fast path")

/** The read position in the record being decoded (module state: one record at a time, synchronously). */
let pos = 0

/** A zigzag varint of at most 5 bytes (32 bits), as kafkajs reads it. */
const varInt = (buf: Buffer): number => {
  let result = 0
  let shift = 0
  let byte: number
  do {
    if (shift > 28) throw FALLBACK
    byte = buf[pos++]!
    if (byte === undefined) throw FALLBACK
    result += (byte & 0x7f) << shift
    shift += 7
  } while (byte >= 0x80)
  return (result >>> 1) ^ -(result & 1)
}

/** A zigzag varlong whose value fits in a number exactly (at most 7 bytes: 49 bits). */
const varLong = (buf: Buffer): number => {
  let result = 0
  let scale = 1
  let byte: number
  do {
    if (scale > 2 ** 42) throw FALLBACK
    byte = buf[pos++]!
    if (byte === undefined) throw FALLBACK
    result += (byte & 0x7f) * scale
    scale *= 128
  } while (byte >= 0x80)
  return result % 2 === 0 ? result / 2 : -(result + 1) / 2
}

const bytes = (buf: Buffer): Buffer | null => {
  const n = varInt(buf)
  if (n === -1) return null
  if (n < 0 || pos + n > buf.length) throw FALLBACK
  const out = buf.subarray(pos, pos + n)
  pos += n
  return out
}

const exact = (s: string | undefined): number => {
  const n = Number(s)
  if (!Number.isSafeInteger(n) || String(n) !== s) throw FALLBACK
  return n
}

export const fastRecordDecoder: RecordDecoder = (decoder, batchContext = {}) => {
  const start = decoder.offset
  try {
    const buf = decoder.buffer
    pos = start
    if (pos >= buf.length) throw FALLBACK
    const attributes = buf.readInt8(pos++)
    let first = parsed.get(batchContext)
    if (first === undefined) parsed.set(batchContext, (first = { offset: exact(batchContext.firstOffset), timestamp: exact(batchContext.firstTimestamp) }))
    const timestampDelta = varLong(buf)
    let timestamp: string | undefined
    if (batchContext.timestampType === LOG_APPEND_TIME && batchContext.maxTimestamp) timestamp = batchContext.maxTimestamp
    else {
      const t = first.timestamp + timestampDelta
      if (!Number.isSafeInteger(t)) throw FALLBACK
      timestamp = String(t)
    }
    const offsetNumber = first.offset + varInt(buf)
    if (!Number.isSafeInteger(offsetNumber)) throw FALLBACK
    const key = bytes(buf)
    const value = bytes(buf)
    const headers: Record<string, Buffer | null | Array<Buffer | null>> = {}
    const count = varInt(buf)
    for (let i = 0; i < count; i++) {
      const k = bytes(buf)
      const v = bytes(buf)
      // kafkajs reads a header key with readVarIntString: null for length -1, which its spread names "null".
      const name = k === null ? "null" : k.toString("utf8")
      // kafkajs's spread makes "__proto__" an own property; an assignment would set the prototype.
      if (name === "__proto__") throw FALLBACK
      const had = headers[name]
      headers[name] = had === undefined ? v : Array.isArray(had) ? [...had, v] : [had, v]
    }
    decoder.offset = pos
    return {
      magicByte: batchContext.magicByte,
      attributes,
      timestamp,
      offset: String(offsetNumber),
      key,
      value,
      headers,
      isControlRecord: batchContext.isControlBatch ?? false,
      batchContext,
    }
  } catch (err) {
    if (err !== FALLBACK) throw err
    decoder.offset = start
    return originalRecordDecoder(decoder, batchContext)
  }
}

if (require.cache[recordPath]?.exports !== fastRecordDecoder) {
  assertNotLoaded([dependent], "kafkajsDecoding.ts", "its record decoding cannot be replaced")
  replaceModule(recordPath, fastRecordDecoder)
}

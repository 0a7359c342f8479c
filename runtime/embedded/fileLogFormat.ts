/**
 * FileLog on-disk format.
 *
 * A log is a directory of segment files `00000001.log`, `00000002.log`, ... (numbers contiguous; truncation only
 * removes the oldest). A segment is a sequence of frames, all integers big-endian:
 *
 *   offset 0  magic   u32  0x45444C47 ("EDLG")
 *          4  length  u32  payload length in bytes
 *          8  crc32   u32  zlib crc32 over the length field, then the flags byte and payload
 *         12  flags   u8   bit 0: stream (0 = wal, 1 = control); bit 7: written by appendDurable
 *         13  payload
 *
 * LogPosition = (segment number, byte offset of the frame's magic). The durable bit is what recovery keys on: a
 * damaged frame followed by a valid durable frame was acknowledged as durable, so it is corruption, not a torn tail.
 *
 * A segment may end in zero bytes: the writer zero-fills space ahead of its frames (fileLogWriter.ts, "prepared
 * space"), so that a durable write overwrites allocated blocks instead of growing the file. A frame never starts
 * with a zero byte (the magic), so a segment's frames end where only zeros remain.
 */
import { crc32 } from "node:zlib"
import type { LogStream } from "../ports/Log.ts"

export const MAGIC = 0x45444c47
export const HEADER_BYTES = 13
/** Frames larger than this are refused (one Buffer must hold a whole segment when reading). */
export const MAX_PAYLOAD_BYTES = 1024 * 1024 * 1024

const DURABLE_BIT = 0x80
const STREAM_BIT = 0x01
const MAGIC_BYTES = Buffer.from([0x45, 0x44, 0x4c, 0x47])

const frameCrc = (buf: Uint8Array, start: number, payloadLength: number): number =>
  crc32(buf.subarray(start + 12, start + HEADER_BYTES + payloadLength), crc32(buf.subarray(start + 4, start + 8))) >>> 0

const flagsOf = (stream: LogStream, durable: boolean): number => (stream === "control" ? STREAM_BIT : 0) | (durable ? DURABLE_BIT : 0)

// Length and flags staged here so the writer's crc needs no per-frame views (same bytes as frameCrc covers).
const scratch = Buffer.alloc(5)

/** Encodes a frame at `buf[at]`, which must have room for HEADER_BYTES + payload.length bytes. */
export const encodeFrameInto = (buf: Buffer, at: number, stream: LogStream, durable: boolean, payload: Uint8Array): void => {
  scratch.writeUInt32BE(payload.length, 0)
  scratch[4] = flagsOf(stream, durable)
  buf.writeUInt32BE(MAGIC, at)
  buf.writeUInt32BE(payload.length, at + 4)
  buf.writeUInt32BE(crc32(payload, crc32(scratch)) >>> 0, at + 8)
  buf[at + 12] = scratch[4] ?? 0
  buf.set(payload, at + HEADER_BYTES)
}

export const encodeFrame = (stream: LogStream, durable: boolean, payload: Uint8Array): Buffer => {
  const frame = Buffer.allocUnsafe(HEADER_BYTES + payload.length)
  encodeFrameInto(frame, 0, stream, durable, payload)
  return frame
}

export interface Frame {
  readonly offset: number
  readonly stream: LogStream
  readonly durable: boolean
  readonly payload: Uint8Array
  /** Offset just past this frame. */
  readonly end: number
}

export type FrameResult = Frame | { readonly damage: string }

export const isFrame = (r: FrameResult): r is Frame => !("damage" in r)

/** Parses the frame at `offset`, or says why there is no valid frame there. The payload is a view, not a copy. */
export const parseFrameAt = (buf: Buffer, offset: number): FrameResult => {
  if (buf.length - offset < HEADER_BYTES) return { damage: "truncated frame header" }
  if (buf.readUInt32BE(offset) !== MAGIC) return { damage: "bad magic number" }
  const length = buf.readUInt32BE(offset + 4)
  if (length > buf.length - offset - HEADER_BYTES) return { damage: `frame length ${length} runs past end of file` }
  if (buf.readUInt32BE(offset + 8) !== frameCrc(buf, offset, length)) return { damage: "crc32 mismatch" }
  const flags = buf[offset + 12] ?? 0
  if ((flags & ~(STREAM_BIT | DURABLE_BIT)) !== 0) return { damage: "unknown flags" }
  return {
    offset,
    stream: (flags & STREAM_BIT) !== 0 ? "control" : "wal",
    durable: (flags & DURABLE_BIT) !== 0,
    payload: new Uint8Array(buf.buffer, buf.byteOffset + offset + HEADER_BYTES, length),
    end: offset + HEADER_BYTES + length,
  }
}

export interface SegmentScan {
  readonly frames: ReadonlyArray<Frame>
  /** Where parsing stopped on a bad frame, and why; undefined when the whole buffer parsed. */
  readonly damage?: { readonly offset: number; readonly reason: string }
  /** Just past the last frame: where the next frame goes (a zero-filled tail after it is prepared space). */
  readonly end: number
}

const ZEROS = Buffer.alloc(64 * 1024)

/** Whether every byte of `buf` from `from` on is zero. */
export const zeroFrom = (buf: Buffer, from: number): boolean => {
  for (let at = from; at < buf.length; at += ZEROS.length) {
    const n = Math.min(ZEROS.length, buf.length - at)
    if (buf.compare(ZEROS, 0, n, at, at + n) !== 0) return false
  }
  return true
}

export const scanSegment = (buf: Buffer): SegmentScan => {
  const frames: Array<Frame> = []
  let offset = 0
  while (offset < buf.length) {
    const r = parseFrameAt(buf, offset)
    if (!isFrame(r)) return zeroFrom(buf, offset) ? { frames, end: offset } : { frames, damage: { offset, reason: r.damage }, end: offset }
    frames.push(r)
    offset = r.end
  }
  return { frames, end: offset }
}

/**
 * Resynchronises after damage: the first valid durable frame at or after `from`, found by searching for the magic
 * number and checking the crc. A frame found inside another frame's payload would need a matching crc32 too.
 */
export const findDurableFrame = (buf: Buffer, from: number): Frame | undefined => {
  let at = buf.indexOf(MAGIC_BYTES, from)
  while (at >= 0) {
    const r = parseFrameAt(buf, at)
    if (isFrame(r) && r.durable) return r
    at = buf.indexOf(MAGIC_BYTES, at + 1)
  }
  return undefined
}

export const segmentName = (part: number): string => `${String(part).padStart(8, "0")}.log`

/** The segment number of a file name, or undefined for files that are not segments. */
export const parseSegmentName = (name: string): number | undefined => {
  const m = /^(\d{8,})\.log$/.exec(name)
  return m?.[1] === undefined ? undefined : Number(m[1])
}

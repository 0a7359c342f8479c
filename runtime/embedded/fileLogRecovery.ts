/**
 * FileLog start-up: read every segment, decide torn tail versus corruption, and repair a torn tail on disk so that
 * appends continue right after the last good frame. Plain promises; FileLog wraps them in Effect.
 */
import { open, readdir, readFile, unlink } from "node:fs/promises"
import { join } from "node:path"
import type { LogEntry, LogStream } from "../ports/Log.ts"
import { findDurableFrame, parseSegmentName, scanSegment, segmentName } from "./fileLogFormat.ts"

export const streamBit = (stream: LogStream): number => (stream === "wal" ? 1 : 2)

export interface RecoveredLog {
  readonly _tag: "Recovered"
  readonly entries: Array<LogEntry>
  /** Oldest and newest segment numbers; with no segment on disk both are 1 and `lastExists` is false. */
  readonly firstPart: number
  readonly lastPart: number
  readonly lastExists: boolean
  /** Just past the newest segment's last frame: where the next frame goes. */
  readonly lastEnd: number
  /** Byte length of the newest segment (beyond lastEnd: zero-filled, prepared space). */
  readonly lastSize: number
  /** Which streams each segment holds (bit 1 wal, bit 2 control): truncation must respect both. */
  readonly streamsInPart: Map<number, number>
}

export interface CorruptedLog {
  readonly _tag: "Corrupted"
  readonly location: string
  readonly message: string
}

export const listSegments = async (dir: string): Promise<Array<number>> =>
  (await readdir(dir))
    .map(parseSegmentName)
    .filter((p): p is number => p !== undefined)
    .sort((a, b) => a - b)

export const syncDir = async (dir: string): Promise<void> => {
  const fh = await open(dir, "r")
  try {
    await fh.sync()
  } finally {
    await fh.close()
  }
}

/** `readOnly`: a reader beside a running writer (eddy state): a torn tail is skipped, never cut off on disk. */
export const recoverLog = async (dir: string, readOnly = false): Promise<RecoveredLog | CorruptedLog> => {
  const parts = await listSegments(dir)
  for (let i = 1; i < parts.length; i++) {
    const prev = parts[i - 1] ?? 0
    if (parts[i] !== prev + 1) {
      // Truncation only ever removes the oldest segments, so a hole means a file was lost.
      return {
        _tag: "Corrupted",
        location: join(dir, segmentName(prev + 1)),
        message: `segment ${segmentName(prev + 1)} is missing between ${segmentName(prev)} and ${segmentName(parts[i] ?? 0)}`,
      }
    }
  }
  const buffers = await Promise.all(parts.map((p) => readFile(join(dir, segmentName(p)))))
  const entries: Array<LogEntry> = []
  const streamsInPart = new Map<number, number>()
  let lastEnd = 0
  for (let i = 0; i < parts.length; i++) {
    const part = parts[i] ?? 0
    const buf = buffers[i] ?? Buffer.alloc(0)
    const scan = scanSegment(buf)
    lastEnd = scan.end
    let mask = 0
    for (const f of scan.frames) {
      entries.push({ stream: f.stream, position: { part, offset: f.offset }, payload: f.payload })
      mask |= streamBit(f.stream)
    }
    streamsInPart.set(part, mask)
    if (scan.damage === undefined) continue

    const location = `${join(dir, segmentName(part))} at byte ${scan.damage.offset}`
    for (let j = i; j < parts.length; j++) {
      const durable = findDurableFrame(buffers[j] ?? Buffer.alloc(0), j === i ? scan.damage.offset + 1 : 0)
      if (durable !== undefined) {
        return {
          _tag: "Corrupted",
          location,
          message:
            `log corrupted: ${scan.damage.reason} in ${location}, before a durable ${durable.stream} record at ` +
            `${segmentName(parts[j] ?? 0)}:${durable.offset}`,
        }
      }
    }
    if (readOnly) return { _tag: "Recovered", entries, firstPart: parts[0] ?? 1, lastPart: part, lastExists: true, lastEnd: scan.damage.offset, lastSize: buf.length, streamsInPart }
    // Torn tail: nothing after the damage was acknowledged. Remove newest first, so a crash here leaves no hole.
    for (let j = parts.length - 1; j > i; j--) {
      await unlink(join(dir, segmentName(parts[j] ?? 0)))
      streamsInPart.delete(parts[j] ?? 0)
    }
    const fh = await open(join(dir, segmentName(part)), "r+")
    try {
      await fh.truncate(scan.damage.offset)
      await fh.datasync()
    } finally {
      await fh.close()
    }
    await syncDir(dir)
    return {
      _tag: "Recovered",
      entries,
      firstPart: parts[0] ?? 1,
      lastPart: part,
      lastExists: true,
      lastEnd: scan.damage.offset,
      lastSize: scan.damage.offset,
      streamsInPart,
    }
  }
  const last = parts[parts.length - 1]
  return {
    _tag: "Recovered",
    entries,
    firstPart: parts[0] ?? 1,
    lastPart: last ?? 1,
    lastExists: last !== undefined,
    lastEnd,
    lastSize: buffers[buffers.length - 1]?.length ?? 0,
    streamsInPart,
  }
}

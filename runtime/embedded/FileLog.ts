/**
 * The embedded Log: append-only segment files in one directory (format in fileLogFormat.ts). One process owns the
 * directory. `append` returns once the frame is queued, so its position is fixed; the bytes reach the OS a moment
 * later (a write error then fails every later call). `appendDurable` returns once that frame and all before it are
 * fdatasync'ed. Opening the log recovers it: a torn tail is cut off on disk, corruption is reported by `readAll`.
 */
import { mkdir, open, unlink } from "node:fs/promises"
import { join } from "node:path"
import { Effect, Layer, type Scope } from "effect"
import {
  Log,
  LogCorruptedError,
  LogError,
  type LogEntry,
  type LogPosition,
  type LogService,
  type LogStream,
} from "../ports/Log.ts"
import { HEADER_BYTES, MAX_PAYLOAD_BYTES, scanSegment, segmentName } from "./fileLogFormat.ts"
import { recoverLog, streamBit, syncDir, type CorruptedLog } from "./fileLogRecovery.ts"
import { PREPARE_BYTES, SegmentWriter, type WrittenMark } from "./fileLogWriter.ts"

export interface FileLogOptions {
  /** Roll to a new segment once the current one would exceed this size. Default 64 MiB. */
  readonly segmentBytes?: number
  /** `append` waits while more than this many bytes are queued but not yet written. Default 16 MiB. */
  readonly maxQueuedBytes?: number
  /** Zero-filled space kept ahead of the frames, up to this many bytes (fileLogWriter.ts). Default 8 MiB; 0: none. */
  readonly prepareBytes?: number
  /** Only read (beside a running writer): nothing on disk is changed, appends fail. */
  readonly readOnly?: boolean
}

const ioError = (message: string) => (cause: unknown) => new LogError({ message: `${message}: ${String(cause)}`, cause })

const tryIo = <A>(message: string, f: () => Promise<A>): Effect.Effect<A, LogError> =>
  Effect.tryPromise({ try: f, catch: ioError(message) })

const isMissing = (e: unknown): boolean => (e as { code?: unknown } | null)?.code === "ENOENT"

/** Reads segment `part`, or only its first `length` bytes (the rest may be a write in progress). */
const readSegment = async (dir: string, part: number, length?: number): Promise<Buffer> => {
  const fh = await open(join(dir, segmentName(part)), "r")
  try {
    const size = length ?? (await fh.stat()).size
    const buf = Buffer.allocUnsafe(size)
    let done = 0
    while (done < size) {
      const { bytesRead } = await fh.read(buf, done, size - done, done)
      if (bytesRead === 0) throw new Error(`${segmentName(part)} is shorter than ${size} bytes`)
      done += bytesRead
    }
    return buf
  } finally {
    await fh.close()
  }
}

/** A log found corrupted at start-up: it reads as the error and refuses writes, so start-up stops. */
const corruptedLog = (c: CorruptedLog): LogService => {
  const refuse = Effect.fail(new LogError({ message: `refusing to write to a corrupted log: ${c.message}` }))
  return {
    append: () => refuse,
    appendDurable: () => refuse,
    readAll: Effect.fail(new LogCorruptedError({ message: c.message, location: c.location })),
    truncateBefore: () => refuse,
  }
}

export const makeFileLog = (dir: string, options: FileLogOptions = {}): Effect.Effect<LogService, LogError, Scope.Scope> =>
  Effect.gen(function* () {
    const segmentBytes = options.segmentBytes ?? 64 * 1024 * 1024
    if (!options.readOnly) yield* tryIo(`cannot create log directory ${dir}`, () => mkdir(dir, { recursive: true }))
    const recovered = yield* tryIo(`cannot recover log in ${dir}`, () => recoverLog(dir, options.readOnly === true))
    if (recovered._tag === "Corrupted") return corruptedLog(recovered)
    if (options.readOnly) {
      const refuse = Effect.fail(new LogError({ message: `log ${dir} is open read-only` }))
      return { append: () => refuse, appendDurable: () => refuse, readAll: Effect.succeed(recovered.entries), truncateBefore: () => refuse } satisfies LogService
    }

    const writer = new SegmentWriter(
      dir,
      { part: recovered.lastPart, end: recovered.lastEnd },
      recovered.lastExists,
      options.maxQueuedBytes ?? 16 * 1024 * 1024,
      { bytes: options.prepareBytes ?? PREPARE_BYTES, segmentBytes, preparedEnd: recovered.lastSize },
    )
    yield* Effect.addFinalizer(() =>
      tryIo(`closing log ${dir}`, () => writer.close()).pipe(Effect.catchAll((e) => Effect.logError(e.message))),
    )

    let appendPart = recovered.lastPart
    let appendOffset = recovered.lastEnd
    let firstPart = recovered.firstPart
    const streamsInPart = recovered.streamsInPart
    // Handed to the first readAll (start-up reads the log once), dropped as soon as the log changes.
    let startupEntries: Array<LogEntry> | undefined = recovered.entries
    // Per stream, segments below this may go: a segment is deleted only when every stream in it allows it.
    const keepFromPart: Record<LogStream, number> = { wal: 0, control: 0 }
    // readAll and truncateBefore must not see each other's half-done work.
    const lock = yield* Effect.makeSemaphore(1)

    const unusable = (): LogError | undefined => {
      const e = writer.unusable()
      return e === undefined ? undefined : new LogError({ message: `log ${dir}: ${e.message}`, cause: e })
    }

    const enqueue = (stream: LogStream, payload: Uint8Array, durable: boolean): { position: LogPosition; seq: number } => {
      const length = HEADER_BYTES + payload.length
      if (appendOffset > 0 && appendOffset + length > segmentBytes) {
        appendPart++
        appendOffset = 0
      }
      const position = { part: appendPart, offset: appendOffset }
      appendOffset += length
      const mask = streamsInPart.get(appendPart) ?? 0
      if ((mask & streamBit(stream)) === 0) streamsInPart.set(appendPart, mask | streamBit(stream))
      startupEntries = undefined
      return { position, seq: writer.enqueue(position.part, position.offset, stream, durable, payload) }
    }

    const tooLarge = (payload: Uint8Array): LogError | undefined =>
      payload.length > MAX_PAYLOAD_BYTES
        ? new LogError({ message: `payload of ${payload.length} bytes exceeds ${MAX_PAYLOAD_BYTES}` })
        : undefined

    const waitDrained = Effect.async<void, LogError>((resume) =>
      writer.whenDrained((e) => resume(e ? Effect.fail(ioError(`writing log ${dir}`)(e)) : Effect.void)),
    )

    const append = (stream: LogStream, payload: Uint8Array): Effect.Effect<LogPosition, LogError> =>
      Effect.suspend(() => {
        const error = unusable() ?? tooLarge(payload)
        if (error) return Effect.fail(error)
        const { position } = enqueue(stream, payload, false)
        return writer.overLimit ? Effect.as(waitDrained, position) : Effect.succeed(position)
      })

    const appendDurable = (stream: LogStream, payload: Uint8Array): Effect.Effect<LogPosition, LogError> =>
      Effect.async<LogPosition, LogError>((resume) => {
        const error = unusable() ?? tooLarge(payload)
        if (error) return resume(Effect.fail(error))
        const { position, seq } = enqueue(stream, payload, true)
        writer.whenDurable(seq, (e) => resume(e ? Effect.fail(ioError(`syncing log ${dir}`)(e)) : Effect.succeed(position)))
      })

    const writtenMark = Effect.async<WrittenMark, LogError>((resume) =>
      writer.whenWritten(writer.lastSeq, (e, mark) =>
        resume(e ? Effect.fail(ioError(`writing log ${dir}`)(e)) : Effect.succeed(mark)),
      ),
    )

    const readBack = (mark: WrittenMark, from: number): Effect.Effect<Array<LogEntry>, LogError | LogCorruptedError> =>
      Effect.gen(function* () {
        const entries: Array<LogEntry> = []
        for (let part = from; part <= mark.part; part++) {
          if (part === mark.part && mark.end === 0) break
          const buf = yield* tryIo(`reading log ${dir}`, () =>
            readSegment(dir, part, part === mark.part ? mark.end : undefined),
          )
          const scan = scanSegment(buf)
          // Recovery already cut any torn tail, so damage now is damage to acknowledged records.
          if (scan.damage !== undefined) {
            const location = `${join(dir, segmentName(part))} at byte ${scan.damage.offset}`
            return yield* new LogCorruptedError({ message: `log corrupted: ${scan.damage.reason} in ${location}`, location })
          }
          for (const f of scan.frames) entries.push({ stream: f.stream, position: { part, offset: f.offset }, payload: f.payload })
        }
        return entries
      })

    const readAll: Effect.Effect<ReadonlyArray<LogEntry>, LogError | LogCorruptedError> = lock.withPermits(1)(
      Effect.suspend(() => {
        if (startupEntries !== undefined) {
          const entries = startupEntries
          startupEntries = undefined
          return Effect.succeed(entries)
        }
        const error = unusable()
        if (error) return Effect.fail(error)
        return Effect.flatMap(writtenMark, (mark) => readBack(mark, firstPart))
      }),
    )

    const truncateBefore = (stream: LogStream, keepFrom: LogPosition): Effect.Effect<void, LogError> =>
      lock.withPermits(1)(
        Effect.suspend(() => {
          const error = unusable()
          if (error) return Effect.fail(error)
          keepFromPart[stream] = Math.max(keepFromPart[stream], keepFrom.part)
          // Only the oldest segments go (no holes), and never one the writer may still write to.
          const doomed: Array<number> = []
          for (let p = firstPart; p < Math.min(appendPart, writer.activePart); p++) {
            const mask = streamsInPart.get(p) ?? 0
            if ((mask & 1 && p >= keepFromPart.wal) || (mask & 2 && p >= keepFromPart.control)) break
            doomed.push(p)
          }
          if (doomed.length === 0) return Effect.void
          firstPart = (doomed[doomed.length - 1] ?? 0) + 1
          startupEntries = undefined
          return tryIo(`truncating log ${dir}`, async () => {
            for (const p of doomed) {
              streamsInPart.delete(p)
              await unlink(join(dir, segmentName(p))).catch((e: unknown) => {
                if (!isMissing(e)) throw e
              })
            }
            await syncDir(dir)
          })
        }),
      )

    return { append, appendDurable, readAll, truncateBefore } satisfies LogService
  })

export const FileLog = {
  /** The Log port backed by segment files in `dir`; files are closed (after a final sync) when the scope closes. */
  layer: (dir: string, options?: FileLogOptions): Layer.Layer<Log, LogError> => Layer.scoped(Log, makeFileLog(dir, options)),
  make: makeFileLog,
} as const

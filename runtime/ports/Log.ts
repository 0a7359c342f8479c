import { Context, Data, type Effect } from "effect"

/**
 * Where a record sits in a log. File log: (segment number, byte offset); Kafka: (topic partition, offset).
 * Engine code treats it as opaque and only compares it for equality and order within one `part`.
 */
export interface LogPosition {
  readonly part: number
  readonly offset: number
}

/** The two streams of the write-ahead log: partitions' epoch records, and the coordinator's decisions. */
export type LogStream = "wal" | "control"

export interface LogEntry {
  readonly stream: LogStream
  readonly position: LogPosition
  readonly payload: Uint8Array
}

export class LogError extends Data.TaggedError("LogError")<{
  readonly message: string
  readonly cause?: unknown
}> {}

/** A record that was made durable no longer reads back as written: start-up must stop, never guess. */
export class LogCorruptedError extends Data.TaggedError("LogCorruptedError")<{
  readonly message: string
  readonly location: string
}> {}

/**
 * The Log port. Payloads are opaque bytes framed and checksummed by the implementation.
 *
 * Durability contract: `append` may return before the record is durable; `appendDurable` returns only once
 * that record AND every record appended before it (by any caller of this Log) is durable. The coordinator writes
 * COMMIT with `appendDurable`, so a durable COMMIT implies durable epoch records.
 *
 * Recovery contract for `readAll`: a torn or corrupted tail written after the last durable record is dropped
 * silently (it was never acknowledged); damage at or before a durable record fails with LogCorruptedError.
 */
export interface LogService {
  readonly append: (stream: LogStream, payload: Uint8Array) => Effect.Effect<LogPosition, LogError>
  readonly appendDurable: (stream: LogStream, payload: Uint8Array) => Effect.Effect<LogPosition, LogError>
  /** Every entry still in the log, in append order per stream. */
  readonly readAll: Effect.Effect<ReadonlyArray<LogEntry>, LogError | LogCorruptedError>
  /**
   * Drops whole storage units (segments) whose entries are all strictly before `keepFrom` (per stream, per part).
   * Entries at or after it are kept; implementations may keep more than asked.
   */
  readonly truncateBefore: (stream: LogStream, keepFrom: LogPosition) => Effect.Effect<void, LogError>
}

export class Log extends Context.Tag("eddy/Log")<Log, LogService>() {}

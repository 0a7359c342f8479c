/**
 * An in-memory Log for fast unit tests. The store outlives any one layer build, so building the layer again is a
 * "reopen"; `crash()` drops what was never made durable, as a process crash would with the FileLog.
 */
import { Effect, Layer } from "effect"
import { Log, type LogEntry, type LogPosition, type LogService, type LogStream } from "../ports/Log.ts"

const before = (a: LogPosition, b: LogPosition): boolean => a.part < b.part || (a.part === b.part && a.offset < b.offset)

export class MemoryLogStore {
  entries: Array<LogEntry> = []
  /** Offset of the next entry: positions stay unique after truncation. */
  nextOffset = 0
  /** Entries up to this offset were covered by an appendDurable. */
  durableOffset = 0

  /** Forgets every entry not covered by an appendDurable. */
  crash(): void {
    this.entries = this.entries.filter((e) => e.position.offset < this.durableOffset)
    this.nextOffset = this.durableOffset
  }
}

export const makeMemoryLog = (store: MemoryLogStore): LogService => {
  const add = (stream: LogStream, payload: Uint8Array, durable: boolean): LogPosition => {
    // Copy: the caller may reuse its buffer, and readers must not see later changes.
    const position = { part: 0, offset: store.nextOffset++ }
    store.entries.push({ stream, position, payload: payload.slice() })
    if (durable) store.durableOffset = store.nextOffset
    return position
  }
  return {
    append: (stream, payload) => Effect.sync(() => add(stream, payload, false)),
    // A durable append waits for the event loop once, as a disk write does: an app on a memory log driven by
    // in-process callers would otherwise run epoch after epoch in microtasks and starve timers and sockets.
    appendDurable: (stream, payload) =>
      Effect.flatMap(
        Effect.sync(() => add(stream, payload, true)),
        (position) => Effect.async<LogPosition>((resume) => void setImmediate(() => resume(Effect.succeed(position)))),
      ),
    readAll: Effect.sync(() => store.entries.map((e) => ({ ...e, payload: e.payload.slice() }))),
    truncateBefore: (stream, keepFrom) =>
      Effect.sync(() => {
        store.entries = store.entries.filter((e) => e.stream !== stream || !before(e.position, keepFrom))
      }),
  }
}

export const MemoryLog = {
  /** Each call without a store gets a fresh one; building the returned layer again reopens that same store. */
  layer: (store: MemoryLogStore = new MemoryLogStore()): Layer.Layer<Log> => Layer.sync(Log, () => makeMemoryLog(store)),
  make: makeMemoryLog,
  Store: MemoryLogStore,
} as const

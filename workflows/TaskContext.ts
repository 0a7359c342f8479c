import type { Key } from "./Key.ts"

/** State of the current key (keyed stream) or of the task (unkeyed stream). Values must be treated as immutable. */
export interface ValueState<S> {
  get(): S | undefined
  get(orElse: S): S
  set(value: S): void
  clear(): void
}

export interface TaskLogger {
  info(message: string): void
  warn(message: string): void
  error(message: string): void
}

/** What every task function sees. Time and randomness come from the epoch, so replays are exact. */
export interface TaskContext<O> {
  emit(value: O): void
  readonly log: TaskLogger
  /** The key of the record being processed, undefined on an unkeyed stream. */
  readonly key: Key | undefined
  /** Epoch time in milliseconds: the same for every record of an epoch, and the same again on replay. */
  now(): number
  /** A deterministic pseudo-random number in [0, 1), seeded per key group and epoch. */
  random(): number
}

/**
 * Further state of the current key, under sub-keys (like Flink's MapState): kept beside `state`, in the same key group
 * and epoch record, so one step can update both atomically. A task enables it with its `entries` option.
 */
export interface EntryState<V> {
  get(sub: string): V | undefined
  set(sub: string, value: V): void
  delete(sub: string): void
}

export interface ProcessorContext<O, S> extends TaskContext<O> {
  readonly state: ValueState<S>
  /** The current key's entries; throws unless the task declared `entries`. Values must be treated as immutable. */
  readonly entries: EntryState<unknown>
  /**
   * Entries shared by the keys of the current key's group (the unit the runtime places, commits and snapshots as
   * one): what would otherwise be written under many keys, such as a client's record of its recent calls, is one
   * entry. Which keys share a group is the runtime's choice; rely only on the current key being in it. Same option,
   * atomicity and expiry as `entries`.
   */
  readonly groupEntries: EntryState<unknown>
}

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

export interface ProcessorContext<O, S> extends TaskContext<O> {
  readonly state: ValueState<S>
}

import { Data } from "effect"

/** The app or the runtime options are wrong: found before anything runs. */
export class ConfigError extends Data.TaggedError("ConfigError")<{ readonly message: string }> {
  constructor(message: string) {
    super({ message })
  }
}

/** A task threw (or produced something unserializable) on a record: reported, the record's effects discarded. */
export interface TaskFailure {
  readonly task: string
  readonly epoch: number
  readonly keyGroup: number
  readonly key: string | undefined
  readonly record: string
  readonly error: string
}

/** The app module could not be loaded or does not export an app. */
export class AppModuleError extends Data.TaggedError("AppModuleError")<{ readonly message: string; readonly cause?: unknown }> {}

/** The persisted data does not fit this app (a task or continuation it names is gone). */
export class RecoveryError extends Data.TaggedError("RecoveryError")<{ readonly message: string }> {}

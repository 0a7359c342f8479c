export {
  Eddy,
  committedState,
  committedStateFrom,
  run,
  start,
  stateReader,
  type CommittedState,
  type Deployment,
  type RunningApp,
  type RunOptions,
  type RunSummary,
  type StateEntryView,
} from "./Eddy.ts"
export type { RunResult } from "./engine/Engine.ts"
export { AppModuleError, ConfigError, RecoveryError, type TaskFailure } from "./engine/errors.ts"
export { UnserializableError } from "./engine/codec.ts"

import { Context, Data, type Effect } from "effect"
import type { EgressEntry } from "../engine/EpochRecord.ts"

export class EgressError extends Data.TaggedError("EgressError")<{ readonly message: string; readonly cause?: unknown }> {}

/**
 * The Egress port: committed records leave the system here, each epoch exactly once. `publish` is called by every
 * partition for every committed epoch (possibly with nothing); `recover` is called once at start-up with every
 * committed epoch the log still holds, and republishes those the sinks have not durably seen.
 */
export interface EgressService {
  readonly recover: (committed: ReadonlyArray<{ readonly e: number; readonly egress: ReadonlyArray<EgressEntry> }>) => Effect.Effect<void, EgressError>
  readonly publish: (e: number, partition: number, egress: ReadonlyArray<EgressEntry>) => Effect.Effect<void, EgressError>
  /** Waits until everything published so far is durable in the sinks. */
  readonly flush: Effect.Effect<void, EgressError>
  /** The lowest epoch whose egress is not yet durable: the log must keep it. */
  readonly publishedThrough: Effect.Effect<number>
}

export class Egress extends Context.Tag("eddy/Egress")<Egress, EgressService>() {}

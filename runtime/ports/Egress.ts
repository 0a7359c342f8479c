import { Context, Data, type Effect } from "effect"
import type { EgressBatch } from "../engine/EpochRecord.ts"

export class EgressError extends Data.TaggedError("EgressError")<{ readonly message: string; readonly cause?: unknown }> {}

/**
 * The Egress port: committed records leave the system here, each epoch exactly once. `publish` is called by every
 * partition for every committed epoch (possibly with nothing); `recover` is called once at start-up with every
 * committed epoch the log still holds, and republishes those the sinks have not durably seen. Records come in
 * batches, one per key group and epoch (EgressBatch: consecutive sequences); `recover` gets them in (key group,
 * sequence) order, `publish` gets each partition's in ascending key group.
 */
export interface EgressService {
  readonly recover: (
    committed: ReadonlyArray<{ readonly e: number; readonly egress: ReadonlyArray<EgressBatch> }>,
    /** The last committed epoch (the log may hold none of it after truncation). */
    lastEpoch?: number,
  ) => Effect.Effect<void, EgressError>
  readonly publish: (e: number, partition: number, egress: ReadonlyArray<EgressBatch>) => Effect.Effect<void, EgressError>
  /** Waits until everything published so far is durable in the sinks. */
  readonly flush: Effect.Effect<void, EgressError>
  /** The lowest epoch whose egress is not yet durable: the log must keep it. */
  readonly publishedThrough: Effect.Effect<number>
}

export class Egress extends Context.Tag("eddy/Egress")<Egress, EgressService>() {}

import { Context, Data, type Effect } from "effect"
import type { Stop, ToCoordinator, ToPartition } from "../engine/protocol.ts"

/** The coordinator's address; partitions are addressed by index. */
export const COORDINATOR = -1

export type Envelope = ToPartition | Stop | ToCoordinator

export class TransportError extends Data.TaggedError("TransportError")<{ readonly message: string; readonly cause?: unknown }> {}

/**
 * The Transport port: envelopes between the partitions and the coordinator. Per (sender, receiver) pair, delivery
 * is in order; loss is detected by the round protocol's counts, never assumed away.
 */
export interface TransportService {
  readonly send: (to: number, env: Envelope) => Effect.Effect<void, TransportError>
  /** The next envelope for any endpoint hosted by this process. */
  readonly receive: Effect.Effect<{ readonly to: number; readonly env: Envelope }, TransportError>
  /** The next envelope, or undefined if none arrives within `ms` (an envelope already queued is taken at once). */
  readonly receiveWithin: (ms: number) => Effect.Effect<{ readonly to: number; readonly env: Envelope } | undefined, TransportError>
}

export class Transport extends Context.Tag("eddy/Transport")<Transport, TransportService>() {}

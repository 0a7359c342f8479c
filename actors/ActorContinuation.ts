import type { ActorContext } from "./ActorContext.ts"
import type { Next } from "./Behavior.ts"

/**
 * What an actor does when a portal reply arrives: stored by name with serializable data, so a pending ask
 * survives a crash; it sees the actor's current state and returns the next one, like a handler.
 */
export interface ActorContinuation<Rep, Data, S = unknown> {
  readonly kind: "actor-continuation"
  readonly name: string
  run(ctx: ActorContext<unknown>, reply: Rep, data: Data, state: S): Next<S>
}

export const defineContinuation = <Rep, Data = undefined, S = unknown>(
  name: string,
  run: (ctx: ActorContext<unknown>, reply: Rep, data: Data, state: S) => Next<S>,
): ActorContinuation<Rep, Data, S> => ({ kind: "actor-continuation", name, run })

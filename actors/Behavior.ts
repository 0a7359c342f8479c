import type { ActorContext } from "./ActorContext.ts"
import type { ActorContinuation } from "./ActorContinuation.ts"

/** Returned by a handler to stop the actor: its state is deleted; later messages to a spawned id are dead letters. */
export const stopped: unique symbol = Symbol.for("eddy.actors.stopped")
/** Returned by a handler to keep the current state unchanged. */
export const same: unique symbol = Symbol.for("eddy.actors.same")

/** Returned by a handler to switch to another behavior, with that behavior's state. */
export interface Become {
  readonly kind: "become"
  readonly behavior: string
  readonly state: unknown
}

export type Next<S> = S | typeof stopped | typeof same | Become

/**
 * A behavior: how an actor of this type handles messages. Registered by name in the app module; an actor's stored
 * state names its behavior and holds data only, never a closure.
 */
export interface Behavior<M, S> {
  readonly kind: "behavior"
  readonly name: string
  /** State of a new actor (virtual actors start here on first message; spawn may give another). */
  readonly initial: (id: string) => S
  // Method syntax on purpose: it lets any behavior stand in a list of behaviors (AnyBehavior).
  /** Runs once when the actor is created, before its first message. */
  setup?(ctx: ActorContext<M>, state: S): Next<S>
  receive(ctx: ActorContext<M>, message: M, state: S): Next<S>
  /** Continuations this behavior passes to `ctx.ask(...).then(...)`. */
  readonly continuations: ReadonlyArray<ActorContinuation<never, never, unknown>>
}

/** Any behavior, whatever its message and state types: what an actor system's list holds. */
export type AnyBehavior = Behavior<never, unknown>

export interface BehaviorSpec<M, S> {
  readonly initial: S | ((id: string) => S)
  readonly setup?: (ctx: ActorContext<M>, state: S) => Next<S>
  readonly receive: (ctx: ActorContext<M>, message: M, state: S) => Next<S>
  readonly continuations?: ReadonlyArray<ActorContinuation<never, never, unknown>>
}

export const defineBehavior = <M, S>(name: string, spec: BehaviorSpec<M, S>): Behavior<M, S> => {
  if (!/^[A-Za-z0-9_.-]+$/.test(name)) throw new Error(`behavior name '${name}' must match [A-Za-z0-9_.-]+`)
  const initial = spec.initial
  return {
    kind: "behavior",
    name,
    initial: typeof initial === "function" ? (initial as (id: string) => S) : () => initial,
    receive: spec.receive,
    continuations: spec.continuations ?? [],
    ...(spec.setup === undefined ? {} : { setup: spec.setup }),
  }
}

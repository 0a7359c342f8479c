import { ActorSystem, type ActorSystemOptions } from "./ActorSystem.ts"
import { defineBehavior, same, stopped, type Become, type Behavior } from "./Behavior.ts"
import { defineContinuation } from "./ActorContinuation.ts"

export type { ActorContext, ActorFuture } from "./ActorContext.ts"
export type { ActorContinuation } from "./ActorContinuation.ts"
export type { ActorRef } from "./ActorRef.ts"
export { ActorSystem, type ActorAsk, type ActorRecord, type ActorSystemOptions, type DeadLetter, type DeadLetterReply, type Envelope, type KafkaAnswer } from "./ActorSystem.ts"
export type { AnyBehavior, Become, Behavior, BehaviorSpec, Next } from "./Behavior.ts"

export const Actors = {
  /** A behavior: typed messages M, typed state S. */
  define: defineBehavior,
  /** A named continuation for portal replies (list it in the behavior's `continuations`). */
  continuation: defineContinuation,
  /** The actor system: one cyclic workflow hosting every actor of the given behaviors. */
  system: (options: ActorSystemOptions): ActorSystem => new ActorSystem(options),
  /** Handler result: switch to `behavior` with `state`. */
  become: <M, S>(behavior: Behavior<M, S>, state: S): Become => ({ kind: "become", behavior: behavior.name, state }),
  /** Handler result: stop this actor. */
  stopped,
  /** Handler result: keep the state as it is. */
  same,
} as const

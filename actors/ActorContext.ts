import type { Portal } from "../portals/Portal.ts"
import type { ActorContinuation } from "./ActorContinuation.ts"
import type { TaskLogger } from "../workflows/TaskContext.ts"
import type { ActorRef } from "./ActorRef.ts"
import type { Behavior } from "./Behavior.ts"

/** A pending portal reply: `then` names the behavior's continuation that handles it, with data it needs. */
export interface ActorFuture<Rep> {
  readonly id: string
  then<Data>(continuation: ActorContinuation<Rep, Data, unknown>, data: Data): void
}

/** What a handler can do. Everything it does takes effect only if the handler returns (a throw discards it all). */
export interface ActorContext<M> {
  readonly self: ActorRef<M>
  /** Sends a message; it is checked for serializability here, so a bad field fails at the send that has it. */
  send<T>(to: ActorRef<T>, message: NoInfer<T>): void
  /** Creates a child actor with a deterministic id (`<self id>#<n>`) and returns its ref. */
  spawn<T, S>(behavior: Behavior<T, S>, initial?: S): ActorRef<T>
  /** Stops this actor after the current message (same as returning Actors.stopped). */
  stop(): void
  /** Answers the ask being handled (a message that came through the system's portal). */
  reply(value: unknown): void
  /** True while handling an ask, so `reply` is expected. */
  readonly isAsk: boolean
  /** Asks a portal; the reply arrives later in a continuation of this behavior, with this actor's state. */
  ask<Req, Rep>(portal: Portal<Req, Rep>, request: Req): ActorFuture<Rep>
  /** Sends a value to the system's output sink. */
  output(value: unknown): void
  readonly log: TaskLogger
  now(): number
  random(): number
}

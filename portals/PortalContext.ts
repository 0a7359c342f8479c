import type { ProcessorContext } from "../workflows/TaskContext.ts"
import type { Continuation } from "./Continuation.ts"
import type { Portal } from "./Portal.ts"

/** A pending reply: `then` names what runs when it arrives, with serializable data it needs. */
export interface Future<Rep> {
  readonly id: string
  then<Data>(continuation: Continuation<Rep, Data, never, never>, data: Data): void
}

/** The context of askers and repliers: a processor context that can also ask, and (in a replier) reply. */
export interface PortalContext<O, S, Rep = never> extends ProcessorContext<O, S> {
  ask<Req, R>(portal: Portal<Req, R>, request: Req): Future<R>
  /** Answers the request being served: the one passed to onRequest, or the one that led to this continuation. */
  reply(value: Rep): void
  /**
   * Serves the record being handled as a request whose answer goes to `continuation` on this task, for this key,
   * with `data`: from here on `ctx.reply` (in this step, or later in a continuation an ask made here leads to) runs
   * it. A reply within this step runs it within this step, so a request answered at once costs no message and no
   * round. If this step throws, nothing of it survives and `continuation` runs in a step of its own with the
   * rejection (Portal.isRejection) as its reply. The continuation must be listed in the task's `continuations`.
   */
  answerInto<Data>(continuation: Continuation<unknown, Data, never, never>, data: Data): void
}

import type { PortalContext } from "./PortalContext.ts"

/**
 * What runs when a reply arrives. Registered by name (the pending ask stores the name and `data`, never a closure),
 * so an ask survives a crash: after recovery the reply finds the same code by name.
 */
export interface Continuation<Rep, Data, O, S, R = never> {
  readonly kind: "continuation"
  readonly name: string
  /** `ctx.reply` (type R) answers the request the task was serving when it asked: nested asks in a replier. */
  readonly run: (ctx: PortalContext<O, S, R>, reply: Rep, data: Data) => void
}

export const Continuation = {
  define<Rep, Data = undefined, O = never, S = unknown, R = never>(
    name: string,
    run: (ctx: PortalContext<O, S, R>, reply: Rep, data: Data) => void,
  ): Continuation<Rep, Data, O, S, R> {
    return { kind: "continuation", name, run }
  },
}

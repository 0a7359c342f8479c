// Counters as actors served to clients: `add` replies with the new value, `get` with the value; `boom` throws
// (the caller gets Rejected and nothing the handler did survives).
//   eddy run examples/counter --port 7070, then: eddy send examples/counter counter/a '{"add": 2}'
import { Actors } from "eddy/actors"
import { App } from "eddy/workflows"

export type CounterMsg = { readonly add: number } | { readonly get: true } | { readonly boom: string } | { readonly echo: unknown }

export const counter = Actors.define<CounterMsg, number>("counter", {
  initial: 0,
  receive(ctx, msg, value) {
    if ("add" in msg) {
      const next = value + msg.add
      if (ctx.isAsk) ctx.reply(next)
      return next
    }
    if ("boom" in msg) {
      ctx.output({ partial: msg.boom }) // discarded with the rest of the step's effects
      throw new Error(msg.boom)
    }
    if ("echo" in msg) ctx.reply(msg.echo)
    else ctx.reply(value)
    return Actors.same
  },
})

export const counterApp = (options: { readonly requestRetentionMs?: number } = {}) => {
  const system = Actors.system({ name: "counters", behaviors: [counter], ...options })
  return App.define({ name: "counters", workflows: [system.workflow], views: [system.view] })
}

export default () => counterApp()

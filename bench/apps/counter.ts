// The counter workload as an app: `add(n)` to one of K virtual actors, the reply is the new value.
//   client.ask("counter/k17", { op: "add", n: 1 })  → 18
import { Actors, type ActorSystemOptions } from "eddy/actors"
import { App } from "eddy/workflows"

export type CounterMsg = { readonly op: "add"; readonly n: number } | { readonly op: "get" }

export const counter = Actors.define<CounterMsg, number>("counter", {
  initial: 0,
  receive(ctx, msg, value) {
    if (msg.op === "get") {
      ctx.reply(value)
      return Actors.same
    }
    const next = value + msg.n
    ctx.reply(next)
    return next
  },
})

/** `kafka`: requests from a Kafka topic too, answered on another (bench/run.ts --eddy-kafka). */
export const counterSystem = (kafka?: ActorSystemOptions["kafka"]) =>
  Actors.system({ name: "counters", behaviors: [counter], ...(kafka === undefined ? {} : { kafka }) })

export const counterApp = (system = counterSystem()) => App.define({ name: "counters", workflows: [system.workflow], views: [system.view] })

export default () => counterApp()

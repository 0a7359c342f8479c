// Fib(n) by actors, as in Portals: each call spawns two children and replies with the sum of their replies.
// `eddy run examples/fibonacci --n 25` prints 75025.
import { Actors, type ActorRef } from "eddy/actors"
import { App, AppArgs, Sink, Source, Workflow } from "eddy/workflows"

export type Result = { readonly value: number }
export type Fib = { readonly n: number; readonly replyTo: ActorRef<Result> }
type FibState = { readonly sum: number; readonly got: number; readonly replyTo?: ActorRef<Result> }

export const fib = Actors.define<Fib | Result, FibState>("fib", {
  initial: { sum: 0, got: 0 },
  receive(ctx, msg, state) {
    if ("n" in msg) {
      if (msg.n <= 1) {
        ctx.send(msg.replyTo, { value: msg.n })
        return Actors.stopped
      }
      ctx.send(ctx.spawn(fib), { n: msg.n - 1, replyTo: ctx.self })
      ctx.send(ctx.spawn(fib), { n: msg.n - 2, replyTo: ctx.self })
      return { ...state, replyTo: msg.replyTo }
    }
    const next = { ...state, sum: state.sum + msg.value, got: state.got + 1 }
    if (next.got < 2) return next
    ctx.send(next.replyTo!, { value: next.sum })
    return Actors.stopped
  },
})

/** Receives the final result and hands it to the system's output (printed by `eddy run`). */
export const printer = Actors.define<Result, null>("printer", {
  initial: null,
  receive(ctx, msg) {
    ctx.output(msg.value)
    return Actors.stopped
  },
})

export const fibonacciApp = (ns: ReadonlyArray<number>, output = Sink.console<unknown>()) => {
  const system = Actors.system({ name: "fibonacci", behaviors: [fib, printer], output })
  const requests = Workflow.create("requests", (wf) => {
    system.input(
      wf.source(Source.array(ns, { name: "n" })).map((n) => system.tell(system.ref(fib, `fib-${n}`), { n, replyTo: system.ref(printer, `print-${n}`) })),
    )
  })
  return App.define({ name: "fibonacci", workflows: [requests, system.workflow], views: [system.view] })
}

export default (args: AppArgs) => fibonacciApp([args.int("n", 25)])

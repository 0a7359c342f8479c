// fib(n) by actor fan-out, answered to a client: the actor asked for fib(n) asks two child actors for fib(n-1) and
// fib(n-2) and replies (in the continuation that receives the second answer) when the whole subtree has answered.
// Every node of the call tree is an actor (fib(20): 21,891 actors), stopped once it has replied.
//   client.ask("fib/r42", { op: "fib", n: 20 })  → 6765
import { Actors, type ActorSystem } from "eddy/actors"
import { App } from "eddy/workflows"

export type FibMsg = { readonly op: "fib"; readonly n: number }
type FibState = { readonly sum: number; readonly got: number }

const answered = Actors.continuation<number, null, FibState>("answered", (ctx, value, _data, state) => {
  const next = { sum: state.sum + value, got: state.got + 1 }
  if (next.got < 2) return next
  ctx.reply(next.sum)
  return Actors.stopped
})

// The system is created below; the behavior reaches its portal only when it runs.
let system: ActorSystem | undefined

export const fibNode = Actors.define<FibMsg, FibState>("fib", {
  initial: { sum: 0, got: 0 },
  continuations: [answered],
  receive(ctx, msg) {
    if (msg.n <= 1) {
      ctx.reply(msg.n)
      return Actors.stopped
    }
    // Children have user ids derived from the parent's (ids chosen by the client are unique per request), so they
    // are virtual actors activated by the ask itself: no spawn message has to arrive before the request.
    for (const [side, n] of [["L", msg.n - 1], ["R", msg.n - 2]] as const) {
      ctx.ask(system!.portal, system!.askRequest({ type: "fib", id: `${ctx.self.id}${side}` }, { op: "fib", n })).then(answered, null)
    }
    return { sum: 0, got: 0 }
  },
})

export const fibSystem = (): ActorSystem => {
  system = Actors.system({ name: "fibs", behaviors: [fibNode] })
  return system
}

export const fibApp = (s = fibSystem()) => App.define({ name: "fibs", workflows: [s.workflow], views: [s.view] })

/** Actor invocations of one fib(n) request: the nodes of its call tree. */
export const fibCalls = (n: number): number => (n <= 1 ? 1 : 1 + fibCalls(n - 1) + fibCalls(n - 2))

export default () => fibApp()

// Ping-pong between actor pairs: the actor benchmark as an app module, so it also runs on a cluster.
//   eddy run bench/apps/pingpong.ts --pairs 10000 --rounds 20
import { Actors, type ActorRef } from "eddy/actors"
import { App, AppArgs, Source, Workflow } from "eddy/workflows"

type Ball = { readonly n: number; readonly peer: ActorRef<Ball> }

export const player = Actors.define<Ball, number>("player", {
  initial: 0,
  receive(ctx, ball, hits) {
    if (ball.n > 0) ctx.send(ball.peer, { n: ball.n - 1, peer: ctx.self })
    return hits + 1
  },
})

export const pingPongApp = (pairs: number, rounds: number) => {
  const system = Actors.system({ name: "pingpong", behaviors: [player] })
  const starts = Workflow.create("starts", (wf) => {
    system.input(
      wf
        .source(Source.generator(function* () {
          for (let i = 0; i < pairs; i++) yield i
        }, { name: "pairs" }))
        .map((i) => system.tell(system.ref(player, `a${i}`), { n: rounds * 2 - 1, peer: system.ref(player, `b${i}`) })),
    )
  })
  return App.define({ name: "pingpong", workflows: [starts, system.workflow] })
}

export default (args: AppArgs) => pingPongApp(args.int("pairs", 10_000), args.int("rounds", 20))

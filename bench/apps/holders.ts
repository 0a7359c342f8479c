// Many actors with state, then steady traffic to them: the app of the recovery benchmark (bench/recovery.ts).
// First `--actors` holders get a number each (the fill), then an endless stream of increments goes to holders
// spread over all of them (the traffic). Both sources have two splits, so ingress is read by both workers of a
// 2-worker cluster. Records come in atoms of `--atom` records.
//   eddy cluster bench/apps/holders.ts --partitions 2 --actors 1000000
import { Actors } from "eddy/actors"
import { App, AppArgs, Source, Workflow } from "eddy/workflows"

type Put = { readonly v: number }

export const holder = Actors.define<Put, number>("holder", {
  initial: 0,
  receive: (_ctx, m, n) => n + m.v,
})

/** Fill atoms per split: the fill is over once every split has admitted this many atoms. */
export const fillAtoms = (actors: number, atom: number, splits: number): number => Math.ceil(Math.ceil(actors / atom) / splits)

export const holdersApp = (actors: number, atom: number) => {
  const system = Actors.system({ name: "holders", behaviors: [holder] })
  const fill = Workflow.create("fill", (wf) => {
    system.input(
      wf
        .source(Source.generator(function* () {
          for (let i = 0; i < actors; i++) yield i
        }, { name: "fill", atomSize: atom, splits: 2 }))
        .map((i) => system.tell(system.ref(holder, `h${i}`), { v: i })),
    )
  })
  const traffic = Workflow.create("traffic", (wf) => {
    system.input(
      wf
        .source(Source.generator(function* () {
          // Endless; holder i·40503 mod actors (coprime to 10^k): spread over all actors and key groups, the same on every replay.
          for (let i = 0; ; i++) yield (i * 40503) % actors
        }, { name: "traffic", atomSize: atom, splits: 2 }))
        .map((j) => system.tell(system.ref(holder, `h${j}`), { v: 1 })),
    )
  })
  return App.define({ name: "holders", workflows: [fill, traffic, system.workflow] })
}

export default (args: AppArgs) => holdersApp(args.int("actors", 1_000_000), args.int("atom", 100))

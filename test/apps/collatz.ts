// A workflow with a cycle and keyed state, for the crash tests: each number walks its Collatz path around the
// loop (one round per step, longer paths cross epochs as in-transit messages); per-key state counts steps.
import { App, AppArgs, Sink, Source, Workflow } from "eddy/workflows"

type Walk = { readonly start: number; readonly n: number; readonly steps: number }

export default (args: AppArgs) => {
  const count = args.int("count", 2000)
  const atomSize = args.int("atom-size", 3)
  const wf = Workflow.create("collatz", (wf) => {
    const loop = wf.cycle<Walk>({ name: "loop" })
    const starts = wf.source(Source.generator(function* () {
      for (let i = 1; i <= count; i++) yield { start: i, n: i, steps: 0 }
    }, { atomSize, name: "starts", splits: 2 }))
    const walked = starts
      .merge(loop.stream)
      .keyBy((w) => w.n % 101)
      .processor<Walk | { readonly done: Walk; readonly seenByKey: number }, { visits: number; maxN: number }>(
        (ctx, w) => {
          const s = ctx.state.get({ visits: 0, maxN: 0 })
          ctx.state.set({ visits: s.visits + 1, maxN: Math.max(s.maxN, w.n) })
          if (w.n === 1) ctx.emit({ done: w, seenByKey: s.visits + 1 })
          else ctx.emit({ start: w.start, n: w.n % 2 === 0 ? w.n / 2 : 3 * w.n + 1, steps: w.steps + 1 })
        },
        { name: "step" },
      )
    loop.feed(walked.filter((x): x is Walk => !("done" in x)))
    walked
      .filter((x): x is { readonly done: Walk; readonly seenByKey: number } => "done" in x)
      .map((x) => ({ start: x.done.start, steps: x.done.steps, seenByKey: x.seenByKey }))
      .sink(Sink.file("out.jsonl", "results"))
  })
  return App.define({ name: "collatz", workflows: [wf], keyGroups: 32 })
}

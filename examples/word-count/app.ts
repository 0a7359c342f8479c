// Word count: the dataflow API end to end. `eddy run examples/word-count` counts the words of the text below
// (or of --file PATH) and prints each word's running count as its epoch commits.
import { App, AppArgs, Sink, Source, Workflow } from "eddy/workflows"

const sample = [
  "an eddy is a current that turns back on itself",
  "inside a stream an eddy keeps turning",
  "the actors live in such a loop",
]

export default (args: AppArgs) => {
  const file = args.string("file", "")
  const lines = file === "" ? Source.array(sample, { name: "sample" }) : Source.lines(file)
  const counts = Workflow.create("wordcount", (wf) => {
    wf.source(lines)
      .flatMap((line) => line.toLowerCase().split(/\W+/).filter((w) => w.length > 0))
      .keyBy((word) => word)
      .processor<[string, number], number>(
        (ctx, word) => {
          const n = ctx.state.get(0) + 1
          ctx.state.set(n)
          ctx.emit([word, n])
        },
        { name: "count" },
      )
      .sink(Sink.console(([word, n]) => `${word}\t${n}`))
  })
  return App.define({ name: "word-count", workflows: [counts] })
}

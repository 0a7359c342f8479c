// Cycles: a workflow consuming its own output. A loop that runs for more rounds than the round limit carries its
// messages over epoch boundaries as in-transit messages, and ends with exactly the result of an unlimited run.
import { afterAll, describe, expect, it } from "vitest"
import { App, Sink, Source, Workflow } from "../../workflows/index.ts"
import { Eddy, committedState } from "../../runtime/index.ts"
import type { Vote } from "../../runtime/engine/protocol.ts"
import { removeDir, tempDir } from "../helpers.ts"
import { range, runApp, type Summary } from "./util.ts"

type Walk = { readonly id: number; readonly n: number; readonly hops: number }
type Done = { readonly id: number; readonly hops: number; readonly visits: number }

/** Each walk counts down from `n` around the loop; per-key state counts the visits of each key (n % 7). */
const countdown = (starts: ReadonlyArray<number>) => {
  const wf = Workflow.create("countdown", (wf) => {
    const loop = wf.cycle<Walk>({ name: "loop" })
    const walked = wf
      .source(Source.array(starts.map((n, id): Walk => ({ id, n, hops: 0 })), { name: "starts", atomSize: 2 }))
      .merge(loop.stream)
      .keyBy((w) => w.n % 7)
      .processor<Walk | Done, number>(
        (ctx, w) => {
          const visits = ctx.state.get(0) + 1
          ctx.state.set(visits)
          if (w.n === 0) ctx.emit({ id: w.id, hops: w.hops, visits })
          else ctx.emit({ id: w.id, n: w.n - 1, hops: w.hops + 1 })
        },
        { name: "step" },
      )
    loop.feed(walked.filter((x): x is Walk => "n" in x))
    walked.filter((x): x is Done => !("n" in x)).sink(Sink.memory("done"))
  })
  return App.define({ name: "countdown", workflows: [wf], keyGroups: 16 })
}

const run = async (starts: ReadonlyArray<number>, roundLimit: number, extra: { dataDir?: string; partitions?: number } = {}) => {
  const votes: Vote[][] = []
  const r = await runApp(countdown(starts), { roundLimit, epochAtoms: 3, onCommit: (_e, v) => votes.push([...v]), ...extra })
  return { r, votes }
}

const byId = (s: Summary) => [...s.outputs<Done>("done")].sort((a, b) => a.id - b.id)
/** What a walk's result is whatever the interleaving: `visits` depends on which walks passed a key first. */
const results = (s: Summary) => byId(s).map((d) => ({ id: d.id, hops: d.hops }))

describe("cycles", () => {
  const dirs: string[] = []
  afterAll(() => dirs.forEach(removeDir))
  const starts = [25, 3, 0, 40, 17, 9, 31, 1]

  it("a loop longer than the round limit carries in-transit messages across epochs and ends like an unlimited run", async () => {
    const unlimited = await run(starts, 10_000)
    const limited = await run(starts, 3)

    // Every walk finished with the right number of hops, exactly once.
    expect(results(unlimited.r)).toEqual(starts.map((n, id) => ({ id, hops: n })))
    expect(results(limited.r)).toEqual(results(unlimited.r))

    // The limited run really cut the loop: epochs ended with messages in transit, and it took more epochs.
    const inTransit = limited.votes.map((vs) => vs.reduce((n, v) => n + v.inTransit, 0))
    expect(inTransit.filter((n) => n > 0).length).toBeGreaterThan(5)
    expect(inTransit.at(-1)).toBe(0)
    expect(limited.r.epochs).toBeGreaterThan(unlimited.r.epochs + 5)
    // The unlimited run never carried anything over.
    expect(unlimited.votes.every((vs) => vs.every((v) => v.inTransit === 0))).toBe(true)
  })

  it("the final keyed state is the same with any round limit and any partition count (file log)", async () => {
    const states = []
    for (const [roundLimit, partitions] of [
      [10_000, 1],
      [2, 1],
      [3, 4],
      [1, 2],
    ] as const) {
      const dir = tempDir(`cycle-${roundLimit}-${partitions}`)
      dirs.push(dir)
      const { r } = await run(starts, roundLimit, { dataDir: dir, partitions })
      expect(r.failures).toBe(0)
      states.push((await committedState(dir)).entries)
    }
    const visits = new Map<string, number>()
    for (const n of starts) for (let k = n; k >= 0; k--) visits.set(`n${k % 7}`, (visits.get(`n${k % 7}`) ?? 0) + 1)
    const expected = [...visits].sort(([a], [b]) => (a < b ? -1 : 1)).map(([key, value]) => ({ task: "countdown/step", key, value }))
    for (const s of states) expect(s).toEqual(expected)
  })

  it("stopped mid-loop and restarted from the data directory, the in-transit messages come back from the log", async () => {
    const refDir = tempDir("cycle-stop-ref")
    const dir = tempDir("cycle-stop")
    dirs.push(refDir, dir)
    const ref = await run(starts, 3, { dataDir: refDir })
    let carried = 0
    const first = Eddy.start(countdown(starts), {
      roundLimit: 3,
      epochAtoms: 3,
      dataDir: dir,
      onFailure: () => undefined,
      stopWhen: (e) => e >= 5,
      onCommit: (e, votes) => {
        if (e === 5) carried = votes.reduce((n, v) => n + v.inTransit, 0)
      },
    })
    expect((await first.done).lastEpoch).toBe(5)
    expect(carried).toBeGreaterThan(0)
    const second = await runApp(countdown(starts), { roundLimit: 3, epochAtoms: 3, dataDir: dir, partitions: 2 })
    expect(second.recoveredEpoch).toBe(5)
    expect([...first.outputs<Done>("done"), ...second.outputs<Done>("done")]).toEqual(ref.r.outputs("done"))
    expect(await committedState(dir)).toEqual(await committedState(refDir))
  })

  it("a round limit of 1 still makes progress: one step per epoch", async () => {
    const { r, votes } = await run([4], 1)
    expect(byId(r)).toEqual([{ id: 0, hops: 4, visits: 1 }])
    // 4 hops, two rounds each (processor, then cycle), plus the ingress round and the final step.
    expect(votes.length).toBeGreaterThanOrEqual(9)
  })

  it("a cycle with two feeds receives from both", async () => {
    const wf = Workflow.create("two-feeds", (wf) => {
      const loop = wf.cycle<number>()
      const all = wf.source(Source.array([40])).merge(loop.stream)
      const halves = all.filter((x) => x > 1 && x % 2 === 0).map((x) => x / 2)
      const odds = all.filter((x) => x > 1 && x % 2 === 1).map((x) => x - 1)
      loop.feed(halves)
      loop.feed(odds)
      all.sink(Sink.memory("seen"))
    })
    const r = await runApp(App.define({ name: "two-feeds", workflows: [wf] }), { roundLimit: 2 })
    expect(r.outputs("seen")).toEqual([40, 20, 10, 5, 4, 2, 1])
  })

  it("a cycle that is never fed is rejected when the workflow is built", () => {
    expect(() =>
      Workflow.create("unfed", (wf) => {
        const loop = wf.cycle<number>({ name: "loop" })
        loop.stream.sink(Sink.memory("x"))
      }),
    ).toThrow(/cycle unfed\/loop is never fed/)
  })

  it("many walks on many keys: the limited, partitioned run equals the unlimited single-partition run", async () => {
    const many = range(0, 59).map((i) => (i * 37) % 53)
    const a = await run(many, 10_000)
    const b = await run(many, 2, { partitions: 3 })
    expect(results(b.r)).toEqual(results(a.r))
    expect(results(a.r).map((d) => d.hops)).toEqual(many)
  })
})

// Determinism: with epochs cut by counts, one app on 1, 2 and 4 partitions produces the same outputs in the same
// order, the same sink file byte for byte, and the same committed state. The app uses every feature whose order
// could leak the partitioning: several splits, keyBy, per-key and per-task state, a cycle cut by the round limit,
// a portal with nested continuations, merge, publish/subscribe, ctx.now() and ctx.random().
import { readFileSync } from "node:fs"
import { join } from "node:path"
import { afterAll, describe, expect, it } from "vitest"
import { App, Sink, Source, Workflow } from "../../workflows/index.ts"
import { Continuation, Portal } from "../../portals/index.ts"
import { committedState } from "../../runtime/index.ts"
import { removeDir, tempDir } from "../helpers.ts"
import { epochClock, runApp, sequential } from "./util.ts"

type Job = { readonly id: number; readonly n: number; readonly user: string }

const scorer = Portal.define<{ user: string; n: number }, { user: string; score: number }>("scorer", { key: (r) => r.user })

const scored = Continuation.define<{ user: string; score: number }, Job, string, number>("scored", (ctx, rep, job) => {
  const total = ctx.state.get(0) + rep.score
  ctx.state.set(total)
  ctx.emit(`${job.id}:${rep.user}:${rep.score}:${total}:${ctx.random().toFixed(6)}`)
})

/** `withFile`: also a file sink (relative: inside the data directory, so only for runs that have one). */
const buildApp = (withFile = true) => {
  const main = Workflow.create("main", (wf) => {
    const loop = wf.cycle<Job>({ name: "loop" })
    const jobs = wf.source(
      Source.generator(function* () {
        for (let id = 0; id < 120; id++) yield { id, n: (id * 13) % 17, user: `u${(id * 7) % 9}` }
      }, { name: "jobs", splits: 3, atomSize: 2 }),
    )
    const extra = wf.source(Source.atoms([[{ id: 1000, n: 3, user: "u1" }], [{ id: 1001, n: 20, user: "u8" }]], { name: "extra" }))
    const stepped = jobs
      .merge(extra, loop.stream)
      .keyBy((j) => j.n % 5)
      .processor<Job | { readonly out: Job; readonly at: number }, number>(
        (ctx, j) => {
          const visits = ctx.state.get(0) + 1
          ctx.state.set(visits)
          if (j.n <= 1) ctx.emit({ out: j, at: ctx.now() * 1000 + visits })
          else ctx.emit({ ...j, n: j.n % 2 === 0 ? j.n / 2 : j.n - 1 })
        },
        { name: "step" },
      )
    loop.feed(stepped.filter((x): x is Job => !("out" in x)))
    const finished = stepped.filter((x): x is { readonly out: Job; readonly at: number } => "out" in x)
    finished.map((x) => x.out).publish("finished")
    if (withFile) finished.map((x) => ({ id: x.out.id, user: x.out.user, at: x.at })).sink(Sink.file("finished.jsonl", "finished-file"))
  })
  const scoring = Workflow.create("scoring", (wf) => {
    wf.source(Source.empty()).via(
      Portal.replier<{ user: string; n: number }, { user: string; score: number }, never, never, number>(scorer, (ctx, req) => {
        const asked = ctx.state.get(0) + 1
        ctx.state.set(asked)
        ctx.reply({ user: req.user, score: asked * 10 + Math.floor(ctx.random() * 10) })
      }),
    )
    const finished = wf.subscribe<Job>("finished")
    // A subscription is unkeyed: one per-task instance sees every finished job, a running count in commit order.
    finished
      .processor<string, { count: number; ids: number }>(
        (ctx, j) => {
          const s = ctx.state.get({ count: 0, ids: 0 })
          const next = { count: s.count + 1, ids: (s.ids * 31 + j.id) % 1_000_003 }
          ctx.state.set(next)
          ctx.emit(`${next.count}:${next.ids}`)
        },
        { name: "tally" },
      )
      .sink(Sink.memory("tally"))
    finished
      .keyBy((j) => j.user)
      .via(Portal.asker<Job, string, number>((ctx, j) => ctx.ask(scorer, { user: j.user, n: j.n }).then(scored, j), { continuations: [scored], name: "ask" }))
      .sink(Sink.memory("scores"))
  })
  return App.define({ name: "determinism", workflows: [main, scoring], keyGroups: 64 })
}

describe("determinism across partition counts", () => {
  const dirs: string[] = []
  afterAll(() => dirs.forEach(removeDir))

  it("1, 2 and 4 partitions: identical outputs (same order), identical sink file and identical committed state", async () => {
    const runs = await sequential([1, 2, 4, 2], async (partitions) => {
      const dir = tempDir(`det-p${partitions}`)
      dirs.push(dir)
      let carried = 0
      const r = await runApp(buildApp(), {
        ...epochClock,
        dataDir: dir,
        partitions,
        epochAtoms: 3,
        roundLimit: 4,
        onCommit: (_e, votes) => void (carried += votes.some((v) => v.inTransit > 0) ? 1 : 0),
      })
      return {
        r,
        carried,
        scores: r.outputs<string>("scores"),
        tally: r.outputs<string>("tally"),
        file: readFileSync(join(dir, "finished.jsonl"), "utf8"),
        state: await committedState(dir),
      }
    })
    const [one, ...others] = runs
    expect(one!.r.failures).toBe(0)
    // The round limit cut the loop: several epochs ended with messages in transit.
    expect(one!.carried).toBeGreaterThan(3)
    expect(one!.scores).toHaveLength(122)
    expect(one!.tally.map((t) => Number(t.split(":")[0]))).toEqual(Array.from({ length: 122 }, (_, i) => i + 1))
    expect(one!.file.split("\n")).toHaveLength(123)
    expect(one!.state.entries.length).toBeGreaterThan(10)
    for (const other of others) {
      expect(other.r.failures).toBe(0)
      expect(other.r.lastEpoch).toBe(one!.r.lastEpoch)
      expect(other.scores).toEqual(one!.scores)
      expect(other.tally).toEqual(one!.tally)
      expect(other.file).toBe(one!.file)
      expect(other.state).toEqual(one!.state)
    }
  })

  it("in memory, without a data directory, the outputs are identical too", async () => {
    const [a, b] = await sequential([1, 4], (partitions) => runApp(buildApp(false), { ...epochClock, partitions, epochAtoms: 5, roundLimit: 2 }))
    expect(b!.outputs("scores")).toEqual(a!.outputs("scores"))
    expect(b!.outputs("tally")).toEqual(a!.outputs("tally"))
    expect(a!.outputs("scores")).toHaveLength(122)
  })

  it("the keyGroupRoundLimit defers work without changing the result", async () => {
    const [a, b] = await sequential([10_000, 1], (keyGroupRoundLimit) =>
      runApp(buildApp(false), { ...epochClock, partitions: 2, epochAtoms: 3, roundLimit: 4, keyGroupRoundLimit }),
    )
    const sortedScores = (s: typeof a) => [...s!.outputs<string>("scores")].map((x) => x.split(":")[0]).sort()
    expect(sortedScores(b)).toEqual(sortedScores(a))
    expect(b!.outputs<string>("tally").at(-1)!.split(":")[0]).toBe("122")
  })
})

// Atomic streams: a source yields atoms, and an atom is never split across epochs; a record that throws inside an
// atom loses only its own effects. Epochs are observed through the logical clock (ctx.now() === epoch number).
import { describe, expect, it } from "vitest"
import { App, Sink, Source, Workflow, type SourceSpec } from "../../workflows/index.ts"
import type { Vote } from "../../runtime/engine/protocol.ts"
import { epochClock, failuresOf, range, runApp } from "./util.ts"

type Tagged = { readonly atom: number; readonly x: number; readonly epoch: number }

/** Records carry their atom id; the map tags each with the epoch it ran in. */
const tagApp = (source: SourceSpec<{ atom: number; x: number }>, keyed: boolean) =>
  App.define({
    name: "atoms",
    workflows: [
      Workflow.create("atoms", (wf) => {
        const s = wf.source(source)
        ;(keyed ? s.keyBy((r) => r.x) : s).map((r, ctx): Tagged => ({ ...r, epoch: ctx.now() })).sink(Sink.memory("out"))
      }),
    ],
  })

const epochsPerAtom = (out: ReadonlyArray<Tagged>): Map<number, Set<number>> => {
  const m = new Map<number, Set<number>>()
  for (const r of out) m.set(r.atom, (m.get(r.atom) ?? new Set()).add(r.epoch))
  return m
}

describe("atoms", () => {
  const sizes = [3, 1, 4, 1, 5, 2, 6]
  let next = 0
  const explicitAtoms = sizes.map((n, atom) => Array.from({ length: n }, () => ({ atom, x: next++ })))

  it("Source.atoms with epochAtoms 1: each epoch holds exactly one whole atom", async () => {
    const votes: Array<{ e: number; records: number }> = []
    const onCommit = (e: number, vs: ReadonlyArray<Vote>) => votes.push({ e, records: vs.reduce((n, v) => n + v.records, 0) })
    for (const keyed of [false, true]) {
      votes.length = 0
      const r = await runApp(tagApp(Source.atoms(explicitAtoms), keyed), { ...epochClock, epochAtoms: 1, partitions: keyed ? 3 : 1, onCommit })
      const out = r.outputs<Tagged>("out")
      expect(out).toHaveLength(next)
      const per = epochsPerAtom(out)
      // Never split: one epoch per atom, and atom i in epoch i + 1.
      for (const [atom, epochs] of per) expect([...epochs]).toEqual([atom + 1])
      // The ingress records admitted per epoch are the atom sizes.
      expect(votes.slice(0, sizes.length)).toEqual(sizes.map((n, i) => ({ e: i + 1, records: n })))
    }
  })

  it("Source.atoms with epochAtoms 2: two whole atoms per epoch", async () => {
    const r = await runApp(tagApp(Source.atoms(explicitAtoms), false), { ...epochClock, epochAtoms: 2 })
    const per = epochsPerAtom(r.outputs<Tagged>("out"))
    for (const [atom, epochs] of per) expect([...epochs]).toEqual([Math.floor(atom / 2) + 1])
  })

  it("atomSize groups array and generator records into atoms that are never split", async () => {
    const records = range(0, 20).map((x) => ({ atom: Math.floor(x / 3), x }))
    const sources = [
      Source.array(records, { atomSize: 3 }),
      Source.generator(() => records.values(), { atomSize: 3 }),
    ]
    for (const source of sources) {
      const r = await runApp(tagApp(source, false), { ...epochClock, epochAtoms: 1 })
      const out = r.outputs<Tagged>("out")
      expect(out.map((o) => o.x)).toEqual(range(0, 20))
      const per = epochsPerAtom(out)
      expect(per.size).toBe(7) // 21 records: 7 atoms of 3
      for (const [atom, epochs] of per) expect([...epochs]).toEqual([atom + 1])
    }
  })

  it("a short last atom stays whole", async () => {
    const records = range(0, 6).map((x) => ({ atom: Math.floor(x / 4), x }))
    const r = await runApp(tagApp(Source.array(records, { atomSize: 4 }), false), { ...epochClock, epochAtoms: 1 })
    expect(r.outputs<Tagged>("out").map((o) => [o.x, o.epoch])).toEqual([
      [0, 1],
      [1, 1],
      [2, 1],
      [3, 1],
      [4, 2],
      [5, 2],
      [6, 2],
    ])
  })

  it("atoms of several splits: each split admits whole atoms, and every atom lands in one epoch", async () => {
    const atoms = range(0, 11).map((atom) => range(0, (atom % 3) + 1).map((i) => ({ atom, x: atom * 10 + i })))
    const r = await runApp(tagApp(Source.atoms(atoms, { splits: 3, name: "multi" }), true), { ...epochClock, epochAtoms: 1, partitions: 2 })
    const out = r.outputs<Tagged>("out")
    expect(out).toHaveLength(atoms.flat().length)
    const per = epochsPerAtom(out)
    expect(per.size).toBe(atoms.length)
    // Split s holds atoms s, s+3, s+6, ...: its k-th atom runs in epoch k + 1.
    for (const [atom, epochs] of per) expect([...epochs]).toEqual([Math.floor(atom / 3) + 1])
  })

  it("a record that throws inside an atom: only its effects are discarded, the rest of the atom commits", async () => {
    const wf = Workflow.create("partial", (wf) => {
      wf.source(Source.atoms([["a1", "a2", "BAD", "a3"], ["b1"]]))
        .keyBy(() => "one key")
        .processor<string, string[]>(
          (ctx, v) => {
            const seen = ctx.state.get([])
            ctx.state.set([...seen, v])
            ctx.emit(`${v} after ${seen.length}`)
            if (v === "BAD") throw new Error("bad record")
          },
          { name: "collect" },
        )
        .sink(Sink.memory("out"))
    })
    const r = await runApp(App.define({ name: "partial", workflows: [wf] }), { ...epochClock, epochAtoms: 1 })
    expect(r.outputs("out")).toEqual(["a1 after 0", "a2 after 1", "a3 after 2", "b1 after 3"])
    expect(failuresOf(r)).toEqual([{ task: "partial/collect", record: "'BAD'", error: "bad record" }])
    expect(r.failureList[0]!.epoch).toBe(1)
  })
})

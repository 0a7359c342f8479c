import { describe, expect, it } from "vitest"
import { PartitionCore, type PartitionOutput } from "../../runtime/engine/PartitionCore.ts"
import { compile } from "../../runtime/engine/Plan.ts"
import type { RoundData, RoundDone } from "../../runtime/engine/protocol.ts"
import { App, Sink, Source, Workflow } from "../../workflows/index.ts"

// The round protocol on two partition cores driven by hand: a lost batch must hold the round (never be absorbed),
// a duplicated one must fail loudly, and a late one completes the epoch as if nothing happened.
const app = App.define({
  name: "rounds",
  keyGroups: 16,
  workflows: [
    Workflow.from(Source.array(Array.from({ length: 40 }, (_, i) => i), { name: "nums" }), { name: "w" })
      .keyBy((n) => n)
      .processor<number, number>((ctx, n) => {
        ctx.state.set(n)
        ctx.emit(n)
      }, { name: "keep" })
      .sink(Sink.memory("out")),
  ],
})

const setup = () => {
  const plan = compile(app)
  const reporter = { failure: () => undefined, log: () => undefined }
  const cores = [0, 1].map((p) => new PartitionCore(plan, { partition: p, partitions: 2, checked: true, keyGroupRoundLimit: 1000, reporter }))
  const owner = cores.findIndex((c) => c.groups.has(plan.splits[0]!.keyGroup))
  const open = { t: "open", g: 1, e: 1, time: 0, budget: 100, roundLimit: 8 } as const
  cores.forEach((c, p) => c.onOpen(open, p === owner ? [{ split: 0, atoms: Array.from({ length: 40 }, (_, i) => [i]) }] : []))
  return cores
}

/** Delivers sends until none is left; `keep` decides per data batch whether it arrives. Returns what was held back. */
const pump = (cores: ReadonlyArray<PartitionCore>, keep: (env: RoundData) => boolean): RoundData[] => {
  const held: RoundData[] = []
  for (let moved = true; moved; ) {
    moved = false
    for (const core of cores) {
      const all = core.out.splice(0)
      const isSend = (o: PartitionOutput): o is Extract<PartitionOutput, { o: "send" }> => o.o === "send"
      core.out.push(...all.filter((o) => !isSend(o)))
      for (const { to, env } of all.filter(isSend)) {
        moved = true
        if (env.t === "data" && !keep(env)) held.push(env)
        else cores[to]!.handle(env as RoundData | RoundDone)
      }
    }
  }
  return held
}

const finished = (core: PartitionCore) => core.out.some((o) => o.o === "record")
const records = (cores: ReadonlyArray<PartitionCore>) => cores.map((c) => c.out.find((o) => o.o === "record")).filter((o) => o !== undefined)

describe("the round protocol", () => {
  it("a lost batch holds the round; delivered late, the epoch ends exactly as without the loss", () => {
    const clean = setup()
    expect(pump(clean, () => true)).toEqual([])
    expect(clean.every(finished)).toBe(true)

    const lossy = setup()
    let dropped = false
    const held = pump(lossy, () => dropped || !(dropped = true))
    expect(held).toHaveLength(1)
    // The receiver saw DONE with a count it has not received: it must not finish the round, let alone the epoch.
    const receiver = lossy.findIndex((c) => c.groups.has(held[0]!.msgs[0]!.kg))
    expect(finished(lossy[receiver]!)).toBe(false)
    lossy[receiver]!.handle(held[0]!)
    expect(pump(lossy, () => true)).toEqual([])
    expect(lossy.every(finished)).toBe(true)
    expect(records(lossy).map((o) => (o as { record: unknown }).record)).toEqual(records(clean).map((o) => (o as { record: unknown }).record))
  })

  it("a duplicated batch is an assertion failure, never processed twice", () => {
    const cores = setup()
    let first: RoundData | undefined
    pump(cores, (env) => {
      first ??= env
      return true
    })
    expect(first).toBeDefined()
    const receiver = cores.findIndex((c) => c.groups.has(first!.msgs[0]!.kg))
    // Re-deliver a batch of a round the receiver already completed, and a fresh copy in a new epoch's round 0.
    const dup: RoundData = { ...first!, e: 2, round: 0 }
    cores[receiver]!.handle(dup)
    cores[receiver]!.handle(dup)
    const done: RoundDone = { t: "done", g: 1, e: 2, round: 0, from: dup.from, counts: cores.map((_, p) => (p === receiver ? dup.msgs.length : 0)), pending: false }
    const open = { t: "open", g: 1, e: 2, time: 0, budget: 0, roundLimit: 8 } as const
    cores[receiver]!.handle(done)
    expect(() => cores[receiver]!.onOpen(open, [])).toThrow(/assertion/)
  })
})

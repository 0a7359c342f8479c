// Task state: get/set/clear, isolation between keys and tasks, immutability and serializability in checked mode,
// persistence in the file log across a restart; ctx.now() and ctx.random() are the same on any partition count.
import { afterAll, describe, expect, it } from "vitest"
import { App, Sink, Source, Workflow } from "../../workflows/index.ts"
import { Eddy, committedState } from "../../runtime/index.ts"
import { tempDirs } from "../helpers.ts"
import { epochClock, failuresOf, range, runApp, sequential } from "./util.ts"

const dirs = tempDirs()
afterAll(dirs.removeAll)
const dataDir = dirs.dir

type Op = readonly [key: string, op: "get" | "set" | "clear" | "set-undefined" | "set-get" | "clear-get", value?: number]

/** A processor that performs one state operation per record and emits what `get` saw. */
const opsApp = (ops: ReadonlyArray<Op>) =>
  App.define({
    name: "state-ops",
    workflows: [
      Workflow.from(Source.array(ops))
        .keyBy(([k]) => k)
        .processor<string, number>(
          (ctx, [k, op, value]) => {
            const show = () => `${k}:${String(ctx.state.get())}|${ctx.state.get(-1)}`
            switch (op) {
              case "get":
                return ctx.emit(show())
              case "set":
                return ctx.state.set(value!)
              case "set-get":
                ctx.state.set(value!)
                ctx.state.set(value! + 1)
                return ctx.emit(show())
              case "clear":
                return ctx.state.clear()
              case "clear-get":
                ctx.state.set(99)
                ctx.state.clear()
                return ctx.emit(show())
              case "set-undefined":
                return ctx.state.set(undefined as unknown as number)
            }
          },
          { name: "ops" },
        )
        .sink(Sink.memory("out")),
    ],
  })

describe("ctx.state", () => {
  it("get/set/clear: absent is undefined (or the default), a write is read back at once and by later records, clear removes it", async () => {
    const ops: Op[] = [
      ["a", "get"],
      ["a", "set", 5],
      ["a", "get"],
      ["a", "set-get", 7],
      ["a", "get"],
      ["a", "clear"],
      ["a", "get"],
      ["a", "clear-get"],
      ["a", "set", 0],
      ["a", "get"],
      ["a", "set-undefined"],
      ["a", "get"],
    ]
    const r = await runApp(opsApp(ops), { epochAtoms: 2 })
    expect(failuresOf(r)).toEqual([])
    expect(r.outputs("out")).toEqual([
      "a:undefined|-1",
      "a:5|5",
      "a:8|8", // read-your-writes within a record: the last of two writes
      "a:8|8",
      "a:undefined|-1",
      "a:undefined|-1", // set then clear within one record
      "a:0|0", // a falsy value is a value, not absence
      "a:undefined|-1", // set(undefined) clears
    ])
  })

  it("keys are isolated: a key's writes and clears never show under another key", async () => {
    const ops: Op[] = [
      ["a", "set", 1],
      ["b", "set", 2],
      ["a", "get"],
      ["b", "get"],
      ["c", "get"],
      ["a", "clear"],
      ["a", "get"],
      ["b", "get"],
    ]
    for (const keyGroups of [1, 128]) {
      const app = { ...opsApp(ops), keyGroups }
      const out = (await runApp(app, { partitions: 1, epochAtoms: 1 })).outputs<string>("out")
      expect(out, `${keyGroups} key groups`).toEqual(["a:1|1", "b:2|2", "c:undefined|-1", "a:undefined|-1", "b:2|2"])
    }
  })

  it("two tasks on the same key have separate state", async () => {
    const wf = Workflow.from(Source.array(["k", "k", "k"]))
      .keyBy((k) => k)
      .processor<number, number>((ctx) => {
        const n = ctx.state.get(0) + 1
        ctx.state.set(n)
        ctx.emit(n)
      }, { name: "first" })
      .processor<string, string>((ctx, n) => {
        const s = ctx.state.get("") + "x"
        ctx.state.set(s)
        ctx.emit(`${n}/${s}`)
      }, { name: "second" })
      .sink(Sink.memory("out"))
    const r = await runApp(App.define({ name: "two-tasks", workflows: [wf] }))
    expect(r.outputs("out")).toEqual(["1/x", "2/xx", "3/xxx"])
  })

  it("a processor after a map of an unkeyed stream has per-task state fed by every split", async () => {
    const wf = Workflow.from(Source.array([1, 2, 3], { splits: 3, name: "three" }))
      .map((x) => x * 10)
      .processor<number[], number[]>((ctx, x) => {
        const seen = [...ctx.state.get([]), x].sort((a, b) => a - b)
        ctx.state.set(seen)
        ctx.emit(seen)
      })
      .sink(Sink.memory("out"))
    const out = (await runApp(App.define({ name: "per-task", workflows: [wf] }), { partitions: 3 })).outputs<number[]>("out")
    expect(out.at(-1)).toEqual([10, 20, 30])
    expect(out.map((o) => o.length)).toEqual([1, 2, 3])
  })

  it("state is frozen in checked mode: mutating a stored value is a failure of that record, and the stored value is unchanged", async () => {
    const wf = Workflow.from(Source.array(["init", "mutate", "read"]))
      .keyBy(() => "k")
      .processor<string, { list: number[] }>(
        (ctx, op) => {
          if (op === "init") ctx.state.set({ list: [1] })
          if (op === "mutate") ctx.state.get()!.list.push(2)
          if (op === "read") ctx.emit(JSON.stringify(ctx.state.get()))
        },
        { name: "freezer" },
      )
      .sink(Sink.memory("out"))
    const r = await runApp(App.define({ name: "frozen", workflows: [wf] }))
    expect(r.outputs("out")).toEqual(['{"list":[1]}'])
    expect(r.failureList.map((f) => [f.task, f.record])).toEqual([["main/freezer", "'mutate'"]])
    expect(r.failureList[0]!.error).toMatch(/not extensible|read.only|frozen/i)
  })

  it("state must be serializable: a class instance or a function in state is a failure naming the field", async () => {
    class Point {
      constructor(readonly x: number) {}
    }
    const wf = Workflow.from(Source.array(["ok", "class", "fn", "after"]))
      .keyBy(() => "k")
      .processor<string, unknown>(
        (ctx, op) => {
          if (op === "ok") ctx.state.set({ n: 1 })
          if (op === "class") ctx.state.set({ n: 2, where: { p: new Point(1) } })
          if (op === "fn") ctx.state.set({ n: 3, f: () => 1 })
          if (op === "after") ctx.emit(JSON.stringify(ctx.state.get()))
        },
        { name: "store" },
      )
      .sink(Sink.memory("out"))
    const r = await runApp(App.define({ name: "unserializable-state", workflows: [wf] }))
    expect(r.outputs("out")).toEqual(['{"n":1}'])
    expect(failuresOf(r)).toEqual([
      { task: "main/store", record: "'class'", error: expect.stringMatching(/field 'where\.p'.*class Point/) },
      { task: "main/store", record: "'fn'", error: expect.stringMatching(/field 'f'.*function/) },
    ])
  })

  it("rich values (Map, Set, Date, BigInt, undefined fields) round-trip through the file log", async () => {
    const dir = dataDir("rich")
    const stream = Workflow.from(Source.array([1, 2]))
      .keyBy(() => "k")
      .processor<never, unknown>(
        (ctx, x) => {
          ctx.state.set({ m: new Map([["x", x]]), s: new Set([x, 10]), d: new Date(x * 1000), b: BigInt(x) ** 40n, u: undefined })
        },
        { name: "rich" },
      )
    const app = App.define({ name: "rich", workflows: [stream.workflow] })
    await runApp(app, { dataDir: dir })
    const { entries } = await committedState(dir)
    expect(entries).toEqual([
      { task: "main/rich", key: "sk", value: { m: new Map([["x", 2]]), s: new Set([2, 10]), d: new Date(2000), b: 2n ** 40n, u: undefined } },
    ])
  })

  it("committed state: cleared keys are gone, and it reflects the last committed epoch", async () => {
    const dir = dataDir("cleared")
    const ops: Op[] = [
      ["a", "set", 1],
      ["b", "set", 2],
      ["c", "set", 3],
      ["b", "clear"],
      ["c", "set", 4],
    ]
    const r = await runApp(opsApp(ops), { dataDir: dir, epochAtoms: 2 })
    const s = await committedState(dir)
    expect(s.epoch).toBe(r.lastEpoch)
    expect(s.entries).toEqual([
      { task: "main/ops", key: "sa", value: 1 },
      { task: "main/ops", key: "sc", value: 4 },
    ])
  })

  it("state survives a stop and a restart from the data directory: the two halves equal one uninterrupted run", async () => {
    const words = range(0, 59).map((i) => `w${(i * 7) % 11}`)
    const makeApp = () =>
      App.define({
        name: "restart",
        workflows: [
          Workflow.from(Source.array(words, { name: "words", splits: 2 }))
            .keyBy((w) => w)
            .processor<string, number>((ctx, w) => {
              const n = ctx.state.get(0) + 1
              ctx.state.set(n)
              ctx.emit(`${w}#${n}`)
            }, { name: "count" })
            .sink(Sink.memory("out")),
        ],
      })
    const reference = dataDir("restart-ref")
    const ref = await runApp(makeApp(), { dataDir: reference, epochAtoms: 4, partitions: 2 })

    const dir = dataDir("restart")
    const first = Eddy.start(makeApp(), {
      dataDir: dir,
      epochAtoms: 4,
      partitions: 2,
      onFailure: () => undefined,
      stopWhen: (e) => e >= 3,
    })
    const a = await first.done
    expect(a.lastEpoch).toBe(3)
    const second = await runApp(makeApp(), { dataDir: dir, epochAtoms: 4, partitions: 3 })
    expect(second.recoveredEpoch).toBe(3)
    expect([...first.outputs<string>("out"), ...second.outputs<string>("out")]).toEqual(ref.outputs("out"))
    expect(first.outputs("out").length).toBeGreaterThan(0)
    expect((await committedState(dir)).entries).toEqual((await committedState(reference)).entries)
  })
})

describe("ctx.now() and ctx.random()", () => {
  const sample = (partitions: number, clock: "logical" | "wall" = "logical") => {
    const wf = Workflow.from(Source.array(range(0, 39), { splits: 2, name: "n" }))
      .keyBy((x) => x % 5)
      .map((x, ctx) => ({ x, now: ctx.now(), r1: ctx.random(), r2: ctx.random() }))
      .sink(Sink.memory("out"))
    return runApp(App.define({ name: "time-and-chance", workflows: [wf], keyGroups: 16 }), {
      ...(clock === "logical" ? epochClock : { clock }),
      partitions,
      epochAtoms: 5,
    })
  }
  type S = { x: number; now: number; r1: number; r2: number }

  it("are identical on 1, 2 and 4 partitions, and on a second run", async () => {
    const [one, two, four, again] = await sequential([1, 2, 4, 1], (p) => sample(p))
    const out = one!.outputs<S>("out")
    expect(out).toHaveLength(40)
    expect(two!.outputs("out")).toEqual(out)
    expect(four!.outputs("out")).toEqual(out)
    expect(again!.outputs("out")).toEqual(out)
  })

  it("now() is the epoch time: with the logical clock, epoch × epochMs, the same for every record of an epoch", async () => {
    const out = (await sample(2)).outputs<S>("out")
    // Split s admits 5 atoms per epoch: records 0..9 of each split (x = 2i + s) are in epoch 1, and so on.
    for (const o of out) expect(o.now).toBe(Math.floor(Math.floor(o.x / 2) / 5) + 1)
  })

  it("now() with the wall clock is the time the epoch opened", async () => {
    const before = Date.now()
    const out = (await sample(1, "wall")).outputs<S>("out")
    const after = Date.now()
    for (const o of out) {
      expect(o.now).toBeGreaterThanOrEqual(before)
      expect(o.now).toBeLessThanOrEqual(after)
    }
  })

  it("random() is a fresh number in [0, 1) at every call", async () => {
    const out = (await sample(1)).outputs<S>("out")
    const all = out.flatMap((o) => [o.r1, o.r2])
    for (const r of all) {
      expect(r).toBeGreaterThanOrEqual(0)
      expect(r).toBeLessThan(1)
    }
    expect(new Set(all).size).toBe(all.length)
    const mean = all.reduce((a, b) => a + b, 0) / all.length
    expect(mean).toBeGreaterThan(0.3)
    expect(mean).toBeLessThan(0.7)
  })
})

describe("expiring state (StatefulTaskOptions.expire)", () => {
  // Epoch e has ctx.now() === e (epochClock) and takes one record (epochAtoms 1); a key's state expires 4 epochs
  // after its last write. Records by epoch: a b x a c a b x x x x x x x ('x' writes nothing).
  const app = () =>
    App.define({
      name: "expiring",
      workflows: [
        Workflow.from(Source.array(["a", "b", "x", "a", "c", "a", "b", "x", "x", "x", "x", "x", "x", "x"], { name: "keys" }))
          .keyBy((k) => k)
          .processor<string, { n: number; at: number }>(
            (ctx, k) => {
              if (k === "x") return
              const s = ctx.state.get()
              ctx.state.set({ n: (s?.n ?? 0) + 1, at: ctx.now() })
              ctx.emit(`${k}:${(s?.n ?? 0) + 1}`)
            },
            { name: "count", expire: (s) => s.at + 4 },
          )
          .sink(Sink.memory("out")),
      ],
    })

  it("deletes a key's state once its time has come, as a logged write; a rewrite pushes the time back", async () => {
    const dir = dataDir("expire")
    const r = await Eddy.run(app(), { ...epochClock, epochAtoms: 1, dataDir: dir, onFailure: () => undefined })
    // a@1 (due 5) rewritten @4 (due 8): still there @6 → a:3. b@2 is due 6: gone @7 → b:1 again.
    expect(r.outputs("out")).toEqual(["a:1", "b:1", "a:2", "c:1", "a:3", "b:1"])
    // By epoch 14 every key is due: the deletions are logged, so the committed state read back has none.
    expect(r.lastEpoch).toBeGreaterThanOrEqual(14)
    expect(await r.keys("main/count")).toEqual([])
    const state = await committedState(dir)
    expect(state.entries.filter((x) => x.task === "main/count")).toEqual([])
  })

  it("keys written and then left alone expire in a restarted run too (expiry times are rebuilt from state)", async () => {
    const dir = dataDir("expire-restart")
    let commits = 0
    const first = await Eddy.run(app(), { ...epochClock, epochAtoms: 1, dataDir: dir, stopWhen: () => ++commits >= 5, onFailure: () => undefined })
    expect(first.lastEpoch).toBe(5)
    expect((await committedState(dir)).entries.filter((x) => x.task === "main/count").map((x) => x.key)).toHaveLength(3)
    const second = await Eddy.run(app(), { ...epochClock, epochAtoms: 1, dataDir: dir, onFailure: () => undefined })
    // c (written @5, due 9) is never written again: only the rebuilt expiry time can remove it.
    expect(second.outputs("out")).toEqual(["a:3", "b:1"])
    expect((await committedState(dir)).entries.filter((x) => x.task === "main/count")).toEqual([])
  })
})

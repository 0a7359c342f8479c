// Every task kind of the workflow API, run in memory through Eddy.run: map, flatMap, filter, keyBy + processor,
// unkeyed processors (per-task state), merge, publish/subscribe between workflows, every source and sink kind.
import { readFileSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import { afterAll, describe, expect, expectTypeOf, it } from "vitest"
import { App, Sink, Source, Workflow, type Key, type Stream } from "../../workflows/index.ts"
import { removeDir, tempDir } from "../helpers.ts"
import { epochClock, failuresOf, range, runApp } from "./util.ts"

const app = (...workflows: Workflow[]) => App.define({ name: "tasks", workflows })

describe("stateless tasks", () => {
  it("map transforms every record, in source order on one key group", async () => {
    const wf = Workflow.from(Source.array(range(1, 20))).map((x) => `#${x * 2}`).sink(Sink.memory("out"))
    const r = await runApp(app(wf))
    expect(r.outputs("out")).toEqual(range(1, 20).map((x) => `#${x * 2}`))
    expect(r.records).toBe(20)
    expect(r.failures).toBe(0)
  })

  it("flatMap emits zero, one or many records per input, in order", async () => {
    const wf = Workflow.from(Source.array([0, 1, 2, 3]))
      .flatMap((n) => Array.from({ length: n }, (_, i) => `${n}.${i}`))
      .sink(Sink.memory("out"))
    const r = await runApp(app(wf))
    expect(r.outputs("out")).toEqual(["1.0", "2.0", "2.1", "3.0", "3.1", "3.2"])
  })

  it("flatMap accepts any iterable, including a generator", async () => {
    const wf = Workflow.from(Source.array(["ab", "c"]))
      .flatMap(function* (s) {
        for (const ch of s) yield ch.toUpperCase()
      })
      .sink(Sink.memory("out"))
    expect((await runApp(app(wf))).outputs("out")).toEqual(["A", "B", "C"])
  })

  it("filter keeps only the records its predicate accepts", async () => {
    const wf = Workflow.from(Source.array(range(1, 10))).filter((x) => x % 3 === 0).sink(Sink.memory("out"))
    expect((await runApp(app(wf))).outputs("out")).toEqual([3, 6, 9])
  })

  it("filter with a type guard narrows the element type", async () => {
    type Shape = { readonly kind: "circle"; readonly r: number } | { readonly kind: "square"; readonly side: number }
    const shapes: Shape[] = [
      { kind: "circle", r: 1 },
      { kind: "square", side: 2 },
      { kind: "circle", r: 3 },
    ]
    const wf = Workflow.create("guard", (wf) => {
      const circles = wf.source(Source.array(shapes)).filter((s): s is Extract<Shape, { kind: "circle" }> => s.kind === "circle")
      expectTypeOf(circles).toEqualTypeOf<Stream<{ readonly kind: "circle"; readonly r: number }>>()
      // `r` exists only on circles: this compiles because the stream was narrowed.
      circles.map((c) => c.r * 10).sink(Sink.memory("out"))
    })
    expect((await runApp(app(wf))).outputs("out")).toEqual([10, 30])
  })

  it("tasks chain: map → flatMap → filter → map", async () => {
    const wf = Workflow.from(Source.array(["a b", "c", "d e f"]))
      .map((line) => line.split(" "))
      .flatMap((words) => words)
      .filter((w) => w !== "c")
      .map((w, ctx) => ({ w, key: ctx.key ?? null }))
      .sink(Sink.memory("out"))
    expect((await runApp(app(wf))).outputs("out")).toEqual(["a", "b", "d", "e", "f"].map((w) => ({ w, key: null })))
  })
})

describe("keyBy and processor", () => {
  it("per-key state: each key counts its own records", async () => {
    const words = "a b a c b a d a".split(" ")
    const wf = Workflow.from(Source.array(words))
      .keyBy((w) => w)
      .processor<[string, number], number>((ctx, w) => {
        const n = ctx.state.get(0) + 1
        ctx.state.set(n)
        ctx.emit([w, n])
      })
      .sink(Sink.memory("out"))
    const r = await runApp(app(wf), { partitions: 3 })
    const out = r.outputs<[string, number]>("out")
    expect(out).toHaveLength(words.length)
    // Per key, the counts come out in order: 1, 2, 3, ...
    const byWord = new Map<string, number[]>()
    for (const [w, n] of out) byWord.set(w, [...(byWord.get(w) ?? []), n])
    expect(Object.fromEntries(byWord)).toEqual({ a: [1, 2, 3, 4], b: [1, 2], c: [1], d: [1] })
  })

  it("tasks after keyBy see the key in ctx.key, and tuple keys work", async () => {
    const wf = Workflow.from(Source.array([{ u: "x", d: 1 }, { u: "y", d: 2 }, { u: "x", d: 2 }]))
      .keyBy((r): Key => [r.u, r.d % 2 === 0])
      .map((r, ctx) => ({ d: r.d, key: ctx.key }))
      .processor<{ d: number; key: Key | undefined; seen: number }, number>((ctx, r) => {
        const seen = ctx.state.get(0) + 1
        ctx.state.set(seen)
        ctx.emit({ ...r, seen })
      })
      .sink(Sink.memory("out"))
    const out = (await runApp(app(wf))).outputs<{ d: number; key: Key; seen: number }>("out")
    expect([...out].sort((a, b) => a.d - b.d || String(a.key).localeCompare(String(b.key)))).toEqual([
      { d: 1, key: ["x", false], seen: 1 },
      { d: 2, key: ["x", true], seen: 1 },
      { d: 2, key: ["y", true], seen: 1 },
    ])
  })

  it("keys 1 and '1' are different keys", async () => {
    const wf = Workflow.from(Source.array<number | string>([1, "1", 1]))
      .keyBy((k) => k)
      .processor<number, number>((ctx) => {
        const n = ctx.state.get(0) + 1
        ctx.state.set(n)
        ctx.emit(n)
      })
      .sink(Sink.memory("out"))
    expect([...(await runApp(app(wf))).outputs<number>("out")].sort()).toEqual([1, 1, 2])
  })

  it("a processor on an unkeyed stream has one per-task state that sees every record, on any number of partitions", async () => {
    const n = 200
    for (const partitions of [1, 4]) {
      const wf = Workflow.from(Source.array(range(1, n), { splits: 3, name: "nums" }))
        .processor<{ count: number; sum: number }, { count: number; sum: number }>((ctx, x) => {
          const s = ctx.state.get({ count: 0, sum: 0 })
          const next = { count: s.count + 1, sum: s.sum + x }
          ctx.state.set(next)
          ctx.emit(next)
        })
        .sink(Sink.memory("out"))
      const out = (await runApp(app(wf), { partitions, epochAtoms: 7 })).outputs<{ count: number; sum: number }>("out")
      // One instance: the counts are exactly 1..n, in commit order, and the last sum covers every record.
      expect(out.map((o) => o.count)).toEqual(range(1, n))
      expect(out.at(-1)!.sum).toBe((n * (n + 1)) / 2)
    }
  })

  it("processor may emit nothing or several records per input", async () => {
    const wf = Workflow.from(Source.array(range(0, 4)))
      .keyBy((x) => x % 2)
      .processor<string>((ctx, x) => {
        for (let i = 0; i < x; i++) ctx.emit(`${x}:${i}`)
      })
      .sink(Sink.memory("out"))
    const out = (await runApp(app(wf))).outputs<string>("out")
    expect([...out].sort()).toEqual(["1:0", "2:0", "2:1", "3:0", "3:1", "3:2", "4:0", "4:1", "4:2", "4:3"])
  })
})

describe("merge", () => {
  it("merges two sources: every record of both, exactly once", async () => {
    const wf = Workflow.create("m", (wf) => {
      const a = wf.source(Source.array(range(1, 30), { name: "a" }))
      const b = wf.source(Source.array(range(101, 130), { name: "b" }))
      a.merge(b).map((x) => x * 2).sink(Sink.memory("out"))
    })
    const out = (await runApp(app(wf), { epochAtoms: 4 })).outputs<number>("out")
    expect([...out].sort((x, y) => x - y)).toEqual([...range(1, 30), ...range(101, 130)].map((x) => x * 2))
    // The interleaving is deterministic: the same run twice gives the same order.
    const again = (await runApp(app(wf), { epochAtoms: 4 })).outputs<number>("out")
    expect(again).toEqual(out)
  })

  it("Workflow.merge of three streams, then a keyed processor over the merged stream", async () => {
    const wf = Workflow.create("m3", (wf) => {
      const s = (name: string, xs: string[]) => wf.source(Source.array(xs, { name }))
      wf.merge(s("x", ["a", "b"]), s("y", ["a"]), s("z", ["b", "a"]))
        .keyBy((w) => w)
        .processor<[string, number], number>((ctx, w) => {
          const n = ctx.state.get(0) + 1
          ctx.state.set(n)
          ctx.emit([w, n])
        })
        .sink(Sink.memory("out"))
    })
    const out = (await runApp(app(wf), { partitions: 2 })).outputs<[string, number]>("out")
    expect([...out].sort()).toEqual([
      ["a", 1],
      ["a", 2],
      ["a", 3],
      ["b", 1],
      ["b", 2],
    ])
  })

  it("merging two keyed streams keeps the key: the processor after it has per-key state", async () => {
    const wf = Workflow.create("mk", (wf) => {
      const a = wf.source(Source.array(["k1", "k2"], { name: "a" })).keyBy((w) => w)
      const b = wf.source(Source.array(["k1", "k1"], { name: "b" })).keyBy((w) => w)
      a.merge(b)
        .processor<[string, number], number>((ctx, w) => {
          const n = ctx.state.get(0) + 1
          ctx.state.set(n)
          ctx.emit([w, n])
        })
        .sink(Sink.memory("out"))
    })
    const out = (await runApp(app(wf), { partitions: 2 })).outputs<[string, number]>("out")
    expect([...out].sort()).toEqual([
      ["k1", 1],
      ["k1", 2],
      ["k1", 3],
      ["k2", 1],
    ])
  })

  it("merging a keyed with an unkeyed stream gives an unkeyed stream: a processor after it is one per-task instance", async () => {
    const wf = Workflow.create("mu", (wf) => {
      const a = wf.source(Source.array(["p", "q"], { name: "a" })).keyBy((w) => w)
      const b = wf.source(Source.array(["r"], { name: "b" }))
      a.merge(b)
        .processor<number, number>((ctx) => {
          const n = ctx.state.get(0) + 1
          ctx.state.set(n)
          ctx.emit(n)
        })
        .sink(Sink.memory("out"))
    })
    expect((await runApp(app(wf), { partitions: 2 })).outputs("out")).toEqual([1, 2, 3])
  })
})

describe("publish and subscribe", () => {
  it("a workflow consumes another workflow's published stream", async () => {
    const producer = Workflow.create("producer", (wf) => {
      wf.source(Source.array(range(1, 10)))
        .map((x) => x * x)
        .publish("squares")
        .sink(Sink.memory("local"))
    })
    const consumer = Workflow.create("consumer", (wf) => {
      wf.subscribe<number>("squares")
        .keyBy((x) => x % 2)
        .processor<[number, number], number>((ctx, x) => {
          const sum = ctx.state.get(0) + x
          ctx.state.set(sum)
          ctx.emit([x % 2, sum])
        })
        .sink(Sink.memory("sums"))
    })
    const r = await runApp(app(producer, consumer), { partitions: 2 })
    expect(r.outputs("local")).toEqual(range(1, 10).map((x) => x * x))
    const sums = r.outputs<[number, number]>("sums")
    expect(sums).toHaveLength(10)
    const finalOf = (parity: number) => Math.max(...sums.filter(([p]) => p === parity).map(([, s]) => s))
    expect(finalOf(0)).toBe(4 + 16 + 36 + 64 + 100)
    expect(finalOf(1)).toBe(1 + 9 + 25 + 49 + 81)
  })

  it("several workflows may subscribe to one published stream", async () => {
    const producer = Workflow.create("p", (wf) => void wf.source(Source.array(["a", "b"])).publish("letters"))
    const upper = Workflow.create("u", (wf) => void wf.subscribe<string>("letters").map((s) => s.toUpperCase()).sink(Sink.memory("upper")))
    const twice = Workflow.create("t", (wf) => void wf.subscribe<string>("letters").map((s) => s + s).sink(Sink.memory("twice")))
    const r = await runApp(app(producer, upper, twice))
    expect(r.outputs("upper")).toEqual(["A", "B"])
    expect(r.outputs("twice")).toEqual(["aa", "bb"])
  })
})

describe("sources", () => {
  it("Source.generator is called afresh and its records arrive in order", async () => {
    let calls = 0
    const wf = Workflow.from(
      Source.generator(function* () {
        calls++
        for (let i = 0; i < 5; i++) yield i
      }),
    ).sink(Sink.memory("out"))
    expect((await runApp(app(wf))).outputs("out")).toEqual([0, 1, 2, 3, 4])
    expect(calls).toBe(1)
  })

  it("Source.async: an async iterable's records all arrive, in order", async () => {
    const wf = Workflow.from(
      Source.async(async function* () {
        for (let i = 0; i < 6; i++) {
          await new Promise((r) => setTimeout(r, 1))
          yield i
        }
      }, { atomSize: 2 }),
    ).sink(Sink.memory("out"))
    const r = await runApp(app(wf), { epochMs: 2 })
    expect(r.outputs("out")).toEqual([0, 1, 2, 3, 4, 5])
  })

  it("Source.lines reads the lines of a file", async () => {
    const dir = tempDir("lines")
    try {
      const path = join(dir, "in.txt")
      writeFileSync(path, "one\ntwo\n\nfour\n")
      const wf = Workflow.from(Source.lines(path)).sink(Sink.memory("out"))
      expect((await runApp(app(wf))).outputs("out")).toEqual(["one", "two", "", "four"])
    } finally {
      removeDir(dir)
    }
  })

  it("Source.empty: a run with no records ends at once with nothing committed to sinks", async () => {
    const wf = Workflow.from(Source.empty<number>()).map((x) => x + 1).sink(Sink.memory("out"))
    const r = await runApp(app(wf))
    expect(r.outputs("out")).toEqual([])
    expect(r.records).toBe(0)
    expect(r.epochs).toBeGreaterThanOrEqual(1)
  })

  it("one workflow may hold several empty sources (one per replier, say)", async () => {
    const wf = Workflow.create("empties", (wf) => {
      wf.source(Source.empty<number>()).sink(Sink.memory("a"))
      wf.source(Source.empty<number>()).sink(Sink.memory("b"))
      wf.source(Source.array([1])).sink(Sink.memory("c"))
    })
    const r = await runApp(app(wf))
    expect([r.outputs("a"), r.outputs("b"), r.outputs("c")]).toEqual([[], [], [1]])
  })

  it("splits of one source are read in parallel and together yield every record once", async () => {
    const wf = Workflow.from(Source.array(range(1, 50), { splits: 4, name: "s" })).sink(Sink.memory("out"))
    const r = await runApp(app(wf), { partitions: 2, epochAtoms: 3 })
    expect([...r.outputs<number>("out")].sort((a, b) => a - b)).toEqual(range(1, 50))
    expect(r.records).toBe(50)
  })

  it("source options are validated", () => {
    expect(() => Source.array([1], { atomSize: 0 })).toThrow(/atomSize must be a positive integer/)
    expect(() => Source.array([1], { splits: 1.5 })).toThrow(/splits must be a positive integer/)
  })
})

describe("sinks", () => {
  const dirs: string[] = []
  afterAll(() => dirs.forEach(removeDir))

  it("a file sink writes one JSON document per line inside the data directory", async () => {
    const dir = tempDir("filesink")
    dirs.push(dir)
    const wf = Workflow.from(Source.array([{ a: 1 }, { a: 2, b: [true, null] }, { big: 10n, when: new Date(0), m: new Map([["k", 1]]) }]))
      .sink(Sink.file("out/records.jsonl", "records"))
    const r = await runApp(app(wf), { dataDir: dir })
    expect(r.failures).toBe(0)
    const text = readFileSync(join(dir, "out", "records.jsonl"), "utf8")
    expect(text).toBe('{"a":1}\n{"a":2,"b":[true,null]}\n{"big":"10","when":"1970-01-01T00:00:00.000Z","m":[["k",1]]}\n')
  })

  it("a file sink with an absolute path writes there, even for an in-memory run", async () => {
    const dir = tempDir("abs")
    dirs.push(dir)
    const path = join(dir, "abs.jsonl")
    const wf = Workflow.from(Source.array(["x", "y"])).sink(Sink.file(path))
    await runApp(app(wf))
    expect(readFileSync(path, "utf8")).toBe('"x"\n"y"\n')
  })

  it("a console sink prints each committed record through `print`, formatted", async () => {
    const lines: string[] = []
    const wf = Workflow.from(Source.array([1, 2, 3])).sink(Sink.console((n) => `n=${n}`))
    await runApp(app(wf), { print: (l) => lines.push(l) })
    expect(lines).toEqual(["n=1", "n=2", "n=3"])
  })

  it("a console sink without format prints strings as they are and other values as JSON", async () => {
    const lines: string[] = []
    const wf = Workflow.from(Source.array<unknown>(["plain", { a: 1 }])).sink(Sink.console())
    await runApp(app(wf), { print: (l) => lines.push(l) })
    expect(lines).toEqual(["plain", '{"a":1}'])
  })

  it("a discard sink keeps nothing, and several sinks of one workflow are independent", async () => {
    const wf = Workflow.create("branches", (wf) => {
      const s = wf.source(Source.array(range(1, 6)))
      s.filter((x) => x % 2 === 0).sink(Sink.memory("even"))
      s.filter((x) => x % 2 === 1).sink(Sink.memory("odd"))
      s.sink(Sink.discard())
    })
    const r = await runApp(app(wf))
    expect(r.outputs("even")).toEqual([2, 4, 6])
    expect(r.outputs("odd")).toEqual([1, 3, 5])
    expect(r.outputs("discard")).toEqual([])
    expect(r.failures).toBe(0)
  })

  it("sink records become visible only once their epoch committed, in epoch order", async () => {
    const seenAtCommit: number[] = []
    const wf = Workflow.from(Source.array(range(1, 12)))
      .map((x, ctx) => ({ x, epoch: ctx.now() }))
      .sink(Sink.memory("out"))
    const r = await runApp(app(wf), { ...epochClock, epochAtoms: 3, onCommit: (e) => seenAtCommit.push(e) })
    const out = r.outputs<{ x: number; epoch: number }>("out")
    expect(out.map((o) => o.x)).toEqual(range(1, 12))
    expect(out.map((o) => o.epoch)).toEqual([1, 1, 1, 2, 2, 2, 3, 3, 3, 4, 4, 4])
    expect(seenAtCommit.slice(0, 4)).toEqual([1, 2, 3, 4])
    expect(failuresOf(r)).toEqual([])
  })
})

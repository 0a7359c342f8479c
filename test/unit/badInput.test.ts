// Bad input: throwing tasks, unserializable records, invalid keys, unknown app modules, configuration errors.
// A task failure is reported with the task, the record and the error, discards everything that record did, and
// leaves every other record alone; configuration errors are typed and stop the run before anything runs.
import { afterAll, describe, expect, it } from "vitest"
import { App, Sink, Source, Workflow, type Key } from "../../workflows/index.ts"
import { Continuation, Portal, type Rejection } from "../../portals/index.ts"
import { ConfigError, committedState } from "../../runtime/index.ts"
import { removeDir, runEddy, tempDir } from "../helpers.ts"
import { failuresOf, range, runApp } from "./util.ts"

const dirs: string[] = []
afterAll(() => dirs.forEach(removeDir))

describe("a throwing task", () => {
  it("is reported with task name, record and message; other records are unaffected", async () => {
    const wf = Workflow.from(Source.array([{ id: 1 }, { id: 2, bad: true }, { id: 3 }]))
      .map((r) => {
        if (r.bad) throw new Error(`record ${r.id} is bad`)
        return r.id * 10
      }, { name: "check" })
      .sink(Sink.memory("out"))
    const r = await runApp(App.define({ name: "throwing", workflows: [wf] }))
    expect(r.outputs("out")).toEqual([10, 30])
    expect(failuresOf(r)).toEqual([{ task: "main/check", record: "{ id: 2, bad: true }", error: "record 2 is bad" }])
    expect(r.failures).toBe(1)
    expect(r.failureList[0]).toMatchObject({ epoch: 1, key: undefined })
  })

  it("discards the failing record's partial effects: its emits, its state writes, and those of the tasks it fed", async () => {
    const wf = Workflow.from(Source.array(["a", "b!", "c", "d!", "e"]))
      .keyBy(() => "k")
      .processor<string, number>(
        (ctx, s) => {
          const n = ctx.state.get(0) + 1
          ctx.state.set(n)
          ctx.emit(`${s}@${n}`) // runs the chained task below at once
          if (s.endsWith("!")) throw new Error(`no ${s}`)
        },
        { name: "upstream" },
      )
      .processor<string, string[]>(
        (ctx, s) => {
          const seen = [...ctx.state.get([]), s]
          ctx.state.set(seen)
          ctx.emit(seen.join(","))
        },
        { name: "downstream" },
      )
      .sink(Sink.memory("out"))
    const dir = tempDir("partial")
    dirs.push(dir)
    const r = await runApp(App.define({ name: "partial", workflows: [wf] }), { dataDir: dir, epochAtoms: 2 })
    expect(r.outputs("out")).toEqual(["a@1", "a@1,c@2", "a@1,c@2,e@3"])
    expect(failuresOf(r)).toEqual([
      { task: "main/upstream", record: "'b!'", error: "no b!" },
      { task: "main/upstream", record: "'d!'", error: "no d!" },
    ])
    expect(r.failureList.map((f) => f.key)).toEqual(["sk", "sk"])
    expect((await committedState(dir)).entries).toEqual([
      { task: "main/downstream", key: "sk", value: ["a@1", "c@2", "e@3"] },
      { task: "main/upstream", key: "sk", value: 3 },
    ])
  })

  it("names the innermost failing task when a chained task throws", async () => {
    const wf = Workflow.from(Source.array([1, 2]))
      .map((x) => x + 1, { name: "inc" })
      .filter((x) => {
        if (x === 3) throw new TypeError("three")
        return true
      }, { name: "picky" })
      .sink(Sink.memory("out"))
    const r = await runApp(App.define({ name: "inner", workflows: [wf] }))
    expect(r.outputs("out")).toEqual([2])
    expect(failuresOf(r)).toEqual([{ task: "main/picky", record: "2", error: "three" }])
  })

  it("a flatMap that throws half-way emits nothing for that record", async () => {
    const wf = Workflow.from(Source.array([2, 3, 2]))
      .flatMap(function* (n) {
        for (let i = 0; i < n; i++) {
          if (i === 2) throw new Error("too many")
          yield `${n}.${i}`
        }
      }, { name: "expand" })
      .sink(Sink.memory("out"))
    const r = await runApp(App.define({ name: "flat", workflows: [wf] }))
    expect(r.outputs("out")).toEqual(["2.0", "2.1", "2.0", "2.1"])
    expect(failuresOf(r)).toEqual([{ task: "main/expand", record: "3", error: "too many" }])
  })

  it("a thrown non-Error value is reported as text, and a keyBy function may throw too", async () => {
    const wf = Workflow.from(Source.array([1, 2, 3]))
      .keyBy((x) => {
        if (x === 2) throw "not an error object"
        return x
      }, { name: "route" })
      .sink(Sink.memory("out"))
    const r = await runApp(App.define({ name: "non-error", workflows: [wf] }))
    expect([...r.outputs<number>("out")].sort()).toEqual([1, 3])
    expect(failuresOf(r)).toEqual([{ task: "main/route", record: "2", error: "not an error object" }])
  })

  it("keeps the stream alive: failures in every epoch, the rest of each epoch still commits", async () => {
    const wf = Workflow.from(Source.array(range(1, 30)))
      .keyBy((x) => x % 4)
      .processor<number, number>((ctx, x) => {
        if (x % 5 === 0) throw new Error(`multiple of five: ${x}`)
        const sum = ctx.state.get(0) + x
        ctx.state.set(sum)
        ctx.emit(x)
      })
      .sink(Sink.memory("out"))
    const r = await runApp(App.define({ name: "alive", workflows: [wf] }), { epochAtoms: 5, partitions: 2 })
    expect([...r.outputs<number>("out")].sort((a, b) => a - b)).toEqual(range(1, 30).filter((x) => x % 5 !== 0))
    expect(r.failureList.map((f) => f.epoch)).toEqual([1, 2, 3, 4, 5, 6])
    expect(r.lastEpoch).toBeGreaterThanOrEqual(6)
  })

  it("a failure reaches onFailure as it happens, or stderr by default", async () => {
    const seen: string[] = []
    const wf = Workflow.from(Source.array([1])).map(() => {
      throw new Error("reported")
    }).sink(Sink.memory("out"))
    const r = await runApp(App.define({ name: "callback", workflows: [wf] }), { onFailure: (f) => seen.push(`${f.task}: ${f.error}`) })
    expect(seen).toEqual(["main/1:map: reported"])
    expect(r.failureList).toHaveLength(1)
  })

  it("a replier that throws loses that request's effects and answers with a rejection; the asker keeps serving", async () => {
    const p = Portal.define<number, number>("fragile")
    const got = Continuation.define<number | Rejection, number, string>("got", (ctx, v, n) =>
      ctx.emit(Portal.isRejection(v) ? `${n} rejected: ${v.message}` : `${n}->${v}`),
    )
    const wf = Workflow.create("w", (wf) => {
      wf.source(Source.empty())
        .via(
          Portal.replier<number, number, never, string, number>(
            p,
            (ctx, n) => {
              ctx.state.set(ctx.state.get(0) + 1)
              ctx.emit(`served ${n}`)
              if (n === 2) throw new Error("cannot serve 2")
              ctx.reply(n * n)
            },
            { name: "server" },
          ),
        )
        .sink(Sink.memory("served"))
      wf.source(Source.array([1, 2, 3]))
        .via(Portal.asker<number, string>((ctx, n) => ctx.ask(p, n).then(got, n), { continuations: [got] }))
        .sink(Sink.memory("out"))
    })
    const r = await runApp(App.define({ name: "fragile", workflows: [wf] }))
    expect(r.outputs("out")).toEqual(["1->1", "2 rejected: cannot serve 2", "3->9"])
    expect(r.outputs("served")).toEqual(["served 1", "served 3"])
    expect(failuresOf(r)).toEqual([{ task: "w/server", record: "2", error: "cannot serve 2" }])
  })
})

describe("unserializable records (checked mode)", () => {
  class Money {
    constructor(readonly cents: number) {}
  }

  it("a function in a record sent across a keyBy is a failure naming the field", async () => {
    const wf = Workflow.from(Source.array([1, 2, 3]))
      .map((x) => (x === 2 ? { x, meta: { callback: () => x } } : { x, meta: {} }), { name: "build" })
      .keyBy((r) => r.x, { name: "route" })
      .map((r) => r.x)
      .sink(Sink.memory("out"))
    const r = await runApp(App.define({ name: "fn-field", workflows: [wf] }), { partitions: 2 })
    expect([...r.outputs<number>("out")].sort()).toEqual([1, 3])
    expect(r.failureList).toHaveLength(1)
    expect(r.failureList[0]!.task).toBe("main/route")
    expect(r.failureList[0]!.error).toBe("cannot serialize field 'meta.callback': a function cannot be stored or sent; register code by name and send data")
  })

  it("a class instance emitted by a processor across a keyBy is a failure naming the field and the class", async () => {
    const wf = Workflow.from(Source.array(["a", "b"]))
      .keyBy((s) => s)
      .processor<{ s: string; items: unknown[] }>((ctx, s) => ctx.emit({ s, items: s === "b" ? [1, new Money(5)] : [1] }), { name: "price" })
      .keyBy((r) => r.items.length, { name: "regroup" })
      .map((r) => r.s)
      .sink(Sink.memory("out"))
    const r = await runApp(App.define({ name: "class-field", workflows: [wf] }))
    expect(r.outputs("out")).toEqual(["a"])
    expect(failuresOf(r)).toEqual([
      {
        task: "main/regroup",
        record: "'b'",
        error: "cannot serialize field 'items[1]': an instance of class Money would come back as a plain object; send plain data",
      },
    ])
  })

  it("an unserializable value reaching a sink, or sent as a portal request, fails the same way", async () => {
    const p = Portal.define<unknown, number>("p")
    const wf = Workflow.create("w", (wf) => {
      wf.source(Source.empty()).via(Portal.replier(p, (ctx) => ctx.reply(1)))
      wf.source(Source.array([1, 2], { name: "to-sink" }))
        .map((x) => (x === 2 ? { sym: Symbol("s") } : { x }), { name: "shape" })
        .sink(Sink.memory("out"))
      wf.source(Source.array([1], { name: "to-portal" })).via(Portal.asker<number, never>((ctx) => void ctx.ask(p, { when: new Money(1) }), { name: "asker" }))
    })
    const r = await runApp(App.define({ name: "sink-and-portal", workflows: [wf] }))
    expect(r.outputs("out")).toEqual([{ x: 1 }])
    expect(failuresOf(r)).toEqual(
      expect.arrayContaining([
        // The sink is the task that could not copy it; the record is the source record whose step failed.
        { task: "w/4:sink", record: "2", error: "cannot serialize field 'sym': a symbol cannot be stored or sent" },
        { task: "w/asker", record: "1", error: expect.stringMatching(/^cannot serialize field 'when': an instance of class Money/) },
      ]),
    )
    expect(r.failureList).toHaveLength(2)
  })

  it("on 1 partition as on many: the failure does not depend on whether the record crosses partitions", async () => {
    const results = []
    for (const partitions of [1, 4]) {
      const wf = Workflow.from(Source.array(range(1, 8)))
        .map((x) => ({ x, f: x % 3 === 0 ? () => 0 : 0 }))
        .keyBy((r) => r.x)
        .map((r) => r.x)
        .sink(Sink.memory("out"))
      const r = await runApp(App.define({ name: "checked", workflows: [wf] }), { partitions })
      results.push({ out: [...r.outputs<number>("out")].sort(), failed: r.failureList.map((f) => f.record).sort() })
    }
    expect(results[1]).toEqual(results[0])
    expect(results[0]!.failed).toHaveLength(2)
  })
})

describe("invalid keys", () => {
  const keyApp = (bad: unknown) =>
    App.define({
      name: "keys",
      workflows: [
        Workflow.from(Source.array([1, 2, 3]))
          .keyBy((x) => (x === 2 ? (bad as Key) : x), { name: "key" })
          .processor<number, number>((ctx, x) => {
            ctx.state.set(x)
            ctx.emit(x)
          })
          .sink(Sink.memory("out")),
      ],
    })

  it.each([
    ["a plain object", { id: 2 }, "got an object (Object)"],
    ["a class instance", new Date(0), "got an object (Date)"],
    ["null", null, "got null"],
    ["undefined", undefined, "got undefined"],
    ["a function", () => 2, "got function"],
    ["a tuple holding an object", ["ok", { nested: true }], "got an object (Object)"],
  ])("%s as a key is a reported failure of that record", async (_what, bad, message) => {
    const r = await runApp(keyApp(bad))
    expect([...r.outputs<number>("out")].sort()).toEqual([1, 3])
    expect(r.failureList).toHaveLength(1)
    expect(r.failureList[0]!.task).toBe("main/key")
    expect(r.failureList[0]!.record).toBe("2")
    expect(r.failureList[0]!.error).toBe(`a key must be a string, number, bigint, boolean or a tuple of those; ${message}`)
  })

  it("a portal key function returning an object is a failure of the asking record", async () => {
    const p = Portal.define<number, number>("bad-key", { key: (n) => ({ n }) as unknown as Key })
    const wf = Workflow.create("w", (wf) => {
      wf.source(Source.empty()).via(Portal.replier(p, (ctx, n: number) => ctx.reply(n)))
      wf.source(Source.array([7])).via(Portal.asker<number, never>((ctx, n) => void ctx.ask(p, n), { name: "asker" }))
    })
    const r = await runApp(App.define({ name: "bad-portal-key", workflows: [wf] }))
    expect(failuresOf(r)).toEqual([{ task: "w/asker", record: "7", error: expect.stringMatching(/^a key must be a string/) }])
  })
})

describe("the eddy CLI with a bad app module", () => {
  it("an unknown app module exits with code 2 and says what was not found", async () => {
    const exit = await runEddy(["run", "does/not/exist"])
    expect(exit.code).toBe(2)
    expect(exit.stderr).toMatch(/^eddy: AppModuleError: app module 'does\/not\/exist' not found \(looked for .*does\/not\/exist\)/m)
    expect(exit.stdout).toBe("")
  })

  it("a module that does not export an app exits with code 2 and says so", async () => {
    const exit = await runEddy(["run", "test/helpers.ts"])
    expect(exit.code).toBe(2)
    expect(exit.stderr).toContain("app module 'test/helpers.ts' must default-export App.define(...)")
  })
})

describe("configuration errors are typed and clear", () => {
  const source = () => Source.array([1])

  it("two repliers for one portal", async () => {
    const p = Portal.define<number, number>("shared")
    const a = Workflow.create("a", (wf) => void wf.source(source()).via(Portal.replier(p, (ctx, n: number) => ctx.reply(n))))
    const b = Workflow.create("b", (wf) => void wf.source(source()).via(Portal.replier(p, (ctx, n: number) => ctx.reply(n))))
    const err = await runApp(App.define({ name: "two-repliers", workflows: [a, b] })).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(ConfigError)
    expect((err as ConfigError)._tag).toBe("ConfigError")
    expect((err as ConfigError).message).toBe("portal 'shared' has two repliers; it must have exactly one")
  })

  it("subscribing to a stream nobody publishes", async () => {
    const wf = Workflow.create("reader", (wf) => void wf.subscribe<number>("nowhere").sink(Sink.memory("out")))
    const run = runApp(App.define({ name: "lonely", workflows: [wf] }))
    await expect(run).rejects.toBeInstanceOf(ConfigError)
    await expect(run).rejects.toThrow("workflow 'reader' subscribes to stream 'nowhere', which no workflow of app 'lonely' publishes")
  })

  it("more partitions than key groups, or no partitions at all", async () => {
    const app = App.define({ name: "small", workflows: [Workflow.from(source()).sink(Sink.memory("out"))], keyGroups: 4 })
    await expect(runApp(app, { partitions: 4 })).resolves.toMatchObject({ failures: 0 })
    for (const partitions of [5, 0, 1.5]) {
      const run = runApp(app, { partitions })
      await expect(run).rejects.toBeInstanceOf(ConfigError)
      await expect(run).rejects.toThrow(`partitions must be an integer in 1..4 (the app's key groups), got ${partitions}`)
    }
  })

  it("invalid key group counts", async () => {
    for (const keyGroups of [0, 65537, 2.5]) {
      const run = runApp(App.define({ name: "kg", workflows: [Workflow.from(source()).sink(Sink.memory("out"))], keyGroups }))
      await expect(run).rejects.toBeInstanceOf(ConfigError)
      await expect(run).rejects.toThrow(`keyGroups must be an integer in 1..65536, got ${keyGroups}`)
    }
  })

  it("a stream published twice, two sinks of one name, a duplicate task or workflow name", async () => {
    const p1 = Workflow.create("p1", (wf) => void wf.source(source()).publish("s"))
    const p2 = Workflow.create("p2", (wf) => void wf.source(source()).publish("s"))
    await expect(runApp(App.define({ name: "x", workflows: [p1, p2] }))).rejects.toThrow(new ConfigError("stream 's' is published by two workflows"))

    const s1 = Workflow.create("s1", (wf) => void wf.source(source()).sink(Sink.memory("same")))
    const s2 = Workflow.create("s2", (wf) => void wf.source(source()).sink(Sink.memory("same")))
    await expect(runApp(App.define({ name: "x", workflows: [s1, s2] }))).rejects.toThrow(new ConfigError("two sinks are named 'same'"))

    expect(() => Workflow.create("w", (wf) => void wf.source(source()).publish("t").publish("t"))).toThrow("stream 't' is published twice")
    expect(() => Workflow.create("w", (wf) => void wf.source(source()).map((x) => x, { name: "m" }).map((x) => x, { name: "m" }))).toThrow("workflow 'w' has two tasks named 'm'")
    const w = Workflow.create("dup", () => undefined)
    expect(() => App.define({ name: "x", workflows: [w, Workflow.create("dup", () => undefined)] })).toThrow("app 'x' has two workflows named 'dup'")
    expect(() => App.define({ name: "bad name", workflows: [] })).toThrow("app name 'bad name' must match [A-Za-z0-9_.-]+")
    expect(() => Workflow.create("bad/name", () => undefined)).toThrow("workflow name 'bad/name' must match [A-Za-z0-9_.-]+")
  })

  it("merging streams of two workflows", () => {
    const a = Workflow.from(source(), { name: "a" })
    const b = Workflow.from(source(), { name: "b" })
    expect(() => a.merge(b)).toThrow("merge: streams belong to different workflows; publish one and subscribe to it")
  })

  it("a data directory written by another app, or with other key groups", async () => {
    const dir = tempDir("owner")
    dirs.push(dir)
    const make = (name: string, keyGroups: number) => App.define({ name, workflows: [Workflow.from(source()).sink(Sink.memory("out"))], keyGroups })
    await runApp(make("owner", 8), { dataDir: dir })
    await expect(runApp(make("intruder", 8), { dataDir: dir })).rejects.toThrow(new ConfigError("the data directory belongs to app 'owner', not 'intruder'"))
    await expect(runApp(make("owner", 16), { dataDir: dir })).rejects.toThrow(
      new ConfigError("the data was written with 8 key groups; app 'owner' now has 16; key groups are fixed for the life of the data"),
    )
    // The rightful app still resumes there.
    await expect(runApp(make("owner", 8), { dataDir: dir })).resolves.toMatchObject({ recoveredEpoch: 1 })
  })
})

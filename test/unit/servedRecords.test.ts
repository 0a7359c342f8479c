// Records served as requests (PortalContext.answerInto), per-key and group entries (ProcessorContext.entries and
// groupEntries): the workflow features the actor system serves client requests with, in the target's key group and,
// when the handler replies at once, in the step that takes the request.
import { afterAll, describe, expect, it } from "vitest"
import { Continuation, Portal } from "../../portals/index.ts"
import { App, Sink, Source, Workflow } from "../../workflows/index.ts"
import { tempDirs } from "../helpers.ts"
import { canonicalKey, keyGroupOf } from "../../runtime/engine/keys.ts"
import { epochClock, failuresOf, runApp } from "./util.ts"

const dirs = tempDirs()
afterAll(dirs.removeAll)

type Req = { readonly user: string; readonly n: number; readonly fail?: boolean; readonly via?: boolean }

/**
 * A replier on a keyed stream that serves its records as requests: it adds n to the key's state and replies with the
 * new total, at once or (via) after asking a doubling portal; `answered` emits what the request got and when.
 */
const servedApp = (name: string) => {
  const double = Portal.define<number, number>("double", { key: (n) => n })
  const answered = Continuation.define<unknown, { user: string; at: number }, string>("answered", (ctx, reply, data) =>
    ctx.emit(`${data.user}: ${Portal.isRejection(reply) ? `rejected (${reply.message})` : String(reply)} (epoch ${data.at}, answered in ${ctx.now()})`),
  )
  const relay = Continuation.define<number, undefined, string, number, number>("relay", (ctx, doubled) => ctx.reply(doubled))
  const self = Portal.define<never, never>("self")
  const wf = Workflow.create("w", (wf) => {
    wf.source(Source.atoms<Req>([[{ user: "a", n: 1 }, { user: "b", n: 5, via: true }], [{ user: "a", n: 2, fail: true }], [{ user: "a", n: 3 }, { user: "b", n: 1 }]], { name: "reqs" }))
      .keyBy((r) => r.user)
      .via(
        Portal.replier<never, never, Req, string, number>(self, () => undefined, {
          name: "server",
          continuations: [answered, relay],
          onRecord: (ctx, r) => {
            ctx.answerInto(answered, { user: r.user, at: ctx.now() })
            const total = ctx.state.get(0) + r.n
            ctx.state.set(total)
            if (r.fail === true) throw new Error(`no ${r.n} for ${r.user}`)
            if (r.via === true) ctx.ask(double, total).then(relay, undefined)
            else (ctx as unknown as { reply(v: number): void }).reply(total)
          },
        }),
      )
      .sink(Sink.memory("out"))
    wf.source(Source.array<number>([], { name: "none" }))
      .keyBy((n) => n)
      .via(Portal.replier<number, number, number, never, never>(double, (ctx, n) => ctx.reply(2 * n), { name: "doubler" }))
  })
  return App.define({ name, workflows: [wf] })
}

describe("records served as requests (answerInto)", () => {
  it("a reply in the step runs the continuation in that step; a later reply (from a continuation) runs it then; a throw gives it the rejection and discards the step", async () => {
    const r = await runApp(servedApp("served"), { ...epochClock, epochAtoms: 1 })
    // Within an epoch, outputs come in key group order (b's before a's).
    expect(r.outputs("out")).toEqual([
      // The doubling ask went to another key group and came back: still epoch 1, rounds later.
      "b: 10 (epoch 1, answered in 1)",
      // Answered in the epoch of the record, in the step that took it.
      "a: 1 (epoch 1, answered in 1)",
      // The handler threw after writing state: the step left nothing (the next total is 1 + 3, not 1 + 2 + 3).
      "a: rejected (no 2 for a) (epoch 2, answered in 2)",
      "b: 6 (epoch 3, answered in 3)",
      "a: 4 (epoch 3, answered in 3)",
    ])
    expect(failuresOf(r)).toEqual([{ task: "w/server", record: "{ user: 'a', n: 2, fail: true }", error: "no 2 for a" }])
  })

  it("the same outputs on several partitions; a served request whose answer crosses a commit survives a restart", async () => {
    const ref = await runApp(servedApp("served"), { ...epochClock, epochAtoms: 1 })
    const parted = await runApp(servedApp("served"), { ...epochClock, epochAtoms: 1, partitions: 3 })
    expect(parted.outputs("out")).toEqual(ref.outputs("out"))
    // One round per epoch: records reach the server an epoch later, and b's doubling ask and its reply cross commits,
    // so b's served record is a logged pending ask from epoch 2 to 5. Stopped after epoch 3 and restarted from the
    // log, the run ends with exactly the uninterrupted run's outputs.
    const cut = { ...epochClock, epochAtoms: 1, roundLimit: 1 }
    const whole = await runApp(servedApp("served"), cut)
    expect(whole.outputs("out")).toContain("b: 10 (epoch 2, answered in 5)")
    // With one round per epoch, an answer in the served record's own epoch proves it ran in the same step.
    expect(whole.outputs("out")).toContain("a: 1 (epoch 2, answered in 2)")
    const dir = dirs.dir("served")
    const first = await runApp(servedApp("served"), { ...cut, dataDir: dir, stopWhen: (e) => e >= 3 })
    const second = await runApp(servedApp("served"), { ...cut, dataDir: dir })
    expect([...first.outputs("out"), ...second.outputs("out")]).toEqual(whole.outputs("out"))
    expect(first.outputs("out")).not.toContain("b: 10 (epoch 2, answered in 5)")
  })

  it("a continuation the task does not list is a reported failure", async () => {
    const stray = Continuation.define<unknown, undefined, string>("stray", (ctx) => ctx.emit("never"))
    const p = Portal.define<never, never>("p")
    const wf = Workflow.from(Source.array(["x"]))
      .keyBy((s) => s)
      .via(Portal.replier<never, never, string, string>(p, () => undefined, { name: "server", onRecord: (ctx) => ctx.answerInto(stray, undefined) }))
      .sink(Sink.memory("out"))
    const r = await runApp(App.define({ name: "unlisted-serve", workflows: [wf] }))
    expect(failuresOf(r)).toEqual([{ task: "main/server", record: "'x'", error: "continuation 'stray' must be listed in the 'continuations' option of task 'main/server'" }])
    expect(r.outputs("out")).toEqual([])
  })
})

type Op = readonly [user: string, op: "put" | "del" | "get", sub: string, value?: number]

/** A keyed processor with entries: each record puts, deletes or reads one entry of its user and emits what it saw. */
const entriesApp = (ops: ReadonlyArray<Op>, expireAfter?: number) =>
  App.define({
    name: "entries",
    workflows: [
      Workflow.from(Source.array(ops, { name: "ops" }))
        .keyBy(([user]) => user)
        .processor<string, number>(
          (ctx, [user, op, sub, value]) => {
            const before = ctx.entries.get(sub)
            if (op === "put") ctx.entries.set(sub, { v: value, at: ctx.now() })
            if (op === "del") ctx.entries.delete(sub)
            ctx.state.set(ctx.state.get(0) + 1)
            ctx.emit(`${user}.${sub} ${op}: ${JSON.stringify(before)} -> ${JSON.stringify(ctx.entries.get(sub))}`)
          },
          { name: "users", entries: expireAfter === undefined ? {} : { expire: (e) => (e as { at: number }).at + expireAfter } },
        )
        .sink(Sink.memory("out")),
    ],
  })

describe("per-key entries", () => {
  it("are per key and sub-key, beside the key's state, and read back after a restart", async () => {
    const ops: Op[] = [
      ["u1", "put", "x", 1],
      ["u2", "put", "x", 2],
      ["u1", "put", "y", 3],
      ["u1", "del", "x"],
      ["u2", "get", "x"],
    ]
    const dir = dirs.dir("entries")
    const r = await runApp(entriesApp(ops), { ...epochClock, epochAtoms: 2, dataDir: dir, snapshotEvery: 1 })
    expect(failuresOf(r)).toEqual([])
    expect(r.outputs("out")).toEqual([
      'u1.x put: undefined -> {"v":1,"at":1}',
      'u2.x put: undefined -> {"v":2,"at":1}',
      'u1.y put: undefined -> {"v":3,"at":2}',
      'u1.x del: {"v":1,"at":1} -> undefined',
      'u2.x get: {"v":2,"at":1} -> {"v":2,"at":1}',
    ])
    // The entries table lists [key, sub-key] pairs; the task's own state is untouched by them.
    expect(await r.keys("main/users#entries")).toEqual([
      ["u1", "y"],
      ["u2", "x"],
    ])
    expect(await r.query("main/users", "u1")).toBe(3)
    // A restart (from the snapshot the first run left, every epoch, and the log) has the entries as the first left them.
    const again = await runApp(entriesApp(ops), { ...epochClock, epochAtoms: 2, dataDir: dir, snapshotEvery: 1 })
    expect(again.outputs("out")).toEqual([])
    expect(await again.keys("main/users#entries")).toEqual([
      ["u1", "y"],
      ["u2", "x"],
    ])
    expect(await again.query("main/users#entries", ["u1", "y"])).toEqual({ v: 3, at: 2 })
    expect(await again.query("main/users#entries", ["u2", "x"])).toEqual({ v: 2, at: 1 })
    expect(await again.query("main/users#entries", ["u1", "x"])).toBeUndefined()
    expect(await again.query("main/users", "u1")).toBe(3)
  })

  it("expire on their own schedule; a task without the option cannot use them", async () => {
    const ops: Op[] = [["u", "put", "x", 1], ["u", "put", "y", 2], ["u", "get", "x"], ["u", "get", "y"], ["u", "get", "x"], ["u", "get", "y"]]
    // One op per epoch; an entry expires 3 epochs after it was written: x (written in 1) from epoch 4, y from 5.
    const r = await runApp(entriesApp(ops, 3), { ...epochClock, epochAtoms: 1 })
    expect(r.outputs("out").map((s) => String(s).replace(/ -> .*/, ""))).toEqual([
      "u.x put: undefined",
      "u.y put: undefined",
      'u.x get: {"v":1,"at":1}',
      'u.y get: {"v":2,"at":2}',
      "u.x get: undefined",
      "u.y get: undefined",
    ])
    expect(await r.keys("main/users#entries")).toEqual([])
    const bare = Workflow.from(Source.array(["k"]))
      .keyBy((k) => k)
      .processor<string>((ctx) => ctx.entries.set("a", 1), { name: "bare" })
      .sink(Sink.memory("out"))
    const f = await runApp(App.define({ name: "bare", workflows: [bare] }))
    expect(failuresOf(f)).toEqual([{ task: "main/bare", record: "'k'", error: "task 'main/bare' keeps no entries: give it the 'entries' option" }])
  })
})

describe("group entries", () => {
  /** Each record adds its value to the group entry `sum` of its key's group and emits what the entry held before. */
  const groupApp = (ops: ReadonlyArray<readonly [user: string, n: number]>) =>
    App.define({
      name: "groups",
      workflows: [
        Workflow.from(Source.array(ops, { name: "ops" }))
          .keyBy(([user]) => user)
          .processor<string, number>(
            (ctx, [user, n]) => {
              const before = ctx.groupEntries.get("sum") as number | undefined
              ctx.groupEntries.set("sum", (before ?? 0) + n)
              ctx.state.set(ctx.state.get(0) + n)
              ctx.emit(`${user}: ${before}`)
            },
            { name: "users", entries: {} },
          )
          .sink(Sink.memory("out")),
      ],
    })
  const groupOf = (user: string) => keyGroupOf(canonicalKey(user), 128)
  // Two users in one key group and one in another.
  const users = Array.from({ length: 400 }, (_, i) => `u${i}`)
  const a = users[0]!
  const b = users.find((u) => u !== a && groupOf(u) === groupOf(a))!
  const c = users.find((u) => groupOf(u) !== groupOf(a))!

  it("are shared by the keys of a group, not by other groups, and read back after a restart", async () => {
    const ops = [[a, 1], [b, 10], [c, 100], [a, 1000]] as const
    const dir = dirs.dir("group-entries")
    const r = await runApp(groupApp(ops), { ...epochClock, epochAtoms: 1, dataDir: dir, snapshotEvery: 2 })
    expect(failuresOf(r)).toEqual([])
    expect(r.outputs("out")).toEqual([`${a}: undefined`, `${b}: 1`, `${c}: undefined`, `${a}: 11`])
    const keys = await r.keys("main/users#group-entries")
    expect(keys).toHaveLength(2)
    expect(keys).toEqual(expect.arrayContaining([[groupOf(a), "sum"], [groupOf(c), "sum"]]))
    expect(await r.keys("main/users#entries")).toEqual([])
    const again = await runApp(groupApp(ops), { ...epochClock, epochAtoms: 1, dataDir: dir, snapshotEvery: 2 })
    expect(again.outputs("out")).toEqual([])
    expect(await again.query("main/users#group-entries", [groupOf(a), "sum"])).toBe(1011)
    expect(await again.query("main/users#group-entries", [groupOf(c), "sum"])).toBe(100)
    expect(await again.query("main/users", a)).toBe(1001)
  })

  it("need the entries option", async () => {
    const bare = Workflow.from(Source.array(["k"]))
      .keyBy((k) => k)
      .processor<string>((ctx) => ctx.groupEntries.set("a", 1), { name: "bare" })
      .sink(Sink.memory("out"))
    const f = await runApp(App.define({ name: "bare", workflows: [bare] }))
    expect(failuresOf(f)).toEqual([{ task: "main/bare", record: "'k'", error: "task 'main/bare' keeps no entries: give it the 'entries' option" }])
  })
})

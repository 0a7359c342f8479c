// The actor library on one cyclic workflow: behaviors with typed state, setup, become and stop, deterministic spawn
// ids, per-sender order, dead letters, throwing handlers, unserializable messages, workflows that create, tell and
// ask actors, actors that ask portals, committed-state queries and the restore check of behavior names.
import { readFileSync } from "node:fs"
import { join } from "node:path"
import { afterAll, describe, expect, expectTypeOf, it } from "vitest"
import { Actors, type ActorRef, type Behavior, type DeadLetter, type DeadLetterReply, type Envelope } from "../../actors/index.ts"
import { Continuation, Portal } from "../../portals/index.ts"
import { Eddy, RecoveryError, committedState } from "../../runtime/index.ts"
import { canonicalKey } from "../../runtime/engine/keys.ts"
import { App, Sink, Source, Workflow, type Key } from "../../workflows/index.ts"
import { removeDir, tempDir } from "../helpers.ts"
import { failuresOf, range, runApp, type Summary } from "./util.ts"

const dirs: string[] = []
afterAll(() => dirs.forEach(removeDir))

const deadLetters = (r: Pick<Summary, "outputs">, system: string) => r.outputs<DeadLetter>(`${system}.dead-letters`)
const outputs = <T = unknown>(r: Pick<Summary, "outputs">, system: string) => r.outputs<T>(`${system}.output`)
/** The actors with committed state, as sorted `type/id` strings. */
const actorsOf = async (r: Pick<Summary, "keys">, system: { readonly task: string }) =>
  (await r.keys(system.task)).map((k) => (k as readonly string[]).join("/")).sort()

/** A workflow that sends the envelopes `make` builds from each record (one record per epoch with epochAtoms 1). */
const driver = <T>(system: ReturnType<typeof Actors.system>, records: ReadonlyArray<T>, make: (t: T) => Envelope | ReadonlyArray<Envelope>, name = "driver") =>
  Workflow.create(name, (wf) => {
    system.input(
      wf.source(Source.array(records, { name: `${name}.records` })).flatMap((t) => {
        const e = make(t)
        return Array.isArray(e) ? (e as ReadonlyArray<Envelope>) : [e as Envelope]
      }, { name: "envelopes" }),
    )
  })

// ---- behaviors shared by several tests -------------------------------------------------------------------------

type CounterMsg = { readonly add: number } | { readonly get: true } | { readonly stop: true } | { readonly spawnChild: number }
type CounterState = { readonly total: number; readonly children: ReadonlyArray<string> }

/** Adds; answers `get` asks (or outputs when told); stops on `stop`; spawns a child counter and gives it a start. */
const counter: Behavior<CounterMsg, CounterState> = Actors.define<CounterMsg, CounterState>("counter", {
  initial: { total: 0, children: [] },
  receive(ctx, msg, state) {
    if ("add" in msg) return { ...state, total: state.total + msg.add }
    if ("get" in msg) {
      if (ctx.isAsk) ctx.reply(state.total)
      else ctx.output({ id: ctx.self.id, total: state.total })
      return Actors.same
    }
    if ("stop" in msg) return Actors.stopped
    const child = ctx.spawn(counter)
    ctx.send(child, { add: msg.spawnChild })
    return { ...state, children: [...state.children, child.id] }
  },
})

describe("behaviors and typed state", () => {
  it("a virtual actor activates on its first message with initial(id), runs setup once, and keeps its typed state", async () => {
    type GreeterState = { readonly name: string; readonly setups: number; readonly greeted: ReadonlyArray<string> }
    const greeter = Actors.define<{ readonly hello: string }, GreeterState>("greeter", {
      initial: (id) => ({ name: id.toUpperCase(), setups: 0, greeted: [] }),
      setup(ctx, state) {
        expectTypeOf(state).toEqualTypeOf<GreeterState>()
        ctx.output(`setup ${ctx.self.id} (${state.name})`)
        return { ...state, setups: state.setups + 1 }
      },
      receive(ctx, msg, state) {
        expectTypeOf(msg).toEqualTypeOf<{ readonly hello: string }>()
        ctx.output(`${state.name} greets ${msg.hello}`)
        return { ...state, greeted: [...state.greeted, msg.hello] }
      },
    })
    const system = Actors.system({ name: "greet", behaviors: [greeter] as never })
    const ann = system.ref(greeter, "ann")
    const bob = system.ref(greeter, "bob")
    expectTypeOf(ann).toEqualTypeOf<ActorRef<{ readonly hello: string }>>()
    // @ts-expect-error: a greeter takes { hello }, not a number
    system.tell(ann, 42)
    const msgs = [[ann, "x"], [bob, "y"], [ann, "z"], [ann, "w"]] as const
    const app = App.define({ name: "greet", workflows: [driver(system, msgs, ([to, hello]) => system.tell(to, { hello })), system.workflow], views: [system.view] })
    for (const partitions of [1, 3]) {
      // One message per epoch: activation, setup and state all cross commits.
      const r = await runApp(app, { partitions, epochAtoms: 1 })
      expect(failuresOf(r)).toEqual([])
      expect(outputs(r, "greet")).toEqual(["setup ann (ANN)", "ANN greets x", "setup bob (BOB)", "BOB greets y", "ANN greets z", "ANN greets w"])
      expect(await system.query(r, ann)).toEqual({ name: "ANN", setups: 1, greeted: ["x", "z", "w"] })
      expect(await system.query(r, bob)).toEqual({ name: "BOB", setups: 1, greeted: ["y"] })
      // The record stores the behavior's name, the data and the spawn counter: never a closure.
      expect(await r.query(system.task, ["greeter", "ann"])).toEqual({ b: "greeter", s: { name: "ANN", setups: 1, greeted: ["x", "z", "w"] }, n: 0 })
      expect(await actorsOf(r, system)).toEqual(["greeter/ann", "greeter/bob"])
      expect(await system.query(r, system.ref(greeter, "nobody"))).toBeUndefined()
    }
  })

  it("setup does not run again after a restart from the data directory; state carries on", async () => {
    const dir = tempDir("actor-setup")
    dirs.push(dir)
    const tally = Actors.define<number, { readonly setups: number; readonly sum: number }>("tally", {
      initial: { setups: 0, sum: 0 },
      setup: (_ctx, s) => ({ ...s, setups: s.setups + 1 }),
      receive: (_ctx, n, s) => ({ ...s, sum: s.sum + n }),
    })
    const makeApp = () => {
      const system = Actors.system({ name: "tally", behaviors: [tally] as never })
      return { system, app: App.define({ name: "tally", workflows: [driver(system, range(1, 10), (n) => system.tell(system.ref(tally, "t"), n)), system.workflow] }) }
    }
    const first = makeApp()
    const running = Eddy.start(first.app, { dataDir: dir, epochAtoms: 1, onFailure: () => undefined, stopWhen: (e) => e >= 4 })
    await running.done
    expect(await first.system.query(running, first.system.ref(tally, "t"))).toEqual({ setups: 1, sum: 1 + 2 + 3 + 4 })
    const second = makeApp()
    const r = await runApp(second.app, { dataDir: dir, epochAtoms: 1 })
    expect(r.recoveredEpoch).toBe(4)
    expect(await second.system.query(r, second.system.ref(tally, "t"))).toEqual({ setups: 1, sum: 55 })
  })

  it("become switches behavior (and state type); the stored record names the new behavior", async () => {
    type DoorMsg = { readonly code: string } | { readonly push: true }
    const open = Actors.define<DoorMsg, { readonly pushes: number }>("door-open", {
      initial: { pushes: 0 },
      receive(ctx, msg, state) {
        if ("code" in msg) {
          ctx.output(`${ctx.self.id} locks`)
          return Actors.become(locked, { attempts: 0, code: msg.code })
        }
        ctx.output(`${ctx.self.id} opens (push ${state.pushes + 1})`)
        return { pushes: state.pushes + 1 }
      },
    })
    const locked: Behavior<DoorMsg, { readonly attempts: number; readonly code: string }> = Actors.define("door", {
      initial: { attempts: 0, code: "1234" },
      receive(ctx, msg, state) {
        if ("push" in msg) {
          ctx.output(`${ctx.self.id} is locked`)
          return Actors.same
        }
        if (msg.code !== state.code) return { ...state, attempts: state.attempts + 1 }
        ctx.output(`${ctx.self.id} unlocked after ${state.attempts} wrong codes`)
        return Actors.become(open, { pushes: 0 })
      },
    })
    const system = Actors.system({ name: "doors", behaviors: [locked, open] as never })
    const door = system.ref(locked, "front")
    const msgs: DoorMsg[] = [{ push: true }, { code: "0000" }, { code: "9" }, { code: "1234" }, { push: true }, { push: true }, { code: "42" }, { push: true }, { code: "42" }]
    const r = await runApp(App.define({ name: "doors", workflows: [driver(system, msgs, (m) => system.tell(door, m)), system.workflow] }), { epochAtoms: 2 })
    expect(failuresOf(r)).toEqual([])
    expect(outputs(r, "doors")).toEqual([
      "front is locked",
      "front unlocked after 2 wrong codes",
      "front opens (push 1)",
      "front opens (push 2)",
      "front locks",
      "front is locked",
      "front unlocked after 0 wrong codes",
    ])
    // The address keeps the type it was created with; the record holds the current behavior.
    expect(await r.query(system.task, ["door", "front"])).toEqual({ b: "door-open", s: { pushes: 0 }, n: 0 })
  })

  it("stopped deletes the state; a later message to the spawned id is a dead letter with its reason, a user id reactivates", async () => {
    const system = Actors.system({ name: "stops", behaviors: [counter] as never })
    const parent = system.ref(counter, "p")
    const child: ActorRef<CounterMsg> = { type: "counter", id: "p#1" }
    type Step = readonly [ActorRef<CounterMsg>, CounterMsg]
    const steps: Step[] = [
      [parent, { add: 5 }],
      [parent, { spawnChild: 7 }],
      [child, { add: 1 }],
      [child, { get: true }],
      [child, { stop: true }],
      [child, { add: 2 }],
      [child, { get: true }],
      [parent, { stop: true }],
      [parent, { get: true }],
      [parent, { spawnChild: 1 }],
    ]
    const r = await runApp(App.define({ name: "stops", workflows: [driver(system, steps, ([to, m]) => system.tell(to, m)), system.workflow] }), { epochAtoms: 1 })
    expect(failuresOf(r)).toEqual([])
    expect(outputs(r, "stops")).toEqual([{ id: "p#1", total: 8 }, { id: "p", total: 0 }])
    const reason = "no such actor (stopped, or never spawned)"
    expect(deadLetters(r, "stops")).toEqual([
      { to: "counter/p#1", message: { add: 2 }, reason },
      { to: "counter/p#1", message: { get: true }, reason },
    ])
    // The reactivated parent starts afresh but keeps its spawn counter (a stopped virtual actor leaves that
    // much behind), so its new child is p#2: a spawned id is never reused.
    const child2: ActorRef<CounterMsg> = { type: "counter", id: "p#2" }
    expect(await system.query(r, parent)).toEqual({ total: 0, children: ["p#2"] })
    expect(await system.query(r, child2)).toEqual({ total: 1, children: [] })
    expect(await system.query(r, child)).toBeUndefined()
  })

  it("ctx.stop() and a setup that stops: state deleted, the message that activated it is a dead letter", async () => {
    const once = Actors.define<string, { readonly seen: number }>("once", {
      initial: { seen: 0 },
      receive(ctx, msg, state) {
        ctx.output(`${ctx.self.id} got ${msg}`)
        if (msg === "last") ctx.stop()
        return { seen: state.seen + 1 }
      },
    })
    const refuser = Actors.define<string, null>("refuser", {
      initial: null,
      setup: () => Actors.stopped,
      receive: () => {
        throw new Error("never runs")
      },
    })
    const system = Actors.system({ name: "stop2", behaviors: [once, refuser] as never })
    const steps = [system.tell(system.ref(once, "o"), "first"), system.tell(system.ref(once, "o"), "last"), system.tell(system.ref(refuser, "r"), "hi")]
    const r = await runApp(App.define({ name: "stop2", workflows: [driver(system, [steps], (s) => s), system.workflow] }))
    expect(failuresOf(r)).toEqual([])
    expect(outputs(r, "stop2")).toEqual(["o got first", "o got last"])
    expect(await actorsOf(r, system)).toEqual([])
    expect(deadLetters(r, "stop2")).toEqual([{ to: "refuser/r", message: "hi", reason: "the actor stopped in its setup" }])
  })
})

describe("spawn", () => {
  type TreeMsg = { readonly depth: number }
  type TreeState = { readonly children: ReadonlyArray<string>; readonly depth: number }
  const node: Behavior<TreeMsg, TreeState> = Actors.define<TreeMsg, TreeState>("node", {
    initial: { children: [], depth: -1 },
    receive(ctx, msg, state) {
      ctx.output(ctx.self.id)
      if (msg.depth === 0) return { ...state, depth: 0 }
      // The second child starts from an explicit state instead of `initial`.
      const a = ctx.spawn(node)
      const b = ctx.spawn(node, { children: [], depth: 100 })
      ctx.send(a, { depth: msg.depth - 1 })
      ctx.send(b, { depth: msg.depth - 1 })
      return { depth: msg.depth, children: [...state.children, a.id, b.id] }
    },
  })

  it("ids are derived from the parent's id and a counter, nested, and identical across partition and key-group counts", async () => {
    const results = []
    for (const [partitions, keyGroups] of [[1, 128], [4, 128], [3, 7]] as const) {
      const system = Actors.system({ name: "tree", behaviors: [node] as never })
      const root = system.ref(node, "root")
      const app = App.define({ name: "tree", keyGroups, workflows: [driver(system, [2, 1], (depth) => system.tell(root, { depth })), system.workflow] })
      const r = await runApp(app, { partitions, epochAtoms: 1 })
      expect(failuresOf(r)).toEqual([])
      const keys = await r.keys(system.task)
      const states = await Promise.all(keys.map(async (k) => [k, await r.query(system.task, k)] as const))
      results.push({ keys, states, outputs: outputs(r, "tree") })
    }
    const ids = results[0]!.keys.map((k) => (k as readonly [string, string])[1]).sort()
    expect(ids).toEqual(["root", "root#1", "root#1#1", "root#1#2", "root#2", "root#2#1", "root#2#2", "root#3", "root#4"])
    const byId = new Map(results[0]!.states.map(([k, s]) => [(k as readonly [string, string])[1], (s as { s: unknown; n: number }) ?? undefined]))
    expect(byId.get("root")).toEqual({ b: "node", s: { depth: 1, children: ["root#1", "root#2", "root#3", "root#4"] }, n: 4 })
    expect(byId.get("root#1")).toEqual({ b: "node", s: { depth: 1, children: ["root#1#1", "root#1#2"] }, n: 2 })
    expect(byId.get("root#2")).toEqual({ b: "node", s: { depth: 1, children: ["root#2#1", "root#2#2"] }, n: 2 })
    expect(byId.get("root#2#2")).toEqual({ b: "node", s: { depth: 0, children: [] }, n: 0 })
    expect(byId.get("root#4")).toEqual({ b: "node", s: { depth: 0, children: [] }, n: 0 })
    // Outputs in commit order, sorted by (key group, sequence): the same on any number of partitions.
    expect(results[0]!.outputs).toHaveLength(10)
    expect(results[1]).toEqual(results[0])
    expect({ ...results[2], outputs: [...results[2]!.outputs].sort() }).toEqual({ ...results[0], outputs: [...results[0]!.outputs].sort() })
  })

  it("a user-chosen id may not contain '#', and spawning an unregistered behavior is a reported failure", async () => {
    const system = Actors.system({ name: "ids", behaviors: [counter] as never })
    expect(() => system.ref(counter, "a#1")).toThrow("actor id 'a#1' may not contain '#': ids with '#' are reserved for spawned actors")
    expect(() => system.ref(counter, "")).toThrow("an actor id must be a non-empty string")
    const stranger = Actors.define<null, null>("stranger", { initial: null, receive: () => Actors.same })
    const spawner = Actors.define<null, null>("spawner", {
      initial: null,
      receive(ctx) {
        ctx.spawn(stranger)
        return Actors.same
      },
    })
    const sys2 = Actors.system({ name: "ids2", behaviors: [spawner] as never })
    const r = await runApp(App.define({ name: "ids2", workflows: [driver(sys2, [null], () => sys2.tell(sys2.ref(spawner, "s"), null)), sys2.workflow] }))
    expect(failuresOf(r)).toEqual([{ task: "ids2/actors", record: "{ t: 'tell', to: { type: 'spawner', id: 's' }, m: null }", error: "spawn: behavior 'stranger' is not registered in actor system 'ids2'" }])
    expect(() => Actors.system({ name: "dup", behaviors: [counter, counter] as never })).toThrow("actor system 'dup' has two behaviors named 'counter'")
  })
})

describe("message order (guarantee 1)", () => {
  type Seq = { readonly from: string; readonly seq: number }
  const recorder = Actors.define<Seq, { readonly seen: Readonly<Record<string, ReadonlyArray<number>>> }>("recorder", {
    initial: { seen: {} },
    receive: (_ctx, m, s) => ({ seen: { ...s.seen, [m.from]: [...(s.seen[m.from] ?? []), m.seq] } }),
  })
  const burster = Actors.define<{ readonly burst: number; readonly to: ActorRef<Seq> }, { readonly sent: number }>("burster", {
    initial: { sent: 0 },
    receive(ctx, m, s) {
      for (let i = 0; i < m.burst; i++) ctx.send(m.to, { from: ctx.self.id, seq: s.sent + i })
      return { sent: s.sent + m.burst }
    },
  })

  it("messages from one sender to one actor arrive in send order, across key groups, partitions, round limits and epochs", async () => {
    const senders = range(0, 11).map((i) => `s${i}`)
    const bursts = 4
    const burst = 7
    const run = async (options: Parameters<typeof runApp>[1]) => {
      const system = Actors.system({ name: "order", behaviors: [recorder, burster] as never })
      const rec = system.ref(recorder, "rec")
      // Burst requests round-robin over the senders; the workflow itself also sends a numbered stream to rec.
      const records = range(0, bursts * senders.length - 1).map((i) => ({ sender: senders[i % senders.length]!, i }))
      const app = App.define({
        name: "order",
        workflows: [driver(system, records, ({ sender, i }) => [system.tell(system.ref(burster, sender), { burst, to: rec }), system.tell(rec, { from: "workflow", seq: i })]), system.workflow],
      })
      let inTransit = 0
      const r = await runApp(app, { ...options, onCommit: (_e, votes) => (inTransit = Math.max(inTransit, votes.reduce((n, v) => n + v.inTransit, 0))) })
      expect(failuresOf(r)).toEqual([])
      return { seen: ((await system.query(r, rec)) as { seen: Record<string, number[]> }).seen, epochs: r.epochs, inTransit }
    }
    const expected = Object.fromEntries([...senders.map((s) => [s, range(0, bursts * burst - 1)] as const), ["workflow", range(0, bursts * senders.length - 1)] as const])
    const free = await run({ partitions: 1 })
    expect(free.seen).toEqual(expected)
    // Three messages per key group per round and one round per epoch: the recorder's backlog is deferred round
    // after round and carried from epoch to epoch as in-transit messages, while new bursts keep arriving.
    const cut = await run({ partitions: 4, keyGroupRoundLimit: 3, roundLimit: 2, epochAtoms: 5 })
    expect(cut.seen).toEqual(expected)
    expect(cut.inTransit).toBeGreaterThan(20)
    expect(cut.epochs).toBeGreaterThan(free.epochs * 10)
  })

  it("envelopes one workflow record sends arrive in order: create first, then the messages", async () => {
    const system = Actors.system({ name: "made", behaviors: [counter] as never })
    const made = system.ref(counter, "made")
    const r = await runApp(
      App.define({
        name: "made",
        workflows: [
          driver(system, [1, 2], (n) =>
            n === 1
              ? [system.create(made, counter, { total: 100, children: ["given"] }), system.tell(made, { add: 1 }), system.tell(made, { get: true }), system.tell(made, { add: 10 })]
              : [system.create(made, counter, { total: -1, children: [] }), system.tell(made, { get: true })],
          ),
          system.workflow,
        ],
      }),
      { partitions: 2, epochAtoms: 1 },
    )
    expect(failuresOf(r)).toEqual([])
    expect(outputs(r, "made")).toEqual([{ id: "made", total: 101 }, { id: "made", total: 111 }])
    expect(deadLetters(r, "made")).toEqual([{ to: "counter/made", message: { total: -1, children: [] }, reason: "create: the actor already exists" }])
    expect(await system.query(r, made)).toEqual({ total: 111, children: ["given"] })
  })
})

describe("dead letters", () => {
  it("an unknown actor type, or a spawned id never created, is a dead letter with its reason, never a failure", async () => {
    const forwarder = Actors.define<ActorRef<string>, null>("forwarder", {
      initial: null,
      receive(ctx, to) {
        ctx.send(to, `from ${ctx.self.id}`)
        return Actors.same
      },
    })
    const system = Actors.system({ name: "dl", behaviors: [forwarder, counter] as never })
    const ghost: ActorRef<string> = { type: "ghost", id: "g1" }
    const envelopes: Envelope[] = [
      system.tell(ghost, "boo"),
      system.tell(system.ref(forwarder, "f"), { type: "ghost", id: "g2" }),
      system.tell(system.ref(forwarder, "f"), { type: "counter", id: "nobody#3" }),
      system.create({ type: "ghost", id: "g3" }, counter as never, { total: 0, children: [] } as never),
      system.tell(system.ref(counter, "c"), { add: 1 }),
    ]
    const r = await runApp(App.define({ name: "dl", workflows: [driver(system, [envelopes], (e) => e), system.workflow] }), { partitions: 2 })
    expect(failuresOf(r)).toEqual([])
    expect([...deadLetters(r, "dl")].sort((a, b) => (a.to < b.to ? -1 : 1))).toEqual([
      { to: "counter/nobody#3", message: "from f", reason: "no such actor (stopped, or never spawned)" },
      { to: "ghost/g1", message: "boo", reason: "unknown actor type 'ghost'" },
      { to: "ghost/g2", message: "from f", reason: "unknown actor type 'ghost'" },
      { to: "ghost/g3", message: { total: 0, children: [] }, reason: "unknown actor type 'ghost'" },
    ])
    // Other messages are unaffected.
    expect(await system.query(r, system.ref(counter, "c"))).toEqual({ total: 1, children: [] })
  })

  it("dead letters can go to a sink of the app's choice", async () => {
    const dir = tempDir("dead-letters")
    dirs.push(dir)
    const system = Actors.system({ name: "dlf", behaviors: [counter] as never, deadLetters: Sink.file("dead.jsonl", "dead") })
    await runApp(App.define({ name: "dlf", workflows: [driver(system, [1, 2], (i) => system.tell({ type: "counter", id: `x#${i}` }, { add: i })), system.workflow] }), { dataDir: dir })
    expect(readFileSync(join(dir, "dead.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l) as DeadLetter)).toEqual([
      { to: "counter/x#1", message: { add: 1 }, reason: "no such actor (stopped, or never spawned)" },
      { to: "counter/x#2", message: { add: 2 }, reason: "no such actor (stopped, or never spawned)" },
    ])
  })
})

describe("a throwing handler", () => {
  type Msg = { readonly op: "ok" | "boom" | "spawn"; readonly n: number }
  const other = Actors.define<number, { readonly got: ReadonlyArray<number> }>("other", {
    initial: { got: [] },
    receive: (_ctx, n, s) => ({ got: [...s.got, n] }),
  })
  const fragile = Actors.define<Msg, { readonly log: ReadonlyArray<number>; readonly kids: ReadonlyArray<string> }>("fragile", {
    initial: { log: [], kids: [] },
    receive(ctx, msg, state) {
      // Every kind of effect first, then maybe a throw: all of it must be discarded.
      ctx.send<number>({ type: "other", id: "o" }, msg.n)
      const kid = ctx.spawn(other)
      ctx.output(`${ctx.self.id} handled ${msg.op} ${msg.n}`)
      const next = { log: [...state.log, msg.n], kids: [...state.kids, kid.id] }
      if (msg.op === "boom") throw new Error(`boom on ${msg.n}`)
      return next
    },
  })

  it("discards the message's effects, reports actor address and message, keeps the previous state and keeps going", async () => {
    const system = Actors.system({ name: "fr", behaviors: [fragile, other] as never })
    const a = system.ref(fragile, "a")
    const msgs: Msg[] = [{ op: "ok", n: 1 }, { op: "boom", n: 2 }, { op: "ok", n: 3 }, { op: "boom", n: 4 }, { op: "boom", n: 5 }, { op: "ok", n: 6 }]
    const app = App.define({ name: "fr", workflows: [driver(system, msgs, (m) => system.tell(a, m)), system.workflow] })
    for (const [partitions, epochAtoms] of [[1, 1], [2, 3]] as const) {
      const r = await runApp(app, { partitions, epochAtoms })
      expect(outputs(r, "fr")).toEqual(["a handled ok 1", "a handled ok 3", "a handled ok 6"])
      expect(r.failureList.map((f) => ({ task: f.task, key: f.key, record: f.record, error: f.error }))).toEqual(
        [2, 4, 5].map((n) => ({
          task: "fr/actors",
          key: canonicalKey(["fragile", "a"]),
          record: `{ t: 'tell', to: { type: 'fragile', id: 'a' }, m: { op: 'boom', n: ${n} } }`,
          error: `boom on ${n}`,
        })),
      )
      // No send, spawn or state change of the failed messages survived: the spawn counter did not move either.
      expect(await system.query(r, a)).toEqual({ log: [1, 3, 6], kids: ["a#1", "a#2", "a#3"] })
      expect(await system.query(r, system.ref(other, "o"))).toEqual({ got: [1, 3, 6] })
      expect(await actorsOf(r, system)).toEqual(["fragile/a", "other/a#1", "other/a#2", "other/a#3", "other/o"])
      expect(deadLetters(r, "fr")).toEqual([])
    }
  })

  it("a setup that throws leaves no actor behind; the next message tries again", async () => {
    const moody = Actors.define<number, { readonly n: number }>("moody", {
      initial: { n: 0 },
      setup(ctx) {
        if (ctx.now() < 2) throw new Error(`not ready at ${ctx.now()}`)
        return Actors.same
      },
      receive: (_ctx, n, s) => ({ n: s.n + n }),
    })
    const system = Actors.system({ name: "moody", behaviors: [moody] as never })
    const m = system.ref(moody, "m")
    const r = await runApp(App.define({ name: "moody", workflows: [driver(system, [1, 10, 100], (n) => system.tell(m, n)), system.workflow] }), { epochAtoms: 1, clock: "logical", epochMs: 1 })
    expect(failuresOf(r)).toEqual([{ task: "moody/actors", record: "{ t: 'tell', to: { type: 'moody', id: 'm' }, m: 1 }", error: "not ready at 1" }])
    expect(await system.query(r, m)).toEqual({ n: 110 })
  })
})

describe("unserializable messages are rejected at send, naming the field", () => {
  class Money {
    constructor(readonly cents: number) {}
  }
  type Payload = { readonly n: number; readonly payload?: unknown }
  const keeper = Actors.define<Payload, { readonly last: unknown; readonly count: number }>("keeper", {
    initial: { last: null, count: 0 },
    receive: (_ctx, m, s) => ({ last: m.payload ?? null, count: s.count + m.n }),
  })
  const relay = Actors.define<Payload, { readonly relayed: number }>("relay", {
    initial: { relayed: 0 },
    receive(ctx, m, s) {
      const to: ActorRef<Payload> = { type: "keeper", id: "k" }
      if (m.n === 2) ctx.send(to, { n: 2, payload: { cb: () => 2 } })
      else if (m.n === 3) ctx.send(to, { n: 3, payload: { items: [1, { price: new Money(3) }] } })
      else if (m.n === 4) ctx.spawn(keeper, { last: new Map([["when", () => 4]]), count: 0 })
      else ctx.send(to, { n: m.n, payload: `ok ${m.n}` })
      return { relayed: s.relayed + 1 }
    },
  })

  it.each([true, false])("by an actor's send and spawn, and a workflow's tell (checked: %s)", async (checked) => {
    const system = Actors.system({ name: "ser", behaviors: [keeper, relay] as never })
    const r0 = system.ref(relay, "r")
    const k = system.ref(keeper, "k")
    const drive = Workflow.create("drive", (wf) => {
      system.input(
        wf.source(Source.array(range(1, 6), { name: "numbers" })).map((n) => (n === 6 ? system.tell(k, { n: 6, payload: { when: new Money(6) } }) : n === 5 ? system.tell(k, { n: 5, payload: [() => 5] }) : system.tell(r0, { n })), {
          name: "tell",
        }),
      )
    })
    const r = await runApp(App.define({ name: "ser", workflows: [drive, system.workflow] }), { checked, epochAtoms: 1 })
    expect(r.failureList.map((f) => ({ task: f.task, error: f.error, record: f.record }))).toEqual([
      {
        task: "ser/actors",
        record: "{ t: 'tell', to: { type: 'relay', id: 'r' }, m: { n: 2 } }",
        error: "send to keeper/k: cannot serialize field 'payload.cb': a function cannot be stored or sent; register code by name and send data",
      },
      {
        task: "ser/actors",
        record: "{ t: 'tell', to: { type: 'relay', id: 'r' }, m: { n: 3 } }",
        error: "send to keeper/k: cannot serialize field 'payload.items[1].price': an instance of class Money would come back as a plain object; send plain data",
      },
      {
        task: "ser/actors",
        record: "{ t: 'tell', to: { type: 'relay', id: 'r' }, m: { n: 4 } }",
        error: "spawn keeper/r#1: cannot serialize field 'last.get(when)': a function cannot be stored or sent; register code by name and send data",
      },
      { task: "drive/tell", record: "5", error: "tell to keeper/k: cannot serialize field 'payload[0]': a function cannot be stored or sent; register code by name and send data" },
      {
        task: "drive/tell",
        record: "6",
        error: "tell to keeper/k: cannot serialize field 'payload.when': an instance of class Money would come back as a plain object; send plain data",
      },
    ])
    // Only the good message got through; the relay's failed handlers changed nothing; nothing was spawned.
    expect(await system.query(r, k)).toEqual({ last: "ok 1", count: 1 })
    expect(await system.query(r, r0)).toEqual({ relayed: 1 })
    expect(await actorsOf(r, system)).toEqual(["keeper/k", "relay/r"])
  })

  it("a workflow's ask of an actor with an unserializable request fails at askRequest", () => {
    const system = Actors.system({ name: "ser2", behaviors: [keeper] as never })
    expect(() => system.askRequest(system.ref(keeper, "k"), { n: 1, payload: new Set([new Money(1)]) })).toThrow(
      "ask of keeper/k: cannot serialize field 'payload<element>': an instance of class Money would come back as a plain object; send plain data",
    )
    expect(() => system.create(system.ref(keeper, "k"), keeper, { last: Symbol("s"), count: 0 })).toThrow("create keeper/k: cannot serialize field 'last': a symbol cannot be stored or sent")
  })
})

describe("workflows and actors", () => {
  type Cmd = { readonly label: string; readonly to: ActorRef<CounterMsg>; readonly m: CounterMsg; readonly ask?: true }

  it("a workflow creates and tells actors; an asker task asks them through the system's portal and gets ctx.reply's value", async () => {
    const system = Actors.system({ name: "wa", behaviors: [counter] as never })
    const c = system.ref(counter, "c")
    const p = system.ref(counter, "p")
    const pChild: ActorRef<CounterMsg> = { type: "counter", id: "p#1" }
    const cmds: Cmd[] = [
      { label: "tell c +5", to: c, m: { add: 5 } },
      { label: "ask c", to: c, m: { get: true }, ask: true },
      { label: "ask c again", to: c, m: { get: true }, ask: true },
      { label: "p spawns", to: p, m: { spawnChild: 7 } },
      { label: "ask p#1", to: pChild, m: { get: true }, ask: true },
      { label: "ask p#1 +1", to: pChild, m: { add: 1 }, ask: true },
      { label: "ask p#1 after", to: pChild, m: { get: true }, ask: true },
      { label: "stop p#1", to: pChild, m: { stop: true } },
      { label: "ask stopped p#1", to: pChild, m: { get: true }, ask: true },
      { label: "ask ghost", to: { type: "ghost", id: "g" }, m: { get: true }, ask: true },
      { label: "ask never spawned", to: { type: "counter", id: "c#9" }, m: { get: true }, ask: true },
      { label: "ask new virtual", to: system.ref(counter, "fresh"), m: { get: true }, ask: true },
    ]
    const answered = Continuation.define<unknown, string, string>("answered", (ctx, reply, label) => ctx.emit(`${label}: ${JSON.stringify(reply)}`))
    const client = Workflow.create("client", (wf) => {
      const cmdsIn = wf.source(Source.array(cmds, { name: "cmds" }))
      system.input(cmdsIn.filter((x) => x.ask === undefined, { name: "tells" }).map((x) => system.tell(x.to, x.m), { name: "tell" }))
      cmdsIn
        .filter((x) => x.ask === true, { name: "asks" })
        .via(Portal.asker<Cmd, string>((ctx, x) => ctx.ask(system.portal, system.askRequest(x.to, x.m)).then(answered, x.label), { continuations: [answered], name: "asker" }))
        .sink(Sink.memory("answers"))
    })
    for (const partitions of [1, 3]) {
      const r = await runApp(App.define({ name: "wa", workflows: [client, system.workflow] }), { partitions, epochAtoms: 1 })
      expect(failuresOf(r)).toEqual([])
      const stopped: DeadLetterReply = { deadLetter: "no such actor (stopped, or never spawned)" }
      expect(r.outputs("answers")).toEqual([
        "ask c: 5",
        "ask c again: 5",
        "ask p#1: 7",
        // A handler that does not reply leaves the ask pending: no answer for "ask p#1 +1".
        "ask p#1 after: 8",
        `ask stopped p#1: ${JSON.stringify(stopped)}`,
        `ask ghost: ${JSON.stringify({ deadLetter: "unknown actor type 'ghost'" })}`,
        `ask never spawned: ${JSON.stringify(stopped)}`,
        "ask new virtual: 0",
      ])
      expect(deadLetters(r, "wa").map((d) => d.to)).toEqual(["counter/p#1", "ghost/g", "counter/c#9"])
      expect(await system.query(r, p)).toEqual({ total: 0, children: ["p#1"] })
    }
  })

  it("an actor asks a portal with a continuation; it keeps handling messages while the ask is pending", async () => {
    // Unkeyed: one replier instance, so replies come back in the order of the asks.
    const square = Portal.define<number, number>("square")
    type SqState = { readonly events: ReadonlyArray<string>; readonly sum: number }
    const gotSquare = Actors.continuation<number, { n: number }, SqState>("got-square", (ctx, sq, data, state) => {
      ctx.output(`${ctx.self.id}: ${data.n}^2 = ${sq}`)
      return { events: [...state.events, `reply ${data.n}`], sum: state.sum + sq }
    })
    const unlisted = Actors.continuation<number, null, SqState>("unlisted", () => Actors.same)
    const squarer = Actors.define<{ readonly n: number } | { readonly note: string } | { readonly bad: true } | { readonly quit: number }, SqState>("squarer", {
      initial: { events: [], sum: 0 },
      continuations: [gotSquare as never],
      receive(ctx, msg, state) {
        if ("n" in msg) {
          ctx.ask(square, msg.n).then(gotSquare as never, { n: msg.n })
          return { ...state, events: [...state.events, `asked ${msg.n}`] }
        }
        if ("bad" in msg) {
          ctx.ask(square, 99).then(unlisted as never, null)
          return { ...state, events: [...state.events, "never"] }
        }
        if ("quit" in msg) {
          ctx.ask(square, msg.quit).then(gotSquare as never, { n: msg.quit })
          return Actors.stopped
        }
        return { ...state, events: [...state.events, msg.note] }
      },
    })
    const system = Actors.system({ name: "sq", behaviors: [squarer] as never })
    const s = system.ref(squarer, "s")
    const server = Workflow.create("server", (wf) => {
      wf.source(Source.empty()).via(Portal.replier(square, (ctx, n: number) => ctx.reply(n * n), { name: "square" }))
    })
    const steps = [
      [system.tell(s, { n: 3 }), system.tell(s, { note: "while pending" }), system.tell(s, { n: 4 })],
      [system.tell(s, { bad: true })],
      [system.tell(system.ref(squarer, "q"), { quit: 5 })],
    ]
    const r = await runApp(App.define({ name: "sq", workflows: [server, driver(system, steps, (e) => e), system.workflow] }), { partitions: 2, epochAtoms: 1 })
    expect(outputs(r, "sq")).toEqual(["s: 3^2 = 9", "s: 4^2 = 16"])
    expect(await system.query(r, s)).toEqual({ events: ["asked 3", "while pending", "asked 4", "reply 3", "reply 4"], sum: 25 })
    expect(failuresOf(r)).toEqual([
      {
        task: "sq/actors",
        record: "{ t: 'tell', to: { type: 'squarer', id: 's' }, m: { bad: true } }",
        error: "continuation 'unlisted' is not listed in the continuations of behavior 'squarer'",
      },
    ])
    expect(deadLetters(r, "sq")).toEqual([{ to: "squarer/q", message: 25, reason: "reply for continuation 'got-square' arrived after the actor stopped" }])
  })
})

describe("queries and recovery", () => {
  it("system.query on a running app returns the state as of the last committed epoch", async () => {
    const dir = tempDir("actor-query")
    dirs.push(dir)
    const system = Actors.system({ name: "q", behaviors: [counter] as never })
    const c = system.ref(counter, "c")
    const n = 40
    const app = App.define({ name: "q", workflows: [driver(system, range(1, n), (i) => system.tell(c, { add: i })), system.workflow] })
    let committed = 0
    const running = Eddy.start(app, { dataDir: dir, epochAtoms: 1, onFailure: () => undefined, onCommit: (e) => (committed = e) })
    const seen: Array<{ total: number; committed: number }> = []
    while (seen.length < 15) {
      const s = (await system.query(running, c)) as CounterState | undefined
      seen.push({ total: s?.total ?? 0, committed })
    }
    const summary = await running.done
    expect(summary.failureList).toEqual([])
    // Epoch e admitted record e: after epoch e the total is 1 + ... + e. Each answer is exactly a committed epoch's.
    for (const x of seen) expect(x.total).toBe((x.committed * (x.committed + 1)) / 2)
    expect(seen.at(-1)!.committed).toBeGreaterThan(seen[0]!.committed)
    expect(await system.query(running, c)).toEqual({ total: (n * (n + 1)) / 2, children: [] })
    expect(await system.query(running, system.ref(counter, "none"))).toBeUndefined()
    const stored = await committedState(dir)
    expect(stored.entries.filter((e) => e.task === system.task)).toEqual([{ task: "q/actors", key: canonicalKey(["counter", "c"]), value: { b: "counter", s: { total: 820, children: [] }, n: 0 } }])
  })

  it("a restart whose actor system lacks a behavior in the stored state fails start-up with a RecoveryError naming it", async () => {
    const dir = tempDir("actor-restore")
    dirs.push(dir)
    const open = Actors.define<string, { readonly by: string }>("gate-open", { initial: { by: "" }, receive: () => Actors.same })
    const gate = Actors.define<string, null>("gate", { initial: null, receive: (_ctx, who) => Actors.become(open, { by: who }) })
    const make = (behaviors: ReadonlyArray<unknown>, records: ReadonlyArray<string>) => {
      const system = Actors.system({ name: "gates", behaviors: behaviors as never })
      return App.define({ name: "gates", workflows: [driver(system, records, (who) => system.tell(system.ref(gate, "g"), who)), system.workflow] })
    }
    const first = await runApp(make([gate, open, counter], ["ann"]), { dataDir: dir })
    expect(failuresOf(first)).toEqual([])
    // The actor's type is still 'gate', but its record says 'gate-open', which the new build lacks.
    const run = runApp(make([gate, counter], ["ann", "bob"]), { dataDir: dir })
    await expect(run).rejects.toBeInstanceOf(RecoveryError)
    await expect(run).rejects.toThrow(
      `task 'gates/actors' rejected the restored state of key ${canonicalKey(["gate", "g"])}: an actor has behavior 'gate-open', which actor system 'gates' does not define (known: gate, counter)`,
    )
    // Nothing was written by the failed start: the original build still resumes.
    const again = await runApp(make([gate, open, counter], ["ann", "bob"]), { dataDir: dir })
    expect(again.recoveredEpoch).toBeGreaterThan(0)
    expect(failuresOf(again)).toEqual([])
    const rec = (await committedState(dir)).entries.find((e) => e.task === "gates/actors")
    expect(rec?.value).toEqual({ b: "gate-open", s: { by: "ann" }, n: 0 })
  })

  it("a view maps '<type>/<id>' to the actor's key and shows its own state", () => {
    const system = Actors.system({ name: "v", behaviors: [counter] as never })
    const v = system.view
    expect(v.task).toBe("v/actors")
    expect(v.key("counter/a#1")).toEqual(["counter", "a#1"])
    expect(v.key("counter/with/slash")).toEqual(["counter", "with/slash"])
    expect(v.key("ghost/a")).toBeUndefined()
    expect(v.key("counter")).toBeUndefined()
    expect(v.show({ b: "counter", s: { total: 3 }, n: 1 })).toEqual({ total: 3 })
    expect(v.describe(["counter", "a#1"] as Key)).toEqual({ spec: "counter/a#1", group: "counter" })
  })
})

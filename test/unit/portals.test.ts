// Portals: request/reply between workflows. Ping-pong, nested asks, two askers on one portal, fire-and-forget
// asks, continuations that are not listed, and the replier's per-key state.
import { describe, expect, it } from "vitest"
import { App, Sink, Source, Workflow } from "../../workflows/index.ts"
import { Continuation, Portal } from "../../portals/index.ts"
import { ConfigError, Eddy, committedState } from "../../runtime/index.ts"
import { removeDir, tempDir } from "../helpers.ts"
import { failuresOf, range, runApp } from "./util.ts"

type Ping = { readonly n: number }
type Pong = { readonly n: number; readonly doubled: number }

describe("portals", () => {
  it("ping-pong: the asker asks, the replier replies, the continuation emits with its stored data", async () => {
    const doubler = Portal.define<Ping, Pong>("doubler")
    const gotPong = Continuation.define<Pong, { asked: number; note: string }, string>("got-pong", (ctx, rep, data) => {
      ctx.emit(`${data.note}: ${data.asked} -> ${rep.doubled}`)
    })
    const server = Workflow.create("server", (wf) => {
      wf.source(Source.empty()).via(Portal.replier(doubler, (ctx, req: Ping) => ctx.reply({ n: req.n, doubled: req.n * 2 })))
    })
    const client = Workflow.create("client", (wf) => {
      wf.source(Source.array(range(1, 5)))
        .via(
          Portal.asker<number, string>(
            (ctx, n) => {
              ctx.ask(doubler, { n }).then(gotPong, { asked: n, note: `ask #${n}` })
            },
            { continuations: [gotPong] },
          ),
        )
        .sink(Sink.memory("out"))
    })
    const r = await runApp(App.define({ name: "ping-pong", workflows: [server, client] }), { partitions: 2 })
    expect(failuresOf(r)).toEqual([])
    expect(r.outputs("out")).toEqual(range(1, 5).map((n) => `ask #${n}: ${n} -> ${2 * n}`))
  })

  it("a keyed asker keeps its key and per-key state in the continuation; the replier has per-request-key state", async () => {
    // The portal routes each request by its account: the replier's state is the account's balance.
    const bank = Portal.define<{ account: string; amount: number }, number>("bank", { key: (r) => r.account })
    const credited = Continuation.define<number, number, string, number>("credited", (ctx, balance, amount) => {
      const asks = ctx.state.get(0)
      ctx.emit(`${String(ctx.key)} +${amount} = ${balance} (ask ${asks})`)
    })
    const server = Workflow.create("bank", (wf) => {
      wf.source(Source.empty()).via(
        Portal.replier<{ account: string; amount: number }, number, never, never, number>(bank, (ctx, req) => {
          const balance = ctx.state.get(0) + req.amount
          ctx.state.set(balance)
          ctx.reply(balance)
        }),
      )
    })
    const client = Workflow.create("client", (wf) => {
      wf.source(Source.array([{ user: "ann", amount: 5 }, { user: "bob", amount: 1 }, { user: "ann", amount: 7 }, { user: "cid", amount: 2 }, { user: "ann", amount: 1 }]))
        .keyBy((t) => t.user)
        .via(
          Portal.asker<{ user: string; amount: number }, string, number>(
            (ctx, t) => {
              const asks = ctx.state.get(0) + 1
              ctx.state.set(asks)
              ctx.ask(bank, { account: t.user, amount: t.amount }).then(credited, t.amount)
            },
            { continuations: [credited], name: "teller" },
          ),
        )
        .sink(Sink.memory("out"))
    })
    // Each transaction in its own epoch, so the asks of one user are served in order.
    const r = await runApp(App.define({ name: "bank", workflows: [server, client] }), { partitions: 3, epochAtoms: 1 })
    expect(failuresOf(r)).toEqual([])
    expect(r.outputs("out")).toEqual(["ann +5 = 5 (ask 1)", "bob +1 = 1 (ask 1)", "ann +7 = 12 (ask 2)", "cid +2 = 2 (ask 1)", "ann +1 = 13 (ask 3)"])
  })

  it("a keyed portal's replier keeps one state per request key, whatever the number of key groups", async () => {
    const account = Portal.define<{ account: string; amount: number }, number>("account", { key: (r) => r.account })
    const got = Continuation.define<number, string, string>("got", (ctx, balance, who) => ctx.emit(`${who}=${balance}`))
    const wf = Workflow.create("w", (wf) => {
      wf.source(Source.empty()).via(
        Portal.replier<{ account: string; amount: number }, number, never, never, number>(account, (ctx, req) => {
          const balance = ctx.state.get(0) + req.amount
          ctx.state.set(balance)
          ctx.reply(balance)
        }),
      )
      wf.source(Source.array([["a", 1], ["b", 10], ["a", 2], ["c", 100], ["b", 20]] as const))
        .via(Portal.asker<readonly [string, number], string>((ctx, [who, amount]) => ctx.ask(account, { account: who, amount }).then(got, who), { continuations: [got] }))
        .sink(Sink.memory("out"))
    })
    for (const keyGroups of [1, 2, 128]) {
      const r = await runApp(App.define({ name: "accounts", workflows: [wf], keyGroups }), { epochAtoms: 1 })
      expect(failuresOf(r)).toEqual([])
      expect(r.outputs("out"), `${keyGroups} key groups`).toEqual(["a=1", "b=10", "a=3", "c=100", "b=30"])
    }
  })

  it("nested asks: a replier asks another portal and replies from its continuation", async () => {
    const square = Portal.define<number, number>("square")
    const plusOneSquared = Portal.define<number, number>("plus-one-squared")
    // `reply` answers the request that was being served when the inner ask was made.
    const squared = Continuation.define<number, { from: number }, never, unknown, number>("squared", (ctx, sq, data) => {
      expect(data.from + 1).toBe(Math.sqrt(sq))
      ctx.reply(sq)
    })
    const answered = Continuation.define<number, number, string>("answered", (ctx, v, asked) => ctx.emit(`${asked} -> ${v}`))
    const squarer = Workflow.create("squarer", (wf) => {
      wf.source(Source.empty()).via(Portal.replier(square, (ctx, n: number) => ctx.reply(n * n)))
    })
    const middle = Workflow.create("middle", (wf) => {
      wf.source(Source.empty()).via(
        Portal.replier(plusOneSquared, (ctx, n: number) => ctx.ask(square, n + 1).then(squared, { from: n }), { continuations: [squared] }),
      )
    })
    const client = Workflow.create("client", (wf) => {
      wf.source(Source.array([1, 2, 3, 10]))
        .via(Portal.asker<number, string>((ctx, n) => ctx.ask(plusOneSquared, n).then(answered, n), { continuations: [answered] }))
        .sink(Sink.memory("out"))
    })
    const r = await runApp(App.define({ name: "nested", workflows: [squarer, middle, client] }), { partitions: 2 })
    expect(failuresOf(r)).toEqual([])
    expect(r.outputs("out")).toEqual(["1 -> 4", "2 -> 9", "3 -> 16", "10 -> 121"])
  })

  it("nested asks across a round limit: pending asks and replies survive epoch boundaries", async () => {
    const inner = Portal.define<number, number>("inner", { key: (n) => n % 5 })
    const outer = Portal.define<number, number>("outer", { key: (n) => n % 3 })
    const relay = Continuation.define<number, number, never, unknown, number>("relay", (ctx, v, n) => ctx.reply(v + n))
    const done = Continuation.define<number, number, [number, number]>("done", (ctx, v, n) => ctx.emit([n, v]))
    const wf = Workflow.create("all", (wf) => {
      wf.source(Source.empty()).via(Portal.replier(inner, (ctx, n: number) => ctx.reply(n * 100)))
      wf.source(Source.empty()).via(Portal.replier(outer, (ctx, n: number) => ctx.ask(inner, n).then(relay, n), { continuations: [relay] }))
      wf.source(Source.array(range(1, 12)))
        .keyBy((n) => n)
        .via(Portal.asker<number, [number, number]>((ctx, n) => ctx.ask(outer, n).then(done, n), { continuations: [done] }))
        .sink(Sink.memory("out"))
    })
    const app = App.define({ name: "nested-limited", workflows: [wf] })
    const free = await runApp(app, { partitions: 2 })
    const cut = await runApp(app, { partitions: 3, roundLimit: 1 })
    expect(failuresOf(cut)).toEqual([])
    const sorted = (xs: ReadonlyArray<[number, number]>) => [...xs].sort((a, b) => a[0] - b[0])
    expect(sorted(cut.outputs<[number, number]>("out"))).toEqual(range(1, 12).map((n) => [n, n * 101]))
    expect(sorted(cut.outputs<[number, number]>("out"))).toEqual(sorted(free.outputs<[number, number]>("out")))
    expect(cut.epochs).toBeGreaterThan(free.epochs)
  })

  it("pending asks survive a stop and a restart from the data directory: continuations resume by name", async () => {
    const dirs = [tempDir("asks-ref"), tempDir("asks")]
    try {
      const slow = Portal.define<number, number>("slow", { key: (n) => n % 4 })
      const relay = Continuation.define<number, number, never, unknown, number>("relay", (ctx, v, n) => ctx.reply(v + n))
      const inner = Portal.define<number, number>("inner", { key: (n) => n % 3 })
      const done = Continuation.define<number, { n: number }, string, number>("done", (ctx, v, data) => {
        const count = ctx.state.get(0) + 1
        ctx.state.set(count)
        ctx.emit(`${data.n}:${v}:${count}`)
      })
      const makeApp = () =>
        App.define({
          name: "resume-asks",
          workflows: [
            Workflow.create("w", (wf) => {
              wf.source(Source.empty()).via(Portal.replier(inner, (ctx, n: number) => ctx.reply(n * 100)))
              wf.source(Source.empty()).via(Portal.replier(slow, (ctx, n: number) => ctx.ask(inner, n).then(relay, n), { continuations: [relay] }))
              wf.source(Source.array(range(1, 16), { name: "asks" }))
                .keyBy((n) => n % 5)
                .via(Portal.asker<number, string, number>((ctx, n) => ctx.ask(slow, n).then(done, { n }), { continuations: [done], name: "asker" }))
                .sink(Sink.memory("out"))
            }),
          ],
        })
      // One round per epoch: every ask and reply crosses an epoch boundary, so a stop always leaves asks pending.
      const opts = { epochAtoms: 2, roundLimit: 1, partitions: 2 }
      const ref = await runApp(makeApp(), { ...opts, dataDir: dirs[0]! })
      expect(ref.outputs("out")).toHaveLength(16)
      let pendingAtStop = 0
      const first = Eddy.start(makeApp(), {
        ...opts,
        dataDir: dirs[1]!,
        onFailure: () => undefined,
        stopWhen: (e) => e >= 4,
        onCommit: (e, votes) => {
          if (e === 4) pendingAtStop = votes.reduce((n, v) => n + v.inTransit, 0)
        },
      })
      await first.done
      expect(pendingAtStop).toBeGreaterThan(0)
      const second = await runApp(makeApp(), { ...opts, dataDir: dirs[1]!, partitions: 3 })
      expect(second.recoveredEpoch).toBe(4)
      expect(failuresOf(second)).toEqual([])
      expect([...first.outputs<string>("out"), ...second.outputs<string>("out")]).toEqual(ref.outputs("out"))
      expect(await committedState(dirs[1]!)).toEqual(await committedState(dirs[0]!))
    } finally {
      dirs.forEach(removeDir)
    }
  })

  it("two askers on one portal each get their own replies", async () => {
    const echo = Portal.define<string, string>("echo")
    const leftGot = Continuation.define<string, undefined, string>("left-got", (ctx, rep) => ctx.emit(`left ${rep}`))
    const rightGot = Continuation.define<string, undefined, string>("right-got", (ctx, rep) => ctx.emit(`right ${rep}`))
    const wf = Workflow.create("two", (wf) => {
      wf.source(Source.empty()).via(Portal.replier(echo, (ctx, s: string) => ctx.reply(`${s}!`)))
      wf.source(Source.array(["a", "b"], { name: "left-src" }))
        .via(Portal.asker<string, string>((ctx, s) => ctx.ask(echo, `L${s}`).then(leftGot, undefined), { continuations: [leftGot], name: "left" }))
        .sink(Sink.memory("left"))
      wf.source(Source.array(["c", "d", "e"], { name: "right-src" }))
        .keyBy((s) => s)
        .via(Portal.asker<string, string>((ctx, s) => ctx.ask(echo, `R${s}`).then(rightGot, undefined), { continuations: [rightGot], name: "right" }))
        .sink(Sink.memory("right"))
    })
    const r = await runApp(App.define({ name: "two-askers", workflows: [wf] }), { partitions: 2 })
    expect(failuresOf(r)).toEqual([])
    expect(r.outputs("left")).toEqual(["left La!", "left Lb!"])
    expect([...r.outputs<string>("right")].sort()).toEqual(["right Rc!", "right Rd!", "right Re!"])
  })

  it("a continuation not listed in `continuations` is a reported failure of that record, not a crash", async () => {
    const p = Portal.define<number, number>("p")
    const listed = Continuation.define<number, number, string>("listed", (ctx, v, n) => ctx.emit(`ok ${n}:${v}`))
    const unlisted = Continuation.define<number, number, string>("unlisted", (ctx, v, n) => ctx.emit(`never ${n}:${v}`))
    const wf = Workflow.create("w", (wf) => {
      wf.source(Source.empty()).via(Portal.replier(p, (ctx, n: number) => ctx.reply(n + 1)))
      wf.source(Source.array([1, 2, 3]))
        .via(
          Portal.asker<number, string>(
            (ctx, n) => {
              ctx.emit(`asking ${n}`)
              ctx.ask(p, n).then(n === 2 ? unlisted : listed, n)
            },
            { continuations: [listed], name: "asker" },
          ),
        )
        .sink(Sink.memory("out"))
    })
    const r = await runApp(App.define({ name: "unlisted", workflows: [wf] }))
    // Record 2 failed whole: its emit and its ask were discarded, so nothing replies to it either.
    expect(r.outputs("out")).toEqual(["asking 1", "asking 3", "ok 1:2", "ok 3:4"])
    expect(failuresOf(r)).toEqual([
      { task: "w/asker", record: "2", error: "continuation 'unlisted' must be listed in the 'continuations' option of task 'w/asker'" },
    ])
  })

  it("a continuation with the same name but another function is not accepted either", async () => {
    const p = Portal.define<number, number>("p")
    const a = Continuation.define<number, undefined, string>("same-name", (ctx) => ctx.emit("a"))
    const impostor = Continuation.define<number, undefined, string>("same-name", (ctx) => ctx.emit("impostor"))
    const wf = Workflow.create("w", (wf) => {
      wf.source(Source.empty()).via(Portal.replier(p, (ctx, n: number) => ctx.reply(n)))
      wf.source(Source.array([1]))
        .via(Portal.asker<number, string>((ctx, n) => ctx.ask(p, n).then(impostor, undefined), { continuations: [a], name: "asker" }))
        .sink(Sink.memory("out"))
    })
    const r = await runApp(App.define({ name: "impostor", workflows: [wf] }))
    expect(r.outputs("out")).toEqual([])
    expect(r.failureList.map((f) => f.error)).toEqual([expect.stringMatching(/continuation 'same-name' must be listed/)])
  })

  it("fire-and-forget: an ask without `then` still reaches the replier, and its reply is dropped quietly", async () => {
    const audit = Portal.define<string, number>("audit")
    const wf = Workflow.create("w", (wf) => {
      wf.source(Source.empty())
        .via(
          Portal.replier<string, number, never, string, number>(audit, (ctx, entry) => {
            const n = ctx.state.get(0) + 1
            ctx.state.set(n)
            ctx.emit(`audit ${n}: ${entry}`)
            ctx.reply(n)
          }),
        )
        .sink(Sink.memory("audit-log"))
      wf.source(Source.array(["x", "y", "z"]))
        .via(
          Portal.asker<string, string>((ctx, s) => {
            ctx.ask(audit, s)
            ctx.emit(s.toUpperCase())
          }),
        )
        .sink(Sink.memory("out"))
    })
    const r = await runApp(App.define({ name: "fire-and-forget", workflows: [wf] }), { partitions: 2 })
    expect(failuresOf(r)).toEqual([])
    expect(r.outputs("out")).toEqual(["X", "Y", "Z"])
    expect(r.outputs("audit-log")).toEqual(["audit 1: x", "audit 2: y", "audit 3: z"])
  })

  it("a replier may serve records of its own stream as well as requests", async () => {
    const counter = Portal.define<"get", number>("counter")
    const got = Continuation.define<number, undefined, string>("got", (ctx, v) => ctx.emit(`count is ${v}`))
    const wf = Workflow.create("w", (wf) => {
      wf.source(Source.atoms([["inc", "inc"], ["inc"]], { name: "incs" })).via(
        Portal.replier<"get", number, string, never, number>(counter, (ctx) => ctx.reply(ctx.state.get(0)), {
          onRecord: (ctx) => ctx.state.set(ctx.state.get(0) + 1),
        }),
      )
      wf.source(Source.atoms([[], [], ["get"]], { name: "gets" }))
        .via(Portal.asker<string, string>((ctx) => ctx.ask(counter, "get").then(got, undefined), { continuations: [got] }))
        .sink(Sink.memory("out"))
    })
    const r = await runApp(App.define({ name: "replier-records", workflows: [wf] }), { epochAtoms: 1 })
    expect(failuresOf(r)).toEqual([])
    expect(r.outputs("out")).toEqual(["count is 3"])
  })

  it("ctx.reply outside a request, or twice, is a reported failure", async () => {
    const p = Portal.define<number, number>("p")
    const wf = Workflow.create("w", (wf) => {
      wf.source(Source.array([1], { name: "recs" })).via(
        Portal.replier(
          p,
          (ctx, n: number) => {
            ctx.reply(n)
            ctx.reply(n)
          },
          { onRecord: (ctx) => (ctx as unknown as { reply(v: number): void }).reply(0), name: "server" },
        ),
      )
      wf.source(Source.array([5], { name: "asks" })).via(Portal.asker<number, never>((ctx, n) => void ctx.ask(p, n)))
    })
    const r = await runApp(App.define({ name: "bad-replies", workflows: [wf] }))
    expect(r.failureList.map((f) => [f.task, f.error])).toEqual(
      expect.arrayContaining([
        ["w/server", "task 'w/server' called reply() with no request being served"],
        ["w/server", expect.stringMatching(/^task 'w\/server' replied twice to request /)],
      ]),
    )
    expect(r.failureList).toHaveLength(2)
  })

  it("asking a portal that has no replier is a reported failure", async () => {
    const nobody = Portal.define<number, number>("nobody")
    const wf = Workflow.from(Source.array([1]))
      .via(Portal.asker<number, number>((ctx, n) => void ctx.ask(nobody, n), { name: "asker" }))
      .sink(Sink.memory("out"))
    const r = await runApp(App.define({ name: "no-replier", workflows: [wf] }))
    expect(failuresOf(r)).toEqual([{ task: "main/asker", record: "1", error: "portal 'nobody' has no replier in app 'no-replier'" }])
  })

  it("a portal with two repliers is a typed configuration error", async () => {
    const p = Portal.define<number, number>("twice")
    const wf = Workflow.create("w", (wf) => {
      wf.source(Source.empty()).via(Portal.replier(p, (ctx, n: number) => ctx.reply(n), { name: "one" }))
      wf.source(Source.empty()).via(Portal.replier(p, (ctx, n: number) => ctx.reply(n), { name: "two" }))
    })
    const run = runApp(App.define({ name: "two-repliers", workflows: [wf] }))
    await expect(run).rejects.toBeInstanceOf(ConfigError)
    await expect(run).rejects.toThrow("portal 'twice' has two repliers; it must have exactly one")
  })
})

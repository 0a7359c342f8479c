/**
 * The Transport port contract, run against every implementation (in-process, NATS).
 *
 * `makeNetwork()` returns a fresh network (nothing sent in one test reaches another); `node(endpoints)` starts a
 * "process" hosting those endpoints, and every node of a network reaches every other. An in-process transport
 * hosts every endpoint in its one queue: it says so with `sharesEndpoints`, and the checks that a node receives
 * only its own endpoints' envelopes are then made on the envelopes' `to` alone.
 */
import { Duration, Effect, Fiber, Option, type Scope } from "effect"
import { describe, expect, it } from "vitest"
import { DATA, type Msg, type RoundData } from "../../runtime/engine/protocol.ts"
import { COORDINATOR, type Envelope, type TransportService } from "../../runtime/ports/Transport.ts"

export interface TransportNetwork {
  readonly node: (endpoints: ReadonlyArray<number>) => Effect.Effect<TransportService, unknown, Scope.Scope>
  readonly sharesEndpoints: boolean
}

type Delivery = { readonly to: number; readonly env: Envelope }

const run = <A>(program: Effect.Effect<A, unknown, Scope.Scope>): Promise<A> => Effect.runPromise(Effect.scoped(program))

const receiveN = (t: TransportService, n: number): Effect.Effect<Array<Delivery>, unknown> =>
  Effect.gen(function* () {
    const out: Array<Delivery> = []
    while (out.length < n) out.push(yield* t.receive)
    return out
  }).pipe(Effect.timeoutFail({ duration: Duration.seconds(30), onTimeout: () => new Error(`received fewer than ${n} envelopes in 30 s`) }))

/** Nothing more arrives within `ms`. */
const quiet = (t: TransportService, ms: number): Effect.Effect<boolean, unknown> =>
  Effect.map(Effect.timeout(Effect.option(t.receive), Duration.millis(ms)), () => false).pipe(
    Effect.catchTag("TimeoutException", () => Effect.succeed(true)),
  )

const msg = (seq: number, v: unknown): Msg => ({ k: DATA, node: 3, kg: 17, key: ["user", 42n], ks: "canonical", v, skg: 5, seq })

const data = (from: number, round: number, msgs: ReadonlyArray<Msg> = []): RoundData => ({ t: "data", g: 1, e: 7, round, from, msgs })

export const transportContract = (name: string, makeNetwork: () => Effect.Effect<TransportNetwork, unknown, Scope.Scope>): void => {
  describe(`Transport contract: ${name}`, () => {
    it("round-trips every envelope kind, with Map, Set, Date, BigInt, undefined and nested values in Msg.v", async () => {
      const rich = {
        map: new Map<unknown, unknown>([["a", 1n], [2, { nested: new Map([["deep", new Date(86_400_000)]]) }]]),
        set: new Set(["x", 3, 4n]),
        date: new Date("2026-11-22T10:00:00.123Z"),
        big: 2n ** 70n + 1n,
        negative: -(2n ** 65n),
        missing: undefined,
        list: [1, undefined, null, "s", [new Map([[1n, new Set([new Date(0)])]])]],
        bytes: new Uint8Array([0, 1, 254, 255]),
        text: "ünïcødé ✓",
        nan: Number.NaN,
        negZero: -0,
      }
      const sent: Array<Delivery> = [
        { to: 0, env: { t: "open", g: 3, e: 11, time: 1_790_000_000_000, budget: 64, roundLimit: 100 } },
        {
          to: 0,
          env: data(1, 2, [
            msg(0, rich),
            { ...msg(1, "plain"), reply: { node: 2, kg: 9, key: undefined, ks: undefined, id: "ask-1" } },
            msg(2, undefined),
          ]),
        },
        { to: 0, env: { t: "done", g: 3, e: 11, round: 2, from: 1, counts: [3, 0, 5], pending: true } },
        { to: 0, env: { t: "committed", g: 3, e: 11 } },
        {
          to: COORDINATOR,
          env: { t: "vote", g: 3, e: 11, from: 0, position: { part: 2, offset: 123_456 }, checksum: 0xdeadbeef, inTransit: 4, exhausted: false, failures: 1, records: 99 },
        },
      ]
      const got = await run(
        Effect.gen(function* () {
          const net = yield* makeNetwork()
          const node = yield* net.node([0, COORDINATOR])
          for (const d of sent) yield* node.send(d.to, d.env)
          return yield* receiveN(node, sent.length)
        }),
      )
      expect(got).toEqual(sent)
      const v = ((got[1]?.env as RoundData).msgs[0] as Msg).v as typeof rich
      expect(v.map).toBeInstanceOf(Map)
      expect(v.date).toBeInstanceOf(Date)
      expect(typeof v.big).toBe("bigint")
      expect(Object.is(v.negZero, -0)).toBe(true)
      expect("missing" in v).toBe(true)
    })

    it("delivers in order per sender and receiver, with senders running concurrently", async () => {
      const perTarget = 1_000
      const got = await run(
        Effect.gen(function* () {
          const net = yield* makeNetwork()
          const receiver = yield* net.node([0, 1])
          const senders = [yield* net.node([2]), yield* net.node([3])]
          const sendAll = (t: TransportService, from: number) =>
            Effect.gen(function* () {
              for (let i = 0; i < perTarget; i++) {
                yield* t.send(0, data(from, i, [msg(i, { from, to: 0 })]))
                yield* t.send(1, data(from, i, [msg(i, { from, to: 1 })]))
                if (i % 100 === 0) yield* Effect.yieldNow()
              }
            })
          const receiving = yield* Effect.fork(receiveN(receiver, 4 * perTarget))
          yield* Effect.all([sendAll(senders[0] as TransportService, 2), sendAll(senders[1] as TransportService, 3)], { concurrency: 2 })
          return yield* Fiber.join(receiving)
        }),
      )
      const seen = new Map<string, Array<number>>()
      for (const { to, env } of got) {
        const d = env as RoundData
        expect((d.msgs[0]?.v as { to: number }).to).toBe(to)
        const k = `${d.from}->${to}`
        seen.set(k, [...(seen.get(k) ?? []), d.round])
      }
      const expected = Array.from({ length: perTarget }, (_, i) => i)
      expect([...seen.keys()].sort()).toEqual(["2->0", "2->1", "3->0", "3->1"])
      for (const rounds of seen.values()) expect(rounds).toEqual(expected)
    })

    it("delivers each envelope to the process hosting its endpoint, and only there", async () => {
      const layout: ReadonlyArray<ReadonlyArray<number>> = [[0, COORDINATOR], [1], [2]]
      const targets = layout.flat()
      const got = await run(
        Effect.gen(function* () {
          const net = yield* makeNetwork()
          const nodes: Array<TransportService> = []
          for (const endpoints of layout) nodes.push(yield* net.node(endpoints))
          // Every node sends one envelope to every endpoint, marked with sender and target.
          for (let s = 0; s < nodes.length; s++) {
            for (const to of targets) yield* (nodes[s] as TransportService).send(to, { t: "committed", g: s, e: to })
          }
          if (net.sharesEndpoints) return [yield* receiveN(nodes[0] as TransportService, layout.length * targets.length)]
          const perNode: Array<Array<Delivery>> = []
          for (let i = 0; i < nodes.length; i++) {
            const node = nodes[i] as TransportService
            perNode.push(yield* receiveN(node, layout.length * (layout[i] as ReadonlyArray<number>).length))
            expect(yield* quiet(node, 200)).toBe(true)
          }
          return perNode
        }),
      )
      for (let i = 0; i < got.length; i++) {
        const hosted = hostedBy(layout, got.length === 1 ? undefined : i)
        for (const { to, env } of got[i] as Array<Delivery>) {
          expect(hosted).toContain(to)
          expect(env).toMatchObject({ t: "committed", e: to })
        }
        const pairs = (got[i] as Array<Delivery>).map(({ to, env }) => `${(env as { g: number }).g}->${to}`).sort()
        const want = hosted.flatMap((to) => layout.map((_, s) => `${s}->${to}`)).sort()
        expect(pairs).toEqual(want)
      }
    })

    it("makes receive wait until something is sent", async () => {
      const result = await run(
        Effect.gen(function* () {
          const net = yield* makeNetwork()
          const receiver = yield* net.node([5])
          const sender = yield* net.node([6])
          const waiting = yield* Effect.fork(receiver.receive)
          yield* Effect.sleep(Duration.millis(100))
          const early = yield* Fiber.poll(waiting)
          yield* sender.send(5, { t: "committed", g: 1, e: 1 })
          return { early, delivered: yield* Fiber.join(waiting) }
        }),
      )
      expect(Option.isNone(result.early)).toBe(true)
      expect(result.delivered).toEqual({ to: 5, env: { t: "committed", g: 1, e: 1 } })
    })

    it("receiveWithin: takes what is queued at once, waits for what comes in time, gives up after the deadline, and loses nothing", async () => {
      const result = await run(
        Effect.gen(function* () {
          const net = yield* makeNetwork()
          const receiver = yield* net.node([5])
          const sender = yield* net.node([6])
          // Nothing queued: undefined after about the deadline.
          const t0 = Date.now()
          const none = yield* receiver.receiveWithin(150)
          const waited = Date.now() - t0
          // Sent during the wait: delivered before the deadline.
          const waiting = yield* Effect.fork(receiver.receiveWithin(10_000))
          yield* Effect.sleep(Duration.millis(50))
          const t1 = Date.now()
          yield* sender.send(5, { t: "committed", g: 1, e: 1 })
          const inTime = yield* Fiber.join(waiting)
          const latency = Date.now() - t1
          // A wait that is interrupted leaves nothing behind: later envelopes still arrive, in order, to later receives.
          const abandoned = yield* Effect.fork(receiver.receiveWithin(10_000))
          yield* Effect.sleep(Duration.millis(20))
          yield* Fiber.interrupt(abandoned)
          for (let e = 2; e <= 4; e++) yield* sender.send(5, { t: "committed", g: 1, e })
          yield* Effect.sleep(Duration.millis(200))
          const queued: Array<Delivery | undefined> = []
          for (let i = 0; i < 3; i++) queued.push(yield* receiver.receiveWithin(0))
          const after = yield* receiver.receiveWithin(0)
          return { none, waited, inTime, latency, queued, after }
        }),
      )
      expect(result.none).toBeUndefined()
      expect(result.waited).toBeGreaterThanOrEqual(140)
      expect(result.inTime).toEqual({ to: 5, env: { t: "committed", g: 1, e: 1 } })
      expect(result.latency).toBeLessThan(5_000)
      expect(result.queued.map((d) => (d?.env as { e: number } | undefined)?.e)).toEqual([2, 3, 4])
      expect(result.after).toBeUndefined()
    })

    it("delivers a multi-megabyte envelope whole, in order between small ones", async () => {
      const big = Array.from({ length: 3_000 }, (_, i) => msg(i, { i, pad: "x".repeat(1_000), when: new Date(i) }))
      const got = await run(
        Effect.gen(function* () {
          const net = yield* makeNetwork()
          const receiver = yield* net.node([0])
          const sender = yield* net.node([1])
          yield* sender.send(0, data(1, 0))
          yield* sender.send(0, data(1, 1, big))
          yield* sender.send(0, data(1, 2))
          return yield* receiveN(receiver, 3)
        }),
      )
      expect(got.map((d) => (d.env as RoundData).round)).toEqual([0, 1, 2])
      expect((got[1]?.env as RoundData).msgs).toEqual(big)
    })
  })
}

/** The endpoints node `i` receives: all of them when every node shares one queue. */
const hostedBy = (layout: ReadonlyArray<ReadonlyArray<number>>, i: number | undefined): ReadonlyArray<number> =>
  i === undefined ? layout.flat() : (layout[i] as ReadonlyArray<number>)

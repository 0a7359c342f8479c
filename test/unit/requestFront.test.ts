import { describe, expect, it } from "vitest"
import { counterApp } from "../../examples/counter/app.ts"
import { compile } from "../../runtime/engine/Plan.ts"
import { FrontError, RequestFront, type FrontAnswer } from "../../runtime/front/RequestFront.ts"
import type { EndpointRequest } from "../../workflows/Endpoint.ts"

/** A front with no engine behind it: requests queue, answers come only from the test. */
const front = (timeoutMs?: number) => {
  const plan = compile(counterApp())
  const f = new RequestFront(plan, { hosts: () => true, ...(timeoutMs === undefined ? {} : { timeoutMs }) })
  const splits = plan.splits.flatMap((s, i) => (s.source.live === true ? [i] : []))
  const taken = (): EndpointRequest[] => splits.flatMap((i) => f.take(i, 1_000).map((atom) => atom[0] as EndpointRequest))
  return { f, taken }
}

const outcomes = () => {
  const got: Array<{ readonly i: number; readonly o: FrontAnswer | FrontError; readonly at: number }> = []
  const t0 = performance.now()
  return { got, settle: (i: number) => (o: FrontAnswer | FrontError) => got.push({ i, o, at: performance.now() - t0 }) }
}

describe("RequestFront", () => {
  it("times out each waiter at its own deadline, once, and never answers it afterwards", async () => {
    const { f, taken } = front(150)
    const { got, settle } = outcomes()
    f.submitWith({ target: "counter/a", message: { add: 1 }, ask: true }, settle(0))
    f.submitWith({ target: "counter/b", message: { add: 1 }, ask: true, timeoutMs: 40 }, settle(1))
    f.submitWith({ target: "counter/c", message: { add: 1 }, ask: true, timeoutMs: 80 }, settle(2))
    f.submitWith({ target: "counter/d", message: { add: 1 }, ask: true, timeoutMs: 40 }, settle(3))
    const reqs = taken()
    expect(reqs).toHaveLength(4)
    // d is answered before its deadline; the others time out in deadline order.
    f.answer(7, [{ id: "d", w: reqs.find((r) => r.to === "counter/d")!.w, r: 1 }])
    await new Promise((r) => setTimeout(r, 250))
    expect(got.map((g) => g.i)).toEqual([3, 1, 2, 0])
    expect(got[0]!.o).toEqual({ reply: 1, epoch: 7 })
    for (const g of got.slice(1)) expect(g.o).toBeInstanceOf(FrontError)
    expect(got.slice(1).map((g) => (g.o as FrontError).tag)).toEqual(["Timeout", "Timeout", "Timeout"])
    expect(got[1]!.at).toBeGreaterThanOrEqual(39)
    expect(got[2]!.at).toBeGreaterThanOrEqual(79)
    expect(got[3]!.at).toBeGreaterThanOrEqual(149)
    // A late answer finds no waiter.
    f.answer(8, reqs.map((r) => ({ id: r.id, w: r.w, r: 2 })))
    expect(got).toHaveLength(4)
  })

  it("answers many requests once each without holding their ids, and closes the rest", () => {
    const { f, taken } = front()
    const { got, settle } = outcomes()
    for (let round = 0; round < 50; round++) {
      for (let i = 0; i < 100; i++) f.submitWith({ target: `counter/k${i}`, message: { add: 1 }, ask: true }, settle(round * 100 + i))
      f.answer(round + 1, taken().map((r) => ({ id: r.id, w: r.w, r: round })))
    }
    expect(got).toHaveLength(5000)
    expect(got.some((g) => g.o instanceof FrontError)).toBe(false)
    expect(got.map((g) => g.i).sort((a, b) => a - b)).toEqual(Array.from({ length: 5000 }, (_, n) => n))
    // Answered ids left the deadline queues as they were answered.
    expect((f as unknown as { deadlines: Map<number, unknown> }).deadlines.size).toBe(0)
    f.submitWith({ target: "counter/z", message: { add: 1 }, ask: true }, settle(-1))
    f.close("stopped")
    expect(got.at(-1)!.o).toBeInstanceOf(FrontError)
    expect((got.at(-1)!.o as FrontError).tag).toBe("Unavailable")
  })

  it("refuses bad requests through the same callback, at once", () => {
    const { f } = front()
    const { got, settle } = outcomes()
    f.submitWith({ target: "nobody/a", message: {}, ask: true }, settle(0))
    f.submitWith({ target: "counter", message: {}, ask: true }, settle(1))
    expect(got.map((g) => (g.o as FrontError).tag)).toEqual(["UnknownActorType", "InvalidPayload"])
  })

  it("a callback that throws does not reach the engine", () => {
    const { f, taken } = front()
    f.submitWith({ target: "counter/a", message: { add: 1 }, ask: true }, () => {
      throw new Error("socket gone")
    })
    const [r] = taken()
    const err = console.error
    console.error = () => undefined
    try {
      expect(() => f.answer(1, [{ id: r!.id, w: r!.w, r: 1 }])).not.toThrow()
    } finally {
      console.error = err
    }
  })
})

// The client API against an embedded app: asks and tells answered after commit, typed errors, idempotency keys
// (a retried request runs once and gets the first answer), state queries and listings, in-process and over HTTP.
import { afterAll, describe, expect, it } from "vitest"
import { Busy, Client, InvalidPayload, Rejected, UnknownActorType, type EddyClient } from "../../client/index.ts"
import { Eddy, type RunningApp } from "../../runtime/index.ts"
import { counterApp } from "../../examples/counter/app.ts"
import { cartApp } from "../../bench/apps/cart.ts"
import { removeDir, tempDir } from "../helpers.ts"
import { canonicalKey, keyGroupOf } from "../../runtime/engine/keys.ts"

const dirs: string[] = []
const running: RunningApp[] = []
afterAll(async () => {
  await Promise.all(running.map((r) => r.stop()))
  dirs.forEach(removeDir)
})

/** The key group of counter actor `id` in the counter app (128 key groups). */
const groupOf = (id: string): number => keyGroupOf(canonicalKey(["counter", id]), 128)

const serve = (partitions = 1, dataDir?: string): RunningApp => {
  const r = Eddy.start(counterApp(), { partitions, serve: { port: 0 }, onFailure: () => undefined, ...(dataDir === undefined ? {} : { dataDir }) })
  running.push(r)
  return r
}

const suite = (name: string, make: () => Promise<{ client: EddyClient; app: RunningApp }>) =>
  describe(name, () => {
    it("asks answer after commit with the handler's reply; tells are processed once", async () => {
      const { client, app } = await make()
      const a = await client.ask<number>("counter/a", { add: 5 })
      expect(a.reply).toBe(5)
      expect(a.epoch).toBeGreaterThan(0)
      expect((await client.ask<number>({ type: "counter", id: "a" }, { add: 2 })).reply).toBe(7)
      const t = await client.tell("counter/b", { add: 3 })
      expect(t.epoch).toBeGreaterThan(0)
      // The tell is committed; it is processed in that epoch or a later one.
      for (let i = 0; i < 50 && (await client.state<number>("counter/b")) !== 3; i++) await new Promise((r) => setTimeout(r, 20))
      expect(await client.state("counter/b")).toBe(3)
      expect(await client.state("counter/a")).toBe(7)
      expect(await client.state("counter/nobody")).toBeUndefined()
      expect([...(await client.list("counter"))].sort()).toEqual(["a", "b"])
      expect(await app.query("counters/actors", ["counter", "a"])).toMatchObject({ s: 7 })
    })

    it("a retried request (same idempotency key) runs once and every caller gets the first answer", async () => {
      const { client } = await make()
      const first = await client.ask<number>("counter/idem", { add: 10 }, { idempotencyKey: "k1" })
      const again = await client.ask<number>("counter/idem", { add: 10 }, { idempotencyKey: "k1" })
      expect(again.reply).toBe(first.reply)
      // Concurrent duplicates: one execution, one answer for all.
      const answers = await Promise.all(Array.from({ length: 8 }, () => client.ask<number>("counter/idem", { add: 1 }, { idempotencyKey: "k2" })))
      expect(new Set(answers.map((a) => a.reply)).size).toBe(1)
      expect(answers[0]!.reply).toBe(11)
      expect(await client.state("counter/idem")).toBe(11)
      // A different key is a different request.
      expect((await client.ask<number>("counter/idem", { add: 1 }, { idempotencyKey: "k3" })).reply).toBe(12)
    })

    it("errors are typed: unknown actor type, invalid payload, and a handler that throws (nothing it did survives)", async () => {
      const { client, app } = await make()
      await client.ask("counter/e", { add: 1 })
      await expect(client.ask("nosuch/x", { add: 1 })).rejects.toBeInstanceOf(UnknownActorType)
      await expect(client.ask("nosuch/x", { add: 1 })).rejects.toThrow(/no actor type 'nosuch'.*counter/)
      await expect(client.ask("counter", { add: 1 })).rejects.toBeInstanceOf(InvalidPayload)
      const err = await client.ask("counter/e", { boom: "bad input 42" }).catch((e: unknown) => e)
      expect(err).toBeInstanceOf(Rejected)
      expect((err as Error).message).toBe("bad input 42")
      expect(await client.state("counter/e")).toBe(1)
      expect(app.outputs("counters.output")).toEqual([])
      // The rejection is the stored answer of its key too.
      await expect(client.ask("counter/e", { boom: "bad input 42" }, { idempotencyKey: "boom" })).rejects.toBeInstanceOf(Rejected)
      await expect(client.ask("counter/e", { add: 100 }, { idempotencyKey: "boom" })).rejects.toThrow("bad input 42")
      expect(await client.state("counter/e")).toBe(1)
      // The app goes on.
      expect((await client.ask<number>("counter/e", { add: 1 })).reply).toBe(2)
    })
  })

describe("answers that come later, from a continuation", () => {
  it("an ask the handler answers after asking another actor: one execution, every caller of its key the same answer", async () => {
    // The cart reserves stock by asking the item's stock actor and replies from the continuation that hears back.
    const app = Eddy.start(cartApp(2), { partitions: 2, serve: { port: 0 }, onFailure: () => undefined })
    running.push(app)
    const client = Client.http(await app.url!)
    // Concurrent duplicates of one key (one batch: the later ones find the entry pending and wait on it).
    const adds = await Promise.all(Array.from({ length: 5 }, () => client.ask<{ ok: boolean }>("cart/u1", { op: "add", item: "i1" }, { idempotencyKey: "add-1" })))
    expect(adds.map((a) => a.reply)).toEqual(Array.from({ length: 5 }, () => ({ ok: true })))
    expect(new Set(adds.map((a) => a.epoch)).size).toBe(1)
    expect(await client.state("stock/i1")).toBe(1)
    expect((await client.ask<{ ok: boolean }>("cart/u2", { op: "add", item: "i1" })).reply).toEqual({ ok: true })
    expect((await client.ask<{ ok: boolean }>("cart/u3", { op: "add", item: "i1" })).reply).toEqual({ ok: false })
    // A retry after the answer gets the stored one and reserves nothing.
    expect((await client.ask<{ ok: boolean }>("cart/u1", { op: "add", item: "i1" }, { idempotencyKey: "add-1" })).reply).toEqual({ ok: true })
    expect(await client.state("stock/i1")).toBe(0)
    expect(await client.state("cart/u1")).toEqual({ i1: 1 })
    // The same key for another target is another request (keys are scoped to their target, as in Restate).
    expect((await client.ask<{ ok: boolean }>("cart/u4", { op: "remove", item: "i1" }, { idempotencyKey: "add-1" })).reply).toEqual({ ok: false })
  })
})

suite("in-process client", async () => {
  const app = serve()
  return { app, client: app.client }
})

suite("HTTP client, 3 partitions", async () => {
  const app = serve(3)
  return { app, client: Client.http(await app.url!) }
})

suite("HTTP client without batching", async () => {
  const app = serve(2)
  return { app, client: Client.http(await app.url!, { batching: false }) }
})

describe("HTTP endpoint", () => {
  it("rich values (Date, Map, BigInt) make the round trip with the client", async () => {
    const app = serve()
    const client = Client.http(await app.url!)
    const value = { when: new Date(1_700_000_000_000), tags: new Map([["a", 1n]]), nothing: undefined }
    const a = await client.ask("counter/echo", { echo: value })
    expect(a.reply).toEqual(value)
    await client.close()
  })

  it("plain JSON works from any HTTP client; malformed bodies get 400 with a typed error and change nothing", async () => {
    const app = serve()
    const url = await app.url!
    const post = (path: string, body: string) => fetch(`${url}${path}`, { method: "POST", headers: { "content-type": "application/json" }, body })
    const ok = await post("/v1/ask", JSON.stringify({ target: "counter/j", message: { add: 4 }, key: "j1" }))
    expect(ok.status).toBe(200)
    expect(await ok.json()).toMatchObject({ reply: 4 })
    const bad = await post("/v1/ask", "{not json")
    expect(bad.status).toBe(400)
    expect(await bad.json()).toMatchObject({ error: { tag: "InvalidPayload" } })
    const proto = await post("/v1/ask", '{"target":"counter/j","message":{"__proto__":{"polluted":1}}}')
    expect(proto.status).toBe(400)
    expect(({} as { polluted?: number }).polluted).toBeUndefined()
    const unknown = await post("/v1/ask", JSON.stringify({ target: "ghost/1", message: {} }))
    expect(unknown.status).toBe(404)
    expect(await unknown.json()).toMatchObject({ error: { tag: "UnknownActorType" } })
    // A batch: each request answered on its own, in order, errors included.
    const batch = await post(
      "/v1/batch",
      JSON.stringify({ requests: [{ target: "counter/j", message: { add: 1 }, key: "j2" }, { target: "ghost/2", message: {} }, { target: "counter/j", message: { add: 1 }, key: "j2" }, { target: "counter/q", message: { add: 7 }, tell: true }] }),
    )
    expect(batch.status).toBe(200)
    const answers = ((await batch.json()) as { answers: Array<{ reply?: unknown; epoch?: number; error?: { tag: string } }> }).answers
    expect(answers.map((a) => a.reply ?? a.error?.tag ?? "told")).toEqual([5, "UnknownActorType", 5, "told"])
    const state = await fetch(`${url}/v1/state/counter/j`)
    expect(await state.json()).toMatchObject({ state: 5 })
    expect(await (await fetch(`${url}/v1/info`)).json()).toMatchObject({ app: "counters", types: ["counter"] })
  })

  it("an answer is kept for the retention window; a retry after it runs the request again", async () => {
    const app = Eddy.start(counterApp({ requestRetentionMs: 300 }), { serve: { port: 0 }, onFailure: () => undefined })
    running.push(app)
    const client = app.client
    expect((await client.ask("counter/r", { add: 1 }, { idempotencyKey: "kept" })).reply).toBe(1)
    expect((await client.ask("counter/r", { add: 1 }, { idempotencyKey: "kept" })).reply).toBe(1)
    // The entry is the target actor's, under the request's key.
    expect(await app.keys("counters/actors#entries")).toEqual([[["counter", "r"], "kept"]])
    // Idle epochs come at least every 500 ms; the entry goes at the first one past its time.
    for (let i = 0; i < 40 && (await app.keys("counters/actors#entries")).length > 0; i++) await new Promise((r) => setTimeout(r, 100))
    expect(await app.keys("counters/actors#entries")).toEqual([])
    expect((await client.ask("counter/r", { add: 1 }, { idempotencyKey: "kept" })).reply).toBe(2)
  })

  it("a call the client library numbered (or a key it made up) is kept only while its retries can come; a caller's key for the retention window", async () => {
    const app = Eddy.start(counterApp(), { serve: { port: 0 }, onFailure: () => undefined })
    running.push(app)
    const client = Client.http(await app.url!, { batching: false })
    try {
      // No idempotency key: Client.http numbers the call in its session, kept for its retries within 300 ms.
      expect((await client.ask("counter/a1", { add: 1 }, { timeoutMs: 300 })).reply).toBe(1)
      // The older wire form of the same: a key the client made up, marked auto.
      const legacy = await fetch(`${await app.url!}/v1/ask`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ target: "counter/a4", message: { add: 1 }, key: "legacy", auto: true, timeoutMs: 300 }) })
      expect(((await legacy.json()) as { reply: number }).reply).toBe(1)
      expect((await client.ask("counter/a2", { add: 1 }, { idempotencyKey: "mine", timeoutMs: 300 })).reply).toBe(1)
      // The in-process client without a key: nobody can retry, nothing is kept beyond the next epoch.
      expect((await app.client.ask("counter/a3", { add: 1 })).reply).toBe(1)
      const entries = async () => [...(await app.keys("counters/actors#entries")), ...(await app.keys("counters/actors#group-entries"))].map((k) => (k as ReadonlyArray<string>)[1])
      expect(await entries()).toEqual(expect.arrayContaining(["mine", "legacy", expect.stringMatching(/^~/)]))
      // 2 × 300 ms + 1 s after their answers the session's and the made-up key's entries are gone (idle epochs come
      // every 500 ms at least).
      for (let i = 0; i < 60 && (await entries()).length > 1; i++) await new Promise((r) => setTimeout(r, 100))
      expect(await entries()).toEqual(["mine"])
      // The caller's key still answers a retry from the stored answer, without running it again.
      expect((await client.ask("counter/a2", { add: 1 }, { idempotencyKey: "mine", timeoutMs: 300 })).reply).toBe(1)
      expect((await client.ask("counter/a2", { get: true })).reply).toBe(1)
    } finally {
      await client.close()
    }
  })

  it("a call of a client session (no key of its own) runs once when retried, also across a restart; an acknowledged one is refused", async () => {
    const dir = tempDir("session")
    dirs.push(dir)
    const post = async (url: string, body: object) => {
      const res = await fetch(`${url}/v1/ask`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ target: "counter/s1", ...body }) })
      return { status: res.status, body: (await res.json()) as { reply?: unknown; error?: { tag: string; message: string } } }
    }
    const first = serve(1, dir)
    const url1 = await first.url!
    expect((await post(url1, { message: { add: 5 }, session: "sess-a", seq: 0, ack: 0 })).body.reply).toBe(5)
    // The same call again (a retry): the first answer, not a second execution.
    expect((await post(url1, { message: { add: 5 }, session: "sess-a", seq: 0, ack: 0 })).body.reply).toBe(5)
    // Another session's call 0 is another call.
    expect((await post(url1, { message: { add: 1 }, session: "sess-b", seq: 0, ack: 0 })).body.reply).toBe(6)
    expect((await post(url1, { message: { add: 2 }, session: "sess-a", seq: 1, ack: 0 })).body.reply).toBe(8)
    await first.stop()
    // After a restart the entry is recovered with the state: retries of both calls get their first answers.
    const second = serve(1, dir)
    const url2 = await second.url!
    expect((await post(url2, { message: { add: 5 }, session: "sess-a", seq: 0, ack: 0 })).body.reply).toBe(5)
    expect((await post(url2, { message: { add: 2 }, session: "sess-a", seq: 1, ack: 1 })).body.reply).toBe(8)
    expect(await second.client.state("counter/s1")).toBe(8)
    // Call 2 acknowledges 0 and 1: their answers go, and a late copy of call 0 is refused, not run.
    expect((await post(url2, { message: { add: 1 }, session: "sess-a", seq: 2, ack: 2 })).body.reply).toBe(9)
    const late = await post(url2, { message: { add: 5 }, session: "sess-a", seq: 0, ack: 0 })
    expect(late.status).toBe(409)
    expect(late.body.error).toMatchObject({ tag: "Rejected", message: expect.stringMatching(/acknowledged/) })
    expect(await second.client.state("counter/s1")).toBe(9)
    // One entry per session and key group (the actor's), holding only the calls not acknowledged.
    const group = groupOf("s1")
    const keys = await second.keys("counters/actors#group-entries")
    expect(keys).toEqual(expect.arrayContaining([[group, "~sess-a"], [group, "~sess-b"]]))
    expect(keys).toHaveLength(2)
    expect(await second.keys("counters/actors#entries")).toEqual([])
    // [3, floor, expiresAt, then (number, status, reply) per call]
    const entry = (await second.query("counters/actors#group-entries", [group, "~sess-a"])) as ReadonlyArray<unknown>
    expect(entry[1]).toBe(2)
    expect(entry.slice(3)).toEqual([2, 1, 9])
    // Malformed session fields are refused before anything runs.
    for (const bad of [{ session: "sess-a", seq: -1, ack: 0 }, { session: "sess-a", seq: 3, ack: 4 }, { session: "", seq: 3, ack: 0 }, { session: "sess-a", seq: 3, ack: 0, key: "k" }, { session: "sess-a", seq: 1.5, ack: 0 }]) {
      const r = await post(url2, { message: { add: 100 }, ...bad })
      expect(r.status).toBe(400)
      expect(r.body.error?.tag).toBe("BadRequest")
    }
    expect(await second.client.state("counter/s1")).toBe(9)
  })

  it("a client's calls without keys leave one small entry per key group, however many calls and actors", async () => {
    const app = serve(2)
    const client = Client.http(await app.url!)
    try {
      // 20 waves of 50 concurrent calls (one batch each) over 500 actors, then one call to an actor of each of their
      // groups, one after the other.
      const actors = Array.from({ length: 500 }, (_, i) => `many-${i}`)
      for (let wave = 0; wave < 20; wave++) await Promise.all(Array.from({ length: 50 }, (_, i) => client.ask(`counter/${actors[(wave * 25 + i) % 500]}`, { add: 1 })))
      const byGroup = new Map<number, string>()
      for (const a of actors) if (!byGroup.has(groupOf(a))) byGroup.set(groupOf(a), a)
      expect(byGroup.size).toBeGreaterThan(100)
      const last = new Map<number, number>()
      for (const [group, a] of byGroup) last.set(group, (await client.ask<number>(`counter/${a}`, { add: 1 })).reply)
      const keys = (await app.keys("counters/actors#group-entries")) as ReadonlyArray<readonly [number, string]>
      expect(keys.map(([group]) => group).sort((a, b) => a - b)).toEqual([...byGroup.keys()].sort((a, b) => a - b))
      expect(await app.keys("counters/actors#entries")).toEqual([])
      for (const [group, sub] of keys) {
        expect(sub).toMatch(/^~/)
        // The group's last call acknowledged every call before it: only itself is left.
        const entry = (await app.query("counters/actors#group-entries", [group, sub])) as ReadonlyArray<unknown>
        expect(entry.slice(3)).toEqual([entry[1], 1, last.get(group)])
      }
      let total = 0
      for (const a of actors) total += ((await client.state<number>(`counter/${a}`)) ?? 0) as number
      expect(total).toBe(20 * 50 + byGroup.size)
    } finally {
      await client.close()
    }
  })

  it("admission control: beyond maxQueuedRequests waiting for an epoch, requests get Busy and run nowhere", async () => {
    const app = Eddy.start(counterApp(), { serve: { port: 0 }, maxQueuedRequests: 2, onFailure: () => undefined })
    running.push(app)
    // Submitted in one go, before any epoch takes them: two queue, the rest are refused at once.
    const results = await Promise.allSettled(Array.from({ length: 5 }, (_, i) => app.client.ask<number>("counter/busy", { add: 1 }, { idempotencyKey: `b${i}` })))
    expect(results.filter((r) => r.status === "fulfilled")).toHaveLength(2)
    const refused = results.filter((r): r is PromiseRejectedResult => r.status === "rejected")
    expect(refused).toHaveLength(3)
    for (const r of refused) expect(r.reason).toBeInstanceOf(Busy)
    expect(await app.client.state("counter/busy")).toBe(2)
  })

  it("a stopped app answers Unavailable; the client does not hang", async () => {
    const app = serve()
    const client = Client.http(await app.url!, { timeoutMs: 1500 })
    await client.ask("counter/s", { add: 1 })
    await app.stop()
    await expect(client.ask("counter/s", { add: 1 })).rejects.toThrow(/cannot reach|stopped/)
  })
})

describe("in-process client on a memory log", () => {
  it("callers that never wait for anything but their answers do not starve the event loop (timers and the HTTP endpoint)", async () => {
    const app = serve()
    const url = await app.url!
    const perLoop = 1_500
    let calls = 0
    // Closed loops with no I/O of their own (every await is an answer, every answer a commit of a memory log),
    // bounded: starved, the timer and the HTTP request below would only come round once they are all done.
    const loops = Array.from({ length: 4 }, async (_, i) => {
      for (let n = 0; n < perLoop; n++) {
        await app.client.ask(`counter/busy-${i}`, { add: 1 })
        calls++
      }
    })
    const atTimer = new Promise<number>((r) => setTimeout(() => r(calls), 20))
    const atHttp = Client.http(url, { timeoutMs: 10_000 })
      .ask<number>("counter/busy-http", { add: 1 })
      .then((a) => ({ reply: a.reply, calls }))
    await Promise.all(loops)
    expect(calls).toBe(4 * perLoop)
    expect(await atTimer).toBeLessThan(calls)
    const http = await atHttp
    expect(http.reply).toBe(1)
    expect(http.calls).toBeLessThan(calls)
  }, 30_000)
})

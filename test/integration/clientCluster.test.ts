// The client API against a cluster (3 workers, NATS request/reply, Kafka log): requests retried with the same
// idempotency key across worker SIGKILLs run exactly once — the counters' state and the chain of answers prove it —
// and every caller of a key gets the same answer, also when it asks again after the crashes.
import type { ChildProcess } from "node:child_process"
import { afterAll, describe, expect, it } from "vitest"
import { Client, UnknownActorType, type EddyClient } from "../../client/index.ts"
import { supervise } from "../../runtime/cluster/supervisor.ts"
import { removeDir, seeded, tempDir } from "../helpers.ts"

const dirs: string[] = []
afterAll(() => dirs.forEach(removeDir))

describe("client over NATS against a cluster", () => {
  it("retried requests run once across worker SIGKILLs; every caller of a key gets the same answer", async () => {
    const ns = `client-${Date.now().toString(36)}${Math.floor(Math.random() * 1e6).toString(36)}`
    const dir = tempDir("client-cluster")
    dirs.push(dir)
    const seed = Number(process.env["EDDY_SEED"] ?? Date.now() % 100000)
    const random = seeded(seed)
    const live = new Map<string, ChildProcess>()
    const stopping = new AbortController()
    const cluster = supervise({
      appSpec: "examples/counter",
      partitions: 3,
      namespace: ns,
      dataDir: dir,
      flags: ["--serve", "--liveness-ms", "4000"],
      maxRestarts: 30,
      log: () => undefined,
      onStart: (name, child) => live.set(name, child),
      onLine: () => undefined,
      signal: stopping.signal,
    })
    const client: EddyClient = await Client.nats({ namespace: ns, timeoutMs: 90_000, attemptMs: 3_000 })
    try {
      // Requests: distinct adds to 12 counters, each with its own key, 16 in flight.
      const N = 240
      // At least N requests, and requests keep coming until 4 workers were killed (however fast the cluster answers).
      const requests: Array<{ key: string; to: string; add: number }> = []
      const answers = new Map<string, number>()
      let kills = 0
      let next = 0
      const more = () => (next < N || kills < 4) && next < 20_000
      const killer = (async () => {
        // SIGKILL a random worker every so often while requests are in flight.
        while (kills < 4 && next < 20_000) {
          await new Promise((r) => setTimeout(r, 1500 + Math.floor(random() * 1500)))
          const workers = [...live.entries()].filter(([name, c]) => name.startsWith("worker") && c.exitCode === null && c.signalCode === null)
          const victim = workers[Math.floor(random() * workers.length)]
          if (victim !== undefined && victim[1].kill("SIGKILL")) kills++
        }
      })()
      await Promise.all(
        Array.from({ length: 16 }, async () => {
          while (more()) {
            const i = next++
            const r = { key: `req-${i}`, to: `counter/c${i % 12}`, add: i + 1 }
            requests.push(r)
            const [a, b] = await Promise.all([
              client.ask<number>(r.to, { add: r.add }, { idempotencyKey: r.key }),
              // A duplicate caller of the same request, racing the first.
              r.add % 5 === 0 ? client.ask<number>(r.to, { add: r.add }, { idempotencyKey: r.key }) : undefined,
            ])
            if (b !== undefined) expect(b.reply, `the two callers of ${r.key}`).toBe(a.reply)
            answers.set(r.key, a.reply)
          }
        }),
      )
      await killer
      console.log(`client cluster test (seed ${seed}): ${requests.length} requests, ${kills} worker SIGKILLs`)
      expect(kills).toBeGreaterThanOrEqual(4)
      // Exactly once: per counter, the answers sorted are the running sums of its adds, and its state is the total.
      for (let c = 0; c < 12; c++) {
        const mine = requests.filter((r) => r.to === `counter/c${c}`).map((r) => ({ add: r.add, reply: answers.get(r.key)! }))
        mine.sort((x, y) => x.reply - y.reply)
        let sum = 0
        for (const m of mine) {
          sum += m.add
          expect(m.reply, `counter c${c}: an answer that is not a running sum means an add ran twice or not at all`).toBe(sum)
        }
        expect(await client.state(`counter/c${c}`)).toBe(sum)
      }
      // Asking again after the crashes returns the stored answers and changes nothing.
      for (const r of requests.slice(0, 40)) expect((await client.ask<number>(r.to, { add: r.add }, { idempotencyKey: r.key })).reply).toBe(answers.get(r.key))
      expect(await client.state("counter/c0")).toBe(requests.filter((r) => r.to === "counter/c0").reduce((s, r) => s + r.add, 0))
      expect([...(await client.list("counter"))].sort()).toEqual(Array.from({ length: 12 }, (_, c) => `c${c}`).sort())
      // One batch (calls of one tick) answers each call on its own: an unknown type fails alone, a tell commits.
      const [ok, unknown, told] = await Promise.allSettled([
        client.ask<number>("counter/c1", { add: 0 }, { idempotencyKey: "batch-a" }),
        client.ask("nosuch/x", { add: 1 }),
        client.tell("counter/c1", { add: 0 }, { idempotencyKey: "batch-t" }),
      ])
      expect(ok.status === "fulfilled" && ok.value.reply).toBe(requests.filter((r) => r.to === "counter/c1").reduce((x, r) => x + r.add, 0))
      expect(unknown.status === "rejected" && unknown.reason).toBeInstanceOf(UnknownActorType)
      expect(told.status).toBe("fulfilled")
      // Without batching, the same answers (the stored ones for known keys).
      const single = await Client.nats({ namespace: ns, timeoutMs: 60_000, batching: false })
      try {
        expect((await single.ask<number>(requests[0]!.to, { add: requests[0]!.add }, { idempotencyKey: requests[0]!.key })).reply).toBe(answers.get(requests[0]!.key))
        await expect(single.ask("nosuch/x", {})).rejects.toBeInstanceOf(UnknownActorType)
      } finally {
        await single.close()
      }
    } finally {
      await client.close()
      stopping.abort()
      await cluster
    }
  }, 240_000)
})

// Client retries across crashes of an embedded app: the app (eddy run --port) is SIGKILLed at random moments while
// clients have requests in flight and restarted from its data directory; every request is retried with its
// idempotency key (or, without one, its number in the client's session) until answered. Each runs exactly once (the
// answers per counter are its running sums, and the state is their total), also when the crash fell between the
// commit and the reply.
import { spawn, type ChildProcess } from "node:child_process"
import { createServer } from "node:net"
import { afterAll, describe, expect, it } from "vitest"
import { Client } from "../../client/index.ts"
import { eddyBin, removeDir, repoRoot, seeded, tempDir } from "../helpers.ts"
import { seedOf } from "./crashLoop.ts"

const dirs: string[] = []
afterAll(() => dirs.forEach(removeDir))

const freePort = () =>
  new Promise<number>((resolve) => {
    const s = createServer()
    s.listen(0, "127.0.0.1", () => {
      const port = (s.address() as { port: number }).port
      s.close(() => resolve(port))
    })
  })

describe("client retries across SIGKILLs of an embedded app", () => {
  it("every request runs once and its callers get one answer", async () => {
    const seed = seedOf()
    const random = seeded(seed)
    const dir = tempDir("client-crash")
    dirs.push(dir)
    const port = await freePort()
    let server: ChildProcess | undefined
    let kills = 0
    let finished = false
    const start = () => {
      server = spawn(process.execPath, [eddyBin, "run", "examples/counter", "--port", String(port), "--data-dir", dir, "--epoch-ms", "5"], { cwd: repoRoot, stdio: "ignore" })
      return server
    }
    // The app is restarted whenever it dies, and killed at random moments until 6 kills.
    const supervisor = (async () => {
      while (!finished) {
        const child = start()
        const exited = new Promise((r) => child.once("exit", r))
        if (kills < 6) {
          await Promise.race([new Promise((r) => setTimeout(r, 800 + Math.floor(random() * 1500))), exited])
          if (child.exitCode === null && child.kill("SIGKILL")) kills++
        }
        await exited
      }
    })()
    const client = Client.http(`http://127.0.0.1:${port}`, { timeoutMs: 60_000 })
    try {
      // At least 150 requests, and requests keep coming until the app was killed 6 times (however fast it answers).
      const N = 150
      const requests: Array<{ key: string; to: string; add: number; keyless: boolean }> = []
      const answers = new Map<string, number>()
      let next = 0
      await Promise.all(
        Array.from({ length: 8 }, async () => {
          while ((next < N || kills < 6) && next < 20_000) {
            const i = next++
            // A third go without a key: the client numbers them in its session, and its retries carry the number.
            const keyless = i % 3 === 1
            const r = { key: `r${i}`, to: `counter/c${i % 6}`, add: i + 1, keyless }
            requests.push(r)
            const [a, b] = await Promise.all([
              client.ask<number>(r.to, { add: r.add }, keyless ? {} : { idempotencyKey: r.key }),
              r.add % 4 === 0 && !keyless ? client.ask<number>(r.to, { add: r.add }, { idempotencyKey: r.key }) : undefined,
            ])
            if (b !== undefined) expect(b.reply, `the two callers of ${r.key}`).toBe(a.reply)
            answers.set(r.key, a.reply)
            // Pace the load so the kills land among requests.
            await new Promise((res) => setTimeout(res, 20))
          }
        }),
      )
      console.log(`client crash test (seed ${seed}): ${requests.length} requests, ${kills} SIGKILLs of the app`)
      expect(kills).toBeGreaterThanOrEqual(6)
      for (let c = 0; c < 6; c++) {
        const mine = requests.filter((r) => r.to === `counter/c${c}`).map((r) => ({ add: r.add, reply: answers.get(r.key)! }))
        mine.sort((x, y) => x.reply - y.reply)
        let sum = 0
        for (const m of mine) {
          sum += m.add
          expect(m.reply, `seed ${seed}, counter c${c}: answers must be the running sums (an add ran twice or never)`).toBe(sum)
        }
        expect(await client.state(`counter/c${c}`)).toBe(sum)
      }
      for (const r of requests.filter((x) => !x.keyless).slice(0, 30)) expect((await client.ask<number>(r.to, { add: r.add }, { idempotencyKey: r.key })).reply).toBe(answers.get(r.key))
    } finally {
      finished = true
      await client.close()
      server?.kill("SIGTERM")
      await supervisor
    }
  }, 180_000)
})

// The benchmark harness (bench/): its statistics, its key distributions, and the bank workload's invariant checker,
// which must catch a broken run (a lost, duplicated or half-applied transfer), plus one small end-to-end bank run on
// Eddy that the checker accepts.
import { mkdtempSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { describe, expect, it } from "vitest"
import { bankApp } from "../../bench/apps/bank.ts"
import { checkBank, type BankOp } from "../../bench/lib/bankCheck.ts"
import { EddyInvoker } from "../../bench/lib/invokers.ts"
import { closedLoop } from "../../bench/lib/loop.ts"
import { KeyChooser, rng } from "../../bench/lib/random.ts"
import { hostLine, hostProbeMs } from "../../bench/lib/hostSpeed.ts"
import { kept, latencyTrend, searchSustained } from "../../bench/lib/sustainable.ts"
import { makeWorkload } from "../../bench/lib/workloads.ts"
import { percentile, percentiles, summary } from "../../bench/stats.ts"
import { Eddy } from "../../runtime/index.ts"
import { removeDir } from "../helpers.ts"

describe("harness statistics", () => {
  it("percentiles are nearest-rank", () => {
    const xs = Array.from({ length: 100 }, (_, i) => 100 - i) // 100..1, unsorted on purpose
    expect(percentile(xs, 50)).toBe(50)
    expect(percentile(xs, 95)).toBe(95)
    expect(percentile(xs, 99)).toBe(99)
    expect(percentile(xs, 100)).toBe(100)
    expect(percentile(xs, 0)).toBe(1)
    expect(percentile([5, 1, 3], 50)).toBe(3)
    expect(percentile([7], 99)).toBe(7)
    expect(percentiles(Float64Array.from([10, 2, 30, 4]), [25, 50, 75, 100])).toEqual([2, 4, 10, 30])
    expect(percentiles(xs, [50, 95, 99])).toEqual([50, 95, 99])
    expect(percentile([], 50)).toBeNaN()
  })

  it("medians of odd and even samples, with min and max", () => {
    expect(summary([3, 1, 2])).toEqual({ median: 2, min: 1, max: 3 })
    expect(summary([4, 1, 3, 2])).toEqual({ median: 2.5, min: 1, max: 4 })
    expect(summary([9])).toEqual({ median: 9, min: 9, max: 9 })
  })
})

describe("maximum sustainable throughput", () => {
  // A run of 8 s measured from t = 1000, one record per ms: latency flat at 20 ms with one 300 ms stall, or growing
  // by a backlog of 10% of the input (100 ms more every second).
  const run = (latencyAt: (t: number) => number) => Array.from({ length: 8000 }, (_, i) => [1000 + i, latencyAt(1000 + i)] as const)
  const flat = run((t) => (t >= 5000 && t < 5300 ? 300 : 20))
  const growing = run((t) => 20 + (t - 1000) / 10)

  it("a latency that keeps rising is falling behind; a flat one with a stall, or one that lost nothing, is not", () => {
    const f = latencyTrend(flat, 1000, 9000)
    expect(f).toEqual({ first: 20, last: 20 })
    expect(kept(f, 8000, 8000)).toBe(true)
    const g = latencyTrend(growing, 1000, 9000)
    expect(g.first).toBeCloseTo(120, -1)
    expect(g.last).toBeCloseTo(720, -1)
    expect(kept(g, 8000, 8000)).toBe(false)
    // Records still missing when the run ended: fell behind whatever the trend.
    expect(kept(f, 8000, 7990)).toBe(false)
    // Jitter of a few ms at a low latency is not a trend; no samples is not keeping up.
    expect(kept({ first: 5, last: 30 }, 1, 1)).toBe(true)
    expect(kept({ first: 5, last: 60 }, 1, 1)).toBe(false)
    // A backlog of seconds that does not grow still is not keeping up.
    expect(kept({ first: 2900, last: 3000 }, 1, 1)).toBe(false)
    expect(kept(latencyTrend([], 0, 1000), 0, 0)).toBe(false)
  })

  it("bisection finds the highest rate that keeps up, within the resolution of its probes", async () => {
    const capacity = 71_000
    const s = await searchSustained((rate) => Promise.resolve(rate <= capacity), 100_000, 5)
    expect(s.verified).toBe(true)
    expect(s.probes).toHaveLength(5)
    expect(s.rate).toBeLessThanOrEqual(capacity)
    expect(s.rate).toBeGreaterThan(capacity - 0.7 * 100_000 / 32)
    expect(s.probes.filter((p) => p.kept).every((p) => p.rate <= s.rate)).toBe(true)
    // Nothing keeps up: the lower end, flagged unverified.
    const none = await searchSustained(() => Promise.resolve(false), 100_000, 3)
    expect(none).toMatchObject({ rate: 30_000, verified: false })
  })
})

describe("key distributions", () => {
  it("zipfian θ=0.99 over 1000 keys: the hottest key gets 1/ζ(1000, 0.99) of the draws, keys are scrambled, all in range", () => {
    const n = 1000
    const draws = 200_000
    const z = new KeyChooser(n, "zipf", rng(7))
    const counts = new Array<number>(n).fill(0)
    for (let i = 0; i < draws; i++) counts[z.next()]!++
    let zeta = 0
    for (let i = 1; i <= n; i++) zeta += 1 / Math.pow(i, 0.99)
    const sorted = [...counts].sort((a, b) => b - a)
    expect(sorted[0]! / draws).toBeGreaterThan(0.9 / zeta)
    expect(sorted[0]! / draws).toBeLessThan(1.1 / zeta)
    // Rank 2 gets about half of rank 1 (1/2^0.99).
    expect(sorted[1]! / sorted[0]!).toBeGreaterThan(0.4)
    expect(sorted[1]! / sorted[0]!).toBeLessThan(0.6)
    // The hottest key is not key 0: ranks are spread over the key space.
    expect(counts.indexOf(sorted[0]!)).not.toBe(0)
    expect(counts.reduce((a, b) => a + b, 0)).toBe(draws)
  })

  it("uniform: every tenth of the key space within 5% of its share", () => {
    const u = new KeyChooser(100_000, "uniform", rng(3))
    const buckets = new Array<number>(10).fill(0)
    for (let i = 0; i < 100_000; i++) buckets[Math.floor(u.next() / 10_000)]!++
    for (const b of buckets) expect(Math.abs(b - 10_000)).toBeLessThan(500)
  })
})

/** A correct serial bank: applies ops one by one, logging what the client would log. */
const simulate = (accounts: number, initial: number, ops: number, seed: number) => {
  const r = rng(seed)
  const balances = new Array<number>(accounts).fill(initial)
  const log: BankOp[] = []
  for (let i = 0; i < ops; i++) {
    const a = Math.floor(r() * accounts)
    if (r() < 0.3) {
      const amount = 1 + Math.floor(r() * 10)
      balances[a]! += amount
      log.push({ kind: "deposit", account: a, amount, balance: balances[a]! })
    } else {
      const b = (a + 1 + Math.floor(r() * (accounts - 1))) % accounts
      const amount = 1 + Math.floor(r() * 60)
      const ok = amount <= balances[a]!
      if (ok) {
        balances[a]! -= amount
        balances[b]! += amount
      }
      log.push({ kind: "transfer", from: a, to: b, amount, ok, balance: balances[a]! })
    }
  }
  return { balances, log }
}

describe("bank invariant checker", () => {
  const { balances, log } = simulate(50, 30, 2000, 11)
  const accepted = log.findIndex((o) => o.kind === "transfer" && o.ok)
  const t = log[accepted] as Extract<BankOp, { kind: "transfer" }>

  it("accepts a correct run, with rejections in it", () => {
    const r = checkBank(30, balances, log)
    expect(r.problems).toEqual([])
    expect(r.ok).toBe(true)
    expect(r.transfersRejected).toBeGreaterThan(50)
    expect(r.transfersAccepted).toBeGreaterThan(50)
    expect(r.actualTotal).toBe(r.expectedTotal)
  })

  it("catches a lost transfer (the total is still conserved; the two accounts are not)", () => {
    const lost = [...balances]
    lost[t.from]! += t.amount
    lost[t.to]! -= t.amount
    const r = checkBank(30, lost, log)
    expect(r.ok).toBe(false)
    expect(r.actualTotal).toBe(r.expectedTotal)
    expect(r.problems).toContain(`account ${t.from}: balance ${lost[t.from]}, recomputed from the log ${balances[t.from]}`)
    expect(r.problems).toContain(`account ${t.to}: balance ${lost[t.to]}, recomputed from the log ${balances[t.to]}`)
  })

  it("catches an accepted transfer missing from the log, a duplicated one, and a lost credit", () => {
    expect(checkBank(30, balances, log.filter((_, i) => i !== accepted)).ok).toBe(false)
    const twice = [...balances]
    twice[t.from]! -= t.amount
    twice[t.to]! += t.amount
    expect(checkBank(30, twice, log).ok).toBe(false)
    const halfDone = [...balances]
    halfDone[t.to]! -= t.amount
    const r = checkBank(30, halfDone, log)
    expect(r.ok).toBe(false)
    expect(r.problems.some((p) => p.startsWith("total "))).toBe(true)
  })

  it("catches a rejection the payer could afford, and negative balances", () => {
    const affordable: BankOp = { kind: "transfer", from: 0, to: 1, amount: 5, ok: false, balance: 10 }
    expect(checkBank(30, balances, [...log, affordable]).problems.some((p) => p.includes("was rejected although"))).toBe(true)
    const negative = [...balances]
    negative[3]! = -1
    expect(checkBank(30, negative, log).problems.some((p) => p.includes("ends negative"))).toBe(true)
  })
})

describe("bank workload end to end", () => {
  it("a short closed-loop run on Eddy with low balances: rejections happen and the checker accepts it", async () => {
    const dir = mkdtempSync(join(tmpdir(), "eddy-bench-test-"))
    const running = Eddy.start(bankApp(20), { dataDir: dir, checked: true, stopWhenIdle: false, epochMs: 2 })
    try {
      const invoker = new EddyInvoker(running.client)
      const workload = makeWorkload({ workload: "bank", keys: 50, distribution: "zipf", n: 0, initial: 20, items: 0, stock: 0, seed: 5 })
      const run = await closedLoop(invoker, workload, { concurrency: 16, seconds: 20, maxCalls: 600 })
      expect(run.errors).toBe(0)
      expect(run.calls).toBe(600)
      expect(workload.extra()["rejectedTransferShare"]).toBeGreaterThan(0.1)
      expect(await workload.verify(invoker, 16)).toMatch(/^ok: total \d+ conserved, 50 balances = recomputed/)
    } finally {
      await running.stop()
      removeDir(dir)
    }
  })
})

describe("host probe", () => {
  it("times a fixed workload and names the CPU, the probe and the load in one line", () => {
    const ms = hostProbeMs()
    expect(ms).toBeGreaterThan(0)
    expect(Number.isFinite(ms)).toBe(true)
    expect(hostLine("start")).toMatch(/^host \(start\): .+, \d+ CPUs; probe \d+\.\d ms \(lower is faster\); load average \d+\.\d\d$/)
  })
})

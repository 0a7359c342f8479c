// The two actor samples end to end: Fibonacci is right for every n it is run with, on the CLI too; both samples give
// identical results and committed state on 1 and 4 partitions; the shopping cart's invariants hold for several
// seeds and parameter sets (low stock included, so reservations fail), and its analytics agree with the stock.
import { describe, expect, it } from "vitest"
import { fibonacciApp } from "../../examples/fibonacci/app.ts"
import { shoppingCartApp, topItems, type ShopOptions } from "../../examples/shopping-cart/app.ts"
import { Eddy, committedState, type RunOptions } from "../../runtime/index.ts"
import { Sink, type App } from "../../workflows/index.ts"
import { removeDir, runEddy, tempDir } from "../helpers.ts"
import { failuresOf, range, runApp, type Summary } from "./util.ts"

/** Fib(0..30), by iteration. */
const FIB = range(0, 30).reduce<number[]>((f, n) => [...f, n < 2 ? n : f[n - 1]! + f[n - 2]!], [])

const fibApp = (ns: ReadonlyArray<number>) => fibonacciApp(ns, Sink.memory("fib.out"))
const FIB_TASK = "fibonacci/actors"

/** A run stopped after epoch `stopAt`, then resumed from its data directory with another partition count. */
const stopAndResume = async (make: () => App, dir: string, first: RunOptions & { stopAt: number }, second: RunOptions) => {
  const running = Eddy.start(make(), { ...first, dataDir: dir, onFailure: () => undefined, stopWhen: (e) => e >= first.stopAt })
  const a = await running.done
  const atStop = await committedState(dir)
  const b = await runApp(make(), { ...second, dataDir: dir })
  return { a, b, atStop, outputs: (sink: string) => [...running.outputs(sink), ...b.outputs(sink)], final: await committedState(dir) }
}

/** Actors with state, not counting the spawn-counter tombstones stopped virtual actors leave behind. */
const liveActors = async (r: { keys(task: string): Promise<ReadonlyArray<unknown>>; query(task: string, key: never): Promise<unknown> }) => {
  const live: unknown[] = []
  for (const k of await r.keys(FIB_TASK)) if ((await r.query(FIB_TASK, k as never) as { b: string }).b !== "") live.push(k)
  return live
}
const isLive = (e: { readonly task: string; readonly value: unknown }) => e.task === FIB_TASK && (e.value as { b: string }).b !== ""

describe("fibonacci sample", () => {
  it("in-process: every n from 0 to 20 gives Fib(n), with no failure, no dead letter and no actor left", async () => {
    for (const n of range(0, 20)) {
      const r = await runApp(fibApp([n]))
      expect(failuresOf(r), `n = ${n}`).toEqual([])
      expect(r.outputs("fib.out"), `n = ${n}`).toEqual([FIB[n]])
      expect(r.outputs("fibonacci.dead-letters"), `n = ${n}`).toEqual([])
      expect(await liveActors(r), `n = ${n}`).toEqual([])
    }
    expect(FIB[20]).toBe(6765)
  }, 120_000)

  // Fib(30) takes ~115 s on the CLI here (2.7M actors, unchecked; 3.3 GB RSS), so the range beyond 20 stops at 24.
  it("in-process: n = 21..24 in one run (unchecked mode: ~335k actors)", async () => {
    const ns = [24, 21, 23, 22]
    const r = await runApp(fibApp(ns), { checked: false })
    expect(failuresOf(r)).toEqual([])
    // All four finish in one epoch; the outputs are sorted by (key group, sequence), so compare as sets.
    expect([...r.outputs<number>("fib.out")].sort((a, b) => a - b)).toEqual([FIB[21], FIB[22], FIB[23], FIB[24]])
    expect(await liveActors(r)).toEqual([])
  }, 120_000)

  it("CLI: `eddy run examples/fibonacci --n 25` prints 75025, and `eddy actors` finds no fib actor left", async () => {
    const dir = tempDir("fib25")
    try {
      // --unchecked: checked mode copies each of the ~1M messages twice and triples the time (~20 s here).
      const run = await runEddy(["run", "examples/fibonacci", "--n", "25", "--unchecked", "--data-dir", dir])
      expect(run.code, run.stderr).toBe(0)
      expect(run.stdout).toBe("75025\n")
      expect(run.stderr).toMatch(/eddy: app 'fibonacci' committed \d+ epochs \(1 source records, 0 task failures\)/)
      const actors = await runEddy(["actors", "examples/fibonacci", "fib", "--data-dir", dir])
      expect(actors.code, actors.stderr).toBe(0)
      expect(actors.stdout).toBe("")
      expect(actors.stderr).toMatch(/eddy: 0 fib actor\(s\) as of epoch \d+/)
    } finally {
      removeDir(dir)
    }
  }, 120_000)

  it("1 and 4 partitions: identical outputs, identical committed state mid-computation and at the end", async () => {
    const ns = [12, 0, 16, 5, 1, 14, 9]
    const dirs = [tempDir("fib-p1"), tempDir("fib-p4")]
    try {
      // Six rounds per epoch: Fib(12..16) spans several epochs, so the stop leaves live actors and messages in transit.
      const opts = { epochAtoms: 1, roundLimit: 6 }
      const one = await stopAndResume(() => fibApp(ns), dirs[0]!, { ...opts, partitions: 1, stopAt: 5 }, { ...opts, partitions: 4 })
      const four = await stopAndResume(() => fibApp(ns), dirs[1]!, { ...opts, partitions: 4, stopAt: 5 }, { ...opts, partitions: 1 })
      expect(one.atStop.epoch).toBe(5)
      expect(one.atStop.entries.filter((e) => e.task === FIB_TASK).length).toBeGreaterThan(50)
      expect(four.atStop).toEqual(one.atStop)
      expect(failuresOf(one.b)).toEqual([])
      expect(one.b.recoveredEpoch).toBe(5)
      // Computations spanning epochs finish out of request order: compare the values as a set, then exactly.
      expect((one.outputs("fib.out") as number[]).sort((a, b) => a - b)).toEqual(ns.map((n) => FIB[n]!).sort((a, b) => a - b))
      expect(four.outputs("fib.out")).toEqual(one.outputs("fib.out"))
      expect(four.final).toEqual(one.final)
      expect(one.final.entries.filter(isLive)).toEqual([])
    } finally {
      dirs.forEach(removeDir)
    }
  }, 60_000)
})

describe("shopping-cart sample", () => {
  const SHOP_TASK = "shop/actors"

  /** Checks the report's invariants independently of the report, and returns the report. */
  const checkShop = async (app: App, o: ShopOptions, r: Pick<Summary, "query" | "keys" | "failureList" | "outputs">): Promise<{ report: string; sold: number; soldOut: number }> => {
    expect(failuresOf(r)).toEqual([])
    expect(r.outputs("shop.dead-letters")).toEqual([])
    const report = await app.report!(r)
    const perItem: Record<string, number> = {}
    let soldOut = 0
    let inStock = 0
    for (let i = 0; i < o.items; i++) {
      const left = ((await r.query("inventory/stock", `item${i}`)) as number | undefined) ?? o.stock
      expect(left).toBeGreaterThanOrEqual(0)
      expect(left).toBeLessThanOrEqual(o.stock)
      if (left === 0) soldOut++
      inStock += left
      perItem[`item${i}`] = o.stock - left
    }
    let inCarts = 0
    let sold = 0
    let orders = 0
    let analytics: { counts: Record<string, number>; checkouts: number } | undefined
    for (const key of await r.keys(SHOP_TASK)) {
      const rec = (await r.query(SHOP_TASK, key)) as { b: string; s: Record<string, unknown> }
      if (rec.b === "cart") {
        for (const [item, q] of Object.entries(rec.s["items"] as Record<string, number>)) {
          expect(q).toBeGreaterThan(0)
          inCarts += q
          perItem[item]! -= q
        }
      } else if (rec.b === "orders") {
        sold += rec.s["items"] as number
        orders += rec.s["orders"] as number
      } else if (rec.b === "analytics") analytics = rec.s as typeof analytics
    }
    expect(inStock + inCarts + sold).toBe(o.items * o.stock)
    // Analytics saw every order, and its per-item counts are the units that left the stock for good.
    expect(analytics?.checkouts ?? 0).toBe(orders)
    expect(Object.fromEntries(Object.entries(perItem).filter(([, n]) => n > 0))).toEqual(analytics?.counts ?? {})
    expect(report).toBe(
      [
        `checkouts: ${orders}`,
        `items sold: ${sold}`,
        `top 10: ${topItems(perItem, 10).filter(([, n]) => n > 0).map(([item, n]) => `${item} (${n})`).join(", ")}`,
        `invariants: stock never negative; stock ${inStock} + in carts ${inCarts} + sold ${sold} = initial ${o.items * o.stock}`,
      ].join("\n"),
    )
    return { report, sold, soldOut }
  }

  it.each([
    ["defaults of the CLI, seed 1", { users: 100, items: 200, stock: 100, requests: 20000, seed: 1 }, 0],
    ["few users, many items, seed 7", { users: 5, items: 300, stock: 3, requests: 3000, seed: 7 }, 1],
    ["low stock: most reservations fail, seed 2", { users: 40, items: 10, stock: 2, requests: 3000, seed: 2 }, 10],
    ["stock 0: every reservation fails, seed 3", { users: 10, items: 5, stock: 0, requests: 500, seed: 3 }, 5],
    ["one user, one item, seed 11", { users: 1, items: 1, stock: 5, requests: 400, seed: 11 }, 1],
  ] as const)("%s: the report's invariants hold and agree with the state", async (_what, o, minSoldOut) => {
    const app = shoppingCartApp(o)
    const r = await runApp(app, { epochAtoms: 50, partitions: 2 })
    const { sold, soldOut } = await checkShop(app, o, r)
    expect(soldOut).toBeGreaterThanOrEqual(minSoldOut)
    if (o.stock > 0) expect(sold).toBeGreaterThan(0)
    else expect(sold).toBe(0)
  }, 60_000)

  it("a failing invariant fails the report", async () => {
    const o = { users: 3, items: 2, stock: 2, requests: 20, seed: 1 }
    const app = shoppingCartApp(o)
    const r = await runApp(app)
    const lying = { query: async (task: string, key: unknown) => (task === "inventory/stock" && key === "item1" ? -1 : r.query(task, key as never)), keys: r.keys }
    await expect(Promise.resolve(app.report!(lying))).rejects.toThrow("invariant broken: item1 has negative stock -1")
    const inflated = { query: async (task: string, key: unknown) => (task === "inventory/stock" ? o.stock + 1 : r.query(task, key as never)), keys: r.keys }
    await expect(Promise.resolve(app.report!(inflated))).rejects.toThrow(/^invariant broken: stock 6 \+ in carts \d+ \+ sold \d+ != initial 4$/)
  })

  it("1 and 4 partitions: identical reports and committed state, also when stopped and resumed on the other count", async () => {
    const o = { users: 30, items: 40, stock: 6, requests: 3000, seed: 5 }
    const dirs = [tempDir("shop-p1"), tempDir("shop-p4")]
    try {
      const opts = { epochAtoms: 40 }
      const one = await stopAndResume(() => shoppingCartApp(o), dirs[0]!, { ...opts, partitions: 1, stopAt: 20 }, { ...opts, partitions: 4 })
      const four = await stopAndResume(() => shoppingCartApp(o), dirs[1]!, { ...opts, partitions: 4, stopAt: 20 }, { ...opts, partitions: 1 })
      expect(one.atStop.epoch).toBe(20)
      expect(four.atStop).toEqual(one.atStop)
      expect(four.final).toEqual(one.final)
      expect(one.final.entries.length).toBeGreaterThan(o.users * 2)
      const reports = await Promise.all([checkShop(shoppingCartApp(o), o, one.b), checkShop(shoppingCartApp(o), o, four.b)])
      expect(reports[1].report).toBe(reports[0].report)
      // And a run that never stopped ends the same.
      const dir = tempDir("shop-free")
      try {
        const free = await runApp(shoppingCartApp(o), { ...opts, dataDir: dir, partitions: 4 })
        expect((await checkShop(shoppingCartApp(o), o, free)).report).toBe(reports[0].report)
        expect(await committedState(dir)).toEqual(one.final)
      } finally {
        removeDir(dir)
      }
    } finally {
      dirs.forEach(removeDir)
    }
  }, 60_000)

  it("`eddy state` and `eddy actors` read an actor's committed state from the data directory", async () => {
    const dir = tempDir("shop-cli")
    try {
      const o = { users: 12, items: 8, stock: 4, requests: 300, seed: 9 }
      const r = await runApp(shoppingCartApp(o), { dataDir: dir, epochAtoms: 5 })
      const orders = (await r.keys(SHOP_TASK)).filter((k) => (k as readonly string[])[0] === "orders").map((k) => (k as readonly string[])[1]!)
      expect(orders.length).toBeGreaterThan(0)
      const listed = await runEddy(["actors", "examples/shopping-cart", "orders", "--data-dir", dir])
      expect(listed.code, listed.stderr).toBe(0)
      expect(listed.stdout.trim().split("\n").sort()).toEqual(orders.map((id) => `orders/${id}`).sort())
      const who = orders[0]!
      const state = await runEddy(["state", "examples/shopping-cart", `orders/${who}`, "--data-dir", dir])
      expect(state.code, state.stderr).toBe(0)
      expect(JSON.parse(state.stdout)).toEqual(((await r.query(SHOP_TASK, ["orders", who])) as { s: unknown }).s)
    } finally {
      removeDir(dir)
    }
  }, 60_000)
})

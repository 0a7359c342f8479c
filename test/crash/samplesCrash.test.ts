import { readdirSync, readFileSync } from "node:fs"
import { join } from "node:path"
import { afterAll, describe, expect, it } from "vitest"
import { committedState } from "../../runtime/index.ts"
import { requests } from "../apps/fibonacciMany.ts"
import { removeDir, runEddy, tempDir } from "../helpers.ts"
import { crashLoop, seedOf } from "./crashLoop.ts"

// Both actor samples in a child process, SIGKILLed at random moments at least 10 times and restarted from their
// data directory each time, must end exactly like a run that never failed: the same committed state (every actor,
// the inventory, pending asks), the same file output, the same report, and the invariants hold.

const FIB = [0, 1]
for (let n = 2; n <= 30; n++) FIB.push(FIB[n - 1]! + FIB[n - 2]!)

/** Snapshots were taken and the first log segment dropped: recovery really started from a snapshot. */
const expectSnapshotsAndTruncation = (dir: string) => {
  expect(readdirSync(join(dir, "snapshots", "manifests")).length).toBeGreaterThan(0)
  expect(readdirSync(join(dir, "log"))).not.toContain("00000001.log")
}

describe("crash recovery of the actor samples", () => {
  const dirs: string[] = []
  afterAll(() => dirs.forEach(removeDir))

  it("fibonacci (many requests, file sink): SIGKILLed at least 10 times, ends exactly like the failure-free run", async () => {
    const reference = tempDir("fib-ref")
    const crashed = tempDir("fib-crash")
    dirs.push(reference, crashed)
    const count = 70
    const app = ["test/apps/fibonacciMany.ts", "--count", String(count), "--min", "4", "--max", "12", "--seed", "3"]
    const args = (dir: string) => ["run", ...app, "--data-dir", dir, "--epoch-atoms", "1", "--partitions", "2", "--snapshot-every", "10", "--log-segment-bytes", "32768"]

    const ref = await runEddy(args(reference))
    expect(ref.code, ref.stderr).toBe(0)
    const seed = seedOf()
    const run = await crashLoop(args(crashed), seed, 12)
    console.log(`fibonacci crash test (seed ${seed}): ${run.kills} SIGKILLs over ${run.attempts} runs`)
    expect(run.kills).toBeGreaterThanOrEqual(10)

    // One request per epoch, each finished within its epoch: the file holds Fib(n) of every request, in order.
    const expected = requests(count, 4, 12, 3).map((n) => FIB[n])
    const lines = (dir: string) => readFileSync(join(dir, "fib.jsonl"), "utf8").trimEnd().split("\n").map(Number)
    expect(lines(reference)).toEqual(expected)
    expect(lines(crashed)).toEqual(expected)
    expect(readFileSync(join(crashed, "fib.jsonl"), "utf8")).toBe(readFileSync(join(reference, "fib.jsonl"), "utf8"))
    expectSnapshotsAndTruncation(crashed)
    const [refState, crashState] = await Promise.all([committedState(reference), committedState(crashed)])
    // Every fib and printer actor stopped: no actor state is left (only the roots' spawn-counter tombstones).
    expect(refState.entries.filter((e) => e.task === "fibonacci/actors" && (e.value as { b: string }).b !== "")).toEqual([])
    expect(crashState.entries).toEqual(refState.entries)
    expect(run.last.stdout).toBe("")
  }, 240_000)

  it("shopping cart: SIGKILLed at least 10 times, ends with the failure-free run's state and report; invariants hold", async () => {
    const reference = tempDir("shop-ref")
    const crashed = tempDir("shop-crash")
    dirs.push(reference, crashed)
    // Stock 8 of 40 items for 2500 requests: many reservations fail, and some asks are pending at every kill.
    const app = ["examples/shopping-cart", "--requests", "2500", "--users", "50", "--items", "40", "--stock", "8", "--seed", "4"]
    // A snapshot every 5 epochs: the log is dropped only below the previous of two manifests, and a snapshot's upload
    // outlives the few epochs a killed run gets. At every 15 the completing run (~25 epochs at ~4 ms) could end before
    // its one snapshot's upload was done: no manifest, or one, and no truncation to check (seed 11455, 3 runs in 4).
    const args = (dir: string) => ["run", ...app, "--data-dir", dir, "--epoch-atoms", "25", "--partitions", "2", "--snapshot-every", "5", "--log-segment-bytes", "32768"]

    const ref = await runEddy(args(reference))
    expect(ref.code, ref.stderr).toBe(0)
    expect(ref.stdout).toMatch(/^checkouts: \d+\nitems sold: \d+\ntop 10: .*\ninvariants: stock never negative; stock \d+ \+ in carts \d+ \+ sold \d+ = initial 320\n$/)
    const seed = seedOf()
    const run = await crashLoop(args(crashed), seed, 12)
    console.log(`shopping-cart crash test (seed ${seed}): ${run.kills} SIGKILLs over ${run.attempts} runs`)
    expect(run.kills).toBeGreaterThanOrEqual(10)

    // The report is printed by the run that completes: it must be the reference's, invariants included.
    expect(run.last.stdout).toBe(ref.stdout)
    expect(run.last.stderr).toMatch(/resumed after epoch \d+/)
    expectSnapshotsAndTruncation(crashed)
    const [refState, crashState] = await Promise.all([committedState(reference), committedState(crashed)])
    expect(refState.entries.filter((e) => e.task === "shop/actors").length).toBeGreaterThan(50)
    expect(refState.entries.filter((e) => e.task === "inventory/stock").length).toBeGreaterThan(0)
    expect(crashState.epoch).toBe(refState.epoch)
    expect(crashState.entries).toEqual(refState.entries)
  }, 240_000)
})

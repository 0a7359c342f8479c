import { readdirSync, readFileSync } from "node:fs"
import { join } from "node:path"
import { afterAll, describe, expect, it } from "vitest"
import { decode } from "../../runtime/engine/codec.ts"
import { chainOf, type Manifest } from "../../runtime/engine/snapshots.ts"
import { committedState } from "../../runtime/index.ts"
import { removeDir, runEddy, tempDir } from "../helpers.ts"
import { crashLoop, seedOf } from "./crashLoop.ts"

// A cyclic workflow with keyed state, SIGKILLed at random moments and restarted from its data directory, must end
// with exactly the sink output and state of a run that never failed: nothing lost, duplicated or reordered.
// 2400 numbers make ~60 epochs: enough for 12 kills (1-4 commits each, plus up to 25 ms) however fast epochs are.
// Snapshots are chains of up to 4 (an image and deltas) whatever their size, so recovery folds chains.
const args = (dir: string) => ["run", "test/apps/collatz.ts", "--data-dir", dir, "--epoch-atoms", "8", "--count", "2400", "--partitions", "2", "--snapshot-every", "4", "--snapshot-chain", "4", "--snapshot-image-min", "0", "--log-segment-bytes", "65536"]

describe("crash recovery of a cyclic workflow", () => {
  const dirs: string[] = []
  afterAll(() => dirs.forEach(removeDir))

  it("SIGKILLed at least 10 times, ends exactly like the failure-free run", async () => {
    const reference = tempDir("ref")
    const crashed = tempDir("crash")
    dirs.push(reference, crashed)

    const ref = await runEddy(args(reference))
    expect(ref.code, ref.stderr).toBe(0)

    const seed = seedOf()
    // Kill after a random number of commits plus a random delay, so kills land anywhere inside an epoch.
    const { kills, attempts } = await crashLoop(args(crashed), seed, 12, { maxAfterCommits: 4, maxDelayMs: 25 })
    console.log(`crash test (seed ${seed}): ${kills} SIGKILLs over ${attempts} runs`)
    expect(kills).toBeGreaterThanOrEqual(10)

    const expected = readFileSync(join(reference, "out.jsonl"), "utf8")
    const actual = readFileSync(join(crashed, "out.jsonl"), "utf8")
    expect(expected.split("\n").length).toBe(2401)
    expect(actual).toBe(expected)
    // Snapshots were taken and old log segments dropped, so recovery really started from snapshots.
    const manifests = readdirSync(join(crashed, "snapshots", "manifests"))
    expect(manifests.length).toBeGreaterThan(0)
    // Chains longer than one were written (in the newest manifest, or the one before it kept for its grace period:
    // which of them ends on a freshly folded image depends on where the last kill landed; CI once saw the newest so).
    const chains = manifests.map((m) => decode(readFileSync(join(crashed, "snapshots", "manifests", m))) as Manifest).flatMap((m) => Object.values(m.groups).map((g) => chainOf(g).length))
    expect(Math.max(...chains)).toBeGreaterThan(1)
    expect(readdirSync(join(crashed, "log"))).not.toContain("00000001.log")
    const [refState, crashState] = await Promise.all([committedState(reference), committedState(crashed)])
    expect(refState.entries.length).toBeGreaterThan(0)
    expect(crashState.entries).toEqual(refState.entries)
  }, 240_000)
})

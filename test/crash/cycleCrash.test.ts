import { readdirSync, readFileSync } from "node:fs"
import { join } from "node:path"
import { afterAll, describe, expect, it } from "vitest"
import { committedState } from "../../runtime/index.ts"
import { removeDir, runEddy, seeded, tempDir } from "../helpers.ts"

// A cyclic workflow with keyed state, SIGKILLed at random moments and restarted from its data directory, must end
// with exactly the sink output and state of a run that never failed: nothing lost, duplicated or reordered.
// 2400 numbers make ~60 epochs: enough for 12 kills (1-4 commits each, plus up to 25 ms) however fast epochs are.
const args = (dir: string) => ["run", "test/apps/collatz.ts", "--data-dir", dir, "--epoch-atoms", "8", "--count", "2400", "--partitions", "2", "--snapshot-every", "4", "--log-segment-bytes", "65536"]

describe("crash recovery of a cyclic workflow", () => {
  const dirs: string[] = []
  afterAll(() => dirs.forEach(removeDir))

  it("SIGKILLed at least 10 times, ends exactly like the failure-free run", async () => {
    const reference = tempDir("ref")
    const crashed = tempDir("crash")
    dirs.push(reference, crashed)

    const ref = await runEddy(args(reference))
    expect(ref.code, ref.stderr).toBe(0)

    const seed = Number(process.env["EDDY_SEED"] ?? Date.now() % 100000)
    const random = seeded(seed)
    let kills = 0
    let attempts = 0
    for (;;) {
      attempts++
      expect(attempts, `seed ${seed}: too many attempts`).toBeLessThan(60)
      // Kill after a random number of commits plus a random delay, so kills land anywhere inside an epoch.
      const afterCommits = 1 + Math.floor(random() * 4)
      const delay = Math.floor(random() * 25)
      let seen = 0
      const exit = await runEddy(args(crashed), (line, child) => {
        if (kills >= 12 || !line.startsWith("eddy: committed epoch")) return
        if (++seen === afterCommits) setTimeout(() => child.kill("SIGKILL"), delay)
      })
      if (exit.signal === "SIGKILL") {
        kills++
        continue
      }
      expect(exit.code, `seed ${seed}: ${exit.stderr}`).toBe(0)
      break
    }
    console.log(`crash test (seed ${seed}): ${kills} SIGKILLs over ${attempts} runs`)
    expect(kills).toBeGreaterThanOrEqual(10)

    const expected = readFileSync(join(reference, "out.jsonl"), "utf8")
    const actual = readFileSync(join(crashed, "out.jsonl"), "utf8")
    expect(expected.split("\n").length).toBe(2401)
    expect(actual).toBe(expected)
    // Snapshots were taken and old log segments dropped, so recovery really started from snapshots.
    expect(readdirSync(join(crashed, "snapshots", "manifests")).length).toBeGreaterThan(0)
    expect(readdirSync(join(crashed, "log"))).not.toContain("00000001.log")
    const [refState, crashState] = await Promise.all([committedState(reference), committedState(crashed)])
    expect(refState.entries.length).toBeGreaterThan(0)
    expect(crashState.entries).toEqual(refState.entries)
  }, 240_000)
})

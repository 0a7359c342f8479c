import { expect } from "vitest"
import { runEddy, seeded, type Exit } from "../helpers.ts"

export interface Crashed {
  readonly kills: number
  readonly attempts: number
  /** The run that completed. */
  readonly last: Exit
}

export const seedOf = (): number => Number(process.env["EDDY_SEED"] ?? Date.now() % 100000)

/**
 * Runs the eddy CLI with `args` until a run completes, killing each run (SIGKILL) after a random number of committed
 * epochs (1..maxAfterCommits) plus a random delay (0..maxDelayMs), so kills land anywhere: in an epoch, in a commit,
 * in a snapshot; `kills` times in all. The schedule is reproducible from the seed.
 */
export const crashLoop = async (
  args: ReadonlyArray<string>,
  seed: number,
  kills: number,
  { maxAfterCommits = 3, maxDelayMs = 20 }: { readonly maxAfterCommits?: number; readonly maxDelayMs?: number } = {},
): Promise<Crashed> => {
  const random = seeded(seed)
  let killed = 0
  let attempts = 0
  for (;;) {
    attempts++
    expect(attempts, `seed ${seed}: too many attempts`).toBeLessThan(60)
    const afterCommits = 1 + Math.floor(random() * maxAfterCommits)
    const delay = Math.floor(random() * maxDelayMs)
    let seen = 0
    const exit = await runEddy(args, (line, child) => {
      if (killed >= kills || !line.startsWith("eddy: committed epoch")) return
      if (++seen === afterCommits) setTimeout(() => child.kill("SIGKILL"), delay)
    })
    if (exit.signal === "SIGKILL") {
      killed++
      continue
    }
    expect(exit.code, `seed ${seed}: ${exit.stderr}`).toBe(0)
    return { kills: killed, attempts, last: exit }
  }
}

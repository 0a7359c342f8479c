import { spawn, type ChildProcess } from "node:child_process"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join, resolve } from "node:path"

export const repoRoot = resolve(import.meta.dirname, "..")
export const eddyBin = join(repoRoot, "bin", "eddy.js")

export const tempDir = (prefix: string): string => mkdtempSync(join(tmpdir(), `eddy-test-${prefix}-`))
export const removeDir = (dir: string): void => rmSync(dir, { recursive: true, force: true })

/** Temporary directories a test file makes with `dir(name)` and removes with `removeAll()` (in afterAll). */
export const tempDirs = () => {
  const made: string[] = []
  return {
    dir: (name: string): string => {
      const d = tempDir(name)
      made.push(d)
      return d
    },
    removeAll: (): void => made.splice(0).forEach(removeDir),
  }
}

/** How a run ended: "finished", or its error's tag (its message when it has none). */
export const outcomeOf = (done: Promise<unknown>): Promise<string> =>
  done.then(
    () => "finished",
    (err: unknown) => (err as { _tag?: string } | null)?._tag ?? String(err),
  )

/** A seeded generator (mulberry32): fault schedules are reproducible from the seed printed by the test. */
export const seeded = (seed: number) => {
  let a = seed >>> 0
  return (): number => {
    a = (a + 0x6d2b79f5) | 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

export interface Exit {
  readonly code: number | null
  readonly signal: NodeJS.Signals | null
  readonly stdout: string
  readonly stderr: string
}

/** Runs the eddy CLI in a child process; `onStderrLine` may kill it. */
export const runEddy = (args: ReadonlyArray<string>, onStderrLine?: (line: string, child: ChildProcess) => void): Promise<Exit> =>
  new Promise((resolvePromise, reject) => {
    const child = spawn(process.execPath, [eddyBin, ...args], { cwd: repoRoot, env: { ...process.env, EDDY_PROGRESS: "1" }, stdio: ["ignore", "pipe", "pipe"] })
    let stdout = ""
    let stderr = ""
    let partial = ""
    child.stdout.on("data", (d: Buffer) => (stdout += d.toString()))
    child.stderr.on("data", (d: Buffer) => {
      const text = d.toString()
      stderr += text
      partial += text
      const lines = partial.split("\n")
      partial = lines.pop()!
      for (const line of lines) onStderrLine?.(line, child)
    })
    child.on("error", reject)
    child.on("close", (code, signal) => resolvePromise({ code, signal, stdout, stderr }))
  })

/** Random test inputs from a seeded generator: a pick from a list, text of n awkward characters, n random bytes. */
export const randomInputs = (rnd: () => number) => {
  const pick = <T>(xs: ReadonlyArray<T>): T => xs[Math.floor(rnd() * xs.length)]!
  const text = (n: number) => Array.from({ length: n }, () => pick(["a", "z", "é", "€", "𝄞", "\u0000", "0", " "])).join("")
  const bytes = (n: number) => Buffer.from(Array.from({ length: n }, () => Math.floor(rnd() * 256)))
  return { pick, text, bytes }
}

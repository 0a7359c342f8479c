import { spawn, type ChildProcess } from "node:child_process"
import { fileURLToPath } from "node:url"

const eddyBin = fileURLToPath(new URL("../../bin/eddy.js", import.meta.url))

export interface SuperviseOptions {
  readonly appSpec: string
  readonly partitions: number
  readonly namespace: string
  /** Each worker's sinks go to `<dataDir>/worker-<i>`. */
  readonly dataDir: string
  /** Flags for every process (engine flags like --epoch-atoms, and the app's own). */
  readonly flags: ReadonlyArray<string>
  /** Give up after this many restarts of the whole cluster. */
  readonly maxRestarts: number
  readonly env?: NodeJS.ProcessEnv
  /** Called with each process once started (tests use it to inject faults). */
  readonly onStart?: (name: string, child: ChildProcess) => void
  readonly log?: (line: string) => void
  /** If given, the processes' output comes here line by line instead of to this process's stdout/stderr. */
  readonly onLine?: (name: string, stream: "stdout" | "stderr", line: string) => void
  /** Aborting stops the cluster cleanly: the coordinator is asked to stop (SIGTERM) at its next epoch boundary. */
  readonly signal?: AbortSignal
  /**
   * Keep a standby of every process: started this long after each (re)start, it loads node, the TypeScript loader,
   * the modules and the app, then waits; a restart activates it instead of starting a process cold (which costs
   * 1.5-3 s on a small machine). A standby connects to nothing until activated, so it cannot disturb the running
   * generation. Standbys start one by one, `standbyStaggerMs` apart (loading one takes about a core-second; all at
   * once would compete with the cluster that just restarted). Default 5000 ms; negative: no standbys.
   */
  readonly standbyAfterMs?: number
  /** Default 1500 ms. */
  readonly standbyStaggerMs?: number
}

export interface SuperviseResult {
  readonly restarts: number
  readonly faults: ReadonlyArray<string>
}

interface Proc {
  readonly name: string
  readonly child: ChildProcess
  readonly exit: Promise<{ readonly name: string; readonly code: number | null; readonly signal: NodeJS.Signals | null }>
}

/**
 * `eddy cluster`: runs the coordinator and one worker per partition as local processes. Any process that dies or
 * fails makes the supervisor kill the rest and start them all again: recovery (roll back to the last committed
 * epoch) is the only failure path. Done when the coordinator finishes and every worker has published and exited.
 */
export const supervise = async (o: SuperviseOptions): Promise<SuperviseResult> => {
  const log = o.log ?? ((line: string) => process.stderr.write(line + "\n"))
  const faults: string[] = []
  let quickFailures = 0
  const standbyAfterMs = o.standbyAfterMs ?? 5000
  const standbyStaggerMs = o.standbyStaggerMs ?? 1500
  const standbys = new Map<string, Proc>()
  let standbyTimers: NodeJS.Timeout[] = []
  const common = ["--partitions", String(o.partitions), "--namespace", o.namespace, ...o.flags]
  const roles: ReadonlyArray<readonly [string, ReadonlyArray<string>]> = [
    ["coordinator", ["coordinator", o.appSpec, ...common]],
    ...Array.from({ length: o.partitions }, (_, i) => [`worker-${i}`, ["worker", o.appSpec, "--partition", String(i), "--data-dir", `${o.dataDir}/worker-${i}`, ...common]] as const),
  ]
  const start = (name: string, args: ReadonlyArray<string>, standby: boolean): Proc => {
    const onLine = o.onLine
    const child = spawn(process.execPath, [eddyBin, ...args, ...(standby ? ["--standby"] : [])], {
      env: o.env ?? process.env,
      stdio: [standby ? "pipe" : "ignore", onLine ? "pipe" : "inherit", onLine ? "pipe" : "inherit"],
    })
    if (onLine !== undefined) {
      for (const stream of ["stdout", "stderr"] as const) {
        let partial = ""
        child[stream]!.on("data", (d: Buffer) => {
          const lines = (partial + d.toString()).split("\n")
          partial = lines.pop()!
          for (const line of lines) onLine(name, stream, line)
        })
      }
    }
    const exit = new Promise<{ name: string; code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
      child.on("exit", (code, signal) => resolve({ name, code, signal })),
    )
    return { name, child, exit }
  }
  const prepareStandbys = () => {
    for (const t of standbyTimers) clearTimeout(t)
    if (standbyAfterMs < 0) return
    standbyTimers = roles.map(([name, args], i) =>
      setTimeout(() => {
        if (standbys.has(name)) return
        const p = start(name, args, true)
        standbys.set(name, p)
        // A standby that dies on its own is simply not used.
        void p.exit.then(() => {
          if (standbys.get(name) === p) standbys.delete(name)
        })
      }, standbyAfterMs + i * standbyStaggerMs),
    )
  }
  const dropStandbys = async () => {
    for (const t of standbyTimers) clearTimeout(t)
    const left = [...standbys.values()]
    standbys.clear()
    // Closing its stdin tells a standby to exit.
    for (const p of left) p.child.stdin?.end()
    await Promise.all(left.map((p) => p.exit))
  }
  try {
    return await run()
  } finally {
    await dropStandbys()
  }

  async function run(): Promise<SuperviseResult> {
    for (let restarts = 0; ; restarts++) {
      const launchedAt = Date.now()
      const procs: Proc[] = []
      for (const [name, args] of roles) {
        const standby = standbys.get(name)
        standbys.delete(name)
        let p: Proc
        if (standby !== undefined && standby.child.exitCode === null && standby.child.signalCode === null && standby.child.stdin?.writable === true) {
          standby.child.stdin.end("go\n")
          p = standby
        } else p = start(name, args, false)
        procs.push(p)
        o.onStart?.(name, p.child)
      }
      prepareStandbys()

      const pending = new Set(procs)
      let failed: string | undefined
      const stop = () => procs[0]!.child.kill("SIGTERM")
      if (o.signal?.aborted === true) stop()
      o.signal?.addEventListener("abort", stop)
      while (pending.size > 0 && failed === undefined) {
        const first = await Promise.race([...pending].map((p) => p.exit.then((x) => ({ p, x }))))
        pending.delete(first.p)
        if (first.x.code !== 0) failed = `${first.x.name} ${first.x.signal === null ? `exited with code ${first.x.code}` : `was killed (${first.x.signal})`}`
      }
      o.signal?.removeEventListener("abort", stop)
      if (failed === undefined) return { restarts, faults }
      if (o.signal?.aborted === true) {
        // Stopping: whatever still runs is stopped too; the log keeps everything committed.
        for (const p of pending) p.child.kill("SIGKILL")
        await Promise.all([...pending].map((p) => p.exit))
        return { restarts, faults }
      }
      faults.push(failed)
      log(`eddy cluster: ${failed}; restarting every process from the last committed epoch (restart ${restarts + 1})`)
      for (const p of pending) p.child.kill("SIGKILL")
      await Promise.all([...pending].map((p) => p.exit))
      if (restarts + 1 > o.maxRestarts) throw new Error(`eddy cluster: gave up after ${o.maxRestarts} restarts (last: ${failed})`)
      // A cluster that fails right after starting (a broker down or restarting) is retried with growing pauses.
      quickFailures = Date.now() - launchedAt < 5000 ? quickFailures + 1 : 0
      if (quickFailures > 0) await new Promise((resolve) => setTimeout(resolve, Math.min(500 * 2 ** (quickFailures - 1), 4000)))
    }
  }
}

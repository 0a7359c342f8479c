// Recovery after a SIGKILL on a local cluster over the real servers (Kafka log, NATS, S3 snapshots), with many actors
// of state: the app bench/apps/holders.ts fills `--actors` holders, then keeps sending them increments. Once a
// snapshot covering the whole fill is written, `--kill-after` epochs later one worker is SIGKILLed in the middle of
// an epoch; the time until the cluster commits its first epoch again is the recovery time. Its breakdown comes from
// the processes' EDDY_PROGRESS lines ("modules loaded", "restored to epoch ... (engine start, snapshot, log,
// replay, restore)", "opened epoch", "committed epoch"), each phase ending when the slowest process finishes it.
//
//   node --import tsx bench/recovery.ts [--runs 5] [--workers 2] [--actors 1000000] [--atom 100] [--epoch-atoms 100]
//        [--snapshot-every 20] [--kill-after 10] [--victim 1] [--liveness-ms 60000] [--compare DIR]
//
// --compare DIR: also runs the tree checked out in DIR (e.g. `git worktree add DIR <commit>`, with node_modules),
// alternating with this one run by run, and prints both breakdowns: before/after figures under the same load.
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join, resolve } from "node:path"
import type { ChildProcess } from "node:child_process"
import { supervise as superviseHere } from "../runtime/cluster/supervisor.ts"
import { parseFlags } from "../runtime/cli/main.ts"
import { fillAtoms } from "./apps/holders.ts"
import { cleanupNamespace } from "./cleanup.ts"
import { fmt, summary } from "./stats.ts"

const { flags } = parseFlags(process.argv.slice(2))
const num = (name: string, d: number) => (typeof flags[name] === "string" ? Number(flags[name]) : d)
const runs = num("runs", 5)
const workers = num("workers", 2)
const actors = num("actors", 1_000_000)
const atom = num("atom", 100)
const epochAtoms = num("epoch-atoms", 100)
const snapshotEvery = num("snapshot-every", 20)
const killAfter = num("kill-after", 10)
const victim = num("victim", workers - 1)
// Long by default: on a loaded machine a slow recovery must not trip the liveness check and restart again (the
// supervisor sees the SIGKILLed process exit at once; liveness is for processes on other machines).
const livenessMs = num("liveness-ms", 60_000)
const compare = typeof flags["compare"] === "string" ? resolve(flags["compare"]) : undefined
process.env["AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED"] ??= "true"

/** A tree to run: this one, or the --compare one (its own supervisor, CLI and app module). */
interface Tree {
  readonly label: string
  readonly supervise: typeof superviseHere
  readonly appSpec: string
}
// The fill is admitted by this epoch (every split admits `epochAtoms` atoms per epoch).
const fillEpoch = Math.ceil(fillAtoms(actors, atom, 2) / epochAtoms)
const firstFullSnapshot = Math.ceil((fillEpoch + 1) / snapshotEvery) * snapshotEvery

/** One process's restore line, with absolute times (ms, this process's clock) of its phases' ends. */
interface Restored {
  readonly name: string
  readonly modulesAt: number
  readonly engineAt: number
  /** Snapshot and log both read (sequential in older builds, concurrent now). */
  readonly readAt: number
  readonly replayAt: number
  readonly snapshotMs: number
  readonly logMs: number
  readonly restoredAt: number
  readonly snapshotBytes: number
  readonly logEntries: number
}

interface Run {
  readonly killedAt: number
  readonly detectedAt: number
  readonly spawnedAt: number
  readonly restored: ReadonlyArray<Restored>
  readonly openedAt: number
  readonly committedAt: number
  readonly recoveredTo: number
  readonly killedIn: number
  readonly snapshot: number
  readonly parts: ReadonlyArray<{ readonly bytes: number; readonly ms: number }>
  readonly manifestMs: ReadonlyArray<number>
  readonly preKillRate: number
  readonly postRate: number
}

const once = async (tree: Tree, run: number): Promise<Run> => {
  const dir = mkdtempSync(join(tmpdir(), "eddy-bench-recovery-"))
  const ns = `bench-rec-${run}-${Date.now().toString(36)}`
  const live = new Map<string, ChildProcess>()
  let phase: "filling" | "armed" | "killed" | "restarted" | "done" = "filling"
  let commitsSinceSnapshot = 0
  let snapshot = 0
  let killedAt = 0
  let killedIn = 0
  let detectedAt = 0
  let spawnedAt = 0
  let openedAt = 0
  let committedAt = 0
  let recoveredTo = 0
  let lastCommitted = 0
  const restored: Restored[] = []
  const modules = new Map<string, number>()
  const activated = new Map<string, number>()
  const errors: string[] = []
  let disturbed = false
  const parts: Array<{ bytes: number; ms: number }> = []
  const manifestMs: number[] = []
  const committedAtEpoch = new Map<number, number>()
  const commitTimes: Array<readonly [number, number]> = []
  const postCommits: number[] = []
  const result = tree.supervise({
    appSpec: tree.appSpec,
    partitions: workers,
    namespace: ns,
    dataDir: dir,
    flags: ["--unchecked", "--epoch-atoms", String(epochAtoms), "--snapshot-every", String(snapshotEvery), "--liveness-ms", String(livenessMs), "--actors", String(actors), "--atom", String(atom)],
    // A second restart (a liveness timeout while recovering on a loaded machine) is counted and reported, not fatal.
    maxRestarts: 4,
    env: { ...process.env, EDDY_PROGRESS: "1", AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: "true" },
    log: (line) => {
      if (!line.includes("restarting every process")) return
      // A second failure after the kill (say a server restarted by someone else) spoils the run's breakdown.
      if (phase === "restarted" || (phase === "killed" && detectedAt !== 0)) disturbed = true
      else if (phase === "killed") detectedAt = performance.now()
    },
    onStart: (name, child) => {
      live.set(name, child)
      if (phase === "killed" && spawnedAt === 0) spawnedAt = performance.now()
    },
    onLine: (name, _stream, line) => {
      const now = performance.now()
      // Why a process failed (it prints the error before exiting with code 2): shown with the run.
      if (/error/i.test(line) && !line.includes("committed epoch")) errors.push(`${name}: ${line}`)
      const m = /^eddy: modules loaded at ([\d.]+) ms/.exec(line)
      if (m !== null) modules.set(name, Number(m[1]))
      // A standby process (loaded ahead of time) starts its engine when the supervisor activates it.
      const a = /^eddy: activated at ([\d.]+) ms/.exec(line)
      if (a !== null) activated.set(name, Number(a[1]))
      const r = /^eddy: restored to epoch (\d+) at ([\d.]+) ms \(engine start ([\d.]+), snapshot \d+ \d+ blobs (\d+) bytes ([\d.]+), log (\d+) entries ([\d.]+),(?: both read ([\d.]+),)? replay ([\d.]+), restore ([\d.]+)\)/.exec(line)
      if (r !== null && (phase === "killed" || phase === "restarted") && !restored.some((x) => x.name === name)) {
        // The line's times are on the process's clock (from its start); the offset to ours is taken at the line's arrival.
        const at = Number(r[2])
        const offset = now - at
        const engineAt = Number(r[3])
        // Older builds read the snapshot, then the log; newer ones both at once ("both read").
        const readAt = engineAt + (r[8] === undefined ? Number(r[5]) + Number(r[7]) : Number(r[8]))
        const replayAt = readAt + Number(r[9])
        restored.push({
          name,
          modulesAt: Math.max(modules.get(name) ?? engineAt, activated.get(name) ?? 0) + offset,
          engineAt: engineAt + offset,
          readAt: readAt + offset,
          replayAt: replayAt + offset,
          restoredAt: replayAt + Number(r[10]) + offset,
          snapshotMs: Number(r[5]),
          logMs: Number(r[7]),
          snapshotBytes: Number(r[4]),
          logEntries: Number(r[6]),
        })
      }
      const part = /^eddy: snapshot part (\d+): (\d+) blobs, (\d+) bytes in ([\d.]+) ms/.exec(line)
      if (part !== null && phase !== "restarted") {
        parts.push({ bytes: Number(part[3]), ms: Number(part[4]) })
      }
      if (name !== "coordinator") return
      const written = /^eddy: snapshot (\d+) written/.exec(line)
      if (written !== null) {
        const s = Number(written[1])
        const c = committedAtEpoch.get(s)
        if (c !== undefined) manifestMs.push(now - c)
        if (phase === "filling" && s >= firstFullSnapshot) {
          snapshot = s
          phase = "armed"
          commitsSinceSnapshot = 0
        }
      }
      const rec = /^eddy: recovered to epoch (\d+)/.exec(line)
      if (rec !== null && phase === "killed") {
        phase = "restarted"
        recoveredTo = Number(rec[1])
      }
      if (/^eddy: opened epoch/.test(line) && phase === "restarted" && openedAt === 0) openedAt = now
      const c = /^eddy: committed epoch (\d+)/.exec(line)
      if (c === null) return
      const e = Number(c[1])
      committedAtEpoch.set(e, now)
      if (phase === "filling" || phase === "armed") commitTimes.push([e, now])
      lastCommitted = e
      if (phase === "armed" && ++commitsSinceSnapshot === killAfter) {
        phase = "killed"
        // Half an epoch later: in the middle of epoch e+1.
        const recent = commitTimes.slice(-5)
        const epochMs = recent.length > 1 ? (recent.at(-1)![1] - recent[0]![1]) / (recent.length - 1) : 100
        setTimeout(() => {
          killedAt = performance.now()
          killedIn = lastCommitted + 1
          live.get(`worker-${victim}`)?.kill("SIGKILL")
        }, epochMs / 2)
      }
      if (phase === "restarted") {
        if (committedAt === 0) committedAt = now
        postCommits.push(now)
        if (postCommits.length === 6) {
          phase = "done"
          live.get("coordinator")?.kill("SIGTERM")
        }
      }
    },
  })
  let r: Awaited<typeof result>
  try {
    r = await result
  } finally {
    rmSync(dir, { recursive: true, force: true })
    await cleanupNamespace(ns)
  }
  if (r.restarts < 1 || committedAt === 0) throw new Error(`expected a restart after the kill, got ${r.restarts} (${r.faults.join("; ")})`)
  if (disturbed) throw new Error(`a second failure after the kill (${r.faults.join("; ")}): ${errors.slice(0, 2).join(" | ")}`)
  if (r.restarts > 1) {
    console.log(`  (${tree.label}, run ${run + 1}: ${r.restarts} restarts: ${r.faults.join("; ")}; the breakdown mixes them, the total is to the first commit after all)`)
    for (const e of errors.slice(0, 5)) console.log(`    ${e.slice(0, 300)}`)
  }
  // Records per second before the kill (the last 10 epochs) and after recovery (5 epochs after the first).
  const before = commitTimes.slice(-11)
  const recordsPerEpoch = 2 * epochAtoms * atom
  const preKillRate = ((before.length - 1) * recordsPerEpoch) / ((before.at(-1)![1] - before[0]![1]) / 1000)
  const postRate = ((postCommits.length - 1) * recordsPerEpoch) / ((postCommits.at(-1)! - postCommits[0]!) / 1000)
  return { killedAt, detectedAt, spawnedAt, restored, openedAt, committedAt, recoveredTo, killedIn, snapshot, parts, manifestMs, preKillRate, postRate }
}

const max = (xs: ReadonlyArray<number>): number => Math.max(...xs)
const s = (ms: number): string => `${(ms / 1000).toFixed(2)} s`

console.log(
  `recovery after SIGKILL: ${workers} workers, ${fmt(actors)} actors (fill admitted by epoch ${fillEpoch}), ${2 * epochAtoms * atom} source records per epoch, ` +
    `snapshot every ${snapshotEvery} epochs, worker-${victim} killed in the middle of the ${killAfter + 1}th epoch after snapshot ${firstFullSnapshot}; ${runs} runs (median [min–max])`,
)
const here: Tree = { label: "this tree", supervise: superviseHere, appSpec: "bench/apps/holders.ts" }
const trees: Tree[] = [here]
if (compare !== undefined) {
  const mod = (await import(join(compare, "runtime/cluster/supervisor.ts"))) as { supervise: typeof superviseHere }
  trees.unshift({ label: `baseline ${compare}`, supervise: mod.supervise, appSpec: join(compare, "bench/apps/holders.ts") })
}
const results = new Map<Tree, Run[]>(trees.map((t) => [t, []]))
for (let i = 0; i < runs; i++) {
  for (const tree of trees) {
    let r: Run
    try {
      r = await once(tree, i)
    } catch (e) {
      console.log(`${tree.label}, run ${i + 1} FAILED: ${e instanceof Error ? e.message : String(e)}`)
      continue
    }
    results.get(tree)!.push(r)
    const t = (x: number) => s(x - r.killedAt)
    console.log(
      `${tree.label}, run ${i + 1}: killed in epoch ${r.killedIn}, recovered to ${r.recoveredTo} from snapshot ${r.snapshot}; detected +${t(r.detectedAt)}, respawned +${t(r.spawnedAt)}, ` +
        `modules +${t(max(r.restored.map((x) => x.modulesAt)))}, connected +${t(max(r.restored.map((x) => x.engineAt)))}, snapshot and log read +${t(max(r.restored.map((x) => x.readAt)))}, ` +
        `replayed +${t(max(r.restored.map((x) => x.replayAt)))}, restored +${t(max(r.restored.map((x) => x.restoredAt)))} ` +
        `(snapshot load ${s(max(r.restored.map((x) => x.snapshotMs)))}, log read ${s(max(r.restored.map((x) => x.logMs)))}), ` +
        `opened +${t(r.openedAt)}, committed +${t(r.committedAt)}`,
    )
  }
}

for (const [tree, all] of results) {
  if (all.length === 0) continue
  console.log(`\n${tree.label}:`)
  const phase = (label: string, f: (r: Run) => number) => {
    const x = summary(all.map(f))
    console.log(`${label.padEnd(58)} ${s(x.median).padStart(8)} [${s(x.min)}–${s(x.max)}]`)
  }
  const last = (r: Run, k: keyof Restored) => max(r.restored.map((x) => x[k] as number))
  console.log(`\n${"phase (each ends when the slowest process finishes it)".padEnd(58)}   median [min–max]`)
  phase("detect the death (supervisor sees the exit)", (r) => r.detectedAt - r.killedAt)
  phase("stop the survivors, spawn every process", (r) => r.spawnedAt - r.detectedAt)
  phase("process start: node + tsx + modules (or standby activated)", (r) => last(r, "modulesAt") - r.spawnedAt)
  phase("connect Kafka, S3, NATS", (r) => last(r, "engineAt") - last(r, "modulesAt"))
  phase("load the snapshot from S3 and read the log from Kafka", (r) => last(r, "readAt") - last(r, "engineAt"))
  phase("  of which: snapshot load (slowest process)", (r) => last(r, "snapshotMs"))
  phase("  of which: log read (slowest process)", (r) => last(r, "logMs"))
  phase("replay the log onto the snapshot", (r) => last(r, "replayAt") - last(r, "readAt"))
  phase("restore tables, fence, egress", (r) => last(r, "restoredAt") - last(r, "replayAt"))
  phase("ready → first epoch opened", (r) => r.openedAt - last(r, "restoredAt"))
  phase("first epoch → COMMIT", (r) => r.committedAt - r.openedAt)
  phase("TOTAL: kill → first commit", (r) => r.committedAt - r.killedAt)
  const bytes = summary(all.map((r) => max(r.restored.map((x) => x.snapshotBytes))))
  const entries = summary(all.map((r) => max(r.restored.map((x) => x.logEntries))))
  console.log(`\nsnapshot read by the slowest process: ${(bytes.median / 1048576).toFixed(1)} MiB; log entries read: ${entries.median}`)
  const partBytes = summary(all.flatMap((r) => r.parts.map((p) => p.bytes)))
  const partMs = summary(all.flatMap((r) => r.parts.map((p) => p.ms)))
  const manifest = summary(all.flatMap((r) => r.manifestMs))
  console.log(`snapshot part per worker: ${(partBytes.median / 1048576).toFixed(1)} MiB [${(partBytes.min / 1048576).toFixed(1)}–${(partBytes.max / 1048576).toFixed(1)}], fold + upload ${partMs.median.toFixed(0)} ms [${partMs.min.toFixed(0)}–${partMs.max.toFixed(0)}]`)
  console.log(`COMMIT(S) → manifest written: ${manifest.median.toFixed(0)} ms [${manifest.min.toFixed(0)}–${manifest.max.toFixed(0)}]`)
  const pre = summary(all.map((r) => r.preKillRate))
  const post = summary(all.map((r) => r.postRate))
  console.log(`source records/s before the kill ${fmt(pre.median)} [${fmt(pre.min)}–${fmt(pre.max)}], after recovery ${fmt(post.median)} [${fmt(post.min)}–${fmt(post.max)}]`)
}

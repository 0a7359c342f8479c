// The actor ping-pong on a local cluster (coordinator + W worker processes over NATS, Kafka log, S3) for W = 1, 2, 4:
// messages/s from the first epoch to the coordinator's end, commit latency (last vote → COMMIT durable in Kafka)
// and epoch time p50/p99, snapshot parts (bytes and fold + upload time per worker) and COMMIT(S) → manifest written.
// Process start-up is excluded. Runs of each W are interleaved (W = 1, 2, 4, 1, 2, 4, ...) so load drifts on a
// shared machine hit every W alike. Needs the servers: npm run infra:up.
//
//   node --import tsx bench/cluster.ts [--runs 5] [--pairs 10000] [--rounds 20] [--workers 1,2,4] [--epoch-atoms 2000]
//        [--snapshot-every 5]
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { supervise } from "../runtime/cluster/supervisor.ts"
import { parseFlags } from "../runtime/cli/main.ts"
import { cleanupNamespace } from "./cleanup.ts"
import { fmt, percentile, summary } from "./stats.ts"

const { flags } = parseFlags(process.argv.slice(2))
const str = (name: string, d: string) => (typeof flags[name] === "string" ? (flags[name] as string) : d)
const runs = Number(str("runs", "5"))
const pairs = Number(str("pairs", "10000"))
const rounds = Number(str("rounds", "20"))
const epochAtoms = str("epoch-atoms", "2000")
const workers = str("workers", "1,2,4").split(",").map(Number)
const snapshotEvery = str("snapshot-every", "5")
const messages = pairs * rounds * 2

interface Run {
  readonly seconds: number
  readonly commitMs: number[]
  readonly epochMs: number[]
  readonly parts: Array<{ readonly bytes: number; readonly ms: number }>
  readonly manifestMs: number[]
}

const once = async (w: number): Promise<Run> => {
  const dir = mkdtempSync(join(tmpdir(), "eddy-bench-cluster-"))
  let start = 0
  let end = 0
  const ns = `bench-pp-${w}-${Date.now().toString(36)}`
  const commitMs: number[] = []
  const epochMs: number[] = []
  const parts: Array<{ bytes: number; ms: number }> = []
  const manifestMs: number[] = []
  const committedAt = new Map<number, number>()
  const result = await supervise({
    appSpec: "bench/apps/pingpong.ts",
    partitions: w,
    namespace: ns,
    dataDir: dir,
    flags: ["--pairs", String(pairs), "--rounds", String(rounds), "--epoch-atoms", epochAtoms, "--snapshot-every", snapshotEvery, "--unchecked"],
    maxRestarts: 0,
    // No standbys: nothing restarts here, and their start-up would load the machine during the measurement.
    standbyAfterMs: -1,
    env: { ...process.env, EDDY_PROGRESS: "1", AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: "true" },
    onLine: (name, _s, line) => {
      const part = /^eddy: snapshot part \d+: \d+ blobs, (\d+) bytes in ([\d.]+) ms/.exec(line)
      if (part !== null) parts.push({ bytes: Number(part[1]), ms: Number(part[2]) })
      if (name !== "coordinator") return
      const written = /^eddy: snapshot (\d+) written/.exec(line)
      const at = written === null ? undefined : committedAt.get(Number(written[1]))
      if (at !== undefined) manifestMs.push(performance.now() - at)
      if (line.startsWith("eddy: opened epoch 1") && start === 0) start = performance.now()
      const m = /^eddy: committed epoch (\d+) \(epoch ([\d.]+) ms, commit ([\d.]+) ms\)/.exec(line)
      if (m !== null) {
        committedAt.set(Number(m[1]), performance.now())
        epochMs.push(Number(m[2]))
        commitMs.push(Number(m[3]))
        end = performance.now()
      }
    },
  })
  rmSync(dir, { recursive: true, force: true })
  await cleanupNamespace(ns)
  if (result.restarts > 0) throw new Error(`the cluster restarted during the benchmark: ${result.faults.join("; ")}`)
  return { seconds: (end - start) / 1000, commitMs, epochMs, parts, manifestMs }
}

console.log(
  `cluster ping-pong: ${fmt(pairs)} pairs × ${rounds * 2} messages = ${fmt(messages)} messages, unchecked, --epoch-atoms ${epochAtoms}, ` +
    `snapshot every ${snapshotEvery} epochs; ${runs} runs of each, interleaved (median [min–max]; latencies over all epochs of all runs)`,
)
const results = new Map<number, Run[]>(workers.map((w) => [w, []]))
// A run that fails (the shared servers are sometimes restarted by other test suites) is reported and retried.
const attempt = async (w: number): Promise<Run> => {
  for (let tries = 1; ; tries++) {
    try {
      return await once(w)
    } catch (e) {
      console.log(`(${w} worker(s): run failed, ${tries < 3 ? "retrying" : "giving up"}: ${e instanceof Error ? e.message : String(e)})`)
      if (tries >= 3) throw e
    }
  }
}
for (let i = 0; i < runs; i++) for (const w of workers) results.get(w)!.push(await attempt(w))
const ms = (x: number) => x.toFixed(1)
console.log("| workers | messages/s | ratio to 1st | commit p50 / p99 (ms) | epoch p50 / p99 (ms) | epochs/run | snapshot part per worker | fold + upload per part p50 / p99 (ms) | COMMIT(S) → manifest p50 / p99 (ms) |")
console.log("|---|---|---|---|---|---|---|---|---|")
let base: number | undefined
for (const w of workers) {
  const rs = results.get(w)!
  const tput = summary(rs.map((r) => messages / r.seconds))
  base ??= tput.median
  const commit = rs.flatMap((r) => r.commitMs)
  const epoch = rs.flatMap((r) => r.epochMs)
  const parts = rs.flatMap((r) => r.parts)
  const manifest = rs.flatMap((r) => r.manifestMs)
  const partBytes = summary(parts.map((p) => p.bytes)).median
  const kib = parts.length === 0 ? "—" : partBytes >= 1048576 ? `${(partBytes / 1048576).toFixed(2)} MiB` : `${(partBytes / 1024).toFixed(0)} KiB`
  const upload = parts.length === 0 ? "—" : `${ms(percentile(parts.map((p) => p.ms), 50))} / ${ms(percentile(parts.map((p) => p.ms), 99))}`
  const man = manifest.length === 0 ? "—" : `${ms(percentile(manifest, 50))} / ${ms(percentile(manifest, 99))}`
  console.log(
    `| ${w} | ${fmt(tput.median)} [${fmt(tput.min)}–${fmt(tput.max)}] | ${(tput.median / base).toFixed(2)} | ${ms(percentile(commit, 50))} / ${ms(percentile(commit, 99))} | ` +
      `${ms(percentile(epoch, 50))} / ${ms(percentile(epoch, 99))} | ${epoch.length / runs} | ${kib} | ${upload} | ${man} |`,
  )
}

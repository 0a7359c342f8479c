// The actor ping-pong on a local cluster (coordinator + W worker processes over NATS, Kafka log, S3) for W = 1, 2, 4:
// messages/s from the first epoch to the coordinator's end, commit latency (last vote → COMMIT durable in Kafka)
// and epoch time p50/p99. Process start-up is excluded. Needs the servers: npm run infra:up.
//
//   node --import tsx bench/cluster.ts [--runs 3] [--pairs 10000] [--rounds 20] [--workers 1,2,4] [--epoch-atoms 2000]
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { supervise } from "../runtime/cluster/supervisor.ts"
import { parseFlags } from "../runtime/cli/main.ts"
import { fmt, percentile, summary } from "./stats.ts"

const { flags } = parseFlags(process.argv.slice(2))
const str = (name: string, d: string) => (typeof flags[name] === "string" ? (flags[name] as string) : d)
const runs = Number(str("runs", "3"))
const pairs = Number(str("pairs", "10000"))
const rounds = Number(str("rounds", "20"))
const epochAtoms = str("epoch-atoms", "2000")
const workers = str("workers", "1,2,4").split(",").map(Number)
const messages = pairs * rounds * 2

interface Run {
  readonly seconds: number
  readonly commitMs: number[]
  readonly epochMs: number[]
}

const once = async (w: number): Promise<Run> => {
  const dir = mkdtempSync(join(tmpdir(), "eddy-bench-cluster-"))
  let start = 0
  let end = 0
  const commitMs: number[] = []
  const epochMs: number[] = []
  const result = await supervise({
    appSpec: "bench/apps/pingpong.ts",
    partitions: w,
    namespace: `bench-pp-${w}-${Date.now().toString(36)}`,
    dataDir: dir,
    flags: ["--pairs", String(pairs), "--rounds", String(rounds), "--epoch-atoms", epochAtoms, "--unchecked"],
    maxRestarts: 0,
    env: { ...process.env, EDDY_PROGRESS: "1" },
    onLine: (name, _s, line) => {
      if (name !== "coordinator") return
      if (line.startsWith("eddy: opened epoch 1") && start === 0) start = performance.now()
      const m = /^eddy: committed epoch \d+ \(epoch ([\d.]+) ms, commit ([\d.]+) ms\)/.exec(line)
      if (m !== null) {
        epochMs.push(Number(m[1]))
        commitMs.push(Number(m[2]))
        end = performance.now()
      }
    },
  })
  rmSync(dir, { recursive: true, force: true })
  if (result.restarts > 0) throw new Error(`the cluster restarted during the benchmark: ${result.faults.join("; ")}`)
  return { seconds: (end - start) / 1000, commitMs, epochMs }
}

console.log(`cluster ping-pong: ${fmt(pairs)} pairs × ${rounds * 2} messages = ${fmt(messages)} messages, unchecked, ${runs} runs each (median [min–max])`)
let base: number | undefined
for (const w of workers) {
  const rs: Run[] = []
  for (let i = 0; i < runs; i++) rs.push(await once(w))
  const tput = summary(rs.map((r) => messages / r.seconds))
  base ??= tput.median
  const commit = rs.flatMap((r) => r.commitMs)
  const epoch = rs.flatMap((r) => r.epochMs)
  console.log(
    `${String(w).padStart(2)} worker(s): ${fmt(tput.median).padStart(8)} messages/s [${fmt(tput.min)}–${fmt(tput.max)}]  ratio to 1 worker ${(tput.median / base).toFixed(2)}` +
      `  commit p50 ${percentile(commit, 50).toFixed(1)} ms p99 ${percentile(commit, 99).toFixed(1)} ms  epoch p50 ${percentile(epoch, 50).toFixed(1)} ms p99 ${percentile(epoch, 99).toFixed(1)} ms (${epoch.length / runs} epochs/run)`,
  )
}

// An Eddy app of the benchmark served over HTTP, as its own process (so its CPU and memory are measured apart):
//   node --import tsx bench/lib/eddyServer.ts --workload counter --data-dir DIR [--epoch-ms 10] [--checked]
//     [--initial 1000] [--stock 100] [--snapshot-every N]
// EDDY_BENCH_TIMING=1 prints, each second, where an epoch's time goes (open → durable, commit, durable → next open).
// Prints "url <url>" once it listens; stops at the next epoch boundary on SIGTERM; SIGUSR2: "commits <n>".
import { parseArgs } from "node:util"
import { Eddy } from "eddy/runtime"
import { eddyAppFor, eddyRunOptions } from "./eddyApps.ts"
import type { WorkloadConfig } from "./workloads.ts"

const { values } = parseArgs({
  options: {
    workload: { type: "string" },
    "data-dir": { type: "string" },
    "epoch-ms": { type: "string", default: "10" },
    checked: { type: "boolean", default: false },
    initial: { type: "string", default: "1000" },
    stock: { type: "string", default: "100" },
    "snapshot-every": { type: "string" },
  },
})
const app = eddyAppFor({ workload: values.workload as WorkloadConfig["workload"], initial: Number(values.initial), stock: Number(values.stock) })
// SIGUSR2 prints how many epochs have committed so far (the harness asks at the start and end of its window).
let commits = 0
process.on("SIGUSR2", () => process.stdout.write(`commits ${commits}\n`))
// EDDY_BENCH_TIMING=1: per-second means of where an epoch's time goes (stderr).
const timingOn = process.env["EDDY_BENCH_TIMING"] === "1"
const tm = { n: 0, epoch: 0, commit: 0, gap: 0, lastCommit: 0, openAt: 0, at: performance.now() }
const onOpen = (): void => {
  if (!timingOn) return
  tm.openAt = performance.now()
  if (tm.lastCommit > 0) tm.gap += tm.openAt - tm.lastCommit
}
const onCommitT = (timing: { commitMs: number; epochMs: number }): void => {
  commits++
  if (!timingOn) return
  const now = performance.now()
  tm.n++
  tm.epoch += timing.epochMs
  tm.commit += timing.commitMs
  tm.lastCommit = now
  if (now - tm.at > 1000) {
    process.stderr.write(`[timing] ${tm.n} epochs/s: open→durable ${(tm.epoch / tm.n).toFixed(2)} ms (of which last vote→durable ${(tm.commit / tm.n).toFixed(2)}), durable→next open ${(tm.gap / tm.n).toFixed(2)} ms\n`)
    Object.assign(tm, { n: 0, epoch: 0, commit: 0, gap: 0, at: now })
  }
}
const running = Eddy.start(app, { onOpen, ...(timingOn ? { onSnapshotPart: (e: number, st: { blobs: number; bytes: number; ms: number }) => process.stderr.write(`[timing] snapshot part of epoch ${e}: ${st.blobs} blobs, ${st.bytes} bytes, ${st.ms.toFixed(1)} ms\n`) } : {}), onCommit: (_e, _v, t) => onCommitT(t), ...eddyRunOptions({ dataDir: values["data-dir"]!, epochMs: Number(values["epoch-ms"]), checked: values.checked, ...(values["snapshot-every"] === undefined ? {} : { snapshotEvery: Number(values["snapshot-every"]) }) }), serve: { port: 0 } })
running.done.catch((err: unknown) => {
  process.stderr.write(`eddy server failed: ${err instanceof Error ? err.stack : String(err)}\n`)
  process.exit(1)
})
process.on("SIGTERM", () => {
  void running.stop().then(() => process.exit(0))
})
process.stdout.write(`url ${await running.url!}\n`)

// An Eddy app of the benchmark served over HTTP, as its own process (so its CPU and memory are measured apart):
//   node --import tsx bench/lib/eddyServer.ts --workload counter --data-dir DIR [--epoch-ms 10] [--checked]
//     [--initial 1000] [--stock 100] [--snapshot-every N]
//     [--kafka-requests T --kafka-replies T --kafka-partitions N]   (requests through Kafka topics too)
// EDDY_BENCH_TIMING=1 prints, each second, where an epoch's time goes (open → durable, its commit part) and how many
// epochs opened while the previous COMMIT was written (pipelined).
// EDDY_BENCH_ALLOC=<file>[,<from s>,<for s>] writes a sampling heap profile of everything allocated (objects the
// collector freed too) from 3 s after start for 5 s (or as given): where the garbage comes from. Read it with
// bench/alloc.ts.
// Prints "url <url>" once it listens; stops at the next epoch boundary on SIGTERM; SIGUSR2: "commits <n>".
import { parseArgs } from "node:util"
import { Eddy } from "eddy/runtime"
import { startAllocProfileFromEnv } from "./allocProfile.ts"
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
    "kafka-requests": { type: "string" },
    "kafka-replies": { type: "string" },
    "kafka-partitions": { type: "string", default: "4" },
  },
})
const kafka = values["kafka-requests"] === undefined ? undefined : { requests: values["kafka-requests"], replies: values["kafka-replies"]!, partitions: Number(values["kafka-partitions"]) }
const app = eddyAppFor({ workload: values.workload as WorkloadConfig["workload"], initial: Number(values.initial), stock: Number(values.stock) }, kafka)
// SIGUSR2 prints how many epochs have committed so far (the harness asks at the start and end of its window).
let commits = 0
process.on("SIGUSR2", () => process.stdout.write(`commits ${commits}\n`))
// EDDY_BENCH_TIMING=1: per-second means of where an epoch's time goes (stderr).
const timingOn = process.env["EDDY_BENCH_TIMING"] === "1"
const tm = { n: 0, epoch: 0, commit: 0, pipelined: 0, committed: 0, at: performance.now() }
const onOpen = (e: number): void => {
  // Opened while the previous epoch's COMMIT was still being written.
  if (timingOn && e > tm.committed + 1) tm.pipelined++
}
const onCommitT = (e: number, timing: { commitMs: number; epochMs: number }): void => {
  commits++
  if (!timingOn) return
  const now = performance.now()
  tm.committed = e
  tm.n++
  tm.epoch += timing.epochMs
  tm.commit += timing.commitMs
  if (now - tm.at > 1000) {
    process.stderr.write(`[timing] ${tm.n} epochs/s: open→durable ${(tm.epoch / tm.n).toFixed(2)} ms (of which last vote→durable ${(tm.commit / tm.n).toFixed(2)}), opened while the previous COMMIT was written: ${((100 * tm.pipelined) / tm.n).toFixed(0)}%\n`)
    Object.assign(tm, { n: 0, epoch: 0, commit: 0, pipelined: 0, at: now })
  }
}
const running = Eddy.start(app, { onOpen, ...(timingOn ? { onSnapshotPart: (e: number, st: { blobs: number; bytes: number; ms: number }) => process.stderr.write(`[timing] snapshot part of epoch ${e}: ${st.blobs} blobs, ${st.bytes} bytes, ${st.ms.toFixed(1)} ms\n`) } : {}), onCommit: (e, _v, t) => onCommitT(e, t), ...eddyRunOptions({ dataDir: values["data-dir"]!, epochMs: Number(values["epoch-ms"]), checked: values.checked, ...(values["snapshot-every"] === undefined ? {} : { snapshotEvery: Number(values["snapshot-every"]) }) }), serve: { port: 0 } })
running.done.catch((err: unknown) => {
  process.stderr.write(`eddy server failed: ${err instanceof Error ? err.stack : String(err)}\n`)
  process.exit(1)
})
process.on("SIGTERM", () => {
  void running.stop().then(() => process.exit(0))
})
process.stdout.write(`url ${await running.url!}\n`)

await startAllocProfileFromEnv()

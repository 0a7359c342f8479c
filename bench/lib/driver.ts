// One measured run of the closed-loop client, as its own process (started by bench/run.ts):
//   node --import tsx bench/lib/driver.ts '<DriverConfig as JSON>'
// Writes "start" and "end" lines around the measured window (the parent samples every process's CPU there), then
// one line "result <DriverResult as JSON>".
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { Client } from "../../client/index.ts"
import { Eddy } from "eddy/runtime"
import { percentiles } from "../stats.ts"
import { eddyAppFor, eddyRunOptions } from "./eddyApps.ts"
import { EddyInvoker, RestateInvoker } from "./invokers.ts"
import type { KafkaClientOptions } from "../../client/index.ts"
import { closedLoop } from "./loop.ts"
import { makeWorkload, type Invoker, type WorkloadConfig } from "./workloads.ts"

export type SystemName = "eddy" | "eddy-local" | "eddy-cluster" | "eddy-kafka" | "restate"

export interface DriverConfig {
  readonly system: SystemName
  /** Restate's ingress or the Eddy app's HTTP endpoint; none for eddy-local (the app runs in the driver). */
  readonly url?: string
  /** Restate's admin API (state queries for verification). */
  readonly admin?: string
  /** eddy-cluster: the deployment's namespace (Client.nats). */
  readonly namespace?: string
  /** eddy-kafka: the app's requests and replies topics. */
  readonly kafka?: Required<Pick<KafkaClientOptions, "brokers" | "requests" | "replies">>
  readonly workload: WorkloadConfig
  readonly concurrency: number
  readonly seconds: number
  readonly maxCalls: number
  readonly warmupSeconds: number
  readonly epochMs: number
  readonly checked: boolean
  readonly snapshotEvery?: number
  /** A Restate call (or state query) unanswered this long fails; fib(20) is 21,891 invocations and takes minutes. */
  readonly callTimeoutMs: number
}

export interface DriverResult {
  readonly calls: number
  readonly errors: number
  readonly firstError?: string
  readonly seconds: number
  readonly p50: number
  readonly p95: number
  readonly p99: number
  readonly invocationsPerCall: number
  readonly verdict: string
  readonly extra: Readonly<Record<string, number>>
}

const config = JSON.parse(process.argv[2]!) as DriverConfig
const c = config.concurrency
let invoker: Invoker
let close: () => Promise<void>
if (config.system === "restate") {
  const r = new RestateInvoker(config.url!, c, config.admin, config.callTimeoutMs)
  invoker = r
  close = async () => r.close()
} else if (config.system === "eddy") {
  const client = Client.http(config.url!, { maxSockets: Math.max(c, 64) })
  invoker = new EddyInvoker(client)
  close = () => client.close()
} else if (config.system === "eddy-kafka") {
  const client = await Client.kafka({ ...config.kafka!, timeoutMs: config.callTimeoutMs })
  invoker = new EddyInvoker(client)
  close = () => client.close()
} else if (config.system === "eddy-cluster") {
  const client = await Client.nats({ namespace: config.namespace!, timeoutMs: 60_000 })
  invoker = new EddyInvoker(client)
  close = () => client.close()
} else {
  const dataDir = mkdtempSync(join(tmpdir(), "eddy-bench-local-"))
  const running = Eddy.start(eddyAppFor(config.workload), { ...eddyRunOptions({ dataDir, epochMs: config.epochMs, checked: config.checked, ...(config.snapshotEvery === undefined ? {} : { snapshotEvery: config.snapshotEvery }) }), stopWhenIdle: false })
  invoker = new EddyInvoker(running.client)
  close = async () => {
    await running.stop()
    rmSync(dataDir, { recursive: true, force: true })
  }
}

const workload = makeWorkload(config.workload)
if (config.warmupSeconds > 0) await closedLoop(invoker, workload, { concurrency: c, seconds: config.warmupSeconds, maxCalls: config.maxCalls })
process.stdout.write("start\n")
const run = await closedLoop(invoker, workload, { concurrency: c, seconds: config.seconds, maxCalls: config.maxCalls })
process.stdout.write("end\n")
let verdict: string
try {
  verdict = run.errors > 0 ? `not verified: ${run.errors} calls failed (outcome unknown)` : await workload.verify(invoker, Math.max(c, 64))
} catch (err) {
  verdict = `FAILED: ${err instanceof Error ? err.message : String(err)}`
}
const [p50, p95, p99] = percentiles(run.latencies, [50, 95, 99])
const result: DriverResult = {
  calls: run.calls,
  errors: run.errors,
  ...(run.firstError === undefined ? {} : { firstError: run.firstError }),
  seconds: run.seconds,
  p50: p50!,
  p95: p95!,
  p99: p99!,
  invocationsPerCall: workload.invocationsPerCall,
  verdict,
  extra: workload.extra(),
}
process.stdout.write(`result ${JSON.stringify(result)}\n`)
await close()
process.exit(0)

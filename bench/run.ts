// Eddy side by side with Restate: closed-loop clients over the same workloads, medians over several runs.
//
//   npm run bench -- <counter|fib|bank|cart> [--vs restate] [--runs 5] [--c 1,64,256] [--seconds 5]
//     counter: [--keys 1000,100000] [--dist uniform,zipf]        fib: [--n 15,20]
//     bank:    [--keys 10000] [--initial 1000,20] [--dist ...]   cart: [--keys 1000] [--items 200] [--stock 100]
//     [--warmup 1] [--max-calls 2000000] [--epoch-ms 10] [--checked] [--eddy-local] [--no-eddy] [--seed 1]
//     [--snapshot-every N]   (Eddy's snapshot interval in epochs; default Eddy's own: 100 epochs, at most every 5 s)
//     [--call-timeout S]   (a Restate call or state query unanswered this long fails the call; default 120, fib 900)
//     [--profile DIR]   (the Eddy server runs with --cpu-prof, profiles written to DIR; the client driver to DIR/client)
//     [--eddy-kafka]   (counter: also Eddy embedded taking the requests from a Kafka topic and answering on another,
//                       driven through Client.kafka, a Produce per tick; its broker's CPU is counted. Needs npm run infra:up)
//     [--kafka-window N]   (eddy-kafka: N requests in flight instead of the row's C, as a high-volume producer has)
//     [--eddy-cluster W]   (also Eddy as a local cluster: a coordinator and W workers over NATS, Kafka log, S3
//                           snapshots; driven by Client.nats. Needs the servers: npm run infra:up)
//   EDDY_SERVER_NODE_ARGS="--trace-gc ...": node flags for the embedded Eddy server; its stdout is then echoed to
//                           stderr, prefixed [server] (so --trace-gc's lines show)
//
// Every run starts fresh processes: Eddy (the app embedded, file log with fsync at each commit, HTTP endpoint) or
// Restate (restate-server + the SDK endpoint), and a client process running the closed loop over loopback HTTP with
// keep-alive connections (Eddy: Client.http; Restate: its ingress). `--eddy-local` adds Eddy driven in-process
// (running.client, no HTTP; client and engine share one process). Systems alternate run by run, so load on the
// shared machine hits both alike. CPU is each process's user+system time inside the measured window (from /proc),
// per 1k operations (fib: per 1k actor invocations); peak RSS is each process's VmHWM.
import { spawn } from "node:child_process"
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { parseArgs } from "node:util"
import { fmt, summary } from "./stats.ts"
import type { DriverConfig, DriverResult, SystemName } from "./lib/driver.ts"
import { cpuSeconds, peakRssMb } from "./lib/procstat.ts"
import type { Distribution } from "./lib/random.ts"
import { connect } from "@nats-io/transport-node"
import "../kafkajs/kafkajsAbortFix.ts"
import { Kafka, logLevel as kafkaLogLevel } from "kafkajs"
import { createTopicsReady } from "../runtime/cluster/kafkaCreateTopics.ts"
import { clientSubjects } from "../client/subjects.ts"
import { readEndpoints } from "../runtime/config/Endpoints.ts"
import { supervise } from "../runtime/cluster/supervisor.ts"
import { startRestate } from "./restate/server.ts"
import type { WorkloadConfig } from "./lib/workloads.ts"
import { hostLine } from "./lib/hostSpeed.ts"

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    vs: { type: "string" },
    runs: { type: "string", default: "5" },
    c: { type: "string" },
    keys: { type: "string" },
    dist: { type: "string" },
    n: { type: "string", default: "15,20" },
    initial: { type: "string", default: "1000,20" },
    items: { type: "string", default: "200" },
    stock: { type: "string", default: "100" },
    seconds: { type: "string", default: "5" },
    warmup: { type: "string", default: "1" },
    "max-calls": { type: "string", default: "2000000" },
    "epoch-ms": { type: "string", default: "10" },
    checked: { type: "boolean", default: false },
    "eddy-local": { type: "boolean", default: false },
    "no-eddy": { type: "boolean", default: false },
    seed: { type: "string", default: "1" },
    profile: { type: "string" },
    "snapshot-every": { type: "string" },
    "eddy-cluster": { type: "string" },
    "eddy-kafka": { type: "boolean", default: false },
    "kafka-window": { type: "string" },
    "call-timeout": { type: "string" },
  },
})

const workloadName = positionals[0] as WorkloadConfig["workload"] | undefined
if (workloadName === undefined || !["counter", "fib", "bank", "cart"].includes(workloadName)) {
  process.stderr.write("usage: npm run bench -- <counter|fib|bank|cart> [--vs restate] [--runs N] [--c 1,64,256] ... (see bench/run.ts)\n")
  process.exit(2)
}
const list = (s: string): number[] => s.split(",").map(Number)
const runs = Number(values.runs)
const defaults: Record<WorkloadConfig["workload"], { c: string; keys: string; dist: string }> = {
  counter: { c: "1,64,256", keys: "1000,100000", dist: "uniform,zipf" },
  fib: { c: "1,64", keys: "1", dist: "uniform" },
  bank: { c: "64", keys: "10000", dist: "uniform,zipf" },
  cart: { c: "64", keys: "1000", dist: "uniform" },
}
const d = defaults[workloadName]
const systems: SystemName[] = [
  ...(values["no-eddy"] ? [] : (["eddy"] as const)),
  ...(values["eddy-local"] ? (["eddy-local"] as const) : []),
  ...(values["eddy-cluster"] !== undefined ? (["eddy-cluster"] as const) : []),
  ...(values["eddy-kafka"] ? (["eddy-kafka"] as const) : []),
  ...(values.vs === "restate" ? (["restate"] as const) : []),
]
if (values.vs !== undefined && values.vs !== "restate") throw new Error(`--vs ${values.vs}: only restate is supported`)

interface Variant {
  readonly label: string
  readonly workload: WorkloadConfig
  readonly concurrency: number
}

const variants: Variant[] = []
for (const keys of list(values.keys ?? d.keys))
  for (const dist of (values.dist ?? d.dist).split(",") as Distribution[])
    for (const n of workloadName === "fib" ? list(values.n) : [0])
      for (const initial of workloadName === "bank" ? list(values.initial) : [1000])
        for (const concurrency of list(values.c ?? d.c)) {
          const workload: WorkloadConfig = { workload: workloadName, keys, distribution: dist, n, initial, items: Number(values.items), stock: Number(values.stock), seed: Number(values.seed) }
          const what =
            workloadName === "counter"
              ? `K=${fmt(keys)} ${dist}`
              : workloadName === "fib"
                ? `fib(${n})`
                : workloadName === "bank"
                  ? `${fmt(keys)} accounts, start ${initial}, ${dist}`
                  : `${keys} users, ${values.items} items × ${values.stock}, ${dist}`
          variants.push({ label: `${what}, C=${concurrency}`, workload, concurrency })
        }

interface Proc {
  readonly name: string
  readonly pid: number
}

interface RunRecord {
  readonly result: DriverResult
  readonly cpuPer1k: Readonly<Record<string, number>>
  readonly rssMb: Readonly<Record<string, number>>
  /** Eddy (served): epochs committed per second in the window. */
  readonly epochsPerSecond?: number
}

const lines = (stream: NodeJS.ReadableStream, on: (line: string) => void) => {
  let buf = ""
  stream.on("data", (chunk: Buffer) => {
    buf += chunk.toString()
    let i: number
    while ((i = buf.indexOf("\n")) >= 0) {
      on(buf.slice(0, i))
      buf = buf.slice(i + 1)
    }
  })
}

const startEddy = async (w: WorkloadConfig, kafka?: { readonly requests: string; readonly replies: string }): Promise<{ url: string; procs: Proc[]; commits: () => Promise<number>; stop: () => Promise<void> }> => {
  const dataDir = mkdtempSync(join(tmpdir(), "eddy-bench-server-"))
  const kafkaFlags = kafka === undefined ? [] : ["--kafka-requests", kafka.requests, "--kafka-replies", kafka.replies, "--kafka-partitions", String(KAFKA_PARTITIONS)]
  const child = spawn(
    process.execPath,
    [...(values.profile === undefined ? [] : ["--cpu-prof", "--cpu-prof-dir", values.profile]), ...(process.env["EDDY_SERVER_NODE_ARGS"]?.split(" ").filter((a) => a !== "") ?? []), "--import", "tsx", join(import.meta.dirname, "lib", "eddyServer.ts"), "--workload", w.workload, "--data-dir", dataDir, "--epoch-ms", values["epoch-ms"], "--initial", String(w.initial), "--stock", String(w.stock), ...(values.checked ? ["--checked"] : []), ...(values["snapshot-every"] === undefined ? [] : ["--snapshot-every", values["snapshot-every"]]), ...kafkaFlags],
    { stdio: ["ignore", "pipe", "inherit"] },
  )
  const asked: Array<(n: number) => void> = []
  const url = await new Promise<string>((resolve, reject) => {
    lines(child.stdout, (l) => {
      if (l.startsWith("url ")) resolve(l.slice(4))
      else if (l.startsWith("commits ")) asked.shift()?.(Number(l.slice(8)))
      else if (process.env["EDDY_SERVER_NODE_ARGS"] !== undefined) process.stderr.write(`[server] ${l}\n`)
    })
    child.once("exit", (code) => reject(new Error(`eddy server exited with ${code}`)))
  })
  return {
    url,
    procs: [{ name: "eddy", pid: child.pid! }],
    commits: () =>
      new Promise<number>((resolve) => {
        asked.push(resolve)
        child.kill("SIGUSR2")
      }),
    stop: async () => {
      if (child.exitCode === null) {
        const exited = new Promise((r) => child.once("exit", r))
        child.kill("SIGTERM")
        const t = setTimeout(() => child.kill("SIGKILL"), 10_000)
        await exited
        clearTimeout(t)
      }
      rmSync(dataDir, { recursive: true, force: true })
    },
  }
}

/** A local cluster serving the workload over NATS (no standbys: they would only cost CPU here). */
const startEddyCluster = async (w: WorkloadConfig, workers: number): Promise<{ namespace: string; procs: Proc[]; stop: () => Promise<void> }> => {
  const dataDir = mkdtempSync(join(tmpdir(), "eddy-bench-cluster-"))
  const namespace = `bench-${w.workload}-${Date.now().toString(36)}${Math.floor(Math.random() * 1e6).toString(36)}`
  const procs: Proc[] = []
  const stopping = new AbortController()
  let failed: string | undefined
  const running = supervise({
    appSpec: join(import.meta.dirname, "lib", "servedApp.ts"),
    partitions: workers,
    namespace,
    dataDir,
    flags: ["--serve", ...(values.checked ? [] : ["--unchecked"]), "--epoch-ms", values["epoch-ms"], "--workload", w.workload, "--initial", String(w.initial), "--stock", String(w.stock), ...(values["snapshot-every"] === undefined ? [] : ["--snapshot-every", values["snapshot-every"]])],
    maxRestarts: 0,
    standbyAfterMs: -1,
    signal: stopping.signal,
    log: (l) => (failed ??= l),
    onStart: (name, child) => procs.push({ name, pid: child.pid! }),
    onLine: (name, stream, line) => {
      if (stream === "stderr" && /fail|error/i.test(line)) process.stderr.write(`${name}: ${line}\n`)
    },
  }).catch((err: unknown) => {
    failed ??= String(err)
    return undefined
  })
  const stop = async () => {
    stopping.abort()
    await running
    rmSync(dataDir, { recursive: true, force: true })
  }
  // Ready once some worker answers `info` after the first epoch: every partition has joined by then.
  const nc = await connect({ servers: readEndpoints().nats.url })
  try {
    const deadline = Date.now() + 60_000
    for (;;) {
      if (failed !== undefined) throw new Error(`the Eddy cluster did not start: ${failed}`)
      try {
        const m = await nc.request(clientSubjects(namespace).info, '{"json":{}}', { timeout: 1_000 })
        if (((JSON.parse(m.string()) as { json?: { epoch?: number } }).json?.epoch ?? 0) >= 1) break
      } catch {
        // not up yet
      }
      if (Date.now() > deadline) throw new Error("the Eddy cluster did not answer within 60 s")
      await new Promise((r) => setTimeout(r, 200))
    }
  } catch (err) {
    await stop()
    throw err
  } finally {
    await nc.close()
  }
  return { namespace, procs: [...procs], stop }
}

const KAFKA_PARTITIONS = 4
/** Requests in flight for eddy-kafka (a producer's window), instead of the row's C. */
const kafkaWindow = values["kafka-window"] === undefined ? undefined : Number(values["kafka-window"])
const concurrencyOf = (system: SystemName, v: Variant): number => (system === "eddy-kafka" && kafkaWindow !== undefined ? kafkaWindow : v.concurrency)

/** Fresh requests and replies topics for one run (removed after it). */
const createRequestTopics = async () => {
  const kafka = new Kafka({ clientId: "eddy-bench-admin", brokers: [...readEndpoints().kafka.brokers], logLevel: kafkaLogLevel.NOTHING })
  const admin = kafka.admin()
  await admin.connect()
  const id = `${Date.now().toString(36)}${Math.floor(Math.random() * 1e6).toString(36)}`
  const requests = `bench-requests-${id}`
  const replies = `bench-replies-${id}`
  try {
    await createTopicsReady(admin, [requests, replies].map((topic) => ({ topic, numPartitions: KAFKA_PARTITIONS })))
  } finally {
    await admin.disconnect()
  }
  const remove = async () => {
    const a = kafka.admin()
    await a.connect()
    await a.deleteTopics({ topics: [requests, replies] }).catch(() => undefined)
    await a.disconnect()
  }
  return { requests, replies, remove }
}

/** The Kafka broker `npm run infra:up` started (its CPU and memory count for the runs that use it). */
const brokerProc = (): Proc[] => {
  const file = join(process.env["EDDY_INFRA_DIR"] ?? join(import.meta.dirname, "..", ".eddy-infra"), "run", "kafka.json")
  if (!existsSync(file)) throw new Error(`--eddy-kafka needs the Kafka broker (npm run infra:up): ${file} is missing`)
  return [{ name: "kafka-broker", pid: (JSON.parse(readFileSync(file, "utf8")) as { pid: number }).pid }]
}

const oneRun = async (system: SystemName, v: Variant): Promise<RunRecord> => {
  let url: string | undefined
  let admin: string | undefined
  let namespace: string | undefined
  let kafka: { readonly requests: string; readonly replies: string } | undefined
  let procs: Proc[] = []
  let stop = async () => {}
  let commits: (() => Promise<number>) | undefined
  if (system === "restate") {
    const r = await startRestate({ initial: v.workload.initial, stock: v.workload.stock })
    url = r.ingress
    admin = r.admin
    procs = [
      { name: "restate-server", pid: r.serverPid },
      { name: "sdk-endpoint", pid: r.endpointPid },
    ]
    stop = r.stop
  } else if (system === "eddy") {
    const e = await startEddy(v.workload)
    url = e.url
    procs = e.procs
    commits = e.commits
    stop = e.stop
  } else if (system === "eddy-kafka") {
    const topics = await createRequestTopics()
    kafka = topics
    const e = await startEddy(v.workload, topics)
    procs = [...e.procs, ...brokerProc()]
    commits = e.commits
    stop = async () => {
      await e.stop()
      await topics.remove()
    }
  } else if (system === "eddy-cluster") {
    const c = await startEddyCluster(v.workload, Number(values["eddy-cluster"]))
    namespace = c.namespace
    procs = c.procs
    stop = c.stop
  }
  try {
    const config: DriverConfig = {
      system,
      ...(url === undefined ? {} : { url }),
      ...(admin === undefined ? {} : { admin }),
      ...(namespace === undefined ? {} : { namespace }),
      ...(kafka === undefined ? {} : { kafka: { brokers: readEndpoints().kafka.brokers, requests: kafka.requests, replies: kafka.replies } }),
      workload: v.workload,
      concurrency: concurrencyOf(system, v),
      seconds: Number(values.seconds),
      maxCalls: Number(values["max-calls"]),
      warmupSeconds: Number(values.warmup),
      epochMs: Number(values["epoch-ms"]),
      checked: values.checked,
      callTimeoutMs: (values["call-timeout"] === undefined ? (v.workload.workload === "fib" ? 900 : 120) : Number(values["call-timeout"])) * 1000,
      ...(values["snapshot-every"] === undefined ? {} : { snapshotEvery: Number(values["snapshot-every"]) }),
    }
    const driver = spawn(process.execPath, [...(values.profile === undefined ? [] : ["--cpu-prof", "--cpu-prof-dir", join(values.profile, "client")]), "--import", "tsx", join(import.meta.dirname, "lib", "driver.ts"), JSON.stringify(config)], { stdio: ["ignore", "pipe", "inherit"] })
    const all = [...procs, { name: system === "eddy-local" ? "eddy+client" : "client", pid: driver.pid! }]
    const cpu0 = new Map<string, number>()
    const cpu1 = new Map<string, number>()
    const rss = new Map<string, number>()
    const epochMarks: Array<Promise<number>> = []
    const result = await new Promise<DriverResult>((resolve, reject) => {
      let got: DriverResult | undefined
      lines(driver.stdout, (l) => {
        if (l === "start" || l === "end") {
          for (const p of all) (l === "start" ? cpu0 : cpu1).set(p.name, cpuSeconds(p.pid) ?? NaN)
          if (commits !== undefined) epochMarks.push(commits())
        }
        else if (l.startsWith("result ")) {
          for (const p of all) rss.set(p.name, peakRssMb(p.pid) ?? NaN)
          got = JSON.parse(l.slice(7)) as DriverResult
        }
      })
      driver.once("exit", (code) => (got !== undefined ? resolve(got) : reject(new Error(`${system} driver exited with ${code} before its result`))))
    })
    const ops = result.calls * result.invocationsPerCall
    const cpuPer1k: Record<string, number> = {}
    for (const p of all) cpuPer1k[p.name] = ((cpu1.get(p.name)! - cpu0.get(p.name)!) / ops) * 1000
    const [e0, e1] = await Promise.all(epochMarks)
    return { result, cpuPer1k, rssMb: Object.fromEntries(rss), ...(e0 === undefined || e1 === undefined ? {} : { epochsPerSecond: (e1 - e0) / result.seconds }) }
  } finally {
    await stop()
  }
}

const range = (xs: number[], f: (n: number) => string = fmt): string => {
  const s = summary(xs)
  return `${f(s.median)} [${f(s.min)}–${f(s.max)}]`
}
const ms = (n: number | null) => (n === null || !Number.isFinite(n) ? "–" : n >= 100 ? n.toFixed(0) : n >= 10 ? n.toFixed(1) : n.toFixed(2))
const ratio = (a: number, b: number, digits: number, unit = "") => (Number.isFinite(a) && Number.isFinite(b) && b > 0 ? `${(a / b).toFixed(digits)}${unit}` : "n/a")
const med = (xs: number[]) => summary(xs).median

const header = ["configuration", "system", "calls/s", ...(workloadName === "fib" ? ["invocations/s"] : []), "p50 ms", "p95 ms", "p99 ms", "CPU s / 1k ops, per process", "peak RSS MB, per process", "Eddy calls per epoch", "Eddy/Restate throughput", "Eddy/Restate p99", "check"]
console.log(`\n${workloadName}: ${runs} runs per row, ${values.seconds} s measured after ${values.warmup} s warm-up; medians [min–max]; Eddy epoch-ms ${values["epoch-ms"]}, ${values["snapshot-every"] === undefined ? "snapshots every 100 epochs and at most every 5 s (Eddy's default)" : `snapshot every ${values["snapshot-every"]} epochs`}, ${values.checked ? "checked" : "unchecked"} mode\n`)
console.log(hostLine("start"))
console.log(`| ${header.join(" | ")} |`)
console.log(`|${header.map(() => "---").join("|")}|`)
for (const v of variants) {
  const records = new Map<SystemName, RunRecord[]>(systems.map((s) => [s, []]))
  for (let r = 0; r < runs; r++)
    for (const s of systems) {
      process.stderr.write(`${v.label}: ${s} run ${r + 1}/${runs}\n`)
      records.get(s)!.push(await oneRun(s, v))
    }
  const tput = (s: SystemName) => records.get(s)!.map((x) => x.result.calls / x.result.seconds)
  const p99 = (s: SystemName) => records.get(s)!.map((x) => x.result.p99)
  for (const s of systems) {
    const rs = records.get(s)!
    const procNames = Object.keys(rs[0]!.cpuPer1k)
    const vs = s !== "restate" && systems.includes("restate")
    const cells = [
      v.label,
      s === "eddy-kafka" && kafkaWindow !== undefined ? `eddy-kafka (${fmt(kafkaWindow)} in flight)` : s,
      range(tput(s)),
      ...(workloadName === "fib" ? [range(rs.map((x) => (x.result.calls * x.result.invocationsPerCall) / x.result.seconds))] : []),
      ms(med(rs.map((x) => x.result.p50))),
      ms(med(rs.map((x) => x.result.p95))),
      `${ms(med(p99(s)))} [${ms(summary(p99(s)).min)}–${ms(summary(p99(s)).max)}]`,
      procNames.map((p) => `${p} ${med(rs.map((x) => x.cpuPer1k[p]!)).toFixed(3)}`).join(", "),
      procNames.map((p) => `${p} ${med(rs.map((x) => x.rssMb[p]!)).toFixed(0)}`).join(", "),
      rs[0]!.epochsPerSecond === undefined ? "" : med(rs.map((x) => x.result.calls / x.result.seconds / x.epochsPerSecond!)).toFixed(1),
      vs ? ratio(med(tput(s)), med(tput("restate")), 1, "x") : "",
      vs ? ratio(med(p99(s)), med(p99("restate")), 3) : "",
      (rs.every((x) => x.result.errors === 0 && x.result.verdict.startsWith("ok"))
        ? `ok ×${rs.length}`
        : rs.map((x) => (x.result.errors > 0 ? `${x.result.errors} errors (${x.result.firstError}); ` : "") + x.result.verdict).join(" / ")) +
        (workloadName === "bank" ? ` (rejected transfers ${(100 * med(rs.map((x) => x.result.extra["rejectedTransferShare"] ?? 0))).toFixed(1)}%)` : ""),
    ]
    console.log(`| ${cells.join(" | ")} |`)
  }
}
console.log(hostLine("end"))

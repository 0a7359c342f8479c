// Client request/reply round trips: `ask` of a counter actor (reply = new value) through the client API, closed loop
// with C requests in flight, keys uniform over K counters. Against a local cluster over NATS (W workers, Kafka log)
// and, as the baseline in the same invocation, an embedded app over HTTP (file log, fsync per commit).
// Prints requests/s and round-trip latency p50/p99: medians over the runs, with min–max.
//
//   node --import tsx bench/client.ts [--runs 5] [--requests 3000] [--concurrency 1,64] [--counters 1000] [--workers 2]
//        [--only embedded|cluster]
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { Client, type EddyClient } from "../client/index.ts"
import { counterApp } from "../examples/counter/app.ts"
import { parseFlags } from "../runtime/cli/main.ts"
import { supervise } from "../runtime/cluster/supervisor.ts"
import { Eddy } from "../runtime/index.ts"
import { fmt, percentile, summary } from "./stats.ts"

const { flags } = parseFlags(process.argv.slice(2))
const str = (name: string, d: string) => (typeof flags[name] === "string" ? (flags[name] as string) : d)
const runs = Number(str("runs", "5"))
const requests = Number(str("requests", "3000"))
const concurrency = str("concurrency", "1,64").split(",").map(Number)
const counters = Number(str("counters", "1000"))
const workers = Number(str("workers", "2"))
const only = str("only", "")

interface Sample {
  readonly rate: number
  readonly p50: number
  readonly p99: number
}

/** C closed-loop callers; the first 10% of requests warm up and are not measured. */
const load = async (client: EddyClient, c: number): Promise<Sample> => {
  const n = c === 1 ? Math.min(requests, 500) : requests
  const warm = Math.floor(n / 10)
  const lat: number[] = []
  let next = 0
  let measuredFrom = 0
  await Promise.all(
    Array.from({ length: c }, async () => {
      while (next < n) {
        const i = next++
        if (i === warm) measuredFrom = performance.now()
        const t = performance.now()
        await client.ask(`counter/k${(i * 7919) % counters}`, { add: 1 })
        if (i >= warm) lat.push(performance.now() - t)
      }
    }),
  )
  const seconds = (performance.now() - measuredFrom) / 1000
  return { rate: lat.length / seconds, p50: percentile(lat, 50), p99: percentile(lat, 99) }
}

const embedded = async (c: number): Promise<Sample> => {
  const dir = mkdtempSync(join(tmpdir(), "eddy-bench-client-"))
  const app = Eddy.start(counterApp(), { dataDir: dir, serve: { port: 0 }, checked: false })
  const client = Client.http(await app.url!)
  try {
    return await load(client, c)
  } finally {
    await client.close()
    await app.stop()
    rmSync(dir, { recursive: true, force: true })
  }
}

const cluster = async (c: number): Promise<Sample> => {
  const dir = mkdtempSync(join(tmpdir(), "eddy-bench-client-cluster-"))
  const ns = `bench-client-${Date.now().toString(36)}`
  const stop = new AbortController()
  const running = supervise({ appSpec: "examples/counter", partitions: workers, namespace: ns, dataDir: dir, flags: ["--serve", "--unchecked"], maxRestarts: 0, signal: stop.signal, log: () => undefined, onLine: () => undefined })
  const client = await Client.nats({ namespace: ns, timeoutMs: 60_000 })
  try {
    // Start-up (processes, recovery) is not measured: wait for the first answer.
    await client.ask("counter/warm", { add: 1 })
    return await load(client, c)
  } finally {
    await client.close()
    stop.abort()
    await running
    rmSync(dir, { recursive: true, force: true })
  }
}

const row = (name: string, xs: ReadonlyArray<Sample>) => {
  const r = summary(xs.map((x) => x.rate))
  const p50 = summary(xs.map((x) => x.p50))
  const p99 = summary(xs.map((x) => x.p99))
  console.log(
    `${name.padEnd(28)} ${fmt(r.median).padStart(8)}/s [${fmt(r.min)}–${fmt(r.max)}]   p50 ${p50.median.toFixed(1)} ms [${p50.min.toFixed(1)}–${p50.max.toFixed(1)}]   p99 ${p99.median.toFixed(1)} ms [${p99.min.toFixed(1)}–${p99.max.toFixed(1)}]`,
  )
  return r.median
}

console.log(`client ask round trips: ${requests} requests over ${counters} counters, ${runs} runs each (medians [min–max])`)
for (const c of concurrency) {
  const e: Sample[] = []
  const k: Sample[] = []
  for (let i = 0; i < runs; i++) {
    if (only !== "cluster") e.push(await embedded(c))
    if (only !== "embedded") k.push(await cluster(c))
  }
  const base = e.length > 0 ? row(`embedded HTTP, C=${c}`, e) : undefined
  if (k.length > 0) {
    const m = row(`cluster NATS ${workers}w, C=${c}`, k)
    if (base !== undefined) console.log(`${"".padEnd(28)} cluster/embedded throughput ratio ${(m / base).toFixed(2)}`)
  }
}

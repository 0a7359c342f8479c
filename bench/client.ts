// Client request/reply round trips: `ask` of a counter actor (reply = new value) through the client API, closed loop
// with C requests in flight, keys uniform over K counters. Against a local cluster over NATS (W workers, Kafka log)
// and, as the baseline in the same invocation, an embedded app over HTTP (file log, fsync per commit); and the same
// embedded app taking the asks from a Kafka topic and answering on another, through Client.kafka.
// Prints requests/s and round-trip latency p50/p99: medians over the runs, with min–max.
//
//   node --import tsx bench/client.ts [--runs 5] [--requests 3000] [--concurrency 1,64] [--counters 1000] [--workers 2]
//        [--only embedded|cluster|kafka]   (cluster and kafka need npm run infra:up)
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import "../kafkajs/kafkajsAbortFix.ts"
import { Kafka, logLevel } from "kafkajs"
import { Actors } from "../actors/index.ts"
import { Client, type EddyClient } from "../client/index.ts"
import { counter, counterApp } from "../examples/counter/app.ts"
import { createTopicsReady } from "../runtime/cluster/kafkaCreateTopics.ts"
import { readEndpoints } from "../runtime/config/Endpoints.ts"
import { App } from "../workflows/index.ts"
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

/** The embedded app reading its requests from a Kafka topic (2 partitions) and answering on another, fresh per run. */
const viaKafka = async (c: number): Promise<Sample> => {
  const dir = mkdtempSync(join(tmpdir(), "eddy-bench-client-kafka-"))
  const id = `${Date.now().toString(36)}${Math.floor(Math.random() * 1e6).toString(36)}`
  const [requests, replies] = [`bench-client-req-${id}`, `bench-client-rep-${id}`]
  const admin = new Kafka({ clientId: "eddy-bench-client", brokers: [...readEndpoints().kafka.brokers], logLevel: logLevel.NOTHING }).admin()
  await admin.connect()
  await createTopicsReady(admin, [
    { topic: requests, numPartitions: 2 },
    { topic: replies, numPartitions: 1 },
  ])
  const system = Actors.system({ name: "counters", behaviors: [counter], kafka: { requests, replies, partitions: 2 } })
  const app = Eddy.start(App.define({ name: "counters", workflows: [system.workflow], views: [system.view] }), { dataDir: dir, checked: false, stopWhenIdle: false })
  const client = await Client.kafka({ requests, replies, timeoutMs: 60_000 })
  try {
    // Start-up (the ingress finding its positions, the egress its transactions) is not measured.
    await client.ask("counter/warm", { add: 1 })
    return await load(client, c)
  } finally {
    await client.close()
    await app.stop()
    await admin.deleteTopics({ topics: [requests, replies] }).catch(() => undefined)
    await admin.disconnect()
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
  const q: Sample[] = []
  for (let i = 0; i < runs; i++) {
    if (only === "" || only === "embedded") e.push(await embedded(c))
    if (only === "" || only === "cluster") k.push(await cluster(c))
    if (only === "" || only === "kafka") q.push(await viaKafka(c))
  }
  const base = e.length > 0 ? row(`embedded HTTP, C=${c}`, e) : undefined
  if (k.length > 0) {
    const m = row(`cluster NATS ${workers}w, C=${c}`, k)
    if (base !== undefined) console.log(`${"".padEnd(28)} cluster/embedded throughput ratio ${(m / base).toFixed(2)}`)
  }
  if (q.length > 0) {
    const m = row(`embedded via Kafka, C=${c}`, q)
    if (base !== undefined) console.log(`${"".padEnd(28)} Kafka/HTTP throughput ratio ${(m / base).toFixed(2)}`)
  }
}

// The Kafka egress alone: committed epochs handed to KafkaEgress at a steady cadence (like the engine does), and the
// time from `publish` until the epoch's records are visible to a read_committed consumer, with one transaction at a
// time (one transactional id per slot) and with overlapping transactions (two). Configurations alternate, so both
// see the same machine load.
//
//   node --import tsx bench/kafka-egress.ts [--runs 3] [--seconds 8] [--epoch-ms 5] [--per-epoch 100] [--in-flight 1,2]
// Needs Kafka (npm run infra:up). Every run uses a fresh topic (kio-egress-bench-*), deleted afterwards.
import { Effect, Exit, Scope } from "effect"
import "../kafkajs/kafkajsAbortFix.ts"
import { Kafka, logLevel } from "kafkajs"
import { createTopicsReady } from "../runtime/cluster/kafkaCreateTopics.ts"
import { KafkaEgress } from "../runtime/cluster/KafkaEgress.ts"
import { kafkaTrace } from "../runtime/cluster/kafkaTrace.ts"
import { parseFlags } from "../runtime/cli/main.ts"
import { readEndpoints } from "../runtime/config/Endpoints.ts"
import type { EgressBatch } from "../runtime/engine/EpochRecord.ts"
import { Sink, type KafkaSinkSpec } from "../workflows/index.ts"
import { percentile, summary } from "./stats.ts"

const { flags } = parseFlags(process.argv.slice(2))
const num = (name: string, d: number) => (typeof flags[name] === "string" ? Number(flags[name]) : d)
const runs = num("runs", 3)
const seconds = num("seconds", 8)
const epochMs = num("epoch-ms", 5)
const perEpoch = num("per-epoch", 100)
const inFlights = typeof flags["in-flight"] === "string" ? String(flags["in-flight"]).split(",").map(Number) : [1, 2]
const brokers = readEndpoints().kafka.brokers
const kafka = new Kafka({ clientId: "eddy-egress-bench", brokers: [...brokers], logLevel: logLevel.NOTHING })
const name = (what: string) => `kio-egress-bench-${what}-${Date.now().toString(36)}${Math.floor(Math.random() * 1e6).toString(36)}`

/** One run: publish an epoch every epochMs for `seconds`, measure publish → visible per epoch (ms). */
const once = async (inFlight: number): Promise<{ visible: number[]; committed: number[]; transactions: number }> => {
  const topic = name("out")
  const admin = kafka.admin()
  await admin.connect()
  await createTopicsReady(admin, [{ topic, numPartitions: 4 }])
  const publishedAt = new Map<number, number>()
  const committed: number[] = []
  let transactions = 0
  kafkaTrace.transaction = (t) => {
    transactions++
    for (const e of t.epochs) committed.push(t.committed - publishedAt.get(e)!)
  }
  const visible: number[] = []
  const consumer = kafka.consumer({ groupId: name("reader"), readUncommitted: false, maxWaitTimeInMs: 5 })
  await consumer.connect()
  await consumer.subscribe({ topic, fromBeginning: true })
  await consumer.run({
    autoCommit: false,
    eachBatch: async ({ batch }) => {
      const now = Date.now()
      // The first record of each epoch (value: [epoch, i]) stands for the epoch.
      for (const m of batch.messages) {
        const [e, i] = JSON.parse(m.value!.toString()) as [number, number]
        if (i === 0) visible.push(now - publishedAt.get(e)!)
      }
    },
  })
  const scope = Effect.runSync(Scope.make())
  const sinks = new Map([["out", Sink.kafka<readonly [number, number]>({ topic, partitions: 4, name: "out" }) as KafkaSinkSpec<unknown>]])
  const egress = await Effect.runPromise(Scope.extend(KafkaEgress.make({ brokers, namespace: name("ns"), sinks, lo: 0, hi: 128, partitions: 1, transactionsInFlight: inFlight }), scope))
  await Effect.runPromise(egress.recover([], 0))
  const start = performance.now()
  let e = 0
  while (performance.now() - start < seconds * 1000) {
    e++
    // Records spread over 4 key groups (so over the 4 partitions), consecutive sequences per key group.
    const batches: EgressBatch[] = [0, 1, 2, 3].map((kg) => ["out", kg, e * perEpoch, Array.from({ length: perEpoch / 4 }, (_, j) => [e, kg === 0 ? j : 1 + j] as const)])
    publishedAt.set(e, Date.now())
    await Effect.runPromise(egress.publish(e, 0, batches))
    await new Promise((r) => setTimeout(r, epochMs))
  }
  await Effect.runPromise(egress.flush)
  const deadline = Date.now() + 10_000
  while (visible.length < e && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20))
  await consumer.disconnect()
  await Effect.runPromise(Scope.close(scope, Exit.void))
  await admin.deleteTopics({ topics: [topic] }).catch(() => undefined)
  await admin.disconnect()
  kafkaTrace.transaction = undefined
  // The first second is warm-up.
  const skip = Math.ceil(1000 / epochMs)
  return { visible: visible.slice(skip), committed: committed.slice(skip), transactions }
}

console.log(`Kafka egress alone: an epoch of ${perEpoch} records every ${epochMs} ms for ${seconds} s; publish → committed / visible to a read_committed consumer; ${runs} runs per configuration, alternating`)
const results = new Map<number, Array<{ visible: number[]; committed: number[]; transactions: number }>>()
for (let r = 0; r < runs; r++) {
  for (const n of inFlights) {
    const x = await once(n)
    let l = results.get(n)
    if (l === undefined) results.set(n, (l = []))
    l.push(x)
    console.log(`  in flight ${n}, run ${r + 1}: visible p50 ${percentile(x.visible, 50)} ms, p99 ${percentile(x.visible, 99)} ms; committed p50 ${percentile(x.committed, 50)} ms; ${x.transactions} transactions (load ${(await import("node:os")).loadavg()[0]!.toFixed(2)})`)
  }
}
for (const [n, l] of results) {
  const p50 = summary(l.map((x) => percentile(x.visible, 50)))
  const p99 = summary(l.map((x) => percentile(x.visible, 99)))
  const c50 = summary(l.map((x) => percentile(x.committed, 50)))
  console.log(`in flight ${n}: publish → visible p50 ${p50.median} ms [${p50.min}–${p50.max}], p99 ${p99.median} ms [${p99.min}–${p99.max}]; → committed p50 ${c50.median} ms`)
}
process.exit(0)

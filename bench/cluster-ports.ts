// Quick figures for the cluster ports against the real servers (`npm run infra:up`): KafkaLog appendDurable
// latency one at a time and append throughput, NATS send→receive throughput of envelopes carrying 256 small
// messages, S3 put/get latency for 100 KiB objects. Sender and receiver share this one process (and its core).
//
//   node --import tsx bench/cluster-ports.ts [--records 20000] [--envelopes 4000] [--window 64] [--s3 200]
import { randomUUID } from "node:crypto"
import { Context, Effect, Layer } from "effect"
import "../kafkajs/kafkajsAbortFix.ts"
import { Kafka, logLevel } from "kafkajs"
import { KafkaLog } from "../runtime/cluster/KafkaLog.ts"
import { NatsTransport } from "../runtime/cluster/NatsTransport.ts"
import { S3BlobStore } from "../runtime/cluster/S3BlobStore.ts"
import { parseFlags } from "../runtime/cli/main.ts"
import { readEndpoints } from "../runtime/config/Endpoints.ts"
import { DATA, type Msg } from "../runtime/engine/protocol.ts"
import { BlobStore } from "../runtime/ports/BlobStore.ts"
import { Log } from "../runtime/ports/Log.ts"
import { Transport } from "../runtime/ports/Transport.ts"
import { fmt, percentile } from "./stats.ts"

const { flags } = parseFlags(process.argv.slice(2))
const num = (name: string, d: number) => (typeof flags[name] === "string" ? Number(flags[name]) : d)
const records = num("records", 20_000)
const envelopes = num("envelopes", 4_000)
const window = num("window", 64)
const s3Ops = num("s3", 200)
const run = `bench-${randomUUID().slice(0, 8)}`
const ms = (t0: bigint): number => Number(process.hrtime.bigint() - t0) / 1e6

const kafkaBench = Effect.gen(function* () {
  const log = yield* Log
  const payload = new Uint8Array(1024).fill(7)
  for (let i = 0; i < 50; i++) yield* log.appendDurable("control", payload) // warm-up
  const lat: Array<number> = []
  for (let i = 0; i < 1_000; i++) {
    const t0 = process.hrtime.bigint()
    yield* log.appendDurable("control", payload)
    lat.push(ms(t0))
  }
  console.log(`KafkaLog appendDurable, 1 KiB, one at a time (n=${lat.length}): p50 ${percentile(lat, 50).toFixed(2)} ms, p99 ${percentile(lat, 99).toFixed(2)} ms`)

  let t0 = process.hrtime.bigint()
  for (let i = 0; i < 2_000; i++) yield* log.append("wal", payload)
  console.log(`KafkaLog append, 1 KiB, sequential (each waits for its ack): ${fmt(2_000 / (ms(t0) / 1000))} records/s`)

  for (const inFlight of [64, 1024]) {
    t0 = process.hrtime.bigint()
    yield* Effect.forEach(Array.from({ length: records }), () => log.append("wal", payload), { concurrency: inFlight, discard: true })
    const s = ms(t0) / 1000
    console.log(`KafkaLog append, 1 KiB, ${inFlight} in flight: ${fmt(records / s)} records/s (${((records * 1024) / s / 1024 / 1024).toFixed(1)} MiB/s)`)
  }
  t0 = process.hrtime.bigint()
  const entries = yield* log.readAll
  console.log(`KafkaLog readAll of ${entries.length} records: ${ms(t0).toFixed(0)} ms`)
})

const natsBench = Effect.gen(function* () {
  const node = (endpoints: ReadonlyArray<number>) =>
    Effect.map(Layer.build(NatsTransport.layer({ app: run, endpoints })), (ctx) => Context.get(ctx, Transport))
  const receiver = yield* node([0])
  const sender = yield* node([1])
  const msgs = (round: number): Array<Msg> =>
    Array.from({ length: 256 }, (_, i) => ({ k: DATA, node: 2, kg: i & 255, key: `user-${i}`, ks: `s:user-${i}`, v: { n: i, round, op: "add" }, skg: 3, seq: i }))
  const batches = Array.from({ length: 16 }, (_, r) => msgs(r))
  const sem = yield* Effect.makeSemaphore(window)
  const t0 = process.hrtime.bigint()
  const receiving = yield* Effect.fork(
    Effect.gen(function* () {
      for (let i = 0; i < envelopes; i++) {
        yield* receiver.receive
        yield* sem.release(1)
      }
    }),
  )
  for (let i = 0; i < envelopes; i++) {
    yield* sem.take(1)
    yield* sender.send(0, { t: "data", g: 1, e: 1, round: i, from: 1, msgs: batches[i % batches.length]! })
  }
  yield* receiving.await
  const s = ms(t0) / 1000
  console.log(
    `NATS send→receive, envelopes of 256 small messages, ${window} in flight: ${fmt(envelopes / s)} envelopes/s = ${fmt((envelopes * 256) / s)} messages/s`,
  )
})

const s3Bench = Effect.gen(function* () {
  const store = yield* BlobStore
  const body = new Uint8Array(100 * 1024).map((_, i) => i & 255)
  const put: Array<number> = []
  const get: Array<number> = []
  for (let i = 0; i < s3Ops; i++) {
    let t0 = process.hrtime.bigint()
    yield* store.put(`obj/${i % 20}`, body)
    put.push(ms(t0))
    t0 = process.hrtime.bigint()
    yield* store.get(`obj/${i % 20}`)
    get.push(ms(t0))
  }
  console.log(`S3 put 100 KiB (n=${s3Ops}): p50 ${percentile(put, 50).toFixed(2)} ms, p99 ${percentile(put, 99).toFixed(2)} ms`)
  console.log(`S3 get 100 KiB (n=${s3Ops}): p50 ${percentile(get, 50).toFixed(2)} ms, p99 ${percentile(get, 99).toFixed(2)} ms`)
  for (const k of yield* store.list("")) yield* store.delete(k)
})

const cleanupKafka = async (): Promise<void> => {
  const admin = new Kafka({ clientId: "eddy-bench", brokers: [...readEndpoints().kafka.brokers], logLevel: logLevel.NOTHING }).admin()
  await admin.connect()
  await admin.deleteTopics({ topics: [`eddy.${run}.wal`, `eddy.${run}.control`] }).catch(() => undefined)
  await admin.disconnect()
}

await Effect.runPromise(Effect.scoped(Effect.provide(kafkaBench, KafkaLog.layer({ app: run }))))
await cleanupKafka()
await Effect.runPromise(Effect.scoped(natsBench))
await Effect.runPromise(Effect.scoped(Effect.provide(s3Bench, S3BlobStore.layer({ prefix: run }))))

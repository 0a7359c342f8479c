/**
 * The Kafka egress's worker thread: runs makeKafkaEgress (the same transactions, markers and recovery) on records
 * the engine's thread encoded, and answers its calls (kafkaEgressWire.ts). Its own event loop answers the
 * brokers' responses at once, rather than after whatever task the engine's thread is in.
 */
import { Effect, Either, Exit, Scope } from "effect"
import { parentPort, workerData } from "node:worker_threads"
import type { KafkaSinkSpec } from "../../workflows/kafka.ts"
import { EgressError } from "../ports/Egress.ts"
import { makeKafkaEgress } from "./KafkaEgress.ts"
import type { EncodedRecord, FromWorker, ToWorker, WireOptions } from "./kafkaEgressWire.ts"
import { kafkaTrace } from "./kafkaTrace.ts"

const port = parentPort
if (port === null) throw new Error("kafkaEgressWorker.ts runs in a worker thread")
const options = workerData as WireOptions
const post = (m: FromWorker) => port.postMessage(m)
const reason = (e: unknown): string => (e instanceof EgressError ? e.message : e instanceof Error ? e.message : String(e))

const valueOf = (r: EncodedRecord): string | Uint8Array => (typeof r === "string" || r instanceof Uint8Array ? r : r[0])
const sinks = new Map<string, KafkaSinkSpec<unknown>>(
  options.sinks.map((s) => [
    s.name,
    {
      kind: "kafka",
      name: s.name,
      topic: s.topic,
      partitions: s.partitions,
      encode: (r) => valueOf(r as EncodedRecord),
      key: (r) => (typeof r === "string" || r instanceof Uint8Array ? null : (r as Exclude<EncodedRecord, string | Uint8Array>)[1]),
      headers: (r) => (typeof r === "string" || r instanceof Uint8Array ? {} : ((r as Exclude<EncodedRecord, string | Uint8Array>)[2] ?? {})),
    },
  ]),
)
if (options.trace.ready) kafkaTrace.ready = (e, at) => post({ t: "ready", e, at })
if (options.trace.transaction) kafkaTrace.transaction = (tx) => post({ t: "transaction", ...tx })

const scope = Effect.runSync(Scope.make())
const started = await Effect.runPromise(
  Effect.either(
    Scope.extend(
      makeKafkaEgress({
        brokers: options.brokers,
        namespace: options.namespace,
        sinks,
        lo: options.lo,
        hi: options.hi,
        partitions: options.partitions,
        ...(options.maxTransactionRecords === undefined ? {} : { maxTransactionRecords: options.maxTransactionRecords }),
        ...(options.connectTimeoutMs === undefined ? {} : { connectTimeoutMs: options.connectTimeoutMs }),
        ...(options.transactionsInFlight === undefined ? {} : { transactionsInFlight: options.transactionsInFlight }),
        ...(options.preparedIdleMs === undefined ? {} : { preparedIdleMs: options.preparedIdleMs }),
      }),
      scope,
    ),
  ),
)
if (Either.isLeft(started)) {
  post({ t: "done", id: 0, error: reason(started.left) })
  await Effect.runPromise(Scope.close(scope, Exit.void))
} else {
  const egress = started.right
  let failed = false
  const answer = (id: number, e: Effect.Effect<number | void, EgressError>) =>
    void Effect.runPromise(Effect.either(e)).then((r) =>
      post(Either.isLeft(r) ? { t: "done", id, error: reason(r.left) } : { t: "done", id, ...(typeof r.right === "number" ? { value: r.right } : {}) }),
    )
  port.on("message", (m: ToWorker) => {
    switch (m.t) {
      case "publish": {
        const r = Effect.runSync(Effect.either(egress.publish(m.e, m.partition, m.egress)))
        if (Either.isLeft(r) && !failed) {
          failed = true
          post({ t: "failed", error: reason(r.left) })
        }
        return
      }
      case "recover":
        return answer(m.id, egress.recover(m.committed, m.lastEpoch))
      case "flush":
        return answer(m.id, egress.flush)
      case "publishedThrough":
        return answer(m.id, egress.publishedThrough)
      case "close":
        // The finalizers abort transactions begun ahead and disconnect; then nothing keeps this thread alive.
        void Effect.runPromise(Scope.close(scope, Exit.void)).then(() => {
          post({ t: "done", id: m.id })
          port.close()
        })
        return
    }
  })
  post({ t: "started" })
}

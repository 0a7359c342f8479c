/**
 * The Kafka egress in a worker thread. The engine's thread only encodes each record with its sink's functions (user
 * code) and posts the epoch; the worker (kafkaEgressWorker.ts) runs makeKafkaEgress: kafkajs's request encoding,
 * the sockets, the transactions and their markers, recovery. Why: on the engine's thread a broker's response waited
 * for the task under way (an epoch's rounds, a fetch's decoding: event-loop delay p99 ~20 ms at 20k records/s), and
 * each egress transaction waits for two responses (Produce, EndTxn) on the critical path.
 *
 * Exactly-once is unchanged: the worker runs the same egress; calls reach it in order (one message port), `recover`
 * and `flush` wait for its answer, and a failure it reports fails every later call. Only `testHook` (a function)
 * cannot cross; tests that need it use the egress on the engine's thread (makeKafkaEgress).
 */
import { Effect } from "effect"
import { toJson } from "../../workflows/json.ts"
import type { EgressBatch } from "../engine/EpochRecord.ts"
import { EgressError, type EgressService } from "../ports/Egress.ts"
import { makeKafkaEgress, type KafkaEgressOptions } from "./KafkaEgress.ts"
import { reasonOf } from "./kafkaReasons.ts"
import type { EncodedRecord, FromWorker, ToWorker, WireOptions } from "./kafkaEgressWire.ts"
import { kafkaTrace } from "./kafkaTrace.ts"
import { tsxWorker } from "../engine/tsxWorker.ts"
import type { KafkaSinkSpec } from "../../workflows/kafka.ts"

/** A copy that owns its bytes: a view into a larger buffer (a fetched record's value) would clone all of it. */
const own = (v: Uint8Array | string): Uint8Array | string => (typeof v === "string" || v.byteLength === v.buffer.byteLength ? v : v.slice())

/** Encodes a batch's values with their sinks' functions, as makeKafkaEgress would (same bytes). */
const encodeBatches = (sinks: ReadonlyMap<string, KafkaSinkSpec<unknown>>, e: number, batches: ReadonlyArray<EgressBatch>): EgressBatch[] =>
  batches.map(([sink, kg, seq, values]) => {
    const out: EncodedRecord[] = new Array<EncodedRecord>(values.length)
    for (let i = 0; i < values.length; i++) {
      const name = typeof sink === "string" ? sink : sink[0][sink[1][i]!]!
      const spec = sinks.get(name)
      if (spec === undefined) throw new EgressError({ message: `assertion: Kafka egress got records of sink '${name}', which is not a Kafka sink` })
      const value = values[i]
      try {
        const encoded = own(spec.encode === undefined ? toJson(value) : spec.encode(value, e))
        const k = spec.key?.(value)
        const headers = spec.headers?.(value)
        out[i] = (k === undefined || k === null) && headers === undefined ? encoded : [encoded, k === undefined || k === null ? null : own(k), headers === undefined ? null : { ...headers }]
      } catch (err) {
        throw new EgressError({ message: `Kafka sink '${name}': encoding record ${kg}:${seq + i} failed: ${reasonOf(err)}`, cause: err })
      }
    }
    return [sink, kg, seq, out] as const
  })

export const makeKafkaEgressThread = (options: Omit<KafkaEgressOptions, "testHook">) =>
  Effect.gen(function* () {
    // A process hosting no partition publishes nothing: no thread for that.
    if (options.partitions === 0 || options.lo >= options.hi) return yield* makeKafkaEgress(options)
    const wire: WireOptions = {
      brokers: [...options.brokers],
      namespace: options.namespace,
      sinks: [...options.sinks].map(([name, s]) => ({ name, topic: s.topic, partitions: s.partitions })),
      lo: options.lo,
      hi: options.hi,
      partitions: options.partitions,
      ...(options.maxTransactionRecords === undefined ? {} : { maxTransactionRecords: options.maxTransactionRecords }),
      ...(options.connectTimeoutMs === undefined ? {} : { connectTimeoutMs: options.connectTimeoutMs }),
      ...((options.transactionsInFlight ?? kafkaTrace.transactionsInFlight) === undefined ? {} : { transactionsInFlight: options.transactionsInFlight ?? kafkaTrace.transactionsInFlight }),
      ...(options.preparedIdleMs === undefined ? {} : { preparedIdleMs: options.preparedIdleMs }),
      trace: { ready: kafkaTrace.ready !== undefined, transaction: kafkaTrace.transaction !== undefined },
    }
    let failure: EgressError | undefined
    let nextId = 1
    const waiting = new Map<number, (r: { error?: string; value?: number }) => void>()
    const failAll = (message: string) => {
      failure ??= new EgressError({ message })
      const w = [...waiting.values()]
      waiting.clear()
      for (const f of w) f({ error: failure.message })
    }
    let onStarted: ((error: string | undefined) => void) | undefined
    const worker = yield* Effect.acquireRelease(
      Effect.sync(() => {
        const w = tsxWorker(new URL("./kafkaEgressWorker.ts", import.meta.url), { workerData: wire })
        w.on("message", (m: FromWorker) => {
          switch (m.t) {
            case "started":
              onStarted?.(undefined)
              return
            case "done": {
              if (m.id === 0) return onStarted?.(m.error ?? "the Kafka egress worker did not start")
              const f = waiting.get(m.id)
              waiting.delete(m.id)
              f?.(m)
              return
            }
            case "failed":
              failure ??= new EgressError({ message: m.error })
              return
            case "ready":
              kafkaTrace.ready?.(m.e, m.at)
              return
            case "transaction":
              kafkaTrace.transaction?.(m)
              return
          }
        })
        w.on("error", (err) => {
          onStarted?.(`the Kafka egress worker failed: ${reasonOf(err)}`)
          failAll(`Kafka egress: its worker thread failed: ${reasonOf(err)}`)
        })
        w.on("exit", (code) => {
          onStarted?.(`the Kafka egress worker exited (${code})`)
          failAll(`Kafka egress: its worker thread exited (${code})`)
        })
        return w
      }),
      (w) =>
        Effect.promise(async () => {
          const closed = new Promise<void>((resolve) => {
            const id = nextId++
            waiting.set(id, () => resolve())
            w.on("exit", () => resolve())
            w.postMessage({ t: "close", id } satisfies ToWorker)
          })
          // The worker's own finalizers are bounded (5 s); past that, it is stopped.
          await Promise.race([closed, new Promise((r) => setTimeout(r, 6_000).unref())])
          await w.terminate()
        }),
    )
    const startError = yield* Effect.promise(
      () =>
        new Promise<string | undefined>((resolve) => {
          onStarted = (e) => {
            onStarted = undefined
            resolve(e)
          }
        }),
    )
    if (startError !== undefined) return yield* Effect.fail(new EgressError({ message: startError }))

    const call = (m: (id: number) => ToWorker): Effect.Effect<number | undefined, EgressError> =>
      Effect.async<number | undefined, EgressError>((resume) => {
        if (failure !== undefined) return resume(Effect.fail(failure))
        const id = nextId++
        waiting.set(id, (r) => {
          if (r.error === undefined) return resume(Effect.succeed(r.value))
          // Any failed call means a failed egress (as on the engine's thread): later calls fail at once.
          failure ??= new EgressError({ message: r.error })
          resume(Effect.fail(failure))
        })
        worker.postMessage(m(id))
      })

    /** Runs the sinks' encoders; a failure (an EgressError, as on the engine's thread) fails the egress. */
    const encode = <A>(f: () => A): Effect.Effect<A, EgressError> =>
      Effect.try({
        try: f,
        catch: (err) => (failure ??= err instanceof EgressError ? err : new EgressError({ message: `Kafka egress: encoding failed: ${reasonOf(err)}`, cause: err })),
      })

    const service: EgressService = {
      recover: (committed, lastEpoch) =>
        encode(() => committed.map((c) => ({ e: c.e, egress: encodeBatches(options.sinks, c.e, c.egress) }))).pipe(
          Effect.flatMap((encoded) => call((id) => ({ t: "recover", id, committed: encoded, lastEpoch }))),
          Effect.asVoid,
        ),
      publish: (e, partition, egress) =>
        Effect.suspend(() => (failure !== undefined ? Effect.fail(failure) : encode(() => encodeBatches(options.sinks, e, egress)))).pipe(
          Effect.map((encoded) => {
            worker.postMessage({ t: "publish", e, partition, egress: encoded } satisfies ToWorker)
            kafkaTrace.posted?.(e, partition, Date.now())
          }),
        ),
      flush: call((id) => ({ t: "flush", id })).pipe(Effect.asVoid),
      publishedThrough: call((id) => ({ t: "publishedThrough", id })).pipe(
        Effect.map((n) => n ?? 0),
        // The port's type has no error: a failed egress reports nothing durable beyond what it had.
        Effect.orElseSucceed(() => 0),
      ),
    }
    return service
  })

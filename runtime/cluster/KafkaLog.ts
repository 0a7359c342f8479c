/**
 * The Log port on Kafka: topics `eddy.<app>.wal` and `eddy.<app>.control` (one partition each, created when
 * missing, unlimited retention, `flush.messages=1`), written by one idempotent producer with acks=all. A position
 * is (Kafka partition, offset). `append` and `appendDurable` both resolve once the broker acknowledged the record
 * and, because produce requests never overlap, every record appended before it: the broker flushed them to disk.
 * A failed write poisons the log instance (see KafkaWriter). Start-up is bounded: an unreachable broker fails the
 * layer within a few seconds with a LogError naming the brokers.
 */
import { Effect, Layer } from "effect"
import "../../kafkajs/kafkajsAbortFix.ts"
import { Kafka, logLevel as kafkaLogLevel, type Admin, type Producer } from "kafkajs"
import { readEndpoints } from "../config/Endpoints.ts"
import { Log, LogError, type LogPosition, type LogService, type LogStream } from "../ports/Log.ts"
import { kafkaError } from "./kafkaErrors.ts"
import { readTopics } from "./kafkaReader.ts"
import { ensureTopics, topicsFor } from "./kafkaTopics.ts"
import { KafkaWriter } from "./kafkaWriter.ts"

export interface KafkaLogOptions {
  /** Names the topics: `eddy.<app>.wal`, `eddy.<app>.control`. */
  readonly app: string
  /** Bootstrap brokers, `host:port`. Default: EDDY_KAFKA_BROKERS (runtime/config/Endpoints.ts). */
  readonly brokers?: ReadonlyArray<string>
  readonly clientId?: string
  /** Replication factor of topics this log creates (default 1: the local single broker). */
  readonly replicationFactor?: number
  /** Topic setting `flush.messages=1` on topics this log creates (default true). */
  readonly flushEachWrite?: boolean
  /** Largest payload accepted (default 16 MiB); the topics' max.message.bytes is set just above it. */
  readonly maxRecordBytes?: number
  /** A produce request carries about this many bytes of records (default 1 MiB). */
  readonly maxBatchBytes?: number
  /** Bound on connecting at start-up (default 5 s). */
  readonly connectTimeoutMs?: number
  /** Bound on creating or checking the topics at start-up (default 30 s). */
  readonly setupTimeoutMs?: number
  /** Per-request timeout once running (default 10 s). */
  readonly requestTimeoutMs?: number
  /** Bound on one readAll (default 60 s). */
  readonly readTimeoutMs?: number
  /** kafkajs's own logging (default: none; failures surface as LogError). */
  readonly logLevel?: kafkaLogLevel
}

const MiB = 1024 * 1024

const brokersOf = (options: KafkaLogOptions): Effect.Effect<ReadonlyArray<string>, LogError> =>
  options.brokers !== undefined
    ? Effect.succeed(options.brokers)
    : Effect.try({
        try: () => readEndpoints().kafka.brokers,
        catch: (cause) => new LogError({ message: `Kafka log: ${String(cause)}`, cause }),
      })

/**
 * Disconnecting waits for requests in flight. A client that never connected (a silent broker) is let go without
 * waiting; a connected one gets a bounded wait. Finalizers are uninterruptible: the wait must be made
 * interruptible for the timeout to cut it.
 */
const disconnect = (client: Admin | Producer, connected: ReadonlySet<Admin | Producer>): Effect.Effect<void> => {
  const done = client.disconnect().catch(() => undefined)
  return connected.has(client) ? Effect.promise(() => done).pipe(Effect.interruptible, Effect.timeout(2_000), Effect.ignore) : Effect.void
}

export const makeKafkaLog = (options: KafkaLogOptions) =>
  Effect.gen(function* () {
    const brokers = yield* brokersOf(options)
    const topics = topicsFor(options.app)
    if (typeof topics === "string") return yield* Effect.fail(new LogError({ message: `Kafka log: ${topics}` }))
    const maxRecordBytes = options.maxRecordBytes ?? 16 * MiB
    const connectTimeoutMs = options.connectTimeoutMs ?? 5_000
    const setupTimeoutMs = options.setupTimeoutMs ?? 30_000
    const kafka = new Kafka({
      clientId: options.clientId ?? `eddy-${options.app}`,
      brokers: [...brokers],
      logLevel: options.logLevel ?? kafkaLogLevel.NOTHING,
      connectionTimeout: Math.min(3_000, connectTimeoutMs),
      requestTimeout: options.requestTimeoutMs ?? 10_000,
      retry: { retries: 2, initialRetryTime: 200, maxRetryTime: 1_000 },
    })
    const kafkaTry = <A>(what: string, f: () => Promise<A>): Effect.Effect<A, LogError> =>
      Effect.tryPromise({ try: f, catch: (cause) => (cause instanceof LogError ? cause : kafkaError(brokers, what, cause)) })

    const connected = new Set<Admin | Producer>()
    const release = (client: Admin | Producer) => Effect.suspend(() => disconnect(client, connected))
    const admin = yield* Effect.acquireRelease(Effect.sync(() => kafka.admin()), release)
    // Bounded retries: after ~10 s of failing, the write fails and the log must be reopened (recovery).
    const producer = yield* Effect.acquireRelease(
      Effect.sync(() =>
        kafka.producer({
          idempotent: true,
          maxInFlightRequests: 1,
          allowAutoTopicCreation: false,
          retry: { retries: 6, initialRetryTime: 100, maxRetryTime: 2_000 },
        }),
      ),
      release,
    )
    const at = brokers.join(",")
    yield* Effect.all(
      [admin, producer].map((client) => Effect.tap(kafkaTry("connecting", () => client.connect()), () => connected.add(client))),
      { concurrency: 2 },
    ).pipe(
      Effect.timeoutFail({
        duration: connectTimeoutMs,
        onTimeout: () =>
          new LogError({ message: `cannot reach Kafka at ${at}: no answer within ${connectTimeoutMs} ms — is it running? (npm run infra:up, or set EDDY_KAFKA_BROKERS)` }),
      }),
    )
    const problem = yield* kafkaTry(`creating topics ${topics.wal} and ${topics.control}`, () =>
      ensureTopics(admin, topics, {
        partitions: 1,
        replicationFactor: options.replicationFactor ?? 1,
        flushEachWrite: options.flushEachWrite ?? true,
        maxMessageBytes: maxRecordBytes + 64 * 1024,
      }),
    ).pipe(
      Effect.timeoutFail({
        duration: setupTimeoutMs,
        onTimeout: () => new LogError({ message: `Kafka at ${at}: creating topics ${topics.wal} and ${topics.control} took over ${setupTimeoutMs} ms` }),
      }),
    )
    if (problem !== undefined) return yield* Effect.fail(new LogError({ message: `Kafka at ${at}: ${problem}` }))

    const writer = new KafkaWriter(producer, topics, {
      brokers,
      maxBatchBytes: options.maxBatchBytes ?? MiB,
      maxRecordBytes,
      ackTimeoutMs: options.requestTimeoutMs ?? 10_000,
    })
    // Runs before the clients disconnect (finalizers run in reverse order): queued appends are sent first.
    yield* Effect.addFinalizer(() => Effect.promise(() => writer.drained()).pipe(Effect.interruptible, Effect.timeout(30_000), Effect.ignore))

    const write = (stream: LogStream, payload: Uint8Array): Effect.Effect<LogPosition, LogError> =>
      kafkaTry("appending", () => writer.write(stream, payload))

    const truncateBefore = (stream: LogStream, keepFrom: LogPosition): Effect.Effect<void, LogError> =>
      kafkaTry(`truncating ${topics[stream]}`, async () => {
        const offsets = await admin.fetchTopicOffsets(topics[stream])
        const p = offsets.find((o) => o.partition === keepFrom.part)
        if (p === undefined) return
        // Never past the high watermark (Kafka refuses it); entries at or after keepFrom stay.
        const offset = Math.min(keepFrom.offset, Number(p.high))
        if (offset <= Number(p.low)) return
        await admin.deleteTopicRecords({ topic: topics[stream], partitions: [{ partition: keepFrom.part, offset: String(offset) }] })
      })

    return {
      append: write,
      appendDurable: write,
      readAll: kafkaTry(`reading ${topics.wal} and ${topics.control}`, () =>
        readTopics(kafka, admin, topics, {
          maxFetchBytes: maxRecordBytes + 64 * 1024,
          timeoutMs: options.readTimeoutMs ?? 60_000,
        }),
      ),
      truncateBefore,
    } satisfies LogService
  })

export const KafkaLog = {
  /** The Log port on Kafka; the scope owns the connections and flushes queued appends on close. */
  layer: (options: KafkaLogOptions): Layer.Layer<Log, LogError> => Layer.scoped(Log, makeKafkaLog(options)),
  make: makeKafkaLog,
} as const

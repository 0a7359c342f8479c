import { createHash, randomUUID } from "node:crypto"
import { mkdirSync, rmSync, writeFileSync } from "node:fs"
import { join, resolve } from "node:path"
import { Effect, Exit, Layer } from "effect"
import type { App, CommittedStateReader } from "../workflows/App.ts"
import type { EddyClient } from "../client/Client.ts"
import { canonicalKey, ownerOf, parseCanonicalKey } from "./engine/keys.ts"
import { startHttpFront, type StateAccess } from "./front/HttpFront.ts"
import { localClient } from "./front/LocalClient.ts"
import { RequestFront } from "./front/RequestFront.ts"
import type { Key } from "../workflows/Key.ts"
import { runEngine, type CommitTiming, type RestoreTiming, type RunResult, type StateReader } from "./engine/Engine.ts"
import type { TaskFailure } from "./engine/errors.ts"
import type { Reporter } from "./engine/PartitionCore.ts"
import { compile } from "./engine/Plan.ts"
import type { Vote } from "./engine/protocol.ts"
import { recover } from "./engine/recovery.ts"
import { EmbeddedEgress } from "./embedded/EmbeddedEgress.ts"
import { FileLog } from "./embedded/FileLog.ts"
import { InProcessTransport } from "./embedded/InProcessTransport.ts"
import { MemoryLog } from "./embedded/MemoryLog.ts"
import { DirectoryBlobStore } from "./embedded/DirectoryBlobStore.ts"
import { MemoryBlobStore } from "./embedded/MemoryBlobStore.ts"
import { Log } from "./ports/Log.ts"
import type { Transport } from "./ports/Transport.ts"
import { BlobStore } from "./ports/BlobStore.ts"
import { SnapshotManager, type ChainPolicy, type PartStats } from "./engine/snapshots.ts"
import { Egress } from "./ports/Egress.ts"
import { composeEgress } from "./ports/CompositeEgress.ts"
import { KafkaEgress } from "./cluster/KafkaEgress.ts"
import { makeKafkaEgressThread } from "./cluster/KafkaEgressThread.ts"
import { kafkaTrace } from "./cluster/kafkaTrace.ts"
import { kafkaSplitOpener } from "./cluster/KafkaIngress.ts"
import { kafkaIngressThread } from "./cluster/KafkaIngressThread.ts"
import { readEndpoints } from "./config/Endpoints.ts"
import type { KafkaSinkSpec } from "../workflows/kafka.ts"

export interface RunOptions {
  /** Partitions (single-threaded workers) in this process. Default 1. */
  readonly partitions?: number
  /** Where the log, snapshots and file sinks live. Omitted: everything in memory, nothing survives the process. */
  readonly dataDir?: string
  /** How long an idle run waits before opening the next epoch, and how long an epoch waits for async sources. Default 10. */
  readonly epochMs?: number
  /** Atoms each source split admits per epoch: the count that cuts epochs (reproducible runs). Default 1000. */
  readonly epochAtoms?: number
  /** Rounds per epoch before the remaining messages are carried to the next epoch as in-transit. Default 64. */
  readonly roundLimit?: number
  /** Messages one key group processes per round. Default 10000. */
  readonly keyGroupRoundLimit?: number
  /** In-transit messages above which ingress pauses. Default 1,000,000. */
  readonly inTransitLimit?: number
  readonly clock?: "logical" | "wall"
  /** Copy every message at send and freeze state (default true; turn off only for measured hot paths). */
  readonly checked?: boolean
  /** Stop when sources are exhausted and nothing is in flight (default true). */
  readonly stopWhenIdle?: boolean
  /**
   * Run the next epoch while the previous one's COMMIT is written (default false). Outputs, answers and reads of an
   * epoch still wait for its own COMMIT. It overlaps the COMMIT's write with the next epoch's work, but an epoch's
   * commit is then handled only after the next epoch's rounds: measured here it gained nothing for closed-loop
   * callers and lengthened Kafka in → out latency (docs/protocol.md), so it is off unless asked for.
   */
  readonly pipeline?: boolean
  /** The coordinator opened epoch e (progress and fault-injection tests). */
  readonly onOpen?: (epoch: number) => void
  /** The coordinator recovered to epoch e from the log, before opening anything. */
  readonly onRecovered?: (epoch: number) => void
  /**
   * Polled once per epoch, when its partitions have all finished it (`epoch`: that epoch): true makes it the run's
   * last (a drain; `stop()` does the same from outside).
   */
  readonly stopWhen?: (epoch: number) => boolean
  readonly onFailure?: (failure: TaskFailure) => void
  readonly onLog?: (level: "info" | "warn" | "error", task: string, key: string | undefined, message: string) => void
  readonly onCommit?: (epoch: number, votes: ReadonlyArray<Vote>, timing: CommitTiming) => void
  /** Log segment size in bytes (default 64 MiB); old segments are deleted once a snapshot covers them. */
  readonly logSegmentBytes?: number
  /** Snapshot every this many committed epochs (default 100; 0: never). */
  readonly snapshotEvery?: number
  /** At least this long between snapshots (default 5000 ms when snapshotEvery is not given, else 0). */
  readonly snapshotMinMs?: number
  /**
   * Incremental snapshots: a key group's snapshot is a full image plus up to `maxLength - 1` deltas (default 16; 1:
   * every snapshot rewrites whole key groups); images under `minImageBytes` (default 64 KiB) are always rewritten.
   */
  readonly snapshotChain?: Partial<ChainPolicy>
  /** Build snapshot parts in a thread of their own (default true); false: on the engine's thread. */
  readonly snapshotThread?: boolean
  readonly onSnapshot?: (epoch: number) => void
  /** This process wrote its part of snapshot `epoch`. */
  readonly onSnapshotPart?: (epoch: number, stats: PartStats) => void
  /** This process restored its state from the snapshot and the log (timings of each step). */
  readonly onRestored?: (timing: RestoreTiming) => void
  /** Where console sinks print (default: standard output). */
  readonly print?: (line: string) => void
  /**
   * Serve client requests over HTTP (docs/client.md) on this port (0: any free port) of `host` (default 127.0.0.1).
   * A served run keeps running when idle unless `stopWhenIdle` says otherwise.
   */
  readonly serve?: { readonly port?: number; readonly host?: string }
  /** Requests waiting for an epoch above which clients get Busy (default 100,000). */
  readonly maxQueuedRequests?: number
  /**
   * Names the Kafka egress's marker topic and transactional ids (Sink.kafka). Default: derived from the app's name
   * and the data directory (a fresh one for an in-memory run). One namespace belongs to one log.
   */
  readonly namespace?: string
}

export interface RunSummary extends RunResult {
  readonly failureList: ReadonlyArray<TaskFailure>
}

export interface RunningApp {
  /** Resolves when the run stops (sources exhausted and idle, or `stop()`); rejects if the engine fails. */
  readonly done: Promise<RunSummary>
  /** Committed records of a memory sink, in commit order. */
  outputs<T = unknown>(sink: string): ReadonlyArray<T>
  readonly failures: ReadonlyArray<TaskFailure>
  /**
   * The committed state of `key` in task `task` (undefined if it has none), read at the next commit boundary (at
   * once if the run is over).
   */
  query(task: string, key: Key): Promise<unknown>
  /** Keys of `task` with state, as of the next commit boundary. */
  keys(task: string): Promise<ReadonlyArray<Key>>
  /**
   * Stops at the next epoch boundary, after its commit: the epochs already opened (with pipelining, the next one may
   * run while an epoch commits) finish first.
   */
  stop(): Promise<RunSummary>
  /** A client of this app in this process (no HTTP): the same API as `Client.http(url)`. */
  readonly client: EddyClient
  /** The HTTP endpoint's URL once it listens (only with `serve`). */
  readonly url: Promise<string> | undefined
  /** Counters for progress lines: last committed epoch, source records, client requests. */
  stats(): RunStats
}

export interface RunStats {
  readonly epoch: number
  readonly records: number
  /** Records committed to sinks (replies to clients included). */
  readonly out: number
  readonly requests: number
  readonly answered: number
  readonly failures: number
}

const defaultReporter = (options: RunOptions, failures: TaskFailure[]): Reporter => ({
  failure: (f) => {
    failures.push(f)
    if (options.onFailure) options.onFailure(f)
    else process.stderr.write(`eddy: task '${f.task}' failed on record ${f.record}${f.key === undefined ? "" : ` (key ${f.key})`} in epoch ${f.epoch}: ${f.error}\n`)
  },
  log: (level, task, key, message) => {
    if (options.onLog) options.onLog(level, task, key, message)
    else process.stderr.write(`[${level}] ${task}${key === undefined ? "" : ` ${key}`}: ${message}\n`)
  },
})

const logLayer = (dataDir: string | undefined, segmentBytes: number | undefined) =>
  dataDir === undefined ? MemoryLog.layer() : FileLog.layer(join(dataDir, "log"), segmentBytes === undefined ? {} : { segmentBytes })

/**
 * Where the engine's ports come from when not embedded: a cluster process plugs its Log, BlobStore and Transport
 * layers in here and says which endpoints it hosts. Sinks stay local to the process (its `dataDir`).
 */
export interface Deployment {
  readonly ports: Layer.Layer<Log | BlobStore | Transport, unknown>
  readonly host: { readonly coordinator: boolean; readonly partitions: ReadonlyArray<number> }
  readonly livenessMs?: number
  /** Opens the process's client endpoint (a cluster worker: NATS); closed when the run ends. */
  readonly serve?: (front: RequestFront, state: StateAccess, keyGroups: number) => Promise<{ readonly close: () => Promise<void> }>
  /** The deployment's namespace (Kafka egress markers and transactional ids). */
  readonly namespace?: string
}

/** Kafka I/O namespace of an embedded run: one per data directory, so two runs never share markers. */
const embeddedNamespace = (app: App, dataDir: string | undefined): string =>
  `${app.name}.${dataDir === undefined ? `mem-${randomUUID().slice(0, 8)}` : createHash("sha256").update(resolve(dataDir)).digest("hex").slice(0, 12)}`

/** Starts an app on the embedded default: in-process transport, file log (or memory), file and memory sinks. */
export const start = (app: App, options: RunOptions = {}, deployment?: Deployment): RunningApp => {
  const plan = compile(app)
  const outputs = new Map<string, unknown[]>()
  const failures: TaskFailure[] = []
  let stopRequested = false
  let reader: StateReader | undefined
  let finished = false
  // Between an idle coordinator's commit and its next open, the live state is the committed state.
  let idle = false
  // A read is answered from the state at the end of the next epoch, and released once that epoch has committed:
  // with epochs pipelined, the next one may already be running when a COMMIT becomes durable.
  const waiting: Array<(r: StateReader) => () => void> = []
  const held: Array<{ readonly e: number; readonly release: ReadonlyArray<() => void> }> = []
  const onEpochEnd = (r: StateReader) => {
    if (waiting.length > 0) held.push({ e: r.epoch, release: waiting.splice(0).map((w) => w(r)) })
  }
  const onCommitBoundary = (r: StateReader) => {
    reader = r
    while (held.length > 0 && held[0]!.e <= r.epoch) for (const release of held.shift()!.release) release()
  }
  const read = <A>(f: (r: StateReader) => A): Promise<A> =>
    new Promise<A>((resolve, reject) => {
      const answer = (r: StateReader): (() => void) => {
        try {
          const a = f(r)
          return () => resolve(a)
        } catch (err) {
          return () => reject(err instanceof Error ? err : new Error(String(err)))
        }
      }
      if ((finished || idle) && reader !== undefined) answer(reader)()
      else waiting.push(answer)
    })
  const partitions = options.partitions ?? 1
  let lastCommitted = 0
  let recordsIn = 0
  let recordsOut = 0
  if (options.dataDir !== undefined) mkdirSync(options.dataDir, { recursive: true })
  const hostedPartitions = new Set(deployment?.host.partitions ?? Array.from({ length: partitions }, (_, p) => p))
  const front = new RequestFront(plan, {
    hosts: (kg) => Number.isInteger(partitions) && partitions >= 1 && hostedPartitions.has(ownerOf(kg, plan.keyGroups, partitions)),
    ...(options.maxQueuedRequests === undefined ? {} : { maxQueued: options.maxQueuedRequests }),
  })
  const embeddedOptions = {
    sinks: plan.sinks,
    partitions: deployment?.host.partitions.length ?? partitions,
    dataDir: options.dataDir,
    outputs,
    ...(options.print ? { print: options.print } : {}),
  }
  const kafkaSinks = new Map<string, KafkaSinkSpec<unknown>>()
  for (const [name, spec] of plan.sinks) if (spec.kind === "kafka") kafkaSinks.set(name, spec)
  const kafkaBrokers = () => readEndpoints().kafka.brokers
  let egress: Layer.Layer<Egress, unknown> = EmbeddedEgress.layer(embeddedOptions)
  if (kafkaSinks.size > 0) {
    // Sink.kafka next to the embedded sinks: the Kafka egress publishes the key groups of the hosted partitions.
    const hosted = deployment?.host.partitions ?? Array.from({ length: partitions }, (_, p) => p)
    const kgs: number[] = []
    for (let kg = 0; kg < plan.keyGroups; kg++) if (hosted.includes(ownerOf(kg, plan.keyGroups, partitions))) kgs.push(kg)
    const lo = kgs[0] ?? 0
    const hi = kgs.length === 0 ? 0 : kgs.at(-1)! + 1
    if (hi - lo !== kgs.length) throw new Error(`the Kafka egress needs this process's partitions to be contiguous, got ${hosted.join(", ")}`)
    const namespace = options.namespace ?? deployment?.namespace ?? embeddedNamespace(app, options.dataDir)
    const isKafka = (sink: string) => kafkaSinks.has(sink)
    egress = Layer.scoped(
      Egress,
      Effect.gen(function* () {
        const embedded = yield* EmbeddedEgress.make(embeddedOptions)
        const kafkaOptions = { brokers: kafkaBrokers(), namespace, sinks: kafkaSinks, lo, hi, partitions: hosted.length }
        // A worker thread of its own answers the brokers at once (see KafkaEgressThread.ts).
        const kafka = yield* (kafkaTrace.egressOnEngineThread === true ? KafkaEgress.make(kafkaOptions) : makeKafkaEgressThread(kafkaOptions))
        return composeEgress([
          { owns: (sink) => !isKafka(sink), egress: embedded },
          { owns: isKafka, egress: kafka },
        ])
      }),
    )
  }
  const hasKafkaSources = plan.splits.some((s) => s.source.connector?.kind === "kafka")
  const layers =
    deployment === undefined
      ? Layer.mergeAll(
          logLayer(options.dataDir, options.logSegmentBytes),
          options.dataDir === undefined ? MemoryBlobStore.layer() : DirectoryBlobStore.layer(join(options.dataDir, "snapshots")),
          InProcessTransport.layer,
          egress,
        )
      : Layer.merge(deployment.ports, egress)
  const program = runEngine(plan, {
    partitions,
    checked: options.checked ?? true,
    keyGroupRoundLimit: options.keyGroupRoundLimit ?? 10_000,
    epochAtoms: options.epochAtoms ?? 1000,
    roundLimit: options.roundLimit ?? 64,
    inTransitLimit: options.inTransitLimit ?? 1_000_000,
    epochMs: options.epochMs ?? 10,
    clock: options.clock ?? "wall",
    stopWhenIdle: options.stopWhenIdle ?? options.serve === undefined,
    requests: front,
    reporter: defaultReporter(options, failures),
    onCommit: (e, votes, timing) => {
      lastCommitted = e
      for (const v of votes) {
        recordsIn += v.records
        recordsOut += v.out ?? 0
      }
      options.onCommit?.(e, votes, timing)
    },
    onOpen: (e) => {
      idle = false
      options.onOpen?.(e)
    },
    onIdle: () => {
      idle = true
    },
    ...(options.onRecovered ? { onRecovered: options.onRecovered } : {}),
    shouldStop: (e) => stopRequested || options.stopWhen?.(e) === true,
    onEpochEnd,
    onCommitBoundary,
    ...(options.pipeline === undefined ? {} : { pipeline: options.pipeline }),
    snapshotEvery: options.snapshotEvery ?? 100,
    // Unless told otherwise, a busy app (hundreds of epochs a second) snapshots every 100 epochs but at most every
    // 5 s: the log holds everything in between, and each snapshot costs writes and fsyncs per key group.
    snapshotMinMs: options.snapshotMinMs ?? (options.snapshotEvery === undefined ? 5000 : 0),
    ...(options.snapshotChain === undefined ? {} : { snapshotChain: options.snapshotChain }),
    ...(options.snapshotThread === undefined ? {} : { snapshotThread: options.snapshotThread }),
    ...(deployment === undefined ? {} : { host: deployment.host, ...(deployment.livenessMs === undefined ? {} : { livenessMs: deployment.livenessMs }) }),
    ...(options.onSnapshot ? { onSnapshot: options.onSnapshot } : {}),
    // kafkaTrace.ingressInWorker: the consumers in a worker thread of their own (see KafkaIngressThread.ts).
    ...(hasKafkaSources ? { openSplit: kafkaSplitOpener({ brokers: kafkaBrokers() }, kafkaTrace.ingressInWorker === true ? kafkaIngressThread({ brokers: kafkaBrokers() }) : undefined) } : {}),
    ...(options.onSnapshotPart ? { onSnapshotPart: options.onSnapshotPart } : {}),
    ...(options.onRestored ? { onRestored: options.onRestored } : {}),
  }).pipe(Effect.provide(layers), Effect.scoped)
  const state: StateAccess = { read: (f) => read((r) => f(r)) }
  const http = options.serve === undefined ? undefined : startHttpFront(front, state, { app: app.name, ...options.serve })
  const endpointFile = options.dataDir === undefined ? undefined : join(options.dataDir, "endpoint.json")
  const url =
    http === undefined
      ? undefined
      : http.then(({ url }) => {
          if (endpointFile !== undefined) writeFileSync(endpointFile, JSON.stringify({ url, pid: process.pid }) + "\n")
          return url
        })
  const served = deployment?.serve?.(front, state, plan.keyGroups)
  // A front that cannot open leaves the app running without it: say so rather than fail silently.
  served?.catch((err: unknown) => process.stderr.write(`eddy: the client endpoint did not open: ${err instanceof Error ? err.message : String(err)}\n`))
  const done = Effect.runPromiseExit(program).then(async (exit): Promise<RunSummary> => {
    front.close(`app '${app.name}' stopped`)
    if (served !== undefined) await served.then((x) => x.close()).catch(() => undefined)
    if (http !== undefined) {
      const { server } = await http.catch(() => ({ server: undefined }))
      server?.closeAllConnections()
      server?.close()
      if (endpointFile !== undefined) rmSync(endpointFile, { force: true })
    }
    finished = true
    if (reader !== undefined) for (const w of waiting.splice(0)) w(reader)
    if (Exit.isSuccess(exit)) return { ...exit.value, failureList: failures }
    const err = Exit.isFailure(exit) ? exit.cause : undefined
    throw toError(err)
  })
  return {
    done,
    outputs: <T>(sink: string) => (outputs.get(sink) ?? []) as ReadonlyArray<T>,
    failures,
    query: (task, key) => read((r) => r.get(task, key)),
    keys: (task) => read((r) => r.keys(task)),
    stop: () => {
      stopRequested = true
      return done
    },
    client: localClient(front, state),
    url,
    stats: () => ({ epoch: lastCommitted, records: recordsIn, out: recordsOut, requests: front.admitted, answered: front.answered, failures: failures.length }),
  }
}

const toError = (cause: unknown): Error => {
  const squashed = cause === undefined ? new Error("engine failed") : (Effect.runSync(Effect.sync(() => causeToError(cause))) as Error)
  return squashed
}

const causeToError = (cause: unknown): unknown => {
  // Typed failures (ConfigError, LogCorruptedError, ...) keep their tag and message for the caller.
  const c = cause as { _tag?: string; error?: unknown; defect?: unknown; left?: unknown; right?: unknown }
  if (c._tag === "Fail") return c.error
  if (c._tag === "Die") return c.defect
  if (c._tag === "Sequential" || c._tag === "Parallel") return causeToError(c.left) ?? causeToError(c.right)
  return new Error(String(cause))
}

/** Runs an app to completion on the embedded default. */
export const run = async (
  app: App,
  options: RunOptions = {},
): Promise<RunSummary & Pick<RunningApp, "outputs" | "query" | "keys">> => {
  const running = start(app, options)
  const summary = await running.done
  return { ...summary, outputs: running.outputs, query: running.query, keys: running.keys }
}

export interface StateEntryView {
  readonly task: string
  readonly key: string
  readonly value: unknown
}

/**
 * The committed state in a data directory, of a stopped or a running app (it only reads: a torn tail being
 * written is skipped, not cut): every task's entries, sorted by task and key.
 */
export const committedState = (dataDir: string): Promise<CommittedState> =>
  committedStateFrom(Layer.merge(FileLog.layer(join(dataDir, "log"), { readOnly: true }), DirectoryBlobStore.layer(join(dataDir, "snapshots"), { readOnly: true })))

export interface CommittedState {
  readonly epoch: number
  readonly entries: ReadonlyArray<StateEntryView>
}

/** Committed state read through any Log and BlobStore (a cluster's Kafka and S3, say). */
export const committedStateFrom = async (ports: Layer.Layer<Log | BlobStore, unknown>): Promise<CommittedState> => {
  const program = Effect.gen(function* () {
    const log = yield* Log
    const blobs = yield* BlobStore
    const snapshot = yield* new SnapshotManager(blobs, "", 0).load(undefined)
    return recover(yield* log.readAll, snapshot)
  }).pipe(Effect.provide(ports), Effect.scoped)
  const exit = await Effect.runPromiseExit(program)
  if (Exit.isFailure(exit)) throw toError(exit.cause)
  const rec = exit.value
  const entries: StateEntryView[] = []
  for (const grp of rec.groups.values()) {
    for (const [task, t] of grp.tables) {
      if (task.startsWith("$")) continue
      for (const [key, value] of t) entries.push({ task, key, value })
    }
  }
  entries.sort((a, b) => (a.task < b.task ? -1 : a.task > b.task ? 1 : a.key < b.key ? -1 : a.key > b.key ? 1 : 0))
  return { epoch: rec.lastEpoch, entries }
}

/** Committed state as the reader an app's `report` takes. */
export const stateReader = (state: CommittedState): CommittedStateReader => {
  const byTask = new Map<string, Map<string, unknown>>()
  for (const e of state.entries) {
    let t = byTask.get(e.task)
    if (t === undefined) byTask.set(e.task, (t = new Map()))
    t.set(e.key, e.value)
  }
  return {
    query: (task, key) => Promise.resolve(byTask.get(task)?.get(canonicalKey(key))),
    keys: (task) => Promise.resolve([...(byTask.get(task)?.keys() ?? [])].map(parseCanonicalKey)),
  }
}

export const Eddy = { start, run, committedState }

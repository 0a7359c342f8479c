import { mkdirSync } from "node:fs"
import { join } from "node:path"
import { Effect, Exit, Layer } from "effect"
import type { App, CommittedStateReader } from "../workflows/App.ts"
import { canonicalKey, parseCanonicalKey } from "./engine/keys.ts"
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
import { SnapshotManager, type PartStats } from "./engine/snapshots.ts"

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
  /** The coordinator opened epoch e (progress and fault-injection tests). */
  readonly onOpen?: (epoch: number) => void
  /** The coordinator recovered to epoch e from the log, before opening anything. */
  readonly onRecovered?: (epoch: number) => void
  /** Polled after each commit: true stops the run there (a drain; `stop()` does the same from outside). */
  readonly stopWhen?: () => boolean
  readonly onFailure?: (failure: TaskFailure) => void
  readonly onLog?: (level: "info" | "warn" | "error", task: string, key: string | undefined, message: string) => void
  readonly onCommit?: (epoch: number, votes: ReadonlyArray<Vote>, timing: CommitTiming) => void
  /** Log segment size in bytes (default 64 MiB); old segments are deleted once a snapshot covers them. */
  readonly logSegmentBytes?: number
  /** Snapshot every this many committed epochs (default 100; 0: never). */
  readonly snapshotEvery?: number
  readonly onSnapshot?: (epoch: number) => void
  /** This process wrote its part of snapshot `epoch`. */
  readonly onSnapshotPart?: (epoch: number, stats: PartStats) => void
  /** This process restored its state from the snapshot and the log (timings of each step). */
  readonly onRestored?: (timing: RestoreTiming) => void
  /** Where console sinks print (default: standard output). */
  readonly print?: (line: string) => void
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
  /** Stops at the next epoch boundary, after its commit. */
  stop(): Promise<RunSummary>
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
}

/** Starts an app on the embedded default: in-process transport, file log (or memory), file and memory sinks. */
export const start = (app: App, options: RunOptions = {}, deployment?: Deployment): RunningApp => {
  const plan = compile(app)
  const outputs = new Map<string, unknown[]>()
  const failures: TaskFailure[] = []
  let stopRequested = false
  let reader: StateReader | undefined
  let finished = false
  const waiting: Array<(r: StateReader) => void> = []
  const onCommitBoundary = (r: StateReader) => {
    reader = r
    for (const w of waiting.splice(0)) w(r)
  }
  const read = <A>(f: (r: StateReader) => A): Promise<A> =>
    new Promise<A>((resolve, reject) => {
      const answer = (r: StateReader) => {
        try {
          resolve(f(r))
        } catch (err) {
          reject(err instanceof Error ? err : new Error(String(err)))
        }
      }
      if (finished && reader !== undefined) answer(reader)
      else waiting.push(answer)
    })
  const partitions = options.partitions ?? 1
  if (options.dataDir !== undefined) mkdirSync(options.dataDir, { recursive: true })
  const egress = EmbeddedEgress.layer({
    sinks: plan.sinks,
    partitions: deployment?.host.partitions.length ?? partitions,
    dataDir: options.dataDir,
    outputs,
    ...(options.print ? { print: options.print } : {}),
  })
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
    stopWhenIdle: options.stopWhenIdle ?? true,
    reporter: defaultReporter(options, failures),
    ...(options.onCommit ? { onCommit: options.onCommit } : {}),
    ...(options.onOpen ? { onOpen: options.onOpen } : {}),
    ...(options.onRecovered ? { onRecovered: options.onRecovered } : {}),
    shouldStop: () => stopRequested || options.stopWhen?.() === true,
    onCommitBoundary,
    snapshotEvery: options.snapshotEvery ?? 100,
    ...(deployment === undefined ? {} : { host: deployment.host, ...(deployment.livenessMs === undefined ? {} : { livenessMs: deployment.livenessMs }) }),
    ...(options.onSnapshot ? { onSnapshot: options.onSnapshot } : {}),
    ...(options.onSnapshotPart ? { onSnapshotPart: options.onSnapshotPart } : {}),
    ...(options.onRestored ? { onRestored: options.onRestored } : {}),
  }).pipe(Effect.provide(layers), Effect.scoped)
  const done = Effect.runPromiseExit(program).then((exit): RunSummary => {
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

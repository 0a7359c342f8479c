import { Cause, Data, Duration, Effect, Fiber } from "effect"
import { BlobStore } from "../ports/BlobStore.ts"
import type { LogPosition } from "../ports/Log.ts"
import { Egress } from "../ports/Egress.ts"
import { Log } from "../ports/Log.ts"
import { COORDINATOR, Transport } from "../ports/Transport.ts"
import { encode } from "./codec.ts"
import { CoordinatorCore, type CoordinatorOptions } from "./CoordinatorCore.ts"
import { encodeRecord, forEachEgress } from "./EpochRecord.ts"
import { ConfigError } from "./errors.ts"
import { SplitReader, type SplitOpener } from "./ingress.ts"
import { PartitionCore, type IngressBatch, type Reporter } from "./PartitionCore.ts"
import type { Plan } from "./Plan.ts"
import type { CommitRecord, FenceRecord, SnapshotWritten, Vote, Wake } from "./protocol.ts"
import { firstPosition, recover } from "./recovery.ts"
import type { Key } from "../../workflows/Key.ts"
import { canonicalKey, keyGroupOf, ownerOf, parseCanonicalKey } from "./keys.ts"
import { threadFolder } from "./DeltaFolder.ts"
import { DEFAULT_CHAIN_POLICY, SnapshotManager, type ChainPolicy, type LoadStats, type PartStats } from "./snapshots.ts"

export interface EngineOptions extends Omit<CoordinatorOptions, "partitions"> {
  readonly partitions: number
  readonly checked: boolean
  readonly keyGroupRoundLimit: number
  readonly reporter: Reporter
  /** Called when the coordinator opens an epoch, and once at start with the epoch recovered from the log. */
  readonly onOpen?: (e: number) => void
  readonly onRecovered?: (e: number) => void
  /** The coordinator found nothing to do after the last commit: until the next open, state is the committed state. */
  readonly onIdle?: () => void
  /** Called after each COMMIT is durable. */
  readonly onCommit?: (e: number, votes: ReadonlyArray<Vote>, timing: CommitTiming) => void
  /**
   * Polled once per epoch when its votes are all in (e: that epoch), and when an idle coordinator would open the next
   * (e: the last committed): true makes e the last epoch of the run.
   */
  readonly shouldStop?: (e: number) => boolean
  /**
   * The partitions hosted here hold exactly the state at the end of epoch `state.epoch`, before its COMMIT is
   * durable (it becomes the committed state iff that COMMIT does; until then nothing read here may leave).
   */
  readonly onEpochEnd?: (state: StateReader) => void
  /**
   * Epoch `state.epoch` committed (here: every hosted partition heard so), and at start with the recovered epoch.
   * The live state is that committed state only while no later epoch runs (the coordinator idles or finished).
   */
  readonly onCommitBoundary?: (state: StateReader) => void
  /** Open the next epoch while the previous one's COMMIT is written (default false; see CoordinatorCore). */
  readonly pipeline?: boolean
  /**
   * What this process hosts: the coordinator and/or some partitions (default: everything, the embedded case).
   * A cluster runs the same engine once per process with a different `host`.
   */
  readonly host?: { readonly coordinator: boolean; readonly partitions: ReadonlyArray<number> }
  /**
   * Cluster liveness: the coordinator fails if an epoch does not commit within this time, a worker if it hears
   * nothing for this long; either way the process exits and recovery (all processes restart) takes over.
   */
  readonly livenessMs?: number
  /** Snapshot every this many committed epochs (0: never). */
  readonly snapshotEvery: number
  /** And at least this long after the last snapshot epoch (0: epochs alone decide). */
  readonly snapshotMinMs?: number
  readonly onSnapshot?: (epoch: number) => void
  /** Opens splits of seekable sources (Kafka); needed only if the app has such sources. */
  readonly openSplit?: SplitOpener
  /** Client requests into the live sources this process hosts, and their committed answers. */
  readonly requests?: RequestChannel
  /** Snapshot blobs read or written at once (default 16). */
  readonly snapshotConcurrency?: number
  /** When a key group's snapshot chain is folded into a new image (default DEFAULT_CHAIN_POLICY). */
  readonly snapshotChain?: Partial<ChainPolicy>
  /** Build snapshot parts in a thread of their own (default true); false: on the engine's thread. */
  readonly snapshotThread?: boolean
  /** This process wrote its part of snapshot `epoch` (what it uploaded, how long it took). */
  readonly onSnapshotPart?: (epoch: number, stats: PartStats) => void
  /** Every process, once it has restored its state and before it takes part in an epoch: where start-up went. */
  readonly onRestored?: (timing: RestoreTiming) => void
}

/**
 * Where a process's client requests wait until an epoch takes them (runtime/front implements it). Requests in an
 * epoch that aborts are gone with the process (recovery restarts it): callers retry with the same idempotency key.
 */
export interface RequestChannel {
  /** Up to `max` requests pushed into live split `split` (an index into plan.splits), one atom each. */
  take(split: number, max: number): ReadonlyArray<ReadonlyArray<unknown>>
  /** Whether requests wait in any of these splits. */
  waiting(splits: ReadonlyArray<number>): boolean
  /** The engine's wake-up, called by the channel when requests arrive at an empty channel. */
  onArrival(wake: () => void): void
  /** The committed records of reply sinks of epoch e, once it committed. */
  answer(e: number, records: ReadonlyArray<unknown>): void
}

/** Where a process's recovery time went, in milliseconds (`performance.now()` is time since the process started). */
export interface RestoreTiming {
  readonly epoch: number
  /** When the engine started, after the ports connected: module loading and connecting. */
  readonly startedAt: number
  /** The snapshot loaded (undefined: none). */
  readonly snapshot: LoadStats | undefined
  /** Fetching the snapshot's blobs (concurrently with reading the log), plus decoding them (after). */
  readonly snapshotMs: number
  readonly logEntries: number
  readonly logMs: number
  /** The snapshot's blobs and the log are fetched concurrently, then the blobs decoded: the time until all is in. */
  readonly readMs: number
  /** Rolling the log forward from the snapshot (decoding and applying records). */
  readonly replayMs: number
  /** FENCE (coordinator), egress recovery, restoring the partitions' tables. */
  readonly restoreMs: number
}

/** Reads the live state of the partitions hosted here; valid only at a commit boundary (then it is committed state). */
export interface StateReader {
  readonly epoch: number
  get(task: string, key: Key): unknown
  keys(task: string): ReadonlyArray<Key>
}

export class LivenessError extends Data.TaggedError("LivenessError")<{ readonly message: string }> {}

/** How long the commit of one epoch took, in milliseconds. */
export interface CommitTiming {
  /** From the last vote to the COMMIT record being durable (the commit latency proper). */
  readonly commitMs: number
  /** From the epoch's open to its COMMIT being durable. */
  readonly epochMs: number
}

export interface RunResult {
  readonly generation: number
  /** The epoch the run started after (last committed epoch found in the log). */
  readonly recoveredEpoch: number
  readonly lastEpoch: number
  readonly epochs: number
  readonly records: number
  readonly failures: number
}

/**
 * The one engine: recovers from the log, then drives partitions and the coordinator hosted by this process through
 * the Transport, Log and Egress ports. Embedded and cluster differ only in the layers provided.
 */
export const runEngine = (plan: Plan, options: EngineOptions) =>
  Effect.gen(function* () {
    const log = yield* Log
    const transport = yield* Transport
    const egress = yield* Egress
    const blobs = yield* BlobStore
    const P = options.partitions
    if (!Number.isInteger(P) || P < 1 || P > plan.keyGroups) {
      return yield* Effect.fail(new ConfigError(`partitions must be an integer in 1..${plan.keyGroups} (the app's key groups), got ${P}`))
    }

    const host = options.host ?? { coordinator: true, partitions: Array.from({ length: P }, (_, p) => p) }
    for (const p of host.partitions) if (!Number.isInteger(p) || p < 0 || p >= P) return yield* Effect.fail(new ConfigError(`partition ${p} is not in 0..${P - 1}`))
    // A process restores the state of the key groups it hosts, and republishes only their egress (an EgressBatch has
    // its key group at index 1).
    const hostedSet = new Set(host.partitions)
    const ownsKg = (kg: number) => hostedSet.has(ownerOf(kg, plan.keyGroups, P))

    const startedAt = performance.now()
    // The changes since the last snapshot part, and the part's merge, fold and encode, live in a thread of their own.
    const folder = options.snapshotEvery > 0 && options.snapshotThread !== false ? yield* Effect.acquireRelease(Effect.sync(threadFolder), (f) => Effect.promise(() => f.close())) : undefined
    const snapshots = new SnapshotManager(blobs, plan.app.name, plan.keyGroups, {
      ...(options.snapshotConcurrency === undefined ? {} : { concurrency: options.snapshotConcurrency }),
      chains: { ...DEFAULT_CHAIN_POLICY, ...options.snapshotChain },
      ...(folder === undefined ? {} : { folder }),
    })
    // The snapshot's blobs (S3) and the log (Kafka) are fetched at once: independent, and both mostly waiting. The
    // blobs are decoded after both are in: decoding is CPU work that would stall the log read. (A forked fetch, not
    // Effect.all: a failure of either stays a plain failure, not one beside an interruption.)
    const took = <A, E>(eff: Effect.Effect<A, E>) => Effect.map(Effect.timed(eff), ([d, a]) => [Duration.toMillis(d), a] as const)
    const fetching = yield* Effect.fork(took(snapshots.fetch(undefined, ownsKg)))
    const [logMs, entries] = yield* took(log.readAll)
    const [fetchMs, fetched] = yield* Fiber.join(fetching)
    const [decodeMs, snapshot] = yield* took(Effect.sync(() => (fetched === undefined ? undefined : snapshots.decodeFetched(fetched))))
    const snapshotMs = fetchMs + decodeMs
    const readAt = performance.now()
    const rec = recover(entries, snapshot, { ownsKg })
    const replayedAt = performance.now()
    const commitPositions = new Map<number, LogPosition>(rec.commits.map((c) => [c.e, c.position]))
    const walFrom = new Map<number, LogPosition>()
    for (const c of rec.commits) if (c.walFrom !== undefined) walFrom.set(c.e, c.walFrom)
    let folded = rec.lastEpoch
    const parts = new Map<number, SnapshotWritten[]>()
    if (rec.app !== undefined && rec.app !== plan.app.name) {
      return yield* Effect.fail(new ConfigError(`the data directory belongs to app '${rec.app}', not '${plan.app.name}'`))
    }
    if (rec.keyGroups !== undefined && rec.keyGroups !== plan.keyGroups) {
      return yield* Effect.fail(new ConfigError(`the data was written with ${rec.keyGroups} key groups; app '${plan.app.name}' now has ${plan.keyGroups}; key groups are fixed for the life of the data`))
    }
    // Only the coordinator opens a generation; partitions learn it from the epochs it opens.
    const g = rec.g + 1
    if (host.coordinator) {
      const fence: FenceRecord = { t: "fence", g, app: plan.app.name, keyGroups: plan.keyGroups }
      yield* log.appendDurable("control", encode(fence))
    }
    const splitKg = new Map(plan.splits.map((s) => [s.id, s.keyGroup]))
    const ownsSplit = (id: string) => ownsKg(splitKg.get(id) ?? -1)
    yield* egress.recover(hostedSet.size === P ? rec.committed : rec.committed.map((c) => ({ ...c, egress: c.egress.filter((x) => ownsKg(x[1])) })), rec.lastEpoch)

    const cores: Array<PartitionCore | undefined> = new Array<PartitionCore | undefined>(P).fill(undefined)
    for (const p of host.partitions) {
      const core = new PartitionCore(plan, { partition: p, partitions: P, checked: options.checked, keyGroupRoundLimit: options.keyGroupRoundLimit, reporter: options.reporter })
      core.restore(rec)
      core.g = g
      cores[p] = core
    }
    const hosted = cores.filter((c): c is PartitionCore => c !== undefined)
    // The snapshot delta since the loaded snapshot: only the key groups (and their splits) this process hosts,
    // since its parts must never carry another process's (possibly older) blobs.
    {
      for (const c of rec.committed) {
        if (c.e <= (snapshot?.epoch ?? 0)) continue
        snapshots.committed(
          c.e,
          c.records.map((r) => ({
            ...r,
            state: r.state.filter(([kg]) => ownsKg(kg)),
            inTransit: r.inTransit.filter(([kg]) => ownsKg(kg)),
            ingress: r.ingress.filter(([id]) => ownsSplit(id)),
          })),
        )
      }
    }
    const readers = cores.map((core) => (core === undefined ? [] : [...core.positions].map(([i, pos]) => ({ i, pos, reader: new SplitReader(plan.splits[i]!, pos, options.openSplit) }))))
    yield* Effect.addFinalizer(() => Effect.promise(() => Promise.all(readers.flat().map((r) => r.reader.close().catch(() => undefined)))))
    for (const r of readers.flat()) r.reader.prepare()
    // Splits that wake the coordinator when records arrive (Kafka): while they are quiet, an idle app waits for
    // that instead of running back-to-back empty epochs (each a log fsync).
    const wakeWhenData = new Set<SplitReader>()
    // Client requests and quiet splits' records wake an idle coordinator the same way.
    const wake: Wake = { t: "wake" }
    const wakeCoordinator = () => void Effect.runFork(transport.send(COORDINATOR, wake).pipe(Effect.ignore))
    for (const r of readers.flat()) if (r.reader.onData(wakeCoordinator)) wakeWhenData.add(r.reader)
    /** Per partition: the epoch whose ingress read found every split exhausted or quiet. */
    const quietIn = new Map<number, number>()
    let inTransit = 0
    for (const msgs of rec.inTransit.values()) inTransit += msgs.length
    const { shouldStop } = options
    const engineScope = yield* Effect.scope
    const coord = new CoordinatorCore(g, rec.lastEpoch, inTransit, { ...options, partitions: P, ...(shouldStop === undefined ? {} : { shouldStop }) })

    const taskId = (task: string): number => {
      const id = plan.tableIds.get(task)
      if (id === undefined) throw new ConfigError(`app '${plan.app.name}' has no task '${task}'`)
      return id
    }
    const reader = (epoch: number): StateReader => ({
      epoch,
      get: (task, key) => {
        const id = taskId(task)
        const ks = canonicalKey(key)
        // An entry ([key, sub-key]) lives in its key's group; a group entry ([key group, sub-key]) in that group.
        const first = (key as ReadonlyArray<Key>)[0]
        const kg = id < plan.nodes.length ? keyGroupOf(ks, plan.keyGroups) : plan.groupEntryTables.has(id) ? Number(first) : keyGroupOf(canonicalKey(first!), plan.keyGroups)
        return cores[ownerOf(kg, plan.keyGroups, P)]?.groups.get(kg)?.tables.get(id)?.get(ks)
      },
      keys: (task) => {
        const id = taskId(task)
        const out: string[] = []
        for (const core of hosted) for (const grp of core.groups.values()) for (const ks of grp.tables.get(id)?.keys() ?? []) out.push(ks)
        return out.sort().map(parseCanonicalKey)
      },
    })
    options.onCommitBoundary?.(reader(rec.lastEpoch))
    options.onRestored?.({
      epoch: rec.lastEpoch,
      startedAt,
      snapshot: snapshots.loaded,
      snapshotMs,
      logEntries: entries.length,
      logMs,
      readMs: readAt - startedAt,
      replayMs: replayedAt - readAt,
      restoreMs: performance.now() - replayedAt,
    })
    if (host.coordinator) options.onRecovered?.(rec.lastEpoch)

    let records = 0
    let failures = 0
    let committedHeard = { e: 0, n: 0 }
    let lastSnapshotAt = 0
    /** The last epoch the coordinator flagged as a snapshot epoch (its manifest may not be written yet). */
    let lastSnapshotEpoch = 0
    let wakeAt: number | undefined
    let idleAfter = 0
    let woken = false
    const replySinks = new Set(plan.app.workflows.flatMap((w) => w.endpoints.map((x) => x.replies)))
    let epochs = 0
    let finishedAt: number | undefined
    /** Per uncommitted epoch: when it opened and when its votes were in (for CommitTiming). */
    const openedAt = new Map<number, number>()
    const votedAt = new Map<number, number>()
    /** COMMIT records being written (the first) or waiting to be, by epoch. */
    const commitRecords = new Map<number, CommitRecord>()
    let commitFailure: Cause.Cause<unknown> | undefined
    /** Per epoch: how many hosted partitions have finished it (onEpochEnd once all have). */
    const ended = new Map<number, number>()
    let stopAt: number | undefined
    let opened = false
    const ready = new Set<number>()
    const publishCounts = new Map<number, number>()
    let fullyPublished = rec.lastEpoch

    const drainPartition = (p: number) =>
      Effect.gen(function* () {
        const core = cores[p]!
        while (core.out.length > 0) {
          const o = core.out.shift()!
          switch (o.o) {
            case "send":
              yield* transport.send(o.to, o.env)
              break
            case "record": {
              const { payload, checksum } = encodeRecord(o.record)
              const position = yield* log.append("wal", payload)
              if (options.snapshotEvery > 0) snapshots.record(o.record, payload)
              records += o.records
              failures += o.failures
              // The generation is the one the coordinator opened this epoch in (a worker learns it from "open").
              const exhausted = o.exhausted && (options.requests === undefined || !options.requests.waiting(core.liveSplits))
              const quiet = quietIn.get(p) === o.e && (options.requests === undefined || !options.requests.waiting(core.liveSplits))
              const vote: Vote = { t: "vote", g: core.g, e: o.e, from: p, position, checksum, inTransit: o.inTransit, exhausted, ...(quiet ? { quiet } : {}), failures: o.failures, records: o.records, out: o.out }
              yield* transport.send(COORDINATOR, vote)
              // Once every hosted partition finished e (none can open e+1 before all voted), their state is e's end.
              const n = (ended.get(o.e) ?? 0) + 1
              if (n < hosted.length) ended.set(o.e, n)
              else {
                ended.delete(o.e)
                options.onEpochEnd?.(reader(o.e))
              }
              break
            }
            case "publish":
              if (replySinks.size > 0 && options.requests !== undefined) {
                const answers: unknown[] = []
                forEachEgress(o.egress, (sink, _kg, _seq, v) => {
                  if (replySinks.has(sink)) answers.push(v)
                })
                if (answers.length > 0) options.requests.answer(o.e, answers)
              }
              yield* egress.publish(o.e, p, o.egress)
              publishCounts.set(o.e, (publishCounts.get(o.e) ?? 0) + 1)
              while (publishCounts.get(fullyPublished + 1) === hosted.length) publishCounts.delete(++fullyPublished)
              break
          }
        }
      })

    /** COMMIT(e) is durable: where its epoch's records start (truncation), then the coordinator goes on. */
    const onDurable = (e: number, record: CommitRecord | undefined): void => {
      const first = record === undefined ? undefined : firstPosition(record.votes.map((v) => v.position))
      if (first !== undefined) walFrom.set(e, first)
      coord.onCommitDurable(e)
    }

    const drainCoordinator: Effect.Effect<void, unknown> = Effect.gen(function* () {
      while (coord.out.length > 0) {
        const o = coord.out.shift()!
        switch (o.o) {
          case "open":
            // Everything queued before this open is taken by it: earlier wakes are spent.
            woken = false
            openedAt.set(o.env.e, performance.now())
            epochStarted = Date.now()
            options.onOpen?.(o.env.e)
            for (let p = 0; p < P; p++) yield* transport.send(p, o.env)
            break
          case "commit": {
            const e = o.record.e
            if (!votedAt.has(e)) votedAt.set(e, performance.now())
            if (options.pipeline !== true) {
              // One epoch at a time: the loop waits for the COMMIT (nothing else to do meanwhile).
              commitPositions.set(e, yield* log.appendDurable("control", encode(o.record)))
              onDurable(e, o.record)
              break
            }
            // Written beside the next epoch (pipelining); the loop hears of it as DURABLE(e).
            commitRecords.set(e, o.record)
            yield* Effect.forkIn(
              log.appendDurable("control", encode(o.record)).pipe(
                Effect.tap((position) => Effect.sync(() => commitPositions.set(e, position))),
                Effect.catchAllCause((cause) => Effect.sync(() => (commitFailure ??= cause))),
                Effect.zipRight(transport.send(COORDINATOR, { t: "durable", e })),
                Effect.ignore,
              ),
              engineScope,
            )
            break
          }
          case "committed":
            epochs++
            {
              // The coordinator picks snapshot epochs (every snapshotEvery-th, and not more often than
              // snapshotMinMs) and says so in COMMITTED, so every process writes its part of the same epoch.
              const now = Date.now()
              const snapshot = options.snapshotEvery > 0 && o.e % options.snapshotEvery === 0 && now - lastSnapshotAt >= (options.snapshotMinMs ?? 0)
              if (snapshot) {
                lastSnapshotAt = now
                lastSnapshotEpoch = o.e
              }
              for (let p = 0; p < P; p++) yield* transport.send(p, snapshot ? { t: "committed", g, e: o.e, snapshot } : { t: "committed", g, e: o.e })
            }
            {
              const now = performance.now()
              const timing: CommitTiming = { commitMs: now - (votedAt.get(o.e) ?? now), epochMs: now - (openedAt.get(o.e) ?? now) }
              votedAt.delete(o.e)
              openedAt.delete(o.e)
              options.onCommit?.(o.e, o.votes, timing)
            }
            options.onCommitBoundary?.(reader(o.e))
            break
          case "finished":
            yield* finish(o.e)
            break
          case "idle":
            // Wait in the receive loop, so a wake (client requests arrived) can cut the wait short.
            idleAfter = o.e
            // Only client requests can bring work now, and they wake the coordinator: wait longer (fewer empty
            // epochs, each an fsync), but well within the workers' liveness timeout.
            // Quiet live sources wake it too.
            wakeAt = Date.now() + (replySinks.size > 0 || o.quiet === true ? Math.max(options.epochMs, Math.min(500, (options.livenessMs ?? 2000) / 4)) : options.epochMs)
            options.onIdle?.()
            break
        }
      }
    })

    /**
     * Snapshot epochs are chosen by the coordinator and flagged in COMMITTED, so every process agrees. When a process
     * sees COMMIT(e) it folds e's records of its partitions into its delta; at a snapshot epoch it writes its part
     * (the key groups written since its last part) and tells the coordinator. The upload runs beside the next
     * epochs; its CPU work (decode, merge, fold, encode) is in the snapshot thread (DeltaFolder).
     */
    let uploading: Fiber.RuntimeFiber<void, unknown> | undefined
    const onCommitted = (e: number, core: PartitionCore, snapshot: boolean) =>
      Effect.gen(function* () {
        if (options.snapshotEvery <= 0 || e <= folded) return
        folded = e
        snapshots.committed(e)
        if (!snapshot) return
        // One part at a time: a snapshot epoch that comes round while the last part still uploads waits for it.
        if (uploading !== undefined) yield* Fiber.join(uploading)
        // The part's content is fixed now (writePart takes the delta and the positions when called); its blobs
        // upload beside the epochs that follow instead of stopping them (an upload is mostly waiting for the disk
        // or S3: a few hundred ms per snapshot).
        const upload = snapshots.writePart(e, core.g, `p${host.partitions.join("-")}`, { kg: ownsKg, split: ownsSplit })
        uploading = yield* Effect.forkScoped(
          Effect.gen(function* () {
            const part = yield* upload
            options.onSnapshotPart?.(e, part.stats)
            const written: SnapshotWritten = { t: "snapshot", g: core.g, e, partitions: host.partitions, groups: part.groups, meta: part.meta, published: yield* egress.publishedThrough }
            yield* transport.send(COORDINATOR, written)
          }).pipe(
            // A snapshot that fails is retried at the next interval (its changes stay in the delta); the log keeps everything.
            Effect.catchIf(
              (err) => err._tag === "BlobStoreError" || err._tag === "SnapshotBuildError",
              (err) => Effect.sync(() => options.reporter.log("warn", "$snapshot", undefined, `snapshot part of epoch ${e} failed: ${err.message}`)),
            ),
            Effect.catchAllCause((cause) =>
              Cause.isInterruptedOnly(cause) ? Effect.void : Effect.sync(() => options.reporter.log("warn", "$snapshot", undefined, `snapshot part of epoch ${e} failed: ${Cause.pretty(cause)}`)),
            ),
            Effect.ensuring(Effect.sync(() => (uploading = undefined))),
          ),
        )
      })

    /**
     * The coordinator writes the manifest once every partition's part of e is in, then drops the log below both the
     * previous snapshot (kept as a grace copy) and the oldest epoch whose egress some process has not made durable.
     */
    const onSnapshotWritten = (w: SnapshotWritten) =>
      Effect.gen(function* () {
        if (w.g !== g) return
        let l = parts.get(w.e)
        if (l === undefined) parts.set(w.e, (l = []))
        l.push(w)
        const covered = new Set(l.flatMap((x) => x.partitions))
        if (covered.size < P) return
        parts.delete(w.e)
        const previous = snapshots.manifest?.epoch ?? 0
        yield* snapshots.writeManifest(w.e, g, l, Math.min(...l.map((x) => x.published)))
        options.onSnapshot?.(w.e)
        const keep = Math.min(previous, ...l.map((x) => x.published))
        const control = commitPositions.get(keep)
        const wal = walFrom.get(keep + 1)
        if (keep > 0 && control !== undefined && wal !== undefined) {
          yield* log.truncateBefore("control", control)
          yield* log.truncateBefore("wal", wal)
          for (const k of [...commitPositions.keys()]) if (k < keep) commitPositions.delete(k)
          for (const k of [...walFrom.keys()]) if (k <= keep) walFrom.delete(k)
        }
      }).pipe(Effect.catchTag("BlobStoreError", (err) => Effect.sync(() => options.reporter.log("warn", "$snapshot", undefined, `snapshot manifest of epoch ${w.e} failed: ${err.message}`))))

    /**
     * A run that ends gracefully completes the snapshot under way rather than dropping it (as Flink completes a
     * checkpoint before stop-with-savepoint returns), so the next start replays from it: this process's part is
     * uploaded, and the coordinator writes the manifest once every part is in. The coordinator waits for other
     * processes' parts up to the liveness time (10 s without one); a part that fails or never comes only costs the
     * next start a longer replay (the previous snapshot and the log are intact).
     */
    const finishSnapshot = Effect.gen(function* () {
      if (uploading !== undefined) yield* Fiber.join(uploading)
      if (!host.coordinator || lastSnapshotEpoch === 0) return
      const deadline = Date.now() + (options.livenessMs ?? 10_000)
      // Embedded, every part is this process's: its message is queued already (or its upload failed and none comes).
      const local = hostedSet.size === P
      while ((snapshots.manifest?.epoch ?? 0) < lastSnapshotEpoch) {
        const got = yield* transport.receiveWithin(local ? 0 : Math.max(deadline - Date.now(), 0))
        if (got === undefined) {
          if (local || Date.now() >= deadline) break
          continue
        }
        if (got.to === COORDINATOR && got.env.t === "snapshot") yield* onSnapshotWritten(got.env)
      }
    })

    /** The run is over after epoch e: every partition publishes through e and stops. */
    const finish = (e: number) =>
      Effect.gen(function* () {
        finishedAt = e
        for (let p = 0; p < P; p++) yield* transport.send(p, { t: "stop", g, e })
      })

    /** Partitions announce themselves until the first epoch opens (a coordinator may subscribe after them). */
    const announce = Effect.gen(function* () {
      for (const core of hosted) yield* transport.send(COORDINATOR, { t: "ready", from: core.options.partition, lastEpoch: rec.lastEpoch })
    })
    yield* announce
    let lastAnnounce = Date.now()
    let lastHeard = Date.now()
    let epochStarted = Date.now()
    const liveness = options.livenessMs
    const receive = liveness === undefined ? transport.receive : transport.receiveWithin(Math.min(liveness, 500))

    options.requests?.onArrival(wakeCoordinator)
    const receiveUntil = (at: number) => transport.receiveWithin(Math.max(at - Date.now(), 0))

    const done = () => (host.coordinator && hosted.length === 0 ? finishedAt !== undefined : stopAt !== undefined && fullyPublished >= stopAt)
    while (!done()) {
      if (wakeAt !== undefined && (woken || Date.now() >= wakeAt)) {
        wakeAt = undefined
        woken = false
        if (options.shouldStop?.(idleAfter) === true) yield* finish(idleAfter)
        else coord.open()
        yield* drainCoordinator
        continue
      }
      const got = wakeAt === undefined ? yield* receive : yield* receiveUntil(liveness === undefined ? wakeAt : Math.min(wakeAt, Date.now() + Math.min(liveness, 500)))
      const now = Date.now()
      if (!opened && hosted.length > 0 && now - lastAnnounce >= 500) {
        yield* announce
        lastAnnounce = now
      }
      if (liveness !== undefined) {
        if (host.coordinator && opened && finishedAt === undefined && now - epochStarted > liveness) {
          return yield* Effect.fail(new LivenessError({ message: `epoch ${coord.epoch} did not commit within ${liveness} ms: a partition is gone or cut off; restarting from the last committed epoch` }))
        }
        // Also the coordinator's own process once it decided to stop: its partitions must still hear every
        // COMMITTED and publish through the last epoch, and silence then is as much a fault as anywhere else.
        if ((!host.coordinator || (finishedAt !== undefined && hosted.length > 0)) && now - lastHeard > liveness) {
          return yield* Effect.fail(new LivenessError({ message: `no word from the coordinator or other partitions for ${liveness} ms; restarting from the last committed epoch` }))
        }
      }
      if (got === undefined) continue
      lastHeard = now
      const { to, env } = got
      if (to === COORDINATOR) {
        if (!host.coordinator) continue
        if (env.t === "ready") {
          if (env.lastEpoch !== rec.lastEpoch) {
            return yield* Effect.fail(new ConfigError(`partition ${env.from} recovered to epoch ${env.lastEpoch} but the coordinator to ${rec.lastEpoch}: they read different logs`))
          }
          ready.add(env.from)
          if (!opened && ready.size === P) {
            opened = true
            coord.open()
            yield* drainCoordinator
          }
          continue
        }
        if (env.t === "snapshot") {
          yield* onSnapshotWritten(env)
          continue
        }
        if (env.t === "wake") {
          // An epoch that voted to idle opens its successor after all; otherwise the wake is kept, even while an
          // epoch runs: a request that arrived after its vote must not wait out the idle time.
          if (coord.wake()) yield* drainCoordinator
          else woken = true
          continue
        }
        if (env.t === "durable") {
          if (commitFailure !== undefined) return yield* Effect.failCause(commitFailure)
          const record = commitRecords.get(env.e)
          commitRecords.delete(env.e)
          onDurable(env.e, record)
          yield* drainCoordinator
          continue
        }
        if (env.t !== "vote") throw new Error(`assertion: coordinator got '${env.t}'`)
        coord.onVote(env)
        if (woken && coord.wake()) woken = false
        yield* drainCoordinator
        continue
      }
      const core = cores[to]
      if (core === undefined) continue
      if (env.t === "stop") {
        stopAt = env.e
        continue
      }
      if (env.t === "open") {
        opened = true
        const batches: IngressBatch[] = []
        if (options.requests !== undefined) {
          for (const i of core.liveSplits) {
            const atoms = options.requests.take(i, env.budget)
            if (atoms.length > 0) batches.push({ split: i, atoms })
          }
        }
        // Splits are read concurrently (an epoch waits for async sources once, not once per split); batches stay
        // in split order.
        const read = yield* Effect.promise(() => Promise.all(readers[to]!.map((r) => r.reader.read(env.budget, options.epochMs))))
        if (readers[to]!.every((r) => r.reader.exhausted || (r.reader.quiet && wakeWhenData.has(r.reader)))) quietIn.set(to, env.e)
        else quietIn.delete(to)
        readers[to]!.forEach((r, k) => {
          r.pos.position = r.reader.position
          r.pos.exhausted = r.reader.exhausted
          if (read[k]!.length > 0) batches.push({ split: r.i, atoms: read[k]! })
        })
        core.onOpen(env, batches)
      } else if (env.t !== "vote" && env.t !== "ready" && env.t !== "snapshot" && env.t !== "wake" && env.t !== "durable") core.handle(env)
      yield* drainPartition(to)
      if (env.t === "committed") {
        yield* onCommitted(env.e, core, env.snapshot === true)
        // A process without the coordinator reaches a commit boundary when all its partitions heard of the commit.
        if (!host.coordinator && (committedHeard = committedHeard.e === env.e ? { e: env.e, n: committedHeard.n + 1 } : { e: env.e, n: 1 }).n === hosted.length) {
          options.onCommitBoundary?.(reader(env.e))
        }
      }
    }
    yield* finishSnapshot
    yield* egress.flush
    const result: RunResult = { generation: g, recoveredEpoch: rec.lastEpoch, lastEpoch: finishedAt ?? stopAt ?? rec.lastEpoch, epochs, records, failures }
    return result
  })

import { Effect } from "effect"
import type { BlobStoreError, BlobStoreService } from "../ports/BlobStore.ts"
import { decode, encode } from "./codec.ts"
import type { EpochRecord } from "./EpochRecord.ts"
import type { Msg } from "./protocol.ts"
import type { RecoveredGroup, SnapshotState } from "./recovery.ts"

/**
 * A snapshot S exists iff its manifest exists. The manifest names one blob per key group (unchanged groups keep
 * the previous snapshot's blob) and a meta blob with S's ingress positions and in-transit messages.
 */
export interface Manifest {
  readonly epoch: number
  readonly g: number
  readonly app: string
  readonly keyGroups: number
  readonly groups: Readonly<Record<string, string>>
  readonly meta: string
}

interface Meta {
  readonly ingress: ReadonlyArray<readonly [string, number, boolean]>
  readonly inTransit: ReadonlyArray<readonly [number, ReadonlyArray<Msg>]>
}

type Tables = Map<string, Map<string, unknown>>

const pad = (e: number): string => String(e).padStart(12, "0")
export const manifestKey = (e: number): string => `manifests/${pad(e)}`

/**
 * Builds snapshots by folding the deltas of committed epochs into the previous snapshot's blobs: only key groups
 * written since the last snapshot are rewritten. Delta values are the (immutable) values of the epoch records.
 */
export class SnapshotManager {
  private uncommitted = new Map<number, EpochRecord[]>()
  private delta = new Map<number, Tables>()
  private ingress = new Map<string, readonly [string, number, boolean]>()
  private inTransit = new Map<number, ReadonlyArray<Msg>>()
  manifest: Manifest | undefined
  /** Epoch of the snapshot being uploaded, if any: one at a time. */
  inFlight: number | undefined

  constructor(
    private readonly blobs: BlobStoreService,
    private readonly app: string,
    private readonly keyGroups: number,
  ) {}

  /** The newest snapshot at or below `maxEpoch`, decoded for recovery. */
  load(maxEpoch: number | undefined): Effect.Effect<SnapshotState | undefined, BlobStoreError> {
    const self = this
    return Effect.gen(function* () {
      const keys = yield* self.blobs.list("manifests/")
      for (let i = keys.length - 1; i >= 0; i--) {
        const bytes = yield* self.blobs.get(keys[i]!)
        if (bytes === undefined) continue
        const m = decode(bytes) as Manifest
        if (maxEpoch !== undefined && m.epoch > maxEpoch) continue
        const groups = new Map<number, RecoveredGroup>()
        for (const [kg, key] of Object.entries(m.groups)) {
          const blob = yield* self.blobs.get(key)
          if (blob === undefined) return yield* Effect.die(new Error(`snapshot ${m.epoch} names blob '${key}', which is missing`))
          groups.set(Number(kg), { tables: decode(blob) as Map<string, Map<string, unknown>> })
        }
        const metaBytes = yield* self.blobs.get(m.meta)
        if (metaBytes === undefined) return yield* Effect.die(new Error(`snapshot ${m.epoch} names meta blob '${m.meta}', which is missing`))
        const meta = decode(metaBytes) as Meta
        self.manifest = m
        for (const x of meta.ingress) self.ingress.set(x[0], x)
        self.inTransit = new Map(meta.inTransit)
        return {
          epoch: m.epoch,
          g: m.g,
          app: m.app,
          keyGroups: m.keyGroups,
          groups,
          ingress: new Map(meta.ingress.map(([s, position, exhausted]) => [s, { position, exhausted }])),
          inTransit: new Map(meta.inTransit),
        } satisfies SnapshotState
      }
      return undefined
    })
  }

  record(record: EpochRecord): void {
    let l = this.uncommitted.get(record.e)
    if (l === undefined) this.uncommitted.set(record.e, (l = []))
    l.push(record)
  }

  /** Folds a committed epoch's records (from this run, or replayed from the log at start-up) into the delta. */
  committed(e: number, records?: ReadonlyArray<EpochRecord>): void {
    const rs = records ?? this.uncommitted.get(e) ?? []
    this.uncommitted.delete(e)
    for (const k of [...this.uncommitted.keys()]) if (k < e) this.uncommitted.delete(k)
    this.inTransit = new Map()
    for (const r of rs) {
      for (const [kg, tables] of r.state) {
        let t = this.delta.get(kg)
        if (t === undefined) this.delta.set(kg, (t = new Map()))
        for (const [table, keys, values] of tables) {
          let m = t.get(table)
          if (m === undefined) t.set(table, (m = new Map()))
          for (let i = 0; i < keys.length; i++) m.set(keys[i]!, values[i])
        }
      }
      for (const x of r.ingress) this.ingress.set(x[0], x)
      for (const [kg, msgs] of r.inTransit) this.inTransit.set(kg, msgs)
    }
  }

  /** Writes snapshot `epoch` (everything committed so far) and then its manifest. Returns the manifest. */
  take(epoch: number, g: number): Effect.Effect<Manifest, BlobStoreError> {
    const self = this
    const delta = this.delta
    this.delta = new Map()
    const meta: Meta = { ingress: [...this.ingress.values()], inTransit: [...this.inTransit] }
    const previous = this.manifest
    this.inFlight = epoch
    return Effect.gen(function* () {
      const prefix = `snapshots/g${g}-e${pad(epoch)}`
      const groups: Record<string, string> = { ...(previous?.groups ?? {}) }
      for (const [kg, changes] of [...delta].sort((a, b) => a[0] - b[0])) {
        const baseKey = previous?.groups[String(kg)]
        const baseBytes = baseKey === undefined ? undefined : yield* self.blobs.get(baseKey)
        const tables = (baseBytes === undefined ? new Map() : decode(baseBytes)) as Map<string, Map<string, unknown>>
        for (const [table, entries] of changes) {
          let t = tables.get(table)
          if (t === undefined) tables.set(table, (t = new Map()))
          for (const [ks, value] of entries) {
            if (value === undefined) t.delete(ks)
            else t.set(ks, value)
          }
          if (t.size === 0) tables.delete(table)
        }
        const key = `${prefix}/kg${kg}`
        yield* self.blobs.put(key, encode(tables))
        groups[String(kg)] = key
      }
      const metaKey = `${prefix}/meta`
      yield* self.blobs.put(metaKey, encode(meta))
      const manifest: Manifest = { epoch, g, app: self.app, keyGroups: self.keyGroups, groups, meta: metaKey }
      yield* self.blobs.put(manifestKey(epoch), encode(manifest))
      self.manifest = manifest
      self.inFlight = undefined
      // Keep this snapshot and the previous one (grace); blobs neither names are garbage.
      const keep = new Set<string>([manifestKey(epoch), metaKey, ...Object.values(groups)])
      if (previous !== undefined) for (const k of [manifestKey(previous.epoch), previous.meta, ...Object.values(previous.groups)]) keep.add(k)
      for (const k of [...(yield* self.blobs.list("manifests/")), ...(yield* self.blobs.list("snapshots/"))]) if (!keep.has(k)) yield* self.blobs.delete(k)
      return manifest
    }).pipe(
      Effect.tapError(() =>
        Effect.sync(() => {
          // The upload failed: its changes go back into the delta (newer changes win) for the next attempt.
          self.inFlight = undefined
          for (const [kg, changes] of delta) {
            let t = self.delta.get(kg)
            if (t === undefined) self.delta.set(kg, (t = new Map()))
            for (const [table, entries] of changes) {
              let m = t.get(table)
              if (m === undefined) t.set(table, (m = new Map()))
              for (const [ks, value] of entries) if (!m.has(ks)) m.set(ks, value)
            }
          }
        }),
      ),
    )
  }
}

import { Effect } from "effect"
import type { BlobStoreError, BlobStoreService } from "../ports/BlobStore.ts"
import { decode, encode } from "./codec.ts"
import type { EpochRecord } from "./EpochRecord.ts"
import type { Msg } from "./protocol.ts"
import type { RecoveredGroup, SnapshotState } from "./recovery.ts"

/**
 * Where a key group's state is, oldest first: a full image of its tables, then deltas (the keys written since the
 * previous element, a deleted key as undefined) applied in order. Each element is [blob key, the group's encoded
 * bytes in it] (-1: unknown, in chains read from older manifests). A snapshot writes a delta while the deltas are
 * small next to the image, so its cost follows what changed rather than how much state there is; it folds the chain
 * into a new image once they are not.
 */
export type Chain = ReadonlyArray<readonly [key: string, bytes: number]>

/** A manifest's entry for a key group: a chain, or (older manifests) the key of a full image. */
export type GroupBlobs = Chain | string

export const chainOf = (g: GroupBlobs): Chain => (typeof g === "string" ? [[g, -1]] : g)

/** When a snapshot folds a key group's chain into a new image instead of adding a delta. */
export interface ChainPolicy {
  /** Fold a chain this long (image included). */
  readonly maxLength: number
  /** Fold images smaller than this: rewriting them costs little, and recovery reads one blob. */
  readonly minImageBytes: number
}

/**
 * Deltas until they add up to the image's size: a snapshot then writes at most about twice what changed (amortized),
 * and recovery reads at most about twice the state.
 */
export const DEFAULT_CHAIN_POLICY: ChainPolicy = { maxLength: 16, minImageBytes: 64 * 1024 }

/**
 * A snapshot S exists iff its manifest exists. The manifest names each key group's chain (unchanged groups keep the
 * previous snapshot's) and one meta blob per part (a process's partitions: their splits' positions and in-transit
 * messages at S). Parts are written by the processes hosting the partitions, the manifest by the coordinator once
 * every partition's part is in.
 */
export interface Manifest {
  readonly epoch: number
  readonly g: number
  readonly app: string
  readonly keyGroups: number
  readonly groups: Readonly<Record<string, GroupBlobs>>
  readonly metas: ReadonlyArray<string>
  /** Egress through this epoch was durable in every sink when the manifest was written (absent in older manifests). */
  readonly published?: number
}

/** What a process wrote for snapshot S: the chains of the key groups it owns, and its meta blob. */
export interface SnapshotPart {
  readonly groups: Readonly<Record<string, Chain>>
  readonly meta: string
}

/** What writing one part cost: blobs and bytes uploaded, and the time spent folding (CPU) and in the store. */
export interface PartStats {
  readonly blobs: number
  readonly bytes: number
  /** Whole writePart, from the first read of a base blob to the meta blob's upload. */
  readonly ms: number
}

/** A snapshot's blobs as fetched, not yet decoded (SnapshotManager.fetch). */
export interface FetchedSnapshot {
  readonly manifest: Manifest
  /** The wanted key groups and their chains. */
  readonly groups: ReadonlyArray<readonly [number, Chain]>
  /** Each distinct group blob once. */
  readonly data: ReadonlyMap<string, Uint8Array>
  readonly metas: ReadonlyArray<Uint8Array>
  readonly blobs: number
  readonly bytes: number
}

/** What loading a snapshot read from the store. */
export interface LoadStats {
  readonly epoch: number
  readonly blobs: number
  readonly bytes: number
}

interface Meta {
  readonly ingress: ReadonlyArray<readonly [string, number, boolean]>
  readonly inTransit: ReadonlyArray<readonly [number, ReadonlyArray<Msg>]>
}

type Tables = Map<string, Map<string, unknown>>

/**
 * Key groups' state blobs. A part packs the key groups it rewrites into a few blobs (`…/groups-<i>`, each a Map of
 * key group → that group's encoded tables, up to GROUP_BLOB_BYTES): one file and one fsync (or one S3 PUT) per
 * few MB instead of one per key group, which with 128 key groups stalled the log's own writes behind the snapshot's
 * fsyncs. A reader decodes only the groups it wants. Older snapshots have one blob per key group (`…/kg<N>`, the
 * tables themselves); both are read.
 */
const GROUP_BLOB_BYTES = 4 * 1024 * 1024
/** Longest stretch of folding between two turns of the event loop. */
const SLICE_MS = 2
const toEventLoop = Effect.async<void>((resume) => void setImmediate(() => resume(Effect.void)))
const isPacked = (key: string): boolean => /\/groups-\d+$/.test(key)

/** Key group → its encoded tables, from a blob of either layout (`kgs`: the groups the manifest puts in it). */
const unpack = (key: string, blob: Uint8Array, kgs: ReadonlyArray<number>): Map<number, Uint8Array | Tables> => {
  if (isPacked(key)) return decode(blob) as Map<number, Uint8Array>
  if (kgs.length !== 1) throw new Error(`assertion: blob '${key}' holds one key group, the manifest names ${kgs.length}`)
  return new Map([[kgs[0]!, decode(blob) as Tables]])
}
const tablesOf = (x: Uint8Array | Tables | undefined, kg: number, key: string): Tables => {
  if (x === undefined) throw new Error(`snapshot blob '${key}' does not hold key group ${kg}`)
  return x instanceof Map ? x : (decode(x) as Tables)
}

/** Chains by key group, inverted: blob key → the key groups with an element in it. */
const byBlob = (chains: Iterable<readonly [number, Chain]>): Map<string, number[]> => {
  const out = new Map<string, number[]>()
  for (const [kg, chain] of chains) {
    for (const [key] of chain) {
      const l = out.get(key)
      if (l === undefined) out.set(key, [kg])
      else if (l[l.length - 1] !== kg) l.push(kg)
    }
  }
  return out
}

/** Applies a delta (a key → undefined deletes it) to tables; tables it empties go. */
const applyDelta = (tables: Tables, delta: Tables): void => {
  for (const [table, changes] of delta) {
    let t = tables.get(table)
    if (t === undefined) tables.set(table, (t = new Map()))
    for (const [ks, v] of changes) {
      if (v === undefined) t.delete(ks)
      else t.set(ks, v)
    }
    if (t.size === 0) tables.delete(table)
  }
}

/** A key group's tables from its chain, given each blob unpacked. */
const foldChain = (kg: number, chain: Chain, blob: (key: string) => Map<number, Uint8Array | Tables>): Tables => {
  const [first, ...deltas] = chain
  if (first === undefined) return new Map()
  const tables = new Map(tablesOf(blob(first[0]).get(kg), kg, first[0]))
  for (const [key] of deltas) applyDelta(tables, tablesOf(blob(key).get(kg), kg, key))
  return tables
}

/**
 * Whether a snapshot folds key group kg's chain into a new image rather than adding a delta to it. The deltas' share
 * of the image at which a group folds varies by group (0.5-1.5): groups that grow alike would otherwise all fold in
 * the same snapshot, one long snapshot after several short ones.
 */
const mustFold = (kg: number, chain: Chain, policy: ChainPolicy): boolean => {
  if (chain.length === 0 || chain.length >= policy.maxLength) return true
  const image = chain[0]![1]
  if (image < 0) return false // unknown (older manifest): only the length limit folds it
  if (image < policy.minImageBytes) return true
  let deltas = 0
  for (let i = 1; i < chain.length; i++) deltas += chain[i]![1]
  return deltas >= image * (0.5 + ((kg * 5) % 16) / 16)
}

const pad = (e: number): string => String(e).padStart(12, "0")
export const manifestKey = (e: number): string => `manifests/${pad(e)}`

/** The state columns of one epoch record (immutable): what a snapshot folds in. */
type StateDelta = EpochRecord["state"]

/**
 * Builds snapshots by folding the deltas of committed epochs into the previous snapshot's blobs: only key groups
 * written since the last snapshot are rewritten. The deltas are the committed records' own (immutable) state
 * columns, kept as they are until the snapshot folds them: a commit costs a push, not a map update per key written
 * (which, with its garbage, was ~10% of the engine's time on small epochs).
 */
export class SnapshotManager {
  private uncommitted = new Map<number, EpochRecord[]>()
  /** State columns of the epochs committed since the last part was taken, in commit order. */
  private delta: Array<StateDelta> = []
  private ingress = new Map<string, readonly [string, number, boolean]>()
  private inTransit = new Map<number, ReadonlyArray<Msg>>()
  manifest: Manifest | undefined
  /** The newest chain of each key group this process knows (its own parts, or the loaded manifest). */
  private latest: Record<string, GroupBlobs> = {}
  /** Epoch of the snapshot being uploaded, if any: one at a time. */
  inFlight: number | undefined
  /** What the last `load` read (undefined: no snapshot loaded). */
  loaded: LoadStats | undefined

  constructor(
    private readonly blobs: BlobStoreService,
    private readonly app: string,
    private readonly keyGroups: number,
    /** Blobs read or written at once (S3 requests in flight). */
    private readonly concurrency = 16,
    /** Key groups are packed into blobs of about this many bytes. */
    private readonly packBytes = GROUP_BLOB_BYTES,
    private readonly chains: ChainPolicy = DEFAULT_CHAIN_POLICY,
  ) {}

  /**
   * The newest snapshot at or below `maxEpoch`, decoded for recovery: only the key groups `owns` accepts (a process
   * restores just its own; the default is all), their blobs fetched `concurrency` at a time.
   */
  load(maxEpoch: number | undefined, owns: (kg: number) => boolean = () => true): Effect.Effect<SnapshotState | undefined, BlobStoreError> {
    return Effect.map(this.fetch(maxEpoch, owns), (f) => (f === undefined ? undefined : this.decodeFetched(f)))
  }

  /**
   * `load` in two steps: the blobs' bytes (I/O, which can overlap other reads), then `decodeFetched` (CPU, which would
   * hold up whatever else the process reads meanwhile if done as each blob arrives).
   */
  fetch(maxEpoch: number | undefined, owns: (kg: number) => boolean = () => true): Effect.Effect<FetchedSnapshot | undefined, BlobStoreError> {
    const self = this
    return Effect.gen(function* () {
      const keys = yield* self.blobs.list("manifests/")
      for (let i = keys.length - 1; i >= 0; i--) {
        const bytes = yield* self.blobs.get(keys[i]!)
        if (bytes === undefined) continue
        const m = decode(bytes) as Manifest
        if (maxEpoch !== undefined && m.epoch > maxEpoch) continue
        let total = bytes.length
        const fetch = (key: string, what: string) =>
          Effect.flatMap(self.blobs.get(key), (blob) => {
            if (blob === undefined) return Effect.die(new Error(`snapshot ${m.epoch} names ${what} '${key}', which is missing`))
            total += blob.length
            return Effect.succeed(blob)
          })
        const wanted = Object.entries(m.groups)
          .filter(([kg]) => owns(Number(kg)))
          .map(([kg, g]) => [Number(kg), chainOf(g)] as const)
        const keysWanted = [...byBlob(wanted).keys()]
        const blobs = yield* Effect.forEach(keysWanted, (key) => Effect.map(fetch(key, "blob"), (blob) => [key, blob] as const), { concurrency: self.concurrency })
        const metas = yield* Effect.forEach(m.metas, (key) => fetch(key, "meta blob"), { concurrency: self.concurrency })
        return { manifest: m, groups: wanted, data: new Map(blobs), metas, blobs: keysWanted.length + m.metas.length + 1, bytes: total } satisfies FetchedSnapshot
      }
      return undefined
    })
  }

  decodeFetched(f: FetchedSnapshot): SnapshotState {
    const m = f.manifest
    const groups = new Map<number, RecoveredGroup>()
    const unpacked = new Map<string, Map<number, Uint8Array | Tables>>()
    for (const [key, kgs] of byBlob(f.groups)) unpacked.set(key, unpack(key, f.data.get(key)!, kgs))
    for (const [kg, chain] of f.groups) groups.set(kg, { tables: foldChain(kg, chain, (key) => unpacked.get(key)!) })
    const meta: { ingress: Array<readonly [string, number, boolean]>; inTransit: Array<readonly [number, ReadonlyArray<Msg>]> } = { ingress: [], inTransit: [] }
    for (const bytes of f.metas) {
      const part = decode(bytes) as Meta
      meta.ingress.push(...part.ingress)
      meta.inTransit.push(...part.inTransit)
    }
    this.manifest = m
    this.latest = { ...m.groups }
    for (const x of meta.ingress) this.ingress.set(x[0], x)
    this.inTransit = new Map(meta.inTransit)
    this.loaded = { epoch: m.epoch, blobs: f.blobs, bytes: f.bytes }
    return {
      epoch: m.epoch,
      ...(m.published === undefined ? {} : { published: m.published }),
      g: m.g,
      app: m.app,
      keyGroups: m.keyGroups,
      groups,
      ingress: new Map(meta.ingress.map(([s, position, exhausted]) => [s, { position, exhausted }])),
      inTransit: new Map(meta.inTransit),
    } satisfies SnapshotState
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
      if (r.state.length > 0) this.delta.push(r.state)
      for (const x of r.ingress) this.ingress.set(x[0], x)
      for (const [kg, msgs] of r.inTransit) this.inTransit.set(kg, msgs)
    }
  }

  /**
   * Writes this process's part of snapshot `epoch`: for each of its key groups written since its last part, a delta
   * of those writes added to its chain, or the chain folded with them into a new image (ChainPolicy); packed into a
   * few blobs. And a meta blob with the positions of the splits and the in-transit messages of the key groups it owns.
   */
  writePart(epoch: number, g: number, part: string, owns: { readonly kg: (kg: number) => boolean; readonly split: (id: string) => boolean }): Effect.Effect<SnapshotPart & { readonly stats: PartStats }, BlobStoreError> {
    const self = this
    const delta = this.delta
    this.delta = []
    // Per key group, its tables' changes in commit order (a later write of a key wins; undefined deletes).
    const changed = new Map<number, Array<StateDelta[number][1]>>()
    for (const state of delta) {
      for (const [kg, tables] of state) {
        const l = changed.get(kg)
        if (l === undefined) changed.set(kg, [tables])
        else l.push(tables)
      }
    }
    const meta: Meta = {
      ingress: [...this.ingress.values()].filter((x) => owns.split(x[0])),
      inTransit: [...this.inTransit].filter(([kg]) => owns.kg(kg)),
    }
    this.inFlight = epoch
    return Effect.gen(function* () {
      const started = performance.now()
      const prefix = `snapshots/g${g}-e${pad(epoch)}/${part}`
      let bytes = 0
      const chains = new Map<number, Chain>()
      for (const kg of changed.keys()) chains.set(kg, chainOf(self.latest[String(kg)] ?? []))
      // Only the chains that fold are read (each blob once).
      const folding = [...chains].filter(([kg, chain]) => chain.length > 0 && mustFold(kg, chain, self.chains))
      const unpacked = new Map(
        yield* Effect.forEach(
          [...byBlob(folding)],
          ([key, kgs]) =>
            Effect.flatMap(self.blobs.get(key), (blob) => {
              if (blob === undefined) return Effect.die(new Error(`the previous snapshot's blob '${key}' is missing`))
              return Effect.succeed([key, unpack(key, blob, kgs)] as const)
            }),
          { concurrency: self.concurrency },
        ),
      )
      const packs: Array<Map<number, Uint8Array>> = []
      /** Per packed group: its chain before, and whether its entry is a new image (else a delta). */
      const entries = new Map<number, { readonly before: Chain; readonly image: boolean; readonly bytes: number }>()
      let pack = new Map<number, Uint8Array>()
      let packBytes = 0
      let slice = performance.now()
      for (const [kg, changes] of [...changed].sort((a, b) => a[0] - b[0])) {
        // The fold runs on the engine's thread: let the epochs go on between key groups.
        if (performance.now() - slice > SLICE_MS) {
          yield* toEventLoop
          slice = performance.now()
        }
        // The group's writes since its last part, merged: the last write of a key wins.
        const merged: Tables = new Map()
        for (const epochTables of changes) {
          for (const [table, keys, values] of epochTables) {
            let t = merged.get(table)
            if (t === undefined) merged.set(table, (t = new Map()))
            for (let i = 0; i < keys.length; i++) t.set(keys[i]!, values[i])
          }
        }
        const before = chains.get(kg)!
        const image = before.length === 0 || mustFold(kg, before, self.chains)
        let encoded: Uint8Array
        if (image) {
          const tables = foldChain(kg, before, (key) => unpacked.get(key)!)
          applyDelta(tables, merged)
          encoded = encode(tables)
        } else encoded = encode(merged)
        if (packBytes > 0 && packBytes + encoded.length > self.packBytes) {
          packs.push(pack)
          pack = new Map()
          packBytes = 0
        }
        pack.set(kg, encoded)
        packBytes += encoded.length
        entries.set(kg, { before, image, bytes: encoded.length })
      }
      if (pack.size > 0) packs.push(pack)
      const groups: Record<string, Chain> = {}
      yield* Effect.forEach(
        packs.map((p, i) => [i, p] as const),
        ([i, p]) => {
          const key = `${prefix}/groups-${i}`
          const blob = encode(p)
          bytes += blob.length
          for (const kg of p.keys()) {
            const x = entries.get(kg)!
            groups[String(kg)] = x.image ? [[key, x.bytes]] : [...x.before, [key, x.bytes]]
          }
          return self.blobs.put(key, blob)
        },
        { concurrency: self.concurrency, discard: true },
      )
      const metaKey = `${prefix}/meta`
      const metaBlob = encode(meta)
      bytes += metaBlob.length
      yield* self.blobs.put(metaKey, metaBlob)
      Object.assign(self.latest, groups)
      self.inFlight = undefined
      // The part names the chain of every group this process owns, not only the ones it just wrote: a part of an
      // earlier snapshot that never got its manifest (another process's part failed) took its delta with it, and
      // only its blobs hold those changes now.
      const named: Record<string, Chain> = {}
      for (const [kg, chain] of Object.entries(self.latest)) if (owns.kg(Number(kg))) named[kg] = chainOf(chain)
      return { groups: named, meta: metaKey, stats: { blobs: packs.length + 1, bytes, ms: performance.now() - started } }
    }).pipe(
      Effect.tapError(() =>
        Effect.sync(() => {
          // The upload failed: its changes go back before the newer ones, for the next attempt.
          self.inFlight = undefined
          self.delta = [...delta, ...self.delta]
        }),
      ),
    )
  }

  /**
   * The coordinator's half: once every partition's part of `epoch` is written, the manifest makes the snapshot
   * exist. Then blobs of snapshots older than the previous one that neither names are deleted (newer parts, being
   * written for the next snapshot, are never touched).
   */
  writeManifest(epoch: number, g: number, parts: ReadonlyArray<SnapshotPart>, published?: number): Effect.Effect<Manifest, BlobStoreError> {
    const self = this
    return Effect.gen(function* () {
      const previous = self.manifest
      const groups: Record<string, GroupBlobs> = { ...(previous?.groups ?? {}) }
      for (const p of parts) Object.assign(groups, p.groups)
      const manifest: Manifest = { epoch, g, app: self.app, keyGroups: self.keyGroups, groups, metas: parts.map((p) => p.meta), ...(published === undefined ? {} : { published }) }
      yield* self.blobs.put(manifestKey(epoch), encode(manifest))
      self.manifest = manifest
      const blobsOf = (m: Manifest): string[] => [manifestKey(m.epoch), ...m.metas, ...Object.values(m.groups).flatMap((x) => chainOf(x).map(([key]) => key))]
      const keep = new Set<string>(blobsOf(manifest))
      if (previous !== undefined) for (const k of blobsOf(previous)) keep.add(k)
      const older = (key: string): boolean => {
        const m = /(?:^manifests\/|-e)(\d{12})/.exec(key)
        return m !== null && Number(m[1]) < epoch
      }
      const garbage = [...(yield* self.blobs.list("manifests/")), ...(yield* self.blobs.list("snapshots/"))].filter((k) => !keep.has(k) && older(k))
      // The snapshot exists once its manifest does: a blob that could not be deleted is garbage the next manifest
      // lists again.
      yield* Effect.forEach(garbage, (k) => Effect.ignore(self.blobs.delete(k)), { concurrency: self.concurrency, discard: true })
      return manifest
    })
  }
}

import { Data, Effect } from "effect"
import type { BlobStoreError, BlobStoreService } from "../ports/BlobStore.ts"
import { decode, encode } from "./codec.ts"
import { InThreadFolder, type DeltaFolder } from "./DeltaFolder.ts"
import type { EpochRecord } from "./EpochRecord.ts"
import { byBlob, foldChain, unpack, type Chain, type Tables } from "./snapshotFold.ts"
import type { Msg } from "./protocol.ts"
import type { RecoveredGroup, SnapshotState } from "./recovery.ts"
import { takeBefore } from "./heldEpochs.ts"

export type { Chain } from "./snapshotFold.ts"

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

/**
 * Key groups' state blobs. A part packs the key groups it rewrites into a few blobs (`…/groups-<i>`, each a Map of
 * key group → that group's encoded tables, up to GROUP_BLOB_BYTES): one file and one fsync (or one S3 PUT) per
 * few MB instead of one per key group, which with 128 key groups stalled the log's own writes behind the snapshot's
 * fsyncs. A reader decodes only the groups it wants. Older snapshots have one blob per key group (`…/kg<N>`, the
 * tables themselves); both are read.
 */
const GROUP_BLOB_BYTES = 4 * 1024 * 1024
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

export interface SnapshotManagerOptions {
  /** Blobs read or written at once (S3 requests in flight; default 16). */
  readonly concurrency?: number
  /** Key groups are packed into blobs of about this many bytes (default 4 MiB). */
  readonly packBytes?: number
  readonly chains?: ChainPolicy
  /** Holds the changes since the last part and builds parts (default: on this thread). */
  readonly folder?: DeltaFolder
}

/** A snapshot part's blobs could not be built (the snapshot thread died): the part fails, the next one retries. */
export class SnapshotBuildError extends Data.TaggedError("SnapshotBuildError")<{ readonly message: string }> {}

/**
 * Builds snapshots from the changes of committed epochs: for each key group written since the last part, a delta
 * added to its chain or a new image (ChainPolicy). The changes and the CPU work live in a DeltaFolder (on the
 * engine's thread, or a thread of its own); this side keeps the chains, the splits' positions and in-transit
 * messages, and does the I/O.
 */
export class SnapshotManager {
  private uncommitted = new Map<number, Array<readonly [EpochRecord, Uint8Array | undefined]>>()
  /** Key groups written since the last part was taken. */
  private changed = new Set<number>()
  private readonly concurrency: number
  private readonly packBytes: number
  private readonly chains: ChainPolicy
  private readonly folder: DeltaFolder
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
    options: SnapshotManagerOptions = {},
  ) {
    this.concurrency = options.concurrency ?? 16
    this.packBytes = options.packBytes ?? GROUP_BLOB_BYTES
    this.chains = options.chains ?? DEFAULT_CHAIN_POLICY
    this.folder = options.folder ?? new InThreadFolder()
  }

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

  /** A record of this process's partitions, not committed yet; `payload`: its encoded bytes, if at hand. */
  record(record: EpochRecord, payload?: Uint8Array): void {
    let l = this.uncommitted.get(record.e)
    if (l === undefined) this.uncommitted.set(record.e, (l = []))
    l.push([record, payload])
  }

  /**
   * Folds a committed epoch's records (from this run, or replayed from the log at start-up) into the delta. Epochs
   * commit in order, so an earlier epoch still held here (its COMMITTED went missing) is committed too: it is folded
   * first, never dropped (a snapshot without it would lose its writes once the log below the snapshot is gone).
   */
  committed(e: number, records?: ReadonlyArray<EpochRecord>): void {
    for (const [, held] of takeBefore(this.uncommitted, e)) this.fold(held)
    const rs = records?.map((r) => [r, undefined] as const) ?? this.uncommitted.get(e) ?? []
    this.uncommitted.delete(e)
    this.fold(rs)
  }

  private fold(rs: ReadonlyArray<readonly [EpochRecord, Uint8Array | undefined]>): void {
    this.inTransit = new Map()
    for (const [r, payload] of rs) {
      if (r.state.length > 0) {
        for (const [kg] of r.state) this.changed.add(kg)
        this.folder.add(r.state, payload)
      }
      for (const x of r.ingress) this.ingress.set(x[0], x)
      for (const [kg, msgs] of r.inTransit) this.inTransit.set(kg, msgs)
    }
  }

  /**
   * Writes this process's part of snapshot `epoch`: for each of its key groups written since its last part, a delta
   * of those writes added to its chain, or the chain folded with them into a new image (ChainPolicy); packed into a
   * few blobs. And a meta blob with the positions of the splits and the in-transit messages of the key groups it owns.
   */
  writePart(epoch: number, g: number, part: string, owns: { readonly kg: (kg: number) => boolean; readonly split: (id: string) => boolean }): Effect.Effect<SnapshotPart & { readonly stats: PartStats }, BlobStoreError | SnapshotBuildError> {
    const self = this
    // The part's content is fixed now: the changes committed so far, and the positions and in-transit messages.
    const changed = this.changed
    this.changed = new Set()
    this.folder.seal()
    const meta: Meta = {
      ingress: [...this.ingress.values()].filter((x) => owns.split(x[0])),
      inTransit: [...this.inTransit].filter(([kg]) => owns.kg(kg)),
    }
    this.inFlight = epoch
    return Effect.gen(function* () {
      const started = performance.now()
      const prefix = `snapshots/g${g}-e${pad(epoch)}/${part}`
      let bytes = 0
      const before = new Map<number, Chain>()
      for (const kg of changed) before.set(kg, chainOf(self.latest[String(kg)] ?? []))
      // Groups that get a new image, and the blobs their chains are in (each read once).
      const folds = new Map([...before].filter(([kg, chain]) => mustFold(kg, chain, self.chains)))
      const blobs = new Map(
        yield* Effect.forEach(
          [...byBlob(folds).keys()],
          (key) =>
            Effect.flatMap(self.blobs.get(key), (blob) => {
              if (blob === undefined) return Effect.die(new Error(`the previous snapshot's blob '${key}' is missing`))
              return Effect.succeed([key, blob] as const)
            }),
          { concurrency: self.concurrency },
        ),
      )
      const packs = yield* Effect.tryPromise({
        try: () => self.folder.build(folds, blobs, self.packBytes),
        catch: (e) => new SnapshotBuildError({ message: e instanceof Error ? e.message : String(e) }),
      })
      const groups: Record<string, Chain> = {}
      yield* Effect.forEach(
        packs.map((p, i) => [i, p] as const),
        ([i, p]) => {
          const key = `${prefix}/groups-${i}`
          bytes += p.blob.length
          for (const [kg, size, image] of p.entries) groups[String(kg)] = image ? [[key, size]] : [...before.get(kg)!, [key, size]]
          return self.blobs.put(key, p.blob)
        },
        { concurrency: self.concurrency, discard: true },
      )
      const metaKey = `${prefix}/meta`
      const metaBlob = encode(meta)
      bytes += metaBlob.length
      yield* self.blobs.put(metaKey, metaBlob)
      Object.assign(self.latest, groups)
      // The part names the chain of every group this process owns, not only the ones it just wrote: a part of an
      // earlier snapshot that never got its manifest (another process's part failed) took its changes with it, and
      // only its blobs hold them now.
      const named: Record<string, Chain> = {}
      for (const [kg, chain] of Object.entries(self.latest)) if (owns.kg(Number(kg))) named[kg] = chainOf(chain)
      return { groups: named, meta: metaKey, stats: { blobs: packs.length + 1, bytes, ms: performance.now() - started } }
    }).pipe(
      Effect.onExit((exit) =>
        Effect.sync(() => {
          self.inFlight = undefined
          self.folder.settle(exit._tag === "Success")
          // Not uploaded: its groups are changed still, for the next attempt.
          if (exit._tag === "Failure") for (const kg of changed) self.changed.add(kg)
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

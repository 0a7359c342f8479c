/**
 * The CPU half of snapshots, with no I/O: merging committed epochs' state columns per key group, folding a key group's
 * chain (an image, then deltas) into its tables, and packing encoded images and deltas into blobs. Used on the
 * engine's thread (InThreadFolder, reads) and in the snapshot thread (snapshotFoldWorker.ts).
 */
import { decode, encode } from "./codec.ts"
import { forEachStateEntry, type EpochRecord } from "./EpochRecord.ts"

/** A key group's tables: table → key → value. In a delta, a key → undefined is a delete. */
export type Tables = Map<string, Map<string, unknown>>

/** The state columns of one epoch record (immutable): what a snapshot folds in. */
export type StateDelta = EpochRecord["state"]

/**
 * Where a key group's state is, oldest first: a full image of its tables, then deltas (the keys written since the
 * previous element, a deleted key as undefined) applied in order. Each element is [blob key, the group's encoded
 * bytes in it] (-1: unknown, in chains read from older manifests).
 */
export type Chain = ReadonlyArray<readonly [key: string, bytes: number]>

/** One blob of a part: key group → its encoded image or delta; per group its size and whether it is an image. */
export interface BuiltPack {
  readonly blob: Uint8Array
  readonly entries: ReadonlyArray<readonly [kg: number, bytes: number, image: boolean]>
}

const isPacked = (key: string): boolean => /\/groups-\d+$/.test(key)

/** Key group → its encoded tables, from a blob of either layout (`kgs`: the groups the manifest puts in it). */
export const unpack = (key: string, blob: Uint8Array, kgs: ReadonlyArray<number>): Map<number, Uint8Array | Tables> => {
  if (isPacked(key)) return decode(blob) as Map<number, Uint8Array>
  if (kgs.length !== 1) throw new Error(`assertion: blob '${key}' holds one key group, the manifest names ${kgs.length}`)
  return new Map([[kgs[0]!, decode(blob) as Tables]])
}

const tablesOf = (x: Uint8Array | Tables | undefined, kg: number, key: string): Tables => {
  if (x === undefined) throw new Error(`snapshot blob '${key}' does not hold key group ${kg}`)
  return x instanceof Map ? x : (decode(x) as Tables)
}

/** Chains by key group, inverted: blob key → the key groups with an element in it. */
export const byBlob = (chains: Iterable<readonly [number, Chain]>): Map<string, number[]> => {
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
export const applyDelta = (tables: Tables, delta: Tables): void => {
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
export const foldChain = (kg: number, chain: Chain, blob: (key: string) => Map<number, Uint8Array | Tables>): Tables => {
  const [first, ...deltas] = chain
  if (first === undefined) return new Map()
  const tables = new Map(tablesOf(blob(first[0]).get(kg), kg, first[0]))
  for (const [key] of deltas) applyDelta(tables, tablesOf(blob(key).get(kg), kg, key))
  return tables
}

/** Merges an epoch's state columns into per-group deltas (a later write of a key wins; undefined: deleted). */
export const mergeColumns = (into: Map<number, Tables>, state: StateDelta): void => {
  for (const [kg, tables] of state) {
    let merged = into.get(kg)
    if (merged === undefined) into.set(kg, (merged = new Map()))
    for (const [table, keys, values] of tables) {
      let t = merged.get(table)
      if (t === undefined) merged.set(table, (t = new Map()))
      for (let i = 0; i < keys.length; i++) t.set(keys[i]!, values[i])
    }
  }
}

/** Merges one encoded record's state entries into per-group deltas, as mergeColumns does with decoded columns. */
export const mergeRecord = (into: Map<number, Tables>, payload: Uint8Array): void => {
  let lastKg = -1
  let lastName: string | undefined
  let merged: Tables | undefined
  let t: Map<string, unknown> | undefined
  forEachStateEntry(payload, (kg, table, ks, value) => {
    if (kg !== lastKg || table !== lastName) {
      if (kg !== lastKg) {
        merged = into.get(kg)
        if (merged === undefined) into.set(kg, (merged = new Map()))
        lastKg = kg
      }
      t = merged!.get(table)
      if (t === undefined) merged!.set(table, (t = new Map()))
      lastName = table
    }
    t!.set(ks, value)
  })
}

/**
 * Encodes each changed key group's delta, or (for groups in `folds`) its chain folded with the delta into a new
 * image, packed into blobs of about `packBytes`. `blobs` holds every blob the folded chains name. Yields between key
 * groups, so a caller on a busy thread can let other work run.
 */
export function* buildPacks(changed: ReadonlyMap<number, Tables>, folds: ReadonlyMap<number, Chain>, blobs: ReadonlyMap<string, Uint8Array>, packBytes: number): Generator<void, BuiltPack[]> {
  const unpacked = new Map<string, Map<number, Uint8Array | Tables>>()
  for (const [key, kgs] of byBlob(folds)) {
    const blob = blobs.get(key)
    if (blob === undefined) throw new Error(`assertion: the fold of key groups ${kgs.join(", ")} needs blob '${key}', which was not fetched`)
    unpacked.set(key, unpack(key, blob, kgs))
  }
  const packs: BuiltPack[] = []
  let pack = new Map<number, Uint8Array>()
  let entries: Array<readonly [number, number, boolean]> = []
  let size = 0
  const close = () => {
    packs.push({ blob: encode(pack), entries })
    pack = new Map()
    entries = []
    size = 0
  }
  for (const kg of [...changed.keys()].sort((a, b) => a - b)) {
    yield
    const merged = changed.get(kg)!
    const chain = folds.get(kg)
    let encoded: Uint8Array
    if (chain !== undefined) {
      const tables = foldChain(kg, chain, (key) => unpacked.get(key)!)
      applyDelta(tables, merged)
      encoded = encode(tables)
    } else encoded = encode(merged)
    if (size > 0 && size + encoded.length > packBytes) close()
    pack.set(kg, encoded)
    entries.push([kg, encoded.length, chain !== undefined])
    size += encoded.length
  }
  if (pack.size > 0) close()
  return packs
}

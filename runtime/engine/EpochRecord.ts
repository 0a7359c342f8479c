import { crc32 } from "node:zlib"
import { decode, encode } from "./codec.ts"
import type { Msg } from "./protocol.ts"

/**
 * Layout of epoch records. 1: one [table, ks, value] tuple per state entry and one [sink, kg, seq, value] tuple per
 * egress record. 2: columns per table and key group, one batch per key group (see TableDelta and EgressBatch), 3-4x
 * cheaper to encode and decode than 1 and ~2.5x smaller. 3 (written now): on the wire the state is one set of columns
 * per table, its key groups a typed array and the table names written once (WireState): an epoch that touches many
 * key groups a little (a served wave of requests) spends no values per key group, ~3x cheaper to encode and decode
 * than 2 and a third smaller. In memory every layout reads as EpochRecord. Readers accept all three.
 */
export const RECORD_FORMAT = 3

/**
 * The state a key group wrote in an epoch, for one table (task name, or $pending / $meta): canonical keys and their
 * values, in the same order (a value of undefined: deleted). Each key appears once.
 */
export type TableDelta = readonly [table: string, keys: ReadonlyArray<string>, values: ReadonlyArray<unknown>]

/** Sinks of an egress batch whose records go to more than one sink: the names, and per record an index into them. */
export type EgressSinks = readonly [names: ReadonlyArray<string>, which: ReadonlyArray<number>]

/**
 * The egress records of one key group in one epoch, in sequence order: record i has sequence `seq + i` (a key group's
 * sequences in an epoch are consecutive). `sink` is the one sink they all go to, or per-record sinks. The positions of
 * kg and seq are those of the format-1 entry [sink, kg, seq, value], so code filtering on x[1] (key group) holds.
 */
export type EgressBatch = readonly [sink: string | EgressSinks, kg: number, seq: number, values: ReadonlyArray<unknown>]

/** A partition's contribution to epoch e: everything needed to redo its effects. */
export interface EpochRecord {
  readonly t: "epoch"
  /** Record layout (RECORD_FORMAT); absent in format 1. */
  readonly f: number
  readonly g: number
  readonly e: number
  readonly partition: number
  readonly state: ReadonlyArray<readonly [kg: number, tables: ReadonlyArray<TableDelta>]>
  /** Messages still to be processed (the channel state at the cut), per destination key group. */
  readonly inTransit: ReadonlyArray<readonly [kg: number, msgs: ReadonlyArray<Msg>]>
  /** Source split id → atoms consumed so far, and whether it is exhausted. */
  readonly ingress: ReadonlyArray<readonly [split: string, position: number, exhausted: boolean]>
  /** One batch per key group with egress, ascending key group. */
  readonly egress: ReadonlyArray<EgressBatch>
}

/** Calls `f` for every egress record of the batches, in order: sink, key group, sequence, value. */
export const forEachEgress = (batches: ReadonlyArray<EgressBatch>, f: (sink: string, kg: number, seq: number, value: unknown) => void): void => {
  for (const [sink, kg, seq, values] of batches) {
    if (typeof sink === "string") for (let i = 0; i < values.length; i++) f(sink, kg, seq + i, values[i])
    else for (let i = 0; i < values.length; i++) f(sink[0][sink[1][i]!]!, kg, seq + i, values[i])
  }
}

/** Number of egress records in the batches. */
export const egressCount = (batches: ReadonlyArray<EgressBatch>): number => {
  let n = 0
  for (const b of batches) n += b[3].length
  return n
}

/** Orders batches by (key group, sequence): the order sinks write them in. */
export const sortEgress = (batches: EgressBatch[]): EgressBatch[] => batches.sort((a, b) => a[1] - b[1] || a[2] - b[2])

/** The engine's own table of per-key-group counters, value { askSeq, outSeq }; on the wire [askSeq, outSeq]. */
const META = "$meta"

type Meta = { readonly askSeq: number; readonly outSeq: number }

/** Layout 3's state: table names, then per table its entries' key groups (ascending runs), keys and values. */
type WireState = readonly [names: ReadonlyArray<string>, tables: ReadonlyArray<readonly [name: number, kgs: Int32Array, keys: ReadonlyArray<string>, values: ReadonlyArray<unknown>]>]

const toWire = (state: EpochRecord["state"]): WireState => {
  const names: string[] = []
  const at = new Map<string, number>()
  const columns: Array<{ kgs: number[]; keys: string[]; values: unknown[] }> = []
  for (const [kg, tables] of state) {
    for (const [table, keys, values] of tables) {
      let i = at.get(table)
      if (i === undefined) {
        i = names.length
        at.set(table, i)
        names.push(table)
        columns.push({ kgs: [], keys: [], values: [] })
      }
      const c = columns[i]!
      const meta = table === META
      for (let j = 0; j < keys.length; j++) {
        c.kgs.push(kg)
        c.keys.push(keys[j]!)
        const v = values[j]
        c.values.push(meta ? [(v as Meta).askSeq, (v as Meta).outSeq] : v)
      }
    }
  }
  return [names, columns.map((c, i) => [i, Int32Array.from(c.kgs), c.keys, c.values] as const)]
}

const fromWire = ([names, tables]: WireState): EpochRecord["state"] => {
  const byKg = new Map<number, TableDelta[]>()
  for (const [n, kgs, keys, values] of tables) {
    const table = names[n]
    if (table === undefined || kgs.length !== keys.length || keys.length !== values.length) throw new Error(`epoch record: malformed state columns of table ${table ?? n}`)
    const meta = table === META
    for (let j = 0; j < kgs.length; ) {
      const kg = kgs[j]!
      let k = j + 1
      while (k < kgs.length && kgs[k] === kg) k++
      let l = byKg.get(kg)
      if (l === undefined) byKg.set(kg, (l = []))
      const vs = values.slice(j, k)
      l.push([table, keys.slice(j, k), meta ? vs.map((v) => ({ askSeq: (v as [number, number])[0], outSeq: (v as [number, number])[1] })) : vs])
      j = k
    }
  }
  return [...byKg].sort((a, b) => a[0] - b[0])
}

export const encodeRecord = (r: EpochRecord): { payload: Uint8Array; checksum: number } => {
  let payload: Uint8Array
  try {
    payload = encode({ ...r, f: RECORD_FORMAT, state: toWire(r.state) })
  } catch (err) {
    // Unchecked mode lets unserializable state through to here; name where it sits.
    throw new Error(`epoch ${r.e}, partition ${r.partition}: the epoch record cannot be serialized (state, in-transit messages and egress are in it): ${(err as Error).message}`)
  }
  return { payload, checksum: crc32(payload) }
}

export const checksumOf = (payload: Uint8Array): number => crc32(payload)

type FormatOneRecord = Omit<EpochRecord, "f" | "state" | "egress"> & {
  readonly state: ReadonlyArray<readonly [kg: number, entries: ReadonlyArray<readonly [table: string, ks: string, value: unknown]>]>
  readonly egress: ReadonlyArray<readonly [sink: string, kg: number, seq: number, value: unknown]>
}

/** Format 1 → 2: rows to columns (each record becomes a one-record batch, so no assumption about sequences). */
const upgrade = (r: FormatOneRecord): EpochRecord => {
  const state = r.state.map(([kg, entries]) => {
    const tables = new Map<string, { keys: string[]; values: unknown[]; at: Map<string, number> }>()
    for (const [table, ks, value] of entries) {
      let t = tables.get(table)
      if (t === undefined) tables.set(table, (t = { keys: [], values: [], at: new Map() }))
      const i = t.at.get(ks)
      if (i !== undefined) t.values[i] = value // a later entry for the same key wins, as it did when replayed
      else {
        t.at.set(ks, t.keys.length)
        t.keys.push(ks)
        t.values.push(value)
      }
    }
    return [kg, [...tables].map(([table, t]): TableDelta => [table, t.keys, t.values])] as const
  })
  const egress = r.egress.map(([sink, kg, seq, value]): EgressBatch => [sink, kg, seq, [value]])
  return { ...r, f: 2, state, egress }
}

type RawRecord = EpochRecord | FormatOneRecord | (Omit<EpochRecord, "state"> & { readonly state: WireState })

const normalize = (r: RawRecord): EpochRecord => {
  if (!("f" in r) || r.f === undefined) return upgrade(r as FormatOneRecord)
  if (r.f === RECORD_FORMAT) return { ...r, state: fromWire(r.state as WireState) }
  if (r.f !== 2) throw new Error(`epoch record of epoch ${r.e} has layout ${r.f}; this build reads layouts 1 to ${RECORD_FORMAT}`)
  return r as EpochRecord
}

export const decodeRecord = (payload: Uint8Array): EpochRecord => normalize(decode(payload) as RawRecord)

/**
 * Calls `f` for every state entry of an encoded record (in the record's order; a key appears once per key group and
 * table). Layout 3 is read straight from its columns, without building the per-key-group arrays (the snapshot thread
 * merges every committed record this way).
 */
export const forEachStateEntry = (payload: Uint8Array, f: (kg: number, table: string, ks: string, value: unknown) => void): void => {
  const r = decode(payload) as RawRecord
  if ("f" in r && r.f === RECORD_FORMAT) {
    const [names, tables] = r.state as WireState
    for (const [n, kgs, keys, values] of tables) {
      const table = names[n]
      if (table === undefined || kgs.length !== keys.length || keys.length !== values.length) throw new Error(`epoch record: malformed state columns of table ${table ?? n}`)
      const meta = table === META
      for (let j = 0; j < kgs.length; j++) {
        const v = values[j]
        f(kgs[j]!, table, keys[j]!, meta ? { askSeq: (v as [number, number])[0], outSeq: (v as [number, number])[1] } : v)
      }
    }
    return
  }
  for (const [kg, tables] of normalize(r).state) for (const [table, keys, values] of tables) for (let j = 0; j < keys.length; j++) f(kg, table, keys[j]!, values[j])
}

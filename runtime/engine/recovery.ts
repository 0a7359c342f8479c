import { LogCorruptedError, type LogEntry } from "../ports/Log.ts"
import { decode } from "./codec.ts"
import { checksumOf, decodeRecord, sortEgress, type EgressBatch, type EpochRecord } from "./EpochRecord.ts"
import { ownerOf } from "./keys.ts"
import type { CommitRecord, ControlRecord, Msg } from "./protocol.ts"

/** A key group's committed state, by table name (task name, $pending, $meta) and canonical key. */
export interface RecoveredGroup {
  readonly tables: Map<string, Map<string, unknown>>
}

/** What the log says: the state as of the last committed epoch, rolled forward from a snapshot. */
export interface Recovered {
  /** Highest generation that wrote to the log (0: fresh). */
  readonly g: number
  /** Last committed epoch E (0: none). */
  readonly lastEpoch: number
  readonly lastTime: number
  readonly app: string | undefined
  readonly keyGroups: number | undefined
  readonly groups: Map<number, RecoveredGroup>
  /** E's in-transit messages per destination key group (tasks named, not numbered). */
  readonly inTransit: Map<number, ReadonlyArray<Msg>>
  readonly ingress: Map<string, { readonly position: number; readonly exhausted: boolean }>
  /** Committed epochs after the snapshot, with their egress in (key group, sequence) order, for republishing what sinks miss. */
  readonly committed: ReadonlyArray<{ readonly e: number; readonly egress: ReadonlyArray<EgressBatch>; readonly records: ReadonlyArray<EpochRecord> }>
  /** COMMIT(e) positions, for truncation. */
  readonly commits: ReadonlyArray<{ readonly e: number; readonly position: LogEntry["position"]; readonly walFrom: LogEntry["position"] | undefined }>
}

export interface SnapshotState {
  readonly epoch: number
  /** Egress through this epoch was durable in every sink when the snapshot was written (absent: unknown). */
  readonly published?: number
  readonly g: number
  readonly app: string
  readonly keyGroups: number
  readonly groups: Map<number, RecoveredGroup>
  readonly ingress: Map<string, { readonly position: number; readonly exhausted: boolean }>
  readonly inTransit: Map<number, ReadonlyArray<Msg>>
}

const posKey = (p: LogEntry["position"]): string => `${p.part}:${p.offset}`

export interface RecoverOptions {
  /**
   * The key groups this process restores (default: all). Only their state is rolled forward, and a record is decoded
   * only if its partition could hold one of them (a partition's record holds only the key groups, splits and egress
   * it owned under the epoch's partition count) or it is of the last committed epoch (whose in-transit messages
   * the coordinator counts). Checksums and presence are checked for every record all the same.
   */
  readonly ownsKg?: (kg: number) => boolean
}
/**
 * Rolls the log forward: COMMITs of the newest generation line decide which epoch records count (a zombie's
 * commit after a newer FENCE is ignored); each counted record must match its vote's checksum, or start-up stops.
 */
export const recover = (entries: ReadonlyArray<LogEntry>, snapshot: SnapshotState | undefined, options: RecoverOptions = {}): Recovered => {
  const ownsKg = options.ownsKg ?? (() => true)
  const wal = new Map<string, LogEntry>()
  let g = 0
  let app: string | undefined
  let keyGroups: number | undefined
  const commits: Array<{ record: CommitRecord; position: LogEntry["position"] }> = []
  for (const entry of entries) {
    if (entry.stream === "wal") {
      wal.set(posKey(entry.position), entry)
      continue
    }
    const c = decode(entry.payload) as ControlRecord
    if (c.t === "fence") {
      g = Math.max(g, c.g)
      app = c.app
      keyGroups = c.keyGroups
    } else if (c.t === "commit" && c.g >= g) {
      g = c.g
      const last = commits.at(-1)
      if (last !== undefined && c.e <= last.record.e) {
        // A newer generation re-committed an epoch number after rolling back: the later line wins.
        while (commits.length > 0 && commits.at(-1)!.record.e >= c.e) commits.pop()
      }
      commits.push({ record: c, position: entry.position })
    }
  }
  const groups = snapshot?.groups ?? new Map<number, RecoveredGroup>()
  const ingress = new Map(snapshot?.ingress ?? [])
  let inTransit = new Map<number, ReadonlyArray<Msg>>(snapshot?.inTransit ?? [])
  const committed: Array<{ e: number; egress: EgressBatch[]; records: EpochRecord[] }> = []
  let lastEpoch = snapshot?.epoch ?? 0
  let lastTime = 0
  const snapshotEpoch = snapshot?.epoch ?? 0
  // Egress through this epoch is durable in every sink (the snapshot says so): records covered by the snapshot and by
  // it need not be decoded at all.
  const published = Math.min(snapshotEpoch, snapshot?.published ?? 0)
  const G = keyGroups ?? snapshot?.keyGroups
  const mayHold = new Map<string, boolean>()
  const relevant = (from: number, partitions: number): boolean => {
    if (options.ownsKg === undefined || G === undefined) return true
    const k = `${partitions}:${from}`
    let r = mayHold.get(k)
    if (r === undefined) {
      r = false
      for (let kg = 0; kg < G && !r; kg++) if (ownerOf(kg, G, partitions) === from && ownsKg(kg)) r = true
      mayHold.set(k, r)
    }
    return r
  }
  const lastCommitted = commits.at(-1)?.record.e
  for (const { record: c } of commits) {
    const records: EpochRecord[] = []
    for (const v of c.votes) {
      const entry = wal.get(posKey(v.position))
      if (entry === undefined) {
        // Below the snapshot, records go when their segment is truncated (only once their egress was published).
        if (c.e <= snapshotEpoch) continue
        throw new LogCorruptedError({ message: `epoch ${c.e} is committed but partition ${v.from}'s record at ${posKey(v.position)} is missing from the log`, location: posKey(v.position) })
      }
      if (checksumOf(entry.payload) !== v.checksum) {
        throw new LogCorruptedError({ message: `epoch ${c.e} is committed but partition ${v.from}'s record at ${posKey(v.position)} does not match its checksum`, location: posKey(v.position) })
      }
      if (c.e <= published) continue
      if (c.e !== lastCommitted && !relevant(v.from, c.partitions ?? c.votes.length)) continue
      records.push(decodeRecord(entry.payload))
    }
    const egress: EgressBatch[] = []
    if (c.e <= snapshotEpoch) {
      // Covered by the snapshot; kept in the log only because a sink may not have its egress yet.
      for (const r of records) for (const x of r.egress) egress.push(x)
      committed.push({ e: c.e, egress: sortEgress(egress), records: [] })
      continue
    }
    inTransit = new Map()
    for (const r of records) {
      for (const [kg, tables] of r.state) {
        if (!ownsKg(kg)) continue
        let grp = groups.get(kg)
        if (grp === undefined) groups.set(kg, (grp = { tables: new Map() }))
        for (const [table, keys, values] of tables) {
          let t = grp.tables.get(table)
          if (t === undefined) grp.tables.set(table, (t = new Map()))
          for (let i = 0; i < keys.length; i++) {
            const value = values[i]
            if (value === undefined) t.delete(keys[i]!)
            else t.set(keys[i]!, value)
          }
        }
      }
      for (const [kg, msgs] of r.inTransit) inTransit.set(kg, msgs)
      for (const [split, position, exhausted] of r.ingress) ingress.set(split, { position, exhausted })
      for (const x of r.egress) egress.push(x)
    }
    committed.push({ e: c.e, egress: sortEgress(egress), records })
    lastEpoch = c.e
    lastTime = c.time
  }
  return {
    g: Math.max(g, snapshot?.g ?? 0),
    lastEpoch,
    lastTime,
    app: app ?? snapshot?.app,
    keyGroups: keyGroups ?? snapshot?.keyGroups,
    groups,
    inTransit,
    ingress,
    committed,
    commits: commits.map((c) => ({ e: c.record.e, position: c.position, walFrom: firstPosition(c.record.votes.map((v) => v.position)) })),
  }
}

/** The earliest of some log positions (by part, then offset). */
export const firstPosition = (ps: ReadonlyArray<LogEntry["position"]>): LogEntry["position"] | undefined => {
  let first: LogEntry["position"] | undefined
  for (const p of ps) if (first === undefined || p.part < first.part || (p.part === first.part && p.offset < first.offset)) first = p
  return first
}

// A cluster process restores only what it hosts: the snapshot blobs of its key groups, and the log records that can
// hold them (a partition's record holds only the key groups it owned under that epoch's partition count). Records
// below the snapshot whose egress every sink has (the manifest's `published`) are not decoded at all. These tests
// plant records that cannot be decoded (valid checksum, garbage bytes) where nothing may read them, and compare
// the state restored for some key groups with a full recovery.
import { Effect } from "effect"
import { describe, expect, it } from "vitest"
import { makeMemoryBlobStore } from "../../runtime/embedded/MemoryBlobStore.ts"
import { encode } from "../../runtime/engine/codec.ts"
import { checksumOf, encodeRecord, RECORD_FORMAT, type EpochRecord } from "../../runtime/engine/EpochRecord.ts"
import { ownerOf } from "../../runtime/engine/keys.ts"
import type { CommitRecord, FenceRecord, Msg } from "../../runtime/engine/protocol.ts"
import { recover, type SnapshotState } from "../../runtime/engine/recovery.ts"
import { SnapshotManager } from "../../runtime/engine/snapshots.ts"
import type { LogEntry } from "../../runtime/ports/Log.ts"

const G = 8
/** Checksummed like any record, but not decodable: recovery fails if it tries. */
const GARBAGE = new Uint8Array([1, 0xff, 0xfe, 0xfd])

class LogBuilder {
  readonly entries: LogEntry[] = []
  private offset = 0
  constructor() {
    this.add("control", encode({ t: "fence", g: 1, app: "scope", keyGroups: G } satisfies FenceRecord))
  }
  add(stream: "wal" | "control", payload: Uint8Array) {
    const position = { part: 0, offset: this.offset++ }
    this.entries.push({ stream, position, payload })
    return position
  }
  /** Epoch e written by P partitions: partition p sets key `k<kg>` of each key group it owns to e*100+kg. */
  epoch(e: number, P: number, garbageFrom: ReadonlySet<number> = new Set(), inTransitFor?: number): void {
    const votes: CommitRecord["votes"][number][] = []
    for (let p = 0; p < P; p++) {
      const kgs = Array.from({ length: G }, (_, kg) => kg).filter((kg) => ownerOf(kg, G, P) === p)
      const msg = { k: 0, node: "count", kg: kgs[0]!, key: "m", ks: "m", v: e, skg: kgs[0]!, seq: 0 } as unknown as Msg
      const record: EpochRecord = {
        t: "epoch",
        f: RECORD_FORMAT,
        g: 1,
        e,
        partition: p,
        state: kgs.map((kg) => [kg, [["count", [`k${kg}`], [e * 100 + kg]]]] as const),
        inTransit: inTransitFor === p ? [[kgs[0]!, [msg]]] : [],
        ingress: [[`src#${p}`, e, false]],
        egress: [],
      }
      const payload = garbageFrom.has(p) ? GARBAGE : encodeRecord(record).payload
      votes.push({ from: p, position: this.add("wal", payload), checksum: checksumOf(payload) })
    }
    this.add("control", encode({ t: "commit", g: 1, e, time: e, partitions: P, votes } satisfies CommitRecord))
  }
}

const stateOf = (groups: Map<number, { tables: Map<string, Map<string, unknown>> }>, kgs: ReadonlyArray<number>) =>
  kgs.map((kg) => [kg, [...(groups.get(kg)?.tables.get("count") ?? new Map<string, unknown>())]])

describe("recovery restores only what a process hosts", () => {
  it("a worker gets exactly its key groups' state, without decoding the other partitions' records", () => {
    const full = new LogBuilder()
    const scoped = new LogBuilder()
    for (let e = 1; e <= 4; e++) {
      full.epoch(e, 2)
      // Partition 1's records of epochs 1-3 cannot be decoded; worker 0 must not need them.
      scoped.epoch(e, 2, e < 4 ? new Set([1]) : new Set())
    }
    const mine = [0, 1, 2, 3]
    const all = recover(full.entries, undefined)
    expect(() => recover(scoped.entries, undefined)).toThrow()
    const rec = recover(scoped.entries, undefined, { ownsKg: (kg) => mine.includes(kg) })
    expect(rec.lastEpoch).toBe(4)
    expect(stateOf(rec.groups, mine)).toEqual(stateOf(all.groups, mine))
    expect(stateOf(rec.groups, mine)).toEqual(mine.map((kg) => [kg, [[`k${kg}`, 400 + kg]]]))
    expect([...rec.groups.keys()].every((kg) => mine.includes(kg))).toBe(true)
    expect(rec.ingress.get("src#0")).toEqual({ position: 4, exhausted: false })
  })

  it("a process hosting no partition (the coordinator) still reads the last epoch's in-transit messages", () => {
    const log = new LogBuilder()
    for (let e = 1; e <= 3; e++) log.epoch(e, 2, e < 3 ? new Set([0, 1]) : new Set(), e === 3 ? 1 : undefined)
    const rec = recover(log.entries, undefined, { ownsKg: () => false })
    expect(rec.lastEpoch).toBe(3)
    expect(rec.groups.size).toBe(0)
    expect([...rec.inTransit.values()].reduce((n, m) => n + m.length, 0)).toBe(1)
  })

  it("after a rescale, records of the old partition count are read by whoever hosts their key groups now", () => {
    const log = new LogBuilder()
    const twin = new LogBuilder()
    log.epoch(1, 1)
    twin.epoch(1, 1)
    log.epoch(2, 2, new Set([0]))
    twin.epoch(2, 2)
    log.epoch(3, 2)
    twin.epoch(3, 2)
    // Worker 1 of 2 hosts key groups 4-7: epoch 1 was written by partition 0 of 1, which held them; partition 0 of 2
    // held none of them in epoch 2. Everyone decodes the last epoch.
    const rec = recover(log.entries, undefined, { ownsKg: (kg) => kg >= 4 })
    expect(rec.committed.map((c) => c.records.map((r) => r.partition))).toEqual([[0], [1], [0, 1]])
    expect(stateOf(rec.groups, [4, 5, 6, 7])).toEqual(stateOf(recover(twin.entries, undefined).groups, [4, 5, 6, 7]))
    expect(stateOf(rec.groups, [4, 5, 6, 7])).toEqual([4, 5, 6, 7].map((kg) => [kg, [[`k${kg}`, 300 + kg]]]))
  })

  it("records at or below both the snapshot and its published watermark are not decoded; above it they are", () => {
    const log = new LogBuilder()
    for (let e = 1; e <= 4; e++) log.epoch(e, 2, e <= 2 ? new Set([0, 1]) : new Set())
    const snapshot = (published: number | undefined): SnapshotState => ({
      epoch: 2,
      ...(published === undefined ? {} : { published }),
      g: 1,
      app: "scope",
      keyGroups: G,
      groups: new Map(),
      ingress: new Map(),
      inTransit: new Map(),
    })
    const rec = recover(log.entries, snapshot(2))
    expect(rec.lastEpoch).toBe(4)
    expect(rec.committed.filter((c) => c.e > 2).map((c) => c.records.length)).toEqual([2, 2])
    // Without the watermark (or below the snapshot) the records are needed for their egress, and decoded.
    expect(() => recover(log.entries, snapshot(undefined))).toThrow()
    expect(() => recover(log.entries, snapshot(1))).toThrow()
  })

  it("a snapshot loads only the key groups asked for, and keeps the published watermark", async () => {
    const data = new Map<string, Uint8Array>()
    const store = makeMemoryBlobStore(data)
    const writer = new SnapshotManager(store, "scope", G, { concurrency: 3 })
    const records: EpochRecord[] = [
      {
        t: "epoch",
        f: RECORD_FORMAT,
        g: 1,
        e: 1,
        partition: 0,
        state: Array.from({ length: G }, (_, kg) => [kg, [["count", [`k${kg}`], [kg]]]] as const),
        inTransit: [],
        ingress: [["src#0", 1, false]],
        egress: [],
      },
    ]
    writer.committed(1, records)
    const part = await Effect.runPromise(writer.writePart(1, 1, "p0", { kg: () => true, split: () => true }))
    expect(part.stats.blobs).toBe(2)
    expect(part.stats.bytes).toBeGreaterThan(0)
    await Effect.runPromise(writer.writeManifest(1, 1, [part], 1))
    const reader = new SnapshotManager(store, "scope", G, { concurrency: 2 })
    const s = await Effect.runPromise(reader.load(undefined, (kg) => kg % 2 === 1))
    expect(s?.published).toBe(1)
    expect([...s!.groups.keys()].sort()).toEqual([1, 3, 5, 7])
    expect(stateOf(s!.groups, [1, 3, 5, 7])).toEqual([1, 3, 5, 7].map((kg) => [kg, [[`k${kg}`, kg]]]))
    expect(reader.loaded).toMatchObject({ epoch: 1, blobs: 1 + 1 + 1 })
    const everything = await Effect.runPromise(new SnapshotManager(store, "scope", G).load(undefined))
    expect(everything?.groups.size).toBe(G)
  })
})

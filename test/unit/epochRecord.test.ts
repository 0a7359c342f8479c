// Epoch record layouts: format 2 (columns per table, one egress batch per key group) is what partitions write; logs
// written in format 1 (one tuple per state entry and per egress record) still recover to the same state and egress.
import { describe, expect, it } from "vitest"
import { encode } from "../../runtime/engine/codec.ts"
import { checksumOf, decodeRecord, egressCount, encodeRecord, forEachEgress, RECORD_FORMAT, type EgressBatch, type EpochRecord } from "../../runtime/engine/EpochRecord.ts"
import type { CommitRecord, FenceRecord } from "../../runtime/engine/protocol.ts"
import { recover } from "../../runtime/engine/recovery.ts"
import type { LogEntry } from "../../runtime/ports/Log.ts"

const egressOf = (batches: ReadonlyArray<EgressBatch>) => {
  const out: Array<[string, number, number, unknown]> = []
  forEachEgress(batches, (sink, kg, seq, value) => out.push([sink, kg, seq, value]))
  return out
}

describe("epoch records", () => {
  it("format 2 round-trips, deletions and mixed sinks included", () => {
    const r: EpochRecord = {
      t: "epoch",
      f: RECORD_FORMAT,
      g: 1,
      e: 3,
      partition: 0,
      state: [[5, [["count", ["n1", "n2"], [1, undefined]], ["$meta", [""], [{ askSeq: 0, outSeq: 3 }]]]]],
      inTransit: [],
      ingress: [["src#0", 3, false]],
      egress: [
        ["a", 5, 0, [10, 11]],
        [[["a", "b"], [0, 1, 0]], 7, 4, ["x", "y", "z"]],
      ],
    }
    const back = decodeRecord(encodeRecord(r).payload)
    expect(back).toEqual(r)
    expect(back.state[0]![1][0]![2]).toEqual([1, undefined])
    expect(egressCount(back.egress)).toBe(5)
    expect(egressOf(back.egress)).toEqual([
      ["a", 5, 0, 10],
      ["a", 5, 1, 11],
      ["a", 7, 4, "x"],
      ["b", 7, 5, "y"],
      ["a", 7, 6, "z"],
    ])
  })

  it("a format-1 record is read as format 2 (a later entry for the same key wins)", () => {
    const v1 = {
      t: "epoch",
      g: 1,
      e: 2,
      partition: 1,
      state: [[4, [["count", "n1", 1], ["count", "n2", 2], ["$meta", "", { askSeq: 0, outSeq: 2 }], ["count", "n1", undefined]]]],
      inTransit: [],
      ingress: [["src#0", 2, true]],
      egress: [["out", 4, 0, "a"], ["log", 4, 1, "b"]],
    }
    const r = decodeRecord(encode(v1))
    expect(r.f).toBe(RECORD_FORMAT)
    expect(r.state).toEqual([[4, [["count", ["n1", "n2"], [undefined, 2]], ["$meta", [""], [{ askSeq: 0, outSeq: 2 }]]]]])
    expect(egressOf(r.egress)).toEqual([
      ["out", 4, 0, "a"],
      ["log", 4, 1, "b"],
    ])
  })

  it("recovery reads a log mixing both formats", () => {
    const entries: LogEntry[] = []
    let offset = 0
    const add = (stream: "wal" | "control", payload: Uint8Array) => {
      const position = { part: 0, offset: offset++ }
      entries.push({ stream, position, payload })
      return position
    }
    add("control", encode({ t: "fence", g: 1, app: "mixed", keyGroups: 8 } satisfies FenceRecord))
    const v1 = encode({
      t: "epoch",
      g: 1,
      e: 1,
      partition: 0,
      state: [[2, [["count", "n1", 1], ["count", "n2", 5]]]],
      inTransit: [],
      ingress: [["src#0", 1, false]],
      egress: [["out", 2, 0, "first"]],
    })
    const p1 = add("wal", v1)
    // The vote's checksum is over the bytes as written, whatever their format.
    add("control", encode({ t: "commit", g: 1, e: 1, time: 1, partitions: 1, votes: [{ from: 0, position: p1, checksum: checksumOf(v1) }] } satisfies CommitRecord))
    const v2 = encodeRecord({
      t: "epoch",
      f: RECORD_FORMAT,
      g: 1,
      e: 2,
      partition: 0,
      state: [[2, [["count", ["n1", "n2"], [2, undefined]]]]],
      inTransit: [],
      ingress: [["src#0", 2, true]],
      egress: [["out", 2, 1, ["second", "third"]]],
    })
    const p2 = add("wal", v2.payload)
    add("control", encode({ t: "commit", g: 1, e: 2, time: 2, partitions: 1, votes: [{ from: 0, position: p2, checksum: v2.checksum }] } satisfies CommitRecord))
    const rec = recover(entries, undefined)
    expect(rec.lastEpoch).toBe(2)
    expect([...rec.groups.get(2)!.tables.get("count")!]).toEqual([["n1", 2]])
    expect(rec.ingress.get("src#0")).toEqual({ position: 2, exhausted: true })
    expect(rec.committed.map((c) => egressOf(c.egress))).toEqual([
      [["out", 2, 0, "first"]],
      [
        ["out", 2, 1, "second"],
        ["out", 2, 2, "third"],
      ],
    ])
  })
})

// Epoch record layouts: format 3 (on the wire one set of columns per table across key groups, table names once) is
// what partitions write; logs written in format 2 (columns per table and key group) or format 1 (one tuple per state
// entry and per egress record) still recover to the same state and egress.
import { join } from "node:path"
import { Effect } from "effect"
import { describe, expect, it } from "vitest"
import { counterApp } from "../../examples/counter/app.ts"
import { Continuation, Portal } from "../../portals/index.ts"
import { FileLog } from "../../runtime/embedded/FileLog.ts"
import { Eddy } from "../../runtime/index.ts"
import { Log } from "../../runtime/ports/Log.ts"
import { App, Sink, Source, Workflow, type Key } from "../../workflows/index.ts"
import { canonicalKey, keyGroupOf, parseCanonicalKey } from "../../runtime/engine/keys.ts"
import { removeDir, tempDir } from "../helpers.ts"
import { range, runApp } from "./util.ts"
import { decode, encode } from "../../runtime/engine/codec.ts"
import { checksumOf, decodeRecord, egressCount, encodeRecord, forEachEgress, RECORD_FORMAT, type EgressBatch, type EpochRecord } from "../../runtime/engine/EpochRecord.ts"
import type { CommitRecord, FenceRecord } from "../../runtime/engine/protocol.ts"
import { recover } from "../../runtime/engine/recovery.ts"
import { mergeColumns, mergeRecord, type Tables } from "../../runtime/engine/snapshotFold.ts"
import type { LogEntry } from "../../runtime/ports/Log.ts"

const egressOf = (batches: ReadonlyArray<EgressBatch>) => {
  const out: Array<[string, number, number, unknown]> = []
  forEachEgress(batches, (sink, kg, seq, value) => out.push([sink, kg, seq, value]))
  return out
}

describe("epoch records", () => {
  it("format 3 round-trips: several key groups and tables, deletions, $meta, mixed sinks", () => {
    const r: EpochRecord = {
      t: "epoch",
      f: RECORD_FORMAT,
      g: 1,
      e: 3,
      partition: 0,
      state: [
        [5, [["count", ["n1", "n2"], [1, undefined]], ["$meta", [""], [{ askSeq: 0, outSeq: 3 }]]]],
        [6, [["$pending", ["6.0"], [{ node: "t", continuation: "c", data: { a: [1] } }]], ["count", ["n9"], [{ deep: new Map([[1, "x"]]) }]]]],
        [900, [["count", ["n7"], [7]], ["other#entries", ["[2:s12:sz]"], [[1, "r", 5]]], ["$meta", [""], [{ askSeq: 4, outSeq: 0 }]]]],
      ],
      inTransit: [],
      ingress: [["src#0", 3, false]],
      egress: [
        ["a", 5, 0, [10, 11]],
        [[["a", "b"], [0, 1, 0]], 7, 4, ["x", "y", "z"]],
      ],
    }
    const { payload } = encodeRecord(r)
    const back = decodeRecord(payload)
    // Per key group, tables come back in the order the record first named them; each table's keys in their order.
    const sorted = (x: EpochRecord) => x.state.map(([kg, ts]) => [kg, [...ts].sort((a, b) => (a[0] < b[0] ? -1 : 1))])
    expect(back.f).toBe(3)
    expect(sorted(back)).toEqual(sorted(r))
    expect({ ...back, state: [] }).toEqual({ ...r, state: [] })
    // On the wire: each table once, its key groups a typed array, $meta as [askSeq, outSeq].
    const wire = decode(payload) as { state: [string[], Array<[number, Int32Array, string[], unknown[]]>] }
    expect(wire.state[0]).toEqual(["count", "$meta", "$pending", "other#entries"])
    expect(wire.state[1][0]![1]).toEqual(Int32Array.from([5, 5, 6, 900]))
    expect(wire.state[1][1]![3]).toEqual([[0, 3], [4, 0]])
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

  it("a format-2 record (columns per key group) is read as written", () => {
    const v2 = {
      t: "epoch",
      f: 2,
      g: 1,
      e: 4,
      partition: 0,
      state: [[3, [["count", ["n1", "n2"], [1, undefined]], ["$meta", [""], [{ askSeq: 1, outSeq: 2 }]]]], [8, [["count", ["n3"], [3]]]]],
      inTransit: [],
      ingress: [["src#0", 4, false]],
      egress: [["out", 3, 0, ["a", "b"]]],
    }
    expect(decodeRecord(encode(v2))).toEqual(v2)
  })

  it("the snapshot thread's merge of encoded records equals the merge of decoded ones, in every format", () => {
    const records = [
      encode({ t: "epoch", g: 1, e: 1, partition: 0, state: [[4, [["count", "n1", 1], ["$meta", "", { askSeq: 1, outSeq: 0 }]]]], inTransit: [], ingress: [], egress: [] }),
      encode({ t: "epoch", f: 2, g: 1, e: 2, partition: 0, state: [[4, [["count", ["n1", "n2"], [undefined, 2]]]], [9, [["count", ["m"], [3]]]]], inTransit: [], ingress: [], egress: [] }),
      encodeRecord({
        t: "epoch",
        f: RECORD_FORMAT,
        g: 1,
        e: 3,
        partition: 0,
        state: [
          [4, [["count", ["n2", "n3"], [20, 30]], ["$meta", [""], [{ askSeq: 2, outSeq: 5 }]]]],
          [9, [["other", ["x"], [{ y: 1 }]], ["count", ["m"], [undefined]]]],
          [11, [["count", ["q"], [7]]]],
        ],
        inTransit: [],
        ingress: [],
        egress: [],
      }).payload,
    ]
    const direct = new Map<number, Tables>()
    const decoded = new Map<number, Tables>()
    for (const p of records) {
      mergeRecord(direct, p)
      mergeColumns(decoded, decodeRecord(p).state)
    }
    expect(direct).toEqual(decoded)
    expect(direct.get(4)!.get("count")).toEqual(new Map<string, unknown>([["n1", undefined], ["n2", 20], ["n3", 30]]))
    expect(direct.get(4)!.get("$meta")!.get("")).toEqual({ askSeq: 2, outSeq: 5 })
    expect(direct.get(9)!.get("count")!.get("m")).toBeUndefined()
    expect(direct.get(9)!.get("count")!.has("m")).toBe(true)
  })

  it("a malformed format-3 record fails to decode with a message naming it", () => {
    const bad = encode({ t: "epoch", f: 3, g: 1, e: 1, partition: 0, state: [["count"], [[0, Int32Array.from([1, 2]), ["a"], [1]]]], inTransit: [], ingress: [], egress: [] })
    expect(() => decodeRecord(bad)).toThrow(/malformed state columns of table count/)
    expect(() => mergeRecord(new Map(), bad)).toThrow(/malformed state columns of table count/)
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
    expect(r.f).toBe(2)
    expect(r.state).toEqual([[4, [["count", ["n1", "n2"], [undefined, 2]], ["$meta", [""], [{ askSeq: 0, outSeq: 2 }]]]]])
    expect(egressOf(r.egress)).toEqual([
      ["out", 4, 0, "a"],
      ["log", 4, 1, "b"],
    ])
  })

  it("recovery reads a log mixing all three formats", () => {
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
    const v2 = encode({
      t: "epoch",
      f: 2,
      g: 1,
      e: 2,
      partition: 0,
      state: [[2, [["count", ["n1", "n2"], [2, undefined]]]]],
      inTransit: [],
      ingress: [["src#0", 2, false]],
      egress: [["out", 2, 1, ["second", "third"]]],
    })
    const p2 = add("wal", v2)
    add("control", encode({ t: "commit", g: 1, e: 2, time: 2, partitions: 1, votes: [{ from: 0, position: p2, checksum: checksumOf(v2) }] } satisfies CommitRecord))
    const v3 = encodeRecord({
      t: "epoch",
      f: RECORD_FORMAT,
      g: 1,
      e: 3,
      partition: 0,
      state: [
        [2, [["count", ["n2", "n3"], [7, 8]]]],
        [3, [["count", ["m1"], [9]], ["$meta", [""], [{ askSeq: 0, outSeq: 1 }]]]],
      ],
      inTransit: [],
      ingress: [["src#0", 3, true]],
      egress: [],
    })
    const p3 = add("wal", v3.payload)
    add("control", encode({ t: "commit", g: 1, e: 3, time: 3, partitions: 1, votes: [{ from: 0, position: p3, checksum: v3.checksum }] } satisfies CommitRecord))
    const rec = recover(entries, undefined)
    expect(rec.lastEpoch).toBe(3)
    expect([...rec.groups.get(2)!.tables.get("count")!]).toEqual([["n1", 2], ["n2", 7], ["n3", 8]])
    expect([...rec.groups.get(3)!.tables.get("count")!]).toEqual([["m1", 9]])
    expect(rec.groups.get(3)!.tables.get("$meta")!.get("")).toEqual({ askSeq: 0, outSeq: 1 })
    expect(rec.ingress.get("src#0")).toEqual({ position: 3, exhausted: true })
    expect(rec.committed.map((c) => egressOf(c.egress))).toEqual([
      [["out", 2, 0, "first"]],
      [
        ["out", 2, 1, "second"],
        ["out", 2, 2, "third"],
      ],
      [],
    ])
  })
})

describe("what the log holds", () => {
  const walRecords = (dir: string): Promise<EpochRecord[]> =>
    Effect.runPromise(Effect.scoped(Effect.provide(Effect.flatMap(Log, (log) => log.readAll), FileLog.layer(join(dir, "log"))))).then((entries) =>
      entries.filter((x) => x.stream === "wal").map((x) => decodeRecord(x.payload)),
    )
  const pendingIn = (rs: ReadonlyArray<EpochRecord>) => rs.flatMap((r) => r.state.flatMap(([, tables]) => tables.filter(([t]) => t === "$pending").flatMap(([, ks, vs]) => ks.map((k, i) => [k, vs[i]] as const))))

  it("not the answers to callers (a discard sink), nor asks made and answered in one epoch; the effects are all there", async () => {
    const dir = tempDir("record-contents")
    try {
      const running = Eddy.start(counterApp(), { dataDir: dir, stopWhenIdle: false, onFailure: () => undefined })
      const answers = await Promise.all(Array.from({ length: 40 }, (_, i) => running.client.ask<number>(`counter/c${i % 8}`, { add: 1 }, { idempotencyKey: `r${i}` })))
      expect(answers.map((a) => a.reply).sort((a, b) => a - b)).toEqual(Array.from({ length: 40 }, (_, i) => Math.floor(i / 8) + 1).sort((a, b) => a - b))
      // Asks without a key (nobody can send them again) leave no entry at all.
      const unkeyed = await Promise.all(Array.from({ length: 16 }, (_, i) => running.client.ask<number>(`counter/c${i % 8}`, { add: 0 })))
      expect(unkeyed.map((a) => a.reply)).toEqual(Array.from({ length: 16 }, () => 5))
      await running.stop()
      const rs = await walRecords(dir)
      const sinks = new Set(rs.flatMap((r) => egressOf(r.egress).map(([sink]) => sink)))
      expect(sinks.has("counters.replies")).toBe(false)
      // Each ask of the request task was answered within its epoch: no pending entry was ever logged.
      expect(pendingIn(rs)).toEqual([])
      // The keyed requests' idempotency entries (with the answers) and the counters' state are logged, each entry in its
      // actor's key group (DESIGN: keyed state in the target's key group, in the same epoch record as the effect).
      const tables = new Set(rs.flatMap((r) => r.state.flatMap(([, ts]) => ts.map(([t]) => t))))
      expect(tables.has("counters/actors#entries")).toBe(true)
      expect(tables.has("counters/actors")).toBe(true)
      const entryKgs = rs.flatMap((r) => r.state.flatMap(([kg, ts]) => ts.filter(([t]) => t === "counters/actors#entries").flatMap(([, ks]) => ks.map((k) => [kg, k] as const))))
      expect(entryKgs.length).toBe(40)
      for (const [kg, ks] of entryKgs) {
        const [actor] = parseCanonicalKey(ks) as [Key, string]
        expect(kg).toBe(keyGroupOf(canonicalKey(actor), 128))
      }
      // Restarted from the log, the counters hold what the answers said.
      const again = Eddy.start(counterApp(), { dataDir: dir, stopWhenIdle: false, onFailure: () => undefined })
      const values = await Promise.all(Array.from({ length: 8 }, (_, i) => again.client.ask<number>(`counter/c${i}`, { get: true })))
      expect(values.map((v) => v.reply)).toEqual(Array.from({ length: 8 }, () => 5))
      await again.stop()
    } finally {
      removeDir(dir)
    }
  })

  it("asks that cross a commit: logged when made, logged again when answered", async () => {
    const dir = tempDir("record-pending")
    try {
      const double = Portal.define<number, number>("double", { key: (n) => n % 3 })
      const done = Continuation.define<number, number, number>("done", (ctx, v, n) => ctx.emit(n * 1000 + v))
      const wf = Workflow.create("w", (wf) => {
        wf.source(Source.empty()).via(Portal.replier(double, (ctx, n: number) => ctx.reply(n * 2)))
        wf.source(Source.array(range(1, 6)))
          .keyBy((n) => n)
          .via(Portal.asker<number, number>((ctx, n) => ctx.ask(double, n).then(done, n), { continuations: [done] }))
          .sink(Sink.memory("out"))
      })
      // One round per epoch: every ask is answered in a later epoch than the one that made it.
      const r = await runApp(App.define({ name: "cross", workflows: [wf] }), { dataDir: dir, roundLimit: 1 })
      expect([...r.outputs<number>("out")].sort((a, b) => a - b)).toEqual(range(1, 6).map((n) => n * 1000 + 2 * n))
      const pending = pendingIn(await walRecords(dir))
      const made = pending.filter(([, v]) => v !== undefined).map(([k]) => k)
      const ended = pending.filter(([, v]) => v === undefined).map(([k]) => k)
      expect(made).toHaveLength(6)
      expect([...ended].sort()).toEqual([...made].sort())
    } finally {
      removeDir(dir)
    }
  })
})

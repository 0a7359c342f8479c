// Epoch record layouts: format 2 (columns per table, one egress batch per key group) is what partitions write; logs
// written in format 1 (one tuple per state entry and per egress record) still recover to the same state and egress.
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
      const answers = await Promise.all(Array.from({ length: 40 }, (_, i) => running.client.ask<number>(`counter/c${i % 8}`, { add: 1 })))
      expect(answers.map((a) => a.reply).sort((a, b) => a - b)).toEqual(Array.from({ length: 40 }, (_, i) => Math.floor(i / 8) + 1).sort((a, b) => a - b))
      await running.stop()
      const rs = await walRecords(dir)
      const sinks = new Set(rs.flatMap((r) => egressOf(r.egress).map(([sink]) => sink)))
      expect(sinks.has("counters.replies")).toBe(false)
      // Each ask of the request task was answered within its epoch: no pending entry was ever logged.
      expect(pendingIn(rs)).toEqual([])
      // The requests' idempotency entries (with the answers) and the counters' state are logged, each entry in its
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

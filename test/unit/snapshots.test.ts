// Snapshots fold the committed epochs' state columns onto the previous snapshot's blobs. Checked here against a plain
// model (a map per key group and table, every epoch's writes applied in order): random writes and deletes over many
// epochs, snapshots at random epochs, and uploads that fail and are retried with later epochs' changes on top.
import { readdirSync, readFileSync } from "node:fs"
import { Effect } from "effect"
import { describe, expect, it } from "vitest"
import { makeMemoryBlobStore } from "../../runtime/embedded/MemoryBlobStore.ts"
import { encode } from "../../runtime/engine/codec.ts"
import { InThreadFolder, threadFolder, type DeltaFolder } from "../../runtime/engine/DeltaFolder.ts"
import { BACKGROUND_NICE } from "../../runtime/engine/threadPriority.ts"
import { encodeRecord, RECORD_FORMAT, type EpochRecord, type TableDelta } from "../../runtime/engine/EpochRecord.ts"
import { chainOf, SnapshotManager, type ChainPolicy } from "../../runtime/engine/snapshots.ts"
import type { BlobStoreService } from "../../runtime/ports/BlobStore.ts"
import { BlobStoreError } from "../../runtime/ports/BlobStore.ts"
import { seeded, tempDirs } from "../helpers.ts"
import { App, Sink, Source, Workflow } from "../../workflows/index.ts"
import { Eddy, committedState } from "../../runtime/index.ts"
import type { RestoreTiming } from "../../runtime/engine/Engine.ts"

const G = 6
type Model = Map<number, Map<string, Map<string, unknown>>>

/** A store whose puts fail while `failing` is set (gets and lists still work). */
const flaky = (inner: BlobStoreService) => {
  const s = { failing: false }
  const store: BlobStoreService = {
    ...inner,
    put: (key, bytes) => (s.failing ? Effect.fail(new BlobStoreError({ message: `put ${key}: injected failure` })) : inner.put(key, bytes)),
  }
  return { store, s }
}

/** The model's content as sorted rows, the shape a loaded snapshot is compared in. */
const rows = (groups: ReadonlyMap<number, { tables: ReadonlyMap<string, ReadonlyMap<string, unknown>> }>): Array<[number, string, string, unknown]> => {
  const out: Array<[number, string, string, unknown]> = []
  for (const [kg, g] of groups) for (const [table, t] of g.tables) for (const [ks, v] of t) out.push([kg, table, ks, v])
  return out.sort((a, b) => a[0] - b[0] || a[1].localeCompare(b[1]) || a[2].localeCompare(b[2]))
}

describe("snapshots", () => {
  // Chain policies: always a new image; deltas up to chains of 4 whatever the sizes; the default (sizes decide).
  // Each on the engine's thread and in a thread of its own (given each record's encoded bytes, as the engine does).
  // "crash": the snapshot thread is also ended at random points, between epochs and while a part is being built.
  const policies: ReadonlyArray<readonly [string, ChainPolicy | undefined, boolean | "crash"]> = [
    ["images only", { maxLength: 1, minImageBytes: 0 }, false],
    ["chains of up to 4", { maxLength: 4, minImageBytes: 0 }, false],
    ["default policy", undefined, false],
    ["images only, snapshot thread", { maxLength: 1, minImageBytes: 0 }, true],
    ["chains of up to 4, snapshot thread", { maxLength: 4, minImageBytes: 0 }, true],
    ["chains of up to 4, snapshot thread that crashes", { maxLength: 4, minImageBytes: 0 }, "crash"],
  ]
  it.each(policies)("a snapshot equals every committed epoch's writes and deletes applied in order, across snapshots and failed uploads (%s)", async (_name, policy, thread) => {
    let longest = 0
    let crashes = 0
    let crashedBuilds = 0
    for (const seed of [1, 2, 3, 4, 5]) {
      const rand = seeded(seed)
      const { store, s } = flaky(makeMemoryBlobStore(new Map()))
      // Odd seeds pack every key group into a blob of its own, even ones all into one.
      const folder = thread !== false ? threadFolder() : undefined
      // Few enough crashes per seed that the thread is always restarted (it is, up to 3 times).
      let crashesLeft = 3
      const maybeCrash = async (p: number): Promise<boolean> => {
        if (thread !== "crash" || crashesLeft === 0 || rand() >= p) return false
        crashesLeft--
        crashes++
        await folder!.crash()
        return true
      }
      const writer = new SnapshotManager(store, "fold", G, { concurrency: 4, ...(seed % 2 === 1 ? { packBytes: 1 } : {}), ...(policy === undefined ? {} : { chains: policy }), ...(folder === undefined ? {} : { folder }) })
      const model: Model = new Map()
      let manifests = 0
      for (let e = 1; e <= 60; e++) {
        const state: Array<readonly [number, TableDelta[]]> = []
        for (let kg = 0; kg < G; kg++) {
          if (rand() < 0.3) continue
          const tables: TableDelta[] = []
          for (const table of ["a", "b"]) {
            if (rand() < 0.4) continue
            const keys: string[] = []
            const values: unknown[] = []
            for (let i = 0; i < 1 + Math.floor(rand() * 4); i++) {
              const ks = `k${Math.floor(rand() * 8)}`
              if (keys.includes(ks)) continue // a key appears once per table and epoch
              keys.push(ks)
              values.push(rand() < 0.25 ? undefined : { e, v: Math.floor(rand() * 1000) })
            }
            tables.push([table, keys, values])
          }
          if (tables.length === 0) continue
          state.push([kg, tables])
          for (const [table, keys, values] of tables) {
            let g = model.get(kg)
            if (g === undefined) model.set(kg, (g = new Map()))
            let t = g.get(table)
            if (t === undefined) g.set(table, (t = new Map()))
            keys.forEach((ks, i) => (values[i] === undefined ? t.delete(ks) : t.set(ks, values[i])))
            if (t.size === 0) g.delete(table)
          }
        }
        const record: EpochRecord = { t: "epoch", f: RECORD_FORMAT, g: 1, e, partition: 0, state, inTransit: [], ingress: [], egress: [] }
        writer.record(record, thread !== false ? encodeRecord(record).payload : undefined)
        writer.committed(e)
        await maybeCrash(0.04)
        if (rand() < 0.15) {
          s.failing = rand() < 0.4
          const part = Effect.runPromise(Effect.either(writer.writePart(e, 1, "p0", { kg: () => true, split: () => true })))
          if (await maybeCrash(0.3)) crashedBuilds++
          const attempt = await part
          s.failing = false
          if (attempt._tag === "Left") continue // its changes are kept for the next snapshot
          await Effect.runPromise(writer.writeManifest(e, 1, [attempt.right]))
          manifests++
          // The blobs this part wrote, the last of their groups' chains (it also names older ones, of groups it did
          // not rewrite).
          const chains = Object.values(attempt.right.groups)
          for (const chain of chains) {
            longest = Math.max(longest, chain.length)
            expect(chain.length).toBeLessThanOrEqual(policy?.maxLength ?? 16)
          }
          const fresh = chains.map((c) => c[c.length - 1]![0]).filter((key) => key.includes(`-e${String(e).padStart(12, "0")}/`))
          const blobs = new Set(fresh)
          if (seed % 2 === 1) expect(blobs.size).toBe(fresh.length)
          else expect(blobs.size).toBeLessThanOrEqual(1)
          const loaded = await Effect.runPromise(new SnapshotManager(store, "fold", G).load(undefined))
          expect(loaded?.epoch).toBe(e)
          const want = new Map([...model].map(([kg, g]) => [kg, { tables: g }]))
          expect(rows(loaded!.groups)).toEqual(rows(want))
        }
      }
      expect(manifests).toBeGreaterThan(2)
      await folder?.close()
    }
    // The chains policy did build chains (the state here is far below the default's image size, so it folds).
    expect(longest).toBe(policy === undefined ? 1 : policy.maxLength)
    if (thread === "crash") {
      expect(crashes).toBeGreaterThan(4)
      expect(crashedBuilds).toBeGreaterThan(0)
    }
  })

  it("reads snapshots of the older layout (one blob per key group) and folds new epochs onto them", async () => {
    const data = new Map<string, Uint8Array>()
    const store = makeMemoryBlobStore(data)
    // Snapshot 3 as an older build wrote it: one blob of tables per key group, a meta blob, a manifest.
    const old = new Map<number, Map<string, Map<string, unknown>>>([
      [0, new Map([["a", new Map<string, unknown>([["x", 1], ["y", 2]])]])],
      [4, new Map([["a", new Map<string, unknown>([["z", 3]])], ["b", new Map<string, unknown>([["w", new Date(5)]])]])],
    ])
    const groups: Record<string, string> = {}
    for (const [kg, tables] of old) {
      groups[String(kg)] = `snapshots/g1-e000000000003/p0/kg${kg}`
      await Effect.runPromise(store.put(groups[String(kg)]!, encode(tables)))
    }
    await Effect.runPromise(store.put("snapshots/g1-e000000000003/p0/meta", encode({ ingress: [], inTransit: [] })))
    await Effect.runPromise(store.put("manifests/000000000003", encode({ epoch: 3, g: 1, app: "fold", keyGroups: G, groups, metas: ["snapshots/g1-e000000000003/p0/meta"] })))
    const loaded = await Effect.runPromise(new SnapshotManager(store, "fold", G).load(undefined))
    expect(rows(loaded!.groups)).toEqual(rows(new Map([...old].map(([kg, tables]) => [kg, { tables }]))))
    // Epoch 4 changes key group 4 only.
    const writer = new SnapshotManager(store, "fold", G)
    await Effect.runPromise(writer.load(undefined))
    writer.committed(4, [{ t: "epoch", f: RECORD_FORMAT, g: 1, e: 4, partition: 0, state: [[4, [["a", ["z", "q"], [undefined, 9]]]]], inTransit: [], ingress: [], egress: [] }])
    const part = await Effect.runPromise(writer.writePart(4, 1, "p0", { kg: () => true, split: () => true }))
    await Effect.runPromise(writer.writeManifest(4, 1, [part]))
    const after = await Effect.runPromise(new SnapshotManager(store, "fold", G).load(undefined))
    expect(after?.epoch).toBe(4)
    const want = new Map([
      [0, { tables: old.get(0)! }],
      [4, { tables: new Map([["a", new Map<string, unknown>([["q", 9]])], ["b", new Map<string, unknown>([["w", new Date(5)]])]]) }],
    ])
    expect(rows(after!.groups)).toEqual(rows(want))
    // Group 0 keeps its old blob; group 4's old image (size unknown) gets a delta on top.
    expect(chainOf(writer.manifest!.groups["0"]!)).toEqual([[groups["0"], -1]])
    expect(chainOf(writer.manifest!.groups["4"]!).map(([key]) => key)).toEqual([groups["4"], "snapshots/g1-e000000000004/p0/groups-0"])
  })
})

describe("snapshots across processes", () => {
  it.each([
    ["images", undefined],
    ["deltas", { maxLength: 4, minImageBytes: 0 }],
  ] as const)("a part whose snapshot never got a manifest (the other process's part failed) is not lost by the next snapshot (%s)", async (_name, policy) => {
    const data = new Map<string, Uint8Array>()
    const { store, s } = flaky(makeMemoryBlobStore(data))
    // Process A owns key groups 0-2, process B 3-5.
    const own = (lo: number) => ({ kg: (kg: number) => kg >= lo && kg < lo + 3, split: () => true })
    const a = new SnapshotManager(store, "parts", G, policy === undefined ? {} : { chains: policy })
    const b = new SnapshotManager(store, "parts", G, policy === undefined ? {} : { chains: policy })
    const epoch = (e: number, state: EpochRecord["state"]): EpochRecord => ({ t: "epoch", f: RECORD_FORMAT, g: 1, e, partition: 0, state, inTransit: [], ingress: [], egress: [] })
    const commit = (m: SnapshotManager, e: number, state: EpochRecord["state"]) => m.committed(e, [epoch(e, state)])
    // Snapshot 1: both parts in, manifest written.
    commit(a, 1, [[0, [["t", ["x"], [1]]]]])
    commit(b, 1, [[3, [["t", ["y"], [1]]]]])
    const a1 = await Effect.runPromise(a.writePart(1, 1, "pa", own(0)))
    const b1 = await Effect.runPromise(b.writePart(1, 1, "pb", own(3)))
    await Effect.runPromise(a.writeManifest(1, 1, [a1, b1]))
    // Snapshot 2: A changes group 0 and writes its part; B's upload fails, so there is no manifest 2.
    commit(a, 2, [[0, [["t", ["x"], [2]]]]])
    commit(b, 2, [[3, [["t", ["y"], [2]]]]])
    await Effect.runPromise(a.writePart(2, 1, "pa", own(0)))
    s.failing = true
    expect((await Effect.runPromise(Effect.either(b.writePart(2, 1, "pb", own(3)))))._tag).toBe("Left")
    s.failing = false
    // Snapshot 3: A changes only group 1; group 0's epoch-2 value lives only in A's part of snapshot 2.
    commit(a, 3, [[1, [["t", ["z"], [3]]]]])
    const a3 = await Effect.runPromise(a.writePart(3, 1, "pa", own(0)))
    const b3 = await Effect.runPromise(b.writePart(3, 1, "pb", own(3)))
    await Effect.runPromise(a.writeManifest(3, 1, [a3, b3]))
    // Snapshot 4: A changes group 0 again, folding onto its blob of snapshot 2, which must still exist.
    commit(a, 4, [[0, [["t", ["w"], [4]]]]])
    const a4 = await Effect.runPromise(a.writePart(4, 1, "pa", own(0)))
    const b4 = await Effect.runPromise(b.writePart(4, 1, "pb", own(3)))
    await Effect.runPromise(a.writeManifest(4, 1, [a4, b4]))
    for (const want of [3, 4]) {
      const loaded = await Effect.runPromise(new SnapshotManager(store, "parts", G).load(want))
      const rowsWant: Array<[number, string, string, unknown]> = [
        [0, "t", "x", 2],
        ...(want === 4 ? ([[0, "t", "w", 4]] as Array<[number, string, string, unknown]>) : []),
        [1, "t", "z", 3],
        [3, "t", "y", 2],
      ]
      expect(rows(loaded!.groups)).toEqual(rowsWant.sort((p, q) => p[0] - q[0] || p[2].localeCompare(q[2])))
    }
  })
})

/** Adds one committed epoch (one key written) to a snapshot thread, as the engine does: its encoded record. */
const addOneEpoch = (thread: DeltaFolder): void => {
  const state: Array<readonly [number, TableDelta[]]> = [[0, [["t", ["k"], [1]]]]]
  const record: EpochRecord = { t: "epoch", f: RECORD_FORMAT, g: 1, e: 1, partition: 0, state, inTransit: [], ingress: [], egress: [] }
  thread.add(state, encodeRecord(record).payload)
}

describe("the snapshot thread", () => {
  // The thread is ended at random points (between adds, between seal and build, while building); each time a new
  // one must be given exactly the changes the dead one held, so every part it builds afterwards equals the one an
  // in-thread folder builds from the same adds, seals and settles.
  it("replaced after a crash, builds the same parts as the engine's thread would", async () => {
    let crashes = 0
    let compared = 0
    for (const seed of [11, 12, 13]) {
      const rand = seeded(seed)
      const thread = threadFolder()
      const model = new InThreadFolder()
      let crashesLeft = 3
      const maybeCrash = async (p: number) => {
        if (crashesLeft > 0 && rand() < p) {
          crashesLeft--
          crashes++
          await thread.crash()
        }
      }
      let e = 0
      const addEpochs = async (n: number) => {
        for (let i = 0; i < n; i++) {
          e++
          const kg = Math.floor(rand() * G)
          const state: Array<readonly [number, TableDelta[]]> = [[kg, [["t", [`k${Math.floor(rand() * 20)}`], [rand() < 0.2 ? undefined : { e }]]]]]
          const record: EpochRecord = { t: "epoch", f: RECORD_FORMAT, g: 1, e, partition: 0, state, inTransit: [], ingress: [], egress: [] }
          thread.add(state, encodeRecord(record).payload)
          model.add(state)
          await maybeCrash(0.03)
        }
      }
      for (let part = 0; part < 25; part++) {
        await addEpochs(1 + Math.floor(rand() * 8))
        thread.seal()
        model.seal()
        await maybeCrash(0.1)
        // Epochs commit while a part is built (the engine goes on).
        await addEpochs(Math.floor(rand() * 4))
        const built = thread.build(new Map(), new Map(), 1)
        await maybeCrash(0.1)
        const got = await built.then(
          (packs) => packs,
          () => undefined,
        )
        if (got !== undefined) {
          const want = await model.build(new Map(), new Map(), 1)
          expect(got.map((p) => [p.entries, Buffer.from(p.blob).toString("hex")])).toEqual(want.map((p) => [p.entries, Buffer.from(p.blob).toString("hex")]))
          compared++
        }
        // A failed build is not uploaded; a built one is, or not (the upload failed), at random.
        const uploaded = got !== undefined && rand() < 0.7
        thread.settle(uploaded)
        model.settle(uploaded)
      }
      await thread.close()
    }
    expect(crashes).toBeGreaterThan(4)
    expect(compared).toBeGreaterThan(40)
  })

  // Linux schedules threads: the snapshot thread, and only it, runs at the lowest priority (it must not take a core
  // from the engine's thread or from a client being woken by its answers).
  it.runIf(process.platform === "linux")("runs at the lowest CPU priority, and the engine's thread does not", async () => {
    const niceOf = (task: string): number => Number(readFileSync(`/proc/self/task/${task}/stat`, "utf8").split(") ")[1]!.split(" ")[16])
    const niced = () => readdirSync("/proc/self/task").filter((t) => niceOf(t) === BACKGROUND_NICE)
    const before = niced()
    const thread = threadFolder()
    addOneEpoch(thread)
    thread.seal()
    // Built: the thread has started and run its first lines.
    expect((await thread.build(new Map(), new Map(), 1)).length).toBe(1)
    const after = niced()
    await thread.close()
    expect(after.filter((t) => !before.includes(t)).length).toBe(1)
    expect(niceOf(String(process.pid))).toBe(0)
  })

  it("is not restarted after its fourth death: every later part fails", async () => {
    const thread = threadFolder()
    addOneEpoch(thread)
    const errors: string[] = []
    for (let i = 0; i < 5; i++) {
      thread.seal()
      const built = thread.build(new Map(), new Map(), 1)
      await thread.crash()
      errors.push(await built.then(() => "built", (e: Error) => e.message))
      thread.settle(false)
    }
    expect(errors.slice(0, 3).every((m) => m.startsWith("snapshot thread") && !m.includes("not restarted"))).toBe(true)
    expect(errors[3]).toContain("not restarted")
    expect(errors[4]).toContain("not restarted")
    await thread.close()
  })
})

describe("a run that finishes", () => {
  // Every epoch is a snapshot epoch, and the state is large enough (20k keys) that the last part is still being
  // built and written when the run ends: the run completes it instead of dropping it (without that, the next start
  // restored from an epoch or two before the last), so the next start restores from the last epoch.
  it("completes the snapshot under way, and the next start restores from it", async () => {
    const dirs = tempDirs()
    try {
      const dir = dirs.dir("finish")
      const app = App.define({
        name: "finish-snapshot",
        workflows: [
          Workflow.from(Source.array(Array.from({ length: 20_000 }, (_, i) => i)))
            .keyBy((i) => `k${i}`)
            .processor<number, number>((ctx, i) => ctx.state.set(i * 2))
            .sink(Sink.memory("out")),
        ],
      })
      const first = await Eddy.run(app, { dataDir: dir, epochAtoms: 5_000, snapshotEvery: 1, onFailure: () => undefined })
      expect(first.lastEpoch).toBeGreaterThanOrEqual(4)
      let restored: RestoreTiming | undefined
      const second = await Eddy.run(app, { dataDir: dir, snapshotEvery: 0, onRestored: (t) => (restored ??= t), onFailure: () => undefined })
      expect(second.recoveredEpoch).toBe(first.lastEpoch)
      expect(restored?.snapshot?.epoch).toBe(first.lastEpoch)
      const state = await committedState(dir)
      expect(state.entries.length).toBe(20_000)
      expect(state.entries.every((x) => x.value === 2 * Number(x.key.slice(2)))).toBe(true)
    } finally {
      dirs.removeAll()
    }
  })
})

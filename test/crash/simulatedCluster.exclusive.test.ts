import { Layer } from "effect"
import { afterAll, describe, expect, it } from "vitest"
import { shoppingCartApp } from "../../examples/shopping-cart/app.ts"
import { MemoryBlobStore } from "../../runtime/embedded/MemoryBlobStore.ts"
import { MemoryLog } from "../../runtime/embedded/MemoryLog.ts"
import { committedState, committedStateFrom, run, start, stateReader, type RunOptions } from "../../runtime/index.ts"
import { seeded, tempDirs } from "../helpers.ts"
import { seedOf } from "./crashLoop.ts"
import { flakyBlobStore } from "./flakyBlobStore.ts"
import { clusterProcesses, IncarnationTally, startIncarnation } from "./simulatedCluster.ts"

// A cluster simulated inside this process (simulatedCluster.ts), its processes sharing one log and one blob store (as
// Kafka and S3 are shared). A process is killed at a random envelope; the others find out as in a real cluster
// (liveness, or a send into the void), and then all restart from the shared log and snapshots, as the supervisor does.
// Then envelopes are lost without anyone being told. After all that the shopping cart must end with the state and
// report of an embedded run that never failed.
const P = 3
const shop = { users: 30, items: 40, stock: 20, requests: 4000, seed: 3 }
const runOptions = (dataDir?: string, pipeline = false): RunOptions => ({ ...(dataDir === undefined ? {} : { dataDir }), partitions: P, epochAtoms: 50, epochMs: 2, snapshotEvery: 4, snapshotMinMs: 0, pipeline })
const processes = clusterProcesses(P)

// Short, so that a kill is noticed within seconds; the file runs alone (*.exclusive: after the parallel run, one file
// at a time), since the parallel run's load stalled epochs past a 1.5 s liveness and kept snapshots from completing.
const LIVENESS_MS = 2500

describe("a cluster simulated in one process", () => {
  const temp = tempDirs()
  afterAll(temp.removeAll)

  it("processes killed at random envelopes (at least 10 times), then envelopes lost silently, all restarted each time: the embedded run's state and report", async () => {
    const seed = seedOf()
    console.log(`simulated cluster: seed ${seed}`)
    const random = seeded(seed)
    const log = new MemoryLog.Store()
    const blobs = new Map<string, Uint8Array>()
    // The blob store fails 2% of its calls throughout (the last, fault-free incarnation aside), and its 10th and 40th
    // in any case: snapshot parts and manifests fail half-written, some start-ups cannot load their snapshot.
    const blobStats = { calls: 0, failed: 0 }
    const blobRandom = seeded(seed + 1)
    let blobShare = 0.02
    let logCrashes = 0
    const tally = new IncarnationTally()
    let incarnations = 0
    for (; incarnations < 60; incarnations++) {
      // First kills (early ones land in recovery and the first epochs, later ones deep in a run), then envelopes
      // lost silently (a loss nobody sees: only liveness, or a later COMMITTED, makes up for it), then neither.
      const killAt = tally.kills < 10 ? 1 + Math.floor(random() * 300) : undefined
      const loseAt = killAt === undefined && tally.lost < 4 ? 1 + Math.floor(random() * 300) : undefined
      if (killAt === undefined && loseAt === undefined) blobShare = 0
      // Half the restarts also lose what the log held but had not made durable, as a broker restart can.
      if (incarnations > 0 && killAt !== undefined && random() < 0.5) {
        log.crash()
        logCrashes++
      }
      const victim = Math.floor(random() * processes.length)
      // Every other incarnation pipelines its epochs (COMMIT(e) written beside e+1).
      const inc = startIncarnation(processes, { seed: seed * 1000 + incarnations, killAt, loseAt, victim, livenessMs: LIVENESS_MS }, (p, transport) => {
        const ports = Layer.mergeAll(MemoryLog.layer(log), flakyBlobStore(blobs, { random: blobRandom, share: blobShare, failCalls: [10, 40] }, blobStats), transport)
        return start(shoppingCartApp(shop), runOptions(undefined, incarnations % 2 === 1), { ports, host: p.host, livenessMs: LIVENESS_MS })
      })
      if (tally.record(await inc.ended, inc, victim)) {
        expect(inc.killed()).toBe(false)
        break
      }
    }
    console.log(`simulated cluster (seed ${seed}): ${tally.summary()}, ${logCrashes} log crashes, ${blobStats.failed} blob store calls failed, over ${incarnations + 1} incarnations`)
    expect(blobStats.failed).toBeGreaterThan(0)
    expect(tally.kills).toBeGreaterThanOrEqual(10)
    expect(tally.lost).toBeGreaterThanOrEqual(1)

    const fifo = temp.dir("sim-cluster-ref")
    const reference = await run(shoppingCartApp(shop), runOptions(fifo))
    expect(reference.failureList).toEqual([])
    const [want, got] = await Promise.all([committedState(fifo), committedStateFrom(Layer.merge(MemoryLog.layer(log), MemoryBlobStore.layer(blobs)))])
    expect(got.entries).toEqual(want.entries)
    const app = shoppingCartApp(shop)
    expect(await app.report!(stateReader(got))).toBe(await app.report!(stateReader(want)))
    // Snapshots were taken, so later incarnations recovered from them.
    expect([...blobs.keys()].some((k) => k.startsWith("manifests/"))).toBe(true)
  }, 240_000)
})

import { Layer } from "effect"
import { afterAll, describe, expect, it } from "vitest"
import { shoppingCartApp } from "../../examples/shopping-cart/app.ts"
import { MemoryBlobStore } from "../../runtime/embedded/MemoryBlobStore.ts"
import { MemoryLog } from "../../runtime/embedded/MemoryLog.ts"
import { committedState, committedStateFrom, run, start, stateReader, type RunOptions } from "../../runtime/index.ts"
import { COORDINATOR } from "../../runtime/ports/Transport.ts"
import { outcomeOf, seeded, tempDirs } from "../helpers.ts"
import { seedOf } from "./crashLoop.ts"
import { flakyBlobStore } from "./flakyBlobStore.ts"
import { simulatedNetwork } from "./simulatedNetwork.ts"

// A cluster simulated inside this process: a coordinator and P workers, each its own engine (the hosts of `eddy
// cluster`), sharing one log and one blob store (as Kafka and S3 are shared) and talking over the seeded simulated
// network. A process is killed at a random envelope; the others find out as in a real cluster (liveness, or a send
// into the void), and then all restart from the shared log and snapshots, as the supervisor does. Then envelopes are
// lost without anyone being told. After all that the shopping cart must end with the state and report of an embedded
// run that never failed.
const P = 3
const shop = { users: 30, items: 40, stock: 20, requests: 4000, seed: 3 }
const runOptions = (dataDir?: string, pipeline = false): RunOptions => ({ ...(dataDir === undefined ? {} : { dataDir }), partitions: P, epochAtoms: 50, epochMs: 2, snapshotEvery: 4, snapshotMinMs: 0, pipeline })
const processes = [
  { name: "coordinator", host: { coordinator: true, partitions: [] as number[] }, endpoints: [COORDINATOR] },
  ...Array.from({ length: P }, (_, i) => ({ name: `worker ${i}`, host: { coordinator: false, partitions: [i] }, endpoints: [i] })),
]

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
    let kills = 0
    let lost = 0
    let incarnations = 0
    const seen = new Map<string, number>()
    // The blob store fails 2% of its calls throughout (the last, fault-free incarnation aside), and its 10th and 40th
    // in any case: snapshot parts and manifests fail half-written, some start-ups cannot load their snapshot.
    const blobStats = { calls: 0, failed: 0 }
    const blobRandom = seeded(seed + 1)
    let blobShare = 0.02
    let logCrashes = 0
    let stalls = 0
    for (; incarnations < 60; incarnations++) {
      // First kills (early ones land in recovery and the first epochs, later ones deep in a run), then envelopes
      // lost silently (a loss nobody sees: only liveness, or a later COMMITTED, makes up for it), then neither.
      const killAt = kills < 10 ? 1 + Math.floor(random() * 300) : undefined
      const loseAt = killAt === undefined && lost < 4 ? 1 + Math.floor(random() * 300) : undefined
      if (killAt === undefined && loseAt === undefined) blobShare = 0
      // Half the restarts also lose what the log held but had not made durable, as a broker restart can.
      if (incarnations > 0 && killAt !== undefined && random() < 0.5) {
        log.crash()
        logCrashes++
      }
      const victim = Math.floor(random() * processes.length)
      let killed = false
      const nodes: Array<{ kill: (why: string) => void }> = []
      const net = simulatedNetwork({
        seed: seed * 1000 + incarnations,
        holdShare: 0.3,
        maxHoldMs: 4,
        silent: true,
        ...(loseAt === undefined ? {} : { drops: [{ at: loseAt }] }),
        onSend: (n) => {
          if (n !== killAt) return
          killed = true
          nodes[victim]!.kill(`${processes[victim]!.name} killed at envelope ${n}`)
        },
      })
      // Every other incarnation pipelines its epochs (COMMIT(e) written beside e+1).
      // The supervisor: once a process failed, the rest get the liveness time (and a little) to notice on their own,
      // then they are killed (a coordinator still waiting for a worker that never started would wait forever).
      let reaper: ReturnType<typeof setTimeout> | undefined
      const outcomes = processes.map((p) => {
        const node = net.node(p.endpoints)
        nodes.push(node)
        const ports = Layer.mergeAll(MemoryLog.layer(log), flakyBlobStore(blobs, { random: blobRandom, share: blobShare, failCalls: [10, 40] }, blobStats), node.layer)
        return outcomeOf(start(shoppingCartApp(shop), runOptions(undefined, incarnations % 2 === 1), { ports, host: p.host, livenessMs: LIVENESS_MS }).done).then((o) => {
          if (o !== "finished") reaper ??= setTimeout(() => nodes.forEach((n) => n.kill("stopped by the supervisor")), LIVENESS_MS + 1000)
          return o
        })
      })
      const ended = await Promise.all(outcomes)
      clearTimeout(reaper)
      for (const o of ended) seen.set(o, (seen.get(o) ?? 0) + 1)
      if (killed) kills++
      if (net.stats.dropped > 0) lost++
      if (ended.every((o) => o === "finished")) {
        expect(killed).toBe(false)
        break
      }
      // A run ends early only by a kill (the victim's transport fails), a loss, or a snapshot its start-up could
      // not load; the others notice by liveness.
      for (const o of ended) expect(["finished", "TransportError", "LivenessError", "BlobStoreError"]).toContain(o)
      if (killed) expect(ended[victim]).toBe("TransportError")
      // Liveness is short here (so a kill is noticed within seconds): on a loaded machine an epoch can take longer
      // than that, and the run restarts without an injected fault. Harmless, and counted.
      else if (net.stats.dropped === 0 && !ended.includes("BlobStoreError")) stalls++
    }
    console.log(`simulated cluster (seed ${seed}): ${kills} kills, ${lost} envelopes lost silently, ${logCrashes} log crashes, ${blobStats.failed} blob store calls failed, ${stalls} runs ended by liveness alone, over ${incarnations + 1} incarnations; outcomes ${JSON.stringify(Object.fromEntries(seen))}`)
    expect(blobStats.failed).toBeGreaterThan(0)
    expect(kills).toBeGreaterThanOrEqual(10)
    expect(lost).toBeGreaterThanOrEqual(1)

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

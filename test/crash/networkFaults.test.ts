import { readFileSync } from "node:fs"
import { join } from "node:path"
import { Layer } from "effect"
import { afterAll, describe, expect, it } from "vitest"
import { App, AppArgs, Source, Workflow } from "../../workflows/index.ts"
import { shoppingCartApp } from "../../examples/shopping-cart/app.ts"
import { DirectoryBlobStore } from "../../runtime/embedded/DirectoryBlobStore.ts"
import { FileLog } from "../../runtime/embedded/FileLog.ts"
import { committedState, run, start, stateReader, type RunOptions } from "../../runtime/index.ts"
import collatz from "../apps/collatz.ts"
import { outcomeOf, seeded, tempDirs } from "../helpers.ts"
import { seedOf } from "./crashLoop.ts"
import { simulatedNetwork, type NetworkFaults } from "./simulatedNetwork.ts"

// The cyclic workflow on 4 partitions, its envelopes delivered by a seeded network schedule (simulatedNetwork.ts):
// lanes of different pairs interleave at random and envelopes are held for a few ms, and, in the second test, an
// envelope is lost and the run fails with the transport, to be restarted from its data directory. Either way the run
// must end with exactly the sink output and committed state of the run on the in-process FIFO.
const P = 4
const COUNT = 2400
const app = () => collatz(new AppArgs({ count: String(COUNT) }))
const options = (dataDir: string, pipeline = false): RunOptions => ({ dataDir, partitions: P, epochAtoms: 8, epochMs: 2, snapshotEvery: 4, snapshotMinMs: 0, snapshotChain: { maxLength: 3 }, pipeline })

interface OnNetwork {
  readonly pipeline?: boolean
  /**
   * As in a cluster by default (10 s): a run that must finish never meets it on a loaded machine; runs that must end
   * by it (lost envelopes) pass a shorter one.
   */
  readonly livenessMs?: number
  /** Another app than collatz, with its run options. */
  readonly app?: App
  readonly runOptions?: RunOptions
}

const onNetwork = (dataDir: string, faults: NetworkFaults, { pipeline = false, livenessMs = 10_000, app: which = app(), runOptions = options(dataDir, pipeline) }: OnNetwork = {}) => {
  const net = simulatedNetwork(faults)
  const ports = Layer.mergeAll(FileLog.layer(join(dataDir, "log")), DirectoryBlobStore.layer(join(dataDir, "snapshots")), net.node("all").layer)
  const running = start(which, runOptions, { ports, host: { coordinator: true, partitions: Array.from({ length: runOptions.partitions ?? P }, (_, p) => p) }, livenessMs })
  return { net, done: running.done, failures: running.failures }
}

describe("network faults, simulated from a seed", () => {
  const temp = tempDirs()
  afterAll(temp.removeAll)
  let reference: { out: string; entries: unknown; epochs: number } | undefined
  const ref = async () => {
    if (reference !== undefined) return reference
    const dir = temp.dir("net-ref")
    const summary = await run(app(), options(dir))
    reference = { out: readFileSync(join(dir, "out.jsonl"), "utf8"), entries: (await committedState(dir)).entries, epochs: summary.lastEpoch }
    expect(reference.out.split("\n")).toHaveLength(COUNT + 1)
    return reference
  }

  /** The data directory holds exactly the FIFO run's sink output and committed state. */
  const expectLikeFifo = async (dir: string) => {
    const { out, entries } = await ref()
    expect(readFileSync(join(dir, "out.jsonl"), "utf8")).toBe(out)
    expect((await committedState(dir)).entries).toEqual(entries)
  }

  it.each([false, true])("envelopes of different pairs interleaved at random and held up to 4 ms (pipelined: %s): the output and state of the FIFO run", async (pipeline) => {
    const seed = seedOf()
    const dir = temp.dir("net-reorder")
    const { net, done } = onNetwork(dir, { seed, holdShare: 0.3, maxHoldMs: 4 }, { pipeline })
    const summary = await done
    console.log(`network test (seed ${seed}): ${net.stats.delivered} envelopes, ${net.stats.overtaking} overtook an earlier one, ${net.stats.held} held; ${summary.lastEpoch} epochs; sent ${JSON.stringify(net.stats.kinds)}`)
    // The schedule really differed from a FIFO's.
    expect(net.stats.overtaking).toBeGreaterThan(100)
    expect(net.stats.held).toBeGreaterThan(100)
    await expectLikeFifo(dir)
  }, 120_000)

  it("an envelope of each kind lost at a random point: every run fails with the transport, and the restarts end like the FIFO run", async () => {
    const seed = seedOf()
    const random = seeded(seed)
    const dir = temp.dir("net-drop")
    let runs = 0
    const lost: string[] = []
    // Each kind of envelope the run sends, in turn, the n-th of its kind at random within a few epochs' worth (an
    // epoch sends 4 opens, votes and committeds, ~300 data and ~760 done), so every run gets a little further; the
    // last drops the final stop, and a run without faults then finishes. "durable" exists only with pipelining.
    const schedule = [
      { kind: "ready", within: 4 },
      { kind: "open", within: 16 },
      { kind: "data", within: 600 },
      { kind: "durable", within: 4, pipeline: true },
      { kind: "done", within: 1500 },
      { kind: "vote", within: 16 },
      { kind: "committed", within: 16, pipeline: true },
      { kind: "snapshot", within: 2 },
      { kind: "stop", within: 4 },
    ] as const
    for (const step of [...schedule, undefined]) {
      runs++
      const faults = step === undefined ? {} : { drops: [{ kind: step.kind, at: 1 + Math.floor(random() * step.within) }] }
      const pipeline = step !== undefined && "pipeline" in step
      const { net, done } = onNetwork(dir, { seed: seed * 1000 + runs, ...faults }, { pipeline })
      const outcome = await outcomeOf(done)
      if (outcome === "finished") {
        expect(net.stats.dropped).toBe(0)
        // Only the last run, without faults, may finish: every drop must have landed.
        expect(step).toBeUndefined()
        break
      }
      // Only the lost envelope may end a run, and only through the transport.
      expect(net.stats.dropped, outcome).toBe(1)
      expect(outcome).toBe("TransportError")
      lost.push(step!.kind)
    }
    console.log(`network drop test (seed ${seed}): ${lost.length} envelopes lost (${lost.join(", ")}), ${runs} runs`)
    expect(lost).toEqual(schedule.map((s) => s.kind))
    await expectLikeFifo(dir)
  }, 240_000)

  it("envelopes lost silently: the engine notices (liveness) or heals, and the restarts end like the FIFO run", async () => {
    const seed = seedOf()
    const random = seeded(seed)
    const dir = temp.dir("net-silent")
    const at = (within: number) => 1 + Math.floor(random() * within)
    // A round's data or DONE, an OPEN or a vote lost holds the epoch until liveness ends the run. One run each.
    const fatal = [
      { kind: "data", within: 600 },
      { kind: "vote", within: 16 },
      { kind: "open", within: 16 },
      { kind: "done", within: 1500 },
    ] as const
    for (const [i, step] of fatal.entries()) {
      const { net, done } = onNetwork(dir, { seed: seed * 1000 + i, silent: true, drops: [{ kind: step.kind, at: at(step.within) }] }, { livenessMs: 3000 })
      const outcome = await outcomeOf(done)
      expect(net.stats.dropped, step.kind).toBe(1)
      expect(outcome, step.kind).toBe("LivenessError")
    }
    const last = await onNetwork(dir, { seed: seed * 1000 + fatal.length }).done
    await expectLikeFifo(dir)

    // In one run from scratch: COMMITTEDs lost (the next one says the same: they are cumulative), a READY (it is
    // repeated until the first epoch opens), a snapshot part's report (that snapshot is not written), one of the four
    // STOPs (this process hosts every partition: one is enough for it). None is the last epoch's COMMITTED (the one
    // nothing follows): the run finishes.
    const healing = temp.dir("net-heal")
    const drops = [{ kind: "ready" as const, at: at(4) }, { kind: "snapshot" as const, at: at(4) }, { kind: "stop" as const, at: at(4) }, ...[0, 70, 140].map((from) => ({ kind: "committed" as const, at: from + at(70) }))]
    const lossy = onNetwork(healing, { seed: seed * 1000 + 99, silent: true, drops })
    const outcome = await outcomeOf(lossy.done)
    const committeds = P * (await ref()).epochs
    expect(lossy.net.stats.kinds["committed"]).toBe(committeds)
    expect(Math.max(...drops.map((d) => (d.kind === "committed" ? d.at : 0)))).toBeLessThan(committeds)
    expect(lossy.net.stats.dropped).toBe(drops.length)
    expect(outcome).toBe("finished")
    console.log(`network silent-loss test (seed ${seed}): ${fatal.map((f) => f.kind).join(", ")} each ended a run by liveness, then a run to epoch ${last.lastEpoch}; ${drops.map((d) => `${d.kind} #${d.at}`).join(", ")} lost in one run: ${outcome}`)
    await expectLikeFifo(healing)
  }, 240_000)

  it("the shopping cart's actors with pairs interleaved and envelopes held: one sender's messages keep their order, and state and report are the FIFO run's", async () => {
    const shop = { users: 30, items: 40, stock: 20, requests: 2500, seed: 3 }
    const shopOptions = (dataDir: string): RunOptions => ({ dataDir, partitions: P, epochAtoms: 50, epochMs: 2, snapshotEvery: 4, snapshotMinMs: 0 })
    const fifo = temp.dir("net-shop-ref")
    const dir = temp.dir("net-shop")
    const reference = await run(shoppingCartApp(shop), shopOptions(fifo))
    expect(reference.failureList).toEqual([])
    const seed = seedOf()
    const { net, done, failures } = onNetwork(dir, { seed, holdShare: 0.3, maxHoldMs: 4 }, { app: shoppingCartApp(shop), runOptions: shopOptions(dir) })
    await done
    console.log(`network shop test (seed ${seed}): ${net.stats.delivered} envelopes, ${net.stats.overtaking} overtook an earlier one, ${net.stats.held} held`)
    expect(net.stats.overtaking).toBeGreaterThan(100)
    // The orders actor throws on an order out of sequence: a failure here is a broken per-sender order.
    expect(failures).toEqual([])
    const [want, got] = await Promise.all([committedState(fifo), committedState(dir)])
    expect(got.entries).toEqual(want.entries)
    const app = shoppingCartApp(shop)
    expect(await app.report!(stateReader(got))).toBe(await app.report!(stateReader(want)))
  }, 120_000)

  it("COMMITTEDs lost silently on one partition: the epochs they were for are folded into later snapshots, not dropped", async () => {
    // Every key is written once: a snapshot that misses an epoch's writes misses keys for good once the log below
    // the snapshot is truncated (a later write cannot hide it). One partition, so each epoch has one COMMITTED.
    const uniques = () =>
      App.define({
        name: "uniques",
        keyGroups: 16,
        workflows: [
          Workflow.create("uniques", (wf) => {
            wf.source(Source.generator(function* () {
              for (let i = 1; i <= 1500; i++) yield i
            }, { atomSize: 3, name: "numbers" }))
              .keyBy((i) => i)
              .processor<number, number>((ctx, i) => ctx.state.set(i * 2), { name: "once" })
          }),
        ],
      })
    const opts = (dataDir: string): RunOptions => ({ dataDir, partitions: 1, epochAtoms: 8, epochMs: 2, snapshotEvery: 4, snapshotMinMs: 0 })
    const fifo = temp.dir("net-once-ref")
    const dir = temp.dir("net-once")
    await run(uniques(), opts(fifo))
    const seed = seedOf()
    const drops = [{ kind: "committed" as const, at: 10 }, { kind: "committed" as const, at: 11 }, { kind: "committed" as const, at: 30 }]
    const { net, done } = onNetwork(dir, { seed, silent: true, drops }, { app: uniques(), runOptions: opts(dir) })
    await done
    expect(net.stats.dropped).toBe(drops.length)
    const [want, got] = await Promise.all([committedState(fifo), committedState(dir)])
    expect(want.entries).toHaveLength(1500)
    expect(got.entries).toEqual(want.entries)
  }, 60_000)
})

/**
 * A cluster simulated inside this process, for fault tests: a coordinator and P workers, each its own engine (the
 * hosts of `eddy cluster`), talking over the seeded simulated network. One incarnation runs them until they end;
 * a process may be killed at a random envelope and an envelope lost silently. The others find out as in a real
 * cluster (liveness, or a send into the void), and the supervisor stops whoever has not noticed.
 */
import type { Layer } from "effect"
import { expect } from "vitest"
import type { RunningApp } from "../../runtime/index.ts"
import { COORDINATOR, type Envelope, type Transport } from "../../runtime/ports/Transport.ts"
import { outcomeOf } from "../helpers.ts"
import { simulatedNetwork } from "./simulatedNetwork.ts"

export interface SimulatedProcess {
  readonly name: string
  readonly host: { readonly coordinator: boolean; readonly partitions: ReadonlyArray<number> }
  readonly endpoints: ReadonlyArray<number>
}

/** A coordinator hosting no partition, and one worker per partition. */
export const clusterProcesses = (partitions: number): ReadonlyArray<SimulatedProcess> => [
  { name: "coordinator", host: { coordinator: true, partitions: [] }, endpoints: [COORDINATOR] },
  ...Array.from({ length: partitions }, (_, i) => ({ name: `worker ${i}`, host: { coordinator: false, partitions: [i] }, endpoints: [i] })),
]

export interface IncarnationFaults {
  /** Seeds the network's schedule. */
  readonly seed: number
  /** Kill `victim` (an index into the processes) when the network sends its `killAt`-th envelope (of `killOn`). */
  readonly killAt?: number | undefined
  readonly killOn?: Envelope["t"]
  readonly victim: number
  /** Lose the `loseAt`-th envelope, telling nobody. */
  readonly loseAt?: number | undefined
  readonly livenessMs: number
}

/** Starts every process on the incarnation's network; `ended` resolves with how each ended ("finished" or a tag). */
export const startIncarnation = (processes: ReadonlyArray<SimulatedProcess>, faults: IncarnationFaults, startProcess: (p: SimulatedProcess, transport: Layer.Layer<Transport>) => RunningApp) => {
  let killed = false
  const nodes: Array<{ kill: (why: string) => void }> = []
  const net = simulatedNetwork({
    seed: faults.seed,
    holdShare: 0.3,
    maxHoldMs: 4,
    silent: true,
    ...(faults.loseAt === undefined ? {} : { drops: [{ at: faults.loseAt }] }),
    onSend: (n, env) => {
      if ((faults.killOn === undefined ? n : env.t === faults.killOn ? net.stats.kinds[env.t] : undefined) !== faults.killAt) return
      killed = true
      nodes[faults.victim]!.kill(`${processes[faults.victim]!.name} killed at envelope ${n}`)
    },
  })
  // The supervisor: once a process failed, the rest get the liveness time (and a little) to notice on their own,
  // then they are killed (a coordinator still waiting for a worker that never started would wait forever).
  let reaper: ReturnType<typeof setTimeout> | undefined
  const apps: RunningApp[] = []
  const outcomes = processes.map((p) => {
    const node = net.node(p.endpoints)
    nodes.push(node)
    const app = startProcess(p, node.layer)
    apps.push(app)
    return outcomeOf(app.done).then((o) => {
      if (o !== "finished") reaper ??= setTimeout(() => nodes.forEach((n) => n.kill("stopped by the supervisor")), faults.livenessMs + 1000)
      return o
    })
  })
  const ended = Promise.all(outcomes).then((o) => {
    clearTimeout(reaper)
    return o
  })
  return { net, apps, outcomes, ended, killed: () => killed }
}

/** What the incarnations of a test did, and the checks every ended incarnation must pass. */
export class IncarnationTally {
  kills = 0
  lost = 0
  /** Runs that ended by liveness with no fault injected (a loaded machine stalled an epoch past a short liveness). */
  stalls = 0
  readonly outcomes = new Map<string, number>()

  /** Tallies an ended incarnation; true if every process finished. */
  record(ended: ReadonlyArray<string>, inc: { readonly killed: () => boolean; readonly net: { readonly stats: { readonly dropped: number } } }, victim: number): boolean {
    for (const o of ended) this.outcomes.set(o, (this.outcomes.get(o) ?? 0) + 1)
    if (inc.killed()) this.kills++
    if (inc.net.stats.dropped > 0) this.lost++
    if (ended.every((o) => o === "finished")) return true
    // A run ends early only by a kill (the victim's transport fails), a loss, or a snapshot its start-up could not
    // load; the others notice by liveness.
    for (const o of ended) expect(["finished", "TransportError", "LivenessError", "BlobStoreError"]).toContain(o)
    if (inc.killed()) expect(ended[victim]).toBe("TransportError")
    // Liveness is short in these tests (so a kill is noticed within seconds): on a loaded machine an epoch can take
    // longer than that, and the run restarts without an injected fault. Harmless, and counted.
    else if (inc.net.stats.dropped === 0 && !ended.includes("BlobStoreError")) this.stalls++
    return false
  }

  summary(): string {
    return `${this.kills} kills, ${this.lost} envelopes lost silently, ${this.stalls} runs ended by liveness alone; outcomes ${JSON.stringify(Object.fromEntries(this.outcomes))}`
  }
}

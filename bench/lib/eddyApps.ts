import type { ActorSystemOptions } from "eddy/actors"
import type { App } from "eddy/workflows"
import { bankApp } from "../apps/bank.ts"
import { cartApp } from "../apps/cart.ts"
import { counterApp, counterSystem } from "../apps/counter.ts"
import { fibApp } from "../apps/fibtree.ts"
import type { WorkloadConfig } from "./workloads.ts"

/** The Eddy app module serving a workload; with `kafka`, it takes requests from that topic too. */
export const eddyAppFor = (c: Pick<WorkloadConfig, "workload" | "initial" | "stock">, kafka?: ActorSystemOptions["kafka"]): App => {
  if (kafka !== undefined && c.workload !== "counter") throw new Error(`requests through Kafka: the counter workload only, not ${c.workload}`)
  switch (c.workload) {
    case "counter":
      return counterApp(counterSystem(kafka))
    case "fib":
      return fibApp()
    case "bank":
      return bankApp(c.initial)
    case "cart":
      return cartApp(c.stock)
  }
}

export interface EddyServeOptions {
  readonly dataDir: string
  /** Epoch length when idle / ingress wait (RunOptions.epochMs). */
  readonly epochMs: number
  readonly checked: boolean
  /** Snapshot every this many epochs (RunOptions.snapshotEvery; Eddy's default is 100). */
  readonly snapshotEvery?: number
}

/** The runtime options of every Eddy benchmark run: embedded default, file log (fsync at each COMMIT). */
export const eddyRunOptions = (o: EddyServeOptions) => ({
  dataDir: o.dataDir,
  epochMs: o.epochMs,
  checked: o.checked,
  ...(o.snapshotEvery === undefined ? {} : { snapshotEvery: o.snapshotEvery }),
  partitions: 1,
  roundLimit: 1000,
  onFailure: (f: { task: string; error: string }) => process.stderr.write(`eddy: task ${f.task} failed: ${f.error}\n`),
})

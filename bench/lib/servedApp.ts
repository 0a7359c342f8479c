// The benchmark's Eddy app as an app module (for `eddy cluster` processes): its flags pick the workload, as
// eddyAppFor does for the embedded server. `--workload counter|fib|bank|cart [--initial N] [--stock N]`.
import type { App } from "eddy/workflows"
import { eddyAppFor } from "./eddyApps.ts"
import type { WorkloadConfig } from "./workloads.ts"

export default (flags: Readonly<Record<string, string | boolean>>): App => {
  const workload = String(flags["workload"] ?? "counter") as WorkloadConfig["workload"]
  if (!["counter", "fib", "bank", "cart"].includes(workload)) throw new Error(`unknown workload '${workload}'`)
  return eddyAppFor({ workload, initial: Number(flags["initial"] ?? 1000), stock: Number(flags["stock"] ?? 100) })
}

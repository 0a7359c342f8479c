/**
 * How fast this host is right now, to read a run's figures against: the shared machines these benchmarks run on
 * change speed by 2x within minutes (docs/performance.md). A fixed single-threaded workload of the kinds the
 * engine's thread does (a Map of string keys, small allocations, JSON), timed three times; printed with the CPU
 * model and the load average at the start and the end of an invocation (~0.6 s each; it varies ±20% from one
 * call to the next on these hosts, their phases 2x).
 */
import { cpus, loadavg } from "node:os"

const probeOnce = (): number => {
  const t0 = performance.now()
  const counts = new Map<string, number>()
  let x = 2463534242
  let chars = 0
  for (let i = 0; i < 1_000_000; i++) {
    x ^= x << 13
    x ^= x >>> 17
    x ^= x << 5
    const k = "k" + ((x >>> 0) % 10_000)
    counts.set(k, (counts.get(k) ?? 0) + 1)
    if ((i & 15) === 0) chars += JSON.stringify({ k, n: counts.get(k), t: i }).length
  }
  if (chars === 0 || counts.size === 0) throw new Error("assertion: the host probe did no work")
  return performance.now() - t0
}

/** The probe's median time over three runs, in ms (lower: faster). */
export const hostProbeMs = (): number => {
  const ts = [probeOnce(), probeOnce(), probeOnce()].sort((a, b) => a - b)
  return ts[1]!
}

/** One line: the CPU model, the host probe and the 1-minute load average. */
export const hostLine = (when: string): string =>
  `host (${when}): ${cpus()[0]?.model ?? "unknown CPU"}, ${cpus().length} CPUs; probe ${hostProbeMs().toFixed(1)} ms (lower is faster); load average ${loadavg()[0]!.toFixed(2)}`

import { percentile } from "../stats.ts"

/**
 * The maximum sustainable throughput of a streaming system (Karimov et al., "Benchmarking Distributed Stream Data
 * Processing Systems", ICDE 2018): the highest constant input rate it handles without an ever-growing backlog, which
 * shows as a latency that keeps rising over the run. A drain of a pre-filled topic measures something else, the rate
 * of catching up in large epochs, which live input at that rate does not reach.
 */

/** Median latency of the first and of the last quarter of a run, by produce time. */
export interface LatencyTrend {
  readonly first: number
  readonly last: number
}

/** `samples`: [produce time, latency] in ms; the run's measured window is [from, to) of produce time. */
export const latencyTrend = (samples: ReadonlyArray<readonly [number, number]>, from: number, to: number): LatencyTrend => {
  const quarter = (to - from) / 4
  const first: number[] = []
  const last: number[] = []
  for (const [t, latency] of samples) {
    if (t >= from && t < from + quarter) first.push(latency)
    else if (t >= to - quarter && t < to) last.push(latency)
  }
  return { first: percentile(first, 50), last: percentile(last, 50) }
}

/** A run whose last quarter's median latency is above this holds a backlog of about a second's input or more. */
export const BACKLOG_MS = 1000

/**
 * Whether a live run kept up: every record produced came out, the latency of the last quarter is at most twice
 * that of the first (and at most 50 ms more, so that a few milliseconds' jitter at a low latency do not count), and
 * under BACKLOG_MS (a backlog built in the process's first seconds and never worked off is not keeping up either).
 * A backlog growing at a fraction of the input rate doubles the latency within seconds; a single stall moves a
 * quarter's median little.
 */
export const kept = (trend: LatencyTrend, sent: number, got: number): boolean =>
  got >= sent &&
  Number.isFinite(trend.first) &&
  Number.isFinite(trend.last) &&
  trend.last <= Math.max(2 * trend.first, trend.first + 50) &&
  trend.last < BACKLOG_MS

export interface SustainedSearch {
  /** The highest rate probed that kept up (or the search's lower end, unverified, if none did). */
  readonly rate: number
  readonly verified: boolean
  readonly probes: ReadonlyArray<{ readonly rate: number; readonly kept: boolean }>
}

/**
 * Bisects [lowFraction × upper, upper] for the highest rate at which `probe` keeps up, in `count` probes (each
 * halves the interval: 5 probes over [0.3, 1] resolve 2.2% of `upper`).
 */
export const searchSustained = async (probe: (rate: number) => Promise<boolean>, upper: number, count: number, lowFraction = 0.3): Promise<SustainedSearch> => {
  let lo = upper * lowFraction
  let hi = upper
  let verified = false
  const probes: Array<{ rate: number; kept: boolean }> = []
  for (let i = 0; i < count; i++) {
    const rate = (lo + hi) / 2
    const ok = await probe(rate)
    probes.push({ rate, kept: ok })
    if (ok) {
      lo = rate
      verified = true
    } else hi = rate
  }
  return { rate: lo, verified, probes }
}

/** Median, min and max of a sample: figures on shared machines are reported as medians over several runs. */
export const summary = (xs: ReadonlyArray<number>): { median: number; min: number; max: number } => {
  if (xs.length === 0) return { median: NaN, min: NaN, max: NaN }
  const s = [...xs].sort((a, b) => a - b)
  const mid = s.length >> 1
  const median = s.length % 2 === 1 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2
  return { median, min: s[0]!, max: s.at(-1)! }
}

export const fmt = (n: number): string => (n >= 1e6 ? `${(n / 1e6).toFixed(2)} M` : n >= 1e3 ? `${(n / 1e3).toFixed(1)} k` : n >= 1 || n === 0 ? n.toFixed(1) : n.toPrecision(2))

/** Index of the p-th percentile in a sorted sample of `n` (nearest rank: the smallest value with ≥ p% at or below it). */
const rank = (n: number, p: number): number => Math.min(n - 1, Math.max(0, Math.ceil((p / 100) * n) - 1))

/** The p-th percentile (nearest rank) of a sample; NaN for an empty one. */
export const percentile = (xs: ReadonlyArray<number>, p: number): number => {
  if (xs.length === 0) return NaN
  const s = [...xs].sort((a, b) => a - b)
  return s[rank(s.length, p)]!
}

/** Several percentiles of one sample, sorting it once (latency samples run to millions). */
export const percentiles = (xs: ReadonlyArray<number> | Float64Array, ps: ReadonlyArray<number>): number[] => {
  if (xs.length === 0) return ps.map(() => NaN)
  const s = Float64Array.from(xs).sort()
  return ps.map((p) => s[rank(s.length, p)]!)
}

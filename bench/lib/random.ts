/** A seeded PRNG (mulberry32): runs draw the same operation sequence for the same seed. Returns [0, 1). */
export const rng = (seed: number): (() => number) => {
  let s = seed >>> 0
  return () => {
    s = (s + 0x6d2b79f5) | 0
    let t = s
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

export type Distribution = "uniform" | "zipf"

const gcd = (a: number, b: number): number => (b === 0 ? a : gcd(b, a % b))

/**
 * Picks key indexes in [0, n): uniform, or zipfian with skew θ as YCSB's ZipfianGenerator (Gray et al., "Quickly
 * generating billion-record synthetic databases"), scrambled so the hot keys are spread over the key space rather
 * than being 0, 1, 2, ...: rank r maps to ((r + 1) × stride) mod n, a bijection since gcd(stride, n) = 1.
 */
export class KeyChooser {
  private readonly zetan: number
  private readonly alpha: number
  private readonly eta: number
  private readonly half: number
  private readonly stride: number

  constructor(
    readonly n: number,
    readonly distribution: Distribution,
    private readonly random: () => number,
    readonly theta = 0.99,
  ) {
    if (!Number.isInteger(n) || n < 1) throw new RangeError(`key count must be a positive integer, got ${n}`)
    let zetan = 0
    if (distribution === "zipf") for (let i = 1; i <= n; i++) zetan += 1 / Math.pow(i, theta)
    const zeta2 = 1 + 1 / Math.pow(2, theta)
    this.zetan = zetan
    this.alpha = 1 / (1 - theta)
    this.eta = (1 - Math.pow(2 / n, 1 - theta)) / (1 - zeta2 / zetan)
    this.half = 1 + Math.pow(0.5, theta)
    let stride = 2_654_435_761 % n || 1
    while (gcd(stride, n) !== 1) stride++
    this.stride = stride
  }

  /** The rank (0 = hottest) of the next draw, before scrambling. */
  rank(): number {
    const u = this.random()
    if (this.distribution === "uniform") return Math.floor(u * this.n)
    const uz = u * this.zetan
    if (uz < 1) return 0
    if (uz < this.half) return Math.min(1, this.n - 1)
    return Math.min(this.n - 1, Math.floor(this.n * Math.pow(this.eta * u - this.eta + 1, this.alpha)))
  }

  next(): number {
    const r = this.rank()
    return this.distribution === "uniform" ? r : ((r + 1) * this.stride) % this.n
  }
}

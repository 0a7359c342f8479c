import type { CommitRecord, OpenEpoch, Vote } from "./protocol.ts"

export interface CoordinatorOptions {
  readonly partitions: number
  /** Atoms each source split may admit per epoch: the count that cuts epochs, so runs are reproducible. */
  readonly epochAtoms: number
  readonly roundLimit: number
  /** In-transit messages above which ingress pauses (backpressure). */
  readonly inTransitLimit: number
  readonly epochMs: number
  /** "logical": epoch time = e × epochMs, so ctx.now() replays exactly; "wall": Date.now() at open. */
  readonly clock: "logical" | "wall"
  /** Stop once sources are exhausted and nothing is in transit (eddy run of a finite app). */
  readonly stopWhenIdle: boolean
}

export type CoordinatorOutput =
  | { readonly o: "open"; readonly env: OpenEpoch }
  | { readonly o: "commit"; readonly record: CommitRecord }
  | { readonly o: "committed"; readonly e: number; readonly votes: ReadonlyArray<Vote> }
  | { readonly o: "finished"; readonly e: number }
  /** Nothing to do: sources exhausted, or (quiet) live sources with nothing to read that wake the coordinator. */
  | { readonly o: "idle"; readonly e: number; readonly quiet?: boolean }

/**
 * The coordinator of one generation: opens epochs, collects votes, decides COMMIT. Synchronous, no I/O:
 * its driver writes the COMMIT durably and calls `onCommitDurable`.
 */
export class CoordinatorCore {
  readonly out: CoordinatorOutput[] = []
  private votes: Array<Vote | undefined> = []
  private e: number
  private time = 0
  private lastInTransit: number

  constructor(
    readonly g: number,
    lastCommitted: number,
    inTransitAtRecovery: number,
    readonly options: CoordinatorOptions,
  ) {
    this.e = lastCommitted
    this.lastInTransit = inTransitAtRecovery
  }

  get epoch(): number {
    return this.e
  }

  /** Opens the next epoch. */
  open(): void {
    this.e += 1
    this.votes = new Array<Vote | undefined>(this.options.partitions).fill(undefined)
    this.time = this.options.clock === "logical" ? this.e * this.options.epochMs : Date.now()
    const budget = this.lastInTransit > this.options.inTransitLimit ? 0 : this.options.epochAtoms
    this.out.push({ o: "open", env: { t: "open", g: this.g, e: this.e, time: this.time, budget, roundLimit: this.options.roundLimit } })
  }

  onVote(v: Vote): void {
    if (v.g !== this.g || v.e !== this.e) return
    if (this.votes[v.from] !== undefined) throw new Error(`assertion: partition ${v.from} voted twice in epoch ${v.e}`)
    this.votes[v.from] = v
    if (this.votes.some((x) => x === undefined)) return
    const votes = this.votes as Vote[]
    this.out.push({
      o: "commit",
      record: { t: "commit", g: this.g, e: this.e, time: this.time, partitions: this.options.partitions, votes: votes.map((x) => ({ from: x.from, position: x.position, checksum: x.checksum })) },
    })
  }

  /** COMMIT(e) is durable: tell the partitions, then open the next epoch or stop. */
  onCommitDurable(e: number): void {
    if (e !== this.e) throw new Error(`assertion: commit of ${e} while in epoch ${this.e}`)
    const votes = this.votes as Vote[]
    this.out.push({ o: "committed", e, votes })
    this.lastInTransit = votes.reduce((n, v) => n + v.inTransit, 0)
    const exhausted = votes.every((v) => v.exhausted)
    if (exhausted && this.lastInTransit === 0) this.out.push(this.options.stopWhenIdle ? { o: "finished", e } : { o: "idle", e })
    else if (this.lastInTransit === 0 && votes.every((v) => v.exhausted || v.quiet === true)) this.out.push({ o: "idle", e, quiet: true })
    else this.open()
  }
}

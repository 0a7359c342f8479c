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
  /** Polled once per epoch, when its votes are all in: true makes it the last epoch of the run. */
  readonly shouldStop?: (e: number) => boolean
  /**
   * Open the next epoch as soon as the votes of one are in, while its COMMIT is being written (default false). At
   * most two epochs are uncommitted: one whose COMMIT is being written, one running (or voted, waiting to be written).
   */
  readonly pipeline?: boolean
}

export type CoordinatorOutput =
  | { readonly o: "open"; readonly env: OpenEpoch }
  /** Write this COMMIT durably, then call `onCommitDurable` (one write at a time, in epoch order). */
  | { readonly o: "commit"; readonly record: CommitRecord }
  | { readonly o: "committed"; readonly e: number; readonly votes: ReadonlyArray<Vote> }
  | { readonly o: "finished"; readonly e: number }
  /** Nothing to do: sources exhausted, or (quiet) live sources with nothing to read that wake the coordinator. */
  | { readonly o: "idle"; readonly e: number; readonly quiet?: boolean }

/** What follows an epoch, decided from its votes. */
type Next = "open" | "idle" | "quiet" | "finished"

interface Decided {
  readonly e: number
  readonly votes: ReadonlyArray<Vote>
  readonly record: CommitRecord
  next: Next
}

/**
 * The coordinator of one generation: opens epochs, collects votes, decides COMMIT. Synchronous, no I/O:
 * its driver writes each COMMIT durably and calls `onCommitDurable`.
 *
 * Pipelining: epoch e+1 may run while COMMIT(e) is written; its state builds on e's, which is safe because
 * COMMIT(e+1) is written only after COMMIT(e) is durable (a crash loses both, or only e+1), and nothing of e+1
 * leaves before its own COMMIT. Idle, finished and committed are only ever announced after the COMMIT is durable.
 */
export class CoordinatorCore {
  readonly out: CoordinatorOutput[] = []
  private votes: Array<Vote | undefined> = []
  private e: number
  private time = 0
  private lastInTransit: number
  /** Voted epochs whose COMMIT is not yet durable, oldest first (the first one's is being written). */
  private readonly decided: Decided[] = []
  private stopping = false

  constructor(
    readonly g: number,
    lastCommitted: number,
    inTransitAtRecovery: number,
    readonly options: CoordinatorOptions,
  ) {
    this.e = lastCommitted
    this.lastInTransit = inTransitAtRecovery
  }

  /** The newest epoch opened. */
  get epoch(): number {
    return this.e
  }

  /** Opens the next epoch. */
  open(): void {
    if (this.decided.length > 1) throw new Error(`assertion: epoch ${this.e + 1} opened with ${this.decided.length} epochs uncommitted`)
    if (this.decided.length === 1 && this.decided[0]!.e !== this.e) throw new Error(`assertion: epoch ${this.e + 1} opened before epoch ${this.e} voted`)
    this.e += 1
    this.votes = new Array<Vote | undefined>(this.options.partitions).fill(undefined)
    this.time = this.options.clock === "logical" ? this.e * this.options.epochMs : Date.now()
    const budget = this.lastInTransit > this.options.inTransitLimit ? 0 : this.options.epochAtoms
    const pipelined = this.decided.length > 0
    this.out.push({ o: "open", env: { t: "open", g: this.g, e: this.e, time: this.time, budget, roundLimit: this.options.roundLimit, ...(pipelined ? { pipelined } : {}) } })
  }

  onVote(v: Vote): void {
    if (v.g !== this.g || v.e !== this.e) return
    if (this.votes[v.from] !== undefined) throw new Error(`assertion: partition ${v.from} voted twice in epoch ${v.e}`)
    this.votes[v.from] = v
    if (this.votes.some((x) => x === undefined)) return
    const votes = this.votes as Vote[]
    const record: CommitRecord = { t: "commit", g: this.g, e: this.e, time: this.time, partitions: this.options.partitions, votes: votes.map((x) => ({ from: x.from, position: x.position, checksum: x.checksum })) }
    this.lastInTransit = votes.reduce((n, x) => n + x.inTransit, 0)
    const d: Decided = { e: this.e, votes, record, next: this.decide(votes) }
    this.decided.push(d)
    if (this.decided.length === 1) this.out.push({ o: "commit", record })
    // With an older COMMIT still being written, the next epoch opens once that one is durable.
    if (d.next === "open" && this.options.pipeline === true && this.decided.length === 1) this.open()
  }

  /**
   * Work arrived (client requests, a quiet split's records). If the newest epoch voted to idle and its COMMIT is not
   * yet durable, the next epoch opens after all (now, or once the older COMMIT is durable). False: nothing changed
   * (an epoch runs, or the coordinator is idle already: its driver decides when to open).
   */
  wake(): boolean {
    const last = this.decided.at(-1)
    if (last === undefined || last.e !== this.e || (last.next !== "idle" && last.next !== "quiet")) return false
    last.next = "open"
    if (this.options.pipeline === true && this.decided.length === 1) this.open()
    return true
  }

  private decide(votes: ReadonlyArray<Vote>): Next {
    if (!this.stopping && this.options.shouldStop?.(this.e) === true) this.stopping = true
    if (this.stopping) return "finished"
    if (this.lastInTransit === 0 && votes.every((v) => v.exhausted)) return this.options.stopWhenIdle ? "finished" : "idle"
    if (this.lastInTransit === 0 && votes.every((v) => v.exhausted || v.quiet === true)) return "quiet"
    return "open"
  }

  /** COMMIT(e) is durable: tell the partitions, write the next COMMIT, then open the next epoch, idle or stop. */
  onCommitDurable(e: number): void {
    const d = this.decided.shift()
    if (d === undefined || d.e !== e) throw new Error(`assertion: commit of ${e} durable while ${d === undefined ? "none" : d.e} was being written`)
    this.out.push({ o: "committed", e, votes: d.votes })
    const following = this.decided[0]
    if (following !== undefined) this.out.push({ o: "commit", record: following.record })
    if (this.e === e) {
      // Nothing opened after e: act on its decision.
      if (d.next === "open") this.open()
      else if (d.next === "finished") this.out.push({ o: "finished", e })
      else this.out.push(d.next === "quiet" ? { o: "idle", e, quiet: true } : { o: "idle", e })
    } else if (following !== undefined && following.e === this.e && following.next === "open" && this.options.pipeline === true) {
      // The epoch after e voted while COMMIT(e) was written: its successor opens now.
      this.open()
    }
  }
}

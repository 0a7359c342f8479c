import type { Key } from "../../workflows/Key.ts"
import type { Msg, ReplyAddress } from "./protocol.ts"

/** An ask waiting for its reply, stored as data in the asker's key group: continuation name, never a closure. */
export interface PendingAsk {
  readonly node: number
  readonly continuation: string
  readonly data: unknown
  readonly key: Key | undefined
  readonly ks: string | undefined
  /** The request the asker was serving when it asked (nested asks): continuations reply to it. */
  readonly replyTo: ReplyAddress | undefined
}

/** Table ids of a key group that are not task state. */
export const PENDING_TABLE = -1

/** Everything a partition keeps for one key group: the unit of state, logging, snapshots and rescaling. */
export class KeyGroup {
  /** Task id → canonical key → state value (immutable by contract). */
  readonly tables = new Map<number, Map<string, unknown>>()
  readonly pending = new Map<string, PendingAsk>()
  /** Written since the last epoch record: table id → canonical keys (PENDING_TABLE for asks). */
  dirty = new Map<number, Set<string>>()
  askSeq = 0
  outSeq = 0
  metaDirty = false
  /** Messages to process, in order; `head` is the next one (avoids shifting arrays). */
  queue: Msg[] = []
  head = 0
  /** Sequence of messages sent by this key group in the current round. */
  seq = 0
  /** This epoch's egress records (their sequences end at outSeq): values and, per value, an index into egressSinks. */
  egressValues: unknown[] = []
  egressWhich: number[] = []
  egressSinks: string[] = []
  rngEpoch = -1
  rng = 0

  constructor(readonly kg: number) {}

  table(id: number): Map<string, unknown> {
    let t = this.tables.get(id)
    if (t === undefined) {
      t = new Map()
      this.tables.set(id, t)
    }
    return t
  }

  markDirty(table: number, ks: string): void {
    let d = this.dirty.get(table)
    if (d === undefined) {
      d = new Set()
      this.dirty.set(table, d)
    }
    d.add(ks)
  }

  queued(): number {
    return this.queue.length - this.head
  }

  /** Drops processed messages so the queue does not grow without bound. */
  compact(): void {
    if (this.head > 0) {
      this.queue = this.head >= this.queue.length ? [] : this.queue.slice(this.head)
      this.head = 0
    }
  }
}

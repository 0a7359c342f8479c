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

/**
 * One key's state in one table. A step finds the cell once (read) and writes through it; `dirty` says it is already
 * in its table's list of keys written this epoch. `v` undefined: deleted this epoch (the cell leaves its table when
 * the epoch record is made, so a table holds no deleted keys between epochs). Two fields: this is per key.
 */
export class StateCell {
  dirty = false
  constructor(public v: unknown) {}
}

/** A task's state in one key group: canonical key → value (immutable by contract). */
export class StateTable {
  readonly cells = new Map<string, StateCell>()
  /** Keys written this epoch, first-write order, and their cells (the epoch record's columns). */
  dirtyKs: string[] = []
  dirtyCells: StateCell[] = []

  constructor(readonly id: number) {}

  get(ks: string): unknown {
    return this.cells.get(ks)?.v
  }

  /** Keys with state (deleted keys of the running epoch excluded). */
  *keys(): IterableIterator<string> {
    for (const [ks, c] of this.cells) if (c.v !== undefined) yield ks
  }

  /** The cell of `ks`, created (empty) if missing. */
  cell(ks: string): StateCell {
    let c = this.cells.get(ks)
    if (c === undefined) {
      c = new StateCell(undefined)
      this.cells.set(ks, c)
    }
    return c
  }
}

/**
 * When keys of one table may expire: a min-heap of (epoch time, key) pushed on every write of an expiring task. An
 * entry is only a hint: at its time the key's current state decides (it may have been rewritten with a later time).
 */
export class ExpiryQueue {
  private readonly at: number[] = []
  private readonly ks: string[] = []

  get size(): number {
    return this.at.length
  }

  /** The earliest time in the queue (Infinity if empty). */
  get next(): number {
    return this.at.length === 0 ? Infinity : this.at[0]!
  }

  push(at: number, ks: string): void {
    let i = this.at.length
    this.at.push(at)
    this.ks.push(ks)
    while (i > 0) {
      const parent = (i - 1) >> 1
      if (this.at[parent]! <= at) break
      this.at[i] = this.at[parent]!
      this.ks[i] = this.ks[parent]!
      i = parent
    }
    this.at[i] = at
    this.ks[i] = ks
  }

  /** The key of the earliest entry due at `time` (removed), or undefined. */
  popDue(time: number): string | undefined {
    if (this.at.length === 0 || this.at[0]! > time) return undefined
    const top = this.ks[0]!
    const lastAt = this.at.pop()!
    const lastKs = this.ks.pop()!
    const n = this.at.length
    if (n > 0) {
      let i = 0
      for (;;) {
        const l = 2 * i + 1
        if (l >= n) break
        const c = l + 1 < n && this.at[l + 1]! < this.at[l]! ? l + 1 : l
        if (this.at[c]! >= lastAt) break
        this.at[i] = this.at[c]!
        this.ks[i] = this.ks[c]!
        i = c
      }
      this.at[i] = lastAt
      this.ks[i] = lastKs
    }
    return top
  }
}

/**
 * An epoch's ingress records from one source split, queued as one entry: the atoms as read (no message object and no
 * copy per record); `left` records remain.
 */
export class IngressRun {
  private ai = 0
  private vi = 0

  constructor(
    readonly node: number,
    private readonly atoms: ReadonlyArray<ReadonlyArray<unknown>>,
    public left: number,
  ) {}

  /** The next record (call only while left > 0). */
  next(): unknown {
    let atom = this.atoms[this.ai]!
    while (this.vi >= atom.length) {
      atom = this.atoms[++this.ai]!
      this.vi = 0
    }
    this.left--
    return atom[this.vi++]
  }

  /** The records left, in order, without consuming them. */
  rest(): unknown[] {
    const out: unknown[] = []
    for (let ai = this.ai, vi = this.vi; ai < this.atoms.length; ai++, vi = 0) {
      const atom = this.atoms[ai]!
      for (; vi < atom.length; vi++) out.push(atom[vi])
    }
    return out
  }
}

/** Everything a partition keeps for one key group: the unit of state, logging, snapshots and rescaling. */
export class KeyGroup {
  /** Task id → its state table. */
  readonly tables = new Map<number, StateTable>()
  readonly pending = new Map<string, PendingAsk>()
  /** Tables with keys written since the last epoch record, in order of their first write. */
  dirtyTables: StateTable[] = []
  /** Pending asks written since the last epoch record. */
  pendingDirty = new Set<string>()
  askSeq = 0
  /** askSeq when the current epoch opened: asks numbered from here were made in this epoch. */
  askSeqAtOpen = 0
  outSeq = 0
  metaDirty = false
  /** Messages (and runs of ingress records) to process, in order; `head` is the next one (avoids shifting arrays). */
  queue: Array<Msg | IngressRun> = []
  head = 0
  /** Sequence of messages sent by this key group in the current round. */
  seq = 0
  /**
   * This epoch's egress records (their sequences end at outSeq), the sinks they go to, and, once there are two
   * sinks, per record an index into egressSinks.
   */
  egressValues: unknown[] = []
  egressWhich: number[] = []
  egressSinks: string[] = []
  rngEpoch = -1
  rng = 0
  /** Expiring tables (task id → queue), created on the first write of an expiring task. */
  expiry: Map<number, ExpiryQueue> | undefined

  constructor(readonly kg: number) {}

  table(id: number): StateTable {
    let t = this.tables.get(id)
    if (t === undefined) {
      t = new StateTable(id)
      this.tables.set(id, t)
    }
    return t
  }

  /** Notes that key `ks` of table `id` may expire at epoch time `at`. */
  expireAt(id: number, ks: string, at: number): void {
    this.expiry ??= new Map()
    let q = this.expiry.get(id)
    if (q === undefined) this.expiry.set(id, (q = new ExpiryQueue()))
    q.push(at, ks)
  }

  /** Records that `cell` (key `ks` of `t`) was written this epoch. */
  markWritten(t: StateTable, ks: string, cell: StateCell): void {
    if (cell.dirty) return
    cell.dirty = true
    if (t.dirtyKs.length === 0) this.dirtyTables.push(t)
    t.dirtyKs.push(ks)
    t.dirtyCells.push(cell)
  }

  /** Appends an egress record to this epoch's batch (the caller advances outSeq). */
  addEgress(sink: string, value: unknown): void {
    const sinks = this.egressSinks
    let which = 0
    if (sinks.length === 0) sinks.push(sink)
    else if (sinks[0] !== sink) {
      which = sinks.indexOf(sink)
      if (which < 0) which = sinks.push(sink) - 1
    }
    if (sinks.length > 1) {
      // Records before the second sink appeared all went to the first.
      while (this.egressWhich.length < this.egressValues.length) this.egressWhich.push(0)
      this.egressWhich.push(which)
    }
    this.egressValues.push(value)
  }

  /** Queue entries left (an ingress run counts once): 0 iff nothing is queued. */
  queued(): number {
    return this.queue.length - this.head
  }

  /** Messages left, each record of an ingress run counted. */
  queuedMessages(): number {
    let n = 0
    for (let i = this.head; i < this.queue.length; i++) {
      const x = this.queue[i]!
      n += x instanceof IngressRun ? x.left : 1
    }
    return n
  }

  /** Drops processed messages so the queue does not grow without bound. */
  compact(): void {
    if (this.head > 0) {
      this.queue = this.head >= this.queue.length ? [] : this.queue.slice(this.head)
      this.head = 0
    }
  }
}

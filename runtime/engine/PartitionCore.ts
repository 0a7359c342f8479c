import { inspect } from "node:util"
import type { Key } from "../../workflows/Key.ts"
import { rejection, type Portal } from "../../portals/Portal.ts"
import type { Continuation } from "../../portals/Continuation.ts"
import type { Future, PortalContext } from "../../portals/PortalContext.ts"
import type { EntryState, ValueState } from "../../workflows/TaskContext.ts"
import { checkedCopy, deepFreeze, findUnserializable } from "./codec.ts"
import { egressCount, RECORD_FORMAT, type EgressBatch, type EpochRecord, type TableDelta } from "./EpochRecord.ts"
import { RecoveryError, type TaskFailure } from "./errors.ts"
import type { Recovered } from "./recovery.ts"
import { IngressRun, KeyGroup, type PendingAsk, type StateCell, type StateTable } from "./KeyGroup.ts"
import { canonicalKey, keyGroupOf, murmur3, ownerOf } from "./keys.ts"
import type { Plan, PlanNode } from "./Plan.ts"
import type { GraphNode } from "../../workflows/Graph.ts"
import { ASK, DATA, INGRESS, REPLY, type Committed, type Msg, type OpenEpoch, type ReplyAddress, type RoundData, type RoundDone, type ToPartition } from "./protocol.ts"
import { takeBefore } from "./heldEpochs.ts"

export interface Reporter {
  failure(failure: TaskFailure): void
  log(level: "info" | "warn" | "error", task: string, key: string | undefined, message: string): void
}

export interface PartitionOptions {
  readonly partition: number
  readonly partitions: number
  /** Encode/decode every message at send and deep-freeze state: aliasing and serialization bugs fail early. */
  readonly checked: boolean
  /** Messages a key group processes per round; the rest wait for the next round, in order. */
  readonly keyGroupRoundLimit: number
  readonly reporter: Reporter
}

/** What the partition asks its driver to do: the core itself does no I/O, so it can run under simulation. */
export type PartitionOutput =
  | { readonly o: "send"; readonly to: number; readonly env: RoundData | RoundDone }
  | { readonly o: "record"; readonly e: number; readonly record: EpochRecord; readonly inTransit: number; readonly exhausted: boolean; readonly failures: number; readonly records: number; readonly out: number }
  | { readonly o: "publish"; readonly e: number; readonly egress: ReadonlyArray<EgressBatch> }

/** Atoms read from each split for one epoch, and where each split now stands. */
export interface IngressBatch {
  readonly split: number
  readonly atoms: ReadonlyArray<ReadonlyArray<unknown>>
}

const DELETED: unique symbol = Symbol("deleted")

const roundKey = (e: number, round: number): string => `${e}/${round}`

// Node kinds as small integers (see PartitionCore.run).
const K_PASS = 0
const K_MAP = 1
const K_FLATMAP = 2
const K_FILTER = 3
const K_KEYBY = 4
const K_PROCESSOR = 5
const K_SINK = 6
const K_EXTENSION = 7

type MapFn = Extract<GraphNode, { kind: "map" }>["fn"]
type FlatMapFn = Extract<GraphNode, { kind: "flatMap" }>["fn"]
type FilterFn = Extract<GraphNode, { kind: "filter" }>["fn"]
type KeyByFn = Extract<GraphNode, { kind: "keyBy" }>["fn"]
type ProcessorFn = Extract<GraphNode, { kind: "processor" }>["fn"]
type NodeFn = MapFn | FlatMapFn | FilterFn | KeyByFn | ProcessorFn | undefined

const kindOf = (n: GraphNode): number => {
  switch (n.kind) {
    case "source":
    case "merge":
    case "cycle":
    case "subscribe":
      return K_PASS
    case "map":
      return K_MAP
    case "flatMap":
      return K_FLATMAP
    case "filter":
      return K_FILTER
    case "keyBy":
      return K_KEYBY
    case "processor":
      return K_PROCESSOR
    case "sink":
      return K_SINK
    case "extension":
      return K_EXTENSION
  }
}

const valueOf = (c: StateCell): unknown => c.v

const show = (v: unknown): string => {
  const s = inspect(v, { depth: 4, breakLength: Infinity, maxArrayLength: 20, maxStringLength: 200 })
  return s.length > 500 ? s.slice(0, 500) + "…" : s
}

/**
 * One partition: the key groups it owns, their state, and the round protocol of an epoch. Synchronous and free
 * of I/O: envelopes go in, outputs come out (see PartitionOutput); the driver does the sending and logging.
 */
export class PartitionCore {
  readonly groups = new Map<number, KeyGroup>()
  readonly owned: ReadonlyArray<number>
  readonly out: PartitionOutput[] = []
  private readonly me: number
  private readonly P: number
  private readonly ctxs: NodeContext[]
  private readonly kinds: Uint8Array
  private readonly fns: NodeFn[]
  private readonly sinkNames: Array<string | undefined>

  g = 0
  e = 0
  time = 0
  private round = 0
  /** The round to run next (-1: none due); pump() runs it. */
  private nextRound = -1
  private pumping = false
  private roundLimit = 1
  private running = false
  /** Per (epoch, round): the batches received from each partition, and their message counts. */
  private readonly received = new Map<string, { batches: Array<Array<ReadonlyArray<Msg>>>; counts: number[] }>()
  /** Key group id → the owned key group (undefined: another partition's). */
  private readonly byKg: Array<KeyGroup | undefined>
  private readonly dones = new Map<string, Array<RoundDone | undefined>>()
  private epochFailures = 0
  private epochRecords = 0
  /** Ingress positions of the owned splits (split index in plan.splits → atoms consumed). */
  readonly positions = new Map<number, { position: number; exhausted: boolean }>()
  /** Per table id, when its keys' state expires (undefined: never). */
  private readonly expireFns: ReadonlyArray<((state: unknown) => number | undefined) | undefined>
  /** The owned splits of live sources (split indices in plan.splits): the runtime pushes into them. */
  readonly liveSplits: number[] = []
  private readonly uncommitted = new Map<number, ReadonlyArray<EgressBatch>>()

  // The step being executed: its effects apply only if it completes. The buffers are reused across steps (parallel
  // arrays and counts: nothing is allocated per write, nothing is truncated per step).
  private cur!: KeyGroup
  private nw = 0
  private readonly wTable: number[] = []
  private readonly wKs: string[] = []
  private readonly wV: unknown[] = []
  private readonly wCell: Array<StateCell | undefined> = []
  private readonly wTab: Array<StateTable | undefined> = []
  /** The cell the step read last (a read-modify-write of one key looks it up once). */
  private rTable = -1
  private rKs: string | undefined = undefined
  private rCell: StateCell | undefined = undefined
  private rTab: StateTable | undefined = undefined
  private pendingWrites: Array<{ readonly id: string; readonly p: PendingAsk | undefined }> = []
  private nsent = 0
  private readonly sent: Msg[] = []
  private nsunk = 0
  private readonly sunkSink: string[] = []
  private readonly sunkV: unknown[] = []
  private askSeq = 0
  /** Records this step serves as requests (NodeContext.answerInto), and replies to them made within the step. */
  private readonly served: ServedRecord[] = []
  private readonly localReplies: Msg[] = []
  /** No key of any owned key group expires before this epoch time. */
  private nextExpiry = Infinity
  private readonly discardSinks = new Set<string>()

  constructor(
    readonly plan: Plan,
    readonly options: PartitionOptions,
  ) {
    this.me = options.partition
    this.P = options.partitions
    const owned: number[] = []
    for (let kg = 0; kg < plan.keyGroups; kg++) {
      if (ownerOf(kg, plan.keyGroups, this.P) === this.me) {
        owned.push(kg)
        this.groups.set(kg, new KeyGroup(kg))
      }
    }
    this.owned = owned
    this.byKg = Array.from({ length: plan.keyGroups }, (_, kg) => this.groups.get(kg))
    plan.splits.forEach((s, i) => {
      if (!this.groups.has(s.keyGroup)) return
      // A live split has no position: nothing in it can be replayed, so nothing about it is logged.
      if (s.source.live === true) this.liveSplits.push(i)
      else this.positions.set(i, { position: 0, exhausted: false })
    })
    this.ctxs = plan.nodes.map((n) => new NodeContext(this, n))
    this.kinds = Uint8Array.from(plan.nodes, (n) => kindOf(n.node))
    this.fns = plan.nodes.map((n) => ("fn" in n.node ? n.node.fn : undefined))
    this.sinkNames = plan.nodes.map((n) => (n.node.kind === "sink" ? n.node.sink.name : undefined))
    this.expireFns = plan.tableExpiry
    for (const [name, spec] of plan.sinks) if (spec.kind === "discard") this.discardSinks.add(name)
  }

  /** Takes over the committed state of the owned key groups (everything else in `rec` belongs to others). */
  restore(rec: Recovered): void {
    const byName = this.plan.byName
    const nodeId = (name: string, what: string): number => {
      const id = byName.get(name)
      if (id === undefined) throw new RecoveryError({ message: `the log holds ${what} of task '${name}', which app '${this.plan.app.name}' no longer has` })
      return id
    }
    const tableId = (name: string): number => {
      const id = this.plan.tableIds.get(name)
      if (id === undefined) throw new RecoveryError({ message: `the log holds state of task '${name}', which app '${this.plan.app.name}' no longer has` })
      return id
    }
    for (const [kgId, grp] of rec.groups) {
      const kg = this.groups.get(kgId)
      if (kg === undefined) continue
      for (const [table, entries] of grp.tables) {
        if (table === "$meta") {
          const meta = entries.get("") as { askSeq: number; outSeq: number }
          kg.askSeq = meta.askSeq
          kg.askSeqAtOpen = meta.askSeq
          kg.outSeq = meta.outSeq
        } else if (table === "$pending") {
          for (const [id, value] of entries) {
            const p = value as Omit<PendingAsk, "node"> & { node: string }
            const node = nodeId(p.node, "a pending ask")
            if (!this.plan.nodes[node]!.continuations.has(p.continuation)) {
              throw new RecoveryError({ message: `a pending ask of task '${p.node}' continues in '${p.continuation}', which the task no longer lists` })
            }
            kg.pending.set(id, { ...p, node })
          }
        } else {
          const id = tableId(table)
          const t = kg.table(id)
          const restore = this.plan.nodes[id]?.node.restore
          for (const [ks, value] of entries) {
            let v = value
            if (restore !== undefined) {
              try {
                v = restore(value)
              } catch (err) {
                throw new RecoveryError({ message: `task '${table}' rejected the restored state of key ${ks}: ${err instanceof Error ? err.message : String(err)}` })
              }
            }
            t.cell(ks).v = this.options.checked ? deepFreeze(v) : v
            const expire = this.expireFns[id]
            const at = expire === undefined ? undefined : expire(v)
            if (at !== undefined) {
              kg.expireAt(id, ks, at)
              if (at < this.nextExpiry) this.nextExpiry = at
            }
          }
        }
      }
    }
    for (const [kgId, msgs] of rec.inTransit) {
      const kg = this.groups.get(kgId)
      if (kg === undefined) continue
      for (const m of msgs) {
        const node = nodeId(m.node as unknown as string, "a message for")
        const reply = m.reply === undefined ? undefined : { ...m.reply, node: nodeId(m.reply.node as unknown as string, "a reply for") }
        kg.queue.push(reply === undefined ? { ...m, node } : { ...m, node, reply })
      }
    }
    for (const [i, pos] of this.positions) {
      const saved = rec.ingress.get(this.plan.splits[i]!.id)
      if (saved !== undefined) {
        pos.position = saved.position
        pos.exhausted = saved.exhausted
      }
    }
    this.e = rec.lastEpoch
  }

  // ---- the round protocol ------------------------------------------------------------------------------------

  handle(env: ToPartition): void {
    switch (env.t) {
      case "data":
        return this.onData(env)
      case "done":
        return this.onDone(env)
      case "committed":
        return this.onCommitted(env)
      case "open":
        throw new Error("open epochs with onOpen, which takes the ingress batch")
    }
  }

  /** Starts an epoch: in-transit messages first, then this epoch's ingress, per key group. */
  onOpen(open: OpenEpoch, ingress: ReadonlyArray<IngressBatch>): void {
    if (this.running) throw new Error(`assertion: epoch ${open.e} opened while epoch ${this.e} runs`)
    this.g = open.g
    this.e = open.e
    this.time = open.time
    this.roundLimit = open.roundLimit
    this.running = true
    this.epochFailures = 0
    this.epochRecords = 0
    this.expire(open.time)
    for (const batch of ingress) {
      const split = this.plan.splits[batch.split]!
      const kg = this.groups.get(split.keyGroup)
      if (kg === undefined) throw new Error(`assertion: split ${split.id} is not owned by partition ${this.me}`)
      let n = 0
      for (const atom of batch.atoms) n += atom.length
      if (n > 0) kg.queue.push(new IngressRun(split.node, batch.atoms, n))
      this.epochRecords += n
    }
    this.nextRound = 0
    this.pump()
  }

  /** Deletes, as writes of this epoch, the state of keys whose expiry time has come (StatefulTaskOptions.expire). */
  private expire(time: number): void {
    // Most epochs have nothing due: skip the scan over every key group's queues.
    if (time < this.nextExpiry) return
    let next = Infinity
    for (const kg of this.groups.values()) {
      if (kg.expiry === undefined) continue
      for (const [id, queue] of kg.expiry) {
        const expire = this.expireFns[id]!
        const t = kg.table(id)
        for (let ks = queue.popDue(time); ks !== undefined; ks = queue.popDue(time)) {
          const cell = t.cells.get(ks)
          if (cell?.v === undefined) continue
          const at = expire(cell.v)
          if (at === undefined || at > time) continue // rewritten since: a later entry stands for it
          cell.v = undefined
          kg.markWritten(t, ks, cell)
        }
        if (queue.next < next) next = queue.next
      }
    }
    this.nextExpiry = next
  }

  /**
   * Runs the rounds that are due, one after the other. A round that completes at once (one partition, or all DONEs
   * in) schedules the next instead of calling it: a recursion round → done → barrier → round would keep every
   * earlier round's frame, and with it that round's messages, alive until the epoch ends (hundreds of MB and
   * long mark-compacts on a 200-round epoch), and could overflow the stack at high round limits.
   */
  private pump(): void {
    if (this.pumping) return
    this.pumping = true
    try {
      while (this.nextRound >= 0) {
        const round = this.nextRound
        this.nextRound = -1
        this.processRound(round)
      }
    } finally {
      this.pumping = false
    }
  }

  private processRound(round: number): void {
    this.round = round
    const byDest: Msg[][] = Array.from({ length: this.P }, () => [])
    const limit = this.options.keyGroupRoundLimit
    let pending = false
    for (const kgId of this.owned) {
      const kg = this.groups.get(kgId)!
      if (kg.queued() === 0) continue
      kg.seq = 0
      let budget = limit
      const queue = kg.queue
      while (budget > 0 && kg.head < queue.length) {
        const item = queue[kg.head]!
        if (item instanceof IngressRun) {
          const node = this.plan.nodes[item.node]!
          while (budget > 0 && item.left > 0) {
            this.stepIngress(kg, node, item.next())
            this.route(kg, byDest)
            budget--
          }
          if (item.left > 0) break
        } else {
          this.step(kg, item)
          this.route(kg, byDest)
          budget--
        }
        queue[kg.head++] = undefined as unknown as Msg // release for GC
      }
      kg.compact()
      if (kg.queued() > 0) pending = true
    }
    const counts = byDest.map((m) => m.length)
    for (let p = 0; p < this.P; p++) {
      if (p === this.me) this.receive(this.e, round, p, byDest[p]!)
      else if (byDest[p]!.length > 0) this.out.push({ o: "send", to: p, env: { t: "data", g: this.g, e: this.e, round, from: this.me, msgs: byDest[p]! } })
    }
    const done: RoundDone = { t: "done", g: this.g, e: this.e, round, from: this.me, counts, pending }
    for (let p = 0; p < this.P; p++) if (p !== this.me) this.out.push({ o: "send", to: p, env: done })
    this.onDone(done)
  }

  /** Numbers the messages the step sent (its key group's round sequence) and files them by destination partition. */
  private route(kg: KeyGroup, byDest: Msg[][]): void {
    for (let i = 0; i < this.nsent; i++) {
      const m = this.sent[i]!
      m.seq = kg.seq++
      byDest[this.P === 1 ? 0 : ownerOf(m.kg, this.plan.keyGroups, this.P)]!.push(m)
    }
  }

  private receive(e: number, round: number, from: number, msgs: ReadonlyArray<Msg>): void {
    const key = roundKey(e, round)
    let r = this.received.get(key)
    if (r === undefined) {
      r = { batches: Array.from({ length: this.P }, () => []), counts: new Array<number>(this.P).fill(0) }
      this.received.set(key, r)
    }
    if (msgs.length > 0) r.batches[from]!.push(msgs)
    r.counts[from]! += msgs.length
  }

  private onData(env: RoundData): void {
    if (env.g !== this.g && this.running) return
    this.receive(env.e, env.round, env.from, env.msgs)
    this.checkBarrier()
  }

  private onDone(env: RoundDone): void {
    if (env.g !== this.g && this.running) return
    const key = roundKey(env.e, env.round)
    let d = this.dones.get(key)
    if (d === undefined) {
      d = new Array<RoundDone | undefined>(this.P).fill(undefined)
      this.dones.set(key, d)
    }
    d[env.from] = env
    this.checkBarrier()
  }

  /** Round k ends here when every partition said "done k" and every message they counted for us has arrived. */
  private checkBarrier(): void {
    if (!this.running) return
    const key = roundKey(this.e, this.round)
    const d = this.dones.get(key)
    if (d === undefined || d.some((x) => x === undefined)) return
    const r = this.received.get(key)
    let total = 0
    let pending = false
    for (let p = 0; p < this.P; p++) {
      const done = d[p]!
      const got = r?.counts[p] ?? 0
      const expected = done.counts[this.me]!
      if (got < expected) return
      if (got > expected) throw new Error(`assertion: partition ${this.me} got ${got} messages from ${p} in round ${this.round}, expected ${expected}`)
      for (const c of done.counts) total += c
      pending ||= done.pending
    }
    this.dones.delete(key)
    this.received.delete(key)
    if (r !== undefined) this.enqueue(r.batches)
    if ((total === 0 && !pending) || this.round + 1 >= this.roundLimit) this.finishEpoch()
    else {
      this.nextRound = this.round + 1
      this.pump()
    }
  }

  /**
   * Appends a round's messages to their key groups' queues in (sender key group, sequence) order, never by arrival.
   * Each sender's batch is in that order and partitions own ascending ranges of key groups, so the batches taken in
   * partition order usually are too: then messages go straight to their queues; otherwise they are sorted first.
   */
  private enqueue(batches: ReadonlyArray<ReadonlyArray<ReadonlyArray<Msg>>>): void {
    let skg = -1
    let seq = -1
    let sorted = true
    for (const fromP of batches) {
      for (const batch of fromP) {
        for (const m of batch) {
          if (m.skg < skg || (m.skg === skg && m.seq <= seq)) sorted = false
          skg = m.skg
          seq = m.seq
        }
      }
    }
    if (sorted) {
      for (const fromP of batches) for (const batch of fromP) for (const m of batch) this.queueOf(m).push(m)
    } else {
      const all: Msg[] = []
      for (const fromP of batches) for (const batch of fromP) for (const m of batch) all.push(m)
      all.sort((a, b) => a.skg - b.skg || a.seq - b.seq)
      for (const m of all) this.queueOf(m).push(m)
    }
  }

  private queueOf(m: Msg): KeyGroup["queue"] {
    const kg = this.byKg[m.kg]
    if (kg === undefined) throw new Error(`assertion: message for key group ${m.kg} reached partition ${this.me}`)
    return kg.queue
  }

  private finishEpoch(): void {
    this.running = false
    const names = this.plan.nodes
    const tableNames = this.plan.tableNames
    const state: Array<readonly [number, TableDelta[]]> = []
    const inTransit: Array<readonly [number, Msg[]]> = []
    const egress: EgressBatch[] = []
    let inTransitCount = 0
    for (const kgId of this.owned) {
      const kg = this.groups.get(kgId)!
      // Most key groups did nothing this epoch: nothing to allocate for them.
      if (kg.dirtyTables.length === 0 && kg.pendingDirty.size === 0 && !kg.metaDirty && kg.egressValues.length === 0 && kg.queued() === 0) {
        kg.askSeqAtOpen = kg.askSeq
        continue
      }
      const tables: TableDelta[] = []
      for (const t of kg.dirtyTables) {
        // Keys in first-write order; deleted keys leave their table now.
        const ks = t.dirtyKs
        const cells = t.dirtyCells
        tables.push([tableNames[t.id]!, ks, cells.map(valueOf)])
        for (let i = 0; i < cells.length; i++) {
          const cell = cells[i]!
          cell.dirty = false
          if (cell.v === undefined) t.cells.delete(ks[i]!)
        }
        t.dirtyKs = []
        t.dirtyCells = []
      }
      kg.dirtyTables.length = 0
      if (kg.pendingDirty.size > 0) {
        const ks: string[] = []
        const vs: unknown[] = []
        for (const id of kg.pendingDirty) {
          const p = kg.pending.get(id)
          // An ask made and answered within this epoch never existed at a commit: nothing to log, not even its end.
          if (p === undefined && Number(id.slice(id.lastIndexOf(".") + 1)) >= kg.askSeqAtOpen) continue
          ks.push(id)
          vs.push(p === undefined ? undefined : { ...p, node: names[p.node]!.name })
        }
        if (ks.length > 0) tables.push(["$pending", ks, vs])
        kg.pendingDirty.clear()
      }
      kg.askSeqAtOpen = kg.askSeq
      if (kg.metaDirty) {
        tables.push(["$meta", [""], [{ askSeq: kg.askSeq, outSeq: kg.outSeq }]])
        kg.metaDirty = false
      }
      if (tables.length > 0) state.push([kgId, tables])
      if (kg.queued() > 0) {
        const msgs: Msg[] = []
        for (let i = kg.head; i < kg.queue.length; i++) {
          const x = kg.queue[i]!
          if (x instanceof IngressRun) {
            // Ingress records a round limit left unprocessed travel as messages, like everything in transit.
            for (const v of x.rest()) msgs.push(this.portableMsg({ k: INGRESS, node: x.node, kg: kgId, key: undefined, ks: undefined, v, skg: kgId, seq: 0 }))
          } else msgs.push(this.portableMsg(x))
        }
        inTransit.push([kgId, msgs])
        inTransitCount += msgs.length
      }
      const values = kg.egressValues
      if (values.length > 0) {
        const first = kg.outSeq - values.length
        const sinks = kg.egressSinks
        egress.push([sinks.length === 1 ? sinks[0]! : [sinks, kg.egressWhich], kgId, first, values])
        kg.egressValues = []
        kg.egressWhich = []
        kg.egressSinks = []
      }
    }
    const ingress: Array<readonly [string, number, boolean]> = []
    let exhausted = true
    for (const [i, pos] of this.positions) {
      ingress.push([this.plan.splits[i]!.id, pos.position, pos.exhausted])
      exhausted &&= pos.exhausted
    }
    this.uncommitted.set(this.e, egress)
    // Records of discard sinks (the actor systems' answers to their callers) are published from memory after the
    // commit and never again: a caller that missed its answer retries and reads the stored one. They stay out of the log.
    const logged = this.discardSinks.size === 0 ? egress : egress.filter((b) => typeof b[0] !== "string" || !this.discardSinks.has(b[0]))
    const record: EpochRecord = { t: "epoch", f: RECORD_FORMAT, g: this.g, e: this.e, partition: this.me, state, inTransit, ingress, egress: logged }
    this.out.push({ o: "record", e: this.e, record, inTransit: inTransitCount, exhausted, failures: this.epochFailures, records: this.epochRecords, out: egressCount(egress) })
  }

  /** In-transit messages name their tasks, so a log written by one build of the app reads in another. */
  private portableMsg(m: Msg): Msg {
    const node = this.plan.nodes[m.node]!.name as unknown as number
    const reply = m.reply === undefined ? undefined : { ...m.reply, node: this.plan.nodes[m.reply.node]!.name as unknown as number }
    return reply === undefined ? { ...m, node } : { ...m, node, reply }
  }

  /**
   * COMMITTED(e) is cumulative: the coordinator commits epochs in order, so every epoch up to e is committed. An
   * earlier epoch still held here lost its COMMITTED on the way; it is published now, before e, never skipped.
   */
  private onCommitted(env: Committed): void {
    for (const [e, egress] of takeBefore(this.uncommitted, env.e)) this.out.push({ o: "publish", e, egress })
    const egress = this.uncommitted.get(env.e)
    if (egress === undefined) return
    this.uncommitted.delete(env.e)
    this.out.push({ o: "publish", e: env.e, egress })
  }

  /** Messages waiting in queues: after an epoch, the in-transit messages. */
  queuedMessages(): number {
    let n = 0
    for (const kg of this.groups.values()) n += kg.queuedMessages()
    return n
  }

  // ---- steps ---------------------------------------------------------------------------------------------------

  /** Runs one message through its task and every task chained after it, all or nothing. */
  private step(kg: KeyGroup, msg: Msg): void {
    this.begin(kg)
    const node = this.plan.nodes[msg.node]!
    try {
      switch (msg.k) {
        case INGRESS:
          this.forward(node, msg.v, undefined, undefined)
          break
        case DATA:
          this.run(node, msg.v, msg.key, msg.ks, undefined)
          break
        case ASK:
          this.serve(node, msg)
          break
        case REPLY:
          this.resume(node, msg)
          break
      }
      if (this.localReplies.length > 0) this.deliverLocal()
    } catch (err) {
      const served = this.failStep(kg, node, msg.ks, msg.v, err)
      // The asker hears that its request failed, instead of waiting forever; nothing else of the step survives.
      if (msg.k === ASK && msg.reply !== undefined) {
        this.begin(kg)
        this.reply(msg.reply, rejection(err))
      }
      if (served.length > 0) this.rejectServed(kg, served, err)
      return
    }
    this.apply(kg)
  }

  /** A step for an ingress record of a source task: no message object. */
  private stepIngress(kg: KeyGroup, node: PlanNode, v: unknown): void {
    this.begin(kg)
    try {
      this.forward(node, v, undefined, undefined)
      if (this.localReplies.length > 0) this.deliverLocal()
    } catch (err) {
      const served = this.failStep(kg, node, undefined, v, err)
      if (served.length > 0) this.rejectServed(kg, served, err)
      return
    }
    this.apply(kg)
  }

  /** Replies within the step to records it serves as requests: their continuations run now, in the same step. */
  private deliverLocal(): void {
    for (let i = 0; i < this.localReplies.length; i++) {
      const m = this.localReplies[i]!
      this.resume(this.plan.nodes[m.node]!, m)
    }
  }

  /** Reports a failed step; returns the records it was serving as requests (answered by rejectServed). */
  private failStep(kg: KeyGroup, node: PlanNode, ks: string | undefined, v: unknown, err: unknown): ReadonlyArray<ServedRecord> {
    const served = this.served.length === 0 ? NONE_SERVED : [...this.served]
    this.fail(kg, node, ks, v, err)
    return served
  }

  /**
   * A step serving records as requests threw: nothing of it survives, so each served record's continuation runs in a
   * step of its own with the rejection as its reply (as an asker hears of a replier that threw).
   */
  private rejectServed(kg: KeyGroup, served: ReadonlyArray<ServedRecord>, err: unknown): void {
    for (const { p } of served) {
      const node = this.plan.nodes[p.node]!
      this.begin(kg)
      const ctx = this.ctxs[p.node]!
      ctx.enter(p.key, p.ks, p.replyTo)
      try {
        // answerInto checked that the task lists the continuation.
        node.continuations.get(p.continuation)!.run(ctx, rejection(err), p.data)
        if (this.localReplies.length > 0) this.deliverLocal()
      } catch (err2) {
        this.failedTask ??= node.name
        this.fail(kg, node, p.ks, rejection(err), err2)
        continue
      }
      this.apply(kg)
    }
  }

  private begin(kg: KeyGroup): void {
    this.cur = kg
    this.nw = 0
    this.rTable = -1
    this.rKs = undefined
    this.rCell = undefined
    this.rTab = undefined
    if (this.pendingWrites.length > 0) this.pendingWrites.length = 0
    this.nsent = 0
    this.nsunk = 0
    this.askSeq = kg.askSeq
    if (this.served.length > 0) this.served.length = 0
    if (this.localReplies.length > 0) this.localReplies.length = 0
  }

  /** A task threw: the step's effects are dropped (nothing was applied yet) and the failure is reported. */
  private fail(kg: KeyGroup, node: PlanNode, ks: string | undefined, v: unknown, err: unknown): void {
    this.epochFailures++
    this.nsent = 0
    const failure: TaskFailure = {
      task: this.failedTask ?? node.name,
      epoch: this.e,
      keyGroup: kg.kg,
      key: ks,
      record: show(v),
      error: err instanceof Error ? err.message : String(err),
    }
    this.failedTask = undefined
    this.options.reporter.failure(failure)
  }

  /** The step completed: its buffered effects apply to the key group. */
  private apply(kg: KeyGroup): void {
    const nw = this.nw
    for (let i = 0; i < nw; i++) {
      const ks = this.wKs[i]!
      // A key's last write in the step is the one that counts (a request's entry is often written pending, then
      // answered): the earlier ones are skipped, in steps with few writes (the scan is quadratic). Applying them all
      // would be correct too, with an expiry push more.
      if (nw <= 32 && this.writtenAgain(i, ks, nw)) continue
      const t = this.wTab[i] ?? kg.table(this.wTable[i]!)
      const cell = this.wCell[i] ?? t.cell(ks)
      const v = this.wV[i]
      const expire = this.expireFns[t.id]
      // The queue holds an item at the old value's due time (pushed when it was written): an unchanged time needs none.
      const due = expire === undefined || cell.v === undefined ? undefined : expire(cell.v)
      cell.v = v === DELETED ? undefined : v
      if (!cell.dirty) kg.markWritten(t, ks, cell)
      if (expire !== undefined && v !== DELETED) {
        const at = expire(v)
        if (at !== undefined && at !== due) {
          kg.expireAt(t.id, ks, at)
          if (at < this.nextExpiry) this.nextExpiry = at
        }
      }
    }
    const pw = this.pendingWrites
    for (let i = 0; i < pw.length; i++) {
      const w = pw[i]!
      if (w.p === undefined) {
        // Not there: made in this step and answered in it (skipped below), so never at a commit: nothing to log.
        if (!kg.pending.delete(w.id)) continue
      } else {
        // A client request answered in the step that took it (the usual served call): it never enters the table.
        if (pw.length <= 32 && this.answeredLater(i, w.id)) continue
        kg.pending.set(w.id, w.p)
      }
      kg.pendingDirty.add(w.id)
    }
    if (this.askSeq !== kg.askSeq) {
      kg.askSeq = this.askSeq
      kg.metaDirty = true
    }
    if (this.nsunk > 0) {
      for (let i = 0; i < this.nsunk; i++) {
        kg.addEgress(this.sunkSink[i]!, this.sunkV[i])
        kg.outSeq++
      }
      kg.metaDirty = true
    }
  }

  /** Whether pending write i's ask is answered later in the step. */
  private answeredLater(i: number, id: string): boolean {
    const pw = this.pendingWrites
    for (let j = i + 1; j < pw.length; j++) if (pw[j]!.id === id && pw[j]!.p === undefined) return true
    return false
  }

  /** Whether write i's key is written again later in the step. */
  private writtenAgain(i: number, ks: string, nw: number): boolean {
    const table = this.wTable[i]
    for (let j = i + 1; j < nw; j++) if (this.wKs[j] === ks && this.wTable[j] === table) return true
    return false
  }

  private failedTask: string | undefined

  private run(node: PlanNode, value: unknown, key: Key | undefined, ks: string | undefined, replyTo: ReplyAddress | undefined): void {
    // Kind and function come from per-node arrays: graph nodes of different kinds have different shapes, so reading
    // node.node.kind / .fn here would be a megamorphic property access on every step.
    const id = node.id
    const ctx = this.ctxs[id]!
    try {
      switch (this.kinds[id]) {
        case K_PASS:
          return this.forward(node, value, key, ks)
        case K_MAP:
          ctx.enter(key, ks, undefined)
          return this.forward(node, (this.fns[id] as MapFn)(value, ctx), key, ks)
        case K_FLATMAP:
          ctx.enter(key, ks, undefined)
          for (const v of (this.fns[id] as FlatMapFn)(value, ctx)) this.forward(node, v, key, ks)
          return
        case K_FILTER:
          ctx.enter(key, ks, undefined)
          if ((this.fns[id] as FilterFn)(value, ctx)) this.forward(node, value, key, ks)
          return
        case K_KEYBY: {
          const k = (this.fns[id] as KeyByFn)(value)
          const kks = canonicalKey(k)
          const kg = keyGroupOf(kks, this.plan.keyGroups)
          const out = node.out
          if (node.chainLocal && kg === this.cur.kg) {
            for (let i = 0; i < out.length; i++) this.run(this.plan.nodes[out[i]!.to]!, value, k, kks, undefined)
          } else for (let i = 0; i < out.length; i++) this.hop(out[i]!.to, value, kg, k, kks)
          return
        }
        case K_PROCESSOR: {
          const fn = this.fns[id] as ProcessorFn
          ctx.enter(key, ks, replyTo)
          fn(ctx, value)
          return
        }
        case K_SINK:
          this.sunkSink[this.nsunk] = this.sinkNames[id]!
          this.sunkV[this.nsunk++] = this.options.checked ? checkedCopy(value) : value
          return
        case K_EXTENSION:
          ctx.enter(key, ks, replyTo)
          node.asker!.onRecord(ctx, value)
          return
      }
    } catch (err) {
      this.failedTask ??= node.name
      throw err
    }
  }

  /** Sends a value to every successor of `node`: chained successors run now, hops become messages. */
  forward(node: PlanNode, value: unknown, key: Key | undefined, ks: string | undefined): void {
    const out = node.out
    for (let i = 0; i < out.length; i++) {
      const e = out[i]!
      if (e.hop) this.hop(e.to, value, this.cur.kg, key, ks)
      else this.run(this.plan.nodes[e.to]!, value, key, ks, undefined)
    }
  }

  private hop(to: number, value: unknown, kg: number, key: Key | undefined, ks: string | undefined): void {
    const target = this.plan.nodes[to]!
    const v = this.options.checked ? checkedCopy(value) : value
    if (target.singleton) this.sent[this.nsent++] = { k: DATA, node: to, kg: target.taskKeyGroup, key: undefined, ks: undefined, v, skg: this.cur.kg, seq: 0 }
    else this.sent[this.nsent++] = { k: DATA, node: to, kg, key, ks, v, skg: this.cur.kg, seq: 0 }
  }

  private serve(node: PlanNode, msg: Msg): void {
    const replier = node.replier
    if (replier === undefined) throw new Error(`assertion: request for task '${node.name}', which is not a replier`)
    const ctx = this.ctxs[node.id]!
    ctx.enter(msg.key, msg.ks, msg.reply)
    try {
      replier.onRequest(ctx, msg.v)
    } catch (err) {
      this.failedTask ??= node.name
      throw err
    }
  }

  private resume(node: PlanNode, msg: Msg): void {
    const id = msg.reply!.id
    const p = this.readPending(id)
    if (p === undefined) return // a reply nobody waits for (fire-and-forget ask, or answered already)
    const cont = node.continuations.get(p.continuation)
    if (cont === undefined) throw new Error(`continuation '${p.continuation}' is not listed in the continuations of task '${node.name}'`)
    this.pendingWrites.push({ id, p: undefined })
    const ctx = this.ctxs[node.id]!
    ctx.enter(p.key, p.ks, p.replyTo)
    try {
      cont.run(ctx, msg.v, p.data)
    } catch (err) {
      this.failedTask ??= node.name
      throw err
    }
  }

  private readPending(id: string): PendingAsk | undefined {
    for (let i = this.pendingWrites.length - 1; i >= 0; i--) if (this.pendingWrites[i]!.id === id) return this.pendingWrites[i]!.p
    return this.cur.pending.get(id)
  }

  // ---- what contexts call ---------------------------------------------------------------------------------------

  /** The key group the current step runs in. */
  get keyGroup(): number {
    return this.cur.kg
  }

  readState(table: number, ks: string): unknown {
    for (let i = this.nw - 1; i >= 0; i--) {
      if (this.wTable[i] === table && this.wKs[i] === ks) {
        const v = this.wV[i]
        return v === DELETED ? undefined : v
      }
    }
    const t = this.cur.tables.get(table)
    const cell = t?.cells.get(ks)
    this.rTable = table
    this.rKs = ks
    this.rTab = t
    this.rCell = cell
    return cell?.v
  }

  writeState(table: number, ks: string, v: unknown): void {
    if (v === undefined) v = DELETED
    else if (this.options.checked) {
      const bad = findUnserializable(v)
      if (bad) throw bad
      deepFreeze(v)
    }
    const i = this.nw++
    this.wTable[i] = table
    this.wKs[i] = ks
    this.wV[i] = v
    const same = table === this.rTable && ks === this.rKs
    this.wCell[i] = same ? this.rCell : undefined
    this.wTab[i] = same ? this.rTab : undefined
  }

  ask(from: NodeContext, portal: Portal<unknown, unknown>, request: unknown): Future<unknown> {
    const replierNode = this.plan.portals.get(portal.name)
    if (replierNode === undefined) throw new Error(`portal '${portal.name}' has no replier in app '${this.plan.app.name}'`)
    const target = this.plan.nodes[replierNode]!
    // The replier's own definition of the portal decides the routing, whichever copy the asker holds.
    const keyOf = target.replier!.portal.key
    let key: Key | undefined
    let ks: string | undefined
    let kg: number
    if (keyOf === undefined && target.singleton) {
      // An unkeyed replier without a portal key: one instance, its per-task state, in the task's key group.
      kg = target.taskKeyGroup
    } else {
      key = keyOf === undefined ? portal.name : keyOf(request)
      ks = canonicalKey(key)
      kg = keyGroupOf(ks, this.plan.keyGroups)
    }
    const id = `${this.cur.kg}.${this.askSeq++}`
    const reply: ReplyAddress = { node: from.node.id, kg: this.cur.kg, key: from.key, ks: from.ks, id }
    const v = this.options.checked ? checkedCopy(request) : request
    this.sent[this.nsent++] = { k: ASK, node: replierNode, kg, key, ks, v, skg: this.cur.kg, seq: 0, reply }
    return new AskFuture(this, from, id, from.replyTo)
  }

  /** The asker registered its continuation: the ask is pending until the reply comes (logged if it crosses a commit). */
  continueWith(from: NodeContext, id: string, replyTo: ReplyAddress | undefined, cont: Continuation<unknown, unknown, never, never>, data: unknown): void {
    if (from.node.continuations.get(cont.name) !== (cont as unknown)) {
      throw new Error(`continuation '${cont.name}' must be listed in the 'continuations' option of task '${from.node.name}'`)
    }
    const d = this.options.checked ? checkedCopy(data) : data
    this.pendingWrites.push({ id, p: { node: from.node.id, continuation: cont.name, data: d, key: from.key, ks: from.ks, replyTo } })
  }

  reply(to: ReplyAddress, value: unknown): void {
    const v = this.options.checked ? checkedCopy(value) : value
    const m: Msg = { k: REPLY, node: to.node, kg: to.kg, key: to.key, ks: to.ks, v, skg: this.cur.kg, seq: 0, reply: to }
    if (this.served.length > 0 && to.kg === this.cur.kg && this.served.some((r) => r.id === to.id)) this.localReplies.push(m)
    else this.sent[this.nsent++] = m
  }

  /** The record `from` handles is a request: ctx.reply now runs `cont` (see PortalContext.answerInto). */
  answerInto(from: NodeContext, cont: Continuation<unknown, unknown, never, never>, data: unknown): void {
    if (from.node.continuations.get(cont.name) !== (cont as unknown)) {
      throw new Error(`continuation '${cont.name}' must be listed in the 'continuations' option of task '${from.node.name}'`)
    }
    const id = `${this.cur.kg}.${this.askSeq++}`
    const d = this.options.checked ? checkedCopy(data) : data
    const served: ServedRecord = { id, p: { node: from.node.id, continuation: cont.name, data: d, key: from.key, ks: from.ks, replyTo: from.replyTo } }
    this.pendingWrites.push(served)
    this.served.push(served)
    from.serving({ node: from.node.id, kg: this.cur.kg, key: from.key, ks: from.ks, id })
  }

  random(): number {
    const kg = this.cur
    if (kg.rngEpoch !== this.e) {
      kg.rngEpoch = this.e
      kg.rng = murmur3(`${this.e}:${kg.kg}`)
    }
    // mulberry32
    kg.rng = (kg.rng + 0x6d2b79f5) | 0
    let t = kg.rng
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

/** A record a step serves as a request: the pending ask answerInto made for it (also one of the step's pending writes). */
interface ServedRecord {
  readonly id: string
  readonly p: PendingAsk
}

const NONE_SERVED: ReadonlyArray<ServedRecord> = []

/** An ask's future (a class, not a closure per ask: asks are the actor system's hot path). */
class AskFuture implements Future<unknown> {
  constructor(
    private readonly core: PartitionCore,
    private readonly from: NodeContext,
    readonly id: string,
    private readonly replyTo: ReplyAddress | undefined,
  ) {}

  then(cont: Continuation<unknown, unknown, never, never>, data: unknown): void {
    this.core.continueWith(this.from, this.id, this.replyTo, cont, data)
  }
}

/** The context a task sees; one per task, re-entered for each record (tasks never run re-entrantly). */
class NodeContext implements PortalContext<unknown, unknown, unknown>, ValueState<unknown> {
  key: Key | undefined = undefined
  ks: string | undefined = undefined
  replyTo: ReplyAddress | undefined = undefined
  private replied = false
  readonly log: PortalContext<unknown, unknown>["log"]
  private entryState: EntryState<unknown> | undefined
  private groupEntryState: EntryState<unknown> | undefined
  /** The last entry key built (a step usually reads and writes one entry): the key's state key, sub-key, result. */
  private entryOf: readonly [ks: string, sub: string, entryKs: string] = ["", "", ""]
  /** Per key group, the last group entry key built there (a client session's sub-key recurs in every group). */
  private readonly groupEntryOf: Array<readonly [sub: string, entryKs: string] | undefined> = []

  constructor(
    private readonly core: PartitionCore,
    readonly node: PlanNode,
  ) {
    const say = (level: "info" | "warn" | "error") => (message: string) => core.options.reporter.log(level, node.name, this.ks, message)
    this.log = { info: say("info"), warn: say("warn"), error: say("error") }
  }

  enter(key: Key | undefined, ks: string | undefined, replyTo: ReplyAddress | undefined): void {
    this.key = key
    this.ks = ks
    this.replyTo = replyTo
    this.replied = false
  }

  /** From now on in this step, ctx.reply answers `to` (a record served as a request). */
  serving(to: ReplyAddress): void {
    this.replyTo = to
    this.replied = false
  }

  answerInto<Data>(continuation: Continuation<unknown, Data, never, never>, data: Data): void {
    this.core.answerInto(this, continuation as Continuation<unknown, unknown, never, never>, data)
  }

  get entries(): EntryState<unknown> {
    return (this.entryState ??= this.entryTable(this.node.entriesTable, (sub) => this.entryKey(sub)))
  }

  get groupEntries(): EntryState<unknown> {
    return (this.groupEntryState ??= this.entryTable(this.node.groupEntriesTable, (sub) => this.groupEntryKey(sub)))
  }

  /** Entries of `table` (undefined: the task has none), each sub-key's state key given by `keyOf`. */
  private entryTable(table: number | undefined, keyOf: (sub: string) => string): EntryState<unknown> {
    if (table === undefined) throw new Error(`task '${this.node.name}' keeps no entries: give it the 'entries' option`)
    const core = this.core
    return {
      get: (sub) => core.readState(table, keyOf(sub)),
      set: (sub, value) => core.writeState(table, keyOf(sub), value),
      delete: (sub) => core.writeState(table, keyOf(sub), undefined),
    }
  }

  /** A group entry's key: the canonical key of [key group, sub] (the group the step runs in), kept per group. */
  private groupEntryKey(sub: string): string {
    const kg = this.core.keyGroup
    const last = this.groupEntryOf[kg]
    if (last !== undefined && last[0] === sub) return last[1]
    const entryKs = canonicalKey([kg, sub])
    this.groupEntryOf[kg] = [sub, entryKs]
    return entryKs
  }

  /**
   * An entry's key: the canonical key of the tuple [key, sub] (built from the key's canonical form), kept in the key's
   * group whatever its own hash says. Built once per step and entry (its hash is then computed once).
   */
  private entryKey(sub: string): string {
    const ks = this.stateKey()
    const last = this.entryOf
    if (last[0] === ks && last[1] === sub) return last[2]
    const entryKs = `[${ks.length}:${ks}${sub.length + 1}:s${sub}]`
    this.entryOf = [ks, sub, entryKs]
    return entryKs
  }

  get state(): ValueState<unknown> {
    return this
  }

  private stateKey(): string {
    // A request to an unkeyed replier carries the portal key: the replier sees that key's state, not its own.
    if (this.ks !== undefined) return this.ks
    if (this.node.singleton) return ""
    throw new Error(`task '${this.node.name}' has no key: keyBy before using per-key state`)
  }

  get(orElse?: unknown): unknown {
    const v = this.core.readState(this.node.id, this.stateKey())
    return v === undefined ? orElse : v
  }

  set(value: unknown): void {
    this.core.writeState(this.node.id, this.stateKey(), value)
  }

  clear(): void {
    this.core.writeState(this.node.id, this.stateKey(), undefined)
  }

  emit(value: unknown): void {
    this.core.forward(this.node, value, this.key, this.ks)
  }

  now(): number {
    return this.core.time
  }

  random(): number {
    return this.core.random()
  }

  ask<Req, R>(portal: Portal<Req, R>, request: Req): Future<R> {
    return this.core.ask(this, portal as Portal<unknown, unknown>, request) as Future<R>
  }

  reply(value: unknown): void {
    if (this.replyTo === undefined) throw new Error(`task '${this.node.name}' called reply() with no request being served`)
    if (this.replied) throw new Error(`task '${this.node.name}' replied twice to request ${this.replyTo.id}`)
    this.replied = true
    this.core.reply(this.replyTo, value)
  }
}

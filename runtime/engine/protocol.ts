import type { Key } from "../../workflows/Key.ts"
import type { LogPosition } from "../ports/Log.ts"
import type { Chain } from "./snapshots.ts"

/** Message kinds: a record for a task, a portal request, a portal reply, a source record. */
export const DATA = 0
export const ASK = 1
export const REPLY = 2
export const INGRESS = 3
export type MsgKind = typeof DATA | typeof ASK | typeof REPLY | typeof INGRESS

/** Where a reply goes: the asker's task, key group and key, and the ask's id (unique per asker key group). */
export interface ReplyAddress {
  readonly node: number
  readonly kg: number
  readonly key: Key | undefined
  readonly ks: string | undefined
  readonly id: string
}

/** A message between steps. Ordered within a round by (skg, seq): never by arrival. */
export interface Msg {
  readonly k: MsgKind
  readonly node: number
  readonly kg: number
  readonly key: Key | undefined
  /** Canonical encoding of key. */
  readonly ks: string | undefined
  readonly v: unknown
  /** Sender key group and its sequence number in the round. */
  readonly skg: number
  seq: number
  readonly reply?: ReplyAddress
}

export interface OpenEpoch {
  readonly t: "open"
  readonly g: number
  readonly e: number
  /** Epoch time for ctx.now(). */
  readonly time: number
  /** Atoms each source split may admit in this epoch (0 while backpressure holds ingress). */
  readonly budget: number
  readonly roundLimit: number
  /** Opened while the previous epoch's COMMIT was still being written (pipelined; for traces and tests). */
  readonly pipelined?: boolean
}

export interface RoundData {
  readonly t: "data"
  readonly g: number
  readonly e: number
  readonly round: number
  readonly from: number
  readonly msgs: ReadonlyArray<Msg>
}

export interface RoundDone {
  readonly t: "done"
  readonly g: number
  readonly e: number
  readonly round: number
  readonly from: number
  /** Messages sent to each partition in this round: the receiver checks it got exactly these. */
  readonly counts: ReadonlyArray<number>
  /** The sender still has deferred messages (its per-round limit cut a queue). */
  readonly pending: boolean
}

export interface Vote {
  readonly t: "vote"
  readonly g: number
  readonly e: number
  readonly from: number
  readonly position: LogPosition
  readonly checksum: number
  readonly inTransit: number
  /** Every source split this partition owns is exhausted. */
  readonly exhausted: boolean
  /** Every source split this partition owns is exhausted or quiet (live, nothing to read, wakes the coordinator). */
  readonly quiet?: boolean
  readonly failures: number
  readonly records: number
  /** Egress records of the epoch (progress lines). */
  readonly out?: number
}

export interface Committed {
  readonly t: "committed"
  readonly g: number
  readonly e: number
  /** The coordinator chose e as a snapshot epoch: every process writes its part of snapshot e. */
  readonly snapshot?: boolean
}

/** The run is over after epoch e (its egress is the last to publish): the partition's process may exit. */
export interface Stop {
  readonly t: "stop"
  readonly g: number
  readonly e: number
}

/** A partition has recovered and listens: the coordinator opens the first epoch once all are ready. */
export interface Ready {
  readonly t: "ready"
  readonly from: number
  /** The last committed epoch this partition found in the log (all must agree). */
  readonly lastEpoch: number
}

/** A process wrote its part of snapshot e, for these partitions; `published`: its egress is durable through it. */
export interface SnapshotWritten {
  readonly t: "snapshot"
  readonly g: number
  readonly e: number
  readonly partitions: ReadonlyArray<number>
  readonly groups: Readonly<Record<string, Chain>>
  readonly meta: string
  readonly published: number
}

/** Client requests arrived at an idle process: open the next epoch now rather than after the idle wait. */
export interface Wake {
  readonly t: "wake"
}

/** The coordinator's own process: COMMIT(e) is durable (or its write failed: the process then stops). */
export interface Durable {
  readonly t: "durable"
  readonly e: number
}

export type ToPartition = OpenEpoch | RoundData | RoundDone | Committed
export type ToCoordinator = Vote | Ready | SnapshotWritten | Wake | Durable

/** The COMMIT decision, as written to the control stream. */
export interface CommitRecord {
  readonly t: "commit"
  readonly g: number
  readonly e: number
  readonly time: number
  readonly partitions: number
  readonly votes: ReadonlyArray<{ readonly from: number; readonly position: LogPosition; readonly checksum: number }>
}

export interface FenceRecord {
  readonly t: "fence"
  readonly g: number
  readonly app: string
  readonly keyGroups: number
}

export type ControlRecord = CommitRecord | FenceRecord

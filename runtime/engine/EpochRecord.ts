import { crc32 } from "node:zlib"
import { decode, encode } from "./codec.ts"
import type { Msg } from "./protocol.ts"

/** One state entry: table (task name, or $pending / $meta), canonical key, value (undefined: deleted). */
export type StateEntry = readonly [table: string, ks: string, value: unknown]

/** One egress record: sink name, key group, that key group's output sequence, value. */
export type EgressEntry = readonly [sink: string, kg: number, seq: number, value: unknown]

/** A partition's contribution to epoch e: everything needed to redo its effects. */
export interface EpochRecord {
  readonly t: "epoch"
  readonly g: number
  readonly e: number
  readonly partition: number
  readonly state: ReadonlyArray<readonly [kg: number, entries: ReadonlyArray<StateEntry>]>
  /** Messages still to be processed (the channel state at the cut), per destination key group. */
  readonly inTransit: ReadonlyArray<readonly [kg: number, msgs: ReadonlyArray<Msg>]>
  /** Source split id → atoms consumed so far, and whether it is exhausted. */
  readonly ingress: ReadonlyArray<readonly [split: string, position: number, exhausted: boolean]>
  readonly egress: ReadonlyArray<EgressEntry>
}

export const encodeRecord = (r: EpochRecord): { payload: Uint8Array; checksum: number } => {
  let payload: Uint8Array
  try {
    payload = encode(r)
  } catch (err) {
    // Unchecked mode lets unserializable state through to here; name where it sits.
    throw new Error(`epoch ${r.e}, partition ${r.partition}: the epoch record cannot be serialized (state, in-transit messages and egress are in it): ${(err as Error).message}`)
  }
  return { payload, checksum: crc32(payload) }
}

export const checksumOf = (payload: Uint8Array): number => crc32(payload)

export const decodeRecord = (payload: Uint8Array): EpochRecord => decode(payload) as EpochRecord

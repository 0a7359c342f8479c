/**
 * Envelopes larger than the server's max_payload travel as consecutive chunks, each with headers naming the sending
 * transport and the chunk's index and count. A sender publishes all chunks of one envelope back to back on one
 * subject, and NATS keeps one connection's messages to one subject in order, so a receiver reassembles per
 * (sender, subject) and the envelope still arrives in order among that sender's others. Whole envelopes carry no
 * headers.
 */
import { headers, type MsgHdrs } from "@nats-io/transport-node"

export const SENDER = "Eddy-Sender"
export const CHUNK = "Eddy-Chunk"

export interface Frame {
  readonly data: Uint8Array
  readonly headers?: MsgHdrs
}

/** `bytes` as one frame, or as chunks of at most `chunkBytes`. */
export const frames = (sender: string, bytes: Uint8Array, chunkBytes: number): Array<Frame> => {
  if (bytes.length <= chunkBytes) return [{ data: bytes }]
  const count = Math.ceil(bytes.length / chunkBytes)
  return Array.from({ length: count }, (_, i) => {
    const h = headers()
    h.set(SENDER, sender)
    h.set(CHUNK, `${i}/${count}`)
    return { data: bytes.subarray(i * chunkBytes, Math.min(bytes.length, (i + 1) * chunkBytes)), headers: h }
  })
}

/** Collects chunks; returns the whole payload when the last chunk of an envelope arrives. */
export class Reassembler {
  private readonly partial = new Map<string, { parts: Array<Uint8Array>; count: number }>()

  /** The whole payload, undefined while chunks are missing; throws on a chunk out of sequence. */
  add(subject: string, h: MsgHdrs, data: Uint8Array): Uint8Array | undefined {
    const key = `${h.get(SENDER)}|${subject}`
    const [index, count] = h.get(CHUNK).split("/").map(Number) as [number, number]
    let p = this.partial.get(key)
    if (index === 0) {
      p = { parts: [], count }
      this.partial.set(key, p)
    }
    if (p === undefined || p.count !== count || p.parts.length !== index) {
      this.partial.delete(key)
      throw new Error(`chunk ${index}/${count} from ${key} arrived out of sequence (a chunk was lost)`)
    }
    // The client may reuse its read buffer: keep a copy.
    p.parts.push(data.slice())
    if (p.parts.length < count) return undefined
    this.partial.delete(key)
    return Buffer.concat(p.parts)
  }
}

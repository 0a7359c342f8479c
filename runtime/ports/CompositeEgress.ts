import { Effect } from "effect"
import type { EgressBatch } from "../engine/EpochRecord.ts"
import type { EgressService } from "./Egress.ts"

/** One egress of a composite, with the sinks it publishes. */
export interface EgressPart {
  readonly owns: (sink: string) => boolean
  readonly egress: EgressService
}

/**
 * Several Egress implementations as one (e.g. the embedded sinks next to the Kafka egress): each batch goes to the
 * part owning its sink. A batch with per-record sinks spanning parts is split into one-record batches (sequences
 * kept). Every part sees every epoch (possibly empty), so each completes epochs on its own; `publishedThrough` is
 * the lowest of the parts', so the log keeps what any part still needs.
 */
export const composeEgress = (parts: ReadonlyArray<EgressPart>): EgressService => {
  if (parts.length === 1) return parts[0]!.egress
  const ownerOf = (sink: string): number => {
    const i = parts.findIndex((p) => p.owns(sink))
    if (i < 0) throw new Error(`assertion: no egress publishes sink '${sink}'`)
    return i
  }
  const split = (batches: ReadonlyArray<EgressBatch>): EgressBatch[][] => {
    const out: EgressBatch[][] = parts.map(() => [])
    for (const b of batches) {
      const [sink, kg, seq, values] = b
      if (typeof sink === "string") {
        out[ownerOf(sink)]!.push(b)
        continue
      }
      const owners = sink[1].map((w) => ownerOf(sink[0][w]!))
      if (owners.every((o) => o === owners[0])) {
        out[owners[0] ?? 0]!.push(b)
        continue
      }
      values.forEach((v, i) => out[owners[i]!]!.push([sink[0][sink[1][i]!]!, kg, seq + i, [v]]))
    }
    return out
  }
  return {
    recover: (committed, lastEpoch) =>
      Effect.gen(function* () {
        const perPart = parts.map(() => [] as Array<{ e: number; egress: ReadonlyArray<EgressBatch> }>)
        for (const c of committed) split(c.egress).forEach((egress, i) => perPart[i]!.push({ e: c.e, egress }))
        for (let i = 0; i < parts.length; i++) yield* parts[i]!.egress.recover(perPart[i]!, lastEpoch)
      }),
    publish: (e, partition, egress) =>
      Effect.gen(function* () {
        const perPart = split(egress)
        for (let i = 0; i < parts.length; i++) yield* parts[i]!.egress.publish(e, partition, perPart[i]!)
      }),
    flush: Effect.forEach(parts, (p) => p.egress.flush, { discard: true }),
    publishedThrough: Effect.map(Effect.forEach(parts, (p) => p.egress.publishedThrough), (xs) => Math.min(...xs)),
  }
}

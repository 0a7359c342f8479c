/**
 * EGRESS_DONE markers of the Kafka egress, and the recovery decision they drive (pure: unit-tested without Kafka).
 *
 * An egress slot publishes the Kafka-sink records of a contiguous range of key groups [lo, hi), committed epochs in
 * order, several epochs per Kafka transaction. Each transaction also writes the slot's marker to the marker topic
 * `eddy.<namespace>.egress-done` (compacted, keyed by slot): "the records of key groups [lo, hi) of every epoch up to
 * `through` are published". A read_committed reader sees the marker iff it sees the records.
 *
 * On recovery, a record of (epoch e, key group kg) was published iff some marker covers kg with through >= e. Markers
 * of other slots count too, so a rescaled deployment (other ranges) does not publish twice what an old slot did.
 */
import type { EgressBatch } from "../engine/EpochRecord.ts"

export const MARKER_VERSION = 1

export interface EgressMarker {
  readonly v: number
  /** The transactional id of the slot that wrote it (also the record key). */
  readonly slot: string
  /** Key groups [lo, hi) the slot publishes. */
  readonly lo: number
  readonly hi: number
  /** Every epoch up to this one is published for those key groups. */
  readonly through: number
}

export const encodeMarker = (m: EgressMarker): string => JSON.stringify(m)

export const decodeMarker = (text: string): EgressMarker | string => {
  let m: unknown
  try {
    m = JSON.parse(text)
  } catch {
    return `marker is not JSON: ${text.slice(0, 80)}`
  }
  const x = m as Partial<EgressMarker>
  if (typeof x !== "object" || x === null || typeof x.slot !== "string" || typeof x.lo !== "number" || typeof x.hi !== "number" || typeof x.through !== "number") {
    return `marker has an unknown shape: ${text.slice(0, 80)}`
  }
  if (x.v !== MARKER_VERSION) return `marker has version ${String(x.v)}; this build reads version ${MARKER_VERSION}`
  return x as EgressMarker
}

/** The newest marker of each slot (later offsets win): what a compacted topic keeps anyway. */
export const latestMarkers = (markers: ReadonlyArray<EgressMarker>): ReadonlyArray<EgressMarker> => {
  const bySlot = new Map<string, EgressMarker>()
  for (const m of markers) bySlot.set(m.slot, m)
  return [...bySlot.values()]
}

/** Up to which epoch the records of key group kg are published (0: none known). */
export const publishedThroughFor = (markers: ReadonlyArray<EgressMarker>, kg: number): number => {
  let through = 0
  for (const m of markers) if (kg >= m.lo && kg < m.hi && m.through > through) through = m.through
  return through
}

export interface Committed {
  readonly e: number
  readonly egress: ReadonlyArray<EgressBatch>
}

/**
 * What recovery must publish again: for each committed epoch, its batches of key groups no marker covers for that
 * epoch (epochs left with nothing are dropped). Batches keep their order.
 */
export const toRepublish = (committed: ReadonlyArray<Committed>, markers: ReadonlyArray<EgressMarker>): Array<Committed> => {
  const latest = latestMarkers(markers)
  const cache = new Map<number, number>()
  const through = (kg: number): number => {
    let t = cache.get(kg)
    if (t === undefined) cache.set(kg, (t = publishedThroughFor(latest, kg)))
    return t
  }
  const out: Committed[] = []
  for (const c of committed) {
    const egress = c.egress.filter((b) => c.e > through(b[1]))
    if (egress.length > 0) out.push({ e: c.e, egress })
  }
  return out
}

/**
 * A marker claims an epoch the log has not committed: the namespace's marker topic belongs to another log (a
 * fresh data directory or log reusing the namespace). Publishing would skip records, so recovery refuses.
 */
export const markerAheadOfLog = (markers: ReadonlyArray<EgressMarker>, lastEpoch: number, lo: number, hi: number): EgressMarker | undefined =>
  latestMarkers(markers).find((m) => m.through > lastEpoch && m.lo < hi && lo < m.hi)

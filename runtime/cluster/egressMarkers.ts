/**
 * EGRESS_DONE markers of the Kafka egress, and the recovery decision they drive (pure: unit-tested without Kafka).
 *
 * An egress slot publishes the Kafka-sink records of a contiguous range of key groups [lo, hi), committed epochs in
 * order, several epochs per Kafka transaction. It has a few transactional producers (ids) used in turn, so that
 * transaction T(n+1) sends its records while T(n) commits; T(n+1) commits only after T(n) did. Each transaction also
 * writes a marker to the marker topic `eddy.<namespace>.egress-done` (compacted, keyed by transactional id): "for key
 * groups [lo, hi), this transaction published the epochs in (after, through], and every epoch up to `before` was
 * published when it began". A read_committed reader sees the marker iff it sees the records. The epochs in
 * (before, after] belong to the transactions still committing when it began; their own markers cover them.
 *
 * On recovery, a record of (epoch e, key group kg) was published iff the newest marker of some transactional id
 * covering kg says so: e <= before, or after < e <= through. Committing in order makes the newest markers of a slot's
 * ids cover every epoch up to the newest `through`; if a transaction was committed while an earlier one was aborted,
 * the earlier one's epochs stay uncovered and are published again. Markers of other slots count too, so a rescaled
 * deployment (other ranges) does not publish twice what an old slot did. A marker without `after` and `before`
 * (version 1, one producer per slot, or a transaction that began with nothing in flight) covers every epoch up to
 * `through`.
 */
import type { EgressBatch } from "../engine/EpochRecord.ts"

export const MARKER_VERSION = 2
/** Versions this build reads: version 1 markers are version 2 markers without `after` and `before`. */
const READS = [1, 2]

export interface EgressMarker {
  readonly v: number
  /** The transactional id that wrote it (also the record key): the slot's name, or the slot's name and "#<i>". */
  readonly slot: string
  /** Key groups [lo, hi) the slot publishes. */
  readonly lo: number
  readonly hi: number
  /** The last epoch this transaction published (every epoch up to it, unless `after` and `before` say otherwise). */
  readonly through: number
  /** This transaction published the epochs after `after` (those up to it were in earlier transactions). */
  readonly after?: number
  /** Every epoch up to `before` was published when this transaction began (before <= after). */
  readonly before?: number
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
  if (typeof x.v !== "number" || !READS.includes(x.v)) return `marker has version ${String(x.v)}; this build reads versions ${READS.join(", ")}`
  if ((x.after !== undefined || x.before !== undefined) && (typeof x.after !== "number" || typeof x.before !== "number" || x.before > x.after || x.after >= x.through)) {
    return `marker has inconsistent after/before: ${text.slice(0, 120)}`
  }
  return x as EgressMarker
}

/** The newest marker of each transactional id (later offsets win): what a compacted topic keeps anyway. */
export const latestMarkers = (markers: ReadonlyArray<EgressMarker>): ReadonlyArray<EgressMarker> => {
  const bySlot = new Map<string, EgressMarker>()
  for (const m of markers) bySlot.set(m.slot, m)
  return [...bySlot.values()]
}

/** Whether one marker says epoch e of its key groups is published. */
const covers = (m: EgressMarker, e: number): boolean => e <= m.through && (m.after === undefined || e > m.after || e <= (m.before ?? 0))

/** Whether the records of (epoch e, key group kg) are published, by the given (newest) markers. */
export const isPublished = (markers: ReadonlyArray<EgressMarker>, kg: number, e: number): boolean => {
  for (const m of markers) if (kg >= m.lo && kg < m.hi && covers(m, e)) return true
  return false
}

/** Up to which epoch the records of key group kg are published without a gap (0: none known). */
export const publishedThroughFor = (markers: ReadonlyArray<EgressMarker>, kg: number): number => {
  const mine = markers.filter((m) => kg >= m.lo && kg < m.hi)
  let through = 0
  for (;;) {
    const e = through + 1
    // The end of the run of epochs a covering marker vouches for, starting at e.
    let end = through
    for (const m of mine) if (covers(m, e)) end = Math.max(end, m.after !== undefined && e <= (m.before ?? 0) ? m.before! : m.through)
    if (end === through) return through
    through = end
  }
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
  const out: Committed[] = []
  for (const c of committed) {
    const egress = c.egress.filter((b) => !isPublished(latest, b[1], c.e))
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

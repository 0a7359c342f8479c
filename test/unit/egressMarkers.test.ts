import { describe, expect, it } from "vitest"
import type { EgressBatch } from "../../runtime/engine/EpochRecord.ts"
import { decodeMarker, encodeMarker, isPublished, markerAheadOfLog, MARKER_VERSION, publishedThroughFor, toRepublish, type EgressMarker } from "../../runtime/cluster/egressMarkers.ts"

const batch = (kg: number, seq: number, n: number): EgressBatch => ["out", kg, seq, Array.from({ length: n }, (_, i) => `${kg}:${seq + i}`)]
const marker = (slot: string, lo: number, hi: number, through: number): EgressMarker => ({ v: MARKER_VERSION, slot, lo, hi, through })

// Epochs 1..5, each with records of key groups 3 and 70.
const committed = [1, 2, 3, 4, 5].map((e) => ({ e, egress: [batch(3, e * 10, 2), batch(70, e * 10, 1)] }))

describe("Kafka egress recovery decisions (EGRESS_DONE markers)", () => {
  it("with no marker, every committed epoch is published again", () => {
    expect(toRepublish(committed, [])).toEqual(committed)
  })

  it("epochs a marker covers are not published again; the others are, whole", () => {
    const again = toRepublish(committed, [marker("a", 0, 64, 3), marker("b", 64, 128, 3)])
    expect(again).toEqual(committed.filter((c) => c.e > 3))
  })

  it("a marker covers only its key groups: another slot's epochs without marker are republished", () => {
    const again = toRepublish(committed, [marker("a", 0, 64, 5), marker("b", 64, 128, 2)])
    expect(again).toEqual([3, 4, 5].map((e) => ({ e, egress: [batch(70, e * 10, 1)] })))
  })

  it("the newest marker of a slot wins, and markers of older slots (before a rescale) still count", () => {
    const markers = [marker("a", 0, 128, 1), marker("a", 0, 128, 4), marker("old", 0, 32, 5)]
    expect(publishedThroughFor(markers, 3)).toBe(5)
    expect(publishedThroughFor(markers, 70)).toBe(4)
    expect(toRepublish(committed, [marker("a", 0, 128, 4), marker("a", 0, 128, 2)])).toEqual(committed.filter((c) => c.e > 2))
    expect(toRepublish(committed, markers)).toEqual([{ e: 5, egress: [batch(70, 50, 1)] }])
  })

  it("when every epoch has its marker, nothing is published twice", () => {
    expect(toRepublish(committed, [marker("all", 0, 128, 5)])).toEqual([])
  })

  it("a marker ahead of the log (namespace reused by a fresh log) is detected for overlapping slots only", () => {
    const markers = [marker("a", 0, 64, 9), marker("b", 64, 128, 2)]
    expect(markerAheadOfLog(markers, 5, 0, 64)?.slot).toBe("a")
    expect(markerAheadOfLog(markers, 5, 64, 128)).toBeUndefined()
    expect(markerAheadOfLog(markers, 9, 0, 128)).toBeUndefined()
  })

  // Two transactional ids per slot, used in turn; T(n+1) began while T(n) was committing: its marker says it
  // published (after, through] and that everything up to `before` was published when it began.
  const overlapped = (slot: string, through: number, after: number, before: number): EgressMarker => ({ v: MARKER_VERSION, slot, lo: 0, hi: 128, through, after, before })

  it("overlapping transactions committed in order: the newest marker of each id together cover every epoch", () => {
    // T1 = epoch 1 on id s (nothing in flight), T2 = epoch 2 on s#1 (T1 committing), T3 = epochs 3..4 on s (T2
    // committing), T4 = epoch 5 on s#1 (T3 committing): the compacted topic keeps T3 and T4.
    const latest = [overlapped("s", 4, 2, 1), overlapped("s#1", 5, 4, 2)]
    expect(toRepublish(committed, latest)).toEqual([])
    expect(publishedThroughFor(latest, 3)).toBe(5)
    // Only T3 committed so far (T4 was aborted): epoch 5 is published again, nothing else.
    expect(toRepublish(committed, [overlapped("s", 4, 2, 1), overlapped("s#1", 2, 1, 1)])).toEqual(committed.filter((c) => c.e === 5))
  })

  it("T(n+1) committed while T(n) was aborted: exactly T(n)'s epochs are published again", () => {
    // T1 = epoch 1 on s, T2 = epoch 2 on s#1 (aborted), T3 = epochs 3..4 on s, began while T2 was committing: T3's
    // marker replaced T1's, and s#1 has none.
    const markers = [overlapped("s", 4, 2, 1)]
    expect(isPublished(markers, 3, 1)).toBe(true)
    expect(isPublished(markers, 3, 2)).toBe(false)
    expect(isPublished(markers, 3, 3)).toBe(true)
    expect(toRepublish(committed, markers)).toEqual(committed.filter((c) => c.e === 2 || c.e === 5))
    expect(publishedThroughFor(markers, 3)).toBe(1)
    // With T2's own marker, the gap is closed.
    expect(toRepublish(committed, [...markers, { v: MARKER_VERSION, slot: "s#1", lo: 0, hi: 128, through: 2 }])).toEqual(committed.filter((c) => c.e === 5))
  })

  it("markers round-trip; foreign or newer ones are refused with a reason", () => {
    const m = marker("eddy.ns.egress.0-64", 0, 64, 12)
    expect(decodeMarker(encodeMarker(m))).toEqual(m)
    expect(decodeMarker("{oops")).toMatch(/not JSON/)
    expect(decodeMarker(JSON.stringify({ slot: 1 }))).toMatch(/unknown shape/)
    expect(decodeMarker(JSON.stringify({ ...m, v: 99 }))).toMatch(/version 99/)
    // Version 1 (one producer per slot) is read as covering every epoch up to `through`.
    expect(decodeMarker(JSON.stringify({ ...m, v: 1 }))).toEqual({ ...m, v: 1 })
    const o = overlapped("s#1", 9, 7, 5)
    expect(decodeMarker(encodeMarker(o))).toEqual(o)
    expect(decodeMarker(JSON.stringify({ ...o, before: 8 }))).toMatch(/inconsistent/)
    expect(decodeMarker(JSON.stringify({ ...o, after: 9 }))).toMatch(/inconsistent/)
    expect(decodeMarker(JSON.stringify({ ...o, before: undefined }))).toMatch(/inconsistent/)
  })
})

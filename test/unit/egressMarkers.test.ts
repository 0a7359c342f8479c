import { describe, expect, it } from "vitest"
import type { EgressBatch } from "../../runtime/engine/EpochRecord.ts"
import { decodeMarker, encodeMarker, markerAheadOfLog, MARKER_VERSION, publishedThroughFor, toRepublish, type EgressMarker } from "../../runtime/cluster/egressMarkers.ts"

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

  it("markers round-trip; foreign or newer ones are refused with a reason", () => {
    const m = marker("eddy.ns.egress.0-64", 0, 64, 12)
    expect(decodeMarker(encodeMarker(m))).toEqual(m)
    expect(decodeMarker("{oops")).toMatch(/not JSON/)
    expect(decodeMarker(JSON.stringify({ slot: 1 }))).toMatch(/unknown shape/)
    expect(decodeMarker(JSON.stringify({ ...m, v: 99 }))).toMatch(/version 99/)
  })
})

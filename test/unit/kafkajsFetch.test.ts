import { describe, expect, it } from "vitest"
import { takeRecords, type FetchedMessage, type FetchedPartition } from "../../kafkajs/kafkajsFetch.ts"

// What the ingress and the log reader take from a partition of a Fetch response, and where they fetch next.
interface Batch {
  readonly first: number
  readonly lastDelta: number
  readonly producer?: string
  readonly transactional?: boolean
  readonly control?: boolean
  /** Offsets present (compaction removes some); all of first..first+lastDelta when absent. */
  readonly offsets?: ReadonlyArray<number>
  /** For a control batch: the marker's key (commit [0,0,0,1], abort [0,0,0,0]). */
  readonly commit?: boolean
}

const messagesOf = (batches: ReadonlyArray<Batch>): FetchedMessage[] =>
  batches.flatMap((b) =>
    (b.offsets ?? Array.from({ length: b.lastDelta + 1 }, (_, i) => b.first + i)).map((o) => ({
      offset: String(o),
      timestamp: "1000",
      key: b.control === true ? Buffer.from([0, 0, 0, b.commit === false ? 0 : 1]) : null,
      value: b.control === true ? null : Buffer.from(`v${o}`),
      isControlRecord: b.control === true,
      batchContext: { producerId: b.producer ?? "-1", inTransaction: b.transactional === true, firstOffset: String(b.first), lastOffsetDelta: b.lastDelta },
    })),
  )

const partition = (batches: ReadonlyArray<Batch>, aborted: ReadonlyArray<{ producerId: string; firstOffset: string }> = []): FetchedPartition => ({
  partition: 0,
  highWatermark: "1000",
  abortedTransactions: aborted,
  messages: messagesOf(batches),
})

const offsets = (p: FetchedPartition, from: number) => {
  const t = takeRecords(p, from)
  return { offsets: t.messages.map((m) => Number(m.offset)), next: t.next }
}

describe("takeRecords (a partition of a Fetch response, read_committed)", () => {
  it("nothing fetched leaves the position where it was", () => {
    expect(offsets(partition([]), 42)).toEqual({ offsets: [], next: 42 })
  })

  it("records below the position (the start of the batch holding it) are dropped", () => {
    expect(offsets(partition([{ first: 10, lastDelta: 9 }]), 14)).toEqual({ offsets: [14, 15, 16, 17, 18, 19], next: 20 })
  })

  it("control records are not returned, but the position moves past them", () => {
    const p = partition([
      { first: 0, lastDelta: 2, producer: "7", transactional: true },
      { first: 3, lastDelta: 0, producer: "7", transactional: true, control: true },
    ])
    expect(offsets(p, 0)).toEqual({ offsets: [0, 1, 2], next: 4 })
    expect(offsets(partition([{ first: 3, lastDelta: 0, producer: "7", transactional: true, control: true }]), 3)).toEqual({ offsets: [], next: 4 })
  })

  it("an aborted transaction's records are dropped, a committed one's kept, other producers' untouched", () => {
    const p = partition(
      [
        { first: 0, lastDelta: 1, producer: "1", transactional: true },
        { first: 2, lastDelta: 0, producer: "2" },
        { first: 3, lastDelta: 0, producer: "1", transactional: true, control: true, commit: false },
        { first: 4, lastDelta: 1, producer: "1", transactional: true },
        { first: 6, lastDelta: 0, producer: "1", transactional: true, control: true, commit: true },
      ],
      [{ producerId: "1", firstOffset: "0" }],
    )
    expect(offsets(p, 0)).toEqual({ offsets: [2, 4, 5], next: 7 })
  })

  it("a batch whose last records were compacted away: the position moves past its last offset, not only its last record", () => {
    const p = partition([{ first: 20, lastDelta: 9, offsets: [20, 23] }])
    expect(offsets(p, 20)).toEqual({ offsets: [20, 23], next: 30 })
    // Asked from inside the compacted tail: nothing to return, and the same batch is not asked for again.
    expect(offsets(p, 25)).toEqual({ offsets: [], next: 30 })
  })
})

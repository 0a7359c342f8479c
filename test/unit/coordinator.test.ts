import { describe, expect, it } from "vitest"
import { CoordinatorCore, type CoordinatorOptions, type CoordinatorOutput } from "../../runtime/engine/CoordinatorCore.ts"
import type { Vote } from "../../runtime/engine/protocol.ts"

// The coordinator driven by hand: with pipelining, epoch e+1 opens while COMMIT(e) is written, but never more than
// two epochs are uncommitted, COMMITs are handed out one at a time in epoch order, and committed / idle / finished
// are only ever announced once the COMMIT is durable.
const base: CoordinatorOptions = { partitions: 2, epochAtoms: 10, roundLimit: 8, inTransitLimit: 1000, epochMs: 5, clock: "logical", stopWhenIdle: false, pipeline: true }

const vote = (e: number, from: number, o: Partial<Vote> = {}): Vote => ({ t: "vote", g: 1, e, from, position: { part: 0, offset: e * 10 + from }, checksum: 0, inTransit: 0, exhausted: false, failures: 0, records: 1, ...o })

const kinds = (out: CoordinatorOutput[]) =>
  out.splice(0).map((o) => (o.o === "open" ? `open ${o.env.e}${o.env.pipelined === true ? " pipelined" : ""}` : o.o === "commit" ? `commit ${o.record.e}` : `${o.o} ${o.e}`))

const voteAll = (c: CoordinatorCore, e: number, o: Partial<Vote> = {}) => {
  c.onVote(vote(e, 0, o))
  c.onVote(vote(e, 1, o))
}

describe("coordinator pipelining", () => {
  it("opens e+1 when e's votes are in, announces e committed only once durable, and keeps at most two epochs uncommitted", () => {
    const c = new CoordinatorCore(1, 0, 0, base)
    c.open()
    expect(kinds(c.out)).toEqual(["open 1"])
    voteAll(c, 1)
    expect(kinds(c.out)).toEqual(["commit 1", "open 2 pipelined"])
    // Epoch 2 votes before COMMIT(1) is durable: its COMMIT waits, and epoch 3 does not open (two uncommitted).
    voteAll(c, 2)
    expect(kinds(c.out)).toEqual([])
    expect(() => c.open()).toThrow(/assertion/)
    c.onCommitDurable(1)
    expect(kinds(c.out)).toEqual(["committed 1", "commit 2", "open 3 pipelined"])
    expect(() => c.onCommitDurable(3)).toThrow(/assertion/)
  })

  it("idles only after the COMMIT is durable; a wake in between opens the next epoch after all", () => {
    const c = new CoordinatorCore(1, 0, 0, base)
    c.open()
    c.out.length = 0
    voteAll(c, 1, { exhausted: true })
    expect(kinds(c.out)).toEqual(["commit 1"])
    c.onCommitDurable(1)
    expect(kinds(c.out)).toEqual(["committed 1", "idle 1"])

    c.open()
    c.out.length = 0
    voteAll(c, 2, { exhausted: true })
    expect(kinds(c.out)).toEqual(["commit 2"])
    expect(c.wake()).toBe(true)
    expect(kinds(c.out)).toEqual(["open 3 pipelined"])
    c.onCommitDurable(2)
    expect(kinds(c.out)).toEqual(["committed 2"])
    // A wake while an epoch runs changes nothing here (the engine keeps it for the next idle).
    expect(c.wake()).toBe(false)
  })

  it("polls shouldStop once per epoch when its votes are in; the epoch it says so for is the last", () => {
    const polled: number[] = []
    const c = new CoordinatorCore(1, 0, 0, { ...base, shouldStop: (e) => (polled.push(e), e >= 2) })
    c.open()
    voteAll(c, 1)
    voteAll(c, 2)
    expect(kinds(c.out)).toEqual(["open 1", "commit 1", "open 2 pipelined"])
    c.onCommitDurable(1)
    expect(kinds(c.out)).toEqual(["committed 1", "commit 2"])
    c.onCommitDurable(2)
    expect(kinds(c.out)).toEqual(["committed 2", "finished 2"])
    expect(polled).toEqual([1, 2])
  })

  it("without pipelining, the next epoch opens only after the COMMIT is durable", () => {
    const c = new CoordinatorCore(1, 0, 0, { ...base, pipeline: false })
    c.open()
    voteAll(c, 1)
    expect(kinds(c.out)).toEqual(["open 1", "commit 1"])
    c.onCommitDurable(1)
    expect(kinds(c.out)).toEqual(["committed 1", "open 2"])
  })
})

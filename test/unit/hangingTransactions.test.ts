import { describe, expect, it } from "vitest"
import { hangingTransactions } from "../../runtime/cluster/hangingTransactions.ts"
import type { CoordinatorTransaction, PartitionProducer } from "../../kafkajs/kafkajsTransactionAdmin.ts"

const coordinator = (producerId: number, producerEpoch: number, state: string): CoordinatorTransaction => ({ transactionalId: `t${producerId}`, state, producerId, producerEpoch })
const producer = (producerId: number, producerEpoch: number, currentTxnStartOffset: number): PartitionProducer => ({ producerId, producerEpoch, lastTimestamp: 1, coordinatorEpoch: 7, currentTxnStartOffset })
const on = (...producers: PartitionProducer[]) => [{ topic: "out", partition: 3, producers }]

describe("hanging transactions of the egress's producers (how recovery ends them)", () => {
  it("commits one its coordinator committed (same producer and epoch), aborts one it did not", () => {
    expect(hangingTransactions([coordinator(10, 2, "CompleteCommit")], on(producer(10, 2, 345)))).toEqual([
      { topic: "out", partition: 3, producerId: 10, producerEpoch: 2, coordinatorEpoch: 7, startOffset: 345, commit: true },
    ])
    expect(hangingTransactions([coordinator(10, 2, "PrepareCommit")], on(producer(10, 2, 5)))[0]?.commit).toBe(true)
    for (const state of ["CompleteAbort", "PrepareAbort", "Ongoing", "Empty"]) {
      expect(hangingTransactions([coordinator(10, 2, state)], on(producer(10, 2, 5)))[0]?.commit, state).toBe(false)
    }
  })

  it("aborts an open transaction of an older epoch (a fence or a timeout ended it), even if the coordinator's last one committed", () => {
    expect(hangingTransactions([coordinator(10, 3, "CompleteCommit")], on(producer(10, 2, 5)))[0]?.commit).toBe(false)
  })

  it("leaves closed transactions, other producers, and epochs later than the coordinator's", () => {
    expect(hangingTransactions([coordinator(10, 2, "CompleteCommit")], on(producer(10, 2, -1), producer(11, 0, 4), producer(10, 3, 9)))).toEqual([])
  })
})

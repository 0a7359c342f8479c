/**
 * Hanging transactions of the Kafka egress's own producers, and how recovery ends them.
 *
 * A transaction hangs when a partition holds its records but never gets its COMMIT or ABORT marker: the partition's
 * last stable offset stops at its first record, so read_committed readers see nothing after it, for ever (Kafka's
 * transaction timeout does not help: the coordinator believes the transaction ended). Found with Kafka 4.4: a broker
 * stopped (SIGTERM) while a transaction commits can log CompleteCommit for it without its markers on the partitions
 * (docs/protocol.md, "Hanging transactions").
 *
 * Recovery, before it fences the slot's transactional ids, asks the coordinator what it holds for each (the verdict of
 * each id's last transaction); after fencing, no open transaction of those producers can still be alive, so any the
 * partitions report is hanging, and is ended as its coordinator decided: COMMIT if the coordinator committed that
 * transaction (its producer was told so, and the epochs it carried count as published), ABORT otherwise (recovery
 * republishes every epoch no committed marker covers).
 */
import type { CoordinatorTransaction, PartitionProducer } from "../../kafkajs/kafkajsTransactionAdmin.ts"

export interface HangingTransaction {
  readonly topic: string
  readonly partition: number
  readonly producerId: number
  readonly producerEpoch: number
  readonly coordinatorEpoch: number
  /** The offset of its first record (where read_committed readers stop). */
  readonly startOffset: number
  readonly commit: boolean
}

/**
 * The open transactions of the coordinator's producers (`before`: read before fencing) that the partitions report
 * after fencing, each with how to end it.
 */
export const hangingTransactions = (
  before: ReadonlyArray<CoordinatorTransaction>,
  partitions: ReadonlyArray<{ readonly topic: string; readonly partition: number; readonly producers: ReadonlyArray<PartitionProducer> }>,
): HangingTransaction[] => {
  const byProducer = new Map(before.map((t) => [t.producerId, t]))
  const out: HangingTransaction[] = []
  for (const { topic, partition, producers } of partitions) {
    for (const p of producers) {
      const t = byProducer.get(p.producerId)
      if (t === undefined || p.currentTxnStartOffset < 0) continue
      // A later epoch than the coordinator's: not a transaction this slot's producers began before recovery.
      if (p.producerEpoch > t.producerEpoch) continue
      // Of the coordinator's epoch: its last transaction; the coordinator decided it (or the fence aborted it while
      // ongoing). Of an older epoch: ended by a fence or a timeout, both of which abort.
      const commit = p.producerEpoch === t.producerEpoch && (t.state === "CompleteCommit" || t.state === "PrepareCommit")
      out.push({ topic, partition, producerId: p.producerId, producerEpoch: p.producerEpoch, coordinatorEpoch: p.coordinatorEpoch, startOffset: p.currentTxnStartOffset, commit })
    }
  }
  return out
}

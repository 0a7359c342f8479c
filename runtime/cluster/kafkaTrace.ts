/**
 * Measurement hooks on the Kafka ingress and egress path (bench/kafka-io.ts sets them to find where end-to-end
 * latency goes). Unset, each costs one property check per batch or transaction.
 */
import type { KafkaRecord } from "../../workflows/kafka.ts"

export interface KafkaTrace {
  /** A fetched batch of records reached the ingress buffer at `at` (Date.now()). */
  fetched?: (records: ReadonlyArray<KafkaRecord>, at: number) => void
  /** Partition `partition` handed epoch e's records to the egress thread at `at` (the engine's thread). */
  posted?: (e: number, partition: number, at: number) => void
  /** Epoch e is complete at the egress (every hosted partition published it) at `at`. */
  ready?: (e: number, at: number) => void
  /** One egress transaction: its epochs, when it began, when its records were acknowledged, when it committed. */
  transaction?: (t: { readonly epochs: ReadonlyArray<number>; readonly begin: number; readonly sent: number; readonly committed: number }) => void
  /** Experiments: overrides the egress's default transactions in flight. */
  transactionsInFlight?: number
  /** Experiments: the Kafka egress runs on the engine's thread (as before KafkaEgressThread.ts) instead of a worker. */
  egressOnEngineThread?: boolean
  /**
   * Experiments: the Kafka ingress's consumers run in a worker thread (KafkaIngressThread.ts) instead of the engine's.
   * Off by default: on this 2-core machine it did not cut the end-to-end latency (docs/performance.md).
   */
  ingressInWorker?: boolean
}

export const kafkaTrace: KafkaTrace = {}

/**
 * What the engine's thread and the Kafka egress's worker thread (KafkaEgressThread.ts, kafkaEgressWorker.ts) say to
 * each other. Records cross already encoded by their sink's functions (user code stays on the engine's thread): a
 * value alone (no key, no headers) or [value, key, headers].
 */
import type { EgressBatch } from "../engine/EpochRecord.ts"
import type { KafkaEgressOptions } from "./KafkaEgress.ts"

export type EncodedRecord = string | Uint8Array | readonly [value: string | Uint8Array, key: string | Uint8Array | null, headers: Readonly<Record<string, string>> | null]

/** A sink as the worker knows it: where its records go. */
export interface WireSink {
  readonly name: string
  readonly topic: string
  readonly partitions: number
}

/** KafkaEgressOptions as they cross to the worker: sinks as data (their functions ran on the engine's thread). */
export interface WireOptions extends Omit<KafkaEgressOptions, "sinks" | "testHook"> {
  readonly sinks: ReadonlyArray<WireSink>
  /** Forward the kafkaTrace hooks' events (the bench set them on the engine's thread). */
  readonly trace: { readonly ready: boolean; readonly transaction: boolean }
}

export type ToWorker =
  | { readonly t: "recover"; readonly id: number; readonly committed: ReadonlyArray<{ readonly e: number; readonly egress: ReadonlyArray<EgressBatch> }>; readonly lastEpoch: number | undefined }
  | { readonly t: "publish"; readonly e: number; readonly partition: number; readonly egress: ReadonlyArray<EgressBatch> }
  | { readonly t: "flush"; readonly id: number }
  | { readonly t: "publishedThrough"; readonly id: number }
  | { readonly t: "close"; readonly id: number }

export type FromWorker =
  | { readonly t: "started" }
  | { readonly t: "done"; readonly id: number; readonly error?: string; readonly value?: number }
  /** The egress failed (a publish found it failed): later calls fail with this. */
  | { readonly t: "failed"; readonly error: string }
  | { readonly t: "ready"; readonly e: number; readonly at: number }
  | { readonly t: "transaction"; readonly epochs: ReadonlyArray<number>; readonly begin: number; readonly sent: number; readonly committed: number }

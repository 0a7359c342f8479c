/** What the engine's thread and the Kafka ingress's worker thread say to each other (KafkaIngressThread.ts). */
import type { FeedSpec } from "./KafkaIngress.ts"

export type IngressToWorker =
  | { readonly t: "open"; readonly id: number; readonly spec: FeedSpec; readonly position: number }
  | { readonly t: "pause"; readonly id: number }
  | { readonly t: "resume"; readonly id: number }
  | { readonly t: "close"; readonly id: number }

export type IngressFromWorker =
  | { readonly t: "started"; readonly id: number; readonly end: number; readonly position: number }
  | { readonly t: "startFailed"; readonly id: number; readonly error: string }
  | {
      readonly t: "records"
      readonly id: number
      /** When the batch was fetched (Date.now()). */
      readonly at: number
      readonly offsets: ReadonlyArray<number>
      readonly timestamps: ReadonlyArray<number>
      /** Per record, its key's and its value's length in `bytes` (-1: null), in that order. */
      readonly lengths: Int32Array
      readonly bytes: ArrayBuffer
      /** Per record its headers (null: none); null when no record has any. */
      readonly headers: ReadonlyArray<Readonly<Record<string, string>> | null> | null
    }
  | { readonly t: "fetchedTo"; readonly id: number; readonly offset: number }
  | { readonly t: "failed"; readonly id: number; readonly error: string }
  | { readonly t: "closed"; readonly id: number }

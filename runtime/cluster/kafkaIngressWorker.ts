/**
 * The Kafka ingress's worker thread: runs every split's ConsumerFeed (kafkajs fetching and record decoding) and
 * posts the records to the engine's thread, keys and values packed into one transferred buffer per batch
 * (KafkaIngressThread.ts unpacks them).
 */
import { parentPort, workerData } from "node:worker_threads"
import type { KafkaRecord } from "../../workflows/kafka.ts"
import { ConsumerFeed, newIngressKafka, type KafkaIngressOptions } from "./KafkaIngress.ts"
import { ConsumerPool } from "./KafkaTopicConsumer.ts"
import type { IngressFromWorker, IngressToWorker } from "./kafkaIngressWire.ts"

const port = parentPort
if (port === null) throw new Error("kafkaIngressWorker.ts runs in a worker thread")
const options = workerData as KafkaIngressOptions
const pool = new ConsumerPool(newIngressKafka(options), options)
const feeds = new Map<number, ConsumerFeed>()
const post = (m: IngressFromWorker, transfer?: ReadonlyArray<ArrayBuffer>) => port.postMessage(m, transfer === undefined ? undefined : [...transfer])

/** Keys and values of a batch copied into one buffer; lengths -1 for null. */
const pack = (records: ReadonlyArray<KafkaRecord>): { bytes: ArrayBuffer; lengths: Int32Array } => {
  const lengths = new Int32Array(records.length * 2)
  let total = 0
  records.forEach((r, i) => {
    lengths[2 * i] = r.key === null ? -1 : r.key.byteLength
    lengths[2 * i + 1] = r.value === null ? -1 : r.value.byteLength
    total += (r.key?.byteLength ?? 0) + (r.value?.byteLength ?? 0)
  })
  const bytes = new Uint8Array(total)
  let at = 0
  for (const r of records) {
    if (r.key !== null) {
      bytes.set(r.key, at)
      at += r.key.byteLength
    }
    if (r.value !== null) {
      bytes.set(r.value, at)
      at += r.value.byteLength
    }
  }
  return { bytes: bytes.buffer, lengths }
}

port.on("message", (m: IngressToWorker) => {
  switch (m.t) {
    case "open": {
      const feed = new ConsumerFeed(pool, m.spec)
      feeds.set(m.id, feed)
      feed
        .start(m.position, {
          records: (records, at) => {
            const { bytes, lengths } = pack(records)
            const headers = records.map((r) => (Object.keys(r.headers).length === 0 ? null : r.headers))
            post(
              { t: "records", id: m.id, at, offsets: records.map((r) => r.offset), timestamps: records.map((r) => r.timestamp), lengths, bytes, headers: headers.some((h) => h !== null) ? headers : null },
              [bytes, lengths.buffer as ArrayBuffer],
            )
          },
          fetchedTo: (offset) => post({ t: "fetchedTo", id: m.id, offset }),
          failed: (error) => post({ t: "failed", id: m.id, error: error.message }),
        })
        .then(
          ({ end, position }) => post({ t: "started", id: m.id, end, position }),
          (error: unknown) => post({ t: "startFailed", id: m.id, error: error instanceof Error ? error.message : String(error) }),
        )
      return
    }
    case "pause":
      return feeds.get(m.id)?.pause()
    case "resume":
      return feeds.get(m.id)?.resume()
    case "close": {
      const feed = feeds.get(m.id)
      feeds.delete(m.id)
      void (feed?.close() ?? Promise.resolve()).then(() => post({ t: "closed", id: m.id }))
      return
    }
  }
})

import "../../kafkajs/kafkajsAbortFix.ts"
import { Kafka, logLevel } from "kafkajs"
import { readEndpoints } from "../config/Endpoints.ts"
import { ConsumerPool } from "../cluster/KafkaTopicConsumer.ts"
import { progressLine } from "./progress.ts"

/**
 * `eddy tail <topic>`: the committed records of a Kafka topic (read_committed: records of aborted or open
 * transactions never show), one value per line; stops after --limit records, after --idle-ms without a new
 * record, or on Ctrl-C.
 */
export const tailCommand = async (topic: string, flags: Record<string, string | boolean>): Promise<number> => {
  const from = flags["from"] === undefined ? "earliest" : String(flags["from"])
  if (from !== "earliest" && from !== "latest") throw new Error(`--from is earliest or latest, got '${from}'`)
  const limit = flags["limit"] === undefined ? undefined : Number(flags["limit"])
  const idleMs = flags["idle-ms"] === undefined ? undefined : Number(flags["idle-ms"])
  if (limit !== undefined && !(Number.isInteger(limit) && limit > 0)) throw new Error("--limit expects a positive integer")
  if (idleMs !== undefined && !(Number.isInteger(idleMs) && idleMs > 0)) throw new Error("--idle-ms expects a positive integer")
  const brokers = [...readEndpoints().kafka.brokers]
  const kafka = new Kafka({ clientId: "eddy-tail", brokers, logLevel: logLevel.NOTHING, retry: { retries: 2 } })
  const admin = kafka.admin()
  try {
    await admin.connect()
  } catch (err) {
    throw new Error(`cannot reach Kafka at ${brokers.join(",")} (set EDDY_KAFKA_BROKERS; npm run infra:up): ${err instanceof Error ? err.message : String(err)}`)
  }
  const topics = await admin.listTopics()
  if (!topics.includes(topic)) {
    await admin.disconnect()
    throw new Error(`Kafka at ${brokers.join(",")} has no topic '${topic}'`)
  }
  // In partition order (the broker's answer need not be): the start line lists them so.
  const offsets = (
    await admin.fetchTopicOffsets(topic).catch(async (err: unknown) => {
      await admin.disconnect()
      throw err
    })
  ).sort((a, b) => a.partition - b.partition)
  const positions = new Map<number, number>(offsets.map((o) => [o.partition, Number(from === "earliest" ? o.low : o.high)]))
  let records = 0
  let lag = 0
  const refreshLag = async () => {
    const now = await admin.fetchTopicOffsets(topic).catch(() => undefined)
    if (now === undefined) return
    lag = 0
    for (const o of now) lag += Math.max(0, Number(o.high) - (positions.get(o.partition) ?? 0))
  }
  const progress = progressLine(() => `eddy tail ${topic}: ${records} records · lag ${lag}`)
  const lagTimer = setInterval(() => void refreshLag(), 1000)
  let lastRecord = Date.now()
  let failure: Error | undefined
  let stop: () => void = () => undefined
  const stopped = new Promise<void>((resolve) => (stop = resolve))
  const onSignal = () => stop()
  process.once("SIGINT", onSignal)
  process.once("SIGTERM", onSignal)
  const idleTimer = idleMs === undefined ? undefined : setInterval(() => Date.now() - lastRecord > idleMs && stop(), Math.min(idleMs, 200))
  // The ingress's fetch loop (no consumer group to form, nothing left behind), one split per partition.
  const pool = new ConsumerPool(kafka, { brokers })
  const members = offsets.map((o) =>
    pool.join({ topic, partition: o.partition, partitions: offsets.length, bounded: false, splitId: `tail:${o.partition}` }, positions.get(o.partition)!, {
      records: (batch) => {
        for (const r of batch) {
          if (limit !== undefined && records >= limit) break
          process.stdout.write((r.value === null ? "null" : Buffer.from(r.value).toString("utf8")) + "\n")
          records++
          lastRecord = Date.now()
          positions.set(r.partition, r.offset + 1)
        }
        if (limit !== undefined && records >= limit) stop()
      },
      fetchedTo: (offset) => void positions.set(o.partition, offset),
      failed: (error) => {
        failure = error
        stop()
      },
    }),
  )
  try {
    const started = await Promise.all(members.map((m) => m.started))
    process.stderr.write(`eddy tail ${topic}: reading from ${from} (${started.map((s, i) => `partition ${offsets[i]!.partition} at ${s.position}`).join(", ")})\n`)
    await stopped
  } finally {
    clearInterval(lagTimer)
    if (idleTimer !== undefined) clearInterval(idleTimer)
    process.off("SIGINT", onSignal)
    process.off("SIGTERM", onSignal)
    await refreshLag()
    progress.done()
    await Promise.all(members.map((m) => m.leave().catch(() => undefined)))
    await admin.disconnect().catch(() => undefined)
  }
  if (failure !== undefined) throw failure
  return 0
}

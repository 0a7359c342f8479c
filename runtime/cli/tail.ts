import "../cluster/kafkajsAbortFix.ts"
import { Kafka, logLevel } from "kafkajs"
import { readEndpoints } from "../config/Endpoints.ts"
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
  const consumer = kafka.consumer({ groupId: `eddy-tail-${process.pid}-${Date.now()}`, readUncommitted: false })
  const positions = new Map<number, number>()
  let records = 0
  let lag = 0
  const refreshLag = async () => {
    const offsets = await admin.fetchTopicOffsets(topic).catch(() => undefined)
    if (offsets === undefined) return
    lag = 0
    for (const o of offsets) lag += Math.max(0, Number(o.high) - (positions.get(o.partition) ?? Number(from === "earliest" ? o.low : o.high)))
  }
  const progress = progressLine(() => `eddy tail ${topic}: ${records} records · lag ${lag}`)
  const lagTimer = setInterval(() => void refreshLag(), 1000)
  let lastRecord = Date.now()
  let stop: () => void = () => undefined
  const stopped = new Promise<void>((resolve) => (stop = resolve))
  const onSignal = () => stop()
  process.once("SIGINT", onSignal)
  process.once("SIGTERM", onSignal)
  const idleTimer = idleMs === undefined ? undefined : setInterval(() => Date.now() - lastRecord > idleMs && stop(), Math.min(idleMs, 200))
  try {
    await consumer.connect()
    await consumer.subscribe({ topic, fromBeginning: from === "earliest" })
    await consumer.run({
      autoCommit: false,
      eachMessage: async ({ partition, message }) => {
        if (limit !== undefined && records >= limit) return
        process.stdout.write((message.value?.toString("utf8") ?? "null") + "\n")
        records++
        lastRecord = Date.now()
        positions.set(partition, Number(message.offset) + 1)
        if (limit !== undefined && records >= limit) stop()
      },
    })
    await stopped
  } finally {
    clearInterval(lagTimer)
    if (idleTimer !== undefined) clearInterval(idleTimer)
    process.off("SIGINT", onSignal)
    process.off("SIGTERM", onSignal)
    await refreshLag()
    progress.done()
    await consumer.disconnect().catch(() => undefined)
    await admin.disconnect().catch(() => undefined)
  }
  return 0
}

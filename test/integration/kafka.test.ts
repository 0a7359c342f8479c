// Smoke test against the real Kafka broker that `npm run infra:up` starts (or EDDY_KAFKA_BROKERS points to).
// It fails, never skips, when the broker cannot be reached.
import { randomUUID } from "node:crypto"
import "../../kafkajs/kafkajsAbortFix.ts"
import { Kafka, logLevel, type Consumer } from "kafkajs"
import { describe, expect, it } from "vitest"
import { createTopicsReady } from "../../runtime/cluster/kafkaCreateTopics.ts"
import { readEndpoints } from "../../runtime/config/Endpoints.ts"

const endpoints = readEndpoints()

const kafka = new Kafka({
  clientId: "eddy-smoke",
  brokers: [...endpoints.kafka.brokers],
  logLevel: logLevel.NOTHING,
  connectionTimeout: 5_000,
  retry: { retries: 4, initialRetryTime: 200 },
})

/** Reads `topic` from the beginning until `done` holds for the values seen, or the deadline passes. */
const readAll = async (
  consumer: Consumer,
  topic: string,
  done: (values: ReadonlyArray<string>) => boolean,
  timeoutMs = 30_000,
): Promise<ReadonlyArray<string>> => {
  const values: string[] = []
  await consumer.connect()
  try {
    await consumer.subscribe({ topic, fromBeginning: true })
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`timed out reading ${topic}; saw ${JSON.stringify(values)}`)),
        timeoutMs,
      )
      consumer
        .run({
          eachMessage: async ({ message }) => {
            values.push(message.value?.toString("utf8") ?? "")
            if (done(values)) {
              clearTimeout(timer)
              resolve()
            }
          },
        })
        .catch((e: unknown) => {
          clearTimeout(timer)
          reject(e instanceof Error ? e : new Error(String(e)))
        })
    })
  } finally {
    await consumer.disconnect()
  }
  return values
}

describe("Kafka (real broker)", () => {
  it("commits a transaction with sendOffsets, hides an aborted one from read_committed", async () => {
    const run = randomUUID().slice(0, 8)
    const input = `eddy-smoke-${run}-in`
    const output = `eddy-smoke-${run}-out`
    const group = `eddy-smoke-${run}-group`

    const admin = kafka.admin()
    await admin.connect()
    try {
      const { created } = await createTopicsReady(admin, [
        { topic: input, numPartitions: 1, replicationFactor: 1 },
        { topic: output, numPartitions: 2, replicationFactor: 1 },
      ])
      expect(created).toBe(true)

      const plain = kafka.producer({ idempotent: true, maxInFlightRequests: 1 })
      await plain.connect()
      await plain.send({ topic: input, messages: [{ value: "a" }, { value: "b" }, { value: "c" }] })
      await plain.disconnect()

      const producer = kafka.producer({
        transactionalId: `eddy-smoke-${run}-tx`,
        idempotent: true,
        maxInFlightRequests: 1,
      })
      await producer.connect()
      try {
        // 1. committed: output records plus the input offsets, atomically.
        const tx1 = await producer.transaction()
        await tx1.send({ topic: output, messages: [{ key: "k1", value: "A" }, { key: "k2", value: "B" }] })
        await tx1.sendOffsets({
          consumerGroupId: group,
          topics: [{ topic: input, partitions: [{ partition: 0, offset: "3" }] }],
        })
        await tx1.commit()

        // 2. aborted: neither its records nor its offsets may be seen by read_committed readers.
        const tx2 = await producer.transaction()
        await tx2.send({ topic: output, messages: [{ key: "k1", value: "ABORTED-1" }, { key: "k2", value: "ABORTED-2" }] })
        await tx2.sendOffsets({
          consumerGroupId: group,
          topics: [{ topic: input, partitions: [{ partition: 0, offset: "1" }] }],
        })
        await tx2.abort()

        // 3. committed after the abort.
        const tx3 = await producer.transaction()
        await tx3.send({ topic: output, messages: [{ key: "k1", value: "C" }, { key: "k2", value: "D" }] })
        await tx3.commit()
      } finally {
        await producer.disconnect()
      }

      const offsets = await admin.fetchOffsets({ groupId: group, topics: [input] })
      expect(offsets).toEqual([{ topic: input, partitions: [{ partition: 0, offset: "3", metadata: null }] }])
    } finally {
      await admin.disconnect()
    }

    const committed = await readAll(
      kafka.consumer({ groupId: `eddy-smoke-${run}-rc`, readUncommitted: false }),
      output,
      (vs) => vs.includes("C") && vs.includes("D"),
    )
    expect([...committed].sort()).toEqual(["A", "B", "C", "D"])

    // The aborted records really were written: a read_uncommitted reader sees them.
    const uncommitted = await readAll(
      kafka.consumer({ groupId: `eddy-smoke-${run}-ru`, readUncommitted: true }),
      output,
      (vs) => vs.length >= 6,
    )
    expect([...uncommitted].sort()).toEqual(["A", "ABORTED-1", "ABORTED-2", "B", "C", "D"])
  })
})

describe("read_committed with nested aborted transactions (kafkajs's filter replaced: kafkajs/kafkajsAbortFix.ts)", () => {
  it("records of an aborted transaction that another aborted one nests in are not read, by the test reader nor by recovery's", async () => {
    const topic = `eddy-nested-abort-${randomUUID()}`
    const admin = kafka.admin()
    await admin.connect()
    await createTopicsReady(admin, [{ topic, numPartitions: 1 }])
    await admin.disconnect()
    const producer = (id: string) => kafka.producer({ transactionalId: `${topic}-${id}`, idempotent: true, maxInFlightRequests: 1 })
    const [a, b, c] = [producer("a"), producer("b"), producer("c")]
    await Promise.all([a.connect(), b.connect(), c.connect()])
    try {
      // A's transaction starts first and ends last, B's lies inside it: the broker lists aborted transactions in
      // the order they ended (B, then A), which the stock filter took for first-offset order.
      const ta = await a.transaction()
      await ta.send({ topic, acks: -1, messages: ["a1", "a2", "a3"].map((value) => ({ value })) })
      const tb = await b.transaction()
      await tb.send({ topic, acks: -1, messages: ["b1", "b2"].map((value) => ({ value })) })
      await tb.abort()
      await ta.abort()
      const tc = await c.transaction()
      await tc.send({ topic, acks: -1, messages: [{ value: "c1" }] })
      await tc.commit()
    } finally {
      await Promise.all([a.disconnect(), b.disconnect(), c.disconnect()])
    }
    const { readCommitted } = await import("./kafkaTopics.ts")
    expect((await readCommitted(kafka, topic)).map((r) => r.value)).toEqual(["c1"])
    const { readPartitionThrough } = await import("../../runtime/cluster/KafkaIngress.ts")
    // Through offset 7 (c1): a1-a3 at 0-2, b1-b2 at 3-4, B's and A's ABORT markers at 5 and 6.
    const all = await readPartitionThrough(kafka, { brokers: [...endpoints.kafka.brokers] }, topic, 0, 1, 7, 20_000)
    expect(all.map((r) => Buffer.from(r.value ?? new Uint8Array()).toString())).toEqual(["c1"])
  }, 60_000)
})

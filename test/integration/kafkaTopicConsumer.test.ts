import { describe, expect, it } from "vitest"
import type { Kafka } from "kafkajs"
import { ConsumerPool, type FeedEvents, type Member } from "../../runtime/cluster/KafkaTopicConsumer.ts"
import type { KafkaRecord } from "../../workflows/kafka.ts"
import { createTopic, kafkaClient, produce, uniqueName } from "./kafkaTopics.ts"

// The splits of a topic opened together share one consumer (one fetch loop); each split still gets exactly its
// partition's records from its own position, and leaves on its own. No consumer group is ever created.
const collector = () => {
  const values: string[] = []
  const offsets: number[] = []
  let fetchedTo = 0
  let failure: Error | undefined
  const events: FeedEvents = {
    records: (records: ReadonlyArray<KafkaRecord>) => {
      for (const r of records) {
        values.push(Buffer.from(r.value!).toString())
        offsets.push(r.offset)
      }
    },
    fetchedTo: (o) => (fetchedTo = o),
    failed: (e) => (failure = e),
  }
  return { events, values, offsets, fetchedTo: () => fetchedTo, failure: () => failure }
}

const until = async (what: string, done: () => boolean, ms = 20_000) => {
  const deadline = Date.now() + ms
  while (!done()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 20))
  }
}

const ingressGroups = async (kafka: Kafka, topic: string): Promise<string[]> => {
  const admin = kafka.admin()
  await admin.connect()
  try {
    const { groups } = await admin.listGroups()
    return groups.map((g) => g.groupId).filter((g) => g.includes(topic))
  } finally {
    await admin.disconnect()
  }
}

/** A fresh topic of `partitions` partitions holding `records`, and a pool of topic consumers on it. */
const fresh = async (name: string, partitions: number, records: Parameters<typeof produce>[2] = []) => {
  const kafka = kafkaClient()
  const topic = uniqueName(name)
  await createTopic(kafka, topic, partitions)
  if (records.length > 0) await produce(kafka, topic, records)
  return { kafka, topic, pool: new ConsumerPool(kafka, { brokers: [] }) }
}

describe("Kafka topic consumer (real Kafka)", () => {
  it("splits opened in one turn share one consumer and no consumer group; each gets its partition's records from its position, exactly once", async () => {
    const { kafka, topic, pool } = await fresh("ktc-share", 3, Array.from({ length: 300 }, (_, i) => ({ value: `${i % 3}:${i}`, partition: i % 3 })))
    const from = [0, 40, 99]
    const seen = from.map(() => collector())
    const members: Member[] = from.map((position, p) => pool.join({ topic, partition: p, partitions: 3, bounded: false, splitId: `s${p}` }, position, seen[p]!.events))
    const starts = await Promise.all(members.map((m) => m.started))
    expect(starts).toEqual([
      { end: 100, position: 0 },
      { end: 100, position: 40 },
      { end: 100, position: 99 },
    ])
    await until("every record", () => seen.every((s, p) => s.values.length === 100 - from[p]!))
    seen.forEach((s, p) => {
      expect(s.offsets).toEqual(Array.from({ length: 100 - from[p]! }, (_, i) => from[p]! + i))
      expect(s.values).toEqual(s.offsets.map((o) => `${p}:${o * 3 + p}`))
      expect(s.failure()).toBeUndefined()
    })
    expect(pool.consumers).toBe(1)
    expect(await ingressGroups(kafka, topic)).toEqual([])

    // Partition 1 leaves: its later records reach nobody, the others' still arrive.
    await members[1]!.leave()
    await produce(kafka, topic, Array.from({ length: 30 }, (_, i) => ({ value: `${i % 3}:late${i}`, partition: i % 3 })))
    await until("the late records of partitions 0 and 2", () => seen[0]!.values.length === 110 && seen[2]!.values.length === 11)
    await new Promise((r) => setTimeout(r, 300))
    expect(seen[1]!.values).toHaveLength(60)
    expect(pool.consumers).toBe(1)

    // The last one out ends the consumer.
    await Promise.all([members[0]!.leave(), members[2]!.leave()])
    expect(pool.consumers).toBe(0)
    expect(await ingressGroups(kafka, topic)).toEqual([])
  }, 120_000)

  it("a split opened in a later turn gets a consumer of its own; a bounded split at its end gets none", async () => {
    const { topic, pool } = await fresh("ktc-later", 2, Array.from({ length: 20 }, (_, i) => ({ value: `${i}`, partition: i % 2 })))
    const a = collector()
    const first = pool.join({ topic, partition: 0, partitions: 2, bounded: false, splitId: "a" }, 0, a.events)
    const done = collector()
    const atEnd = pool.join({ topic, partition: 1, partitions: 2, bounded: true, splitId: "b" }, 10, done.events)
    expect(await atEnd.started).toEqual({ end: 10, position: 10 })
    await first.started
    await until("partition 0", () => a.values.length === 10)
    expect(done.values).toEqual([])
    const b = collector()
    const later = pool.join({ topic, partition: 1, partitions: 2, bounded: false, splitId: "c" }, 5, b.events)
    await later.started
    await until("partition 1 from offset 5", () => b.values.length === 5)
    expect(b.offsets).toEqual([5, 6, 7, 8, 9])
    // The bounded split at its end was in the first turn's consumer, which fetches partition 0 only.
    expect(pool.consumers).toBe(2)
    await Promise.all([first.leave(), atEnd.leave(), later.leave()])
    expect(pool.consumers).toBe(0)
  }, 120_000)

  it("the same partition joined twice in one turn (two sources on one topic) gets two consumers, each with every record", async () => {
    const { topic, pool } = await fresh("ktc-twice", 1, Array.from({ length: 50 }, (_, i) => ({ value: `${i}` })))
    const seen = [collector(), collector()]
    const members = seen.map((c, i) => pool.join({ topic, partition: 0, partitions: 1, bounded: false, splitId: `s${i}` }, i * 10, c.events))
    await Promise.all(members.map((m) => m.started))
    await until("both", () => seen[0]!.values.length === 50 && seen[1]!.values.length === 40)
    expect(seen[1]!.offsets).toEqual(Array.from({ length: 40 }, (_, i) => 10 + i))
    expect(pool.consumers).toBe(2)
    await Promise.all(members.map((m) => m.leave()))
    expect(pool.consumers).toBe(0)
  }, 60_000)

  it("a partition count that does not match the topic's rejects every split of the consumer", async () => {
    const { topic, pool } = await fresh("ktc-count", 2)
    const joined = [0, 1].map((p) => pool.join({ topic, partition: p, partitions: 3, bounded: false, splitId: `s${p}` }, 0, collector().events))
    for (const m of joined) await expect(m.started).rejects.toThrow(/has 2 partitions but Source.kafka was given partitions: 3/)
    await Promise.all(joined.map((m) => m.leave()))
  }, 60_000)

  it("a paused split gets nothing until resumed, then every record once; aborted transactions' records never, and the position passes their markers", async () => {
    const { kafka, topic, pool } = await fresh("ktc-pause", 1, Array.from({ length: 10 }, (_, i) => ({ value: `a${i}` })))
    const seen = collector()
    const member = pool.join({ topic, partition: 0, partitions: 1, bounded: false, splitId: "s" }, 0, seen.events)
    await member.started
    await until("the first records", () => seen.values.length === 10)

    member.pause()
    await produce(kafka, topic, Array.from({ length: 10 }, (_, i) => ({ value: `b${i}` })))
    await new Promise((r) => setTimeout(r, 600))
    expect(seen.values).toHaveLength(10)
    member.resume()
    await until("the records produced while paused", () => seen.values.length === 20)

    // A committed transaction, an aborted one, a committed one: offsets 20-22, marker 23, 24-25, marker 26, 27, marker 28.
    const producer = kafka.producer({ transactionalId: `ktc-${topic}`, maxInFlightRequests: 1, idempotent: true })
    await producer.connect()
    try {
      for (const [values, commit] of [[["t1", "t2", "t3"], true], [["x1", "x2"], false], [["t4"], true]] as const) {
        const tx = await producer.transaction()
        await tx.send({ topic, messages: values.map((value) => ({ value, partition: 0 })) })
        await (commit ? tx.commit() : tx.abort())
      }
    } finally {
      await producer.disconnect()
    }
    await until("the committed transactions' records and the last marker", () => seen.fetchedTo() === 29)
    expect(seen.values.slice(20)).toEqual(["t1", "t2", "t3", "t4"])
    expect(seen.offsets.slice(20)).toEqual([20, 21, 22, 27])
    expect(seen.values.slice(0, 20)).toEqual([...Array.from({ length: 10 }, (_, i) => `a${i}`), ...Array.from({ length: 10 }, (_, i) => `b${i}`)])
    expect(seen.failure()).toBeUndefined()
    await member.leave()
    expect(pool.consumers).toBe(0)
  }, 60_000)
})

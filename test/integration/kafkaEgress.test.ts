import { Effect, Exit, Scope } from "effect"
import { describe, expect, it } from "vitest"
import { txnCoordinatorStats } from "../../kafkajs/kafkajsTransactions.ts"
import { kafkaTrace } from "../../runtime/cluster/kafkaTrace.ts"
import { KafkaEgress, markerTopicOf, slotOf, transactionalIdOf, type KafkaEgressOptions } from "../../runtime/cluster/KafkaEgress.ts"
import { readEndpoints } from "../../runtime/config/Endpoints.ts"
import type { EgressBatch } from "../../runtime/engine/EpochRecord.ts"
import type { EgressService } from "../../runtime/ports/Egress.ts"
import { EGRESS_ID_HEADER, Sink, type KafkaSinkSpec } from "../../workflows/index.ts"
import { closedPort } from "./ports.ts"
import { kafkaClient, readCommitted, uniqueName } from "./kafkaTopics.ts"

// The Kafka egress on a real broker: epochs published in transactions with their EGRESS_DONE marker; recovery
// fences the previous holder of the transactional id, republishes what has no marker, and nothing twice.
const brokers = readEndpoints().kafka.brokers
const epoch = (e: number): { e: number; egress: EgressBatch[] } => ({ e, egress: [["out", 2, e * 10, [`a${e}`, `b${e}`]], ["out", 5, e * 10, [`c${e}`]]] })
const valuesOf = (epochs: ReadonlyArray<number>) => epochs.flatMap((e) => [`a${e}`, `b${e}`, `c${e}`].map((v) => JSON.stringify(v))).sort()

const open = async (namespace: string, topic: string, extra: Partial<KafkaEgressOptions> = {}): Promise<{ egress: EgressService; close: () => Promise<void> }> => {
  const scope = Effect.runSync(Scope.make())
  const sinks = new Map([["out", Sink.kafka<string>({ topic, name: "out" }) as KafkaSinkSpec<unknown>]])
  const egress = await Effect.runPromise(Scope.extend(KafkaEgress.make({ brokers, namespace, sinks, lo: 0, hi: 8, partitions: 1, ...extra }), scope))
  return { egress, close: () => Effect.runPromise(Scope.close(scope, Exit.void)) }
}
const run = <A, E>(e: Effect.Effect<A, E>) => Effect.runPromise(e)

const until = async (what: string, check: () => Promise<boolean>, ms = 15_000): Promise<void> => {
  const deadline = Date.now() + ms
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 20))
  }
}

describe("Kafka egress recovery (real Kafka)", () => {
  it("republishes exactly the committed epochs without a marker, and nothing that has one", async () => {
    const ns = uniqueName("kio-eg")
    const topic = uniqueName("kio-eg-out")
    const first = await open(ns, topic)
    await run(first.egress.recover([], 0))
    for (const e of [1, 2, 3]) await run(first.egress.publish(e, 0, epoch(e).egress))
    await run(first.egress.flush)
    expect(await run(first.egress.publishedThrough)).toBe(3)
    await first.close()

    // A restart whose log committed 1..5 (4 and 5 never reached Kafka): 4 and 5 are published, 1..3 are not again.
    const second = await open(ns, topic)
    await run(second.egress.recover([1, 2, 3, 4, 5].map(epoch), 5))
    expect(await run(second.egress.publishedThrough)).toBe(5)
    await run(second.egress.publish(6, 0, epoch(6).egress))
    await run(second.egress.flush)
    await second.close()

    const kafka = kafkaClient()
    const out = await readCommitted(kafka, topic)
    expect(out.map((r) => r.value).sort()).toEqual(valuesOf([1, 2, 3, 4, 5, 6]))
    expect(new Set(out.map((r) => r.headers[EGRESS_ID_HEADER])).size).toBe(out.length)
    expect(out.find((r) => r.value === JSON.stringify("c4"))?.headers[EGRESS_ID_HEADER]).toBe("5:40")
    // A third start with the same log publishes nothing more.
    const third = await open(ns, topic)
    await run(third.egress.recover([1, 2, 3, 4, 5, 6].map(epoch), 6))
    await third.close()
    expect((await readCommitted(kafka, topic)).length).toBe(out.length)
  }, 120_000)

  it("recovery fences a zombie holding the slot: its open transaction is aborted and its later writes fail", async () => {
    const ns = uniqueName("kio-zombie")
    const topic = uniqueName("kio-zombie-out")
    const zombie = await open(ns, topic)
    await run(zombie.egress.recover([], 0))
    await run(zombie.egress.publish(1, 0, epoch(1).egress))
    await run(zombie.egress.flush)
    // A raw transaction under the slot's id left open (a process killed mid-transaction), with a marker claiming 2.
    const kafka = kafkaClient()
    const raw = kafka.producer({ transactionalId: slotOf(ns, 0, 8), idempotent: true, maxInFlightRequests: 1 })
    await raw.connect()
    const tx = await raw.transaction()
    await tx.send({ topic, messages: [{ value: JSON.stringify("half-written"), partition: 0 }] })
    await tx.send({ topic: markerTopicOf(ns), messages: [{ key: slotOf(ns, 0, 8), value: JSON.stringify({ v: 1, slot: slotOf(ns, 0, 8), lo: 0, hi: 8, through: 2 }) }] })

    const successor = await open(ns, topic)
    await run(successor.egress.recover([1, 2].map(epoch), 2))
    await expect(tx.commit()).rejects.toThrow()
    await raw.disconnect().catch(() => undefined)
    // The old egress is fenced too: publishing epoch 2 (again) through it fails, its copy never shows.
    const late = await Effect.runPromiseExit(Effect.zipRight(zombie.egress.publish(2, 0, epoch(2).egress), zombie.egress.flush))
    expect(Exit.isFailure(late)).toBe(true)
    await zombie.close()
    await successor.close()
    const out = await readCommitted(kafka, topic)
    expect(out.map((r) => r.value).sort()).toEqual(valuesOf([1, 2]))
  }, 120_000)

  it("markers committed behind another slot's open transaction are seen: no duplicates after a restart", async () => {
    const ns = uniqueName("kio-lso")
    const topic = uniqueName("kio-lso-out")
    const first = await open(ns, topic)
    await run(first.egress.recover([], 0))
    await run(first.egress.publish(1, 0, epoch(1).egress))
    await run(first.egress.flush)
    // Another slot (key groups 8..16) opens a transaction on the shared marker topic and keeps it open: the topic's
    // last stable offset stays below it, while this slot commits the markers of epochs 2 and 3 after it.
    const kafka = kafkaClient()
    const other = kafka.producer({ transactionalId: slotOf(ns, 8, 16), idempotent: true, maxInFlightRequests: 1 })
    await other.connect()
    const open8 = await other.transaction()
    await open8.send({ topic: markerTopicOf(ns), messages: [{ key: "x.recovering", value: "open", partition: 0 }] })
    // Committed (flush would also wait to read their markers back, which the open transaction holds off).
    const committedEpochs: number[] = []
    kafkaTrace.transaction = (t) => void committedEpochs.push(...t.epochs)
    try {
      for (const e of [2, 3]) await run(first.egress.publish(e, 0, epoch(e).egress))
      await until("epochs 2 and 3 committed", () => Promise.resolve(committedEpochs.includes(2) && committedEpochs.includes(3)))
    } finally {
      delete kafkaTrace.transaction
    }
    await first.close()
    // The restarted slot must see the markers of 2 and 3 and publish nothing again; it waits for the open transaction.
    const second = await open(ns, topic)
    const recovering = run(second.egress.recover([1, 2, 3].map(epoch), 3))
    await new Promise((r) => setTimeout(r, 1000))
    await open8.abort()
    await other.disconnect()
    await recovering
    await second.close()
    const out = await readCommitted(kafka, topic)
    expect(out.map((r) => r.value).sort()).toEqual(valuesOf([1, 2, 3]))
  }, 120_000)

  it("transactions overlap, commit in order, and a failed commit aborts the transaction sent after it", async () => {
    const ns = uniqueName("kio-overlap")
    const topic = uniqueName("kio-overlap-out")
    // T2 (epoch 2, second transactional id) cannot commit until T3 (epoch 3, first id) has sent its records, and
    // then fails: T3 must be aborted, not committed (its marker would claim epoch 2 too).
    const sent: number[][] = []
    const committing: number[][] = []
    const first = await open(ns, topic, {
      testHook: async (step, epochs) => {
        ;(step === "sent" ? sent : committing).push([...epochs])
        if (step !== "committing" || !epochs.includes(2)) return
        await until("T3's records", () => Promise.resolve(sent.some((x) => x.includes(3))))
        throw new Error("injected: the commit of epoch 2 fails")
      },
    })
    await run(first.egress.recover([], 0))
    await run(first.egress.publish(1, 0, epoch(1).egress))
    await run(first.egress.flush)
    await run(first.egress.publish(2, 0, epoch(2).egress))
    await until("T2's records", () => Promise.resolve(sent.some((x) => x.includes(2))))
    await run(first.egress.publish(3, 0, epoch(3).egress))
    const exit = await Effect.runPromiseExit(first.egress.flush)
    expect(Exit.isFailure(exit)).toBe(true)
    expect(JSON.stringify(exit)).toContain("injected")
    expect(await run(first.egress.publishedThrough)).toBe(1)
    await first.close()
    const kafka = kafkaClient()
    // T3 was sent while T2 was committing, and never reached its commit; only epoch 1 is visible.
    expect(sent).toEqual([[1], [2], [3]])
    expect(committing).toEqual([[1], [2]])
    expect((await readCommitted(kafka, topic)).map((r) => r.value).sort()).toEqual(valuesOf([1]))

    // Recovery publishes epochs 2 and 3 once.
    const second = await open(ns, topic)
    await run(second.egress.recover([1, 2, 3].map(epoch), 3))
    await run(second.egress.publish(4, 0, epoch(4).egress))
    await run(second.egress.flush)
    await second.close()
    const out = await readCommitted(kafka, topic)
    expect(out.map((r) => r.value).sort()).toEqual(valuesOf([1, 2, 3, 4]))
    // In epoch order in the partition.
    expect(out.map((r) => JSON.parse(r.value) as string).map((v) => Number(v.slice(1)))).toEqual([1, 1, 1, 2, 2, 2, 3, 3, 3, 4, 4, 4])
  }, 120_000)

  it("many epochs through overlapping transactions: each published once, in order; a restart publishes nothing again", async () => {
    const ns = uniqueName("kio-many")
    const topic = uniqueName("kio-many-out")
    const epochs = Array.from({ length: 60 }, (_, i) => i + 1)
    const first = await open(ns, topic)
    await run(first.egress.recover([], 0))
    for (const e of epochs) {
      await run(first.egress.publish(e, 0, epoch(e).egress))
      if (e % 7 === 0) await new Promise((r) => setTimeout(r, 5))
    }
    await run(first.egress.flush)
    expect(await run(first.egress.publishedThrough)).toBe(60)
    await first.close()
    const second = await open(ns, topic)
    await run(second.egress.recover(epochs.map(epoch), 60))
    await second.close()
    const out = await readCommitted(kafkaClient(), topic)
    expect(out.map((r) => JSON.parse(r.value) as string).map((v) => Number(v.slice(1)))).toEqual(epochs.flatMap((e) => [e, e, e]))
  }, 120_000)

  it("transactions begun ahead (partitions added before the records exist), idle ones aborted; the coordinator looked up once per id", async () => {
    const ns = uniqueName("kio-ahead")
    const topic = uniqueName("kio-ahead-out")
    const looked = txnCoordinatorStats.looked
    const cached = txnCoordinatorStats.cached
    const first = await open(ns, topic, { preparedIdleMs: 300 })
    await run(first.egress.recover([], 0))
    const epochs = Array.from({ length: 12 }, (_, i) => i + 1)
    for (const e of epochs) {
      await run(first.egress.publish(e, 0, epoch(e).egress))
      // One transaction per epoch; now and then long enough for the transactions begun ahead to be aborted.
      await run(first.egress.flush)
      if (e % 4 === 0) await new Promise((r) => setTimeout(r, 700))
    }
    expect(await run(first.egress.publishedThrough)).toBe(12)
    await first.close()
    // Two transactional ids: one lookup each (more only if a request to the coordinator failed).
    expect(txnCoordinatorStats.looked - looked).toBeLessThanOrEqual(4)
    expect(txnCoordinatorStats.cached - cached).toBeGreaterThan(12)
    const second = await open(ns, topic)
    await run(second.egress.recover(epochs.map(epoch), 12))
    await second.close()
    const out = await readCommitted(kafkaClient(), topic)
    expect(out.map((r) => JSON.parse(r.value) as string).map((v) => Number(v.slice(1)))).toEqual(epochs.flatMap((e) => [e, e, e]))
  }, 120_000)

  it("recovery fences the slot's second transactional id too: a zombie's open transaction on it is aborted, its later writes fail", async () => {
    const ns = uniqueName("kio-zombie2")
    const topic = uniqueName("kio-zombie2-out")
    const zombie = await open(ns, topic)
    await run(zombie.egress.recover([], 0))
    // T1 on the first id; the zombie's next transaction would use the second.
    await run(zombie.egress.publish(1, 0, epoch(1).egress))
    await run(zombie.egress.flush)
    const kafka = kafkaClient()
    const second = transactionalIdOf(slotOf(ns, 0, 8), 1)
    const raw = kafka.producer({ transactionalId: second, idempotent: true, maxInFlightRequests: 1 })
    await raw.connect()
    const tx = await raw.transaction()
    await tx.send({ topic, messages: [{ value: JSON.stringify("half-written"), partition: 0 }] })
    await tx.send({ topic: markerTopicOf(ns), messages: [{ key: second, value: JSON.stringify({ v: 2, slot: second, lo: 0, hi: 8, through: 2 }) }] })

    const successor = await open(ns, topic)
    await run(successor.egress.recover([1, 2].map(epoch), 2))
    await expect(tx.commit()).rejects.toThrow()
    await raw.disconnect().catch(() => undefined)
    // The zombie's second id is fenced: publishing epoch 3 through it fails and never shows.
    const late = await Effect.runPromiseExit(Effect.zipRight(zombie.egress.publish(2, 0, epoch(3).egress), zombie.egress.flush))
    expect(Exit.isFailure(late)).toBe(true)
    await zombie.close()
    await run(successor.egress.publish(3, 0, epoch(3).egress))
    await run(successor.egress.flush)
    await successor.close()
    const out = await readCommitted(kafka, topic)
    expect(out.map((r) => r.value).sort()).toEqual(valuesOf([1, 2, 3]))
  }, 120_000)

  it("an unreachable broker fails with an error naming the endpoint", async () => {
    const port = await closedPort()
    const sinks = new Map([["out", Sink.kafka<string>({ topic: "never", name: "out" }) as KafkaSinkSpec<unknown>]])
    const exit = await Effect.runPromiseExit(Effect.scoped(KafkaEgress.make({ brokers: [`127.0.0.1:${port}`], namespace: "nowhere", sinks, lo: 0, hi: 8, partitions: 1, connectTimeoutMs: 4000 })))
    expect(Exit.isFailure(exit)).toBe(true)
    expect(JSON.stringify(exit)).toContain(`127.0.0.1:${port}`)
  }, 30_000)
})

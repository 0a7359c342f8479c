// Hanging transactions on a real broker: what the egress's recovery and watchdog rely on. The admin requests kafkajs
// lacks (kafkajs/kafkajsTransactionAdmin.ts) see an open transaction where Kafka's own tools do, and a marker written
// with WriteTxnMarkers ends it for read_committed readers as decided. A broker that loses a transaction's markers
// cannot be made to on purpose (docs/protocol.md), so the coordinator's verdict is given here; the broker-restart
// test (kafkaClientRestart.exclusive.test.ts) meets the real thing.
import { Effect, Exit, Scope } from "effect"
import { describe, expect, it } from "vitest"
import "../../kafkajs/kafkajsAbortFix.ts"
import { openTransactionAdmin, partitionKey } from "../../kafkajs/kafkajsTransactionAdmin.ts"
import { KafkaEgress, markerTopicOf, type KafkaEgressOptions } from "../../runtime/cluster/KafkaEgress.ts"
import type { EgressBatch } from "../../runtime/engine/EpochRecord.ts"
import { hangingTransactions } from "../../runtime/cluster/hangingTransactions.ts"
import { readEndpoints } from "../../runtime/config/Endpoints.ts"
import { Sink, type KafkaSinkSpec } from "../../workflows/index.ts"
import { createTopic, kafkaClient, readCommitted, uniqueName } from "./kafkaTopics.ts"

describe("hanging transactions (real Kafka)", () => {
  it("an open transaction is seen (DescribeTransactions, DescribeProducers, last stable offset) and ended as decided (WriteTxnMarkers)", async () => {
    const kafka = kafkaClient()
    const topic = uniqueName("hang")
    await createTopic(kafka, topic, 2)
    const id = uniqueName("hang-tx")
    const producer = kafka.producer({ transactionalId: id, idempotent: true, maxInFlightRequests: 1, transactionTimeout: 60_000 })
    await producer.connect()
    const admin = await openTransactionAdmin(kafka, [topic])
    const tx = await producer.transaction()
    try {
      await tx.send({ topic, acks: -1, messages: [{ value: "a", partition: 0 }, { value: "b", partition: 0 }, { value: "c", partition: 1 }] })
      const [state] = await admin.describeTransactions([id, uniqueName("unknown-tx")])
      expect(state).toMatchObject({ transactionalId: id, state: "Ongoing" })
      expect(await admin.describeTransactions([uniqueName("unknown-tx")])).toEqual([])
      const partitions = await admin.describeProducers([{ topic, partitions: [0, 1] }])
      const mine = partitions.map((p) => ({ partition: p.partition, open: p.producers.find((x) => x.producerId === state!.producerId)?.currentTxnStartOffset }))
      expect(mine.sort((x, y) => x.partition - y.partition)).toEqual([{ partition: 0, open: 0 }, { partition: 1, open: 0 }])
      const before = await admin.lastStableOffsets([{ topic, partitions: [0, 1] }])
      expect([before.get(partitionKey(topic, 0)), before.get(partitionKey(topic, 1))]).toEqual([0, 0])

      // As if its coordinator had committed it and lost the markers: partition 0 gets COMMIT, partition 1 (as if
      // the coordinator had aborted it) ABORT.
      const commit = hangingTransactions([{ ...state!, state: "CompleteCommit" }], partitions.filter((p) => p.partition === 0))
      const abort = hangingTransactions([{ ...state!, state: "CompleteAbort" }], partitions.filter((p) => p.partition === 1))
      expect([commit.map((h) => h.commit), abort.map((h) => h.commit)]).toEqual([[true], [false]])
      for (const h of [...commit, ...abort]) await admin.writeMarker(h)
      const after = await admin.lastStableOffsets([{ topic, partitions: [0, 1] }])
      // Past the records and the marker.
      expect([after.get(partitionKey(topic, 0)), after.get(partitionKey(topic, 1))]).toEqual([3, 2])
      expect((await readCommitted(kafka, topic)).map((r) => `${r.partition}:${r.value}`)).toEqual(["0:a", "0:b"])
    } finally {
      await tx.abort().catch(() => undefined)
      await producer.disconnect()
      await admin.disconnect()
    }
  }, 60_000)

  it("an egress whose committed records stay invisible to read_committed readers fails, naming the partition", async () => {
    const kafka = kafkaClient()
    const topic = uniqueName("hang-out")
    await createTopic(kafka, topic, 1)
    // Another producer's transaction, open on the sink's partition, holds its last stable offset back.
    const blocker = kafka.producer({ transactionalId: uniqueName("blocker"), idempotent: true, maxInFlightRequests: 1, transactionTimeout: 60_000 })
    await blocker.connect()
    const tx = await blocker.transaction()
    await tx.send({ topic, acks: -1, messages: [{ value: "x", partition: 0 }] })
    const scope = Effect.runSync(Scope.make())
    try {
      const sinks = new Map([["out", Sink.kafka<string>({ topic, name: "out" }) as KafkaSinkSpec<unknown>]])
      const egress = await Effect.runPromise(
        Scope.extend(KafkaEgress.make({ brokers: readEndpoints().kafka.brokers, namespace: uniqueName("hang-eg"), sinks, lo: 0, hi: 8, partitions: 1, hangAfterMs: 1_500, hangCheckMs: 200 }), scope),
      )
      await Effect.runPromise(egress.recover([], 0))
      await Effect.runPromise(egress.publish(1, 0, [["out", 2, 10, ["v1"]]]))
      await Effect.runPromise(egress.flush)
      const deadline = Date.now() + 20_000
      let exit = await Effect.runPromiseExit(egress.flush)
      while (Exit.isSuccess(exit) && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 200))
        exit = await Effect.runPromiseExit(egress.publish(2, 0, []))
      }
      expect(Exit.isFailure(exit)).toBe(true)
      expect(String(Exit.isFailure(exit) ? exit.cause : "")).toMatch(new RegExp(`${topic}/0 offset 1 are not visible to read_committed readers.*a transaction hangs`))
    } finally {
      await tx.abort().catch(() => undefined)
      await blocker.disconnect()
      await Effect.runPromise(Scope.close(scope, Exit.void))
    }
  }, 60_000)

  it("an egress whose transaction never completes fails (a producer waiting for ever), naming the epochs that wait", async () => {
    const topic = uniqueName("stall-out")
    const scope = Effect.runSync(Scope.make())
    let stall = false
    try {
      const sinks = new Map([["out", Sink.kafka<string>({ topic, name: "out" }) as KafkaSinkSpec<unknown>]])
      const egress = await Effect.runPromise(
        Scope.extend(
          KafkaEgress.make({
            brokers: readEndpoints().kafka.brokers,
            namespace: uniqueName("stall-eg"),
            sinks,
            lo: 0,
            hi: 8,
            partitions: 1,
            hangAfterMs: 1_500,
            hangCheckMs: 200,
            // Epoch 2's commit waits for ever, as kafkajs's did once its broker stopped mid-commit.
            testHook: (step, epochs) => (step === "committing" && stall && epochs.includes(2) ? new Promise<void>(() => undefined) : Promise.resolve()),
          }),
          scope,
        ),
      )
      await Effect.runPromise(egress.recover([], 0))
      await Effect.runPromise(egress.publish(1, 0, [["out", 2, 10, ["v1"]]]))
      await Effect.runPromise(egress.flush)
      // Idle for longer than the bound: nothing waits, so nothing is stuck.
      await new Promise((r) => setTimeout(r, 2_000))
      stall = true
      await Effect.runPromise(egress.publish(2, 0, [["out", 2, 20, ["v2"]]]))
      const exit = await Effect.runPromiseExit(egress.flush)
      expect(Exit.isFailure(exit)).toBe(true)
      expect(String(Exit.isFailure(exit) ? exit.cause : "")).toMatch(/no transaction completed \(and read back\) in \d+ ms while epochs 2\.\.2 wait to be published/)
    } finally {
      await Effect.runPromise(Scope.close(scope, Exit.void))
    }
  }, 60_000)

  it("a commit Kafka acknowledged but lost (its records closed as aborted) fails the egress when its marker reads back, and recovery republishes it once", async () => {
    const kafka = kafkaClient()
    const ns = uniqueName("lost-eg")
    const topic = uniqueName("lost-out")
    await createTopic(kafka, topic, 1)
    await createTopic(kafka, markerTopicOf(ns), 1)
    const admin = await openTransactionAdmin(kafka, [topic, markerTopicOf(ns)])
    const sinks = new Map([["out", Sink.kafka<string>({ topic, name: "out" }) as KafkaSinkSpec<unknown>]])
    const brokers = readEndpoints().kafka.brokers
    const open = async (extra: Partial<KafkaEgressOptions>) => {
      const scope = Effect.runSync(Scope.make())
      const egress = await Effect.runPromise(Scope.extend(KafkaEgress.make({ brokers, namespace: ns, sinks, lo: 0, hi: 8, partitions: 1, ...extra }), scope))
      return { egress, close: () => Effect.runPromise(Scope.close(scope, Exit.void)) }
    }
    const batch = (e: number): EgressBatch[] => [["out", 2, e * 10, [`v${e}`]]]
    // Right before epoch 2's commit, its records and marker are closed as aborted (what a broker stopped mid-commit
    // left behind: the commit is acknowledged, and an ABORT marker of the producer's next transaction closes them).
    const first = await open({
      testHook: async (step, epochs) => {
        if (step !== "committing" || !epochs.includes(2)) return
        for (const p of await admin.describeProducers([{ topic, partitions: [0] }, { topic: markerTopicOf(ns), partitions: [0] }])) {
          for (const x of p.producers.filter((x) => x.currentTxnStartOffset >= 0)) {
            await admin.writeMarker({ producerId: x.producerId, producerEpoch: x.producerEpoch, coordinatorEpoch: x.coordinatorEpoch, commit: false, topic: p.topic, partition: p.partition })
          }
        }
      },
    })
    try {
      await Effect.runPromise(first.egress.recover([], 0))
      await Effect.runPromise(first.egress.publish(1, 0, batch(1)))
      await Effect.runPromise(first.egress.flush)
      await Effect.runPromise(first.egress.publish(2, 0, batch(2)))
      const exit = await Effect.runPromiseExit(first.egress.flush)
      expect(String(Exit.isFailure(exit) ? exit.cause : "flushed")).toMatch(/epochs through 2 was committed \(Kafka said so\), but its marker .* reads back aborted/)
      expect(await Effect.runPromise(first.egress.publishedThrough)).toBe(1)
    } finally {
      await first.close()
    }
    const second = await open({})
    try {
      await Effect.runPromise(second.egress.recover([1, 2].map((e) => ({ e, egress: batch(e) })), 2))
      expect(await Effect.runPromise(second.egress.publishedThrough)).toBe(2)
    } finally {
      await second.close()
      await admin.disconnect()
    }
    expect((await readCommitted(kafka, topic)).map((r) => r.value)).toEqual(['"v1"', '"v2"'])
  }, 60_000)
})

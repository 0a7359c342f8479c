import { Effect, Exit, Scope } from "effect"
import { describe, expect, it } from "vitest"
import { KafkaEgress, markerTopicOf, slotOf, type KafkaEgressOptions } from "../../runtime/cluster/KafkaEgress.ts"
import { makeKafkaEgressThread } from "../../runtime/cluster/KafkaEgressThread.ts"
import { readEndpoints } from "../../runtime/config/Endpoints.ts"
import type { EgressBatch } from "../../runtime/engine/EpochRecord.ts"
import type { EgressService } from "../../runtime/ports/Egress.ts"
import { EGRESS_ID_HEADER, Sink, type KafkaSinkSpec } from "../../workflows/index.ts"
import { closedPort } from "./ports.ts"
import { kafkaClient, readCommitted, uniqueName } from "./kafkaTopics.ts"

// The Kafka egress in its worker thread (what the runtime uses): the same records, byte for byte, as the egress on
// the engine's thread; recovery republishes exactly what no marker covers; a zombie is fenced; failures reach the
// caller.
const brokers = readEndpoints().kafka.brokers
const epoch = (e: number): { e: number; egress: EgressBatch[] } => ({ e, egress: [["out", 2, e * 10, [`a${e}`, `b${e}`]], ["out", 5, e * 10, [`c${e}`]]] })
const valuesOf = (epochs: ReadonlyArray<number>) => epochs.flatMap((e) => [`a${e}`, `b${e}`, `c${e}`].map((v) => JSON.stringify(v))).sort()
const run = <A, E>(e: Effect.Effect<A, E>) => Effect.runPromise(e)

const open = async (
  namespace: string,
  sinks: ReadonlyMap<string, KafkaSinkSpec<unknown>>,
  thread: boolean,
  extra: Partial<KafkaEgressOptions> = {},
): Promise<{ egress: EgressService; close: () => Promise<void> }> => {
  const scope = Effect.runSync(Scope.make())
  const options = { brokers, namespace, sinks, lo: 0, hi: 8, partitions: 1, ...extra }
  const egress = await Effect.runPromise(Scope.extend(thread ? makeKafkaEgressThread(options) : KafkaEgress.make(options), scope))
  return { egress, close: () => Effect.runPromise(Scope.close(scope, Exit.void)) }
}
const stringSink = (topic: string) => new Map([["out", Sink.kafka<string>({ topic, name: "out" }) as KafkaSinkSpec<unknown>]])

describe("Kafka egress in a worker thread (real Kafka)", () => {
  it("writes the same records as the egress on the engine's thread: keys, values, headers, partitions", async () => {
    type V = { id: number; text: string; bytes: boolean }
    // A custom encoder returning views into a larger buffer, keys (some null), user headers, and a second sink that
    // per-record sink batches address.
    const pool = Buffer.alloc(4096, 120)
    const spec = (topic: string, name: string): KafkaSinkSpec<unknown> =>
      Sink.kafka<V>({
        topic,
        name,
        partitions: 3,
        encode: (v) => (v.bytes ? pool.subarray(v.id, v.id + 5) : `${v.text}|${v.id}`),
        key: (v) => (v.id % 3 === 0 ? null : v.id % 3 === 1 ? `k${v.id}` : Buffer.from(`bk${v.id}`)),
        headers: (v) => ({ h: `x${v.id}` }),
      }) as KafkaSinkSpec<unknown>
    const plain = (topic: string, name: string): KafkaSinkSpec<unknown> => Sink.kafka<V>({ topic, name, partitions: 2 }) as KafkaSinkSpec<unknown>
    const batches = (e: number): EgressBatch[] => {
      const vs = (n: number, off: number): V[] => Array.from({ length: n }, (_, i) => ({ id: e * 100 + off + i, text: `t${e}-${i}`, bytes: i % 2 === 0 }))
      return [
        ["a", 1, e * 10, vs(4, 0)],
        [[["a", "b"], [0, 1, 1, 0]], 4, e * 10, vs(4, 50)],
        ["b", 7, e * 10, vs(2, 80)],
      ]
    }
    const read = async (thread: boolean) => {
      const ta = uniqueName("kio-th-a")
      const tb = uniqueName("kio-th-b")
      const eg = await open(uniqueName("kio-th"), new Map([["a", spec(ta, "a")], ["b", plain(tb, "b")]]), thread)
      await run(eg.egress.recover([], 0))
      for (const e of [1, 2, 3]) await run(eg.egress.publish(e, 0, batches(e)))
      await run(eg.egress.flush)
      expect(await run(eg.egress.publishedThrough)).toBe(3)
      await eg.close()
      const kafka = kafkaClient()
      // In partition and offset order, without the offsets: each transaction's commit marker takes an offset, and how
      // the epochs group into transactions depends on timing (CI once saw one more marker on one side).
      const strip = (rs: Awaited<ReturnType<typeof readCommitted>>) => rs.map((r) => ({ partition: r.partition, key: r.key, value: r.value, headers: r.headers }))
      return { a: strip(await readCommitted(kafka, ta)), b: strip(await readCommitted(kafka, tb)) }
    }
    const engine = await read(false)
    const worker = await read(true)
    expect(worker.a.length).toBe(3 * 6)
    expect(worker.b.length).toBe(3 * 4)
    expect(worker).toEqual(engine)
  }, 120_000)

  it("recovery republishes exactly the committed epochs without a marker; a restart publishes nothing again", async () => {
    const ns = uniqueName("kio-tw")
    const topic = uniqueName("kio-tw-out")
    const first = await open(ns, stringSink(topic), true)
    await run(first.egress.recover([], 0))
    for (const e of [1, 2, 3]) await run(first.egress.publish(e, 0, epoch(e).egress))
    await run(first.egress.flush)
    await first.close()
    // The log committed 1..5; 4 and 5 never reached Kafka.
    const second = await open(ns, stringSink(topic), true)
    await run(second.egress.recover([1, 2, 3, 4, 5].map(epoch), 5))
    expect(await run(second.egress.publishedThrough)).toBe(5)
    for (let e = 6; e <= 40; e++) await run(second.egress.publish(e, 0, epoch(e).egress))
    await run(second.egress.flush)
    expect(await run(second.egress.publishedThrough)).toBe(40)
    await second.close()
    const third = await open(ns, stringSink(topic), true)
    await run(third.egress.recover(Array.from({ length: 40 }, (_, i) => epoch(i + 1)), 40))
    await third.close()
    const out = await readCommitted(kafkaClient(), topic)
    const epochs = Array.from({ length: 40 }, (_, i) => i + 1)
    expect(out.map((r) => r.value).sort()).toEqual(valuesOf(epochs))
    expect(new Set(out.map((r) => r.headers[EGRESS_ID_HEADER])).size).toBe(out.length)
    // In epoch order within each partition.
    for (const p of new Set(out.map((r) => r.partition))) {
      const es = out.filter((r) => r.partition === p).map((r) => Number((JSON.parse(r.value) as string).slice(1)))
      expect(es).toEqual([...es].sort((x, y) => x - y))
    }
  }, 120_000)

  it("a successor fences the worker's transactional ids: the zombie's later epochs fail and never show", async () => {
    const ns = uniqueName("kio-twz")
    const topic = uniqueName("kio-twz-out")
    const zombie = await open(ns, stringSink(topic), true)
    await run(zombie.egress.recover([], 0))
    await run(zombie.egress.publish(1, 0, epoch(1).egress))
    await run(zombie.egress.flush)
    const successor = await open(ns, stringSink(topic), true)
    await run(successor.egress.recover([1, 2].map(epoch), 2))
    // The zombie publishes epoch 2 (again, as a zombie would): fenced.
    const late = await Effect.runPromiseExit(Effect.zipRight(zombie.egress.publish(2, 0, epoch(2).egress), zombie.egress.flush))
    expect(Exit.isFailure(late)).toBe(true)
    // Once failed, every later call fails too.
    expect(Exit.isFailure(await Effect.runPromiseExit(zombie.egress.publish(3, 0, epoch(3).egress)))).toBe(true)
    await zombie.close()
    await successor.close()
    const out = await readCommitted(kafkaClient(), topic)
    expect(out.map((r) => r.value).sort()).toEqual(valuesOf([1, 2]))
    expect(markerTopicOf(ns)).toContain(ns)
    expect(slotOf(ns, 0, 8)).toContain(ns)
  }, 120_000)

  it("an unreachable broker fails with an error naming the endpoint; a sink value that cannot be encoded fails publish", async () => {
    const port = await closedPort()
    const exit = await Effect.runPromiseExit(
      Effect.scoped(makeKafkaEgressThread({ brokers: [`127.0.0.1:${port}`], namespace: "nowhere", sinks: stringSink("never"), lo: 0, hi: 8, partitions: 1, connectTimeoutMs: 4000 })),
    )
    expect(Exit.isFailure(exit)).toBe(true)
    expect(JSON.stringify(exit)).toContain(`127.0.0.1:${port}`)

    const bad = new Map([["out", Sink.kafka<string>({ topic: uniqueName("kio-twb"), name: "out", encode: () => { throw new Error("no encoding") } }) as KafkaSinkSpec<unknown>]])
    const eg = await open(uniqueName("kio-twb"), bad, true)
    await run(eg.egress.recover([], 0))
    const failed = await Effect.runPromiseExit(eg.egress.publish(1, 0, epoch(1).egress))
    // A typed failure (not a defect), as on the engine's thread; later calls fail too.
    expect(Exit.isFailure(failed) && failed.cause._tag === "Fail" && failed.cause.error._tag === "EgressError").toBe(true)
    expect(JSON.stringify(failed)).toContain("no encoding")
    expect(Exit.isFailure(await Effect.runPromiseExit(eg.egress.flush))).toBe(true)
    await eg.close()
  }, 60_000)
})

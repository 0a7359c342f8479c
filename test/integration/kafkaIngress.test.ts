import { describe, expect, it } from "vitest"
import { kafkaTrace } from "../../runtime/cluster/kafkaTrace.ts"
import { Eddy } from "../../runtime/index.ts"
import { App, Sink, Source, Workflow } from "../../workflows/index.ts"
import { removeDir, tempDir } from "../helpers.ts"
import { closedPort } from "./ports.ts"
import { createTopic, kafkaClient, produce, uniqueName } from "./kafkaTopics.ts"

// Source.kafka against a real broker: positions are offsets, a resumed run continues exactly where the committed
// epochs left off, and misconfiguration fails with an error that says what is wrong.
const app = (topic: string, partitions: number) =>
  App.define({
    name: "kafka-ingress",
    workflows: [
      Workflow.from(Source.kafka({ topic, partitions, bounded: true, decode: (r) => Number(Buffer.from(r.value!).toString()) }))
        .keyBy((n) => n % 10)
        .processor<[number, number], number>((ctx, n) => {
          ctx.state.set(ctx.state.get(0) + n)
          ctx.emit([n % 10, ctx.state.get(0)])
        }, { name: "sum" })
        .sink(Sink.memory("sums")),
    ],
  })

const withBrokers = async <A>(brokers: string, f: () => Promise<A>): Promise<A> => {
  const saved = process.env["EDDY_KAFKA_BROKERS"]
  process.env["EDDY_KAFKA_BROKERS"] = brokers
  try {
    return await f()
  } finally {
    if (saved === undefined) delete process.env["EDDY_KAFKA_BROKERS"]
    else process.env["EDDY_KAFKA_BROKERS"] = saved
  }
}

describe("Kafka ingress (real Kafka)", () => {
  it("a run stopped midway resumes at the logged offsets: together exactly the records of one uninterrupted run", async () => {
    const kafka = kafkaClient()
    const topic = uniqueName("kio-resume")
    await createTopic(kafka, topic, 2)
    await produce(kafka, topic, Array.from({ length: 400 }, (_, i) => ({ value: String(i), partition: i % 2 })))
    const whole = await Eddy.run(app(topic, 2), { epochAtoms: 30 })
    const dir = tempDir("kio-resume")
    let commits = 0
    const first = Eddy.start(app(topic, 2), { dataDir: dir, epochAtoms: 30, stopWhen: () => ++commits >= 3 })
    await first.done
    const part1 = first.outputs("sums")
    expect(part1.length).toBeGreaterThan(0)
    expect(part1.length).toBeLessThan(400)
    const second = await Eddy.run(app(topic, 2), { dataDir: dir, epochAtoms: 30 })
    expect([...part1, ...second.outputs("sums")]).toEqual(whole.outputs("sums"))
    expect(whole.outputs("sums")).toHaveLength(400)
    removeDir(dir)
  }, 120_000)

  it("records read through the ingress's worker thread equal those read on the engine's thread: keys, null values, headers, offsets, timestamps", async () => {
    const kafka = kafkaClient()
    const topic = uniqueName("kio-thread")
    await createTopic(kafka, topic, 2)
    const producer = kafka.producer()
    await producer.connect()
    await producer.send({
      topic,
      messages: Array.from({ length: 300 }, (_, i) => ({
        partition: i % 2,
        key: i % 3 === 0 ? null : `k${i}`,
        value: i % 7 === 0 ? null : `v${i}`.repeat(1 + (i % 5)),
        ...(i % 4 === 0 ? { headers: { h: `x${i}`, other: Buffer.from([104, 105]) } } : {}),
        timestamp: String(1_700_000_000_000 + i),
      })),
    })
    await producer.disconnect()
    const seen = App.define({
      name: "kafka-ingress-records",
      workflows: [
        Workflow.from(
          Source.kafka({
            topic,
            partitions: 2,
            bounded: true,
            decode: (r) =>
              JSON.stringify([r.topic, r.partition, r.offset, r.key === null ? null : Buffer.from(r.key).toString("hex"), r.value === null ? null : Buffer.from(r.value).toString("hex"), r.timestamp, r.headers]),
          }),
        ).sink(Sink.memory("records")),
      ],
    })
    const threaded = async () => {
      kafkaTrace.ingressInWorker = true
      try {
        return (await Eddy.run(seen, { epochAtoms: 40 })).outputs("records")
      } finally {
        delete kafkaTrace.ingressInWorker
      }
    }
    const onEngine = (await Eddy.run(seen, { epochAtoms: 40 })).outputs("records")
    expect(onEngine).toHaveLength(300)
    expect(await threaded()).toEqual(onEngine)
    expect(onEngine.filter((r) => String(r).includes('"h":"x')).length).toBe(75)
  }, 120_000)

  it("a missing topic and a partition count that differs from the topic's are clear errors", async () => {
    await expect(Eddy.run(app(uniqueName("kio-missing"), 1))).rejects.toThrow(/topic kio-missing-\S+ (cannot be read|has 0 partitions)/)
    const kafka = kafkaClient()
    const topic = uniqueName("kio-three")
    await createTopic(kafka, topic, 3)
    await expect(Eddy.run(app(topic, 2))).rejects.toThrow(new RegExp(`topic ${topic} has 3 partitions but Source.kafka was given partitions: 2`))
  }, 120_000)

  it("an unreachable broker is an error naming the endpoint", async () => {
    const port = await closedPort()
    await withBrokers(`127.0.0.1:${port}`, async () => {
      await expect(Eddy.run(app("anything", 1))).rejects.toThrow(new RegExp(`cannot reach Kafka at 127.0.0.1:${port}`))
    })
  }, 120_000)
})

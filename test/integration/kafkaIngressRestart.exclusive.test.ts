import { execFile } from "node:child_process"
import { describe, expect, it } from "vitest"
import { ConsumerPool, type FeedEvents } from "../../runtime/cluster/KafkaTopicConsumer.ts"
import type { KafkaRecord } from "../../workflows/kafka.ts"
import { repoRoot } from "../helpers.ts"
import { createTopic, kafkaClient, produce, uniqueName } from "./kafkaTopics.ts"

// The ingress's fetch loop across a restart of the Kafka broker: it retries while the broker is away and goes on from
// its positions when it is back, every record once, in order, and the splits never fail. Runs in the exclusive phase
// (scripts/test.mjs): a broker restart is a fault for every test beside it.
const infra = (...args: string[]) =>
  new Promise<void>((resolve, reject) =>
    execFile(process.execPath, ["--import", "tsx", "scripts/infra.ts", ...args], { cwd: repoRoot }, (err, _out, stderr) => (err ? reject(new Error(`infra ${args.join(" ")}: ${stderr}`)) : resolve())),
  )

const until = async (what: string, done: () => boolean, ms = 60_000) => {
  const deadline = Date.now() + ms
  while (!done()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 20))
  }
}

describe("Kafka ingress across a broker restart (real Kafka)", () => {
  it("the splits' fetch loop retries while the broker is down and resumes at its positions: every record once, in order, no failure", async () => {
    const kafka = kafkaClient()
    const topic = uniqueName("kio-restart")
    await createTopic(kafka, topic, 2)
    const batch = (tag: string, n: number) => Array.from({ length: n }, (_, i) => ({ value: `${tag}:${i}`, partition: i % 2 }))
    await produce(kafka, topic, batch("before", 400))

    const seen = [0, 1].map(() => ({ values: [] as string[], offsets: [] as number[], failure: undefined as Error | undefined }))
    const events = (p: number): FeedEvents => ({
      records: (records: ReadonlyArray<KafkaRecord>) => {
        for (const r of records) {
          seen[p]!.values.push(Buffer.from(r.value!).toString())
          seen[p]!.offsets.push(r.offset)
        }
      },
      fetchedTo: () => undefined,
      failed: (e) => (seen[p]!.failure = e),
    })
    const pool = new ConsumerPool(kafkaClient(), { brokers: [], stallMs: 120_000 })
    const members = [0, 1].map((p) => pool.join({ topic, partition: p, partitions: 2, bounded: false, splitId: `s${p}` }, 0, events(p)))
    await Promise.all(members.map((m) => m.started))
    await until("the records from before the restart", () => seen.every((s) => s.values.length === 200))

    await infra("down", "kafka")
    await new Promise((r) => setTimeout(r, 1_000))
    await infra("up", "kafka")
    await produce(kafkaClient(), topic, batch("after", 400))
    await until("the records from after the restart", () => seen.every((s) => s.values.length === 400))
    await new Promise((r) => setTimeout(r, 300))

    seen.forEach((s, p) => {
      expect(s.failure).toBeUndefined()
      expect(s.offsets).toEqual(Array.from({ length: 400 }, (_, i) => i))
      const expected = [...batch("before", 400), ...batch("after", 400)].filter((r) => r.partition === p).map((r) => r.value)
      expect(s.values).toEqual(expected)
    })
    await Promise.all(members.map((m) => m.leave()))
    expect(pool.consumers).toBe(0)
  }, 180_000)
})

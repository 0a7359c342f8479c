import { describe, expect, it } from "vitest"
import { Eddy } from "../../runtime/index.ts"
import { App, Sink, Source, Workflow } from "../../workflows/index.ts"
import { removeDir, tempDir } from "../helpers.ts"
import { createTopic, kafkaClient, produce, uniqueName } from "./kafkaTopics.ts"

// An idle app with a live Kafka source: no back-to-back empty epochs, and a record that arrives wakes it at once. The
// wake-up is a latency bound (150 ms, against up to 500 ms without the wake), so this runs alone, in the exclusive
// phase: next to the parallel cluster fault tests the machine's load alone came near the bound.
describe("Kafka ingress wake-up (real Kafka)", () => {
  it("an idle app with a live Kafka source does not run back-to-back empty epochs, and records that arrive wake it", async () => {
    const kafka = kafkaClient()
    const topic = uniqueName("kio-idle")
    await createTopic(kafka, topic, 2)
    const live = App.define({
      name: "kafka-idle",
      workflows: [Workflow.from(Source.kafka({ topic, partitions: 2, decode: (r) => Number(Buffer.from(r.value!).toString()) })).map((n) => n).sink(Sink.memory("out"))],
    })
    let epochs = 0
    let records = 0
    let opened: () => void = () => undefined
    const ready = new Promise<void>((r) => (opened = r))
    const dir = tempDir("kio-idle")
    const running = Eddy.start(live, {
      dataDir: dir,
      epochMs: 2,
      onOpen: () => opened(),
      onCommit: (_e, votes) => {
        epochs++
        for (const v of votes) records += v.records
      },
    })
    try {
      await ready
      await new Promise((r) => setTimeout(r, 1000))
      const before = epochs
      await new Promise((r) => setTimeout(r, 1500))
      // Without the wake-up: an epoch every ~2 ms (hundreds); with it, one every 500 ms at most while nothing comes.
      expect(epochs - before).toBeLessThanOrEqual(8)
      // Records produced while idle are taken at once, not at the next idle check (up to 500 ms later).
      const took: number[] = []
      for (let i = 0; i < 8; i++) {
        await new Promise((r) => setTimeout(r, 600))
        const want = records + 1
        const at = Date.now()
        await produce(kafka, topic, [{ value: String(i), partition: i % 2 }])
        while (records < want) await new Promise((r) => setTimeout(r, 1))
        took.push(Date.now() - at)
      }
      took.sort((a, b) => a - b)
      expect(took[4]).toBeLessThan(150)
    } finally {
      await running.stop()
      removeDir(dir)
    }
    expect(running.outputs("out")).toHaveLength(8)
  }, 120_000)

})

import { Schema } from "effect"
import { describe, expect, it } from "vitest"
import { Eddy } from "../../runtime/index.ts"
import { App, DLQ_HEADERS, EGRESS_ID_HEADER, Sink, Source, Workflow } from "../../workflows/index.ts"
import { createTopic, kafkaClient, produce, readCommitted, uniqueName, type Produced } from "./kafkaTopics.ts"

// Source.kafka with a Schema decoder and a dead-letter topic, Sink.kafka out, on the embedded runtime and real Kafka.
const Reading = Schema.Struct({ sensor: Schema.String, value: Schema.Number })
type Reading = typeof Reading.Type

const sumsApp = (input: string, output: string, dlq: string) =>
  App.define({
    name: "kafka-sums",
    workflows: [
      Workflow.from(Source.kafka({ topic: input, partitions: 2, decode: Reading, deadLetterTopic: dlq, bounded: true, name: "readings" }))
        .keyBy((r) => r.sensor)
        .processor<{ sensor: string; total: number; n: number }, number>((ctx, r: Reading) => {
          const total = ctx.state.get(0) + r.value
          ctx.state.set(total)
          ctx.emit({ sensor: r.sensor, total, n: r.value })
        })
        .sink(Sink.kafka({ topic: output, key: (x) => x.sensor })),
    ],
  })

describe("Kafka ingress with dead letters (real Kafka)", () => {
  it("malformed records land in the dead-letter topic with reason, topic, partition and offset; nothing else is lost", async () => {
    const kafka = kafkaClient()
    const [input, output, dlq] = [uniqueName("kio-in"), uniqueName("kio-out"), uniqueName("kio-dlq")]
    await createTopic(kafka, input, 2)
    const records: Produced[] = []
    const expectedBad: number[] = []
    for (let i = 0; i < 300; i++) {
      const sensor = `s${i % 7}`
      const partition = i % 7 < 4 ? 0 : 1
      if (i % 23 === 5) {
        expectedBad.push(i)
        records.push({ key: sensor, partition, value: i % 2 === 0 ? `{not json ${i}` : JSON.stringify({ sensor, value: "not a number" }) })
      } else records.push({ key: sensor, partition, value: JSON.stringify({ sensor, value: i }) })
    }
    const at = await produce(kafka, input, records)
    const result = await Eddy.run(sumsApp(input, output, dlq), { epochAtoms: 40 })
    expect(result.failureList).toEqual([])

    const dead = await readCommitted(kafka, dlq)
    // Each split's dead letters in offset order (the splits' key groups order them between splits).
    expect(dead.map((d) => d.value).sort()).toEqual(expectedBad.map((i) => records[i]!.value.toString()).sort())
    for (const p of [0, 1]) {
      const offsets = dead.filter((d) => d.headers[DLQ_HEADERS.partition] === String(p)).map((d) => Number(d.headers[DLQ_HEADERS.offset]))
      expect(offsets).toEqual([...offsets].sort((a, b) => a - b))
    }
    for (const d of dead) {
      const i = records.findIndex((r) => r.value === d.value)
      expect(d.headers[DLQ_HEADERS.topic]).toBe(input)
      expect(Number(d.headers[DLQ_HEADERS.partition])).toBe(at[i]!.partition)
      expect(Number(d.headers[DLQ_HEADERS.offset])).toBe(at[i]!.offset)
      expect(d.key).toBe(records[i]!.key)
      expect(d.headers[DLQ_HEADERS.reason]!.length).toBeGreaterThan(0)
      expect(d.headers[DLQ_HEADERS.reason]).toMatch(i % 2 === 0 ? /JSON/ : /value|number/i)
    }

    // Every good record, once, with the running totals a direct computation gives (per sensor, in input order).
    const out = await readCommitted(kafka, output)
    const totals = new Map<string, number>()
    const expected: string[] = []
    records.forEach((r, i) => {
      if (expectedBad.includes(i)) return
      const { sensor, value } = JSON.parse(r.value.toString()) as Reading
      const total = (totals.get(sensor) ?? 0) + value
      totals.set(sensor, total)
      expected.push(JSON.stringify({ sensor, total, n: value }))
    })
    expect(out.map((o) => o.value).sort()).toEqual(expected.sort())
    const ids = out.map((o) => o.headers[EGRESS_ID_HEADER])
    expect(new Set(ids).size).toBe(out.length)
    for (const sensor of totals.keys()) {
      const mine = out.filter((o) => o.key === sensor).map((o) => (JSON.parse(o.value) as { total: number }).total)
      expect(mine).toEqual([...mine].sort((a, b) => a - b))
    }
  }, 120_000)
})

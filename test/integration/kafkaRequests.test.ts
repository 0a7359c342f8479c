// Client requests through Kafka topics (for high-volume producers): an actor system reads requests from a topic and
// answers on another, exactly once; a duplicate request (same key) runs once and is answered with the first answer;
// a record that is no request goes to the dead-letter topic, a request the app refuses (unknown actor type) is
// answered with the error, and nothing else is lost.
import { describe, expect, it } from "vitest"
import { Actors, type KafkaAnswer } from "../../actors/index.ts"
import { counter } from "../../examples/counter/app.ts"
import { Eddy } from "../../runtime/index.ts"
import { App, DLQ_HEADERS } from "../../workflows/index.ts"
import { createTopic, kafkaClient, produce, readCommitted, uniqueName, type Produced } from "./kafkaTopics.ts"

describe("requests through Kafka topics (real Kafka)", () => {
  it("answers every request once (duplicates with the first answer, refused ones with the error); records that are no request go to the dead-letter topic", async () => {
    const kafka = kafkaClient()
    const [requests, replies, dlq] = [uniqueName("req"), uniqueName("rep"), uniqueName("req-dlq")]
    await createTopic(kafka, requests, 2)
    const records: Produced[] = []
    const sums = new Map<string, number>()
    for (let i = 0; i < 120; i++) {
      const target = `counter/c${i % 5}`
      const partition = i % 2
      if (i % 31 === 7) {
        records.push({ partition, value: i % 2 === 0 ? "{oops" : JSON.stringify({ target: "nosuch/x", message: { add: 1 } }) })
        continue
      }
      // Every 10th request is produced twice (a producer's retry): it must run once.
      const value = JSON.stringify({ target, message: { add: i }, key: `k${i}` })
      records.push({ partition, value })
      if (i % 10 === 0) records.push({ partition, value })
    }
    await produce(kafka, requests, records)
    for (let i = 0; i < 120; i++) if (i % 31 !== 7) sums.set(`c${i % 5}`, (sums.get(`c${i % 5}`) ?? 0) + i)
    const system = Actors.system({ name: "counters", behaviors: [counter], kafka: { requests, replies, partitions: 2, deadLetterTopic: dlq } })
    const app = App.define({ name: "kafka-counters", workflows: [system.workflow], views: [system.view] })
    const running = Eddy.start(app, { epochAtoms: 20, stopWhenIdle: false, onFailure: () => undefined })
    let answers: Array<{ key: string | null; value: string }> = []
    for (let tries = 0; tries < 60; tries++) {
      answers = await readCommitted(kafka, replies).catch(() => [])
      if (new Set(answers.map((a) => a.key)).size >= 120 - 2) break
      await new Promise((r) => setTimeout(r, 500))
    }
    await running.stop()
    const all = answers.map((a) => JSON.parse(a.value) as KafkaAnswer)
    for (const a of all) expect(Number.isSafeInteger(a.epoch) && a.epoch > 0, `epoch of ${JSON.stringify(a)}`).toBe(true)
    // The requests to an unknown type are answered under their record's position with the error; nothing ran.
    const refused = all.filter((a) => !a.key.startsWith("k"))
    expect(refused.map((a) => a.error?.tag)).toEqual(["UnknownActorType", "UnknownActorType"])
    for (const a of refused) expect(a.key).toMatch(new RegExp(`^${requests}/[01]/\\d+$`))
    const parsed = all.filter((a) => a.key.startsWith("k"))
    // An answer per request, none for malformed ones; a duplicate read in a later epoch is answered again, with the
    // same value (within one epoch it joins the first as a waiter: one answer).
    const byKey = new Map<string, unknown[]>()
    const firstEpoch = new Map<string, number>()
    for (const a of parsed) {
      byKey.set(a.key, [...(byKey.get(a.key) ?? []), a.reply])
      firstEpoch.set(a.key, Math.min(firstEpoch.get(a.key) ?? Infinity, a.epoch))
    }
    const keys = [...byKey.keys()].sort()
    expect(keys).toHaveLength(120 - 4)
    for (const [key, replies] of byKey) {
      expect(new Set(replies).size, `answers of ${key}`).toBe(1)
      expect(replies.length, `answers of ${key}`).toBeLessThanOrEqual(Number(key.slice(1)) % 10 === 0 ? 2 : 1)
    }
    // Exactly once: each counter's answers are the running sums of its adds, ending at the total.
    for (let c = 0; c < 5; c++) {
      const mine = [...byKey.entries()].filter(([k]) => Number(k.slice(1)) % 5 === c).map(([k, r]) => ({ add: Number(k.slice(1)), reply: r[0] as number }))
      mine.sort((x, y) => x.reply - y.reply)
      let sum = 0
      let epoch = 0
      for (const m of mine) {
        sum += m.add
        expect(m.reply).toBe(sum)
        // An answer's epoch is the commit that made its add durable: later adds, no earlier epochs.
        const e = firstEpoch.get(`k${m.add}`)!
        expect(e, `epoch of k${m.add}`).toBeGreaterThanOrEqual(epoch)
        epoch = e
      }
      expect(sum).toBe(sums.get(`c${c}`))
      expect(await system.query(running, system.ref(counter, `c${c}`))).toBe(sum)
    }
    const dead = await readCommitted(kafka, dlq)
    expect(dead).toHaveLength(2)
    for (const d of dead) {
      expect(d.headers[DLQ_HEADERS.topic]).toBe(requests)
      expect(d.headers[DLQ_HEADERS.reason]).toMatch(/JSON/)
    }
  }, 120_000)

  it("requests keyed by their target in Kafka, with no key of their own, each run once and are answered under their record's position", async () => {
    const kafka = kafkaClient()
    const [requests, replies] = [uniqueName("req-bykey"), uniqueName("rep-bykey")]
    await createTopic(kafka, requests, 2)
    // As a producer keeping each target's requests in order keys them: by target. The Kafka key is no identity.
    const records: Produced[] = Array.from({ length: 60 }, (_, i) => ({ key: `counter/e${i % 3}`, value: JSON.stringify({ target: `counter/e${i % 3}`, message: { add: i + 1 } }) }))
    const positions = await produce(kafka, requests, records)
    const system = Actors.system({ name: "counters", behaviors: [counter], kafka: { requests, replies, partitions: 2 } })
    const app = App.define({ name: "kafka-counters-bykey", workflows: [system.workflow], views: [system.view] })
    const running = Eddy.start(app, { epochAtoms: 7, stopWhenIdle: false, onFailure: () => undefined })
    let answers: KafkaAnswer[] = []
    for (let tries = 0; tries < 60; tries++) {
      answers = (await readCommitted(kafka, replies).catch(() => [])).map((a) => JSON.parse(a.value) as KafkaAnswer)
      if (answers.length >= 60) break
      await new Promise((r) => setTimeout(r, 500))
    }
    const totals = [0, 1, 2].map((e) => system.query(running, system.ref(counter, `e${e}`)))
    const state = await Promise.all(totals)
    await running.stop()
    expect(answers.map((a) => a.key).sort()).toEqual(positions.map((p) => `${requests}/${p.partition}/${p.offset}`).sort())
    const byKey = new Map(answers.map((a) => [a.key, a.reply as number]))
    for (let e = 0; e < 3; e++) {
      const mine = records.map((_, i) => i).filter((i) => i % 3 === e).map((i) => ({ add: i + 1, reply: byKey.get(`${requests}/${positions[i]!.partition}/${positions[i]!.offset}`)! }))
      mine.sort((x, y) => x.reply - y.reply)
      let sum = 0
      for (const m of mine) {
        sum += m.add
        expect(m.reply, `counter e${e}: the answers are the running sums (a request skipped or run twice)`).toBe(sum)
      }
      expect(state[e]).toBe(sum)
    }
  }, 120_000)
})

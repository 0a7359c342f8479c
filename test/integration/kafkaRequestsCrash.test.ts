// Requests through Kafka topics across SIGKILLs (real Kafka): `eddy run` of counters taking requests from a topic is
// killed at random moments after committed epochs and restarted from its data directory. Every request record is
// answered exactly once on the replies topic (read_committed), a request with a key of its own and produced twice
// has one answer value, and each counter's answers are the running sums of its adds, ending at its committed state.
import type { ChildProcess } from "node:child_process"
import { afterAll, describe, expect, it } from "vitest"
import type { KafkaAnswer } from "../../actors/index.ts"
import { runEddy, seeded, tempDirs } from "../helpers.ts"
import { seedOf } from "../crash/crashLoop.ts"
import { expectRunningSums } from "./kafkaCounterChecks.ts"
import { createTopic, kafkaClient, produce, readCommitted, uniqueName, type Produced } from "./kafkaTopics.ts"

const N = 240
const COUNTERS = 4
const KILLS = 5

describe("requests through Kafka topics across SIGKILLs (real Kafka)", () => {
  const temp = tempDirs()
  afterAll(temp.removeAll)

  it("every request record is answered once, and every add counted once", async () => {
    const seed = seedOf()
    const random = seeded(seed)
    const kafka = kafkaClient()
    const [requests, replies] = [uniqueName("crash-req"), uniqueName("crash-rep")]
    await createTopic(kafka, requests, 2)
    // Keyed by target (for order), as a producer would; a third carry a key of their own, and every ninth of those is
    // produced twice (a producer's retry).
    const records: Produced[] = []
    /** Request i's record (the first, if produced twice). */
    const recordOf: number[] = []
    const keyed = new Set<number>()
    for (let i = 0; i < N; i++) {
      const target = `counter/k${i % COUNTERS}`
      const withKey = i % 3 === 0
      const value = JSON.stringify({ target, message: { add: i + 1 }, ...(withKey ? { key: `q${i}` } : {}) })
      recordOf.push(records.length)
      records.push({ key: target, value, partition: i % 2 })
      if (withKey) keyed.add(i)
      if (withKey && i % 9 === 0) records.push({ key: target, value, partition: i % 2 })
    }
    const positions = await produce(kafka, requests, records)
    const dir = temp.dir("kafka-requests-crash")
    const args = ["run", "test/apps/kafkaCounters.ts", "--requests", requests, "--replies", replies, "--partitions", "2", "--data-dir", dir, "--epoch-atoms", "3", "--snapshot-every", "5"]

    let kills = 0
    let answers: KafkaAnswer[] = []
    for (let attempt = 0; attempt < 40 && answers.length === 0; attempt++) {
      const killAfter = 1 + Math.floor(random() * 12)
      let seen = 0
      let child: ChildProcess | undefined
      let waiting: ReturnType<typeof setInterval> | undefined
      const exit = await runEddy(args, (line, c) => {
        child ??= c
        if (!line.startsWith("eddy: committed epoch")) return
        if (kills < KILLS && ++seen === killAfter) c.kill("SIGKILL")
        // The last run: stop it (SIGTERM, at an epoch boundary) once every request has its answer.
        if (kills >= KILLS && waiting === undefined) {
          waiting = setInterval(() => {
            void readCommitted(kafka, replies)
              .then((rs) => {
                const got = rs.map((r) => JSON.parse(r.value) as KafkaAnswer)
                if (new Set(got.map((a) => a.key)).size >= N) {
                  clearInterval(waiting)
                  answers = got
                  child?.kill("SIGTERM")
                }
              })
              .catch(() => undefined)
          }, 1000)
        }
      })
      clearInterval(waiting)
      if (exit.signal === "SIGKILL") kills++
      else expect(answers.length, `seed ${seed}: the run ended before every answer (code ${exit.code}): ${exit.stderr.slice(-2000)}`).toBeGreaterThan(0)
    }
    console.log(`kafka requests crash test (seed ${seed}): ${kills} SIGKILLs, ${answers.length} answers`)
    expect(kills).toBe(KILLS)

    // One answer per record without a key of its own, under its position; keyed ones by their key, one value each.
    const byKey = new Map<string, unknown[]>()
    for (const a of answers) byKey.set(a.key, [...(byKey.get(a.key) ?? []), a.reply])
    const keyOf = (i: number): string => {
      if (keyed.has(i)) return `q${i}`
      const p = positions[recordOf[i]!]!
      return `${requests}/${p.partition}/${p.offset}`
    }
    expect(byKey.size).toBe(N)
    for (let i = 0; i < N; i++) {
      const got = byKey.get(keyOf(i))
      expect(got, `request ${i} answered`).toBeDefined()
      if (!keyed.has(i)) expect(got, `seed ${seed}: request ${i} (no key) answered exactly once`).toHaveLength(1)
      expect(new Set(got).size, `seed ${seed}: request ${i}'s answers`).toBe(1)
    }
    const added = Array.from({ length: N }, (_, i) => ({ counter: i % COUNTERS, add: i + 1, reply: byKey.get(keyOf(i))![0] as number }))
    await expectRunningSums(dir, { requests, replies }, COUNTERS, added, `seed ${seed}`)
  }, 240_000)
})

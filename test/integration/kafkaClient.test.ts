// Client.kafka (real Kafka): the client API through an app's request and reply topics. Asks and tells are answered
// once with their epoch, keyed retries and a session's duplicate records run once, errors are typed, state reads go
// through the `queries` client; across SIGKILLs of `eddy run`, every call of a live client gets its one answer.
import type { ChildProcess } from "node:child_process"
import { afterAll, describe, expect, it } from "vitest"
import { Actors, type KafkaAnswer } from "../../actors/index.ts"
import { BadRequest, Client, InvalidPayload, Rejected, Timeout, Unavailable, UnknownActorType, type EddyClient } from "../../client/index.ts"
import { counter } from "../../examples/counter/app.ts"
import { Eddy } from "../../runtime/index.ts"
import { App } from "../../workflows/index.ts"
import { seedOf } from "../crash/crashLoop.ts"
import { runEddy, seeded, tempDirs } from "../helpers.ts"
import { expectRunningSums, stopRuns, type AnsweredAdd } from "./kafkaCounterChecks.ts"
import { createTopic, kafkaClient, produce, readCommitted, uniqueName } from "./kafkaTopics.ts"

const topics = async (name: string) => {
  const kafka = kafkaClient()
  const [requests, replies] = [uniqueName(`${name}-req`), uniqueName(`${name}-rep`)]
  await createTopic(kafka, requests, 2)
  await createTopic(kafka, replies, 1)
  return { kafka, requests, replies }
}

const rejection = (p: Promise<unknown>): Promise<unknown> => p.then(
  (v) => {
    throw new Error(`expected a rejection, got ${JSON.stringify(v)}`)
  },
  (e: unknown) => e,
)

describe("Client.kafka (real Kafka)", () => {
  const temp = tempDirs()
  afterAll(temp.removeAll)

  it("asks and tells answered once with their epoch; keyed retries run once; typed errors; state through queries", async () => {
    const { requests, replies } = await topics("client")
    const system = Actors.system({ name: "counters", behaviors: [counter], kafka: { requests, replies, partitions: 2 } })
    const app = Eddy.start(App.define({ name: "kafka-client", workflows: [system.workflow], views: [system.view] }), { serve: { port: 0 }, stopWhenIdle: false, onFailure: () => undefined })
    const clients: EddyClient[] = []
    try {
      const client = await Client.kafka({ requests, replies, queries: Client.http((await app.url)!), timeoutMs: 20_000 })
      const other = await Client.kafka({ requests, replies, timeoutMs: 20_000 })
      clients.push(client, other)

      // 200 asks without a key at once to 5 counters (each its record, with a correlation id): the running sums, each once.
      const calls = Array.from({ length: 200 }, (_, i) => client.ask<number>(`counter/c${i % 5}`, { add: i + 1 }).then((a) => ({ i, ...a })))
      const answers = await Promise.all(calls)
      for (let c = 0; c < 5; c++) {
        const mine = answers.filter((a) => a.i % 5 === c).sort((x, y) => x.reply - y.reply)
        let sum = 0
        let epoch = 0
        for (const m of mine) {
          sum += m.i + 1
          expect(m.reply, `counter c${c}: the answers are the running sums`).toBe(sum)
          expect(m.epoch).toBeGreaterThanOrEqual(Math.max(epoch, 1))
          epoch = m.epoch
        }
        // Read-your-writes through the queries client, from the last answer's epoch.
        expect(await client.state<number>(`counter/c${c}`, { minEpoch: epoch })).toBe(sum)
      }

      // A tell resolves once committed; a keyed ask asked again, by this client and at once by another, runs once.
      const told = await client.tell({ type: "counter", id: "t" }, { add: 5 })
      expect(told.epoch).toBeGreaterThan(0)
      const first = await client.ask<number>("counter/t", { add: 10 }, { idempotencyKey: "ten" })
      expect(first.reply).toBe(15)
      const again = await Promise.all([client.ask<number>("counter/t", { add: 10 }, { idempotencyKey: "ten" }), other.ask<number>("counter/t", { add: 10 }, { idempotencyKey: "ten" })])
      expect(again.map((a) => a.reply)).toEqual([15, 15])
      expect(await client.state<number>("counter/t", { minEpoch: Math.max(...again.map((a) => a.epoch)) })).toBe(15)
      expect(await client.list("counter")).toContain("t")

      // Typed errors: refused by the app (answered on the replies topic), or before anything is sent.
      const unknown = await rejection(client.ask("nosuch/x", { add: 1 }))
      expect(unknown).toBeInstanceOf(UnknownActorType)
      expect((unknown as Error).message).toMatch(/no actor type 'nosuch'/)
      const thrown = await rejection(client.ask("counter/t", { boom: "no, thanks" }))
      expect(thrown).toBeInstanceOf(Rejected)
      expect((thrown as Error).message).toMatch(/no, thanks/)
      expect(await rejection(client.ask("counter", { add: 1 }))).toBeInstanceOf(InvalidPayload)
      expect(await rejection(client.ask("counter/t", { add: 1n }))).toBeInstanceOf(InvalidPayload)
      expect(await client.state<number>("counter/t")).toBe(15)
      // Without a queries client, reads are refused with a clear error.
      const read = await rejection(other.state("counter/t"))
      expect(read).toBeInstanceOf(BadRequest)
      expect((read as Error).message).toMatch(/queries/)
    } finally {
      await Promise.all(clients.map((c) => c.close()))
      await app.stop()
    }
  }, 120_000)

  it("a session's duplicate records run once, a late copy below its acknowledgement is refused, a ref labels answers only; no app: Timeout; no topic: Unavailable", async () => {
    const { kafka, requests, replies } = await topics("client-session")
    // Records as a client library writes them, with a retried Produce's duplicates: session s, calls 0..2.
    const call = (seq: number, ack: number, add: number) => ({ key: "counter/s", value: JSON.stringify({ target: "counter/s", message: { add }, session: "s", seq, ack, timeoutMs: 5_000 }) })
    // And two records with the same correlation id: a ref only labels the answer, each record runs.
    const ref = { key: "counter/r", value: JSON.stringify({ target: "counter/r", message: { add: 1 }, ref: "x" }) }
    await produce(kafka, requests, [call(0, 0, 1), call(0, 0, 1), call(1, 0, 10), ref, ref])
    const system = Actors.system({ name: "counters", behaviors: [counter], kafka: { requests, replies, partitions: 2 } })
    const app = Eddy.start(App.define({ name: "kafka-client-session", workflows: [system.workflow], views: [system.view] }), { stopWhenIdle: false, onFailure: () => undefined })
    const byKey = (as: KafkaAnswer[], key: string) => as.filter((a) => a.key === key).map((a) => a.reply ?? a.error?.tag)
    const answersOnceThere = async (what: string, there: (as: KafkaAnswer[]) => boolean): Promise<KafkaAnswer[]> => {
      for (let tries = 0; tries < 60; tries++) {
        const got = (await readCommitted(kafka, replies).catch(() => [])).map((r) => JSON.parse(r.value) as KafkaAnswer)
        if (there(got)) return got
        await new Promise((r) => setTimeout(r, 250))
      }
      throw new Error(`no ${what} on ${replies}`)
    }
    try {
      const early = await answersOnceThere("answers to s:0, s:1 and x, x", (as) => byKey(as, "s:0").length > 0 && byKey(as, "s:1").length > 0 && byKey(as, "x").length === 2)
      expect(byKey(early, "x").sort()).toEqual([1, 2])
      // The duplicate of call 0 is answered again (a later epoch) or joins the first as a waiter: one value.
      expect(new Set(byKey(early, "s:0"))).toEqual(new Set([1]))
      expect(byKey(early, "s:1")).toEqual([11])
      // Call 2 acknowledges 0 and 1 (their answers reached the client); a copy of call 0 read after it runs nothing.
      await produce(kafka, requests, [call(2, 2, 100), call(0, 0, 1)])
      const late = await answersOnceThere("answers to s:2 and the late copy", (as) => byKey(as, "s:2").length > 0 && byKey(as, "s:0").includes("Rejected"))
      expect(byKey(late, "s:2")).toEqual([111])
      expect(byKey(late, "s:0").slice(-1)).toEqual(["Rejected"])
      expect(await system.query(app, system.ref(counter, "s"))).toBe(111)
    } finally {
      await app.stop()
    }

    // Nobody reads the requests: the call times out, with the advice to retry under the same key.
    const idle = await Client.kafka({ requests, replies, timeoutMs: 800 })
    try {
      const timedOut = await rejection(idle.ask("counter/s", { add: 1 }, { idempotencyKey: "late" }))
      expect(timedOut).toBeInstanceOf(Timeout)
      expect((timedOut as Error).message).toMatch(/same idempotency key/)
    } finally {
      await idle.close()
    }
    expect(await rejection(Client.kafka({ requests, replies: uniqueName("missing"), timeoutMs: 800 }))).toBeInstanceOf(Unavailable)
  }, 120_000)

  it("across SIGKILLs of eddy run, every call of a live client gets its one answer and every add counts once", async () => {
    const seed = seedOf()
    const random = seeded(seed)
    const { requests, replies } = await topics("client-crash")
    const dir = temp.dir("kafka-client-crash")
    const args = ["run", "test/apps/kafkaCounters.ts", "--requests", requests, "--replies", replies, "--partitions", "2", "--data-dir", dir, "--epoch-atoms", "5", "--snapshot-every", "5"]
    const KILLS = 4
    const COUNTERS = 3
    const CALLERS = 6
    const PER_CALLER = 40
    let kills = 0
    let stopping = false
    let child: ChildProcess | undefined
    // The app runs, is killed after a random number of commits, and starts again from its data directory.
    const runs = (async () => {
      for (let attempt = 0; attempt < 30 && !stopping; attempt++) {
        const killAfter = 1 + Math.floor(random() * 10)
        let seen = 0
        const exit = await runEddy(args, (line, c) => {
          child = c
          if (line.startsWith("eddy: committed epoch") && kills < KILLS && ++seen === killAfter) c.kill("SIGKILL")
        })
        if (exit.signal === "SIGKILL") kills++
        else if (!stopping) throw new Error(`seed ${seed}: eddy run ended on its own (code ${exit.code}): ${exit.stderr.slice(-2000)}`)
      }
    })()
    // Topics exist already: the client connects while the first run starts.
    const client = await Client.kafka({ requests, replies, timeoutMs: 60_000 })
    const got: AnsweredAdd[] = []
    try {
      await Promise.all(
        Array.from({ length: CALLERS }, async (_, c) => {
          // At least PER_CALLER calls each, and on until the app was killed KILLS times.
          for (let j = 0; j < PER_CALLER || (kills < KILLS && j < 20 * PER_CALLER); j++) {
            const add = j * CALLERS + c + 1
            const counter = add % COUNTERS
            // Every fourth call has a key of its own; the others are their records, with a correlation id.
            const a = await client.ask<number>(`counter/k${counter}`, { add }, j % 4 === 0 ? { idempotencyKey: `c${c}-${j}` } : {})
            got.push({ add, counter, reply: a.reply })
            if (random() < 0.1) await new Promise((r) => setTimeout(r, random() * 300))
          }
        }),
      )
    } finally {
      stopping = true
      await client.close()
      // The current run (a restart's child may not have said anything yet): stopped at an epoch boundary.
      await stopRuns(runs, () => child)
    }
    console.log(`Client.kafka crash test (seed ${seed}): ${kills} SIGKILLs, ${got.length} answers`)
    expect(kills).toBe(KILLS)
    expect(got.length).toBeGreaterThanOrEqual(CALLERS * PER_CALLER)
    await expectRunningSums(dir, { requests, replies }, COUNTERS, got, `seed ${seed}`)
  }, 240_000)
})

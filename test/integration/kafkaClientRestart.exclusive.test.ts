// Client.kafka across a restart of the Kafka broker (real Kafka): calls made before, during and after the broker is
// away are all answered once, and every add counts once. The client's producer retries while the broker is away and
// its replies consumer, rejoining, goes on from its own positions (a fresh group with no offsets would start at the
// topic's end and miss answers). `eddy run` of the app is started again whenever it stops (it may fail while the
// broker is away). Runs in the exclusive phase (scripts/test.mjs): a broker restart is a fault for every test beside it.
import { execFile, type ChildProcess } from "node:child_process"
import { afterAll, describe, expect, it } from "vitest"
import { Client } from "../../client/index.ts"
import { committedState, stateReader } from "../../runtime/index.ts"
import { kafkaCountersApp } from "../apps/kafkaCounters.ts"
import { repoRoot, runEddy, tempDirs } from "../helpers.ts"
import { createTopic, kafkaClient, uniqueName } from "./kafkaTopics.ts"

const infra = (...args: string[]) =>
  new Promise<void>((resolve, reject) =>
    execFile(process.execPath, ["--import", "tsx", "scripts/infra.ts", ...args], { cwd: repoRoot }, (err, _out, stderr) => (err ? reject(new Error(`infra ${args.join(" ")}: ${stderr}`)) : resolve())),
  )

describe("Client.kafka across a broker restart (real Kafka)", () => {
  const temp = tempDirs()
  afterAll(temp.removeAll)

  it("every call is answered once and every add counts once", async () => {
    const kafka = kafkaClient()
    const [requests, replies] = [uniqueName("restart-req"), uniqueName("restart-rep")]
    await createTopic(kafka, requests, 2)
    await createTopic(kafka, replies, 1)
    const dir = temp.dir("kafka-client-restart")
    const args = ["run", "test/apps/kafkaCounters.ts", "--requests", requests, "--replies", replies, "--partitions", "2", "--data-dir", dir, "--epoch-atoms", "5"]
    let stopping = false
    let child: ChildProcess | undefined
    let starts = 0
    const runs = (async () => {
      while (!stopping) {
        starts++
        await runEddy(args, (_line, c) => (child = c))
        if (!stopping) await new Promise((r) => setTimeout(r, 500))
      }
    })()

    const COUNTERS = 3
    const CALLERS = 4
    const client = await Client.kafka({ requests, replies, timeoutMs: 120_000 })
    const got: Array<{ add: number; counter: number; reply: number }> = []
    let restarted = false
    let callsAfterRestart = 0
    try {
      const callers = Array.from({ length: CALLERS }, async (_, c) => {
        // On until the broker is back and 20 more calls each were answered.
        for (let j = 0, after = 0; j < 1_000 && after < 20; j++) {
          const add = j * CALLERS + c + 1
          const counter = add % COUNTERS
          const a = await client.ask<number>(`counter/k${counter}`, { add }, j % 3 === 0 ? { idempotencyKey: `c${c}-${j}` } : {})
          got.push({ add, counter, reply: a.reply })
          if (restarted) {
            after++
            callsAfterRestart++
          }
        }
      })
      // The broker goes away while the callers wait for answers, and comes back.
      while (got.length < 40) await new Promise((r) => setTimeout(r, 50))
      await infra("down", "kafka")
      await new Promise((r) => setTimeout(r, 2_000))
      await infra("up", "kafka")
      restarted = true
      await Promise.all(callers)
    } finally {
      stopping = true
      await client.close()
      const ended = runs.then(() => true)
      while (!(await Promise.race([ended, new Promise<boolean>((r) => setTimeout(() => r(false), 500))]))) child?.kill("SIGTERM")
    }
    console.log(`Client.kafka across a broker restart: ${got.length} answers, ${callsAfterRestart} after the restart, eddy run started ${starts} times`)
    expect(callsAfterRestart).toBe(CALLERS * 20)
    const state = stateReader(await committedState(dir))
    const view = kafkaCountersApp({ requests, replies, partitions: 2 }).views![0]!
    for (let c = 0; c < COUNTERS; c++) {
      const mine = got.filter((g) => g.counter === c).sort((x, y) => x.reply - y.reply)
      let sum = 0
      for (const m of mine) {
        sum += m.add
        expect(m.reply, `counter k${c}: the answers are the running sums (an add ran twice or never)`).toBe(sum)
      }
      expect(view.show(await state.query(view.task, view.key(`counter/k${c}`)!))).toBe(sum)
    }
  }, 300_000)
})

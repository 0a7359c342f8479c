// Client.kafka across restarts of the Kafka broker (real Kafka): calls made before, during and after the broker is
// away are all answered once, and every add counts once. The client's producer retries while the broker is away and
// its replies consumer, rejoining, goes on from its own positions (a fresh group with no offsets would start at the
// topic's end and miss answers). One `eddy run` serves throughout: when the broker's absence fails a Kafka port, it
// starts its engine again from its data directory. A broker stopped while the app's egress commits has left that transaction
// hanging (its markers lost: the answers never visible): the egress's watchdog and recovery must end it
// (hangingTransactions.ts). Runs in the exclusive phase (scripts/test.mjs): a broker restart is a fault for every test beside it.
import { execFile, type ChildProcess } from "node:child_process"
import { afterAll, describe, expect, it } from "vitest"
import { Client } from "../../client/index.ts"
import { repoRoot, runEddy, tempDirs } from "../helpers.ts"
import { expectRunningSums, type AnsweredAdd } from "./kafkaCounterChecks.ts"
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
    // One `eddy run`: it must ride through every restart by itself, starting its engine again from the data directory
    // whenever the broker's absence fails a Kafka port (`--max-restarts`).
    let child: ChildProcess | undefined
    let exited = false
    const restartLines: string[] = []
    const hangingLines: string[] = []
    const app = runEddy([...args, "--max-restarts", "500"], (line, c) => {
      child = c
      if (line.includes("restarting from the last committed epoch")) restartLines.push(line)
      if (line.includes("ended a hanging transaction")) hangingLines.push(line)
    }).finally(() => (exited = true))

    const COUNTERS = 3
    const CALLERS = 4
    const RESTARTS = Number(process.env.EDDY_BROKER_RESTARTS ?? 2)
    const client = await Client.kafka({ requests, replies, timeoutMs: 120_000 })
    const got: AnsweredAdd[] = []
    let restarted = false
    let callsAfterRestart = 0
    try {
      const callers = Promise.all(Array.from({ length: CALLERS }, async (_, c) => {
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
      }))
      // A caller's failure fails the test below (await callers), not as an unhandled rejection while the broker restarts.
      let failed = false
      callers.catch(() => (failed = true))
      // The broker goes away while the callers wait for answers, and comes back, RESTARTS times.
      // Each time once 40 more calls were answered: the app must have come back between restarts.
      for (let r = 1; r <= RESTARTS; r++) {
        const from = got.length
        while (got.length < from + 40 && !failed) await new Promise((r) => setTimeout(r, 50))
        if (failed) break
        await infra("down", "kafka")
        await new Promise((r) => setTimeout(r, 2_000))
        await infra("up", "kafka")
      }
      restarted = true
      await callers
      // The app was never gone for good.
      expect(exited).toBe(false)
    } finally {
      const gone = exited
      await client.close()
      child?.kill("SIGTERM")
      const exit = await app
      if (gone) console.log(`eddy run exited early (${exit.code ?? exit.signal}): ${exit.stderr.split("\n").filter((l) => !l.includes("committed epoch")).slice(-10).join("\n")}`)
    }
    console.log(`Client.kafka across ${RESTARTS} broker restarts: ${got.length} answers, ${callsAfterRestart} after the last; eddy run restarted its engine ${restartLines.length} times, ended ${hangingLines.length} hanging transactions`)
    expect(callsAfterRestart).toBe(CALLERS * 20)
    await expectRunningSums(dir, { requests, replies }, COUNTERS, got, "across a broker restart")
  }, 300_000)
})

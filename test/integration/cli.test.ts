import type { ChildProcess } from "node:child_process"
import { afterAll, describe, expect, it } from "vitest"
import { removeDir, runEddy, tempDir, type Exit } from "../helpers.ts"
import { createTopic, kafkaClient, produce, uniqueName } from "./kafkaTopics.ts"
import { closedPort } from "./ports.ts"

// The CLI as a user runs it (bin/eddy.js in a process of its own): `eddy run --port` serving an app, `eddy send` and
// `eddy state` against it, `eddy tail` on a real Kafka topic.

const running: ChildProcess[] = []
afterAll(() => {
  for (const c of running) c.kill("SIGKILL")
})

/** Starts a long-running command and waits for its stderr line containing `marker` (failing if it exits first). */
const startedUntil = (args: ReadonlyArray<string>, marker: string) =>
  new Promise<{ readonly line: string; readonly child: ChildProcess; readonly exit: Promise<Exit> }>((resolve, reject) => {
    const exit: Promise<Exit> = runEddy(args, (line, child) => {
      if (!running.includes(child)) running.push(child)
      if (line.includes(marker)) resolve({ line, child, exit })
    })
    exit.then((e) => reject(new Error(`eddy ${args.join(" ")} exited (${e.code}) before '${marker}': ${e.stderr}`)), reject)
  })

describe("the eddy CLI", () => {
  it("eddy run --port serves an app; eddy send prints replies (once per key), eddy state the committed state; bad input is a clear error", async () => {
    const dir = tempDir("cli-run")
    const port = await closedPort()
    const url = `http://127.0.0.1:${port}`
    const { child: server, exit: serverExit } = await startedUntil(["run", "examples/counter", "--port", String(port), "--data-dir", dir], "serves clients at")
    try {
      const first = await runEddy(["send", "examples/counter", "counter/a", '{"add": 2}', "--key", "k1", "--url", url])
      expect(first).toMatchObject({ code: 0 })
      expect(first.stdout.trim()).toBe("2")
      // The same key again: the first answer, and the add is not applied twice.
      expect((await runEddy(["send", "examples/counter", "counter/a", '{"add": 2}', "--key", "k1", "--url", url])).stdout.trim()).toBe("2")
      expect((await runEddy(["send", "examples/counter", "counter/a", '{"add": 3}', "--url", url])).stdout.trim()).toBe("5")
      const told = await runEddy(["send", "examples/counter", "counter/b", '{"add": 7}', "--tell", "--url", url])
      expect(told.code).toBe(0)
      expect(told.stdout.trim()).toBe("")
      expect((await runEddy(["state", "examples/counter", "counter/a", "--url", url])).stdout.trim()).toBe("5")
      expect((await runEddy(["state", "examples/counter", "counter/b", "--url", url])).stdout.trim()).toBe("7")

      const unknown = await runEddy(["send", "examples/counter", "nosuch/x", '{"add": 1}', "--url", url])
      expect(unknown.code).not.toBe(0)
      expect(unknown.stderr).toMatch(/UnknownActorType/)
      const thrown = await runEddy(["send", "examples/counter", "counter/a", '{"boom": "no way"}', "--url", url])
      expect(thrown.code).not.toBe(0)
      expect(thrown.stderr).toMatch(/Rejected.*no way/)
      const badJson = await runEddy(["send", "examples/counter", "counter/a", "{add: 1", "--url", url])
      expect(badJson.code).not.toBe(0)
      expect(badJson.stderr).toMatch(/JSON/)
      // Nothing of the rejected calls changed the state.
      expect((await runEddy(["state", "examples/counter", "counter/a", "--url", url])).stdout.trim()).toBe("5")
    } finally {
      server.kill("SIGINT")
      await serverExit
      removeDir(dir)
    }
  }, 180_000)

  it("eddy tail prints a topic's committed records (never an aborted transaction's), up to --limit, or new ones until --idle-ms", async () => {
    const kafka = kafkaClient()
    const topic = uniqueName("cli-tail")
    await createTopic(kafka, topic, 2)
    await produce(kafka, topic, Array.from({ length: 6 }, (_, i) => ({ value: `r${i}`, partition: i % 2 })))
    const producer = kafka.producer({ transactionalId: `cli-${topic}`, maxInFlightRequests: 1, idempotent: true })
    await producer.connect()
    try {
      const tx = await producer.transaction()
      await tx.send({ topic, messages: [{ value: "aborted", partition: 0 }] })
      await tx.abort()
    } finally {
      await producer.disconnect()
    }
    await produce(kafka, topic, [{ value: "r6", partition: 0 }])

    const all = await runEddy(["tail", topic, "--limit", "7"])
    expect(all.code).toBe(0)
    const lines = all.stdout.trim().split("\n")
    expect([...lines].sort()).toEqual(["r0", "r1", "r2", "r3", "r4", "r5", "r6"])
    // Each partition's records in offset order.
    expect(lines.filter((l) => ["r0", "r2", "r4", "r6"].includes(l))).toEqual(["r0", "r2", "r4", "r6"])
    expect(all.stderr).toMatch(/7 records/)

    const idle = await runEddy(["tail", topic, "--idle-ms", "1500"])
    expect(idle.code).toBe(0)
    expect(idle.stdout.trim().split("\n").sort()).toEqual(["r0", "r1", "r2", "r3", "r4", "r5", "r6"])

    // --from latest: only what arrives after it started (it says where it starts on stderr).
    const later = await startedUntil(["tail", topic, "--from", "latest", "--limit", "2"], "reading from latest")
    expect(later.line).toMatch(/partition 0 at 6, partition 1 at 3/)
    await produce(kafka, topic, [
      { value: "n0", partition: 0 },
      { value: "n1", partition: 1 },
    ])
    const done = await later.exit
    expect(done.code).toBe(0)
    expect(done.stdout.trim().split("\n").sort()).toEqual(["n0", "n1"])

    const missing = await runEddy(["tail", uniqueName("cli-none")])
    expect(missing.code).not.toBe(0)
    expect(missing.stderr).toMatch(/has no topic/)
  }, 180_000)

  it("eddy run with Kafka unreachable at start-up stops with a clear error at once (no restarts: a misconfiguration)", async () => {
    const saved = process.env["EDDY_KAFKA_BROKERS"]
    process.env["EDDY_KAFKA_BROKERS"] = `127.0.0.1:${await closedPort()}`
    try {
      const exit = await runEddy(["run", "test/apps/kafkaCounters.ts", "--requests", uniqueName("cli-req"), "--replies", uniqueName("cli-rep")])
      expect(exit.code).toBe(2)
      expect(exit.stderr).toMatch(/cannot reach Kafka at 127\.0\.0\.1:\d+/)
      expect(exit.stderr).not.toMatch(/restarting/)
    } finally {
      if (saved === undefined) delete process.env["EDDY_KAFKA_BROKERS"]
      else process.env["EDDY_KAFKA_BROKERS"] = saved
    }
  }, 60_000)
})

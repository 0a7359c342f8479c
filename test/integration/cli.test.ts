import { execFile, spawn, type ChildProcess } from "node:child_process"
import { createServer } from "node:net"
import { join } from "node:path"
import { afterAll, describe, expect, it } from "vitest"
import { removeDir, repoRoot, tempDir } from "../helpers.ts"
import { createTopic, kafkaClient, produce, uniqueName } from "./kafkaTopics.ts"

// The CLI as a user runs it (bin/eddy.js in a process of its own): `eddy run --port` serving an app, `eddy send` and
// `eddy state` against it, `eddy tail` on a real Kafka topic.
const bin = join(repoRoot, "bin", "eddy.js")

const eddy = (args: ReadonlyArray<string>, timeoutMs = 60_000) =>
  new Promise<{ code: number; stdout: string; stderr: string }>((resolve) =>
    execFile(process.execPath, [bin, ...args], { cwd: repoRoot, timeout: timeoutMs }, (err, stdout, stderr) =>
      resolve({ code: err === null ? 0 : typeof err.code === "number" ? err.code : 1, stdout, stderr }),
    ),
  )

const freePort = () =>
  new Promise<number>((resolve, reject) => {
    const s = createServer()
    s.once("error", reject)
    s.listen(0, "127.0.0.1", () => {
      const a = s.address()
      s.close(() => (typeof a === "object" && a !== null ? resolve(a.port) : reject(new Error("no port"))))
    })
  })

const running: ChildProcess[] = []
afterAll(() => {
  for (const c of running) c.kill("SIGKILL")
})

describe("the eddy CLI", () => {
  it("eddy run --port serves an app; eddy send prints replies (once per key), eddy state the committed state; bad input is a clear error", async () => {
    const dir = tempDir("cli-run")
    const port = await freePort()
    const url = `http://127.0.0.1:${port}`
    const server = spawn(process.execPath, [bin, "run", "examples/counter", "--port", String(port), "--data-dir", dir], { cwd: repoRoot, stdio: ["ignore", "ignore", "pipe"] })
    running.push(server)
    let serverErr = ""
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`eddy run did not start serving: ${serverErr}`)), 60_000)
      server.stderr!.on("data", (d: Buffer) => {
        serverErr += d.toString()
        if (serverErr.includes("serves clients at")) {
          clearTimeout(timer)
          resolve()
        }
      })
      server.once("exit", (code) => reject(new Error(`eddy run exited (${code}): ${serverErr}`)))
    })
    try {
      const first = await eddy(["send", "examples/counter", "counter/a", '{"add": 2}', "--key", "k1", "--url", url])
      expect(first).toMatchObject({ code: 0 })
      expect(first.stdout.trim()).toBe("2")
      // The same key again: the first answer, and the add is not applied twice.
      expect((await eddy(["send", "examples/counter", "counter/a", '{"add": 2}', "--key", "k1", "--url", url])).stdout.trim()).toBe("2")
      expect((await eddy(["send", "examples/counter", "counter/a", '{"add": 3}', "--url", url])).stdout.trim()).toBe("5")
      const told = await eddy(["send", "examples/counter", "counter/b", '{"add": 7}', "--tell", "--url", url])
      expect(told.code).toBe(0)
      expect(told.stdout.trim()).toBe("")
      expect((await eddy(["state", "examples/counter", "counter/a", "--url", url])).stdout.trim()).toBe("5")
      expect((await eddy(["state", "examples/counter", "counter/b", "--url", url])).stdout.trim()).toBe("7")

      const unknown = await eddy(["send", "examples/counter", "nosuch/x", '{"add": 1}', "--url", url])
      expect(unknown.code).not.toBe(0)
      expect(unknown.stderr).toMatch(/UnknownActorType/)
      const thrown = await eddy(["send", "examples/counter", "counter/a", '{"boom": "no way"}', "--url", url])
      expect(thrown.code).not.toBe(0)
      expect(thrown.stderr).toMatch(/Rejected.*no way/)
      const badJson = await eddy(["send", "examples/counter", "counter/a", "{add: 1", "--url", url])
      expect(badJson.code).not.toBe(0)
      expect(badJson.stderr).toMatch(/JSON/)
      // Nothing of the rejected calls changed the state.
      expect((await eddy(["state", "examples/counter", "counter/a", "--url", url])).stdout.trim()).toBe("5")
    } finally {
      server.kill("SIGINT")
      await new Promise((r) => server.once("exit", r))
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

    const all = await eddy(["tail", topic, "--limit", "7"])
    expect(all.code).toBe(0)
    const lines = all.stdout.trim().split("\n")
    expect([...lines].sort()).toEqual(["r0", "r1", "r2", "r3", "r4", "r5", "r6"])
    // Each partition's records in offset order.
    expect(lines.filter((l) => ["r0", "r2", "r4", "r6"].includes(l))).toEqual(["r0", "r2", "r4", "r6"])
    expect(all.stderr).toMatch(/7 records/)

    const idle = await eddy(["tail", topic, "--idle-ms", "1500"])
    expect(idle.code).toBe(0)
    expect(idle.stdout.trim().split("\n").sort()).toEqual(["r0", "r1", "r2", "r3", "r4", "r5", "r6"])

    // --from latest: only what arrives after it started (it says where it starts on stderr).
    const later = spawn(process.execPath, [bin, "tail", topic, "--from", "latest", "--limit", "2"], { cwd: repoRoot, stdio: ["ignore", "pipe", "pipe"] })
    running.push(later)
    let out = ""
    let err = ""
    later.stdout!.on("data", (d: Buffer) => (out += d.toString()))
    const exited = new Promise<number | null>((r) => later.once("exit", r))
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`eddy tail did not start: ${err}`)), 60_000)
      later.stderr!.on("data", (d: Buffer) => {
        err += d.toString()
        if (err.includes("reading from latest")) {
          clearTimeout(timer)
          resolve()
        }
      })
    })
    expect(err).toMatch(/partition 0 at 6, partition 1 at 3/)
    await produce(kafka, topic, [
      { value: "n0", partition: 0 },
      { value: "n1", partition: 1 },
    ])
    expect(await exited).toBe(0)
    expect(out.trim().split("\n").sort()).toEqual(["n0", "n1"])

    const missing = await eddy(["tail", uniqueName("cli-none")])
    expect(missing.code).not.toBe(0)
    expect(missing.stderr).toMatch(/has no topic/)
  }, 180_000)
})

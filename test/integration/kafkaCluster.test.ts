import { execFile, type ChildProcess } from "node:child_process"
import { afterAll, describe, expect, it } from "vitest"
import { requests } from "../../examples/shopping-cart/app.ts"
import { clusterState } from "../../runtime/cluster/ClusterProcess.ts"
import { supervise } from "../../runtime/cluster/supervisor.ts"
import { readEndpoints } from "../../runtime/config/Endpoints.ts"
import { committedState, Eddy } from "../../runtime/index.ts"
import { DLQ_HEADERS, EGRESS_ID_HEADER } from "../../workflows/index.ts"
import { shopKafkaApp } from "../apps/shopKafka.ts"
import { removeDir, repoRoot, seeded, tempDir } from "../helpers.ts"
import { createTopic, kafkaClient, produce, readCommitted, uniqueName, type Consumed, type Produced } from "./kafkaTopics.ts"

// Kafka in, Kafka out, exactly once across SIGKILLs: the shopping cart reads its requests from a 3-partition topic
// (some malformed: dead-letter topic) and publishes every order to an egress topic, on 3 worker processes whose
// workers and coordinator are SIGKILLed at random moments. Both egress topics, read by a read_committed kafkajs
// consumer and by kcat, must hold exactly what a failure-free embedded run published: no duplicate, no gap.

const run = (file: string, args: ReadonlyArray<string>) =>
  new Promise<string>((resolve, reject) =>
    execFile(file, args, { cwd: repoRoot, maxBuffer: 64 * 1024 * 1024 }, (err, out, stderr) => (err ? reject(new Error(`${file} ${args.join(" ")}: ${err.message} ${stderr}`)) : resolve(out))),
  )

/** kcat, installed by the repo's infra script (Debian packages unpacked into .eddy-infra). */
const kcatPath = async (): Promise<string> => {
  const out = await run(process.execPath, ["--import", "tsx", "scripts/infra.ts", "tools"])
  const line = out.split("\n").find((l) => l.startsWith("kcat "))
  if (line === undefined) throw new Error(`scripts/infra.ts tools printed no kcat path: ${out}`)
  return line.slice(5).trim()
}

/** One line per record, partition-independent: id header, key, value and (dead letters) the DLQ headers. */
const lineOf = (r: { key: string | null; value: string; headers: Record<string, string> }): string =>
  [r.headers[EGRESS_ID_HEADER], r.key ?? "", r.value, r.headers[DLQ_HEADERS.reason] ?? "", r.headers[DLQ_HEADERS.partition] ?? "", r.headers[DLQ_HEADERS.offset] ?? ""].join("|")

/** The topic read by kcat with isolation.level=read_committed, to the end. */
const kcatRead = async (kcat: string, topic: string): Promise<string[]> => {
  const brokers = readEndpoints().kafka.brokers.join(",")
  // kcat prints headers as k=v pairs joined by ','; values here hold no ',' except in JSON bodies, kept apart by \x1f.
  const out = await run(kcat, ["-b", brokers, "-C", "-t", topic, "-e", "-q", "-X", "isolation.level=read_committed", "-f", "%k\x1f%h\x1f%s\x1e"])
  return out
    .split("\x1e")
    .filter((x) => x.trim() !== "")
    .map((rec) => {
      const [key, hs, value] = rec.split("\x1f") as [string, string, string]
      const headers: Record<string, string> = {}
      // Header values never contain ',' or '=' except the reason, which is last in kcat's order if present: parse greedily.
      for (const part of hs.split(/,(?=eddy-)/)) {
        const eq = part.indexOf("=")
        if (eq > 0) headers[part.slice(0, eq)] = part.slice(eq + 1)
      }
      return lineOf({ key: key === "" ? null : key, value, headers })
    })
}

const sorted = (xs: ReadonlyArray<string>) => [...xs].sort()

describe("Kafka ingress and egress exactly once on the cluster (real Kafka, NATS, S3)", () => {
  const dirs: string[] = []
  afterAll(() => dirs.forEach(removeDir))

  it("SIGKILLs of workers and the coordinator (at least 10): egress and dead-letter topics equal the failure-free run's, for kafkajs and kcat", async () => {
    const kcat = await kcatPath()
    const kafka = kafkaClient()
    const t = Object.fromEntries(["in", "out", "dlq", "refOut", "refDlq"].map((n) => [n, uniqueName(`kio-${n}`)])) as Record<"in" | "out" | "dlq" | "refOut" | "refDlq", string>
    await createTopic(kafka, t.in, 3)
    // The sample's seeded requests, a user's always on one partition, with a malformed record now and then.
    const input: Produced[] = []
    let i = 0
    for (const r of requests({ users: 30, items: 40, stock: 20, requests: 6000, seed: 3 })) {
      const partition = Number(r.user.slice(1)) % 3
      if (i++ % 89 === 7) input.push({ key: r.user, partition, value: i % 2 === 0 ? `{"user":"${r.user}","msg":` : JSON.stringify({ user: r.user, msg: { op: "fly" } }) })
      input.push({ key: r.user, partition, value: JSON.stringify(r) })
    }
    await produce(kafka, t.in, input)
    const malformed = input.filter((r) => !r.value.toString().endsWith("}}") || r.value.toString().includes('"fly"')).length

    // The failure-free run: embedded, one process.
    const refDir = tempDir("kio-ref")
    dirs.push(refDir)
    await Eddy.run(shopKafkaApp({ input: t.in, inputPartitions: 3, output: t.refOut, deadLetters: t.refDlq, stock: 20 }), { dataDir: refDir, epochAtoms: 50 })
    const refState = await committedState(refDir)
    const refOut = (await readCommitted(kafka, t.refOut)).map(lineOf)
    const refDlq = (await readCommitted(kafka, t.refDlq)).map(lineOf)
    expect(refOut.length).toBeGreaterThan(100)
    expect(refDlq.length).toBe(malformed)

    // The cluster, with faults.
    const ns = uniqueName("kio-faults")
    const dir = tempDir("kio-faults")
    dirs.push(dir)
    const seed = Number(process.env["EDDY_SEED"] ?? Date.now() % 100000)
    const random = seeded(seed)
    const live = new Map<string, ChildProcess>()
    let kills = 0
    let commitsSinceStart = 0
    let target = 1 + Math.floor(random() * 3)
    const result = await supervise({
      appSpec: "test/apps/shopKafka.ts",
      partitions: 3,
      namespace: ns,
      dataDir: dir,
      flags: ["--epoch-atoms", "50", "--liveness-ms", "4000", "--snapshot-every", "5", "--in", t.in, "--in-partitions", "3", "--out", t.out, "--dlq", t.dlq, "--stock", "20"],
      maxRestarts: 40,
      env: { ...process.env, EDDY_PROGRESS: "1" },
      log: () => undefined,
      onStart: (name, child) => {
        live.set(name, child)
        if (name === "coordinator") commitsSinceStart = 0
      },
      onLine: (name, _stream, line) => {
        if (name !== "coordinator" || !line.startsWith("eddy: committed epoch") || kills >= 12) return
        if (++commitsSinceStart < target) return
        commitsSinceStart = -1e9
        target = 1 + Math.floor(random() * 3)
        const victims = [...live.keys()]
        const victim = victims[Math.floor(random() * victims.length)]!
        setTimeout(() => {
          if (live.get(victim)?.kill("SIGKILL") === true) kills++
        }, Math.floor(random() * 40))
      },
    })
    console.log(`Kafka I/O fault test (seed ${seed}): ${kills} SIGKILLs, ${result.restarts} restarts; ${refOut.length} orders, ${refDlq.length} dead letters`)
    expect(kills).toBeGreaterThanOrEqual(10)
    expect(result.restarts).toBeGreaterThanOrEqual(10)

    const out = await readCommitted(kafka, t.out)
    const dlq = await readCommitted(kafka, t.dlq)
    const ids = (rs: ReadonlyArray<Consumed>) => rs.map((r) => r.headers[EGRESS_ID_HEADER])
    expect(new Set(ids(out)).size).toBe(out.length)
    expect(new Set(ids(dlq)).size).toBe(dlq.length)
    expect(sorted(out.map(lineOf))).toEqual(sorted(refOut))
    expect(sorted(dlq.map(lineOf))).toEqual(sorted(refDlq))
    // Per user (one key: one partition), the orders in the order of the failure-free run.
    const refRecords = await readCommitted(kafka, t.refOut)
    for (const user of new Set(out.map((r) => r.key))) {
      expect(out.filter((r) => r.key === user).map(lineOf)).toEqual(refRecords.filter((r) => r.key === user).map(lineOf))
    }
    // kcat, another client (librdkafka), sees the same.
    expect(sorted(await kcatRead(kcat, t.out))).toEqual(sorted(refOut))
    expect(sorted(await kcatRead(kcat, t.dlq))).toEqual(sorted(refDlq))
    // And the state equals the failure-free run's.
    expect((await clusterState(ns)).entries).toEqual(refState.entries)
  }, 900_000)
})

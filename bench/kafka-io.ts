// Kafka in → Eddy → Kafka out: a per-key counter over 100k keys (uniform, and zipfian 0.99) on the embedded runtime
// (file log, fsync per commit) reading Source.kafka and publishing Sink.kafka (transactions with EGRESS_DONE markers).
//
//   max:      the input topic is filled first, then a bounded run drains it: records/s and records per CPU-second
//             of the Eddy process (its user+system time), median over --runs runs.
//   sustainable max: the highest constant live input rate at which the latency does not keep rising (the standard
//             definition, bench/lib/sustainable.ts), bisected in --probes live runs between 30% and 100% of the drain's.
//   latency:  a producer process writes at 50% and 90% of the sustainable maximum, each record carrying its produce
//             time; the Eddy process runs live; a read_committed consumer here takes receive time − produce time.
//             Producer and consumer are kcat (librdkafka, --client kcat, the default): the kafkajs ones cost ~0.8 of
//             a core at 10k records/s, which on 2 cores starved the process under test; --client kafkajs keeps them.
//
//   node --import tsx bench/kafka-io.ts [--records 200000] [--keys 100000] [--runs 3] [--seconds 15]
//        [--in-partitions 4] [--epoch-atoms 5000] [--epoch-ms 2] [--only uniform|zipf] [--loads 0.5,0.9]
//        [--max R: skip the drain runs, take R records/s as the maximum] [--client kcat|kafkajs]
//        [--warmup 1: drains and live runs discarded first, for the broker's warm-up]
//        [--of sustained|drain: loads as fractions of the maximum sustainable rate (default) or of the drain's]
//        [--probes 5 --probe-seconds 12: the bisection for the sustainable rate]
//        [--settle 3: seconds of each live run left out of its latency (a fresh process's start-up); a long run with
//         a longer --settle measures a long-running app's steady state]
// EDDY_BENCH_PIPELINE=0 turns epoch pipelining off (comparison runs).
// EDDY_BENCH_TRACE=1 prints, per latency run, where the time goes (the broker's append — the input topic then keeps
// LogAppendTime —, ingress fetch, epoch, commit, egress transaction) and the Eddy main thread's GC pauses.
// (Stages: appended, fetched, opened, processed, committed, posted to the egress thread, ready there, transaction
// begun, sent, committed, visible to the read_committed consumer.)
// EDDY_BENCH_NODE_FLAGS="--trace-gc ..." passes Node/V8 flags to the child processes (their extra output: stderr).
// EDDY_BENCH_TIMELINE=1 prints, per latency run, p50/p99/max per 500 ms of produce time (warm-up vs steady state).
// Needs Kafka (npm run infra:up). Every run uses fresh topics (kio-bench-*), deleted afterwards.
import { spawn } from "node:child_process"
import { mkdtempSync, rmSync } from "node:fs"
import { constants, monitorEventLoopDelay, PerformanceObserver } from "node:perf_hooks"
import { tmpdir } from "node:os"
import { join } from "node:path"
import "../kafkajs/kafkajsAbortFix.ts"
import { Kafka, logLevel } from "kafkajs"
import { createTopicsReady } from "../runtime/cluster/kafkaCreateTopics.ts"
import { parseFlags } from "../runtime/cli/main.ts"
import { readEndpoints } from "../runtime/config/Endpoints.ts"
import { kept, latencyTrend, searchSustained } from "./lib/sustainable.ts"
import { fmt, percentile, percentiles, summary } from "./stats.ts"

const { flags } = parseFlags(process.argv.slice(2))
/** A child's result is its last line; anything it printed before (EDDY_BENCH_NODE_FLAGS=--trace-gc) goes to stderr. */
const lastLine = (out: string): string => {
  const lines = out.split("\n").filter((l) => l !== "")
  if (lines.length > 1) process.stderr.write(lines.slice(0, -1).join("\n") + "\n")
  return lines.at(-1) ?? ""
}
const num = (name: string, d: number) => (typeof flags[name] === "string" ? Number(flags[name]) : d)
const records = num("records", 200_000)
const keys = num("keys", 100_000)
const runs = num("runs", 3)
const seconds = num("seconds", 15)
const inPartitions = num("in-partitions", 4)
const epochAtoms = num("epoch-atoms", 5000)
const epochMs = num("epoch-ms", 2)
/** The first seconds of each live run, left out of its latency: the process's start-up (JIT, the keys' state growing). */
const settleMs = num("settle", 3) * 1000
if (!(settleMs >= 0)) throw new Error(`--settle takes a number of seconds (≥ 0), not ${String(flags["settle"])}`)
const client = flags["client"] === "kafkajs" ? "kafkajs" : "kcat"
// --loads 0: the drains alone.
const loads = typeof flags["loads"] === "string" ? String(flags["loads"]).split(",").map(Number).filter((l) => l > 0) : [0.5, 0.9]
type Dist = "uniform" | "zipf"

const kafka = new Kafka({ clientId: "eddy-bench", brokers: [...readEndpoints().kafka.brokers], logLevel: logLevel.NOTHING })

/** Key sampler: uniform, or zipfian with exponent 0.99 (inverse CDF by binary search), seeded. */
const sampler = (dist: Dist, seed: number): (() => number) => {
  let a = seed >>> 0
  const rnd = () => {
    a = (a + 0x6d2b79f5) | 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
  if (dist === "uniform") return () => Math.floor(rnd() * keys)
  const cdf = new Float64Array(keys)
  let sum = 0
  for (let i = 0; i < keys; i++) cdf[i] = sum += 1 / Math.pow(i + 1, 0.99)
  return () => {
    const u = rnd() * sum
    let lo = 0
    let hi = keys - 1
    while (lo < hi) {
      const mid = (lo + hi) >> 1
      if (cdf[mid]! < u) lo = mid + 1
      else hi = mid
    }
    return lo
  }
}

const topicName = (what: string) => `kio-bench-${what}-${Date.now().toString(36)}${Math.floor(Math.random() * 1e6).toString(36)}`

/** Writes `count` records (or `rate` records/s for `forSeconds`) of {k, t: produce time} to `topic`, keyed by k. */
const produceRecords = async (topic: string, dist: Dist, count: number, rate: number, forSeconds: number): Promise<number> => {
  // Idempotent: a send retried after some partitions appended (a fresh topic's partition briefly without its leader)
  // would otherwise write those partitions' records twice (seen: a drain of 200,000 records found 203,762).
  const producer = kafka.producer({ allowAutoTopicCreation: false, idempotent: true, maxInFlightRequests: 1 })
  await producer.connect()
  const next = sampler(dist, 7)
  const batchOf = (n: number) =>
    Array.from({ length: n }, () => {
      const k = next()
      return { key: String(k), value: JSON.stringify({ k, t: Date.now() }) }
    })
  let sent = 0
  if (rate <= 0) {
    while (sent < count) {
      const n = Math.min(5000, count - sent)
      await producer.send({ topic, acks: -1, messages: batchOf(n) })
      sent += n
    }
  } else {
    const start = performance.now()
    const end = start + forSeconds * 1000
    while (performance.now() < end) {
      const due = Math.floor(((performance.now() - start) / 1000) * rate)
      if (due > sent) {
        const n = Math.min(due - sent, 5000)
        await producer.send({ topic, acks: -1, messages: batchOf(n) })
        sent += n
      } else await new Promise((r) => setTimeout(r, 2))
    }
  }
  await producer.disconnect()
  return sent
}

/** kcat, installed by the repo's infra script (Debian packages unpacked into .eddy-infra); the parent passes it on. */
let kcatFound: Promise<string> | undefined = typeof flags["kcat"] === "string" ? Promise.resolve(String(flags["kcat"])) : undefined
const kcatPath = (): Promise<string> =>
  (kcatFound ??= new Promise((resolve, reject) => {
    const p = spawn(process.execPath, ["--import", "tsx", join(import.meta.dirname, "..", "scripts", "infra.ts"), "tools"], { stdio: ["ignore", "pipe", "inherit"] })
    let out = ""
    p.stdout.on("data", (d: Buffer) => (out += d.toString()))
    p.on("close", (code) => {
      const line = out.split("\n").find((l) => l.startsWith("kcat "))
      if (code === 0 && line !== undefined) resolve(line.slice(5).trim())
      else reject(new Error(`scripts/infra.ts tools: no kcat (exit ${code}): ${out}`))
    })
  }))
const kcatBrokers = () => readEndpoints().kafka.brokers.join(",")

/**
 * Writes `rate` records/s of {k, t} for `forSeconds` through kcat (librdkafka, linger 1 ms or EDDY_BENCH_LINGER, acks=1), keyed by k; t is
 * taken when the record is handed to kcat, so kcat's batching counts in the latency.
 */
const produceWithKcat = async (topic: string, dist: Dist, rate: number, forSeconds: number): Promise<number> => {
  const kcat = await kcatPath()
  const p = spawn(kcat, ["-P", "-b", kcatBrokers(), "-t", topic, "-K", "\t", "-X", `linger.ms=${process.env["EDDY_BENCH_LINGER"] ?? "1"}`, "-X", "acks=1"], { stdio: ["pipe", "ignore", "inherit"] })
  const exited = new Promise<number | null>((resolve) => p.on("close", resolve))
  const next = sampler(dist, 7)
  let sent = 0
  const start = performance.now()
  const end = start + forSeconds * 1000
  while (performance.now() < end) {
    const due = Math.floor(((performance.now() - start) / 1000) * rate)
    if (due > sent) {
      const t = Date.now()
      let lines = ""
      for (; sent < due; sent++) {
        const k = next()
        lines += `${k}\t${JSON.stringify({ k, t })}\n`
      }
      if (!p.stdin.write(lines)) await new Promise((r) => p.stdin.once("drain", r))
    }
    await new Promise((r) => setTimeout(r, 1))
  }
  p.stdin.end()
  const code = await exited
  if (code !== 0) throw new Error(`kcat producer exited with ${code}`)
  return sent
}

const withAdmin = async <A>(f: (admin: ReturnType<Kafka["admin"]>) => Promise<A>): Promise<A> => {
  const admin = kafka.admin()
  await admin.connect()
  try {
    return await f(admin)
  } finally {
    await admin.disconnect()
  }
}

interface RunResult {
  readonly records: number
  /** Records of the epochs after the first (the measured part). */
  readonly measured: number
  readonly seconds: number
  readonly cpuSeconds: number
  /** EDDY_BENCH_TRACE=1: where the latency goes (ms since produce, per stage). */
  readonly trace?: Record<string, { readonly p50: number; readonly p99: number; readonly n: number }>
  /** EDDY_BENCH_TRACE=1 with EDDY_BENCH_TIMELINE=1: per stage, its p99 per 500 ms of produce time after the warm-up. */
  readonly stageTimeline?: Record<string, ReadonlyArray<number | null>>
}

if (flags["child"] === "run") {
  // The Eddy process: counter app, Kafka in and out.
  const { Eddy } = await import("../runtime/index.ts")
  const { App, Sink, Source, Workflow } = await import("../workflows/index.ts")
  // EDDY_BENCH_ALLOC=<file>[,<from s>,<for s>]: where the Eddy process's garbage comes from (bench/alloc.ts).
  await (await import("./lib/allocProfile.ts")).startAllocProfileFromEnv()
  const input = String(flags["in"])
  const output = String(flags["out"])
  const bounded = flags["bounded"] === "1"
  const wf = Workflow.from(
    Source.kafka<{ k: number; t: number }>({
      topic: input,
      partitions: inPartitions,
      bounded,
      decode: (r) => JSON.parse(Buffer.from(r.value ?? new Uint8Array()).toString()) as { k: number; t: number },
      name: "in",
    }),
    { name: "bench" },
  )
    .keyBy((x) => x.k)
    .processor<readonly [number, number, number], number>((ctx, x) => {
      if (tracing && x.t >= warmFrom) {
        let l = produced.get(current)
        if (l === undefined) {
          produced.set(current, (l = []))
          at.processed.set(current, Date.now())
        }
        l.push(x.t)
      }
      const n = ctx.state.get(0) + 1
      ctx.state.set(n)
      ctx.emit([x.k, n, x.t])
    }, { name: "count" })
    .sink(Sink.kafka({ topic: output, partitions: inPartitions }))
  const dir = mkdtempSync(join(tmpdir(), "eddy-kio-bench-"))
  // EDDY_BENCH_TRACE=1: per record, the time since it was produced at which it was fetched by the ingress, its
  // epoch opened, was first processed, committed (COMMIT fsync done), became complete at the egress, and its Kafka
  // transaction began, had its records acknowledged and committed. The parent adds when its consumer saw it.
  const tracing = process.env["EDDY_BENCH_TRACE"] === "1"
  let current = 0
  let warmFrom = Number.POSITIVE_INFINITY
  const produced = new Map<number, number[]>()
  const stages = ["opened", "processed", "committed", "posted", "ready", "txBegin", "txSent", "txCommitted"] as const
  const at: Record<(typeof stages)[number], Map<number, number>> = Object.fromEntries(stages.map((s) => [s, new Map<number, number>()])) as never
  const fetched: number[] = []
  const appended: number[] = []
  /** Produce time of each record in `fetched` and `appended` (for the per-bucket stage timeline). */
  const fetchedProduced: number[] = []
  const epochStats = { epochMs: [] as number[], commitMs: [] as number[], perTx: [] as number[], readyToBegin: [] as number[], beginToSent: [] as number[], sentToCommitted: [] as number[] }
  // How long the main thread's tasks keep timers (and I/O completions) waiting, after the warm-up.
  const loopDelay = monitorEventLoopDelay({ resolution: 1 })
  // The main thread's garbage-collection pauses after the warm-up (minor and major apart).
  const gcPauses = { minor: [] as number[], major: [] as number[] }
  if (tracing)
    new PerformanceObserver((list) => {
      for (const e of list.getEntries()) {
        if (e.startTime + performance.timeOrigin < warmFrom) continue
        const kind = (e as unknown as { readonly detail?: { readonly kind?: number } }).detail?.kind
        ;(kind === constants.NODE_PERFORMANCE_GC_MINOR ? gcPauses.minor : gcPauses.major).push(e.duration)
      }
    }).observe({ entryTypes: ["gc"] })
  if (process.env["EDDY_BENCH_EGRESS_THREAD"] === "0") {
    const { kafkaTrace } = await import("../runtime/cluster/kafkaTrace.ts")
    kafkaTrace.egressOnEngineThread = true
  }
  if (process.env["EDDY_BENCH_INGRESS_THREAD"] === "1") {
    const { kafkaTrace } = await import("../runtime/cluster/kafkaTrace.ts")
    kafkaTrace.ingressInWorker = true
  }
  if (process.env["EDDY_BENCH_TX"] !== undefined) {
    const { kafkaTrace } = await import("../runtime/cluster/kafkaTrace.ts")
    kafkaTrace.transactionsInFlight = Number(process.env["EDDY_BENCH_TX"])
  }
  if (tracing) {
    const { kafkaTrace } = await import("../runtime/cluster/kafkaTrace.ts")
    kafkaTrace.fetched = (records, now) => {
      for (const r of records) {
        const t = (JSON.parse(Buffer.from(r.value ?? new Uint8Array()).toString()) as { t: number }).t
        if (t >= warmFrom) {
          fetched.push(now - t)
          // The input topic keeps LogAppendTime when traced: the broker's append splits produce → fetched in two.
          appended.push(r.timestamp - t)
          fetchedProduced.push(t)
        }
      }
    }
    kafkaTrace.posted = (e, _partition, now) => void at.posted.set(e, now)
    kafkaTrace.ready = (e, now) => void at.ready.set(e, now)
    kafkaTrace.transaction = (tx) => {
      for (const e of tx.epochs) {
        at.txBegin.set(e, tx.begin)
        at.txSent.set(e, tx.sent)
        at.txCommitted.set(e, tx.committed)
      }
      if (tx.begin >= warmFrom) {
        epochStats.perTx.push(tx.epochs.length)
        epochStats.readyToBegin.push(tx.begin - (at.ready.get(tx.epochs[0]!) ?? tx.begin))
        epochStats.beginToSent.push(tx.sent - tx.begin)
        epochStats.sentToCommitted.push(tx.committed - tx.sent)
      }
    }
  }
  let stageTimeline: RunResult["stageTimeline"]
  const traced = (): RunResult["trace"] => {
    if (!tracing) return undefined
    const out: Record<string, { p50: number; p99: number; n: number }> = {}
    const put = (name: string, l: number[]) => (out[name] = { p50: percentile(l, 50), p99: percentile(l, 99), n: l.length })
    put("appended", appended)
    put("fetched", fetched)
    for (const s of stages) {
      const l: number[] = []
      for (const [e, ts] of produced) {
        const when = at[s].get(e)
        if (when !== undefined) for (const t of ts) l.push(when - t)
      }
      put(s, l)
    }
    for (const [k, l] of Object.entries(epochStats)) put(`(${k})`, l)
    put("(gc minor ms)", gcPauses.minor)
    put("(gc major ms)", gcPauses.major)
    const gcMs = [...gcPauses.minor, ...gcPauses.major].reduce((a, b) => a + b, 0)
    const measuredSeconds = Math.max(1, (Date.now() - warmFrom) / 1000)
    out["(gc ms per s)"] = { p50: gcMs / measuredSeconds, p99: gcMs / measuredSeconds, n: 1 }
    loopDelay.disable()
    if (process.env["EDDY_BENCH_TIMELINE"] === "1") {
      // Which stage a stall shows first in: each stage's p99 per 500 ms bucket of produce time.
      const byBucket = (pairs: Iterable<readonly [number, number]>): Array<number | null> => {
        const buckets: number[][] = []
        for (const [t, l] of pairs) (buckets[Math.floor((t - warmFrom) / 500)] ??= []).push(l)
        return Array.from(buckets, (b) => (b === undefined ? null : percentile(b, 99)))
      }
      const timeline: Record<string, Array<number | null>> = {}
      timeline["appended"] = byBucket(fetchedProduced.map((t, i) => [t, appended[i]!] as const))
      timeline["fetched"] = byBucket(fetchedProduced.map((t, i) => [t, fetched[i]!] as const))
      for (const s of stages) {
        const pairs: Array<readonly [number, number]> = []
        for (const [e, ts] of produced) {
          const when = at[s].get(e)
          if (when !== undefined) for (const t of ts) pairs.push([t, when - t])
        }
        timeline[s] = byBucket(pairs)
      }
      stageTimeline = timeline
    }
    const ms = (q: number) => Math.max(0, loopDelay.percentile(q) / 1e6 - 1)
    out["(loop delay)"] = { p50: ms(50), p99: ms(99), n: loopDelay.count }
    out["(loop delay max)"] = { p50: ms(99.9), p99: Math.max(0, loopDelay.max / 1e6 - 1), n: loopDelay.count }
    return out
  }
  // Sustained figures start after epoch 1 (consumer group joins and first fetches) has committed.
  let t0 = 0
  let cpu0 = process.cpuUsage()
  let afterFirst = 0
  const debug = process.env["EDDY_BENCH_DEBUG"] === "1"
  const dbg = { epochs: 0, records: 0, epochMs: 0, at: performance.now() }
  const running = Eddy.start(App.define({ name: "kio-bench", workflows: [wf] }), {
    dataDir: dir,
    epochAtoms,
    epochMs,
    checked: false,
    snapshotEvery: 0,
    stopWhenIdle: bounded,
    // EDDY_BENCH_PIPELINE=0: each epoch opens only after the previous COMMIT is durable (for comparison).
    ...(process.env["EDDY_BENCH_PIPELINE"] === "0" ? { pipeline: false } : {}),
    onOpen: (e) => {
      current = e
      if (tracing) at.opened.set(e, Date.now())
      if (e === 1) {
        warmFrom = Date.now() + settleMs
        if (tracing) setTimeout(() => loopDelay.enable(), settleMs).unref()
        process.stderr.write("ready\n")
        if (!bounded) setTimeout(() => void running.stop(), Number(flags["for"]) * 1000)
      }
    },
    onCommit: (e, votes, timing) => {
      if (tracing) {
        at.committed.set(e, Date.now())
        if (Date.now() >= warmFrom) {
          epochStats.epochMs.push(timing.epochMs)
          epochStats.commitMs.push(timing.commitMs)
        }
      }
      if (debug) {
        dbg.epochs++
        for (const v of votes) dbg.records += v.records
        dbg.epochMs += timing.epochMs
        if (performance.now() - dbg.at > 1000) {
          process.stderr.write(`[run] epoch ${e}: ${dbg.epochs} epochs/s, ${dbg.records} records/s, mean epoch ${(dbg.epochMs / dbg.epochs).toFixed(1)} ms\n`)
          Object.assign(dbg, { epochs: 0, records: 0, epochMs: 0, at: performance.now() })
        }
      }
      if (e === 1) {
        t0 = performance.now()
        cpu0 = process.cpuUsage()
      } else for (const v of votes) afterFirst += v.records
    },
  })
  const r = await running.done
  const cpu = process.cpuUsage(cpu0)
  rmSync(dir, { recursive: true, force: true })
  const trace = traced()
  const out: RunResult = { records: r.records, measured: afterFirst, seconds: (performance.now() - t0) / 1000, cpuSeconds: (cpu.user + cpu.system) / 1e6, ...(trace === undefined ? {} : { trace }), ...(stageTimeline === undefined ? {} : { stageTimeline }) }
  process.stdout.write(JSON.stringify(out))
  process.exit(0)
} else if (flags["child"] === "produce") {
  const sent =
    client === "kcat"
      ? await produceWithKcat(String(flags["in"]), String(flags["dist"]) as Dist, Number(flags["rate"]), Number(flags["for"]))
      : await produceRecords(String(flags["in"]), String(flags["dist"]) as Dist, 0, Number(flags["rate"]), Number(flags["for"]))
  process.stdout.write(String(sent))
  process.exit(0)
} else {
  const child = (args: ReadonlyArray<string>, onReady?: () => void) =>
    new Promise<string>((resolve, reject) => {
      // EDDY_BENCH_PROF=<dir>: CPU profiles of the child processes.
      const prof = process.env["EDDY_BENCH_PROF"]
      const p = spawn(process.execPath, [...(prof === undefined ? [] : ["--cpu-prof", `--cpu-prof-dir=${prof}`]), ...(process.env["EDDY_BENCH_NODE_FLAGS"] ?? "").split(" ").filter((f) => f !== ""), "--import", "tsx", import.meta.filename, ...args, "--in-partitions", String(inPartitions), "--epoch-atoms", String(epochAtoms), "--epoch-ms", String(epochMs), "--settle", String(settleMs / 1000), "--client", client, ...(client === "kcat" ? ["--kcat", kcat] : [])], {
        stdio: ["ignore", "pipe", "pipe"],
      })
      let out = ""
      let err = ""
      p.stdout.on("data", (d: Buffer) => (out += d.toString()))
      p.stderr.on("data", (d: Buffer) => {
        err += d.toString()
        if (process.env["EDDY_BENCH_DEBUG"] === "1") process.stderr.write(d)
        if (onReady !== undefined && err.includes("ready\n")) {
          const f = onReady
          onReady = undefined
          f()
        }
      })
      p.on("close", (code) => (code === 0 ? resolve(lastLine(out)) : reject(new Error(`bench child ${args.join(" ")} exited with ${code}: ${err}`))))
    })
  const topics = async (): Promise<{ input: string; output: string }> => {
    const t = { input: topicName("in"), output: topicName("out") }
    const appendTime = process.env["EDDY_BENCH_TRACE"] === "1" ? [{ name: "message.timestamp.type", value: "LogAppendTime" }] : []
    await withAdmin((a) =>
      createTopicsReady(a, [t.input, t.output].map((topic) => ({ topic, numPartitions: inPartitions, ...(topic === t.input ? { configEntries: appendTime } : {}) }))),
    )
    return t
  }
  const drop = (t: { input: string; output: string }) => withAdmin((a) => a.deleteTopics({ topics: [t.input, t.output] })).catch(() => undefined)

  const maxRun = async (dist: Dist): Promise<RunResult> => {
    const t = await topics()
    await produceRecords(t.input, dist, records, 0, 0)
    const r = JSON.parse(await child(["--child", "run", "--in", t.input, "--out", t.output, "--bounded", "1"])) as RunResult
    await drop(t)
    if (r.records !== records) throw new Error(`processed ${r.records} of ${records}`)
    return r
  }

  /** Latency at a given input rate: receive time at a read_committed consumer minus the record's produce time. */
  const latencyRun = async (dist: Dist, rate: number, forSeconds = seconds): Promise<{ p50: number; p99: number; got: number; sent: number; kept: boolean }> => {
    if (settleMs >= forSeconds * 1000) throw new Error(`--settle ${settleMs / 1000} leaves nothing of a ${forSeconds} s run to measure`)
    const t = await topics()
    const latencies: number[] = []
    /** Per sample, its produce time (for the trend: did the latency keep rising?). */
    const producedAt: number[] = []
    const warmupUntil = { t: Number.POSITIVE_INFINITY }
    let got = 0
    // EDDY_BENCH_TIMELINE=1: latency per 500 ms of produce time, to tell periodic stalls from steady jitter.
    const timeline = process.env["EDDY_BENCH_TIMELINE"] === "1"
    const buckets: number[][] = []
    const take = (value: string, now: number) => {
      got++
      const t = (JSON.parse(value) as [number, number, number])[2]
      if (t < warmupUntil.t) return
      latencies.push(now - t)
      producedAt.push(t)
      if (timeline) (buckets[Math.floor((t - warmupUntil.t) / 500)] ??= []).push(now - t)
    }
    let stopReader: () => Promise<void>
    if (client === "kcat") {
      // read_committed, from the start, each value on a line as soon as it is fetched.
      const reader = spawn(
        await kcatPath(),
        ["-C", "-b", kcatBrokers(), "-t", t.output, "-o", "beginning", "-u", "-q", "-f", "%s\n", "-X", "isolation.level=read_committed", "-X", "fetch.wait.max.ms=5", "-X", "fetch.error.backoff.ms=5"],
        { stdio: ["ignore", "pipe", "inherit"] },
      )
      let rest = ""
      reader.stdout.on("data", (d: Buffer) => {
        const now = Date.now()
        const lines = (rest + d.toString()).split("\n")
        rest = lines.pop()!
        for (const l of lines) if (l !== "") take(l, now)
      })
      const closed = new Promise((r) => reader.on("close", r))
      stopReader = async () => {
        reader.kill("SIGTERM")
        await closed
      }
    } else {
      const consumer = kafka.consumer({ groupId: topicName("reader"), readUncommitted: false, maxWaitTimeInMs: 5 })
      await consumer.connect()
      await consumer.subscribe({ topic: t.output, fromBeginning: true })
      await consumer.run({
        autoCommit: false,
        eachBatch: async ({ batch }) => {
          const now = Date.now()
          for (const m of batch.messages) take(m.value!.toString(), now)
        },
      })
      stopReader = () => consumer.disconnect()
    }
    let producing: Promise<string> | undefined
    const ran = await child(["--child", "run", "--in", t.input, "--out", t.output, "--for", String(forSeconds + 5)], () => {
      warmupUntil.t = Date.now() + settleMs
      producing = child(["--child", "produce", "--in", t.input, "--dist", dist, "--rate", String(Math.round(rate)), "--for", String(forSeconds)])
    })
    const sent = Number(await producing)
    await new Promise((r) => setTimeout(r, 1000))
    await stopReader()
    await drop(t)
    const result = JSON.parse(ran) as RunResult
    if (timeline) {
      console.log(`  timeline (per 500 ms of produce time: p50/p99/max ms): ${buckets.map((l, i) => `${(i / 2).toFixed(1)}s ${percentiles(l, [50, 99, 100]).join("/")}`).join("  ")}`)
      // Traced: each stage's p99 in the same buckets (the child's warm-up ends within a few ms of this one's).
      for (const [stage, p99s] of Object.entries(result.stageTimeline ?? {}))
        console.log(`    ${stage.padEnd(12)} p99 ${p99s.map((v) => (v === null ? "-" : v.toFixed(0)).padStart(4)).join("")}`)
      if (result.stageTimeline !== undefined) console.log(`    ${"visible".padEnd(12)} p99 ${buckets.map((l) => percentile(l, 99).toFixed(0).padStart(4)).join("")}`)
    }
    const trace = result.trace
    if (trace !== undefined) {
      const cpu = (100 * result.cpuSeconds) / result.seconds
      trace["(Eddy CPU %)"] = { p50: cpu, p99: cpu, n: 1 }
      trace["visible"] = { p50: percentile(latencies, 50), p99: percentile(latencies, 99), n: latencies.length }
      console.log(`  trace at ${fmt(rate)} records/s (ms since produce, p50 / p99; (…): per epoch or transaction):`)
      // Stages without samples (hooks this build does not have) come back as null.
      for (const [k, v] of Object.entries(trace)) if (v.n > 0 && v.p50 !== null) console.log(`    ${k.padEnd(18)} ${v.p50.toFixed(1).padStart(7)} ${v.p99.toFixed(1).padStart(7)}   n=${v.n}`)
    }
    let lastProduced = warmupUntil.t
    for (const x of producedAt) if (x > lastProduced) lastProduced = x
    const trend = latencyTrend(producedAt.map((x, i) => [x, latencies[i]!] as const), warmupUntil.t, lastProduced + 1)
    return { p50: percentile(latencies, 50), p99: percentile(latencies, 99), got, sent, kept: kept(trend, sent, got) }
  }

  const kcat = client === "kcat" ? await kcatPath() : ""
  const dists: ReadonlyArray<Dist> = flags["only"] === "zipf" ? ["zipf"] : flags["only"] === "uniform" ? ["uniform"] : ["uniform", "zipf"]
  console.log(`Kafka in → counter over ${fmt(keys)} keys → Kafka out; embedded, 1 partition, file log; ${inPartitions} topic partitions in and out; ${epochAtoms} offsets per split per epoch; medians over ${runs} runs [min–max]`)
  const { hostLine } = await import("./lib/hostSpeed.ts")
  console.log(hostLine("start"))
  // A broker fresh from start-up answers slower for its first minutes of load (presumably its JIT): --warmup N
  // (default 1) discards N drains and N live runs at 50% of each drain's rate (of --max if given) before measuring.
  const warmups = num("warmup", 1)
  for (let i = 0; i < warmups; i++) {
    const dist = dists[0]!
    const drained = typeof flags["max"] === "string" ? undefined : await maxRun(dist)
    const max = drained === undefined ? Number(flags["max"]) : drained.measured / drained.seconds
    const l = await latencyRun(dist, max * 0.5)
    console.log(`warm-up ${i + 1} (discarded): ${dist} max ${fmt(max)} records/s; at 50% p50 ${l.p50.toFixed(1)} ms, p99 ${l.p99.toFixed(1)} ms`)
  }
  for (const dist of dists) {
    const maxes: RunResult[] = []
    // --max R: skip the drain runs and take R records/s as the maximum (to study latency alone).
    if (typeof flags["max"] === "string") maxes.push({ records: 0, measured: Number(flags["max"]), seconds: 1, cpuSeconds: 1 })
    else for (let i = 0; i < runs; i++) maxes.push(await maxRun(dist))
    const tput = summary(maxes.map((r) => r.measured / r.seconds))
    const perCpu = summary(maxes.map((r) => r.measured / r.cpuSeconds))
    console.log(`${dist.padEnd(8)} max ${fmt(tput.median)} records/s [${fmt(tput.min)}–${fmt(tput.max)}], ${fmt(perCpu.median)} records per CPU-second of the Eddy process [${fmt(perCpu.min)}–${fmt(perCpu.max)}] (${fmt(records)} records drained)`)
    // The loads are fractions of the maximum sustainable throughput (bench/lib/sustainable.ts): the highest live
    // input rate at which the latency did not keep rising, found by bisection below the drain's rate. --of drain:
    // fractions of the drain's rate instead (sessions before 23), which live input cannot keep up with near 90%.
    let maximum = tput.median
    if (typeof flags["max"] !== "string" && flags["of"] !== "drain" && loads.length > 0) {
      const search = await searchSustained((rate) => latencyRun(dist, rate, num("probe-seconds", 12)).then((l) => l.kept), tput.median, num("probes", 5))
      maximum = search.rate
      console.log(
        `${dist.padEnd(8)} sustainable max ${fmt(maximum)} records/s, ${((100 * maximum) / tput.median).toFixed(0)}% of the drain's${search.verified ? "" : " (no probe kept up: the search's lower end, unverified)"}` +
          ` (probes: ${search.probes.map((p) => `${fmt(p.rate)} ${p.kept ? "kept up" : "fell behind"}`).join(", ")})`,
      )
    }
    for (const load of loads) {
      const ls: Array<{ p50: number; p99: number; got: number; sent: number; kept: boolean }> = []
      for (let i = 0; i < runs; i++) ls.push(await latencyRun(dist, maximum * load))
      const p50 = summary(ls.map((l) => l.p50))
      const p99 = summary(ls.map((l) => l.p99))
      const lost = ls.map((l) => l.sent - l.got)
      console.log(
        `${dist.padEnd(8)} at ${Math.round(load * 100)}% (${fmt(maximum * load)} records/s): end-to-end p50 ${p50.median.toFixed(1)} ms [${p50.min.toFixed(1)}–${p50.max.toFixed(1)}], p99 ${p99.median.toFixed(1)} ms [${p99.min.toFixed(1)}–${p99.max.toFixed(1)}]` +
          `  (produced − received per run: ${lost.join(", ")}; latency kept rising in ${ls.filter((l) => !l.kept).length} of ${ls.length})`,
      )
    }
  }
  console.log(hostLine("end"))
}

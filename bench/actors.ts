// Actor benchmarks on the embedded default (file log, fsync per commit), each run in a fresh child process:
//  - ping-pong: 10k actor pairs exchange messages; messages/s.
//  - fib(25) by actor fan-out (242,785 actors); wall time.
//  - 1M idle actors: peak RSS, and bytes per actor beyond a run with no actors.
// Medians over --runs (default 5), min–max in brackets; unchecked mode unless --checked.
//
//   node --import tsx bench/actors.ts [--runs 5] [--pairs 10000] [--rounds 20] [--idle 1000000] [--checked]
import { execFileSync } from "node:child_process"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { parseFlags } from "../runtime/cli/main.ts"
import { fmt, summary } from "./stats.ts"

const { flags } = parseFlags(process.argv.slice(2))
const num = (name: string, d: number) => (typeof flags[name] === "string" ? Number(flags[name]) : d)
const runs = num("runs", 5)
const pairs = num("pairs", 10_000)
const rounds = num("rounds", 20)
const idle = num("idle", 1_000_000)
const checked = flags["checked"] === true

interface Result {
  readonly seconds: number
  readonly messages: number
  readonly rssMb: number
  readonly heapMb: number
  readonly epochs: number
}

const child = async (mode: string): Promise<Result> => {
  const { Eddy } = await import("../runtime/index.ts")
  const { Actors } = await import("../actors/index.ts")
  const { App, Sink, Source, Workflow } = await import("../workflows/index.ts")
  const { fibonacciApp } = await import("../examples/fibonacci/app.ts")
  const { pingPongApp } = await import("./apps/pingpong.ts")
  const dir = mkdtempSync(join(tmpdir(), "eddy-bench-actors-"))
  const options = { dataDir: dir, checked, snapshotEvery: 0, epochAtoms: 2000, roundLimit: 1000 }
  const t0 = performance.now()
  let messages = 0
  let epochs = 0
  if (mode === "pingpong") {
    const r = await Eddy.run(pingPongApp(pairs, rounds), { ...options, epochAtoms: pairs })
    messages = pairs * rounds * 2
    epochs = r.epochs
  } else if (mode === "fib") {
    const r = await Eddy.run(fibonacciApp([25], Sink.memory("fib")), options)
    const out = r.outputs<number>("fib")
    if (out[0] !== 75025) throw new Error(`fib(25) gave ${String(out[0])}`)
    messages = 242785 * 2
    epochs = r.epochs
  } else {
    const count = mode === "idle" ? idle : 0
    const holder = Actors.define<{ readonly v: number }, number>("holder", { initial: 0, receive: (_ctx, m) => m.v })
    const system = Actors.system({ name: "idle", behaviors: [holder] })
    const fill = Workflow.create("fill", (wf) => {
      system.input(
        wf
          .source(Source.generator(function* () {
            for (let i = 0; i < count; i++) yield i
          }, { name: "ids" }))
          .map((i) => system.tell(system.ref(holder, `h${i}`), { v: i })),
      )
    })
    const r = await Eddy.run(App.define({ name: "idle", workflows: [fill, system.workflow] }), { ...options, epochAtoms: 20000 })
    epochs = r.epochs
    messages = count
    // Keep the run's state reachable while measuring.
    globalThis.gc?.()
    const heapMb = process.memoryUsage().heapUsed / 1048576
    rmSync(dir, { recursive: true, force: true })
    return { seconds: (performance.now() - t0) / 1000, messages, rssMb: process.resourceUsage().maxRSS / 1024, heapMb: r.epochs >= 0 ? heapMb : 0, epochs }
  }
  rmSync(dir, { recursive: true, force: true })
  return { seconds: (performance.now() - t0) / 1000, messages, rssMb: process.resourceUsage().maxRSS / 1024, heapMb: process.memoryUsage().heapUsed / 1048576, epochs }
}

if (flags["child"] !== undefined) {
  process.stdout.write(JSON.stringify(await child(String(flags["child"]))))
} else {
  const exec = (mode: string): Result =>
    JSON.parse(
      execFileSync(process.execPath, ["--expose-gc", "--import", "tsx", import.meta.filename, "--child", mode, "--pairs", String(pairs), "--rounds", String(rounds), "--idle", String(idle), ...(checked ? ["--checked"] : [])], {
        encoding: "utf8",
        maxBuffer: 1 << 20,
      }),
    ) as Result
  const sample = (mode: string): Result[] => Array.from({ length: runs }, () => exec(mode))
  const line = (label: string, xs: number[], unit: string) => {
    const s = summary(xs)
    return `${label.padEnd(34)} ${fmt(s.median).padStart(9)} ${unit} [${fmt(s.min)}–${fmt(s.max)}]`
  }
  console.log(`actor benchmarks, embedded default, file log fsync per commit, ${checked ? "checked" : "unchecked"} mode, ${runs} runs (median [min–max])`)
  const pp = sample("pingpong")
  console.log(line(`ping-pong ${fmt(pairs)} pairs × ${rounds * 2} msgs`, pp.map((r) => r.messages / r.seconds), "messages/s"))
  const fib = sample("fib")
  console.log(line("fib(25) wall time", fib.map((r) => r.seconds * 1000), "ms"))
  console.log(line("fib(25) actor messages", fib.map((r) => r.messages / r.seconds), "messages/s"))
  const base = sample("empty")
  const full = sample("idle")
  console.log(line(`peak RSS, ${fmt(idle)} idle actors`, full.map((r) => r.rssMb), "MB"))
  console.log(line("peak RSS, no actors (baseline)", base.map((r) => r.rssMb), "MB"))
  const perActor = summary(full.map((r) => r.heapMb)).median - summary(base.map((r) => r.heapMb)).median
  console.log(`heap per idle actor (after GC, minus baseline): ${((perActor * 1048576) / idle).toFixed(0)} bytes (state is one number)`)
}

// Records/s through source → keyBy → processor (per-key counter) → sink on the embedded default, committing every
// epoch to the file log (fsync per COMMIT). Each configuration runs in a fresh child process (so peak RSS is its
// own) several times; the baseline row is a plain loop doing the same Map counting in the same invocation.
//
//   node --import tsx bench/keyed-counter.ts [--records 1000000] [--keys 100000] [--runs 5] [--epoch-atoms 5000]
import { execFileSync } from "node:child_process"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { parseFlags } from "../runtime/cli/main.ts"
import { fmt, percentile, summary } from "./stats.ts"

const { flags } = parseFlags(process.argv.slice(2))
const num = (name: string, d: number) => (typeof flags[name] === "string" ? Number(flags[name]) : d)
const records = num("records", 1_000_000)
const keys = num("keys", 100_000)
const runs = num("runs", 5)
const epochAtoms = num("epoch-atoms", 5000)

interface Result {
  readonly seconds: number
  readonly epochs: number
  readonly rssMb: number
  readonly epochMsP50: number
  readonly epochMsP99: number
}

if (flags["child"] !== undefined) {
  const { Eddy } = await import("../runtime/index.ts")
  const { App, Sink, Source, Workflow } = await import("../workflows/index.ts")
  const mode = String(flags["child"])
  if (mode === "baseline") {
    const t0 = performance.now()
    const counts = new Map<number, number>()
    const out: Array<readonly [number, number]> = []
    for (let i = 0; i < records; i++) {
      const k = (i * 7919) % keys
      const n = (counts.get(k) ?? 0) + 1
      counts.set(k, n)
      out.push([k, n])
      if (out.length >= epochAtoms) out.length = 0
    }
    const r: Result = { seconds: (performance.now() - t0) / 1000, epochs: 0, rssMb: process.resourceUsage().maxRSS / 1024, epochMsP50: 0, epochMsP99: 0 }
    process.stdout.write(JSON.stringify(r))
  } else {
    const wf = Workflow.from(Source.generator(function* () {
      for (let i = 0; i < records; i++) yield (i * 7919) % keys
    }, { name: "keys" }), { name: "bench" })
      .keyBy((k) => k)
      .processor<readonly [number, number], number>((ctx, k) => {
        const n = ctx.state.get(0) + 1
        ctx.state.set(n)
        ctx.emit([k, n])
      }, { name: "count" })
      .sink(Sink.discard())
    const dir = mkdtempSync(join(tmpdir(), "eddy-bench-"))
    const commits: number[] = []
    let last = performance.now()
    const t0 = performance.now()
    const r = await Eddy.run(App.define({ name: "bench", workflows: [wf] }), {
      dataDir: dir,
      epochAtoms,
      checked: mode === "checked",
      snapshotEvery: 0,
      onCommit: () => {
        const now = performance.now()
        commits.push(now - last)
        last = now
      },
    })
    const seconds = (performance.now() - t0) / 1000
    rmSync(dir, { recursive: true, force: true })
    if (r.records !== records) throw new Error(`processed ${r.records} of ${records} records`)
    const out: Result = { seconds, epochs: r.epochs, rssMb: process.resourceUsage().maxRSS / 1024, epochMsP50: percentile(commits, 50), epochMsP99: percentile(commits, 99) }
    process.stdout.write(JSON.stringify(out))
  }
} else {
  const rows: Array<[string, Result[]]> = []
  for (const mode of ["baseline", "unchecked", "checked"]) {
    const rs: Result[] = []
    for (let i = 0; i < runs; i++) {
      const out = execFileSync(process.execPath, ["--import", "tsx", import.meta.filename, "--child", mode, "--records", String(records), "--keys", String(keys), "--epoch-atoms", String(epochAtoms)], { encoding: "utf8", maxBuffer: 1 << 20 })
      rs.push(JSON.parse(out) as Result)
    }
    rows.push([mode, rs])
  }
  console.log(`keyed counter: ${fmt(records)} records over ${fmt(keys)} keys, ${epochAtoms} records per epoch, file log with fsync per commit, ${runs} runs each (median [min–max])`)
  const base = summary(rows[0]![1].map((r) => records / r.seconds)).median
  for (const [mode, rs] of rows) {
    const tput = summary(rs.map((r) => records / r.seconds))
    const rss = summary(rs.map((r) => r.rssMb))
    const p50 = summary(rs.map((r) => r.epochMsP50)).median
    const p99 = summary(rs.map((r) => r.epochMsP99)).median
    console.log(
      `${mode.padEnd(10)} ${fmt(tput.median).padStart(9)} records/s [${fmt(tput.min)}–${fmt(tput.max)}]  ratio to baseline ${(tput.median / base).toFixed(3)}  peak RSS ${rss.median.toFixed(1)} MiB` +
        (mode === "baseline" ? "" : `  epochs ${rs[0]!.epochs}, epoch time p50 ${p50.toFixed(1)} ms p99 ${p99.toFixed(1)} ms`),
    )
  }
}

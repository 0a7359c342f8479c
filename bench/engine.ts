// The engine alone: the counter app driven in-process by C closed-loop callers through the local client, on a
// memory log (no HTTP, no fsync, no second process), unchecked as in bench/run.ts, so its per-call CPU cost can be compared between builds with
// less noise than the side-by-side harness (the HTTP endpoint is open, as `eddy run` has it, but unused). Each call carries an idempotency key, as the HTTP client's do.
//   node --import tsx bench/engine.ts [--c 64] [--keys 1000] [--seconds 4] [--runs 5] [--file: a file log in a temp dir]
import { randomUUID } from "node:crypto"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { parseArgs } from "node:util"
import { Eddy } from "eddy/runtime"
import { counterApp } from "./apps/counter.ts"
import { summary } from "./stats.ts"

const median = (xs: ReadonlyArray<number>): number => summary(xs).median

const { values } = parseArgs({
  options: {
    c: { type: "string", default: "64" },
    keys: { type: "string", default: "1000" },
    seconds: { type: "string", default: "4" },
    runs: { type: "string", default: "5" },
    file: { type: "boolean", default: false },
  },
})
const C = Number(values.c)
const K = Number(values.keys)
const seconds = Number(values.seconds)

const once = async (): Promise<{ perSec: number; cpuUsPerCall: number; epochs: number }> => {
  const dir = values.file ? mkdtempSync(join(tmpdir(), "eddy-engine-bench-")) : undefined
  let epochs = 0
  const running = Eddy.start(counterApp(), { ...(dir === undefined ? {} : { dataDir: dir }), partitions: 1, checked: false, roundLimit: 1000, serve: { port: 0 }, onCommit: () => epochs++ })
  const client = running.client
  let calls = 0
  let stop = false
  let measuring = false
  const ask = () => client.ask(`counter/k${Math.floor(Math.random() * K)}`, { op: "add", n: 1 }, { idempotencyKey: randomUUID() })
  // The callers move in waves, as the HTTP client's batches make them: all C submit in one tick, all wait for the commit.
  const waves = (async () => {
    while (!stop) {
      try {
        await Promise.all(Array.from({ length: C }, ask))
      } catch (err) {
        if (stop) return // the app stopped under the callers still in flight
        throw err
      }
      if (measuring) calls += C
    }
  })()
  await new Promise((r) => setTimeout(r, 1000))
  measuring = true
  const e0 = epochs
  const cpu0 = process.cpuUsage()
  const t0 = performance.now()
  await new Promise((r) => setTimeout(r, seconds * 1000))
  measuring = false
  const cpu = process.cpuUsage(cpu0)
  const elapsed = (performance.now() - t0) / 1000
  const n = calls
  const ep = epochs - e0
  stop = true
  await running.stop()
  await waves
  if (dir !== undefined) rmSync(dir, { recursive: true, force: true })
  return { perSec: n / elapsed, cpuUsPerCall: ((cpu.user + cpu.system) / n), epochs: ep }
}

const results = []
for (let r = 0; r < Number(values.runs); r++) {
  const x = await once()
  results.push(x)
  process.stderr.write(`run ${r + 1}: ${(x.perSec / 1000).toFixed(1)} k calls/s, ${x.cpuUsPerCall.toFixed(1)} µs CPU per call, ${(x.perSec * seconds / x.epochs).toFixed(1)} calls per epoch\n`)
}
console.log(`engine C=${C} K=${K}${values.file ? " file log" : " memory log"}: median ${(median(results.map((x) => x.perSec)) / 1000).toFixed(1)} k calls/s, ${median(results.map((x) => x.cpuUsPerCall)).toFixed(1)} µs CPU per call`)

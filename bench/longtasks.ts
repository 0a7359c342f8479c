// The main thread's long tasks in a V8 .cpuprofile (node --cpu-prof): stretches of consecutive busy samples (not
// "(idle)") longer than --min ms, their length distribution, and the functions most of their time is spent in
// (inclusive), so the tasks that keep I/O completions (a log fsync's, a socket's) waiting can be named.
//   node --import tsx bench/longtasks.ts <file.cpuprofile> [--min 3] [--from 3] [--to S] [--top 30]
import { readFileSync } from "node:fs"
import { parseArgs } from "node:util"
import type { Profile, ProfileNode } from "./lib/cpuProfile.ts"


const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: { min: { type: "string", default: "3" }, from: { type: "string", default: "3" }, to: { type: "string" }, top: { type: "string", default: "30" } },
})
const profile = JSON.parse(readFileSync(positionals[0]!, "utf8")) as Profile
const byId = new Map(profile.nodes.map((n) => [n.id, n]))
const parentOf = new Map<number, number>()
for (const n of profile.nodes) for (const c of n.children ?? []) parentOf.set(c, n.id)
const name = (n: ProfileNode): string => {
  const f = n.callFrame
  const where = f.url === "" ? "" : ` ${f.url.replace(/^file:\/\/.*?\/(node_modules|runtime|workflows|portals|actors|client|bench)\//, "$1/")}:${f.lineNumber + 1}`
  return `${f.functionName || "(anonymous)"}${where}`
}
const stackOf = (id: number): string[] => {
  const out: string[] = []
  for (let p: number | undefined = id; p !== undefined; p = parentOf.get(p)) out.push(name(byId.get(p)!))
  return out
}

const minUs = Number(values.min) * 1000
const from = Number(values.from) * 1e6
const to = values.to === undefined ? Infinity : Number(values.to) * 1e6
let at = 0
let stretch: Array<{ id: number; dt: number }> = []
const lengths: number[] = []
let busyTotal = 0
let longTotal = 0
const inclusive = new Map<string, number>()
const flush = () => {
  const len = stretch.reduce((s, x) => s + x.dt, 0)
  if (len >= minUs) {
    lengths.push(len)
    longTotal += len
    for (const { id, dt } of stretch) for (const f of new Set(stackOf(id))) inclusive.set(f, (inclusive.get(f) ?? 0) + dt)
  }
  stretch = []
}
for (let i = 0; i < profile.samples.length; i++) {
  const dt = profile.timeDeltas[i + 1] ?? 0
  at += profile.timeDeltas[i] ?? 0
  if (at < from) continue
  if (at > to) break
  const n = byId.get(profile.samples[i]!)!
  if (n.callFrame.functionName === "(idle)") flush()
  else {
    busyTotal += dt
    stretch.push({ id: n.id, dt })
  }
}
flush()
lengths.sort((a, b) => a - b)
const q = (p: number) => ((lengths[Math.min(lengths.length - 1, Math.floor((p / 100) * lengths.length))] ?? 0) / 1000).toFixed(1)
const seconds = (Math.min(at, to) - from) / 1e6
console.log(
  `${seconds.toFixed(1)} s; busy ${(busyTotal / 1e6).toFixed(2)} s; ${lengths.length} tasks ≥ ${values.min} ms (${(lengths.length / seconds).toFixed(0)}/s) holding ${(longTotal / 1e6).toFixed(2)} s; length p50 ${q(50)} p90 ${q(90)} p99 ${q(99)} max ${q(100)} ms`,
)
console.log("inclusive share of the long tasks' time:")
for (const [k, us] of [...inclusive].sort((a, b) => b[1] - a[1]).slice(0, Number(values.top))) console.log(`${((100 * us) / longTotal).toFixed(1).padStart(5)}%  ${k}`)

// Top self-time functions of a V8 .cpuprofile (node --cpu-prof), within the window where the process was busy.
//   node --import tsx bench/profile.ts <file.cpuprofile> [--top 25] [--from 3] [--inclusive]
// --from: skip the first seconds of the profile (start-up and module loading).
// --inclusive: also inclusive time (a sample counts for every function and module on its stack, once each).
import { readFileSync } from "node:fs"
import { parseArgs } from "node:util"
import type { Profile } from "./lib/cpuProfile.ts"


const { values, positionals } = parseArgs({ allowPositionals: true, options: { top: { type: "string", default: "25" }, from: { type: "string", default: "0" }, inclusive: { type: "boolean", default: false } } })
const profile = JSON.parse(readFileSync(positionals[0]!, "utf8")) as Profile
const byId = new Map(profile.nodes.map((n) => [n.id, n]))
const parentOf = new Map<number, number>()
for (const n of profile.nodes) for (const c of n.children ?? []) parentOf.set(c, n.id)
const short = (url: string) => url.replace(/^file:\/\/.*?\/(node_modules|runtime|workflows|portals|actors|client|bench)\//, "$1/")
/** The nearest caller with a source location: who called a native function such as writev. */
const caller = (id: number): string => {
  for (let p = parentOf.get(id); p !== undefined; p = parentOf.get(p)) {
    const f = byId.get(p)!.callFrame
    if (f.url !== "" && !f.url.startsWith("node:")) return `${f.functionName || "(anonymous)"} ${short(f.url)}`
  }
  return "?"
}
const inclusiveModules = new Map<string, number>()
const inclusiveFunctions = new Map<string, number>()
const countInclusive = (id: number, dt: number): void => {
  const modules = new Set<string>()
  const functions = new Set<string>()
  for (let p: number | undefined = id; p !== undefined; p = parentOf.get(p)) {
    const f = byId.get(p)!.callFrame
    if (f.url === "") functions.add(f.functionName)
    else {
      modules.add(short(f.url).replace(/^(node_modules\/(@[^/]+\/)?[^/]+).*/, "$1"))
      functions.add(`${f.functionName || "(anonymous)"} ${short(f.url)}`)
    }
  }
  for (const m of modules) inclusiveModules.set(m, (inclusiveModules.get(m) ?? 0) + dt)
  for (const f of functions) inclusiveFunctions.set(f, (inclusiveFunctions.get(f) ?? 0) + dt)
}
const callers = new Map<string, Map<string, number>>()
const self = new Map<string, number>()
let total = 0
let at = 0
const from = Number(values.from) * 1e6
for (let i = 0; i < profile.samples.length; i++) {
  const n = byId.get(profile.samples[i]!)!
  const dt = profile.timeDeltas[i] ?? 0
  at += dt
  if (at < from) continue
  const f = n.callFrame
  const where = f.url === "" ? "" : ` ${short(f.url)}:${f.lineNumber + 1}`
  const key = `${f.functionName || "(anonymous)"}${where}`
  self.set(key, (self.get(key) ?? 0) + dt)
  if (f.url === "" || f.url.startsWith("node:")) {
    const m = callers.get(key) ?? new Map<string, number>()
    const c = caller(n.id)
    m.set(c, (m.get(c) ?? 0) + dt)
    callers.set(key, m)
  }
  total += dt
  if (values.inclusive && f.functionName !== "(idle)") countInclusive(n.id, dt)
}
const idle = self.get("(idle)") ?? 0
console.log(`total ${(total / 1e6).toFixed(2)} s, idle ${((100 * idle) / total).toFixed(1)}%; self time as a share of busy time:`)
for (const [k, us] of [...self].filter(([k]) => k !== "(idle)").sort((a, b) => b[1] - a[1]).slice(0, Number(values.top))) {
  const via = [...(callers.get(k) ?? [])].sort((a, b) => b[1] - a[1]).slice(0, 2)
  console.log(`${((100 * us) / (total - idle)).toFixed(1).padStart(5)}%  ${k}${via.length > 0 && k[0] !== "(" ? `  ← ${via.map(([c, t]) => `${c} (${Math.round((100 * t) / us)}%)`).join(", ")}` : ""}`)
}
if (values.inclusive) {
  const top = (m: Map<string, number>) => [...m].sort((a, b) => b[1] - a[1]).slice(0, Number(values.top))
  console.log("inclusive, by module:")
  for (const [k, us] of top(inclusiveModules)) console.log(`${((100 * us) / (total - idle)).toFixed(1).padStart(5)}%  ${k}`)
  console.log("inclusive, by function:")
  for (const [k, us] of top(inclusiveFunctions)) console.log(`${((100 * us) / (total - idle)).toFixed(1).padStart(5)}%  ${k}`)
}

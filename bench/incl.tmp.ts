import { readFileSync } from "node:fs"
const profile = JSON.parse(readFileSync(process.argv[2]!, "utf8")) as { nodes: Array<{ id: number; callFrame: { functionName: string; url: string; lineNumber: number }; children?: number[] }>; samples: number[]; timeDeltas: number[] }
const from = Number(process.argv[3] ?? 3) * 1e6
const byId = new Map(profile.nodes.map((n) => [n.id, n]))
const parentOf = new Map<number, number>()
for (const n of profile.nodes) for (const c of n.children ?? []) parentOf.set(c, n.id)
const short = (u: string) => u.replace(/^file:\/\/.*?\/(node_modules\/[^/]+|runtime|workflows|portals|actors|client|bench)\//, "$1/")
const incl = new Map<string, number>(); const inclF = new Map<string, number>()
let total = 0, idle = 0, at = 0
for (let i = 0; i < profile.samples.length; i++) {
  const dt = profile.timeDeltas[i] ?? 0; at += dt; if (at < from) continue
  const n = byId.get(profile.samples[i]!)!
  total += dt
  if (n.callFrame.functionName === "(idle)") { idle += dt; continue }
  const files = new Set<string>(); const fns = new Set<string>()
  for (let p: number | undefined = n.id; p !== undefined; p = parentOf.get(p)) {
    const f = byId.get(p)!.callFrame
    if (f.url) { files.add(short(f.url).replace(/^(node_modules\/[^/]+).*/, "$1")); fns.add(`${f.functionName || "anon"} ${short(f.url)}`) }
    else fns.add(f.functionName)
  }
  for (const f of files) incl.set(f, (incl.get(f) ?? 0) + dt)
  for (const f of fns) inclF.set(f, (inclF.get(f) ?? 0) + dt)
}
const busy = total - idle
console.log(`busy ${(busy / 1e6).toFixed(2)} s of ${(total / 1e6).toFixed(2)}`)
for (const [k, v] of [...incl].sort((a, b) => b[1] - a[1]).slice(0, 25)) console.log(`${((100 * v) / busy).toFixed(1).padStart(5)}% ${k}`)
console.log("--- functions")
for (const [k, v] of [...inclF].sort((a, b) => b[1] - a[1]).slice(0, Number(process.argv[4] ?? 60))) console.log(`${((100 * v) / busy).toFixed(1).padStart(5)}% ${k}`)

// Top self-time functions of a V8 .cpuprofile (node --cpu-prof), within the window where the process was busy.
//   node --import tsx bench/profile.ts <file.cpuprofile> [--top 25] [--from 3]
// --from: skip the first seconds of the profile (start-up and module loading).
import { readFileSync } from "node:fs"
import { parseArgs } from "node:util"

interface ProfileNode {
  readonly id: number
  readonly callFrame: { readonly functionName: string; readonly url: string; readonly lineNumber: number }
}
interface Profile {
  readonly nodes: ReadonlyArray<ProfileNode>
  readonly samples: ReadonlyArray<number>
  readonly timeDeltas: ReadonlyArray<number>
}

const { values, positionals } = parseArgs({ allowPositionals: true, options: { top: { type: "string", default: "25" }, from: { type: "string", default: "0" } } })
const profile = JSON.parse(readFileSync(positionals[0]!, "utf8")) as Profile
const byId = new Map(profile.nodes.map((n) => [n.id, n]))
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
  const where = f.url === "" ? "" : ` ${f.url.replace(/^file:\/\/.*?\/(node_modules|runtime|workflows|portals|actors|client|bench)\//, "$1/")}:${f.lineNumber + 1}`
  const key = `${f.functionName || "(anonymous)"}${where}`
  self.set(key, (self.get(key) ?? 0) + dt)
  total += dt
}
const idle = self.get("(idle)") ?? 0
console.log(`total ${(total / 1e6).toFixed(2)} s, idle ${((100 * idle) / total).toFixed(1)}%; self time as a share of busy time:`)
for (const [k, us] of [...self].filter(([k]) => k !== "(idle)").sort((a, b) => b[1] - a[1]).slice(0, Number(values.top))) console.log(`${((100 * us) / (total - idle)).toFixed(1).padStart(5)}%  ${k}`)

// Where the garbage comes from: the functions that allocated most in a sampling heap profile that kept the samples of
// collected objects (bench/lib/eddyServer.ts with EDDY_BENCH_ALLOC=<file>), by their own allocations and inclusive
// of what they called.
//   node --import tsx bench/alloc.ts <file> [--top 30] [--calls N: also bytes per call, N calls in the sampled window]
import { readFileSync } from "node:fs"
import { parseArgs } from "node:util"

interface Node {
  readonly callFrame: { readonly functionName: string; readonly url: string; readonly lineNumber: number }
  readonly selfSize: number
  readonly children: ReadonlyArray<Node>
}

const { values, positionals } = parseArgs({ allowPositionals: true, options: { top: { type: "string", default: "30" }, calls: { type: "string" } } })
const profile = JSON.parse(readFileSync(positionals[0]!, "utf8")) as { head: Node }
const short = (url: string) => url.replace(/^file:\/\/.*?\/(node_modules|runtime|workflows|portals|actors|client|bench)\//, "$1/")
const own = new Map<string, number>()
const inclusive = new Map<string, number>()
let total = 0
const walk = (n: Node, above: ReadonlySet<string>): void => {
  const f = n.callFrame
  const name = `${f.functionName || "(anonymous)"} ${short(f.url)}${f.url === "" ? "" : `:${f.lineNumber + 1}`}`
  total += n.selfSize
  own.set(name, (own.get(name) ?? 0) + n.selfSize)
  // A recursive function counts once per stack.
  const stack = above.has(name) ? above : new Set([...above, name])
  for (const x of stack) inclusive.set(x, (inclusive.get(x) ?? 0) + n.selfSize)
  for (const c of n.children) walk(c, stack)
}
walk(profile.head, new Set())
const calls = values.calls === undefined ? undefined : Number(values.calls)
console.log(`sampled ${(total / 1048576).toFixed(1)} MB${calls === undefined ? "" : `, ${(total / calls).toFixed(0)} bytes per call`}`)
const print = (title: string, m: Map<string, number>) => {
  console.log(title)
  for (const [name, bytes] of [...m].sort((a, b) => b[1] - a[1]).slice(0, Number(values.top))) {
    console.log(`${((100 * bytes) / total).toFixed(1).padStart(6)}%  ${name}`)
  }
}
print("own allocations:", own)
print("inclusive:", inclusive)

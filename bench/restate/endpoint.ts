// The Restate service endpoint of the benchmark, as its own process (so its CPU and memory are measured apart):
//   node --import tsx bench/restate/endpoint.ts --port 9080 --initial 1000 --stock 100
// Prints "listening <port>" once it accepts connections.
import "./polyfill.ts"
import { parseArgs } from "node:util"

const { values } = parseArgs({ options: { port: { type: "string", default: "9080" }, initial: { type: "string", default: "1000" }, stock: { type: "string", default: "100" } } })
const restate = await import("@restatedev/restate-sdk")
const { services } = await import("./services.ts")
let endpoint = restate.endpoint()
for (const s of services({ initial: Number(values.initial), stock: Number(values.stock) })) endpoint = endpoint.bind(s)
const port = await endpoint.listen(Number(values.port))
process.stdout.write(`listening ${port}\n`)

// Starts Restate for a benchmark run: the restate-server binary of the npm package @restatedev/restate-server, bound
// to 127.0.0.1 on free ports with telemetry off and a fresh data directory, plus the SDK endpoint process
// (endpoint.ts), registered through the admin API (POST /deployments).
import { spawn, type ChildProcess } from "node:child_process"
import { mkdtempSync, openSync, rmSync } from "node:fs"
import { createRequire } from "node:module"
import net from "node:net"
import { tmpdir } from "node:os"
import { join } from "node:path"

export interface RestateRun {
  readonly ingress: string
  readonly admin: string
  readonly serverPid: number
  readonly endpointPid: number
  readonly dataDir: string
  stop(): Promise<void>
}

const freePort = (): Promise<number> =>
  new Promise((resolve, reject) => {
    const s = net.createServer()
    s.unref()
    s.on("error", reject)
    s.listen(0, "127.0.0.1", () => {
      const port = (s.address() as net.AddressInfo).port
      s.close(() => resolve(port))
    })
  })

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

const until = async (what: string, ms: number, f: () => Promise<boolean>): Promise<void> => {
  const deadline = Date.now() + ms
  while (Date.now() < deadline) {
    try {
      if (await f()) return
    } catch {
      // not up yet
    }
    await sleep(100)
  }
  throw new Error(`restate: ${what} not ready within ${ms} ms`)
}

export const restateBinary = (): string => createRequire(import.meta.url).resolve(`@restatedev/restate-server-${process.platform}-${process.arch}/bin/restate-server`)

const exited = (p: ChildProcess): Promise<void> => (p.exitCode !== null || p.signalCode !== null ? Promise.resolve() : new Promise((r) => p.once("exit", () => r())))

export const startRestate = async (config: { initial: number; stock: number }): Promise<RestateRun> => {
  const dataDir = mkdtempSync(join(tmpdir(), "eddy-bench-restate-"))
  const [ingressPort, adminPort, nodePort, endpointPort] = [await freePort(), await freePort(), await freePort(), await freePort()]
  const log = openSync(join(dataDir, "server.log"), "a")
  const server = spawn(restateBinary(), ["--base-dir", join(dataDir, "data"), "--no-logo", "--node-name", "bench", "--listen-mode", "tcp"], {
    stdio: ["ignore", log, log],
    env: {
      ...process.env,
      RESTATE_DISABLE_TELEMETRY: "true",
      RESTATE_LOG_FILTER: "warn",
      RESTATE_BIND_ADDRESS: `127.0.0.1:${nodePort}`,
      RESTATE_ADVERTISED_ADDRESS: `http://127.0.0.1:${nodePort}/`,
      RESTATE_INGRESS__BIND_ADDRESS: `127.0.0.1:${ingressPort}`,
      RESTATE_ADMIN__BIND_ADDRESS: `127.0.0.1:${adminPort}`,
    },
  })
  const endpoint = spawn(process.execPath, ["--import", "tsx", join(import.meta.dirname, "endpoint.ts"), "--port", String(endpointPort), "--initial", String(config.initial), "--stock", String(config.stock)], {
    stdio: ["ignore", "pipe", log],
  })
  const stop = async () => {
    for (const p of [endpoint, server]) if (p.exitCode === null && p.signalCode === null) p.kill("SIGTERM")
    const killer = setTimeout(() => {
      for (const p of [endpoint, server]) if (p.exitCode === null && p.signalCode === null) p.kill("SIGKILL")
    }, 10_000)
    await Promise.all([exited(endpoint), exited(server)])
    clearTimeout(killer)
    rmSync(dataDir, { recursive: true, force: true })
  }
  try {
    await new Promise<void>((resolve, reject) => {
      let out = ""
      endpoint.stdout!.on("data", (d: Buffer) => {
        out += d.toString()
        if (out.includes("listening")) resolve()
      })
      endpoint.once("exit", (code) => reject(new Error(`restate endpoint exited with ${code}`)))
      server.once("exit", (code) => reject(new Error(`restate-server exited with ${code}; see ${dataDir}/server.log`)))
    })
    const admin = `http://127.0.0.1:${adminPort}`
    const ingress = `http://127.0.0.1:${ingressPort}`
    await until("admin API", 60_000, async () => (await fetch(`${admin}/health`)).ok)
    await until("deployment registration", 60_000, async () => {
      const r = await fetch(`${admin}/deployments`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ uri: `http://127.0.0.1:${endpointPort}`, force: true }) })
      return r.ok
    })
    await until("ingress", 60_000, async () => (await fetch(`${ingress}/counter/probe/get`, { method: "POST", headers: { "content-type": "application/json" }, body: "null" })).ok)
    return { ingress, admin, serverPid: server.pid!, endpointPid: endpoint.pid!, dataDir, stop }
  } catch (err) {
    await stop()
    throw err
  }
}

import http from "node:http"
import type { EddyClient } from "../../client/Client.ts"
import type { Call, Invoker } from "./workloads.ts"

/** Eddy through its client API: `ask("object/key", { op: handler, ...arg })`, the reply is the handler's `ctx.reply`. */
export class EddyInvoker implements Invoker {
  constructor(readonly client: EddyClient) {}

  async call(c: Call): Promise<unknown> {
    const id = c.key ?? c.eddyKey
    if (id === undefined) throw new Error(`call of ${c.object}.${c.handler} has no key`)
    return (await this.client.ask(`${c.object}/${id}`, { op: c.handler, ...c.arg })).reply
  }
}

/** Restate's HTTP ingress: `POST /object/key/handler` (or `/service/handler`) with a JSON body, on keep-alive connections. */
export class RestateInvoker implements Invoker {
  private readonly agent: http.Agent
  private readonly host: string
  private readonly port: number

  constructor(
    ingress: string,
    connections: number,
    private readonly admin?: string,
    /** Per call: a call unanswered this long fails (counted as an error, outcome unknown) instead of stalling the run. */
    private readonly timeoutMs = 120_000,
  ) {
    const u = new URL(ingress)
    this.host = u.hostname
    this.port = Number(u.port)
    this.agent = new http.Agent({ keepAlive: true, maxSockets: connections, maxFreeSockets: connections })
  }

  call(c: Call): Promise<unknown> {
    const path = c.key === undefined ? `/${c.object}/${c.handler}` : `/${c.object}/${encodeURIComponent(c.key)}/${c.handler}`
    const body = JSON.stringify(c.arg)
    return new Promise((resolve, reject) => {
      const req = http.request(
        { host: this.host, port: this.port, path, method: "POST", agent: this.agent, headers: { "content-type": "application/json", "content-length": Buffer.byteLength(body) } },
        (res) => {
          const chunks: Buffer[] = []
          res.on("data", (d: Buffer) => chunks.push(d))
          res.on("end", () => {
            const text = Buffer.concat(chunks).toString("utf8")
            if (res.statusCode !== 200) return reject(new Error(`restate ${path}: HTTP ${res.statusCode}: ${text.slice(0, 300)}`))
            try {
              resolve(text.length === 0 ? undefined : JSON.parse(text))
            } catch (err) {
              reject(err instanceof Error ? err : new Error(String(err)))
            }
          })
          res.on("error", reject)
        },
      )
      req.setTimeout(this.timeoutMs, () => req.destroy(new Error(`restate ${path}: no answer within ${this.timeoutMs / 1000} s`)))
      req.on("error", reject)
      req.end(body)
    })
  }

  readonly snapshot = async (object: string): Promise<ReadonlyMap<string, Readonly<Record<string, unknown>>>> => {
    if (this.admin === undefined) throw new Error("restate: no admin URL for state queries")
    const query = `SELECT service_key, key, value_utf8 FROM state WHERE service_name = '${object.replace(/'/g, "''")}'`
    const res = await fetch(`${this.admin}/query`, { method: "POST", headers: { "content-type": "application/json", accept: "application/json" }, body: JSON.stringify({ query }), signal: AbortSignal.timeout(this.timeoutMs) })
    if (!res.ok) throw new Error(`restate state query: HTTP ${res.status}: ${(await res.text()).slice(0, 300)}`)
    const { rows } = (await res.json()) as { rows: ReadonlyArray<{ service_key: string; key: string; value_utf8: string }> }
    const out = new Map<string, Record<string, unknown>>()
    for (const r of rows) {
      const rec = out.get(r.service_key) ?? {}
      rec[r.key] = JSON.parse(r.value_utf8) as unknown
      out.set(r.service_key, rec)
    }
    return out
  }

  close(): void {
    this.agent.destroy()
  }
}

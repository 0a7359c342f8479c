import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { Client, type EddyClient } from "../../client/index.ts"
import { decodeBody } from "../../client/wire.ts"

/** Where a served embedded app announces its URL, so `eddy send <app>` finds it without flags. */
const registryFile = (app: string) => join(tmpdir(), "eddy-endpoints", `${app}.json`)

export const announce = (app: string, url: string): (() => void) => {
  mkdirSync(join(tmpdir(), "eddy-endpoints"), { recursive: true })
  const file = registryFile(app)
  writeFileSync(file, JSON.stringify({ url, pid: process.pid }) + "\n")
  return () => {
    // Only our own entry: another run of the app may have announced itself since.
    try {
      if ((JSON.parse(readFileSync(file, "utf8")) as { pid?: number }).pid === process.pid) rmSync(file, { force: true })
    } catch {
      // already gone
    }
  }
}

const alive = (pid: number): boolean => {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

const readUrl = (file: string): string | undefined => {
  if (!existsSync(file)) return undefined
  const entry = JSON.parse(readFileSync(file, "utf8")) as { url?: string; pid?: number }
  return entry.url !== undefined && (entry.pid === undefined || alive(entry.pid)) ? entry.url : undefined
}

/**
 * The client for a CLI command: --url (HTTP), --data-dir (the URL a served run wrote there), --namespace (a cluster,
 * over NATS), else the app's announced embedded URL, else the cluster of namespace <app name>.
 */
export const clientFor = async (app: string, flags: { url?: string; dataDir?: string; namespace?: string; timeoutMs?: number }): Promise<{ client: EddyClient; where: string }> => {
  const timeout = flags.timeoutMs === undefined ? {} : { timeoutMs: flags.timeoutMs }
  if (flags.url !== undefined) return { client: Client.http(flags.url, timeout), where: flags.url }
  if (flags.dataDir !== undefined) {
    const url = readUrl(join(flags.dataDir, "endpoint.json"))
    if (url === undefined) throw new Error(`no running app serves clients from ${flags.dataDir} (start it with: eddy run <app> --data-dir ${flags.dataDir} --port 0)`)
    return { client: Client.http(url, timeout), where: url }
  }
  if (flags.namespace === undefined) {
    const url = readUrl(registryFile(app))
    if (url !== undefined) return { client: Client.http(url, timeout), where: url }
  }
  const ns = flags.namespace ?? app
  return { client: await Client.nats({ namespace: ns, ...timeout }), where: `cluster namespace '${ns}' over NATS` }
}

/** A JSON argument: plain JSON, as a user types it on a command line. */
export const parseJsonArg = (text: string | undefined, what: string): unknown => {
  if (text === undefined) throw new Error(`${what} is missing: give it as JSON, e.g. '{"add": 1}'`)
  try {
    return decodeBody(text, false)
  } catch (err) {
    throw new Error(`${what} is not valid JSON (${err instanceof Error ? err.message : String(err)}): ${text}`)
  }
}

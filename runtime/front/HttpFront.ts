import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http"
import type { AddressInfo } from "node:net"
import { decodeBody, encodeBody, statusOf, SUPERJSON_TYPE, type RequestBody } from "../../client/wire.ts"
import type { Key } from "../../workflows/Key.ts"
import { FrontError, frontRequest, type RequestFront } from "./RequestFront.ts"

/** Committed-state reads the HTTP front needs from the running app. */
export interface StateAccess {
  /** Runs `f` on committed state at the next commit boundary (at once if the run is over). */
  read<A>(f: (state: { get(task: string, key: Key): unknown; keys(task: string): ReadonlyArray<Key>; readonly epoch: number }) => A): Promise<A>
}

export interface HttpFrontOptions {
  readonly port?: number
  /** Default 127.0.0.1: an embedded app is not meant to face a network. */
  readonly host?: string
  readonly app: string
}

const MAX_BODY = 4 * 1024 * 1024

/**
 * The embedded runtime's client endpoint (docs/client.md): JSON over HTTP/1.1 keep-alive.
 *   POST /v1/ask   {target, message, key?, timeoutMs?} → {reply, epoch}
 *   POST /v1/tell  {target, message, key?}             → {epoch}
 *   POST /v1/batch {requests: [{target, message, key?, tell?}]} → {answers: [{reply, epoch} | {error}]}
 *   GET  /v1/state/<type>/<id>                         → {state, epoch} (404 Rejected-free: {state: undefined})
 *   GET  /v1/actors/<type>                             → {ids}
 *   GET  /v1/info                                      → {app, epoch, types}
 * Errors: {error: {tag, message}} with a status per tag.
 */
export const startHttpFront = (front: RequestFront, state: StateAccess, options: HttpFrontOptions): Promise<{ readonly url: string; readonly server: Server }> => {
  const server = createServer((req, res) => {
    handle(front, state, options, req, res).catch((err: unknown) => send(res, false, 500, { error: { tag: "Internal", message: err instanceof Error ? err.message : String(err) } }))
  })
  server.keepAliveTimeout = 60_000
  return new Promise((resolve, reject) => {
    server.once("error", reject)
    server.listen(options.port ?? 0, options.host ?? "127.0.0.1", () => {
      server.off("error", reject)
      const a = server.address() as AddressInfo
      resolve({ url: `http://${a.address}:${a.port}`, server })
    })
  })
}

const send = (res: ServerResponse, rich: boolean, status: number, body: unknown): void => {
  const text = encodeBody(body, rich)
  res.writeHead(status, { "content-type": rich ? SUPERJSON_TYPE : "application/json", "content-length": Buffer.byteLength(text) })
  res.end(text)
}

const fail = (res: ServerResponse, rich: boolean, err: unknown): void => {
  if (err instanceof FrontError) send(res, rich, statusOf(err.tag), { error: { tag: err.tag, message: err.message } })
  else send(res, rich, 500, { error: { tag: "Internal", message: err instanceof Error ? err.message : String(err) } })
}

const readBody = (req: IncomingMessage): Promise<string> =>
  new Promise((resolve, reject) => {
    const chunks: Buffer[] = []
    let size = 0
    req.on("data", (c: Buffer) => {
      size += c.length
      if (size > MAX_BODY) {
        reject(new FrontError("InvalidPayload", `request body over ${MAX_BODY} bytes`))
        req.destroy()
      } else chunks.push(c)
    })
    req.on("end", () => resolve(Buffer.concat(chunks).toString("utf8")))
    req.on("error", reject)
  })

async function handle(front: RequestFront, state: StateAccess, options: HttpFrontOptions, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const url = new URL(req.url ?? "/", "http://x")
  const rich = (req.headers["content-type"] ?? req.headers.accept ?? "").includes(SUPERJSON_TYPE)
  const path = url.pathname
  try {
    if (req.method === "POST" && (path === "/v1/ask" || path === "/v1/tell")) {
      let body: RequestBody
      try {
        body = decodeBody(await readBody(req), rich) as RequestBody
      } catch (err) {
        if (err instanceof FrontError) throw err
        throw new FrontError("InvalidPayload", `the body is not valid ${rich ? "superjson" : "JSON"}: ${err instanceof Error ? err.message : String(err)}`)
      }
      if (typeof body !== "object" || body === null || typeof body.target !== "string") throw new FrontError("BadRequest", "the body must be an object with a string 'target' ('type/id') and a 'message'")
      const ask = path === "/v1/ask"
      // Answered from inside the commit (synchronously), so the response is on its way before the engine goes on.
      return front.submitWith(
        frontRequest(body, ask),
        (o) => (o instanceof FrontError ? fail(res, rich, o) : send(res, rich, 200, ask ? { reply: o.reply, epoch: o.epoch } : { epoch: o.epoch })),
      )
    }
    if (req.method === "POST" && path === "/v1/batch") {
      let body: { requests?: unknown }
      try {
        body = decodeBody(await readBody(req), rich) as { requests?: unknown }
      } catch (err) {
        if (err instanceof FrontError) throw err
        throw new FrontError("InvalidPayload", `the body is not valid ${rich ? "superjson" : "JSON"}: ${err instanceof Error ? err.message : String(err)}`)
      }
      if (typeof body !== "object" || body === null || !Array.isArray(body.requests)) throw new FrontError("BadRequest", "a batch is an object with an array 'requests'")
      // Each request is admitted and answered on its own; the batch answers when all have (in request order), from
      // inside the commit that answered the last of them.
      const requests = body.requests as ReadonlyArray<RequestBody & { tell?: boolean }>
      const answers: unknown[] = new Array<unknown>(requests.length)
      let left = requests.length
      const settled = (i: number, a: unknown) => {
        answers[i] = a
        if (--left > 0) return
        send(res, rich, 200, { answers })
      }
      if (left === 0) return send(res, rich, 200, { answers })
      requests.forEach((r, i) => {
        if (typeof r !== "object" || r === null || typeof r.target !== "string") return settled(i, { error: { tag: "BadRequest", message: "each request needs a string 'target' ('type/id')" } })
        const ask = r.tell !== true
        front.submitWith(
          frontRequest(r, ask),
          (o) => settled(i, o instanceof FrontError ? { error: { tag: o.tag, message: o.message } } : ask ? { reply: o.reply, epoch: o.epoch } : { epoch: o.epoch }),
        )
      })
      return
    }
    if (req.method === "GET" && path.startsWith("/v1/state/")) {
      return send(res, rich, 200, await front.readState(state, decodeURIComponent(path.slice("/v1/state/".length))))
    }
    if (req.method === "GET" && path.startsWith("/v1/actors/")) {
      return send(res, rich, 200, { ids: await front.listIds(state, decodeURIComponent(path.slice("/v1/actors/".length))) })
    }
    if (req.method === "GET" && path === "/v1/info") {
      const epoch = await state.read((r) => r.epoch)
      return send(res, rich, 200, { app: options.app, epoch, types: front.endpoints.flatMap((e) => e.types) })
    }
    throw new FrontError("BadRequest", `no such endpoint: ${req.method ?? "?"} ${path} (see docs/client.md)`)
  } catch (err) {
    fail(res, rich, err)
  }
}

import { Agent, request } from "node:http"
import { targetString, type Answer, type EddyClient, type RequestOptions, type StateOptions, type Target } from "./Client.ts"
import { batcher, callOf, ClientSession, type Call } from "./batching.ts"
import { ClientError, clientError, Timeout, Unavailable } from "./errors.ts"
import { decodeBody, encodeBody, SUPERJSON_TYPE, type AnswerBody, type ErrorBody } from "./wire.ts"

export interface HttpClientOptions {
  /** Default per-call timeout (30 s). */
  readonly timeoutMs?: number
  /** Sockets kept open to the app (default 256: enough for 256 requests in flight). */
  readonly maxSockets?: number
  /**
   * Coalesce the asks and tells made in the same tick into one `POST /v1/batch` (default true): one HTTP exchange
   * per burst instead of one per call, which is what lets many callers in flight share an epoch cheaply. Each call
   * still gets its own answer or error.
   */
  readonly batching?: boolean
}

/**
 * The client API over the embedded runtime's HTTP endpoint. A call that fails with no answer (connection refused or
 * reset, the app restarting) is retried with the same idempotency key until its timeout, so it runs at most once.
 */
export const httpClient = (url: string, options: HttpClientOptions = {}): EddyClient => {
  const base = new URL(url)
  const agent = new Agent({ keepAlive: true, maxSockets: options.maxSockets ?? 256 })
  const defaultTimeout = options.timeoutMs ?? 30_000
  const session = new ClientSession()

  const once = (method: "GET" | "POST", path: string, body: unknown, timeoutMs: number): Promise<unknown> =>
    new Promise((resolve, reject) => {
      const text = body === undefined ? undefined : encodeBody(body, true)
      const req = request(
        {
          host: base.hostname,
          port: base.port,
          path,
          method,
          agent,
          timeout: timeoutMs,
          headers: { accept: SUPERJSON_TYPE, ...(text === undefined ? {} : { "content-type": SUPERJSON_TYPE, "content-length": Buffer.byteLength(text) }) },
        },
        (res) => {
          const chunks: Buffer[] = []
          res.on("data", (c: Buffer) => chunks.push(c))
          res.on("error", reject)
          res.on("end", () => {
            let parsed: unknown
            try {
              parsed = decodeBody(Buffer.concat(chunks).toString("utf8"), (res.headers["content-type"] ?? "").includes(SUPERJSON_TYPE))
            } catch (err) {
              return reject(new Unavailable(`${url} answered with something that is not an Eddy answer: ${err instanceof Error ? err.message : String(err)}`))
            }
            if (res.statusCode === 200) return resolve(parsed)
            const e = (parsed as Partial<ErrorBody>).error
            reject(e === undefined ? new Unavailable(`${url} answered HTTP ${res.statusCode}`) : clientError(e.tag, e.message))
          })
        },
      )
      req.on("timeout", () => req.destroy(new Timeout(`no answer from ${url}${path} within ${timeoutMs} ms`)))
      req.on("error", (err) => reject(err instanceof ClientError ? err : new Unavailable(`cannot reach the Eddy app at ${url}: ${err.message}`)))
      req.end(text)
    })

  /** Retries what got no answer; an answer (even an error) is final. */
  const exchange = async (method: "GET" | "POST", path: string, body: unknown, timeoutMs: number): Promise<unknown> => {
    const deadline = Date.now() + timeoutMs
    let delay = 50
    for (;;) {
      const left = deadline - Date.now()
      try {
        return await once(method, path, body, Math.max(left, 1))
      } catch (err) {
        const retriable = err instanceof Unavailable && !/answered/.test(err.message)
        if (!retriable || Date.now() + delay >= deadline) throw err
        await new Promise((r) => setTimeout(r, delay))
        delay = Math.min(delay * 2, 1000)
      }
    }
  }

  const single = (call: Call) => {
    const { tell, ...one } = call
    return exchange("POST", tell === true ? "/v1/tell" : "/v1/ask", one, one.timeoutMs + 1000)
  }
  const batched = batcher(url, {
    one: single,
    many: (calls) => exchange("POST", "/v1/batch", { requests: calls }, Math.max(...calls.map((c) => c.timeoutMs)) + 1000),
  })

  const send = async (path: string, target: Target, message: unknown, o: RequestOptions): Promise<AnswerBody> => {
    const c = callOf(target, message, o, defaultTimeout, path === "/v1/tell", session)
    return (await session.settled(c.seq, options.batching === false ? single(c) : batched(c))) as AnswerBody
  }

  return {
    ask: async <R>(target: Target, message: unknown, o: RequestOptions = {}): Promise<Answer<R>> => {
      const a = await send("/v1/ask", target, message, o)
      return { reply: a.reply as R, epoch: a.epoch }
    },
    tell: async (target, message, o = {}) => ({ epoch: (await send("/v1/tell", target, message, o)).epoch }),
    state: async <S>(target: Target, o: StateOptions = {}): Promise<S | undefined> => {
      const spec = targetString(target)
      const slash = spec.indexOf("/")
      const path = `/v1/state/${encodeURIComponent(spec.slice(0, slash))}/${encodeURIComponent(spec.slice(slash + 1))}${o.minEpoch === undefined ? "" : `?minEpoch=${o.minEpoch}`}`
      return ((await exchange("GET", path, undefined, o.timeoutMs ?? defaultTimeout)) as { state?: S }).state
    },
    list: async (type) => ((await exchange("GET", `/v1/actors/${encodeURIComponent(type)}`, undefined, defaultTimeout)) as { ids: string[] }).ids,
    close: () => {
      agent.destroy()
      return Promise.resolve()
    },
  }
}

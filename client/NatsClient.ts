import { connect, type NatsConnection } from "@nats-io/transport-node"
import { targetString, type Answer, type EddyClient, type RequestOptions, type StateOptions, type Target } from "./Client.ts"
import { batcher, callOf, ClientSession, type Call } from "./batching.ts"
import { clientError, Timeout, Unavailable } from "./errors.ts"
import { clientSubjects } from "./subjects.ts"
import { decodeBody, encodeBody, type AnswerBody, type ErrorBody } from "./wire.ts"

export interface NatsClientOptions {
  /** The cluster deployment's namespace (`eddy cluster --namespace`, default the app's name). */
  readonly namespace: string
  /** Default: EDDY_NATS_URL, else nats://127.0.0.1:21422. */
  readonly url?: string
  /** Default per-call timeout (30 s). */
  readonly timeoutMs?: number
  /** How long one attempt waits before it is retried with the same idempotency key (default 5 s). */
  readonly attemptMs?: number
  /** Coalesce the asks and tells of one tick into one batch request (default true). */
  readonly batching?: boolean
}

const isNoAnswer = (err: unknown): boolean => {
  const code = (err as { code?: unknown; name?: unknown } | null)?.code
  const name = (err as { name?: unknown } | null)?.name
  const text = err instanceof Error ? err.message : String(err)
  return code === "503" || code === "TIMEOUT" || name === "TimeoutError" || name === "NoRespondersError" || /timeout|no responders/i.test(text)
}

/**
 * The client API over a cluster's NATS request/reply subjects. An attempt that gets no answer (no worker listening
 * while the cluster restarts, a worker that died holding the request) is retried with the same idempotency key until
 * the call's timeout: the request runs once and the caller gets its one answer.
 */
export const natsClient = async (options: NatsClientOptions): Promise<EddyClient> => {
  const url = options.url ?? process.env["EDDY_NATS_URL"] ?? "nats://127.0.0.1:21422"
  let nc: NatsConnection
  try {
    nc = await connect({ servers: url, name: "eddy-client", timeout: 3_000, maxReconnectAttempts: -1 })
  } catch (err) {
    throw new Unavailable(`cannot reach NATS at ${url} (set EDDY_NATS_URL): ${err instanceof Error ? err.message : String(err)}`)
  }
  const s = clientSubjects(options.namespace)
  const defaultTimeout = options.timeoutMs ?? 30_000
  const session = new ClientSession()
  const attemptMs = options.attemptMs ?? 5_000

  const call = async (subject: string, body: unknown, timeoutMs: number): Promise<unknown> => {
    const deadline = Date.now() + timeoutMs
    const data = encodeBody(body, true)
    let delay = 50
    for (;;) {
      const left = deadline - Date.now()
      if (left <= 0) throw new Timeout(`no answer on ${subject} within ${timeoutMs} ms (is the cluster of namespace '${options.namespace}' running?); the request may still run once: retry with the same idempotency key`)
      let text: string
      try {
        text = (await nc.request(subject, data, { timeout: Math.min(left, attemptMs) })).string()
      } catch (err) {
        if (!isNoAnswer(err)) throw new Unavailable(`NATS at ${url}: ${err instanceof Error ? err.message : String(err)}`)
        await new Promise((r) => setTimeout(r, Math.min(delay, Math.max(deadline - Date.now(), 0))))
        delay = Math.min(delay * 2, 1000)
        continue
      }
      const parsed = decodeBody(text, true) as Partial<ErrorBody> & Record<string, unknown>
      if (parsed.error !== undefined) {
        const e = clientError(parsed.error.tag, parsed.error.message)
        // A busy or restarting cluster is worth another attempt; anything else is the answer.
        if (e._tag === "Busy" || e._tag === "Unavailable") {
          await new Promise((r) => setTimeout(r, delay))
          delay = Math.min(delay * 2, 1000)
          continue
        }
        throw e
      }
      return parsed
    }
  }

  const single = (c: Call) => {
    const { tell, ...one } = c
    return call(tell === true ? s.tell : s.ask, one, one.timeoutMs)
  }
  // An attempt without an answer (a worker died holding the batch) is retried whole: the keys make it safe.
  const batched = batcher(`NATS namespace '${options.namespace}'`, {
    one: single,
    many: (calls) => {
      const timeoutMs = Math.max(...calls.map((c) => c.timeoutMs))
      return call(s.batch, { requests: calls, timeoutMs }, timeoutMs)
    },
  })

  const send = async (subject: string, target: Target, message: unknown, o: RequestOptions): Promise<AnswerBody> => {
    const c = callOf(target, message, o, defaultTimeout, subject === s.tell, session)
    return (await session.settled(c.seq, options.batching === false ? single(c) : batched(c))) as AnswerBody
  }

  return {
    ask: async <R>(target: Target, message: unknown, o: RequestOptions = {}): Promise<Answer<R>> => {
      const a = await send(s.ask, target, message, o)
      return { reply: a.reply as R, epoch: a.epoch }
    },
    tell: async (target, message, o = {}) => ({ epoch: (await send(s.tell, target, message, o)).epoch }),
    state: async <S>(target: Target, o: StateOptions = {}): Promise<S | undefined> => {
      const deadline = Date.now() + (o.timeoutMs ?? defaultTimeout)
      for (;;) {
        const r = (await call(s.state, { target: targetString(target) }, Math.max(deadline - Date.now(), 1))) as { state?: S; epoch: number }
        // A restarted cluster may briefly answer from an older commit boundary than the caller has seen.
        if (o.minEpoch === undefined || r.epoch >= o.minEpoch) return r.state
        if (Date.now() > deadline) throw new Timeout(`state of ${targetString(target)} did not reach epoch ${o.minEpoch}`)
        await new Promise((res) => setTimeout(res, 20))
      }
    },
    list: async (type) => ((await call(s.list, { type }, defaultTimeout)) as { ids: string[] }).ids,
    close: async () => {
      await nc.close().catch(() => undefined)
    },
  }
}



import { randomUUID } from "node:crypto"
import { connect, type Msg, type NatsConnection } from "@nats-io/transport-node"
import { clientSubjects, FRONT_QUEUE } from "../../client/subjects.ts"
import { decodeBody, encodeBody, type RequestBody } from "../../client/wire.ts"
import type { EndpointReply } from "../../workflows/Endpoint.ts"
import { readEndpoints } from "../config/Endpoints.ts"
import { canonicalKey, keyGroupOf, ownerOf } from "../engine/keys.ts"
import type { StateAccess } from "../front/HttpFront.ts"
import { FrontError, frontRequest, type RequestFront } from "../front/RequestFront.ts"

export interface NatsFrontOptions {
  readonly namespace: string
  readonly app: string
  readonly partitions: number
  readonly keyGroups: number
  /** The partitions this worker hosts: it answers state reads for their key groups. */
  readonly hosted: ReadonlyArray<number>
  readonly url?: string
}

const errorBody = (err: unknown) =>
  err instanceof FrontError ? { error: { tag: err.tag, message: err.message } } : { error: { tag: "Internal", message: err instanceof Error ? err.message : String(err) } }

/**
 * A worker's client endpoint over NATS request/reply (docs/client.md). Requests are taken by any worker (a queue
 * group) and queued for its own partitions; the answer is published to the caller's reply subject by whichever
 * worker commits it. State reads go to the worker owning the key; listings gather from every partition.
 * Bodies are superjson. A worker that dies loses its waiting requests: callers retry with the same key.
 */
export const startNatsFront = async (front: RequestFront, state: StateAccess, options: NatsFrontOptions): Promise<{ close: () => Promise<void> }> => {
  const url = options.url ?? readEndpoints().nats.url
  const nc: NatsConnection = await connect({ servers: url, name: `eddy-front-${options.namespace}`, timeout: 3_000 })
  const s = clientSubjects(options.namespace)
  const respond = (msg: Msg, body: unknown) => {
    if (msg.reply !== undefined && msg.reply !== "") msg.respond(encodeBody(body, true))
  }
  const request = (ask: boolean) => (err: Error | null, msg: Msg) => {
    if (err !== null) return
    try {
      const body = decodeBody(msg.string(), true) as RequestBody
      if (typeof body !== "object" || body === null || typeof body.target !== "string") throw new FrontError("BadRequest", "the body must be an object with a string 'target' ('type/id') and a 'message'")
      if (msg.reply === undefined || msg.reply === "") throw new FrontError("BadRequest", "a request needs a reply subject")
      front.submitFor(frontRequest(body, ask), msg.reply)
    } catch (e) {
      respond(msg, errorBody(e instanceof SyntaxError || e instanceof TypeError ? new FrontError("InvalidPayload", `the body is not valid superjson: ${e.message}`) : e))
    }
  }
  nc.subscribe(s.ask, { queue: FRONT_QUEUE, callback: request(true) })
  nc.subscribe(s.tell, { queue: FRONT_QUEUE, callback: request(false) })

  // Batches: each request is admitted on its own with an answer address of this worker (answers come from whichever
  // worker commits them); the batch is answered, in request order, once every request has its answer.
  const worker = randomUUID().slice(0, 12)
  const answersSubject = s.answers(worker)
  const answersPrefix = `${answersSubject}.`
  const batches = new Map<string, { readonly answers: unknown[]; left: number; readonly reply: Msg; readonly timer: ReturnType<typeof setTimeout> }>()
  let batchSeq = 0
  const settle = (id: string, i: number, answer: unknown) => {
    const b = batches.get(id)
    if (b === undefined || b.answers[i] !== undefined) return
    b.answers[i] = answer
    if (--b.left > 0) return
    batches.delete(id)
    clearTimeout(b.timer)
    respond(b.reply, { answers: b.answers })
  }
  front.remote = (address: string, a: EndpointReply, epoch: number) => {
    const body = a.x !== undefined ? { error: { tag: a.x.tag, message: a.x.message } } : { reply: a.r, epoch }
    // An answer to a batch this worker took is settled here, not sent round through NATS.
    if (address.startsWith(answersPrefix)) {
      const parts = address.slice(answersPrefix.length).split(".")
      return settle(parts[0]!, Number(parts[1]), body)
    }
    nc.publish(address, encodeBody(body, true))
  }
  nc.subscribe(`${answersSubject}.>`, {
    callback: (err, msg) => {
      if (err !== null) return
      const parts = msg.subject.slice(answersSubject.length + 1).split(".")
      try {
        settle(parts[0]!, Number(parts[1]), decodeBody(msg.string(), true))
      } catch {
        // not an answer of ours
      }
    },
  })
  nc.subscribe(s.batch, {
    queue: FRONT_QUEUE,
    callback: (err, msg) => {
      if (err !== null) return
      let body: { requests?: unknown; timeoutMs?: unknown }
      try {
        body = decodeBody(msg.string(), true) as typeof body
        if (typeof body !== "object" || body === null || !Array.isArray(body.requests)) throw new FrontError("BadRequest", "a batch is an object with an array 'requests'")
      } catch (e) {
        return respond(msg, errorBody(e instanceof FrontError ? e : new FrontError("InvalidPayload", `the body is not valid superjson: ${e instanceof Error ? e.message : String(e)}`)))
      }
      const requests = body.requests as ReadonlyArray<RequestBody & { tell?: boolean }>
      if (requests.length === 0) return respond(msg, { answers: [] })
      const id = `${++batchSeq}`
      const timeoutMs = typeof body.timeoutMs === "number" ? body.timeoutMs : 30_000
      const timer = setTimeout(() => {
        const b = batches.get(id)
        if (b === undefined) return
        b.answers.forEach((a, i) => {
          if (a === undefined) settle(id, i, { error: { tag: "Timeout", message: `no answer within ${timeoutMs} ms; it may still run once: retry with the same idempotency key` } })
        })
      }, timeoutMs)
      batches.set(id, { answers: new Array<unknown>(requests.length).fill(undefined), left: requests.length, reply: msg, timer })
      requests.forEach((r, i) => {
        try {
          if (typeof r !== "object" || r === null || typeof r.target !== "string") throw new FrontError("BadRequest", "each request needs a string 'target' ('type/id')")
          front.submitFor(frontRequest(r, r.tell !== true), `${answersSubject}.${id}.${i}`)
        } catch (e) {
          settle(id, i, errorBody(e))
        }
      })
    },
  })

  const readState = (target: string) => front.readState(state, target)
  const listLocal = (type: string) => front.listIds(state, type)
  const serveAsync = (f: (body: unknown) => Promise<unknown>) => (err: Error | null, msg: Msg) => {
    if (err !== null) return
    let body: unknown
    try {
      body = decodeBody(msg.string(), true)
    } catch (e) {
      return respond(msg, errorBody(new FrontError("InvalidPayload", `the body is not valid superjson: ${e instanceof Error ? e.message : String(e)}`)))
    }
    f(body).then(
      (r) => respond(msg, r),
      (e: unknown) => respond(msg, errorBody(e)),
    )
  }
  // Any worker takes a read and forwards it to the partition owning the key.
  nc.subscribe(s.state, {
    queue: FRONT_QUEUE,
    callback: serveAsync(async (body) => {
      const target = (body as { target?: unknown }).target
      if (typeof target !== "string") throw new FrontError("BadRequest", "a state read needs a string 'target'")
      const slash = target.indexOf("/")
      const key = slash <= 0 ? undefined : front.endpointOf(target.slice(0, slash)).view.key(target)
      const owner = key === undefined ? options.hosted[0]! : ownerOf(keyGroupOf(canonicalKey(key), options.keyGroups), options.keyGroups, options.partitions)
      if (options.hosted.includes(owner)) return readState(target)
      const m = await nc.request(s.statePartition(owner), encodeBody({ target }, true), { timeout: 10_000 })
      return decodeBody(m.string(), true)
    }),
  })
  nc.subscribe(s.list, {
    queue: FRONT_QUEUE,
    callback: serveAsync(async (body) => {
      const type = (body as { type?: unknown }).type
      if (typeof type !== "string") throw new FrontError("BadRequest", "a listing needs a string 'type'")
      front.endpointOf(type)
      const parts = await Promise.all(
        Array.from({ length: options.partitions }, async (_, p) => {
          if (options.hosted.includes(p)) return listLocal(type)
          const m = await nc.request(s.listPartition(p), encodeBody({ type }, true), { timeout: 10_000 })
          const r = decodeBody(m.string(), true) as { ids?: string[]; error?: { message: string } }
          if (r.ids === undefined) throw new FrontError("Unavailable", `partition ${p} could not list: ${r.error?.message ?? "no answer"}`)
          return r.ids
        }),
      )
      return { ids: parts.flat().sort() }
    }),
  })
  for (const p of options.hosted) {
    nc.subscribe(s.statePartition(p), { callback: serveAsync((body) => readState((body as { target: string }).target)) })
    nc.subscribe(s.listPartition(p), { callback: serveAsync(async (body) => ({ ids: await listLocal((body as { type: string }).type) })) })
  }
  nc.subscribe(s.info, {
    queue: FRONT_QUEUE,
    callback: serveAsync(async () => ({ app: options.app, partitions: options.partitions, types: front.endpoints.flatMap((e) => e.types), epoch: await state.read((r) => r.epoch) })),
  })
  await nc.flush()
  return {
    close: async () => {
      for (const b of batches.values()) clearTimeout(b.timer)
      await nc.drain().catch(() => undefined)
    },
  }
}

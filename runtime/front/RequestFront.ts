import { randomUUID } from "node:crypto"
import type { RequestBody } from "../../client/wire.ts"
import { EndpointError, keptWhileRetried, sessionCallProblem, type EndpointFailure, type EndpointReply, type EndpointRequest, type RequestEndpoint } from "../../workflows/Endpoint.ts"
import type { RequestChannel } from "../engine/Engine.ts"
import type { StateAccess } from "./HttpFront.ts"
import { canonicalKey, keyGroupOf } from "../engine/keys.ts"
import type { Plan } from "../engine/Plan.ts"

/** A request as a front (HTTP, NATS) hands it over. */
export interface FrontRequest {
  /** `type/id`. */
  readonly target: string
  readonly message: unknown
  readonly ask: boolean
  /** Idempotency key (default: a fresh one, which nobody can retry with: its answer is not kept). */
  readonly key?: string
  /**
   * The key was made up by a client library for its own retries, not given by the caller: the answer is kept only
   * while a retry can come (twice the call's timeout, plus a second), not for the system's retention window.
   */
  readonly auto?: boolean
  /** A call of a client session instead of a key (RequestBody.session): its session, number and acknowledgement. */
  readonly session?: { readonly id: string; readonly seq: number; readonly ack: number }
  readonly timeoutMs?: number
}

/** A request body as the front takes it. */
export const frontRequest = (b: RequestBody, ask: boolean): FrontRequest => ({
  target: b.target,
  message: b.message,
  ask,
  ...(b.key === undefined ? {} : { key: b.key }),
  ...(b.auto === true ? { auto: true } : {}),
  ...(b.session === undefined && b.seq === undefined && b.ack === undefined ? {} : { session: { id: b.session as string, seq: b.seq as number, ack: b.ack as number } }),
  ...(typeof b.timeoutMs === "number" ? { timeoutMs: b.timeoutMs } : {}),
})

export interface FrontAnswer {
  readonly reply: unknown
  readonly epoch: number
}

export type FrontErrorTag = EndpointFailure["tag"] | "Timeout" | "Busy" | "Unavailable" | "BadRequest"

/** A request that failed, with the tag clients map to their error classes. */
export class FrontError extends Error {
  constructor(
    readonly tag: FrontErrorTag,
    message: string,
  ) {
    super(message)
    this.name = "FrontError"
  }
}

export interface RequestFrontOptions {
  /** Whether this process hosts key group kg (embedded: all). */
  readonly hosts: (kg: number) => boolean
  /** Requests waiting for an epoch above which new ones get Busy (default 100,000). */
  readonly maxQueued?: number
  /** Default time a caller waits for its answer (default 30 s). */
  readonly timeoutMs?: number
}

/** Hears a request's outcome once: its committed answer, or why there is none. */
export type Settle = (outcome: FrontAnswer | FrontError) => void

interface Waiter {
  readonly settle: Settle
  readonly deadline: number
  readonly target: string
  readonly timeoutMs: number
}

interface Inbox {
  readonly endpoint: RequestEndpoint
  /** Hosted splits of the endpoint's inbox source, by their key group. */
  readonly byKg: Map<number, number>
  readonly splits: ReadonlyArray<number>
}

/**
 * The runtime side of client requests: admits them (checks, idempotency key, backpressure), queues them for the
 * next epoch of the partition that owns their split, and answers each caller once the epoch that answered it
 * committed. An epoch that aborts takes the whole process down with it, waiters included: callers retry with the
 * same key and the request's idempotency entry decides whether it runs.
 */
export class RequestFront implements RequestChannel {
  private readonly inboxes: Inbox[] = []
  private readonly byType = new Map<string, Inbox>()
  private readonly queues = new Map<number, EndpointRequest[]>()
  private readonly waiters = new Map<string, Waiter>()
  /**
   * Waiter ids in admission order, one queue per timeout (so deadlines ascend within a queue): one timer for all,
   * rather than one per request. Answered ids leave lazily, when they reach a queue's head.
   */
  private readonly deadlines = new Map<number, { ids: string[]; head: number }>()
  private timer: ReturnType<typeof setTimeout> | undefined
  private timerAt = Number.POSITIVE_INFINITY
  private readonly prefix = `l:${randomUUID().slice(0, 8)}:`
  private queued = 0
  private n = 0
  private closed: string | undefined
  private wake: (() => void) | undefined
  /** Delivers an answer to an address this process does not own (a cluster client's reply subject). */
  remote: ((address: string, answer: EndpointReply, epoch: number) => void) | undefined
  /** Requests admitted and answers delivered, for progress lines. */
  admitted = 0
  answered = 0

  constructor(
    private readonly plan: Plan,
    private readonly options: RequestFrontOptions,
  ) {
    for (const wf of plan.app.workflows) {
      for (const endpoint of wf.endpoints) {
        const byKg = new Map<number, number>()
        plan.splits.forEach((s, i) => {
          if (s.source.live === true && s.source.name === endpoint.inbox && options.hosts(s.keyGroup)) byKg.set(s.keyGroup, i)
        })
        const inbox: Inbox = { endpoint, byKg, splits: [...byKg.values()] }
        this.inboxes.push(inbox)
        for (const t of endpoint.types) if (!this.byType.has(t)) this.byType.set(t, inbox)
        for (const i of inbox.splits) this.queues.set(i, [])
      }
    }
  }

  /** The endpoints of the app (for state views and listings). */
  get endpoints(): ReadonlyArray<RequestEndpoint> {
    return this.inboxes.map((i) => i.endpoint)
  }

  /** The endpoint serving `type`, or a typed error naming the types there are. */
  endpointOf(type: string): RequestEndpoint {
    const inbox = this.byType.get(type)
    if (inbox === undefined) {
      const known = [...this.byType.keys()]
      throw new FrontError("UnknownActorType", known.length === 0 ? `app '${this.plan.app.name}' serves no requests (it has no actor system)` : `app '${this.plan.app.name}' has no actor type '${type}' (it has: ${known.join(", ")})`)
    }
    return inbox.endpoint
  }

  /** The committed state of `target` (`type/id`) as its view shows it, read at the next commit boundary. */
  readState(state: StateAccess, target: string): Promise<{ readonly state: unknown; readonly epoch: number }> {
    const slash = target.indexOf("/")
    if (slash <= 0) return Promise.reject(new FrontError("InvalidPayload", `'${target}' is not of the form type/id`))
    const view = this.endpointOf(target.slice(0, slash)).view
    const key = view.key(target)
    if (key === undefined) return Promise.reject(new FrontError("InvalidPayload", `'${target}' names no actor`))
    return state.read((r) => {
      const v = r.get(view.task, key)
      return { state: v === undefined ? undefined : view.show(v), epoch: r.epoch }
    })
  }

  /** Ids of the targets of `type` with committed state, in the partitions of this process. */
  listIds(state: StateAccess, type: string): Promise<string[]> {
    const view = this.endpointOf(type).view
    return state.read((r) => {
      const out: string[] = []
      for (const key of r.keys(view.task)) {
        const d = view.describe(key)
        if (d.group === type && view.show(r.get(view.task, key)) !== undefined) out.push(d.spec.slice(type.length + 1))
      }
      return out
    })
  }

  /** Admits a request; resolves with its committed answer. */
  submit(req: FrontRequest): Promise<FrontAnswer> {
    return new Promise<FrontAnswer>((resolve, reject) => this.submitWith(req, (o) => (o instanceof FrontError ? reject(o) : resolve(o))))
  }

  /**
   * Admits a request; `settle` hears its outcome exactly once: a refusal at once, the answer synchronously when its
   * epoch commits (so a front can write it before the engine moves on), or a timeout.
   */
  submitWith(req: FrontRequest, settle: Settle): void {
    const w = `${this.prefix}${++this.n}`
    try {
      this.admit(req, w)
    } catch (err) {
      settle(err instanceof FrontError ? err : new FrontError("BadRequest", err instanceof Error ? err.message : String(err)))
      return
    }
    const timeoutMs = req.timeoutMs ?? this.options.timeoutMs ?? 30_000
    const deadline = performance.now() + timeoutMs
    this.waiters.set(w, { settle, deadline, target: req.target, timeoutMs })
    let q = this.deadlines.get(timeoutMs)
    if (q === undefined) this.deadlines.set(timeoutMs, (q = { ids: [], head: 0 }))
    q.ids.push(w)
    if (deadline < this.timerAt) this.arm(deadline)
  }

  private arm(at: number): void {
    if (this.timer !== undefined) clearTimeout(this.timer)
    this.timerAt = at
    this.timer = setTimeout(() => this.expire(), Math.max(0, at - performance.now()))
    this.timer.unref?.()
  }

  /** Times out the waiters past their deadline, drops answered ids from the queue heads, re-arms for the next. */
  private expire(): void {
    this.timer = undefined
    this.timerAt = Number.POSITIVE_INFINITY
    const now = performance.now()
    let next = Number.POSITIVE_INFINITY
    for (const [ms, q] of this.deadlines) {
      while (q.head < q.ids.length) {
        const w = q.ids[q.head]!
        const waiter = this.waiters.get(w)
        if (waiter !== undefined && waiter.deadline > now) {
          next = Math.min(next, waiter.deadline)
          break
        }
        q.head++
        if (waiter !== undefined) {
          this.waiters.delete(w)
          this.deliver(waiter, new FrontError("Timeout", `no answer from ${waiter.target} within ${waiter.timeoutMs} ms; it may still run once: retry with the same idempotency key to learn its result`))
        }
      }
      this.compact(ms, q)
    }
    if (next !== Number.POSITIVE_INFINITY) this.arm(next)
  }

  /** A front's callback runs inside the engine's commit: its failure must not reach the engine. */
  private deliver(waiter: Waiter, outcome: FrontAnswer | FrontError): void {
    try {
      waiter.settle(outcome)
    } catch (err) {
      console.error(`eddy: delivering an answer failed: ${err instanceof Error ? err.message : String(err)}`)
    }
  }

  /** Admits a request whose answer goes to `address` (a remote caller); throws FrontError if refused. */
  submitFor(req: FrontRequest, address: string): void {
    this.admit(req, address)
  }

  private admit(req: FrontRequest, w: string): void {
    if (this.closed !== undefined) throw new FrontError("Unavailable", this.closed)
    if (typeof req.target !== "string") throw new FrontError("BadRequest", "target must be a string 'type/id'")
    const slash = req.target.indexOf("/")
    if (slash <= 0) throw new FrontError("InvalidPayload", `target '${req.target}' is not of the form type/id`)
    const inbox = this.byType.get(req.target.slice(0, slash))
    if (inbox === undefined) this.endpointOf(req.target.slice(0, slash))
    if (req.key !== undefined && (typeof req.key !== "string" || req.key.length === 0 || req.key.length > 256)) {
      throw new FrontError("BadRequest", "the idempotency key must be a non-empty string of at most 256 characters")
    }
    const session = req.session
    if (session !== undefined) {
      const problem = sessionCallProblem(session.id, session.seq, session.ack)
      if (problem !== undefined) throw new FrontError("BadRequest", problem)
      if (req.key !== undefined) throw new FrontError("BadRequest", "a call has an idempotency key or a session, not both")
    }
    try {
      inbox!.endpoint.check(req.target, req.message)
    } catch (err) {
      if (err instanceof EndpointError) throw new FrontError(err.tag, err.message)
      throw err
    }
    if (this.queued >= (this.options.maxQueued ?? 100_000)) throw new FrontError("Busy", `${this.queued} requests are waiting for an epoch; retry later with the same idempotency key`)
    if (inbox!.splits.length === 0) throw new FrontError("Unavailable", "this process hosts no partition that takes requests")
    const id = session !== undefined ? `${session.id}:${session.seq}` : (req.key ?? randomUUID())
    // How long the answer must stay for retries: the system's retention for a caller's key, else only while the
    // client library that made the key up (or numbered the call) can still retry (an app at thousands of calls a
    // second would otherwise hold a day of answers in memory).
    const whileRetried = keptWhileRetried(req.timeoutMs ?? this.options.timeoutMs ?? 30_000)
    const keep = session !== undefined ? whileRetried : req.key === undefined ? 0 : req.auto === true ? whileRetried : undefined
    // The split in the key group of the target's state (where the request's idempotency entry lives too), if hosted
    // here: the request is served in the step that takes it, with no hop.
    const kg = keyGroupOf(canonicalKey(inbox!.endpoint.view.key(req.target) ?? req.target), this.plan.keyGroups)
    const split = inbox!.byKg.get(kg) ?? inbox!.splits[kg % inbox!.splits.length]!
    const queue = this.queues.get(split)!
    queue.push(
      session !== undefined
        ? { id, to: req.target, m: req.message, ask: req.ask, w, keep: keep!, s: session.id, q: session.seq, a: session.ack }
        : keep === undefined
          ? { id, to: req.target, m: req.message, ask: req.ask, w }
          : { id, to: req.target, m: req.message, ask: req.ask, w, keep },
    )
    this.admitted++
    if (this.queued++ === 0) this.wake?.()
  }

  // ---- RequestChannel (the engine's side) ----

  take(split: number, max: number): ReadonlyArray<ReadonlyArray<unknown>> {
    const queue = this.queues.get(split)
    if (queue === undefined || queue.length === 0 || max <= 0) return []
    const taken = queue.splice(0, max)
    this.queued -= taken.length
    return taken.map((r) => [r])
  }

  waiting(splits: ReadonlyArray<number>): boolean {
    if (this.queued === 0) return false
    for (const s of splits) if ((this.queues.get(s)?.length ?? 0) > 0) return true
    return false
  }

  onArrival(wake: () => void): void {
    this.wake = wake
  }

  answer(e: number, records: ReadonlyArray<unknown>): void {
    for (const rec of records) {
      const a = rec as EndpointReply
      if (!a.w.startsWith(this.prefix)) {
        this.remote?.(a.w, a, e)
        continue
      }
      const waiter = this.waiters.get(a.w)
      if (waiter === undefined) continue // timed out, or answered already (answers may travel twice)
      this.waiters.delete(a.w)
      this.answered++
      this.deliver(waiter, a.x !== undefined ? new FrontError(a.x.tag, a.x.message) : { reply: a.r, epoch: e })
    }
    // Answers come roughly in admission order: drop answered ids from the queue heads now, or they would wait for
    // their deadlines (30 s of traffic) to leave.
    for (const [ms, q] of this.deadlines) {
      while (q.head < q.ids.length && !this.waiters.has(q.ids[q.head]!)) q.head++
      this.compact(ms, q)
    }
  }

  private compact(ms: number, q: { ids: string[]; head: number }): void {
    if (q.head === q.ids.length) this.deadlines.delete(ms)
    else if (q.head > 1024 && q.head * 2 > q.ids.length) {
      q.ids = q.ids.slice(q.head)
      q.head = 0
    }
  }

  /** The run ended: every caller still waiting hears why. */
  close(reason: string): void {
    this.closed = reason
    if (this.timer !== undefined) clearTimeout(this.timer)
    this.timer = undefined
    this.deadlines.clear()
    const waiting = [...this.waiters.values()]
    this.waiters.clear()
    for (const waiter of waiting) this.deliver(waiter, new FrontError("Unavailable", reason))
  }
}

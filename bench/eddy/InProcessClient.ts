// An EddyClient that drives an app in the same process: the stand-in for Client.http/Client.nats until the
// runtime's request endpoint exists. Requests enter through an async source (all requests queued when the engine
// reads its ingress become one atom of the next epoch), asks go through the actor system's portal, and each answer
// is an egress record of a console sink whose `print` resolves the caller: so, as with the real client, an answer is
// released only after the epoch holding the effect committed (fsync'd when the run has a data directory).
import type { ActorSystem } from "eddy/actors"
import { Continuation, Portal } from "eddy/portals"
import { Eddy, type RunOptions, type RunningApp } from "eddy/runtime"
import { App, Sink, Workflow, type SourceSpec } from "eddy/workflows"
import { type Answer, type EddyClient, type RequestOptions, type StateOptions, type Target } from "../../client/Client.ts"
import { Timeout, UnknownActorType } from "../../client/errors.ts"

type Request = { readonly rid: number; readonly ask: boolean; readonly type: string; readonly id: string; readonly m: unknown }
type Reply = { readonly rid: number; readonly reply: unknown }

const parseTarget = (t: Target): { type: string; id: string } => {
  if (typeof t !== "string") return { type: t.type, id: t.id }
  const slash = t.indexOf("/")
  if (slash <= 0) throw new UnknownActorType(`target '${t}' is not 'type/id'`)
  return { type: t.slice(0, slash), id: t.slice(slash + 1) }
}

/** A queue the engine reads as an async source: each read takes everything queued as one atom (up to `maxAtom`). */
class RequestQueue implements AsyncIterable<ReadonlyArray<Request>> {
  private queued: Request[] = []
  private wake: (() => void) | undefined
  private closed = false

  constructor(private readonly maxAtom: number) {}

  push(r: Request): void {
    this.queued.push(r)
    const w = this.wake
    this.wake = undefined
    w?.()
  }

  close(): void {
    this.closed = true
    this.wake?.()
  }

  async *[Symbol.asyncIterator](): AsyncIterator<ReadonlyArray<Request>> {
    while (true) {
      if (this.queued.length === 0) {
        if (this.closed) return
        await new Promise<void>((resolve) => (this.wake = resolve))
        continue
      }
      const atom = this.queued.length <= this.maxAtom ? this.queued : this.queued.slice(0, this.maxAtom)
      this.queued = this.queued.length <= this.maxAtom ? [] : this.queued.slice(this.maxAtom)
      yield atom
    }
  }
}

export interface InProcessOptions extends Omit<RunOptions, "print" | "stopWhenIdle"> {
  /** Requests per atom at most (default 4096). */
  readonly maxAtom?: number
}

export class InProcessClient implements EddyClient {
  private readonly pending = new Map<number, { resolve: (a: Answer<unknown>) => void; reject: (e: Error) => void; timer: NodeJS.Timeout }>()
  private readonly queue: RequestQueue
  private readonly types: ReadonlySet<string>
  private nextRid = 0
  private committed = 0
  readonly app: RunningApp

  constructor(
    private readonly system: ActorSystem,
    options: InProcessOptions = {},
  ) {
    this.queue = new RequestQueue(options.maxAtom ?? 4096)
    this.types = new Set(system.options.behaviors.map((b) => b.name))
    const queue = this.queue
    const source: SourceSpec<Request> = { kind: "source", name: "bench.requests", splits: 1, open: () => queue }
    const answered = Continuation.define<unknown, number, Reply>("bench.answered", (ctx, reply, rid) => ctx.emit({ rid, reply }))
    const client = Workflow.create("bench-client", (wf) => {
      const requests = wf.source(source)
      system.input(requests.filter((r) => !r.ask, { name: "tells" }).map((r) => system.tell({ type: r.type, id: r.id }, r.m as never), { name: "tell" }))
      const acks = requests.filter((r) => !r.ask, { name: "tell-acks" }).map((r): Reply => ({ rid: r.rid, reply: null }), { name: "ack" })
      requests
        .filter((r) => r.ask, { name: "asks" })
        .via(Portal.asker<Request, Reply>((ctx, r) => ctx.ask(system.portal, system.askRequest({ type: r.type, id: r.id }, r.m as never)).then(answered, r.rid), { continuations: [answered], name: "asker" }))
        .merge(acks)
        .sink(Sink.console<Reply>((r) => JSON.stringify(r), "bench.replies"))
    })
    const app = App.define({ name: `${system.name}-bench`, workflows: [client, system.workflow], views: [system.view] })
    this.app = Eddy.start(app, {
      ...options,
      stopWhenIdle: false,
      onCommit: (e, votes, timing) => {
        this.committed = e
        options.onCommit?.(e, votes, timing)
      },
      print: (line) => this.answer(JSON.parse(line) as Reply),
    })
    this.app.done.catch((err: unknown) => {
      for (const p of this.pending.values()) p.reject(err instanceof Error ? err : new Error(String(err)))
      this.pending.clear()
    })
  }

  private answer(r: Reply): void {
    const p = this.pending.get(r.rid)
    if (p === undefined) return
    this.pending.delete(r.rid)
    clearTimeout(p.timer)
    p.resolve({ reply: r.reply, epoch: this.committed })
  }

  private request(target: Target, message: unknown, ask: boolean, options?: RequestOptions): Promise<Answer<unknown>> {
    const { type, id } = parseTarget(target)
    if (!this.types.has(type)) return Promise.reject(new UnknownActorType(`no actor type '${type}' (known: ${[...this.types].join(", ")})`))
    const rid = this.nextRid++
    return new Promise((resolve, reject) => {
      const ms = options?.timeoutMs ?? 30_000
      const timer = setTimeout(() => {
        this.pending.delete(rid)
        reject(new Timeout(`no answer from ${type}/${id} within ${ms} ms`))
      }, ms)
      this.pending.set(rid, { resolve, reject, timer })
      this.queue.push({ rid, ask, type, id, m: message })
    })
  }

  ask<R = unknown>(target: Target, message: unknown, options?: RequestOptions): Promise<Answer<R>> {
    return this.request(target, message, true, options) as Promise<Answer<R>>
  }

  async tell(target: Target, message: unknown, options?: RequestOptions): Promise<{ readonly epoch: number }> {
    const a = await this.request(target, message, false, options)
    return { epoch: a.epoch }
  }

  async state<S = unknown>(target: Target, _options?: StateOptions): Promise<S | undefined> {
    const { type, id } = parseTarget(target)
    return (await this.system.query(this.app, { type, id })) as S | undefined
  }

  async list(type: string): Promise<ReadonlyArray<string>> {
    const keys = await this.app.keys(this.system.task)
    const ids: string[] = []
    for (const k of keys) {
      const [t, id] = k as readonly [string, string]
      if (t === type && (await this.state({ type: t, id })) !== undefined) ids.push(id)
    }
    return ids
  }

  async close(): Promise<void> {
    this.queue.close()
    await this.app.stop()
  }
}

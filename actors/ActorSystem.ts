import { Continuation } from "../portals/Continuation.ts"
import { Portal } from "../portals/Portal.ts"
import type { PortalContext } from "../portals/PortalContext.ts"
import type { StateView } from "../workflows/App.ts"
import type { EntryState } from "../workflows/TaskContext.ts"
import type { Key } from "../workflows/Key.ts"
import { findUnserializable } from "../workflows/serializable.ts"
import { EndpointError, keptWhileRetried, sessionCallProblem, type EndpointFailure, type EndpointReply, type EndpointRequest, type RequestEndpoint } from "../workflows/Endpoint.ts"
import { Sink, type SinkSpec } from "../workflows/Sink.ts"
import { Source } from "../workflows/Source.ts"
import type { KafkaRecord } from "../workflows/kafka.ts"
import { toJson } from "../workflows/json.ts"
import { Workflow, type Stream } from "../workflows/Workflow.ts"
import type { ActorContext, ActorFuture } from "./ActorContext.ts"
import { checkUserId, isSpawnedId, refString, type ActorRef } from "./ActorRef.ts"
import { same, stopped, type AnyBehavior, type Become, type Behavior, type Next } from "./Behavior.ts"
import type { ActorContinuation } from "./ActorContinuation.ts"

/** What the actors task keeps per actor: the behavior's name (never a closure), its state, its spawn counter. */
export interface ActorRecord {
  readonly b: string
  readonly s: unknown
  readonly n: number
}

/** The behavior name of a stopped virtual actor's record: it keeps the spawn counter only. */
const TOMBSTONE = ""

/** Messages travelling around the system's loop. Plain data: they are logged and may cross processes. */
export type Envelope =
  | { readonly t: "tell"; readonly to: ActorRef<never>; readonly m: unknown }
  | { readonly t: "create"; readonly to: ActorRef<never>; readonly init: boolean; readonly s: unknown }

/** A request through the system's portal: the reply is whatever the actor passes to `ctx.reply`. */
export interface ActorAsk {
  readonly to: ActorRef<never>
  readonly m: unknown
}

export interface DeadLetter {
  readonly to: string
  readonly message: unknown
  readonly reason: string
}

/** The reply an ask gets when its target cannot take it (stopped spawned actor, unknown type). */
export interface DeadLetterReply {
  readonly deadLetter: string
}

type Out = Envelope | { readonly t: "dead"; readonly d: DeadLetter } | { readonly t: "out"; readonly v: unknown } | { readonly t: "answer"; readonly a: EndpointReply }

/** What the actors task takes: envelopes (`to` is a ref) and client requests (`to` is `type/id`). */
type In = Envelope | EndpointRequest

const isRequest = (x: In): x is EndpointRequest => typeof x.to === "string"

/**
 * A client request's idempotency entry: pending (with every address waiting for the answer, and how long the answer
 * is to be kept: undefined for the retention window) or done (the reply, or the failure, and when the entry expires).
 * It is an entry of the target actor (`ctx.entries`, sub-key: the request id), so it commits in the same step and
 * epoch record as the request's effect: a retry after a crash finds either both or neither. A tuple: there is one
 * per request in every epoch record and snapshot, and a tuple encodes in a third of an object's bytes.
 */
type RequestEntry =
  | readonly [s: typeof PENDING, waiters: ReadonlyArray<string>, keep: number | undefined]
  | readonly [s: typeof DONE, reply: unknown, expiresAt: number]
  | readonly [s: typeof FAILED, failure: EndpointFailure, expiresAt: number]
type DoneEntry = Exclude<RequestEntry, readonly [typeof PENDING, ...unknown[]]>
const PENDING = 0
const DONE = 1
const FAILED = 2
const SESSION = 3

/**
 * The calls of one client session to the actors of one key group (a group entry, sub-key `~<session>`), in place of an
 * entry per call, or per actor: the calls not yet acknowledged, and the floor below which every call was acknowledged
 * (a copy of one arriving late is refused, not run again). A call acknowledges the calls before it, so the entry
 * holds about as many calls as the client has in flight to the group, however many it makes and to however many
 * actors: memory, epoch records and snapshots stay small (a client calling 100k actors leaves one entry per group, not
 * 100k). A retry goes to the same actor, so to the same group. The entry expires (whole, at a whole second) a
 * retention after its last call, unless a call in it is pending. Flat, one array: after the header, a triple per call
 * (number, status, waiters | reply | failure).
 */
type SessionEntry = readonly [s: typeof SESSION, floor: number, expiresAt: number, ...calls: unknown[]]
const CALLS = 3

const sessionSub = (session: string): string => `~${session}`

/** What the continuation answering a request needs: the entry is its sub-key, the first waiter and the retention. */
interface Answering {
  readonly id: string
  readonly w: string
  readonly k?: number
  /** A session's call: its session and number (the entry is the session's). */
  readonly s?: string
  readonly q?: number
}

export interface ActorSystemOptions {
  /** Name of the system's workflow (its state lives under `<name>/actors`). */
  readonly name: string
  readonly behaviors: ReadonlyArray<AnyBehavior>
  /** Where `ctx.output` values go (default: memory sink `<name>.output`). */
  readonly output?: SinkSpec<unknown>
  /** Where dead letters go (default: memory sink `<name>.dead-letters`). */
  readonly deadLetters?: SinkSpec<DeadLetter>
  /**
   * How long a client request's answer is kept for retries with its idempotency key, in epoch time (default 24 h).
   * A retry after that runs the request again.
   */
  readonly requestRetentionMs?: number
  /**
   * Requests from a Kafka topic too (for high-volume producers, `Client.kafka`), answered on another topic, exactly
   * once (Kafka egress). A request is a JSON value `{ "target": "type/id", "message": ..., "tell"?: true }` with a
   * `key` (its answer kept for `requestRetentionMs`), or a client session's `session`, `seq`, `ack`, `timeoutMs`, or
   * neither (identity: topic/partition/offset; a record is read once, its answer is not kept; a correlation id `ref`
   * labels its answer). The record's Kafka key only partitions. An answer is JSON `{ "key", "reply", "epoch" }` or `{ "key", "error": { "tag", "message" },
   * "epoch" }` with the request's identity as Kafka key; a request the app refuses (unknown type, invalid payload)
   * is answered with the error. A record that is no request goes to `deadLetterTopic` (or is a reported task failure).
   */
  readonly kafka?: {
    readonly requests: string
    readonly replies: string
    readonly partitions?: number
    readonly deadLetterTopic?: string
  }
}

/** An answer on the Kafka replies topic (JSON), with the request's key as its Kafka key. */
export interface KafkaAnswer {
  /** The request's correlation id `ref`, else its identity: its `key`, else `<session>:<seq>`, else `<topic>/<partition>/<offset>`. */
  readonly key: string
  readonly reply?: unknown
  readonly error?: EndpointFailure
  /** The epoch whose commit made the request's effect durable (read-your-writes: a state read's `minEpoch`). */
  readonly epoch: number
}

/** An answer before its epoch is known: it is written into the record when published, after commit. */
type KafkaAnswerValue = Omit<KafkaAnswer, "epoch">

/**
 * Where answers to Kafka requests go (the `w` of their request records): the replies topic, under the request's
 * identity, or under its correlation id (`kafka:<ref>`), as a NATS request's answer goes to its reply subject.
 */
const KAFKA_ADDRESS = "kafka"
const KAFKA_REF = "kafka:"
const isKafkaAddress = (w: string): boolean => w === KAFKA_ADDRESS || w.startsWith(KAFKA_REF)

/** What a request record becomes: a request, or the error answer of one the app refuses (nothing runs). */
type KafkaIncoming = EndpointRequest | KafkaAnswerValue

const isRefused = (x: KafkaIncoming): x is KafkaAnswerValue => (x as KafkaAnswerValue).error !== undefined

/** An optional text field of a request (`key`, `ref`): absent, or 1-256 characters. */
const textProblem = (name: string, v: unknown): string | undefined =>
  v === undefined || (typeof v === "string" && v.length > 0 && v.length <= 256) ? undefined : `'${name}' must be a non-empty string of at most 256 characters`

const kafkaRequest =
  (check: (to: string, message: unknown) => void) =>
  (r: KafkaRecord): KafkaIncoming => {
    if (r.value === null) throw new Error("a request record needs a value")
    const body = JSON.parse(new TextDecoder().decode(r.value)) as { target?: unknown; message?: unknown; key?: unknown; ref?: unknown; tell?: unknown; session?: unknown; seq?: unknown; ack?: unknown; timeoutMs?: unknown }
    if (typeof body !== "object" || body === null || typeof body.target !== "string") throw new Error("a request is a JSON object with a string 'target' (type/id)")
    // A record that is no request at all goes to the dead letters; a request the app refuses is answered, as over
    // HTTP and NATS: its producer waits for an answer under its key.
    const problem = textProblem("key", body.key) ?? textProblem("ref", body.ref) ?? (body.session === undefined ? undefined : sessionCallProblem(body.session, body.seq, body.ack))
    if (problem !== undefined) throw new Error(problem)
    if ((body.key === undefined ? 0 : 1) + (body.session === undefined ? 0 : 1) + (body.ref === undefined ? 0 : 1) > 1) throw new Error("a request has at most one of 'key', 'session' and 'ref'")
    if (body.timeoutMs !== undefined && !(Number.isSafeInteger(body.timeoutMs) && (body.timeoutMs as number) > 0)) throw new Error("'timeoutMs' must be a positive integer")
    const session = body.session as string | undefined
    const ref = body.ref as string | undefined
    // The record's Kafka key is for partitioning (producers key by entity, to keep its requests in order), not an
    // identity. Without a key or session of its own a request is its record: read again only by a rollback, which
    // takes its entry back too, so no entry need outlive its answer. A correlation id only labels the answer.
    const id = typeof body.key === "string" ? body.key : session !== undefined ? `${session}:${body.seq as number}` : `${r.topic}/${r.partition}/${r.offset}`
    try {
      check(body.target, body.message)
    } catch (err) {
      if (err instanceof EndpointError) return { key: ref ?? id, error: { tag: err.tag, message: err.message } }
      throw err
    }
    const request = { id, to: body.target, m: body.message, ask: body.tell !== true, w: ref === undefined ? KAFKA_ADDRESS : KAFKA_REF + ref }
    if (typeof body.key === "string") return request
    if (session === undefined) return { ...request, keep: 0 }
    const keep = keptWhileRetried((body.timeoutMs as number | undefined) ?? 30_000)
    return { ...request, keep, s: session, q: body.seq as number, a: body.ack as number }
  }

type RunBehavior = Behavior<unknown, unknown>

/**
 * The actor model as a library on ONE cyclic workflow: envelopes are keyed by actor address and handled by a
 * single stateful task (a portal replier, so workflows can also ask actors); whatever actors send goes around the
 * loop to the next round. Nothing here is known to the runtime.
 */
export class ActorSystem {
  readonly portal: Portal<ActorAsk, unknown>
  private readonly behaviors = new Map<string, AnyBehavior>()
  private readonly inputs: string[] = []
  private readonly continuations = new Map<string, Continuation<unknown, unknown, unknown, unknown>>()
  private built: Workflow | undefined

  constructor(readonly options: ActorSystemOptions) {
    for (const b of options.behaviors as unknown as ReadonlyArray<AnyBehavior>) {
      if (this.behaviors.has(b.name)) throw new Error(`actor system '${options.name}' has two behaviors named '${b.name}'`)
      this.behaviors.set(b.name, b)
    }
    this.portal = Portal.define<ActorAsk, unknown>(`${options.name}.ask`, { key: (a) => [a.to.type, a.to.id] })
  }

  get name(): string {
    return this.options.name
  }

  /** The task holding every actor's state. */
  get task(): string {
    return `${this.options.name}/actors`
  }

  /** A ref to the actor of `behavior` with a user-chosen id (created on first message: a virtual actor). */
  ref<M, S>(behavior: Behavior<M, S>, id: string): ActorRef<M> {
    return { type: behavior.name, id: checkUserId(id) }
  }

  /** An envelope a workflow emits (into a stream given to `input`) to send `message` to `to`. */
  tell<M>(to: ActorRef<M>, message: NoInfer<M>): Envelope {
    checkSendable("tell to", to, message)
    return { t: "tell", to, m: message }
  }

  /** An envelope that creates `to` with an explicit initial state (spawning from a workflow). */
  create<M, S>(to: ActorRef<M>, _behavior: Behavior<M, S>, initial: S): Envelope {
    checkSendable("create", to, initial)
    return { t: "create", to, init: true, s: initial }
  }

  /** A request for `ctx.ask(system.portal, ...)` from a workflow's asker task. */
  askRequest<M>(to: ActorRef<M>, message: NoInfer<M>): ActorAsk {
    checkSendable("ask of", to, message)
    return { to, m: message }
  }

  /** Connects a workflow's stream of envelopes to the system. Call before the system's workflow is built. */
  input(stream: Stream<Envelope>): void {
    if (this.built !== undefined) throw new Error(`actor system '${this.name}': connect inputs before using system.workflow`)
    const name = `${this.options.name}.in.${stream.workflow.name}.${this.inputs.length}`
    stream.publish(name)
    this.inputs.push(name)
  }

  /** The system's cyclic workflow (built on first use). */
  get workflow(): Workflow {
    this.built ??= this.build()
    return this.built
  }

  /** How `eddy state <app> <type>/<id>` and queries find an actor. */
  get view(): StateView {
    return {
      task: this.task,
      key: (spec) => {
        const slash = spec.indexOf("/")
        if (slash <= 0) return undefined
        const type = spec.slice(0, slash)
        return this.behaviors.has(type) ? [type, spec.slice(slash + 1)] : undefined
      },
      show: (state) => ((state as ActorRecord).b === TOMBSTONE ? undefined : (state as ActorRecord).s),
      describe: (key) => {
        const [type, id] = key as readonly [string, string]
        return { spec: `${type}/${id}`, group: type }
      },
    }
  }

  /** The committed state of `ref` from a running app (anything with `query(task, key)`), or undefined. */
  async query<M>(app: { query(task: string, key: Key): Promise<unknown> }, ref: ActorRef<M>): Promise<unknown> {
    const rec = (await app.query(this.task, [ref.type, ref.id])) as ActorRecord | undefined
    return rec?.b === TOMBSTONE ? undefined : rec?.s
  }

  private behavior(type: string): RunBehavior | undefined {
    return this.behaviors.get(type)
  }

  private build(): Workflow {
    for (const b of this.behaviors.values()) {
      for (const k of b.continuations as unknown as ReadonlyArray<ActorContinuation<unknown, unknown>>) this.continuations.set(`${b.name}.${k.name}`, this.wrap(b, k))
    }
    const retention = this.options.requestRetentionMs ?? 24 * 60 * 60 * 1000
    const answered = Continuation.define<unknown, Answering, Out, ActorRecord>(`${this.name}.answered`, (ctx, reply, data) => {
      const x: EndpointFailure | undefined = Portal.isRejection(reply)
        ? { tag: "Rejected", message: reply.message }
        : isDeadLetterReply(reply)
          ? { tag: "Rejected", message: `dead letter: ${reply.deadLetter}` }
          : undefined
      if (data.s !== undefined) return this.sessionAnswered(ctx, data, x === undefined ? [DONE, reply, 0] : [FAILED, x, 0])
      // A request nobody can send again has no entry (see `request`): its one waiter gets the answer.
      if (data.k === 0) return ctx.emit({ t: "answer", a: answer(data.id, data.w, x === undefined ? [DONE, reply, 0] : [FAILED, x, 0]) })
      const entries = ctx.entries as EntryState<RequestEntry>
      const entry = entries.get(data.id)
      if (entry !== undefined && entry[0] !== PENDING) throw new Error(`assertion: answer for request '${data.id}', which is not pending`)
      const expires = ctx.now() + (data.k ?? retention)
      const done: DoneEntry = x === undefined ? [DONE, reply, expires] : [FAILED, x, expires]
      entries.set(data.id, done)
      // No entry: the step that took the request threw, and its pending entry went with it; its one waiter hears why.
      for (const w of entry?.[1] ?? [data.w]) ctx.emit({ t: "answer", a: answer(data.id, w, done) })
    })
    const continuations = [answered as unknown as Continuation<unknown, unknown, unknown, unknown>, ...this.continuations.values()]
    const onRecord = (ctx: PortalContext<Out, ActorRecord>, x: In) => (isRequest(x) ? this.request(ctx, x, answered, retention) : this.handle(ctx, x, false))
    const onRequest = (ctx: PortalContext<Out, ActorRecord, unknown>, ask: ActorAsk) => this.handle(ctx as PortalContext<Out, ActorRecord>, { t: "tell", to: ask.to, m: ask.m }, true)
    const restore = (state: unknown): ActorRecord => {
      const rec = state as ActorRecord
      if (rec.b !== TOMBSTONE && !this.behaviors.has(rec.b)) {
        throw new Error(`an actor has behavior '${rec.b}', which actor system '${this.name}' does not define (known: ${[...this.behaviors.keys()].join(", ")})`)
      }
      return rec
    }
    return Workflow.create(this.options.name, (wf) => {
      const loop = wf.cycle<Envelope>({ name: "mailbox" })
      const inbox = wf.source(Source.inbox<EndpointRequest>(`${this.name}.requests`), { name: "requests" })
      const kafka = this.options.kafka
      // Once: the endpoint getter builds a fresh object (and view) per call.
      const { check } = this.endpoint
      const fromKafka =
        kafka === undefined
          ? undefined
          : wf.source(
              Source.kafka<KafkaIncoming>({
                topic: kafka.requests,
                decode: kafkaRequest(check),
                ...(kafka.partitions === undefined ? {} : { partitions: kafka.partitions }),
                ...(kafka.deadLetterTopic === undefined ? {} : { deadLetterTopic: kafka.deadLetterTopic }),
                name: `${this.name}.kafka-requests`,
              }),
            )
      const incoming = fromKafka === undefined ? inbox : inbox.merge(fromKafka.filter((x): x is EndpointRequest => !isRefused(x), { name: "kafka-admitted" }))
      // Client requests go to their target's key group (the front queues each in that group's split, so the route
      // runs them in the same step) and are served there: idempotency entry, handler and answer in one step.
      const all = loop.stream.merge(incoming as unknown as Stream<Envelope>, ...this.inputs.map((name) => wf.subscribe<Envelope>(name))) as unknown as Stream<In>
      const out = all
        .keyBy((x) => (isRequest(x) ? targetKey(x.to) : [x.to.type, x.to.id]), { name: "route" })
        .via<Out>({
          ...Portal.replier(this.portal, onRequest, {
            onRecord,
            continuations,
            name: "actors",
            // A done entry answers retries for the retention window, then goes (pending ones stay until answered).
            entries: { expire: entryExpiry },
          }),
          restore,
        })
      loop.feed(out.filter((o): o is Envelope => o.t === "tell" || o.t === "create", { name: "sent" }))
      out
        .filter((o): o is { t: "dead"; d: DeadLetter } => o.t === "dead", { name: "dead" })
        .map((o) => o.d)
        .sink(this.options.deadLetters ?? Sink.memory(`${this.options.name}.dead-letters`), { name: "dead-letters" })
      out
        .filter((o): o is { t: "out"; v: unknown } => o.t === "out", { name: "outputs" })
        .map((o) => o.v)
        .sink(this.options.output ?? Sink.memory(`${this.options.name}.output`), { name: "output" })
      // Answers are handed to whoever waits by the runtime, after commit; the sink itself keeps nothing.
      const answers = out.filter((o): o is { t: "answer"; a: EndpointReply } => o.t === "answer", { name: "answers" }).map((o) => o.a)
      answers.filter((a) => !isKafkaAddress(a.w), { name: "front-answers" }).sink(Sink.discard(this.replySink), { name: "replies" })
      if (kafka !== undefined && fromKafka !== undefined) {
        answers
          .filter((a) => isKafkaAddress(a.w), { name: "kafka-answers" })
          .map((a): KafkaAnswerValue => {
            const key = a.w === KAFKA_ADDRESS ? a.id : a.w.slice(KAFKA_REF.length)
            return a.x !== undefined ? { key, error: a.x } : { key, reply: a.r }
          })
          .merge(fromKafka.filter(isRefused, { name: "kafka-refused" }))
          .sink(
            Sink.kafka<KafkaAnswerValue>({
              topic: kafka.replies,
              key: (a) => a.key,
              encode: (a, epoch): string => toJson(a.error !== undefined ? { key: a.key, error: a.error, epoch } : { key: a.key, reply: a.reply, epoch }),
            }),
            { name: "kafka-replies" },
          )
      }
      wf.serve(this.endpoint)
    })
  }

  private get replySink(): string {
    return `${this.name}.replies`
  }

  /** How clients reach this system (served by the runtime over HTTP or NATS). */
  get endpoint(): RequestEndpoint {
    return {
      inbox: `${this.name}.requests`,
      replies: this.replySink,
      types: [...this.behaviors.keys()],
      view: this.view,
      check: (to, message) => {
        const slash = typeof to === "string" ? to.indexOf("/") : -1
        if (slash <= 0 || slash === to.length - 1) throw new EndpointError("InvalidPayload", `target '${String(to)}' is not of the form type/id`)
        const type = to.slice(0, slash)
        if (!this.behaviors.has(type)) {
          throw new EndpointError("UnknownActorType", `actor system '${this.name}' has no actor type '${type}' (it has: ${[...this.behaviors.keys()].join(", ")})`)
        }
        const bad = findUnserializable(message)
        if (bad) throw new EndpointError("InvalidPayload", `message to ${to}: ${bad.message}`)
      },
    }
  }

  private dead(ctx: PortalContext<Out, ActorRecord>, to: ActorRef<never>, message: unknown, reason: string, isAsk: boolean): void {
    ctx.emit({ t: "dead", d: { to: refString(to), message, reason } })
    if (isAsk) (ctx as PortalContext<Out, ActorRecord, unknown>).reply({ deadLetter: reason } satisfies DeadLetterReply)
  }

  /**
   * A client request for the actor the record is keyed by: a retry is answered from (or waits on) its entry; a new
   * ask runs the handler now, answering into `answered` (in this step if the handler replies at once); a new tell
   * goes around the loop like any send and is answered at commit.
   */
  private request(ctx: PortalContext<Out, ActorRecord>, req: EndpointRequest, answered: Continuation<unknown, Answering, Out, ActorRecord>, retention: number): void {
    if (req.s !== undefined) return this.sessionRequest(ctx, req, req.s, answered, retention)
    // Kept for no time (an identity nobody can send again: a Kafka record's position, a key made up for an in-process
    // call): no duplicate can come while it runs, and a rollback that reads it again takes back all it did. So no
    // entry: it would be written, then deleted in the next epoch, for nothing.
    const kept = req.keep !== 0
    const entries = ctx.entries as EntryState<RequestEntry>
    const entry = kept ? entries.get(req.id) : undefined
    if (entry !== undefined) {
      if (entry[0] !== PENDING) return ctx.emit({ t: "answer", a: answer(req.id, req.w, entry) })
      if (!entry[1].includes(req.w)) entries.set(req.id, [PENDING, [...entry[1], req.w], entry[2]])
      return
    }
    const to = parseTarget(req.to)
    if (!req.ask) {
      ctx.emit({ t: "tell", to, m: req.m })
      if (kept) entries.set(req.id, [DONE, undefined, ctx.now() + (req.keep ?? retention)])
      return ctx.emit({ t: "answer", a: { id: req.id, w: req.w } })
    }
    if (kept) entries.set(req.id, [PENDING, [req.w], req.keep])
    ctx.answerInto(answered as unknown as Continuation<unknown, Answering, never, never>, req.keep === undefined ? { id: req.id, w: req.w } : { id: req.id, w: req.w, k: req.keep })
    this.handle(ctx, { t: "tell", to, m: req.m }, true)
  }

  /**
   * A session's call (EndpointRequest.s): as `request`, with the call's entry inside the session's entry for the
   * actor's key group. The call's acknowledgement drops the calls below it; a call below the floor was acknowledged,
   * so this is a copy that arrived late (its caller has its answer): refused, not run.
   */
  private sessionRequest(ctx: PortalContext<Out, ActorRecord>, req: EndpointRequest, session: string, answered: Continuation<unknown, Answering, Out, ActorRecord>, retention: number): void {
    const entries = ctx.groupEntries as EntryState<SessionEntry>
    const sub = sessionSub(session)
    const seq = req.q!
    const cur = entries.get(sub)
    const floor = cur?.[1] ?? 0
    if (seq < floor) {
      return ctx.emit({ t: "answer", a: { id: req.id, w: req.w, x: { tag: "Rejected", message: `call ${seq} of client session ${session} was acknowledged by the client before this copy of it arrived: not run again` } } })
    }
    const at = cur === undefined ? -1 : callIndex(cur, seq)
    if (at >= 0) {
      const status = cur![at + 1] as number
      if (status !== PENDING) return ctx.emit({ t: "answer", a: answer(req.id, req.w, [status, cur![at + 2], 0] as DoneEntry) })
      const waiters = cur![at + 2] as ReadonlyArray<string>
      if (!waiters.includes(req.w)) entries.set(sub, cur!.map((v, j) => (j === at + 2 ? [...waiters, req.w] : v)) as unknown as SessionEntry)
      return
    }
    // A new call: keep the calls at or above the acknowledgement, add this one.
    const ack = Math.max(floor, req.a ?? 0)
    const next: unknown[] = [SESSION, ack, wholeSecond(ctx.now() + (req.keep ?? retention))]
    if (cur !== undefined) for (let j = CALLS; j < cur.length; j += 3) if ((cur[j] as number) >= ack) next.push(cur[j], cur[j + 1], cur[j + 2])
    const to = parseTarget(req.to)
    if (!req.ask) {
      ctx.emit({ t: "tell", to, m: req.m })
      next.push(seq, DONE, undefined)
      entries.set(sub, next as unknown as SessionEntry)
      return ctx.emit({ t: "answer", a: { id: req.id, w: req.w } })
    }
    next.push(seq, PENDING, [req.w])
    entries.set(sub, next as unknown as SessionEntry)
    ctx.answerInto(answered as unknown as Continuation<unknown, Answering, never, never>, { id: req.id, w: req.w, s: session, q: seq })
    this.handle(ctx, { t: "tell", to, m: req.m }, true)
  }

  /** A session call's reply: its entry in the session's entry becomes the answer, for every caller waiting on it. */
  private sessionAnswered(ctx: PortalContext<Out, ActorRecord>, data: Answering, done: DoneEntry): void {
    const session = data.s!
    const seq = data.q!
    const entries = ctx.groupEntries as EntryState<SessionEntry>
    const sub = sessionSub(session)
    const cur = entries.get(sub)
    const at = cur === undefined ? -1 : callIndex(cur, seq)
    if (at >= 0 && cur![at + 1] !== PENDING) throw new Error(`assertion: answer for call ${seq} of session ${session}, which is not pending`)
    const waiters = at >= 0 ? (cur![at + 2] as ReadonlyArray<string>) : [data.w]
    if (at >= 0) entries.set(sub, cur!.map((v, j) => (j === at + 1 ? done[0] : j === at + 2 ? done[1] : v)) as unknown as SessionEntry)
    // Not in the entry: the step that took the call threw, and the call's entry went with it (its one waiter hears
    // why), or a later call acknowledged it while it ran (its caller gave up on it).
    for (const w of waiters) ctx.emit({ t: "answer", a: answer(data.id, w, done) })
  }

  /** One envelope for one actor: create it if needed, run its handler, store what it returns. */
  private handle(ctx: PortalContext<Out, ActorRecord>, env: Envelope, isAsk: boolean): void {
    const to = env.to
    let rec = ctx.state.get()
    // A stopped virtual actor that had spawned keeps only its spawn counter, so a reactivation never reuses ids.
    const spawned = rec !== undefined && rec.b === TOMBSTONE ? rec.n : 0
    if (rec !== undefined && rec.b === TOMBSTONE) rec = undefined
    if (env.t === "create") {
      if (rec !== undefined) return this.dead(ctx, to, env.s, "create: the actor already exists", false)
      const b = this.behavior(to.type)
      if (b === undefined) return this.dead(ctx, to, env.s, `unknown actor type '${to.type}'`, false)
      this.activate(ctx, b, to, env.init ? env.s : b.initial(to.id), spawned)
      return
    }
    if (rec === undefined) {
      if (isSpawnedId(to.id)) return this.dead(ctx, to, env.m, "no such actor (stopped, or never spawned)", isAsk)
      const b = this.behavior(to.type)
      if (b === undefined) return this.dead(ctx, to, env.m, `unknown actor type '${to.type}'`, isAsk)
      rec = this.activate(ctx, b, to, b.initial(to.id), spawned)
      if (rec === undefined) return this.dead(ctx, to, env.m, "the actor stopped in its setup", isAsk)
    }
    const b = this.behavior(rec.b)!
    const actx = new Context(ctx, to as ActorRef<unknown>, rec, isAsk, this)
    actx.apply(b.receive(actx, env.m, rec.s))
  }

  private activate(ctx: PortalContext<Out, ActorRecord>, b: AnyBehavior, to: ActorRef<never>, state: unknown, spawned: number): ActorRecord | undefined {
    const rec: ActorRecord = { b: b.name, s: state, n: spawned }
    const actx = new Context(ctx, to as ActorRef<unknown>, rec, false, this)
    return actx.apply(b.setup === undefined ? same : b.setup(actx, state))
  }

  /** An actor continuation as a portal continuation: it reloads the actor's record and stores what it returns. */
  private wrap(b: AnyBehavior, k: ActorContinuation<unknown, unknown>): Continuation<unknown, unknown, unknown, unknown> {
    return Continuation.define<unknown, { to: ActorRef<never>; d: unknown }, Out, ActorRecord>(`${b.name}.${k.name}`, (ctx, reply, data) => {
      const rec = ctx.state.get()
      if (rec === undefined) return this.dead(ctx, data.to, reply, `reply for continuation '${k.name}' arrived after the actor stopped`, false)
      const actx = new Context(ctx, data.to as ActorRef<unknown>, rec, false, this)
      actx.apply(k.run(actx, reply, data.d, rec.s))
    }) as Continuation<unknown, unknown, unknown, unknown>
  }

  /** @internal */
  behaviorOf(name: string): RunBehavior | undefined {
    return this.behavior(name)
  }

  /** @internal The registered portal continuation standing for behavior `b`'s continuation `k`. */
  continuationOf(b: AnyBehavior, k: { readonly name: string }): Continuation<unknown, unknown, unknown, unknown> | undefined {
    return (b.continuations as ReadonlyArray<unknown>).includes(k) ? this.continuations.get(`${b.name}.${k.name}`) : undefined
  }
}

/** Where call `seq`'s triple starts in a session's entry (-1: not there). */
const callIndex = (e: SessionEntry, seq: number): number => {
  for (let j = CALLS; j < e.length; j += 3) if (e[j] === seq) return j
  return -1
}

/** Due times of session entries are whole seconds: most of a session's calls to an actor leave its due time as it was. */
const wholeSecond = (ms: number): number => Math.ceil(ms / 1000) * 1000

/** When an entry goes: a done request's at its time; a session's at its time unless a call in it is pending; a pending request's never. */
const entryExpiry = (e: unknown): number | undefined => {
  const x = e as RequestEntry | SessionEntry
  switch (x[0]) {
    case PENDING:
      return undefined
    case SESSION:
      for (let j = CALLS + 1; j < x.length; j += 3) if (x[j] === PENDING) return undefined
      return x[2]
    default:
      return x[2]
  }
}

const isDeadLetterReply = (x: unknown): x is DeadLetterReply => typeof x === "object" && x !== null && typeof (x as { deadLetter?: unknown }).deadLetter === "string"

const answer = (id: string, w: string, done: DoneEntry): EndpointReply =>
  done[0] === FAILED ? { id, w, x: done[1] } : done[1] === undefined ? { id, w } : { id, w, r: done[1] }

/** The key of `type/id`: the route's key of the actor, so its requests share its key group. */
const targetKey = (to: string): Key => {
  const ref = parseTarget(to)
  return [ref.type, ref.id]
}

/** `type/id` (checked at admission) as a ref; the id may be a spawned one. */
const parseTarget = (to: string): ActorRef<never> => {
  const slash = to.indexOf("/")
  return { type: to.slice(0, slash), id: to.slice(slash + 1) }
}

/**
 * Messages (and initial states) are checked where they are sent, in checked and unchecked mode alike: a bad field
 * fails the send that has it, naming the field, instead of passing unchecked mode's copy-free hops and failing later.
 */
const checkSendable = (what: string, to: ActorRef<never>, value: unknown): void => {
  const bad = findUnserializable(value)
  if (bad) throw new TypeError(`${what} ${refString(to)}: ${bad.message}`)
}

/** The context of one handler invocation. */
class Context implements ActorContext<unknown> {
  private n: number
  private stopRequested = false

  constructor(
    private readonly ctx: PortalContext<Out, ActorRecord>,
    readonly self: ActorRef<unknown>,
    private readonly rec: ActorRecord,
    readonly isAsk: boolean,
    private readonly system: ActorSystem,
  ) {
    this.n = rec.n
  }

  get log() {
    return this.ctx.log
  }

  send<T>(to: ActorRef<T>, message: T): void {
    checkSendable("send to", to, message)
    this.ctx.emit({ t: "tell", to, m: message })
  }

  spawn<T, S>(behavior: Behavior<T, S>, initial?: S): ActorRef<T> {
    if (this.system.behaviorOf(behavior.name) !== (behavior as unknown)) {
      throw new Error(`spawn: behavior '${behavior.name}' is not registered in actor system '${this.system.name}'`)
    }
    const ref: ActorRef<T> = { type: behavior.name, id: `${this.self.id}#${this.n + 1}` }
    checkSendable("spawn", ref, initial)
    this.n++
    this.ctx.emit({ t: "create", to: ref, init: initial !== undefined, s: initial })
    return ref
  }

  stop(): void {
    this.stopRequested = true
  }

  reply(value: unknown): void {
    ;(this.ctx as PortalContext<Out, ActorRecord, unknown>).reply(value)
  }

  ask<Req, Rep>(portal: Portal<Req, Rep>, request: Req): ActorFuture<Rep> {
    const future = this.ctx.ask(portal, request)
    const self = this.self
    return {
      id: future.id,
      then: <Data>(k: ActorContinuation<Rep, Data, unknown>, data: Data) => {
        const owner = this.system.behaviorOf(this.rec.b)!
        const wrapped = this.system.continuationOf(owner, k)
        if (wrapped === undefined) throw new Error(`continuation '${k.name}' is not listed in the continuations of behavior '${owner.name}'`)
        future.then(wrapped as never, { to: self, d: data })
      },
    }
  }

  output(value: unknown): void {
    this.ctx.emit({ t: "out", v: value })
  }

  now(): number {
    return this.ctx.now()
  }

  random(): number {
    return this.ctx.random()
  }

  /** Stores the handler's result; returns the record kept (undefined once stopped). */
  apply(next: Next<unknown>): ActorRecord | undefined {
    if (this.stopRequested || next === stopped) {
      if (this.n > 0 && !isSpawnedId(this.self.id)) this.ctx.state.set({ b: TOMBSTONE, s: undefined, n: this.n })
      else this.ctx.state.clear()
      return undefined
    }
    let rec: ActorRecord
    if (next === same) rec = this.n === this.rec.n ? this.rec : { ...this.rec, n: this.n }
    else if (isBecome(next)) {
      if (this.system.behaviorOf(next.behavior) === undefined) throw new Error(`become: behavior '${next.behavior}' is not registered in actor system '${this.system.name}'`)
      rec = { b: next.behavior, s: next.state, n: this.n }
    } else rec = { b: this.rec.b, s: next, n: this.n }
    if (rec !== this.rec || this.ctx.state.get() === undefined) this.ctx.state.set(rec)
    return rec
  }
}

const isBecome = (x: unknown): x is Become => typeof x === "object" && x !== null && (x as { kind?: unknown }).kind === "become" && "behavior" in x

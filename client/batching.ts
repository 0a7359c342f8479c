import { randomUUID } from "node:crypto"
import { targetString, type RequestOptions, type Target } from "./Client.ts"
import { clientError, Unavailable } from "./errors.ts"
import type { AnswerBody, ErrorBody } from "./wire.ts"

/** One ask or tell as it goes on the wire (alone, or as an element of a batch). */
export interface Call {
  readonly target: string
  readonly message: unknown
  /** The caller's idempotency key; a call without one is numbered in the client's session instead. */
  readonly key?: string
  readonly session?: string
  readonly seq?: number
  readonly ack?: number
  readonly timeoutMs: number
  readonly tell?: true
}

/**
 * The calls a client makes without an idempotency key, numbered: each goes with the session's id, its number and the
 * acknowledgement (every number below it has settled here, and this client never sends those calls again). The app
 * keeps one entry per session and key group with the unacknowledged calls' answers (docs/client.md), instead of an
 * entry per call for as long as a retry could come.
 */
export class ClientSession {
  readonly id = randomUUID()
  private next = 0
  /** Lowest number that may be unsettled. */
  private low = 0
  private readonly unsettled = new Set<number>()

  /** Numbers a new call. */
  open(): { readonly seq: number; readonly ack: number } {
    const seq = this.next++
    this.unsettled.add(seq)
    while (this.low < seq && !this.unsettled.has(this.low)) this.low++
    return { seq, ack: this.low }
  }

  /** The call has its outcome (an answer, or an error it will not be retried after). */
  private settle(seq: number): void {
    this.unsettled.delete(seq)
  }

  /** `send`, the sending of call `seq` (if numbered), settling the call whatever its outcome. */
  settled<A>(seq: number | undefined, send: Promise<A>): Promise<A> {
    if (seq === undefined) return send
    return send.then(
      (a) => {
        this.settle(seq)
        return a
      },
      (err: unknown) => {
        this.settle(seq)
        throw err
      },
    )
  }
}

/** A call as both clients send it: with the caller's key, or numbered in the client's session. */
export const callOf = (target: Target, message: unknown, o: RequestOptions, defaultTimeoutMs: number, tell: boolean, session: ClientSession): Call => {
  const to = targetString(target)
  const timeoutMs = o.timeoutMs ?? defaultTimeoutMs
  const key = o.idempotencyKey
  if (key !== undefined) return tell ? { target: to, message, key, timeoutMs, tell: true } : { target: to, message, key, timeoutMs }
  const { seq, ack } = session.open()
  return tell ? { target: to, message, session: session.id, seq, ack, timeoutMs, tell: true } : { target: to, message, session: session.id, seq, ack, timeoutMs }
}

interface Queued {
  readonly call: Call
  readonly resolve: (a: AnswerBody) => void
  readonly reject: (e: unknown) => void
}

/**
 * Coalesces the calls made in one tick: a lone call goes by `one`, several by `many` as one batch whose answers
 * (`{ answers }`, in call order) are handed to their callers one by one. HTTP and NATS clients share it.
 */
export const batcher = (where: string, send: { one: (call: Call) => Promise<unknown>; many: (calls: ReadonlyArray<Call>) => Promise<unknown> }) => {
  let pending: Queued[] = []
  const flush = () => {
    const batch = pending
    pending = []
    if (batch.length === 1) {
      const q = batch[0]!
      send.one(q.call).then((a) => q.resolve(a as AnswerBody), q.reject)
      return
    }
    send.many(batch.map((q) => q.call)).then(
      (r) => {
        const answers = (r as { answers?: Array<AnswerBody & Partial<ErrorBody>> }).answers ?? []
        batch.forEach((q, i) => {
          const a = answers[i]
          if (a === undefined) q.reject(new Unavailable(`${where} answered a batch of ${batch.length} with ${answers.length} answers`))
          else if (a.error !== undefined) q.reject(clientError(a.error.tag, a.error.message))
          else q.resolve(a)
        })
      },
      (err: unknown) => batch.forEach((q) => q.reject(err)),
    )
  }
  return (call: Call): Promise<AnswerBody> =>
    new Promise<AnswerBody>((resolve, reject) => {
      if (pending.length === 0) setImmediate(flush)
      pending.push({ call, resolve, reject })
    })
}

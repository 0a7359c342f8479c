import { randomUUID } from "node:crypto"
import { targetString, type RequestOptions, type Target } from "./Client.ts"
import { clientError, Unavailable } from "./errors.ts"
import type { AnswerBody, ErrorBody } from "./wire.ts"

/** One ask or tell as it goes on the wire (alone, or as an element of a batch). */
export interface Call {
  readonly target: string
  readonly message: unknown
  readonly key: string
  readonly timeoutMs: number
  readonly tell?: true
  /** The key was made up here for retries (the caller gave none): the app keeps the answer only while retries can come. */
  readonly auto?: true
}

/** A call as both clients send it: without a caller's key, one made up here (marked auto) for the client's retries. */
export const callOf = (target: Target, message: unknown, o: RequestOptions, defaultTimeoutMs: number, tell: boolean): Call => ({
  target: targetString(target),
  message,
  key: o.idempotencyKey ?? randomUUID(),
  timeoutMs: o.timeoutMs ?? defaultTimeoutMs,
  ...(o.idempotencyKey === undefined ? { auto: true as const } : {}),
  ...(tell ? { tell: true as const } : {}),
})

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

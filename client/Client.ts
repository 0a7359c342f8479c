/** An actor's address as clients write it: `"type/id"` or `{ type, id }`. */
export type Target = string | { readonly type: string; readonly id: string }

export interface RequestOptions {
  /**
   * Requests with the same key execute once; a retry returns the first answer, also across crashes. Default: a
   * fresh random key (so only the client's own retries of this call are deduplicated).
   */
  readonly idempotencyKey?: string
  /** Give up waiting after this long (default 30 s); the request may still execute once. */
  readonly timeoutMs?: number
}

export interface Answer<R> {
  readonly reply: R
  /** The epoch whose commit made the effect durable (pass it as `minEpoch` to read your own writes). */
  readonly epoch: number
}

export interface StateOptions {
  /** Wait until this epoch has committed before reading (read-your-writes after an `ask`/`tell`). */
  readonly minEpoch?: number
  readonly timeoutMs?: number
}

/**
 * A client of a running Eddy app, the same for an embedded app (HTTP) and a cluster (NATS). Answers come only after
 * the epoch holding the effect committed. Failures reject with a ClientError subclass (see errors.ts).
 */
export interface EddyClient {
  /** Sends `message` to the actor and resolves with what its handler passed to `ctx.reply`. */
  ask<R = unknown>(target: Target, message: unknown, options?: RequestOptions): Promise<Answer<R>>
  /** Sends `message` without waiting for a reply; resolves once the send is committed (it will be processed once). */
  tell(target: Target, message: unknown, options?: RequestOptions): Promise<{ readonly epoch: number }>
  /** The actor's committed state, or undefined if it has none. */
  state<S = unknown>(target: Target, options?: StateOptions): Promise<S | undefined>
  /** Ids of the actors of `type` that have state. */
  list(type: string): Promise<ReadonlyArray<string>>
  close(): Promise<void>
}

export const targetString = (t: Target): string => (typeof t === "string" ? t : `${t.type}/${t.id}`)

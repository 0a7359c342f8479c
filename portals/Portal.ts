import type { Key } from "../workflows/Key.ts"
import type { EntriesOptions } from "../workflows/Graph.ts"
import type { StreamExtension } from "../workflows/Workflow.ts"
import type { PortalContext } from "./PortalContext.ts"
import type { Continuation } from "./Continuation.ts"

/** Extension names the runtime executes for the portal layer. */
export const ASKER = "portal-asker"
export const REPLIER = "portal-replier"

/** A request/reply channel between workflows. Exactly one replier task serves it; any number of askers use it. */
export interface Portal<Req, Rep> {
  readonly kind: "portal"
  readonly name: string
  /**
   * Requests are routed to the key group of this key, and the replier sees that key's state. Without it, a replier
   * on an unkeyed stream serves every request with its per-task state (the state its `onRecord` sees); a replier on
   * a keyed stream serves them under the portal's name as the key.
   */
  readonly key?: (request: Req) => Key
  readonly __types?: (req: Req, rep: Rep) => void
}

export interface AskerConfig {
  readonly onRecord: (ctx: PortalContext<unknown, unknown>, value: unknown) => void
  readonly continuations: ReadonlyArray<Continuation<unknown, unknown, unknown, unknown>>
}

export interface ReplierConfig extends AskerConfig {
  readonly portal: Portal<unknown, unknown>
  readonly onRequest: (ctx: PortalContext<unknown, unknown>, request: unknown) => void
}

export interface AskerOptions<S = unknown> {
  readonly name?: string
  /** Every continuation this task passes to `then`: they are looked up by name after a restart. */
  readonly continuations?: ReadonlyArray<Continuation<never, never, never, never>>
  /** When a key's state may be dropped (see StatefulTaskOptions.expire). */
  readonly expire?: (state: S) => number | undefined
  /** Keep entries beside each key's state (see StatefulTaskOptions.entries). */
  readonly entries?: EntriesOptions
}

export interface ReplierOptions<T, O, S> extends AskerOptions {
  /** Records of the stream the replier task sits on (optional: a replier may only serve requests). */
  readonly onRecord?: (ctx: PortalContext<O, S>, value: T) => void
}

/**
 * The reply an asker gets when the replier threw serving its request (the replier's effects were discarded). A
 * continuation that can see one should test for it with `Portal.isRejection`.
 */
export interface Rejection {
  readonly $eddy: "rejection"
  /** The replier's error message. */
  readonly message: string
}

export const rejection = (err: unknown): Rejection => ({ $eddy: "rejection", message: err instanceof Error ? err.message : String(err) })

/** The state options of an asker or replier as its stream extension carries them. */
const stateOptions = <S>(options: AskerOptions<S>): Pick<StreamExtension<unknown, unknown>, "expire" | "entries"> => ({
  ...(options.expire === undefined ? {} : { expire: options.expire as (state: unknown) => number | undefined }),
  ...(options.entries === undefined ? {} : { entries: options.entries }),
})

export const Portal = {
  isRejection(reply: unknown): reply is Rejection {
    return typeof reply === "object" && reply !== null && (reply as { $eddy?: unknown }).$eddy === "rejection"
  },

  define<Req, Rep>(name: string, options: { readonly key?: (request: Req) => Key } = {}): Portal<Req, Rep> {
    return options.key === undefined ? { kind: "portal", name } : { kind: "portal", name, key: options.key }
  },

  /** A task that may ask portals for each record and continue, when the reply arrives, in a named continuation. */
  asker<T, O, S = unknown>(handler: (ctx: PortalContext<O, S>, value: T) => void, options: AskerOptions<S> = {}): StreamExtension<T, O> {
    const config: AskerConfig = {
      onRecord: handler as AskerConfig["onRecord"],
      continuations: (options.continuations ?? []) as AskerConfig["continuations"],
    }
    return {
      extension: ASKER,
      config,
      ...(options.name === undefined ? {} : { name: options.name }),
      ...stateOptions(options),
    }
  },

  /** The one task serving `portal`: `onRequest` replies with `ctx.reply`, now or in a continuation. */
  replier<Req, Rep, T, O, S = unknown>(
    portal: Portal<Req, Rep>,
    onRequest: (ctx: PortalContext<O, S, Rep>, request: Req) => void,
    options: ReplierOptions<T, O, S> = {},
  ): StreamExtension<T, O> {
    const config: ReplierConfig = {
      portal: portal as Portal<unknown, unknown>,
      onRequest: onRequest as ReplierConfig["onRequest"],
      onRecord: (options.onRecord ?? (() => undefined)) as ReplierConfig["onRecord"],
      continuations: (options.continuations ?? []) as ReplierConfig["continuations"],
    }
    return {
      extension: REPLIER,
      config,
      name: options.name ?? `replier:${portal.name}`,
      ...stateOptions(options),
    }
  },
}

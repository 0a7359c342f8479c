import superjson from "superjson"

/**
 * The wire format shared by clients and the runtime's fronts (docs/client.md). Bodies are JSON; with this content
 * type they are superjson documents instead, so Dates, Maps, Sets, BigInts and undefined survive the trip.
 */
export const SUPERJSON_TYPE = "application/vnd.eddy.superjson+json"

/** POST /v1/ask and /v1/tell, and the NATS request subjects. */
export interface RequestBody {
  readonly target: string
  readonly message: unknown
  readonly key?: string
  readonly timeoutMs?: number
  /** The client library made the key up for its own retries: the answer is kept only while they can come. */
  readonly auto?: boolean
  /**
   * Instead of a key: a call of a client session (docs/client.md), numbered `seq` in session `session`; `ack`: every
   * call of the session numbered below it has settled and will not be sent again. Kept like an `auto` key.
   */
  readonly session?: string
  readonly seq?: number
  readonly ack?: number
}

export interface AnswerBody {
  readonly reply?: unknown
  readonly epoch: number
}

export interface ErrorBody {
  readonly error: { readonly tag: string; readonly message: string }
}

/** HTTP status per error tag. */
export const statusOf = (tag: string): number => {
  switch (tag) {
    case "BadRequest":
    case "InvalidPayload":
      return 400
    case "UnknownActorType":
      return 404
    case "Rejected":
      return 409
    case "Busy":
      return 429
    case "Unavailable":
      return 503
    case "Timeout":
      return 504
    default:
      return 500
  }
}

/**
 * Whether JSON carries `value` exactly, as superjson would: strings, booleans, null, finite numbers other than -0,
 * arrays without holes and objects with Object's (or no) prototype, each object once (superjson keeps shared
 * references shared). Anything else (undefined, Date, Map, BigInt, a class instance, …) needs superjson's annotations.
 */
export const isPlainJson = (value: unknown): boolean => plain(value, undefined)

const plain = (v: unknown, seen: Set<object> | undefined): boolean => {
  switch (typeof v) {
    case "string":
    case "boolean":
      return true
    case "number":
      return Number.isFinite(v) && !Object.is(v, -0)
    case "object": {
      if (v === null) return true
      if (seen === undefined) seen = new Set()
      else if (seen.has(v)) return false
      seen.add(v)
      if (Array.isArray(v)) {
        if (Object.getPrototypeOf(v) !== Array.prototype) return false
        for (let i = 0; i < v.length; i++) if (!(i in v) || !plain(v[i], seen)) return false
        return true
      }
      const proto = Object.getPrototypeOf(v) as unknown
      if (proto !== Object.prototype && proto !== null) return false
      for (const k in v) if (Object.hasOwn(v, k) && !plain((v as Record<string, unknown>)[k], seen)) return false
      return true
    }
    default:
      return false
  }
}

/**
 * A body as JSON, or as a superjson document when `rich`. A value JSON carries exactly is written as the document
 * superjson would make of it (`{"json": …}`, no annotations) without running superjson: most bodies are plain.
 */
export const encodeBody = (value: unknown, rich: boolean): string =>
  !rich ? JSON.stringify(value) : isPlainJson(value) ? `{"json":${JSON.stringify(value)}}` : JSON.stringify(superjson.serialize(value))

/** Keys that would reach an object's prototype if the document were merged anywhere: refused outright. */
const FORBIDDEN = new Set(["__proto__", "constructor", "prototype"])
const reviver = (k: string, v: unknown): unknown => {
  if (FORBIDDEN.has(k)) throw new TypeError(`the key '${k}' is not allowed in a request`)
  return v
}

/** Parses a body; throws a SyntaxError (bad JSON) or a TypeError (a forbidden key) the caller reports as invalid. */
export const decodeBody = (text: string, rich: boolean): unknown => {
  // The reviver (a call per value) only when a forbidden word occurs at all.
  const suspicious = text.includes("__proto__") || text.includes("constructor") || text.includes("prototype")
  const json: unknown = suspicious ? JSON.parse(text, reviver) : JSON.parse(text)
  if (!rich) return json
  if (typeof json !== "object" || json === null || !("json" in json)) throw new TypeError("a superjson body must be an object with 'json' (and 'meta')")
  // Without annotations a superjson document is its JSON.
  if (!("meta" in json) || json.meta === undefined) return json.json
  return superjson.deserialize(json as Parameters<typeof superjson.deserialize>[0])
}

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

export const encodeBody = (value: unknown, rich: boolean): string => (rich ? JSON.stringify(superjson.serialize(value)) : JSON.stringify(value))

/** Keys that would reach an object's prototype if the document were merged anywhere: refused outright. */
const FORBIDDEN = new Set(["__proto__", "constructor", "prototype"])

/** Parses a body; throws a SyntaxError (bad JSON) or a TypeError (a forbidden key) the caller reports as invalid. */
export const decodeBody = (text: string, rich: boolean): unknown => {
  const json: unknown = JSON.parse(text, (k, v: unknown) => {
    if (FORBIDDEN.has(k)) throw new TypeError(`the key '${k}' is not allowed in a request`)
    return v
  })
  if (!rich) return json
  if (typeof json !== "object" || json === null || !("json" in json)) throw new TypeError("a superjson body must be an object with 'json' (and 'meta')")
  return superjson.deserialize(json as Parameters<typeof superjson.deserialize>[0])
}

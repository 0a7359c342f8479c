import type { StateView } from "./App.ts"

/** A client request as pushed into an endpoint's inbox source. Plain data: it is logged like any record. */
export interface EndpointRequest {
  /** Idempotency key: requests with the same id execute once. */
  readonly id: string
  /** Target, `type/id`. */
  readonly to: string
  readonly m: unknown
  /** Wants the handler's reply (an ask), or only the commit of the send (a tell). */
  readonly ask: boolean
  /** Where the answer goes: an address only the runtime that took the request understands. */
  readonly w: string
  /** How long its answer is kept for retries, in ms (default: the system's retention). */
  readonly keep?: number
  /**
   * A call of a client session (instead of a key of its own): the session's id, the call's number in it, and the
   * session's acknowledgement (every call numbered below it has settled at the client, which never sends it again).
   */
  readonly s?: string
  readonly q?: number
  readonly a?: number
}

/** Why a request failed, as clients see it (client/errors.ts names the tags). */
export interface EndpointFailure {
  readonly tag: "Rejected" | "UnknownActorType" | "InvalidPayload"
  readonly message: string
}

/** A committed answer, one per waiting address: the reply sink's records. */
export interface EndpointReply {
  readonly id: string
  readonly w: string
  readonly r?: unknown
  readonly x?: EndpointFailure
}

/**
 * How the outside world reaches a workflow: requests are pushed into the live source `inbox` and answered by the
 * committed records of sink `replies`. The actor library provides one per actor system; the runtime serves it
 * over HTTP (embedded) or NATS (cluster).
 */
export interface RequestEndpoint {
  readonly inbox: string
  readonly replies: string
  /** The target types it serves (an unknown one is refused before anything runs). */
  readonly types: ReadonlyArray<string>
  /** Checks a request before admission; throws an EndpointError for a bad one. */
  readonly check: (to: string, message: unknown) => void
  /** Reads the state of targets (`type/id`) for state queries and listings. */
  readonly view: StateView
}

/** A request refused at admission: nothing ran. */
export class EndpointError extends Error {
  constructor(
    readonly tag: EndpointFailure["tag"],
    message: string,
  ) {
    super(message)
    this.name = "EndpointError"
  }
}

/**
 * Why a client session's call fields are malformed, or undefined if they are fine: a session id of 1-64 characters,
 * integers 0 ≤ ack ≤ seq. Every way in (HTTP, NATS, Kafka) applies this rule.
 */
export const sessionCallProblem = (session: unknown, seq: unknown, ack: unknown): string | undefined => {
  if (typeof session !== "string" || session.length === 0 || session.length > 64) return "a session call needs a 'session' id of 1 to 64 characters"
  if (!Number.isSafeInteger(seq) || (seq as number) < 0 || !Number.isSafeInteger(ack) || (ack as number) < 0 || (ack as number) > (seq as number)) {
    return "a session call needs integers 'seq' ≥ 0 and 'ack' with 0 ≤ ack ≤ seq"
  }
  return undefined
}

/**
 * How long the answer of a call whose key a client library made up (or numbered in a session) is kept: while the
 * library may still retry it (twice the call's timeout, plus a second).
 */
export const keptWhileRetried = (timeoutMs: number): number => 2 * timeoutMs + 1_000

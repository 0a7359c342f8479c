/**
 * What a client call can fail with. Every error has a `_tag` (for Effect users and `switch`) and a message that
 * says what to do. The same tags travel over HTTP and NATS as `{ error: { tag, message } }`.
 */
export type ClientErrorTag = "UnknownActorType" | "InvalidPayload" | "Rejected" | "Timeout" | "Busy" | "Unavailable" | "BadRequest"

export class ClientError extends Error {
  constructor(
    readonly _tag: ClientErrorTag,
    message: string,
  ) {
    super(message)
    this.name = `Eddy${_tag}Error`
  }
}

/** The target's type is not a behavior of the app. */
export class UnknownActorType extends ClientError {
  constructor(message: string) {
    super("UnknownActorType", message)
  }
}

/** The message is not serializable, not JSON, or the target is malformed. */
export class InvalidPayload extends ClientError {
  constructor(message: string) {
    super("InvalidPayload", message)
  }
}

/** The handler threw: nothing it did took effect; `message` is the handler's error message. */
export class Rejected extends ClientError {
  constructor(message: string) {
    super("Rejected", message)
  }
}

/** No answer in time. The request may still execute (once): retry with the same idempotency key to learn its result. */
export class Timeout extends ClientError {
  constructor(message: string) {
    super("Timeout", message)
  }
}

/** The app is applying backpressure: retry later with the same idempotency key. */
export class Busy extends ClientError {
  constructor(message: string) {
    super("Busy", message)
  }
}

/** The app could not be reached (not running, wrong address, wrong namespace). */
export class Unavailable extends ClientError {
  constructor(message: string) {
    super("Unavailable", message)
  }
}

/** The request itself is malformed (a bug in a hand-written client). */
export class BadRequest extends ClientError {
  constructor(message: string) {
    super("BadRequest", message)
  }
}

export const clientError = (tag: string, message: string): ClientError => {
  switch (tag) {
    case "UnknownActorType":
      return new UnknownActorType(message)
    case "InvalidPayload":
      return new InvalidPayload(message)
    case "Rejected":
      return new Rejected(message)
    case "Timeout":
      return new Timeout(message)
    case "Busy":
      return new Busy(message)
    case "Unavailable":
      return new Unavailable(message)
    default:
      return new BadRequest(message)
  }
}

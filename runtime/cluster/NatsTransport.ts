/**
 * The Transport port on NATS core subjects: one subscription per endpoint this process hosts
 * (`eddy.<app>.p.<i>`, the coordinator on `eddy.<app>.coord`), envelopes encoded with the engine's binary codec,
 * one publish per envelope (the client coalesces back-to-back publishes into one socket write). Per
 * (sender, receiver) delivery is in order: one connection per process, one subscription per subject, one local
 * FIFO fed by the subscription callbacks. Envelopes above the server's max_payload go as chunks (natsChunks.ts).
 *
 * Core NATS drops messages while a connection is down, so a lost connection is never papered over: the client does
 * not reconnect, and every later send and receive fails with TransportError (the engine recovers with a new layer).
 */
import { connect, type Msg as NatsMsg, type NatsConnection } from "@nats-io/transport-node"
import { randomUUID } from "node:crypto"
import { Effect, Layer, type Scope } from "effect"
import { readEndpoints } from "../config/Endpoints.ts"
import { decode, encode } from "../engine/codec.ts"
import { Transport, TransportError, type Envelope, type TransportService } from "../ports/Transport.ts"
import { Mailbox } from "../ports/Mailbox.ts"
import { frames, Reassembler } from "./natsChunks.ts"
import { checkApp, checkEndpoint, subjectFor } from "./natsSubjects.ts"

export interface NatsTransportOptions {
  /** Prefixes every subject, so apps sharing a NATS server do not meet. */
  readonly app: string
  /** Default: EDDY_NATS_URL (runtime/config/Endpoints.ts). */
  readonly url?: string
  /** Endpoints hosted by this process: partition indices, and COORDINATOR (-1). */
  readonly endpoints: ReadonlyArray<number>
  /** Bound on connecting at start-up (default 3 s). */
  readonly connectTimeoutMs?: number
  /** Server pings: a silent server is declared lost after about pingIntervalMs × 2 (default 5 s). */
  readonly pingIntervalMs?: number
}

interface Delivery {
  readonly to: number
  readonly env: Envelope
}

const message = (e: unknown): string => (e instanceof Error ? e.message : String(e))

const unreachable = (url: string, cause: unknown): TransportError => {
  const detail = (cause as { cause?: unknown } | null)?.cause
  const why = detail === undefined ? message(cause) : `${message(cause)} (${message(detail)})`
  return new TransportError({
    message: `cannot reach NATS at ${url} — is it running? (npm run infra:up, or set EDDY_NATS_URL): ${why}`,
    cause,
  })
}

export const makeNatsTransport = (options: NatsTransportOptions): Effect.Effect<TransportService, TransportError, Scope.Scope> =>
  Effect.gen(function* () {
    const url = options.url ?? (yield* Effect.try({
      try: () => readEndpoints().nats.url,
      catch: (cause) => new TransportError({ message: `NATS transport: ${message(cause)}`, cause }),
    }))
    const invalid = checkApp(options.app) ?? options.endpoints.map(checkEndpoint).find((p) => p !== undefined)
    if (invalid !== undefined) return yield* Effect.fail(new TransportError({ message: `NATS transport: ${invalid}` }))

    const connectTimeoutMs = options.connectTimeoutMs ?? 3_000
    /** Set by our own close: the connection's end is then not a failure. */
    let closing = false
    const nc: NatsConnection = yield* Effect.acquireRelease(
      Effect.tryPromise({
        try: () =>
          connect({
            servers: url,
            name: `eddy-${options.app}`,
            timeout: connectTimeoutMs,
            reconnect: false,
            pingInterval: options.pingIntervalMs ?? 5_000,
            maxPingOut: 2,
          }),
        catch: (cause) => unreachable(url, cause),
      }).pipe(
        Effect.timeoutFail({ duration: connectTimeoutMs + 500, onTimeout: () => unreachable(url, new Error(`no answer within ${connectTimeoutMs} ms`)) }),
      ),
      (c) =>
        Effect.promise(async () => {
          closing = true
          await c.flush().catch(() => undefined)
          await c.close().catch(() => undefined)
        }).pipe(Effect.interruptible, Effect.timeout(5_000), Effect.ignore),
    )

    let failure: TransportError | undefined
    const inbox = new Mailbox<Delivery | TransportError>()
    const fail = (why: string, cause?: unknown): void => {
      if (failure !== undefined || closing) return
      failure = new TransportError({ message: `NATS at ${url}: ${why}; messages may have been lost, the transport must be reopened`, cause })
      // Wakes a blocked receive; each receiver puts the poison back for the next.
      inbox.offer(failure)
    }
    void nc.closed().then((err) => fail(err ? `connection closed: ${message(err)}` : "connection closed", err))
    void (async () => {
      for await (const s of nc.status()) {
        if (s.type === "disconnect") fail(`disconnected from ${s.server}`)
        else if (s.type === "error") fail(`server error: ${message(s.error)}`, s.error)
        else if (s.type === "slowConsumer") fail(`slow consumer on ${s.sub.getSubject()} (${s.pending} pending)`)
        else if (s.type === "staleConnection") fail("the server stopped answering pings")
        else if (s.type === "ldm") fail(`server ${s.server} is shutting down (lame duck mode)`)
      }
    })().catch(() => undefined)

    const chunks = new Reassembler()
    const deliver = (to: number) => (err: Error | null, msg: NatsMsg) => {
      if (err !== null) return fail(`subscription for endpoint ${to} failed: ${message(err)}`, err)
      if (failure !== undefined) return
      try {
        const bytes = msg.headers === undefined ? msg.data : chunks.add(msg.subject, msg.headers, msg.data)
        if (bytes !== undefined) inbox.offer({ to, env: decode(bytes) as Envelope })
      } catch (e) {
        fail(`cannot decode a message on ${msg.subject}: ${message(e)}`, e)
      }
    }
    for (const to of new Set(options.endpoints)) nc.subscribe(subjectFor(options.app, to), { callback: deliver(to) })
    // Subscriptions are live on the server before the layer is: nothing sent after start-up is missed.
    yield* Effect.tryPromise({ try: () => nc.flush(), catch: (cause) => unreachable(url, cause) })

    const sender = randomUUID()
    // Headers and protocol framing count toward max_payload.
    const chunkBytes = Math.max(1024, (nc.info?.max_payload ?? 1024 * 1024) - 1024)

    const send = (to: number, env: Envelope): Effect.Effect<void, TransportError> =>
      Effect.suspend(() => {
        if (failure !== undefined) return Effect.fail(failure)
        let bytes: Uint8Array
        try {
          bytes = encode(env)
        } catch (e) {
          return Effect.fail(new TransportError({ message: `cannot send '${env.t}' to endpoint ${to}: ${message(e)}`, cause: e }))
        }
        const subject = subjectFor(options.app, to)
        try {
          for (const f of frames(sender, bytes, chunkBytes)) nc.publish(subject, f.data, f.headers === undefined ? undefined : { headers: f.headers })
        } catch (e) {
          fail(`publish to ${subject} failed: ${message(e)}`, e)
          return Effect.fail(failure ?? new TransportError({ message: `NATS at ${url}: publish to ${subject} failed: ${message(e)}`, cause: e }))
        }
        return Effect.void
      })

    const delivered = <D extends Delivery | undefined>(item: D | TransportError): Effect.Effect<D, TransportError> => {
      if (!(item instanceof TransportError)) return Effect.succeed(item)
      inbox.offer(item)
      return Effect.fail(item)
    }
    const receive: Effect.Effect<Delivery, TransportError> = Effect.suspend(() => (failure !== undefined ? Effect.fail(failure) : Effect.flatMap(inbox.take, delivered)))
    const receiveWithin = (ms: number): Effect.Effect<Delivery | undefined, TransportError> =>
      Effect.suspend(() => (failure !== undefined ? Effect.fail(failure) : Effect.flatMap(inbox.takeWithin(ms), delivered)))

    return { send, receive, receiveWithin } satisfies TransportService
  })

export const NatsTransport = {
  /** The Transport port on NATS; the scope owns the connection (flushed and closed on release). */
  layer: (options: NatsTransportOptions): Layer.Layer<Transport, TransportError> => Layer.scoped(Transport, makeNatsTransport(options)),
  make: makeNatsTransport,
} as const

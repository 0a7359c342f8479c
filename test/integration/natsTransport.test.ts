// The Transport contract on NatsTransport against the real NATS server (`npm run infra:up`, or EDDY_NATS_URL), plus
// connection loss and misconfiguration. Fails, never skips, when the server is absent.
import { randomUUID } from "node:crypto"
import { connect as tcpConnect, createServer, type Server, type Socket } from "node:net"
import { Context, Duration, Effect, Either, Fiber, Layer } from "effect"
import { afterEach, describe, expect, it } from "vitest"
import { NatsTransport } from "../../runtime/cluster/NatsTransport.ts"
import { hostPort, readEndpoints } from "../../runtime/config/Endpoints.ts"
import { Transport, type TransportError, type TransportService } from "../../runtime/ports/Transport.ts"
import { transportContract } from "../contracts/transportContract.ts"
import { closedPort, silentServer } from "./ports.ts"

const { nats } = readEndpoints()
const run = randomUUID().slice(0, 8)
let n = 0

const nodeOf = <E>(layer: Layer.Layer<Transport, E>) => Effect.map(Layer.build(layer), (ctx) => Context.get(ctx, Transport))

transportContract("NatsTransport", () => {
  const app = `test-${run}-${n++}`
  return Effect.succeed({ node: (endpoints: ReadonlyArray<number>) => nodeOf(NatsTransport.layer({ app, endpoints })), sharesEndpoints: false })
})

/** A TCP proxy in front of the NATS server whose connections the test can cut. */
const proxies: Array<{ server: Server; sockets: Set<Socket> }> = []
const startProxy = async (): Promise<{ url: string; cut: () => void }> => {
  const upstream = hostPort(new URL(nats.url).host)
  const sockets = new Set<Socket>()
  const server = createServer((client) => {
    const up = tcpConnect(upstream.port, upstream.host)
    for (const s of [client, up]) {
      sockets.add(s)
      s.on("close", () => sockets.delete(s))
      s.on("error", () => undefined)
    }
    client.pipe(up).pipe(client)
  })
  proxies.push({ server, sockets })
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve))
  const address = server.address()
  const port = typeof address === "object" && address !== null ? address.port : 0
  return { url: `nats://127.0.0.1:${port}`, cut: () => sockets.forEach((s) => s.destroy()) }
}
afterEach(() => {
  for (const p of proxies.splice(0)) {
    p.sockets.forEach((s) => s.destroy())
    p.server.close()
  }
})

describe("NatsTransport", () => {
  it("fails a blocked receive and every later send with TransportError when the connection is lost", async () => {
    const proxy = await startProxy()
    const app = `test-${run}-loss`
    const result = await Effect.runPromise(
      Effect.scoped(
        Effect.gen(function* () {
          const node: TransportService = yield* nodeOf(NatsTransport.layer({ app, url: proxy.url, endpoints: [0] }))
          yield* node.send(0, { t: "committed", g: 1, e: 1 })
          const first = yield* node.receive
          const blocked = yield* Effect.fork(Effect.either(node.receive))
          yield* Effect.sleep(Duration.millis(50))
          proxy.cut()
          const receiveAfter = yield* Fiber.join(blocked).pipe(Effect.timeout(Duration.seconds(5)))
          const sendAfter = yield* Effect.either(node.send(0, { t: "committed", g: 1, e: 2 }))
          const receiveAgain = yield* Effect.either(node.receive)
          return { first, receiveAfter, sendAfter, receiveAgain }
        }),
      ),
    )
    expect(result.first.env).toEqual({ t: "committed", g: 1, e: 1 })
    const errors = [result.receiveAfter, result.sendAfter, result.receiveAgain].map((r: Either.Either<unknown, TransportError>) =>
      Either.isLeft(r) ? r.left : undefined,
    )
    for (const e of errors) {
      expect(e?._tag).toBe("TransportError")
      expect(e?.message).toContain(`NATS at ${proxy.url}`)
      expect(e?.message).toContain("must be reopened")
    }
  })

  it("fails start-up within seconds with a TransportError naming the URL when nothing listens", async () => {
    const url = `nats://127.0.0.1:${await closedPort()}`
    const started = Date.now()
    const result = await Effect.runPromise(Effect.either(Effect.scoped(nodeOf(NatsTransport.layer({ app: `test-${run}-down`, url, endpoints: [0] })))))
    expect(Date.now() - started).toBeLessThan(5_000)
    if (Either.isRight(result)) throw new Error("expected a TransportError")
    expect(result.left._tag).toBe("TransportError")
    expect(result.left.message).toContain(`cannot reach NATS at ${url}`)
    expect(result.left.message).toContain("npm run infra:up")
  })

  it("fails start-up within the connect timeout when the server accepts but never answers", async () => {
    const silent = await silentServer()
    try {
      const url = `nats://127.0.0.1:${silent.port}`
      const started = Date.now()
      const result = await Effect.runPromise(
        Effect.either(Effect.scoped(nodeOf(NatsTransport.layer({ app: `test-${run}-hung`, url, endpoints: [0], connectTimeoutMs: 2_000 })))),
      )
      expect(Date.now() - started).toBeLessThan(4_000)
      expect(Either.isLeft(result) && result.left.message).toContain(`cannot reach NATS at ${url}`)
    } finally {
      silent.close()
    }
  })

  it("refuses an app name or endpoint that cannot name a subject", async () => {
    for (const options of [{ app: "a b", endpoints: [0] }, { app: "a..b", endpoints: [0] }, { app: "ok", endpoints: [-2] }, { app: "ok", endpoints: [1.5] }]) {
      const result = await Effect.runPromise(Effect.either(Effect.scoped(nodeOf(NatsTransport.layer(options)))))
      expect(Either.isLeft(result) && result.left._tag).toBe("TransportError")
    }
  })

  it("fails the send, not the transport, for an envelope that cannot be encoded", async () => {
    const result = await Effect.runPromise(
      Effect.scoped(
        Effect.gen(function* () {
          const node = yield* nodeOf(NatsTransport.layer({ app: `test-${run}-bad`, endpoints: [0] }))
          const bad = yield* Effect.either(
            node.send(0, { t: "data", g: 1, e: 1, round: 0, from: 0, msgs: [{ k: 0, node: 0, kg: 0, key: undefined, ks: undefined, v: () => 1, skg: 0, seq: 0 }] }),
          )
          yield* node.send(0, { t: "committed", g: 1, e: 1 })
          return { bad, next: yield* node.receive }
        }),
      ),
    )
    expect(Either.isLeft(result.bad) && result.bad.left.message).toMatch(/cannot send 'data' to endpoint 0: .*function/)
    expect(result.next.env).toEqual({ t: "committed", g: 1, e: 1 })
  })
})

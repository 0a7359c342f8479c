// Smoke test against the real NATS server that `npm run infra:up` starts (or EDDY_NATS_URL points to).
// It fails, never skips, when the server cannot be reached.
import { connect } from "@nats-io/transport-node"
import { describe, expect, it } from "vitest"
import { readEndpoints } from "../../runtime/config/Endpoints.ts"

const endpoints = readEndpoints()

describe("NATS (real server)", () => {
  it("answers a request through a subscriber, and has JetStream enabled", async () => {
    const nc = await connect({ servers: endpoints.nats.url, timeout: 5_000, name: "eddy-smoke" })
    try {
      const subject = `eddy.smoke.${Date.now()}.${Math.random().toString(36).slice(2)}`
      const sub = nc.subscribe(subject, {
        callback: (err, msg) => {
          if (err === null) msg.respond(`echo:${msg.string()}`)
        },
      })
      await nc.flush()
      const reply = await nc.request(subject, "ping", { timeout: 5_000 })
      expect(reply.string()).toBe("echo:ping")
      sub.unsubscribe()

      expect(nc.info?.jetstream).toBe(true)
      // A JetStream API round trip: the account info of the default account.
      const info: unknown = (await nc.request("$JS.API.INFO", "", { timeout: 5_000 })).json()
      expect(info).toMatchObject({ type: "io.nats.jetstream.api.v1.account_info_response" })
      expect(info).not.toHaveProperty("error")
    } finally {
      await nc.close()
    }
  })
})

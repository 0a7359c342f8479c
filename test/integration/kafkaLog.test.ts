// The Log contract on KafkaLog against the real broker (`npm run infra:up`, or EDDY_KAFKA_BROKERS), plus its
// misconfiguration errors. Fails, never skips, when the broker is absent.
import { randomUUID } from "node:crypto"
import { Effect, Either } from "effect"
import "../../kafkajs/kafkajsAbortFix.ts"
import kafkajs from "kafkajs"
import { afterAll, describe, expect, it } from "vitest"
import { createTopicsReady } from "../../runtime/cluster/kafkaCreateTopics.ts"
import { KafkaLog } from "../../runtime/cluster/KafkaLog.ts"
import { readEndpoints } from "../../runtime/config/Endpoints.ts"
import { Log } from "../../runtime/ports/Log.ts"
import { logContract } from "../contracts/logContract.ts"
import { closedPort, silentServer } from "./ports.ts"

const run = randomUUID().slice(0, 8)
let n = 0
const kafka = new kafkajs.Kafka({ clientId: "eddy-test", brokers: [...readEndpoints().kafka.brokers], logLevel: kafkajs.logLevel.NOTHING, retry: { retries: 2 } })

// The topics this run created go away with it.
afterAll(async () => {
  const admin = kafka.admin()
  await admin.connect()
  try {
    const mine = (await admin.listTopics()).filter((t) => t.startsWith(`eddy.test-${run}-`))
    if (mine.length > 0) await admin.deleteTopics({ topics: mine })
  } finally {
    await admin.disconnect()
  }
})

logContract("KafkaLog", () => KafkaLog.layer({ app: `test-${run}-${n++}` }))

describe("KafkaLog", () => {
  it("names the topics after the app, sets flush.messages=1 and unlimited retention, positions records by (partition, offset)", async () => {
    const app = `test-${run}-names`
    const positions = await Effect.runPromise(
      Effect.scoped(
        Effect.provide(
          Effect.gen(function* () {
            const log = yield* Log
            return [
              yield* log.append("wal", new Uint8Array([1])),
              yield* log.append("wal", new Uint8Array([2])),
              yield* log.appendDurable("control", new Uint8Array([3])),
            ]
          }),
          KafkaLog.layer({ app }),
        ),
      ),
    )
    expect(positions).toEqual([
      { part: 0, offset: 0 },
      { part: 0, offset: 1 },
      { part: 0, offset: 0 },
    ])
    const admin = kafka.admin()
    await admin.connect()
    try {
      const described = await admin.describeConfigs({
        includeSynonyms: false,
        resources: [`eddy.${app}.wal`, `eddy.${app}.control`].map((name) => ({
          type: kafkajs.ConfigResourceTypes.TOPIC,
          name,
          configNames: ["flush.messages", "retention.ms", "retention.bytes", "cleanup.policy"],
        })),
      })
      for (const r of described.resources) {
        const config = Object.fromEntries(r.configEntries.map((e) => [e.configName, e.configValue]))
        expect(config).toEqual({ "flush.messages": "1", "retention.ms": "-1", "retention.bytes": "-1", "cleanup.policy": "delete" })
      }
    } finally {
      await admin.disconnect()
    }
  })

  it("fails start-up with a LogError naming the brokers when none answers", async () => {
    const port = await closedPort()
    const started = Date.now()
    const result = await Effect.runPromise(
      Effect.either(Effect.scoped(Effect.provide(Log, KafkaLog.layer({ app: `test-${run}-down`, brokers: [`127.0.0.1:${port}`] })))),
    )
    expect(Date.now() - started).toBeLessThan(10_000)
    if (Either.isRight(result)) throw new Error("expected a LogError")
    expect(result.left._tag).toBe("LogError")
    expect(result.left.message).toContain(`cannot reach Kafka at 127.0.0.1:${port}`)
    expect(result.left.message).toContain("npm run infra:up")
  })

  it("fails start-up within the connect timeout when the broker accepts but never answers", async () => {
    const silent = await silentServer()
    try {
      const started = Date.now()
      const result = await Effect.runPromise(
        Effect.either(Effect.scoped(Effect.provide(Log, KafkaLog.layer({ app: `test-${run}-hung`, brokers: [`127.0.0.1:${silent.port}`], connectTimeoutMs: 2_000 })))),
      )
      expect(Date.now() - started).toBeLessThan(4_000)
      expect(Either.isLeft(result) && result.left.message).toContain(`cannot reach Kafka at 127.0.0.1:${silent.port}`)
    } finally {
      silent.close()
    }
  })

  it("refuses an existing topic whose retention would delete log records", async () => {
    const app = `test-${run}-retention`
    const admin = kafka.admin()
    await admin.connect()
    try {
      await createTopicsReady(admin, [{ topic: `eddy.${app}.wal`, numPartitions: 1, replicationFactor: 1, configEntries: [{ name: "retention.ms", value: "3600000" }] }])
    } finally {
      await admin.disconnect()
    }
    const result = await Effect.runPromise(Effect.either(Effect.scoped(Effect.provide(Log, KafkaLog.layer({ app })))))
    if (Either.isRight(result)) throw new Error("expected a LogError")
    expect(result.left.message).toContain(`topic eddy.${app}.wal has retention.ms=3600000`)
    expect(result.left.message).toContain("retention.ms=-1")
  })

  it("refuses an app name that cannot name a topic", async () => {
    const result = await Effect.runPromise(Effect.either(Effect.scoped(Effect.provide(Log, KafkaLog.layer({ app: "bad name" })))))
    expect(Either.isLeft(result) && result.left.message).toMatch(/app name 'bad name'/)
  })
})

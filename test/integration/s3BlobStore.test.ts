// The BlobStore contract on S3BlobStore against the real S3-compatible server (`npm run infra:up`, or EDDY_S3_*),
// plus its misconfiguration errors. Fails, never skips, when the server is absent.
import { randomUUID } from "node:crypto"
import { Effect, Either } from "effect"
import { afterAll, describe, expect, it } from "vitest"
import { S3BlobStore, type S3BlobStoreOptions } from "../../runtime/cluster/S3BlobStore.ts"
import { readEndpoints } from "../../runtime/config/Endpoints.ts"
import { BlobStore } from "../../runtime/ports/BlobStore.ts"
import { blobStoreContract } from "../contracts/blobStoreContract.ts"
import { closedPort, silentServer } from "./ports.ts"

const run = randomUUID().slice(0, 8)
let n = 0

// The objects this run stored go away with it.
afterAll(async () => {
  await Effect.runPromise(
    Effect.scoped(
      Effect.gen(function* () {
        const root = yield* Effect.provide(BlobStore, S3BlobStore.layer())
        const keys = yield* root.list(`test-${run}-`)
        yield* Effect.all(keys.map((k) => root.delete(k)), { concurrency: 16 })
      }),
    ),
  )
})

blobStoreContract("S3BlobStore", () => S3BlobStore.layer({ prefix: `test-${run}-${n++}` }))

const startError = async (options: S3BlobStoreOptions) => {
  const started = Date.now()
  const result = await Effect.runPromise(Effect.either(Effect.scoped(Effect.provide(BlobStore, S3BlobStore.layer(options)))))
  if (Either.isRight(result)) throw new Error("expected a BlobStoreError")
  return { error: result.left, ms: Date.now() - started }
}

describe("S3BlobStore", () => {
  const { s3 } = readEndpoints()

  it("stores keys under prefix/ and lists them without it, across pages", async () => {
    const prefix = `test-${run}-pages`
    const keys = Array.from({ length: 1_050 }, (_, i) => `k/${String(i).padStart(5, "0")}`)
    const [listed, other] = await Effect.runPromise(
      Effect.scoped(
        Effect.gen(function* () {
          const store = yield* Effect.provide(BlobStore, S3BlobStore.layer({ prefix }))
          yield* Effect.all(
            keys.map((k) => store.put(k, new Uint8Array([1]))),
            { concurrency: 32 },
          )
          const neighbour = yield* Effect.provide(BlobStore, S3BlobStore.layer({ prefix: `${prefix}-other` }))
          return [yield* store.list("k/"), yield* neighbour.list("")] as const
        }),
      ),
    )
    expect(listed).toEqual(keys)
    // A sibling prefix that merely starts with the same characters sees none of them.
    expect(other).toEqual([])
  })

  it("fails start-up naming bucket and endpoint when the bucket is missing", async () => {
    const bucket = `no-such-bucket-${run}`
    const { error, ms } = await startError({ bucket })
    expect(ms).toBeLessThan(5_000)
    expect(error.message).toContain(`S3 bucket '${bucket}' does not exist at ${s3.endpoint}`)
    expect(error.message).toContain("aws s3 mb")
  })

  it("fails start-up with a credentials message when the secret is wrong", async () => {
    const { error } = await startError({ credentials: { accessKeyId: s3.accessKeyId, secretAccessKey: "wrong-secret" } })
    expect(error.message).toContain(`S3 at ${s3.endpoint} refused the credentials for bucket '${s3.bucket}'`)
    expect(error.message).toContain("EDDY_S3_SECRET_KEY")
  })

  it("fails start-up with a credentials message when the access key is unknown", async () => {
    const { error } = await startError({ credentials: { accessKeyId: "nobody", secretAccessKey: "wrong-secret" } })
    expect(error.message).toContain("refused the credentials")
  })

  it("fails start-up within seconds when nothing listens at the endpoint", async () => {
    const endpoint = `http://127.0.0.1:${await closedPort()}`
    const { error, ms } = await startError({ endpoint })
    expect(ms).toBeLessThan(5_000)
    expect(error._tag).toBe("BlobStoreError")
    expect(error.message).toContain(`cannot reach S3 at ${endpoint}`)
    expect(error.message).toContain("npm run infra:up")
  })

  it("fails start-up within the start timeout when the endpoint accepts but never answers", async () => {
    const silent = await silentServer()
    try {
      const endpoint = `http://127.0.0.1:${silent.port}`
      const { error, ms } = await startError({ endpoint, startTimeoutMs: 2_000 })
      expect(ms).toBeLessThan(4_000)
      expect(error.message).toContain(`cannot reach S3 at ${endpoint}`)
    } finally {
      silent.close()
    }
  })

  it("refuses an invalid prefix", async () => {
    const { error } = await startError({ prefix: "a b" })
    expect(error.message).toContain("prefix")
  })
})

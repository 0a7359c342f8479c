/**
 * The BlobStore port on any S3-compatible server (AWS S3, MinIO, versitygw). Keys live under `prefix/` in the bucket
 * (the app name, typically), so one bucket can hold several apps. A PutObject is atomic: readers see the old object
 * or the new one. Start-up lists the bucket once, so a missing bucket, wrong credentials or an unreachable endpoint
 * fail the layer at once with a message saying what to do.
 */
import {
  DeleteObjectCommand,
  GetObjectCommand,
  ListObjectsV2Command,
  NoSuchKey,
  PutObjectCommand,
  S3Client,
  S3ServiceException,
} from "@aws-sdk/client-s3"
import { Effect, Layer, type Scope } from "effect"
import { readEndpoints } from "../config/Endpoints.ts"
import { checkKey, checkPrefix } from "../embedded/blobKeys.ts"
import { BlobStore, BlobStoreError, type BlobStoreService } from "../ports/BlobStore.ts"
import { s3Error, type S3Where } from "./s3Errors.ts"

export interface S3BlobStoreOptions {
  /** Default: EDDY_S3_BUCKET (runtime/config/Endpoints.ts). */
  readonly bucket?: string
  /** Keys are stored as `prefix/key`; empty or absent: at the bucket's root. */
  readonly prefix?: string
  /** Default: EDDY_S3_ENDPOINT. */
  readonly endpoint?: string
  /** Default: EDDY_S3_REGION. */
  readonly region?: string
  /** Default: EDDY_S3_ACCESS_KEY / EDDY_S3_SECRET_KEY. */
  readonly credentials?: { readonly accessKeyId: string; readonly secretAccessKey: string; readonly sessionToken?: string }
  /** Path-style addressing (`endpoint/bucket/key`). Default: EDDY_S3_FORCE_PATH_STYLE (true). */
  readonly forcePathStyle?: boolean
  /** TCP connect timeout per attempt (default 3 s). */
  readonly connectTimeoutMs?: number
  /** Whole-request timeout per attempt (default 60 s). */
  readonly requestTimeoutMs?: number
  /** Bound on the start-up check (default 5 s). */
  readonly startTimeoutMs?: number
  /** Attempts per operation, with the SDK's backoff (default 3). */
  readonly maxAttempts?: number
}

const byteOrder = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0)

const isMissing = (e: unknown): boolean =>
  e instanceof NoSuchKey || (e instanceof S3ServiceException && (e.name === "NotFound" || e.$metadata.httpStatusCode === 404))

export const makeS3BlobStore = (options: S3BlobStoreOptions = {}): Effect.Effect<BlobStoreService, BlobStoreError, Scope.Scope> =>
  Effect.gen(function* () {
    const env = yield* Effect.try({
      try: () => readEndpoints().s3,
      catch: (cause) => new BlobStoreError({ message: `S3 blob store: ${String(cause)}`, cause }),
    })
    const where: S3Where = { endpoint: options.endpoint ?? env.endpoint, bucket: options.bucket ?? env.bucket }
    const prefix = options.prefix ?? ""
    if (prefix !== "") {
      const invalid = checkKey(prefix)
      if (invalid) return yield* Effect.fail(new BlobStoreError({ message: `S3 blob store prefix: ${invalid.message}`, key: prefix }))
    }
    const root = prefix === "" ? "" : `${prefix}/`
    const client = yield* Effect.acquireRelease(
      Effect.sync(
        () =>
          new S3Client({
            endpoint: where.endpoint,
            region: options.region ?? env.region,
            forcePathStyle: options.forcePathStyle ?? env.forcePathStyle,
            credentials: options.credentials ?? { accessKeyId: env.accessKeyId, secretAccessKey: env.secretAccessKey },
            maxAttempts: options.maxAttempts ?? 3,
            requestHandler: {
              connectionTimeout: options.connectTimeoutMs ?? 3_000,
              requestTimeout: options.requestTimeoutMs ?? 60_000,
              throwOnRequestTimeout: true,
              httpAgent: { keepAlive: true, maxSockets: 64 },
            },
          }),
      ),
      (c) => Effect.sync(() => c.destroy()),
    )

    const s3 = <A>(what: string, key: string | undefined, f: (signal: AbortSignal) => Promise<A>): Effect.Effect<A, BlobStoreError> =>
      Effect.tryPromise({ try: f, catch: (cause) => s3Error(where, what, cause, key) })

    const withKey = <A>(key: string, what: string, f: (signal: AbortSignal) => Promise<A>): Effect.Effect<A, BlobStoreError> =>
      Effect.suspend(() => {
        const invalid = checkKey(key)
        return invalid ? Effect.fail(invalid) : s3(`${what} ${key}`, key, f)
      })

    const listFrom = (full: string, signal: AbortSignal, maxKeys?: number): Promise<Array<string>> =>
      (async () => {
        const keys: Array<string> = []
        let token: string | undefined
        do {
          const page = await client.send(
            new ListObjectsV2Command({ Bucket: where.bucket, Prefix: full, ContinuationToken: token, MaxKeys: maxKeys }),
            { abortSignal: signal },
          )
          for (const o of page.Contents ?? []) {
            // Some servers show "directories" as keys ending in '/': not objects of ours.
            if (o.Key !== undefined && o.Key.startsWith(root) && !o.Key.endsWith("/")) keys.push(o.Key.slice(root.length))
          }
          token = page.IsTruncated === true && maxKeys === undefined ? page.NextContinuationToken : undefined
        } while (token !== undefined)
        return keys.sort(byteOrder)
      })()

    // One request proves the endpoint answers, the credentials work and the bucket exists.
    const startTimeoutMs = options.startTimeoutMs ?? 5_000
    yield* s3(`list bucket '${where.bucket}'`, undefined, (signal) => listFrom(root, signal, 1)).pipe(
      Effect.timeoutFail({
        duration: startTimeoutMs,
        onTimeout: () =>
          new BlobStoreError({
            message: `cannot reach S3 at ${where.endpoint}: no answer within ${startTimeoutMs} ms — is it running? (npm run infra:up, or set EDDY_S3_ENDPOINT)`,
          }),
      }),
    )

    return {
      put: (key, bytes) =>
        withKey(key, "put", async (signal) => {
          await client.send(
            new PutObjectCommand({ Bucket: where.bucket, Key: root + key, Body: bytes, ContentLength: bytes.length }),
            { abortSignal: signal },
          )
        }),
      get: (key) =>
        withKey(key, "get", async (signal): Promise<Uint8Array | undefined> => {
          try {
            const out = await client.send(new GetObjectCommand({ Bucket: where.bucket, Key: root + key }), { abortSignal: signal })
            return out.Body === undefined ? new Uint8Array(0) : await out.Body.transformToByteArray()
          } catch (e) {
            if (isMissing(e)) return undefined
            throw e
          }
        }),
      list: (p) =>
        Effect.suspend(() => {
          const invalid = checkPrefix(p)
          return invalid ? Effect.fail(invalid) : s3(`list ${p === "" ? "all keys" : `keys under ${p}`}`, p, (signal) => listFrom(root + p, signal))
        }),
      delete: (key) =>
        withKey(key, "delete", async (signal) => {
          try {
            await client.send(new DeleteObjectCommand({ Bucket: where.bucket, Key: root + key }), { abortSignal: signal })
          } catch (e) {
            if (!isMissing(e)) throw e
          }
        }),
    } satisfies BlobStoreService
  })

export const S3BlobStore = {
  /** The BlobStore port on S3; defaults come from the EDDY_S3_* environment (runtime/config/Endpoints.ts). */
  layer: (options: S3BlobStoreOptions = {}): Layer.Layer<BlobStore, BlobStoreError> => Layer.scoped(BlobStore, makeS3BlobStore(options)),
  make: makeS3BlobStore,
} as const

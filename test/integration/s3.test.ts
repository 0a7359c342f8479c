// Smoke test against the real S3-compatible server that `npm run infra:up` starts (or EDDY_S3_ENDPOINT points to).
// It fails, never skips, when the server cannot be reached.
import { randomUUID } from "node:crypto"
import {
  CreateBucketCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  HeadBucketCommand,
  ListObjectsV2Command,
  NoSuchKey,
  PutObjectCommand,
  S3Client,
  S3ServiceException,
} from "@aws-sdk/client-s3"
import { describe, expect, it } from "vitest"
import { readEndpoints } from "../../runtime/config/Endpoints.ts"

const { s3 } = readEndpoints()

const client = new S3Client({
  endpoint: s3.endpoint,
  region: s3.region,
  forcePathStyle: s3.forcePathStyle,
  credentials: { accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey },
  maxAttempts: 2,
})

const ensureBucket = async (): Promise<void> => {
  try {
    await client.send(new HeadBucketCommand({ Bucket: s3.bucket }))
  } catch (e) {
    if (!(e instanceof S3ServiceException) || e.$metadata.httpStatusCode !== 404) throw e
    await client.send(new CreateBucketCommand({ Bucket: s3.bucket }))
  }
}

describe("S3 (real server)", () => {
  it("puts, gets, lists and deletes objects", async () => {
    await ensureBucket()
    const prefix = `eddy-smoke/${randomUUID()}/`
    const bytes = new Uint8Array([0, 1, 2, 254, 255])
    await client.send(new PutObjectCommand({ Bucket: s3.bucket, Key: `${prefix}b`, Body: bytes }))
    await client.send(new PutObjectCommand({ Bucket: s3.bucket, Key: `${prefix}a`, Body: "hello" }))

    const got = await client.send(new GetObjectCommand({ Bucket: s3.bucket, Key: `${prefix}b` }))
    expect(got.Body).toBeDefined()
    expect(await got.Body?.transformToByteArray()).toEqual(bytes)

    const listed = await client.send(new ListObjectsV2Command({ Bucket: s3.bucket, Prefix: prefix }))
    expect((listed.Contents ?? []).map((o) => o.Key)).toEqual([`${prefix}a`, `${prefix}b`])

    await client.send(new DeleteObjectCommand({ Bucket: s3.bucket, Key: `${prefix}a` }))
    await client.send(new DeleteObjectCommand({ Bucket: s3.bucket, Key: `${prefix}b` }))
    const after = await client.send(new ListObjectsV2Command({ Bucket: s3.bucket, Prefix: prefix }))
    expect(after.Contents ?? []).toEqual([])

    await expect(client.send(new GetObjectCommand({ Bucket: s3.bucket, Key: `${prefix}a` }))).rejects.toBeInstanceOf(
      NoSuchKey,
    )
  })
})

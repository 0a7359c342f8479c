/** Turns AWS SDK failures into BlobStoreErrors that name the endpoint and bucket and say what to do. */
import { BlobStoreError } from "../ports/BlobStore.ts"

export interface S3Where {
  readonly endpoint: string
  readonly bucket: string
}

interface SdkErrorShape {
  readonly name?: string
  readonly message?: string
  readonly code?: string
  readonly $metadata?: { readonly httpStatusCode?: number }
}

const shape = (e: unknown): SdkErrorShape => (typeof e === "object" && e !== null ? (e as SdkErrorShape) : { message: String(e) })

const CREDENTIALS = new Set([
  "InvalidAccessKeyId",
  "SignatureDoesNotMatch",
  "AccessDenied",
  "Forbidden",
  "InvalidToken",
  "ExpiredToken",
  "XAdminUserNotFound",
])

const UNREACHABLE = /ECONNREFUSED|ECONNRESET|ETIMEDOUT|EHOSTUNREACH|ENETUNREACH|ENOTFOUND|EAI_AGAIN|EPIPE|HPE_|socket hang up/

export type S3Problem = "missing-bucket" | "credentials" | "unreachable" | "other"

export const classify = (e: unknown): S3Problem => {
  const s = shape(e)
  if (s.name === "NoSuchBucket") return "missing-bucket"
  if (CREDENTIALS.has(s.name ?? "") || s.$metadata?.httpStatusCode === 403 || s.$metadata?.httpStatusCode === 401) return "credentials"
  if (s.name === "TimeoutError" || UNREACHABLE.test(`${s.code ?? ""} ${s.message ?? ""}`)) return "unreachable"
  return "other"
}

const reason = (e: unknown): string => {
  const s = shape(e)
  const status = s.$metadata?.httpStatusCode
  return `${s.name ?? "Error"}${status === undefined ? "" : ` (HTTP ${status})`}: ${s.message ?? String(e)}`
}

/** `what` says what was being done, e.g. "get snapshots/g1/s5/kg-3.bin". */
export const s3Error = (where: S3Where, what: string, cause: unknown, key?: string): BlobStoreError => {
  const { endpoint, bucket } = where
  let message: string
  switch (classify(cause)) {
    case "missing-bucket":
      message =
        `S3 bucket '${bucket}' does not exist at ${endpoint}: create it (npm run infra:up creates the default bucket; ` +
        `elsewhere: aws s3 mb s3://${bucket} --endpoint-url ${endpoint}) or set EDDY_S3_BUCKET to an existing bucket`
      break
    case "credentials":
      message =
        `S3 at ${endpoint} refused the credentials for bucket '${bucket}' while trying to ${what} (${reason(cause)}): ` +
        `check EDDY_S3_ACCESS_KEY and EDDY_S3_SECRET_KEY (or the credentials option) and the bucket's permissions`
      break
    case "unreachable":
      message = `cannot reach S3 at ${endpoint} while trying to ${what} — is it running? (npm run infra:up, or set EDDY_S3_ENDPOINT): ${reason(cause)}`
      break
    case "other":
      message = `S3 at ${endpoint}, bucket '${bucket}': cannot ${what}: ${reason(cause)}`
  }
  return new BlobStoreError({ message, cause, ...(key === undefined ? {} : { key }) })
}

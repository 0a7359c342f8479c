/**
 * BlobStore key rules shared by every implementation, so that a key valid in the embedded store is valid in S3 and
 * maps to exactly one file: '/'-separated segments of [A-Za-z0-9._=-], no empty, "." or ".." segments.
 */
import { BlobStoreError } from "../ports/BlobStore.ts"

const KEY_CHARS = /^[A-Za-z0-9._=/-]*$/

const problem = (s: string): string | undefined => {
  if (!KEY_CHARS.test(s)) return "only A-Z a-z 0-9 . _ = - and / are allowed"
  if (s.includes("..")) return `".." is not allowed`
  if (s.startsWith("/")) return "must not start with /"
  if (s.includes("//")) return "empty path segment"
  if (s === "." || s.startsWith("./") || s.includes("/./") || s.endsWith("/.")) return `"." segment`
  return undefined
}

export const checkKey = (key: string): BlobStoreError | undefined => {
  const why = key === "" ? "empty key" : key.endsWith("/") ? "must not end with /" : problem(key)
  return why === undefined ? undefined : new BlobStoreError({ message: `invalid blob key ${JSON.stringify(key)}: ${why}`, key })
}

/** A list prefix may be empty or end mid-segment or with '/'. */
export const checkPrefix = (prefix: string): BlobStoreError | undefined => {
  // Completing the last segment turns a prefix into a key of the same shape ("a/" and "a/." are fine prefixes).
  const why = problem(`${prefix}x`)
  return why === undefined
    ? undefined
    : new BlobStoreError({ message: `invalid blob key prefix ${JSON.stringify(prefix)}: ${why}`, key: prefix })
}

import { Context, Data, type Effect } from "effect"

export class BlobStoreError extends Data.TaggedError("BlobStoreError")<{
  readonly message: string
  readonly key?: string
  readonly cause?: unknown
}> {}

/**
 * The BlobStore port: snapshots and manifests. Keys are '/'-separated paths of [A-Za-z0-9._=-] segments.
 * `put` is atomic: a reader sees either nothing or the whole object.
 */
export interface BlobStoreService {
  readonly put: (key: string, bytes: Uint8Array) => Effect.Effect<void, BlobStoreError>
  /** The object, or undefined when no object has that key. */
  readonly get: (key: string) => Effect.Effect<Uint8Array | undefined, BlobStoreError>
  /** Keys starting with `prefix`, sorted ascending (byte order). */
  readonly list: (prefix: string) => Effect.Effect<ReadonlyArray<string>, BlobStoreError>
  /** Deleting a missing key is not an error. */
  readonly delete: (key: string) => Effect.Effect<void, BlobStoreError>
}

export class BlobStore extends Context.Tag("eddy/BlobStore")<BlobStore, BlobStoreService>() {}

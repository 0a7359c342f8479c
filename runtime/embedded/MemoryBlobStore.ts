/** An in-memory BlobStore for fast unit tests; the store outlives a layer build, so building again is a "reopen". */
import { Effect, Layer } from "effect"
import { BlobStore, type BlobStoreError, type BlobStoreService } from "../ports/BlobStore.ts"
import { checkKey, checkPrefix } from "./blobKeys.ts"

export type MemoryBlobStoreData = Map<string, Uint8Array>

const checked = <A>(error: BlobStoreError | undefined, f: () => A): Effect.Effect<A, BlobStoreError> =>
  error === undefined ? Effect.sync(f) : Effect.fail(error)

export const makeMemoryBlobStore = (data: MemoryBlobStoreData): BlobStoreService => ({
  // Copies in and out: callers may reuse or mutate their buffers.
  put: (key, bytes) => checked(checkKey(key), () => void data.set(key, bytes.slice())),
  get: (key) => checked(checkKey(key), () => data.get(key)?.slice()),
  list: (prefix) =>
    checked(checkPrefix(prefix), () =>
      [...data.keys()].filter((k) => k.startsWith(prefix)).sort((a, b) => (a < b ? -1 : a > b ? 1 : 0)),
    ),
  delete: (key) => checked(checkKey(key), () => void data.delete(key)),
})

export const MemoryBlobStore = {
  /** Each call without data gets a fresh store; building the returned layer again reopens that same store. */
  layer: (data: MemoryBlobStoreData = new Map()): Layer.Layer<BlobStore> =>
    Layer.sync(BlobStore, () => makeMemoryBlobStore(data)),
  make: makeMemoryBlobStore,
} as const

/**
 * A BlobStore for fault tests that fails some calls (seeded), as S3 does when the server restarts or a request
 * times out: a put, get, list or delete fails with BlobStoreError and changes nothing. Snapshot parts and manifests
 * then fail half-written, and start-ups that load a snapshot fail.
 */
import { Effect, Layer } from "effect"
import { BlobStore, BlobStoreError, type BlobStoreService } from "../../runtime/ports/BlobStore.ts"
import { makeMemoryBlobStore } from "../../runtime/embedded/MemoryBlobStore.ts"

export interface BlobFaults {
  /** Draws in [0, 1): a call fails when its draw is below `share`. */
  readonly random: () => number
  readonly share: number
  /** And these calls fail whatever the draw (numbered from 1 across every store sharing `stats`). */
  readonly failCalls?: ReadonlyArray<number>
}

export const flakyBlobStore = (data: Map<string, Uint8Array>, faults: BlobFaults, stats: { calls: number; failed: number }): Layer.Layer<BlobStore> => {
  const inner: BlobStoreService = makeMemoryBlobStore(data)
  const maybeFail = <A>(what: string, key: string, run: Effect.Effect<A, BlobStoreError>): Effect.Effect<A, BlobStoreError> =>
    Effect.suspend(() => {
      const n = ++stats.calls
      if (faults.random() >= faults.share && faults.failCalls?.includes(n) !== true) return run
      stats.failed++
      return Effect.fail(new BlobStoreError({ message: `simulated blob store: ${what} ${key} failed`, key }))
    })
  return Layer.succeed(BlobStore, {
    put: (key, bytes) => maybeFail("put", key, inner.put(key, bytes)),
    get: (key) => maybeFail("get", key, inner.get(key)),
    list: (prefix) => maybeFail("list", prefix, inner.list(prefix)),
    delete: (key) => maybeFail("delete", key, inner.delete(key)),
  })
}

import { mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { Effect } from "effect"
import { afterAll, describe, expect, it } from "vitest"
import { DirectoryBlobStore } from "../../runtime/embedded/DirectoryBlobStore.ts"
import { MemoryBlobStore } from "../../runtime/embedded/MemoryBlobStore.ts"
import { BlobStore } from "../../runtime/ports/BlobStore.ts"
import { blobStoreContract } from "../contracts/blobStoreContract.ts"

const dirs: Array<string> = []
const tempDir = (): string => {
  const dir = mkdtempSync(join(tmpdir(), "eddy-blobs-"))
  dirs.push(dir)
  return dir
}
afterAll(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true })
})

blobStoreContract("DirectoryBlobStore", () => DirectoryBlobStore.layer(tempDir()))
blobStoreContract("MemoryBlobStore", () => MemoryBlobStore.layer())

describe("DirectoryBlobStore", () => {
  it("stores key a/b/c as the file dir/a/b/c and leaves no temp files", async () => {
    const dir = tempDir()
    await Effect.runPromise(
      Effect.provide(
        Effect.flatMap(BlobStore, (s) => s.put("a/b/c", new Uint8Array([1, 2, 3]))),
        DirectoryBlobStore.layer(dir),
      ),
    )
    expect(readdirSync(join(dir, "a", "b"))).toEqual(["c"])
  })

  it("deletes every key of a folder at once (the folder goes with the last; no delete fails)", async () => {
    const dir = tempDir()
    // Several folders: the race (two deletes empty a folder, one removes it, the other syncs it) is likely, not sure.
    const keys = Array.from({ length: 120 }, (_, i) => `snapshots/s${i % 6}/p0/groups-${i}`)
    await Effect.runPromise(
      Effect.provide(
        Effect.flatMap(BlobStore, (s) =>
          Effect.gen(function* () {
            yield* Effect.forEach(keys, (k) => s.put(k, new Uint8Array([1])), { discard: true })
            yield* Effect.forEach(keys, (k) => s.delete(k), { concurrency: 16, discard: true })
          }),
        ),
        DirectoryBlobStore.layer(dir),
      ),
    )
    expect(readdirSync(dir).filter((f) => !f.startsWith("."))).toEqual([])
  })

  it("ignores and removes temp files left by a crash in the middle of a put", async () => {
    const dir = tempDir()
    const layer = DirectoryBlobStore.layer(dir)
    await Effect.runPromise(Effect.provide(Effect.flatMap(BlobStore, (s) => s.put("k/v", new Uint8Array([1]))), layer))
    writeFileSync(join(dir, "k", "w~123~0"), "half a snapshot")
    const keys = await Effect.runPromise(Effect.provide(Effect.flatMap(BlobStore, (s) => s.list("")), layer))
    expect(keys).toEqual(["k/v"])
    expect(readdirSync(join(dir, "k"))).toEqual(["v"])
  })

  it("fails with BlobStoreError when a key would be both an object and a folder", async () => {
    const result = await Effect.runPromise(
      Effect.provide(
        Effect.gen(function* () {
          const store = yield* BlobStore
          yield* store.put("a", new Uint8Array([1]))
          return yield* Effect.either(store.put("a/b", new Uint8Array([2])))
        }),
        DirectoryBlobStore.layer(tempDir()),
      ),
    )
    expect(result._tag === "Left" && result.left._tag).toBe("BlobStoreError")
  })
})

/**
 * The BlobStore port contract, run against every implementation (directory, memory, S3).
 *
 * `makeLayer()` must return a layer over fresh, empty storage each call; building that same layer value again
 * must reopen the same storage.
 */
import { Effect, Either, Layer } from "effect"
import { describe, expect, it } from "vitest"
import { BlobStore, type BlobStoreError } from "../../runtime/ports/BlobStore.ts"

const bytes = (s: string): Uint8Array => new TextEncoder().encode(s)
const text = (b: Uint8Array | undefined): string | undefined => (b === undefined ? undefined : new TextDecoder().decode(b))

const run = <A, E>(layer: Layer.Layer<BlobStore, unknown>, program: Effect.Effect<A, E, BlobStore>): Promise<A> =>
  Effect.runPromise(Effect.scoped(Effect.provide(program, layer)))

export const blobStoreContract = (name: string, makeLayer: () => Layer.Layer<BlobStore, unknown>): void => {
  describe(`BlobStore contract: ${name}`, () => {
    it("gets what was put, and undefined for a missing key", async () => {
      const [got, missing, nested] = await run(
        makeLayer(),
        Effect.gen(function* () {
          const store = yield* BlobStore
          yield* store.put("snapshots/g1/s5/kg-3.bin", bytes("state"))
          return [
            yield* store.get("snapshots/g1/s5/kg-3.bin"),
            yield* store.get("snapshots/g1/s5/kg-4.bin"),
            yield* store.get("nothing/here"),
          ] as const
        }),
      )
      expect(text(got)).toBe("state")
      expect(missing).toBeUndefined()
      expect(nested).toBeUndefined()
    })

    it("overwrites a key as a whole and stores empty and large objects exactly", async () => {
      const large = new Uint8Array(5 * 1024 * 1024).map((_, i) => (i * 31) & 0xff)
      const [small, empty, big] = await run(
        makeLayer(),
        Effect.gen(function* () {
          const store = yield* BlobStore
          yield* store.put("k", bytes("a much longer first version"))
          yield* store.put("k", bytes("v2"))
          yield* store.put("empty", new Uint8Array(0))
          yield* store.put("big", large)
          return [yield* store.get("k"), yield* store.get("empty"), yield* store.get("big")] as const
        }),
      )
      expect(text(small)).toBe("v2")
      expect(empty?.length).toBe(0)
      expect(Buffer.from(big ?? []).equals(Buffer.from(large))).toBe(true)
    })

    it("is not affected by callers mutating buffers they passed in or got back", async () => {
      const got = await run(
        makeLayer(),
        Effect.gen(function* () {
          const store = yield* BlobStore
          const input = bytes("abc")
          yield* store.put("x", input)
          input[0] = 0x7a
          const first = yield* store.get("x")
          if (first) first[1] = 0x7a
          return yield* store.get("x")
        }),
      )
      expect(text(got)).toBe("abc")
    })

    it("lists keys by plain string prefix, sorted by byte order", async () => {
      const keys = ["m/g1/s10", "m/g1/s9", "m/g10/s1", "m/g1-x", "m/g1.y", "m/g1=z", "n/a", "m/G1", "top"]
      const lists = await run(
        makeLayer(),
        Effect.gen(function* () {
          const store = yield* BlobStore
          for (const k of keys) yield* store.put(k, bytes(k))
          return {
            all: yield* store.list(""),
            m: yield* store.list("m/"),
            g1: yield* store.list("m/g1"),
            g1Folder: yield* store.list("m/g1/"),
            none: yield* store.list("zzz"),
            partial: yield* store.list("to"),
          }
        }),
      )
      const sorted = [...keys].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0))
      expect(lists.all).toEqual(sorted)
      expect(lists.m).toEqual(sorted.filter((k) => k.startsWith("m/")))
      // Byte order: '-' < '.' < '/' < '0' < '=' (not folder-first, not locale order).
      expect(lists.g1).toEqual(["m/g1-x", "m/g1.y", "m/g1/s10", "m/g1/s9", "m/g10/s1", "m/g1=z"])
      expect(lists.g1Folder).toEqual(["m/g1/s10", "m/g1/s9"])
      expect(lists.none).toEqual([])
      expect(lists.partial).toEqual(["top"])
    })

    it("deletes idempotently, and a key can be put again after its siblings are gone", async () => {
      const result = await run(
        makeLayer(),
        Effect.gen(function* () {
          const store = yield* BlobStore
          yield* store.put("a/b/c", bytes("1"))
          yield* store.put("a/b/d", bytes("2"))
          yield* store.delete("a/b/c")
          yield* store.delete("a/b/c")
          yield* store.delete("never/was")
          const afterOne = yield* store.list("a/")
          const gone = yield* store.get("a/b/c")
          yield* store.delete("a/b/d")
          const afterAll = yield* store.list("")
          yield* store.put("a/b", bytes("now an object"))
          return { afterOne, gone, afterAll, ab: yield* store.get("a/b") }
        }),
      )
      expect(result.afterOne).toEqual(["a/b/d"])
      expect(result.gone).toBeUndefined()
      expect(result.afterAll).toEqual([])
      expect(text(result.ab)).toBe("now an object")
    })

    it("rejects invalid keys and prefixes with BlobStoreError", async () => {
      const bad = ["", "../x", "a/../b", "a/..", "a b", "a\\b", "/abs", "a//b", "a/", "./a", "a/./b", "é", "a~b", "a:b"]
      const outcomes = await run(
        makeLayer(),
        Effect.gen(function* () {
          const store = yield* BlobStore
          const out: Array<string> = []
          for (const key of bad) {
            const ops: Array<Effect.Effect<unknown, BlobStoreError>> = [store.put(key, bytes("x")), store.get(key), store.delete(key)]
            for (const op of ops) {
              const r = yield* Effect.either(op)
              out.push(Either.isLeft(r) ? r.left._tag : `accepted ${JSON.stringify(key)}`)
            }
          }
          for (const prefix of ["..", "a/../", "/", "a b", "a//"]) {
            const r = yield* Effect.either(store.list(prefix))
            out.push(Either.isLeft(r) ? r.left._tag : `accepted prefix ${JSON.stringify(prefix)}`)
          }
          const okPrefixes = [yield* store.list(""), yield* store.list("a/"), yield* store.list("a/.")]
          return { out, okPrefixes }
        }),
      )
      expect(new Set(outcomes.out)).toEqual(new Set(["BlobStoreError"]))
      expect(outcomes.okPrefixes).toEqual([[], [], []])
    })

    it("accepts every allowed character", async () => {
      const key = "AZaz09._=-/x.y_z=w-v"
      const got = await run(
        makeLayer(),
        Effect.gen(function* () {
          const store = yield* BlobStore
          yield* store.put(key, bytes("ok"))
          return [yield* store.get(key), yield* store.list("AZ")] as const
        }),
      )
      expect(text(got[0])).toBe("ok")
      expect(got[1]).toEqual([key])
    })

    it("reopening sees the same objects", async () => {
      const layer = makeLayer()
      await run(
        layer,
        Effect.gen(function* () {
          const store = yield* BlobStore
          yield* store.put("manifest/g1/s3", bytes("m3"))
          yield* store.put("snap/g1/s3/0", bytes("s0"))
          yield* store.put("gone", bytes("x"))
          yield* store.delete("gone")
        }),
      )
      const [keys, m] = await run(
        layer,
        Effect.gen(function* () {
          const store = yield* BlobStore
          return [yield* store.list(""), yield* store.get("manifest/g1/s3")] as const
        }),
      )
      expect(keys).toEqual(["manifest/g1/s3", "snap/g1/s3/0"])
      expect(text(m)).toBe("m3")
    })

    it("survives concurrent puts to one key: the object is one of the versions, whole", async () => {
      const versions = Array.from({ length: 8 }, (_, i) => bytes(String(i).repeat(10_000 + i)))
      const got = await run(
        makeLayer(),
        Effect.gen(function* () {
          const store = yield* BlobStore
          yield* Effect.all(
            versions.map((v) => store.put("race/key", v)),
            { concurrency: "unbounded" },
          )
          return [yield* store.get("race/key"), yield* store.list("race/")] as const
        }),
      )
      expect(versions.some((v) => Buffer.from(v).equals(Buffer.from(got[0] ?? [])))).toBe(true)
      expect(got[1]).toEqual(["race/key"])
    })
  })
}

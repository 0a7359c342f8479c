import { describe, expect, it } from "vitest"
import { canonicalKey, keyGroupOf, murmur3, ownerOf } from "../../runtime/engine/keys.ts"

// Key groups are fixed forever: these values must never change, or existing data lands in the wrong group.
describe("keys", () => {
  it("murmur3 matches the reference MurmurHash3_x86_32 vectors, ASCII and not", () => {
    expect(murmur3("", 0)).toBe(0)
    expect(murmur3("a")).toBe(0x7fa09ea6)
    expect(murmur3("Hello, world!")).toBe(0x24884cba)
    expect(murmur3("The quick brown fox jumps over the lazy dog", 0)).toBe(0x2e4ff723)
    // Non-ASCII text is hashed as its UTF-8 bytes (c3 a9 for "é"); pinned so the slow path never drifts.
    expect(murmur3("é", 0)).toBe(269551495)
    expect(murmur3("é", 0)).not.toBe(murmur3("e", 0))
  })

  it("canonical keys keep types apart and fold -0 into 0", () => {
    expect(canonicalKey(1)).not.toBe(canonicalKey("1"))
    expect(canonicalKey(-0)).toBe(canonicalKey(0))
    expect(canonicalKey(1n)).not.toBe(canonicalKey(1))
    expect(canonicalKey(true)).not.toBe(canonicalKey("t"))
    expect(canonicalKey(["a", 1])).not.toBe(canonicalKey(["a1"]))
    expect(canonicalKey([["a"], "b"])).not.toBe(canonicalKey(["a", ["b"]]))
    expect(() => canonicalKey({ a: 1 } as never)).toThrow(/key must be/)
  })

  it("key groups are stable values and partitions own contiguous ranges", () => {
    expect(keyGroupOf(canonicalKey("user-42"), 128)).toBe(murmur3("suser-42") % 128)
    expect(keyGroupOf(canonicalKey(7), 256)).toBe(murmur3("n7") % 256)
    const owners = Array.from({ length: 128 }, (_, kg) => ownerOf(kg, 128, 3))
    expect(owners[0]).toBe(0)
    expect(owners[127]).toBe(2)
    for (let i = 1; i < owners.length; i++) expect(owners[i]! - owners[i - 1]!).toBeGreaterThanOrEqual(0)
    expect(new Set(owners).size).toBe(3)
  })
})

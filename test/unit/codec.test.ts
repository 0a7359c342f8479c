// Checked mode copies values directly when they are small plain trees; the copy must be exactly what the codec's
// round trip gives (types, prototypes, key order, -0, holes, shared and cyclic references), and whatever the
// direct copy does not handle must still go through the codec (and fail as the codec fails).
import { deserialize, serialize } from "node:v8"
import { describe, expect, it } from "vitest"
import { checkedCopy, decode, encode, CODEC_VERSION } from "../../runtime/engine/codec.ts"

/** Same shape: types, prototypes, own keys in order, primitive values (Object.is), and the same sharing. */
const sameShape = (a: unknown, b: unknown, pairs = new Map<object, object>()): boolean => {
  if (typeof a !== "object" || a === null || typeof b !== "object" || b === null) return Object.is(a, b)
  const known = pairs.get(a)
  if (known !== undefined) return known === b
  if ([...pairs.values()].includes(b)) return false
  pairs.set(a, b)
  if (Object.getPrototypeOf(a) !== Object.getPrototypeOf(b) || Array.isArray(a) !== Array.isArray(b)) return false
  if (a instanceof Map || a instanceof Set || a instanceof Date || ArrayBuffer.isView(a)) return true // codec-only types: compared by the codec path
  const ka = Reflect.ownKeys(a)
  const kb = Reflect.ownKeys(b)
  if (ka.length !== kb.length || ka.some((k, i) => k !== kb[i])) return false
  return ka.every((k) => sameShape((a as Record<PropertyKey, unknown>)[k], (b as Record<PropertyKey, unknown>)[k], pairs))
}

const roundTrip = (v: unknown): unknown => deserialize(serialize(v))

/** A seeded generator of plain values: nested objects and arrays, odd keys, shared and cyclic references. */
const generate = (seed: number) => {
  let s = seed >>> 0
  const rnd = (n: number): number => {
    s = (Math.imul(s ^ (s >>> 15), 0x2c1b3c6d) + 0x6d2b79f5) >>> 0
    return s % n
  }
  const pool: object[] = []
  const prim = (): unknown => [0, -0, 1.5, NaN, -7, "", "x", "é", true, false, null, undefined, 10n, Infinity][rnd(14)]
  const keys = ["a", "b", "1", "0", "10", "z", "long key", "", "-1", "constructor"]
  const value = (depth: number): unknown => {
    const r = rnd(10)
    if (depth > 3 || r < 4) return prim()
    if (r === 4 && pool.length > 0) return pool[rnd(pool.length)] // shared (or cyclic, if an ancestor)
    if (r < 7) {
      const arr: unknown[] = []
      pool.push(arr)
      const n = rnd(5)
      for (let i = 0; i < n; i++) arr.push(value(depth + 1))
      return arr
    }
    const obj: Record<string, unknown> = rnd(6) === 0 ? (Object.create(null) as Record<string, unknown>) : {}
    pool.push(obj)
    const n = rnd(5)
    for (let i = 0; i < n; i++) obj[keys[rnd(keys.length)]!] = value(depth + 1)
    return obj
  }
  return value(0)
}

describe("checked copies", () => {
  it("equal the codec's round trip on 5000 generated plain values", () => {
    for (let seed = 1; seed <= 5000; seed++) {
      const v = generate(seed)
      const copy = checkedCopy(v)
      expect(sameShape(copy, roundTrip(v)), `seed ${seed}`).toBe(true)
      if (typeof v === "object" && v !== null) expect(copy).not.toBe(v)
    }
  })

  it("keep shared and cyclic references as one object, like the codec", () => {
    const shared = { n: 1 }
    const v: Record<string, unknown> = { a: shared, b: [shared, shared] }
    v["self"] = v
    const copy = checkedCopy(v) as typeof v
    expect(copy["self"]).toBe(copy)
    expect(copy["a"]).toBe((copy["b"] as unknown[])[1])
    expect(copy["a"]).not.toBe(shared)
    expect(sameShape(copy, roundTrip(v))).toBe(true)
  })

  it("leave what they do not copy exactly to the codec", () => {
    const holey = [1, , 3] // eslint-disable-line no-sparse-arrays
    const extra = Object.assign([1, 2], { tag: "x" })
    const proto = JSON.parse('{"__proto__": {"x": 1}, "y": 2}') as unknown
    const big = Array.from({ length: 500 }, (_, i) => ({ i }))
    const rich = { when: new Date(5), m: new Map([[1, { a: 1 }]]), s: new Set([1]), b: Buffer.from("ab"), u: new Uint8Array([1, 2]) }
    for (const v of [holey, extra, proto, big, rich]) expect(sameShape(checkedCopy(v), roundTrip(v))).toBe(true)
    expect(1 in (checkedCopy(holey) as unknown[])).toBe(false)
    expect((checkedCopy(extra) as unknown as { tag: string }).tag).toBe("x")
    expect(Object.keys(checkedCopy(proto) as object)).toEqual(["__proto__", "y"])
    expect(Buffer.isBuffer((checkedCopy(rich) as typeof rich).b)).toBe(true)
  })

  it("fail where the codec fails: proxies, arguments objects, module namespaces, class instances, functions", async () => {
    const args = (function (..._xs: unknown[]) {
      // eslint-disable-next-line prefer-rest-params
      return arguments
    })(1, 2)
    const ns = await import("../../runtime/engine/codec.ts")
    for (const v of [new Proxy({ a: 1 }, {}), new Proxy([1], {}), { inner: args }, { ns }]) {
      expect(() => roundTrip(v)).toThrow()
      expect(() => checkedCopy(v)).toThrow()
    }
    expect(() => checkedCopy({ f: () => 1 })).toThrow(/field 'f'/)
    expect(() => checkedCopy([new (class Point {})()])).toThrow(/class Point/)
  })

  it("primitives are their own copy", () => {
    for (const v of [0, -0, NaN, "s", 5n, true, undefined, null]) expect(Object.is(checkedCopy(v), v)).toBe(true)
  })
})

describe("codec", () => {
  it("writes the version byte and then exactly node:v8's serialization", () => {
    const v = { a: [1, 2, { b: new Map([["k", 1n]]) }], d: new Date(0) }
    const bytes = encode(v)
    expect(bytes[0]).toBe(CODEC_VERSION)
    expect(Buffer.from(bytes.subarray(1)).equals(serialize(v))).toBe(true)
    expect(sameShape(decode(bytes), roundTrip(v))).toBe(true)
  })
})

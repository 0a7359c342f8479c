import superjson from "superjson"
import { describe, expect, it } from "vitest"
import { decodeBody, encodeBody, isPlainJson } from "../../client/wire.ts"

const shared = { x: 1 }
const holey: unknown[] = []
holey[1] = 1
const values: ReadonlyArray<readonly [string, unknown, boolean]> = [
  ["a number", 1, true],
  ["a string", "é\u2028", true],
  ["null", null, true],
  ["nested plain", { a: 1, b: [1, { c: "x", d: [true, false, null] }] }, true],
  ["a null-prototype object", Object.assign(Object.create(null) as object, { a: 1 }), true],
  ["undefined in an object", { a: undefined }, false],
  ["undefined in an array", [undefined], false],
  ["a hole", holey, false],
  ["NaN", NaN, false],
  ["-0", -0, false],
  ["Infinity", { n: Infinity }, false],
  ["a Date", { at: new Date(0) }, false],
  ["a Map", new Map([[1, 2]]), false],
  ["a Set", [new Set([1])], false],
  ["a BigInt", { n: 10n }, false],
  ["a class instance", new (class P { a = 1 })(), false],
  ["a shared object", { a: shared, b: shared }, false],
]

describe("the wire format", () => {
  it.each(values)("writes %s exactly as superjson does, and reads it back", (_what, value, plain) => {
    expect(isPlainJson(value)).toBe(plain)
    const text = encodeBody(value, true)
    expect(text).toBe(JSON.stringify(superjson.serialize(value)))
    expect(JSON.stringify(superjson.serialize(decodeBody(text, true)))).toBe(text)
  })

  it("refuses prototype keys at any depth, with the fast path or without", () => {
    for (const rich of [false, true]) {
      const wrap = (doc: string) => (rich ? `{"json":${doc}}` : doc)
      expect(() => decodeBody(wrap('{"a":[{"b":{"__proto__":{"p":1}}}]}'), rich)).toThrow(TypeError)
      expect(() => decodeBody(wrap('{"constructor":{"prototype":{}}}'), rich)).toThrow(TypeError)
      // The words inside a string value are fine.
      expect(decodeBody(wrap('{"note":"see __proto__ and constructor"}'), rich)).toEqual({ note: "see __proto__ and constructor" })
    }
    expect(() => decodeBody('{"json":{"a":1},"meta":{"values":{"__proto__":["undefined"]}}}', true)).toThrow(TypeError)
  })

  it("reads superjson documents with annotations", () => {
    const v = { at: new Date(5), m: new Map([["k", 1n]]), u: undefined }
    expect(decodeBody(JSON.stringify(superjson.serialize(v)), true)).toEqual(v)
    expect(() => decodeBody('{"value":1}', true)).toThrow(TypeError)
  })
})

// File and console sinks write JSON through toJson: plain values skip the replacer (faster), and the text must be
// exactly what the replacer gives for every value, rich types included.
import { describe, expect, it } from "vitest"
import { toJson } from "../../workflows/json.ts"

const withReplacer = (v: unknown): string =>
  JSON.stringify(v, (_k, x: unknown) => (typeof x === "bigint" ? x.toString() : x instanceof Map ? [...x.entries()] : x instanceof Set ? [...x] : x))

const deep = (n: number, leaf: unknown): unknown => (n === 0 ? leaf : [deep(n - 1, leaf)])

describe("sink JSON", () => {
  it("equals the replacer's output for plain and rich values", () => {
    const nested = { a: [1, { b: new Map([["k", new Set([1n, 2n])]]) }], d: new Date(0) }
    const values: unknown[] = [
      1, -0, NaN, "s", true, null, undefined, 5n, [1, "x", null], { a: 1, b: [2, { c: "d" }], u: undefined },
      { when: new Date(86400000) }, new Map([[1, 2]]), new Set(["a"]), nested, { big: [1n] }, new Uint8Array([1, 2]),
      { toJSON: () => new Map([[1, 2]]) }, { deep: deep(40, [1]) }, { deepRich: deep(40, [1n]) },
      Object.assign(Object.create(null) as object, { x: 1 }),
    ]
    for (const v of values) expect(toJson(v)).toBe(withReplacer(v))
  })

  it("fails on a cycle as before", () => {
    const a: Record<string, unknown> = {}
    a["self"] = a
    expect(() => toJson(a)).toThrow(TypeError)
  })
})

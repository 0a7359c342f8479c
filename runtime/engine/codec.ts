import { types } from "node:util"
import { DefaultSerializer, deserialize, serialize } from "node:v8"

/**
 * The binary codec for log records, snapshots and messages between processes: node:v8's structured clone.
 * Measured (DESIGN.md) ≈ 1.5 M objects/s with the rich types superjson covers (Date, Map, Set, BigInt, undefined),
 * 5-10x superjson. Every encoded buffer starts with a format byte so the format can change later.
 */
export const CODEC_VERSION = 1

export { UnserializableError, findUnserializable } from "../../workflows/serializable.ts"
import { UnserializableError, findUnserializable } from "../../workflows/serializable.ts"

const VERSION_BYTE = Buffer.from([CODEC_VERSION])

/** The version byte, then exactly what node:v8 serialize() writes (written in place: no copy of the body). */
export const encode = (value: unknown): Uint8Array => {
  try {
    const ser = new DefaultSerializer()
    ser.writeRawBytes(VERSION_BYTE)
    ser.writeHeader()
    ser.writeValue(value)
    return ser.releaseBuffer()
  } catch (e) {
    throw findUnserializable(value) ?? new UnserializableError("", e instanceof Error ? e.message : String(e))
  }
}

export const decode = (bytes: Uint8Array): unknown => {
  if (bytes[0] !== CODEC_VERSION) throw new Error(`unknown codec version ${bytes[0]}`)
  return deserialize(bytes.subarray(1))
}

/**
 * Checked mode: a value crossing a boundary becomes an independent copy, and a bad one fails where it was sent. The
 * copy is what a round trip through the codec gives; small trees of plain objects and arrays (the usual message)
 * are copied directly, ~10x faster than the round trip (see fastCopy), anything else goes through the codec.
 */
export const checkedCopy = <T>(value: T): T => {
  const bad = findUnserializable(value)
  if (bad) throw bad
  // A primitive that passed the check (no symbol) is its own copy.
  if (typeof value !== "object" || value === null) return value
  const seen: unknown[] = []
  const copy = fastCopy(value, seen)
  return (copy === NOT_PLAIN ? deserialize(serialize(value)) : copy) as T
}

const NOT_PLAIN: unique symbol = Symbol("not plain")
/** Objects a direct copy handles (pairs in `seen`); beyond, the codec's own bookkeeping is cheaper. */
const FAST_OBJECTS = 32
const FAST_WIDTH = 64

/**
 * The codec round trip of `value`, computed directly, or NOT_PLAIN. Handles only what it reproduces exactly:
 * primitives, arrays without holes or extra properties (Array.prototype), and objects whose prototype is
 * Object.prototype or null (a copy's is Object.prototype, as after deserialize), own enumerable string keys in
 * Object.keys order; a repeated object (shared or cyclic) stays one object, as the codec keeps it. Everything else
 * (Map, Set, Date, typed arrays, a __proto__ key, proxies and other exotic objects, large values) is left to the
 * codec, which copies it or throws as before.
 */
const fastCopy = (value: unknown, seen: unknown[]): unknown => {
  if (typeof value !== "object" || value === null) return value
  for (let i = 0; i < seen.length; i += 2) if (seen[i] === value) return seen[i + 1]
  // Proxies, arguments objects and module namespaces look plain but the codec refuses them.
  if (seen.length >= 2 * FAST_OBJECTS || types.isProxy(value)) return NOT_PLAIN
  if (Array.isArray(value)) {
    const n = value.length
    if (n > FAST_WIDTH || Object.getPrototypeOf(value) !== Array.prototype) return NOT_PLAIN
    const out: unknown[] = []
    seen.push(value, out)
    for (let i = 0; i < n; i++) {
      if (!(i in value)) return NOT_PLAIN
      const c = fastCopy(value[i], seen)
      if (c === NOT_PLAIN) return NOT_PLAIN
      out.push(c)
    }
    // Non-index properties of an array travel too; leave such arrays to the codec.
    if (Object.keys(value).length !== n) return NOT_PLAIN
    return out
  }
  const proto = Object.getPrototypeOf(value) as unknown
  if ((proto !== Object.prototype && proto !== null) || types.isArgumentsObject(value) || types.isModuleNamespaceObject(value)) return NOT_PLAIN
  const keys = Object.keys(value)
  if (keys.length > FAST_WIDTH) return NOT_PLAIN
  const out: Record<string, unknown> = {}
  seen.push(value, out)
  for (const k of keys) {
    if (k === "__proto__") return NOT_PLAIN
    const c = fastCopy((value as Record<string, unknown>)[k], seen)
    if (c === NOT_PLAIN) return NOT_PLAIN
    out[k] = c
  }
  return out
}

/** Checked mode: state returned by a handler may not be mutated later (Maps and Sets stay mutable; documented). */
export const deepFreeze = <T>(value: T): T => {
  if (typeof value === "object" && value !== null && !ArrayBuffer.isView(value) && !Object.isFrozen(value)) {
    Object.freeze(value)
    if (value instanceof Map) for (const v of value.values()) deepFreeze(v)
    else if (value instanceof Set) for (const v of value) deepFreeze(v)
    else for (const k of Object.keys(value)) deepFreeze((value as Record<string, unknown>)[k])
  }
  return value
}

/**
 * What may be stored or sent: plain data of the types the codec round-trips (objects, arrays, Map, Set, Date,
 * BigInt, undefined, RegExp, typed arrays, Error). Shared by the runtime (checked mode) and libraries that validate
 * at their own boundaries (the actor library's send).
 */
export class UnserializableError extends Error {
  override readonly name = "UnserializableError"
  constructor(
    readonly path: string,
    readonly reason: string,
  ) {
    super(`cannot serialize ${path === "" ? "the value" : `field '${path}'`}: ${reason}`)
  }
}

const plainPrototypes = new Set<object | null>([Object.prototype, null])

type Problem = { readonly reason: string; readonly path: string[] }

const problem = (reason: string): Problem => ({ reason, path: [] })

/** Walks the value; the path is built only on the way back from a problem (the common case allocates nothing). */
const check = (value: unknown, seen: Set<object> | undefined): Problem | undefined => {
  switch (typeof value) {
    case "function":
      return problem("a function cannot be stored or sent; register code by name and send data")
    case "symbol":
      return problem("a symbol cannot be stored or sent")
    case "object": {
      if (value === null) return undefined
      if (seen !== undefined) {
        if (seen.has(value)) return undefined
        seen.add(value)
      }
      if (Array.isArray(value)) {
        for (let i = 0; i < value.length; i++) {
          const bad = check(value[i], seen)
          if (bad) return bad.path.unshift(`[${i}]`), bad
        }
        return undefined
      }
      const proto = Object.getPrototypeOf(value) as object | null
      if (plainPrototypes.has(proto)) {
        for (const k in value) {
          const bad = check((value as Record<string, unknown>)[k], seen)
          if (bad) return bad.path.unshift(`.${k}`), bad
        }
        return undefined
      }
      if (value instanceof Map) {
        for (const [k, v] of value) {
          const bk = check(k, seen)
          if (bk) return bk.path.unshift("<key>"), bk
          const bv = check(v, seen)
          if (bv) return bv.path.unshift(`.get(${String(k)})`), bv
        }
        return undefined
      }
      if (value instanceof Set) {
        for (const v of value) {
          const bad = check(v, seen)
          if (bad) return bad.path.unshift("<element>"), bad
        }
        return undefined
      }
      if (value instanceof Date || value instanceof RegExp || ArrayBuffer.isView(value) || value instanceof ArrayBuffer || value instanceof Error) return undefined
      const name = (value as { constructor?: { name?: string } }).constructor?.name ?? "unknown"
      return problem(`an instance of class ${name} would come back as a plain object; send plain data`)
    }
    default:
      return undefined
  }
}

/**
 * The first field that does not survive a round trip: functions, symbols, promises, class instances (which would
 * come back as plain objects, silently breaking `instanceof` and methods after a restart). Cycles are allowed.
 */
export const findUnserializable = (value: unknown, path = ""): UnserializableError | undefined => {
  if (typeof value !== "object" || value === null) {
    const bad = check(value, undefined)
    return bad === undefined ? undefined : new UnserializableError(path, bad.reason)
  }
  // Depth-first without a seen-set first (fast); a cyclic value would recurse forever, so fall back on overflow.
  let bad: Problem | undefined
  try {
    bad = check(value, undefined)
  } catch (err) {
    if (!(err instanceof RangeError)) throw err
    bad = check(value, new Set())
  }
  if (bad === undefined) return undefined
  const rel = bad.path.join("")
  const full = path + (path === "" && rel.startsWith(".") ? rel.slice(1) : rel)
  return new UnserializableError(full, bad.reason)
}

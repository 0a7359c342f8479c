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

/**
 * The first field that does not survive a round trip: functions, symbols, promises, class instances (which would
 * come back as plain objects, silently breaking `instanceof` and methods after a restart).
 */
export const findUnserializable = (value: unknown, path = "", seen = new Set<object>()): UnserializableError | undefined => {
  switch (typeof value) {
    case "function":
      return new UnserializableError(path, "a function cannot be stored or sent; register code by name and send data")
    case "symbol":
      return new UnserializableError(path, "a symbol cannot be stored or sent")
    case "object": {
      if (value === null || seen.has(value)) return undefined
      seen.add(value)
      if (Array.isArray(value)) {
        for (let i = 0; i < value.length; i++) {
          const bad = findUnserializable(value[i], `${path}[${i}]`, seen)
          if (bad) return bad
        }
        return undefined
      }
      if (value instanceof Map) {
        for (const [k, v] of value) {
          const bad = findUnserializable(k, `${path}<key>`, seen) ?? findUnserializable(v, `${path}.get(${String(k)})`, seen)
          if (bad) return bad
        }
        return undefined
      }
      if (value instanceof Set) {
        for (const v of value) {
          const bad = findUnserializable(v, `${path}<element>`, seen)
          if (bad) return bad
        }
        return undefined
      }
      if (value instanceof Date || value instanceof RegExp || ArrayBuffer.isView(value) || value instanceof ArrayBuffer) return undefined
      if (value instanceof Error) return undefined
      if (!plainPrototypes.has(Object.getPrototypeOf(value))) {
        const name = (value as { constructor?: { name?: string } }).constructor?.name ?? "unknown"
        return new UnserializableError(path, `an instance of class ${name} would come back as a plain object; send plain data`)
      }
      for (const k of Object.keys(value)) {
        const bad = findUnserializable((value as Record<string, unknown>)[k], path === "" ? k : `${path}.${k}`, seen)
        if (bad) return bad
      }
      return undefined
    }
    default:
      return undefined
  }
}


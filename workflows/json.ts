/** How sinks write values as JSON by default (file sinks, Kafka sinks without `encode`). */

const richReplacer = (_k: string, x: unknown): unknown =>
  typeof x === "bigint" ? x.toString() : x instanceof Map ? [...x.entries()] : x instanceof Set ? [...x] : x

/** No BigInt, Map, Set or custom toJSON anywhere: the replacer would change nothing (it costs 2-3x per value). */
const plainJson = (v: unknown, depth: number): boolean => {
  if (typeof v === "bigint") return false
  if (typeof v !== "object" || v === null) return true
  if (depth > 32) return false
  if (Array.isArray(v)) {
    for (const x of v) if (!plainJson(x, depth + 1)) return false
    return true
  }
  if (v instanceof Date) return true
  if (v instanceof Map || v instanceof Set || typeof (v as { toJSON?: unknown }).toJSON === "function") return false
  for (const k of Object.keys(v)) if (!plainJson((v as Record<string, unknown>)[k], depth + 1)) return false
  return true
}

/** JSON for sink files: BigInt as a string, Map and Set as arrays, Date as ISO text. */
export const toJson = (v: unknown): string => (plainJson(v, 0) ? JSON.stringify(v) : JSON.stringify(v, richReplacer))

import type { Key } from "../../workflows/Key.ts"

/**
 * The canonical encoding of a key. Fixed forever: key groups, state and snapshots depend on it.
 * Tags keep types apart (1 and "1" differ); -0 encodes as 0; tuples nest with length prefixes.
 */
export const canonicalKey = (key: Key): string => {
  switch (typeof key) {
    case "string":
      return "s" + key
    case "number":
      return "n" + (key === 0 ? "0" : String(key))
    case "bigint":
      return "b" + key.toString()
    case "boolean":
      return key ? "t" : "f"
    case "object":
      if (Array.isArray(key)) {
        let out = "["
        for (const part of key as ReadonlyArray<Key>) {
          const enc = canonicalKey(part)
          out += enc.length + ":" + enc
        }
        return out + "]"
      }
  }
  throw new TypeError(`a key must be a string, number, bigint, boolean or a tuple of those; got ${describe(key)}`)
}

const describe = (v: unknown): string =>
  v === null ? "null" : typeof v === "object" ? `an object (${(v as object).constructor?.name ?? "no prototype"})` : typeof v

const encoder = new TextEncoder()

const C1 = 0xcc9e2d51
const C2 = 0x1b873593

const mixK = (k: number): number => {
  k = Math.imul(k, C1)
  k = (k << 15) | (k >>> 17)
  return Math.imul(k, C2)
}

const mixH = (h: number, k: number): number => {
  h ^= mixK(k)
  h = (h << 13) | (h >>> 19)
  return (Math.imul(h, 5) + 0xe6546b64) | 0
}

const finish = (h: number, len: number): number => {
  h ^= len
  h ^= h >>> 16
  h = Math.imul(h, 0x85ebca6b)
  h ^= h >>> 13
  h = Math.imul(h, 0xc2b2ae35)
  h ^= h >>> 16
  return h >>> 0
}

/** MurmurHash3 of ASCII text read straight from its char codes (ASCII is its own UTF-8); -1 if not ASCII. */
const murmurAscii = (text: string, seed: number): number => {
  const len = text.length
  let h = seed | 0
  const tail = len & ~3
  for (let o = 0; o < tail; o += 4) {
    const c0 = text.charCodeAt(o)
    const c1 = text.charCodeAt(o + 1)
    const c2 = text.charCodeAt(o + 2)
    const c3 = text.charCodeAt(o + 3)
    if ((c0 | c1 | c2 | c3) > 0x7f) return -1
    h = mixH(h, c0 | (c1 << 8) | (c2 << 16) | (c3 << 24))
  }
  const rest = len & 3
  if (rest > 0) {
    let k = 0
    for (let i = rest - 1; i >= 0; i--) {
      const c = text.charCodeAt(tail + i)
      if (c > 0x7f) return -1
      k = (k << 8) | c
    }
    h ^= mixK(k)
  }
  return finish(h, len)
}

const murmurBytes = (data: Uint8Array, seed: number): number => {
  const len = data.length
  let h = seed | 0
  const tail = len & ~3
  for (let o = 0; o < tail; o += 4) h = mixH(h, data[o]! | (data[o + 1]! << 8) | (data[o + 2]! << 16) | (data[o + 3]! << 24))
  const rest = len & 3
  if (rest > 0) {
    let k = 0
    for (let i = rest - 1; i >= 0; i--) k = (k << 8) | data[tail + i]!
    h ^= mixK(k)
  }
  return finish(h, len)
}

/** MurmurHash3 (x86, 32-bit) of the UTF-8 bytes: stable across platforms and versions. */
export const murmur3 = (text: string, seed = 0x9747b28c): number => {
  const h = murmurAscii(text, seed)
  return h >= 0 ? h : murmurBytes(encoder.encode(text), seed)
}

/** Key group of a canonical key. */
export const keyGroupOf = (canonical: string, keyGroups: number): number => murmur3(canonical) % keyGroups

/** Key groups are assigned to partitions in contiguous ranges, so a rescale moves whole ranges. */
export const ownerOf = (keyGroup: number, keyGroups: number, partitions: number): number =>
  Math.floor((keyGroup * partitions) / keyGroups)

/** The key a canonical encoding stands for (inverse of canonicalKey). */
export const parseCanonicalKey = (ks: string): Key => {
  const [key, end] = parseAt(ks, 0, ks.length)
  if (end !== ks.length) throw new Error(`not a canonical key: ${ks}`)
  return key
}

const parseAt = (ks: string, at: number, end: number): [Key, number] => {
  const tag = ks[at]
  const body = ks.slice(at + 1, end)
  switch (tag) {
    case "s":
      return [body, end]
    case "n":
      return [Number(body), end]
    case "b":
      return [BigInt(body), end]
    case "t":
      return [true, at + 1]
    case "f":
      return [false, at + 1]
    case "[": {
      const parts: Key[] = []
      let i = at + 1
      while (ks[i] !== "]") {
        const colon = ks.indexOf(":", i)
        const len = Number(ks.slice(i, colon))
        const [part] = parseAt(ks, colon + 1, colon + 1 + len)
        parts.push(part)
        i = colon + 1 + len
      }
      return [parts, i + 1]
    }
  }
  throw new Error(`not a canonical key: ${ks}`)
}

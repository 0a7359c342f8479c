// The record decoder of kafkajs/kafkajsDecoding.ts returns exactly what kafkajs's own returns.
import { createRequire } from "node:module"
import { describe, expect, it } from "vitest"
import { randomInputs, seeded } from "../helpers.ts"
import { originalRecord } from "../../kafkajs/kafkajsEncoding.ts"
import { fastRecordDecoder, originalRecordDecoder, type BatchContext } from "../../kafkajs/kafkajsDecoding.ts"

const require = createRequire(import.meta.url)
type DecoderClass = new (buffer: Buffer) => { buffer: Buffer; offset: number; readVarInt(): number }
const Decoder = require("kafkajs/src/protocol/decoder.js") as DecoderClass

/** Both decoders on the same record bytes (as the batch decoder hands them over: without the length prefix). */
const both = (bytes: Buffer, context: BatchContext) => {
  const run = (f: typeof fastRecordDecoder) => {
    const d = new Decoder(bytes)
    try {
      return { record: f(d, context), offset: d.offset }
    } catch (err) {
      return { error: String(err) }
    }
  }
  return { fast: run(fastRecordDecoder), original: run(originalRecordDecoder) }
}
const flat = (x: unknown): string =>
  JSON.stringify(x, function (this: Record<string, unknown>, k: string) {
    const v = this[k]
    return Buffer.isBuffer(v) ? `hex:${v.toString("hex")}` : v === undefined ? "undefined" : v
  })
const bodyOf = (encoded: Buffer): Buffer => {
  const d = new Decoder(encoded)
  const n = d.readVarInt()
  return encoded.subarray(d.offset, d.offset + n)
}

describe("kafkajs record decoding (kafkajsDecoding.ts)", () => {
  it("is the module kafkajs's record batch decoder uses", () => {
    expect(require("kafkajs/src/protocol/recordBatch/record/v0/decoder.js")).toBe(fastRecordDecoder)
    expect(originalRecordDecoder).not.toBe(fastRecordDecoder)
  })

  it("returns kafkajs's records for random records and batches", () => {
    const rnd = seeded(7)
    const { pick, text, bytes } = randomInputs(rnd)
    // Lengths around the varint's byte boundaries (vitest compares Buffers byte by byte: larger ones only cost time).
    const sizes = [0, 1, 63, 64, 127, 128, 300]
    const field = () => pick<Buffer | string | null>([null, text(pick(sizes)), bytes(pick(sizes))])
    const deltas = [0, 1, -1, 63, 64, -65, 8192, 2 ** 30 - 1, -(2 ** 30), 2 ** 31 - 1, 2 ** 40, -(2 ** 45), 2 ** 48 + 3]
    const firstOffsets = ["0", "5", "123456789012", "9007199254740990", "9223372036854775000"]
    const firstTimestamps = ["1733500000000", "-1", "0", "9007199254740000"]
    let fallbacks = 0
    for (let i = 0; i < 3000; i++) {
      const headers: Record<string, Buffer | string | null | Array<Buffer | string | null>> = {}
      const nh = pick([0, 0, 1, 2, 4])
      for (let h = 0; h < nh; h++) {
        const name = pick(["eddy-id", "h", "é", "", "__proto__x", `k${h}`])
        // kafkajs's encoder cannot write a null header value (other producers can: see the hand-made record below).
        headers[name] = rnd() < 0.3 ? Array.from({ length: pick([2, 3]) }, () => field() ?? bytes(2)) : (field() ?? "")
      }
      const offsetDelta = pick([0, 1, 127, 128, 5000, 2 ** 20, 2 ** 31 - 1])
      const encoded = Buffer.from(originalRecord({ offsetDelta, timestampDelta: pick(deltas), key: field(), value: field(), headers }).buffer)
      const appendTime = rnd() < 0.3
      const context: BatchContext = {
        firstOffset: pick(firstOffsets),
        firstTimestamp: pick(firstTimestamps),
        magicByte: 2,
        isControlBatch: rnd() < 0.1,
        timestampType: appendTime ? 1 : 0,
        maxTimestamp: appendTime ? "1733500009999" : "1733500000000",
      }
      if (Number(context.firstOffset) + offsetDelta > Number.MAX_SAFE_INTEGER) fallbacks++
      const { fast, original } = both(bodyOf(encoded), context)
      // As text, Buffers as hex (vitest's deep equality walks Buffers byte by byte); the shapes are compared below.
      expect(flat(fast), `record ${i}`).toBe(flat(original))
    }
    // Offsets past 2^53 went to kafkajs's decoder (and came out the same).
    expect(fallbacks).toBeGreaterThan(100)
  })

  it("truncated or odd bytes come out as kafkajs's decoder makes them", () => {
    const context: BatchContext = { firstOffset: "10", firstTimestamp: "1733500000000", magicByte: 2, timestampType: 0, maxTimestamp: "1733500000000" }
    const good = bodyOf(Buffer.from(originalRecord({ offsetDelta: 3, timestampDelta: 12, key: "k", value: "v", headers: { a: "1", b: ["2", "3"] } }).buffer))
    for (let cut = 0; cut < good.length; cut++) {
      const { fast, original } = both(good.subarray(0, cut), context)
      expect(fast, `cut at ${cut}`).toEqual(original)
    }
    // Written by hand: null key and value, a header with a null value, one with a null key, and the first repeated.
    const nulls = Buffer.from([0, 0, 0, 1, 1, 6, 2, 0x61, 1, 1, 2, 0x78, 2, 0x61, 2, 0x79])
    expect(both(nulls, context).fast).toEqual(both(nulls, context).original)
    expect(both(nulls, context).fast).toMatchObject({ record: { key: null, value: null, headers: { a: [null, Buffer.from("y")], null: Buffer.from("x") } } })
    // A header named __proto__ stays an own property, as kafkajs's spread makes it.
    const proto = bodyOf(Buffer.from(originalRecord({ key: null, value: "v", headers: JSON.parse('{"__proto__": "x"}') as Record<string, string> }).buffer))
    const { fast, original } = both(proto, context)
    expect(fast).toEqual(original)
    expect(Object.keys((fast as { record: { headers: object } }).record.headers)).toEqual(["__proto__"])
    expect(both(good, context).fast).toMatchObject({ record: { offset: "13", timestamp: "1733500000012", headers: { a: Buffer.from("1"), b: [Buffer.from("2"), Buffer.from("3")] } } })
  })
})

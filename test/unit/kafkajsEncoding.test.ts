// The produce-path replacements of runtime/cluster/kafkajsEncoding.ts write exactly kafkajs's bytes.
import { createRequire } from "node:module"
import { describe, expect, it } from "vitest"
import { randomInputs, seeded } from "../helpers.ts"
import { fastGroupMessagesPerPartition, fastRecord, originalGroupMessagesPerPartition, originalRecord, type RecordInput } from "../../runtime/cluster/kafkajsEncoding.ts"

const require = createRequire(import.meta.url)


const bytesOf = (r: RecordInput): Buffer | string => {
  try {
    return Buffer.from(fastRecord(r).buffer)
  } catch (err) {
    return `error: ${String(err)}`
  }
}
const originalBytesOf = (r: RecordInput): Buffer | string => {
  try {
    return Buffer.from(originalRecord(r).buffer)
  } catch (err) {
    return `error: ${String(err)}`
  }
}

describe("kafkajs record encoding (kafkajsEncoding.ts)", () => {
  it("is the module kafkajs's produce request uses", () => {
    expect(require("kafkajs/src/protocol/recordBatch/record/v0/index.js")).toBe(fastRecord)
    expect(require("kafkajs/src/producer/groupMessagesPerPartition.js")).toBe(fastGroupMessagesPerPartition)
    expect(originalRecord).not.toBe(fastRecord)
  })

  it("writes kafkajs's bytes for random records", () => {
    const rnd = seeded(42)
    const { pick, text, bytes } = randomInputs(rnd)
    const sizes = [0, 1, 2, 63, 64, 127, 128, 300, 8191, 8192]
    const deltas = [0, 1, -1, 63, 64, -64, -65, 8191, 8192, 2 ** 20, 2 ** 30 - 1, -(2 ** 30), 2 ** 30, 2 ** 31, -(2 ** 31) - 5, 2 ** 40, 1.5, "17", undefined]
    const field = (): unknown => pick([null, undefined, "s", "bytes", "long"]) === "s" ? text(pick(sizes) % 400) : rnd() < 0.5 ? bytes(pick(sizes)) : pick([null, undefined, text(3), bytes(5), 12, ""])
    for (let i = 0; i < 3000; i++) {
      const headers: Record<string, unknown> = {}
      const nh = pick([0, 0, 1, 2, 5])
      for (let h = 0; h < nh; h++) {
        const k = pick(["eddy-id", "k", "é", text(2), ""])
        headers[k] = pick(["str", "buf", "arr", "odd"]) === "str" ? `${h}:${i}` : rnd() < 0.4 ? bytes(pick([0, 3, 200])) : rnd() < 0.6 ? [text(2), bytes(2)] : pick([null, undefined, 5, [1], []])
      }
      const r: RecordInput = {
        offsetDelta: pick([0, 1, 63, 64, 4000, 2 ** 20, i]),
        ...(rnd() < 0.9 ? { timestampDelta: pick(deltas) as number } : {}),
        key: field(),
        value: field(),
        ...(rnd() < 0.9 ? { headers } : {}),
      }
      const fast = bytesOf(r)
      const original = originalBytesOf(r)
      if (typeof fast === "string" || typeof original === "string" ? fast !== original : !fast.equals(original)) expect({ r, fast }).toEqual({ r, fast: original })
    }
  })

  it("writes kafkajs's bytes for the egress's records", () => {
    for (let i = 0; i < 500; i++) {
      const r: RecordInput = { offsetDelta: i, timestampDelta: 0, key: i % 3 === 0 ? null : Buffer.from(String(i * 7919)), value: Buffer.from(JSON.stringify([i, i * 2, Date.now()])), headers: { "eddy-id": `${i % 256}:${i}` } }
      expect(bytesOf(r)).toEqual(originalBytesOf(r))
      // The fast path (an exactly sized buffer), not kafkajs's encoder behind it.
      const e = fastRecord(r)
      expect(e.buf.length).toBe(e.offset)
    }
  })
})

describe("kafkajs groupMessagesPerPartition (kafkajsEncoding.ts)", () => {
  it("groups like kafkajs, in order", () => {
    const rnd = seeded(7)
    for (const n of [0, 1, 10, 1000]) {
      const messages = Array.from({ length: n }, (_, i) => ({ i, p: Math.floor(rnd() * 5) }))
      const partitioner = ({ message }: { message: unknown }) => (message as { p: number }).p
      for (const partitionMetadata of [[], [{ partitionId: 0 }]]) {
        const args = { topic: "t", partitionMetadata, messages, partitioner }
        const fast = fastGroupMessagesPerPartition(args)
        const original = originalGroupMessagesPerPartition(args)
        expect(fast).toEqual(original)
        expect(Object.keys(fast)).toEqual(Object.keys(original))
      }
    }
  })
})

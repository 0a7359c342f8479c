// The produce-path replacements of kafkajs/kafkajsEncoding.ts write exactly kafkajs's bytes.
import { createRequire } from "node:module"
import { afterEach, describe, expect, it, vi } from "vitest"
import { randomInputs, seeded } from "../helpers.ts"
import {
  fastGroupMessagesPerPartition,
  fastRecord,
  originalGroupMessagesPerPartition,
  originalProduceRequest,
  originalRecord,
  produceEncodings,
  type ProduceArgs,
  type RecordInput,
} from "../../kafkajs/kafkajsEncoding.ts"

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

describe("kafkajs produce request v3 (kafkajsEncoding.ts)", () => {
  afterEach(() => void vi.restoreAllMocks())
  const produceRequest = require("kafkajs/src/protocol/requests/produce/v3/request.js") as (args: ProduceArgs) => { apiVersion: number; encode(): Promise<{ buffer: Buffer }> }
  const original = originalProduceRequest!
  const Long = require("kafkajs/src/utils/long.js") as { fromNumber(n: number): unknown }
  const encoded = async (f: (args: ProduceArgs) => { encode(): Promise<{ buffer: Buffer }> }, args: ProduceArgs): Promise<Buffer | string> => {
    try {
      return Buffer.from((await f(args).encode()).buffer)
    } catch (err) {
      return `error: ${String(err)}`
    }
  }

  it("is the module kafkajs's produce requests (v3 to v7) use", () => {
    expect(produceRequest).not.toBe(original)
    const v7 = require("kafkajs/src/protocol/requests/produce/v7/request.js") as (args: ProduceArgs) => { apiVersion: number; encode: unknown }
    const r = v7({ acks: -1, timeout: 30000, topicData: [] })
    expect(r.apiVersion).toBe(7)
  })

  it("writes kafkajs's bytes for random requests", async () => {
    const rnd = seeded(11)
    const { pick, text, bytes } = randomInputs(rnd)
    vi.spyOn(Date, "now").mockReturnValue(1_765_000_000_123)
    const before = { ...produceEncodings }
    for (let i = 0; i < 400; i++) {
      // What may send a request to kafkajs's own encoding: a message's own timestamp, a header value that is not
      // bytes, a partition without messages, compression.
      const quirk = rnd() < 0.75 ? "none" : pick(["timestamp", "badHeader", "empty", "compressed"])
      const message = (j: number): Record<string, unknown> => {
        const m: Record<string, unknown> = { key: pick([null, undefined, text(3), bytes(4), String(j)]), value: pick([null, text(20), bytes(40), JSON.stringify({ k: j, n: i }), ""]) }
        const h = pick(["none", "id", "two"])
        if (h === "id") m["headers"] = { "eddy-id": `${j % 7}:${j}` }
        else if (h === "two") m["headers"] = { a: text(2), b: [bytes(2), "x"] }
        if (quirk === "badHeader" && rnd() < 0.2) m["headers"] = { bad: 5 }
        if (quirk === "timestamp" && rnd() < 0.2) m["timestamp"] = pick([1_765_000_000_000, "1765000000999", 0])
        if (rnd() < 0.1) m["partition"] = j % 3
        return m
      }
      const topicData = Array.from({ length: pick([1, 1, 2, 3]) }, (_, t) => ({
        topic: pick(["out", "é-topic", `t${t}`]),
        partitions: Array.from({ length: pick([1, 2, 4]) }, (_, p) => ({
          partition: p,
          ...(rnd() < 0.2 ? { firstSequence: pick([0, 5, 1000]) } : {}),
          messages: Array.from({ length: quirk === "empty" && p === 0 ? 0 : pick([1, 3, 50, 300]) }, (_, j) => message(j)),
        })),
      }))
      const transactional = rnd() < 0.7
      const args: ProduceArgs = {
        acks: pick([-1, 1]),
        timeout: 30000,
        ...(transactional ? { transactionalId: pick(["eddy.ns.egress.0-8", "tx#1"]), producerId: pick([Long.fromNumber(4007), Long.fromNumber(2 ** 40 + 3), 17]), producerEpoch: pick([0, 3, 32767]) } : {}),
        ...(quirk === "compressed" ? { compression: 1 } : {}),
        topicData,
      }
      const fast = await encoded(produceRequest, args)
      const slow = await encoded(original, args)
      if (typeof fast === "string" || typeof slow === "string" ? fast !== slow : !fast.equals(slow)) expect({ i, fast }).toEqual({ i, fast: slow })
    }
    // Both paths ran: most requests here, the compressed ones and those with odd records in kafkajs.
    expect(produceEncodings.fast - before.fast).toBeGreaterThan(150)
    expect(produceEncodings.kafkajs - before.kafkajs).toBeGreaterThan(20)
  })

  it("takes the fast path for the egress's requests", async () => {
    vi.spyOn(Date, "now").mockReturnValue(1_765_000_000_456)
    const messages = Array.from({ length: 500 }, (_, j) => ({ key: j % 2 === 0 ? null : Buffer.from(`k${j}`), value: Buffer.from(JSON.stringify({ k: j })), headers: { "eddy-id": `3:${j}` } }))
    const args: ProduceArgs = { acks: -1, timeout: 30000, transactionalId: "eddy.ns.egress.0-8", producerId: Long.fromNumber(9), producerEpoch: 2, topicData: [{ topic: "out", partitions: [{ partition: 0, messages }, { partition: 3, messages: messages.slice(0, 7) }] }] }
    const before = produceEncodings.fast
    const fast = await encoded(produceRequest, args)
    expect(produceEncodings.fast).toBe(before + 1)
    const slow = await encoded(original, args)
    expect(typeof fast).not.toBe("string")
    expect(fast).toEqual(slow)
  })
})

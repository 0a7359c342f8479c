/**
 * The Log port contract, run against every implementation (file, memory, Kafka) so they cannot drift apart.
 *
 * `makeLayer()` must return a layer over fresh, empty storage each call; building that same layer value again
 * must reopen the same storage (a restart). Positions are compared only as the port allows: per stream, by
 * (part, offset), within what one log instance returned.
 */
import { Effect, Layer } from "effect"
import { describe, expect, it } from "vitest"
import { Log, type LogEntry, type LogPosition, type LogStream } from "../../runtime/ports/Log.ts"

const bytes = (s: string): Uint8Array => new TextEncoder().encode(s)
const text = (b: Uint8Array): string => new TextDecoder().decode(b)

const before = (a: LogPosition, b: LogPosition): boolean => a.part < b.part || (a.part === b.part && a.offset < b.offset)
const samePosition = (a: LogPosition, b: LogPosition): boolean => a.part === b.part && a.offset === b.offset

const payloads = (entries: ReadonlyArray<LogEntry>, stream: LogStream): Array<string> =>
  entries.filter((e) => e.stream === stream).map((e) => text(e.payload))

const run = <A, E>(layer: Layer.Layer<Log, unknown>, program: Effect.Effect<A, E, Log>): Promise<A> =>
  Effect.runPromise(Effect.scoped(Effect.provide(program, layer)))

const isSuffixOf = (suffix: ReadonlyArray<string>, all: ReadonlyArray<string>): boolean =>
  suffix.length <= all.length && suffix.every((s, i) => s === all[all.length - suffix.length + i])

export const logContract = (name: string, makeLayer: () => Layer.Layer<Log, unknown>): void => {
  describe(`Log contract: ${name}`, () => {
    it("reads back an empty log as no entries", async () => {
      expect(await run(makeLayer(), Effect.flatMap(Log, (log) => log.readAll))).toEqual([])
    })

    it("keeps append order per stream and reports the positions it returned", async () => {
      const entries = await run(
        makeLayer(),
        Effect.gen(function* () {
          const log = yield* Log
          const positions = new Map<string, LogPosition>()
          for (let i = 0; i < 50; i++) {
            const stream: LogStream = i % 3 === 0 ? "control" : "wal"
            positions.set(`${stream}-${i}`, yield* log.append(stream, bytes(`${stream}-${i}`)))
          }
          yield* log.appendDurable("control", bytes("control-end"))
          const entries = yield* log.readAll
          for (const e of entries) {
            const expected = positions.get(text(e.payload))
            if (expected !== undefined) expect(samePosition(e.position, expected)).toBe(true)
          }
          return entries
        }),
      )
      const expectAll = Array.from({ length: 50 }, (_, i) => (i % 3 === 0 ? `control-${i}` : `wal-${i}`))
      expect(payloads(entries, "wal")).toEqual(expectAll.filter((s) => s.startsWith("wal")))
      expect(payloads(entries, "control")).toEqual([...expectAll.filter((s) => s.startsWith("control")), "control-end"])
    })

    it("returns strictly increasing positions per stream", async () => {
      const byStream = await run(
        makeLayer(),
        Effect.gen(function* () {
          const log = yield* Log
          const out: Record<LogStream, Array<LogPosition>> = { wal: [], control: [] }
          for (let i = 0; i < 200; i++) {
            const stream: LogStream = i % 5 === 0 ? "control" : "wal"
            const payload = new Uint8Array(i * 37)
            out[stream].push(yield* (i % 7 === 0 ? log.appendDurable(stream, payload) : log.append(stream, payload)))
          }
          return out
        }),
      )
      for (const positions of Object.values(byStream)) {
        for (let i = 1; i < positions.length; i++) expect(before(positions[i - 1] as LogPosition, positions[i] as LogPosition)).toBe(true)
      }
    })

    it("round-trips empty and large payloads byte for byte, copying the caller's buffer", async () => {
      const large = new Uint8Array(3 * 1024 * 1024).map((_, i) => (i * 7919) & 0xff)
      const mutable = bytes("original")
      const entries = await run(
        makeLayer(),
        Effect.gen(function* () {
          const log = yield* Log
          yield* log.append("wal", new Uint8Array(0))
          yield* log.append("wal", large)
          yield* log.append("wal", mutable)
          mutable.set(bytes("CHANGED!"))
          yield* log.appendDurable("control", bytes("commit"))
          return yield* log.readAll
        }),
      )
      const wal = entries.filter((e) => e.stream === "wal")
      expect(wal.map((e) => e.payload.length)).toEqual([0, large.length, 8])
      expect(Buffer.from(wal[1]?.payload ?? []).equals(Buffer.from(large))).toBe(true)
      expect(text(wal[2]?.payload ?? new Uint8Array())).toBe("original")
    })

    it("appendDurable makes it and everything before it readable, also from concurrent callers", async () => {
      const entries = await run(
        makeLayer(),
        Effect.gen(function* () {
          const log = yield* Log
          for (let i = 0; i < 20; i++) yield* log.append("wal", bytes(`w${i}`))
          const positions = yield* Effect.all(
            Array.from({ length: 32 }, (_, i) => log.appendDurable(i % 2 === 0 ? "wal" : "control", bytes(`d${i}`))),
            { concurrency: "unbounded" },
          )
          expect(new Set(positions.map((p) => `${p.part}:${p.offset}`)).size).toBe(32)
          return yield* log.readAll
        }),
      )
      const all = [...payloads(entries, "wal"), ...payloads(entries, "control")]
      expect(all.length).toBe(52)
      for (let i = 0; i < 20; i++) expect(all).toContain(`w${i}`)
      for (let i = 0; i < 32; i++) expect(all).toContain(`d${i}`)
      // The sequential appends stay in order ahead of the later durable ones.
      expect(payloads(entries, "wal").slice(0, 20)).toEqual(Array.from({ length: 20 }, (_, i) => `w${i}`))
    })

    it("reopening sees the same entries at the same positions, and appends continue after them", async () => {
      const layer = makeLayer()
      const first = await run(
        layer,
        Effect.gen(function* () {
          const log = yield* Log
          for (let i = 0; i < 30; i++) yield* log.append(i % 4 === 0 ? "control" : "wal", bytes(`e${i}-${"x".repeat(i * 13)}`))
          yield* log.appendDurable("control", bytes("commit-1"))
          return yield* log.readAll
        }),
      )
      const [second, added] = await run(
        layer,
        Effect.gen(function* () {
          const log = yield* Log
          const again = yield* log.readAll
          const p = yield* log.appendDurable("wal", bytes("after-reopen"))
          return [again, p] as const
        }),
      )
      const shape = (es: ReadonlyArray<LogEntry>) => es.map((e) => ({ ...e, payload: text(e.payload) }))
      expect(shape(second)).toEqual(shape(first))
      const lastWal = first.filter((e) => e.stream === "wal").at(-1)
      if (lastWal !== undefined) expect(before(lastWal.position, added)).toBe(true)
      const third = await run(layer, Effect.flatMap(Log, (log) => log.readAll))
      expect(payloads(third, "wal").at(-1)).toBe("after-reopen")
      expect(third.length).toBe(first.length + 1)
    })

    it("truncateBefore keeps every entry at or after keepFrom and never touches the other stream", async () => {
      const layer = makeLayer()
      const total = 400
      const name = (i: number) => `${i % 4 === 0 ? "control" : "wal"}-${i}-${"p".repeat(100)}`
      const { positions, afterWal, afterBoth } = await run(
        layer,
        Effect.gen(function* () {
          const log = yield* Log
          const positions: Array<LogPosition> = []
          for (let i = 0; i < total; i++) {
            const stream: LogStream = i % 4 === 0 ? "control" : "wal"
            positions.push(yield* (i % 50 === 49 ? log.appendDurable(stream, bytes(name(i))) : log.append(stream, bytes(name(i)))))
          }
          yield* log.truncateBefore("wal", positions[301] as LogPosition)
          const afterWal = yield* log.readAll
          yield* log.truncateBefore("control", positions[300] as LogPosition)
          const afterBoth = yield* log.readAll
          return { positions, afterWal, afterBoth }
        }),
      )
      expect(positions.length).toBe(total)
      const all = Array.from({ length: total }, (_, i) => name(i))
      const walAll = all.filter((s) => s.startsWith("wal"))
      const controlAll = all.filter((s) => s.startsWith("control"))
      const mustKeepWal = all.slice(301).filter((s) => s.startsWith("wal"))
      const mustKeepControl = all.slice(300).filter((s) => s.startsWith("control"))

      expect(isSuffixOf(mustKeepWal, payloads(afterWal, "wal"))).toBe(true)
      expect(isSuffixOf(payloads(afterWal, "wal"), walAll)).toBe(true)
      expect(payloads(afterWal, "control")).toEqual(controlAll)

      expect(isSuffixOf(mustKeepWal, payloads(afterBoth, "wal"))).toBe(true)
      expect(isSuffixOf(payloads(afterBoth, "wal"), walAll)).toBe(true)
      expect(isSuffixOf(mustKeepControl, payloads(afterBoth, "control"))).toBe(true)
      expect(isSuffixOf(payloads(afterBoth, "control"), controlAll)).toBe(true)

      // Truncation is durable across a reopen and appends still work after it.
      const reopened = await run(
        layer,
        Effect.gen(function* () {
          const log = yield* Log
          yield* log.appendDurable("wal", bytes("after-truncate"))
          return yield* log.readAll
        }),
      )
      expect(isSuffixOf([...mustKeepWal, "after-truncate"], payloads(reopened, "wal"))).toBe(true)
      expect(isSuffixOf(payloads(reopened, "wal"), [...walAll, "after-truncate"])).toBe(true)
      expect(isSuffixOf(mustKeepControl, payloads(reopened, "control"))).toBe(true)
    })
  })
}

import { spawn } from "node:child_process"
import { appendFileSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, truncateSync, unlinkSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { Effect, Either } from "effect"
import { afterAll, describe, expect, it } from "vitest"
import { FileLog, type FileLogOptions } from "../../runtime/embedded/FileLog.ts"
import { MemoryLog, MemoryLogStore } from "../../runtime/embedded/MemoryLog.ts"
import { Log, type LogEntry, type LogPosition, type LogStream } from "../../runtime/ports/Log.ts"
import { logContract } from "../contracts/logContract.ts"

const dirs: Array<string> = []
const tempDir = (): string => {
  const dir = mkdtempSync(join(tmpdir(), "eddy-log-"))
  dirs.push(dir)
  return dir
}
afterAll(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true })
})

logContract("FileLog", () => FileLog.layer(tempDir()))
logContract("FileLog with 4 KiB segments", () => FileLog.layer(tempDir(), { segmentBytes: 4096 }))
logContract("MemoryLog", () => MemoryLog.layer())

const bytes = (s: string): Uint8Array => new TextEncoder().encode(s)
const text = (b: Uint8Array): string => new TextDecoder().decode(b)
const HEADER = 13

const withLog = <A, E>(dir: string, program: Effect.Effect<A, E, Log>, options?: FileLogOptions): Promise<A> =>
  Effect.runPromise(Effect.scoped(Effect.provide(program, FileLog.layer(dir, options))))

const readAll = (dir: string, options?: FileLogOptions) => withLog(dir, Effect.flatMap(Log, (log) => log.readAll), options)
const readAllEither = (dir: string, options?: FileLogOptions) =>
  withLog(dir, Effect.either(Effect.flatMap(Log, (log) => log.readAll)), options)
const names = (entries: ReadonlyArray<LogEntry>): Array<string> => entries.map((e) => text(e.payload))

type Op = readonly [LogStream, string, "durable" | "plain"]

/** Writes the ops in order and closes the log; returns their positions. */
const writeOps = (dir: string, ops: ReadonlyArray<Op>, options?: FileLogOptions): Promise<Array<LogPosition>> =>
  withLog(
    dir,
    Effect.gen(function* () {
      const log = yield* Log
      const out: Array<LogPosition> = []
      for (const [stream, payload, mode] of ops) {
        out.push(yield* (mode === "durable" ? log.appendDurable(stream, bytes(payload)) : log.append(stream, bytes(payload))))
      }
      return out
    }),
    options,
  )

const seg = (dir: string, part: number): string => join(dir, `${String(part).padStart(8, "0")}.log`)

const flipByte = (file: string, at: number): void => {
  const buf = readFileSync(file)
  buf[at] = (buf[at] ?? 0) ^ 0x5a
  writeFileSync(file, buf)
}

/** wal-0..wal-5 plain, control commit durable, then wal-7..wal-9 plain after the last durable record. */
const standardOps: ReadonlyArray<Op> = [
  ...Array.from({ length: 6 }, (_, i): Op => ["wal", `wal-${i}-${"x".repeat(40)}`, "plain"]),
  ["control", "commit-6", "durable"],
  ...Array.from({ length: 3 }, (_, i): Op => ["wal", `wal-${i + 7}-${"y".repeat(40)}`, "plain"]),
]
const standardNames = standardOps.map(([, p]) => p)

const appendThenRead = (dir: string, payload: string) =>
  withLog(
    dir,
    Effect.gen(function* () {
      const log = yield* Log
      const before = yield* log.readAll
      const position = yield* log.appendDurable("wal", bytes(payload))
      return { before, position }
    }),
  )

describe("FileLog layout", () => {
  it("uses segment number and byte offset as the position and rolls segments at the configured size", async () => {
    const dir = tempDir()
    const payload = "p".repeat(1000 - HEADER)
    const positions = await writeOps(dir, Array.from({ length: 10 }, (_, i): Op => ["wal", payload, i === 9 ? "durable" : "plain"]), {
      segmentBytes: 4000,
      prepareBytes: 0,
    })
    expect(positions).toEqual(Array.from({ length: 10 }, (_, i) => ({ part: Math.floor(i / 4) + 1, offset: (i % 4) * 1000 })))
    expect(readdirSync(dir).sort()).toEqual(["00000001.log", "00000002.log", "00000003.log"])
    expect(statSync(seg(dir, 1)).size).toBe(4000)
    expect(statSync(seg(dir, 3)).size).toBe(2000)
    const entries = await readAll(dir, { segmentBytes: 4000 })
    expect(entries.map((e) => e.position)).toEqual(positions)
  })

  it("gives a payload larger than a segment a segment of its own", async () => {
    const dir = tempDir()
    const positions = await writeOps(dir, [["wal", "a", "plain"], ["wal", "b".repeat(5000), "plain"], ["wal", "c", "durable"]], {
      segmentBytes: 1000,
    })
    expect(positions.map((p) => p.part)).toEqual([1, 2, 3])
    expect(names(await readAll(dir)).map((n) => n.length)).toEqual([1, 5000, 1])
  })

  it("writes queued appends when the scope closes, without any appendDurable", async () => {
    const dir = tempDir()
    await writeOps(dir, Array.from({ length: 1000 }, (_, i): Op => ["wal", `e${i}`, "plain"]), { segmentBytes: 2048 })
    expect(names(await readAll(dir))).toEqual(Array.from({ length: 1000 }, (_, i) => `e${i}`))
  })
})

describe("FileLog prepared space", () => {
  const zeroTail = (file: string, from: number): boolean => readFileSync(file).subarray(from).every((b) => b === 0)

  it("zero-fills ahead of the frames, reads the frames only, and appends after them when reopened", async () => {
    const dir = tempDir()
    const ops = Array.from({ length: 200 }, (_, i): Op => ["wal", `f${i}-${"q".repeat(i % 50)}`, i % 10 === 9 ? "durable" : "plain"])
    const positions = await writeOps(dir, ops)
    const last = positions.at(-1) as LogPosition
    const end = last.offset + HEADER + bytes(ops.at(-1)?.[1] ?? "").length
    // The fill is there (the file is longer than its frames) and holds only zeros.
    expect(statSync(seg(dir, 1)).size).toBeGreaterThan(end)
    expect(zeroTail(seg(dir, 1), end)).toBe(true)
    expect(names(await readAll(dir))).toEqual(ops.map(([, p]) => p))
    const [next] = await writeOps(dir, [["wal", "after-reopen", "durable"]])
    expect(next).toEqual({ part: 1, offset: end })
    expect(names(await readAll(dir))).toEqual([...ops.map(([, p]) => p), "after-reopen"])
  })

  it("reads segments with zero-filled tails while running and after a restart, and never fills over a frame", async () => {
    const dir = tempDir()
    // Small segments: every segment is filled ahead while frames stream into it, and rolls with a zero tail.
    const opts = { segmentBytes: 64 * 1024 }
    const payloads = Array.from({ length: 3000 }, (_, i) => `g${i}-${"w".repeat((i * 37) % 400)}`)
    const seen = await withLog(
      dir,
      Effect.gen(function* () {
        const log = yield* Log
        for (let i = 0; i < payloads.length; i++) {
          const p = bytes(payloads[i] ?? "")
          yield* i % 7 === 6 ? log.appendDurable("wal", p) : log.append("wal", p)
        }
        return names(yield* log.readAll)
      }),
      opts,
    )
    expect(seen).toEqual(payloads)
    const segments = readdirSync(dir).filter((n) => n.endsWith(".log"))
    expect(segments.length).toBeGreaterThan(3)
    // Rolled segments keep their fill: most are longer than their frames.
    const filled = segments.filter((n) => statSync(join(dir, n)).size === opts.segmentBytes)
    expect(filled.length).toBeGreaterThan(segments.length / 2)
    expect(names(await readAll(dir, opts))).toEqual(payloads)
  })

  it("fills nothing with prepareBytes 0", async () => {
    const dir = tempDir()
    const positions = await writeOps(dir, standardOps, { prepareBytes: 0 })
    const last = positions.at(-1) as LogPosition
    expect(statSync(seg(dir, 1)).size).toBe(last.offset + HEADER + bytes(standardNames.at(-1) ?? "").length)
  })
})

describe("FileLog backpressure", () => {
  it("makes append wait while too much is queued, losing nothing", async () => {
    const dir = tempDir()
    const opts = { maxQueuedBytes: 1024, segmentBytes: 8192 }
    await writeOps(dir, Array.from({ length: 3000 }, (_, i): Op => ["wal", `b${i}-${"q".repeat(100)}`, "plain"]), opts)
    expect(names(await readAll(dir, opts)).map((n) => n.split("-")[0])).toEqual(Array.from({ length: 3000 }, (_, i) => `b${i}`))
  })
})

describe("FileLog recovery", () => {
  it("drops a last frame cut mid-payload, cuts the file there, and appends after it", async () => {
    const dir = tempDir()
    const positions = await writeOps(dir, standardOps)
    const last = positions[9] as LogPosition
    truncateSync(seg(dir, 1), last.offset + HEADER + 5)
    const { before, position } = await appendThenRead(dir, "new")
    expect(names(before)).toEqual(standardNames.slice(0, 9))
    expect(position).toEqual(last)
    expect(names(await readAll(dir))).toEqual([...standardNames.slice(0, 9), "new"])
  })

  it("drops a last frame cut inside its header", async () => {
    const dir = tempDir()
    const positions = await writeOps(dir, standardOps)
    truncateSync(seg(dir, 1), (positions[9] as LogPosition).offset + 3)
    expect(names(await readAll(dir))).toEqual(standardNames.slice(0, 9))
    expect(statSync(seg(dir, 1)).size).toBe((positions[9] as LogPosition).offset)
  })

  it("ignores garbage after the last frame, also garbage that starts like a frame", async () => {
    for (const garbage of [
      Buffer.from([0xde, 0xad, 0xbe, 0xef, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14]),
      Buffer.concat([Buffer.from("EDLG"), Buffer.from([0, 0, 0, 4, 1, 2, 3, 4, 0x81]), Buffer.from("abcd")]),
      Buffer.alloc(4096),
    ]) {
      const dir = tempDir()
      const positions = await writeOps(dir, standardOps)
      // After the file's end: beyond the frames and the zeros prepared after them.
      appendFileSync(seg(dir, 1), garbage)
      const { before, position } = await appendThenRead(dir, "new")
      expect(names(before)).toEqual(standardNames)
      expect(position).toEqual({ part: 1, offset: (positions[9] as LogPosition).offset + HEADER + bytes(standardNames[9] ?? "").length })
      expect(positions.length).toBe(10)
      expect(names(await readAll(dir))).toEqual([...standardNames, "new"])
    }
  })

  it("drops silently a flipped byte after the last durable record, with every frame after it", async () => {
    const dir = tempDir()
    const positions = await writeOps(dir, standardOps)
    flipByte(seg(dir, 1), (positions[8] as LogPosition).offset + HEADER + 2)
    const { before, position } = await appendThenRead(dir, "new")
    expect(names(before)).toEqual(standardNames.slice(0, 8))
    expect(position).toEqual(positions[8])
    expect(names(await readAll(dir))).toEqual([...standardNames.slice(0, 8), "new"])
  })

  it("fails with LogCorruptedError naming file and offset when a durable record follows the damage", async () => {
    const dir = tempDir()
    const positions = await writeOps(dir, standardOps)
    const damaged = (positions[3] as LogPosition).offset
    flipByte(seg(dir, 1), damaged + HEADER + 10)
    const size = statSync(seg(dir, 1)).size
    const result = await readAllEither(dir)
    if (Either.isRight(result)) throw new Error("expected LogCorruptedError")
    expect(result.left._tag).toBe("LogCorruptedError")
    if (result.left._tag === "LogCorruptedError") expect(result.left.location).toBe(`${seg(dir, 1)} at byte ${damaged}`)
    // Nothing was repaired or cut, and the log refuses writes.
    expect(statSync(seg(dir, 1)).size).toBe(size)
    const write = await withLog(dir, Effect.either(Effect.flatMap(Log, (log) => log.append("wal", bytes("x")))))
    expect(Either.isLeft(write) && write.left._tag).toBe("LogError")
    expect(statSync(seg(dir, 1)).size).toBe(size)
  })

  it("treats damage to the magic number or the length field before a durable record as corruption", async () => {
    for (const at of [0, 5]) {
      const dir = tempDir()
      const positions = await writeOps(dir, standardOps)
      flipByte(seg(dir, 1), (positions[2] as LogPosition).offset + at)
      const result = await readAllEither(dir)
      expect(Either.isLeft(result) && result.left._tag).toBe("LogCorruptedError")
    }
  })

  it("counts a wal record written with appendDurable as durable", async () => {
    const dir = tempDir()
    const positions = await writeOps(dir, [["wal", "a", "plain"], ["wal", "b", "plain"], ["wal", "c", "durable"]])
    flipByte(seg(dir, 1), (positions[1] as LogPosition).offset + HEADER)
    const result = await readAllEither(dir)
    expect(Either.isLeft(result) && result.left._tag).toBe("LogCorruptedError")
  })

  const multiSegment = (): Array<Op> =>
    Array.from({ length: 12 }, (_, i): Op => (i === 5 ? ["control", `c${i}`, "durable"] : ["wal", `w${i}-${"z".repeat(200)}`, "plain"]))
  const small = { segmentBytes: 1024 }

  it("fails when a non-last segment is damaged and a later segment holds a durable record", async () => {
    const dir = tempDir()
    const ops = [...multiSegment(), ["control", "late-commit", "durable"] as Op]
    const positions = await writeOps(dir, ops, small)
    const victim = positions[6] as LogPosition
    const lastPart = (positions.at(-1) as LogPosition).part
    expect(victim.part).toBeLessThan(lastPart)
    flipByte(seg(dir, victim.part), victim.offset + HEADER + 1)
    const result = await readAllEither(dir, small)
    if (Either.isRight(result)) throw new Error("expected LogCorruptedError")
    expect(result.left._tag === "LogCorruptedError" && result.left.location).toBe(`${seg(dir, victim.part)} at byte ${victim.offset}`)
  })

  it("drops a damaged non-last segment tail and the later segments when nothing durable follows", async () => {
    const dir = tempDir()
    const ops = multiSegment()
    const positions = await writeOps(dir, ops, small)
    const victim = positions[7] as LogPosition
    const lastPart = (positions.at(-1) as LogPosition).part
    expect(victim.part).toBeLessThan(lastPart)
    flipByte(seg(dir, victim.part), victim.offset + HEADER + 1)
    const entries = await readAll(dir, small)
    expect(names(entries)).toEqual(ops.slice(0, 7).map(([, p]) => p))
    expect(existsSync(seg(dir, victim.part + 1))).toBe(false)
    expect(statSync(seg(dir, victim.part)).size).toBe(victim.offset)
    const p = await writeOps(dir, [["wal", "next", "durable"]], small)
    expect(p[0]).toEqual(victim)
  })

  it("drops a zero-filled tail (blocks the file system allocated but never wrote)", async () => {
    const dir = tempDir()
    await writeOps(dir, standardOps)
    appendFileSync(seg(dir, 1), Buffer.alloc(8192))
    expect(names(await readAll(dir))).toEqual(standardNames)
  })

  it("fails when a segment in the middle is missing", async () => {
    const dir = tempDir()
    const positions = await writeOps(dir, multiSegment(), small)
    expect((positions.at(-1) as LogPosition).part).toBeGreaterThanOrEqual(3)
    unlinkSync(seg(dir, 2))
    const result = await readAllEither(dir, small)
    expect(Either.isLeft(result) && result.left._tag).toBe("LogCorruptedError")
  })
})

describe("FileLog under a real crash", () => {
  it("keeps every acknowledged durable record and what came before it after SIGKILL mid-stream", async () => {
    for (let round = 0; round < 3; round++) {
      const dir = tempDir()
      const child = spawn(process.execPath, ["--import", "tsx", join(import.meta.dirname, "fileLogCrashChild.ts"), dir], {
        stdio: ["ignore", "pipe", "inherit"],
      })
      let acked = -1
      await new Promise<void>((resolve, reject) => {
        let out = ""
        child.stdout.on("data", (chunk: Buffer) => {
          out += chunk.toString()
          const lines = out.split("\n")
          out = lines.pop() ?? ""
          for (const line of lines) acked = Number(line.split(" ")[1])
          if (acked >= 2000 + round * 1500) child.kill("SIGKILL")
        })
        child.on("exit", () => resolve())
        child.on("error", reject)
      })
      const entries = await readAll(dir, { segmentBytes: 64 * 1024 })
      const ids = names(entries).map((n) => Number(n.slice(1, n.indexOf("-"))))
      expect(ids.length).toBeGreaterThan(acked)
      expect(ids.slice(0, acked + 1)).toEqual(Array.from({ length: acked + 1 }, (_, i) => i))
      // Whatever survived beyond the last ack is a gap-free continuation, then appends carry on.
      expect(ids).toEqual(Array.from({ length: ids.length }, (_, i) => i))
      await writeOps(dir, [["wal", "after-crash", "durable"]], { segmentBytes: 64 * 1024 })
      expect(names(await readAll(dir)).at(-1)).toBe("after-crash")
    }
  })
})

describe("FileLog truncation", () => {
  it("deletes a segment only when every stream in it allows, never the current one", async () => {
    const dir = tempDir()
    const opts = { segmentBytes: 1024 }
    const files = await withLog(
      dir,
      Effect.gen(function* () {
        const log = yield* Log
        const positions: Array<LogPosition> = []
        // Segment 1 holds a control record; segments 2.. hold only wal records.
        positions.push(yield* log.appendDurable("control", bytes("fence")))
        for (let i = 0; i < 20; i++) positions.push(yield* log.append("wal", bytes("w".repeat(300))))
        positions.push(yield* log.appendDurable("wal", bytes("last")))
        const current = (positions.at(-1) as LogPosition).part
        yield* log.truncateBefore("wal", { part: current + 5, offset: 0 })
        const afterWal = readdirSync(dir).sort()
        yield* log.truncateBefore("control", { part: 2, offset: 0 })
        const afterControl = readdirSync(dir).sort()
        const entries = yield* log.readAll
        return { current, afterWal, afterControl, entries }
      }),
      opts,
    )
    // Segment 1 still holds a control record nobody asked to drop: nothing can go.
    expect(files.afterWal.length).toBe(files.current)
    // Now segments 1..current-1 may go, but the current one stays.
    expect(files.afterControl).toEqual([`${String(files.current).padStart(8, "0")}.log`])
    expect(files.entries.every((e) => e.position.part === files.current)).toBe(true)
    expect(names(await readAll(dir, opts))).toEqual(names(files.entries))
  })
})

describe("MemoryLog", () => {
  it("crash() keeps exactly what appendDurable covered", async () => {
    const store = new MemoryLogStore()
    const layer = MemoryLog.layer(store)
    await Effect.runPromise(
      Effect.provide(
        Effect.gen(function* () {
          const log = yield* Log
          yield* log.append("wal", bytes("a"))
          yield* log.appendDurable("control", bytes("b"))
          yield* log.append("wal", bytes("c"))
        }),
        layer,
      ),
    )
    store.crash()
    const entries = await Effect.runPromise(Effect.provide(Effect.flatMap(Log, (log) => log.readAll), layer))
    expect(names(entries)).toEqual(["a", "b"])
  })
})

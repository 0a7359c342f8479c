// A damaged file log: a torn tail (a last write that did not complete) is detected and ignored, and the run resumes
// as if the torn epochs never committed; damage to a record that a later durable COMMIT covers stops start-up with
// a LogCorruptedError and leaves the files as they were. Frames are located with the log's own format module.
import { closeSync, cpSync, openSync, readFileSync, readdirSync, statSync, truncateSync, writeFileSync, writeSync } from "node:fs"
import { join } from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { App, Sink, Source, Workflow } from "../../workflows/index.ts"
import { committedState } from "../../runtime/index.ts"
import { decode } from "../../runtime/engine/codec.ts"
import type { ControlRecord } from "../../runtime/engine/protocol.ts"
import { scanSegment, zeroFrom, type Frame } from "../../runtime/embedded/fileLogFormat.ts"
import { removeDir, runEddy, tempDir } from "../helpers.ts"
import { range, runApp } from "./util.ts"

const buildApp = () =>
  App.define({
    name: "logged",
    workflows: [
      Workflow.from(Source.array(range(1, 40), { name: "nums", splits: 2 }))
        .keyBy((x) => x % 6)
        .processor<{ k: number; sum: number }, number>(
          (ctx, x) => {
            const sum = ctx.state.get(0) + x
            ctx.state.set(sum)
            ctx.emit({ k: x % 6, sum })
          },
          { name: "sum" },
        )
        .sink(Sink.file("sums.jsonl", "sums")),
    ],
    keyGroups: 16,
  })

const options = (dataDir: string) => ({ dataDir, partitions: 2, epochAtoms: 4 })

const segments = (dataDir: string): string[] =>
  readdirSync(join(dataDir, "log"))
    .filter((f) => /^\d{8,}\.log$/.test(f))
    .sort()
    .map((f) => join(dataDir, "log", f))

const framesOf = (segment: string): ReadonlyArray<Frame> => {
  const scan = scanSegment(readFileSync(segment))
  expect(scan.damage).toBeUndefined()
  return scan.frames
}

/** Every byte of the segment is a whole frame or, after the last one, zero (space the writer prepared). */
const wholeFrames = (segment: string): boolean => {
  const buf = readFileSync(segment)
  const scan = scanSegment(buf)
  return scan.damage === undefined && zeroFrom(buf, scan.end)
}

const commitEpoch = (f: Frame): number | undefined => {
  if (f.stream !== "control") return undefined
  const c = decode(f.payload) as ControlRecord
  return c.t === "commit" ? c.e : undefined
}

describe("a corrupted log", () => {
  const dirs: string[] = []
  const fresh = (name: string) => {
    const d = tempDir(name)
    dirs.push(d)
    return d
  }
  let reference: string
  let refState: Awaited<ReturnType<typeof committedState>>
  let refOutput: string
  /** A copy of the reference run's data directory, to damage. */
  const copy = (name: string) => {
    const d = fresh(name)
    cpSync(reference, d, { recursive: true })
    return d
  }

  beforeAll(async () => {
    reference = fresh("log-ref")
    const r = await runApp(buildApp(), options(reference))
    expect(r.failures).toBe(0)
    refState = await committedState(reference)
    refOutput = readFileSync(join(reference, "sums.jsonl"), "utf8")
    expect(refOutput.split("\n")).toHaveLength(41)
    expect(refState.epoch).toBe(r.lastEpoch)
    expect(refState.epoch).toBeGreaterThanOrEqual(6)
  })
  afterAll(() => dirs.forEach(removeDir))

  it("a torn tail (the last bytes of the newest segment cut off) is dropped: the state is that of the epoch before", async () => {
    const dir = copy("torn")
    const [newest] = segments(dir).slice(-1)
    const frames = framesOf(newest!)
    const last = frames.at(-1)!
    expect(commitEpoch(last)).toBe(refState.epoch)
    truncateSync(newest!, last.end - 7)
    const tornSize = statSync(newest!).size

    const torn = await committedState(dir)
    expect(torn.epoch).toBe(refState.epoch - 1)
    // Reading is read-only (it may run beside a live writer): the torn frame is skipped, not cut.
    expect(statSync(newest!).size).toBe(tornSize)

    const rerun = await runApp(buildApp(), options(dir))
    // The writer cut the torn frame before appending: every byte of the segment now parses as whole frames.
    expect(wholeFrames(newest!)).toBe(true)
    expect(rerun.recoveredEpoch).toBe(refState.epoch - 1)
    expect(readFileSync(join(dir, "sums.jsonl"), "utf8")).toBe(refOutput)
    expect((await committedState(dir)).entries).toEqual(refState.entries)
  })

  it("a torn tail that cuts into the epoch records of the last epochs rolls back to the last whole COMMIT, and a re-run redoes them exactly", async () => {
    const dir = copy("torn-deep")
    const [newest] = segments(dir).slice(-1)
    const frames = framesOf(newest!)
    // Cut in the middle of the first epoch record written after COMMIT(E - 3).
    const keep = refState.epoch - 3
    const commitAt = frames.findIndex((f) => commitEpoch(f) === keep)
    const victim = frames.slice(commitAt + 1).find((f) => f.stream === "wal")!
    truncateSync(newest!, victim.offset + 20)

    const torn = await committedState(dir)
    expect(torn.epoch).toBe(keep)
    expect(torn.entries).not.toEqual(refState.entries)

    const rerun = await runApp(buildApp(), options(dir))
    expect(rerun.recoveredEpoch).toBe(keep)
    expect(rerun.failures).toBe(0)
    expect(readFileSync(join(dir, "sums.jsonl"), "utf8")).toBe(refOutput)
    expect(await committedState(dir)).toEqual(refState)
  })

  it("half a frame appended after the last record (a torn write) is ignored and cut off", async () => {
    const dir = copy("torn-append")
    const [newest] = segments(dir).slice(-1)
    const last = framesOf(newest!).at(-1)!
    const bytes = readFileSync(newest!)
    // Right after the last frame, where the next write goes (over the zeros prepared there, if any).
    const fd = openSync(newest!, "r+")
    writeSync(fd, bytes, last.offset, Math.floor((last.end - last.offset) / 2), last.end)
    closeSync(fd)
    expect(wholeFrames(newest!)).toBe(false)

    expect(await committedState(dir)).toEqual(refState)
    const rerun = await runApp(buildApp(), options(dir))
    expect(wholeFrames(newest!)).toBe(true)
    expect(rerun.recoveredEpoch).toBe(refState.epoch)
    expect(readFileSync(join(dir, "sums.jsonl"), "utf8")).toBe(refOutput)
  })

  describe("a flipped byte in a record that a later durable COMMIT covers", () => {
    const damage = (name: string, pick: (frames: ReadonlyArray<Frame>) => Frame) => {
      const dir = copy(name)
      const [first] = segments(dir)
      const frames = framesOf(first!)
      const victim = pick(frames)
      // Later durable COMMITs exist: the damage cannot be a torn tail.
      expect(frames.some((f) => f.offset > victim.offset && f.durable)).toBe(true)
      const bytes = readFileSync(first!)
      const at = victim.offset + 13 + Math.floor(victim.payload.length / 2)
      bytes[at] = bytes[at]! ^ 0x5a
      writeFileSync(first!, bytes)
      return { dir, segment: first!, bytes, at }
    }

    it("in an early WAL record: committedState rejects with a LogCorruptedError naming the place", async () => {
      const { dir, segment, bytes } = damage("flip-wal", (frames) => frames.find((f) => f.stream === "wal")!)
      const err = await committedState(dir).catch((e: unknown) => e)
      expect(err).toBeInstanceOf(Error)
      expect(String((err as Error).message)).toMatch(/log corrupted: crc32 mismatch in .*00000001\.log at byte \d+, before a durable (wal|control) record/)
      // Nothing was "repaired": the damaged file is exactly as it was.
      expect(readFileSync(segment).equals(bytes)).toBe(true)
    })

    it("in an early WAL record: a re-run refuses to start with LogCorruptedError, and writes nothing", async () => {
      const { dir, segment, bytes } = damage("flip-wal-run", (frames) => frames.find((f) => f.stream === "wal")!)
      const output = readFileSync(join(dir, "sums.jsonl"), "utf8")
      const err = await runApp(buildApp(), options(dir)).catch((e: unknown) => e)
      expect(err).toMatchObject({ _tag: "LogCorruptedError" })
      expect((err as Error).message).toMatch(/log corrupted/)
      expect(readFileSync(segment).equals(bytes)).toBe(true)
      expect(readFileSync(join(dir, "sums.jsonl"), "utf8")).toBe(output)
    })

    it("in an early COMMIT record: start-up stops too", async () => {
      const { dir } = damage("flip-commit", (frames) => frames.find((f) => commitEpoch(f) === 1)!)
      await expect(committedState(dir)).rejects.toThrow(/log corrupted/)
      await expect(runApp(buildApp(), options(dir))).rejects.toThrow(/log corrupted/)
    })

    it("the CLI exits with code 2 and a clear message", async () => {
      const { dir } = damage("flip-cli", (frames) => frames.filter((f) => f.stream === "wal")[1]!)
      const exit = await runEddy(["state", "test/apps/collatz.ts", "--data-dir", dir])
      expect(exit.code).toBe(2)
      expect(exit.stderr).toMatch(/^eddy: .*log corrupted: crc32 mismatch/m)
    })
  })
})

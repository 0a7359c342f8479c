// Pipelined epochs (epoch e+1 runs while COMMIT(e) is written): same outputs and committed state as one epoch at a
// time, and nothing of an uncommitted epoch is seen from outside, reads included.
import { join } from "node:path"
import { Effect, Layer } from "effect"
import { afterAll, describe, expect, it } from "vitest"
import { App, Sink, Source, Workflow } from "../../workflows/index.ts"
import { Eddy, committedState } from "../../runtime/index.ts"
import { start } from "../../runtime/Eddy.ts"
import { DirectoryBlobStore } from "../../runtime/embedded/DirectoryBlobStore.ts"
import { FileLog } from "../../runtime/embedded/FileLog.ts"
import { InProcessTransport } from "../../runtime/embedded/InProcessTransport.ts"
import { Log, LogError, type LogStream } from "../../runtime/ports/Log.ts"
import { tempDirs } from "../helpers.ts"
import { epochClock, range, runApp } from "./util.ts"

const dirs = tempDirs()
afterAll(dirs.removeAll)
const dataDir = dirs.dir

/** Per key, the epoch of its last write (logical clock, epochMs 1: ctx.now() is the epoch). */
const stampApp = (n: number) =>
  App.define({
    name: "pipe",
    workflows: [
      Workflow.from(Source.array(range(1, n)), { name: "w" })
        .keyBy((x) => x % 4)
        .processor<string, number>(
          (ctx, x) => {
            const seen = ctx.state.get() ?? 0
            ctx.state.set(ctx.now())
            ctx.emit(`${x}:${seen}`)
          },
          { name: "stamp" },
        )
        .sink(Sink.memory("out")),
    ],
  })

describe("pipelined epochs", () => {
  it("give the same outputs and committed state as epochs one at a time", async () => {
    const [a, b] = [dataDir("pipe-on"), dataDir("pipe-off")]
    const on = await runApp(stampApp(400), { ...epochClock, epochAtoms: 7, partitions: 2, dataDir: a, pipeline: true })
    const off = await runApp(stampApp(400), { ...epochClock, epochAtoms: 7, partitions: 2, dataDir: b, pipeline: false })
    expect(on.outputs("out")).toHaveLength(400)
    expect(on.outputs("out")).toEqual(off.outputs("out"))
    expect(on.lastEpoch).toBe(off.lastEpoch)
    expect(await committedState(a)).toEqual(await committedState(b))
  })

  it("a read taken while epochs run back to back sees only committed writes", async () => {
    let committed = 0
    let pipelined = 0
    const running = Eddy.start(stampApp(6000), {
      ...epochClock,
      epochAtoms: 5,
      pipeline: true,
      dataDir: dataDir("pipe-read"),
      onFailure: () => undefined,
      onOpen: (e) => {
        if (e > committed + 1) pipelined++
      },
      onCommit: (e) => {
        committed = e
      },
    })
    const seen: Array<{ stamp: number; committed: number }> = []
    while (seen.length < 200) {
      const stamp = (await running.query("w/stamp", 1)) as number | undefined
      if (stamp !== undefined) seen.push({ stamp, committed })
      if ((await Promise.race([running.done.then(() => true), Promise.resolve(false)])) === true) break
    }
    await running.done
    expect(seen.length).toBeGreaterThan(50)
    // The reads were served while later epochs were already running...
    expect(pipelined).toBeGreaterThan(50)
    // ...yet none of them saw a write of an epoch whose COMMIT was not durable when the answer came.
    for (const s of seen) expect(s.stamp).toBeLessThanOrEqual(s.committed)
  })
})

describe("a COMMIT write that fails, with the next epoch already running", () => {
  it("stops the run with the log's error; nothing of either epoch leaves, and a restart ends exactly like a failure-free run", async () => {
    const opts = { ...epochClock, epochAtoms: 5, partitions: 2, pipeline: true }
    const refDir = dataDir("pipe-fail-ref")
    const ref = await runApp(stampApp(300), { ...opts, dataDir: refDir })
    const dir = dataDir("pipe-fail")
    // The 6th durable write of the control stream (FENCE, then COMMIT(1..4), then COMMIT(5)) fails, as a full disk would.
    let durable = 0
    const failing = Layer.effect(
      Log,
      Effect.map(Log, (log) => ({
        ...log,
        appendDurable: (stream: LogStream, payload: Uint8Array) =>
          stream === "control" && ++durable === 6 ? Effect.fail(new LogError({ message: "injected: disk full" })) : log.appendDurable(stream, payload),
      })),
    ).pipe(Layer.provide(FileLog.layer(join(dir, "log"))))
    let opened = 0
    const first = start(
      stampApp(300),
      { ...opts, dataDir: dir, onFailure: () => undefined, onOpen: (e) => (opened = Math.max(opened, e)) },
      { ports: Layer.mergeAll(failing, DirectoryBlobStore.layer(join(dir, "snapshots")), InProcessTransport.layer), host: { coordinator: true, partitions: [0, 1] } },
    )
    await expect(first.done).rejects.toThrow(/injected: disk full/)
    // Epoch 6 opened while COMMIT(5) was written; epochs 1-4 committed and published, 5 and 6 did not.
    expect(opened).toBe(6)
    const published = first.outputs<string>("out")
    expect(published).toEqual(ref.outputs<string>("out").slice(0, 4 * 5))
    const second = await runApp(stampApp(300), { ...opts, dataDir: dir })
    expect(second.recoveredEpoch).toBe(4)
    // A memory sink lives in the process: the restart republishes the committed epochs its marker does not cover
    // (here all of them: the first run died before writing one), then carries on.
    const again = second.outputs<string>("out")
    expect(again.length).toBeGreaterThanOrEqual(300 - published.length)
    expect(again).toEqual(ref.outputs<string>("out").slice(300 - again.length))
    expect(await committedState(dir)).toEqual(await committedState(refDir))
  })
})

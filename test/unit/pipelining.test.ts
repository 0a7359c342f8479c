// Pipelined epochs (epoch e+1 runs while COMMIT(e) is written): same outputs and committed state as one epoch at a
// time, and nothing of an uncommitted epoch is seen from outside, reads included.
import { afterAll, describe, expect, it } from "vitest"
import { App, Sink, Source, Workflow } from "../../workflows/index.ts"
import { Eddy, committedState } from "../../runtime/index.ts"
import { removeDir, tempDir } from "../helpers.ts"
import { epochClock, range, runApp } from "./util.ts"

const dirs: string[] = []
afterAll(() => dirs.forEach(removeDir))
const dataDir = (name: string) => {
  const d = tempDir(name)
  dirs.push(d)
  return d
}

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
    const on = await runApp(stampApp(400), { ...epochClock, epochAtoms: 7, partitions: 2, dataDir: a })
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

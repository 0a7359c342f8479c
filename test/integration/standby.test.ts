import { afterAll, describe, expect, it } from "vitest"
import type { ChildProcess } from "node:child_process"
import { shoppingCartApp } from "../../examples/shopping-cart/app.ts"
import { clusterState } from "../../runtime/cluster/ClusterProcess.ts"
import { supervise } from "../../runtime/cluster/supervisor.ts"
import { committedState, Eddy } from "../../runtime/index.ts"
import { removeDir, tempDir } from "../helpers.ts"

// The supervisor keeps a loaded standby of every process and activates them when it restarts the cluster: after a
// SIGKILL, the restarted processes are the standbys (their "activated" lines say so), and the results are exactly
// the embedded run's. Needs the servers (npm run infra:up).
const shop = { users: 30, items: 40, stock: 20, requests: 2500, seed: 5 }
const shopFlags = ["--users", "30", "--items", "40", "--stock", "20", "--requests", "2500", "--seed", "5"]

describe("cluster supervisor standbys", () => {
  const dirs: string[] = []
  afterAll(() => dirs.forEach(removeDir))

  it("a restart activates the loaded standbys, and exactly-once holds", async () => {
    const ns = `standby-${Date.now().toString(36)}${Math.floor(Math.random() * 1e6).toString(36)}`
    const dir = tempDir("standby")
    dirs.push(dir)
    const live = new Map<string, ChildProcess>()
    const loaded = new Map<string, number>()
    const activated = new Set<string>()
    let killed = false
    let restartedAt = 0
    const logged: string[] = []
    const result = await supervise({
      appSpec: "examples/shopping-cart",
      partitions: 2,
      namespace: ns,
      dataDir: dir,
      flags: ["--epoch-atoms", "5", ...shopFlags],
      maxRestarts: 2,
      standbyAfterMs: 0,
      env: { ...process.env, EDDY_PROGRESS: "1" },
      log: (line: string) => void logged.push(line),
      onStart: (name, child) => {
        live.set(name, child)
        if (killed && restartedAt === 0) restartedAt = Date.now()
      },
      onLine: (name, _stream, line) => {
        // Each role's first process and its standby both say when their modules are loaded.
        if (line.startsWith("eddy: modules loaded")) loaded.set(name, (loaded.get(name) ?? 0) + 1)
        if (line.startsWith("eddy: activated at")) activated.add(name)
        if (killed || name !== "coordinator" || !line.startsWith("eddy: committed epoch")) return
        if (!["coordinator", "worker-0", "worker-1"].every((n) => (loaded.get(n) ?? 0) >= 2)) return
        killed = true
        live.get("worker-1")!.kill("SIGKILL")
      },
    })
    expect(killed, "the run ended before the standbys were loaded; make it longer").toBe(true)
    expect(result.restarts, logged.join("\n")).toBe(1)
    expect([...activated].sort()).toEqual(["coordinator", "worker-0", "worker-1"])
    const refDir = tempDir("standby-ref")
    dirs.push(refDir)
    await Eddy.run(shoppingCartApp(shop), { dataDir: refDir, epochAtoms: 5 })
    expect((await clusterState(ns)).entries).toEqual((await committedState(refDir)).entries)
  }, 180_000)
})

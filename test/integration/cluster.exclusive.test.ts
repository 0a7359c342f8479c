import { execFile, type ChildProcess } from "node:child_process"
import { afterAll, describe, expect, it } from "vitest"
import { shoppingCartApp } from "../../examples/shopping-cart/app.ts"
import { clusterState } from "../../runtime/cluster/ClusterProcess.ts"
import { supervise } from "../../runtime/cluster/supervisor.ts"
import { S3BlobStore } from "../../runtime/cluster/S3BlobStore.ts"
import { BlobStore } from "../../runtime/ports/BlobStore.ts"
import { Effect } from "effect"
import { committedState, Eddy, stateReader } from "../../runtime/index.ts"
import { removeDir, repoRoot, runEddy, seeded, tempDir } from "../helpers.ts"

// The cluster runtime on the real servers (Kafka log, S3 snapshots bucket, NATS transport): the same engine as
// embedded, one process per partition plus a coordinator, must give exactly the embedded results, whatever dies.
const infra = (...args: string[]) =>
  new Promise<void>((resolve, reject) =>
    execFile(process.execPath, ["--import", "tsx", "scripts/infra.ts", ...args], { cwd: repoRoot }, (err, _out, stderr) => (err ? reject(new Error(`infra ${args.join(" ")}: ${stderr}`)) : resolve())),
  )
const restartServer = async (name: string) => {
  await infra("down", name)
  await infra("up", name)
}

const namespace = (name: string) => `${name}-${Date.now().toString(36)}${Math.floor(Math.random() * 1e6).toString(36)}`
const shop = { users: 30, items: 40, stock: 20, requests: 2500, seed: 3 }
const shopFlags = ["--users", "30", "--items", "40", "--stock", "20", "--requests", "2500", "--seed", "3"]

const embeddedReference = async () => {
  const dir = tempDir("shop-ref")
  const app = shoppingCartApp(shop)
  await Eddy.run(app, { dataDir: dir, epochAtoms: 50 })
  const state = await committedState(dir)
  removeDir(dir)
  return { state, report: await app.report!(stateReader(state)) }
}

describe("cluster runtime on Kafka, NATS and S3", () => {
  const dirs: string[] = []
  afterAll(() => dirs.forEach(removeDir))
  let reference: Awaited<ReturnType<typeof embeddedReference>> | undefined
  const ref = async () => (reference ??= await embeddedReference())

  it("fibonacci on 3 worker processes prints the embedded result", async () => {
    const r = await runEddy(["cluster", "examples/fibonacci", "--partitions", "3", "--namespace", namespace("fib"), "--n", "12"])
    expect(r.code, r.stderr).toBe(0)
    expect(r.stdout.trim().split("\n")).toContain("144")
  }, 120_000)

  it("the shopping cart on 3 worker processes ends in exactly the embedded state and report", async () => {
    const ns = namespace("shop")
    const r = await runEddy(["cluster", "examples/shopping-cart", "--partitions", "3", "--namespace", ns, "--epoch-atoms", "50", ...shopFlags])
    expect(r.code, r.stderr).toBe(0)
    const { state, report } = await ref()
    expect(r.stdout.trim()).toBe(report)
    const cluster = await clusterState(ns)
    expect(cluster.entries.length).toBeGreaterThan(0)
    expect(cluster.entries).toEqual(state.entries)
  }, 180_000)

  it("rescale: stopped on 2 partitions, resumed on 4, the results are unchanged", async () => {
    const ns = namespace("rescale")
    const first = await runEddy(["cluster", "examples/shopping-cart", "--partitions", "2", "--namespace", ns, "--epoch-atoms", "50", "--snapshot-every", "4", "--stop-after", "10", ...shopFlags])
    expect(first.code, first.stderr).toBe(0)
    const midway = await clusterState(ns)
    expect(midway.epoch).toBeGreaterThanOrEqual(10)
    const { state } = await ref()
    expect(midway.entries).not.toEqual(state.entries)
    const second = await runEddy(["cluster", "examples/shopping-cart", "--partitions", "4", "--namespace", ns, "--epoch-atoms", "50", "--snapshot-every", "4", ...shopFlags])
    expect(second.code, second.stderr).toBe(0)
    expect(second.stdout.trim()).toBe((await ref()).report)
    expect((await clusterState(ns)).entries).toEqual(state.entries)
  }, 180_000)

  it("SIGKILLs of workers and the coordinator at random moments (at least 10), a NATS, a Kafka and an S3 restart change nothing", async () => {
    const ns = namespace("faults")
    const dir = tempDir("cluster-faults")
    dirs.push(dir)
    const seed = Number(process.env["EDDY_SEED"] ?? Date.now() % 100000)
    const random = seeded(seed)
    const live = new Map<string, ChildProcess>()
    let kills = 0
    let commitsSinceStart = 0
    let target = 1 + Math.floor(random() * 3)
    const brokerRestarts: Array<Promise<void>> = []
    let finalEpoch = -1
    let maxOpened = 0
    let rolledBack = 0
    const result = await supervise({
      appSpec: "examples/shopping-cart",
      partitions: 3,
      namespace: ns,
      dataDir: dir,
      flags: ["--epoch-atoms", "50", "--liveness-ms", "4000", "--snapshot-every", "5", ...shopFlags],
      maxRestarts: 40,
      env: { ...process.env, EDDY_PROGRESS: "1" },
      log: () => undefined,
      onStart: (name, child) => {
        live.set(name, child)
        if (name === "coordinator") commitsSinceStart = 0
      },
      onLine: (name, _stream, line) => {
        const done = /^eddy coordinator: done after epoch (\d+)/.exec(line)
        if (done !== null) finalEpoch = Number(done[1])
        // Epochs rolled back: opened by an incarnation but above the epoch the next incarnation recovered to.
        const opened = /^eddy: opened epoch (\d+)/.exec(line)
        if (opened !== null) maxOpened = Math.max(maxOpened, Number(opened[1]))
        const recovered = /^eddy: recovered to epoch (\d+)/.exec(line)
        if (recovered !== null) {
          rolledBack += Math.max(0, maxOpened - Number(recovered[1]))
          maxOpened = Number(recovered[1])
        }
        if (name !== "coordinator" || !line.startsWith("eddy: committed epoch") || kills >= 10) return
        if (++commitsSinceStart < target) return
        // Kill after a few commits of this incarnation plus a random delay: anywhere inside an epoch.
        commitsSinceStart = -1e9
        target = 1 + Math.floor(random() * 3)
        const victims = [...live.keys()]
        const victim = victims[Math.floor(random() * victims.length)]!
        setTimeout(() => {
          if (live.get(victim)?.kill("SIGKILL") === true) kills++
          // Once each, mid-run: the NATS server, the Kafka broker and the S3 server are stopped and started again (S3
          // down fails snapshot uploads under way and the start-up of processes that load a snapshot).
          if (kills === 3) brokerRestarts.push(restartServer("nats"))
          if (kills === 6) brokerRestarts.push(restartServer("kafka"))
          if (kills === 8) brokerRestarts.push(restartServer("s3"))
        }, Math.floor(random() * 40))
      },
    })
    await Promise.all(brokerRestarts)
    console.log(`cluster fault test (seed ${seed}): ${kills} SIGKILLs, NATS, Kafka and S3 restarted once each, ${result.restarts} restarts of the whole cluster (${result.faults.length} faults seen), ${rolledBack} epochs rolled back`)
    expect(rolledBack).toBeGreaterThan(0)
    expect(brokerRestarts).toHaveLength(3)
    expect(kills).toBeGreaterThanOrEqual(10)
    expect(result.restarts).toBeGreaterThanOrEqual(10)
    const { state, report } = await ref()
    // Read the log until it shows the epoch the coordinator finished with (a broker that just restarted may
    // briefly serve an older high watermark); a different epoch after that is a failure.
    let cluster = await clusterState(ns)
    for (let i = 0; i < 20 && cluster.epoch !== finalEpoch; i++) {
      console.log(`read epoch ${cluster.epoch}, coordinator finished at ${finalEpoch}; reading again`)
      await new Promise((r) => setTimeout(r, 1000))
      cluster = await clusterState(ns)
    }
    expect(cluster.epoch).toBe(finalEpoch)
    const differing = cluster.entries.filter((e, i) => JSON.stringify(e) !== JSON.stringify(state.entries[i]))
    if (differing.length > 0) {
      console.log(`namespace ${ns}: ${differing.length} entries differ, e.g.`, JSON.stringify(differing.slice(0, 4)))
      console.log("expected", JSON.stringify(state.entries.filter((e) => differing.slice(0, 4).some((d) => d.key === e.key && d.task === e.task))))
    }
    expect(cluster.entries).toEqual(state.entries)
    expect(await shoppingCartApp(shop).report!(stateReader(cluster))).toBe(report)
    // Snapshots were written to S3 by the workers (parts) and the coordinator (manifests), and restarts used them.
    const manifests = await Effect.runPromise(
      Effect.gen(function* () {
        return yield* (yield* BlobStore).list("manifests/")
      }).pipe(Effect.provide(S3BlobStore.layer({ prefix: ns })), Effect.scoped),
    )
    expect(manifests.length).toBeGreaterThan(0)
  }, 900_000) // minutes on a loaded 2-core machine; a hang still ends well inside CI's limit
})

import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { committedState, start, stateReader, type RunningApp, type RunOptions } from "../Eddy.ts"
import { canonicalKey, parseCanonicalKey } from "../engine/keys.ts"
import { announce, clientFor, parseJsonArg } from "./clientCommands.ts"
import { loadApp } from "./loadApp.ts"
import { progressLine } from "./progress.ts"
import { tailCommand } from "./tail.ts"
import type { RestoreTiming } from "../engine/Engine.ts"
import type { PartStats } from "../engine/snapshots.ts"

const usage = `usage:
  eddy run <app> [--partitions N] [--data-dir DIR] [--epoch-ms MS] [--epoch-atoms N] [--snapshot-every EPOCHS]
           [--snapshot-chain N] [--snapshot-image-min BYTES] [--log-segment-bytes N] [--unchecked]
           [--max-restarts N] [app flags...]
      Runs an app on the embedded default. Without --data-dir the run uses a fresh temporary directory;
      with it, a re-run resumes after the last committed epoch. Flags eddy does not know go to the app.
      A run whose Kafka sources or sinks fail (the broker away) starts again from its last committed epoch,
      at most N times (default 50).
      Snapshots are incremental: a key group's is an image and up to N-1 deltas (default 16; 1: whole key
      groups every time); images under --snapshot-image-min bytes (default 65536) are always rewritten.
  eddy cluster <app> --partitions P [--namespace NS] [--data-dir DIR] [--max-restarts N] [engine and app flags]
      Runs the app as a local cluster: a coordinator and P worker processes over NATS, a Kafka log and S3
      (endpoints from EDDY_KAFKA_BROKERS, EDDY_NATS_URL, EDDY_S3_*), restarting them all if any fails.
  eddy coordinator <app> --partitions P [--namespace NS]
  eddy worker <app> --partition I --partitions P [--namespace NS] [--data-dir DIR]
      One process of a cluster, for running them on different machines.
  eddy run <app> --port N [--host H]
      Also serves clients over HTTP (docs/client.md) and keeps running when idle; Ctrl-C stops it.
  eddy send <app> <type>/<id> '<json>' [--key K] [--tell] [--timeout-ms MS] [--url URL | --data-dir DIR | --namespace NS]
      Asks an actor of a running app and prints its reply (with --tell: sends without waiting for a reply).
      Finds the app: --url, the data directory of a served run, a cluster namespace (NATS), else the app's
      served embedded run, else the cluster of namespace <app name>. --key K makes retries run once.
  eddy state <app> <type>/<id> [--url URL | --namespace NS]
      Prints an actor's committed state, asked of the running app.
  eddy state <app> <type>/<id> --data-dir DIR     (or a task name, or nothing: every entry)
      Prints committed state from the data directory of a running or stopped app.
  eddy tail <topic> [--from earliest|latest] [--limit N] [--idle-ms MS]
      Prints the committed records of a Kafka topic (read_committed), one per line, with a progress line.
  eddy actors <app> <type> --data-dir DIR
      Lists the ids of the actors of <type> that have committed state.`

/** Splits argv into positionals and --flags; `--x v`, `--x=v` and bare `--x` (true) are understood. */
export const parseFlags = (argv: ReadonlyArray<string>): { positional: string[]; flags: Record<string, string | boolean> } => {
  const positional: string[] = []
  const flags: Record<string, string | boolean> = {}
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!
    if (!a.startsWith("--")) {
      positional.push(a)
      continue
    }
    const eq = a.indexOf("=")
    if (eq > 0) flags[a.slice(2, eq)] = a.slice(eq + 1)
    else if (i + 1 < argv.length && !argv[i + 1]!.startsWith("--")) flags[a.slice(2)] = argv[++i]!
    else flags[a.slice(2)] = true
  }
  return { positional, flags }
}

const take = (flags: Record<string, string | boolean>, name: string): string | undefined => {
  const v = flags[name]
  delete flags[name]
  if (v === true) throw new Error(`--${name} needs a value`)
  return v === false ? undefined : v
}

const int = (v: string | undefined, name: string): number | undefined => {
  if (v === undefined) return undefined
  const n = Number(v)
  if (!Number.isInteger(n) || n < 0) throw new Error(`--${name} expects a non-negative integer, got '${v}'`)
  return n
}

const runCommand = async (appSpec: string, flags: Record<string, string | boolean>): Promise<number> => {
  const partitions = int(take(flags, "partitions"), "partitions")
  const dataDirFlag = take(flags, "data-dir")
  const epochMs = int(take(flags, "epoch-ms"), "epoch-ms")
  const epochAtoms = int(take(flags, "epoch-atoms"), "epoch-atoms")
  const snapshotEvery = int(take(flags, "snapshot-every"), "snapshot-every")
  const chainLength = int(take(flags, "snapshot-chain"), "snapshot-chain")
  const imageMin = int(take(flags, "snapshot-image-min"), "snapshot-image-min")
  if (chainLength === 0) throw new Error("--snapshot-chain expects at least 1 (1: every snapshot rewrites whole key groups)")
  const segmentBytes = int(take(flags, "log-segment-bytes"), "log-segment-bytes")
  const unchecked = flags["unchecked"] === true
  delete flags["unchecked"]
  const port = int(take(flags, "port"), "port")
  const showProgress = flags["progress"] === true
  delete flags["progress"]
  const host = take(flags, "host")
  const maxRestarts = int(take(flags, "max-restarts"), "max-restarts") ?? 50
  const app = await loadApp(appSpec, flags)
  const dataDir = dataDirFlag ?? mkdtempSync(join(tmpdir(), `eddy-${app.name}-`))
  const started = Date.now()
  let stopping = false
  let running: RunningApp | undefined
  const onSignal = () => {
    stopping = true
    void running?.stop()
  }
  process.on("SIGINT", onSignal)
  process.on("SIGTERM", onSignal)
  const options: RunOptions = {
    dataDir,
    ...(partitions === undefined ? {} : { partitions }),
    ...(epochMs === undefined ? {} : { epochMs }),
    ...(epochAtoms === undefined ? {} : { epochAtoms }),
    ...(snapshotEvery === undefined ? {} : { snapshotEvery }),
    ...(chainLength === undefined && imageMin === undefined ? {} : { snapshotChain: { ...(chainLength === undefined ? {} : { maxLength: chainLength }), ...(imageMin === undefined ? {} : { minImageBytes: imageMin }) } }),
    ...(segmentBytes === undefined ? {} : { logSegmentBytes: segmentBytes }),
    checked: !unchecked,
    ...(port === undefined ? {} : { serve: { port, ...(host === undefined ? {} : { host }) } }),
    // EDDY_PROGRESS=1: one line per committed epoch on stderr (tests use it to kill at known points).
    ...(process.env["EDDY_PROGRESS"] === "1" ? { onCommit: (e: number) => process.stderr.write(`eddy: committed epoch ${e}\n`) } : {}),
  }
  let unannounce = (): void => undefined
  try {
    for (let restarts = 0, quickFailures = 0; ; ) {
      let recovered = false
      const launchedAt = Date.now()
      const run: RunningApp = (running = start(app, { ...options, onRecovered: () => (recovered = true) }))
      if (stopping) void run.stop()
      if (run.url !== undefined) {
        const url = await run.url.catch(async (err: unknown) => {
          await run.stop()
          throw new Error(`cannot serve on port ${port}: ${err instanceof Error ? err.message : String(err)}`)
        })
        unannounce()
        unannounce = announce(app.name, url)
        if (restarts === 0) process.stderr.write(`eddy: app '${app.name}' serves clients at ${url} (data in ${dataDir}; stop with Ctrl-C)\n`)
      }
      // On a terminal (or with --progress), a live line: epochs, records in, client requests.
      const progress =
        process.stderr.isTTY === true || showProgress
          ? progressLine(() => {
              const s = run.stats()
              return `eddy: epoch ${s.epoch} · ${s.records} records in · ${s.out} out · ${s.requests} requests, ${s.answered} answered · ${s.failures} failures`
            })
          : undefined
      const outcome = await run.done.then(
        (r) => ({ r }),
        (err: unknown) => ({ err }),
      ).finally(() => progress?.done())
      if ("r" in outcome) {
        const r = outcome.r
        if (app.report !== undefined) process.stdout.write((await app.report(run)) + "\n")
        const resumed = r.recoveredEpoch > 0 ? `, resumed after epoch ${r.recoveredEpoch}` : ""
        process.stderr.write(
          `eddy: app '${app.name}' committed ${r.epochs} epochs (${r.records} source records, ${r.failures} task failures) in ${Date.now() - started} ms on ${partitions ?? 1} partition(s)${resumed}\n`,
        )
        return r.failures > 0 ? 3 : 0
      }
      // Kafka away (a broker restarting) or a transaction it lost: started again from the data directory, as a
      // supervisor would, once this run had started (Kafka unreachable at start-up is reported, not waited for).
      if (stopping || !(recovered || restarts > 0) || !isKafkaFailure(outcome.err)) throw outcome.err
      if (++restarts > maxRestarts) throw new Error(`gave up after ${maxRestarts} restarts (--max-restarts); last: ${messageOf(outcome.err)}`)
      process.stderr.write(`eddy: ${messageOf(outcome.err)}; restarting from the last committed epoch (restart ${restarts} of at most ${maxRestarts})\n`)
      // A run that fails right after starting (the broker still away) is retried with growing pauses.
      quickFailures = Date.now() - launchedAt < 5000 ? quickFailures + 1 : 0
      await new Promise((resolve) => setTimeout(resolve, Math.min(250 * 2 ** quickFailures, 4000)))
      if (stopping) throw outcome.err
    }
  } finally {
    unannounce()
    process.off("SIGINT", onSignal)
    process.off("SIGTERM", onSignal)
    if (dataDirFlag === undefined) rmSync(dataDir, { recursive: true, force: true })
  }
}

/** A failure of a Kafka port: the Kafka egress (EgressError of a Kafka sink) or a Kafka source. */
const isKafkaFailure = (err: unknown): boolean => {
  const e = err as { _tag?: unknown; name?: unknown; message?: unknown } | null
  if (e === null || typeof e !== "object") return false
  if (e.name === "KafkaIngressError") return true
  // Not a sink's encoder that throws (the same record would fail again).
  return e._tag === "EgressError" && typeof e.message === "string" && e.message.startsWith("Kafka egress")
}

const messageOf = (err: unknown): string => {
  const e = err as { _tag?: string; message?: string } | null
  return `${e?._tag === undefined ? "" : `${e._tag}: `}${e?.message ?? String(err)}`
}

/** Engine flags shared by every command that runs an app; what remains in `flags` belongs to the app. */
const engineFlags = (flags: Record<string, string | boolean>) => {
  const epochMs = int(take(flags, "epoch-ms"), "epoch-ms")
  const epochAtoms = int(take(flags, "epoch-atoms"), "epoch-atoms")
  const stopAfter = int(take(flags, "stop-after"), "stop-after")
  const unchecked = flags["unchecked"] === true
  delete flags["unchecked"]
  // A served cluster keeps running when idle, for its clients, until stopped (SIGTERM to the coordinator).
  const serve = flags["serve"] === true
  delete flags["serve"]
  let recovered: number | undefined
  const progress = process.env["EDDY_PROGRESS"] === "1"
  return {
    // The run's last epoch is the stopAfter-th after the one it recovered to.
    ...(stopAfter === undefined ? {} : { stopAfter: (e: number) => recovered !== undefined && e - recovered >= stopAfter }),
    ...(epochMs === undefined ? {} : { epochMs }),
    ...(epochAtoms === undefined ? {} : { epochAtoms }),
    ...(serve ? { stopWhenIdle: false } : {}),
    checked: !unchecked,
    onRecovered: (e: number) => {
      recovered = e
      if (progress) process.stderr.write(`eddy: recovered to epoch ${e}\n`)
    },
    onCommit: (e: number, _votes: unknown, t: { commitMs: number; epochMs: number }) => {
      if (progress) process.stderr.write(`eddy: committed epoch ${e} (epoch ${t.epochMs.toFixed(2)} ms, commit ${t.commitMs.toFixed(2)} ms)\n`)
    },
    ...(progress
      ? {
          onOpen: (e: number) => process.stderr.write(`eddy: opened epoch ${e}\n`),
          onSnapshot: (e: number) => process.stderr.write(`eddy: snapshot ${e} written\n`),
          onSnapshotPart: (e: number, s: PartStats) => process.stderr.write(`eddy: snapshot part ${e}: ${s.blobs} blobs, ${s.bytes} bytes in ${s.ms.toFixed(1)} ms\n`),
          // Times since the process started: where a restart's time goes (bench/recovery.ts reads this line).
          onRestored: (t: RestoreTiming) =>
            process.stderr.write(
              `eddy: restored to epoch ${t.epoch} at ${(t.startedAt + t.readMs + t.replayMs + t.restoreMs).toFixed(1)} ms ` +
                `(engine start ${t.startedAt.toFixed(1)}, snapshot ${t.snapshot?.epoch ?? 0} ${t.snapshot?.blobs ?? 0} blobs ${t.snapshot?.bytes ?? 0} bytes ${t.snapshotMs.toFixed(1)}, ` +
                `log ${t.logEntries} entries ${t.logMs.toFixed(1)}, both read ${t.readMs.toFixed(1)}, replay ${t.replayMs.toFixed(1)}, restore ${t.restoreMs.toFixed(1)})\n`,
            ),
        }
      : {}),
  }
}

const required = (v: number | undefined, name: string): number => {
  if (v === undefined) throw new Error(`--${name} is required`)
  return v
}

/** `eddy coordinator` / `eddy worker`: one process of a cluster (normally started by `eddy cluster`). */
const clusterProcessCommand = async (role: "coordinator" | "worker", appSpec: string, flags: Record<string, string | boolean>): Promise<number> => {
  const partitions = required(int(take(flags, "partitions"), "partitions"), "partitions")
  const partition = role === "worker" ? required(int(take(flags, "partition"), "partition"), "partition") : undefined
  const namespace = take(flags, "namespace")
  const livenessMs = int(take(flags, "liveness-ms"), "liveness-ms")
  const snapshotEvery = int(take(flags, "snapshot-every"), "snapshot-every")
  const dataDir = take(flags, "data-dir")
  const standby = flags["standby"] === true
  delete flags["standby"]
  const { stopAfter, ...engine } = engineFlags(flags)
  const app = await loadApp(appSpec, flags)
  const { startClusterProcess } = await import("../cluster/ClusterProcess.ts")
  const progress = process.env["EDDY_PROGRESS"] === "1"
  if (progress) process.stderr.write(`eddy: modules loaded at ${performance.now().toFixed(1)} ms\n`)
  if (standby) {
    // A spare started ahead of time by the supervisor (runtime/cluster/supervisor.ts): loaded, connected to nothing,
    // it starts when told ("go" on stdin), or exits when its stdin closes first.
    if (!(await activated())) return 0
    if (progress) process.stderr.write(`eddy: activated at ${performance.now().toFixed(1)} ms\n`)
  }
  const running = startClusterProcess(app, {
    ...engine,
    ...(stopAfter === undefined ? {} : { stopWhen: stopAfter }),
    role: partition === undefined ? "coordinator" : { partition },
    partitions,
    ...(namespace === undefined ? {} : { namespace }),
    ...(livenessMs === undefined ? {} : { livenessMs }),
    ...(snapshotEvery === undefined ? {} : { snapshotEvery }),
    ...(dataDir === undefined ? {} : { dataDir }),
  })
  const onSignal = () => void running.stop()
  process.once("SIGTERM", onSignal)
  process.once("SIGINT", onSignal)
  const r = await running.done
  process.stderr.write(`eddy ${role}${partition === undefined ? "" : ` ${partition}`}: done after epoch ${r.lastEpoch} (${r.epochs} committed here, generation ${r.generation})\n`)
  return 0
}

/** Waits for a line "go" on stdin (true), or its end (false). */
const activated = (): Promise<boolean> =>
  new Promise((resolve) => {
    let text = ""
    const done = (go: boolean) => {
      process.stdin.off("data", onData)
      process.stdin.off("end", onEnd)
      process.stdin.destroy()
      resolve(go)
    }
    const onData = (d: Buffer) => {
      text += d.toString()
      if (text.split("\n").some((l) => l.trim() === "go")) done(true)
    }
    const onEnd = () => done(false)
    process.stdin.on("data", onData)
    process.stdin.on("end", onEnd)
  })

/** `eddy cluster`: a supervised local cluster, then the app's report from the committed state in Kafka and S3. */
const clusterCommand = async (appSpec: string, argv: ReadonlyArray<string>, flags: Record<string, string | boolean>): Promise<number> => {
  const partitions = required(int(take(flags, "partitions"), "partitions"), "partitions")
  const namespace = take(flags, "namespace")
  const dataDir = take(flags, "data-dir") ?? mkdtempSync(join(tmpdir(), "eddy-cluster-"))
  const maxRestarts = int(take(flags, "max-restarts"), "max-restarts") ?? 50
  const app = await loadApp(appSpec, { ...flags })
  const ns = namespace ?? app.name
  // Every process gets the same flags as this one, minus those the supervisor sets itself.
  const own = new Set(["partitions", "namespace", "data-dir", "max-restarts"])
  const passed: string[] = []
  for (let i = 2; i < argv.length; i++) {
    const a = argv[i]!
    const name = a.startsWith("--") ? a.slice(2).split("=")[0]! : undefined
    if (name !== undefined && own.has(name)) {
      if (!a.includes("=") && i + 1 < argv.length && !argv[i + 1]!.startsWith("--")) i++
      continue
    }
    passed.push(a)
  }
  const { supervise } = await import("../cluster/supervisor.ts")
  const { checkEndpoints, clusterState } = await import("../cluster/ClusterProcess.ts")
  await checkEndpoints(ns)
  const started = Date.now()
  const stopping = new AbortController()
  const onSignal = () => stopping.abort()
  process.once("SIGINT", onSignal)
  process.once("SIGTERM", onSignal)
  const r = await supervise({ appSpec, partitions, namespace: ns, dataDir, flags: passed, maxRestarts, signal: stopping.signal }).finally(() => {
    process.off("SIGINT", onSignal)
    process.off("SIGTERM", onSignal)
  })
  const state = await clusterState(ns)
  if (app.report !== undefined) process.stdout.write((await app.report(stateReader(state))) + "\n")
  process.stderr.write(`eddy cluster: app '${app.name}' done through epoch ${state.epoch} in ${Date.now() - started} ms on ${partitions} worker(s), ${r.restarts} restart(s)\n`)
  return 0
}

const json = (v: unknown): string => JSON.stringify(v, (_k, x: unknown) => (typeof x === "bigint" ? x.toString() : x instanceof Map ? Object.fromEntries(x) : x instanceof Set ? [...x] : x))

/** `eddy state <app> <spec>`: a view of the app (e.g. actors: `cart/42`) names the task and key; else a task name. */
const stateCommand = async (appSpec: string, flags: Record<string, string | boolean>, spec: string | undefined): Promise<number> => {
  const dataDir = take(flags, "data-dir")
  const url = take(flags, "url")
  const namespace = take(flags, "namespace")
  const app = await loadApp(appSpec, flags)
  // Without a data directory (or with --url/--namespace), ask the running app through the client API.
  if (dataDir === undefined || url !== undefined || namespace !== undefined) {
    if (spec === undefined || !spec.includes("/")) throw new Error("usage: eddy state <app> <type>/<id> [--url URL | --namespace NS | --data-dir DIR]")
    const { client } = await clientFor(app.name, { ...(url === undefined ? {} : { url }), ...(namespace === undefined ? {} : { namespace }) })
    try {
      const value = await client.state(spec)
      if (value === undefined) {
        process.stderr.write(`eddy: ${spec} has no committed state\n`)
        return 1
      }
      process.stdout.write(json(value) + "\n")
      return 0
    } finally {
      await client.close()
    }
  }
  const s = await committedState(dataDir)
  for (const view of app.views ?? []) {
    const key = spec === undefined ? undefined : view.key(spec)
    if (key === undefined) continue
    const ks = canonicalKey(key)
    const entry = s.entries.find((e) => e.task === view.task && e.key === ks)
    if (entry === undefined) {
      process.stderr.write(`eddy: ${spec} has no committed state (as of epoch ${s.epoch})\n`)
      return 1
    }
    process.stdout.write(json(view.show(entry.value)) + "\n")
    return 0
  }
  process.stdout.write(`# committed through epoch ${s.epoch}\n`)
  for (const e of s.entries) if (spec === undefined || e.task === spec || e.task.endsWith(`/${spec}`)) process.stdout.write(`${e.task}\t${e.key}\t${json(e.value)}\n`)
  return 0
}

/** `eddy actors <app> <type>`: ids of the actors of one type with committed state. */
const actorsCommand = async (appSpec: string, flags: Record<string, string | boolean>, group: string | undefined): Promise<number> => {
  const dataDir = take(flags, "data-dir")
  if (dataDir === undefined || group === undefined) throw new Error("usage: eddy actors <app> <type> --data-dir DIR")
  const app = await loadApp(appSpec, flags)
  const s = await committedState(dataDir)
  let n = 0
  for (const view of app.views ?? []) {
    for (const e of s.entries) {
      if (e.task !== view.task) continue
      const d = view.describe(parseCanonicalKey(e.key))
      if (d.group !== group || view.show(e.value) === undefined) continue
      process.stdout.write(d.spec + "\n")
      n++
    }
  }
  process.stderr.write(`eddy: ${n} ${group} actor(s) as of epoch ${s.epoch}\n`)
  return 0
}

/** `eddy send <app> <type>/<id> '<json>'`: asks the actor (or tells it, with --tell) and prints the answer. */
const sendCommand = async (appSpec: string, flags: Record<string, string | boolean>, target: string | undefined, body: string | undefined): Promise<number> => {
  if (target === undefined || !target.includes("/")) throw new Error("usage: eddy send <app> <type>/<id> '<json>' [--key K] [--tell] [--url URL | --namespace NS | --data-dir DIR]")
  const message = parseJsonArg(body, "the message")
  const url = take(flags, "url")
  const dataDir = take(flags, "data-dir")
  const namespace = take(flags, "namespace")
  const key = take(flags, "key")
  const timeoutMs = int(take(flags, "timeout-ms"), "timeout-ms")
  const tell = flags["tell"] === true
  delete flags["tell"]
  const app = await loadApp(appSpec, flags)
  const { client, where } = await clientFor(app.name, {
    ...(url === undefined ? {} : { url }),
    ...(dataDir === undefined ? {} : { dataDir }),
    ...(namespace === undefined ? {} : { namespace }),
    ...(timeoutMs === undefined ? {} : { timeoutMs }),
  })
  try {
    const options = key === undefined ? {} : { idempotencyKey: key }
    if (tell) {
      const r = await client.tell(target, message, options)
      process.stderr.write(`eddy: sent to ${target} via ${where}, committed in epoch ${r.epoch}\n`)
    } else {
      const r = await client.ask(target, message, options)
      process.stdout.write(json(r.reply) + "\n")
      process.stderr.write(`eddy: answered by ${target} via ${where}, committed in epoch ${r.epoch}\n`)
    }
    return 0
  } finally {
    await client.close()
  }
}

export const main = async (argv: ReadonlyArray<string>): Promise<number> => {
  const { positional, flags } = parseFlags(argv)
  const [command, appSpec, ...rest] = positional
  try {
    if (command === "run" && appSpec !== undefined) return await runCommand(appSpec, flags)
    if ((command === "coordinator" || command === "worker") && appSpec !== undefined) return await clusterProcessCommand(command, appSpec, flags)
    if (command === "cluster" && appSpec !== undefined) return await clusterCommand(appSpec, argv, flags)
    if (command === "state" && appSpec !== undefined) return await stateCommand(appSpec, flags, rest[0])
    if (command === "send" && appSpec !== undefined) return await sendCommand(appSpec, flags, rest[0], rest[1])
    if (command === "tail" && appSpec !== undefined) return await tailCommand(appSpec, flags)
    if (command === "actors" && appSpec !== undefined) return await actorsCommand(appSpec, flags, rest[0])
    process.stderr.write(usage + "\n")
    return command === undefined || command === "help" || flags["help"] === true ? 0 : 2
  } catch (err) {
    process.stderr.write(`eddy: ${messageOf(err)}\n`)
    return 2
  }
}

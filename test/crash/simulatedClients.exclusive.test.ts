import { Layer } from "effect"
import { describe, expect, it } from "vitest"
import { ClientSession } from "../../client/batching.ts"
import { counterApp } from "../../examples/counter/app.ts"
import { FrontError, type RequestFront } from "../../runtime/front/RequestFront.ts"
import { MemoryBlobStore } from "../../runtime/embedded/MemoryBlobStore.ts"
import { MemoryLog } from "../../runtime/embedded/MemoryLog.ts"
import { committedStateFrom, start, stateReader, type RunOptions } from "../../runtime/index.ts"
import { seeded } from "../helpers.ts"
import { seedOf } from "./crashLoop.ts"
import { flakyBlobStore } from "./flakyBlobStore.ts"
import { clusterProcesses, IncarnationTally, startIncarnation } from "./simulatedCluster.ts"

// Clients of a cluster simulated in one process (simulatedCluster.ts), while its processes are killed at random
// envelopes and envelopes are lost silently. The clients reach the workers' request fronts the way NATS does: any
// worker admits a request (a target in another worker's partitions hops there) and answers a reply address of the
// caller's. A caller whose process died retries with the same idempotency key in the next incarnation, at another
// worker; some requests have a second caller with the same key at the same time, a third have no key (they are
// numbered in the client's session, as the client library does), and some are tells. Each request must run once: a
// counter's answers are the running sums of its adds, whatever order they ran in, every answer a key ever got is the
// same, and the committed state is the sum of all adds.
const P = 3
const COUNTERS = 12
const TOLD = 4
const REQUESTS = 600
const KILLS = 8
const LOSSES = 2
const LIVENESS_MS = 2500
const runOptions = (pipeline: boolean): RunOptions => ({ partitions: P, epochMs: 2, snapshotEvery: 4, snapshotMinMs: 0, pipeline, stopWhenIdle: false, onLog: () => undefined })
const processes = clusterProcesses(P)

type Outcome = { readonly reply: number } | FrontError | "ended"

interface Incarnation {
  readonly fronts: RequestFront[]
  /** Resolves when every process of this incarnation has ended. */
  readonly ended: Promise<void>
}

describe("clients of a cluster simulated in one process", () => {
  it("requests retried with their idempotency key across killed processes and lost envelopes run once, and every caller of a key gets one answer", async () => {
    const seed = seedOf()
    console.log(`simulated clients: seed ${seed}`)
    const random = seeded(seed)
    const callerRandom = seeded(seed + 2)
    const log = new MemoryLog.Store()
    const blobs = new Map<string, Uint8Array>()
    const blobRandom = seeded(seed + 1)
    const blobStats = { calls: 0, failed: 0 }

    // The callers' reply addresses, as NATS reply subjects: whichever worker commits an answer delivers it here.
    const waiting = new Map<string, (o: Outcome) => void>()
    const answersOf = new Map<string, number[]>()
    const keyOf = new Map<string, string>()
    let addresses = 0
    let current: Incarnation | undefined
    let upNext: Promise<Incarnation>
    let onUp: (i: Incarnation) => void = () => undefined
    const nextIncarnation = () => (upNext = new Promise((r) => (onUp = r)))
    nextIncarnation()
    const tally = new IncarnationTally()
    let faultFree = false
    const stats = { attempts: 0, retried: 0, refused: new Map<string, number>() }

    /** One caller's request: retried with its key until answered. */
    const call = async (key: string, target: string, add: number, o: { readonly numbered?: { readonly seq: number; readonly ack: number }; readonly tell?: boolean } = {}): Promise<number> => {
      for (;;) {
        const inc = current ?? (await upNext)
        const front = inc.fronts[Math.floor(callerRandom() * inc.fronts.length)]!
        const address = `sim:${++addresses}`
        keyOf.set(address, key)
        stats.attempts++
        const outcome = await new Promise<Outcome>((resolve) => {
          waiting.set(address, resolve)
          void inc.ended.then(() => resolve("ended"))
          try {
            const ask = o.tell !== true
            front.submitFor(o.numbered === undefined ? { target, message: { add }, ask, key } : { target, message: { add }, ask, session: { id: session.id, ...o.numbered } }, address)
          } catch (err) {
            resolve(err instanceof FrontError ? err : new FrontError("BadRequest", String(err)))
          }
        })
        waiting.delete(address)
        if (outcome !== "ended" && !(outcome instanceof FrontError)) return outcome.reply
        if (outcome instanceof FrontError) {
          // Only a process on its way down refuses (Unavailable), or one flooded (Busy): anything else is a bug.
          expect(["Unavailable", "Busy"], `${key}: ${outcome.message}`).toContain(outcome.tag)
          stats.refused.set(outcome.tag, (stats.refused.get(outcome.tag) ?? 0) + 1)
        }
        stats.retried++
        if (current === inc) await inc.ended
      }
    }

    const session = new ClientSession()
    const requests: Array<{ key: string; target: string; add: number; kind: "keyed" | "numbered" | "tell" }> = []
    let next = 0
    const callers = Promise.all(
      Array.from({ length: 12 }, async () => {
        while (next < REQUESTS || tally.kills < KILLS || tally.lost < LOSSES) {
          const i = next++
          // Every third goes without a key, numbered in the client's session as the client library does (its
          // retries carry the same number and acknowledgement); some of the rest are tells (no reply) to counters of
          // their own, whose state alone shows whether each ran once.
          const kind = i % 3 === 1 ? "numbered" : i % 7 === 3 ? "tell" : "keyed"
          const r = { key: `r${i}`, target: kind === "tell" ? `counter/t${i % TOLD}` : `counter/c${i % COUNTERS}`, add: i + 1, kind } as const
          requests.push(r)
          if (kind === "numbered") {
            const numbered = session.open()
            await session.settled(numbered.seq, call(r.key, r.target, r.add, { numbered }))
            continue
          }
          if (kind === "tell") {
            await call(r.key, r.target, r.add, { tell: true })
            continue
          }
          // Every fifth request has a second caller with the same key, at the same time (through another worker, as
          // a client's retry after a timeout can be).
          const [a, b] = await Promise.all([call(r.key, r.target, r.add), i % 5 === 0 ? call(r.key, r.target, r.add) : undefined])
          if (b !== undefined) expect(b, `the two callers of ${r.key}`).toBe(a)
        }
      }),
    )

    let stuck: string[] = []
    const reasked: Array<{ key: string; reply: number }> = []
    let incarnations = 0
    let logCrashes = 0
    let lossesMadeGood = 0
    let afterCommitKills = 0
    for (; incarnations < 80; incarnations++) {
      const killAt = tally.kills < KILLS ? 1 + Math.floor(random() * 800) : undefined
      const loseAt = killAt === undefined && tally.lost < LOSSES ? 1 + Math.floor(random() * 800) : undefined
      faultFree = killAt === undefined && loseAt === undefined
      if (incarnations > 0 && killAt !== undefined && random() < 0.5) {
        log.crash()
        logCrashes++
      }
      // Every other kill is the coordinator's, as it sends a COMMITTED: the epoch is durable, and its answers never
      // go out. Their callers' retries must be answered from the requests' entries, not run again.
      const afterCommit = killAt !== undefined && tally.kills % 2 === 0
      const victim = afterCommit ? 0 : Math.floor(random() * processes.length)
      const fronts: RequestFront[] = []
      // Resolved only once `current` no longer names this incarnation (not as soon as its processes end), so a caller
      // it wakes never picks it again.
      let endIncarnation: () => void = () => undefined
      const ended = new Promise<void>((r) => (endIncarnation = r))
      // The workers' reply subjects: answers committed at one worker for callers of another travel back to them.
      const serve = async (front: RequestFront) => {
        front.remote = (address, a) => {
          const key = keyOf.get(address)!
          if (a.x === undefined) answersOf.set(key, [...(answersOf.get(key) ?? []), a.r as number])
          waiting.get(address)?.(a.x === undefined ? { reply: a.r as number } : new FrontError(a.x.tag, a.x.message))
        }
        fronts.push(front)
        return { close: () => Promise.resolve() }
      }
      const inc = startIncarnation(processes, { seed: seed * 1000 + incarnations, killAt: afterCommit ? 1 + Math.floor(killAt! / 8) : killAt, ...(afterCommit ? { killOn: "committed" as const } : {}), loseAt, victim, livenessMs: LIVENESS_MS }, (p, transport) => {
        const ports = Layer.mergeAll(MemoryLog.layer(log), flakyBlobStore(blobs, { random: blobRandom, share: faultFree ? 0 : 0.02, failCalls: [10, 40] }, blobStats), transport)
        return start(counterApp(), runOptions(incarnations % 2 === 1), { ports, host: p.host, livenessMs: LIVENESS_MS, ...(p.host.coordinator ? {} : { serve }) })
      })
      const { apps, net } = inc
      current = { fronts, ended }
      onUp(current)
      // The fault-free incarnation serves until the callers are done, asks some keys once more, then stops (the
      // coordinator stops them all).
      // A fault-free incarnation answers every request within a few epochs: one still waiting after 30 s is lost,
      // and the run stops so the test can say which.
      if (faultFree) {
        const bound = setTimeout(() => {
          stuck = [...waiting.keys()].map((a) => keyOf.get(a)!)
          void apps[0]!.stop().catch(() => undefined)
        }, 30_000)
        void callers
          .then(() => Promise.all(requests.filter((r, i) => r.kind === "keyed" && i % 20 === 3).map(async (r) => reasked.push({ key: r.key, reply: await call(r.key, r.target, r.add) }))))
          .finally(() => {
            clearTimeout(bound)
            void apps[0]!.stop().catch(() => undefined)
          })
      }
      // A lost envelope the run makes good (a wake, a COMMITTED that a later one covers) ends nothing: once the run has
      // gone on for twice the liveness time after the loss, it is stopped and the next incarnation starts.
      let lostAt: number | undefined
      let madeGood = false
      const afterLoss = setInterval(() => {
        if (net.stats.dropped === 0) return
        lostAt ??= Date.now()
        if (Date.now() - lostAt < 2 * LIVENESS_MS || madeGood) return
        madeGood = true
        void apps[0]!.stop().catch(() => undefined)
      }, 100)
      const endedSoFar: string[] = processes.map(() => "running")
      inc.outcomes.forEach((o, i) => void o.then((x) => (endedSoFar[i] = x)))
      const watchdog = setInterval(() => {
        if (process.env["EDDY_DEBUG_SIM"] === "1") console.log(`incarnation ${incarnations} still running: kill ${killAt}, lose ${loseAt}, sent ${net.stats.sent}, ${JSON.stringify(endedSoFar)}, ${JSON.stringify(apps.map((a) => a.stats()))}, waiting ${waiting.size}`)
      }, 10_000)
      const endedAs = await inc.ended
      clearInterval(watchdog)
      clearInterval(afterLoss)
      current = undefined
      nextIncarnation()
      endIncarnation()
      if (process.env["EDDY_DEBUG_SIM"] === "1") console.log(`incarnation ${incarnations}: kill ${killAt} (${inc.killed() ? processes[victim]!.name : "none"}), lose ${loseAt}, ${JSON.stringify(endedAs)}, ${next} requests, ${waiting.size} waiting, ${net.stats.sent} sent`)
      if (afterCommit && inc.killed()) afterCommitKills++
      if (tally.record(endedAs, inc, victim)) {
        if (faultFree) break
        expect(madeGood, `incarnation ${incarnations} stopped by itself`).toBe(true)
        lossesMadeGood++
      }
    }
    expect(stuck, `seed ${seed}: requests unanswered in the fault-free run`).toEqual([])
    await callers
    const refused = JSON.stringify(Object.fromEntries(stats.refused))
    console.log(
      `simulated clients (seed ${seed}): ${requests.length} requests, ${stats.attempts} attempts, ${stats.retried} retried (refused ${refused}); ${tally.summary()}; ${afterCommitKills} kills of the coordinator sending a COMMITTED; ${lossesMadeGood} losses made good within the run, ${logCrashes} log crashes, ${blobStats.failed} blob store calls failed, over ${incarnations + 1} incarnations`,
    )
    expect(tally.kills).toBeGreaterThanOrEqual(KILLS)
    expect(afterCommitKills).toBeGreaterThanOrEqual(KILLS / 2)
    expect(tally.lost).toBeGreaterThanOrEqual(LOSSES)
    expect(stats.retried).toBeGreaterThan(0)

    // Every answer a key ever got (the first, late ones, the other caller's, the re-asks) is the same.
    for (const r of requests) {
      const got = answersOf.get(r.key) ?? []
      expect(got.length, `${r.key} was answered`).toBeGreaterThan(0)
      expect(new Set(got).size, `seed ${seed}: ${r.key} got different answers ${got.join(", ")}`).toBe(1)
    }
    expect(reasked.length).toBe(requests.filter((r, i) => r.kind === "keyed" && i % 20 === 3).length)
    for (const x of reasked) expect(x.reply, `re-asked ${x.key}`).toBe(answersOf.get(x.key)![0])
    // A counter's answers, in the order the adds ran, are the running sums of its adds; its state is their total.
    const committed = stateReader(await committedStateFrom(Layer.merge(MemoryLog.layer(log), MemoryBlobStore.layer(blobs))))
    const view = counterApp().views![0]!
    for (let c = 0; c < COUNTERS; c++) {
      const mine = requests.filter((r) => r.target === `counter/c${c}`).map((r) => ({ add: r.add, reply: answersOf.get(r.key)![0]! }))
      mine.sort((x, y) => x.reply - y.reply)
      let sum = 0
      for (const m of mine) {
        sum += m.add
        expect(m.reply, `seed ${seed}, counter c${c}: answers must be the running sums (an add ran twice or never)`).toBe(sum)
      }
      const target = `counter/c${c}`
      expect(view.show(await committed.query(view.task, view.key(target)!)), `seed ${seed}: ${target}'s committed state`).toBe(sum)
    }
    // The tells' counters hold the sum of their adds.
    for (let t = 0; t < TOLD; t++) {
      const target = `counter/t${t}`
      const sum = requests.filter((r) => r.target === target).reduce((a, r) => a + r.add, 0)
      expect(sum).toBeGreaterThan(0)
      expect(view.show(await committed.query(view.task, view.key(target)!)), `seed ${seed}: ${target}'s committed state (a tell ran twice or never)`).toBe(sum)
    }
  }, 300_000)
})

/**
 * A Transport for fault tests: nodes (processes) in this one process, each hosting some endpoints (`node`), or one
 * hosting every endpoint as in-process (`layer`); delivery follows a seeded schedule instead of one FIFO. Each (sender, receiver) pair is a lane kept in order (the port's contract); which
 * lane delivers next is a random pick among those whose head is due, and a message may be held for a while when
 * sent. So envelopes of different pairs interleave in ways one FIFO never shows, as NATS between processes can.
 * A drop loses the n-th envelope sent (of a kind, if given) and then fails every later receive and send of the node
 * it was for with TransportError, as the NATS transport does when its connection drops (docs/protocol.md): the run
 * ends and must recover from its log. With `silent`, envelopes are lost and nothing fails: only the engine's own
 * checks (round counts, liveness) can notice. `kill(node)` fails a node the same way at a moment of the test's
 * choosing; envelopes for a failed node are lost, as NATS drops messages nobody is subscribed for.
 */
import { Effect, Layer } from "effect"
import { COORDINATOR, Transport, TransportError, type Envelope, type TransportService } from "../../runtime/ports/Transport.ts"
import { seeded } from "../helpers.ts"

export interface NetworkFaults {
  readonly seed: number
  /** Share of envelopes held back when sent (default 0.2). */
  readonly holdShare?: number
  /** A held envelope becomes due within this many ms (default 4). */
  readonly maxHoldMs?: number
  /** Lose the `at`-th envelope sent (1-based; the `at`-th of `kind` if given), then fail. */
  readonly drops?: ReadonlyArray<{ readonly kind?: Envelope["t"]; readonly at: number }>
  /** Lose them without failing anything. */
  readonly silent?: boolean
  /** Called with each envelope sent, numbered from 1 (a test kills a node at a count of its choosing). */
  readonly onSend?: (n: number, env: Envelope) => void
}

export interface NetworkStats {
  sent: number
  delivered: number
  /** Delivered while an envelope sent earlier (on another lane) was still waiting. */
  overtaking: number
  held: number
  dropped: number
  /** Envelopes sent, per kind. */
  readonly kinds: Record<string, number>
}

interface InFlight {
  readonly to: number
  readonly env: Envelope
  readonly n: number
  readonly dueAt: number
}

type Delivery = { readonly to: number; readonly env: Envelope }

/** Who sent an envelope, from its kind: the partitions name themselves; the rest come from the coordinator's side. */
const senderOf = (env: Envelope): string => {
  switch (env.t) {
    case "data":
    case "done":
    case "vote":
    case "ready":
      return `p${env.from}`
    case "snapshot":
      return `p${env.partitions.join("-")}`
    case "wake":
      return "front"
    case "durable":
      return "log"
    default:
      return `p${COORDINATOR}`
  }
}

export const simulatedNetwork = (faults: NetworkFaults) => {
  const random = seeded(faults.seed)
  const holdShare = faults.holdShare ?? 0.2
  const maxHoldMs = faults.maxHoldMs ?? 4
  const stats: NetworkStats = { sent: 0, delivered: 0, overtaking: 0, held: 0, dropped: 0, kinds: {} }
  const lanes = new Map<string, Array<InFlight>>()

  interface Node {
    readonly hosts: (to: number) => boolean
    waiter: ((d: Delivery | undefined) => void) | undefined
    timer: ReturnType<typeof setTimeout> | undefined
    failure: TransportError | undefined
  }
  const nodes: Array<Node> = []
  const nodeOf = (to: number): Node | undefined => nodes.find((n) => n.hosts(to))

  /** A due lane head for `node`, picked at random, or undefined (and when the next one is due). */
  const next = (node: Node): { delivery: Delivery | undefined; dueIn: number } => {
    const now = performance.now()
    const due: Array<Array<InFlight>> = []
    let soonest = Infinity
    let oldest = Infinity
    for (const lane of lanes.values()) {
      const head = lane[0]
      if (head === undefined || !node.hosts(head.to)) continue
      oldest = Math.min(oldest, head.n)
      if (head.dueAt <= now) due.push(lane)
      else soonest = Math.min(soonest, head.dueAt - now)
    }
    if (due.length === 0) return { delivery: undefined, dueIn: soonest }
    const lane = due[Math.floor(random() * due.length)]!
    const item = lane.shift()!
    stats.delivered++
    if (item.n > oldest) stats.overtaking++
    return { delivery: { to: item.to, env: item.env }, dueIn: 0 }
  }

  /** Hands `node`'s next due envelope to its waiting receiver, or arms a timer for when one is due. */
  const pump = (node: Node): void => {
    if (node.waiter === undefined) return
    if (node.timer !== undefined) clearTimeout(node.timer)
    node.timer = undefined
    const { delivery, dueIn } = next(node)
    if (delivery !== undefined) {
      const w = node.waiter
      node.waiter = undefined
      w(delivery)
    } else if (dueIn < Infinity) node.timer = setTimeout(() => pump(node), Math.ceil(dueIn))
  }

  /** The node's connection is gone: a waiting receive fails now, every later call fails, its envelopes are lost. */
  const fail = (node: Node, message: string): void => {
    node.failure ??= new TransportError({ message })
    for (const [key, lane] of lanes) if (lane[0] !== undefined && node.hosts(lane[0].to)) lanes.delete(key)
    const w = node.waiter
    node.waiter = undefined
    w?.(undefined)
  }

  const service = (node: Node): TransportService => {
    const send = (to: number, env: Envelope): Effect.Effect<void, TransportError> =>
      Effect.suspend(() => {
        if (node.failure !== undefined) return Effect.fail(node.failure)
        const n = ++stats.sent
        stats.kinds[env.t] = (stats.kinds[env.t] ?? 0) + 1
        faults.onSend?.(n, env)
        if (node.failure !== undefined) return Effect.fail(node.failure)
        const target = nodeOf(to)
        if (target === undefined || target.failure !== undefined) return Effect.void
        if (faults.drops?.some((d) => d.at === (d.kind === undefined ? n : stats.kinds[env.t]) && (d.kind === undefined || d.kind === env.t)) === true) {
          stats.dropped++
          if (faults.silent !== true) fail(target, `simulated network: envelope ${n} (${env.t} to ${to}) lost, the connection is gone`)
          return Effect.void
        }
        const held = random() < holdShare
        if (held) stats.held++
        const key = `${senderOf(env)}>${to}`
        let lane = lanes.get(key)
        if (lane === undefined) lanes.set(key, (lane = []))
        lane.push({ to, env, n, dueAt: performance.now() + (held ? random() * maxHoldMs : 0) })
        pump(target)
        return Effect.void
      })

    const receiveWithin = (ms: number): Effect.Effect<Delivery | undefined, TransportError> =>
      Effect.suspend(() => {
        if (node.failure !== undefined) return Effect.fail(node.failure)
        const now = next(node)
        if (now.delivery !== undefined) return Effect.succeed(now.delivery)
        if (ms <= 0) return Effect.succeed(undefined)
        return Effect.async<Delivery | undefined, TransportError>((resume) => {
          if (node.waiter !== undefined) throw new Error("assertion: one receiver at a time")
          const deadline = Number.isFinite(ms)
            ? setTimeout(() => {
                node.waiter = undefined
                resume(Effect.succeed(undefined))
              }, ms)
            : undefined
          node.waiter = (d) => {
            if (deadline !== undefined) clearTimeout(deadline)
            resume(node.failure !== undefined ? Effect.fail(node.failure) : Effect.succeed(d))
          }
          pump(node)
          return Effect.sync(() => {
            if (deadline !== undefined) clearTimeout(deadline)
            node.waiter = undefined
          })
        })
      })

    return {
      send,
      receive: Effect.flatMap(receiveWithin(Infinity), (d) =>
        d === undefined ? Effect.fail(node.failure ?? new TransportError({ message: "simulated network: nothing delivered" })) : Effect.succeed(d),
      ),
      receiveWithin,
    }
  }

  /** A process hosting `endpoints` (partition indices, COORDINATOR), or ("all") every endpoint, as embedded. */
  const node = (endpoints: ReadonlyArray<number> | "all"): { readonly layer: Layer.Layer<Transport>; readonly kill: (why: string) => void } => {
    const n: Node = { hosts: endpoints === "all" ? () => true : (to) => endpoints.includes(to), waiter: undefined, timer: undefined, failure: undefined }
    nodes.push(n)
    return { layer: Layer.succeed(Transport, service(n)), kill: (why) => fail(n, `simulated network: ${why}`) }
  }

  return {
    node,
    stats,
  }
}

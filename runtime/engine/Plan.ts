import type { App } from "../../workflows/App.ts"
import type { GraphNode } from "../../workflows/Graph.ts"
import type { SinkSpec } from "../../workflows/Sink.ts"
import type { SourceSpec } from "../../workflows/Source.ts"
import { ASKER, REPLIER, type AskerConfig, type ReplierConfig } from "../../portals/Portal.ts"
import type { Continuation } from "../../portals/Continuation.ts"
import { ConfigError } from "./errors.ts"
import { canonicalKey, keyGroupOf } from "./keys.ts"

/** An edge: `hop` edges cross a round boundary (a message routed to a key group), the others run in the same step. */
export interface Edge {
  readonly to: number
  readonly hop: boolean
}

export interface PlanNode {
  readonly node: GraphNode
  readonly id: number
  readonly name: string
  readonly out: ReadonlyArray<Edge>
  /** Key group of the task's own state (unkeyed stateful tasks run there). */
  readonly taskKeyGroup: number
  /** Unkeyed stateful task: records hop to taskKeyGroup. */
  readonly singleton: boolean
  readonly asker: AskerConfig | undefined
  readonly replier: ReplierConfig | undefined
  readonly continuations: ReadonlyMap<string, Continuation<unknown, unknown, unknown, unknown>>
  /**
   * A keyBy right after a live source (client requests), or after a merge with one: a record already in its key's
   * group runs on in the same step instead of a round later. The front puts each request in the split of its key's
   * group, so a request's first hop costs no round. Deterministic for replayable records merged in too: whether a
   * record chains depends only on its key and its split's key group, never on P.
   */
  readonly chainLocal: boolean
  /** The table id of the task's entries (ProcessorContext.entries), if it keeps any. */
  readonly entriesTable: number | undefined
  /** The table id of the task's group entries (ProcessorContext.groupEntries), if it keeps any. */
  readonly groupEntriesTable: number | undefined
}

export interface SourceSplit {
  readonly node: number
  readonly source: SourceSpec<unknown>
  readonly split: number
  readonly keyGroup: number
  /** Stable id of the split in ingress positions. */
  readonly id: string
}

/** A whole app compiled for execution: one node table for all its workflows, with streams and portals linked. */
export interface Plan {
  readonly app: App
  readonly keyGroups: number
  readonly nodes: ReadonlyArray<PlanNode>
  readonly byName: ReadonlyMap<string, number>
  /**
   * State tables: a task's own state is table `node id`; entries tables follow the nodes. Records and snapshots
   * name tables (`tableNames[id]`), so ids never leave the process.
   */
  readonly tableNames: ReadonlyArray<string>
  readonly tableIds: ReadonlyMap<string, number>
  /** Per table id, when a key's value expires (undefined: never). */
  readonly tableExpiry: ReadonlyArray<((value: unknown) => number | undefined) | undefined>
  /** The group-entries tables: their keys are [key group, sub-key], not [key, sub-key]. */
  readonly groupEntryTables: ReadonlySet<number>
  readonly splits: ReadonlyArray<SourceSplit>
  readonly sinks: ReadonlyMap<string, SinkSpec<unknown>>
  /** Portal name → replier node. */
  readonly portals: ReadonlyMap<string, number>
}

const liveSource = (n: GraphNode | undefined): boolean => n?.kind === "source" && n.source.live === true

/** A live source, or a merge of streams one of which is a live source (chained: the same step). */
const fedByLive = (all: ReadonlyArray<GraphNode>, offset: number, n: GraphNode | undefined): boolean =>
  liveSource(n) || (n?.kind === "merge" && n.inputs.some((i) => liveSource(all[offset + i])))

const statefulUnkeyed = (n: GraphNode): boolean => !n.keyed && (n.kind === "processor" || n.kind === "extension")

export const compile = (app: App): Plan => {
  const keyGroups = app.keyGroups ?? 128
  if (!Number.isInteger(keyGroups) || keyGroups < 1 || keyGroups > 65536) throw new ConfigError(`keyGroups must be an integer in 1..65536, got ${keyGroups}`)
  const graphs = app.workflows.map((w) => w.graph)
  const all: GraphNode[] = []
  const offsets: number[] = []
  for (const g of graphs) {
    offsets.push(all.length)
    all.push(...g.nodes)
  }
  const gid = (w: number, local: number): number => offsets[w]! + local
  /** The offset of the workflow holding global node `id` (graph nodes name their inputs by local ids). */
  const offsetOf = (id: number): number => {
    let o = 0
    for (const off of offsets) if (off <= id) o = off
    return o
  }
  const published = new Map<string, number>()
  graphs.forEach((g, w) => {
    for (const [name, local] of g.published) {
      if (published.has(name)) throw new ConfigError(`stream '${name}' is published by two workflows`)
      published.set(name, gid(w, local))
    }
  })
  const outs: Edge[][] = all.map(() => [])
  const byName = new Map<string, number>()
  graphs.forEach((g, w) => {
    for (const n of g.nodes) {
      const id = gid(w, n.id)
      if (byName.has(n.name)) throw new ConfigError(`two tasks are named '${n.name}'`)
      byName.set(n.name, id)
      for (const input of n.inputs) {
        const from = gid(w, input)
        const src = all[from]!
        // After keyBy a record moves to its key's group; an unkeyed stateful task is a singleton elsewhere.
        outs[from]!.push({ to: id, hop: src.kind === "keyBy" || statefulUnkeyed(n) })
      }
      if (n.kind === "subscribe") {
        const from = published.get(n.stream)
        if (from === undefined) throw new ConfigError(`workflow '${g.name}' subscribes to stream '${n.stream}', which no workflow of app '${app.name}' publishes`)
        outs[from]!.push({ to: id, hop: statefulUnkeyed(n) })
      }
    }
    for (const [cycle, feeds] of g.feeds) for (const f of feeds) outs[gid(w, f)]!.push({ to: gid(w, cycle), hop: true })
  })
  const portals = new Map<string, number>()
  const tableNames = all.map((n) => n.name)
  const tableExpiry = all.map((n) => n.expire)
  const tableIds = new Map(byName)
  const entriesTable = (n: GraphNode, suffix: string): number | undefined => {
    if (n.entries === undefined) return undefined
    const name = `${n.name}#${suffix}`
    if (tableIds.has(name)) throw new ConfigError(`task '${name}' has the name of the ${suffix} of task '${n.name}'`)
    tableIds.set(name, tableNames.length)
    tableNames.push(name)
    tableExpiry.push(n.entries.expire)
    return tableNames.length - 1
  }
  const entriesTables = all.map((n) => entriesTable(n, "entries"))
  const groupEntriesTables = all.map((n) => entriesTable(n, "group-entries"))
  const groupEntryTables = new Set(groupEntriesTables.filter((t) => t !== undefined))
  const nodes: PlanNode[] = all.map((node, id) => {
    const asker = node.kind === "extension" && (node.extension === ASKER || node.extension === REPLIER) ? (node.config as AskerConfig) : undefined
    const replier = node.kind === "extension" && node.extension === REPLIER ? (node.config as ReplierConfig) : undefined
    if (node.kind === "extension" && asker === undefined) throw new ConfigError(`task '${node.name}' uses extension '${node.extension}', which this runtime does not know`)
    if (replier) {
      if (portals.has(replier.portal.name)) throw new ConfigError(`portal '${replier.portal.name}' has two repliers; it must have exactly one`)
      portals.set(replier.portal.name, id)
    }
    const continuations = new Map<string, Continuation<unknown, unknown, unknown, unknown>>()
    for (const c of asker?.continuations ?? []) {
      if (continuations.has(c.name)) throw new ConfigError(`task '${node.name}' lists continuation '${c.name}' twice`)
      continuations.set(c.name, c)
    }
    return {
      node,
      id,
      name: node.name,
      out: outs[id]!,
      taskKeyGroup: keyGroupOf(canonicalKey(node.name), keyGroups),
      singleton: statefulUnkeyed(node),
      chainLocal: node.kind === "keyBy" && node.inputs.length === 1 && fedByLive(all, offsetOf(id), all[offsetOf(id) + node.inputs[0]!]),
      asker,
      replier,
      continuations,
      entriesTable: entriesTables[id],
      groupEntriesTable: groupEntriesTables[id],
    }
  })
  const splits: SourceSplit[] = []
  const sinks = new Map<string, SinkSpec<unknown>>()
  for (const n of nodes) {
    if (n.node.kind === "source") {
      const source = n.node.source
      // A live source has a split per key group, in that key group: a pusher picks a split its process owns.
      const count = source.live === true ? keyGroups : source.splits
      for (let split = 0; split < count; split++) {
        const id = `${n.name}#${split}`
        splits.push({ node: n.id, source, split, id, keyGroup: source.live === true ? split : keyGroupOf(canonicalKey(id), keyGroups) })
      }
    }
    if (n.node.kind === "sink") {
      if (sinks.has(n.node.sink.name)) throw new ConfigError(`two sinks are named '${n.node.sink.name}'`)
      sinks.set(n.node.sink.name, n.node.sink)
    }
  }
  return { app, keyGroups, nodes, byName, tableNames, tableIds, tableExpiry, groupEntryTables, splits, sinks, portals }
}

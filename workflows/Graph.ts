import type { Key } from "./Key.ts"
import type { SinkSpec } from "./Sink.ts"
import type { SourceSpec } from "./Source.ts"
import type { ProcessorContext } from "./TaskContext.ts"

/**
 * The frozen form of a workflow: what the runtime executes. Node ids are indices into `nodes`; `input` edges point
 * backwards except for cycle feeds, which close loops.
 */
export type TaskNode =
  | { readonly kind: "source"; readonly source: SourceSpec<unknown> }
  | { readonly kind: "map"; readonly fn: (value: unknown, ctx: ProcessorContext<unknown, unknown>) => unknown }
  | { readonly kind: "flatMap"; readonly fn: (value: unknown, ctx: ProcessorContext<unknown, unknown>) => Iterable<unknown> }
  | { readonly kind: "filter"; readonly fn: (value: unknown, ctx: ProcessorContext<unknown, unknown>) => boolean }
  | { readonly kind: "keyBy"; readonly fn: (value: unknown) => Key }
  | { readonly kind: "processor"; readonly fn: (ctx: ProcessorContext<unknown, unknown>, value: unknown) => void }
  | { readonly kind: "sink"; readonly sink: SinkSpec<unknown> }
  /** Records of several inputs, interleaved deterministically (the sequencer). */
  | { readonly kind: "merge" }
  /** Entry of a loop: receives what its feeds send, one round later. */
  | { readonly kind: "cycle" }
  /** Receives another workflow's published stream. */
  | { readonly kind: "subscribe"; readonly stream: string }
  /** A task defined by a higher layer (portals): the runtime looks its kind up among the extensions it knows. */
  | { readonly kind: "extension"; readonly extension: string; readonly config: unknown }

export type GraphNode = TaskNode & {
  readonly id: number
  /** Unique within the app, stable across runs (state and key groups are named after it). */
  readonly name: string
  readonly inputs: ReadonlyArray<number>
  /** True when records reaching this node carry a key (a keyBy upstream, not reset by a merge with unkeyed input). */
  readonly keyed: boolean
  /** Validates or migrates a key's state loaded after a restart (see StatefulTaskOptions.restore). */
  readonly restore?: (state: unknown) => unknown
  /** When a key's state may be dropped (see StatefulTaskOptions.expire). */
  readonly expire?: (state: unknown) => number | undefined
  /** The task keeps entries beside each key's state (see StatefulTaskOptions.entries). */
  readonly entries?: EntriesOptions
}

/**
 * A task's entries (ProcessorContext.entries and groupEntries): stored as the tables `<task name>#entries` (keys:
 * [key, sub-key]) and `<task name>#group-entries` (keys: [key group, sub-key]).
 */
export interface EntriesOptions {
  /** When an entry may be dropped: an epoch time after which it is deleted (as StatefulTaskOptions.expire). */
  readonly expire?: (entry: unknown) => number | undefined
}

export interface WorkflowGraph {
  readonly name: string
  readonly nodes: ReadonlyArray<GraphNode>
  /** Streams this workflow publishes: name → node whose output is published. */
  readonly published: ReadonlyMap<string, number>
  /** Cycle node id → node ids feeding it. */
  readonly feeds: ReadonlyMap<number, ReadonlyArray<number>>
}

import type { RequestEndpoint } from "./Endpoint.ts"
import type { EntriesOptions, GraphNode, TaskNode, WorkflowGraph } from "./Graph.ts"
import type { Key } from "./Key.ts"
import type { SinkSpec } from "./Sink.ts"
import type { SourceSpec } from "./Source.ts"
import type { ProcessorContext, TaskContext } from "./TaskContext.ts"

export interface TaskOptions {
  /** A stable name for the task; state is stored under it, so renaming a stateful task loses its state. */
  readonly name?: string
}

export interface StatefulTaskOptions<S> extends TaskOptions {
  /**
   * Called for every key's state when it is loaded after a restart: migrate it, or throw to stop start-up with a
   * clear error (e.g. the state names code the app no longer has).
   */
  readonly restore?: (state: unknown) => S
  /**
   * When a key's state may be dropped: an epoch time (`ctx.now()` scale, ms) after which the key's state is deleted
   * at the start of an epoch, as a logged write; undefined keeps it. Evaluated on every write of the key.
   */
  readonly expire?: (state: S) => number | undefined
  /** Keep entries beside each key's state (`ctx.entries`), each dropped after its own `expire` time if given. */
  readonly entries?: EntriesOptions
}

/** A task implemented by a higher layer (see portals/). */
export interface StreamExtension<_I, _O> {
  readonly extension: string
  readonly config: unknown
  readonly name?: string
  readonly restore?: (state: unknown) => unknown
  readonly expire?: (state: unknown) => number | undefined
  readonly entries?: EntriesOptions
}

/** What a task node carries besides its kind and inputs. */
type NodeExtras = { readonly [K in "restore" | "expire" | "entries"]?: StatefulTaskOptions<unknown>[K] | undefined }

/** The builder shared by every stream of one workflow. */
class Builder {
  readonly nodes: GraphNode[] = []
  readonly published = new Map<string, number>()
  readonly feeds = new Map<number, number[]>()
  private readonly names = new Set<string>()
  frozen: WorkflowGraph | undefined

  constructor(readonly name: string) {}

  add(
    task: TaskNode,
    inputs: ReadonlyArray<number>,
    keyed: boolean,
    name: string | undefined,
    extras: NodeExtras = {},
  ): number {
    if (this.frozen !== undefined) throw new Error(`workflow '${this.name}' is already running; build it before running it`)
    const id = this.nodes.length
    const nodeName = `${this.name}/${name ?? `${id}:${task.kind === "extension" ? task.extension : task.kind}`}`
    if (this.names.has(nodeName)) throw new Error(`workflow '${this.name}' has two tasks named '${name}'`)
    this.names.add(nodeName)
    const { restore, expire, entries } = extras
    this.nodes.push({ ...task, id, name: nodeName, inputs, keyed, ...(restore === undefined ? {} : { restore }), ...(expire === undefined ? {} : { expire }), ...(entries === undefined ? {} : { entries }) } as GraphNode)
    return id
  }

  freeze(): WorkflowGraph {
    if (this.frozen === undefined) {
      for (const [cycle, feeds] of this.feeds) if (feeds.length === 0) throw new Error(`cycle ${this.nodes[cycle]?.name} is never fed`)
      this.frozen = { name: this.name, nodes: [...this.nodes], published: new Map(this.published), feeds: new Map(this.feeds) }
    }
    return this.frozen
  }
}

/** A typed stream of atoms inside a workflow. Each task returns a new stream; the element type flows through. */
export class Stream<T> {
  /** @internal */
  constructor(
    readonly workflow: Workflow,
    /** @internal */ readonly node: number,
    /** @internal */ readonly keyed: boolean,
  ) {}

  private next<O>(task: TaskNode, keyed: boolean, options?: StatefulTaskOptions<unknown>): Stream<O> {
    return new Stream<O>(this.workflow, this.workflow.builder.add(task, [this.node], keyed, options?.name, { restore: options?.restore, expire: options?.expire as ((s: unknown) => number | undefined) | undefined, entries: options?.entries }), keyed)
  }

  map<O>(fn: (value: T, ctx: TaskContext<never>) => O, options?: TaskOptions): Stream<O> {
    return this.next({ kind: "map", fn: fn as (v: unknown) => unknown }, this.keyed, options)
  }

  flatMap<O>(fn: (value: T, ctx: TaskContext<never>) => Iterable<O>, options?: TaskOptions): Stream<O> {
    return this.next({ kind: "flatMap", fn: fn as (v: unknown) => Iterable<unknown> }, this.keyed, options)
  }

  filter<S extends T>(fn: (value: T) => value is S, options?: TaskOptions): Stream<S>
  filter(fn: (value: T, ctx: TaskContext<never>) => boolean, options?: TaskOptions): Stream<T>
  filter(fn: (value: T, ctx: TaskContext<never>) => boolean, options?: TaskOptions): Stream<T> {
    return this.next({ kind: "filter", fn: fn as (v: unknown) => boolean }, this.keyed, options)
  }

  /** Routes each record to the key group of its key: downstream tasks see one key at a time, with per-key state. */
  keyBy(fn: (value: T) => Key, options?: TaskOptions): Stream<T> {
    return this.next({ kind: "keyBy", fn: fn as (v: unknown) => Key }, true, options)
  }

  /**
   * A stateful task. On a keyed stream `ctx.state` is the state of the record's key; on an unkeyed stream it is
   * the task's own state, and every record is routed to the task's single key group to read it.
   * If `fn` throws, nothing it did (emits, state writes) takes effect; the error is reported with the record.
   */
  processor<O, S = unknown>(fn: (ctx: ProcessorContext<O, S>, value: T) => void, options?: StatefulTaskOptions<S>): Stream<O> {
    return this.next({ kind: "processor", fn: fn as (ctx: ProcessorContext<unknown, unknown>, v: unknown) => void }, this.keyed, options as StatefulTaskOptions<unknown> | undefined)
  }

  /** Interleaves this stream with others deterministically, atom by atom. */
  merge(...others: ReadonlyArray<Stream<T>>): Stream<T> {
    for (const o of others) if (o.workflow !== this.workflow) throw new Error("merge: streams belong to different workflows; publish one and subscribe to it")
    const keyed = this.keyed && others.every((o) => o.keyed)
    return new Stream<T>(this.workflow, this.workflow.builder.add({ kind: "merge" }, [this.node, ...others.map((o) => o.node)], keyed, undefined), keyed)
  }

  /** A task from a higher layer, such as a portal asker or replier. */
  via<O>(extension: StreamExtension<T, O>): Stream<O> {
    return this.next({ kind: "extension", extension: extension.extension, config: extension.config }, this.keyed, {
      ...(extension.name === undefined ? {} : { name: extension.name }),
      ...(extension.restore === undefined ? {} : { restore: extension.restore }),
      ...(extension.expire === undefined ? {} : { expire: extension.expire }),
      ...(extension.entries === undefined ? {} : { entries: extension.entries }),
    })
  }

  /** Makes this stream available to other workflows of the app under `name`. */
  publish(name: string): this {
    const reg = this.workflow.builder.published
    if (reg.has(name)) throw new Error(`stream '${name}' is published twice`)
    reg.set(name, this.node)
    return this
  }

  /** Ends the stream in a sink. Returns the workflow, so a one-chain workflow reads as one expression. */
  sink(sink: SinkSpec<T>, options?: TaskOptions): Workflow {
    this.next({ kind: "sink", sink: sink as SinkSpec<unknown> }, this.keyed, options)
    return this.workflow
  }
}

/** A loop: `stream` emits, one round later, whatever was fed into it (the cycle's back edge). */
export class Cycle<T> {
  constructor(readonly stream: Stream<T>) {}
  /** Sends a stream around the loop. A cycle may have several feeds. */
  feed(from: Stream<T>): void {
    const b = this.stream.workflow.builder
    b.feeds.get(this.stream.node)!.push(from.node)
  }
}

export class Workflow {
  /** @internal */ readonly builder: Builder
  /** Request endpoints served by this workflow (see Endpoint.ts). */
  readonly endpoints: RequestEndpoint[] = []

  private constructor(name: string) {
    if (!/^[A-Za-z0-9_.-]+$/.test(name)) throw new Error(`workflow name '${name}' must match [A-Za-z0-9_.-]+`)
    this.builder = new Builder(name)
  }

  get name(): string {
    return this.builder.name
  }

  /** The frozen graph the runtime executes. */
  get graph(): WorkflowGraph {
    return this.builder.freeze()
  }

  source<T>(source: SourceSpec<T>, options?: TaskOptions): Stream<T> {
    const raw = new Stream<T>(this, this.builder.add({ kind: "source", source: source as SourceSpec<unknown> }, [], false, options?.name ?? source.name), false)
    return source.attach === undefined ? raw : source.attach(raw as Stream<unknown>)
  }

  /** Another workflow's published stream. */
  subscribe<T>(stream: string, options?: TaskOptions): Stream<T> {
    return new Stream<T>(this, this.builder.add({ kind: "subscribe", stream }, [], false, options?.name), false)
  }

  cycle<T>(options?: TaskOptions): Cycle<T> {
    const node = this.builder.add({ kind: "cycle" }, [], false, options?.name)
    this.builder.feeds.set(node, [])
    return new Cycle(new Stream<T>(this, node, false))
  }

  /** Lets clients send requests to this workflow through `endpoint` (its inbox and reply sink are in this workflow). */
  serve(endpoint: RequestEndpoint): void {
    this.endpoints.push(endpoint)
  }

  merge<T>(first: Stream<T>, ...rest: ReadonlyArray<Stream<T>>): Stream<T> {
    return first.merge(...rest)
  }

  /** Builds a workflow with any shape: several sources, branches, cycles. */
  static create(name: string, build: (wf: Workflow) => void): Workflow {
    const wf = new Workflow(name)
    build(wf)
    wf.builder.freeze()
    return wf
  }

  /** A workflow that starts from one source; chain tasks and end with `.sink(...)`. */
  static from<T>(source: SourceSpec<T>, options: { readonly name?: string } = {}): Stream<T> {
    return new Workflow(options.name ?? "main").source(source)
  }
}

import { readFileSync } from "node:fs"
import { kafkaSource, type KafkaSourceConfig, type KafkaSourceOptions } from "./kafka.ts"
import type { Stream } from "./Workflow.ts"

/**
 * A source yields atoms: arrays of records whose effects commit together. A source is replayable: `open(split)`
 * restarts it from the beginning and the engine skips the atoms it already consumed (the ingress position logged
 * with each epoch), so recovery never needs the source to remember anything.
 */
export interface SourceSpec<T> {
  readonly kind: "source"
  /** Stable name: part of the split's key group, so it must not change between runs. */
  readonly name: string | undefined
  readonly splits: number
  /** Atoms of split `split`, from the first. Sync iterables are read synchronously; async ones are awaited. */
  readonly open: (split: number) => Iterable<ReadonlyArray<T>> | AsyncIterable<ReadonlyArray<T>>
  /**
   * Records pushed in at run time (client requests) instead of read: not replayable, one split per key group. What an
   * aborted epoch took is lost to it, so whoever pushed it retries until answered (requests carry idempotency keys).
   */
  readonly live?: boolean
  /**
   * A seekable source read by a runtime connector instead of `open`: positions are the source's own (Kafka: the
   * next offset), so resuming seeks instead of skipping atoms.
   */
  readonly connector?: KafkaSourceConfig
  /** Tasks the workflow adds after the source's node (decoding, dead letters); the source's stream is its result. */
  readonly attach?: (raw: Stream<unknown>) => Stream<T>
  readonly __type?: (t: T) => T
}

export interface SourceOptions {
  /** Records per atom (default 1: each record commits on its own). */
  readonly atomSize?: number
  /** Independent parts read in parallel by the partitions owning them (default 1). */
  readonly splits?: number
  readonly name?: string
}

function* chunk<T>(items: Iterable<T>, size: number, split: number, splits: number): Generator<ReadonlyArray<T>> {
  if (size === 1) {
    // The common case: one record per atom, one small array each (no push, no resize).
    let index = 0
    for (const item of items) if (index++ % splits === split) yield [item]
    return
  }
  let atom: T[] = []
  let index = 0
  for (const item of items) {
    atom.push(item)
    if (atom.length === size) {
      if (index % splits === split) yield atom
      atom = []
      index++
    }
  }
  if (atom.length > 0 && index % splits === split) yield atom
}

async function* chunkAsync<T>(items: AsyncIterable<T>, size: number): AsyncGenerator<ReadonlyArray<T>> {
  let atom: T[] = []
  for await (const item of items) {
    atom.push(item)
    if (atom.length === size) {
      yield atom
      atom = []
    }
  }
  if (atom.length > 0) yield atom
}

const checkPositive = (what: string, n: number): number => {
  if (!Number.isInteger(n) || n < 1) throw new RangeError(`${what} must be a positive integer, got ${n}`)
  return n
}

export const Source = {
  /** Records of an array (or any re-iterable collection), grouped into atoms. */
  array<T>(items: Iterable<T>, options: SourceOptions = {}): SourceSpec<T> {
    const size = checkPositive("atomSize", options.atomSize ?? 1)
    const splits = checkPositive("splits", options.splits ?? 1)
    return { kind: "source", name: options.name, splits, open: (split) => chunk(items, size, split, splits) }
  },

  /** A generator function called afresh on every (re)start; it must yield the same records every time. */
  generator<T>(make: () => Iterable<T>, options: SourceOptions = {}): SourceSpec<T> {
    const size = checkPositive("atomSize", options.atomSize ?? 1)
    const splits = checkPositive("splits", options.splits ?? 1)
    return { kind: "source", name: options.name, splits, open: (split) => chunk(make(), size, split, splits) }
  },

  /** Atoms given explicitly: each inner array commits as a whole. */
  atoms<T>(atoms: ReadonlyArray<ReadonlyArray<T>>, options: Omit<SourceOptions, "atomSize"> = {}): SourceSpec<T> {
    const splits = checkPositive("splits", options.splits ?? 1)
    return { kind: "source", name: options.name, splits, open: (split) => atoms.filter((_, i) => i % splits === split) }
  },

  /** An async iterable made afresh on every (re)start (one split). Replay is exact only if it yields the same. */
  async<T>(make: () => AsyncIterable<T>, options: Omit<SourceOptions, "splits"> = {}): SourceSpec<T> {
    const size = checkPositive("atomSize", options.atomSize ?? 1)
    return { kind: "source", name: options.name, splits: 1, open: () => chunkAsync(make(), size) }
  },

  /** Lines of a UTF-8 text file (read when the split is opened). */
  lines(path: string, options: SourceOptions = {}): SourceSpec<string> {
    const size = checkPositive("atomSize", options.atomSize ?? 1)
    const splits = checkPositive("splits", options.splits ?? 1)
    return {
      kind: "source",
      name: options.name ?? `lines:${path}`,
      splits,
      open: (split) => {
        const text = readFileSync(path, "utf8")
        const lines = text.split("\n")
        if (lines.at(-1) === "") lines.pop()
        return chunk(lines, size, split, splits)
      },
    }
  },

  /** Records pushed by the runtime (see `live`): how client requests enter an app. */
  inbox<T>(name: string): SourceSpec<T> {
    return { kind: "source", name, splits: 0, live: true, open: () => [] }
  },

  /**
   * A Kafka topic: its partitions are the splits, positions are offsets (logged with each epoch, no consumer-group
   * commits), read with isolation read_committed. Malformed records go to `deadLetterTopic`.
   */
  kafka<T, I = unknown>(options: KafkaSourceOptions<T, I>): SourceSpec<T> {
    return kafkaSource(options)
  },

  /** A source with no records: for workflows driven only by a cycle or a portal. */
  empty<T>(): SourceSpec<T> {
    // No name: a workflow may hold several (one per replier), each named by its position like any unnamed source.
    return { kind: "source", name: undefined, splits: 1, open: () => [] }
  },
}

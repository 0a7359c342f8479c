import { kafkaSink, type KafkaSinkOptions, type KafkaSinkSpec } from "./kafka.ts"

/**
 * Where a stream's committed records go. Records reach a sink only after the epoch that produced them committed,
 * exactly once; their order is (epoch, key group, sequence within the key group).
 */
export type SinkSpec<T> =
  | { readonly kind: "memory"; readonly name: string; readonly __type?: (t: T) => T }
  | { readonly kind: "file"; readonly name: string; readonly path: string; readonly __type?: (t: T) => T }
  | { readonly kind: "console"; readonly name: string; readonly format?: (t: T) => string }
  | { readonly kind: "discard"; readonly name: string; readonly __type?: (t: T) => T }
  | KafkaSinkSpec<T>

export const Sink = {
  /** Kept in memory, readable through the running app's `outputs(name)`. */
  memory: <T>(name: string): SinkSpec<T> => ({ kind: "memory", name }),
  /** One JSON document per line; a relative path resolves inside the run's data directory. */
  file: <T>(path: string, name: string = path): SinkSpec<T> => ({ kind: "file", name, path }),
  /** Printed to standard output once committed. */
  console: <T>(format?: (t: T) => string, name = "console"): SinkSpec<T> =>
    format === undefined ? { kind: "console", name } : { kind: "console", name, format },
  /** Dropped (benchmarks). Still counted and logged, so egress cost is measured. */
  discard: <T>(name = "discard"): SinkSpec<T> => ({ kind: "discard", name }),
  /**
   * A Kafka topic, exactly once for read_committed consumers: an epoch's records are published after it commits,
   * in a transaction with its EGRESS_DONE marker; each record carries an `eddy-id` header (key group:sequence).
   */
  kafka: <T>(options: KafkaSinkOptions<T>): SinkSpec<T> => kafkaSink(options),
}

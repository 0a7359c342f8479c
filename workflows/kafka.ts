import { Schema } from "effect"
import type { SinkSpec } from "./Sink.ts"
import type { SourceSpec } from "./Source.ts"
import type { Stream } from "./Workflow.ts"

/**
 * Kafka topics as a source and a sink (the runtime's connector lives in runtime/cluster/KafkaIngress.ts and
 * KafkaEgress.ts; brokers come from EDDY_KAFKA_BROKERS). This file only describes them.
 */

/** A record read from a Kafka topic, as a decode function sees it. */
export interface KafkaRecord {
  readonly topic: string
  readonly partition: number
  readonly offset: number
  readonly key: Uint8Array | null
  readonly value: Uint8Array | null
  /** The record's timestamp (ms since the epoch) as Kafka stored it. */
  readonly timestamp: number
  readonly headers: Readonly<Record<string, string>>
}

/** Turns a Kafka record into a value of the workflow; throw (or fail the Schema) to reject it as malformed. */
export type KafkaDecode<T, I = unknown> = ((record: KafkaRecord) => T) | Schema.Schema<T, I>

/** What a malformed record becomes in the dead-letter topic (published with its original key and value). */
export interface KafkaDeadLetter {
  readonly reason: string
  readonly topic: string
  readonly partition: number
  readonly offset: number
  readonly key: Uint8Array | null
  readonly value: Uint8Array | null
}

/** How the runtime reads a Kafka source: carried by the SourceSpec, interpreted by the runtime's connector. */
export interface KafkaSourceConfig {
  readonly kind: "kafka"
  readonly topic: string
  /** Topic partitions read (0..partitions-1); each is a split of the source. */
  readonly partitions: number
  /** Stop at the end offsets found when a split is opened (finite input); otherwise follow the topic. */
  readonly bounded: boolean
}

export interface KafkaSourceOptions<T, I = unknown> {
  readonly topic: string
  /**
   * Records to workflow values. A function taking the record, or an Effect Schema applied to the value parsed as
   * JSON. A record it rejects goes to `deadLetterTopic` (or, without one, is reported as a task failure).
   */
  readonly decode: KafkaDecode<T, I>
  /** Malformed records go here, with headers eddy-dlq-reason, -topic, -partition and -offset, exactly once. */
  readonly deadLetterTopic?: string
  /** How many partitions the topic has (default 1): they are the source's splits. A mismatch fails at start. */
  readonly partitions?: number
  /** Read only what the topic holds when the run reaches it, then end (default false: follow the topic). */
  readonly bounded?: boolean
  /** Stable task name (default `kafka.<topic>`): ingress positions are logged under it. */
  readonly name?: string
}

export const DLQ_HEADERS = { reason: "eddy-dlq-reason", topic: "eddy-dlq-topic", partition: "eddy-dlq-partition", offset: "eddy-dlq-offset" } as const

/** The header every egress record carries: `<key group>:<sequence>`, its id whatever the partitioning. */
export const EGRESS_ID_HEADER = "eddy-id"

const TOPIC = /^[A-Za-z0-9._-]{1,249}$/

const checkTopic = (what: string, topic: string): string => {
  if (!TOPIC.test(topic) || topic === "." || topic === "..") throw new TypeError(`${what}: '${topic}' is not a valid Kafka topic name ([A-Za-z0-9._-], 1-249 characters)`)
  return topic
}

const textDecoder = new TextDecoder("utf-8", { fatal: true })

/** Applies `decode` to a record; a Schema decodes the value parsed as JSON. */
const decoder = <T, I>(decode: KafkaDecode<T, I>): ((r: KafkaRecord) => T) => {
  if (!Schema.isSchema(decode)) return decode as (r: KafkaRecord) => T
  const parse = Schema.decodeUnknownSync(decode as Schema.Schema<T, I>)
  return (r) => {
    if (r.value === null) throw new Error("record has no value")
    return parse(JSON.parse(textDecoder.decode(r.value)))
  }
}

const reasonOf = (err: unknown): string => (err instanceof Error ? err.message : String(err))

type Decoded<T> = { readonly ok: true; readonly v: T } | { readonly ok: false; readonly d: KafkaDeadLetter }

export const kafkaSource = <T, I = unknown>(options: KafkaSourceOptions<T, I>): SourceSpec<T> => {
  const topic = checkTopic("Source.kafka topic", options.topic)
  if (options.deadLetterTopic !== undefined) checkTopic("Source.kafka deadLetterTopic", options.deadLetterTopic)
  const partitions = options.partitions ?? 1
  if (!Number.isInteger(partitions) || partitions < 1) throw new RangeError(`Source.kafka partitions must be a positive integer, got ${partitions}`)
  const name = options.name ?? `kafka.${topic}`
  const decode = decoder(options.decode)
  const connector: KafkaSourceConfig = { kind: "kafka", topic, partitions, bounded: options.bounded ?? false }
  const attach = (raw: Stream<KafkaRecord>): Stream<T> => {
    const dlq = options.deadLetterTopic
    // Without a dead-letter topic a malformed record is a failing task: reported with the record, skipped.
    if (dlq === undefined) return raw.map((r) => decode(r), { name: `${name}.decode` })
    const decoded = raw.map(
      (r): Decoded<T> => {
        try {
          return { ok: true, v: decode(r) }
        } catch (err) {
          return { ok: false, d: { reason: reasonOf(err), topic: r.topic, partition: r.partition, offset: r.offset, key: r.key, value: r.value } }
        }
      },
      { name: `${name}.decode` },
    )
    decoded
      .flatMap((x) => (x.ok ? [] : [x.d]), { name: `${name}.malformed` })
      .sink(deadLetterSink(dlq, `${name}.dead-letters`), { name: `${name}.dead-letters` })
    return decoded.flatMap((x) => (x.ok ? [x.v] : []), { name: `${name}.records` })
  }
  return {
    kind: "source",
    name,
    splits: partitions,
    open: () => {
      throw new Error(`source '${name}' reads Kafka topic ${topic}: it is opened by the runtime's Kafka connector, not iterated`)
    },
    connector,
    attach: attach as (raw: Stream<unknown>) => Stream<T>,
  }
}

export interface KafkaSinkOptions<T> {
  readonly topic: string
  /** Sink name (default `kafka.<topic>`). */
  readonly name?: string
  /**
   * The record's value (default: JSON, BigInt as a string, Map and Set as arrays). `epoch` is the epoch whose commit
   * made the record durable: the same when recovery publishes the record again.
   */
  readonly encode?: (value: T, epoch: number) => Uint8Array | string
  /** The record's key (default none: the record goes to partition `key group mod partitions`). */
  readonly key?: (value: T) => Uint8Array | string | null | undefined
  readonly headers?: (value: T) => Readonly<Record<string, string>>
  /** Partitions of the topic if the runtime has to create it (default 1). */
  readonly partitions?: number
}

export type KafkaSinkSpec<T> = {
  readonly kind: "kafka"
  readonly name: string
  readonly topic: string
  readonly encode?: (value: T, epoch: number) => Uint8Array | string
  readonly key?: (value: T) => Uint8Array | string | null | undefined
  readonly headers?: (value: T) => Readonly<Record<string, string>>
  readonly partitions: number
  readonly __type?: (t: T) => T
}

export const kafkaSink = <T>(options: KafkaSinkOptions<T>): KafkaSinkSpec<T> => {
  const topic = checkTopic("Sink.kafka topic", options.topic)
  const partitions = options.partitions ?? 1
  if (!Number.isInteger(partitions) || partitions < 1) throw new RangeError(`Sink.kafka partitions must be a positive integer, got ${partitions}`)
  return {
    kind: "kafka",
    name: options.name ?? `kafka.${topic}`,
    topic,
    partitions,
    ...(options.encode === undefined ? {} : { encode: options.encode }),
    ...(options.key === undefined ? {} : { key: options.key }),
    ...(options.headers === undefined ? {} : { headers: options.headers }),
  }
}

const deadLetterSink = (topic: string, name: string): SinkSpec<KafkaDeadLetter> =>
  kafkaSink<KafkaDeadLetter>({
    topic,
    name,
    encode: (d) => d.value ?? new Uint8Array(0),
    key: (d) => d.key,
    headers: (d) => ({ [DLQ_HEADERS.reason]: d.reason, [DLQ_HEADERS.topic]: d.topic, [DLQ_HEADERS.partition]: String(d.partition), [DLQ_HEADERS.offset]: String(d.offset) }),
  })

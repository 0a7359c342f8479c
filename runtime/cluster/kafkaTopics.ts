/**
 * The Kafka log's topics: `eddy.<app>.wal` and `eddy.<app>.control`, created when missing. A write-ahead log must
 * never expire on its own, so retention is unlimited (only `truncateBefore` deletes), and with `flush.messages=1`
 * the broker fsyncs every produce before acknowledging it: on a single broker, acks=all alone reaches only the
 * page cache (DESIGN.md, "Kafka specifics"). An existing topic whose settings would lose records is refused.
 */
// Default import: Node's CommonJS export detection does not find ConfigResourceTypes in kafkajs's index.
import "../../kafkajs/kafkajsAbortFix.ts"
import kafkajs, { type Admin } from "kafkajs"
import type { LogStream } from "../ports/Log.ts"
import { createTopicsReady } from "./kafkaCreateTopics.ts"

export interface TopicSettings {
  readonly partitions: number
  readonly replicationFactor: number
  /** `flush.messages=1`: the broker fsyncs before it acknowledges. */
  readonly flushEachWrite: boolean
  /** Largest record batch the topic accepts (`max.message.bytes`). */
  readonly maxMessageBytes: number
}

export type Topics = Readonly<Record<LogStream, string>>

const APP = /^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$/

/** The topic names for `app`, or why `app` cannot name topics. */
export const topicsFor = (app: string): Topics | string => {
  if (!APP.test(app)) return `app name '${app}' must be dot-separated segments of [A-Za-z0-9_-]`
  const topics = { wal: `eddy.${app}.wal`, control: `eddy.${app}.control` }
  if (topics.control.length > 249) return `app name '${app}' is too long for a Kafka topic name`
  return topics
}

const configEntries = (s: TopicSettings) => [
  { name: "cleanup.policy", value: "delete" },
  { name: "retention.ms", value: "-1" },
  { name: "retention.bytes", value: "-1" },
  { name: "max.message.bytes", value: String(s.maxMessageBytes) },
  ...(s.flushEachWrite ? [{ name: "flush.messages", value: "1" }] : []),
]

/** Settings an existing topic must have for the log to be safe, with the value that is required. */
const required: ReadonlyArray<readonly [string, (v: string) => boolean, string]> = [
  ["cleanup.policy", (v) => v === "delete", "delete"],
  ["retention.ms", (v) => Number(v) < 0, "-1"],
  ["retention.bytes", (v) => Number(v) < 0, "-1"],
]

/** Creates the topics if missing; returns a problem with an existing topic's settings, if any. */
export const ensureTopics = async (admin: Admin, topics: Topics, s: TopicSettings): Promise<string | undefined> => {
  const names = [topics.wal, topics.control]
  await createTopicsReady(
    admin,
    names.map((topic) => ({
      topic,
      numPartitions: s.partitions,
      replicationFactor: s.replicationFactor,
      configEntries: configEntries(s),
    })),
  )
  const described = await admin.describeConfigs({
    includeSynonyms: false,
    resources: names.map((name) => ({ type: kafkajs.ConfigResourceTypes.TOPIC, name, configNames: required.map(([n]) => n) })),
  })
  for (const resource of described.resources) {
    for (const [name, ok, want] of required) {
      const entry = resource.configEntries.find((e) => e.configName === name)
      if (entry !== undefined && !ok(entry.configValue)) {
        return `topic ${resource.resourceName} has ${name}=${entry.configValue}, which would lose log records; set it to ${want} (kafka-configs.sh --alter --entity-type topics --entity-name ${resource.resourceName} --add-config ${name}=${want}) or use another app name`
      }
    }
  }
  return undefined
}

/**
 * Creating topics and waiting until every partition has a leader. kafkajs's own wait (`waitForLeaders`) retries
 * only LEADER_NOT_AVAILABLE, but a broker whose metadata has not yet caught up with the creation answers
 * UNKNOWN_TOPIC_OR_PARTITION for a moment, and kafkajs then fails the creation (seen in CI on a loaded machine).
 */
import "../../kafkajs/kafkajsAbortFix.ts"
import type { Admin, ITopicConfig } from "kafkajs"

export interface TopicsReady {
  /** Whether any topic was missing (and created). */
  readonly created: boolean
  /** Each topic's partition count as the broker reports it (an existing topic may have more than asked for). */
  readonly partitions: ReadonlyMap<string, number>
}

/** Creates the topics that are missing, then waits up to `timeoutMs` for every partition's leader. */
export const createTopicsReady = async (admin: Admin, topics: ReadonlyArray<ITopicConfig>, timeoutMs = 15_000): Promise<TopicsReady> => {
  const created = await admin.createTopics({ waitForLeaders: false, topics: [...topics] })
  const names = topics.map((t) => t.topic)
  const deadline = Date.now() + timeoutMs
  for (;;) {
    try {
      const meta = await admin.fetchTopicMetadata({ topics: names })
      if (meta.topics.length === names.length && meta.topics.every((t) => t.partitions.length > 0 && t.partitions.every((p) => p.leader >= 0))) {
        return { created, partitions: new Map(meta.topics.map((t) => [t.name, t.partitions.length])) }
      }
    } catch (err) {
      // Created a moment ago: the metadata may not know the topics yet. Past the deadline, the error is the answer.
      if (Date.now() > deadline) throw err
    }
    if (Date.now() > deadline) throw new Error(`Kafka: topics ${names.join(", ")} have no leader ${timeoutMs} ms after their creation`)
    await new Promise((r) => setTimeout(r, 20))
  }
}

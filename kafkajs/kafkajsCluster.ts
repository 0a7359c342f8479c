/**
 * kafkajs's cluster (connections, metadata, brokers) without a producer or consumer around it. kafkajs exposes it
 * only inside its clients, so this reaches it through the Kafka client's private factory (kafkajs 2.2; the same
 * configuration — brokers, TLS, SASL, socket factory — as the client's own producers and consumers) and types the
 * few calls Eddy makes (kafkajsFetch.ts, kafkajsTransactionAdmin.ts).
 */
import type { Kafka } from "kafkajs"

/** A request in kafkajs's protocol form: encode() gives the body after the request header. */
export interface ProtocolRequest<A> {
  readonly request: { readonly apiKey: number; readonly apiVersion: number; readonly apiName: string; encode(): Promise<{ readonly buffer: Buffer }> }
  readonly response: { decode(payload: Buffer): Promise<A>; parse(decoded: A): Promise<A> }
}

export interface ClusterBroker {
  readonly nodeId: number
  fetch(request: unknown): Promise<unknown>
  readonly connectionPool: { send<A>(request: ProtocolRequest<A>): Promise<A> }
}

export interface Cluster {
  connect(): Promise<void>
  disconnect(): Promise<void>
  addTargetTopic(topic: string): Promise<void>
  refreshMetadata(): Promise<void>
  findLeaderForPartitions(topic: string, partitions: ReadonlyArray<number>): Record<string, ReadonlyArray<number>>
  findBroker(query: { readonly nodeId: string }): Promise<ClusterBroker>
  findGroupCoordinator(query: { readonly groupId: string; readonly coordinatorType: number }): Promise<ClusterBroker>
  fetchTopicsOffset(topics: ReadonlyArray<{ readonly topic: string; readonly partitions: ReadonlyArray<{ readonly partition: number }>; readonly fromBeginning: boolean }>): Promise<ReadonlyArray<{ readonly topic: string; readonly partitions: ReadonlyArray<{ readonly partition: number; readonly offset: string }> }>>
}

export const READ_COMMITTED = 1

type ClusterFactory = (options: { readonly metadataMaxAge: number; readonly allowAutoTopicCreation: boolean; readonly isolationLevel: number }) => Cluster

/** A new cluster of `kafka`'s configuration, read_committed (not connected yet). */
export const newCluster = (kafka: Kafka): Cluster => {
  const key = Object.getOwnPropertySymbols(kafka).find((s) => s.description === "private:Kafka:createCluster")
  const factory: unknown = key === undefined ? undefined : (kafka as unknown as Record<symbol, unknown>)[key]
  if (typeof factory !== "function") throw new Error("assertion: kafkajs's Kafka client has no private cluster factory (kafkajs/kafkajsCluster.ts is written for kafkajs 2.2)")
  return (factory as ClusterFactory)({ metadataMaxAge: 300_000, allowAutoTopicCreation: false, isolationLevel: READ_COMMITTED })
}

/** A connected cluster that knows `topics`' metadata. */
export const connectCluster = async (kafka: Kafka, topics: ReadonlyArray<string>): Promise<Cluster> => {
  const cluster = newCluster(kafka)
  try {
    await cluster.connect()
    for (const topic of topics) await cluster.addTargetTopic(topic)
  } catch (cause) {
    await cluster.disconnect().catch(() => undefined)
    throw cause
  }
  return cluster
}

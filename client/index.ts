export type { Answer, EddyClient, RequestOptions, StateOptions, Target } from "./Client.ts"
export { BadRequest, Busy, ClientError, InvalidPayload, Rejected, Timeout, Unavailable, UnknownActorType, type ClientErrorTag } from "./errors.ts"
export { httpClient, type HttpClientOptions } from "./HttpClient.ts"
export { natsClient, type NatsClientOptions } from "./NatsClient.ts"
export type { KafkaClientOptions } from "./KafkaClient.ts"
import { httpClient } from "./HttpClient.ts"
import { natsClient } from "./NatsClient.ts"
import type { EddyClient } from "./Client.ts"
import type { KafkaClientOptions } from "./KafkaClient.ts"

export const Client = {
  /** A client of an app served over HTTP (`eddy run <app> --port N`, or `serve` in Eddy.start). */
  http: httpClient,
  /** A client of a cluster deployment over NATS (`eddy cluster <app> --namespace NS`). */
  nats: natsClient,
  /** A client of an app's Kafka request and reply topics (an actor system with `kafka: { requests, replies }`). */
  // Loaded on first use: it patches kafkajs before loading it, which an HTTP or NATS user importing kafkajs first
  // must not run into.
  kafka: async (options: KafkaClientOptions): Promise<EddyClient> => (await import("./KafkaClient.ts")).kafkaClient(options),
}

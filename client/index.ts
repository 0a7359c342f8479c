export type { Answer, EddyClient, RequestOptions, StateOptions, Target } from "./Client.ts"
export { BadRequest, Busy, ClientError, InvalidPayload, Rejected, Timeout, Unavailable, UnknownActorType, type ClientErrorTag } from "./errors.ts"
export { httpClient, type HttpClientOptions } from "./HttpClient.ts"
export { natsClient, type NatsClientOptions } from "./NatsClient.ts"
import { httpClient } from "./HttpClient.ts"
import { natsClient } from "./NatsClient.ts"

export const Client = {
  /** A client of an app served over HTTP (`eddy run <app> --port N`, or `serve` in Eddy.start). */
  http: httpClient,
  /** A client of a cluster deployment over NATS (`eddy cluster <app> --namespace NS`). */
  nats: natsClient,
}

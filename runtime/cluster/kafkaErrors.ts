/**
 * Turns kafkajs failures into LogErrors whose message names the brokers and says what to do. kafkajs wraps the
 * reason in `cause` chains (KafkaJSNumberOfRetriesExceeded → KafkaJSConnectionError), so the chain is walked.
 */
import { LogError } from "../ports/Log.ts"
import { isUnreachable, reasonOf } from "./kafkaReasons.ts"

export { isUnreachable, reasonOf } from "./kafkaReasons.ts"

export const kafkaError = (brokers: ReadonlyArray<string>, what: string, cause: unknown): LogError => {
  const at = brokers.join(",")
  const message = isUnreachable(cause)
    ? `cannot reach Kafka at ${at} while ${what} — is it running? (npm run infra:up, or set EDDY_KAFKA_BROKERS): ${reasonOf(cause)}`
    : `Kafka at ${at}: ${what} failed: ${reasonOf(cause)}`
  return new LogError({ message, cause })
}

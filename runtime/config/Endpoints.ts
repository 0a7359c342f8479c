/**
 * Where the cluster runtime finds its servers: Kafka (the log), NATS (messaging) and an S3-compatible object store
 * (snapshots). One config, read from environment variables, with loopback defaults that match what
 * `npm run infra:up` (scripts/infra.ts) starts. The runtime, the infra script and the integration tests all read it.
 *
 * The default ports are below Linux's ephemeral range (32768-60999) and away from each server's usual port
 * (9092, 4222, 9000), so a developer's own Kafka, NATS or MinIO does not clash with the ones the tests start.
 */

export interface KafkaEndpoints {
  /** Bootstrap brokers, `host:port`. Env: EDDY_KAFKA_BROKERS (comma-separated). */
  readonly brokers: ReadonlyArray<string>
  /** Port of the KRaft controller listener of the local single-node broker. Env: EDDY_KAFKA_CONTROLLER_PORT. */
  readonly controllerPort: number
}

export interface NatsEndpoints {
  /** Env: EDDY_NATS_URL, e.g. `nats://127.0.0.1:21422`. */
  readonly url: string
}

export interface S3Endpoints {
  /** Env: EDDY_S3_ENDPOINT, e.g. `http://127.0.0.1:21900`. For AWS S3 itself, set it to the regional endpoint. */
  readonly endpoint: string
  /** Env: EDDY_S3_REGION. */
  readonly region: string
  /** Env: EDDY_S3_ACCESS_KEY. */
  readonly accessKeyId: string
  /** Env: EDDY_S3_SECRET_KEY. */
  readonly secretAccessKey: string
  /** Env: EDDY_S3_BUCKET. */
  readonly bucket: string
  /** Path-style addressing (`endpoint/bucket/key`), needed by most self-hosted servers. Env: EDDY_S3_FORCE_PATH_STYLE. */
  readonly forcePathStyle: boolean
}

export interface Endpoints {
  readonly kafka: KafkaEndpoints
  readonly nats: NatsEndpoints
  readonly s3: S3Endpoints
}

export const defaultPorts = {
  kafka: 21092,
  kafkaController: 21093,
  nats: 21422,
  s3: 21900,
} as const

export class EndpointsConfigError extends Error {
  override readonly name = "EndpointsConfigError"
}

type Env = Readonly<Record<string, string | undefined>>

const text = (env: Env, name: string, fallback: string): string => {
  const v = env[name]?.trim()
  return v === undefined || v === "" ? fallback : v
}

const port = (env: Env, name: string, fallback: number): number => {
  const raw = text(env, name, String(fallback))
  const n = Number(raw)
  if (!Number.isInteger(n) || n < 1 || n > 65535) throw new EndpointsConfigError(`${name}=${raw} is not a TCP port`)
  return n
}

const flag = (env: Env, name: string, fallback: boolean): boolean => {
  const raw = text(env, name, fallback ? "true" : "false").toLowerCase()
  if (raw === "true" || raw === "1" || raw === "yes") return true
  if (raw === "false" || raw === "0" || raw === "no") return false
  throw new EndpointsConfigError(`${name}=${raw} is not a boolean (true/false)`)
}

const url = (env: Env, name: string, fallback: string, protocols: ReadonlyArray<string>): string => {
  const raw = text(env, name, fallback)
  let parsed: URL
  try {
    parsed = new URL(raw)
  } catch {
    throw new EndpointsConfigError(`${name}=${raw} is not a URL`)
  }
  if (!protocols.includes(parsed.protocol)) {
    throw new EndpointsConfigError(`${name}=${raw} must use ${protocols.join(" or ")}`)
  }
  return raw
}

const brokers = (env: Env, fallback: string): ReadonlyArray<string> => {
  const list = text(env, "EDDY_KAFKA_BROKERS", fallback)
    .split(",")
    .map((b) => b.trim())
    .filter((b) => b !== "")
  for (const b of list) {
    if (!/^[^\s:]+:\d{1,5}$/.test(b) && !/^\[[0-9a-fA-F:.]+\]:\d{1,5}$/.test(b)) {
      throw new EndpointsConfigError(`EDDY_KAFKA_BROKERS entry '${b}' is not host:port`)
    }
  }
  if (list.length === 0) throw new EndpointsConfigError("EDDY_KAFKA_BROKERS is empty")
  return list
}

/** Reads the endpoints from `env` (default: `process.env`). Throws EndpointsConfigError on a malformed value. */
export const readEndpoints = (env: Env = process.env): Endpoints => ({
  kafka: {
    brokers: brokers(env, `127.0.0.1:${defaultPorts.kafka}`),
    controllerPort: port(env, "EDDY_KAFKA_CONTROLLER_PORT", defaultPorts.kafkaController),
  },
  nats: {
    url: url(env, "EDDY_NATS_URL", `nats://127.0.0.1:${defaultPorts.nats}`, ["nats:", "tls:"]),
  },
  s3: {
    endpoint: url(env, "EDDY_S3_ENDPOINT", `http://127.0.0.1:${defaultPorts.s3}`, ["http:", "https:"]),
    region: text(env, "EDDY_S3_REGION", "us-east-1"),
    accessKeyId: text(env, "EDDY_S3_ACCESS_KEY", "eddy-access"),
    secretAccessKey: text(env, "EDDY_S3_SECRET_KEY", "eddy-secret-key"),
    bucket: text(env, "EDDY_S3_BUCKET", "eddy"),
    forcePathStyle: flag(env, "EDDY_S3_FORCE_PATH_STYLE", true),
  },
})

/** Splits `host:port` (or `[v6]:port`) into its parts. */
export const hostPort = (address: string): { readonly host: string; readonly port: number } => {
  const i = address.lastIndexOf(":")
  const host = address.slice(0, i).replace(/^\[(.*)\]$/, "$1")
  return { host, port: Number(address.slice(i + 1)) }
}

/** True for 127.0.0.0/8, ::1 and localhost: an address a local infra script may start a server on. */
export const isLoopback = (host: string): boolean =>
  host === "localhost" || host === "::1" || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host)

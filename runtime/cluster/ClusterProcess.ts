import { Effect, Layer } from "effect"
import type { App } from "../../workflows/App.ts"
import { committedStateFrom, start, type CommittedState, type Deployment, type RunningApp, type RunOptions } from "../Eddy.ts"
import { COORDINATOR } from "../ports/Transport.ts"
import { KafkaLog } from "./KafkaLog.ts"
import { startNatsFront } from "./NatsFront.ts"
import { NatsTransport } from "./NatsTransport.ts"
import { S3BlobStore } from "./S3BlobStore.ts"

/** The role of one cluster process: the coordinator, or the worker of one partition. */
export type Role = "coordinator" | { readonly partition: number }

export interface ClusterOptions {
  readonly role: Role
  readonly partitions: number
  /**
   * Names the Kafka topics, NATS subjects and S3 prefix of this deployment (default: the app's name). Two
   * deployments of one app with different namespaces share nothing.
   */
  readonly namespace?: string
  /** A process that sees no progress for this long exits, and the supervisor restarts everyone (default 10 s). */
  readonly livenessMs?: number
}

/** The cluster ports: Kafka log, S3 snapshots, NATS transport; endpoints from EDDY_* variables (runtime/config). */
export const clusterDeployment = (app: App, options: ClusterOptions): Deployment => {
  const ns = options.namespace ?? app.name
  const coordinator = options.role === "coordinator"
  const partitions = coordinator ? [] : [(options.role as { partition: number }).partition]
  return {
    ports: Layer.mergeAll(KafkaLog.layer({ app: ns }), S3BlobStore.layer({ prefix: ns }), NatsTransport.layer({ app: ns, endpoints: coordinator ? [COORDINATOR] : partitions })),
    host: { coordinator, partitions },
    namespace: ns,
    livenessMs: options.livenessMs ?? 10_000,
    // Workers take client requests for their partitions; the coordinator hosts none.
    ...(coordinator
      ? {}
      : {
          serve: (front, state, keyGroups) =>
            startNatsFront(front, state, { namespace: ns, app: app.name, partitions: options.partitions, keyGroups, hosted: partitions }),
        }),
  }
}

/** Runs one cluster process (the same engine as embedded, other ports). */
export const startClusterProcess = (app: App, options: ClusterOptions & RunOptions): RunningApp =>
  start(app, { ...options, partitions: options.partitions }, clusterDeployment(app, options))

/** Connects to Kafka, S3 and NATS once: a misconfigured endpoint fails here, with a message naming it. */
export const checkEndpoints = (namespace: string): Promise<void> =>
  Effect.runPromise(
    Layer.build(Layer.mergeAll(KafkaLog.layer({ app: namespace }), S3BlobStore.layer({ prefix: namespace }), NatsTransport.layer({ app: namespace, endpoints: [] }))).pipe(
      Effect.asVoid,
      Effect.scoped,
      Effect.mapError((e) => new Error(e.message)),
    ),
  )

/** The committed state of a cluster deployment, read from its Kafka log and S3 snapshots. */
export const clusterState = (namespace: string): Promise<CommittedState> =>
  committedStateFrom(Layer.merge(KafkaLog.layer({ app: namespace }), S3BlobStore.layer({ prefix: namespace })))

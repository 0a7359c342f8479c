// Removes what a benchmark run left on the shared servers: the namespace's Kafka topics and its S3 objects.
import { Effect } from "effect"
import "../kafkajs/kafkajsAbortFix.ts"
import { Kafka, logLevel } from "kafkajs"
import { S3BlobStore } from "../runtime/cluster/S3BlobStore.ts"
import { readEndpoints } from "../runtime/config/Endpoints.ts"
import { BlobStore } from "../runtime/ports/BlobStore.ts"

export const cleanupNamespace = async (ns: string): Promise<void> => {
  const admin = new Kafka({ clientId: "eddy-bench", brokers: [...readEndpoints().kafka.brokers], logLevel: logLevel.NOTHING }).admin()
  await admin.connect()
  await admin.deleteTopics({ topics: [`eddy.${ns}.wal`, `eddy.${ns}.control`] }).catch(() => undefined)
  await admin.disconnect()
  await Effect.runPromise(
    Effect.gen(function* () {
      const store = yield* BlobStore
      yield* Effect.forEach(yield* store.list(""), (k) => store.delete(k), { concurrency: 16, discard: true })
    }).pipe(Effect.provide(S3BlobStore.layer({ prefix: ns })), Effect.scoped),
  )
}

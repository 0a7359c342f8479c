/**
 * Two changes to kafkajs 2.2's transactional producer, for the Kafka egress's latency. Neither changes a byte of
 * what is sent; they change where requests go and when.
 *
 * 1. The transaction coordinator is cached. kafkajs looks it up (a FindCoordinator request) before every
 *    AddPartitionsToTxn and every EndTxn (`src/producer/eosManager/index.js`, findTransactionCoordinator): two of the
 *    five broker round trips of each egress transaction (measured at 20k records/s: 2 FindCoordinator per
 *    transaction, p50 4 ms each on a busy machine). Like Java's client, `Cluster.findGroupCoordinator` for the
 *    TRANSACTION coordinator type now answers from a cache (per cluster and transactional id); any error of a request
 *    sent to a transaction coordinator (InitProducerId, AddPartitionsToTxn, AddOffsetsToTxn, EndTxn) other than
 *    CONCURRENT_TRANSACTIONS empties every cache, so the next call asks the cluster again, as kafkajs always did. A
 *    stale entry can only yield a retriable error from a broker that is no longer the coordinator. Group
 *    coordinators (consumers, admin) are looked up as before.
 *
 * 2. A transaction's partitions can be added before its records exist (`transactionWithEos` exposes the producer's
 *    transaction manager, `addPartitions` sends AddPartitionsToTxn, retrying CONCURRENT_TRANSACTIONS): the egress adds
 *    every partition its next transaction may write while the records are not ready yet, so sending them is a single
 *    Produce request (kafkajs skips AddPartitionsToTxn for partitions already in the transaction).
 *
 * Loaded by kafkajsAbortFix.ts, which every module imports before "kafkajs": the transaction manager's module must be
 * wrapped before kafkajs's producer module requires it.
 */
import { createRequire } from "node:module"
import { assertNotLoaded } from "./kafkajsModules.ts"

const require = createRequire(import.meta.url)

interface BrokerLike {
  readonly nodeId: number
}
interface ClusterProto {
  findGroupCoordinator(this: object, args: { groupId: string; coordinatorType?: number }): Promise<BrokerLike>
  findBroker(this: object, args: { nodeId: number }): Promise<BrokerLike>
  __eddyTxnCoordinatorCache?: true
}
type BrokerProto = Record<string, (this: object, ...args: unknown[]) => Promise<unknown>>

/** The part of kafkajs's transaction manager (eosManager) used here. */
export interface EosManager {
  isInTransaction(): boolean
  addPartitionsToTransaction(topicData: ReadonlyArray<{ readonly topic: string; readonly partitions: ReadonlyArray<{ readonly partition: number }> }>): Promise<void>
}

const TRANSACTION = (require("kafkajs/src/protocol/coordinatorTypes.js") as { TRANSACTION: number }).TRANSACTION
const Cluster = require("kafkajs/src/cluster/index.js") as { prototype: ClusterProto }
const Broker = require("kafkajs/src/broker/index.js") as { prototype: BrokerProto }

/** Bumped by every failed request to a transaction coordinator: entries of older generations are not used. */
let generation = 0
const cache = new WeakMap<object, Map<string, { readonly nodeId: number; readonly generation: number }>>()

/** Tests: how many lookups were answered from the cache, and how many went to the cluster. */
export const txnCoordinatorStats = { cached: 0, looked: 0 }
/** Tests: forget every cached coordinator. */
export const forgetTxnCoordinators = (): void => void generation++

const isConcurrentTransactions = (err: unknown): boolean => (err as { type?: unknown } | null)?.type === "CONCURRENT_TRANSACTIONS"

const cluster = Cluster.prototype
if (cluster.__eddyTxnCoordinatorCache !== true) {
  cluster.__eddyTxnCoordinatorCache = true
  const original = cluster.findGroupCoordinator
  cluster.findGroupCoordinator = async function (this: object, args: { groupId: string; coordinatorType?: number }) {
    if (args.coordinatorType !== TRANSACTION) return original.call(this, args)
    let entries = cache.get(this)
    if (entries === undefined) cache.set(this, (entries = new Map()))
    const hit = entries.get(args.groupId)
    if (hit !== undefined && hit.generation === generation) {
      try {
        const broker = await cluster.findBroker.call(this, { nodeId: hit.nodeId })
        txnCoordinatorStats.cached++
        return broker
      } catch {
        // The broker is gone from the metadata or cannot be reached: look the coordinator up again.
        entries.delete(args.groupId)
      }
    }
    const at = generation
    const broker = await original.call(this, args)
    txnCoordinatorStats.looked++
    if (at === generation) entries.set(args.groupId, { nodeId: broker.nodeId, generation: at })
    return broker
  }

  const broker = Broker.prototype
  for (const name of ["initProducerId", "addPartitionsToTxn", "addOffsetsToTxn", "endTxn"]) {
    const send = broker[name]
    if (typeof send !== "function") throw new Error(`assertion: kafkajs Broker has no ${name} (kafkajs/kafkajsTransactions.ts)`)
    broker[name] = async function (this: object, ...args: unknown[]) {
      try {
        return await send.apply(this, args)
      } catch (err) {
        if (!isConcurrentTransactions(err)) generation++
        throw err
      }
    }
  }
}

// The transaction manager's factory, wrapped so that the one a producer creates can be taken (transactionWithEos).
const eosPath = require.resolve("kafkajs/src/producer/eosManager/index.js")
const producerPath = require.resolve("kafkajs/src/producer/index.js")
type EosFactory = ((options: { transactional?: boolean }) => EosManager) & { __eddyWrapped?: true }
let created: EosManager | undefined
{
  const factory = require(eosPath) as EosFactory
  if (factory.__eddyWrapped !== true) {
    assertNotLoaded([producerPath], "kafkajsTransactions.ts", "its transaction manager cannot be wrapped")
    const wrapped: EosFactory = (options) => {
      const m = factory(options)
      if (options.transactional === true) created = m
      return m
    }
    wrapped.__eddyWrapped = true
    require.cache[eosPath]!.exports = wrapped
  }
}

/**
 * `producer.transaction()`, and the producer's transaction manager: kafkajs creates it synchronously in the first
 * call (undefined if the module could not be wrapped; a caller then simply does not add partitions ahead).
 */
export const transactionWithEos = <T>(producer: { transaction(): Promise<T> }, known: EosManager | undefined): { readonly tx: Promise<T>; readonly eos: EosManager | undefined } => {
  created = undefined
  const tx = producer.transaction()
  const eos = known ?? created
  created = undefined
  return { tx, eos }
}

/**
 * Adds partitions to the ongoing transaction of `eos` (one AddPartitionsToTxn request; none for those already in
 * it). Right after the producer's previous transaction ended the coordinator answers CONCURRENT_TRANSACTIONS while
 * it writes that one's markers: retried every `retryMs` for up to `forMs`.
 */
export const addPartitions = async (
  eos: EosManager,
  topics: ReadonlyArray<{ readonly topic: string; readonly partitions: ReadonlyArray<number> }>,
  retryMs = 2,
  forMs = 5_000,
): Promise<void> => {
  const topicData = topics.map((t) => ({ topic: t.topic, partitions: t.partitions.map((partition) => ({ partition })) }))
  const until = Date.now() + forMs
  for (;;) {
    try {
      return await eos.addPartitionsToTransaction(topicData)
    } catch (err) {
      if (!isConcurrentTransactions(err) || Date.now() >= until) throw err
      await new Promise((r) => setTimeout(r, retryMs))
    }
  }
}

/**
 * kafkajs 2.2's read_committed filter (`src/consumer/filterAbortedMessages.js`) assumes the fetch response lists
 * aborted transactions by first offset and activates at most one per record. The broker lists them in the order
 * they ended, so when aborted transactions of two producers nest in a partition (B starts after A and aborts before
 * it, as when a crash aborts two overlapping transactions), A's records are returned as committed. That broke the
 * Kafka egress's recovery (an aborted marker read as committed: its epochs were never republished) and readers of
 * Eddy's output. This module replaces the filter with a correct one before kafkajs is loaded: import it before
 * "kafkajs" wherever kafkajs is imported (the runtime's Kafka ports, the Kafka client, the benches).
 */
import { createRequire } from "node:module"
import { assertNotLoaded, replaceModule } from "./kafkajsModules.ts"
// Also patches kafkajs's transactional producer (coordinator cache, partitions added ahead), its produce encoding
// (same bytes, less work) and its record decoding (same records, less work); they must load before kafkajs's
// producer and protocol modules, which every importer of this module guarantees.
import "./kafkajsTransactions.ts"
import "./kafkajsEncoding.ts"
import "./kafkajsDecoding.ts"

interface Message {
  readonly key?: Buffer | null
  readonly offset: string
  readonly batchContext: { readonly producerId: string; readonly inTransaction: boolean }
}
interface Aborted {
  readonly producerId: string
  readonly firstOffset: string
}

const ABORT_KEY = Buffer.from([0, 0, 0, 0])
const isAbortMarker = (m: Message): boolean => m.key !== undefined && m.key !== null && Buffer.from(m.key).equals(ABORT_KEY)

/** Drops the records of aborted transactions: every transaction whose first offset was reached is active until its producer's ABORT marker. */
export const filterAbortedMessages = ({ messages, abortedTransactions }: { messages: Message[]; abortedTransactions?: ReadonlyArray<Aborted> }): Message[] => {
  if (abortedTransactions === undefined || abortedTransactions.length === 0) return messages
  const pending = [...abortedTransactions].sort((a, b) => (BigInt(a.firstOffset) < BigInt(b.firstOffset) ? -1 : BigInt(a.firstOffset) > BigInt(b.firstOffset) ? 1 : 0))
  const active = new Set<string>()
  let next = 0
  return messages.filter((m) => {
    const offset = BigInt(m.offset)
    while (next < pending.length && BigInt(pending[next]!.firstOffset) <= offset) active.add(String(pending[next++]!.producerId))
    const producer = String(m.batchContext.producerId)
    if (isAbortMarker(m)) {
      active.delete(producer)
      return true
    }
    return !(active.has(producer) && m.batchContext.inTransaction)
  })
}

const require = createRequire(import.meta.url)
const target = require.resolve("kafkajs/src/consumer/filterAbortedMessages.js")
const batch = require.resolve("kafkajs/src/consumer/batch.js")
if (require.cache[target]?.exports !== filterAbortedMessages) assertNotLoaded([batch], "kafkajsAbortFix.ts", "its read_committed filter cannot be replaced")
if (require.cache[target] === undefined) replaceModule(target, filterAbortedMessages)

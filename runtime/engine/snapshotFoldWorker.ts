/**
 * The snapshot thread (DeltaFolder.ts, threadFolder): keeps each committed record's bytes as they arrive (outside the
 * heap: nothing for its collector to copy), and decodes, merges and folds them when a part is built. Messages arrive
 * in the order the engine posted them, so a seal holds exactly the epochs committed before it.
 */
import { parentPort } from "node:worker_threads"
import type { FromFolder, ToFolder } from "./DeltaFolder.ts"
import { buildPacks, mergeColumns, mergeRecord, type StateDelta, type Tables } from "./snapshotFold.ts"
import { lowerThisThreadPriority } from "./threadPriority.ts"

const port = parentPort
if (port === null) throw new Error("snapshotFoldWorker.ts runs as a worker thread")

// Building a part takes hundreds of ms of CPU every few seconds. At normal priority it competes for the cores with
// the engine's thread and with clients, and a client woken by its answers while this thread holds the other core
// waits out a time slice (1-4 ms: docs/performance.md, sessions 19 and 20). At the lowest priority it only uses idle time.
lowerThisThreadPriority()

/** Committed epochs since the last part, in commit order: encoded records, or (replayed at start-up) state columns. */
let current: Array<Uint8Array | StateDelta> = []
let sealed: Array<Uint8Array | StateDelta> | undefined

const handle = (m: ToFolder): void => {
  switch (m.t) {
    case "adds":
      for (const a of m.adds) handle(a)
      break
    case "add":
      current.push(m.payload)
      break
    case "add-state":
      current.push(m.state)
      break
    case "seal":
      if (sealed !== undefined) throw new Error("assertion: a snapshot part is sealed while the last is not settled")
      sealed = current
      current = []
      break
    case "build": {
      let reply: FromFolder
      try {
        const changed = new Map<number, Tables>()
        for (const x of sealed ?? []) {
          if (x instanceof Uint8Array) mergeRecord(changed, x)
          else mergeColumns(changed, x)
        }
        const steps = buildPacks(changed, new Map(m.folds), new Map(m.blobs), m.packBytes)
        let step = steps.next()
        while (step.done !== true) step = steps.next()
        // Each blob moves to the engine's thread without a copy (a blob not alone in its buffer is copied first).
        const packs = step.value.map((p) => (p.blob.byteOffset === 0 && p.blob.byteLength === p.blob.buffer.byteLength ? p : { ...p, blob: p.blob.slice() }))
        reply = { t: "built", id: m.id, packs }
      } catch (err) {
        reply = { t: "failed", id: m.id, message: err instanceof Error ? err.message : String(err) }
      }
      port.postMessage(reply, reply.t === "built" ? reply.packs.map((p) => p.blob.buffer as ArrayBuffer) : [])
      break
    }
    case "settle":
      if (!m.uploaded && sealed !== undefined) current = [...sealed, ...current]
      sealed = undefined
      break
  }
}

port.on("message", handle)

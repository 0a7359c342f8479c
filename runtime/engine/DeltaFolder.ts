/**
 * Holds the state changes committed since the last snapshot part and turns them into the part's blobs. Two kinds:
 * on the engine's thread (InThreadFolder), or in a thread of its own (threadFolder, snapshotFoldWorker.ts), which
 * keeps each committed record's encoded bytes: neither the changes (objects the engine's collector would otherwise
 * copy and promote for seconds) nor the decode, merge, fold and encode of a part (hundreds of ms for a few MB) cost
 * the engine more than a copy of each encoded record.
 *
 * Protocol: `add` each committed epoch in commit order; `seal` fixes what the next part holds (everything added
 * before it); `build` makes its blobs; `settle` says whether the part was uploaded: if not, its changes go back
 * under the newer ones, for the next part.
 */
import { Worker } from "node:worker_threads"
import { buildPacks, mergeColumns, type BuiltPack, type Chain, type StateDelta, type Tables } from "./snapshotFold.ts"
import { tsxWorker } from "./tsxWorker.ts"

export interface DeltaFolder {
  /** A committed epoch's state columns; `payload`, its encoded record if at hand (a thread takes that instead). */
  add(state: StateDelta, payload?: Uint8Array): void
  /** The next part holds everything added so far, and nothing added later. */
  seal(): void
  /** The sealed part's blobs: a delta per changed group, or an image for groups in `folds` (their chains' blobs given). */
  build(folds: ReadonlyMap<number, Chain>, blobs: ReadonlyMap<string, Uint8Array>, packBytes: number): Promise<ReadonlyArray<BuiltPack>>
  /** The sealed part was uploaded (its changes go), or not (they go back under the newer ones). */
  settle(uploaded: boolean): void
  close(): Promise<void>
}

/** Longest stretch of folding between two turns of the event loop, on the engine's thread. */
const SLICE_MS = 2

/** On the engine's thread: keeps the records' own (immutable) columns, and merges them only when a part is built. */
export class InThreadFolder implements DeltaFolder {
  private columns: StateDelta[] = []
  private sealed: StateDelta[] | undefined

  add(state: StateDelta): void {
    if (state.length > 0) this.columns.push(state)
  }

  seal(): void {
    if (this.sealed !== undefined) throw new Error("assertion: a snapshot part is sealed while the last is not settled")
    this.sealed = this.columns
    this.columns = []
  }

  async build(folds: ReadonlyMap<number, Chain>, blobs: ReadonlyMap<string, Uint8Array>, packBytes: number): Promise<ReadonlyArray<BuiltPack>> {
    const changed = new Map<number, Tables>()
    for (const state of this.sealed ?? []) mergeColumns(changed, state)
    const steps = buildPacks(changed, folds, blobs, packBytes)
    let slice = performance.now()
    for (;;) {
      const step = steps.next()
      if (step.done === true) return step.value
      if (performance.now() - slice > SLICE_MS) {
        await new Promise<void>((resolve) => setImmediate(resolve))
        slice = performance.now()
      }
    }
  }

  settle(uploaded: boolean): void {
    if (!uploaded && this.sealed !== undefined) this.columns = [...this.sealed, ...this.columns]
    this.sealed = undefined
  }

  close(): Promise<void> {
    return Promise.resolve()
  }
}

/** Messages to the snapshot thread. */
export type ToFolder =
  | { readonly t: "add"; readonly payload: Uint8Array }
  | { readonly t: "add-state"; readonly state: StateDelta }
  /** Several adds in one message (in order): one wake-up of the thread for many epochs. */
  | { readonly t: "adds"; readonly adds: ReadonlyArray<FolderAdd> }
  | { readonly t: "seal" }
  | { readonly t: "build"; readonly id: number; readonly folds: ReadonlyArray<readonly [number, Chain]>; readonly blobs: ReadonlyArray<readonly [string, Uint8Array]>; readonly packBytes: number }
  | { readonly t: "settle"; readonly uploaded: boolean }

/** One committed epoch's changes, as the thread is given them. */
type FolderAdd = ToFolder & { readonly t: "add" | "add-state" }

/** Messages from it. */
export type FromFolder = { readonly t: "built"; readonly id: number; readonly packs: ReadonlyArray<BuiltPack> } | { readonly t: "failed"; readonly id: number; readonly message: string }

/** A DeltaFolder in a thread of its own; `crash` ends the thread as a fault would (tests). */
export interface ThreadFolder extends DeltaFolder {
  crash(): Promise<void>
}

/** Deaths of the snapshot thread after which it is restarted; one more, and every later part fails. */
const MAX_RESTARTS = 3

/**
 * Adds posted to the thread together. Each message wakes the thread, and on two cores a woken thread can take the
 * core from the engine's thread for a time slice (measured: the eventfd write of a postMessage p90 0.76 ms, one per
 * epoch, in a served counter at 340 epochs/s). The thread needs the adds only when a part is sealed, and this side
 * keeps them until then either way, so they wait here in batches.
 */
const ADD_BATCH = 64

/**
 * The changes and the work in a thread of its own: the engine's thread posts each committed record's bytes. The thread
 * starts at the first part (a run that never snapshots, most short ones, starts none).
 *
 * This side also keeps what it posted since the last uploaded part (the bytes are outside the heap; one array entry
 * per epoch), so a thread that dies is replaced by a new one given the same changes: the part being built fails,
 * and the next one has everything. After MAX_RESTARTS deaths every later part fails instead (a record that kills the
 * thread would kill the next one too); the log keeps everything, so recovery stays exact.
 */
export const threadFolder = (): ThreadFolder => {
  let worker: Worker | undefined
  let broken: Error | undefined
  let restarts = 0
  /** Mirrors of the thread's lists: the adds not sealed yet, and the sealed part's (undefined: none sealed). */
  let current: FolderAdd[] = []
  let sealed: FolderAdd[] | undefined
  /** The tail of `current` not posted to the running thread yet. */
  let unposted: FolderAdd[] = []
  /** Every message to a running thread goes after the adds held back. */
  const post = (w: Worker, m?: ToFolder) => {
    if (unposted.length > 0) {
      w.postMessage({ t: "adds", adds: unposted } satisfies ToFolder)
      unposted = []
    }
    if (m !== undefined) w.postMessage(m)
  }
  const waiting = new Map<number, { resolve: (p: ReadonlyArray<BuiltPack>) => void; reject: (e: Error) => void }>()
  const rejectWaiting = (e: Error) => {
    const w = [...waiting.values()]
    waiting.clear()
    for (const x of w) x.reject(e)
  }
  const failAll = (e: Error) => {
    broken ??= e
    current = []
    sealed = undefined
    rejectWaiting(broken)
  }
  const died = (w: Worker, why: string) => {
    if (worker !== w) return
    worker = undefined
    if (++restarts > MAX_RESTARTS) failAll(new Error(`snapshot thread ${why} (${restarts} times; not restarted)`))
    else rejectWaiting(new Error(`snapshot thread ${why}`))
  }
  const start = (): Worker => {
    const w = tsxWorker(new URL("./snapshotFoldWorker.ts", import.meta.url), {})
    // Nothing to wait for when the process ends: an unsettled part is re-done from the log on recovery.
    w.unref()
    w.on("message", (m: FromFolder) => {
      const x = waiting.get(m.id)
      waiting.delete(m.id)
      if (m.t === "built") x?.resolve(m.packs)
      else x?.reject(new Error(`snapshot thread: ${m.message}`))
    })
    w.on("error", (e) => died(w, `failed: ${e.message}`))
    w.on("exit", (code) => died(w, `exited (code ${code})`))
    // A new thread starts from what the last one held.
    unposted = []
    if (sealed !== undefined) {
      w.postMessage({ t: "adds", adds: sealed } satisfies ToFolder)
      w.postMessage({ t: "seal" } satisfies ToFolder)
    }
    w.postMessage({ t: "adds", adds: current } satisfies ToFolder)
    return w
  }
  const running = (): Worker | undefined => (broken === undefined ? (worker ??= start()) : undefined)
  let nextId = 1
  return {
    add: (state, payload) => {
      if (broken !== undefined) return
      const m = payload === undefined ? ({ t: "add-state", state } as const) : ({ t: "add", payload } as const)
      current.push(m)
      if (worker === undefined) return
      unposted.push(m)
      if (unposted.length >= ADD_BATCH) post(worker)
    },
    seal: () => {
      if (broken !== undefined) return
      if (sealed !== undefined) throw new Error("assertion: a snapshot part is sealed while the last is not settled")
      sealed = current
      current = []
      // Started here, at the first part, if not yet: it is then given the sealed adds and the seal.
      if (worker === undefined) running()
      else post(worker, { t: "seal" })
    },
    build: (folds, blobs, packBytes) =>
      new Promise((resolve, reject) => {
        const w = running()
        if (w === undefined) return reject(broken)
        const id = nextId++
        waiting.set(id, { resolve, reject })
        post(w, { t: "build", id, folds: [...folds], blobs: [...blobs], packBytes })
      }),
    settle: (uploaded) => {
      if (broken !== undefined) return
      if (!uploaded && sealed !== undefined) current = [...sealed, ...current]
      sealed = undefined
      if (worker !== undefined) post(worker, { t: "settle", uploaded })
    },
    close: async () => {
      failAll(new Error("the snapshot thread is closed"))
      const w = worker
      worker = undefined
      await w?.terminate()
    },
    crash: async () => {
      const w = worker
      if (w === undefined) return
      await w.terminate()
      died(w, "was ended (crash)")
    },
  }
}

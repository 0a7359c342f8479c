import type { SourceSplit } from "./Plan.ts"

type AnyIterator = Iterator<ReadonlyArray<unknown>> | AsyncIterator<ReadonlyArray<unknown>>

/**
 * Reads one source split atom by atom from a given position. Sources are replayable: resuming at position n
 * reopens the split and skips n atoms, so the source itself needs no memory of what was consumed.
 */
export class SplitReader {
  private it: AnyIterator | undefined
  private async = false
  private waiting: Promise<IteratorResult<ReadonlyArray<unknown>>> | undefined
  position: number
  exhausted: boolean

  constructor(
    readonly split: SourceSplit,
    start: { position: number; exhausted: boolean },
  ) {
    this.position = start.position
    this.exhausted = start.exhausted
  }

  private async open(): Promise<AnyIterator> {
    const source = this.split.source.open(this.split.split)
    let it: AnyIterator
    if (Symbol.asyncIterator in source) {
      it = (source as AsyncIterable<ReadonlyArray<unknown>>)[Symbol.asyncIterator]()
      this.async = true
    } else it = (source as Iterable<ReadonlyArray<unknown>>)[Symbol.iterator]()
    for (let skipped = 0; skipped < this.position; skipped++) {
      const r = await it.next()
      if (r.done) throw new Error(`source split ${this.split.id} ended after ${skipped} atoms while resuming at atom ${this.position}: it is not replayable`)
    }
    return it
  }

  /** Up to `budget` atoms. An async source gets at most `waitMs` to produce them; a sync source is read at once. */
  async read(budget: number, waitMs: number): Promise<ReadonlyArray<ReadonlyArray<unknown>>> {
    if (this.exhausted || budget <= 0) return []
    this.it ??= await this.open()
    const atoms: Array<ReadonlyArray<unknown>> = []
    if (!this.async) {
      const it = this.it as Iterator<ReadonlyArray<unknown>>
      while (atoms.length < budget) {
        const r = it.next()
        if (r.done) {
          this.exhausted = true
          break
        }
        atoms.push(r.value)
      }
    } else {
      const it = this.it as AsyncIterator<ReadonlyArray<unknown>>
      const deadline = Date.now() + waitMs
      while (atoms.length < budget) {
        this.waiting ??= it.next()
        const left = deadline - Date.now()
        const r = await (left <= 0 && atoms.length > 0 ? Promise.race([this.waiting, Promise.resolve(undefined)]) : withTimeout(this.waiting, Math.max(left, 0)))
        if (r === undefined) break
        this.waiting = undefined
        if (r.done) {
          this.exhausted = true
          break
        }
        atoms.push(r.value)
      }
    }
    this.position += atoms.length
    return atoms
  }
}

const withTimeout = <T>(p: Promise<T>, ms: number): Promise<T | undefined> =>
  new Promise((resolve, reject) => {
    const t = setTimeout(() => resolve(undefined), ms)
    p.then(
      (v) => {
        clearTimeout(t)
        resolve(v)
      },
      (e: unknown) => {
        clearTimeout(t)
        reject(e instanceof Error ? e : new Error(String(e)))
      },
    )
  })

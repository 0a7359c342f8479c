import type { SourceSplit } from "./Plan.ts"

type AnyIterator = Iterator<ReadonlyArray<unknown>> | AsyncIterator<ReadonlyArray<unknown>>

/**
 * A split of a seekable source (SourceSpec.connector), opened by a runtime connector at a position the source
 * defines (Kafka: the next offset to read), so resuming seeks rather than skipping atoms.
 */
export interface SeekableSplit {
  /**
   * Atoms up to `budget` positions past the current one (the source defines what a position counts: Kafka counts
   * offsets), waiting up to `waitMs` when nothing is available; returns the position after the last atom returned.
   */
  read(
    budget: number,
    waitMs: number,
  ): Promise<{
    readonly atoms: ReadonlyArray<ReadonlyArray<unknown>>
    readonly position: number
    readonly exhausted: boolean
    /** Live and nothing left to read now: the split calls its `onData` callback when atoms arrive. */
    readonly quiet?: boolean
  }>
  /** Starts connecting ahead of the first read. */
  prepare(): void
  /** Registers the callback a quiet split calls when atoms arrive, so an idle engine need not poll it. */
  onData?(wake: () => void): void
  close(): Promise<void>
}

/** Opens splits of seekable sources; undefined if this runtime has no connector for the split's source. */
export type SplitOpener = (split: SourceSplit, position: number) => SeekableSplit | undefined

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
  /** After the last read: nothing left to read now, and the split wakes the engine when that changes. */
  quiet = false

  private seekable: SeekableSplit | undefined

  constructor(
    readonly split: SourceSplit,
    start: { position: number; exhausted: boolean },
    private readonly opener?: SplitOpener,
  ) {
    this.position = start.position
    this.exhausted = start.exhausted
  }

  private openSeekable(): SeekableSplit {
    if (this.seekable !== undefined) return this.seekable
    const connector = this.split.source.connector
    const s = this.opener?.(this.split, this.position)
    if (s === undefined) throw new Error(`source split ${this.split.id} needs a '${connector?.kind ?? "?"}' connector, which this runtime was not given`)
    return (this.seekable = s)
  }

  /**
   * Registers the engine's wake-up for when a quiet split gets atoms; false if this split cannot say (then it is
   * never quiet).
   */
  onData(wake: () => void): boolean {
    if (this.split.source.connector === undefined || this.exhausted) return false
    const s = this.openSeekable()
    if (s.onData === undefined) return false
    s.onData(wake)
    return true
  }

  /** Seekable splits start connecting now, so the first epoch does not wait for it. */
  prepare(): void {
    if (this.split.source.connector !== undefined && !this.exhausted) this.openSeekable().prepare()
  }

  async close(): Promise<void> {
    await this.seekable?.close()
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
    if (this.split.source.connector !== undefined) {
      const r = await this.openSeekable().read(budget, waitMs)
      this.position = r.position
      this.exhausted = r.exhausted
      this.quiet = r.quiet === true
      return r.atoms
    }
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

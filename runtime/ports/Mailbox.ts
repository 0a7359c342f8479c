import { Effect } from "effect"

/**
 * A FIFO with one consumer, for the transports' inboxes. Effect's Queue would do, but a receive with a deadline
 * (`Effect.timeoutOption`) costs it 60-250 µs (a sleeping fiber and a race per call, measured), and the engine
 * waits with a deadline between most epochs (idle, liveness). Here an item already queued is taken synchronously,
 * and a wait is one Effect.async with one timer.
 */
export class Mailbox<A> {
  private items: Array<A> = []
  private head = 0
  private waiter: ((a: A) => void) | undefined

  /** Hands `a` to the waiting consumer, or queues it. Never blocks. */
  offer(a: A): void {
    const w = this.waiter
    if (w === undefined) this.items.push(a)
    else {
      this.waiter = undefined
      w(a)
    }
  }

  /** The next item if one is queued. */
  poll(): A | undefined {
    if (this.head === this.items.length) return undefined
    const a = this.items[this.head] as A
    this.items[this.head++] = undefined as A // release it for GC
    if (this.head === this.items.length) {
      this.items = []
      this.head = 0
    }
    return a
  }

  get size(): number {
    return this.items.length - this.head
  }

  /** The next item, waiting for it as long as it takes. */
  readonly take: Effect.Effect<A> = Effect.suspend(() => {
    if (this.size > 0) return Effect.succeed(this.poll() as A)
    return Effect.async<A>((resume) => {
      this.await((a) => resume(Effect.succeed(a)))
      return Effect.sync(() => (this.waiter = undefined))
    })
  })

  /** The next item, or undefined if none comes within `ms`. */
  takeWithin(ms: number): Effect.Effect<A | undefined> {
    return Effect.suspend(() => {
      if (this.size > 0) return Effect.succeed(this.poll())
      if (ms <= 0) return Effect.succeed(undefined)
      return Effect.async<A | undefined>((resume) => {
        const timer = setTimeout(() => {
          this.waiter = undefined
          resume(Effect.succeed(undefined))
        }, ms)
        this.await((a) => {
          clearTimeout(timer)
          resume(Effect.succeed(a))
        })
        return Effect.sync(() => {
          clearTimeout(timer)
          this.waiter = undefined
        })
      })
    })
  }

  private await(w: (a: A) => void): void {
    if (this.waiter !== undefined) throw new Error("assertion: a Mailbox has one consumer, and it is already waiting")
    this.waiter = w
  }
}

// Shared helpers of the unit tests: run an app in memory (or in a temp data directory) with failures collected
// quietly, and epochs numbered through the logical clock (ctx.now() === epoch with epochMs 1).
import type { App } from "../../workflows/index.ts"
import { Eddy, type RunOptions, type TaskFailure } from "../../runtime/index.ts"

export type Summary = Awaited<ReturnType<typeof Eddy.run>>

/** Runs `app` to completion. Failures are collected in the summary instead of printed; logs are dropped. */
export const runApp = (app: App, options: RunOptions = {}): Promise<Summary> =>
  Eddy.run(app, {
    onFailure: () => undefined,
    onLog: () => undefined,
    ...options,
  })

/** Options under which `ctx.now()` returns the epoch number: the clock is logical with 1 ms epochs. */
export const epochClock: RunOptions = { clock: "logical", epochMs: 1 }

/** The interesting fields of failures, in report order. */
export const failuresOf = (s: { readonly failureList: ReadonlyArray<TaskFailure> }) =>
  s.failureList.map((f) => ({ task: f.task, record: f.record, error: f.error }))

/** Runs `fn` for every value in `values`, one after the other, and returns the results in order. */
export const sequential = async <A, B>(values: ReadonlyArray<A>, fn: (a: A) => Promise<B>): Promise<B[]> => {
  const out: B[] = []
  for (const v of values) out.push(await fn(v))
  return out
}

export const range = (from: number, to: number): number[] => Array.from({ length: to - from + 1 }, (_, i) => from + i)

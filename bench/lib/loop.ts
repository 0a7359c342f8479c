import type { Invoker, Workload } from "./workloads.ts"

export interface LoopResult {
  readonly calls: number
  readonly errors: number
  readonly seconds: number
  /** Latency of each answered call in ms, in completion order. */
  readonly latencies: Float64Array
  readonly firstError?: string
}

/**
 * A closed loop: `concurrency` workers, each with one call in flight, issuing the next as soon as the previous was
 * answered. Bounded in count (`maxCalls`) and time (`seconds`): no worker starts a call after either bound.
 */
export const closedLoop = async (invoker: Invoker, workload: Workload, o: { concurrency: number; seconds: number; maxCalls: number; record?: boolean }): Promise<LoopResult> => {
  const lat = new Float64Array(o.maxCalls)
  let issued = 0
  let answered = 0
  let errors = 0
  let firstError: string | undefined
  const t0 = performance.now()
  const deadline = t0 + o.seconds * 1000
  await Promise.all(
    Array.from({ length: o.concurrency }, async (_, w) => {
      while (issued < o.maxCalls && performance.now() < deadline) {
        issued++
        const call = workload.next(w)
        const start = performance.now()
        try {
          const reply = await invoker.call(call)
          lat[answered++] = performance.now() - start
          workload.onReply(call, reply)
        } catch (err) {
          errors++
          firstError ??= err instanceof Error ? err.message : String(err)
          if (errors > 100 && errors > answered) throw new Error(`too many errors (${errors}); first: ${firstError}`)
        }
      }
    }),
  )
  const seconds = (performance.now() - t0) / 1000
  return { calls: answered, errors, seconds, latencies: lat.subarray(0, answered), ...(firstError === undefined ? {} : { firstError }) }
}

// The Fibonacci sample for the crash tests: many requests (seeded n in [min, max]), one per epoch with
// --epoch-atoms 1, and results in a file sink (exactly once across crashes, unlike the console sink).
import { AppArgs, Sink } from "eddy/workflows"
import { fibonacciApp } from "../../examples/fibonacci/app.ts"
import { seeded } from "../helpers.ts"

/** The n of each request, in order: the test computes the expected file from the same list. */
export const requests = (count: number, min: number, max: number, seed: number): number[] => {
  const random = seeded(seed)
  return Array.from({ length: count }, () => min + Math.floor(random() * (max - min + 1)))
}

export default (args: AppArgs) =>
  fibonacciApp(requests(args.int("count", 60), args.int("min", 6), args.int("max", 15), args.int("seed", 1)), Sink.file("fib.jsonl", "fibonacci.output"))

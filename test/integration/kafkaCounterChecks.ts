import { expect } from "vitest"
import { committedState, stateReader } from "../../runtime/index.ts"
import { kafkaCountersApp } from "../apps/kafkaCounters.ts"

/** One answered add of the Kafka counters app (test/apps/kafkaCounters.ts): to counter k<counter>. */
export interface AnsweredAdd {
  readonly counter: number
  readonly add: number
  readonly reply: number
}

/**
 * Exactly once, for the Kafka counters app run in `dir`: each counter's answers, in order, are the running sums of its
 * adds (an add that ran twice or never breaks the chain), and its committed state is their total.
 */
export const expectRunningSums = async (dir: string, topics: { readonly requests: string; readonly replies: string }, counters: number, answers: ReadonlyArray<AnsweredAdd>, label: string): Promise<void> => {
  const state = stateReader(await committedState(dir))
  const view = kafkaCountersApp({ ...topics, partitions: 2 }).views![0]!
  for (let c = 0; c < counters; c++) {
    const mine = answers.filter((a) => a.counter === c).sort((x, y) => x.reply - y.reply)
    let sum = 0
    for (const m of mine) {
      sum += m.add
      expect(m.reply, `${label}, counter k${c}: the answers are the running sums (an add ran twice or never)`).toBe(sum)
    }
    expect(view.show(await state.query(view.task, view.key(`counter/k${c}`)!)), `${label}, counter k${c}: committed state`).toBe(sum)
  }
}

/** Stops a loop of `eddy run`s: SIGTERM to the current child (a new one may not have spoken yet) until the loop ends. */
export const stopRuns = async (runs: Promise<void>, child: () => { kill(signal: NodeJS.Signals): boolean } | undefined): Promise<void> => {
  const ended = runs.then(() => true)
  while (!(await Promise.race([ended, new Promise<boolean>((r) => setTimeout(() => r(false), 500))]))) child()?.kill("SIGTERM")
}

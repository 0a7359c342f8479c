import type { Key } from "./Key.ts"
import type { Workflow } from "./Workflow.ts"

/**
 * A way to name a task's per-key state from outside (CLI, client): e.g. the actor library maps `cart/42` to its
 * actors task and the key ["cart", "42"], and shows the actor's own state rather than its bookkeeping.
 */
export interface StateView {
  readonly task: string
  /** The key named by `spec`, or undefined if `spec` is not for this view. */
  readonly key: (spec: string) => Key | undefined
  readonly show: (state: unknown) => unknown
  /** The spec naming `key`, and the group it is listed under (e.g. the actor type). */
  readonly describe: (key: Key) => { readonly spec: string; readonly group: string }
}

/** Flags given to `eddy run` that the runtime does not use itself, e.g. `--n 25`. */
export class AppArgs {
  constructor(readonly raw: Readonly<Record<string, string | boolean>>) {}
  string(name: string, orElse: string): string {
    const v = this.raw[name]
    return typeof v === "string" ? v : orElse
  }
  int(name: string, orElse: number): number {
    const v = this.raw[name]
    if (v === undefined) return orElse
    const n = Number(v)
    if (!Number.isInteger(n)) throw new TypeError(`--${name} expects an integer, got '${String(v)}'`)
    return n
  }
  flag(name: string): boolean {
    const v = this.raw[name]
    return v === true || v === "true" || v === "1"
  }
}

export interface AppDefinition {
  readonly name: string
  readonly workflows: ReadonlyArray<Workflow>
  /** Key groups: fixed for the life of the app's data (default 128). Partitions own whole key groups. */
  readonly keyGroups?: number
  readonly views?: ReadonlyArray<StateView>
  /**
   * Runs when a finite run completes (`eddy run` prints what it returns): read committed state, check invariants.
   * Throwing makes the run fail with that message.
   */
  readonly report?: (state: CommittedStateReader) => Promise<string> | string
}

/** Committed state of a finished run, by task name and key. */
export interface CommittedStateReader {
  query(task: string, key: Key): Promise<unknown>
  keys(task: string): Promise<ReadonlyArray<Key>>
}

export interface App extends AppDefinition {
  readonly kind: "eddy-app"
}

export const App = {
  define(definition: AppDefinition): App {
    if (!/^[A-Za-z0-9_.-]+$/.test(definition.name)) throw new Error(`app name '${definition.name}' must match [A-Za-z0-9_.-]+`)
    const names = new Set<string>()
    for (const wf of definition.workflows) {
      if (names.has(wf.name)) throw new Error(`app '${definition.name}' has two workflows named '${wf.name}'`)
      names.add(wf.name)
    }
    return { kind: "eddy-app", ...definition }
  },
  is(value: unknown): value is App {
    return typeof value === "object" && value !== null && (value as { kind?: unknown }).kind === "eddy-app"
  },
}

/** What an app module exports by default: an app, or a function of the command-line flags that builds one. */
export type AppModule = App | ((args: AppArgs) => App)

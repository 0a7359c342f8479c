import { createRequire } from "node:module"
import { pathToFileURL } from "node:url"
import { Worker, type WorkerOptions } from "node:worker_threads"

/**
 * A worker thread running a TypeScript module: tsx's loader is registered in the worker first (a worker inherits
 * neither a loader registered in code, as the CLI does, nor vitest's), then the module is imported.
 */
export const tsxWorker = (entry: URL, options: Omit<WorkerOptions, "eval" | "execArgv">): Worker => {
  const tsxApi = pathToFileURL(createRequire(import.meta.url).resolve("tsx/package.json").replace(/package\.json$/, "dist/esm/api/index.mjs")).href
  const source = `import(${JSON.stringify(tsxApi)}).then((m) => { m.register(); return import(${JSON.stringify(entry.href)}) })`
  return new Worker(source, { ...options, eval: true, execArgv: [] })
}

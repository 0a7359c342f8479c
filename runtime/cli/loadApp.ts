import { existsSync, statSync } from "node:fs"
import { resolve, join } from "node:path"
import { pathToFileURL } from "node:url"
import { App, AppArgs } from "../../workflows/App.ts"
import { AppModuleError } from "../engine/errors.ts"

const candidates = ["app.ts", "index.ts", "app.js", "index.js", "app.mjs"]

/** Resolves `examples/fibonacci` (a folder) or `my-app.ts` (a file) to the module that default-exports the app. */
export const resolveAppModule = (spec: string): string => {
  const path = resolve(spec)
  if (!existsSync(path)) throw new AppModuleError({ message: `app module '${spec}' not found (looked for ${path})` })
  if (statSync(path).isDirectory()) {
    for (const c of candidates) if (existsSync(join(path, c))) return join(path, c)
    throw new AppModuleError({ message: `app folder '${spec}' has none of ${candidates.join(", ")}` })
  }
  return path
}

/** Loads an app module and builds its app with the given flags. */
export const loadApp = async (spec: string, flags: Readonly<Record<string, string | boolean>>): Promise<App> => {
  const path = resolveAppModule(spec)
  let mod: { default?: unknown }
  try {
    mod = (await import(pathToFileURL(path).href)) as { default?: unknown }
  } catch (cause) {
    throw new AppModuleError({ message: `app module '${spec}' failed to load: ${cause instanceof Error ? cause.message : String(cause)}`, cause })
  }
  const exported = mod.default
  const app = typeof exported === "function" ? (exported as (args: AppArgs) => unknown)(new AppArgs(flags)) : exported
  if (!App.is(app)) throw new AppModuleError({ message: `app module '${spec}' must default-export App.define(...) or a function of the flags returning one` })
  return app
}

/**
 * How Eddy's kafkajs patches (kafkajsAbortFix.ts, kafkajsEncoding.ts, kafkajsDecoding.ts, kafkajsTransactions.ts) take
 * the place of a kafkajs module: its entry in require's cache, set before the kafkajs modules that require it are loaded.
 */
import { createRequire, Module } from "node:module"

const require = createRequire(import.meta.url)

/**
 * Throws if one of `dependents` (kafkajs modules that require the one being patched, or the patched module itself) is
 * loaded already: a patch must load before them, or kafkajs would keep the original.
 */
export const assertNotLoaded = (dependents: ReadonlyArray<string>, patch: string, consequence: string): void => {
  for (const d of dependents) {
    if (require.cache[d] !== undefined) throw new Error(`kafkajs was loaded before Eddy's patch kafkajs/${patch} (import Eddy's Kafka modules, or Client.kafka's first call, before kafkajs); ${consequence}`)
  }
}

/** Makes `require(path)` return `exports` from now on (kafkajs's modules are CommonJS). */
export const replaceModule = (path: string, exports: unknown): void => {
  const cached = require.cache[path]
  if (cached !== undefined) {
    cached.exports = exports
    return
  }
  const m = new Module(path)
  m.filename = path
  m.loaded = true
  m.exports = exports
  require.cache[path] = m
}

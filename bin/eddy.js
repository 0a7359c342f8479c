#!/usr/bin/env node
// The CLI runs TypeScript app modules directly: tsx's loader is registered before anything else is imported.
import { register } from "tsx/esm/api"

register()
const { main } = await import("../runtime/cli/main.ts")
process.exitCode = await main(process.argv.slice(2))

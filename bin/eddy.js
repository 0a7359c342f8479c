#!/usr/bin/env node
// The CLI runs TypeScript app modules directly: tsx's loader is registered before anything else is imported.
import { register } from "tsx/esm/api"

register()
// The AWS SDK warns on every start that Node 20 support ends in 2027; the CLI's users have heard it once.
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= "true"
const { main } = await import("../runtime/cli/main.ts")
process.exitCode = await main(process.argv.slice(2))

/**
 * Child process for the FileLog crash test: appends forever, every 8th record with appendDurable, and prints
 * "durable <i>" once record i is acknowledged, until the parent kills it with SIGKILL.
 */
import { Effect } from "effect"
import { FileLog } from "../../runtime/embedded/FileLog.ts"
import { Log } from "../../runtime/ports/Log.ts"

const dir = process.argv[2] ?? ""
const program = Effect.gen(function* () {
  const log = yield* Log
  for (let i = 0; ; i++) {
    const payload = new TextEncoder().encode(`r${i}-${"x".repeat(i % 300)}`)
    if (i % 8 === 7) {
      yield* log.appendDurable(i % 16 === 15 ? "control" : "wal", payload)
      process.stdout.write(`durable ${i}\n`)
    } else {
      yield* log.append("wal", payload)
    }
  }
})
Effect.runFork(Effect.scoped(Effect.provide(program, FileLog.layer(dir, { segmentBytes: 64 * 1024 }))))

// The one test command (README, CI): type-check, lint, bring up the real servers, run every test, print a summary.
import { spawnSync } from "node:child_process"
import { existsSync, readFileSync, rmSync } from "node:fs"

const step = (name, cmd, args) => {
  console.log(`\n== ${name}: ${cmd} ${args.join(" ")}`)
  const r = spawnSync(cmd, args, { stdio: "inherit", env: process.env })
  return r.status ?? 1
}

let failed = false
if (step("type-check", "npx", ["tsc", "--noEmit", "-p", "tsconfig.json"]) !== 0) failed = true
if (step("lint", "npx", ["eslint", "."]) !== 0) failed = true
if (existsSync("scripts/infra.ts") && process.env.EDDY_SKIP_INFRA !== "1") {
  if (step("infra", "node", ["--import", "tsx", "scripts/infra.ts", "up"]) !== 0) {
    console.error("infra:up failed: the integration tests need the real Kafka, NATS and S3 servers")
    failed = true
  }
}
const report = "test-results.json"
rmSync(report, { force: true })
const args = ["vitest", "run", "--reporter=default", "--reporter=json", `--outputFile.json=${report}`, ...process.argv.slice(2)]
step("tests", "npx", args)
let passed = 0
let failedTests = 0
if (existsSync(report)) {
  const r = JSON.parse(readFileSync(report, "utf8"))
  passed = r.numPassedTests ?? 0
  failedTests = (r.numFailedTests ?? 0) + (r.numTotalTestSuites === undefined ? 0 : 0)
  // A file that failed to load has no tests but counts as a failure.
  for (const f of r.testResults ?? []) if (f.status === "failed" && (f.assertionResults ?? []).length === 0) failedTests += 1
  const skipped = (r.numPendingTests ?? 0) + (r.numTodoTests ?? 0)
  if (skipped > 0) console.log(`${skipped} skipped`)
} else {
  console.error("no test report was written")
  failedTests += 1
}
if (failed && failedTests === 0) failedTests = 1
console.log(`${passed} passed, ${failedTests} failed`)
process.exit(failed || failedTests > 0 ? 1 : 0)

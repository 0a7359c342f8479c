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
let passed = 0
let failedTests = 0
let skipped = 0
// Two runs: everything else in parallel, then, one file at a time, the tests that restart the shared brokers or bound
// a latency (*.exclusive.test.ts): a broker restart is a fault for every test beside it, and the load of the parallel
// run alone can break a latency bound.
const runs = [
  { name: "tests", report: "test-results.json", env: {}, pattern: [], flags: [] },
  { name: "tests that restart the brokers or bound a latency, one file at a time", report: "test-results.exclusive.json", env: { EDDY_EXCLUSIVE: "1" }, pattern: ["exclusive.test.ts"], flags: ["--no-file-parallelism"] },
]
const extra = process.argv.slice(2)
for (const run of runs) {
  // Given file filters, run only the run they belong to, with them.
  const exclusive = run.pattern.length > 0
  if (extra.length > 0 && exclusive !== extra.some((a) => a.includes("exclusive"))) continue
  const pattern = extra.length > 0 ? extra : run.pattern
  rmSync(run.report, { force: true })
  const args = ["vitest", "run", "--reporter=default", "--reporter=json", `--outputFile.json=${run.report}`, ...run.flags, ...pattern]
  console.log(`\n== ${run.name}: npx ${args.join(" ")}`)
  spawnSync("npx", args, { stdio: "inherit", env: { ...process.env, ...run.env } })
  if (!existsSync(run.report)) {
    console.error(`no test report was written by: ${run.name}`)
    failedTests += 1
    continue
  }
  const r = JSON.parse(readFileSync(run.report, "utf8"))
  passed += r.numPassedTests ?? 0
  failedTests += r.numFailedTests ?? 0
  // A file that failed to load has no tests but counts as a failure.
  for (const f of r.testResults ?? []) if (f.status === "failed" && (f.assertionResults ?? []).length === 0) failedTests += 1
  skipped += (r.numPendingTests ?? 0) + (r.numTodoTests ?? 0)
}
if (skipped > 0) console.log(`${skipped} skipped`)
if (failed && failedTests === 0) failedTests = 1
console.log(`${passed} passed, ${failedTests} failed`)
process.exit(failed || failedTests > 0 ? 1 : 0)

import { defineConfig } from "vitest/config"

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    // Tests that stop and restart the shared Kafka and NATS servers, or bound a latency, run on their own
    // (EDDY_EXCLUSIVE=1, after the others, one file at a time; see scripts/test.mjs): a broker restart is a fault for
    // every test running next to it.
    exclude: process.env["EDDY_EXCLUSIVE"] === "1" ? [] : ["**/node_modules/**", "test/**/*.exclusive.test.ts"],
    testTimeout: 60_000,
    hookTimeout: 120_000,
    // Crash tests spawn child processes; two cores do not gain from more parallel files.
    maxWorkers: 2,
    env: { EDDY_CHECKED: "1", AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: "true" },
  },
})

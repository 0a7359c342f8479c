/**
 * EDDY_BENCH_ALLOC=<file>[,<from s>,<for s>]: a sampling heap profile of everything this process allocates (objects
 * the collector freed too) from `from` seconds after the call for `for` seconds (defaults 3 and 5): where the
 * garbage comes from. Read it with bench/alloc.ts. Unset: nothing.
 */
export const startAllocProfileFromEnv = async (): Promise<void> => {
  const alloc = process.env["EDDY_BENCH_ALLOC"]
  if (alloc === undefined) return
  const [file, from = "3", seconds = "5"] = alloc.split(",")
  const { Session } = await import("node:inspector/promises")
  const { writeFileSync } = await import("node:fs")
  const session = new Session()
  session.connect()
  setTimeout(() => {
    // V8 keeps the samples of collected objects only when asked (a CDP option node's types do not list yet).
    const sampling = { samplingInterval: 4096, includeObjectsCollectedByMajorGC: true, includeObjectsCollectedByMinorGC: true }
    void session.post("HeapProfiler.startSampling", sampling as { samplingInterval: number }).then(() =>
      setTimeout(() => {
        void session.post("HeapProfiler.stopSampling").then(({ profile }) => {
          writeFileSync(file!, JSON.stringify(profile))
          process.stderr.write(`[alloc] sampling heap profile written to ${file}\n`)
        })
      }, Number(seconds) * 1000),
    )
  }, Number(from) * 1000).unref()
}

import { closeSync, existsSync, fsyncSync, ftruncateSync, mkdirSync, openSync, readFileSync, renameSync, statSync, writeSync } from "node:fs"
import { dirname, isAbsolute, join } from "node:path"
import { Effect, Layer } from "effect"
import type { SinkSpec } from "../../workflows/Sink.ts"
import { forEachEgress, sortEgress, type EgressBatch } from "../engine/EpochRecord.ts"
import { Egress, EgressError, type EgressService } from "../ports/Egress.ts"
import { toJson } from "../../workflows/json.ts"

export interface EmbeddedEgressOptions {
  readonly sinks: ReadonlyMap<string, SinkSpec<unknown>>
  readonly partitions: number
  /** Where file sinks and the egress marker live; undefined: in-memory run, nothing durable. */
  readonly dataDir: string | undefined
  /** Memory sinks append here. */
  readonly outputs: Map<string, unknown[]>
  /** File sinks are made durable (fsync + marker) at most this often; the log keeps what is not yet durable. */
  readonly flushMs?: number
  readonly print?: (line: string) => void
}

interface Marker {
  readonly epoch: number
  readonly files: Record<string, number>
}


/**
 * Sinks of an embedded run. An epoch's records are written once every partition published it, sorted by
 * (key group, sequence), epochs in order. File sinks are exactly once across crashes: a marker file records the
 * last durable epoch and each file's length; recovery truncates files to it and republishes later epochs from the log.
 */
const makeEmbeddedEgress = (options: EmbeddedEgressOptions) =>
      Effect.gen(function* () {
        const markerPath = options.dataDir === undefined ? undefined : join(options.dataDir, "egress.marker.json")
        const fds = new Map<string, { fd: number; size: number }>()
        const pending = new Map<number, { count: number; batches: EgressBatch[] }>()
        let next = 1
        let durableEpoch = 0
        let lastFlush = Date.now()
        let dirty = false
        const print = options.print ?? ((line: string) => process.stdout.write(line + "\n"))

        const pathOf = (spec: Extract<SinkSpec<unknown>, { kind: "file" }>): string =>
          isAbsolute(spec.path) || options.dataDir === undefined ? spec.path : join(options.dataDir, spec.path)

        const readMarker = (): Marker => {
          if (markerPath === undefined || !existsSync(markerPath)) return { epoch: 0, files: {} }
          return JSON.parse(readFileSync(markerPath, "utf8")) as Marker
        }

        const openFiles = (marker: Marker) => {
          for (const spec of options.sinks.values()) {
            if (spec.kind !== "file") continue
            const path = pathOf(spec)
            mkdirSync(dirname(path), { recursive: true })
            const fd = openSync(path, existsSync(path) ? "r+" : "w+")
            const size = marker.files[spec.name] ?? 0
            // Bytes past the marker were written for epochs that were not made durable: they are republished.
            if (statSync(path).size !== size) ftruncateSync(fd, size)
            fds.set(spec.name, { fd, size })
          }
        }

        const specOf = (sink: string): SinkSpec<unknown> => {
          const spec = options.sinks.get(sink)
          if (spec === undefined) throw new Error(`assertion: egress for unknown sink '${sink}'`)
          return spec
        }

        /** Writes batches in the order given ((key group, sequence) order). */
        const write = (batches: ReadonlyArray<EgressBatch>) => {
          const files = new Map<string, string[]>()
          const one = (sink: string, value: unknown) => {
            const spec = specOf(sink)
            switch (spec.kind) {
              case "memory": {
                let out = options.outputs.get(sink)
                if (out === undefined) options.outputs.set(sink, (out = []))
                out.push(value)
                break
              }
              case "console":
                print(spec.format ? spec.format(value) : typeof value === "string" ? value : toJson(value))
                break
              case "file": {
                let l = files.get(sink)
                if (l === undefined) files.set(sink, (l = []))
                l.push(toJson(value))
                break
              }
              case "discard":
                break
              case "kafka":
                throw new Error(`assertion: Kafka sink '${sink}' reached the embedded egress (the composite egress routes it to the Kafka egress)`)
            }
          }
          for (const b of batches) {
            // One sink for the whole batch (the common case): nothing to do per record for a discard sink.
            if (typeof b[0] === "string" && specOf(b[0]).kind === "discard") continue
            forEachEgress([b], (sink, _kg, _seq, value) => one(sink, value))
          }
          for (const [sink, lines] of files) {
            const f = fds.get(sink)!
            const buf = Buffer.from(lines.join("\n") + "\n")
            writeSync(f.fd, buf, 0, buf.length, f.size)
            f.size += buf.length
            dirty = true
          }
        }

        const makeDurable = (epoch: number) => {
          if (markerPath === undefined) {
            durableEpoch = epoch
            return
          }
          for (const f of fds.values()) fsyncSync(f.fd)
          const marker: Marker = { epoch, files: Object.fromEntries([...fds].map(([k, v]) => [k, v.size])) }
          const tmp = markerPath + ".tmp"
          const fd = openSync(tmp, "w")
          writeSync(fd, JSON.stringify(marker))
          fsyncSync(fd)
          closeSync(fd)
          renameSync(tmp, markerPath)
          durableEpoch = epoch
          dirty = false
          lastFlush = Date.now()
        }

        yield* Effect.addFinalizer(() =>
          Effect.sync(() => {
            for (const f of fds.values()) closeSync(f.fd)
          }),
        )

        const attempt = <A>(what: string, f: () => A) => Effect.try({ try: f, catch: (cause) => new EgressError({ message: `egress ${what} failed: ${String(cause)}`, cause }) })

        return {
          recover: (committed) =>
            attempt("recovery", () => {
              const marker = readMarker()
              openFiles(marker)
              durableEpoch = marker.epoch
              let last = marker.epoch
              for (const c of committed) {
                if (c.e <= marker.epoch) continue
                write(c.egress)
                last = c.e
              }
              if (committed.length > 0) last = Math.max(last, committed.at(-1)!.e)
              next = last + 1
              if (last > marker.epoch) makeDurable(last)
            }),
          publish: (e, _partition, egress) =>
            attempt("publish", () => {
              let p = pending.get(e)
              if (p === undefined) pending.set(e, (p = { count: 0, batches: [] }))
              p.count++
              for (const x of egress) p.batches.push(x)
              for (let ready = pending.get(next); ready !== undefined && ready.count === options.partitions; ready = pending.get(next)) {
                pending.delete(next)
                write(sortEgress(ready.batches))
                next++
              }
              if (dirty && Date.now() - lastFlush >= (options.flushMs ?? 200)) makeDurable(next - 1)
              else if (!dirty) durableEpoch = next - 1
            }),
          flush: attempt("flush", () => makeDurable(next - 1)),
          publishedThrough: Effect.sync(() => durableEpoch),
        } satisfies EgressService
      })

export const EmbeddedEgress = {
  make: makeEmbeddedEgress,
  layer: (options: EmbeddedEgressOptions) => Layer.scoped(Egress, makeEmbeddedEgress(options)),
}

/**
 * The Kafka ingress's consumers in a worker thread. kafkajs's fetch loop (requests, response decoding, record
 * objects) ran on the engine's thread, where a response waited for the task under way and its decoding delayed the
 * next epoch and the log's and egress's completions. The worker (kafkaIngressWorker.ts) runs every split's
 * ConsumerFeed; the engine's thread keeps each split's buffer and epoch cuts (KafkaSplit), so what an epoch reads
 * is decided exactly as before. One worker per opener, started with the first split and ended with the last. Opt-in
 * (kafkaTrace.ingressInWorker): on a 2-core machine it did not cut the end-to-end latency (docs/performance.md).
 */
import type { Worker } from "node:worker_threads"
import type { KafkaRecord } from "../../workflows/kafka.ts"
import { KafkaIngressError, type FeedEvents, type FeedSpec, type KafkaIngressOptions, type SplitFeed } from "./KafkaIngress.ts"
import type { IngressFromWorker, IngressToWorker } from "./kafkaIngressWire.ts"
import { reasonOf } from "./kafkaReasons.ts"
import { tsxWorker } from "../engine/tsxWorker.ts"

interface Open {
  readonly spec: FeedSpec
  readonly events: FeedEvents
  started?: (r: { end: number; position: number } | Error) => void
  closed?: () => void
}

export const kafkaIngressThread = (options: KafkaIngressOptions): ((spec: FeedSpec) => SplitFeed) => {
  let worker: Worker | undefined
  let nextId = 1
  const open = new Map<number, Open>()
  const fail = (error: Error) => {
    const all = [...open.values()]
    open.clear()
    worker = undefined
    for (const o of all) {
      o.started?.(error)
      o.events.failed(error)
      o.closed?.()
    }
  }
  const onMessage = (m: IngressFromWorker) => {
    const o = open.get(m.id)
    if (o === undefined) return
    switch (m.t) {
      case "started":
        o.started?.({ end: m.end, position: m.position })
        o.started = undefined
        return
      case "startFailed":
        o.started?.(new KafkaIngressError(m.error))
        o.started = undefined
        return
      case "records": {
        const records: KafkaRecord[] = new Array<KafkaRecord>(m.offsets.length)
        let at = 0
        const view = (n: number): Buffer | null => {
          if (n < 0) return null
          const b = Buffer.from(m.bytes, at, n)
          at += n
          return b
        }
        for (let i = 0; i < records.length; i++) {
          const key = view(m.lengths[2 * i]!)
          const value = view(m.lengths[2 * i + 1]!)
          records[i] = { topic: o.spec.topic, partition: o.spec.partition, offset: m.offsets[i]!, key, value, timestamp: m.timestamps[i]!, headers: m.headers?.[i] ?? {} }
        }
        o.events.records(records, m.at)
        return
      }
      case "fetchedTo":
        return o.events.fetchedTo(m.offset)
      case "failed":
        return o.events.failed(new KafkaIngressError(m.error))
      case "closed":
        open.delete(m.id)
        o.closed?.()
        if (open.size === 0 && worker !== undefined) {
          const w = worker
          worker = undefined
          void w.terminate()
        }
        return
    }
  }
  const started = (): Worker => {
    if (worker !== undefined) return worker
    const w = tsxWorker(new URL("./kafkaIngressWorker.ts", import.meta.url), { workerData: { brokers: [...options.brokers], ...(options.clientId === undefined ? {} : { clientId: options.clientId }), ...(options.maxBuffered === undefined ? {} : { maxBuffered: options.maxBuffered }), ...(options.stallMs === undefined ? {} : { stallMs: options.stallMs }) } satisfies KafkaIngressOptions })
    w.on("message", onMessage)
    w.on("error", (err) => {
      if (worker === w) fail(new KafkaIngressError(`Kafka ingress: its worker thread failed: ${reasonOf(err)}`))
    })
    w.on("exit", (code) => {
      if (worker === w) fail(new KafkaIngressError(`Kafka ingress: its worker thread exited (${code})`))
    })
    // Ref'd (like the consumers' sockets on the engine's thread): a split being closed waits for its answer. The
    // worker ends when the last split is closed.
    return (worker = w)
  }
  const send = (m: IngressToWorker) => started().postMessage(m)

  return (spec) => {
    const id = nextId++
    let closing: Promise<void> | undefined
    const feed: SplitFeed = {
      start: (position, events) =>
        new Promise((resolve, reject) => {
          open.set(id, { spec, events, started: (r) => (r instanceof Error ? reject(r) : resolve(r)) })
          send({ t: "open", id, spec, position })
        }),
      pause: () => {
        if (open.has(id)) send({ t: "pause", id })
      },
      resume: () => {
        if (open.has(id)) send({ t: "resume", id })
      },
      close: () =>
        (closing ??= new Promise<void>((resolve) => {
          const o = open.get(id)
          if (o === undefined) return resolve()
          o.closed = resolve
          send({ t: "close", id })
        })),
    }
    return feed
  }
}

/**
 * One kafkajs consumer for the splits of one topic that a process opens together. kafkajs has no manual
 * assignment, so the consumer is in a fresh group (never committing offsets, deleted when its last split closes)
 * whose assigner hands it exactly those partitions, each seeked to its split's logged position.
 *
 * Why one consumer for several splits: a consumer per split meant a fetch loop per split, one Fetch request per
 * split per round; at ~80 k records/s over 4 partitions that was ~1000 requests/s, each a socket write and a
 * response to decode on the engine's thread. One consumer asks for all its partitions in one request.
 *
 * Splits join through a ConsumerPool: those whose start is asked for within the same turn of the event loop (the
 * engine prepares all its splits in one loop) share a consumer; a split opened later gets its own.
 */
import { randomUUID } from "node:crypto"
import "./kafkajsAbortFix.ts"
import { AssignerProtocol, type Admin, type Consumer, type Kafka, type KafkaMessage, type PartitionAssigner } from "kafkajs"
import type { KafkaRecord } from "../../workflows/kafka.ts"
import { isUnreachable, reasonOf } from "./kafkaReasons.ts"

export class KafkaIngressError extends Error {
  override readonly name = "KafkaIngressError"
}

export interface KafkaIngressOptions {
  readonly brokers: ReadonlyArray<string>
  readonly clientId?: string
  /** Records buffered per split before its consumer pauses (default 50,000). */
  readonly maxBuffered?: number
  /** Bound on waiting for records known to exist (default 60 s): a split that stalls fails the process. */
  readonly stallMs?: number
}

/** What a split's feed reports: fetched records, progress over control records, failure. */
export interface FeedEvents {
  /** Records fetched, in offset order (none below an offset reported before); `at`: when (Date.now()). */
  records(records: ReadonlyArray<KafkaRecord>, at: number): void
  /** Every offset below this has been fetched (a batch of control records reaches no `records`). */
  fetchedTo(offset: number): void
  failed(error: Error): void
}

export interface FeedSpec {
  readonly topic: string
  readonly partition: number
  readonly partitions: number
  readonly bounded: boolean
  readonly splitId: string
}

/** Where a split starts: the last stable offset found (its end) and its position (moved up past deleted records). */
export interface FeedStart {
  readonly end: number
  readonly position: number
}

const headersOf = (m: KafkaMessage): Record<string, string> => {
  const out: Record<string, string> = {}
  if (m.headers === undefined) return out
  for (const k in m.headers) {
    const v = m.headers[k]
    if (v === undefined) continue
    const one = Array.isArray(v) ? v[v.length - 1] : v
    if (one !== undefined) out[k] = typeof one === "string" ? one : one.toString("utf8")
  }
  return out
}

/** An assigner that gives every member the chosen partitions (the group has a single member: us). */
const fixedAssigner =
  (topic: string, partitions: ReadonlyArray<number>): PartitionAssigner =>
  () => ({
    name: "eddy-fixed",
    version: 1,
    assign: ({ members }) =>
      Promise.resolve(
        members.map((m) => ({
          memberId: m.memberId,
          memberAssignment: AssignerProtocol.MemberAssignment.encode({ version: 1, assignment: { [topic]: [...partitions] }, userData: Buffer.alloc(0) }),
        })),
      ),
    protocol: ({ topics }) => ({ name: "eddy-fixed", metadata: AssignerProtocol.MemberMetadata.encode({ version: 1, topics, userData: Buffer.alloc(0) }) }),
  })

/** A split's membership of a topic consumer. */
export interface Member {
  readonly spec: FeedSpec
  readonly started: Promise<FeedStart>
  pause(): void
  resume(): void
  /** Stops this split's records; the consumer ends with its last member. */
  leave(): Promise<void>
}

interface Joining {
  readonly spec: FeedSpec
  readonly from: number
  readonly events: FeedEvents
  readonly resolve: (start: FeedStart) => void
  readonly reject: (error: Error) => void
  /** The consumer the split joined, set when the turn's joins are grouped (before `started` can settle). */
  consumer: TopicConsumer | undefined
}

interface Slot {
  readonly joining: Joining
  /** Every offset below this has been fetched (records passed on, control records and aborted ones skipped). */
  fetched: number
  /** Consumed (not a bounded split that was already at its end). */
  active: boolean
  left: boolean
}

class TopicConsumer {
  private consumer: Consumer | undefined
  private admin: Admin | undefined
  private readonly slots = new Map<number, Slot>()
  private readonly groupId: string
  private readonly starting: Promise<void>
  private ending: Promise<void> | undefined

  constructor(
    private readonly kafka: Kafka,
    private readonly options: KafkaIngressOptions,
    private readonly topic: string,
    joining: ReadonlyArray<Joining>,
  ) {
    for (const j of joining) this.slots.set(j.spec.partition, { joining: j, fetched: j.from, active: false, left: false })
    const partitions = joining.map((j) => j.spec.partition).join("-")
    this.groupId = `eddy.ingress.${topic.replace(/[^A-Za-z0-9._-]/g, "_")}.${partitions}.${randomUUID()}`
    this.starting = this.connect().catch((cause: unknown) => {
      const error = this.fail(`opening ${topic}[${partitions}]`, cause)
      for (const s of this.slots.values()) s.joining.reject(error)
    })
  }

  private fail(what: string, cause: unknown): Error {
    if (cause instanceof KafkaIngressError) return cause
    const at = this.options.brokers.join(",")
    const message = isUnreachable(cause)
      ? `cannot reach Kafka at ${at} while ${what} — is it running? (npm run infra:up, or set EDDY_KAFKA_BROKERS): ${reasonOf(cause)}`
      : `Kafka at ${at}: ${what} failed: ${reasonOf(cause)}`
    return new KafkaIngressError(message)
  }

  private async connect(): Promise<void> {
    const topic = this.topic
    const admin = (this.admin = this.kafka.admin())
    await admin.connect()
    const meta = await admin.fetchTopicMetadata({ topics: [topic] }).catch((cause: unknown) => {
      throw isUnreachable(cause) ? cause : new KafkaIngressError(`Kafka ingress: topic ${topic} cannot be read (${reasonOf(cause)}); create it before the run`)
    })
    const count = meta.topics[0]?.partitions.length ?? 0
    for (const { joining } of this.slots.values()) {
      if (count !== joining.spec.partitions) {
        throw new KafkaIngressError(
          `Kafka ingress: topic ${topic} has ${count} partitions but Source.kafka was given partitions: ${joining.spec.partitions}; they must match (records of other partitions would be ignored)`,
        )
      }
    }
    // ListOffsets with read_committed (kafkajs's default): the high end is the last stable offset.
    const offsets = await admin.fetchTopicOffsets(topic)
    const starts = new Map<number, FeedStart>()
    for (const [partition, slot] of this.slots) {
      const o = offsets.find((x) => x.partition === partition)
      if (o === undefined) throw new KafkaIngressError(`Kafka ingress: topic ${topic} has no partition ${partition}`)
      const end = Number(o.high)
      // Records below the log start offset were deleted by retention: the split starts at the first one that exists.
      const position = Math.max(slot.joining.from, Number(o.low))
      slot.fetched = position
      slot.active = !(slot.joining.spec.bounded && position >= end)
      starts.set(partition, { end, position })
    }
    const active = [...this.slots].filter(([, s]) => s.active).map(([p]) => p)
    if (active.length > 0) await this.run(active, starts)
    for (const [partition, start] of starts) this.slots.get(partition)!.joining.resolve(start)
  }

  private async run(partitions: ReadonlyArray<number>, starts: ReadonlyMap<number, FeedStart>): Promise<void> {
    const topic = this.topic
    const consumer = (this.consumer = this.kafka.consumer({
      groupId: this.groupId,
      partitionAssigners: [fixedAssigner(topic, partitions)],
      readUncommitted: false,
      allowAutoTopicCreation: false,
      maxWaitTimeInMs: 100,
      sessionTimeout: 30_000,
      heartbeatInterval: 3_000,
      retry: { retries: 5, initialRetryTime: 100, maxRetryTime: 2_000, restartOnFailure: async () => false },
    }))
    await consumer.connect()
    consumer.on(consumer.events.CRASH, (event) => {
      const error = this.fail(`reading ${topic}`, event.payload.error)
      for (const s of this.slots.values()) if (s.active && !s.left) s.joining.events.failed(error)
    })
    // A batch of control records only (a transaction's commit marker) reaches no eachBatch, but moves the offset.
    consumer.on(consumer.events.END_BATCH_PROCESS, (event) => {
      if (event.payload.topic !== topic) return
      const s = this.slots.get(event.payload.partition)
      if (s === undefined || s.left) return
      const last = Number(event.payload.lastOffset)
      if (last + 1 > s.fetched) {
        s.fetched = last + 1
        s.joining.events.fetchedTo(s.fetched)
      }
    })
    await consumer.subscribe({ topic, fromBeginning: true })
    await consumer.run({
      autoCommit: false,
      eachBatchAutoResolve: true,
      eachBatch: ({ batch }) => {
        const s = batch.topic === topic ? this.slots.get(batch.partition) : undefined
        if (s === undefined || s.left) return Promise.resolve()
        const at = Date.now()
        const out: KafkaRecord[] = []
        for (const m of batch.messages) {
          const offset = Number(m.offset)
          // Before the seek took effect, or a refetch: already had.
          if (offset < s.fetched) continue
          out.push({ topic, partition: batch.partition, offset, key: m.key ?? null, value: m.value ?? null, timestamp: Number(m.timestamp), headers: headersOf(m) })
          s.fetched = offset + 1
        }
        if (out.length > 0) s.joining.events.records(out, at)
        return Promise.resolve()
      },
    })
    for (const p of partitions) consumer.seek({ topic, partition: p, offset: String(starts.get(p)!.position) })
  }

  pause(partition: number): void {
    this.consumer?.pause([{ topic: this.topic, partitions: [partition] }])
  }

  resume(partition: number): void {
    this.consumer?.resume([{ topic: this.topic, partitions: [partition] }])
  }

  async leave(partition: number): Promise<void> {
    const s = this.slots.get(partition)
    if (s === undefined || s.left) return this.ending
    s.left = true
    await this.starting
    if ([...this.slots.values()].some((x) => !x.left)) {
      if (s.active) this.pause(partition)
      return
    }
    this.ending ??= (async () => {
      await this.consumer?.disconnect().catch(() => undefined)
      if (this.consumer !== undefined) await this.admin?.deleteGroups([this.groupId]).catch(() => undefined)
      await this.admin?.disconnect().catch(() => undefined)
    })()
    return this.ending
  }
}

/** Hands out topic consumers: splits that join in the same turn of the event loop share one. */
export class ConsumerPool {
  private readonly waiting = new Map<string, Joining[]>()
  private scheduled = false

  constructor(
    private readonly kafka: Kafka,
    private readonly options: KafkaIngressOptions,
  ) {}

  join(spec: FeedSpec, from: number, events: FeedEvents): Member {
    let resolve: (start: FeedStart) => void = () => undefined
    let reject: (error: Error) => void = () => undefined
    const started = new Promise<FeedStart>((res, rej) => {
      resolve = res
      reject = rej
    })
    const joining: Joining = { spec, from, events, resolve, reject, consumer: undefined }
    const list = this.waiting.get(spec.topic) ?? []
    list.push(joining)
    this.waiting.set(spec.topic, list)
    if (!this.scheduled) {
      this.scheduled = true
      setImmediate(() => this.flush())
    }
    const settled = started.then(
      () => undefined,
      () => undefined,
    )
    return {
      spec,
      started,
      pause: () => joining.consumer?.pause(spec.partition),
      resume: () => joining.consumer?.resume(spec.partition),
      leave: () => settled.then(() => joining.consumer?.leave(spec.partition)),
    }
  }

  private flush(): void {
    this.scheduled = false
    const groups = [...this.waiting]
    this.waiting.clear()
    for (const [topic, joining] of groups) {
      // A partition joined twice in one turn (not done by the engine) gets a second consumer.
      const rounds: Joining[][] = []
      for (const j of joining) {
        const round = rounds.find((r) => !r.some((x) => x.spec.partition === j.spec.partition))
        if (round === undefined) rounds.push([j])
        else round.push(j)
      }
      for (const round of rounds) {
        const c = new TopicConsumer(this.kafka, this.options, topic, round)
        for (const j of round) j.consumer = c
      }
    }
  }
}

// Real Kafka (KRaft), NATS (JetStream) and an S3-compatible server (versitygw) as plain processes on loopback.
//
//   node --import tsx scripts/infra.ts up       build/download what is missing, start what is not running, health-check
//   node --import tsx scripts/infra.ts down     stop exactly the processes `up` started (by pid)
//   node --import tsx scripts/infra.ts status   report them
//   node --import tsx scripts/infra.ts tools    install the client tools tests use (kcat) and print their paths
//
// Everything lives in .eddy-infra/ (git-ignored; EDDY_INFRA_DIR overrides): jars, binaries, configs, data, logs, pids.
// Endpoints come from runtime/config/Endpoints.ts (environment variables with loopback defaults). An endpoint whose
// host is not a loopback address is only health-checked, never started. See docs/infrastructure.md.
import { spawn, spawnSync, type SpawnSyncReturns } from "node:child_process"
import { randomBytes, randomUUID } from "node:crypto"
import {
  closeSync,
  existsSync,
  mkdirSync,
  openSync,
  readFileSync,
  readdirSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs"
import { createConnection } from "node:net"
import { dirname, join, relative, resolve } from "node:path"
import { fileURLToPath } from "node:url"
import {
  CreateBucketCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  HeadBucketCommand,
  PutObjectCommand,
  S3Client,
  S3ServiceException,
} from "@aws-sdk/client-s3"
import { connect as natsConnect } from "@nats-io/transport-node"
import "../kafkajs/kafkajsAbortFix.ts"
import { Kafka, logLevel } from "kafkajs"
import { hostPort, isLoopback, readEndpoints, type Endpoints } from "../runtime/config/Endpoints.ts"
import { ensureKcat } from "./kcat.ts"

// ---- pinned versions (docs/infrastructure.md says why) ----
const KAFKA_VERSION = "4.4.0"
/** The log4j2 that kafka_2.13 4.4.0 depends on, plus its SLF4J 1.7 binding so the broker's logs are written. */
const LOG4J_VERSION = "2.25.5"
const MAVEN_DEPENDENCY_PLUGIN = "org.apache.maven.plugins:maven-dependency-plugin:3.8.1"
const NATS_SERVER = { module: "github.com/nats-io/nats-server/v2", version: "v2.15.2", binary: "nats-server" } as const
const VERSITYGW = { module: "github.com/versity/versitygw/cmd/versitygw", version: "v1.8.0", binary: "versitygw" } as const

// The S3 client warns on Node 20 about its future Node 22 requirement; the notice is in docs/infrastructure.md.
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= "true"

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..")
const INFRA = resolve(process.env.EDDY_INFRA_DIR ?? join(ROOT, ".eddy-infra"))
const dirs = {
  run: join(INFRA, "run"),
  logs: join(INFRA, "logs"),
  conf: join(INFRA, "conf"),
  data: join(INFRA, "data"),
  go: join(INFRA, "go"),
}
const KAFKA_HOME = join(INFRA, `kafka-${KAFKA_VERSION}`)
const KAFKA_JAVA_OPTS = (process.env.EDDY_KAFKA_JAVA_OPTS ?? "-Xms64m -Xmx512m -XX:+UseSerialGC").split(/\s+/).filter(Boolean)

type Name = "kafka" | "nats" | "s3"

class InfraError extends Error {
  override readonly name = "InfraError"
}

const show = (p: string): string => {
  const r = relative(process.cwd(), p)
  return r === "" || r.startsWith("..") ? p : r
}
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))
const seconds = (ms: number): string => `${(ms / 1000).toFixed(1)}s`
const message = (e: unknown): string => (e instanceof Error ? e.message : String(e))
const say = (line: string): void => {
  console.log(`[infra] ${line}`)
}

/** Rejects after `ms` unless `p` settles first. */
const within = async <A>(ms: number, what: string, p: Promise<A>): Promise<A> => {
  let timer: ReturnType<typeof setTimeout> | undefined
  try {
    return await Promise.race([
      p,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new InfraError(`${what}: no answer within ${seconds(ms)}`)), ms)
      }),
    ])
  } finally {
    if (timer !== undefined) clearTimeout(timer)
  }
}

const tail = (file: string, lines = 25): string => {
  if (!existsSync(file)) return "(no log)"
  const text = readFileSync(file, "utf8")
  return text.split("\n").slice(-lines - 1).join("\n")
}

/** Runs a build step to completion, output appended to `log`; throws with the log's tail on failure. */
const runStep = (what: string, cmd: string, args: ReadonlyArray<string>, log: string, env: NodeJS.ProcessEnv, cwd: string): Promise<void> =>
  new Promise((resolvePromise, reject) => {
    mkdirSync(dirname(log), { recursive: true })
    const fd = openSync(log, "a")
    writeFileSync(fd, `\n== ${new Date().toISOString()} ${cmd} ${args.join(" ")}\n`)
    const child = spawn(cmd, [...args], { cwd, env, stdio: ["ignore", fd, fd] })
    closeSync(fd)
    child.on("error", (e) => reject(new InfraError(`${what}: cannot run '${cmd}': ${e.message}`)))
    child.on("exit", (code, signal) => {
      if (code === 0) resolvePromise()
      else
        reject(
          new InfraError(
            `${what} failed: '${cmd} ${args.join(" ")}' exited with ${code ?? signal}; log ${show(log)}:\n${tail(log)}`,
          ),
        )
    })
  })

const which = (cmd: string): boolean => spawnSync("sh", ["-c", `command -v ${cmd}`], { stdio: "ignore" }).status === 0

// ---- process records: exactly the processes `up` started ----

interface ProcessRecord {
  readonly name: Name
  readonly pid: number
  /** Linux: the process's start time in clock ticks since boot (/proc/PID/stat field 22); guards against pid reuse. */
  readonly startTicks: string | null
  readonly command: string
  readonly listen: string
  readonly log: string
  readonly startedAt: string
}

const recordFile = (name: Name): string => join(dirs.run, `${name}.json`)

const startTicks = (pid: number): string | null => {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8")
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ")
    return fields[19] ?? null // field 22 overall; fields[0] is field 3
  } catch {
    return null
  }
}

const readRecord = (name: Name): ProcessRecord | undefined => {
  const file = recordFile(name)
  if (!existsSync(file)) return undefined
  try {
    return JSON.parse(readFileSync(file, "utf8")) as ProcessRecord
  } catch {
    return undefined
  }
}

/** True when the recorded process is still the one we started (same pid and, on Linux, same start time). */
const isAlive = (rec: ProcessRecord): boolean => {
  try {
    process.kill(rec.pid, 0)
  } catch {
    return false
  }
  if (existsSync("/proc/self/stat")) {
    let state = ""
    try {
      const stat = readFileSync(`/proc/${rec.pid}/stat`, "utf8")
      state = stat.slice(stat.lastIndexOf(")") + 2).split(" ")[0] ?? ""
    } catch {
      return false
    }
    return state !== "Z" && state !== "X" && startTicks(rec.pid) === rec.startTicks
  }
  const ps = spawnSync("ps", ["-p", String(rec.pid), "-o", "command="], { encoding: "utf8" })
  return ps.status === 0 && ps.stdout.includes(rec.command)
}

const rssMiB = (pid: number): string => {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"))
    if (m?.[1] !== undefined) return `${(Number(m[1]) / 1024).toFixed(0)} MiB`
  } catch {
    // not Linux, or gone
  }
  const ps: SpawnSyncReturns<string> = spawnSync("ps", ["-p", String(pid), "-o", "rss="], { encoding: "utf8" })
  const kb = Number(ps.stdout.trim())
  return ps.status === 0 && kb > 0 ? `${(kb / 1024).toFixed(0)} MiB` : "?"
}

const stopRecorded = async (rec: ProcessRecord, graceMs: number): Promise<"stopped" | "killed" | "not running"> => {
  if (!isAlive(rec)) {
    rmSync(recordFile(rec.name), { force: true })
    return "not running"
  }
  process.kill(rec.pid, "SIGTERM")
  const deadline = Date.now() + graceMs
  while (Date.now() < deadline) {
    if (!isAlive(rec)) {
      rmSync(recordFile(rec.name), { force: true })
      return "stopped"
    }
    await sleep(200)
  }
  process.kill(rec.pid, "SIGKILL")
  for (let i = 0; i < 50 && isAlive(rec); i++) await sleep(100)
  rmSync(recordFile(rec.name), { force: true })
  return "killed"
}

/** Starts a detached server whose stdout/stderr go to `log`, and records it. */
const startDetached = async (
  name: Name,
  cmd: string,
  args: ReadonlyArray<string>,
  env: NodeJS.ProcessEnv,
  log: string,
  listen: string,
): Promise<ProcessRecord> => {
  mkdirSync(dirs.run, { recursive: true })
  mkdirSync(dirname(log), { recursive: true })
  if (existsSync(log) && statSync(log).size > 64 * 1024 * 1024) renameSync(log, `${log}.1`)
  const fd = openSync(log, "a")
  writeFileSync(fd, `\n== ${new Date().toISOString()} starting: ${cmd} ${args.join(" ")}\n`)
  const child = spawn(cmd, [...args], { cwd: INFRA, env, detached: true, stdio: ["ignore", fd, fd] })
  closeSync(fd)
  await new Promise<void>((ok, fail) => {
    child.once("spawn", () => ok())
    child.once("error", (e) => fail(new InfraError(`${name}: cannot start '${cmd}': ${e.message}`)))
  })
  child.unref()
  const pid = child.pid
  if (pid === undefined) throw new InfraError(`${name}: '${cmd}' started without a pid`)
  const rec: ProcessRecord = {
    name,
    pid,
    startTicks: startTicks(pid),
    command: cmd,
    listen,
    log,
    startedAt: new Date().toISOString(),
  }
  writeFileSync(recordFile(name), `${JSON.stringify(rec, null, 2)}\n`)
  return rec
}

const portOpen = (host: string, port: number, timeoutMs = 1_000): Promise<boolean> =>
  new Promise((ok) => {
    const socket = createConnection({ host, port })
    const done = (v: boolean): void => {
      socket.destroy()
      ok(v)
    }
    socket.setTimeout(timeoutMs, () => done(false))
    socket.once("connect", () => done(true))
    socket.once("error", () => done(false))
  })

// ---- the three servers ----

interface Server {
  readonly name: Name
  readonly title: string
  readonly version: string
  /** Where clients connect, as printed. */
  readonly endpoint: string
  readonly host: string
  readonly port: number
  readonly startTimeoutMs: number
  readonly stopGraceMs: number
  /** Builds or downloads the server if missing; returns what it did, or undefined when it was already there. */
  readonly install: () => Promise<string | undefined>
  /** Writes configs, formats storage; returns the command that runs the server in the foreground. */
  readonly prepare: () => Promise<{ cmd: string; args: ReadonlyArray<string>; env: NodeJS.ProcessEnv }>
  /** One health check through the real client; throws on failure. */
  readonly check: () => Promise<void>
}

const goInstall = async (tool: { module: string; version: string; binary: string }): Promise<string | undefined> => {
  const dir = join(dirs.go, `${tool.binary}-${tool.version}`)
  const binary = join(dir, tool.binary)
  if (existsSync(binary)) return undefined
  if (!which("go")) throw new InfraError(`building ${tool.binary} needs Go ('go' is not on PATH)`)
  const tmp = `${dir}.tmp-${process.pid}`
  rmSync(tmp, { recursive: true, force: true })
  mkdirSync(tmp, { recursive: true })
  const started = Date.now()
  await runStep(
    `go install ${tool.module}@${tool.version}`,
    "go",
    ["install", `${tool.module}@${tool.version}`],
    join(dirs.logs, `build-${tool.binary}.log`),
    { ...process.env, GOBIN: tmp, CGO_ENABLED: "0" },
    INFRA,
  )
  if (!existsSync(join(tmp, tool.binary))) throw new InfraError(`go install did not produce ${join(tmp, tool.binary)}`)
  rmSync(dir, { recursive: true, force: true })
  renameSync(tmp, dir)
  return `built ${tool.binary} ${tool.version} with go install in ${seconds(Date.now() - started)}`
}

const javaCommand = (): string => {
  const home = process.env.JAVA_HOME
  return home !== undefined && home !== "" && existsSync(join(home, "bin", "java")) ? join(home, "bin", "java") : "java"
}

const checkJava = (java: string): void => {
  const r = spawnSync(java, ["-version"], { encoding: "utf8" })
  if (r.error !== undefined || r.status !== 0) {
    throw new InfraError(`Kafka needs Java 17 or newer, and '${java} -version' failed: ${r.error?.message ?? r.stderr}`)
  }
  const m = /version "(\d+)(?:\.(\d+))?/.exec(r.stderr)
  const major = m?.[1] === "1" ? Number(m[2]) : Number(m?.[1])
  if (!(major >= 17)) throw new InfraError(`Kafka ${KAFKA_VERSION} needs Java 17 or newer; '${java}' is ${m?.[0] ?? "unknown"}`)
}

const kafkaServer = (e: Endpoints): Server => {
  const first = e.kafka.brokers[0] ?? ""
  const { host, port } = hostPort(first)
  const libs = join(KAFKA_HOME, "libs")
  const dataDir = join(dirs.data, "kafka")
  const props = join(dirs.conf, "kafka.properties")
  const log4j = join(dirs.conf, "kafka-log4j2.properties")
  const classpath = `${libs}/*`
  const java = javaCommand()
  const jvm = (): ReadonlyArray<string> => [
    ...KAFKA_JAVA_OPTS,
    "-Djava.awt.headless=true",
    `-Dlog4j2.configurationFile=${log4j}`,
    "-cp",
    classpath,
  ]
  const client = (): Kafka =>
    new Kafka({
      clientId: "eddy-infra",
      brokers: [...e.kafka.brokers],
      logLevel: logLevel.NOTHING,
      connectionTimeout: 3_000,
      requestTimeout: 10_000,
      retry: { retries: 3, initialRetryTime: 200, maxRetryTime: 2_000 },
    })
  return {
    name: "kafka",
    title: "Apache Kafka (KRaft)",
    version: KAFKA_VERSION,
    endpoint: e.kafka.brokers.join(","),
    host,
    port,
    startTimeoutMs: 180_000,
    stopGraceMs: 30_000,
    install: async () => {
      if (existsSync(join(KAFKA_HOME, ".complete"))) return undefined
      if (!which("mvn")) throw new InfraError("fetching Kafka's jars needs Maven ('mvn' is not on PATH)")
      checkJava(java)
      const started = Date.now()
      mkdirSync(KAFKA_HOME, { recursive: true })
      const pom = join(KAFKA_HOME, "pom.xml")
      writeFileSync(
        pom,
        `<?xml version="1.0" encoding="UTF-8"?>
<!-- Generated by scripts/infra.ts: the jars of an Apache Kafka ${KAFKA_VERSION} broker, from Maven Central. -->
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>eddy.infra</groupId>
  <artifactId>kafka-broker</artifactId>
  <version>${KAFKA_VERSION}</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId><version>${KAFKA_VERSION}</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-slf4j-impl</artifactId><version>${LOG4J_VERSION}</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-core</artifactId><version>${LOG4J_VERSION}</version></dependency>
  </dependencies>
</project>
`,
      )
      const tmp = `${libs}.tmp-${process.pid}`
      rmSync(tmp, { recursive: true, force: true })
      await runStep(
        `fetching Kafka ${KAFKA_VERSION} jars`,
        "mvn",
        ["-B", "-q", "-f", pom, `${MAVEN_DEPENDENCY_PLUGIN}:copy-dependencies`, `-DoutputDirectory=${tmp}`, "-DincludeScope=runtime"],
        join(dirs.logs, "build-kafka.log"),
        process.env,
        KAFKA_HOME,
      )
      const jars = existsSync(tmp) ? readdirSync(tmp) : []
      if (!jars.includes(`kafka_2.13-${KAFKA_VERSION}.jar`)) {
        throw new InfraError(`mvn did not copy kafka_2.13-${KAFKA_VERSION}.jar into ${tmp}`)
      }
      rmSync(libs, { recursive: true, force: true })
      renameSync(tmp, libs)
      writeFileSync(join(KAFKA_HOME, ".complete"), `${jars.length} jars\n`)
      return `fetched Kafka ${KAFKA_VERSION} (${jars.length} jars) with mvn in ${seconds(Date.now() - started)}`
    },
    prepare: async () => {
      checkJava(java)
      mkdirSync(dirs.conf, { recursive: true })
      mkdirSync(dataDir, { recursive: true })
      const controller = `${host}:${e.kafka.controllerPort}`
      writeFileSync(
        props,
        [
          "# Generated by scripts/infra.ts on each start: a single-node KRaft broker+controller for tests.",
          "process.roles=broker,controller",
          "node.id=1",
          `controller.quorum.voters=1@${controller}`,
          `listeners=PLAINTEXT://${first},CONTROLLER://${controller}`,
          `advertised.listeners=PLAINTEXT://${first}`,
          "controller.listener.names=CONTROLLER",
          "inter.broker.listener.name=PLAINTEXT",
          "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
          `log.dirs=${dataDir}`,
          "num.partitions=1",
          "default.replication.factor=1",
          "min.insync.replicas=1",
          "offsets.topic.replication.factor=1",
          "offsets.topic.num.partitions=4",
          "transaction.state.log.replication.factor=1",
          "transaction.state.log.min.isr=1",
          "transaction.state.log.num.partitions=4",
          "share.coordinator.state.topic.replication.factor=1",
          "share.coordinator.state.topic.min.isr=1",
          "group.initial.rebalance.delay.ms=0",
          "auto.create.topics.enable=true",
          "delete.topic.enable=true",
          "num.network.threads=2",
          "num.io.threads=4",
          "num.recovery.threads.per.data.dir=1",
          "log.retention.hours=24",
          "",
        ].join("\n"),
      )
      writeFileSync(
        log4j,
        [
          "status = warn",
          "appender.out.type = Console",
          "appender.out.name = OUT",
          "appender.out.layout.type = PatternLayout",
          "appender.out.layout.pattern = [%d] %p %m (%c)%n",
          "rootLogger.level = INFO",
          "rootLogger.appenderRef.out.ref = OUT",
          "logger.state.name = state.change.logger",
          "logger.state.level = WARN",
          "logger.config.name = org.apache.kafka.common.config.AbstractConfig",
          "logger.config.level = WARN",
          "",
        ].join("\n"),
      )
      if (!existsSync(join(dataDir, "meta.properties"))) {
        // A Kafka Uuid: 16 random bytes, base64url without padding, not starting with '-'.
        let clusterId = ""
        do clusterId = randomBytes(16).toString("base64url")
        while (clusterId.startsWith("-"))
        await runStep(
          "formatting Kafka storage",
          java,
          [...jvm(), "kafka.tools.StorageTool", "format", "-t", clusterId, "-c", props],
          join(dirs.logs, "kafka.log"),
          process.env,
          INFRA,
        )
      }
      return { cmd: java, args: [...jvm(), "kafka.Kafka", props], env: process.env }
    },
    check: async () => {
      const kafka = client()
      const topic = "eddy-infra-health"
      const token = randomUUID()
      const admin = kafka.admin()
      const producer = kafka.producer({ allowAutoTopicCreation: false })
      const group = `eddy-infra-health-${token}`
      const consumer = kafka.consumer({ groupId: group, sessionTimeout: 10_000, heartbeatInterval: 1_000 })
      try {
        await admin.connect()
        await admin.createTopics({
          waitForLeaders: true,
          topics: [{ topic, numPartitions: 1, replicationFactor: 1, configEntries: [{ name: "retention.ms", value: "3600000" }] }],
        })
        await producer.connect()
        await producer.send({ topic, messages: [{ value: token }] })
        await consumer.connect()
        await consumer.subscribe({ topic, fromBeginning: true })
        await within(
          20_000,
          "consuming the health record",
          new Promise<void>((ok, fail) => {
            consumer
              .run({
                eachMessage: async ({ message: m }) => {
                  if (m.value?.toString("utf8") === token) ok()
                },
              })
              .catch(fail)
          }),
        )
      } finally {
        await Promise.allSettled([consumer.disconnect(), producer.disconnect()])
        await admin.deleteGroups([group]).catch(() => undefined)
        await admin.disconnect().catch(() => undefined)
      }
    },
  }
}

const natsServer = (e: Endpoints): Server => {
  const u = new URL(e.nats.url)
  const host = u.hostname.replace(/^\[(.*)\]$/, "$1")
  const port = Number(u.port === "" ? "4222" : u.port)
  const binary = join(dirs.go, `${NATS_SERVER.binary}-${NATS_SERVER.version}`, NATS_SERVER.binary)
  const conf = join(dirs.conf, "nats.conf")
  return {
    name: "nats",
    title: "NATS server (JetStream)",
    version: NATS_SERVER.version,
    endpoint: e.nats.url,
    host,
    port,
    startTimeoutMs: 60_000,
    stopGraceMs: 10_000,
    install: () => goInstall(NATS_SERVER),
    prepare: async () => {
      mkdirSync(dirs.conf, { recursive: true })
      const store = join(dirs.data, "nats")
      mkdirSync(store, { recursive: true })
      writeFileSync(
        conf,
        [
          "# Generated by scripts/infra.ts on each start.",
          "server_name: eddy-infra",
          `listen: "${host.includes(":") ? `[${host}]` : host}:${port}"`,
          "jetstream {",
          `  store_dir: ${JSON.stringify(store)}`,
          "  max_memory_store: 256MB",
          "  max_file_store: 4GB",
          "}",
          "",
        ].join("\n"),
      )
      return { cmd: binary, args: ["-c", conf], env: process.env }
    },
    check: async () => {
      const nc = await natsConnect({ servers: e.nats.url, timeout: 3_000, reconnect: false, name: "eddy-infra" })
      try {
        const subject = `_eddy.infra.health.${randomUUID()}`
        const sub = nc.subscribe(subject, {
          callback: (err, msg) => {
            if (err === null) msg.respond(msg.data)
          },
        })
        const reply = await nc.request(subject, "ping", { timeout: 3_000 })
        sub.unsubscribe()
        if (reply.string() !== "ping") throw new InfraError(`NATS request/reply returned '${reply.string()}'`)
        if (nc.info?.jetstream !== true) throw new InfraError("the NATS server does not have JetStream enabled")
        const info: unknown = (await nc.request("$JS.API.INFO", "", { timeout: 3_000 })).json()
        if (typeof info !== "object" || info === null || "error" in info) {
          throw new InfraError(`JetStream account info failed: ${JSON.stringify(info)}`)
        }
      } finally {
        await nc.close()
      }
    },
  }
}

const s3Server = (e: Endpoints): Server => {
  const u = new URL(e.s3.endpoint)
  const host = u.hostname.replace(/^\[(.*)\]$/, "$1")
  const port = Number(u.port === "" ? (u.protocol === "https:" ? "443" : "80") : u.port)
  const binary = join(dirs.go, `${VERSITYGW.binary}-${VERSITYGW.version}`, VERSITYGW.binary)
  return {
    name: "s3",
    title: "S3 (versitygw, posix backend)",
    version: VERSITYGW.version,
    endpoint: e.s3.endpoint,
    host,
    port,
    startTimeoutMs: 60_000,
    stopGraceMs: 10_000,
    install: () => goInstall(VERSITYGW),
    prepare: async () => {
      if (u.protocol !== "http:") throw new InfraError(`the local S3 server speaks http; EDDY_S3_ENDPOINT is ${e.s3.endpoint}`)
      const root = join(dirs.data, "s3")
      mkdirSync(root, { recursive: true })
      return {
        cmd: binary,
        args: ["--port", `${host.includes(":") ? `[${host}]` : host}:${port}`, "--quiet", "posix", root],
        // Credentials through the environment, so they are not on the command line.
        env: {
          ...process.env,
          ROOT_ACCESS_KEY_ID: e.s3.accessKeyId,
          ROOT_SECRET_ACCESS_KEY: e.s3.secretAccessKey,
          VGW_REGION: e.s3.region,
        },
      }
    },
    check: async () => {
      const client = new S3Client({
        endpoint: e.s3.endpoint,
        region: e.s3.region,
        forcePathStyle: e.s3.forcePathStyle,
        credentials: { accessKeyId: e.s3.accessKeyId, secretAccessKey: e.s3.secretAccessKey },
        maxAttempts: 1,
      })
      try {
        const Bucket = e.s3.bucket
        try {
          await client.send(new HeadBucketCommand({ Bucket }))
        } catch (err) {
          if (!(err instanceof S3ServiceException) || err.$metadata.httpStatusCode !== 404) throw err
          await client.send(new CreateBucketCommand({ Bucket }))
        }
        const Key = `eddy-infra-health/${randomUUID()}`
        const body = `health ${Key}`
        await client.send(new PutObjectCommand({ Bucket, Key, Body: body }))
        const got = await client.send(new GetObjectCommand({ Bucket, Key }))
        const text = await got.Body?.transformToString()
        if (text !== body) throw new InfraError(`S3 get returned ${JSON.stringify(text)}, expected ${JSON.stringify(body)}`)
        await client.send(new DeleteObjectCommand({ Bucket, Key }))
      } finally {
        client.destroy()
      }
    },
  }
}

const servers = (): ReadonlyArray<Server> => {
  const e = readEndpoints()
  return [kafkaServer(e), natsServer(e), s3Server(e)]
}

/** Health-checks until it passes or the deadline; `alive` stops early when the process died. */
const waitHealthy = async (s: Server, timeoutMs: number, alive: () => boolean): Promise<void> => {
  const deadline = Date.now() + timeoutMs
  let last: unknown = new InfraError("not checked yet")
  while (Date.now() < deadline) {
    if (!alive()) throw new InfraError(`${s.name} exited during start-up`)
    if (await portOpen(s.host, s.port)) {
      try {
        await within(Math.max(1_000, Math.min(30_000, deadline - Date.now())), `${s.name} health check`, s.check())
        return
      } catch (err) {
        last = err
      }
    } else {
      last = new InfraError(`nothing listens on ${s.host}:${s.port}`)
    }
    await sleep(500)
  }
  throw new InfraError(`${s.name} not healthy within ${seconds(timeoutMs)}: ${message(last)}`)
}

interface UpResult {
  readonly server: Server
  readonly state: string
  readonly pid?: number
  readonly log?: string
}

const up = async (s: Server): Promise<UpResult> => {
  const started = Date.now()
  if (!isLoopback(s.host)) {
    await waitHealthy(s, 30_000, () => true)
    return { server: s, state: "external (not loopback): health-checked only" }
  }
  const rec = readRecord(s.name)
  if (rec !== undefined) {
    if (isAlive(rec)) {
      try {
        await waitHealthy(s, 20_000, () => isAlive(rec))
        return { server: s, state: `already running, healthy (checked in ${seconds(Date.now() - started)})`, pid: rec.pid, log: rec.log }
      } catch (err) {
        say(`${s.name}: pid ${rec.pid} runs but is not healthy (${message(err)}); restarting it`)
        await stopRecorded(rec, s.stopGraceMs)
      }
    } else {
      rmSync(recordFile(s.name), { force: true })
    }
  }
  if (await portOpen(s.host, s.port)) {
    try {
      await waitHealthy(s, 15_000, () => true)
      return { server: s, state: "already running, healthy, NOT started by this script (left alone; `down` will not stop it)" }
    } catch (err) {
      throw new InfraError(
        `${s.name}: ${s.host}:${s.port} is taken by a process this script did not start, and it is not a healthy ${s.title} (${message(err)}). Free the port or point the EDDY_* variables elsewhere.`,
      )
    }
  }
  const installed = await s.install()
  if (installed !== undefined) say(`${s.name}: ${installed}`)
  const { cmd, args, env } = await s.prepare()
  const log = join(dirs.logs, `${s.name}.log`)
  const launched = Date.now()
  const started2 = await startDetached(s.name, cmd, args, env, log, `${s.host}:${s.port}`)
  try {
    await waitHealthy(s, s.startTimeoutMs, () => isAlive(started2))
  } catch (err) {
    throw new InfraError(`${message(err)}\n--- last lines of ${show(log)} ---\n${tail(log)}`)
  }
  return {
    server: s,
    state: `started, healthy after ${seconds(Date.now() - launched)}${installed !== undefined ? ` (${seconds(Date.now() - started)} with install)` : ""}`,
    pid: started2.pid,
    log,
  }
}

// ---- a lock, so two `up`s (two test runs) do not build or start twice ----

const withLock = async <A>(f: () => Promise<A>): Promise<A> => {
  mkdirSync(INFRA, { recursive: true })
  const lock = join(INFRA, "infra.lock")
  const deadline = Date.now() + 40 * 60_000
  let announced = false
  while (true) {
    try {
      const fd = openSync(lock, "wx")
      writeFileSync(fd, String(process.pid))
      closeSync(fd)
      break
    } catch {
      const holder = Number(existsSync(lock) ? readFileSync(lock, "utf8").trim() : "")
      let held = false
      if (Number.isInteger(holder) && holder > 0) {
        try {
          process.kill(holder, 0)
          held = true
        } catch {
          held = false
        }
      }
      if (!held) {
        rmSync(lock, { force: true })
        continue
      }
      if (Date.now() > deadline) throw new InfraError(`${show(lock)} is held by pid ${holder} for too long`)
      if (!announced) say(`waiting for another infra script (pid ${holder}) to finish`)
      announced = true
      await sleep(1_000)
    }
  }
  const release = (): void => {
    if (existsSync(lock) && readFileSync(lock, "utf8").trim() === String(process.pid)) rmSync(lock, { force: true })
  }
  process.once("exit", release)
  try {
    return await f()
  } finally {
    release()
  }
}

const cmdUp = async (): Promise<number> => {
  const t0 = Date.now()
  const list = selected()
  say(`infra folder ${show(INFRA)}`)
  const results = await withLock(() => Promise.allSettled(list.map((s) => up(s))))
  let failed = 0
  for (const [i, r] of results.entries()) {
    const s = list[i]
    if (s === undefined) continue
    if (r.status === "fulfilled") {
      const v = r.value
      const where = `${s.title} ${s.version} on ${s.endpoint}`
      say(`${s.name.padEnd(5)} ${where}: ${v.state}${v.pid !== undefined ? `, pid ${v.pid}` : ""}${v.log !== undefined ? `, log ${show(v.log)}` : ""}`)
    } else {
      failed += 1
      console.error(`[infra] ${s.name.padEnd(5)} FAILED: ${message(r.reason)}`)
    }
  }
  if (failed > 0) {
    console.error(`[infra] up failed for ${failed} of ${list.length} servers after ${seconds(Date.now() - t0)}`)
    return 1
  }
  say(`all healthy in ${seconds(Date.now() - t0)}; stop them with: npm run infra:down`)
  return 0
}

const cmdDown = async (): Promise<number> => {
  const list = selected()
  await withLock(async () => {
    await Promise.all(
      list.map(async (s) => {
        const rec = readRecord(s.name)
        if (rec === undefined) {
          say(`${s.name.padEnd(5)} not started by this script (no ${show(recordFile(s.name))})`)
          return
        }
        const result = await stopRecorded(rec, s.stopGraceMs)
        say(`${s.name.padEnd(5)} pid ${rec.pid}: ${result}`)
      }),
    )
  })
  return 0
}

const cmdStatus = async (): Promise<number> => {
  let down = 0
  for (const s of servers()) {
    const rec = readRecord(s.name)
    const listening = await portOpen(s.host, s.port)
    if (rec !== undefined && isAlive(rec)) {
      say(
        `${s.name.padEnd(5)} ${s.title} ${s.version}: running, pid ${rec.pid}, RSS ${rssMiB(rec.pid)}, since ${rec.startedAt}, ${
          listening ? "listening" : "NOT listening"
        } on ${s.endpoint}, log ${show(rec.log)}`,
      )
      if (!listening) down += 1
    } else {
      if (rec !== undefined) say(`${s.name.padEnd(5)} pid ${rec.pid} recorded but not running (stale record)`)
      say(`${s.name.padEnd(5)} ${s.title}: not started by this script; ${s.endpoint} ${listening ? "answers (someone else's)" : "does not answer"}`)
      if (!listening) down += 1
    }
  }
  return down === 0 ? 0 : 3
}

/** `up nats`, `down kafka`: only the named servers (used by fault tests that restart one broker). */
const selected = () => {
  const only = process.argv.slice(3)
  const all = servers()
  const unknown = only.filter((n) => !all.some((s) => s.name === n))
  if (unknown.length > 0) throw new Error(`unknown server(s) ${unknown.join(", ")}; known: ${all.map((s) => s.name).join(", ")}`)
  return only.length === 0 ? all : all.filter((s) => only.includes(s.name))
}

const main = async (): Promise<number> => {
  const command = process.argv[2]
  switch (command) {
    case "up":
      return cmdUp()
    case "down":
      return cmdDown()
    case "status":
      return cmdStatus()
    case "tools":
      // stdout: one `name path` line per tool (tests parse it); progress goes to stderr.
      process.stdout.write(`kcat ${ensureKcat(INFRA, (line) => console.error(`[infra] ${line}`))}\n`)
      return 0
    default:
      console.error("usage: node --import tsx scripts/infra.ts up|down [kafka|nats|s3 ...] | status | tools")
      return 2
  }
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    console.error(`[infra] ${message(err)}`)
    process.exit(1)
  },
)

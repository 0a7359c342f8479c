// The benchmark workloads, independent of the system under test: each draws calls, checks replies, and verifies
// the end state through the same `Invoker` the load used.
import { fibCalls } from "../apps/fibtree.ts"
import type { BankReply } from "../apps/bank.ts"
import { checkBank, type BankOp } from "./bankCheck.ts"
import { KeyChooser, rng, type Distribution } from "./random.ts"

/** One call of a handler of an addressed object: Restate `POST /object/key/handler`, Eddy `ask("object/key", { op: handler, ...arg })`. */
export interface Call {
  readonly object: string
  /** Undefined for Restate services without a key (fib); Eddy then uses `eddyKey`. */
  readonly key: string | undefined
  readonly handler: string
  readonly arg: Readonly<Record<string, unknown>>
  /** The actor id on Eddy when `key` is undefined (a fresh root actor per request). */
  readonly eddyKey?: string
}

export interface Invoker {
  call(c: Call): Promise<unknown>
  /**
   * Every stored state field of every object of a type, in one query (Restate: its SQL introspection API), so that
   * verifying 10k accounts does not take 10k invocations. Without it, verification reads through `call`.
   */
  readonly snapshot?: (object: string) => Promise<ReadonlyMap<string, Readonly<Record<string, unknown>>>>
}

/** Reads field `field` of objects `keys` (default `initial` where none is stored), by snapshot or by calls. */
const readField = async (invoker: Invoker, object: string, keys: ReadonlyArray<string>, field: string, initial: number, read: Omit<Call, "key" | "object">, concurrency: number): Promise<number[]> => {
  if (invoker.snapshot !== undefined) {
    const all = await invoker.snapshot(object)
    return keys.map((k) => (all.get(k)?.[field] as number | undefined) ?? initial)
  }
  return pool(keys, concurrency, async (k) => {
    const r = await invoker.call({ ...read, object, key: k })
    return typeof r === "number" ? r : (r as { balance: number }).balance
  })
}

export interface WorkloadConfig {
  readonly workload: "counter" | "fib" | "bank" | "cart"
  /** Counter keys / bank accounts / cart users. */
  readonly keys: number
  readonly distribution: Distribution
  /** fib(n). */
  readonly n: number
  /** Bank starting balance. */
  readonly initial: number
  /** Cart: items, and the starting stock of each. */
  readonly items: number
  readonly stock: number
  readonly seed: number
}

export interface Workload {
  /** Actor invocations one call causes (fib: the call tree); 1 elsewhere. */
  readonly invocationsPerCall: number
  next(worker: number): Call
  onReply(call: Call, reply: unknown): void
  /** Checks the end state; returns a one-line verdict, throws when an invariant is broken. */
  verify(invoker: Invoker, concurrency: number): Promise<string>
  /** Extra figures for the report (e.g. the share of rejected transfers). */
  extra(): Readonly<Record<string, number>>
}

/** Runs `f` over `items` with at most `c` in flight. */
export const pool = async <T, R>(items: ReadonlyArray<T>, c: number, f: (t: T) => Promise<R>): Promise<R[]> => {
  const out = new Array<R>(items.length)
  let next = 0
  await Promise.all(
    Array.from({ length: Math.min(c, items.length) }, async () => {
      while (next < items.length) {
        const i = next++
        out[i] = await f(items[i]!)
      }
    }),
  )
  return out
}

/** Reads until `settled` holds (one-way sends may still be in flight on Restate) or `ms` passed; returns the last read. */
const settle = async <R>(read: () => Promise<R>, settled: (r: R) => boolean, ms = 30_000): Promise<R> => {
  const deadline = Date.now() + ms
  let r = await read()
  while (!settled(r) && Date.now() < deadline) {
    await new Promise((res) => setTimeout(res, 500))
    r = await read()
  }
  return r
}

const fibValue = (n: number): number => {
  let [a, b] = [0, 1]
  for (let i = 0; i < n; i++) [a, b] = [b, a + b]
  return a
}

const counter = (c: WorkloadConfig): Workload => {
  const keys = new KeyChooser(c.keys, c.distribution, rng(c.seed))
  const adds = new Map<number, number>()
  const maxReply = new Map<number, number>()
  return {
    invocationsPerCall: 1,
    next: () => {
      const k = keys.next()
      return { object: "counter", key: `k${k}`, handler: "add", arg: { n: 1 } }
    },
    onReply: (call, reply) => {
      const k = Number(call.key!.slice(1))
      if (typeof reply !== "number") throw new Error(`counter ${call.key}: reply ${JSON.stringify(reply)} is not a number`)
      adds.set(k, (adds.get(k) ?? 0) + 1)
      maxReply.set(k, Math.max(maxReply.get(k) ?? 0, reply))
    },
    // Every add is +1 from 0, so a key's largest reply must equal the number of adds it was sent: a lost add makes
    // it smaller, an add applied twice larger.
    verify: async () => {
      for (const [k, n] of adds) if (maxReply.get(k) !== n) throw new Error(`counter k${k}: ${n} adds answered, largest reply ${maxReply.get(k)}`)
      return `ok: ${adds.size} counters, largest reply = adds answered`
    },
    extra: () => ({ keysTouched: adds.size }),
  }
}

const fib = (c: WorkloadConfig): Workload => {
  const want = fibValue(c.n)
  let seq = 0
  let answered = 0
  const tag = `${process.pid.toString(36)}${Date.now().toString(36)}`
  return {
    invocationsPerCall: fibCalls(c.n),
    next: () => ({ object: "fib", key: undefined, handler: "fib", arg: { n: c.n }, eddyKey: `r${tag}-${seq++}` }),
    onReply: (_call, reply) => {
      if (reply !== want) throw new Error(`fib(${c.n}) answered ${JSON.stringify(reply)}, expected ${want}`)
      answered++
    },
    verify: async () => `ok: ${answered} answers, each ${want}`,
    extra: () => ({}),
  }
}

const bank = (c: WorkloadConfig): Workload => {
  const random = rng(c.seed)
  const keys = new KeyChooser(c.keys, c.distribution, random)
  const log: BankOp[] = []
  let reads = 0
  return {
    invocationsPerCall: 1,
    next: () => {
      const r = random()
      const a = keys.next()
      if (r < 0.5) return { object: "account", key: `a${a}`, handler: "balance", arg: {} }
      if (r < 0.75) return { object: "account", key: `a${a}`, handler: "deposit", arg: { amount: 1 + Math.floor(random() * 10) } }
      let b = keys.next()
      while (b === a && c.keys > 1) b = (b + 1 + Math.floor(random() * (c.keys - 1))) % c.keys
      return { object: "account", key: `a${a}`, handler: "transfer", arg: { to: `a${b}`, amount: 1 + Math.floor(random() * 100) } }
    },
    onReply: (call, reply) => {
      const rep = reply as BankReply
      if (typeof rep?.balance !== "number") throw new Error(`account ${call.key}: reply ${JSON.stringify(reply)}`)
      const account = Number(call.key!.slice(1))
      if (call.handler === "balance") reads++
      else if (call.handler === "deposit") log.push({ kind: "deposit", account, amount: call.arg["amount"] as number, balance: rep.balance })
      else log.push({ kind: "transfer", from: account, to: Number((call.arg["to"] as string).slice(1)), amount: call.arg["amount"] as number, ok: rep.ok, balance: rep.balance })
    },
    verify: async (invoker, concurrency) => {
      const ids = Array.from({ length: c.keys }, (_, i) => `a${i}`)
      const readAll = () => readField(invoker, "account", ids, "balance", c.initial, { handler: "balance", arg: {} }, concurrency)
      const expectedTotal = checkBank(c.initial, new Array<number>(c.keys).fill(c.initial), log).expectedTotal
      const balances = await settle(readAll, (bs) => bs.reduce((a, b) => a + b, 0) === expectedTotal)
      const r = checkBank(c.initial, balances, log)
      if (!r.ok) throw new Error(`bank invariant broken: ${r.problems.join("; ")}`)
      return `ok: total ${r.actualTotal} conserved, ${c.keys} balances = recomputed from ${log.length} logged writes/transfers (${r.transfersRejected} rejected)`
    },
    extra: () => {
      const transfers = log.filter((o) => o.kind === "transfer")
      return { reads, rejectedTransferShare: transfers.length === 0 ? 0 : transfers.filter((t) => t.kind === "transfer" && !t.ok).length / transfers.length }
    },
  }
}

const cart = (c: WorkloadConfig): Workload => {
  const random = rng(c.seed)
  const users = new KeyChooser(c.keys, c.distribution, random)
  let addsOk = 0
  let removesOk = 0
  let checkedOut = 0
  const touchedUsers = new Set<number>()
  return {
    invocationsPerCall: 1,
    next: () => {
      const u = users.next()
      const item = `i${Math.floor(random() * c.items)}`
      const r = random()
      if (r < 0.6) return { object: "cart", key: `u${u}`, handler: "add", arg: { item } }
      if (r < 0.8) return { object: "cart", key: `u${u}`, handler: "remove", arg: { item } }
      return { object: "cart", key: `u${u}`, handler: "checkout", arg: {} }
    },
    onReply: (call, reply) => {
      touchedUsers.add(Number(call.key!.slice(1)))
      if (call.handler === "checkout") checkedOut += (reply as { items: number }).items
      else if ((reply as { ok: boolean }).ok) {
        if (call.handler === "add") addsOk++
        else removesOk++
      }
    },
    // Stock is conserved: items left + items reserved (accepted adds − accepted removes) = items × stock; and the
    // orders actors hold exactly what checkouts reported.
    verify: async (invoker, concurrency) => {
      const items = Array.from({ length: c.items }, (_, i) => `i${i}`)
      const want = c.items * c.stock
      const left = await settle(
        async () => (await readField(invoker, "stock", items, "left", c.stock, { handler: "count", arg: {} }, concurrency)).reduce((a, b) => a + b, 0),
        (l) => l + addsOk - removesOk === want,
      )
      if (left + addsOk - removesOk !== want) throw new Error(`cart invariant broken: stock left ${left} + reserved ${addsOk - removesOk} != ${want}`)
      const us = [...touchedUsers]
      const ordered = await settle(
        async () => (await readField(invoker, "orders", us.map((u) => `u${u}`), "items", 0, { handler: "count", arg: {} }, concurrency)).reduce((a, b) => a + b, 0),
        (o) => o === checkedOut,
      )
      if (ordered !== checkedOut) throw new Error(`cart invariant broken: orders hold ${ordered} items, checkouts reported ${checkedOut}`)
      return `ok: stock ${left} + reserved ${addsOk - removesOk} = ${want}; ${ordered} items ordered = checkouts`
    },
    extra: () => ({}),
  }
}

export const makeWorkload = (c: WorkloadConfig): Workload => {
  switch (c.workload) {
    case "counter":
      return counter(c)
    case "fib":
      return fib(c)
    case "bank":
      return bank(c)
    case "cart":
      return cart(c)
  }
}

// The benchmark workloads as Restate services, written with the public SDK API: the same operations, replies and
// protocols as the Eddy apps under bench/apps (counter.ts, fibtree.ts, bank.ts, cart.ts).
import * as restate from "@restatedev/restate-sdk"
import type { BankReply } from "../apps/bank.ts"

export interface ServiceConfig {
  /** Starting balance of every account. */
  readonly initial: number
  /** Starting stock of every item. */
  readonly stock: number
}

export const services = (config: ServiceConfig) => {
  /** Counter virtual object: add(n) → new value (exclusive handler: one at a time per key, like an actor). */
  const counter = restate.object({
    name: "counter",
    handlers: {
      add: async (ctx: restate.ObjectContext, arg: { n: number }): Promise<number> => {
        const next = ((await ctx.get<number>("value")) ?? 0) + arg.n
        ctx.set("value", next)
        return next
      },
      get: restate.handlers.object.shared(async (ctx: restate.ObjectSharedContext): Promise<number> => (await ctx.get<number>("value")) ?? 0),
    },
  })

  /**
   * fib(n) by fan-out: every call of the tree is a durable invocation that calls its two children and awaits both.
   * A service (no key, no state): a virtual object's exclusive handler would serialize the tree per key.
   */
  const fib: restate.ServiceDefinition<"fib", { fib: (ctx: restate.Context, arg: { n: number }) => Promise<number> }> = restate.service({
    name: "fib",
    handlers: {
      fib: async (ctx: restate.Context, arg: { n: number }): Promise<number> => {
        if (arg.n <= 1) return arg.n
        const client = ctx.serviceClient(fib)
        const [a, b] = await restate.RestatePromise.all([client.fib({ n: arg.n - 1 }), client.fib({ n: arg.n - 2 })])
        return a + b
      },
    },
  })

  /**
   * Bank account: the same protocol as bench/apps/bank.ts. A transfer debits the payer and sends the payee a
   * one-way credit (a durable, exactly-once send recorded in the payer's journal). A request-response call to the
   * payee from inside the payer's exclusive handler would deadlock when two accounts transfer to each other.
   */
  const account: restate.VirtualObjectDefinition<"account", {
    balance: (ctx: restate.ObjectSharedContext) => Promise<BankReply>
    deposit: (ctx: restate.ObjectContext, arg: { amount: number }) => Promise<BankReply>
    transfer: (ctx: restate.ObjectContext, arg: { to: string; amount: number }) => Promise<BankReply>
    credit: (ctx: restate.ObjectContext, arg: { amount: number }) => Promise<void>
  }> = restate.object({
    name: "account",
    handlers: {
      balance: restate.handlers.object.shared(async (ctx: restate.ObjectSharedContext): Promise<BankReply> => ({ ok: true, balance: (await ctx.get<number>("balance")) ?? config.initial })),
      deposit: async (ctx: restate.ObjectContext, arg: { amount: number }): Promise<BankReply> => {
        const balance = ((await ctx.get<number>("balance")) ?? config.initial) + arg.amount
        ctx.set("balance", balance)
        return { ok: true, balance }
      },
      transfer: async (ctx: restate.ObjectContext, arg: { to: string; amount: number }): Promise<BankReply> => {
        const balance = (await ctx.get<number>("balance")) ?? config.initial
        if (arg.amount > balance || arg.to === ctx.key) return { ok: false, balance }
        ctx.set("balance", balance - arg.amount)
        ctx.objectSendClient(account, arg.to).credit({ amount: arg.amount })
        return { ok: true, balance: balance - arg.amount }
      },
      credit: async (ctx: restate.ObjectContext, arg: { amount: number }): Promise<void> => {
        ctx.set("balance", ((await ctx.get<number>("balance")) ?? config.initial) + arg.amount)
      },
    },
  })

  /** Stock of one item: reserve → whether one was left; return puts one back. */
  const stock = restate.object({
    name: "stock",
    handlers: {
      reserve: async (ctx: restate.ObjectContext): Promise<boolean> => {
        const left = (await ctx.get<number>("left")) ?? config.stock
        if (left <= 0) return false
        ctx.set("left", left - 1)
        return true
      },
      return: async (ctx: restate.ObjectContext): Promise<void> => {
        ctx.set("left", ((await ctx.get<number>("left")) ?? config.stock) + 1)
      },
      count: restate.handlers.object.shared(async (ctx: restate.ObjectSharedContext): Promise<number> => (await ctx.get<number>("left")) ?? config.stock),
    },
  })

  const orders = restate.object({
    name: "orders",
    handlers: {
      order: async (ctx: restate.ObjectContext, arg: { items: number }): Promise<void> => {
        ctx.set("items", ((await ctx.get<number>("items")) ?? 0) + arg.items)
      },
      count: restate.handlers.object.shared(async (ctx: restate.ObjectSharedContext): Promise<number> => (await ctx.get<number>("items")) ?? 0),
    },
  })

  /** A cart: the same protocol as bench/apps/cart.ts (reserve by a call to the item, return and order by sends). */
  const cart = restate.object({
    name: "cart",
    handlers: {
      add: async (ctx: restate.ObjectContext, arg: { item: string }): Promise<{ ok: boolean }> => {
        const ok = await ctx.objectClient(stock, arg.item).reserve()
        if (ok) {
          const items = (await ctx.get<Record<string, number>>("items")) ?? {}
          ctx.set("items", { ...items, [arg.item]: (items[arg.item] ?? 0) + 1 })
        }
        return { ok }
      },
      remove: async (ctx: restate.ObjectContext, arg: { item: string }): Promise<{ ok: boolean }> => {
        const items = { ...((await ctx.get<Record<string, number>>("items")) ?? {}) }
        const have = items[arg.item] ?? 0
        if (have === 0) return { ok: false }
        if (have === 1) delete items[arg.item]
        else items[arg.item] = have - 1
        ctx.set("items", items)
        ctx.objectSendClient(stock, arg.item).return()
        return { ok: true }
      },
      checkout: async (ctx: restate.ObjectContext): Promise<{ items: number }> => {
        const items = (await ctx.get<Record<string, number>>("items")) ?? {}
        const n = Object.values(items).reduce((a, b) => a + b, 0)
        if (n > 0) {
          ctx.objectSendClient(orders, ctx.key).order({ items: n })
          ctx.clear("items")
        }
        return { items: n }
      },
    },
  })

  return [counter, fib, account, stock, orders, cart] as const
}

// The shopping cart of Portals, on Eddy's actors: carts reserve stock from the Inventory (a workflow serving a
// portal) and give it back when an item is removed; checked-out carts become Orders, which feed Analytics (the
// top-100 items). A seeded generator of client requests drives it.
//
//   eddy run examples/shopping-cart [--users 100] [--items 200] [--stock 100] [--requests 20000] [--seed 1]
import { Actors, type ActorRef } from "eddy/actors"
import { Portal } from "eddy/portals"
import { App, AppArgs, Sink, Source, Workflow, type CommittedStateReader } from "eddy/workflows"

export type CartMsg = { readonly op: "add"; readonly item: string } | { readonly op: "remove"; readonly item: string } | { readonly op: "checkout" }
type CartState = { readonly items: Readonly<Record<string, number>>; readonly checkouts: number }
type StockReq = { readonly op: "reserve" | "return"; readonly item: string; readonly qty: number }
type StockRep = { readonly ok: boolean }
type OrderMsg = { readonly order: number; readonly user: string; readonly items: Readonly<Record<string, number>> }
type OrdersState = { readonly orders: number; readonly items: number }
type AnalyticsMsg = { readonly sold: Readonly<Record<string, number>> } | { readonly top: number }
type AnalyticsState = { readonly counts: Readonly<Record<string, number>>; readonly checkouts: number }

export const inventory = Portal.define<StockReq, StockRep>("inventory", { key: (r) => r.item })

export interface ShopOptions {
  readonly users: number
  readonly items: number
  readonly stock: number
  readonly requests: number
  readonly seed: number
}

/** Top `n` items by count, ties broken by name: deterministic. */
export const topItems = (counts: Readonly<Record<string, number>>, n: number): Array<readonly [string, number]> =>
  Object.entries(counts)
    .sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1))
    .slice(0, n)

const reserved = Actors.continuation<StockRep, { item: string }, CartState>("reserved", (_ctx, reply, data, state) =>
  reply.ok ? { ...state, items: { ...state.items, [data.item]: (state.items[data.item] ?? 0) + 1 } } : Actors.same,
)

export const analytics = Actors.define<AnalyticsMsg, AnalyticsState>("analytics", {
  initial: { counts: {}, checkouts: 0 },
  receive(ctx, msg, state) {
    if ("top" in msg) {
      ctx.reply(topItems(state.counts, Math.min(msg.top, 100)))
      return Actors.same
    }
    const counts = { ...state.counts }
    for (const [item, qty] of Object.entries(msg.sold)) counts[item] = (counts[item] ?? 0) + qty
    // Every item's count is kept (one entry per item sold): dropping all but the top 100 here would reset an item
    // that fell out of the top 100 to zero when it sells again, and the top 10 would miss items that belong in it.
    return { counts, checkouts: state.checkouts + 1 }
  },
})

export const orders = Actors.define<OrderMsg, OrdersState>("orders", {
  initial: { orders: 0, items: 0 },
  receive(ctx, msg, state) {
    // A user's orders arrive in checkout order, numbered from 1 (sends from one actor to another keep their order).
    if (msg.order !== state.orders + 1) throw new Error(`order ${msg.order} of ${msg.user} after ${state.orders} orders`)
    const n = Object.values(msg.items).reduce((a, b) => a + b, 0)
    ctx.send<AnalyticsMsg>({ type: "analytics", id: "top" }, { sold: msg.items })
    return { orders: state.orders + 1, items: state.items + n }
  },
})

export const cart = Actors.define<CartMsg, CartState>("cart", {
  initial: { items: {}, checkouts: 0 },
  continuations: [reserved],
  receive(ctx, msg, state) {
    switch (msg.op) {
      case "add":
        ctx.ask(inventory, { op: "reserve", item: msg.item, qty: 1 }).then(reserved, { item: msg.item })
        return Actors.same
      case "remove": {
        const have = state.items[msg.item] ?? 0
        if (have === 0) return Actors.same
        ctx.ask(inventory, { op: "return", item: msg.item, qty: 1 })
        const items = { ...state.items }
        if (have === 1) delete items[msg.item]
        else items[msg.item] = have - 1
        return { ...state, items }
      }
      case "checkout": {
        if (Object.keys(state.items).length === 0) return Actors.same
        const ordersRef: ActorRef<OrderMsg> = { type: "orders", id: ctx.self.id }
        ctx.send(ordersRef, { order: state.checkouts + 1, user: ctx.self.id, items: state.items })
        return { items: {}, checkouts: state.checkouts + 1 }
      }
    }
  },
})

/** Seeded client requests: mostly adds, some removes and checkouts. */
export function* requests(o: ShopOptions): Generator<{ readonly user: string; readonly msg: CartMsg }> {
  let s = o.seed >>> 0
  const rnd = () => {
    s = (s + 0x6d2b79f5) | 0
    let t = s
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
  for (let i = 0; i < o.requests; i++) {
    const user = `u${Math.floor(rnd() * o.users)}`
    const item = `item${Math.floor(rnd() * o.items)}`
    const r = rnd()
    yield { user, msg: r < 0.6 ? { op: "add", item } : r < 0.8 ? { op: "remove", item } : { op: "checkout" } }
  }
  // Every user checks out at the end, so the run ends with most items sold.
  for (let u = 0; u < o.users; u++) yield { user: `u${u}`, msg: { op: "checkout" } }
}

/** The Inventory workflow: the replier of the `inventory` portal, `initialStock` units of every item. */
export const inventoryWorkflow = (initialStock: number) =>
  Workflow.create("inventory", (wf) => {
    wf.source(Source.empty<never>())
      .via(
        Portal.replier<StockReq, StockRep, never, never, number>(inventory, (ctx, req) => {
          const have = ctx.state.get(initialStock)
          if (req.op === "return") {
            ctx.state.set(have + req.qty)
            ctx.reply({ ok: true })
          } else if (have >= req.qty) {
            ctx.state.set(have - req.qty)
            ctx.reply({ ok: true })
          } else ctx.reply({ ok: false })
        }, { name: "stock" }),
      )
      .sink(Sink.discard("inventory.none"))
  })

export const shoppingCartApp = (o: ShopOptions) => {
  const system = Actors.system({ name: "shop", behaviors: [cart, orders, analytics] })
  const stock = inventoryWorkflow(o.stock)
  const clients = Workflow.create("clients", (wf) => {
    system.input(wf.source(Source.generator(() => requests(o), { name: "requests", atomSize: 1 })).map((r) => system.tell(system.ref(cart, r.user), r.msg)))
  })
  const report = async (state: CommittedStateReader): Promise<string> => {
    let inStock = 0
    let inCarts = 0
    let sold = 0
    let checkouts = 0
    for (let i = 0; i < o.items; i++) {
      const s = (await state.query("inventory/stock", `item${i}`)) as number | undefined
      const left = s ?? o.stock
      if (left < 0) throw new Error(`invariant broken: item${i} has negative stock ${left}`)
      inStock += left
    }
    for (const key of await state.keys(system.task)) {
      const rec = (await state.query(system.task, key)) as { b: string; s: unknown }
      if (rec.b === "cart") for (const q of Object.values((rec.s as CartState).items)) inCarts += q
      if (rec.b === "orders") {
        sold += (rec.s as OrdersState).items
        checkouts += (rec.s as OrdersState).orders
      }
    }
    const top = (await state.query(system.task, ["analytics", "top"])) as { s: AnalyticsState } | undefined
    const initial = o.items * o.stock
    if (inStock + inCarts + sold !== initial) throw new Error(`invariant broken: stock ${inStock} + in carts ${inCarts} + sold ${sold} != initial ${initial}`)
    const top10 = topItems(top?.s.counts ?? {}, 10)
    return [
      `checkouts: ${checkouts}`,
      `items sold: ${sold}`,
      `top 10: ${top10.map(([item, n]) => `${item} (${n})`).join(", ")}`,
      `invariants: stock never negative; stock ${inStock} + in carts ${inCarts} + sold ${sold} = initial ${initial}`,
    ].join("\n")
  }
  return App.define({ name: "shopping-cart", workflows: [stock, clients, system.workflow], views: [system.view], report })
}

export default (args: AppArgs) =>
  shoppingCartApp({
    users: args.int("users", 100),
    items: args.int("items", 200),
    stock: args.int("stock", 100),
    requests: args.int("requests", 20000),
    seed: args.int("seed", 1),
  })

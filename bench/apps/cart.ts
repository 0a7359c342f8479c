// The shopping-cart mix of examples/shopping-cart, answered to a client: carts reserve stock from item actors
// (ask) and give it back when an item is removed; a checkout empties the cart into the user's orders actor.
//
//   cart/<user>  { op: "add", item }    → { ok }        (ok: the item was in stock and is now in the cart)
//   cart/<user>  { op: "remove", item } → { ok }        (ok: the cart had it; the stock gets it back)
//   cart/<user>  { op: "checkout" }     → { items }     (how many items were ordered)
//   stock/<item> { op: "count" }        → number        (items left)
//   orders/<user> { op: "count" }       → number        (items ordered so far)
import { Actors, type ActorSystem } from "eddy/actors"
import { App, AppArgs } from "eddy/workflows"

export type CartMsg = { readonly op: "add"; readonly item: string } | { readonly op: "remove"; readonly item: string } | { readonly op: "checkout" }
type StockMsg = { readonly op: "reserve" } | { readonly op: "return" } | { readonly op: "count" }
type OrdersMsg = { readonly op: "order"; readonly items: number } | { readonly op: "count" }
type CartState = Readonly<Record<string, number>>

let system: ActorSystem | undefined

const reserved = Actors.continuation<boolean, { item: string }, CartState>("reserved", (ctx, ok, data, items) => {
  ctx.reply({ ok })
  return ok ? { ...items, [data.item]: (items[data.item] ?? 0) + 1 } : Actors.same
})

export const cartBehavior = Actors.define<CartMsg, CartState>("cart", {
  initial: {},
  continuations: [reserved],
  receive(ctx, msg, items) {
    switch (msg.op) {
      case "add":
        ctx.ask(system!.portal, system!.askRequest<StockMsg>({ type: "stock", id: msg.item }, { op: "reserve" })).then(reserved, { item: msg.item })
        return Actors.same
      case "remove": {
        const have = items[msg.item] ?? 0
        ctx.reply({ ok: have > 0 })
        if (have === 0) return Actors.same
        ctx.send<StockMsg>({ type: "stock", id: msg.item }, { op: "return" })
        const next = { ...items }
        if (have === 1) delete next[msg.item]
        else next[msg.item] = have - 1
        return next
      }
      case "checkout": {
        const n = Object.values(items).reduce((a, b) => a + b, 0)
        if (n > 0) ctx.send<OrdersMsg>({ type: "orders", id: ctx.self.id }, { op: "order", items: n })
        ctx.reply({ items: n })
        return n > 0 ? {} : Actors.same
      }
    }
  },
})

export const stockBehavior = (stock: number) =>
  Actors.define<StockMsg, number>("stock", {
    initial: stock,
    receive(ctx, msg, left) {
      if (msg.op === "count") {
        ctx.reply(left)
        return Actors.same
      }
      if (msg.op === "return") return left + 1
      ctx.reply(left > 0)
      return left > 0 ? left - 1 : Actors.same
    },
  })

export const ordersBehavior = Actors.define<OrdersMsg, number>("orders", {
  initial: 0,
  receive(ctx, msg, n) {
    if (msg.op === "count") {
      ctx.reply(n)
      return Actors.same
    }
    return n + msg.items
  },
})

export const cartSystem = (stock: number): ActorSystem => {
  system = Actors.system({ name: "shop", behaviors: [cartBehavior, stockBehavior(stock), ordersBehavior] })
  return system
}

export const cartApp = (stock: number, s = cartSystem(stock)) => App.define({ name: "shop", workflows: [s.workflow], views: [s.view] })

export default (args: AppArgs) => cartApp(args.int("stock", 100))

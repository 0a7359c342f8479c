// The shopping cart fed from Kafka and publishing to Kafka: client requests come from a topic (Source.kafka, one split
// per topic partition, malformed records to a dead-letter topic), and every order is published to an egress topic
// (Sink.kafka through the actor system's output). Same actors as examples/shopping-cart.
//
//   eddy cluster test/apps/shopKafka.ts --in TOPIC --in-partitions N --out TOPIC --dlq TOPIC [--stock 20 --items 40]
import { Actors } from "eddy/actors"
import { App, AppArgs, Sink, Source, Workflow, type KafkaRecord } from "eddy/workflows"
import { analytics, cart, inventoryWorkflow, orders, type CartMsg } from "../../examples/shopping-cart/app.ts"

export interface ShopRequest {
  readonly user: string
  readonly msg: CartMsg
}

const ops = new Set(["add", "remove", "checkout"])

/** A request record: JSON {user, msg}; anything else is malformed. */
export const decodeRequest = (r: KafkaRecord): ShopRequest => {
  if (r.value === null) throw new Error("record has no value")
  const x = JSON.parse(Buffer.from(r.value).toString("utf8")) as Partial<ShopRequest>
  if (typeof x.user !== "string" || typeof x.msg !== "object" || x.msg === null || !ops.has(x.msg.op)) throw new Error("not a cart request {user, msg: {op}}")
  if (x.msg.op !== "checkout" && typeof x.msg.item !== "string") throw new Error(`'${x.msg.op}' needs an item`)
  return x as ShopRequest
}

/** Orders, also published: the output of the run. */
const ordersOut = Actors.define<Parameters<typeof orders.receive>[1], ReturnType<typeof orders.initial>>("orders", {
  initial: orders.initial,
  receive(ctx, msg, state) {
    ctx.output({ user: ctx.self.id, order: msg.order, items: msg.items })
    return orders.receive(ctx, msg, state)
  },
})

export interface ShopKafkaOptions {
  readonly input: string
  readonly inputPartitions: number
  readonly output: string
  readonly deadLetters: string
  readonly stock: number
}

export const shopKafkaApp = (o: ShopKafkaOptions) => {
  const system = Actors.system({
    name: "shop",
    behaviors: [cart, ordersOut, analytics],
    output: Sink.kafka<unknown>({ topic: o.output, key: (x) => (x as { user: string }).user }),
  })
  const stock = inventoryWorkflow(o.stock)
  const clients = Workflow.create("clients", (wf) => {
    const requests = wf.source(
      Source.kafka({ topic: o.input, partitions: o.inputPartitions, decode: decodeRequest, deadLetterTopic: o.deadLetters, bounded: true, name: "requests" }),
    )
    system.input(requests.map((r) => system.tell(system.ref(cart, r.user), r.msg)))
  })
  return App.define({ name: "shop-kafka", workflows: [stock, clients, system.workflow], views: [system.view] })
}

export default (args: AppArgs) =>
  shopKafkaApp({
    input: args.string("in", "shop-requests"),
    inputPartitions: args.int("in-partitions", 1),
    output: args.string("out", "shop-orders"),
    deadLetters: args.string("dlq", "shop-dead-letters"),
    stock: args.int("stock", 20),
  })

// Counters whose requests come from a Kafka topic and whose answers go to another (ActorSystemOptions.kafka).
//
//   eddy run test/apps/kafkaCounters.ts --requests TOPIC --replies TOPIC [--partitions 2]
import { Actors } from "eddy/actors"
import { App, AppArgs } from "eddy/workflows"
import { counter } from "../../examples/counter/app.ts"

export const kafkaCountersApp = (o: { readonly requests: string; readonly replies: string; readonly partitions: number }) => {
  const system = Actors.system({ name: "counters", behaviors: [counter], kafka: o })
  return App.define({ name: "kafka-counters", workflows: [system.workflow], views: [system.view] })
}

export default (args: AppArgs) => kafkaCountersApp({ requests: args.string("requests", "counter-requests"), replies: args.string("replies", "counter-replies"), partitions: args.int("partitions", 2) })

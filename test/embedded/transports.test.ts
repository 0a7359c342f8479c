import { Context, Effect, Layer } from "effect"
import { InProcessTransport } from "../../runtime/embedded/InProcessTransport.ts"
import { Transport } from "../../runtime/ports/Transport.ts"
import { transportContract } from "../contracts/transportContract.ts"

// One process: every node is the same in-process transport, which hosts every endpoint.
transportContract("InProcessTransport", () =>
  Effect.map(Layer.build(InProcessTransport.layer), (ctx) => {
    const transport = Context.get(ctx, Transport)
    return { node: () => Effect.succeed(transport), sharesEndpoints: true }
  }),
)

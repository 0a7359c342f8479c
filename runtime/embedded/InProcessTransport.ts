import { Effect, Layer, Queue } from "effect"
import { Transport } from "../ports/Transport.ts"
import type { Envelope } from "../ports/Transport.ts"

/** Every endpoint in this process: one FIFO, so delivery is in order per sender and receiver (and overall). */
export const InProcessTransport = {
  layer: Layer.effect(
    Transport,
    Effect.gen(function* () {
      const queue = yield* Queue.unbounded<{ readonly to: number; readonly env: Envelope }>()
      return {
        send: (to: number, env: Envelope) => Queue.offer(queue, { to, env }).pipe(Effect.asVoid),
        receive: Queue.take(queue),
      }
    }),
  ),
}

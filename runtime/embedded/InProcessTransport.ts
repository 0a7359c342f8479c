import { Effect, Layer } from "effect"
import { Mailbox } from "../ports/Mailbox.ts"
import { Transport } from "../ports/Transport.ts"
import type { Envelope } from "../ports/Transport.ts"

/** Every endpoint in this process: one FIFO, so delivery is in order per sender and receiver (and overall). */
export const InProcessTransport = {
  layer: Layer.sync(Transport, () => {
    const inbox = new Mailbox<{ readonly to: number; readonly env: Envelope }>()
    return {
      send: (to: number, env: Envelope) => Effect.sync(() => inbox.offer({ to, env })),
      receive: inbox.take,
      receiveWithin: (ms: number) => inbox.takeWithin(ms),
    }
  }),
}

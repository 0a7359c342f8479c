import { targetString, type Answer, type EddyClient, type RequestOptions, type StateOptions, type Target } from "../../client/Client.ts"
import { clientError } from "../../client/errors.ts"
import type { StateAccess } from "./HttpFront.ts"
import { FrontError, type RequestFront } from "./RequestFront.ts"

const rethrow = (err: unknown): never => {
  if (err instanceof FrontError) throw clientError(err.tag, err.message)
  throw err
}

/** The client API in the app's own process: requests go straight into the front, no HTTP in between. */
export const localClient = (front: RequestFront, state: StateAccess): EddyClient => {
  const request = (target: Target, message: unknown, ask: boolean, options: RequestOptions) =>
    front
      .submit({
        target: targetString(target),
        message,
        ask,
        ...(options.idempotencyKey === undefined ? {} : { key: options.idempotencyKey }),
        ...(options.timeoutMs === undefined ? {} : { timeoutMs: options.timeoutMs }),
      })
      .catch(rethrow)
  return {
    ask: async <R>(target: Target, message: unknown, options: RequestOptions = {}): Promise<Answer<R>> => {
      const a = await request(target, message, true, options)
      return { reply: a.reply as R, epoch: a.epoch }
    },
    tell: async (target, message, options = {}) => ({ epoch: (await request(target, message, false, options)).epoch }),
    // Reads happen at the next commit boundary, after any epoch whose answer the caller holds: minEpoch holds.
    state: async <S>(target: Target, _options: StateOptions = {}): Promise<S | undefined> =>
      (await front.readState(state, targetString(target)).catch(rethrow)).state as S | undefined,
    list: (type) => front.listIds(state, type).catch(rethrow),
    close: () => Promise.resolve(),
  }
}

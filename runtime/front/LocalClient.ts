import { targetString, type Answer, type EddyClient, type RequestOptions, type StateOptions, type Target } from "../../client/Client.ts"
import { clientError, UnknownActorType, InvalidPayload } from "../../client/errors.ts"
import type { StateAccess } from "./HttpFront.ts"
import { FrontError, type RequestFront } from "./RequestFront.ts"

const rethrow = (err: unknown): never => {
  if (err instanceof FrontError) throw clientError(err.tag, err.message)
  throw err
}

/** The client API in the app's own process: requests go straight into the front, no HTTP in between. */
export const localClient = (front: RequestFront, state: StateAccess): EddyClient => {
  const view = (target: Target) => {
    const spec = targetString(target)
    const slash = spec.indexOf("/")
    if (slash <= 0) throw new InvalidPayload(`target '${spec}' is not of the form type/id`)
    try {
      const v = front.endpointOf(spec.slice(0, slash)).view
      return { v, key: v.key(spec) }
    } catch (err) {
      if (err instanceof FrontError) throw new UnknownActorType(err.message)
      throw err
    }
  }
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
    state: async <S>(target: Target, _options: StateOptions = {}): Promise<S | undefined> => {
      // Reads happen at the next commit boundary, after any epoch whose answer the caller holds: minEpoch holds.
      const { v, key } = view(target)
      if (key === undefined) return undefined
      return state.read((r) => {
        const value = r.get(v.task, key)
        return (value === undefined ? undefined : v.show(value)) as S | undefined
      })
    },
    list: async (type) => {
      const { v } = view(`${type}/x`)
      return state.read((r) => {
        const out: string[] = []
        for (const key of r.keys(v.task)) {
          const d = v.describe(key)
          if (d.group === type && v.show(r.get(v.task, key)) !== undefined) out.push(d.spec.slice(type.length + 1))
        }
        return out
      })
    },
    close: () => Promise.resolve(),
  }
}

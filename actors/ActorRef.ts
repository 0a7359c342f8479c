/**
 * The address of an actor: its type (the behavior it was created with) and id. Plain data, so it travels inside
 * messages and state. `M` is the message type the actor accepts: sending anything else is a compile error.
 */
export interface ActorRef<M> {
  readonly type: string
  readonly id: string
  /**
   * Phantom, never present at run time: makes refs contravariant in M, like a function taking M. A ref accepting
   * `A | B` can stand where a ref accepting `A` is expected; `ActorRef<never>` is "any ref".
   */
  readonly __message?: (m: M) => void
}

/** Ids chosen by users may not contain '#': spawned actors' ids are `<parent id>#<n>`, so the two never collide. */
export const isSpawnedId = (id: string): boolean => id.includes("#")

export const checkUserId = (id: string): string => {
  if (typeof id !== "string" || id.length === 0) throw new TypeError(`an actor id must be a non-empty string, got ${String(id)}`)
  if (isSpawnedId(id)) throw new TypeError(`actor id '${id}' may not contain '#': ids with '#' are reserved for spawned actors`)
  return id
}

export const refString = (ref: ActorRef<never>): string => `${ref.type}/${ref.id}`

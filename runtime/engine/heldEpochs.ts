const NONE: ReadonlyArray<never> = []

/**
 * Removes and returns, in epoch order, what `held` keeps for epochs before `e`. COMMITTED(e) is cumulative (the
 * coordinator commits in order), so whatever is still held for an earlier epoch lost its own COMMITTED on the way and
 * is committed too. Allocates nothing in the usual case, where nothing earlier is held.
 */
export const takeBefore = <V>(held: Map<number, V>, e: number): ReadonlyArray<readonly [number, V]> => {
  let earlier: Array<[number, V]> | undefined
  for (const [k, v] of held) if (k < e) (earlier ??= []).push([k, v])
  if (earlier === undefined) return NONE
  for (const [k] of earlier) held.delete(k)
  return earlier.sort((a, b) => a[0] - b[0])
}

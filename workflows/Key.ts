/** A key: what `keyBy` returns. Primitives and tuples of them, so that every key has one canonical encoding. */
export type Key = string | number | bigint | boolean | ReadonlyArray<Key>

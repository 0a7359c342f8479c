/**
 * What a kafkajs failure says, walking its `cause` chain (KafkaJSNumberOfRetriesExceeded → KafkaJSConnectionError).
 * No imports: the ingress's worker thread loads it without Effect (which takes ~1.3 s to load in a tsx worker).
 */
const chain = (e: unknown): Array<{ readonly name: string; readonly message: string; readonly type?: string }> => {
  const out: Array<{ name: string; message: string; type?: string }> = []
  let cur: unknown = e
  for (let i = 0; i < 8 && cur !== undefined && cur !== null; i++) {
    if (cur instanceof Error) {
      const type = (cur as { type?: unknown }).type
      out.push({ name: cur.name, message: cur.message, ...(typeof type === "string" ? { type } : {}) })
      const next = (cur as { cause?: unknown; originalError?: unknown }).cause ?? (cur as { originalError?: unknown }).originalError
      cur = next
    } else {
      out.push({ name: typeof cur, message: String(cur) })
      break
    }
  }
  return out
}

/** True when the failure is "no broker answers": refused, timed out, or unresolvable. */
export const isUnreachable = (e: unknown): boolean =>
  chain(e).some(
    (c) =>
      c.name === "KafkaJSConnectionError" ||
      c.name === "KafkaJSConnectionClosedError" ||
      /ECONNREFUSED|ETIMEDOUT|EHOSTUNREACH|ENOTFOUND|EAI_AGAIN|Connection timeout/i.test(c.message),
  )

/** The innermost message, which is usually the one that says what happened. */
export const reasonOf = (e: unknown): string => {
  const c = chain(e)
  const last = c.at(-1)
  const first = c[0]
  if (first === undefined || last === undefined) return String(e)
  return first === last || first.message === last.message ? first.message : `${first.message} (${last.message})`
}


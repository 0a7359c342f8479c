// The bank workload's invariant checker: given the client's log of accepted and rejected operations (with their
// replies) and the balances read at the end, is the run consistent with every accepted operation having taken
// effect exactly once and every rejected one not at all?

export type BankOp =
  | { readonly kind: "deposit"; readonly account: number; readonly amount: number; readonly balance: number }
  | { readonly kind: "transfer"; readonly from: number; readonly to: number; readonly amount: number; readonly ok: boolean; readonly balance: number }

export interface BankCheck {
  readonly ok: boolean
  readonly problems: ReadonlyArray<string>
  readonly expectedTotal: number
  readonly actualTotal: number
  readonly transfersAccepted: number
  readonly transfersRejected: number
  readonly deposits: number
}

/**
 * `balances[i]` is account i's balance at the end (all accounts start at `initial`). Checks, with up to
 * `maxProblems` reported:
 *  - the total equals the initial total plus the accepted deposits (transfers conserve money);
 *  - each account's balance equals initial + its deposits − its accepted debits + its accepted credits;
 *  - no reply and no final balance is negative; a rejected transfer was for more than the balance it reported.
 */
export const checkBank = (initial: number, balances: ReadonlyArray<number>, log: ReadonlyArray<BankOp>, maxProblems = 10): BankCheck => {
  const problems: string[] = []
  const problem = (p: string) => {
    if (problems.length < maxProblems) problems.push(p)
    else if (problems.length === maxProblems) problems.push("...")
  }
  const expected = new Array<number>(balances.length).fill(initial)
  let deposits = 0
  let accepted = 0
  let rejected = 0
  let depositSum = 0
  const inRange = (i: number) => Number.isInteger(i) && i >= 0 && i < balances.length
  for (const op of log) {
    if (op.balance < 0) problem(`a reply reported a negative balance: ${JSON.stringify(op)}`)
    if (op.kind === "deposit") {
      if (!inRange(op.account)) {
        problem(`deposit to unknown account ${op.account}`)
        continue
      }
      deposits++
      depositSum += op.amount
      expected[op.account]! += op.amount
    } else {
      if (!inRange(op.from) || !inRange(op.to)) {
        problem(`transfer between unknown accounts ${op.from} → ${op.to}`)
        continue
      }
      if (!op.ok) {
        rejected++
        if (op.amount <= op.balance && op.from !== op.to) problem(`transfer ${op.from} → ${op.to} of ${op.amount} was rejected although the payer reported ${op.balance}`)
        continue
      }
      accepted++
      expected[op.from]! -= op.amount
      expected[op.to]! += op.amount
    }
  }
  let actualTotal = 0
  for (let i = 0; i < balances.length; i++) {
    const b = balances[i]!
    actualTotal += b
    if (b < 0) problem(`account ${i} ends negative: ${b}`)
    if (b !== expected[i]) problem(`account ${i}: balance ${b}, recomputed from the log ${expected[i]}`)
  }
  const expectedTotal = initial * balances.length + depositSum
  if (actualTotal !== expectedTotal) problem(`total ${actualTotal} != initial total + deposits ${expectedTotal}`)
  return { ok: problems.length === 0, problems, expectedTotal, actualTotal, transfersAccepted: accepted, transfersRejected: rejected, deposits }
}

// The YCSB-style bank as an app: one virtual actor per account, every account starts with `initial`.
//
//   { op: "balance" }                  → { balance }
//   { op: "deposit", amount }          → { balance }                 (the workload's "write")
//   { op: "transfer", to, amount }     → { ok: true, balance } | { ok: false, balance }   (balance of the payer)
//
// A transfer is a debit of the payer and a message crediting the payee, produced by the same handler. What is
// atomic: the debit and the credit message commit in the same epoch record, so after a crash either both happened
// or neither did; once the credit message is committed it is processed exactly once (in the next round of the same
// epoch, or first thing in the next epoch if the round limit cut it off). The client's reply is released only after
// that commit. What is not atomic: a read of the payee in between may not see the credit yet (no isolation across
// two actors), so the bank's total is exact only when no transfer is in flight. The overdraft check runs in the
// payer's handler, which is the only writer of the payer's balance, so a balance never goes negative.
import { Actors } from "eddy/actors"
import { App, AppArgs } from "eddy/workflows"

export type AccountMsg =
  | { readonly op: "balance" }
  | { readonly op: "deposit"; readonly amount: number }
  | { readonly op: "transfer"; readonly to: string; readonly amount: number }
  | { readonly op: "credit"; readonly amount: number }

export type BankReply = { readonly ok: boolean; readonly balance: number }

export const accountBehavior = (initial: number) =>
  Actors.define<AccountMsg, number>("account", {
    initial,
    receive(ctx, msg, balance) {
      switch (msg.op) {
        case "balance":
          ctx.reply({ ok: true, balance } satisfies BankReply)
          return Actors.same
        case "deposit": {
          const next = balance + msg.amount
          ctx.reply({ ok: true, balance: next } satisfies BankReply)
          return next
        }
        case "credit":
          return balance + msg.amount
        case "transfer": {
          if (msg.amount > balance || msg.to === ctx.self.id) {
            ctx.reply({ ok: false, balance } satisfies BankReply)
            return Actors.same
          }
          ctx.send<AccountMsg>({ type: "account", id: msg.to }, { op: "credit", amount: msg.amount })
          ctx.reply({ ok: true, balance: balance - msg.amount } satisfies BankReply)
          return balance - msg.amount
        }
      }
    },
  })

export const bankSystem = (initial: number) => Actors.system({ name: "bank", behaviors: [accountBehavior(initial)] })

export const bankApp = (initial: number, system = bankSystem(initial)) => App.define({ name: "bank", workflows: [system.workflow], views: [system.view] })

export default (args: AppArgs) => bankApp(args.int("initial", 1000))

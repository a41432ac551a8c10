// Accounts: open, deposit, look up. Balances are int64 cents.
import { query, mutation } from "txfn/server";
import { cents, positiveCents } from "./lib/money.js";

// The account with this id; throws if there is none.
export async function accountOrThrow(ctx, id) {
  const account = await ctx.db.get(id);
  if (account === null) throw new Error(`no account ${id}`);
  return account;
}

// Opens an account with an optional initial balance; returns its id.
export const open = mutation({
  args: { owner: "string", initial: "any?" },
  handler: async (ctx, { owner, initial }) => {
    const balance = initial === undefined ? 0n : cents("initial", initial);
    if (balance < 0n) throw new Error("initial balance must not be negative");
    return ctx.db.insert("accounts", { owner, balance });
  },
});

// Adds money to an account; returns the new balance.
export const deposit = mutation({
  args: { id: "string", amount: "any" },
  handler: async (ctx, { id, amount }) => {
    const account = await accountOrThrow(ctx, id);
    const balance = account.balance + positiveCents("amount", amount);
    await ctx.db.patch(id, { balance });
    return balance;
  },
});

export const get = query({ args: { id: "string" }, handler: (ctx, { id }) => ctx.db.get(id) });

// Every account of an owner.
export const byOwner = query({
  args: { owner: "string" },
  handler: (ctx, { owner }) =>
    ctx.db.query("accounts").withIndex("by_owner", (q) => q.eq("owner", owner)).collect(),
});

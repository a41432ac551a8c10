// Transfers between two accounts: reads both, writes both, records the
// transfer. Fails, writing nothing, on insufficient funds.
import { query, mutation } from "txfn/server";
import { positiveCents } from "./lib/money.js";
import { accountOrThrow } from "./accounts.js";

export const transfer = mutation({
  args: { from: "string", to: "string", amount: "any", memo: "string?" },
  handler: async (ctx, { from, to, amount, memo }) => {
    const value = positiveCents("amount", amount);
    if (from === to) throw new Error("cannot transfer to the same account");
    const [src, dst] = await Promise.all([accountOrThrow(ctx, from), accountOrThrow(ctx, to)]);
    if (src.balance < value) {
      // `data` reaches the caller as the status's AppError payload (txfn/errors.h).
      const error = new Error(`insufficient funds: account ${from} has ${src.balance}, needs ${value}`);
      error.data = { code: "INSUFFICIENT_FUNDS", account: from, balance: src.balance, needed: value };
      throw error;
    }
    await ctx.db.patch(from, { balance: src.balance - value });
    await ctx.db.patch(to, { balance: dst.balance + value });
    const record = { from, to, amount: value };
    if (memo !== undefined) record.memo = memo;
    const id = await ctx.db.insert("transfers", record);
    return { id, fromBalance: src.balance - value, toBalance: dst.balance + value };
  },
});

// An account's latest transfers, both directions, newest first.
export const history = query({
  args: { account: "string", n: "any?" },
  handler: async (ctx, { account, n }) => {
    const limit = n === undefined ? 20 : Number(n);
    const out = await ctx.db.query("transfers").withIndex("by_from", (q) => q.eq("from", account))
        .order("desc").take(limit);
    const incoming = await ctx.db.query("transfers").withIndex("by_to", (q) => q.eq("to", account))
        .order("desc").take(limit);
    return out.map((t) => ({ ...t, direction: "out" }))
        .concat(incoming.map((t) => ({ ...t, direction: "in" })))
        .sort((a, b) => b._creationTime - a._creationTime)
        .slice(0, limit);
  },
});

// One page of every transfer out of an account, oldest first.
export const page = query({
  args: { account: "string", cursor: "any?", numItems: "any?" },
  handler: (ctx, { account, cursor, numItems }) =>
    ctx.db.query("transfers").withIndex("by_from", (q) => q.eq("from", account))
        .paginate({ cursor: cursor ?? null, numItems: Number(numItems ?? 10) }),
});

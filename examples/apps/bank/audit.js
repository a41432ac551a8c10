// Audit: the sum of all balances. Transfers never change it.
import { query } from "txfn/server";

export const total = query(async (ctx) => {
  const accounts = await ctx.db.query("accounts").collect();
  let sum = 0n;
  for (const a of accounts) sum += a.balance;
  return { accounts: accounts.length, total: sum };
});

// What a well-behaved tenant does; the sandbox suite calls it after every
// attack, for the attacker and for a bystander tenant.
import { query, mutation } from "txfn/server";

export const count = query(async (ctx) => (await ctx.db.query("items").collect()).length);
export const answer = query(async () => [6 * 7, typeof SharedArrayBuffer, Date.now() > 0]);
export const add = mutation(async (ctx, { k }) => ctx.db.insert("items", { k }));

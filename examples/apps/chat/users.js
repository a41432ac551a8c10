import { query, mutation } from "txfn/server";
import { requireText } from "./lib/util.js";

// The user named `name`, or null.
export async function findUser(ctx, name) {
  return ctx.db.query("users").withIndex("by_name", (q) => q.eq("name", name)).unique();
}

// Creates the user if missing; returns its id either way.
export const register = mutation({
  args: { name: "string", status: "string?" },
  handler: async (ctx, { name, status }) => {
    requireText("name", name, 64);
    const existing = await findUser(ctx, name);
    if (existing !== null) return existing._id;
    return ctx.db.insert("users", status === undefined ? { name } : { name, status });
  },
});

export const setStatus = mutation({
  args: { name: "string", status: "string" },
  handler: async (ctx, { name, status }) => {
    const user = await findUser(ctx, name);
    if (user === null) throw new Error(`no user named ${name}`);
    await ctx.db.patch(user._id, { status: requireText("status", status, 140) });
    return null;
  },
});

export const get = query({ args: { name: "string" }, handler: (ctx, { name }) => findUser(ctx, name) });

export const list = query(async (ctx) => ctx.db.query("users").withIndex("by_name").collect());

import { query, mutation } from "txfn/server";
import { requireText } from "./lib/util.js";

export async function findChannel(ctx, name) {
  return ctx.db.query("channels").withIndex("by_name", (q) => q.eq("name", name)).unique();
}

// Creates the channel if missing; returns its id either way.
export const create = mutation({
  args: { name: "string", topic: "string?" },
  handler: async (ctx, { name, topic }) => {
    requireText("channel name", name, 64);
    const existing = await findChannel(ctx, name);
    if (existing !== null) return existing._id;
    return ctx.db.insert("channels", topic === undefined ? { name } : { name, topic });
  },
});

export const list = query(async (ctx) =>
  ctx.db.query("channels").withIndex("by_name").collect());

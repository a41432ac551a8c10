// Messages of a channel: send, the latest N, pages in time order, likes.
import { query, mutation } from "txfn/server";
import { requireText, clampCount } from "./lib/util.js";
import { findChannel } from "./channels.js";
import { findUser } from "./users.js";

async function channelOrThrow(ctx, name) {
  const channel = await findChannel(ctx, name);
  if (channel === null) throw new Error(`no channel named ${name}`);
  return channel;
}

// Sends a message; the author must be a registered user. Returns its id.
export const send = mutation({
  args: { channel: "string", author: "string", body: "string" },
  handler: async (ctx, { channel, author, body }) => {
    const ch = await channelOrThrow(ctx, channel);
    if ((await findUser(ctx, author)) === null) throw new Error(`no user named ${author}`);
    return ctx.db.insert("messages", {
      channel: ch._id, author, body: requireText("body", body, 2000), likes: 0n,
    });
  },
});

// The latest `n` messages of a channel (default 20), newest first.
export const latest = query({
  args: { channel: "string", n: "any?" },
  handler: async (ctx, { channel, n }) => {
    const ch = await channelOrThrow(ctx, channel);
    return ctx.db.query("messages").withIndex("by_channel", (q) => q.eq("channel", ch._id))
        .order("desc").take(clampCount(n, 20, 200));
  },
});

// One page of a channel's messages, oldest first: {page, continueCursor, isDone}.
export const page = query({
  args: { channel: "string", cursor: "any?", numItems: "any?" },
  handler: async (ctx, { channel, cursor, numItems }) => {
    const ch = await channelOrThrow(ctx, channel);
    return ctx.db.query("messages").withIndex("by_channel", (q) => q.eq("channel", ch._id))
        .paginate({ cursor: cursor ?? null, numItems: clampCount(numItems, 10, 100) });
  },
});

// Adds one like; returns the new count (a BigInt).
export const like = mutation({
  args: { id: "string" },
  handler: async (ctx, { id }) => {
    const msg = await ctx.db.get(id);
    if (msg === null) throw new Error(`no message ${id}`);
    const likes = msg.likes + 1n;
    await ctx.db.patch(id, { likes });
    return likes;
  },
});

// Messages of an author in a channel with at least `minLikes` likes (a filter over the index).
export const popularBy = query({
  args: { author: "string", minLikes: "any?" },
  handler: async (ctx, { author, minLikes }) => {
    const min = BigInt(minLikes ?? 1);
    return ctx.db.query("messages").withIndex("by_author", (q) => q.eq("author", author))
        .order("desc").filter((m) => m.likes >= min).take(20);
  },
});

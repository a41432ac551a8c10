// A fuzzer for the ctx.db natives: from a seed (or the fuzzer's bytes), calls
// random natives with random argument shapes (Proxies, throwing and spinning
// getters, huge and odd strings, cyclic objects, BigInts, symbols, sparse and
// array-like objects) and sometimes spins, so a termination lands at a random
// point. Every error is caught: what is checked is that the process
// survives and the call ends with one of the statuses the runtime promises.
import { query, mutation } from "txfn/server";

function rng(seed) {
  let s = BigInt.asUintN(64, BigInt(seed) + 0x9e3779b97f4a7c15n);
  return () => {
    s = BigInt.asUintN(64, s + 0x9e3779b97f4a7c15n);
    let z = s;
    z = BigInt.asUintN(64, (z ^ (z >> 30n)) * 0xbf58476d1ce4e5b9n);
    z = BigInt.asUintN(64, (z ^ (z >> 27n)) * 0x94d049bb133111ebn);
    return Number((z ^ (z >> 31n)) & 0xffffffffn);
  };
}

function fuzz(ctx, bytes, seed) {
  let i = 0;
  const fallback = rng(seed);
  const next = () => (bytes !== undefined && i < bytes.length ? bytes[i++] : fallback() & 0xff);
  const pick = (a) => a[next() % a.length];
  const spinFor = (ms) => { const end = Date.now() + ms; let x = 0; for (let k = 0; k < ms * 20000; ++k) x += k; return x; };
  const deadline = { spin: () => { for (;;) {} } };

  function value(depth) {
    switch (next() % 24) {
      case 0: return null;
      case 1: return undefined;
      case 2: return next() - 128;
      case 3: return BigInt(next()) << BigInt(next() % 70);
      case 4: return pick([NaN, Infinity, -Infinity, -0, 2 ** 53, 1e308]);
      case 5: return "s".repeat(next() % 8);
      case 6: return "x".repeat(2 ** (10 + (next() % 19)));
      case 7: return Symbol("s");
      case 8: return () => 1;
      case 9: return new Proxy({}, { get() { throw new Error("trap"); }, ownKeys() { throw new Error("keys"); } });
      case 10: return new Proxy([1, 2], {});
      case 11: { const o = { a: 1 }; o.self = o; return o; }
      case 12: return { get boom() { throw new Error("getter"); } };
      case 13: return next() % 8 === 0 ? { get spin() { return deadline.spin(); } } : { ok: 1 };
      case 14: { const a = []; a[next() * 1000] = 1; return a; }
      case 15: return { length: 2 ** (next() % 54) };
      case 16: return new Uint8Array(next());
      case 17: return new ArrayBuffer(next() * 16);
      case 18: return depth > 3 ? 1 : [value(depth + 1), value(depth + 1)];
      case 19: return depth > 3 ? 1 : { k: value(depth + 1), [String(next())]: value(depth + 1) };
      case 20: return new Date(0);
      case 21: return new Map([[1, 2]]);
      case 22: return Object.create(null);
      default: return pick(["items", "by_k", "by_id", "_id", "k", "", "items\0"]);
    }
  }

  const ops = [
    () => ctx.db.get(value(0)),
    () => ctx.db.insert(value(0), value(0)),
    () => ctx.db.insert("items", value(0)),
    () => ctx.db.patch(value(0), value(0)),
    () => ctx.db.replace(value(0), value(0)),
    () => ctx.db.delete(value(0)),
    () => ctx.db.query(value(0)).take(value(0)),
    () => ctx.db.query("items").withIndex(value(0), (r) => r.eq(value(0), value(0))).collect(),
    () => ctx.db.query("items").withIndex("by_k", (r) => r.gt("k", value(0)).lt("k", value(0))).take(3),
    () => ctx.db.query("items").paginate(value(0)),
    () => ctx.db.query("items").paginate({ numItems: value(0), cursor: value(0) }),
    () => ctx.db.query("items").order(value(0)).first(),
    () => ctx.db.query("items").filter(value(0)).take(2),
    () => {
      const q = ctx.db.query("items").withIndex("by_k");
      q.range.eqFields = value(0);
      q.range.eqValues = value(0);
      q.range.lower = value(0);
      q.range.upper = value(0);
      return q.take(2);
    },
    () => Object.getPrototypeOf(ctx.db.query("items")).page.call(value(0), value(0), value(0)),
    () => { if (next() % 4 === 0) spinFor(next()); },
  ];
  const calls = 1 + (next() % 12);
  const rethrow = next() % 4 === 0;  // let an error reach the runtime, now and then
  const results = [];
  for (let c = 0; c < calls; ++c) {
    try {
      const r = pick(ops)();
      if (r && typeof r.then === "function") {
        results.push(rethrow ? r : r.then(() => "ok", (e) => String(e).slice(0, 40)));
      } else {
        results.push("ok");
      }
    } catch (e) {
      if (rethrow) throw e;
      results.push(String(e).slice(0, 40));
    }
  }
  return Promise.all(results).then((r) => r.length);
}

const input = (bytes) => (bytes instanceof ArrayBuffer ? new Uint8Array(bytes) : undefined);
export const runQuery = query(async (ctx, { seed, bytes }) => fuzz(ctx, input(bytes), seed ?? 0));
export const runMutation = mutation(async (ctx, { seed, bytes }) =>
  fuzz(ctx, input(bytes), seed ?? 0));

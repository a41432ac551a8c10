// Attempts to carry state from one request to the next of the same tenant on
// the same isolate, for tests/hardened_test.cc. Each attack is a pair:
// leave_<name> tries every way it knows to leave a mark (catching what the
// sandbox refuses, and reporting how many of its tries were refused), and
// look_<name>, run next on the same isolate, answers "clean" when it finds no
// mark, else what it found. Both must hold in every context mode: a fresh
// context forgets everything, a hardened one refuses the writes or starts
// the state fresh.
import { query, mutation } from "txfn/server";

const MARK = "mark-" + 42;
// Runs each try, counting the refused ones (a TypeError from a frozen object).
function tries(...fns) {
  let refused = 0;
  for (const f of fns) {
    try { f(); } catch (e) { refused++; }
  }
  return refused;
}
const q = (f) => query(f);
const proto = Object.getPrototypeOf;

// ---- Frozen objects: globals, built-ins, txfn's own objects ----------------
export const leave_globals = q(() => tries(
  () => { globalThis.leaked = MARK; },
  () => { Object.defineProperty(globalThis, "leaked2", { value: MARK, configurable: false }); },
  () => { Reflect.set(globalThis, "leaked3", MARK) || (() => { throw 0; })(); },
  () => { globalThis.Array = function Evil() {}; },
  () => { delete globalThis.JSON; },
  () => { Object.setPrototypeOf(globalThis, { leaked4: MARK }); },
  () => { (0, eval)("var leakedVar = 'mark-42'"); },
  () => { Function("leakedSloppy = 'mark-42'")(); },
  () => { Function("this.leakedThis = 'mark-42'")(); },
  () => { (0, eval)("globalThis")["leaked5"] = MARK; },
));
export const look_globals = q(() => {
  const found = [];
  for (const k of ["leaked", "leaked2", "leaked3", "leaked4", "leaked5", "leakedVar",
                   "leakedSloppy", "leakedThis"]) {
    if (globalThis[k] !== undefined) found.push(k);
  }
  if (Array.name !== "Array") found.push("Array");
  if (typeof JSON !== "object") found.push("JSON");
  if (proto(globalThis) !== Object.prototype && proto(globalThis)?.leaked4 === MARK) {
    found.push("global prototype");
  }
  return found.length === 0 ? "clean" : found.join(",");
});

export const leave_builtins = q(() => tries(
  () => { Array.prototype.evil = MARK; },
  () => { Object.prototype.polluted = MARK; },
  () => { Object.defineProperty(Object.prototype, "polluted2", { get: () => MARK }); },
  () => { Math.random = () => 0.5; },
  () => { Date.now = () => 1; },
  () => { Function.prototype.call = () => MARK; },
  () => { JSON.stringify = () => MARK; },
  () => { String.prototype.trim = () => MARK; },
  () => { Promise.prototype.then = () => MARK; },
  () => { Symbol.prototype.leaked = MARK; },
  () => { Reflect.leaked = MARK; },
  () => { Object.prototype.__proto__ = { polluted3: MARK }; },
  () => { Math.PI = 3; },
  () => { Number.prototype.toFixed = () => MARK; },
  () => { Intl.DateTimeFormat.prototype.leaked = MARK; },
  () => { Object.getPrototypeOf(Object.getPrototypeOf(Intl.DateTimeFormat())).leaked = MARK; },
  () => { console.log = () => MARK; },
  () => { console.leaked = MARK; },
  () => { Object.prototype.toString = () => MARK; },
  () => { Error.prototype.name = MARK; },
  () => { Error.prototype.message = MARK; },
));
export const look_builtins = q(() => {
  const found = [];
  if ([].evil !== undefined) found.push("Array.prototype");
  if (({}).polluted !== undefined || ({}).polluted2 !== undefined || ({}).polluted3 !== undefined) {
    found.push("Object.prototype");
  }
  if (Math.random() === 0.5) found.push("Math.random");
  if (Date.now() === 1) found.push("Date.now");
  if ((() => 1).call() !== 1) found.push("Function.prototype.call");
  if (JSON.stringify(1) !== "1") found.push("JSON");
  if (" a ".trim() !== "a") found.push("trim");
  if (typeof Promise.resolve().then(() => 1) !== "object") found.push("then");
  if (Symbol.prototype.leaked !== undefined || Reflect.leaked !== undefined) found.push("statics");
  if (Math.PI !== 3.141592653589793) found.push("Math.PI");
  if ((1).toFixed(1) !== "1.0") found.push("toFixed");
  if (Intl.DateTimeFormat.prototype.leaked !== undefined) found.push("Intl");
  if (console.leaked !== undefined || String(console.log).includes("MARK")) found.push("console");
  if (String({}) !== "[object Object]") found.push("toString");
  if (String(new Error("m")) !== "Error: m") found.push("Error.prototype");
  return found.length === 0 ? "clean" : found.join(",");
});

// Intrinsics with no global name.
export const leave_hidden = q((ctx) => tries(
  () => { proto(function* () {}).leaked = MARK; },
  () => { proto(function* () {}).prototype.next = () => MARK; },
  () => { proto(async function () {}).leaked = MARK; },
  () => { proto(async function* () {}).prototype.leaked = MARK; },
  () => { proto([][Symbol.iterator]()).next = () => ({ done: true }); },
  () => { proto(proto([][Symbol.iterator]())).leaked = MARK; },
  () => { proto(new Map().entries()).leaked = MARK; },
  () => { proto("a".matchAll(/a/g)).leaked = MARK; },
  () => { proto(Uint8Array).prototype.leaked = MARK; },
  () => { proto(Uint8Array).from = () => MARK; },
  () => { Object.getOwnPropertyDescriptor(Function.prototype, "caller").get.leaked = MARK; },
  () => { (async () => {}).constructor.leaked = MARK; },
  () => { proto(new Intl.Segmenter().segment("")).leaked = MARK; },
  () => { proto(ctx.db.query("items")).take = async () => [MARK]; },
  () => { proto(ctx.db.query("items").range).eq = () => MARK; },
  () => { ctx.db.get = async () => MARK; },
  () => { ctx.db.leaked = MARK; },
  () => { ctx.scheduler.leaked = MARK; },
  () => { ctx.leaked = MARK; },
  () => { proto(ctx.db.get).leaked = MARK; },
  () => { query.leaked = MARK; },
  () => { mutation.prototype = MARK; },
));
export const look_hidden = q(async (ctx) => {
  const found = [];
  if (proto(function* () {}).leaked !== undefined) found.push("GeneratorFunction");
  if ([...(function* () { yield 1; })()].length !== 1) found.push("Generator");
  if (proto(async function () {}).leaked !== undefined) found.push("AsyncFunction");
  if (proto(async function* () {}).prototype.leaked !== undefined) found.push("AsyncGenerator");
  if ([...[1, 2]].length !== 2) found.push("ArrayIterator");
  if (proto(proto([][Symbol.iterator]())).leaked !== undefined) found.push("IteratorPrototype");
  if (proto(new Map().entries()).leaked !== undefined) found.push("MapIterator");
  if (proto("a".matchAll(/a/g)).leaked !== undefined) found.push("RegExpStringIterator");
  if (proto(Uint8Array).prototype.leaked !== undefined) found.push("TypedArray");
  if (Uint8Array.from([1]).length !== 1) found.push("TypedArray.from");
  if ((async () => {}).constructor.leaked !== undefined) found.push("AsyncFunction ctor");
  if (proto(new Intl.Segmenter().segment("")).leaked !== undefined) found.push("Segments");
  if ((await ctx.db.query("items").take(1)).includes(MARK)) found.push("Query");
  if (ctx.db.leaked !== undefined || ctx.scheduler.leaked !== undefined) found.push("ctx.db");
  if (ctx.leaked !== undefined) found.push("ctx");
  if (String(ctx.db.get).includes("MARK")) found.push("ctx.db.get");
  if (query.leaked !== undefined || mutation.prototype === MARK) found.push("txfn/server");
  return found.length === 0 ? "clean" : found.join(",");
});

// ---- WeakMaps, Maps and Sets keyed by intrinsics -------------------------
// Module-level collections: a new module instance per request makes them
// new; and none can be hung on a shared object.
const byIntrinsic = new WeakMap();
const strongMap = new Map();
const seenSet = new WeakSet();
export const leave_weakmaps = q((ctx) => {
  byIntrinsic.set(Object.prototype, MARK);
  byIntrinsic.set(ctx.db, MARK);
  byIntrinsic.set(Math, MARK);
  strongMap.set(JSON, MARK);
  seenSet.add(Array.prototype);
  return tries(
    () => { Object.prototype.__weak = byIntrinsic; },
    () => { Object.defineProperty(Math, "store", { value: strongMap }); },
    () => { WeakMap.prototype.get = () => MARK; },
    () => { Map.prototype.get = () => MARK; },
    () => { WeakSet.prototype.has = () => true; },
  );
});
export const look_weakmaps = q((ctx) => {
  const found = [];
  if (byIntrinsic.get(Object.prototype) !== undefined || byIntrinsic.get(ctx.db) !== undefined ||
      byIntrinsic.get(Math) !== undefined) {
    found.push("module WeakMap");
  }
  if (strongMap.size !== 0) found.push("module Map");
  if (seenSet.has(Array.prototype)) found.push("module WeakSet");
  if (({}).__weak !== undefined || Math.store !== undefined) found.push("hung on an intrinsic");
  if (new WeakMap().get(Object.prototype) !== undefined) found.push("WeakMap.prototype.get");
  if (new Map().get(1) !== undefined) found.push("Map.prototype.get");
  return found.length === 0 ? "clean" : found.join(",");
});

// ---- Symbol.for ---------------------------------------------------------------
// The registry is the isolate's; a registered symbol is an immutable value, so
// what could carry a mark is a property keyed by it, on a shared object.
export const leave_symbols = q(() => {
  const s = Symbol.for("txfn.hardened.mark");
  return tries(
    () => { Object.prototype[s] = MARK; },
    () => { globalThis[s] = MARK; },
    () => { Symbol[s] = MARK; },
    () => { Object.defineProperty(Symbol.prototype, s, { value: MARK }); },
    () => { Symbol.for = () => MARK; },
    () => { Symbol.keyFor = () => MARK; },
    () => { Symbol.iterator.leaked = MARK; },  // a primitive: ignored or refused
  );
});
export const look_symbols = q(() => {
  const s = Symbol.for("txfn.hardened.mark");
  const found = [];
  if (({})[s] !== undefined || globalThis[s] !== undefined || Symbol[s] !== undefined ||
      Symbol.prototype[s] !== undefined) {
    found.push("keyed by a registered symbol");
  }
  if (Symbol.for("x") !== Symbol.for("x") || Symbol.keyFor(s) !== "txfn.hardened.mark") {
    found.push("registry");
  }
  if (s.description !== "txfn.hardened.mark") found.push("description");
  return found.length === 0 ? "clean" : found.join(",");
});

// ---- RegExp state -----------------------------------------------------------
const moduleRegExp = /mark-(\d+)/g;
export const leave_regexp = q(() => {
  /secret-(\d+)/.exec("secret-42 and more");
  "secret-42".replace(/secret-(\d+)/, "$1");
  moduleRegExp.exec("mark-1 mark-2");
  return tries(
    () => { RegExp.prototype.exec = () => [MARK]; },
    () => { RegExp.lastMatch = MARK; },
    () => { RegExp.input = MARK; },
    () => { RegExp.prototype.flags = MARK; },
    () => { Object.defineProperty(RegExp, "$1", { get: () => MARK }); },
    () => { RegExp[Symbol.species] = MARK; },
    () => { RegExp.prototype.compile.call(RegExp.prototype, "x"); },
  );
});
export const look_regexp = q(() => {
  const found = [];
  for (const k of ["$1", "$_", "input", "lastMatch", "$&", "lastParen", "$+", "leftContext",
                   "rightContext", "$`", "$'"]) {
    const v = RegExp[k];
    if (typeof v === "string" && (v.includes("secret") || v === "42" || v.includes("mark"))) {
      found.push("RegExp." + k);
    }
  }
  if (moduleRegExp.lastIndex !== 0) found.push("module regexp lastIndex");
  if (/a/.exec("a")[0] !== "a") found.push("exec");
  if (/a/g.flags !== "g") found.push("flags");
  if (String(RegExp.prototype) !== "/(?:)/") found.push("RegExp.prototype");
  return found.length === 0 ? "clean" : found.join(",");
});

// ---- Error stacks -------------------------------------------------------------
export const leave_errors = q(() => tries(
  () => { Error.stackTraceLimit = 0; },
  () => { Error.prepareStackTrace = () => MARK; },
  () => { Error.captureStackTrace(Error); },
  () => { Error.captureStackTrace(Error.prototype); },
  () => { Object.defineProperty(Error.prototype, "stack", { get: () => MARK }); },
  () => { TypeError.prototype.name = MARK; },
  () => { Error.captureStackTrace = () => MARK; },
));
export const look_errors = q(() => {
  const found = [];
  const e = new Error("probe");
  if (typeof e.stack !== "string" || !e.stack.includes("hardened.js:") ||
      e.stack.includes(MARK)) {
    found.push("stack: " + String(e.stack).slice(0, 80));
  }
  if (Error.stackTraceLimit !== 10) found.push("stackTraceLimit");
  // txfn's own (stacks without its frames), shown as a builtin: not the tenant's MARK.
  if (String(Error.prepareStackTrace) !== "function prepareStackTrace() { [native code] }") {
    found.push("prepareStackTrace");
  }
  if (Error.stack !== undefined || Error.prototype.stack !== undefined) found.push("captured");
  if (new TypeError("t").name !== "TypeError") found.push("TypeError.name");
  const o = {};
  Error.captureStackTrace(o);
  if (typeof o.stack !== "string") found.push("captureStackTrace");
  return found.length === 0 ? "clean" : found.join(",");
});

// ---- Array species and friends ----------------------------------------------
export const leave_species = q(() => {
  class Evil extends Array {}
  return tries(
    () => { Object.defineProperty(Array, Symbol.species, { get: () => Evil }); },
    () => { Array.prototype.constructor = Evil; },
    () => { Promise.prototype.constructor = Evil; },
    () => { Object.defineProperty(Promise, Symbol.species, { get: () => Evil }); },
    () => { Uint8Array.prototype.constructor = Evil; },
    () => { Object.defineProperty(proto(Uint8Array), Symbol.species, { get: () => Evil }); },
    () => { ArrayBuffer.prototype.constructor = Evil; },
    () => { Object.defineProperty(Map, Symbol.species, { get: () => Evil }); },
    () => { Array.prototype[Symbol.iterator] = function* () { yield MARK; }; },
    () => { Array.prototype[Symbol.unscopables].leaked = MARK; },
  );
});
export const look_species = q(() => {
  const found = [];
  if ([1, 2].map((x) => x).constructor !== Array) found.push("Array species");
  if (Promise.resolve().then(() => 1).constructor !== Promise) found.push("Promise species");
  if (new Uint8Array(2).subarray(1).constructor !== Uint8Array) found.push("TypedArray species");
  if (new ArrayBuffer(2).slice(1).constructor !== ArrayBuffer) found.push("ArrayBuffer species");
  if ([...[1]][0] !== 1) found.push("iterator");
  if (Array.prototype[Symbol.unscopables].leaked !== undefined) found.push("unscopables");
  return found.length === 0 ? "clean" : found.join(",");
});

// ---- The originals behind the override-mistake accessors -------------------
// Object.prototype.toString and its kind are accessors in a hardened context, their getters
// returning the original functions: those were left unfrozen, so a request could hang a mark,
// or a prototype whose methods later requests would call, on them.
const overridden = () => [Object.prototype.toString, Object.prototype.valueOf,
  Object.prototype.toLocaleString, Object.prototype.hasOwnProperty,
  Object.prototype.isPrototypeOf, Object.prototype.propertyIsEnumerable,
  Error.prototype.toString, TypeError.prototype.toString, Function.prototype.toString];
export const leave_overridden = q(() => tries(...overridden().flatMap((f) => [
  () => { f.leaked = MARK; },
  () => { Object.setPrototypeOf(f, { call() { return MARK; }, leaked: MARK }); },
])));
export const look_overridden = q(() => {
  const found = overridden().filter((f) => f.leaked !== undefined).map((f) => f.name);
  return found.length === 0 ? "clean" : found.join(",");
});

// Every object a request can reach from the globals, also through getters (called on their
// home object; an object a getter gives twice is shared, not made per call), is frozen: the
// freeze walk follows properties, and anything only a getter hands out was missed.
export const unfrozenReachable = q(() => {
  const seen = new Set();
  const todo = [globalThis];
  const unfrozen = [];
  const visit = (v, path) => {
    if (((typeof v === "object" && v !== null) || typeof v === "function") && !seen.has(v)) {
      seen.add(v);
      todo.push(v);
      if (!Object.isFrozen(v)) unfrozen.push(path);
    }
  };
  const paths = new Map([[globalThis, "globalThis"]]);
  while (todo.length > 0) {
    const o = todo.pop();
    const at = paths.get(o) ?? "?";
    const child = (v, name) => { if (!paths.has(v) && v !== null &&
        (typeof v === "object" || typeof v === "function")) paths.set(v, at + "." + name);
      visit(v, at + "." + name); };
    child(Object.getPrototypeOf(o), "__proto__");
    for (const key of Reflect.ownKeys(o)) {
      const d = Reflect.getOwnPropertyDescriptor(o, key);
      const name = String(key);
      if ("value" in d) { child(d.value, name); continue; }
      child(d.get, name + "(get)");
      child(d.set, name + "(set)");
      if (d.get === undefined) continue;
      let first, second;
      try { first = Reflect.apply(d.get, o, []); second = Reflect.apply(d.get, o, []); }
      catch { continue; }
      if (first === second) child(first, name + "()");
    }
  }
  return unfrozen;
});

// ---- Prototypes of objects txfn hands out --------------------------------
export const leave_returned = mutation(async (ctx) => {
  const id = await ctx.db.insert("items", { k: "returned" });
  const doc = await ctx.db.get(id);
  const docs = await ctx.db.query("items").take(1);
  const page = await ctx.db.query("items").paginate({ numItems: 1, cursor: null });
  const pending = ctx.db.get(id);
  await pending;
  return tries(
    () => { proto(doc).polluted = MARK; },
    () => { doc.constructor.prototype.polluted2 = MARK; },
    () => { proto(docs).polluted = MARK; },
    () => { proto(docs).push = () => MARK; },
    () => { proto(page).polluted = MARK; },
    () => { proto(pending).then = () => MARK; },
    () => { pending.constructor.resolve = () => MARK; },
    () => { proto(proto(doc)).polluted = MARK; },  // null: a TypeError
    () => { doc.__proto__.__proto__ = { polluted4: MARK }; },
  );
});
export const look_returned = q(async (ctx) => {
  const docs = await ctx.db.query("items").take(1);
  const doc = docs[0];
  const found = [];
  if (doc.polluted !== undefined || doc.polluted2 !== undefined || doc.polluted4 !== undefined) {
    found.push("document prototype");
  }
  if (docs.polluted !== undefined) found.push("array prototype");
  if (Promise.resolve(1).constructor.resolve(2) instanceof Promise === false) found.push("Promise");
  const a = [];
  a.push(1);
  if (a.length !== 1) found.push("push");
  return found.length === 0 ? "clean" : found.join(",");
});

// ---- Module state -------------------------------------------------------------
let calls = 0;
const moduleObject = { n: 0 };
export const leave_module = q(() => {
  moduleObject.n = 42;
  return ++calls;
});
export const look_module = q(() =>
  calls === 0 && moduleObject.n === 0 ? "clean" : `calls ${calls}, n ${moduleObject.n}`);

// ---- Jobs left behind -----------------------------------------------------------
// Continuations queued while the result is converted (a getter) run in their
// own request, inside its transaction (its "leave" and "job" commit together);
// those queued before the function threw never run. None may run in the next
// request, write to its transaction or log in it.
export const leave_jobs = mutation(async (ctx) => {
  await ctx.db.insert("items", { k: "leave" });
  const chase = () => Promise.resolve().then(() => ctx.db.insert("items", { k: "job" }))
      .then(() => console.log("job ran"));
  return {
    get x() {
      chase();
      Promise.resolve().then(() => { for (let i = 0; i < 100; ++i) Promise.resolve(i); });
      return 1;
    },
  };
});
export const leave_jobs_throw = mutation(async (ctx) => {
  Promise.resolve().then(() => ctx.db.insert("items", { k: "job-after-throw" }));
  throw new Error("thrown on purpose");
});
export const look_jobs = mutation(async (ctx) => {
  await null;
  await null;
  const ks = (await ctx.db.query("items").collect()).map((d) => d.k);
  const count = (k) => ks.filter((x) => x === k).length;
  return count("job") === count("leave") && count("job-after-throw") === 0 ? "clean" :
      "jobs: " + ks.join(",");
});

// ---- What hardened code may still do --------------------------------------
// The override mistake, tamed for the common names.
class MyError extends Error {
  constructor(m) { super(m); this.name = "MyError"; }
}
function Old() {}
Old.prototype = Object.create(Object.prototype);
Old.prototype.constructor = Old;
Old.prototype.toString = function () { return "Old"; };
export const compatible = q(() => {
  const e = new MyError("m");
  const o = {};
  o.toString = () => "own";
  o.valueOf = () => 7;
  o.hasOwnProperty = () => true;
  const f = function () {};
  f.toString = () => "f";
  const r = { x: 1 };
  r.constructor = "c";
  return [e.name, String(e), e.stack.split("\n")[0], String(new Old()), String(o), +o,
          o.hasOwnProperty("nope"), String(f), r.constructor, Symbol.for("a") === Symbol.for("a"),
          [3, 1, 2].sort().join(), JSON.stringify({ a: [1] })];
});

// A refused accessor on a frozen prototype leaves no mark that changes a later request: the
// concat of millions of elements stays V8's native one (the slow path meets the CPU limit).
export const defineOnFrozen = q(() => {
  const tries = [() => Object.defineProperty(Array.prototype, "0", { get() { return 1; } }),
    () => Reflect.defineProperty(Object.prototype, "7", { get() {} }),
    () => Array.prototype.__defineGetter__("1", () => 1),
    () => Object.defineProperties(Array.prototype, { 2: { get() { return 2; } } })];
  let refused = 0;
  for (const t of tries) {
    try { if (t() === false) ++refused; } catch (e) { ++refused; }
  }
  return refused;
});
export const concatMillions = q(() => {
  const a = new Array(1000000).fill(1);
  let n = 0;
  for (let i = 0; i < 20; i++) n += [].concat(a).length;
  return n;
});

// The global object through V8's global proxy: frozen in a hardened context.
export const globalState = q(() => [Object.isFrozen(globalThis), Object.isExtensible(globalThis),
  Reflect.defineProperty(globalThis, "z", { value: 1 }), Reflect.set(globalThis, "Array", 1),
  Reflect.deleteProperty(globalThis, "Array"), Reflect.setPrototypeOf(globalThis, null)]);

// lib/v8/bootstrap_js.h — the JavaScript half of the runner, run once per context.
//
// A function expression called with the natives object `n` (see
// runner_core.cc). It makes Date and Math.random deterministic, installs
// console, and returns {server: {query, mutation, action}, ctx, actionCtx}. Nothing of `n` stays
// reachable from user code except through the closures below.
//
// Longer than txfn's ~700-line norm: it is one JavaScript program (a single
// function expression, snapshotted as a whole), not C++ to split by concern.
#ifndef TXFN_LIB_V8_BOOTSTRAP_JS_H_
#define TXFN_LIB_V8_BOOTSTRAP_JS_H_

#include <string_view>

namespace txfn::internal {

inline constexpr std::string_view kBootstrapSource = R"JS(
(function (n) {
  'use strict';
  const INVALID_ARGUMENT = 3;
  const RESOURCE_EXHAUSTED = 8;
  const fail = n.fail;
  const apply = Reflect.apply;
  const defineProperty = Object.defineProperty;
  const getOwnPropertyDescriptor = Object.getOwnPropertyDescriptor;
  const getPrototypeOf = Object.getPrototypeOf;
  const isFrozen = Object.isFrozen;
  // Whether property descriptor `d` (from getOwnPropertyDescriptor) is a data property's: its
  // own "value" (`'value' in d` would find one a tenant put on Object.prototype, and take a
  // getter for data).
  const hasOwnProperty = Object.prototype.hasOwnProperty;  // (V8 10.2 has no Object.hasOwn)
  const hasOwn = (o, key) => apply(hasOwnProperty, o, [key]);
  const isData = (d) => hasOwn(d, 'value');
  const setPrototypeOf = Object.setPrototypeOf;
  const construct = Reflect.construct;
  // An Object in the specification's sense (a function is one too): what has properties of its
  // own and is made a primitive by calling into it.
  const isObject = (v) => (typeof v === 'object' && v !== null) || typeof v === 'function';

  // ---- Nothing of a request may outlive it ----------------------------------
  // Shared memory (and with it Atomics.wait/waitAsync, which need it) and
  // GC-driven callbacks (FinalizationRegistry, WeakRef) would let code run
  // after its request returned, or block a worker without using CPU.
  for (const name of ['SharedArrayBuffer', 'FinalizationRegistry', 'WeakRef']) {
    delete globalThis[name];
  }

  // ---- Determinism: no path to the real clock --------------------------------
  const OrigDate = globalThis.Date, dateGetTime = OrigDate.prototype.getTime;
  const now = n.now;
  function Date(...args) {
    if (new.target === undefined) return new OrigDate(now()).toString();
    if (args.length === 0) return construct(OrigDate, [now()], new.target);
    // An object becomes its primitive here, once (it could be a huge string to parse).
    if (args.length === 1 && isObject(args[0])) args[0] = slowPaths().datePrimitive(args[0]);
    if (typeof args[0] === 'string' && args[0].length > MAX_SLOW) {
      slowPaths().refuse('Date', args[0].length, MAX_SLOW);
    }
    return construct(OrigDate, args, new.target);
  }
  // Date's own statics, but not OrigDate itself (whose now() is the real clock).
  defineProperty(Date, 'prototype', {value: OrigDate.prototype});
  defineProperty(Date, 'length', {value: 7});
  defineProperty(Date, 'UTC', {value: OrigDate.UTC, writable: true, configurable: true});
  // V8 parses a date string in C++, uninterrupted (500 Mi characters: 5 s at 530 MB).
  const dateParse = OrigDate.parse;
  defineProperty(Date, 'parse', {writable: true, configurable: true,
    value: {parse(s) {
      s = `${s}`;
      if (s.length > MAX_SLOW) slowPaths().refuse('Date.parse', s.length, MAX_SLOW);
      return dateParse(s);
    }}.parse});
  defineProperty(Date, 'now', {value: function now_() { return now(); },
                               writable: true, configurable: true});
  defineProperty(OrigDate.prototype, 'constructor',
                 {value: Date, writable: true, configurable: true});
  defineProperty(globalThis, 'Date', {value: Date, writable: true, configurable: true});
  // Intl.DateTimeFormat formats "now" when given no date. Its bound format
  // functions are cached in a WeakMap made on first use (one object less in
  // every context), through captured methods (a tenant's WeakMap.prototype.set
  // would be handed the real formatter, and with it the real clock).
  const DTFProto = typeof Intl === 'object' && Intl !== null ? Intl.DateTimeFormat.prototype : null;
  const formatGetter = DTFProto && getOwnPropertyDescriptor(DTFProto, 'format').get;
  const formatToParts = DTFProto && DTFProto.formatToParts;
  const WeakMap_ = WeakMap, weakMapGet = WeakMap.prototype.get, weakMapSet = WeakMap.prototype.set;
  let formats = null;
  if (DTFProto !== null) {
    defineProperty(DTFProto, 'format', {configurable: true, get: function format() {
      const bound = apply(formatGetter, this, []);
      if (formats === null) formats = new WeakMap_();
      let f = apply(weakMapGet, formats, [bound]);
      if (f === undefined) {
        f = (date) => bound(date === undefined ? now() : date);
        apply(weakMapSet, formats, [bound, f]);
      }
      return f;
    }});
    defineProperty(DTFProto, 'formatToParts', {writable: true, configurable: true,
      value: function formatToParts_(date) {
        return apply(formatToParts, this, [date === undefined ? now() : date]);
      }});
  }
  const random = n.random;
  defineProperty(Math, 'random', {value: function random_() { return random(); },
                                  writable: true, configurable: true});

  // ---- The wrappers read as the builtins they stand for ----------------------
  // Libraries test for "[native code]" to tell a builtin from a polyfill (and
  // would replace a wrapper with their own, unguarded code); nor is txfn's
  // source the tenant's business. nativeSource(f) is that text for a
  // function of txfn's own scripts, undefined for any other.
  const nativeSource = n.nativeSource;
  const functionToString = Function.prototype.toString;
  defineProperty(Function.prototype, 'toString', {writable: true, configurable: true, value: {
    toString() {
      const s = nativeSource(this);
      return s !== undefined ? s : apply(functionToString, this, []);
    },
  }.toString});

  // ---- Stacks show the tenant's frames only ----------------------------------
  // The wrappers here and ctx.db are JavaScript of txfn's own scripts ("txfn:..."), so V8
  // would list their frames in every stack a tenant reads. This Error.prepareStackTrace
  // formats as V8's default does (the error's toString, or "<error: ...>" if that throws, then
  // "\n    at " and each call site) without those frames. A tenant may replace it (its own
  // gets every frame) or delete it (V8's default, every frame) where Error is not frozen.
  const errorToString = Error.prototype.toString;
  const stringSlice = String.prototype.slice;
  // The bootstrap's own string work uses these, never the prototype's (a tenant's
  // String.prototype.charCodeAt answering 32 would blind a check to what it scans).
  const stringIndexOf = String.prototype.indexOf, stringCharCodeAt = String.prototype.charCodeAt;
  const stringStartsWith = String.prototype.startsWith;
  const symbolSplit = Symbol.split, symbolMatch = Symbol.match, symbolReplace = Symbol.replace;
  // An object (a function too) without method `key`: one the string builtins make a string.
  const plainObject = (v, key) => isObject(v) && v[key] == null;
  defineProperty(Error, 'prepareStackTrace', {writable: true, configurable: true, value: {
    prepareStackTrace(error, sites) {
      let text;
      try {
        text = apply(errorToString, error, []);
      } catch (thrown) {
        try {
          text = '<error: ' + apply(errorToString, thrown, []) + '>';
        } catch (again) {
          text = '<error>';
        }
      }
      for (let i = 0; i < sites.length; i++) {
        const file = sites[i].getFileName();
        if (typeof file === 'string' && apply(stringSlice, file, [0, 5]) === 'txfn:') continue;
        text += '\n    at ' + sites[i].toString();
      }
      return text;
    },
  }.prepareStackTrace});

  // ---- Builtins V8 runs without checking for termination --------------------
  // Some builtins walk an index range or a whole string in C++ or Torque
  // without an interrupt check, so a CPU limit cannot stop them: a sparse
  // array of length 2^32 walked by indexOf, an array-like of length 2^53, a
  // 4 MiB string through a global replace, a typed array sorted in C++; a
  // few also make V8 abort the process on sizes it does not expect (split('')
  // of a 2^28-character string, sort of a huge array-like). The wrappers
  // below refuse such receivers up front (ResourceExhausted "sandbox limit"),
  // or run the work in an interruptible form (a quicksort in JavaScript, a
  // replace loop). They use only what the bootstrap captured, never a global
  // the tenant could have replaced (Math.max returning 0 would pass any size).
  //
  // Every request deserialises this context, and its cost grows with every
  // object in it, so the wrappers are as few objects as they can be: each is
  // one function with a literal of its own (so it needs no closure context),
  // the originals are one dictionary (ORIG), the rarely needed code is made on
  // first use (slowPaths()), and the bootstrap calls none of them (a function
  // called here would carry its feedback into every context).
  const isProxy = n.isProxy;
  const MAX_WALK = 1 << 24;        // indices a generic Array method may walk in one call
  const MAX_STRING = 1 << 24;      // characters split() may take apart
  const MAX_SLOW = 1 << 20;        // elements or characters for the slowest builtins
  const MAX_TYPED = 1 << 22;       // elements of one typed array view
  const NATIVE_REPLACE = 1 << 18;  // characters a native replacement may scan
  // ... and subject characters times template characters when the template has a "$"
  const NATIVE_TEMPLATE = 1 << 16;
  // V8's string search (indexOf, lastIndexOf, includes, split, replace) runs in C++ without an
  // interrupt check. It is linear for a needle of at most SEARCH_PREFIX characters (what its
  // Boyer-Moore tables cover), and costs up to the needle's length at every position past that
  // ("a".repeat(2 ** 12) + "b" + "a".repeat(2 ** 12) in 16 Mi "a"s: 30 s). A search of a
  // subject over SEARCH_CHUNK characters, or of a long needle when subject length times
  // needle length passes NATIVE_SEARCH, runs in slowPaths(): chunk by chunk natively for the
  // needle's first SEARCH_PREFIX characters, each candidate then compared (startsWith), all
  // interruptible.
  const SEARCH_PREFIX = 250;
  const SEARCH_CHUNK = 1 << 22;
  const NATIVE_SEARCH = 1 << 27;
  const nativeSearch = (subject, needle) => subject <= SEARCH_CHUNK &&
      (needle <= SEARCH_PREFIX || needle > subject || subject * needle <= NATIVE_SEARCH);
  const MAX_LENGTH = 2 ** 53 - 1;
  const MAX_LOCALES = 1000;        // tags in a locales list (V8 dedupes them in O(n^2))
  const MAX_LOCALE_ELEMENTS = 1 << 18;  // elements a toLocaleString formats
  const MAX_LOCALE_ARGS_ELEMENTS = 1 << 12;  // ... with locales or options (a formatter each)
  const MAX_INTL_STRING = 1 << 10;  // characters of a locale tag or an Intl option's value
  const ArrayIsArray = Array.isArray;
  const localeBrand = typeof Intl === 'object' && Intl !== null && Intl.Locale ?
      Intl.Locale.prototype.toString : undefined;
  const ownKeys = Reflect.ownKeys;
  // The specification's ToString (String(v) would describe a symbol, where a builtin throws).
  const StringOf = (v) => `${v}`, ObjectOf = Object;
  const Proxy_ = Proxy, reflectGet = Reflect.get, reflectSet = Reflect.set;
  const toPrimitive = Symbol.toPrimitive;
  const max = Math.max, min = Math.min, floor = Math.floor;
  const TypedArrayProto = getPrototypeOf(Uint8Array.prototype);
  const typedSort = TypedArrayProto.sort, subarray = TypedArrayProto.subarray;
  const regexpExec = RegExp.prototype.exec;
  const regexpReplace = RegExp.prototype[Symbol.replace];
  let slow = null;
  const slowPaths = () => slow ?? (slow = makeSlowPaths());

  // A typed array's length (0 if detached), or -1 for anything else.
  const typedLength = n.typedLength;
  // What a Proxy stands for: V8 forwards an operation with no trap to the
  // target in C++, so a Proxy is bounded as its target is (null: revoked).
  const proxyTarget = n.proxyTarget, proxyHandler = n.proxyHandler;
  function unproxied(o) {
    while (o !== null && isProxy(o)) o = proxyTarget(o);
    return o;
  }
  // Whether Proxy `p` has trap `name` ('get': whether a [[Get]] on it runs JavaScript), found
  // without running tenant code (a handler that is a Proxy, or has a getter there, might: true).
  function trapped(p, name) {
    for (let h = proxyHandler(p); isObject(h); h = getPrototypeOf(h)) {
      if (isProxy(h)) return true;
      const d = getOwnPropertyDescriptor(h, name);
      if (d !== undefined) return !isData(d) || d.value != null;
    }
    return false;
  }
  // What a [[Get]] on `o` reads from: `o`, or a Proxy's target when it has no get trap (V8
  // forwards in C++); undefined when a get trap answers (JavaScript, which could answer this
  // check and the builtin apart); null when revoked.
  function getTarget(o) {
    while (o !== null && isProxy(o)) {
      if (trapped(o, 'get')) return undefined;
      o = proxyTarget(o);
    }
    return o;
  }
  // walkLength's answer when a Proxy's get trap decides the length: past every limit (so
  // refused unless the caller reads it once and pins it: slowPaths().pinnedLength).
  const TRAP_LENGTH = 2 ** 60;
  // V8 looks up an index a walk misses (a hole) on every prototype, in C++: a length counts
  // once per CHAIN_STEP objects on the receiver's chain past the first CHAIN_STEP (join of
  // 2^16 holes under 10,000 prototypes ran 3 s), and a chain longer than MAX_CHAIN (a cycle
  // through a Proxy) is refused. Normal chains (an array's is three long) count once.
  const CHAIN_STEP = 4, MAX_CHAIN = 1 << 16;
  // How many objects `o`'s chain holds (`o` too; through Proxies), counted to one past `bound`.
  function chainDepth(o, bound = MAX_CHAIN) {
    let depth = 0;
    for (let p = unproxied(o); isObject(p) && depth <= bound;) {
      ++depth;
      p = unproxied(getPrototypeOf(p));
    }
    return depth;
  }
  function chainFactor(o) {
    const depth = chainDepth(o);
    return depth > MAX_CHAIN ? Infinity : max(1, floor(depth / CHAIN_STEP));
  }
  // The deepest chain whose factor keeps `length` indices within `limit`.
  const depthFor = (length, limit) =>
      min(MAX_CHAIN, CHAIN_STEP * (floor(limit / max(length, 1)) + 1) - 1);
  // The deepest chain an Object.assign target keeps in C++ (a factor of 1).
  const SHORT_CHAIN = 2 * CHAIN_STEP - 1;
  const ArrayProto = Array.prototype, ObjectProto = Object.prototype;
  // An Array that is no Proxy (Array.isArray sees through one, and throws on a revoked one).
  const plainArray = (v) => isObject(v) && !isProxy(v) && ArrayIsArray(v);
  // Whether non-Proxy `a`'s prototype chain is an array's original one (three objects).
  const originalChain = (a) =>
      getPrototypeOf(a) === ArrayProto && getPrototypeOf(ArrayProto) === ObjectProto;
  // The usual receiver: a plain Array on the original chain (three objects: it counts once).
  const usualArray = (v) => plainArray(v) && originalChain(v);
  // chainFactor(o), the usual receiver first, cheaply.
  const chainFactorOf = (o) => usualArray(o) ? 1 : chainFactor(o);
  const typedLengthGetter = getOwnPropertyDescriptor(TypedArrayProto, 'length').get;
  // How many indices a generic Array method walks on receiver `o`, found without running
  // tenant code (times chainFactor): Infinity when a getter or valueOf would decide it (the
  // builtin would call it again and could get another answer), TRAP_LENGTH when a Proxy's get
  // trap would (on `o` or its prototype chain). A typed array's length is its size only
  // through %TypedArray%.prototype's getter (an own "length", or a Proxy on its chain, is
  // what V8 reads).
  function walkLength(o) {
    if (typeof o === 'string') return o.length;
    if (!isObject(o)) return 0;
    if (usualArray(o)) return o.length;  // the usual receiver first, cheaply
    const n = lengthRead(o);
    return n === 0 || n > MAX_LENGTH ? n : n * chainFactor(o);
  }
  // The length V8 reads from object `o` (walkLength without chainFactor).
  function lengthRead(o) {
    for (let p = o; p !== null; p = getPrototypeOf(p)) {
      p = getTarget(p);
      if (p === undefined) return TRAP_LENGTH;
      if (p === null) return 0;
      if (ArrayIsArray(p)) return p.length;
      const d = getOwnPropertyDescriptor(p, 'length');
      if (d === undefined) continue;
      if (!isData(d)) {
        // The receiver's size; the getter throws for anything else (the builtin then walks
        // nothing).
        return d.get === typedLengthGetter ? max(typedLength(unproxied(o)), 0) : Infinity;
      }
      const v = d.value;
      if (isObject(v)) return Infinity;
      if (typeof v === 'bigint' || typeof v === 'symbol') return 0;  // the builtin throws
      const n = +v;  // ToNumber of a primitive runs no code ("5" is 5)
      return n > 0 ? min(floor(n), MAX_LENGTH) : 0;
    }
    return 0;
  }
  // An argument as the string a builtin would make of it, made once by the wrapper so that a
  // toString cannot answer the check and the builtin differently, and so that a number or a
  // BigInt is measured by its digits ((10n ** 5000000n) is 5,000,001 characters); a symbol as
  // it is (the builtin's TypeError).
  const argString = (v) => typeof v === 'string' || typeof v === 'symbol' ? v : StringOf(v);
  // A string builtin's receiver as the string it would make of it (a number or a BigInt too:
  // (10n ** 100000n) is 100,001 characters); undefined, null and a symbol as they are (the
  // builtin's TypeError).
  const receiverString = (v) =>
      typeof v === 'string' || v == null || typeof v === 'symbol' ? v : StringOf(v);
  // A search value as the string replace(), replaceAll() or split() would make of it when it
  // has no method `key` (@@replace, @@split; a primitive too: replaceAll(1, template) or
  // split(10n ** 1000n)); a symbol, or one with that method, as it is.
  const searchString = (v, key) => typeof v === 'string' || typeof v === 'symbol' ? v :
      v == null || v[key] == null ? StringOf(v) : v;
  // Method `key` of a primitive search value that searchString left as it is (a number or a
  // symbol whose prototype has one), or undefined (also for a null receiver: the builtin's
  // TypeError). The wrappers call it, as the specification says, rather than trust V8 to (it
  // may take a small integer for a string, and search natively past the checks).
  const primitiveMethod = (receiver, v, key) =>
      receiver == null || v == null || isObject(v) || typeof v === 'string' ?
          undefined : v[key] ?? undefined;
  const lengthOf = (v) => typeof v === 'string' ? v.length : 0;
  // A locales argument V8 may take apart in C++ without an interrupt check
  // (canonicalising a list is quadratic: 60,000 tags ran for minutes): a
  // list is copied here, in JavaScript, and refused past MAX_LOCALES tags; a
  // string, an Intl.Locale or a non-object passes as it is. Its tags, and the
  // options after it, are bounded too (see intlString in slowPaths()).
  // DateTimeFormat keeps an ICU pattern generator for each distinct locale it resolves (its
  // language and region with the calendar, numbering system and hour cycle keywords) in a
  // process-wide cache V8 never empties (~70 KiB each): 60 requests making DateTimeFormats of
  // distinct keyword combinations grew a server by 2 GB, never given back, each request within
  // its own limits. So the locales of dates (`dates`: DateTimeFormat, Date's toLocale*String)
  // take no Unicode extension (-u-ca-, -u-nu-, -u-hc-, ...), and their options no calendar or
  // numberingSystem (intlOptions): one generator per language and region, a bounded set.
  function dateLocale(what, tag) {
    let text = tag;
    if (isObject(tag) && localeBrand !== undefined) {
      try { text = apply(localeBrand, tag, []); } catch (e) { return tag; }
    }
    if (typeof text === 'string' && (apply(stringIndexOf, text, ['-u-', 0]) >= 0 ||
                                     apply(stringIndexOf, text, ['-U-', 0]) >= 0)) {
      fail(INVALID_ARGUMENT, what + ': a locale with Unicode extension keywords (-u-...) is ' +
           'not available for dates in this sandbox (each distinct one holds process memory ' +
           'for good); format in the language and region alone');
    }
    return tag;
  }
  function localesOf(what, locales, dates) {
    if (typeof locales === 'string') {
      if (locales.length > MAX_INTL_STRING) return slowPaths().intlString(what, locales);
      return dates ? dateLocale(what, locales) : locales;
    }
    if (!isObject(locales)) return locales;
    if (localeBrand !== undefined) {
      let isLocale = false;
      try { apply(localeBrand, locales, []); isLocale = true; } catch (e) {}
      if (isLocale) return dates ? dateLocale(what, locales) : locales;
    }
    let n = +locales.length;  // ToLength; a getter or valueOf is JavaScript
    n = n > 0 ? floor(n) : 0;
    if (n > MAX_LOCALES) slowPaths().refuse(what + ' (locales)', n, MAX_LOCALES);
    const list = [];
    list.length = n;
    for (let i = 0; i < n; ++i) {
      if (!(i in locales)) continue;
      const tag = locales[i];
      list[i] = typeof tag === 'string' && tag.length <= MAX_INTL_STRING ? tag :
          slowPaths().intlString(what, tag);
      if (dates) dateLocale(what, list[i]);
    }
    return list;
  }
  // args[i] as locales, and args[i + 1], if an object, as options (`dates`: see dateLocale).
  function withLocales(what, args, i, dates) {
    if (args.length > i) args[i] = localesOf(what, args[i], dates);
    if (args.length > i + 1) {
      const o = args[i + 1];
      if (isObject(o)) {
        args[i + 1] = slowPaths().intlOptions(what, o, dates);
      } else if (dates && o !== undefined && o !== null) {
        // DateTimeFormat reads a primitive's options from its prototype (ToObject):
        // Number.prototype.calendar set, `new Intl.DateTimeFormat("en", 1)` took it.
        args[i + 1] = slowPaths().intlOptions(what, ObjectOf(o), dates);
      }
    }
    return args;
  }
  // An array (or typed array) formatted element by element, in C++: with
  // locales or options V8 makes a formatter for each (~70 us).
  function localeGuarded(what, self, args) {
    withLocales(what, args, 0);
    const size = walkLength(self);  // a typed array's too
    const limit = args[0] !== undefined || args[1] !== undefined ? MAX_LOCALE_ARGS_ELEMENTS :
        MAX_LOCALE_ELEMENTS;
    if (size === TRAP_LENGTH) return slowPaths().pinnedLength(what, self, args, limit);
    if (size > limit) slowPaths().refuse(what, size, limit);
    return walked(ORIG[what], self, args, self, size, limit);  // each element's toLocaleString
  }

  // The guarded builtins' originals by the name their wrapper reports
  // ('Array.prototype.map'), taken as the wrappers are installed.
  const ORIG = {__proto__: null};
  // Replaces each builtin target[name] by wrappers[name], its original kept
  // in ORIG[where + name]. Run by the bootstrap only.
  function install(target, where, wrappers) {
    for (const name of ownKeys(wrappers)) {
      ORIG[where + name] = target[name];
      defineProperty(target, name, {writable: true, configurable: true, value: wrappers[name]});
    }
  }

  // A native called back by a native (forEach(JSON.parse.bind(null, s)), a
  // bound Intl constructor as a map function, a bound native as a promise
  // reaction) runs no JavaScript from one call to the next, so nothing checks
  // for termination and no limit stops the loop. The builtins that call back
  // get each callback as a JavaScript function calling it, whose entry is
  // such a check. (`this` passes through: the bootstrap is strict.)
  function interruptible(f) {
    return typeof f === 'function' ? function callback(...x) { return apply(f, this, x); } : f;
  }
  function calledBack(args, i) {
    args[i] = interruptible(args[i]);
    return args;
  }

  // What guarded() verifies before a builtin runs.
  const WALK_THIS = 0;    // the receiver's walk length <= MAX_WALK
  const WALK_ALL = 1;     // ... and every argument's (concat)
  const WALK_ARG = 2;     // the first argument's (Array.from)
  const RAW_ARG = 3;      // the first argument's .raw's <= MAX_SLOW (String.raw)
  const KEYS_ARG = 4;     // a typed array or string argument <= MAX_SLOW
  const KEYS_REST = 5;    // ... every argument after the first (Object.assign's sources)
  const WRITE_THIS = 6;   // WALK_THIS, and <= 2 * MAX_SLOW unless a typed array (writing)
  const ARGLIST_1 = 7;    // an argument list made from args[1] <= MAX_SLOW (apply)
  const ARGLIST_2 = 8;    // ... from args[2] (Reflect.apply)
  const ASSIGN = 9;       // KEYS_REST, and the target's chain short (Object.assign)
  // The indices a builtin lists on `o` in C++ (a typed array's, a string's,
  // a String object's; through Proxies), or 0. One native call: the check
  // runs on every Object.freeze.
  const keysLength = n.indexedLength;
  // The walks builtins are making now, innermost first ({o, size, limit, maxDepth, next}). V8
  // looks each hole of a walk up on every prototype, in C++, so code that a builtin calls (a
  // callback, a getter, a toString) may not deepen the prototype chain of the object it walks
  // past what its guard counted on: protoSet refuses it (a map callback that hung 5,000
  // prototypes under the 2^20 holes being mapped had V8 look for a quarter of an hour).
  let walks = null;
  // Builtin `f` on `self` and `args`, or as a constructor for `newTarget` when one is given.
  const called = (f, self, args, newTarget) =>
      newTarget === undefined ? apply(f, self, args) : construct(f, args, newTarget);
  // Runs builtin `f` (see called) as a walk of `o` (if an object) that its guard measured
  // `size` long (its length times its chainFactor) within `limit`. The deepest chain it allows
  // (maxDepth) is worked out when a prototype first changes during the walk (see deepened),
  // which is also when the chain is last as it was measured: the common walk pays nothing more.
  function walked(f, self, args, o, size, limit, newTarget = undefined) {
    if (!isObject(o)) return called(f, self, args, newTarget);
    // (Its fields are all its own: Object.prototype's are never read. A literal without a
    // prototype would be a dictionary, several times slower to make.)
    const walk = {o, size, limit, maxDepth: -1, next: walks};
    walks = walk;
    try {
      return called(f, self, args, newTarget);
    } finally {
      walks = walk.next;
    }
  }
  // Objects tenant code gave an accessor at an index or at @@isConcatSpreadable: what V8's
  // concat reads of its operands, so that concat can tell without running tenant code that
  // none will run inside it (a getter there could lengthen a later operand after the guard
  // measured it: V8 then probed 2^32 indices, uninterrupted). defineProperty and its kin are
  // the only ways to give an object that exists an accessor (a class or an object literal
  // makes a new one, which an array meets only on a chain that is not its original one). A
  // WeakMap made on first use: most requests define none.
  let accessorHolders = null;
  const holdsAccessors = (o) =>
      accessorHolders !== null && apply(weakMapGet, accessorHolders, [o]) === true;
  function holdAccessors(o) {
    // A Proxy with no defineProperty trap forwards the definition to its target in C++.
    for (let p = o; isObject(p); p = isProxy(p) ? proxyTarget(p) : null) {
      // Noted before the definition (a trap may define and then throw), but a frozen object can
      // be given no accessor: a refused try must not mark it, or in a hardened context the
      // frozen Array.prototype would send every later request's concat down the slow path.
      if (!isProxy(p) && isFrozen(p)) continue;
      if (accessorHolders === null) accessorHolders = new WeakMap_();
      apply(weakMapSet, accessorHolders, [p, true]);
    }
  }
  // Whether property key `key`, as passed (not yet made a key), may name what concat reads: an
  // array index, @@isConcatSpreadable, or an object (whose key its toString decides).
  const isConcatSpreadableKey = Symbol.isConcatSpreadable;
  function walkedKey(key) {
    switch (typeof key) {
      case 'symbol': return key === isConcatSpreadableKey;
      case 'object': return key !== null;
      case 'function': return true;
      case 'string': case 'number': case 'bigint': {
        const n = +`${key}`;  // the key as a number: an index is "0" to "4294967294" exactly
        return n >= 0 && n < 2 ** 32 - 1 && floor(n) === n && `${n}` === `${key}`;
      }
      default: return false;
    }
  }
  // Whether descriptor `copy` (a descriptorCopy) makes an accessor.
  const makesAccessor = (copy) => hasOwn(copy, 'get') || hasOwn(copy, 'set');
  // An array V8's concat walks without running tenant code: a plain Array on its original
  // chain that holds no accessor a tenant gave it (see quietConcat for the two prototypes).
  const quietArray = (a) => usualArray(a) && !holdsAccessors(a);
  // Whether V8's concat on receiver `self` runs no tenant code but for its operands': `self` is
  // a quiet array, Array.prototype and Object.prototype hold no accessor a tenant gave them
  // (a hole is looked up there), and the species is Array's.
  const quietConcat = (self) => quietArray(self) && !holdsAccessors(ArrayProto) &&
      !holdsAccessors(ObjectProto) && plainSpecies(self);
  // Whether Array `a`'s species is Array itself, found without running code. Asked by every
  // concat, so not in slowPaths(). Once found so of a frozen Array.prototype and Array (a
  // hardened context), Array's own part is known for good.
  const speciesKey = Symbol.species;
  let frozenSpecies = false;
  function plainSpecies(a) {
    if (hasOwn(a, 'constructor') || getPrototypeOf(a) !== ArrayProto) return false;
    if (frozenSpecies) return true;
    const c = getOwnPropertyDescriptor(ArrayProto, 'constructor');
    if (c === undefined || !isData(c) || c.value !== ORIG['Array']) return false;
    const s = getOwnPropertyDescriptor(ORIG['Array'], speciesKey);
    if (s === undefined || isData(s) || s.get !== ORIG['Array.@@species']) return false;
    frozenSpecies = isFrozen(ArrayProto) && isFrozen(ORIG['Array']);
    return true;
  }
  // Object.defineProperty(o, key, desc) or Reflect's (`what`). For a key concat reads, the
  // descriptor is read here, once, in the specification's order (a getter on one field could
  // add "get" after a check), and V8 given the copy (see slowPaths().descriptorCopy).
  function defined(what, o, key, desc) {
    if (!isObject(o) || !isObject(desc)) return apply(ORIG[what], undefined, [o, key, desc]);
    if (isObject(key)) key = slowPaths().propertyKey(key);  // ToPropertyKey comes first
    if (!walkedKey(key)) return apply(ORIG[what], undefined, [o, key, desc]);
    const copy = slowPaths().descriptorCopy(desc);
    if (makesAccessor(copy)) holdAccessors(o);
    return apply(ORIG[what], undefined, [o, key, copy]);
  }
  // A for-in lists the indices of every object on its receiver's prototype
  // chain in C++, with no interrupt check from one to the next: one capped
  // typed array takes a few seconds, but a chain of views of one buffer was
  // unbounded (20 took minutes). So an object with indices (a typed array, a
  // String object) is never on a prototype chain: it cannot become a
  // prototype, or be under one, and a view cannot be made with one.
  // (A Proxy's getPrototypeOf trap is called: one that is JavaScript could answer a for-in
  // otherwise, but is then a point where V8 checks for termination; one that is not, a bound
  // builtin, answers the same each time.)
  function protoChecked(what, proto) {
    for (let p = proto; isObject(p); p = getPrototypeOf(p)) {
      const size = keysLength(p);
      if (size > 0) slowPaths().refuse(what + ' (a prototype with indices)', size, 0);
    }
    return proto;
  }
  // ORIG[what] (a setPrototypeOf of `o`) on `self` and `args`; checked while builtins walk.
  function protoSet(what, self, args, o) {
    if (walks === null) return apply(ORIG[what], self, args);
    return slowPaths().deepened(what, self, args, o);
  }
  // Whether `o`'s @@iterator is an accessor (found without running tenant code; past a Proxy
  // with a get trap the caller pins anyway).
  const symbolIterator = Symbol.iterator;
  function iteratorGetter(o) {
    for (let p = getTarget(o); isObject(p); p = getTarget(getPrototypeOf(p))) {
      const d = getOwnPropertyDescriptor(p, symbolIterator);
      if (d !== undefined) return !isData(d);
    }
    return false;
  }
  // Runs the builtin `what` (a key of ORIG) on `self` and `args` if they
  // pass check `kind`; `inserted` elements are written besides the receiver's (unshift,
  // splice), each looked up on its chain.
  function guarded(kind, what, self, args, inserted = 0) {
    let size = 0, limit = MAX_WALK, generic = false;
    let walkedObject = self;  // the object whose indices V8 walks (null: none, or no code runs)
    switch (kind) {
      case WRITE_THIS:
        // Writing 2^24 properties of a plain object makes a dictionary of
        // gigabytes, uninterrupted; an array's elements are far cheaper.
        // (A sparse array is a dictionary too: 2^21 stays near a second.)
        // (A typed array's writes are cheap only up to its size.)
        size = walkLength(self);
        if (inserted > 0 && size < TRAP_LENGTH) size += inserted * chainFactorOf(self);
        limit = size <= typedLength(unproxied(self)) ? MAX_WALK : MAX_SLOW * 2;
        if (isProxy(self)) limit = MAX_SLOW;  // each index forwarded, in C++
        break;
      case ARGLIST_1:
      case ARGLIST_2: {
        // V8 copies an array-like into an argument list in C++, without an
        // interrupt check (Reflect.apply(f, null, {length: 1e8})). A Proxy's
        // length is its trap's, which could answer this check and V8 apart:
        // a Proxy is copied here, in JavaScript.
        // So is any length a getter or a trap decides, here or on the prototype chain.
        const i = kind === ARGLIST_1 ? 1 : 2;
        size = walkLength(args[i]);
        if (isObject(args[i]) && (isProxy(args[i]) || size > MAX_LENGTH)) {
          args[i] = slowPaths().argList(what, args[i]);
          size = walkLength(args[i]);
        }
        limit = MAX_SLOW;
        walkedObject = args[i];
        break;
      }
      case ASSIGN:
      case KEYS_REST:
        // Summed: the sources are listed in C++ one after another.
        for (let i = 1; i < args.length; ++i) size += keysLength(args[i]);
        limit = MAX_SLOW;
        walkedObject = null;
        if (kind === KEYS_REST) break;
        // Each property is set on the target, looked up on every prototype of it in C++: under
        // a deep chain the specification's loop runs in JavaScript (slowPaths().assign; it
        // lists the sources as V8 does, so they are bounded first). So does a primitive target:
        // V8 sets on a wrapper whose chain is not checked here.
        if (size > limit) slowPaths().refuse(what, size, limit);
        if (args[0] != null && (!isObject(args[0]) || chainDepth(args[0]) > SHORT_CHAIN)) {
          return slowPaths().assign(args);
        }
        walkedObject = args[0];
        break;
      case WALK_ALL:
        // Summed, as V8 walks them: 400 arguments of 2^24 each ran for minutes. A primitive
        // is one element (a string is not spread). V8's concat runs no tenant code when its
        // receiver and every operand are quiet arrays (quietArray) and its species is Array's;
        // any other call goes to slowPaths().concatGeneric below.
        generic = !quietConcat(self);
        for (let i = 0; i < args.length; ++i) {
          const E = args[i];
          if (!isObject(E)) {
            ++size;
            continue;
          }
          if (plainArray(E)) {
            size += walkLength(E);
            if (!originalChain(E) || holdsAccessors(E)) generic = true;  // not a quietArray
          } else {
            size += slowPaths().concatLength(E);
            generic = true;
          }
        }
        walkedObject = null;
      // fallthrough
      case WALK_THIS:
        size += walkLength(self);
        if (isProxy(self)) limit = MAX_SLOW;  // each index forwarded, in C++
        break;
      case WALK_ARG:
        // An @@iterator getter runs before V8 reads the length (and could change it): such
        // an argument, or one whose length a trap answers, goes behind a Proxy answering the
        // length read here (every other read then runs JavaScript, its get trap).
        size = walkLength(args[0]);
        if (size === TRAP_LENGTH || (isObject(args[0]) && iteratorGetter(args[0]))) {
          args[0] = slowPaths().pin(what, args[0], MAX_SLOW);
          size = 0;
        }
        walkedObject = args[0];
        break;
      case RAW_ARG:
        // .raw read once: the builtin reads it from a copy of the call site.
        if (args[0] !== null && args[0] !== undefined) {
          const raw = args[0].raw;
          size = walkLength(raw);
          limit = MAX_SLOW;
          if (size === TRAP_LENGTH) {
            args[0] = {raw: slowPaths().pin(what, raw, limit)};
            size = 0;
          } else {
            args[0] = {raw};
          }
          walkedObject = args[0].raw;
        }
        break;
      case KEYS_ARG:
        size = keysLength(args[0]);
        limit = MAX_SLOW;
        walkedObject = null;  // own keys: no prototype is looked at
        break;
    }
    if (size === TRAP_LENGTH && (kind === WALK_THIS || kind === WRITE_THIS)) {
      // A get trap answers the length: read once here, and the builtin given that answer.
      return slowPaths().pinnedLength(what, self, args, limit);
    }
    if (kind === WALK_ALL && size >= TRAP_LENGTH && size < Infinity) {
      if (self == null) return apply(ORIG[what], self, args);  // its TypeError
      return slowPaths().concat(self, args);  // ... by one operand or more: in JavaScript
    }
    if (size > limit) slowPaths().refuse(what, size, limit);
    if (generic && self != null) return slowPaths().concatGeneric(self, args);
    // An assignment's keys are not counted: as a walk of the whole limit, its target's chain
    // (at most SHORT_CHAIN, a factor of 1) may not grow past SHORT_CHAIN.
    return walked(ORIG[what], self, args, walkedObject, kind === ASSIGN ? limit : size, limit);
  }
  // Whether `text`, a replacement template, expands in C++ too long: its "$" parts are expanded
  // for every match, uninterrupted ("$`" is the text before the match:
  // "a".repeat(2 ** 18).replace(/a/g, "$`".repeat(256)) ran 88 s). Such a one goes to the
  // JavaScript loop, as a long subject does.
  function heavyTemplate(S, text) {
    return typeof text === 'string' && text.length * S.length > NATIVE_TEMPLATE &&
        apply(ORIG['String.prototype.indexOf'], text, ['$']) !== -1;
  }
  // String.prototype.indexOf, lastIndexOf or includes (`what`) on receiver `self`: the
  // receiver and the needle made strings here, in the builtin's order, and searched natively
  // when that is cheap (see SEARCH_PREFIX).
  function searched(what, self, args) {
    if (self === undefined || self === null || typeof self === 'symbol') {
      return apply(ORIG[what], self, args);  // its TypeError
    }
    const S = typeof self === 'string' ? self : StringOf(self);
    let needle = args[0];
    if (typeof needle !== 'string') {
      if (what === 'String.prototype.includes' && slowPaths().isRegExpLike(needle)) {
        return apply(ORIG[what], S, [new OrigRegExp('')]);  // its TypeError
      }
      if (typeof needle === 'symbol') return apply(ORIG[what], S, args);  // its TypeError
      args[0] = needle = StringOf(needle);
    }
    if (nativeSearch(S.length, needle.length)) return apply(ORIG[what], S, args);
    return slowPaths().search(what, S, needle, args[1]);
  }
  // A string builtin: its receiver `self` (made a primitive string by the
  // caller where the builtin would convert it) and, with convertArg, its first
  // argument as a primitive string, whose lengths are checked.
  function stringGuarded(what, limit, convertArg, self, args) {
    if (convertArg) args[0] = argString(args[0]);
    const size = max(lengthOf(self), convertArg ? lengthOf(args[0]) : 0);
    if (size > limit) slowPaths().refuse(what, size, limit);
    return apply(ORIG[what], self, args);
  }
  // RelativeTimeFormat's format or formatToParts (`what`): value made a number and the unit
  // a string here, in the builtin's order, the unit bounded as an Intl option is.
  function relativeTime(what, self, args) {
    if (args.length > 0) args[0] = +args[0];
    args[1] = slowPaths().intlString(what, `${args[1]}`);
    return apply(ORIG[what], self, args);
  }
  // Intl.ListFormat's format or formatToParts (`what`) of `list`, read here
  // once into an array (the builtin would read it once too), past MAX_SLOW * 4
  // characters in all refused (the Intl section says why).
  function listFormatted(what, self, list) {
    if (list === undefined) return apply(ORIG[what], self, [list]);
    const strings = [];
    let size = 0;
    for (const s of list) {
      strings[strings.length] = s;
      if (typeof s !== 'string') break;
      size += s.length;
      if (size > MAX_SLOW * 4) slowPaths().refuse(what, size, MAX_SLOW * 4);
    }
    return apply(ORIG[what], self, [strings]);
  }
  // Array.prototype.includes, indexOf or lastIndexOf (`what`): V8 compares the elements with
  // a string needle in C++, uninterrupted, each comparison up to the needle's length (2^20
  // references to an 8 Mi-character string searched for a look-alike: hours, abandoned), and
  // a BigInt needle digit by digit (2^23-bit look-alikes: 80 us each). A needle longer than
  // SEARCH_PREFIX, or any BigInt, is looked for in JavaScript (slowPaths().arraySearch), where
  // each comparison is one step a limit can stop between.
  function arraySearched(what, self, args) {
    const needle = args[0];
    if (self != null && (typeof needle === 'bigint' ||
                         (typeof needle === 'string' && needle.length > SEARCH_PREFIX))) {
      return slowPaths().arraySearch(what, self, args);
    }
    return guarded(WALK_THIS, what, self, args);
  }
  // A sort without a comparator compares the elements' strings in C++, uninterrupted (2,000
  // references to two 8 Mi-character look-alikes: 10 s, growing with their number): it is given
  // the specification's own comparison (SortCompare without a comparefn) as a JavaScript
  // function, each call of which compares two strings once.
  const sortCompareDefault = (x, y) => {
    const xs = StringOf(x), ys = StringOf(y);
    return xs < ys ? -1 : ys < xs ? 1 : 0;
  };
  install(Array.prototype, 'Array.prototype.', {
    copyWithin(...a) { return guarded(WRITE_THIS, 'Array.prototype.copyWithin', this, a); },
    every(...a) { return guarded(WALK_THIS, 'Array.prototype.every', this, calledBack(a, 0)); },
    fill(...a) { return guarded(WRITE_THIS, 'Array.prototype.fill', this, a); },
    find(...a) { return guarded(WALK_THIS, 'Array.prototype.find', this, calledBack(a, 0)); },
    findIndex(...a) {
      return guarded(WALK_THIS, 'Array.prototype.findIndex', this, calledBack(a, 0));
    },
    findLast(...a) {
      return guarded(WALK_THIS, 'Array.prototype.findLast', this, calledBack(a, 0));
    },
    findLastIndex(...a) {
      return guarded(WALK_THIS, 'Array.prototype.findLastIndex', this, calledBack(a, 0));
    },
    filter(...a) { return guarded(WALK_THIS, 'Array.prototype.filter', this, calledBack(a, 0)); },
    flat(...a) { return slowPaths().flat(this, a[0]); },
    flatMap(...a) { return slowPaths().flatMap(this, a[0], a[1]); },
    forEach(...a) { return guarded(WALK_THIS, 'Array.prototype.forEach', this, calledBack(a, 0)); },
    includes(...a) { return arraySearched('Array.prototype.includes', this, a); },
    indexOf(...a) { return arraySearched('Array.prototype.indexOf', this, a); },
    join(...a) { return guarded(WALK_THIS, 'Array.prototype.join', this, a); },
    lastIndexOf(...a) { return arraySearched('Array.prototype.lastIndexOf', this, a); },
    map(...a) { return guarded(WALK_THIS, 'Array.prototype.map', this, calledBack(a, 0)); },
    reduce(...a) { return guarded(WALK_THIS, 'Array.prototype.reduce', this, calledBack(a, 0)); },
    reduceRight(...a) {
      return guarded(WALK_THIS, 'Array.prototype.reduceRight', this, calledBack(a, 0));
    },
    reverse(...a) { return guarded(WRITE_THIS, 'Array.prototype.reverse', this, a); },
    shift(...a) { return guarded(WRITE_THIS, 'Array.prototype.shift', this, a); },
    slice(...a) { return guarded(WALK_THIS, 'Array.prototype.slice', this, a); },
    some(...a) { return guarded(WALK_THIS, 'Array.prototype.some', this, calledBack(a, 0)); },
    sort(...a) {
      if (a[0] === undefined) a[0] = sortCompareDefault;
      return guarded(WRITE_THIS, 'Array.prototype.sort', this, calledBack(a, 0));
    },
    splice(...a) {
      return guarded(WRITE_THIS, 'Array.prototype.splice', this, a, max(a.length - 2, 0));
    },
    toLocaleString(...a) { return localeGuarded('Array.prototype.toLocaleString', this, a); },
    unshift(...a) { return guarded(WRITE_THIS, 'Array.prototype.unshift', this, a, a.length); },
    concat(...a) { return guarded(WALK_ALL, 'Array.prototype.concat', this, a); },
  });
  ORIG['Array'] = Array;  // for concat's species check (plainSpecies)
  ORIG['Array.@@species'] = getOwnPropertyDescriptor(Array, Symbol.species).get;
  install(Array, 'Array.', {
    from(...a) { return guarded(WALK_ARG, 'Array.from', this, calledBack(a, 1)); },
  });
  install(String, 'String.', {raw(...a) { return guarded(RAW_ARG, 'String.raw', this, a); }});
  install(Object, 'Object.', {
    keys(...a) { return guarded(KEYS_ARG, 'Object.keys', this, a); },
    values(...a) { return guarded(KEYS_ARG, 'Object.values', this, a); },
    entries(...a) { return guarded(KEYS_ARG, 'Object.entries', this, a); },
    getOwnPropertyNames(...a) { return guarded(KEYS_ARG, 'Object.getOwnPropertyNames', this, a); },
    getOwnPropertyDescriptors(...a) {
      return guarded(KEYS_ARG, 'Object.getOwnPropertyDescriptors', this, a);
    },
    assign(...a) { return guarded(ASSIGN, 'Object.assign', this, a); },
    create(...a) { return guarded(KEYS_REST, 'Object.create', this, a); },
    defineProperties(o, props) {
      if (!isObject(o) || props == null) {
        return apply(ORIG['Object.defineProperties'], undefined, [o, props]);  // its TypeError
      }
      const size = keysLength(props);  // listed in C++
      if (size > MAX_SLOW) slowPaths().refuse('Object.defineProperties', size, MAX_SLOW);
      return slowPaths().definedAll(o, props);
    },
    defineProperty(o, key, desc) { return defined('Object.defineProperty', o, key, desc); },
    freeze(...a) { return guarded(KEYS_ARG, 'Object.freeze', this, a); },
    seal(...a) { return guarded(KEYS_ARG, 'Object.seal', this, a); },
    isFrozen(...a) { return guarded(KEYS_ARG, 'Object.isFrozen', this, a); },
    isSealed(...a) { return guarded(KEYS_ARG, 'Object.isSealed', this, a); },
    setPrototypeOf(o, proto) {
      return protoSet('Object.setPrototypeOf', this,
                      [o, protoChecked('Object.setPrototypeOf', proto)], o);
    },
  });
  install(Reflect, 'Reflect.', {
    ownKeys(...a) { return guarded(KEYS_ARG, 'Reflect.ownKeys', this, a); },
    apply(...a) { return guarded(ARGLIST_2, 'Reflect.apply', this, a); },
    construct(...a) { return guarded(ARGLIST_1, 'Reflect.construct', this, a); },
    defineProperty(o, key, desc) { return defined('Reflect.defineProperty', o, key, desc); },
    setPrototypeOf(o, proto) {
      return protoSet('Reflect.setPrototypeOf', this,
                      [o, protoChecked('Reflect.setPrototypeOf', proto)], o);
    },
  });
  {
    const proto = getOwnPropertyDescriptor(Object.prototype, '__proto__');
    ORIG['Object.prototype.__proto__'] = proto.set;
    // An accessor's setter, as the original is (named "set __proto__", no prototype, not a
    // constructor).
    defineProperty(Object.prototype, '__proto__', {get: proto.get, configurable: true,
      set: getOwnPropertyDescriptor({
        set __proto__(p) {
          protoSet('Object.prototype.__proto__', this,
                   [protoChecked('Object.prototype.__proto__', p)], this);
        },
      }, '__proto__').set});
  }
  // __defineGetter__ or __defineSetter__ (`what`) on `self`: an accessor, as defined() notes.
  function definedLegacy(what, self, key, f) {
    if (isObject(self) && walkedKey(key)) holdAccessors(self);
    return apply(ORIG[what], self, [key, f]);
  }
  install(Object.prototype, 'Object.prototype.', {
    __defineGetter__(key, getter) {
      return definedLegacy('Object.prototype.__defineGetter__', this, key, getter);
    },
    __defineSetter__(key, setter) {
      return definedLegacy('Object.prototype.__defineSetter__', this, key, setter);
    },
  });
  install(Function.prototype, 'Function.prototype.', {
    apply(...a) { return guarded(ARGLIST_1, 'Function.prototype.apply', this, a); },
  });
  // Split into more parts than V8's arrays hold aborts the process; ICU's
  // normalisation, case mapping, collation and segmentation run uninterrupted.
  // Replacing every match in a long string runs in C++ without an interrupt
  // check (a 4 MiB subject takes seconds): on a subject longer than
  // NATIVE_REPLACE the matches are found and substituted in a JavaScript
  // loop instead, with the same results.
  install(String.prototype, 'String.prototype.', {
    indexOf(...a) { return searched('String.prototype.indexOf', this, a); },
    lastIndexOf(...a) { return searched('String.prototype.lastIndexOf', this, a); },
    includes(...a) { return searched('String.prototype.includes', this, a); },
    split(...a) {
      // A primitive separator made a string (an object is, in splitString, after the limit);
      // the receiver too, unless the separator's @@split is called with it as it is.
      if (!isObject(a[0]) && a[0] !== undefined) a[0] = searchString(a[0], symbolSplit);
      const method = primitiveMethod(this, a[0], symbolSplit);
      if (method !== undefined) return apply(method, a[0], [this, a[1]]);
      const plain = plainObject(a[0], symbolSplit);
      const self = typeof a[0] === 'string' || a[0] === undefined || plain ?
          receiverString(this) : this;
      if (lengthOf(self) <= MAX_STRING &&
          (typeof a[0] === 'string' ? !nativeSearch(lengthOf(self), a[0].length) : plain)) {
        return slowPaths().splitString(self, a[0], a[1]);
      }
      return stringGuarded('String.prototype.split', MAX_STRING, false, self, a);
    },
    normalize(...a) {
      return stringGuarded('String.prototype.normalize', MAX_SLOW * 4, false, receiverString(this),
                           a);
    },
    toLocaleLowerCase(...a) {
      return stringGuarded('String.prototype.toLocaleLowerCase', MAX_SLOW * 4, false,
                           receiverString(this), withLocales('toLocaleLowerCase', a, 0));
    },
    // A two-byte string's case goes through ICU too, uninterrupted (250 Mi characters: 8 s at
    // 1.9 GB), as the locale-sensitive ones do.
    toLowerCase(...a) {
      return stringGuarded('String.prototype.toLowerCase', MAX_SLOW * 4, false,
                           receiverString(this), a);
    },
    toUpperCase(...a) {
      return stringGuarded('String.prototype.toUpperCase', MAX_SLOW * 4, false,
                           receiverString(this), a);
    },
    toLocaleUpperCase(...a) {
      return stringGuarded('String.prototype.toLocaleUpperCase', MAX_SLOW * 4, false,
                           receiverString(this), withLocales('toLocaleUpperCase', a, 0));
    },
    localeCompare(...a) {
      return stringGuarded('String.prototype.localeCompare', MAX_SLOW * 4, true,
                           receiverString(this), withLocales('localeCompare', a, 1));
    },
    replace(pattern, replacement) {
      return replaced(this, searchString(pattern, symbolReplace), replacement, false);
    },
    replaceAll(pattern, replacement) {
      if (!isObject(pattern) ||
          (pattern[symbolReplace] == null && !slowPaths().isRegExpLike(pattern))) {
        pattern = searchString(pattern, symbolReplace);
      }
      return replaced(this, pattern, replacement, true);
    },
  });
  // replace() or (`all`) replaceAll() once the search value is converted. The receiver is made
  // a string for a string search; a @@replace is called with it as it is.
  function replaced(receiver, pattern, replacement, all) {
    const method = primitiveMethod(receiver, pattern, symbolReplace);
    if (method !== undefined) return apply(method, pattern, [receiver, replacement]);
    const self = typeof pattern === 'string' ? receiverString(receiver) : receiver;
    if (typeof pattern === 'string' && typeof replacement !== 'function') {
      replacement = StringOf(replacement);
    }
    if (typeof pattern === 'string' &&
        (lengthOf(self) > NATIVE_REPLACE || !nativeSearch(lengthOf(self), pattern.length) ||
         heavyTemplate(self, replacement))) {
      return slowPaths().replaceString(self, pattern, replacement, all);
    }
    return apply(ORIG[all ? 'String.prototype.replaceAll' : 'String.prototype.replace'], self,
                 [pattern, interruptible(replacement)]);
  }
  // URI coding (and escape, unescape) runs in C++, uninterrupted, and writes up to 9 bytes a
  // character (500 Mi characters: 13 s at 4.3 GB): inputs of at most MAX_SLOW * 4 characters.
  install(globalThis, '', {
    encodeURI(...a) { return stringGuarded('encodeURI', MAX_SLOW * 4, true, undefined, a); },
    encodeURIComponent(...a) {
      return stringGuarded('encodeURIComponent', MAX_SLOW * 4, true, undefined, a);
    },
    decodeURI(...a) { return stringGuarded('decodeURI', MAX_SLOW * 4, true, undefined, a); },
    decodeURIComponent(...a) {
      return stringGuarded('decodeURIComponent', MAX_SLOW * 4, true, undefined, a);
    },
    // The same for Annex B's (escape of 89 Mi characters: 1 s past the CPU limit, 736 MB).
    escape(...a) { return stringGuarded('escape', MAX_SLOW * 4, true, undefined, a); },
    unescape(...a) { return stringGuarded('unescape', MAX_SLOW * 4, true, undefined, a); },
  });

  // ---- RegExp compilation -----------------------------------------------------
  // V8 parses a pattern in C++ without an interrupt check, and some parts
  // cost far more than their text: a Unicode property escape (\p{L}, \P{L})
  // becomes hundreds of ranges (100,000 of them ran 19 s and took 1.3 GB
  // outside the heap), a named group an entry checked against the others.
  // A pattern with more than MAX_REGEXP_ESCAPES of either is refused where
  // a string becomes a pattern: RegExp (called or constructed), compile(),
  // and match, matchAll and search given no regexp. (Literals are counted
  // when their module is compiled: module_loader.cc.) RegExp is a wrapper
  // like Date: same prototype (whose constructor it is) and statics.
  const MAX_REGEXP_ESCAPES = 1000;
  const OrigRegExp = RegExp;
  const isRegExp = n.isRegExp;
  function countOf(source, needle) {
    let count = 0;
    for (let i = apply(stringIndexOf, source, [needle, 0]); i >= 0;
         i = apply(stringIndexOf, source, [needle, i + needle.length])) {
      ++count;
    }
    return count;
  }
  // With both i and u, V8 case-folds every class over all of Unicode (a
  // class of the whole range took 5 ms): classes and escapes count, and fewer.
  const MAX_REGEXP_FOLDED = 100;
  // Without u, an i class is folded over the BMP (0.2 ms each: 100,000 ran 25 s): those count
  // against MAX_REGEXP_ESCAPES. And a long pattern takes long to compile whatever it holds
  // (3 Mi alternatives "a|a|...": 33 s at 1.7 GB): at most MAX_REGEXP_SOURCE characters.
  const MAX_REGEXP_SOURCE = 1 << 17;
  // V8 aborts the process compiling groups nested deeper than its stack reserve allows
  // ("Fatal process OOM in RegExpCompiler"; 256 levels with the stack nearly full): at most
  // MAX_REGEXP_NESTING levels (regexp_literals.h's kMaxRegExpNesting, which literals are held
  // to, says why 32; regexpNesting counts).
  const MAX_REGEXP_NESTING = 32;
  const regexpNesting = n.regexpNesting;
  // `pattern` as the string V8 would parse (a RegExp passes as it is: its
  // pattern was checked when it was made), refused if it costs too much.
  function checkedPattern(what, pattern, flags) {
    if (isRegExp(pattern) || pattern === undefined) return pattern;
    const source = StringOf(pattern);
    if (source.length > MAX_REGEXP_SOURCE) {
      slowPaths().refuse(what + ' (pattern length)', source.length, MAX_REGEXP_SOURCE);
    }
    if (source.length > MAX_REGEXP_NESTING) {  // (each level takes a character)
      const depth = regexpNesting(source);
      if (depth > MAX_REGEXP_NESTING) {
        slowPaths().refuse(what + ' (nesting of groups)', depth, MAX_REGEXP_NESTING);
      }
    }
    if (source.length >= 3) {
      const escapes = countOf(source, '\\p{') + countOf(source, '\\P{');
      const groups = countOf(source, '(?<') - countOf(source, '(?<=') - countOf(source, '(?<!');
      let size = max(escapes, groups), limit = MAX_REGEXP_ESCAPES;
      const f = flags === undefined ? '' : StringOf(flags);
      if (apply(stringIndexOf, f, ['i', 0]) >= 0) {
        const folded = escapes + countOf(source, '[');
        if (apply(stringIndexOf, f, ['u', 0]) >= 0) {
          size = max(groups, folded);
          limit = MAX_REGEXP_FOLDED;
        } else {
          size = max(size, folded);
        }
      }
      if (size > limit) {
        slowPaths().refuse(what + ' (Unicode property escapes, classes or named groups)', size,
                           limit);
      }
    }
    return source;
  }
  // A failed attempt at one start position goes on to the next without V8 looking for
  // termination unless it failed through the backtrack stack; an attempt that fails far into a
  // long text does not (a "b" after 4 Ki "a"s, at each of 16 Mi positions: 23 s, quadratic and
  // uninterruptible), and a pattern of plain characters (an atom) is searched like a string,
  // quadratic past SEARCH_PREFIX characters. So a pattern over MAX_UNGUARDED_PATTERN
  // characters is compiled as (?=)(?:pattern): the same language, captures and groups, but the
  // empty lookahead makes every failed attempt backtrack through the stack, where V8 checks.
  // (It costs a long pattern 1-3x: V8 no longer skips ahead with Boyer-Moore.) Its `source`
  // shows the guard, as a guarded literal's does (an own `source` showing the pattern as
  // written would take the regexp off V8's fast paths: split 15x slower). Sticky regexps try
  // one position, and an atom V8 searches linearly needs no guard (needsGuard).
  const MAX_UNGUARDED_PATTERN = 64;
  const REGEXP_GUARD = '(?=)(?:';
  // The getters a plain RegExp's split reads (slowPaths().plainRegExp): name, original.
  const REGEXP_FLAG_GETTERS = [];
  for (const name of ['flags', 'global', 'ignoreCase', 'multiline', 'dotAll', 'unicode', 'sticky',
                      'hasIndices']) {
    const d = getOwnPropertyDescriptor(OrigRegExp.prototype, name);
    REGEXP_FLAG_GETTERS.push(name, d === undefined ? undefined : d.get);
  }
  const REGEXP_SPECIES_GETTER = getOwnPropertyDescriptor(OrigRegExp, Symbol.species).get;
  // Whether `source` needs the guard: RegExpNeedsGuard (lib/v8/regexp_literals.h), the rule
  // literals are rewritten by; MAX_UNGUARDED_PATTERN (its kMaxUnguardedRegExp) spares the
  // short patterns nearly every regexp has a call into C++.
  const regexpNeedsGuard = n.regexpNeedsGuard;
  const needsGuard = (source, flags) => source.length > MAX_UNGUARDED_PATTERN &&
      regexpNeedsGuard(source, flags === undefined ? '' : StringOf(flags)) === true;
  // `args` (as regExpArgs returns them: a RegExp, undefined, or a checked string) with the
  // pattern guarded if it needs to be, once the pattern as written was found valid (V8's
  // SyntaxError names that one).
  function guardedArgs(args) {
    const pattern = args[0], flags = args[1];  // (no destructuring: a tenant's iterator)
    if (typeof pattern !== 'string' || !needsGuard(pattern, flags)) return args;
    construct(OrigRegExp, args);
    return [REGEXP_GUARD + pattern + ')', flags];
  }
  // The regexp `new target(...args)` makes, guarded if it needs to be.
  const makeRegExp = (args, target) => construct(OrigRegExp, guardedArgs(args), target);
  // A regexp-like object (Symbol.match, not a RegExp) gives its source and
  // flags, as the constructor would read them.
  function regExpArgs(what, pattern, flags) {
    if (!isRegExp(pattern) && typeof pattern === 'object' && pattern !== null &&
        pattern[Symbol.match] !== undefined) {
      const source = pattern.source;
      if (flags === undefined) flags = pattern.flags;
      pattern = source;
    }
    if (flags !== undefined && typeof flags === 'object' && flags !== null) flags = StringOf(flags);
    return [checkedPattern(what, pattern, flags), flags];
  }
  // (An expression: a declaration named RegExp would be hoisted over every
  // use of the global in the bootstrap.)
  const RegExpWrapper = function RegExp(pattern, flags) {
    const args = regExpArgs('RegExp', pattern, flags);
    if (new.target === undefined) {
      // Called: a RegExp is returned as it is when its constructor is RegExp.
      if (isRegExp(pattern) && flags === undefined && pattern.constructor === RegExp) {
        return pattern;
      }
    }
    // The intrinsic as new.target, unless a subclass: V8's fast paths want its map.
    return makeRegExp(args,
                      new.target === undefined || new.target === RegExp ? OrigRegExp : new.target);
  };
  for (const key of ownKeys(OrigRegExp)) {
    if (key === 'prototype' || key === 'length' || key === 'name') continue;
    defineProperty(RegExpWrapper, key, getOwnPropertyDescriptor(OrigRegExp, key));
  }
  defineProperty(RegExpWrapper, 'prototype', {value: OrigRegExp.prototype});
  defineProperty(OrigRegExp.prototype, 'constructor',
                 {value: RegExpWrapper, writable: true, configurable: true});
  defineProperty(globalThis, 'RegExp', {value: RegExpWrapper, writable: true, configurable: true});
  install(OrigRegExp.prototype, 'RegExp.prototype.', {
    compile(pattern, flags) {
      return apply(ORIG['RegExp.prototype.compile'], this,
                   guardedArgs(regExpArgs('RegExp.prototype.compile', pattern, flags)));
    },
  });
  // match, matchAll and search make a RegExp of an argument with no method
  // of that name.
  function stringMatcher(what, symbol, flags, self, regexp) {
    if (regexp === undefined || regexp === null ||
        (isObject(regexp) && regexp[symbol] !== undefined && regexp[symbol] !== null)) {
      return apply(ORIG[what], self, [regexp]);
    }
    // The spec's RegExpCreate, through makeRegExp (V8's would skip the guard), then Invoke.
    if (self === undefined || self === null) return apply(ORIG[what], self, [regexp]);  // TypeError
    const S = StringOf(self);
    const rx = makeRegExp([checkedPattern(what, regexp), flags], OrigRegExp);
    return rx[symbol](S);
  }
  install(String.prototype, 'String.prototype.', {
    match(regexp) {
      return stringMatcher('String.prototype.match', Symbol.match, undefined, this, regexp);
    },
    matchAll(regexp) {
      return stringMatcher('String.prototype.matchAll', Symbol.matchAll, 'g', this, regexp);
    },
    search(regexp) {
      return stringMatcher('String.prototype.search', Symbol.search, undefined, this, regexp);
    },
  });
  // split and matchAll make a new regexp with the receiver's species
  // constructor; for a receiver that is no RegExp that may be the original
  // constructor, on the receiver's string, past every check above. A real
  // RegExp's pattern was checked when it was made.
  function onRegExp(what, self, args) {
    if (!isRegExp(self)) {
      fail(INVALID_ARGUMENT, what + ' works on a RegExp only in this sandbox');
    }
    return apply(ORIG[what], self, args);
  }
  ORIG['RegExp.prototype.@@split'] = OrigRegExp.prototype[Symbol.split];
  ORIG['RegExp.prototype.@@matchAll'] = OrigRegExp.prototype[Symbol.matchAll];
  // V8 gates every regexp fast path on its species protector, which the wrapper's
  // RegExp.prototype.constructor invalidates (it must: the original constructor would skip
  // every check above). Its slow split runs a sticky exec at every position (74x slower
  // than raw V8 over 250 KB), so a plain RegExp is split here, one exec per match
  // (slowPaths().splitRegExp); anything the specification would let tenant code observe goes
  // to the builtin.
  defineProperty(OrigRegExp.prototype, Symbol.split, {writable: true, configurable: true,
    value: {[Symbol.split](string, limit) {
      if (typeof string === 'string' && (limit === undefined || typeof limit === 'number')) {
        const paths = slowPaths();
        if (paths.plainRegExp(this)) return paths.splitRegExp(this, string, limit);
      }
      return onRegExp('RegExp.prototype.@@split', this, [string, limit]);
    }}[Symbol.split]});
  defineProperty(OrigRegExp.prototype, Symbol.matchAll, {writable: true, configurable: true,
    value: {[Symbol.matchAll](...a) { return onRegExp('RegExp.prototype.@@matchAll', this, a); }}
        [Symbol.matchAll]});

  // ---- ICU memory outside the heap limit -------------------------------------
  // An Intl object keeps its ICU formatter outside V8's heap, so a loop
  // making DateTimeFormats grew the process by gigabytes under a small heap
  // limit. Every constructor, Segmenter's segment() and a segments iterator
  // (each clones a break iterator; segment() also copies its input, see
  // there) first charge intlObject(KiB) about what
  // they hold (measured: a DateTimeFormat 47-60 KiB, a NumberFormat or
  // RelativeTimeFormat 10-14, the others 2 or less, charged 4): V8's GC learns of the
  // memory, and a request may make kMaxIntlBytesPerRequest of them
  // (isolate_runtime.h). A wrapper stands in for its constructor everywhere
  // (prototype.constructor, subclasses through new.target, `this` when
  // called without new); the original stays in ORIG only. Intl.Locale
  // holds next to nothing and is left alone.
  const intlObject = n.intlObject;
  const RANGE_FORMATTER_KIB = 384;
  let rangeCharged = null;  // the DateTimeFormats whose interval formatter is charged
  function rangeFormatted(what, self, args) {
    const result = apply(ORIG[what], self, args);
    if (rangeCharged === null) rangeCharged = new WeakMap_();
    if (apply(weakMapGet, rangeCharged, [self]) === undefined) {
      apply(weakMapSet, rangeCharged, [self, true]);
      intlObject(RANGE_FORMATTER_KIB);
    }
    return result;
  }
  function intlNew(name, kib, self, target, args) {
    intlObject(kib);
    withLocales('Intl.' + name, args, 0, name === 'DateTimeFormat');
    const C = ORIG['Intl.' + name];
    return target === undefined ? apply(C, self, args) : construct(C, args, target);
  }
  if (typeof Intl === 'object' && Intl !== null) {
    delete Intl.v8BreakIterator;  // V8's own, not ECMA-402
    const intl = {
      Collator: function Collator(...a) { return intlNew('Collator', 4, this, new.target, a); },
      DateTimeFormat: function DateTimeFormat(...a) {
        return intlNew('DateTimeFormat', 64, this, new.target, a);
      },
      // 48: a 'dateTimeField' one holds ~45 KiB (3,000 of them, charged 4 each, held 110 MB).
      DisplayNames: function DisplayNames(...a) {
        return intlNew('DisplayNames', 48, this, new.target, a);
      },
      ListFormat: function ListFormat(...a) {
        return intlNew('ListFormat', 4, this, new.target, a);
      },
      NumberFormat: function NumberFormat(...a) {
        return intlNew('NumberFormat', 16, this, new.target, a);
      },
      PluralRules: function PluralRules(...a) {
        return intlNew('PluralRules', 4, this, new.target, a);
      },
      RelativeTimeFormat: function RelativeTimeFormat(...a) {
        return intlNew('RelativeTimeFormat', 16, this, new.target, a);
      },
      Segmenter: function Segmenter(...a) {
        return intlNew('Segmenter', 4, this, new.target, a);
      },
    };
    for (const name of ownKeys(intl)) {
      const C = Intl[name], wrapper = intl[name];
      if (typeof C !== 'function') {
        delete intl[name];  // not in this V8: no wrapper either
        continue;
      }
      defineProperty(wrapper, 'length', {value: C.length});
      defineProperty(wrapper, 'prototype', {value: C.prototype, writable: false});
      ORIG['Intl.' + name + '.supportedLocalesOf'] = C.supportedLocalesOf;
      defineProperty(wrapper, 'supportedLocalesOf', {writable: true, configurable: true,
        value: {supportedLocalesOf(...a) {
          return apply(ORIG['Intl.' + name + '.supportedLocalesOf'], this,
                       withLocales('supportedLocalesOf', a, 0));
        }}.supportedLocalesOf});
      defineProperty(C.prototype, 'constructor', {value: wrapper, writable: true, configurable: true});
    }
    if (typeof Intl.Segmenter === 'function') {
      const segmentsProto = getPrototypeOf(new Intl.Segmenter().segment(''));
      ORIG['Intl.Segments.iterator'] = segmentsProto[Symbol.iterator];
      defineProperty(segmentsProto, Symbol.iterator, {writable: true, configurable: true,
        value: function segmentsIterator() {
          intlObject(4);
          return apply(ORIG['Intl.Segments.iterator'], this, []);
        }});
      // ICU keeps its own UTF-16 copy of the input for as long as the Segments object lives
      // (1,000 of a 1 Mi-character string held 2 GB, charged 4 KiB each): charged here, 2
      // bytes a character. And each segment the Segments object hands out (its iterator's
      // next(), containing()) copies the whole input into a new string (V8 10.2's
      // JSSegments::CreateSegmentDataObject): a walk is quadratic, and past about 300 Ki
      // characters the copies (large objects) kept the thread seconds past its CPU limit,
      // abandoned. At MAX_SEGMENTED characters a whole walk takes about 0.9 s, interrupted.
      const MAX_SEGMENTED = 1 << 16;
      install(Intl.Segmenter.prototype, 'Intl.Segmenter.prototype.', {
        segment(...a) {
          // Made a string here, as the builtin would (a BigInt's digits too: 10n ** 100000n),
          // but a Symbol, for the builtin's TypeError.
          if (typeof a[0] !== 'symbol') a[0] = StringOf(a[0]);
          const size = lengthOf(a[0]);
          if (size > MAX_SEGMENTED) {
            slowPaths().refuse('Intl.Segmenter.prototype.segment', size, MAX_SEGMENTED);
          }
          intlObject(4 + floor(size / 512));
          return apply(ORIG['Intl.Segmenter.prototype.segment'], this, a);
        },
      });
    }
    install(Intl, 'Intl.', intl);
    // Collation and list formatting copy their strings into ICU (UTF-16, outside the heap
    // limit) and run uninterrupted: a list of 1,000 references to one 16 Mi-character string
    // is 32 GiB. As for localeCompare, compare takes strings of at most MAX_SLOW * 4
    // characters, and a list formatted at most that many in all (its iterable is read here,
    // once, as the builtin would: a value not a string ends the read, and the builtin throws).
    const collatorProto = Intl.Collator.prototype;
    const compareGetter = getOwnPropertyDescriptor(collatorProto, 'compare').get;
    defineProperty(collatorProto, 'compare', {configurable: true, get: function compare() {
      const bound = apply(compareGetter, this, []);
      if (formats === null) formats = new WeakMap_();
      let f = apply(weakMapGet, formats, [bound]);
      if (f === undefined) {
        f = (x, y) => {
          x = StringOf(x);
          y = StringOf(y);
          const size = max(x.length, y.length);
          if (size > MAX_SLOW * 4) {
            slowPaths().refuse('Intl.Collator.prototype.compare', size, MAX_SLOW * 4);
          }
          return bound(x, y);
        };
        apply(weakMapSet, formats, [bound, f]);
      }
      return f;
    }});
    // A DateTimeFormat's first formatRange or formatRangeToParts makes an ICU interval
    // formatter and keeps it (1,000 formatters, charged 64 KiB each, then held 400 MB): that
    // call charges RANGE_FORMATTER_KIB more, once per formatter (rangeCharged; only once it
    // returned, so a call on something else charges nothing).
    install(DTFProto, 'Intl.DateTimeFormat.prototype.', {
      formatRange(...a) {
        return rangeFormatted('Intl.DateTimeFormat.prototype.formatRange', this, a);
      },
      formatRangeToParts(...a) {
        return rangeFormatted('Intl.DateTimeFormat.prototype.formatRangeToParts', this, a);
      },
    });
    // A BigInt's parts (en-IN groups digits in twos) cost more than its digits: 6,000,000
    // bits ran 18 s. And RelativeTimeFormat's unit is a string ICU takes as given.
    install(Intl.NumberFormat.prototype, 'Intl.NumberFormat.prototype.', {
      formatToParts(...a) {
        if (typeof a[0] === 'bigint') {
          slowPaths().bigIntBounded('Intl.NumberFormat.prototype.formatToParts', a[0]);
        }
        return apply(ORIG['Intl.NumberFormat.prototype.formatToParts'], this, a);
      },
    });
    if (typeof Intl.RelativeTimeFormat === 'function') {
      install(Intl.RelativeTimeFormat.prototype, 'Intl.RelativeTimeFormat.prototype.', {
        format(...a) { return relativeTime('Intl.RelativeTimeFormat.prototype.format', this, a); },
        formatToParts(...a) {
          return relativeTime('Intl.RelativeTimeFormat.prototype.formatToParts', this, a);
        },
      });
    }
    if (typeof Intl.DisplayNames === 'function') {
      install(Intl.DisplayNames.prototype, 'Intl.DisplayNames.prototype.', {
        of(...a) {
          if (a.length > 0) a[0] = slowPaths().intlString('Intl.DisplayNames.prototype.of', a[0]);
          return apply(ORIG['Intl.DisplayNames.prototype.of'], this, a);
        },
      });
    }
    if (typeof Intl.ListFormat === 'function') {
      install(Intl.ListFormat.prototype, 'Intl.ListFormat.prototype.', {
        format(list) { return listFormatted('Intl.ListFormat.prototype.format', this, list); },
        formatToParts(list) {
          return listFormatted('Intl.ListFormat.prototype.formatToParts', this, list);
        },
      });
    }
    install(Intl, 'Intl.', {
      getCanonicalLocales(...a) {
        return apply(ORIG['Intl.getCanonicalLocales'], this,
                     withLocales('Intl.getCanonicalLocales', a, 0));
      },
    });
    if (typeof Intl.Locale === 'function') {
      // A Locale's tag and options are bounded as locales and options are.
      const wrapper = function Locale(...a) {
        if (new.target === undefined) return apply(ORIG['Intl.Locale'], this, a);
        if (a.length > 0) a[0] = slowPaths().intlString('Intl.Locale', a[0]);
        if (a.length > 1 && ((typeof a[1] === 'object' && a[1] !== null) ||
                             typeof a[1] === 'function')) {
          a[1] = slowPaths().intlOptions('Intl.Locale', a[1]);
        }
        return construct(ORIG['Intl.Locale'], a, new.target);
      };
      defineProperty(wrapper, 'length', {value: Intl.Locale.length});
      defineProperty(wrapper, 'prototype', {value: Intl.Locale.prototype, writable: false});
      defineProperty(Intl.Locale.prototype, 'constructor',
                     {value: wrapper, writable: true, configurable: true});
      install(Intl, 'Intl.', {Locale: wrapper});
      install(Intl.Locale.prototype, 'Intl.Locale.prototype.', {
        maximize() {
          intlObject(4);
          return apply(ORIG['Intl.Locale.prototype.maximize'], this, []);
        },
        minimize() {
          intlObject(4);
          return apply(ORIG['Intl.Locale.prototype.minimize'], this, []);
        },
      });
    }
  }
  defineProperty(RegExp.prototype, Symbol.replace, {writable: true, configurable: true,
    value: function sandboxedReplace(string, replaceValue) {
      const S = StringOf(string);
      if (typeof replaceValue !== 'function') replaceValue = StringOf(replaceValue);
      if ((S.length > NATIVE_REPLACE || heavyTemplate(S, replaceValue)) && isObject(this)) {
        return slowPaths().replaceByExec(this, S, replaceValue);
      }
      return apply(regexpReplace, this, [S, interruptible(replaceValue)]);
    }});
  // Typed arrays: views are capped at MAX_TYPED elements (a 4 MiB Uint8Array,
  // a 32 MiB Float64Array; a DataView reaches a whole buffer), because
  // listing a typed array's keys (for-in, a spread into an object,
  // Object.assign: syntax, which no wrapper reaches) makes a string per
  // element in C++, uninterruptibly, quadratic in time past the heap limit.
  // Each constructor is its own literal (no closure context); it makes the
  // original's view (for new.target, so subclasses still work) and checks
  // its length.
  function capped(name, newTarget, self, args) {
    const Orig = ORIG[name];
    if (newTarget === undefined) return apply(Orig, self, args);  // its TypeError
    // A length is refused before its buffer is allocated (and zeroed, which
    // for a huge one takes longer than a request may).
    const n = args[0];
    if (typeof n === 'number' && n > MAX_TYPED) {
      slowPaths().refuse(name, floor(n) + ' elements', MAX_TYPED);
    }
    const view = typedSource(name, Orig, self, args, newTarget);
    const size = typedLength(view);
    if (size > MAX_TYPED) slowPaths().refuse(name, size + ' elements', MAX_TYPED);
    protoChecked(name, getPrototypeOf(view));
    return view;
  }
  // A typed array builtin (`what`, `f`) that copies array-like args[0] element by element in
  // C++ (the constructors, %TypedArray%.from and set): each hole is looked up on every
  // prototype, so the source is bounded as a generic Array method's receiver is, and its walk
  // registered (see walked). A typed array or a buffer is copied as it is; a length a Proxy's
  // get trap answers is read through the trap, element by element, interruptibly.
  function typedSource(what, f, self, args, newTarget = undefined) {
    const source = args[0];
    let size = 0;
    if (isObject(source) && typedLength(unproxied(source)) < 0) size = walkLength(source);
    if (size === 0 || size === TRAP_LENGTH) return called(f, self, args, newTarget);
    if (size > MAX_WALK) slowPaths().refuse(what, size, MAX_WALK);
    return walked(f, self, args, source, size, MAX_WALK, newTarget);
  }
  const cappedTypedArrays = {
    Int8Array: function Int8Array(...a) { return capped('Int8Array', new.target, this, a); },
    Uint8Array: function Uint8Array(...a) { return capped('Uint8Array', new.target, this, a); },
    Uint8ClampedArray: function Uint8ClampedArray(...a) {
      return capped('Uint8ClampedArray', new.target, this, a);
    },
    Int16Array: function Int16Array(...a) { return capped('Int16Array', new.target, this, a); },
    Uint16Array: function Uint16Array(...a) { return capped('Uint16Array', new.target, this, a); },
    Int32Array: function Int32Array(...a) { return capped('Int32Array', new.target, this, a); },
    Uint32Array: function Uint32Array(...a) { return capped('Uint32Array', new.target, this, a); },
    Float32Array: function Float32Array(...a) {
      return capped('Float32Array', new.target, this, a);
    },
    Float64Array: function Float64Array(...a) {
      return capped('Float64Array', new.target, this, a);
    },
    BigInt64Array: function BigInt64Array(...a) {
      return capped('BigInt64Array', new.target, this, a);
    },
    BigUint64Array: function BigUint64Array(...a) {
      return capped('BigUint64Array', new.target, this, a);
    },
  };
  for (const name of ownKeys(cappedTypedArrays)) {
    const Orig = globalThis[name];
    const Capped = cappedTypedArrays[name];
    ORIG[name] = Orig;
    setPrototypeOf(Capped, getPrototypeOf(Orig));  // %TypedArray%: from, of, species
    defineProperty(Capped, 'prototype', {value: Orig.prototype, writable: false});
    defineProperty(Capped, 'BYTES_PER_ELEMENT', {value: Orig.BYTES_PER_ELEMENT});
    defineProperty(Orig.prototype, 'constructor', {value: Capped, writable: true,
                                                  configurable: true});
    defineProperty(globalThis, name, {value: Capped, writable: true, configurable: true});
  }
  // V8 sorts a typed array without a comparator in C++ (uninterruptible),
  // and with one after boxing every element (a heap the size of the array).
  defineProperty(TypedArrayProto, 'sort', {writable: true, configurable: true,
    value: function sort(comparefn) {
      comparefn = interruptible(comparefn);
      if ((comparefn === undefined || typeof comparefn === 'function') &&
          typedLength(this) > MAX_SLOW) {
        return slowPaths().sortLarge(this, comparefn);
      }
      return apply(typedSort, this, [comparefn]);
    }});
  // JSON.stringify lists a typed array's keys in C++ before it serialises
  // them; it asks toJSON first.
  defineProperty(TypedArrayProto, 'toJSON', {writable: true, configurable: true,
    value: function toJSON() {
      const size = typedLength(this);
      if (size > MAX_SLOW) slowPaths().refuse('JSON.stringify of a typed array', size, MAX_SLOW);
      return this;
    }});

  // The other builtins that call back (see interruptible()).
  install(TypedArrayProto, 'TypedArray.prototype.', {
    every(...a) { return apply(ORIG['TypedArray.prototype.every'], this, calledBack(a, 0)); },
    filter(...a) { return apply(ORIG['TypedArray.prototype.filter'], this, calledBack(a, 0)); },
    find(...a) { return apply(ORIG['TypedArray.prototype.find'], this, calledBack(a, 0)); },
    findIndex(...a) {
      return apply(ORIG['TypedArray.prototype.findIndex'], this, calledBack(a, 0));
    },
    findLast(...a) { return apply(ORIG['TypedArray.prototype.findLast'], this, calledBack(a, 0)); },
    findLastIndex(...a) {
      return apply(ORIG['TypedArray.prototype.findLastIndex'], this, calledBack(a, 0));
    },
    forEach(...a) { return apply(ORIG['TypedArray.prototype.forEach'], this, calledBack(a, 0)); },
    map(...a) { return apply(ORIG['TypedArray.prototype.map'], this, calledBack(a, 0)); },
    reduce(...a) { return apply(ORIG['TypedArray.prototype.reduce'], this, calledBack(a, 0)); },
    reduceRight(...a) {
      return apply(ORIG['TypedArray.prototype.reduceRight'], this, calledBack(a, 0));
    },
    some(...a) { return apply(ORIG['TypedArray.prototype.some'], this, calledBack(a, 0)); },
  });
  install(TypedArrayProto, 'TypedArray.prototype.', {
    toLocaleString(...a) { return localeGuarded('TypedArray.prototype.toLocaleString', this, a); },
  });
  install(Number.prototype, 'Number.prototype.', {
    toLocaleString(...a) {
      return apply(ORIG['Number.prototype.toLocaleString'], this, withLocales('toLocaleString', a, 0));
    },
  });
  install(BigInt.prototype, 'BigInt.prototype.', {
    toLocaleString(...a) {
      return apply(ORIG['BigInt.prototype.toLocaleString'], this, withLocales('toLocaleString', a, 0));
    },
  });
  install(OrigDate.prototype, 'Date.prototype.', {
    toLocaleString(...a) {
      return apply(ORIG['Date.prototype.toLocaleString'], this,
                   withLocales('Date.prototype.toLocaleString', a, 0, true));
    },
    toLocaleDateString(...a) {
      return apply(ORIG['Date.prototype.toLocaleDateString'], this,
                   withLocales('Date.prototype.toLocaleDateString', a, 0, true));
    },
    toLocaleTimeString(...a) {
      return apply(ORIG['Date.prototype.toLocaleTimeString'], this,
                   withLocales('Date.prototype.toLocaleTimeString', a, 0, true));
    },
  });
  install(TypedArrayProto.constructor, 'TypedArray.', {
    from(...a) {
      return typedSource('TypedArray.from', ORIG['TypedArray.from'], this, calledBack(a, 1));
    },
  });
  install(TypedArrayProto, 'TypedArray.prototype.', {
    set(...a) {
      return typedSource('TypedArray.prototype.set', ORIG['TypedArray.prototype.set'], this, a);
    },
  });
  install(Map.prototype, 'Map.prototype.', {
    forEach(...a) { return apply(ORIG['Map.prototype.forEach'], this, calledBack(a, 0)); },
  });
  install(Set.prototype, 'Set.prototype.', {
    forEach(...a) { return apply(ORIG['Set.prototype.forEach'], this, calledBack(a, 0)); },
  });
  install(Promise.prototype, 'Promise.prototype.', {
    then(...a) {
      return apply(ORIG['Promise.prototype.then'], this, calledBack(calledBack(a, 0), 1));
    },
    finally(...a) { return apply(ORIG['Promise.prototype.finally'], this, calledBack(a, 0)); },
  });
  install(JSON, 'JSON.', {
    // V8 parses nesting without an interrupt check (10 million levels: over a minute at
    // 900 MB): text longer than MAX_SLOW characters is scanned here first.
    parse(...a) {
      if (a.length > 0) {
        a[0] = argString(a[0]);
        if (typeof a[0] === 'string' && a[0].length > MAX_SLOW) slowPaths().jsonNesting(a[0]);
      }
      return apply(ORIG['JSON.parse'], this, calledBack(a, 1));
    },
    stringify(...a) { return apply(ORIG['JSON.stringify'], this, calledBack(a, 1)); },
  });

  // The rarely needed code, made on the first call of slowPaths() in a
  // request (its functions are compiled then, not deserialised every time).
  function makeSlowPaths() {
    function refuse(what, size, limit) {
      const from = size === Infinity ? 'a length from a getter' :
          size === TRAP_LENGTH ? "a length from a Proxy's get trap" : size;
      fail(RESOURCE_EXHAUSTED, what + ': ' + from +
           ' exceeds the sandbox limit of ' + limit +
           ' (builtins that V8 cannot interrupt are bounded)');
    }
    // An array-like Proxy read into an argument list as V8 would (its length once, then each
    // index), here, where the reads are JavaScript and the length is checked.
    function argList(what, list) {
      let n = +list.length;
      n = n > 0 ? floor(min(n, MAX_LENGTH)) : 0;
      if (n > MAX_SLOW) refuse(what, n, MAX_SLOW);
      const copy = [];
      for (let i = 0; i < n; ++i) copy[i] = list[i];
      return copy;
    }
    // The builtins whose callback is given the receiver (an argument after the element).
    const passesReceiver = {__proto__: null};
    for (const name of ['every', 'filter', 'find', 'findIndex', 'findLast', 'findLastIndex',
                        'forEach', 'map', 'reduce', 'reduceRight', 'some']) {
      passesReceiver['Array.prototype.' + name] = true;
    }
    // `o` (an object whose length a Proxy's get trap answers, say) behind a Proxy answering
    // "length" with what `o` answered here once, at most `limit` (times chainFactor), and
    // everything else as `o` does, through traps of its own (JavaScript: each read is a point
    // where V8 checks for termination). Reads and writes see `o` as their receiver.
    function pin(what, o, limit) {
      let n = +o.length;
      n = n > 0 ? floor(min(n, MAX_LENGTH)) : 0;
      const size = n * chainFactor(o);
      if (size > limit) refuse(what, size, limit);
      const pinned = new Proxy_(o, {
        __proto__: null,
        get(target, key, receiver) {
          return key === 'length' ? n : reflectGet(target, key, receiver === pinned ? o : receiver);
        },
        set(target, key, value, receiver) {
          return reflectSet(target, key, value, receiver === pinned ? o : receiver);
        },
      });
      return pinned;
    }
    // Array builtin `what` on `o`, whose length a Proxy's get trap answers: V8 would ask the
    // trap again (and a trap answering 1 here and 2^53 there would have V8 walk forever,
    // uninterrupted, where no index reaches JavaScript). It runs on pin(o) instead; its
    // callback and its result see `o`, never that Proxy.
    function pinnedLength(what, o, args, limit) {
      const pinned = pin(what, o, min(limit, MAX_SLOW));
      const callback = args[0];
      if (what in passesReceiver && typeof callback === 'function') {
        args[0] = function callback_(...x) {
          for (let i = 0; i < x.length; ++i) if (x[i] === pinned) x[i] = o;
          return apply(callback, this, x);
        };
      }
      const result = apply(ORIG[what], pinned, args);
      return result === pinned ? o : result;
    }
    function typedCompare(a, b) {  // the default order: -0 before +0, NaN last
      if (a < b) return -1;
      if (a > b) return 1;
      if (a !== a) return b !== b ? 0 : 1;
      if (b !== b) return -1;
      if (a === 0 && b === 0) {
        const x = 1 / a, y = 1 / b;
        return x < y ? -1 : x > y ? 1 : 0;
      }
      return 0;
    }
    const SORT_CHUNK = 1 << 16;
    // Quicksort whose partitions run in JavaScript (interruptible, in place)
    // and whose ranges of up to SORT_CHUNK elements V8 sorts natively.
    function sortLarge(a, comparefn) {
      const cmp = comparefn ?? typedCompare;
      const order = (x, y) => { const r = cmp(x, y); return r !== r ? 0 : r; };
      const swap = (p, q) => { const t = a[p]; a[p] = a[q]; a[q] = t; };
      const ranges = [0, typedLength(a)];
      while (ranges.length > 0) {
        const hi = ranges.pop(), lo = ranges.pop();
        if (hi - lo <= SORT_CHUNK) {
          apply(typedSort, apply(subarray, a, [lo, hi]), [comparefn]);
          continue;
        }
        // Median of three, put at the lower middle: Hoare's scheme then splits
        // [lo, hi) into two non-empty parts (the bounds and the last clamp
        // keep that true for an inconsistent comparator too).
        const mid = lo + ((hi - lo - 1) >> 1);
        if (order(a[mid], a[lo]) < 0) swap(lo, mid);
        if (order(a[hi - 1], a[mid]) < 0) {
          swap(mid, hi - 1);
          if (order(a[mid], a[lo]) < 0) swap(lo, mid);
        }
        const pivot = a[mid];
        let i = lo - 1, j = hi;
        for (;;) {
          do ++i; while (i < hi - 1 && order(a[i], pivot) < 0);
          do --j; while (j > lo && order(a[j], pivot) > 0);
          if (i >= j) break;
          swap(i, j);
        }
        if (j + 1 >= hi) j = hi - 2;
        ranges.push(lo, j + 1, j + 1, hi);
      }
      return a;
    }
    function expand(replacement, args) {
      const groups = typeof args[args.length - 1] === 'object' ? args[args.length - 1] : undefined;
      const at = args.length - (groups === undefined ? 2 : 3);
      const matched = args[0], position = args[at], str = args[at + 1];
      const m = at - 1;  // captures
      let out = '';
      for (let i = 0; i < replacement.length; ++i) {
        const c = replacement[i];
        if (c !== '$' || i + 1 === replacement.length) { out += c; continue; }
        const d = replacement[i + 1];
        if (d === '$') { out += '$'; ++i; continue; }
        if (d === '&') { out += matched; ++i; continue; }
        if (d === '`') { out += str.slice(0, position); ++i; continue; }
        if (d === "'") { out += str.slice(position + matched.length); ++i; continue; }
        if (d >= '0' && d <= '9') {
          const e = replacement[i + 2];
          const two = e !== undefined && e >= '0' && e <= '9' ? +(d + e) : -1;
          if (two >= 1 && two <= m) {
            const v = args[two];
            out += v === undefined ? '' : v;
            i += 2;
            continue;
          }
          if (+d >= 1 && +d <= m) {
            const v = args[+d];
            out += v === undefined ? '' : v;
            ++i;
            continue;
          }
        } else if (d === '<' && groups !== undefined) {
          const end = replacement.indexOf('>', i + 2);
          if (end >= 0) {
            const v = groups[replacement.slice(i + 2, end)];
            out += v === undefined ? '' : String(v);
            i = end;
            continue;
          }
        }
        out += '$';
      }
      return out;
    }
    const globalGetter = getOwnPropertyDescriptor(RegExp.prototype, 'global').get;
    const isRegExp = (v) => {
      try { return typeof apply(globalGetter, v, []) === 'boolean'; } catch (e) { return false; }
    };
    const substitute = (replaceValue, text, args) => typeof replaceValue === 'function' ?
        String(apply(replaceValue, undefined, args)) : expand(text, args);
    function advance(S, index, unicode) {
      if (!unicode || index + 1 >= S.length) return index + 1;
      const c = apply(stringCharCodeAt, S, [index]);
      if (c < 0xD800 || c > 0xDBFF) return index + 1;
      const d = apply(stringCharCodeAt, S, [index + 1]);
      return d >= 0xDC00 && d <= 0xDFFF ? index + 2 : index + 1;
    }
    // The specification's RegExpExec: `rx`'s own exec if it has one (a subclass's, an object's
    // of the tenant's), else the builtin's.
    function regExpExec(rx, S) {
      const exec = rx.exec;
      if (typeof exec === 'function') {
        const result = apply(exec, rx, [S]);
        if (result !== null && !isObject(result)) {
          throw new TypeError('exec must return an object or null');
        }
        return result;
      }
      return apply(regexpExec, rx, [S]);  // its TypeError unless a RegExp
    }
    // RegExp.prototype[Symbol.replace] on object `rx` as the specification writes it (ES2022),
    // in JavaScript: V8's expands a template in C++ for every match, uninterrupted, whatever
    // exec found them. With its own exec (a subclass's, an object's), every match is found
    // first, then each substituted, as the specification and V8 do; with the builtin exec
    // each is substituted as it is found (only a replacer that moves lastIndex could tell;
    // holding every match of a 1 MiB subject passed a 64 MiB heap).
    function replaceByExec(rx, S, replaceValue) {
      const functional = typeof replaceValue === 'function';
      const global = !!rx.global;
      let unicode = false;
      if (global) {
        unicode = !!rx.unicode;
        rx.lastIndex = 0;
      }
      const ownExec = rx.exec !== regexpExec;
      const results = [];
      let out = '', last = 0;
      const substituteMatch = (result) => {
        const captures = max(toLength(result.length) - 1, 0);
        const matched = StringOf(result[0]);
        let position = +result.index;
        position = position !== position ? 0 : position < 0 ? 0 : min(floor(position), S.length);
        const args = [matched];
        for (let i = 1; i <= captures; ++i) {
          const c = result[i];
          args[i] = c === undefined ? undefined : StringOf(c);
        }
        args[args.length] = position;
        args[args.length] = S;
        const groups = result.groups;
        let replacement;
        if (functional) {
          if (groups !== undefined) args[args.length] = groups;
          replacement = StringOf(apply(replaceValue, undefined, args));
        } else {
          if (groups !== undefined) {
            if (groups === null) throw new TypeError('Cannot convert null to an object (groups)');
            args[args.length] = ObjectOf(groups);
          }
          replacement = expand(replaceValue, args);
        }
        if (position >= last) {
          out += slice(S, last, position) + replacement;
          last = position + matched.length;
        }
      };
      for (;;) {
        const result = ownExec ? regExpExec(rx, S) : apply(regexpExec, rx, [S]);
        if (result === null) break;
        if (ownExec) {
          results[results.length] = result;
        } else {
          substituteMatch(result);
        }
        if (!global) break;
        if (StringOf(result[0]) === '') rx.lastIndex = advance(S, toLength(rx.lastIndex), unicode);
      }
      for (let r = 0; r < results.length; ++r) substituteMatch(results[r]);
      return last >= S.length ? out : out + slice(S, last, S.length);
    }
    // String.prototype.replace/replaceAll with a string to search for.
    function replaceString(S, search, replaceValue, all) {
      const text = typeof replaceValue === 'function' ? '' : String(replaceValue);
      let out = '', last = 0;
      for (let pos = searchForward(S, search, 0); pos !== -1;) {
        out += S.slice(last, pos) + substitute(replaceValue, text, [search, pos, S]);
        last = pos + search.length;
        const next = pos + Math.max(1, search.length);
        if (!all || next > S.length) break;
        pos = searchForward(S, search, next);
      }
      return out + S.slice(last);
    }
    // Array.prototype.flat and flatMap as the specification writes them, in JavaScript: V8's
    // walk of a nested array never checks for termination, so [new Array(2 ** 32 - 1)].flat()
    // ran for minutes past every limit. A receiver or mapper the builtin refuses goes to the
    // builtin, which throws before it walks anything.
    const toLength = (v) => {
      const n = +v;
      return n > 0 ? (n < MAX_LENGTH ? floor(n) : MAX_LENGTH) : 0;
    };
    // CreateDataPropertyOrThrow: a TypeError where the property cannot be defined.
    // (The descriptor has no prototype: a "get" a tenant put on Object.prototype would make it
    // an accessor's, and V8 throw.)
    const createDataProperty = (target, index, value) => defineProperty(target, index,
        {__proto__: null, value, writable: true, enumerable: true, configurable: true});
    const species = Symbol.species;
    // ArraySpeciesCreate(O, 0) (V8 keeps the other realm's Array check: one realm here).
    function speciesCreate(O) {
      if (!ArrayIsArray(O)) return [];
      let C = O.constructor;
      if (isObject(C)) {
        C = C[species];
        if (C === null) C = undefined;
      }
      return C === undefined ? [] : construct(C, [0]);
    }
    function flattenInto(target, source, sourceLength, start, depth, mapper, thisArg) {
      let targetIndex = start;
      for (let i = 0; i < sourceLength; ++i) {
        if (!(i in source)) continue;
        let element = source[i];
        if (mapper !== undefined) element = apply(mapper, thisArg, [element, i, source]);
        if (depth > 0 && ArrayIsArray(element)) {
          targetIndex = flattenInto(target, element, toLength(element.length), targetIndex,
                                    depth - 1, undefined, undefined);
        } else {
          if (targetIndex >= MAX_LENGTH) {
            throw new TypeError('flat: the result would be longer than 2^53 - 1');
          }
          createDataProperty(target, targetIndex, element);
          ++targetIndex;
        }
      }
      return targetIndex;
    }
    function flat(self, depth) {
      if (self === null || self === undefined) {
        return apply(ORIG['Array.prototype.flat'], self, [depth]);
      }
      const O = ObjectOf(self);
      const length = toLength(O.length);
      let d = 1;
      if (depth !== undefined) {
        d = +depth;
        d = d !== d || d < 0 ? 0 : floor(d);
      }
      const target = speciesCreate(O);
      flattenInto(target, O, length, 0, d, undefined, undefined);
      return target;
    }
    function flatMap(self, mapper, thisArg) {
      if (self === null || self === undefined || typeof mapper !== 'function') {
        return apply(ORIG['Array.prototype.flatMap'], self, [mapper, thisArg]);
      }
      const O = ObjectOf(self);
      const length = toLength(O.length);
      const target = speciesCreate(O);
      flattenInto(target, O, length, 0, 1, mapper, thisArg);
      return target;
    }
    // Array.prototype.concat as the specification writes it, in JavaScript, for operands one
    // of which has a length a Proxy's get trap answers (V8 would ask it again, and a trap
    // answering 1 here and 2^53 there had it walk uninterrupted).
    const isConcatSpreadable = Symbol.isConcatSpreadable;
    function concat(self, items) {
      const O = ObjectOf(self);  // the caller passes null and undefined to the builtin
      const target = speciesCreate(O);
      let n = 0;
      for (let i = -1; i < items.length; ++i) {
        const E = i < 0 ? O : items[i];
        let spreadable = false;
        if (isObject(E)) {
          const s = E[isConcatSpreadable];
          spreadable = s !== undefined ? !!s : ArrayIsArray(E);
        }
        const length = spreadable ? toLength(E.length) : 1;
        if (n + length > MAX_LENGTH) {
          throw new TypeError('concat: the result would be longer than 2^53 - 1');
        }
        for (let k = 0; k < length; ++k, ++n) {
          if (spreadable && !(k in E)) continue;
          createDataProperty(target, n, spreadable ? E[k] : E);
        }
      }
      target.length = n;
      return target;
    }
    // concat where tenant code could run inside V8's (a species constructor, an
    // isConcatSpreadable getter, an element getter), or with an operand that is no Array.
    // Code inside could lengthen a later operand after the guard summed the lengths (an object
    // made spreadable and 2^30 long: 22 s; an Array made 2^32 - 1 long with an accessor
    // element: minutes), and V8 would walk it in C++. So V8 runs only where no tenant code can
    // (quietConcat, quietArray), and gets no operand that is not an Array: one that nothing
    // can make spreadable (no getter or Proxy decides) stands in as an empty object without a
    // prototype, replaced by the object in the result. Anything else runs the specification's
    // loop here, in JavaScript.
    function concatGeneric(self, items) {
      if (!quietConcat(self)) return concat(self, items);
      // Written as data properties: an index setter on Array.prototype must not run here.
      const operands = [], standIns = [];  // standIns: pairs of stand-in, object
      for (let i = 0; i < items.length; ++i) {
        let E = items[i];
        if (plainArray(E)) {
          if (!quietArray(E)) return concat(self, items);
        } else if (isObject(E)) {
          if (isProxy(E) || spreadableByData(E) !== false) return concat(self, items);
          const standIn = {__proto__: null};
          createDataProperty(standIns, standIns.length, standIn);
          createDataProperty(standIns, standIns.length, E);
          E = standIn;
        }
        createDataProperty(operands, i, E);
      }
      const result = apply(ORIG['Array.prototype.concat'], self, operands);
      // Each stand-in is in the result once, in order: found from the end by its own data
      // properties (lastIndexOf would look a hole up on Array.prototype, where a getter could
      // move the stand-ins or lengthen the result), in JavaScript, over the guarded length.
      let at = result.length - 1;
      for (let j = standIns.length - 2; j >= 0; j -= 2, --at) {
        for (; at >= 0; --at) {
          const d = getOwnPropertyDescriptor(result, at);
          if (d !== undefined && d.value === standIns[j]) break;
        }
        if (at < 0) throw new TypeError('concat: the result lost an operand');
        createDataProperty(result, at, standIns[j + 1]);
      }
      return result;
    }
    // How many elements concat takes from `E`, an object that is no plain Array: one unless it
    // is spreadable (or a getter or Proxy decides), then its walk length.
    const concatLength = (E) => !isProxy(E) && spreadableByData(E) === false ? 1 : walkLength(E);
    // Whether non-Proxy `o`, not an Array, is spreadable by a data property (or none: false);
    // undefined when a getter or a Proxy on its chain would decide.
    function spreadableByData(o) {
      for (let p = o; p !== null; p = getPrototypeOf(p)) {
        if (isProxy(p)) return undefined;
        const d = getOwnPropertyDescriptor(p, isConcatSpreadable);
        if (d !== undefined) return isData(d) ? !!d.value : undefined;
      }
      return false;
    }
    // Object.assign(...args) as the specification writes it, in JavaScript, where each
    // property set on a target under a deep chain (or a primitive's wrapper) is interruptible.
    function assign(args) {
      const to = ObjectOf(args[0]);
      for (let i = 1; i < args.length; ++i) {
        if (args[i] == null) continue;
        const from = ObjectOf(args[i]);
        const keys = ownKeys(from);
        for (let k = 0; k < keys.length; ++k) {
          const d = getOwnPropertyDescriptor(from, keys[k]);
          if (d !== undefined && d.enumerable) to[keys[k]] = from[keys[k]];
        }
      }
      return to;
    }
    // ToPropertyDescriptor's reads of object `desc`, in its order, into an object without a
    // prototype, which V8 reads again without running tenant code.
    function descriptorCopy(desc) {
      const copy = {__proto__: null};
      if ('enumerable' in desc) copy.enumerable = desc.enumerable;
      if ('configurable' in desc) copy.configurable = desc.configurable;
      if ('value' in desc) copy.value = desc.value;
      if ('writable' in desc) copy.writable = desc.writable;
      if ('get' in desc) copy.get = desc.get;
      if ('set' in desc) copy.set = desc.set;
      return copy;
    }
    // ToPropertyKey of an object `key` (its toString or @@toPrimitive runs once, here).
    const propertyKey = (key) => ownKeys({[key]: undefined})[0];
    // Object.defineProperties(o, properties) as the specification writes it (every descriptor
    // read, then each property defined), each descriptor read once as defined() reads one.
    function definedAll(o, properties) {
      const props = ObjectOf(properties);
      const keys = ownKeys(props);
      const pending = [];  // pairs of key, descriptor copy
      let accessor = false;
      for (let k = 0; k < keys.length; ++k) {
        const key = keys[k];
        const own = getOwnPropertyDescriptor(props, key);
        if (own === undefined || !own.enumerable) continue;
        const desc = props[key];
        // Not an object: V8's own TypeError, from a definition that then fails.
        if (!isObject(desc)) apply(ORIG['Object.defineProperty'], undefined, [{}, key, desc]);
        const copy = descriptorCopy(desc);
        if (walkedKey(key) && makesAccessor(copy)) accessor = true;
        createDataProperty(pending, pending.length, key);
        createDataProperty(pending, pending.length, copy);
      }
      if (accessor) holdAccessors(o);
      for (let i = 0; i < pending.length; i += 2) defineProperty(o, pending[i], pending[i + 1]);
      return o;
    }
    // ORIG[what] on `self` and `args` (a setPrototypeOf of `o`) while builtins walk: the chain of
    // every object they walk is counted after it, and one deeper than its guard allowed puts
    // `o`'s prototype back (V8 set it on the object behind any Proxies; a trap that set another
    // one did so through a wrapper, which checked it) and is refused. After, not before: a
    // getPrototypeOf trap of the new prototype's chain, or a handler's getter, runs first.
    function deepened(what, self, args, o) {
      for (let w = walks; w !== null; w = w.next) {
        // Before anything changes, the chain is as its guard measured it.
        if (w.maxDepth < 0) w.maxDepth = depthFor(w.size / chainFactor(w.o), w.limit);
      }
      const t = unproxied(o);
      const before = isObject(t) ? getPrototypeOf(t) : null;
      const result = apply(ORIG[what], self, args);
      for (let w = walks; w !== null; w = w.next) {
        const depth = chainDepth(w.o, w.maxDepth);
        if (depth > w.maxDepth) {
          if (isObject(t)) setPrototypeOf(t, before);
          refuse(what + ' (the prototype chain of an object a builtin walks)', depth, w.maxDepth);
        }
      }
      return result;
    }
    // Intl hands a locale tag, an option's value (a time zone, a currency, ...) and
    // DisplayNames.of's code to ICU, which copies and parses it outside the heap limit,
    // uninterrupted: a 64 Mi-character timeZone ran 5 s at 580 MB in a thread its request
    // had left. Real ones are short: more than MAX_INTL_STRING characters are refused.
    // `v` is a string, an object (made a string here, once, as the builtin would; an
    // Intl.Locale passes as it is) or another value (the builtin decides).
    function intlString(what, v) {
      if (isObject(v)) {
        if (localeBrand !== undefined) {
          try { apply(localeBrand, v, []); return v; } catch (e) {}
        }
        v = `${v}`;
      }
      if (typeof v === 'string' && v.length > MAX_INTL_STRING) {
        refuse(what + ' (a locale tag or option)', v.length, MAX_INTL_STRING);
      }
      return v;
    }
    // Options as the builtin reads them (each Get forwarded, a getter's `this` what it
    // would be: the options, or the object V8 made from them), each value bounded: a string checked, an object's conversion to a string
    // checked when the builtin makes it (a number or a boolean is left to the builtin).
    function intlOptions(what, options, dates) {
      const p = new Proxy_(options, {
        get(target, key, receiver) {
          const v = reflectGet(target, key, receiver === p ? target : receiver);
          if (dates && v !== undefined && (key === 'calendar' || key === 'numberingSystem')) {
            fail(INVALID_ARGUMENT, what + ': the ' + key + ' option is not available for dates ' +
                 'in this sandbox (each distinct locale it makes holds process memory for good)');
          }
          if (typeof v === 'string') return v.length > MAX_INTL_STRING ? intlString(what, v) : v;
          if ((typeof v !== 'object' || v === null) && typeof v !== 'function') return v;
          return {[toPrimitive](hint) { return hint === 'number' ? +v : intlString(what, v); }};
        },
      });
      return p;
    }
    // A BigInt of at most MAX_BIGINT_BITS bits (formatted in parts, a longer one costs far more
    // than its digits: 6,000,000 bits ran 18 s uninterrupted).
    const MAX_BIGINT_BITS = 262144;
    const bigIntBound = 1n << 262144n;  // MAX_BIGINT_BITS (a literal: BigInt may be replaced)
    function bigIntBounded(what, x) {
      if (x >= bigIntBound || -x >= bigIntBound) {
        refuse(what, 'a BigInt of over ' + MAX_BIGINT_BITS + ' bits', MAX_BIGINT_BITS + ' bits');
      }
    }
    // JSON text nesting arrays and objects at most MAX_JSON_DEPTH deep, with at most
    // MAX_JSON_CONTAINERS of them in all (brackets in strings do not count). A malformed text
    // passes: the builtin reports it. The count: the builtin cannot be interrupted, and near
    // the heap limit it collected garbage over and over (16 MiB of "{}," ran 19 s past the
    // CPU limit, 48 MiB 491 s) where the stop could not land.
    // And at most MAX_JSON_MEMBERS members in a row with no bracket between them: one object
    // of 1,000,000 keys (11 MB) ran 0.8 s past the CPU limit, uninterrupted. (Members whose
    // values are objects or arrays are bounded by the count above instead.)
    const MAX_JSON_DEPTH = 1 << 16;
    const MAX_JSON_CONTAINERS = 1 << 18;
    const MAX_JSON_MEMBERS = 1 << 17;
    function jsonNesting(text) {
      let depth = 0, containers = 0, members = 0, inString = false;
      for (let i = 0; i < text.length; ++i) {
        const c = apply(stringCharCodeAt, text, [i]);
        if (inString) {
          if (c === 92) ++i;  // a backslash escapes the next character
          else if (c === 34) inString = false;
        } else if (c === 34) {
          inString = true;
        } else if (c === 91 || c === 123) {
          if (++depth > MAX_JSON_DEPTH) refuse('JSON.parse (nesting)', depth, MAX_JSON_DEPTH);
          if (++containers > MAX_JSON_CONTAINERS) {
            refuse('JSON.parse (objects and arrays)', containers, MAX_JSON_CONTAINERS);
          }
          members = 0;
        } else if (c === 93 || c === 125) {
          --depth;
          members = 0;
        } else if (c === 58 && ++members > MAX_JSON_MEMBERS) {
          refuse('JSON.parse (members of one object)', members, MAX_JSON_MEMBERS);
        }
      }
    }
    // String search past what V8 does cheaply (see SEARCH_PREFIX). The native calls see one
    // window of SEARCH_CHUNK candidate positions at a time (a slice: no copy) and a needle of
    // at most SEARCH_PREFIX characters; a longer needle's candidates are compared in full.
    const stringLastIndexOf = ORIG['String.prototype.lastIndexOf'];
    const slice = (S, from, to) => apply(stringSlice, S, [from, to]);
    // What the native calls look for: the needle's first SEARCH_PREFIX characters.
    const headOf = (P) => P.length > SEARCH_PREFIX ? slice(P, 0, SEARCH_PREFIX) : P;
    // The first index >= from (an integer in [0, S.length]) where P occurs, or -1.
    function searchForward(S, P, from) {
      const N = S.length, L = P.length;
      if (L === 0) return from;
      const head = headOf(P);
      for (let start = from; start <= N - L; start += SEARCH_CHUNK) {
        const window = slice(S, start, min(N, start + SEARCH_CHUNK + head.length - 1));
        for (let i = apply(stringIndexOf, window, [head, 0]); i !== -1;
             i = apply(stringIndexOf, window, [head, i + 1])) {
          const at = start + i;
          if (at > N - L) return -1;
          if (head === P || apply(stringStartsWith, S, [P, at])) return at;
        }
      }
      return -1;
    }
    // The last index <= from (an integer in [0, S.length]) where P occurs, or -1.
    function searchBackward(S, P, from) {
      const N = S.length, L = P.length;
      const last = min(from, N - L);
      if (last < 0) return -1;
      if (L === 0) return last;
      const head = headOf(P);
      for (let end = last; end >= 0; end -= SEARCH_CHUNK) {
        const start = max(0, end - SEARCH_CHUNK + 1);
        const window = slice(S, start, end + head.length);
        for (let i = apply(stringLastIndexOf, window, [head, end - start]); i !== -1;
             i = i === 0 ? -1 : apply(stringLastIndexOf, window, [head, i - 1])) {
          if (head === P || apply(stringStartsWith, S, [P, start + i])) return start + i;
        }
      }
      return -1;
    }
    // ToIntegerOrInfinity(position) clamped to [0, N], as the builtins take it.
    const clampedPosition = (position, N) => {
      const x = +position;
      return x > 0 ? (x < N ? floor(x) : N) : 0;
    };
    function search(what, S, needle, position) {
      if (what === 'String.prototype.lastIndexOf') {
        const x = +position;
        return searchBackward(S, needle, x !== x ? S.length : clampedPosition(x, S.length));
      }
      const at = searchForward(S, needle, clampedPosition(position, S.length));
      return what === 'String.prototype.includes' ? at !== -1 : at;
    }
    // Array.prototype.includes, indexOf or lastIndexOf (`what`) of a string or BigInt needle,
    // as the specification writes them (for these, strict equality and SameValueZero agree).
    // (+ 0: the specification's integers have no -0, and indexOf(x, -0.5) answers +0.)
    const toIntegerOrInfinity = (v) => {
      const x = +v;
      return (x !== x ? 0 : x < 0 ? -floor(-x) : floor(x)) + 0;
    };
    // An element of the needle's length is compared COMPARE_PIECE characters at a time
    // (startsWith at each piece's offset): V8 checks for termination only every few hundred
    // steps of a loop (platform.cc), so no step may compare millions of characters.
    const COMPARE_PIECE = 1 << 12;
    function arraySearch(what, self, args) {
      const O = ObjectOf(self), needle = args[0];
      const length = toLength(O.length);
      const includes = what === 'Array.prototype.includes';
      if (length === 0) return includes ? false : -1;
      let same = (e) => e === needle;  // a BigInt: one comparison is one step
      if (typeof needle === 'string') {
        const pieces = [];
        for (let at = 0; at < needle.length; at += COMPARE_PIECE) {
          pieces[pieces.length] = apply(stringSlice, needle, [at, at + COMPARE_PIECE]);
        }
        same = (e) => {
          if (typeof e !== 'string' || e.length !== needle.length) return false;
          for (let i = 0; i < pieces.length; ++i) {
            if (!apply(stringStartsWith, e, [pieces[i], i * COMPARE_PIECE])) return false;
          }
          return true;
        };
      }
      if (what === 'Array.prototype.lastIndexOf') {
        const n = args.length > 1 ? toIntegerOrInfinity(args[1]) : length - 1;
        for (let k = n >= 0 ? min(n, length - 1) : length + n; k >= 0; --k) {
          if (k in O && same(O[k])) return k;
        }
        return -1;
      }
      const n = toIntegerOrInfinity(args[1]);
      for (let k = n >= 0 ? n : max(length + n, 0); k < length; ++k) {
        if (includes ? same(O[k]) : k in O && same(O[k])) return includes ? true : k;
      }
      return includes ? false : -1;
    }
    // IsRegExp: what String.prototype.includes refuses as its needle.
    function isRegExpLike(v) {
      if (!isObject(v)) return false;
      const matcher = v[symbolMatch];
      return matcher !== undefined ? !!matcher : n.isRegExp(v);
    }
    // String.prototype.split by a string separator (or an object made one), as the
    // specification writes it.
    function splitString(S, separator, limit) {
      const splitter = separator[symbolSplit];  // a String.prototype[Symbol.split] of the tenant's
      if (splitter !== undefined && splitter !== null) {
        return apply(splitter, separator, [S, limit]);
      }
      const lim = limit === undefined ? 2 ** 32 - 1 : limit >>> 0;
      if (typeof separator !== 'string') separator = StringOf(separator);
      if (lim === 0) return [];
      if (separator.length === 0 || nativeSearch(S.length, separator.length)) {
        return apply(ORIG['String.prototype.split'], S, [separator, lim]);
      }
      const parts = [];
      let p = 0;
      for (let q = searchForward(S, separator, 0); q !== -1; q = searchForward(S, separator, p)) {
        parts[parts.length] = slice(S, p, q);
        if (parts.length === lim) return parts;
        p = q + separator.length;
      }
      parts[parts.length] = slice(S, p, S.length);
      return parts;
    }
    // What new Date(value) makes of an object `value`: a Date's time value, else
    // ToPrimitive(value) (Symbol.toPrimitive with "default", else valueOf, then toString).
    function datePrimitive(value) {
      try {
        return apply(dateGetTime, value, []);
      } catch (e) {}  // not a Date
      const exotic = value[toPrimitive];
      if (exotic !== undefined && exotic !== null) {
        const r = apply(exotic, value, ['default']);
        if (!isObject(r)) return r;
      } else {
        for (const method of ['valueOf', 'toString']) {
          const f = value[method];
          if (typeof f !== 'function') continue;
          const r = apply(f, value, []);
          if (!isObject(r)) return r;
        }
      }
      throw new TypeError('Cannot convert object to primitive value');
    }
    // A RegExp whose split the specification would run without calling tenant code: its
    // prototype RegExp.prototype with the builtin exec, flags getters and constructor (whose
    // species is itself), and no own property but lastIndex.
    const regexpProto = OrigRegExp.prototype, flagsGetter = REGEXP_FLAG_GETTERS[1];
    function plainRegExp(rx) {
      if (!isRegExp(rx) || getPrototypeOf(rx) !== regexpProto || ownKeys(rx).length !== 1) {
        return false;
      }
      const exec = getOwnPropertyDescriptor(regexpProto, 'exec');
      const constructor = getOwnPropertyDescriptor(regexpProto, 'constructor');
      const species = getOwnPropertyDescriptor(RegExpWrapper, Symbol.species);
      if (exec === undefined || !isData(exec) || exec.value !== regexpExec ||
          constructor === undefined || !isData(constructor) ||
          constructor.value !== RegExpWrapper || species === undefined || isData(species) ||
          species.get !== REGEXP_SPECIES_GETTER) {
        return false;
      }
      for (let i = 0; i < REGEXP_FLAG_GETTERS.length; i += 2) {
        const d = getOwnPropertyDescriptor(regexpProto, REGEXP_FLAG_GETTERS[i]);
        if (d === undefined || isData(d) || d.get !== REGEXP_FLAG_GETTERS[i + 1]) return false;
      }
      return true;
    }
    // RegExp.prototype[Symbol.split] for a plainRegExp: where the specification tries a sticky
    // copy at each position q, one global copy finds the first q at which it matches, with the
    // same match (an empty match where the last piece ended is skipped, as there).
    function splitRegExp(rx, S, limit) {
      const lim = limit === undefined ? 2 ** 32 - 1 : limit >>> 0;
      const flags = apply(flagsGetter, rx, []);
      let scanFlags = 'g';
      for (let i = 0; i < 4; ++i) {
        const f = 'imsu'[i];
        if (apply(stringIndexOf, flags, [f, 0]) >= 0) scanFlags += f;
      }
      // The copy V8 would make (a guarded pattern stays guarded).
      const scanner = construct(OrigRegExp, [rx, scanFlags]);
      const unicode = apply(stringIndexOf, flags, ['u', 0]) >= 0;
      // (Indices, not push: a tenant's Array.prototype in a fresh context.)
      const out = [];
      let n = 0;
      if (lim === 0) return out;
      const size = S.length;
      if (size === 0) {
        if (apply(regexpExec, scanner, [S]) === null) out[n++] = S;
        return out;
      }
      let p = 0, q = 0;
      while (q < size) {
        scanner.lastIndex = q;
        const z = apply(regexpExec, scanner, [S]);
        if (z === null || z.index >= size) break;
        const at = z.index;
        const e = min(at + z[0].length, size);
        if (e === p) {
          q = advance(S, at, unicode);
          continue;
        }
        out[n++] = apply(stringSlice, S, [p, at]);
        if (n === lim) return out;
        p = e;
        for (let i = 1; i < z.length; ++i) {
          out[n++] = z[i];
          if (n === lim) return out;
        }
        q = p;
      }
      out[n++] = apply(stringSlice, S, [p, size]);
      return out;
    }
    return {refuse, argList, pin, pinnedLength, sortLarge, replaceByExec, replaceString, flat, flatMap,
            concat, concatGeneric, concatLength, assign, descriptorCopy,
            propertyKey, definedAll, deepened,
            intlString, intlOptions, bigIntBounded, jsonNesting, search, arraySearch, isRegExpLike,
            splitString, datePrimitive, plainRegExp, splitRegExp};
  }

  const log = n.log;
  function fmt(v) {
    if (typeof v === 'string') return v;
    if (typeof v === 'bigint') return v + 'n';
    if (typeof v === 'function') return '[Function ' + (v.name || 'anonymous') + ']';
    if (typeof v === 'symbol' || v === undefined) return String(v);
    if (v instanceof Error) return v.stack || String(v);
    try {
      return JSON.stringify(v, (k, x) => typeof x === 'bigint' ? x + 'n' : x) ?? String(v);
    } catch (e) {
      return '[unserialisable]';
    }
  }
  function logger(level) {
    return function (...args) { log(level, args.map(fmt).join(' ')); };
  }
  const console = {debug: logger(0), log: logger(1), info: logger(2), warn: logger(3),
                   error: logger(4)};
  defineProperty(globalThis, 'console', {value: console, writable: true, configurable: true});

  // The fields compileValidator checked last, for mark(): a deploy lists
  // them so the host can check a queued call's arguments before enqueuing.
  let checkedFields;
  function compileValidator(kind, spec) {
    // The schema's type names (schema.h), and the JS names as aliases. Plain
    // code made per call rather than tables of closures made by the
    // bootstrap: those would be deserialised with every context.
    const VALID_TYPES = 'null, int64, float64, bool, string, bytes, array, object, any ' +
        '(aliases: number = float64, bigint = int64, boolean = bool), with a trailing "?" for ' +
        'an optional argument';
    // The schema type a written type name stands for; undefined for none.
    function schemaType(t) {
      switch (t) {
        case 'null': case 'int64': case 'float64': case 'bool': case 'string': case 'bytes':
        case 'array': case 'object': case 'any':
          return t;
        case 'number': return 'float64';
        case 'bigint': return 'int64';
        case 'boolean': return 'bool';
        default: return undefined;
      }
    }
    // Whether `v` is a value of schema type `type`.
    function hasType(type, v) {
      switch (type) {
        case 'null': return v === null;
        case 'int64': return typeof v === 'bigint';
        case 'float64': return typeof v === 'number';
        case 'bool': return typeof v === 'boolean';
        case 'string': return typeof v === 'string';
        case 'bytes': return v instanceof ArrayBuffer;
        case 'array': return Array.isArray(v);
        case 'object':
          return typeof v === 'object' && v !== null && !Array.isArray(v) &&
              !(v instanceof ArrayBuffer);
        default: return true;  // any
      }
    }
    // The type name of a JS value, in the schema's names.
    function typeName(v) {
      if (v === null) return 'null';
      if (Array.isArray(v)) return 'array';
      if (v instanceof ArrayBuffer) return 'bytes';
      switch (typeof v) {
        case 'bigint': return 'int64';
        case 'number': return 'float64';
        case 'boolean': return 'bool';
        default: return typeof v;
      }
    }
    if (typeof spec !== 'object' || spec === null) {
      throw new TypeError(kind + '({args}): args must be an object of field: "type"');
    }
    const fields = [];
    for (const [name, t] of Object.entries(spec)) {
      const optional = typeof t === 'string' && t.endsWith('?');
      const written = optional ? t.slice(0, -1) : t;
      const type = typeof written === 'string' ? schemaType(written) : undefined;
      if (type === undefined) {
        throw new TypeError(kind + '({args}): unknown type ' + JSON.stringify(t) +
                            ' for argument ' + name + '; valid types: ' + VALID_TYPES);
      }
      fields.push([name, type, optional]);
    }
    const known = new Set(fields.map((f) => f[0]));
    checkedFields = fields;
    return function validate(a) {
      for (const [name, type, optional] of fields) {
        const v = a[name];
        if (v === undefined) {
          if (!optional) fail(INVALID_ARGUMENT, 'missing argument `' + name + '` (' + type + ')');
          continue;
        }
        if (!hasType(type, v)) {
          fail(INVALID_ARGUMENT, 'argument `' + name + '` must be ' + type + ', got ' +
               typeName(v) + (type === 'int64' && typeof v === 'number' ?
                   ' (pass a BigInt, such as 3n; in JSON, {"$int64": "3"})' : ''));
        }
      }
      for (const name of Object.keys(a)) {
        if (!known.has(name)) fail(INVALID_ARGUMENT, 'unexpected argument `' + name + '`');
      }
    };
  }
  const mark = n.mark;
  function wrap(kind, code, def) {
    let handler = def;
    let validate = null;
    let attrs;
    let argFields;
    if (typeof def !== 'function') {
      if (typeof def !== 'object' || def === null || typeof def.handler !== 'function') {
        throw new TypeError(kind + '() expects a handler function or {args, handler}');
      }
      handler = def.handler;
      if (def.args !== undefined) {
        validate = compileValidator(kind, def.args);
        argFields = checkedFields;
      }
      // The other options are scheduling attributes (criticality, quota,
      // ...): copied as plain data now, checked by the deploy.
      for (const key of ownKeys(def)) {
        if (key === 'handler' || key === 'args' || typeof key !== 'string') continue;
        if (attrs === undefined) attrs = {__proto__: null};
        attrs[key] = def[key];
      }
    }
    const fn = function (ctx, args) {
      if (validate !== null) validate(args);
      return handler(ctx, args);
    };
    mark(fn, code, attrs, argFields);
    return fn;
  }
  const server = Object.freeze({
    query: function query(def) { return wrap('query', 1, def); },
    mutation: function mutation(def) { return wrap('mutation', 2, def); },
    action: function action(def) { return wrap('action', 3, def); },
  });

  // ctx.scheduler: in a mutation the calls commit with it; in an action they
  // go to the host at once.
  const nschedule = n.schedule, nunschedule = n.unschedule;
  const scheduler = Object.freeze({
    async runAfter(delayMs, fn, args) { return nschedule(0, delayMs, fn, args); },
    async runAt(time, fn, args) {
      return nschedule(1, typeof time === 'object' && time !== null ? +time : time, fn, args);
    },
    async cancel(id) { nunschedule(id); },
  });
  const nrunQuery = n.runQuery, nrunMutation = n.runMutation, nservice = n.service;
  const services = new Proxy(Object.freeze({__proto__: null}), {
    get(target, name) {
      if (typeof name !== 'string') return undefined;
      return async (args) => nservice(name, args);
    },
  });
  const actionCtx = {
    async runQuery(fn, args) { return nrunQuery(fn, args); },
    async runMutation(fn, args) { return nrunMutation(fn, args); },
    scheduler,
    services,
  };
  // An action has no transaction: ctx.db says what to use instead of "Cannot read properties
  // of undefined". A TypeError, as that was (a txfn status code would classify the failure:
  // FailedPrecondition is retried). Not enumerable, so spreading or logging ctx does not throw.
  defineProperty(actionCtx, 'db', {
    get() {
      throw new TypeError('ctx.db is not available in an action (it runs outside any ' +
                          'transaction): read with ctx.runQuery(name, args) and write with ' +
                          'ctx.runMutation(name, args)');
    },
    enumerable: false,
  });
  Object.freeze(actionCtx);

  const nget = n.get, nquery = n.query, ninsert = n.insert, npatch = n.patch,
        nreplace = n.replace, ndel = n.del;
  // ctx.db.query()'s classes, made on a context's first query: made at run
  // time they cost about what deserialising them does, and a request that
  // never queries would deserialise them for nothing.
  let QueryClass = null;
  function makeQueryClass() {
    class IndexRange {
      constructor() {
        this.eqFields = []; this.eqValues = []; this.lower = null; this.upper = null;
      }
      eq(field, value) {
        if (this.lower !== null || this.upper !== null) {
          fail(INVALID_ARGUMENT, 'withIndex: eq() must come before gt/gte/lt/lte');
        }
        this.eqFields.push(field);
        this.eqValues.push(value);
        return this;
      }
      gt(field, value) { return this.bound('lower', field, value, false); }
      gte(field, value) { return this.bound('lower', field, value, true); }
      lt(field, value) { return this.bound('upper', field, value, false); }
      lte(field, value) { return this.bound('upper', field, value, true); }
      bound(side, field, value, inclusive) {
        if (this[side] !== null) fail(INVALID_ARGUMENT, 'withIndex: two ' + side + ' bounds');
        this[side] = [field, value, inclusive];
        return this;
      }
    }
    class Query {
      constructor(table) {
        this.table = table; this.index = 'by_id'; this.range = new IndexRange();
        this.desc = false; this.filters = [];
      }
      withIndex(name, build) {
        this.index = name;
        if (build !== undefined) {
          const r = build(this.range);
          if (r !== this.range && r !== undefined) {
            fail(INVALID_ARGUMENT, 'withIndex: the range function must return its argument');
          }
        }
        return this;
      }
      order(o) {
        if (o !== 'asc' && o !== 'desc') fail(INVALID_ARGUMENT, 'order() takes "asc" or "desc"');
        this.desc = o === 'desc';
        return this;
      }
      filter(predicate) {
        if (typeof predicate !== 'function') fail(INVALID_ARGUMENT, 'filter() takes a function');
        this.filters.push(predicate);
        return this;
      }
      page(limit, cursor) {
        const r = this.range;
        return nquery(this.table, this.index, r.eqFields, r.eqValues, r.lower, r.upper, this.desc,
                      limit, cursor);
      }
      matches(doc) {
        for (const p of this.filters) if (!p(doc)) return false;
        return true;
      }
      takeSync(k) {
        if (typeof k === 'bigint') k = Number(k);
        if (typeof k !== 'number' || !Number.isInteger(k) || k < 0) {
          fail(INVALID_ARGUMENT, 'take() takes a non-negative integer');
        }
        if (k === 0) return [];
        if (this.filters.length === 0) return this.page(k, null)[0];
        const out = [];
        let cursor = null;
        for (;;) {
          const [docs, next, done] = this.page(Math.max(k - out.length, 16), cursor);
          for (const d of docs) {
            if (this.matches(d)) {
              out.push(d);
              if (out.length === k) return out;
            }
          }
          if (done) return out;
          cursor = next;
        }
      }
      async take(k) { return this.takeSync(k); }
      async collect() {
        const docs = this.page(0, null)[0];
        return this.filters.length === 0 ? docs : docs.filter((d) => this.matches(d));
      }
      async first() { const d = this.takeSync(1); return d.length > 0 ? d[0] : null; }
      async unique() {
        const d = this.takeSync(2);
        if (d.length > 1) {
          fail(INVALID_ARGUMENT, 'unique() found more than one document in ' + this.table);
        }
        return d.length > 0 ? d[0] : null;
      }
      async paginate(opts) {
        if (typeof opts !== 'object' || opts === null) {
          fail(INVALID_ARGUMENT, 'paginate() takes {cursor, numItems}');
        }
        const {cursor = null} = opts;
        const numItems = typeof opts.numItems === 'bigint' ? Number(opts.numItems) : opts.numItems;
        if (typeof numItems !== 'number' || !Number.isInteger(numItems) || numItems <= 0) {
          fail(INVALID_ARGUMENT, 'paginate(): numItems must be a positive integer');
        }
        if (cursor !== null && typeof cursor !== 'string') {
          fail(INVALID_ARGUMENT, 'paginate(): cursor must be a string or null');
        }
        const [docs, next, done] = this.page(numItems, cursor);
        const page = this.filters.length === 0 ? docs : docs.filter((d) => this.matches(d));
        return {page, continueCursor: next, isDone: done};
      }
    }
    return Query;
  }
  const db = Object.freeze({
    async get(id) { return nget(id); },
    query(table) { return new (QueryClass ?? (QueryClass = makeQueryClass()))(table); },
    async insert(table, doc) { return ninsert(table, doc); },
    async patch(id, fields) { npatch(id, fields); },
    async replace(id, doc) { nreplace(id, doc); },
    async delete(id) { ndel(id); },
  });
  return {server, ctx: Object.freeze({db, scheduler}), actionCtx};
})
)JS";

}  // namespace txfn::internal

#endif  // TXFN_LIB_V8_BOOTSTRAP_JS_H_

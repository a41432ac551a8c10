// lib/v8/bootstrap_js.h — the JavaScript half of the runner, run once per context.
//
// A function expression called with the natives object `n` (see
// runner_core.cc). It makes Date and Math.random deterministic, installs
// console, and returns {server: {query, mutation}, ctx}. Nothing of `n` stays
// reachable from user code except through the closures below.
#ifndef TXFN_LIB_V8_BOOTSTRAP_JS_H_
#define TXFN_LIB_V8_BOOTSTRAP_JS_H_

#include <string_view>

namespace txfn::internal {

inline constexpr std::string_view kBootstrapSource = R"JS(
(function (n) {
  'use strict';
  const INVALID_ARGUMENT = 3;
  const OrigDate = globalThis.Date;
  const now = n.now;
  function Date(...args) {
    if (new.target === undefined) return new OrigDate(now()).toString();
    if (args.length === 0) return Reflect.construct(OrigDate, [now()], new.target);
    return Reflect.construct(OrigDate, args, new.target);
  }
  Object.setPrototypeOf(Date, OrigDate);
  Object.defineProperty(Date, 'prototype', {value: OrigDate.prototype});
  Object.defineProperty(Date, 'now', {value: function now_() { return now(); },
                                      writable: true, configurable: true});
  Object.defineProperty(OrigDate.prototype, 'constructor',
                        {value: Date, writable: true, configurable: true});
  Object.defineProperty(globalThis, 'Date', {value: Date, writable: true, configurable: true});
  const random = n.random;
  Object.defineProperty(Math, 'random', {value: function random_() { return random(); },
                                         writable: true, configurable: true});

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
  Object.defineProperty(globalThis, 'console', {value: console, writable: true,
                                                configurable: true});

  const fail = n.fail;
  const VALIDATORS = {
    string: (v) => typeof v === 'string',
    number: (v) => typeof v === 'number',
    float64: (v) => typeof v === 'number',
    bigint: (v) => typeof v === 'bigint',
    int64: (v) => typeof v === 'bigint',
    boolean: (v) => typeof v === 'boolean',
    null: (v) => v === null,
    bytes: (v) => v instanceof ArrayBuffer,
    array: (v) => Array.isArray(v),
    object: (v) => typeof v === 'object' && v !== null && !Array.isArray(v) &&
                   !(v instanceof ArrayBuffer),
    any: (v) => true,
  };
  function compileValidator(kind, spec) {
    if (typeof spec !== 'object' || spec === null) {
      throw new TypeError(kind + '({args}): args must be an object of field: "type"');
    }
    const fields = [];
    for (const [name, t] of Object.entries(spec)) {
      const optional = typeof t === 'string' && t.endsWith('?');
      const type = optional ? t.slice(0, -1) : t;
      const check = VALIDATORS[type];
      if (typeof type !== 'string' || check === undefined) {
        throw new TypeError(kind + '({args}): unknown type ' + JSON.stringify(t) +
                            ' for argument ' + name);
      }
      fields.push([name, type, optional, check]);
    }
    const known = new Set(fields.map((f) => f[0]));
    return function validate(a) {
      for (const [name, type, optional, check] of fields) {
        const v = a[name];
        if (v === undefined) {
          if (!optional) fail(INVALID_ARGUMENT, 'missing argument `' + name + '` (' + type + ')');
          continue;
        }
        if (!check(v)) {
          fail(INVALID_ARGUMENT, 'argument `' + name + '` must be ' + type + ', got ' +
               (v === null ? 'null' : Array.isArray(v) ? 'array' : typeof v));
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
    if (typeof def !== 'function') {
      if (typeof def !== 'object' || def === null || typeof def.handler !== 'function') {
        throw new TypeError(kind + '() expects a handler function or {args, handler}');
      }
      handler = def.handler;
      if (def.args !== undefined) validate = compileValidator(kind, def.args);
    }
    const fn = function (ctx, args) {
      if (validate !== null) validate(args);
      return handler(ctx, args);
    };
    mark(fn, code);
    return fn;
  }
  const server = Object.freeze({
    query: function query(def) { return wrap('query', 1, def); },
    mutation: function mutation(def) { return wrap('mutation', 2, def); },
  });

  const nget = n.get, nquery = n.query, ninsert = n.insert, npatch = n.patch,
        nreplace = n.replace, ndel = n.del;
  class IndexRange {
    constructor() { this.eqFields = []; this.eqValues = []; this.lower = null; this.upper = null; }
    eq(field, value) {
      if (this.lower !== null || this.upper !== null) {
        throw new TypeError('withIndex: eq() must come before gt/gte/lt/lte');
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
      if (this[side] !== null) throw new TypeError('withIndex: two ' + side + ' bounds');
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
          throw new TypeError('withIndex: the range function must return its argument');
        }
      }
      return this;
    }
    order(o) {
      if (o !== 'asc' && o !== 'desc') throw new TypeError('order() takes "asc" or "desc"');
      this.desc = o === 'desc';
      return this;
    }
    filter(predicate) {
      if (typeof predicate !== 'function') throw new TypeError('filter() takes a function');
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
        throw new TypeError('take() takes a non-negative integer');
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
        throw new TypeError('paginate() takes {cursor, numItems}');
      }
      const {cursor = null} = opts;
      const numItems = typeof opts.numItems === 'bigint' ? Number(opts.numItems) : opts.numItems;
      if (typeof numItems !== 'number' || !Number.isInteger(numItems) || numItems <= 0) {
        throw new TypeError('paginate(): numItems must be a positive integer');
      }
      if (cursor !== null && typeof cursor !== 'string') {
        throw new TypeError('paginate(): cursor must be a string or null');
      }
      const [docs, next, done] = this.page(numItems, cursor);
      const page = this.filters.length === 0 ? docs : docs.filter((d) => this.matches(d));
      return {page, continueCursor: next, isDone: done};
    }
  }
  const db = Object.freeze({
    async get(id) { return nget(id); },
    query(table) { return new Query(table); },
    async insert(table, doc) { return ninsert(table, doc); },
    async patch(id, fields) { npatch(id, fields); },
    async replace(id, doc) { nreplace(id, doc); },
    async delete(id) { ndel(id); },
  });
  return {server, ctx: Object.freeze({db})};
})
)JS";

}  // namespace txfn::internal

#endif  // TXFN_LIB_V8_BOOTSTRAP_JS_H_

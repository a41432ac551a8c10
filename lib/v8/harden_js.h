// lib/v8/harden_js.h — the lockdown of a hardened context, run once per context.
//
// A function expression called with the bootstrap's exports ({server, ctx,
// actionCtx}), a native `setOriginal(getter, value)` (it keeps `value` on
// `getter` under a private symbol, for side-effect-free error rendering:
// js_strings.h) and a native `ownKeys(o)` (V8's own key listing) in a
// context the bootstrap prepared. It tames the per-context
// state a request could write (legacy RegExp statics; Error's stack hooks),
// turns the properties libraries commonly assign on their own objects into
// accessors (so that shadowing a frozen inherited property still works), and
// then freezes, transitively, everything reachable from the global object,
// from the hidden intrinsics (iterator prototypes, the generator and async
// function families, %TypedArray%, ...) and from txfn's own objects. It
// throws if anything it must freeze stays mutable, and the runner then refuses
// to serve from that context.
//
// Why not only Object.freeze(globalThis): what a request can write and the
// next one read is anything mutable that the next one can reach without
// having made it; that is every object reachable from the global, from the
// intrinsics V8 hands out without a global name (the prototype of
// [].values(), of function*(){}, ...), or from ctx.
#ifndef TXFN_LIB_V8_HARDEN_JS_H_
#define TXFN_LIB_V8_HARDEN_JS_H_

#include <string_view>

namespace txfn::internal {

inline constexpr std::string_view kHardenSource = R"JS(
(function (exports, setOriginal, ownKeysNative) {
  'use strict';
  const {freeze, isFrozen, getPrototypeOf, getOwnPropertyDescriptor, defineProperty} = Object;
  // Reflect.ownKeys is the bootstrap's guarded wrapper, slow per call (it
  // checks for huge typed arrays and strings): the lockdown lists keys
  // through a native that calls V8 directly.
  const ownKeys = ownKeysNative;
  const apply = Reflect.apply;

  // ---- Per-context state a request could leave a mark in --------------------
  // The legacy RegExp statics hold the last match of any regexp in this
  // context: a request could read what the previous one matched.
  for (const name of ['$1', '$2', '$3', '$4', '$5', '$6', '$7', '$8', '$9', 'input', '$_',
                      'lastMatch', '$&', 'lastParen', '$+', 'leftContext', '$`',
                      'rightContext', "$'"]) {
    if (!delete RegExp[name]) throw new Error('cannot remove RegExp.' + name);
  }
  // V8 reads Error.prepareStackTrace and Error.stackTraceLimit from this
  // context's Error: freezing Error (below) fixes the limit at its default
  // and keeps prepareStackTrace the bootstrap's (stacks without txfn's frames).

  // ---- The override mistake ---------------------------------------------------
  // Assigning obj.toString = f, where obj inherits a frozen toString, throws.
  // Libraries do it (Foo.prototype.toString = ..., this.name = 'MyError'), so
  // these few become accessors: reading gives the original value, writing
  // defines an own property on the receiver (and throws on the home object
  // itself, which stays frozen).
  // The values the accessors below return: reachable by every request (through the getter),
  // so frozen with the rest (the walk below sees the accessors, not what they return: these
  // were left extensible, and one request could hang state or a prototype on
  // Object.prototype.hasOwnProperty for the next to use).
  const overridden = [];
  function enableOverride(home, name) {
    const d = getOwnPropertyDescriptor(home, name);
    if (d === undefined || !('value' in d) || !d.writable || !d.configurable) return;
    const value = d.value;
    overridden.push(value);
    const getter = {get [name]() { return value; }};
    const setter = {set [name](v) {
      if (this === home) throw new TypeError('Cannot assign to read only property \'' +
                                             String(name) + '\' of a hardened object');
      if (this === null || (typeof this !== 'object' && typeof this !== 'function')) return;
      defineProperty(this, name, {value: v, writable: true, enumerable: true,
                                  configurable: true});
    }};
    const get = getOwnPropertyDescriptor(getter, name).get;
    setOriginal(get, value);
    defineProperty(home, name, {
      get,
      set: getOwnPropertyDescriptor(setter, name).set,
      enumerable: d.enumerable, configurable: false});
  }
  for (const name of ['constructor', 'toString', 'valueOf', 'toLocaleString', 'hasOwnProperty',
                      'isPrototypeOf', 'propertyIsEnumerable']) {
    enableOverride(Object.prototype, name);
  }
  for (const E of [Error, EvalError, RangeError, ReferenceError, SyntaxError, TypeError,
                   URIError, AggregateError]) {
    for (const name of ['constructor', 'name', 'message', 'toString']) {
      enableOverride(E.prototype, name);
    }
  }
  enableOverride(Function.prototype, 'toString');

  // ---- Everything reachable, frozen -----------------------------------------
  const roots = [globalThis, exports, ...overridden];
  // Intrinsics with no global name.
  const proto = (v) => getPrototypeOf(v);
  roots.push(
      proto(function* () {}), proto(async function () {}), proto(async function* () {}),
      proto(async () => {}), proto(Uint8Array), proto([][Symbol.iterator]()),
      proto(new Map()[Symbol.iterator]()), proto(new Set()[Symbol.iterator]()),
      proto(''[Symbol.iterator]()), proto('a'.matchAll(/a/g)),
      proto(proto((function* () {})())), proto(proto((async function* () {})())));
  // ctx.db.query()'s classes are made on first use: make them now.
  const query = exports.ctx.db.query('hardened');
  roots.push(proto(query), proto(query.range));
  if (typeof Intl === 'object' && Intl !== null && typeof Intl.Segmenter === 'function') {
    const segments = new Intl.Segmenter().segment('');
    roots.push(proto(segments), proto(segments[Symbol.iterator]()));
  }
  // A worklist rather than recursion: the graph is deep (prototype chains of
  // every constructor) and recursion would spend the stack. Two passes: all
  // objects are found first, then frozen.
  const seen = new Set();
  const todo = [];
  const visit = (v) => {
    if ((typeof v === 'object' && v !== null) || typeof v === 'function') {
      if (!seen.has(v)) {
        seen.add(v);
        todo.push(v);
      }
    }
  };
  for (const r of roots) visit(r);
  while (todo.length > 0) {
    const o = todo.pop();
    visit(getPrototypeOf(o));
    for (const key of ownKeys(o)) {
      const d = getOwnPropertyDescriptor(o, key);
      if (d === undefined) continue;
      if ('value' in d) {
        visit(d.value);
      } else {
        visit(d.get);
        visit(d.set);
      }
    }
  }
  for (const o of seen) freeze(o);
  for (const o of seen) {
    if (!isFrozen(o)) throw new Error('not frozen: ' + String(o));
  }
  return seen.size;
})
)JS";

}  // namespace txfn::internal

#endif  // TXFN_LIB_V8_HARDEN_JS_H_

// Regexps V8 runs in C++ without an interrupt check: each start position's attempt fails far
// into a long text (16 Mi "a"s searched for 4 Ki "a"s, a "b", 4 Ki "a"s: 23 s natively), or an
// atom is searched like a string. The driver (tests/sandbox_test.cc) expects every one stopped
// at its CPU limit, none abandoned.
import { query } from "txfn/server";
import * as literals from "./literals.js";  // long literals, written by the driver

const subject = () => "a".repeat(2 ** 24);
const text = "a".repeat(2 ** 12) + "b" + "a".repeat(2 ** 12);
const q = (f) => query(async () => f(subject()));

export const constructed = q((s) => new RegExp(text).test(s));
export const called = q((s) => RegExp(text).exec(s));
export const global = q((s) => new RegExp(text, "g").exec(s));
export const ignoreCase = q((s) => new RegExp(text, "i").test(s));
export const unicode = q((s) => new RegExp(text, "u").test(s));
export const alternatives = q((s) => new RegExp(text + "|zzz").test(s));
export const captured = q((s) => new RegExp("(" + text + ")").test(s));
export const replaced = q((s) => s.replace(new RegExp(text, "g"), "").length);
export const split = q((s) => s.split(new RegExp(text)).length);
export const searched = q((s) => s.search(new RegExp(text)));
export const matchString = q((s) => s.match(text));
export const matchAllString = q((s) => [...s.matchAll(text)].length);
export const searchString = q((s) => s.search(text));
export const copied = q((s) => new RegExp(new RegExp(text), "g").test(s));
export const compiled = q((s) => /x/.compile(text).test(s));
export const subclassed = q((s) => new (class extends RegExp {})(text).test(s));
// An atom (plain characters, the first eight varied) V8 searches like a string.
export const atom = q(() => {
  const half = "abc".repeat(2800);
  return new RegExp(half + "x" + half).test("abc".repeat(2 ** 22));
});
export const literal = q((s) => literals.literal(s));
export const literalInTemplate = q((s) => literals.literalInTemplate(s));
export const literalAfterOf = q((s) => literals.literalAfterOf(s));
export const literalAfterDeclaration = q((s) => literals.literalAfterDeclaration(s));
export const evaluated = q((s) => (0, eval)("/" + text + "/").test(s));
export const functionBody = q((s) => new Function("s", "return /" + text + "/.test(s);")(s));

// String searches V8 runs in C++ without an interrupt check, quadratic in a long needle:
// each export searches 16 Mi "a"s for 4 Ki "a"s, a "b", 4 Ki "a"s (30 s natively). The
// driver (tests/sandbox_test.cc) expects every one stopped at its CPU limit, none abandoned.
import { query } from "txfn/server";

const subject = () => "a".repeat(2 ** 24);
const needle = () => "a".repeat(2 ** 12) + "b" + "a".repeat(2 ** 12);
const q = (f) => query(async () => f(subject(), needle()));

export const indexOf = q((s, n) => s.indexOf(n));
export const lastIndexOf = q((s, n) => s.lastIndexOf(n));
export const includes = q((s, n) => s.includes(n));
export const split = q((s, n) => s.split(n).length);
export const replace = q((s, n) => s.replace(n, "").length);
export const replaceAll = q((s, n) => s.replaceAll(n, "").length);
// A short subject takes the native replace unless the needle is long.
export const replaceShortSubject = q((s, n) =>
  s.slice(0, 2 ** 18).replaceAll("a".repeat(2 ** 16) + "b" + "a".repeat(2 ** 16), "").length);
export const objectNeedle = q((s, n) => s.indexOf({ toString: () => n }));
export const splitObject = q((s, n) => s.split({ toString: () => n }).length);
export const replaceObject = q((s, n) => s.replace({ toString: () => n }, "").length);
export const replaceAllObject = q((s, n) => s.replaceAll({ toString: () => n }, "").length);

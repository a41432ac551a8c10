// Natives called back by natives, each call ~0.5 ms with no JavaScript between
// them: without txfn's callback wrappers none of these loops ever checks for
// termination (the request would be abandoned and run on for minutes).
import { query } from "txfn/server";

const q = (f) => query(async (ctx, args) => f(args));
// Truthy (an array of 2^16 numbers) and falsy (0 after 1 MiB of blanks).
const J = "[" + "1,".repeat(1 << 16) + "1]";
const T = JSON.parse.bind(null, J);
const F = JSON.parse.bind(null, " ".repeat(1 << 20) + "0");
const N = 1e5;
const zeros = () => new Array(N).fill(0);

export const forEach = q(() => zeros().forEach(F));
export const map = q(() => zeros().map(F).length);
export const filter = q(() => zeros().filter(F).length);
export const every = q(() => zeros().every(T));
export const some = q(() => zeros().some(F));
export const find = q(() => zeros().find(F));
export const findIndex = q(() => zeros().findIndex(F));
export const findLast = q(() => zeros().findLast(F));
export const findLastIndex = q(() => zeros().findLastIndex(F));
export const reduce = q(() => zeros().reduce(F, 0));
export const reduceRight = q(() => zeros().reduceRight(F, 0));
export const sort = q(() => zeros().map((_, i) => i).sort(F).length);
export const arrayFrom = q(() => Array.from({ length: N }, F).length);
export const typedForEach = q(() => new Uint8Array(N).forEach(F));
export const typedMap = q(() => new Uint8Array(N).map(F).length);
export const typedFrom = q(() => Uint8Array.from({ length: N }, F).length);
export const typedSort = q(() => new Float64Array(N).map((_, i) => i).sort(F).length);
export const mapForEach = q(() => new Map(zeros().map((_, i) => [i, i])).forEach(F));
export const setForEach = q(() => new Set(zeros().map((_, i) => i)).forEach(F));
export const then = q(async () => {
  const p = Promise.resolve();
  for (let i = 0; i < N; ++i) p.then(F);
  await p;
  return 0;
});
export const thenRejected = q(async () => {
  const p = Promise.reject(new Error("no"));
  for (let i = 0; i < N; ++i) p.then(undefined, F);
  await p.catch(() => 0);
  return 0;
});
export const finally_ = q(async () => {
  const p = Promise.resolve();
  for (let i = 0; i < N; ++i) p.finally(F);
  await p;
  return 0;
});
export const reviver = q(() => JSON.parse(JSON.stringify(zeros()), F));
export const replaceFn = q(() => "a".repeat(N).replace(/a/g, F).length);
export const replaceAllFn = q(() => "a".repeat(N).replaceAll("a", F).length);

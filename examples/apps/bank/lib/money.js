// Amounts are integer cents held as int64 (BigInt). Callers may pass a BigInt
// or an integral JSON number (which arrives as a float64).
export function cents(what, x) {
  if (typeof x === "bigint") return x;
  if (typeof x === "number" && Number.isSafeInteger(x)) return BigInt(x);
  throw new Error(`${what} must be an integer number of cents, got ${String(x)}`);
}

export function positiveCents(what, x) {
  const v = cents(what, x);
  if (v <= 0n) throw new Error(`${what} must be positive, got ${v}`);
  return v;
}

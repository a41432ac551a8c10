// Helpers shared by the chat modules.

// Throws unless `s` is a non-empty string of at most `max` characters.
export function requireText(what, s, max) {
  if (typeof s !== "string" || s.length === 0) throw new Error(`${what} must be a non-empty string`);
  if (s.length > max) throw new Error(`${what} is longer than ${max} characters`);
  return s;
}

// Clamps a caller-supplied count (number or BigInt) to [1, max].
export function clampCount(n, dflt, max) {
  if (n === undefined || n === null) return dflt;
  const v = Number(n);
  if (!Number.isFinite(v) || v < 1) return 1;
  return Math.min(Math.floor(v), max);
}

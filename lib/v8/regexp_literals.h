// lib/v8/regexp_literals.h — long regexp literals rewritten so V8 can interrupt them.
//
// V8 tries a regexp at each start position without a termination check unless an attempt
// fails through its backtrack stack, so a pattern whose attempts fail far into a long text
// runs quadratic and uninterruptible. The bootstrap's RegExp wrapper compiles a long pattern
// as (?=)(?:pattern), whose empty lookahead routes every failure through the stack; a literal
// in a module's or an eval's source gets the same rewrite here, before V8 compiles it:
//
//   GuardLongRegExpLiterals("const r = /a...(70 characters).../g;", JsGoal::kModule)
//       == "const r = /(?=)(?:a...)/g;"
//
// The lexer knows comments (with a script's HTML-like ones), strings, templates, and where a
// `/` starts a regexp rather than a division: by the token before it, for-of heads,
// declarations, import clauses and the statements ASI ends. Where that depends on what it
// does not track, it reports the `/` as ambiguous and the caller refuses the source: a `/`
// after a `}` that may close a block or an expression (a function's or class's body, a `{`
// after a `:`), and in scripts after `yield`, `await` or a name `let` may declare (sloppy
// code may name variables so). A misplaced `/` would let a literal escape the guard (its
// text read as code) or rewrite a division. Pure string work, no V8.
#ifndef TXFN_LIB_V8_REGEXP_LITERALS_H_
#define TXFN_LIB_V8_REGEXP_LITERALS_H_

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

#include "absl/functional/function_ref.h"

namespace txfn::internal {

// Patterns of at most this many characters (UTF-8 bytes in a source) are left as they are:
// their attempts cost little even at every position of the longest string.
inline constexpr size_t kMaxUnguardedRegExp = 64;

// The prefix the guard adds (and a `)` after the pattern).
inline constexpr std::string_view kRegExpGuard = "(?=)(?:";

// Whether regexp `pattern` with `flags` needs the guard: it is longer than
// kMaxUnguardedRegExp, not sticky (one position only), and not an atom V8 searches in
// linear time (plain ASCII characters, at most 250, the first eight varied, no `i`). The one
// rule for literals here and for the bootstrap's RegExp wrapper (its native
// regexpNeedsGuard), which passes the pattern as UTF-8.
[[nodiscard]] bool RegExpNeedsGuard(std::string_view pattern, std::string_view flags);

// Deepest nesting of groups (parentheses, lookarounds included) a pattern may have. V8 turns
// a pattern's tree into nodes recursively, and where that recursion meets the stack limit it
// aborts the whole process ("Fatal process OOM in RegExpCompiler": ToNodeCheckForStackOverflow)
// instead of failing the regexp. From a shallow stack that took thousands of levels ((?:a){0,3}
// nested 2,736 deep, (?:a| 10,400 deep); but compiled with the JavaScript stack nearly full (a
// tenant recursing first), 256 levels of (?:a){0,3} or (?!b with the i and u flags aborted,
// 224 did not: V8 keeps that much in reserve. 32 leaves a margin of 7 over the worst shapes
// tried (tests/sandbox/attacks.js: regexpNestingAtTheStackLimit); real patterns nest a few
// levels. The bootstrap's MAX_REGEXP_NESTING is the same number.
inline constexpr size_t kMaxRegExpNesting = 32;

// The deepest nesting of groups in regexp `pattern`: `(` opens one and `)` closes it, except
// escaped (`\(`) or in a character class (`[(]`). An unclosed group counts as open (V8
// refuses the pattern anyway, after parsing it).
[[nodiscard]] size_t RegExpNestingDepth(std::string_view pattern);

// Which grammar a source is: a module's, or a script's (eval, Function), where Annex B's
// HTML-like comments (`<!--`, and `-->` first on a line) run to the line's end.
enum class JsGoal { kModule, kScript };

// A regexp literal in a source, as views into it.
struct RegExpLiteral {
  std::string_view pattern;
  std::string_view flags;
  // In the parameters of a source V8 made for the Function constructor (or its async and
  // generator kinds): "(function anonymous(params\n) {\nbody\n})". V8 checks that the
  // parameters end where they did, so such a literal cannot be rewritten.
  bool in_function_parameters = false;
};

// A `/` the lexer cannot place (it would start a regexp literal, closed on its line, or
// divide): its offset in the source, and the token before it.
struct AmbiguousSlash {
  size_t offset;
  std::string_view after;  // "}", "yield", "await" or "a name after let"
};

// `source` with each regexp literal that needs the guard rewritten as
// /(?=)(?:pattern)/flags; nullopt when none is rewritten. Only for a source CheckRegExpCost
// accepts: literals in Function parameters are left as they are, and an ambiguous `/` read
// as a regexp. Thread-safe (pure).
[[nodiscard]] std::optional<std::string> GuardLongRegExpLiterals(std::string_view source,
                                                                 JsGoal goal);

// Calls `visit` with each regexp literal in `source`, as GuardLongRegExpLiterals finds them;
// returns the first ambiguous `/`, if any.
[[nodiscard]] std::optional<AmbiguousSlash> ForEachRegExpLiteral(
    std::string_view source, JsGoal goal, absl::FunctionRef<void(const RegExpLiteral&)> visit);

}  // namespace txfn::internal

#endif  // TXFN_LIB_V8_REGEXP_LITERALS_H_

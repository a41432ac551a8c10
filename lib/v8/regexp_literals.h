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
// `/` starts a regexp rather than a division: by the token before it, the for-of heads,
// declarations and statements ASI ends. It reads a regexp wherever tenant code could have one
// (after a `}`, it reads one even where only nonsense code, `{} / x`, would divide), so no
// literal escapes the guard by where it is written. Pure string work, no V8.
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

// `source` with each regexp literal that needs the guard rewritten as
// /(?=)(?:pattern)/flags, but those in Function parameters (which the caller must refuse
// instead: CheckRegExpCost does); nullopt when none is rewritten. Thread-safe (pure).
[[nodiscard]] std::optional<std::string> GuardLongRegExpLiterals(std::string_view source,
                                                                 JsGoal goal);

// Calls `visit` with each regexp literal in `source`, as GuardLongRegExpLiterals finds them.
void ForEachRegExpLiteral(std::string_view source, JsGoal goal,
                          absl::FunctionRef<void(const RegExpLiteral&)> visit);

}  // namespace txfn::internal

#endif  // TXFN_LIB_V8_REGEXP_LITERALS_H_

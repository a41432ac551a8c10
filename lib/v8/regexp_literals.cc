#include "lib/v8/regexp_literals.h"

#include <algorithm>
#include <array>
#include <utility>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/strings/ascii.h"

namespace txfn::internal {
namespace {

// V8 searches an atom (a pattern of plain characters) with Boyer-Moore tables of this many
// characters: up to it the search is linear.
constexpr size_t kMaxLinearAtom = 250;
constexpr std::string_view kSyntaxCharacters = "^$\\.*+?()[]{}|/-";

// The characters V8 searches for if `pattern` is an atom (plain ASCII characters and escaped
// syntax characters), or nullopt.
std::optional<std::string> AtomOf(std::string_view pattern) {
  std::string atom;
  for (size_t i = 0; i < pattern.size(); ++i) {
    char c = pattern[i];
    if (static_cast<unsigned char>(c) >= 0x80) return std::nullopt;
    if (c == '\\') {
      if (++i == pattern.size()) return std::nullopt;
      c = pattern[i];
      if (kSyntaxCharacters.find(c) == std::string_view::npos) return std::nullopt;
    } else if (c != '/' && c != '-' && kSyntaxCharacters.find(c) != std::string_view::npos) {
      return std::nullopt;
    }
    atom.push_back(c);
  }
  return atom;
}

// V8's HasFewDifferentCharacters: such an atom is compiled, not searched.
bool FewDifferent(std::string_view atom) {
  const size_t length = std::min<size_t>(8, atom.size());
  if (length <= 2) return false;
  std::array<bool, 128> seen{};
  size_t different = 0;
  for (size_t i = 0; i < length; ++i) {
    bool& s = seen[static_cast<unsigned char>(atom[i]) & 127];
    if (s) continue;
    s = true;
    if (++different * 3 > length) return false;
  }
  return true;
}

bool IsIdentifierPart(char c) {
  return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '$' || c == '\\' ||
         c == '#' || static_cast<unsigned char>(c) >= 0x80;
}
bool IsLineEnd(char c) { return c == '\n' || c == '\r'; }
bool IsDigit(char c) { return c >= '0' && c <= '9'; }

// Words after which an expression may start (so a `/` starts a regexp).
bool IsExpressionKeyword(std::string_view word) {
  static constexpr std::string_view kWords[] = {
      "return", "typeof",     "case",  "do",    "else",    "in",      "new",     "delete", "void",
      "throw",  "instanceof", "await", "yield", "extends", "default", "finally", "try"};
  for (std::string_view w : kWords) {
    if (word == w) return true;
  }
  return false;
}
// Words after which a `{` opens a block.
bool IsBlockKeyword(std::string_view word) {
  return word == "else" || word == "do" || word == "try" || word == "finally";
}
// Words whose parenthesised head is followed by a block or statement (a `/` there starts a
// regexp). (for: Nest::kForHead.)
bool IsStatementHeadKeyword(std::string_view word) {
  return word == "if" || word == "while" || word == "with" || word == "switch" || word == "catch";
}
bool IsDeclarationKeyword(std::string_view word) {
  return word == "var" || word == "let" || word == "const";
}
// Words no declaration can name (a `let` before one names a variable).
bool IsReservedWord(std::string_view word) {
  static constexpr std::string_view kWords[] = {
      "break",  "case",     "catch",  "class",  "const",  "continue",   "debugger", "default",
      "delete", "do",       "else",   "enum",   "export", "extends",    "false",    "finally",
      "for",    "function", "if",     "import", "in",     "instanceof", "new",      "null",
      "return", "super",    "switch", "this",   "throw",  "true",       "try",      "typeof",
      "var",    "void",     "while",  "with"};
  for (std::string_view w : kWords) {
    if (word == w) return true;
  }
  return false;
}
// Words that end an import or export clause's run of words (the declaration is another kind).
bool EndsModuleClause(std::string_view word) {
  return IsDeclarationKeyword(word) || word == "function" || word == "class" || word == "async" ||
         word == "default";
}

// The JavaScript lexer: just enough to find regexp literals. It places a `/` as V8 does, by
// the token before it, for-of heads, declarations, import clauses and the statements ASI ends;
// where that depends on what it does not track (whether a `}` closed a block or an
// expression, whether a script's `yield`, `await` or `let` is a keyword) it reports the `/` as
// ambiguous, and the caller refuses the source.
class RegExpLiteralLexer {
 public:
  // `on_literal(open, close, end, in_parameters)`: a literal's opening `/`, closing `/`, and
  // the end of its flags, as indices into `source`; whether it is in a Function constructor's
  // parameters.
  using OnLiteral = absl::FunctionRef<void(size_t open, size_t close, size_t end, bool)>;

  RegExpLiteralLexer(std::string_view source, JsGoal goal, OnLiteral on_literal)
      : src_(source), goal_(goal), on_literal_(on_literal) {
    if (src_.substr(0, 2) == "#!") SkipLine();
    // V8 compiles `new Function(params, body)` (and its async and generator kinds) as
    // "(function anonymous(params\n) {\nbody\n})", and checks the parameters end where they did.
    for (std::string_view head : {"(function anonymous(", "(function* anonymous(",
                                  "(async function anonymous(", "(async function* anonymous("}) {
      in_parameters_ |= src_.substr(0, head.size()) == head;
    }
  }

  // Lexes the whole source; the first ambiguous `/`, if any.
  std::optional<AmbiguousSlash> Run() {
    while (i_ < src_.size()) Step();
    return ambiguous_;
  }

 private:
  // What an open `(`, `[`, `{` or `${` is. A `{` the lexer cannot place (a function's or
  // class's body, declaration or expression; a block or an object literal after a `:`) is
  // kUnsure: after its `}` a `/` is ambiguous.
  enum class Nest {
    kParen,
    kStatementHead,
    kForHead,
    kBracket,
    kBlock,
    kObject,
    kUnsure,
    kTemplate
  };
  // A declaration (var, let, const) open at a nesting depth; `unsure` for a script's `let`,
  // which may name a variable.
  struct Declaration {
    size_t depth;
    bool unsure;
  };

  // The byte length of the line terminator at `i` (LF, CR, U+2028, U+2029), or 0.
  size_t LineEndAt(size_t i) const {
    if (src_[i] == '\n' || src_[i] == '\r') return 1;
    const std::string_view s = src_.substr(i, 3);
    return s == "\u2028" || s == "\u2029" ? 3 : 0;
  }
  // The byte length of the white space or line terminator at `i`, or 0: V8's white space is
  // Unicode's space separators (Zs), tab, vertical tab, form feed and the byte-order mark.
  size_t SpaceAt(size_t i) const {
    const char c = src_[i];
    if (c == ' ' || c == '\t' || c == '\v' || c == '\f' || c == '\n' || c == '\r') return 1;
    if (static_cast<unsigned char>(c) < 0x80) return 0;
    if (src_.substr(i, 2) == "\u00a0") return 2;
    const std::string_view s = src_.substr(i, 3);
    if (s.size() < 3) return 0;
    const unsigned char last = static_cast<unsigned char>(s[2]);
    if (s.substr(0, 2) == "\xe2\x80") {  // U+2000..U+200A, U+2028, U+2029, U+202F
      return last <= 0x8a || last == 0xa8 || last == 0xa9 || last == 0xaf ? 3 : 0;
    }
    return s == "\u1680" || s == "\u205f" || s == "\u3000" || s == "\ufeff" ? 3 : 0;
  }
  bool IdentifierPartAt(size_t i) const { return IsIdentifierPart(src_[i]) && SpaceAt(i) == 0; }
  std::string_view WordAt(size_t i) const {
    size_t end = i;
    while (end < src_.size() && IdentifierPartAt(end)) ++end;
    return src_.substr(i, end - i);
  }

  // After a token: whether a `/` would start a regexp, what a `{` would open, and whether the
  // token ends an operand.
  void After(bool regexp, Nest brace, bool operand) {
    regexp_allowed_ = regexp;
    brace_next_ = brace;
    operand_ = operand;
  }

  // Whether the token at i_ can continue an expression that ended before it on another line;
  // if not, ASI ends the statement there.
  bool ContinuesExpression(char c, char next) const {
    if (IsIdentifierPart(c) && !IsDigit(c)) {
      const std::string_view word = WordAt(i_);
      return word == "in" || word == "instanceof" || word == "of";
    }
    if (IsDigit(c) || c == '\'' || c == '"' || c == '{' || c == '!' || c == '~') return false;
    if (c == '.' && IsDigit(next)) return false;
    return !((c == '+' || c == '-') && next == c);
  }

  void Step() {
    if (const size_t space = SpaceAt(i_); space > 0) {
      newline_ |= LineEndAt(i_) > 0;
      i_ += space;
      return;
    }
    const char c = src_[i_];
    const char next = i_ + 1 < src_.size() ? src_[i_ + 1] : '\0';
    if (c == '/' && next == '/') return SkipLine();
    if (c == '/' && next == '*') {
      const size_t end = src_.find("*/", i_ + 2);
      const size_t stop = end == std::string_view::npos ? src_.size() : end + 2;
      for (; i_ < stop; ++i_) newline_ |= LineEndAt(i_) > 0;  // then it counts as a line break
      return;
    }
    // Annex B's HTML-like comments, in scripts only: `<!--`, and `-->` first on a line.
    if (goal_ == JsGoal::kScript &&
        (src_.substr(i_, 4) == "<!--" || (newline_ && src_.substr(i_, 3) == "-->"))) {
      return SkipLine();
    }
    const bool newline = std::exchange(newline_, false);
    const bool after_dot = std::exchange(after_dot_, false);
    bool binding_next = std::exchange(binding_next_, false);
    const bool after_binding = std::exchange(after_binding_, false);
    const bool after_brace = std::exchange(after_brace_, false);
    const std::optional<std::string_view> slash_ambiguous = std::exchange(slash_ambiguous_, {});
    const std::optional<bool> declaration_next = std::exchange(declaration_next_, {});
    const bool operand = operand_;
    const std::string_view word = std::exchange(word_, {});
    if (newline && operand && Declaring() && !ContinuesExpression(c, next)) {
      declarations_.pop_back();  // ASI ended it
    }
    if (declaration_next.has_value() &&
        ((IsIdentifierPart(c) && !IsDigit(c) && !IsReservedWord(WordAt(i_))) || c == '[' ||
         c == '{')) {
      OpenDeclaration(*declaration_next);
      binding_next = IsIdentifierPart(c);
    }
    if (module_clause_ && !(IsIdentifierPart(c) || c == '{' || c == '}' || c == ',' || c == '*' ||
                            c == '\'' || c == '"')) {
      module_clause_ = false;
    }
    if (c == '\'' || c == '"') {
      SkipString(c);
      // A module specifier ends an import or export: a statement may follow.
      const bool specifier = module_clause_ && (word == "from" || word == "import");
      if (specifier) module_clause_ = false;
      After(specifier, specifier ? Nest::kBlock : Nest::kUnsure, true);
    } else if (c == '`') {
      ++i_;
      SkipTemplate();
    } else if (IsDigit(c) || (c == '.' && IsDigit(next))) {
      while (i_ < src_.size() && (IdentifierPartAt(i_) || src_[i_] == '.' ||
                                  ((src_[i_] == '+' || src_[i_] == '-') &&
                                   (src_[i_ - 1] == 'e' || src_[i_ - 1] == 'E')))) {
        ++i_;
      }
      After(false, Nest::kUnsure, true);
    } else if (IsIdentifierPart(c)) {
      const std::string_view text = WordAt(i_);
      i_ += text.size();
      if (after_dot) {
        After(false, Nest::kUnsure, true);  // a property name
      } else {
        Word(text, word, newline, binding_next, operand);
      }
    } else if (c == '/') {
      const size_t close = RegExpClose();
      if (slash_ambiguous.has_value() && close != std::string_view::npos &&
          !ambiguous_.has_value()) {
        ambiguous_ = AmbiguousSlash{.offset = i_, .after = *slash_ambiguous};
      }
      if (regexp_allowed_ && close != std::string_view::npos) {
        if (after_binding && Declaring()) declarations_.pop_back();  // `let x\n/re/`: ASI
        ScanRegExp(close);
        After(false, Nest::kUnsure, true);
      } else {
        i_ += next == '=' ? 2 : 1;  // a division
        After(true, Nest::kObject, false);
      }
    } else if (c == '(') {
      ++i_;
      nesting_.push_back(word == "for"                  ? Nest::kForHead
                         : IsStatementHeadKeyword(word) ? Nest::kStatementHead
                                                        : Nest::kParen);
      After(true, Nest::kObject, false);
    } else if (c == ')') {
      ++i_;
      const Nest open = Close(Nest::kParen);
      if (in_parameters_ && nesting_.size() == 1) in_parameters_ = false;
      const bool head = open == Nest::kStatementHead || open == Nest::kForHead;
      After(head, head ? Nest::kBlock : Nest::kUnsure, !head);
    } else if (c == '[') {
      ++i_;
      nesting_.push_back(Nest::kBracket);
      After(true, Nest::kObject, false);
    } else if (c == ']') {
      ++i_;
      Close(Nest::kBracket);
      After(false, Nest::kUnsure, true);
    } else if (c == '{') {
      ++i_;
      // `return` and `yield` end their statement at a line break (ASI).
      const bool restricted = newline && (word == "return" || word == "yield");
      // After let/var/const a binding pattern (or, a script's `let` being a variable, a block).
      const Nest pattern = declaration_next == false ? Nest::kObject : Nest::kUnsure;
      // After `extends`, the class's body (kUnsure, as are the bodies of the functions and
      // classes its heritage may define first): `class A extends function () {} {`.
      const bool class_body = operand && heritage_depth_ == nesting_.size();
      if (class_body && heritage_bodies_ > 0) {
        --heritage_bodies_;
      } else if (class_body) {
        heritage_depth_.reset();
      }
      nesting_.push_back(restricted                     ? Nest::kBlock
                         : class_body                   ? Nest::kUnsure
                         : declaration_next.has_value() ? pattern
                         : module_clause_               ? Nest::kBlock  // its `}` ends a clause
                                                        : brace_next_);
      After(true, Nest::kBlock, false);
    } else if (c == '}') {
      ++i_;
      const Nest open = Close(Nest::kBlock);
      if (open == Nest::kTemplate) {
        SkipTemplate();
      } else {
        // After a block a statement starts; after an object literal a `/` divides it.
        After(open == Nest::kBlock, Nest::kBlock, true);
        if (open != Nest::kBlock && open != Nest::kObject) slash_ambiguous_ = "}";
        after_brace_ = true;
      }
    } else if ((c == '+' || c == '-') && next == c) {
      i_ += 2;
      // Prefix where an operand may start (not after a declared name: `let\nx++` names a
      // variable let), on a new line (`a\n++b` is `a; ++b`) and after a `}` (no expression a
      // `}` ends can be incremented): its operand follows. Postfix otherwise: a `/` after it
      // divides.
      const bool prefix = (regexp_allowed_ && !after_binding) || newline || after_brace;
      After(prefix, prefix ? Nest::kObject : Nest::kUnsure, !prefix);
      // After a script's yield or await it is prefix (a keyword's operand) or postfix (a
      // variable's): the `/` after it is as ambiguous.
      if (slash_ambiguous == "yield" || slash_ambiguous == "await") {
        slash_ambiguous_ = slash_ambiguous;
      }
    } else if (c == '.' ||
               (c == '?' && next == '.' && !IsDigit(i_ + 2 < src_.size() ? src_[i_ + 2] : '\0'))) {
      const bool spread = c == '.' && src_.substr(i_, 3) == "...";
      i_ += spread ? 3 : (c == '?' ? 2 : 1);
      after_dot_ = !spread;
      After(true, Nest::kObject, false);
    } else if (c == '=' && next == '>') {
      i_ += 2;
      After(true, Nest::kBlock, false);  // an arrow's body
    } else if (c == ';') {
      ++i_;
      if (Declaring()) declarations_.pop_back();
      const bool in_for_head = !nesting_.empty() && nesting_.back() == Nest::kForHead;
      After(true, in_for_head ? Nest::kObject : Nest::kBlock, false);
    } else if (c == ',') {
      ++i_;
      binding_next_ = Declaring();  // `let a = 1, b`: a name follows
      After(true, Nest::kObject, false);
    } else if (c == ':') {
      ++i_;
      After(true, Nest::kUnsure, false);  // a label's, a case's, a property's or a ternary's
    } else {
      // An operator: an operand follows. (`<<` is one: V8 reads no `<!--` comment in `<<!--`.)
      i_ += c == '<' && next == '<' ? 2 : 1;
      After(true, Nest::kObject, false);
    }
  }

  // A word (not a property name) after the word `previous` (if any).
  void Word(std::string_view word, std::string_view previous, bool newline, bool binding_next,
            bool operand) {
    word_ = word;
    if (binding_next && Declaring()) {
      // A declared name: `=`, `,`, `;`, `in`, `of` or (on a new line) a statement follows,
      // never a division. A script's `let` may instead name a variable: then it is a division.
      after_binding_ = true;
      if (declarations_.back().unsure) slash_ambiguous_ = "a name after let";
      return After(true, Nest::kUnsure, true);
    }
    if (word == "import" || word == "export") module_clause_ = true;
    if (previous == "export" && EndsModuleClause(word)) module_clause_ = false;
    if (IsDeclarationKeyword(word)) {
      // A declaration if a name or a pattern follows (in a script `let` may be a variable).
      declaration_next_ = word == "let" && goal_ == JsGoal::kScript;
      return After(false, Nest::kUnsure, true);
    }
    if (word == "extends") heritage_depth_ = nesting_.size();
    if ((word == "function" || word == "class") && heritage_depth_ == nesting_.size()) {
      ++heritage_bodies_;
    }
    if (word == "of" && operand && !nesting_.empty() && nesting_.back() == Nest::kForHead) {
      return After(true, Nest::kObject, false);  // for (x of /re/...)
    }
    if (word == "await" && previous == "for") {
      word_ = "for";  // for await (...): a for head
      return After(true, Nest::kObject, false);
    }
    if (word == "break" || word == "continue" || word == "debugger" ||
        (!newline && (previous == "break" || previous == "continue"))) {
      return After(true, Nest::kBlock, false);  // a statement ends (`/` on the next line: ASI)
    }
    if ((word == "yield" || word == "await") && goal_ == JsGoal::kScript) {
      // A keyword in a generator or async function, else (sloppy script) a variable's name.
      slash_ambiguous_ = word;
      return After(true, Nest::kUnsure, false);
    }
    const bool expression = IsExpressionKeyword(word);
    After(expression,
          IsBlockKeyword(word) ? Nest::kBlock
          : expression         ? Nest::kObject
                               : Nest::kUnsure,
          !expression);
  }

  void OpenDeclaration(bool unsure) {
    while (!declarations_.empty() && declarations_.back().depth >= nesting_.size()) {
      declarations_.pop_back();
    }
    declarations_.push_back(Declaration{.depth = nesting_.size(), .unsure = unsure});
  }

  // Whether a var/let/const declaration is open at this nesting (its names follow `,`).
  bool Declaring() const {
    return !declarations_.empty() && declarations_.back().depth == nesting_.size();
  }

  // Closes the innermost `(`, `[`, `{` or `${`, and what it opened (`if_none` if nothing was).
  Nest Close(Nest if_none) {
    if (nesting_.empty()) return if_none;
    const Nest open = nesting_.back();
    nesting_.pop_back();
    while (!declarations_.empty() && declarations_.back().depth > nesting_.size()) {
      declarations_.pop_back();
    }
    return open;
  }

  void SkipLine() {
    while (i_ < src_.size() && LineEndAt(i_) == 0) ++i_;
  }

  void SkipString(char quote) {
    for (++i_; i_ < src_.size(); ++i_) {
      const char c = src_[i_];
      if (c == '\\') {
        ++i_;  // the escaped character, or a line continuation (\r\n: both)
        if (src_.substr(i_, 2) == "\r\n") ++i_;
      } else if (c == quote || IsLineEnd(c)) {
        ++i_;
        return;
      }
    }
  }

  // From inside a template's text: to its end, or into a `${` (whose `}` returns here).
  void SkipTemplate() {
    for (; i_ < src_.size(); ++i_) {
      const char c = src_[i_];
      if (c == '\\') {
        ++i_;
      } else if (c == '`') {
        ++i_;
        After(false, Nest::kUnsure, true);
        return;
      } else if (c == '$' && i_ + 1 < src_.size() && src_[i_ + 1] == '{') {
        i_ += 2;
        nesting_.push_back(Nest::kTemplate);
        After(true, Nest::kObject, false);
        return;
      }
    }
  }

  // The closing `/` of a regexp literal at i_ (a `/`), or npos if the line ends before one.
  size_t RegExpClose() const {
    bool in_class = false;
    for (size_t j = i_ + 1;; ++j) {
      if (j >= src_.size() || LineEndAt(j) > 0) return std::string_view::npos;
      const char c = src_[j];
      if (c == '\\') {
        if (++j >= src_.size() || LineEndAt(j) > 0) return std::string_view::npos;
      } else if (c == '[') {
        in_class = true;
      } else if (c == ']') {
        in_class = false;
      } else if (c == '/' && !in_class) {
        return j;
      }
    }
  }

  // Passes the regexp literal from i_ to `close` (and its flags) to on_literal_.
  void ScanRegExp(size_t close) {
    size_t end = close + 1;
    while (end < src_.size() && IdentifierPartAt(end)) ++end;
    on_literal_(i_, close, end, in_parameters_);
    i_ = end;
  }

  std::string_view src_;
  JsGoal goal_;
  OnLiteral on_literal_;
  size_t i_ = 0;
  std::optional<AmbiguousSlash> ambiguous_;
  bool regexp_allowed_ = true;
  Nest brace_next_ = Nest::kBlock;
  bool operand_ = false;        // the last token ended an operand (`x`, `)`, `]`, `}`, ...)
  bool newline_ = true;         // a line terminator since the last token (or none yet)
  bool after_dot_ = false;      // the last token was `.` or `?.`: a word is a property name
  bool after_brace_ = false;    // the last token was a `}` (not a template's)
  bool binding_next_ = false;   // the last token was a `,` between declared names
  bool after_binding_ = false;  // the last token was a declared name
  bool module_clause_ = false;  // in an import's or export's clause, before its specifier
  bool in_parameters_ = false;  // in a Function constructor's parameters
  // After var/let/const: a declaration opens if a name or pattern follows; whether it is
  // unsure (a script's `let`).
  std::optional<bool> declaration_next_;
  std::optional<size_t> heritage_depth_;  // the nesting of the last `extends`
  size_t heritage_bodies_ = 0;            // functions and classes in it, their bodies ahead
  // The last token leaves a `/` after it ambiguous: what it was.
  std::optional<std::string_view> slash_ambiguous_;
  std::string_view word_;  // the last token, if a word (not a property name)
  std::vector<Nest> nesting_;
  std::vector<Declaration> declarations_;
};

}  // namespace

size_t RegExpNestingDepth(std::string_view pattern) {
  size_t depth = 0;
  size_t deepest = 0;
  bool in_class = false;
  for (size_t i = 0; i < pattern.size(); ++i) {
    const char c = pattern[i];
    if (c == '\\') {
      ++i;  // the escaped character, whatever it is
    } else if (in_class) {
      in_class = c != ']';
    } else if (c == '[') {
      in_class = true;
    } else if (c == '(') {
      deepest = std::max(deepest, ++depth);
    } else if (c == ')' && depth > 0) {
      --depth;
    }
  }
  return deepest;
}

bool RegExpNeedsGuard(std::string_view pattern, std::string_view flags) {
  if (pattern.size() <= kMaxUnguardedRegExp) return false;
  if (flags.find('y') != std::string_view::npos) return false;
  if (pattern.size() <= kMaxLinearAtom && flags.find('i') == std::string_view::npos) {
    const std::optional<std::string> atom = AtomOf(pattern);
    if (atom.has_value() && !FewDifferent(*atom)) return false;
  }
  return true;
}

std::optional<AmbiguousSlash> ForEachRegExpLiteral(
    std::string_view source, JsGoal goal, absl::FunctionRef<void(const RegExpLiteral&)> visit) {
  return RegExpLiteralLexer(
             source, goal,
             [&](size_t open, size_t close, size_t end, bool in_parameters) {
               visit(RegExpLiteral{.pattern = source.substr(open + 1, close - open - 1),
                                   .flags = source.substr(close + 1, end - close - 1),
                                   .in_function_parameters = in_parameters});
             })
      .Run();
}

std::optional<std::string> GuardLongRegExpLiterals(std::string_view source, JsGoal goal) {
  std::string out;
  size_t copied = 0;  // source[0, copied) is in out
  // The lexer's ambiguity is the caller's to refuse (CheckRegExpCost).
  (void)RegExpLiteralLexer(
      source, goal,
      [&](size_t open, size_t close, size_t end, bool in_parameters) {
        const std::string_view pattern = source.substr(open + 1, close - open - 1);
        if (in_parameters || pattern.empty() ||
            !RegExpNeedsGuard(pattern, source.substr(close + 1, end - close - 1))) {
          return;
        }
        out.append(source.substr(copied, open + 1 - copied));
        out.append(kRegExpGuard);
        out.append(pattern);
        out.push_back(')');
        copied = close;
      })
      .Run();
  if (copied == 0) return std::nullopt;
  out.append(source.substr(copied));
  return out;
}

}  // namespace txfn::internal

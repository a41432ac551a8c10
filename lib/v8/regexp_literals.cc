#include "lib/v8/regexp_literals.h"

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
// Words whose parenthesised head is followed by a statement (a `/` there starts a regexp).
bool IsStatementHeadKeyword(std::string_view word) {
  return word == "if" || word == "while" || word == "with";
}
bool IsDeclarationKeyword(std::string_view word) {
  return word == "var" || word == "let" || word == "const";
}

// The JavaScript lexer: just enough to find regexp literals. Where the grammar allows only a
// regexp or only a division it reads that; where a `/` could be either only in code nobody
// writes (after an object literal's `}`: `{} / x`) it reads a regexp, so no regexp tenant code
// can write is read as a division.
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

  void Run() {
    while (i_ < src_.size()) Step();
  }

 private:
  // What an open `(`, `[`, `{` or `${` is.
  enum class Nest { kParen, kStatementHead, kForHead, kBracket, kBlock, kObject, kTemplate };

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

  // After a token: whether a `/` would start a regexp, a `{` a block, and whether the token
  // ends an operand (for `of`).
  void After(bool regexp, bool block, bool operand) {
    regexp_allowed_ = regexp;
    block_allowed_ = block;
    operand_ = operand;
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
    const bool binding_next = std::exchange(binding_next_, false);
    const bool operand = operand_;
    const std::string_view word = std::exchange(word_, {});
    if (c == '\'' || c == '"') {
      SkipString(c);
      // A module specifier ends an import or export: a statement may follow.
      const bool specifier = word == "from" || word == "import";
      After(specifier, specifier, true);
    } else if (c == '`') {
      ++i_;
      SkipTemplate();
    } else if (IsDigit(c) || (c == '.' && IsDigit(next))) {
      while (i_ < src_.size() && (IdentifierPartAt(i_) || src_[i_] == '.' ||
                                  ((src_[i_] == '+' || src_[i_] == '-') &&
                                   (src_[i_ - 1] == 'e' || src_[i_ - 1] == 'E')))) {
        ++i_;
      }
      After(false, false, true);
    } else if (IsIdentifierPart(c)) {
      const size_t start = i_;
      while (i_ < src_.size() && IdentifierPartAt(i_)) ++i_;
      if (after_dot) {
        After(false, false, true);  // a property name
      } else {
        Word(src_.substr(start, i_ - start), word, newline, binding_next, operand);
      }
    } else if (c == '/') {
      if (regexp_allowed_ && ScanRegExp()) {
        After(false, false, true);
      } else {
        i_ += next == '=' ? 2 : 1;  // a division
        After(true, false, false);
      }
    } else if (c == '(') {
      ++i_;
      nesting_.push_back(word == "for"                  ? Nest::kForHead
                         : IsStatementHeadKeyword(word) ? Nest::kStatementHead
                                                        : Nest::kParen);
      After(true, false, false);
    } else if (c == ')') {
      ++i_;
      const Nest open = Close(Nest::kParen);
      if (in_parameters_ && nesting_.size() == 1) in_parameters_ = false;
      const bool head = open == Nest::kStatementHead || open == Nest::kForHead;
      After(head, true, !head);
    } else if (c == '[') {
      ++i_;
      nesting_.push_back(Nest::kBracket);
      After(true, false, false);
    } else if (c == ']') {
      ++i_;
      Close(Nest::kBracket);
      After(false, false, true);
    } else if (c == '{') {
      ++i_;
      nesting_.push_back(block_allowed_ ? Nest::kBlock : Nest::kObject);
      After(true, true, false);
    } else if (c == '}') {
      ++i_;
      const Nest open = Close(Nest::kBlock);
      if (open == Nest::kTemplate) {
        SkipTemplate();
      } else {
        // After a block a statement starts. After an object literal's `}` a `/` would divide
        // it (NaN), but a `{` taken for an object's may open a block (after a label, `case`,
        // a class declaration's body): read a regexp.
        After(true, open == Nest::kBlock, true);
      }
    } else if ((c == '+' || c == '-') && next == c) {
      i_ += 2;
      // Prefix where an operand may start, and on a new line (`a\n++b` is `a; ++b`): its
      // operand follows. Postfix otherwise: a `/` after it divides.
      const bool prefix = regexp_allowed_ || newline;
      After(prefix, false, !prefix);
    } else if (c == '.' ||
               (c == '?' && next == '.' && !IsDigit(i_ + 2 < src_.size() ? src_[i_ + 2] : '\0'))) {
      const bool spread = c == '.' && src_.substr(i_, 3) == "...";
      i_ += spread ? 3 : (c == '?' ? 2 : 1);
      after_dot_ = !spread;
      After(true, false, false);
    } else if (c == '=' && next == '>') {
      i_ += 2;
      After(true, true, false);
    } else if (c == ';') {
      ++i_;
      if (Declaring()) declarations_.pop_back();
      After(true, true, false);
    } else if (c == ',') {
      ++i_;
      binding_next_ = Declaring();  // `let a = 1, b`: a name follows
      After(true, false, false);
    } else {
      ++i_;
      After(true, false, false);  // an operator: an operand follows
    }
  }

  // A word (not a property name) after the word `previous` (if any).
  void Word(std::string_view word, std::string_view previous, bool newline, bool binding_next,
            bool operand) {
    word_ = word;
    if (binding_next && Declaring()) {
      // A declared name: `=`, `,`, `;`, `in`, `of` or (on a new line) a statement follows,
      // never a division.
      return After(true, true, true);
    }
    if (IsDeclarationKeyword(word)) {
      while (!declarations_.empty() && declarations_.back() >= nesting_.size()) {
        declarations_.pop_back();
      }
      declarations_.push_back(nesting_.size());
      binding_next_ = true;
      return After(false, false, false);
    }
    if (word == "of" && operand && !nesting_.empty() && nesting_.back() == Nest::kForHead) {
      return After(true, false, false);  // for (x of /re/...)
    }
    if (word == "await" && previous == "for") {
      word_ = "for";  // for await (...): a for head
      return After(true, false, false);
    }
    if (word == "break" || word == "continue" || word == "debugger" ||
        (!newline && (previous == "break" || previous == "continue"))) {
      return After(true, true, false);  // a statement ends here (`/` on the next line: ASI)
    }
    const bool expression = IsExpressionKeyword(word);
    After(expression, IsBlockKeyword(word), !expression);
  }

  // Whether a var/let/const declaration is open at this nesting (its names follow `,`).
  bool Declaring() const {
    return !declarations_.empty() && declarations_.back() == nesting_.size();
  }

  // Closes the innermost `(`, `[`, `{` or `${`, and what it opened (`if_none` if nothing was).
  Nest Close(Nest if_none) {
    if (nesting_.empty()) return if_none;
    const Nest open = nesting_.back();
    nesting_.pop_back();
    while (!declarations_.empty() && declarations_.back() > nesting_.size()) {
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
        After(false, false, true);
        return;
      } else if (c == '$' && i_ + 1 < src_.size() && src_[i_ + 1] == '{') {
        i_ += 2;
        nesting_.push_back(Nest::kTemplate);
        After(true, false, false);
        return;
      }
    }
  }

  // A regexp literal at i_ (a `/`), passed to on_literal_. False, with i_ unchanged, if the
  // line ends before the literal does.
  bool ScanRegExp() {
    size_t j = i_ + 1;
    bool in_class = false;
    for (;; ++j) {
      if (j >= src_.size() || LineEndAt(j) > 0) return false;
      const char c = src_[j];
      if (c == '\\') {
        if (++j >= src_.size() || LineEndAt(j) > 0) return false;
      } else if (c == '[') {
        in_class = true;
      } else if (c == ']') {
        in_class = false;
      } else if (c == '/' && !in_class) {
        break;
      }
    }
    const size_t close = j++;
    while (j < src_.size() && IdentifierPartAt(j)) ++j;
    on_literal_(i_, close, j, in_parameters_);
    i_ = j;
    return true;
  }

  std::string_view src_;
  JsGoal goal_;
  OnLiteral on_literal_;
  size_t i_ = 0;
  bool regexp_allowed_ = true;
  bool block_allowed_ = true;
  bool operand_ = false;        // the last token ended an operand (`x`, `)`, `]`, `}`, ...)
  bool newline_ = true;         // a line terminator since the last token (or none yet)
  bool after_dot_ = false;      // the last token was `.` or `?.`: a word is a property name
  bool binding_next_ = false;   // the last token was var/let/const, or a `,` between names
  bool in_parameters_ = false;  // in a Function constructor's parameters
  std::string_view word_;       // the last token, if a word (not a property name)
  std::vector<Nest> nesting_;
  std::vector<size_t> declarations_;  // the nesting depth of each open var/let/const
};

}  // namespace

bool RegExpNeedsGuard(std::string_view pattern, std::string_view flags) {
  if (pattern.size() <= kMaxUnguardedRegExp) return false;
  if (flags.find('y') != std::string_view::npos) return false;
  if (pattern.size() <= kMaxLinearAtom && flags.find('i') == std::string_view::npos) {
    const std::optional<std::string> atom = AtomOf(pattern);
    if (atom.has_value() && !FewDifferent(*atom)) return false;
  }
  return true;
}

void ForEachRegExpLiteral(std::string_view source, JsGoal goal,
                          absl::FunctionRef<void(const RegExpLiteral&)> visit) {
  RegExpLiteralLexer(source, goal, [&](size_t open, size_t close, size_t end, bool in_parameters) {
    visit(RegExpLiteral{.pattern = source.substr(open + 1, close - open - 1),
                        .flags = source.substr(close + 1, end - close - 1),
                        .in_function_parameters = in_parameters});
  }).Run();
}

std::optional<std::string> GuardLongRegExpLiterals(std::string_view source, JsGoal goal) {
  std::string out;
  size_t copied = 0;  // source[0, copied) is in out
  RegExpLiteralLexer(source, goal, [&](size_t open, size_t close, size_t end, bool in_parameters) {
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
  }).Run();
  if (copied == 0) return std::nullopt;
  out.append(source.substr(copied));
  return out;
}

}  // namespace txfn::internal

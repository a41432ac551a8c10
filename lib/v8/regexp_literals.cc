#include "lib/v8/regexp_literals.h"

#include <array>
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
  return word == "if" || word == "while" || word == "for" || word == "with";
}

// The JavaScript lexer: just enough to find regexp literals, and to read a `/` it cannot place
// as a division (so a misread leaves a literal unguarded, never rewrites a division).
class RegExpLiteralLexer {
 public:
  // `on_literal(open, close, end)`: a literal's opening `/`, closing `/`, and the end of its
  // flags, as indices into `source`.
  using OnLiteral = absl::FunctionRef<void(size_t open, size_t close, size_t end)>;

  RegExpLiteralLexer(std::string_view source, size_t start, OnLiteral on_literal)
      : src_(source), i_(start), on_literal_(on_literal) {}

  void Run() {
    while (i_ < src_.size()) Step();
  }

 private:
  enum class Brace { kBlock, kObject, kTemplate };

  // After a token: whether a `/` would start a regexp, and a `{` a block.
  void After(bool regexp, bool block) {
    regexp_allowed_ = regexp;
    block_allowed_ = block;
  }

  void Step() {
    const char c = src_[i_];
    const char next = i_ + 1 < src_.size() ? src_[i_ + 1] : '\0';
    if (c == ' ' || c == '\t' || c == '\v' || c == '\f' || IsLineEnd(c)) {
      ++i_;
      return;  // whitespace changes nothing
    }
    if (c == '/' && next == '/') {
      while (i_ < src_.size() && !IsLineEnd(src_[i_])) ++i_;
      return;
    }
    if (c == '/' && next == '*') {
      const size_t end = src_.find("*/", i_ + 2);
      i_ = end == std::string_view::npos ? src_.size() : end + 2;
      return;
    }
    const bool after_dot = after_dot_;
    after_dot_ = false;
    std::string_view word = word_;
    word_ = {};
    if (c == '\'' || c == '"') {
      SkipString(c);
      After(false, false);
    } else if (c == '`') {
      ++i_;
      SkipTemplate();
    } else if (IsDigit(c) || (c == '.' && IsDigit(next))) {
      while (i_ < src_.size() && (IsIdentifierPart(src_[i_]) || src_[i_] == '.' ||
                                  ((src_[i_] == '+' || src_[i_] == '-') &&
                                   (src_[i_ - 1] == 'e' || src_[i_ - 1] == 'E')))) {
        ++i_;
      }
      After(false, false);
    } else if (IsIdentifierPart(c)) {
      const size_t start = i_;
      while (i_ < src_.size() && IsIdentifierPart(src_[i_])) ++i_;
      word_ = after_dot ? std::string_view() : src_.substr(start, i_ - start);
      After(!after_dot && IsExpressionKeyword(word_), IsBlockKeyword(word_));
    } else if (c == '/') {
      if (regexp_allowed_ && ScanRegExp()) {
        After(false, false);
      } else {
        i_ += next == '=' ? 2 : 1;  // a division
        After(true, false);
      }
    } else if (c == '(') {
      ++i_;
      parens_.push_back(IsStatementHeadKeyword(word));
      After(true, false);
    } else if (c == ')') {
      ++i_;
      const bool head = !parens_.empty() && parens_.back();
      if (!parens_.empty()) parens_.pop_back();
      After(head, true);
    } else if (c == '{') {
      ++i_;
      braces_.push_back(block_allowed_ ? Brace::kBlock : Brace::kObject);
      After(true, true);
    } else if (c == '}') {
      ++i_;
      const Brace brace = braces_.empty() ? Brace::kBlock : braces_.back();
      if (!braces_.empty()) braces_.pop_back();
      if (brace == Brace::kTemplate) {
        SkipTemplate();
      } else {
        After(brace == Brace::kBlock, brace == Brace::kBlock);
      }
    } else if (c == ']') {
      ++i_;
      After(false, false);
    } else if ((c == '+' || c == '-') && next == c) {
      i_ += 2;
      After(false, false);  // postfix, most likely: a `/` after it divides
    } else if (c == '.' ||
               (c == '?' && next == '.' && !IsDigit(i_ + 2 < src_.size() ? src_[i_ + 2] : '\0'))) {
      const bool spread = c == '.' && src_.substr(i_, 3) == "...";
      i_ += spread ? 3 : (c == '?' ? 2 : 1);
      after_dot_ = !spread;
      After(true, false);
    } else if (c == '=' && next == '>') {
      i_ += 2;
      After(true, true);
    } else if (c == ';') {
      ++i_;
      After(true, true);
    } else {
      ++i_;
      After(true, false);  // an operator: an expression follows
    }
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
        After(false, false);
        return;
      } else if (c == '$' && i_ + 1 < src_.size() && src_[i_ + 1] == '{') {
        i_ += 2;
        braces_.push_back(Brace::kTemplate);
        After(true, false);
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
      if (j >= src_.size() || IsLineEnd(src_[j])) return false;
      const char c = src_[j];
      if (c == '\\') {
        if (++j >= src_.size() || IsLineEnd(src_[j])) return false;
      } else if (c == '[') {
        in_class = true;
      } else if (c == ']') {
        in_class = false;
      } else if (c == '/' && !in_class) {
        break;
      }
    }
    const size_t close = j++;
    while (j < src_.size() && IsIdentifierPart(src_[j])) ++j;
    on_literal_(i_, close, j);
    i_ = j;
    return true;
  }

  std::string_view src_;
  size_t i_;
  OnLiteral on_literal_;
  bool regexp_allowed_ = true;
  bool block_allowed_ = true;
  bool after_dot_ = false;    // the last token was `.` or `?.`: a word is a property name
  std::string_view word_;     // the last token, if a word (not a property name)
  std::vector<bool> parens_;  // per open `(`: whether it is an if/while/for/with head
  std::vector<Brace> braces_;
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

namespace {

// Where the lexer starts in `source`: after a hashbang line; in the Function constructor's
// source, after V8's "\n) {\n" (V8 checks that the parameters end where they did); npos if
// that is missing.
size_t LexStart(std::string_view source) {
  size_t start = 0;
  if (source.substr(0, 2) == "#!") {
    while (start < source.size() && !IsLineEnd(source[start])) ++start;
  }
  constexpr std::string_view kFunctionHead = "(function anonymous(";
  if (source.substr(0, kFunctionHead.size()) == kFunctionHead) {
    const size_t body = source.find("\n) {\n");
    return body == std::string_view::npos ? body : body + 5;
  }
  return start;
}

}  // namespace

void ForEachRegExpLiteral(
    std::string_view source,
    absl::FunctionRef<void(std::string_view pattern, std::string_view flags)> visit) {
  const size_t start = LexStart(source);
  if (start == std::string_view::npos) return;
  RegExpLiteralLexer(source, start, [&](size_t open, size_t close, size_t end) {
    visit(source.substr(open + 1, close - open - 1), source.substr(close + 1, end - close - 1));
  }).Run();
}

std::optional<std::string> GuardLongRegExpLiterals(std::string_view source) {
  const size_t start = LexStart(source);
  if (start == std::string_view::npos) return std::nullopt;
  std::string out;
  size_t copied = 0;  // source[0, copied) is in out
  RegExpLiteralLexer(source, start, [&](size_t open, size_t close, size_t end) {
    const std::string_view pattern = source.substr(open + 1, close - open - 1);
    if (pattern.empty() || !RegExpNeedsGuard(pattern, source.substr(close + 1, end - close - 1))) {
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

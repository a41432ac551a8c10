// GuardLongRegExpLiterals: which `/.../` in a source are regexp literals that need the guard,
// and that nothing else (strings, templates, comments, divisions) is touched.
#include "lib/v8/regexp_literals.h"

#include <cstdio>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "gtest/gtest.h"
#include "tests/v8_test_util.h"
#include "v8.h"

namespace txfn::internal {
namespace {

// A pattern that needs the guard (73 characters, not an atom).
const std::string kLong = "(?:ab|cd)" + std::string(64, 'e');

// `text` with each "P" made kLong, and «» (where the guard goes) left out, or made the guard.
using Replacements = std::vector<std::pair<std::string, std::string>>;
std::string Source(const std::string& text) {
  return absl::StrReplaceAll(text, Replacements{{"P", kLong}, {"«", ""}, {"»", ""}});
}
std::string Expected(const std::string& text) {
  return absl::StrReplaceAll(text, Replacements{{"P", kLong}, {"«", "(?=)(?:"}, {"»", ")"}});
}
std::string Rewritten(const std::string& source, JsGoal goal = JsGoal::kModule) {
  return GuardLongRegExpLiterals(source, goal).value_or(source);
}
// The token before the first `/` the lexer cannot place, or "" if it places every one.
std::string AmbiguousAfter(const std::string& source, JsGoal goal) {
  const std::optional<AmbiguousSlash> ambiguous =
      ForEachRegExpLiteral(source, goal, [](const RegExpLiteral&) {});
  return ambiguous.has_value() ? std::string(ambiguous->after) : "";
}

TEST(RegExpNeedsGuard, LongPatternsOnlyAndNotStickyOrLinearAtoms) {
  EXPECT_FALSE(RegExpNeedsGuard("(a|b)" + std::string(59, 'c'), ""));  // 64 characters
  EXPECT_TRUE(RegExpNeedsGuard("(a|b)" + std::string(60, 'c'), ""));
  EXPECT_FALSE(RegExpNeedsGuard(kLong, "y"));
  EXPECT_TRUE(RegExpNeedsGuard(kLong, "gimsu"));
  // An atom V8 searches with its Boyer-Moore tables (up to 250 characters) is linear...
  const std::string varied = "abcdefgh" + std::string(100, 'x') + "\\.\\/-";
  EXPECT_FALSE(RegExpNeedsGuard(varied, "g"));
  // ... but not with `i`, past 250 characters, or with few different first characters
  // (V8 compiles those), nor an escape that is no syntax character.
  EXPECT_TRUE(RegExpNeedsGuard(varied, "i"));
  EXPECT_TRUE(RegExpNeedsGuard("abcdefgh" + std::string(250, 'x'), ""));
  EXPECT_TRUE(RegExpNeedsGuard(std::string(100, 'a') + "b", ""));
  EXPECT_TRUE(RegExpNeedsGuard("abcdefgh" + std::string(100, 'x') + "\\n", ""));
}

TEST(RegExpNestingDepth, CountsGroupsButNotEscapedOrClassParentheses) {
  EXPECT_EQ(RegExpNestingDepth(""), 0u);
  EXPECT_EQ(RegExpNestingDepth("abc"), 0u);
  EXPECT_EQ(RegExpNestingDepth("(a)(b)(?:c)"), 1u);
  EXPECT_EQ(RegExpNestingDepth("((a)|(?=(b)))"), 3u);
  EXPECT_EQ(RegExpNestingDepth(R"(\(\(\()"), 0u);
  EXPECT_EQ(RegExpNestingDepth("[(((][(]"), 0u);
  EXPECT_EQ(RegExpNestingDepth(R"([\]((]((a)))"), 2u) << "an escaped ] does not end the class";
  EXPECT_EQ(RegExpNestingDepth("[]((a))"), 2u) << "[] is an empty class";
  EXPECT_EQ(RegExpNestingDepth(")))((a)"), 2u) << "stray closers do not go below 0";
  EXPECT_EQ(RegExpNestingDepth(std::string(5000, '(')), 5000u) << "unclosed count as open";
  std::string deep;
  for (int i = 0; i < 300; ++i) deep += "(?:a|";
  deep += "b" + std::string(300, ')');
  EXPECT_EQ(RegExpNestingDepth(deep), 300u);
}

TEST(GuardLongRegExpLiterals, LeavesSourcesWithoutLongLiteralsAlone) {
  EXPECT_EQ(GuardLongRegExpLiterals("const r = /ab+c/g; const d = a / b / c;", JsGoal::kModule),
            std::nullopt);
  EXPECT_EQ(GuardLongRegExpLiterals(Source("const r = /P/y;"), JsGoal::kModule), std::nullopt);
  EXPECT_EQ(GuardLongRegExpLiterals("", JsGoal::kScript), std::nullopt);
}

TEST(GuardLongRegExpLiterals, GuardsLiteralsWhereAnExpressionStarts) {
  for (const char* text : {
           "const r = /«P»/g;",
           "f(/«P»/, /«P»/i);",
           "x = [/«P»/];",
           "return /«P»/.test(s);",
           "if (ok) /«P»/.exec(s);",
           "while (i < n) /«P»/.test(s[i++]);",
           "{ } /«P»/.test(s);",
           "a = b ? /«P»/ : !/«P»/;",
           "const f = (s) => /«P»/.test(s);",
           "export default /«P»/;",
           "x = typeof /«P»/;",
           "s.replace(/«P»/gu, `${/«P»/.source}`);",
           "#!/usr/bin/env node\nconst r = /«P»/;",
           "const r = /«[/]P\\/»/;",  // a `/` in a class and an escaped one
           "label: /«P»/;",
       }) {
    EXPECT_EQ(Rewritten(Source(text)), Expected(text)) << text;
  }
}

TEST(GuardLongRegExpLiterals, LeavesStringsTemplatesCommentsAndDivisionsAlone) {
  for (const char* text : {
           "const s = '/P/'; const t = \"/P/\";",
           "const s = 'it\\'s /P/';",
           "const s = 'line \\\r\n(/P/) continued';",
           "const t = `text /P/ ${a / b} more /P/`;",
           "// /P/\n/* /P/ */ const x = 1;",
           "x = (a + b) / P / 2;",
           "x = total / P / 2;",
           "x = arr[0] / P / 2;",
           "x = 10 / P / 2;",
           "x = 1.5e+3 / P / 2;",
           "x = o.return / P / 2;",
           "x = o?.delete / P / 2;",
           "x = i++ / P / 2;",
           "x = ({}) / P / 2;",
           "x = '' / P / 2;",
           "x = `` / P / 2;",
           "x = a\n/ P / 2;",
           "x = a\n++b / P / 2;",
           "let\nx ++ / P / 2;",
           "x = a <<!-- b\n/ P / 2;",
           "for (of / P / 2;;);",
           "for (x of of / P / 2);",
           "for (x in a / P / 2);",
           "let x = a / P / 2, y = b / P / 2;",
           "x = y.break / P / 2 + z.let / P / 2;",
           "x = from / P / 2;",
           "x = a --> b / P / 2;",
           "x = a <!-- b / P / 2;\n",
           "x = (function () {}) / P / 2;",
           "while (a) { break; } x = b / P / 2;",
       }) {
    const std::string source = Source(text);
    for (JsGoal goal : {JsGoal::kModule, JsGoal::kScript}) {
      EXPECT_EQ(GuardLongRegExpLiterals(source, goal), std::nullopt) << text;
      EXPECT_EQ(AmbiguousAfter(source, goal), "") << text;
    }
  }
}

// Where a `/` can only start a regexp though the token before it usually ends an operand: a
// literal the lexer read as a division there would run unguarded.
TEST(GuardLongRegExpLiterals, GuardsLiteralsWhereOnlyARegExpCanStand) {
  for (const char* text : {
           "for (const m of /«P»/.exec(s)) f(m);",
           "for (x of /«P»/g.exec(s));",
           "for (let of of /«P»/.exec(s));",
           "for (const [a] of /«P»/.exec(s));",
           "for (const {a} of /«P»/.exec(s));",
           "for (a.b of /«P»/.exec(s));",
           "for await (const m of /«P»/.exec(s));",
           "for await (x of y) /«P»/.exec(s);",
           "x = ++/«P»/.lastIndex;",
           "x = 0\n++/«P»/.exec(s)[0];",
           "while (a) { break\n/«P»/.exec(s); }",
           "a: while (b) { continue a\n/«P»/.exec(s); }",
           "debugger\n/«P»/.exec(s);",
           "var a = 1, b\n/«P»/.exec(s);",
           "import { a } from 'b'\n/«P»/.exec(s);",
           "import 'b'\n/«P»/.exec(s);",
           // White space and line terminators beyond ASCII.
           "return\u00a0/«P»/.exec(s);",
           "return\u3000/«P»/.exec(s);",
           "\ufeff/«P»/.exec(s);",
           "x = 1; // comment\u2028/«P»/.exec(s);",
           "x = 1 /* a\u2029 */\n++/«P»/.lastIndex;",
           // Where a lexer that took a `/` after `}` for a regexp lost its place.
           "x = { a: '/*' } / function () { ; /*\n*/ /«P»/; }.of;",
           "import { 'a' as b } from 'c'\n/«P»/.exec(s);",
           "export { default } from 'c'\n/«P»/.exec(s);",
           "export { a }\n/«P»/.exec(s);",
           "if (a) { } else { }\n/«P»/.exec(s);",
           "x = () => { }\n/«P»/.exec(s);",
           "function f() { } ++/«P»/.lastIndex;",
           "if (a) let\nthrow ++/«P»/.exec(s)[0];",
       }) {
    for (JsGoal goal : {JsGoal::kModule, JsGoal::kScript}) {
      EXPECT_EQ(Rewritten(Source(text), goal), Expected(text)) << text;
      EXPECT_EQ(AmbiguousAfter(Source(text), goal), "") << text;
    }
  }
  // A module's `let` declares (a script's may name a variable: ReportsASlashItCannotPlace).
  for (const char* text : {"let x\n/«P»/.exec(s);", "let a = () => { let b }, c\n/«P»/.exec(s);"}) {
    EXPECT_EQ(Rewritten(Source(text)), Expected(text)) << text;
    EXPECT_EQ(AmbiguousAfter(Source(text), JsGoal::kScript), "a name after let") << text;
  }
  // A module's `yield` and `await` are keywords.
  EXPECT_EQ(Rewritten(Source("await /P/.exec(s);")), Expected("await /«P»/.exec(s);"));
  EXPECT_EQ(Rewritten(Source("function* g() { yield /P/; }")),
            Expected("function* g() { yield /«P»/; }"));
}

// Where a `/` starts a regexp or divides by what the lexer does not track, it says so (and
// CheckRegExpCost refuses the source): a literal's text read as code, or a division read as a
// literal, would lose the lexer its place, and a literal after could escape the guard.
TEST(ForEachRegExpLiteral, ReportsASlashItCannotPlace) {
  for (const char* text : {
           "label: { } /P/.exec(s);",
           "switch (a) { case 1: { } /P/.exec(s); }",
           "class A { } /P/.exec(s);",
           "function f() { }\n/P/.exec(s);",
           "x = function () { } / 1 /*\n*/ ; /P/.exec(s);",
           "x = class { } / 1 /*\n*/ ; /P/.exec(s);",
           "x = class extends function () { } { } / 1 /*\n*/ ; /P/.exec(s);",
           "x = a ? { } : { } / 1 /*\n*/ ; /P/.exec(s);",
       }) {
    for (JsGoal goal : {JsGoal::kModule, JsGoal::kScript}) {
      EXPECT_EQ(AmbiguousAfter(Source(text), goal), "}") << text;
    }
  }
  // Sloppy scripts may name variables yield, await and let.
  EXPECT_EQ(AmbiguousAfter(Source("await / 1 /*\n*/ ; /P/.exec(s);"), JsGoal::kScript), "await");
  EXPECT_EQ(AmbiguousAfter(Source("yield /P/.exec(s);"), JsGoal::kScript), "yield");
  EXPECT_EQ(AmbiguousAfter(Source("await ++\n/P//*c*/.lastIndex"), JsGoal::kScript), "await");
  EXPECT_EQ(AmbiguousAfter("let\nx / 1 / 2;", JsGoal::kScript), "a name after let");
  EXPECT_EQ(AmbiguousAfter("let\nx / 1 / 2;", JsGoal::kModule), "");
  // Not when no regexp could close on the line.
  EXPECT_EQ(AmbiguousAfter("x = function () { } / 2;", JsGoal::kScript), "");
}

// Annex B's HTML-like comments are comments in scripts (eval, Function), tokens in modules.
TEST(GuardLongRegExpLiterals, ReadsHtmlLikeCommentsInScriptsOnly) {
  for (const char* text : {
           "x = 1; <!-- `\n/«P»/.exec(s); // `",
           "x = 1;\n--> `\n/«P»/.exec(s); // `",
           "--> /*\n/«P»/.exec(s); // */",
       }) {
    EXPECT_EQ(Rewritten(Source(text), JsGoal::kScript), Expected(text)) << text;
    EXPECT_EQ(Rewritten(Source(text), JsGoal::kModule), Source(text)) << text;
  }
}

TEST(GuardLongRegExpLiterals, KeepsTheTextAroundEachLiteral) {
  const char* text =
      "import { q } from 'x';\n"
      "const a = /«P»/g, b = 'P', c = `${/«P»/}P`; // P\n"
      "export const f = q(() => /short/.test(`${a}`) && /«P»/u.exec(b)[0] / 2);\n";
  EXPECT_EQ(Rewritten(Source(text)), Expected(text));
}

TEST(GuardLongRegExpLiterals, GuardsOnlyTheBodyOfAFunctionConstructorSource) {
  // V8 checks that the parameters of `new Function(params, body)` end where they did.
  for (const char* text : {
           "(function anonymous(a = /P/\n) {\nreturn /«P»/.test(a);\n})",
           "(async function anonymous(a = /P/\n) {\nreturn /«P»/.test(a);\n})",
           "(function* anonymous(a = /P/\n) {\nreturn /«P»/.test(a);\n})",
           // The parameters may hold what ends them in V8's text.
           "(function anonymous(a = `\n) {\n`\n) {\nreturn /«P»/.test(a);\n})",
       }) {
    EXPECT_EQ(Rewritten(Source(text), JsGoal::kScript), Expected(text)) << text;
  }
  std::vector<bool> in_parameters;
  (void)ForEachRegExpLiteral(
      Source("(function anonymous(a = /P/, b = `${/x/}`\n) {\nreturn /P/;\n})"), JsGoal::kScript,
      [&](const RegExpLiteral& literal) {
        in_parameters.push_back(literal.in_function_parameters);
      });
  EXPECT_EQ(in_parameters, (std::vector<bool>{true, true, false}));
}

TEST(GuardLongRegExpLiterals, AnUnterminatedLiteralIsADivision) {
  // A `/` whose line ends before a closing `/` is no literal: the lexer goes on after it.
  const char* text = "f(1,\n/ 2\n); y = /«P»/;";
  EXPECT_EQ(Rewritten(Source(text)), Expected(text));
}

TEST(ForEachRegExpLiteral, GivesEachLiteralsPatternAndFlags) {
  std::vector<std::pair<std::string, std::string>> seen;
  (void)ForEachRegExpLiteral("x = /a[/]b/giu; y = '/no/' + `/no/ ${/c\\/d/}`; z = e / f / g; /h/",
                             JsGoal::kModule, [&](const RegExpLiteral& literal) {
                               EXPECT_FALSE(literal.in_function_parameters);
                               seen.emplace_back(literal.pattern, literal.flags);
                             });
  EXPECT_EQ(seen, (std::vector<std::pair<std::string, std::string>>{
                      {"a[/]b", "giu"}, {"c\\/d", ""}, {"h", ""}}));
}

// A differential test against V8's own parser: random programs from a small grammar of the
// constructs that place a `/` (declarations, for-of heads, classes, labels, ASI, contextual
// keywords, HTML-like comments, Unicode white space), each with one `/ab+c/` that is a
// regexp or two divisions. V8 says which (the program still parses with the regexp guarded,
// or not); the lexer must agree, or call the `/` ambiguous.
class ProgramGenerator {
 public:
  explicit ProgramGenerator(uint32_t seed) : rng_(seed) {}

  // A program whose one `@R` marks where the `/ab+c/` goes, tokens separated by one space.
  std::string Program() {
    std::string program = Expand("@S @T", 0);
    // Keep one marker, chosen at random; the others become `x`.
    std::vector<size_t> markers;
    for (size_t at = program.find("@R"); at != std::string::npos; at = program.find("@R", at + 2)) {
      markers.push_back(at);
    }
    if (markers.empty()) return "";
    const size_t keep = markers[Pick(markers.size())];
    for (size_t i = markers.size(); i-- > 0;) {
      if (markers[i] != keep) program.replace(markers[i], 2, "x");
    }
    return program;
  }

  // `program`'s tokens joined by random white space and comments, the marker as `literal`.
  std::string Render(const std::vector<std::string>& tokens, const std::vector<size_t>& seps,
                     std::string_view literal) const {
    static constexpr std::string_view kSeparators[] = {
        " ",      " ",      " ",  " ",      "\n",     "/*c*/",   "/*\n*/",  "//c\n",
        "\u2028", "\u00a0", "\t", "\ufeff", "\u3000", "<!--c\n", "\n-->c\n"};
    std::string out;
    for (size_t i = 0; i < tokens.size(); ++i) {
      const size_t marker = tokens[i].find("@R");
      out += marker == std::string::npos ? tokens[i]
                                         : tokens[i].substr(0, marker) + std::string(literal) +
                                               tokens[i].substr(marker + 2);
      out += kSeparators[seps[i] % std::size(kSeparators)];
    }
    return out;
  }

  size_t Pick(size_t n) { return std::uniform_int_distribution<size_t>(0, n - 1)(rng_); }

 private:
  std::string Expand(std::string_view text, int depth) {
    std::string out;
    for (size_t i = 0; i < text.size(); ++i) {
      if (text[i] != '@' || i + 1 == text.size()) {
        out.push_back(text[i]);
        continue;
      }
      const char kind = text[++i];
      switch (kind) {
        case 'E':
          out += Expand(Choose(kExpressions, kLeafExpressions, depth), depth + 1);
          break;
        case 'T':
          out += Expand(Choose(kStatements, kLeafStatements, depth), depth + 1);
          break;
        case 'S':
          for (size_t n = Pick(3); n > 0; --n) out += Expand("@T ", depth + 1);
          break;
        case 'L':
          out += Expand(Choose(kTargets, kTargets, depth), depth + 1);
          break;
        default:
          out += "@R";
      }
    }
    return out;
  }

  template <size_t N, size_t M>
  std::string_view Choose(const std::string_view (&all)[N], const std::string_view (&leaves)[M],
                          int depth) {
    return depth > 3 ? leaves[Pick(M)] : all[Pick(N)];
  }

  static constexpr std::string_view kLeafExpressions[] = {"x", "1", "@R", "this"};
  static constexpr std::string_view kExpressions[] = {
      "x",
      "@R",
      "1",
      "/`/",
      "/'/",
      "/[/]/",
      "/\"/g",
      "\"`\"",
      "'/*'",
      "`${ { } }`",
      "`${ `${ x }` }`",
      "0x1F",
      "1e+5",
      ".5",
      "1..toString",
      "'s'",
      "`t`",
      "of",
      "yield",
      "await",
      "let",
      "async",
      "get",
      "from",
      "static",
      "@E + @E",
      "@E / @E",
      "@E * @E",
      "@E in @E",
      "@E < @E",
      "@E , @E",
      "@E ?? @E",
      "@E ** @E",
      "@E @R @E",
      "@E @R x",
      "( @E )",
      "++ @L",
      "@L ++",
      "-- @L",
      "@L --",
      "{ }",
      "{ a : @E }",
      "function ( ) { @S }",
      "class { }",
      "[ @E ]",
      "@E . of",
      "@E ?. x",
      "`${ @E }`",
      "typeof @E",
      "! @E",
      "new @E",
      "x => @E",
      "( ) => { @S }",
      "async x => @E",
      "@E ? @E : @E",
      "x [ @E ]",
      "f ( @E )",
      "void @E",
      "... @E",
      "x = @E",
      "async ( ) => @E",
      "async function ( ) { @S }",
      "function * ( ) { yield * @E }",
      "f `a${ @E }b`",
      "new . target",
      "x ?. ( @E )",
      "#p in x",
      "x . if ( @E )",
      "{ ...@E }",
      "[ ...@E ]",
      "1 . toString",
      "let [ 0 ]",
      "yield * @E",
      "let ++",
      "yield ++",
      "await --",
      "{ m ( ) { @S } , get if ( ) { } , [ @E ] : @E , async * g ( ) { @S } }",
      "class extends @E { #p = @E ; static { @S } m ( ) { @S } }"};
  static constexpr std::string_view kTargets[] = {
      "x", "x . y", "x [ 0 ]", "@R . lastIndex", "of", "let", "@R . exec ( s ) [ 0 ]"};
  static constexpr std::string_view kLeafStatements[] = {"x ;", ";", "@R ;"};
  static constexpr std::string_view kStatements[] = {"@E ;",
                                                     "@E",
                                                     "let x = @E ;",
                                                     "let x\n@T",
                                                     "var x , y = @E",
                                                     "const [ a ] = @E",
                                                     "let { a } = @E , y",
                                                     "let of",
                                                     "let yield , y",
                                                     "let await = @E",
                                                     "var let = @E",
                                                     "for ( let x of @E ) @T",
                                                     "for ( const [ a ] of @E ) @T",
                                                     "for ( x of @E ) @T",
                                                     "for ( x . y of @E ) @T",
                                                     "for ( let of of @E ) @T",
                                                     "for ( const { a } of @E ) @T",
                                                     "for await ( x of @E ) @T",
                                                     "for ( @E ; @E ; @E ) @T",
                                                     "for ( x in @E ) @T",
                                                     "for ( let i = @E , n ; i ; ) @T",
                                                     "{ @S }",
                                                     "L : @T",
                                                     "L : { @S }",
                                                     "@T @T",
                                                     "x\n@T",
                                                     "class A { }",
                                                     "class A { static { } }",
                                                     "class A { x = 1 }",
                                                     "class A { m ( ) { } }",
                                                     "class A { static x }",
                                                     "class C extends @E { }",
                                                     "if ( @E ) @T",
                                                     "if ( @E ) @T else @T",
                                                     "if ( @E ) let",
                                                     "while ( @E ) { break }",
                                                     "while ( @E ) { continue }",
                                                     "while ( @E ) { break L }",
                                                     "L : for ( ; ; ) { continue L }",
                                                     "return @E",
                                                     "return",
                                                     "throw @E",
                                                     "debugger",
                                                     "switch ( x ) { case @E : @T default : @T }",
                                                     "import 'm'",
                                                     "import { a } from 'm'",
                                                     "import x from 'm'",
                                                     "import * as ns from 'm'",
                                                     "import { 'a' as d } from 'm'",
                                                     "export { a }",
                                                     "export * from 'm'",
                                                     "export default @E",
                                                     "export const z = 1",
                                                     "export class B { }",
                                                     "export default function ( ) { }",
                                                     "export default class { }",
                                                     "export { default } from 'm'",
                                                     "export let x = @E",
                                                     "function g ( ) { @S }",
                                                     "function * g ( ) { @S }",
                                                     "async function g ( ) { @S }",
                                                     "do @T while ( @E )",
                                                     "do x ; while ( @E ) @T",
                                                     "try { @S } catch ( e ) { @S } finally { @S }",
                                                     "with ( x ) @T",
                                                     "yield @E",
                                                     "await @E",
                                                     "{ } @T",
                                                     "function f ( a = @E ) { @S }",
                                                     "let\n@T",
                                                     "@E\n++ @L",
                                                     "L : { } @T"};

  std::mt19937 rng_;
};

bool Parses(v8::Isolate* isolate, const std::string& source, bool module) {
  v8::TryCatch try_catch(isolate);
  v8::Local<v8::String> text;
  if (!v8::String::NewFromUtf8(isolate, source.data(), v8::NewStringType::kNormal,
                               static_cast<int>(source.size()))
           .ToLocal(&text)) {
    return false;
  }
  v8::ScriptOrigin origin(isolate, v8::String::NewFromUtf8Literal(isolate, "p.js"), 0, 0, false, -1,
                          v8::Local<v8::Value>(), false, false, module);
  v8::ScriptCompiler::Source src(text, origin);
  if (module) return !v8::ScriptCompiler::CompileModule(isolate, &src).IsEmpty();
  return !v8::ScriptCompiler::CompileUnboundScript(isolate, &src).IsEmpty();
}

TEST(GuardLongRegExpLiterals, PlacesEverySlashAsV8Does) {
  txfn::testing_util::TestLease lease("differential", txfn::testing_util::TestSnapshot::kPlain);
  v8::Isolate* isolate = lease.isolate();
  v8::Local<v8::Context> context = v8::Context::New(isolate);
  v8::Context::Scope context_scope(context);
  ProgramGenerator generator(20261203);
  int regexps = 0, divisions = 0, ambiguous = 0;
  for (int n = 0; n < 200000; ++n) {
    const std::string program = generator.Program();
    if (program.empty()) continue;
    const std::vector<std::string> tokens = absl::StrSplit(program, ' ', absl::SkipEmpty());
    std::vector<size_t> seps(tokens.size());
    for (size_t& sep : seps) sep = generator.Pick(1000);
    for (JsGoal goal : {JsGoal::kScript, JsGoal::kModule}) {
      const bool module = goal == JsGoal::kModule;
      if (!Parses(isolate, generator.Render(tokens, seps, "/ab+c/"), module)) continue;
      // A marker V8 reads neither way (in a comment or string) tells nothing.
      if (Parses(isolate, generator.Render(tokens, seps, "/ab+c)/"), module)) continue;
      const bool regexp = Parses(isolate, generator.Render(tokens, seps, "/(?=)(?:ab+c)/"), module);
      const std::string source = generator.Render(tokens, seps, "/" + kLong + "/");
      if (!AmbiguousAfter(source, goal).empty()) {
        ++ambiguous;
        continue;
      }
      (regexp ? regexps : divisions)++;
      EXPECT_EQ(GuardLongRegExpLiterals(source, goal).has_value(), regexp)
          << (module ? "module" : "script") << (regexp ? ", a regexp: " : ", a division: ")
          << source;
    }
  }
  // The generator makes enough of each to mean something.
  EXPECT_GE(regexps, 300);
  EXPECT_GE(divisions, 30);
  EXPECT_LE(ambiguous, (regexps + divisions) / 5);
  std::printf("%d regexps, %d divisions, %d ambiguous\n", regexps, divisions, ambiguous);
}

}  // namespace
}  // namespace txfn::internal

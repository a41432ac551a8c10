// GuardLongRegExpLiterals: which `/.../` in a source are regexp literals that need the guard,
// and that nothing else (strings, templates, comments, divisions) is touched.
#include "lib/v8/regexp_literals.h"

#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "gtest/gtest.h"

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
    EXPECT_EQ(GuardLongRegExpLiterals(source, JsGoal::kModule), std::nullopt) << text;
    EXPECT_EQ(GuardLongRegExpLiterals(source, JsGoal::kScript), std::nullopt) << text;
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
           "label: { } /«P»/.exec(s);",
           "switch (a) { case 1: { } /«P»/.exec(s); }",
           "class A { } /«P»/.exec(s);",
           "class A { static { } } /«P»/.exec(s);",
           "while (a) { break\n/«P»/.exec(s); }",
           "a: while (b) { continue a\n/«P»/.exec(s); }",
           "debugger\n/«P»/.exec(s);",
           "let x\n/«P»/.exec(s);",
           "var a = 1, b\n/«P»/.exec(s);",
           "let a = () => { let b }, c\n/«P»/.exec(s);",
           "import { a } from 'b'\n/«P»/.exec(s);",
           "import 'b'\n/«P»/.exec(s);",
           // White space and line terminators beyond ASCII.
           "return\u00a0/«P»/.exec(s);",
           "return\u3000/«P»/.exec(s);",
           "\ufeff/«P»/.exec(s);",
           "x = 1; // comment\u2028/«P»/.exec(s);",
           "x = 1 /* a\u2029 */\n++/«P»/.lastIndex;",
       }) {
    EXPECT_EQ(Rewritten(Source(text)), Expected(text)) << text;
  }
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
           "(function* anonymous(a = /P/\n) {\nyield /«P»/.test(a);\n})",
           // The parameters may hold what ends them in V8's text.
           "(function anonymous(a = `\n) {\n`\n) {\nreturn /«P»/.test(a);\n})",
       }) {
    EXPECT_EQ(Rewritten(Source(text), JsGoal::kScript), Expected(text)) << text;
  }
  std::vector<bool> in_parameters;
  ForEachRegExpLiteral(Source("(function anonymous(a = /P/, b = `${/x/}`\n) {\nreturn /P/;\n})"),
                       JsGoal::kScript, [&](const RegExpLiteral& literal) {
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
  ForEachRegExpLiteral("x = /a[/]b/giu; y = '/no/' + `/no/ ${/c\\/d/}`; z = e / f / g; /h/",
                       JsGoal::kModule, [&](const RegExpLiteral& literal) {
                         EXPECT_FALSE(literal.in_function_parameters);
                         seen.emplace_back(literal.pattern, literal.flags);
                       });
  EXPECT_EQ(seen, (std::vector<std::pair<std::string, std::string>>{
                      {"a[/]b", "giu"}, {"c\\/d", ""}, {"h", ""}}));
}

}  // namespace
}  // namespace txfn::internal

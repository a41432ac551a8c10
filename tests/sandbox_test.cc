// The sandbox under attack: tests/sandbox/attacks.js holds hostile tenant
// code, one export per attack, grouped by the classes of issue 10 (natives,
// heap, request lifetime, hangs, limits outside JavaScript, determinism,
// smaller holes). For every attack the driver checks, through the engine:
//   - the call ends with the status the sandbox promises (code and message);
//   - it ends in time: validation at once, a CPU-bound attack within the
//     request's wall-clock limit + 250 ms;
//   - the process survives, and a harmless call of the attacker and of
//     another tenant still answers correctly;
//   - the process's resident memory is back under a bound.
// Every attack runs in both context modes (FunctionRunnerOptions::
// context_mode): the default hardened context and a fresh one per request.
// Two attacks write to shared objects, which a hardened context refuses
// before they get going: their hardened outcome is that TypeError.
// Further tests, in both modes too: the wall-clock limit on a request blocked
// in storage, a deploy whose top level attacks, the noisy-neighbour check and
// what a request leaves behind for the next.
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <map>
#include <memory>
#include <ostream>
#include <sstream>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "absl/algorithm/container.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "resident_memory.h"
#include "txfn/engine.h"
#include "txfn/errors.h"
#include "txfn/in_memory_storage.h"
#include "txfn/testing/fault_injecting_storage.h"

namespace txfn {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

constexpr const char* kSchema = R"({"tables": {
  "items": {"indexes": {"by_k": ["k"]}}
}})";

// The attacker's CPU limit: short, so the CPU-bound attacks finish quickly.
constexpr absl::Duration kAttackerCpu = absl::Milliseconds(300);
// What an attack may take beyond its wall-clock limit (the issue's bound).
constexpr absl::Duration kSlack = absl::Milliseconds(250);
// The bounds of the other tests here: they catch hangs and requests that
// outlive their limits, which take seconds or forever, on a loaded CI
// machine; they do not measure speed.
constexpr absl::Duration kLoadedSlack = absl::Seconds(1);
// Under sanitizers the runtime's own C++ runs several times slower, and CI
// runs tests in parallel: the time bounds get this factor.
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
constexpr int kTimeFactor = 3;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
constexpr int kTimeFactor = 3;
#else
constexpr int kTimeFactor = 1;
#endif
#else
constexpr int kTimeFactor = 1;
#endif
// A stopped request that does not return within this is answered anyway
// (IsolateSchedulerOptions::abandon_grace): the suite's engines use less
// than the default, so an attack on a loaded machine (stopped by its
// wall-clock limit, 2 x CPU) still ends well within the limit + kSlack.
// Under sanitizers a GC or a native step takes longer to notice the stop.
constexpr absl::Duration kAbandonGrace = absl::Milliseconds(kTimeFactor * 100);
// Resident memory allowed once an attack is over (its isolate disposed of).
constexpr size_t kRssBound = size_t{1536} << 20;

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream out;
  out << in.rdbuf();
  return out.str();
}

class AttackerLimits : public LimitEnforcer {
 public:
  absl::Duration CpuLimit(const std::string& tenant) const override {
    return tenant == "mallory" ? kAttackerCpu : absl::Seconds(1);
  }
};

// How soon an attack must end.
enum class Within {
  kInstant,  // a validation: within the CPU limit (long before any limit stops it)
  kLimit,    // stopped by a limit: its wall-clock limit + kSlack
  // Whichever limit came first: a sandbox limit (as kInstant) or its time limit (as kLimit,
  // the only way a CPU limit can end it: not before the limit's 300 ms of CPU).
  kEither,
};

struct Attack {
  std::string function;  // export of attacks.js
  absl::StatusCode code;
  std::string message;  // a substring of the status message ("" = any)
  Within within = Within::kInstant;
  bool mutation = false;
  std::string value;  // for kOk: the result as JSON
  // In a hardened context, where the attack's first step is a write to a
  // frozen object: a substring of the TypeError it then ends with.
  std::string hardened_type_error;
  // Stopped where V8 checks for termination, not abandoned inside a builtin.
  bool interrupted = false;
};

void PrintTo(const Attack& attack, std::ostream* os) { *os << attack.function; }

// The outcome `attack` must have in a context of `mode`.
Attack InMode(Attack attack, ContextMode mode) {
  if (mode != ContextMode::kHardened || attack.hardened_type_error.empty()) return attack;
  attack.code = absl::StatusCode::kUnknown;
  attack.message = "TypeError: " + attack.hardened_type_error;
  attack.within = Within::kInstant;
  attack.value.clear();
  return attack;
}
Attack Refusing(Attack attack, std::string type_error) {
  attack.hardened_type_error = std::move(type_error);
  return attack;
}

Attack Refused(std::string fn, std::string message, bool mutation = false) {
  return {std::move(fn), absl::StatusCode::kInvalidArgument, std::move(message), Within::kInstant,
          mutation};
}
// On a loaded machine a spinning request may meet its wall-clock limit (twice
// its CPU limit) first: "time limit" matches both.
Attack Stopped(std::string fn, std::string limit = "limit", bool mutation = false) {
  return {std::move(fn), absl::StatusCode::kResourceExhausted, std::move(limit), Within::kLimit,
          mutation};
}
// Stopped by its CPU or wall-clock limit (`limit`: "limit" for any of its limits) inside
// JavaScript (not abandoned in a builtin that runs on, as an uninterruptible one is).
Attack Interrupted(std::string fn, std::string limit = "time limit") {
  Attack attack = Stopped(std::move(fn), std::move(limit));
  attack.interrupted = true;
  return attack;
}
Attack Bounded(std::string fn) {
  return {std::move(fn), absl::StatusCode::kResourceExhausted, "sandbox limit", Within::kInstant};
}
// Stopped at once by a limit: a sandbox limit or the CPU limit, whichever comes first.
Attack EitherLimit(std::string fn) {
  return {std::move(fn), absl::StatusCode::kResourceExhausted, "limit", Within::kEither};
}
// An Intl attack making objects until the ICU-memory sandbox limit (1,000
// DateTimeFormats at ~100 us, or 16,000 small ones): an optimised build meets
// it well within the CPU limit; under sanitizers the CPU limit may stop it
// first. Either ends it.
Attack HeavyIntl(std::string fn) {
  if (kTimeFactor == 1) return Bounded(std::move(fn));
  return EitherLimit(std::move(fn));
}
Attack Thrown(std::string fn, std::string message) {
  return {std::move(fn), absl::StatusCode::kUnknown, std::move(message), Within::kInstant};
}
Attack Answers(std::string fn, std::string json) {
  return {std::move(fn), absl::StatusCode::kOk, "", Within::kInstant, false, std::move(json)};
}
// Answers `json` in an optimised build, where its heavy but bounded work (Intl objects meeting
// their cap, as HeavyIntl's; deep recursion) ends well within the CPU limit; under sanitizers
// the CPU limit may stop it first.
Attack AnswersUnlessSlowIntl(std::string fn, std::string json) {
  Attack attack = Answers(std::move(fn), std::move(json));
  if (kTimeFactor > 1) attack.within = Within::kEither;
  return attack;
}

std::vector<Attack> Attacks() {
  std::vector<Attack> attacks = {
      // 1. Natives.
      Refused("proxyPageSize", "page size must be a number"),
      Refused("proxyEqFields", "a Proxy"),
      Refused("throwingEqValue", "threw"),
      Refused("throwingBound", "threw"),
      Refused("notAnArrayBound", "range bound"),
      Stopped("spinningGetterInArg", "time limit"),
      Stopped("terminationInConversionOfManyFields", "time limit", /*mutation=*/true),
      Refused("hugeId", "too long"),
      Refused("hugeTable", "too long", /*mutation=*/true),
      Refused("runAtYear275760", "at most 87600h after Date.now()", /*mutation=*/true),
      Refused("runAfterCentury", "delay must be at most 87600h", /*mutation=*/true),
      Refused("hugeIndexName", "too long"),
      Refused("loneSurrogateTable", "table has a lone surrogate at index 0"),
      Refused("loneSurrogateInsert", "table has a lone surrogate at index 5", /*mutation=*/true),
      Refused("loneSurrogateIndexName", "name has a lone surrogate at index 4"),
      Refused("hugeEqField", "field path"),
      {"giantEqField", absl::StatusCode::kResourceExhausted, "size limit"},
      Refused("hugeCursor", "too long"),
      Refused("objectId", "must be a string"),
      Refused("symbolId", "must be a string"),
      Refused("bigintPageSize", "page size must be a number"),
      Refused("hugeFieldName", "", /*mutation=*/true),
      Thrown("hugeThrow", "a string of 268435456 characters"),
      Refused("cyclicDoc", "cyclic", /*mutation=*/true),
      Refused("missingTable", "must be a string"),
      Stopped("pageOnForeignThis", "time limit"),
      Refusing(Answers("nativesStolenAfterRequest", "\"function\""),
               "Cannot add property stolen, object is not extensible"),
      Answers("hugeLogLine", "1"),
      // 2. The heap limit.
      // Flattening 512 MiB or 1 GiB may use up the CPU limit before a GC
      // sees the heap over its limit: either limit stops it.
      Stopped("bigString", "limit"),
      Stopped("bigTwoByteString", "limit"),
      // 128 MiB in one allocation, and no GC before the request ends: the
      // heap check at its end stops it, or the CPU limit first on a machine
      // whose page faults are slow (a VM here took 420-600 ms to write 128 MiB
      // of fresh memory). SandboxMisc.OneAllocationPastTheHeapLimit... checks
      // the heap check with CPU to spare.
      Stopped("quickBigString", "limit"),
      Stopped("bigDoubleArray", "limit"),
      // new Array(2^25) is a 256 MiB allocation by itself (V8 keeps arrays of
      // up to 2^25 elements fast); a longer one is sparse, and fill() on it
      // is refused before it walks 2^26 indices.
      Stopped("bigFill", "limit"),
      Bounded("sparseFill"),
      Stopped("pushBomb", "limit"),
      Stopped("bigJsonParse", "limit"),
      Thrown("stringDoubling", "Invalid string length"),
      // 3. Request lifetime.
      Thrown("finalizer", "FinalizationRegistry is not defined"),
      Thrown("weakRef", "WeakRef is not defined"),
      Thrown("sharedMemory", "SharedArrayBuffer is not defined"),
      Thrown("atomicsWait", ""),
      Stopped("microtaskLoop", "time limit"),
      Thrown("dynamicImport", ""),
      // 5. Limits outside JavaScript.
      Stopped("hugeResult", ""),
      Stopped("manyNullsResult", ""),
      Stopped("typedSort", "time limit"),
      Stopped("bigBuffer", "array buffer memory limit"),
      Stopped("manyBuffers", "array buffer memory limit"),
      Bounded("holeyIndexOf"),
      Bounded("holeyForEach"),
      Bounded("holeySort"),
      Bounded("arrayLikeIndexOf"),
      Bounded("accessorLength"),
      Bounded("splitBomb"),
      Bounded("splitViaToString"),
      // A 2^25-character result: the CPU limit usually stops it first, the heap limit in one
      // CI run of many (CI18, at 589 ms). Either stops it; neither harms anyone.
      Stopped("replaceBomb", "limit"),
      Bounded("typedKeys"),
      Bounded("applyArrayLike"),
      Bounded("applyStringObject"),
      Bounded("constructArrayLike"),
      Bounded("bindApplyArrayLike"),
      Bounded("fillArrayLike"),
      Bounded("assignStringObject"),
      Bounded("definePropertiesString"),
      Bounded("createWithString"),
      Bounded("freezeStringObject"),
      Bounded("regexpPropertyClass"),
      Bounded("regexpCalledPropertyClass"),
      Bounded("regexpNamedGroups"),
      Bounded("matchPropertyClass"),
      Bounded("searchPropertyClass"),
      Bounded("matchAllPropertyClass"),
      Bounded("compilePropertyClass"),
      Bounded("regexpLikePropertyClass"),
      Bounded("regexpDeepNesting"),
      Bounded("regexpDeepQuantifiers"),
      Bounded("matchDeepNesting"),
      Thrown("evalDeepNesting", "EvalError"),
      Answers("regexpNestingStillWorks", "[true,true,true]"),
      Bounded("regexpNestingPastTheLimit"),
      // ~50 ms of recursion and compiles; sanitizer builds may meet the CPU limit first.
      AnswersUnlessSlowIntl("regexpNestingAtTheStackLimit", "true"),
      Refused("classInstanceResult", "an instance of Point (pass a plain object"),
      Refused("queryBuilderResult",
              "a ctx.db.query(...), not its documents (end it with .collect()"),
      Refused("taggedLookalikeResult", "at `n.$int64`"),
      Refused("taggedLookalikeScheduled", "field names starting with '$' are reserved",
              /*mutation=*/true),
      Answers("nullPrototypeResult", R"({"a":[{"b":1}]})"),
      Refused("loneSurrogateResult", "lone surrogate at index 0"),
      Refused("loneSurrogateValue", "lone surrogate at index 1", /*mutation=*/true),
      {"surrogatePairsKept", absl::StatusCode::kOk, "", Within::kInstant, true, "true"},
      Refused("regexpSpeciesMatchAll", "works on a RegExp only"),
      Refused("regexpSpeciesSplit", "works on a RegExp only"),
      Thrown("evalPropertyClass", "EvalError"),
      Thrown("functionPropertyClass", "EvalError"),
      Answers("evalStillWorks", "[2,42]"),
      Bounded("foldedClasses"),
      Thrown("evalFoldedClasses", "EvalError"),
      Thrown("functionParameterLiteral", "EvalError"),
      Thrown("evalLoneSurrogateLiteral", "EvalError"),
      Thrown("evalAmbiguousSlash", "EvalError"),
      Answers("functionLiteralsStillWork", R"([[true,5,"b"],1])"),
      Bounded("proxyAssignString"),
      Bounded("proxyApply"),
      Bounded("sparseArrayFill"),
      Answers("freezeStaysCheap", "20002"),
      Answers("regexpStillWorks",
              R"([true,1,true,true,"x--",2,2,1,2,true,true,"ab","B",true,true,"u",true,)"
              R"("function RegExp() { [native code] }",2])"),
      Answers("regexpGuardStillWorks",
              R"x([true,9,true,"g",3,"03","10",6,21,true,37,)x"
              R"x("on 03.12.2026 and 02.01.2027 then 09.09.1999.",19,3,"3,26,43",3,3,3,3,)x"
              R"x("on 2026 and 2027 then 1999.",true,"i",true,true,true,"11,13",true,"a+",true,)x"
              R"x("(?=)(?:a)",true,1,"SyntaxError:true:false","SyntaxError:false:true",true,true,)x"
              R"x(true,"{}",0,3,null])x"),
      Answers(
          "regexpSplitStillWorks",
          R"x([["a","b","c","d"],["a","b","c"],[""],[],["a","1","b","2","c","3",""],)x"
          R"x(["a","1","b"],["a",null,"b",null,"c"],[],[],["a","b","c"],["a","b"],)x"
          R"x(["😀","a","😀"],3,["a","b","c"],["a","b"],["a\n","b\n","c"],["a1","b2"],["ab"],)x"
          R"x(["a","b"],["a","b","c"],["a","b","","c"],["a","b"],["a","b"],100001,["a","b"],)x"
          R"x(["a","b"],["a","b"],["12345"],["","x",null,""],["a","a","a"],["",""],)x"
          R"x(["A",null,"B","bold","/","B","and",null,"CODE","coded","/","CODE",""],2,["a"]])x"),
      Bounded("typedJson"),
      Bounded("arrayFromArrayLike"),
      Stopped("forInTypedArray", "cannot be interrupted"),
      Stopped("spreadTypedArray", "cannot be interrupted"),
      Bounded("assignTypedArray"),  // Object.assign is guarded now
      Bounded("typedArrayTooLong"),
      Bounded("concatMany"),
      Interrupted("concatElementGetterLengthens"),
      Interrupted("concatSpreadableGetterLengthens"),
      Interrupted("concatSpeciesLengthens"),
      Interrupted("concatReceiverLengthens"),
      Interrupted("concatGetterLengthensArray"),
      Interrupted("concatInheritedGetterLengthensArray"),
      Interrupted("concatSpeciesConstructorLengthensArray"),
      Refusing(Interrupted("concatPrototypeGetterLengthensArray"), "Cannot define property 0"),
      Refusing(Bounded("inheritedDescriptorValue"), "Cannot add property value"),
      Refusing(Interrupted("inheritedDescriptorGetter"), "Cannot redefine property"),
      Bounded("mapDeepensChain"),
      Bounded("joinDeepensChain"),
      Bounded("sliceDeepensChain"),
      Bounded("toLocaleStringDeepensChain"),
      Interrupted("assignUnderDeepChain"),
      Bounded("unshiftUnderDeepChain"),
      Bounded("assignDeepensChain"),
      Interrupted("concatDescriptorGetterAddsGet"),
      Bounded("mapDeepensChainThroughProxy"),
      Bounded("mapDeepensChainFromProtoTrap"),
      Bounded("assignPrimitiveTargetKeys"),
      Bounded("typedSetUnderDeepChain"),
      Bounded("typedFromUnderDeepChain"),
      Bounded("typedCtorUnderDeepChain"),
      Answers("chainsAndAccessorsStillWork",
              R"(["2,4,6","g,1,2","g,1,3","g,h","9,g,h,v",true,"1,2,3",2,1,"object","a,b",3,0,)"
              R"("1,7,8,2,3",5,6,"a,2,3",1,true,2,"k",false,"TypeError","0,1,2,0","5,6","7,0"])"),
      Refusing(Answers("concatStandInHijack", "[3,1,2,false]"),
               "Cannot define property 2, object is not extensible"),
      Answers("concatUnspreadLengths", "[1,1]"),
      Answers(
          "concatOperandsStillWork",
          R"([7,true,true,41,"0,x,y",2,"g",1,1,true,1,1,1,true,3,"p,q",6,false,true,false,5,50,)"
          R"(49,true])"),
      Bounded("assignMany"),
      Bounded("typedChainSetPrototypeOf"),
      Bounded("typedChainReflect"),
      Bounded("typedChainProtoSetter"),
      Bounded("typedChainUnderAnObject"),
      Bounded("typedChainNewTarget"),
      Bounded("typedChainClassExtends"),
      Bounded("stringObjectChain"),
      // Their results grow by 1,024 copies of the text before each match: the CPU limit usually
      // stops them first, the heap limit in one CI run of many (session 34, at 518 ms). Either,
      // never abandoned.
      Interrupted("replaceTemplateMany", "limit"),
      Interrupted("replaceAllTemplateMany", "limit"),
      Bounded("applyProxyLength"),
      Bounded("applyProtoProxyLength"),
      Bounded("indexOfTrapLength"),
      Bounded("indexOfProtoTrapLength"),
      Interrupted("concatTrapLength"),
      Answers("lyingTrapLength", "[-1,1]"),
      Bounded("typedOwnLength"),
      Bounded("typedProtoTrapLength"),
      Bounded("applyTypedOwnLength"),
      Bounded("deepChainJoin"),
      Refusing(Bounded("deepChainUnderArrays"), "[object Array] is not extensible"),
      Answers("arrayFromIteratorGetter", "0"),
      // As Node 20 answers.
      Answers("guardEdgesStillWork",
              R"x([1,"1,-2",1,"1.5",9,"7,7,7","a1b","a1b","1,2","x--","a,","number","number",)x"
              R"x("number","TypeError","true,true,true","1,2,3","p,q",1,"2,4,6"])x"),
      Answers("replaceManyMatchesStillWorks", "262160"),
      // As Node 20 answers (V8 10.2 took a small integer for a string: the wrapper calls it).
      Refusing(Answers("primitiveSearchMethods",
                       R"x(["Rnumberstringx","Rnumberstringy",["S","number","string",3],)x"
                       R"x("Rnumbernumberz","Rnumberstringw"])x"),
               "Cannot add property Symbol(Symbol.replace)"),
      // Their copies may reach the heap limit before the CPU limit (each seen once under load).
      Interrupted("replaceTemplateSubclass", "limit"),
      Interrupted("replaceTemplateOwnExec", "limit"),
      Interrupted("replaceAllTemplateNumber"),
      // As Node 20 answers.
      Answers(
          "replaceConversionsStillWork",
          R"x(["a-b-","a11b","1x321","a!b","a?b","abb","TypeError","TypeError","TypeError",)x"
          R"x("TypeError",["a","b"],["a,b"],["a","b"],["a"],"x[x]x[xax]",82200,)x"
          R"x("[abb$2$$<n>-------------------","-----------------------------]",40600,)x"
          R"x("aa----------",80400,"a<abababababababababababababab",)x"
          R"x("----------------------------->",605,"a[57ba]-----",151100,262145,"TypeError"])x"),
      Answers("trappedLengthsStillWork",
              R"x(["true,true,true",2,"3-1-2","1,2",2,36,true,"1,2,3",true,"1,2,7","1,2,7",7,7,)x"
              R"x("a+b",true,7,"0,1,2,7,4,[object Object],5",true,"1,2,7,9","1,2",3,9,"8,9"])x"),
      Answers("amplifiedBuiltinsStillWork",
              R"x([5,"0,1,a",7,true,false,"function",1,true,true,3,true,9,2,82200,)x"
              R"x("[abb$2$$<n>-------------------","-----------------------------]",80600,)x"
              R"x("a<abababababababababababababab","----------------------------->",60000,)x"
              R"x("x1yx1yx1y",119995,600,"xx+yy+z","$aa","a..b","a[a]c"])x"),
      Bounded("typedArrayViewTooLong"),
      Bounded("typedArraySubclassTooLong"),
      Bounded("stringRawHuge"),
      Stopped("flatHoley", "time limit"),
      Stopped("flatMapHoley", "time limit"),
      Stopped("flatDeepHoley", "time limit"),
      Answers("flatStillWorks",
              R"([[1,2,[3,[4]]],[1,2,3,4],[1,[2]],[1,2,[3]],[1,[2,[3]]],[1,0,2,2,1,2],[1,2],true,)"
              R"([1,2,3],[7,8],"TypeError","TypeError",0,[[1],[[2]]],)"
              R"("get length,get constructor,has 0,get 0,has 1,get 1","TypeError"])"),
      // Filling the request's buffer budget zero-fills ~128 MiB: under sanitizers on a loaded
      // machine the CPU limit may come first (a fresh-clone ASan run failed so). Either ends it.
      {"bytesPastBufferBudget", absl::StatusCode::kResourceExhausted,
       kTimeFactor == 1 ? "array buffer memory limit" : "limit", Within::kLimit,
       /*mutation=*/true},
      Thrown("evalPaddedPropertyClass", "EvalError"),
      Thrown("functionPaddedBody", "EvalError"),
      Thrown("functionOfClassExpressions", "EvalError"),
      Answers("evalJustUnderTheCapStillWorks", "3"),
      Bounded("listFormatHuge"),
      Bounded("listFormatToPartsHuge"),
      Bounded("collatorHuge"),
      Answers("intlListsStillWork", R"(["a, b, and c",3,-1,"abC",true,"TypeError","",0])"),
      Bounded("timeZoneHuge"),
      Bounded("timeZoneObjectHuge"),
      Bounded("toLocaleStringTimeZoneHuge"),
      Bounded("localeCompareOptionHuge"),
      Bounded("localeTagHuge"),
      Bounded("localeOptionHuge"),
      Bounded("localesListTagHuge"),
      Bounded("localesStringHuge"),
      Bounded("displayNamesHuge"),
      Bounded("encodeURIHuge"),
      Bounded("decodeURIHuge"),
      Bounded("upperCaseHuge"),
      Bounded("lowerCaseHuge"),
      Bounded("dateParseHuge"),
      Bounded("dateStringHuge"),
      Bounded("dateObjectHuge"),
      Answers("dateObjectsStillWork",
              R"([5,7,8,1577923200000,["valueOf","toString"],1000,2000,3000,true,)"
              R"(["TypeError","TypeError","TypeError","TypeError","TypeError"]])"),
      Bounded("regexpAlternativesHuge"),
      Bounded("regexpFoldedClassesNoU"),
      Bounded("bigIntFormatToPartsHuge"),
      Bounded("relativeTimeUnitHuge"),
      Bounded("jsonParseDeep"),
      Bounded("jsonParseFlatObjects"),
      Bounded("jsonParseFlatArrays"),
      Answers("jsonParseManyObjectsStillWorks", "1001"),
      Bounded("jsonParseWideObject"),
      Answers("jsonParseWideObjectStillWorks", "2"),
      Refusing(Bounded("jsonParseDeepBlinded"), "Cannot assign to read only property 'charCodeAt'"),
      Refusing(Bounded("regexpEscapesBlinded"), "Cannot assign to read only property 'indexOf'"),
      Answers("stringSearchStillWorks",
              R"([[0,0,-1,0,0,0,0,-1,0,0,true,false,true,0,"262745,131072,131072",2,0,-600,)"
              R"(1202,-1190,0,0,0,0,false,0,3,3,2,3,1,-600,-1202,"a,b,7"],"TypeError"])"),
      Answers("stringConversionsStillWork",
              R"(["12","TRUE","1.5",0,0,0,"100000000000000000000","7","undefined",12,false,)"
              R"(["TypeError","TypeError","TypeError","TypeError","TypeError"]])"),
      EitherLimit("toLowerCaseOfAHugeBigInt"),
      Answers("jsonParseLongStillWorks", R"([true,1500000,[[1],{"c":1}],[1]])"),
      Answers("stringBuiltinsStillWork",
              R"(["a%20b%26%C3%BC","http://x/a%20b?q=%C3%BC",2,"A%2F","STRASSE",2,"42",)"
              R"(1577836800000,1577836800000,1577923200000,1,true,true,13,3,"1 day ago",3,)"
              R"(["URIError","TypeError","RangeError","TypeError","SyntaxError"]])"),
      Answers(
          "intlOptionsStillWork",
          R"(["12 AM",false,"1/1/1970, 9:00:00 AM","1.00","en-GB","fr","United Kingdom",)"
          R"("de",-1,true,true,1,"Locale",["TypeError","TypeError","RangeError","TypeError"]])"),
      // 1,000 DateTimeFormats take 280-360 ms of CPU on a VM whose page faults are slow (each
      // formatter's ICU data is fresh memory), so there even the optimised build may meet the
      // 300 ms CPU limit first (intlCalledAsFunction makes the same formatters: CI14 met it in
      // three runs of three); intlLimitCaught and the attacks below still show the ICU limit.
      EitherLimit("intlFormattersKept"),
      EitherLimit("intlCalledAsFunction"),
      AnswersUnlessSlowIntl("intlAfterResult", R"({"x":1})"),
      HeavyIntl("intlSubclassKept"),
      // Each within the CPU limit optimised, past the ICU memory now (charged 1/7 of it before).
      Refused("dateLocaleKeywords",
              "Intl.DateTimeFormat: a locale with Unicode extension "
              "keywords (-u-...) is not available for dates"),
      Refused("dateLocaleKeywordsInList", "Date.prototype.toLocaleString: a locale with Unicode"),
      Refused("dateLocaleObjectKeywords", "Date.prototype.toLocaleDateString: a locale with"),
      Refused("dateCalendarOption", "the calendar option is not available for dates"),
      Refused("dateNumberingOption", "the numberingSystem option is not available for dates"),
      Refused("datePrimitiveOptions", "the calendar option is not available for dates"),
      Answers("datesWithoutKeywordsStillWork",
              "[\"00 Uhr\",\"01/01/1970\",\"\u0661\u066c\u0662\u0663\u0664\u066b\u0665\"]"),
      HeavyIntl("intlRangeFormattersKept"),
      HeavyIntl("intlDisplayNamesKept"),
      AnswersUnlessSlowIntl("intlRangeFormattersWithinBudget", "[1000,true,true,true]"),
      // Long strings compared inside natives: stopped at the CPU limit, never abandoned.
      Interrupted("longNeedleIndexOf"),
      Interrupted("longNeedleIncludes"),
      Interrupted("longNeedleLastIndexOf"),
      Interrupted("longStringsSort"),
      Interrupted("longBigIntNeedleIndexOf"),
      Answers("bigIntNeedlesStillWork", "[1,5,true,5,false,5,true,true]"),
      Interrupted("costlyStepLoop"),
      Answers("longNeedleSearchesStillWork",
              R"x([3,5,true,5,5,3,3,-1,-1,false,true,3,3,-1,5,-1,2,false,-1,1,true,1,1,true,)x"
              R"x("TypeError",[100,20,3,"a","b","300x","300y",null,null],)x"
              R"x(["10","2,1","9","[object Object]","null","true"],"TypeError",3,true,true])x"),
      Bounded("escapeHuge"),
      Bounded("unescapeHuge"),
      Answers("escapeStillWorks", R"(["a%20b%u1234","A ","undefined","1"])"),
      HeavyIntl("intlSegmentsKept"),
      HeavyIntl("intlSegmentIteratorsKept"),
      HeavyIntl("intlLongSegmentsKept"),
      Bounded("intlSegmentsOfAHugeString"),
      Bounded("intlSegmentsOfAHugeBigInt"),
      Interrupted("intlSegmentsWalkedAtTheBound"),
      Bounded("canonicalLocalesHuge"),
      Bounded("formatterLocalesHuge"),
      Bounded("supportedLocalesHuge"),
      Bounded("dateLocalesHuge"),
      Bounded("arrayToLocaleStringOptions"),
      Bounded("typedToLocaleStringOptions"),
      HeavyIntl("localeMaximizeKept"),
      // 6. Determinism.
      Answers("dateParentClock", "\"no clock\""),
      Answers("intlNow", "true"),
      Answers(
          "intlStillWorks",
          R"(["1,234.5","DateTimeFormat",0,true,1,true,true,"undefined",true,"1,5,2",["en-US"],"1,5",2,"1.234,5",-1,"1/1/1970","en-Latn-US",2000])"),
      Answers(
          "wrappersReadAsNative",
          R"(["function DateTimeFormat() { [native code] }","function Date() { [native code] }",)"
          R"("function now() { [native code] }","function random() { [native code] }",)"
          R"("function toLocaleString() { [native code] }",)"
          R"("function replace() { [native code] }","function toString() { [native code] }",)"
          R"("function mine() { return 1; }","function format() { [native code] }",)"
          R"("function map() { [native code] }",)"
          R"("function () { [native code] }","function () { [native code] }",)"
          R"("class A {}",true])"),
      Answers("dateCtorNow", "true"),
      Answers("noPerformanceClock", "\"undefined undefined\""),
      // 8. Smaller.
      Stopped("resultGetterSpin", "time limit"),
      Stopped("stackGetterSpin", "time limit"),
      Refusing(Stopped("prepareStackTraceSpin", "time limit"),
               "Cannot assign to read only property 'prepareStackTrace'"),
      Refused("takeInfinity", "non-negative integer"),
      Refused("takeNegative", "non-negative integer"),
      Refused("paginateInfinity", "positive integer"),
      Refused("pageNaN", "integer"),
      Answers("unhandledRejection", "1"),
      // Errors as data: reading what a thrown error carries runs tenant
      // getters under the same limits, and hostile data is dropped, not fatal.
      Stopped("errorDataGetterSpin", "time limit"),
      Stopped("errorNameGetterSpin", "time limit"),
      Thrown("errorDataThrowingGetter", "Error: x"),
      Thrown("errorDataProxy", "with data"),
      Thrown("errorDataCyclic", "with data"),
      Thrown("errorDataHuge", "with data"),
      Thrown("errorDataFunction", "with data"),
      Stopped("thrownProxy", "time limit"),  // its get trap runs when the stack is read
      Thrown("errorMessageHuge", "a string of"),
      Thrown("errorWithCodeLikeData", "with data"),
  };
  // Caught, the ICU-memory limit refuses only the objects past it. Meeting
  // it takes ~16,000 objects: under sanitizers the CPU limit comes first.
  if (kTimeFactor == 1) attacks.push_back(Answers("intlLimitCaught", R"("refused")"));
  return attacks;
}

std::string ModeName(ContextMode mode) {
  return mode == ContextMode::kHardened ? "Hardened" : "Fresh";
}

class SandboxTest : public ::testing::TestWithParam<std::tuple<ContextMode, Attack>> {
 protected:
  static void SetUpTestSuite() {
    for (ContextMode mode : {ContextMode::kHardened, ContextMode::kFresh}) {
      SetUpEngine(mode);
      if (::testing::Test::HasFatalFailure()) return;
    }
  }
  static void SetUpEngine(ContextMode mode) {
    EngineOptions options;
    options.storage = EngineStorage::kMemory;
    options.scheduler.workers = 2;
    options.scheduler.limits = std::make_shared<AttackerLimits>();
    options.scheduler.abandon_grace = kAbandonGrace;
    options.runner.context_mode = mode;
    auto engine = Engine::Open(options);
    ASSERT_TRUE(engine.ok()) << engine.status();
    Engine*& engine_ = engines_[static_cast<int>(mode)];
    engine_ = engine->release();
    const std::string dir = TXFN_SANDBOX_DIR;
    const std::string attacks = ReadFile(dir + "/attacks.js");
    const std::string harmless = ReadFile(dir + "/harmless.js");
    ASSERT_FALSE(attacks.empty());
    for (const char* tenant : {"mallory", "bystander"}) {
      ASSERT_TRUE(engine_->CreateTenant(tenant).ok());
      std::map<std::string, std::string> modules = {{"harmless.js", harmless}};
      if (std::string(tenant) == "mallory") modules["attacks.js"] = attacks;
      absl::Status deployed = engine_->DeployJson(tenant, modules, kSchema);
      ASSERT_TRUE(deployed.ok()) << deployed;
      for (int k = 0; k < 3; ++k) {
        auto added =
            engine_->Mutation(tenant, "harmless:add", Value::FromObject({{"k", Value::Int64(k)}}));
        ASSERT_TRUE(added.ok()) << added.status();
      }
    }
  }
  static void TearDownTestSuite() {
    for (Engine*& engine : engines_) {
      delete engine;
      engine = nullptr;
    }
    std::fprintf(stderr, "sandbox suite: peak resident %zu MiB after an attack\n",
                 peak_rss_after_ >> 20);
  }

  // Both tenants still answer, with their data intact.
  static void ExpectHarmlessCallsAnswer(Engine* engine_) {
    for (const char* tenant : {"mallory", "bystander"}) {
      auto count = engine_->Query(tenant, "harmless:count", Value::Null());
      ASSERT_TRUE(count.ok()) << tenant << ": " << count.status();
      EXPECT_EQ(ToJson(count->value), "3") << tenant;
      auto answer = engine_->Query(tenant, "harmless:answer", Value::Null());
      ASSERT_TRUE(answer.ok()) << tenant << ": " << answer.status();
      EXPECT_EQ(ToJson(answer->value), R"([42,"undefined",true])") << tenant;
    }
  }

  static Engine* engines_[2];  // by ContextMode
  static size_t peak_rss_after_;
};

Engine* SandboxTest::engines_[2] = {nullptr, nullptr};
size_t SandboxTest::peak_rss_after_ = 0;

TEST_P(SandboxTest, EndsAsPromisedAndHarmsNobody) {
  const ContextMode mode = std::get<0>(GetParam());
  const Attack attack = InMode(std::get<1>(GetParam()), mode);
  Engine* engine_ = engines_[static_cast<int>(mode)];
  ASSERT_NE(engine_, nullptr);
  // The bound of one run, by the limit that ended it when the attack may meet either.
  const auto bound_for = [&attack](const absl::Status& status) {
    const std::optional<Limit> limit = ExceededLimit(status);
    const bool by_time = limit == Limit::kCpuTime || limit == Limit::kWallTime;
    const bool limited =
        attack.within == Within::kLimit || (attack.within == Within::kEither && by_time);
    return kTimeFactor * (limited ? 2 * kAttackerCpu + kSlack : kAttackerCpu);
  };
  // A loaded machine can stall any one call past the bound, or past the
  // attacker's short wall-clock limit (a call that should answer is then
  // stopped); an attack that outlives its limit does so every time. So such a
  // run is tried again, up to three runs; the last is checked in full, and the
  // run with the most time to spare must meet its bound.
  constexpr int kRuns = 3;
  absl::Duration best_elapsed = absl::InfiniteDuration(), best_bound = absl::ZeroDuration();
  for (int run = 1; run <= kRuns; ++run) {
    const std::string function = "attacks:" + attack.function;
    const auto start = std::chrono::steady_clock::now();
    absl::StatusOr<CallResult> result = attack.mutation
                                            ? engine_->Mutation("mallory", function, Value::Null())
                                            : engine_->Query("mallory", function, Value::Null());
    const absl::Duration elapsed = absl::FromChrono(std::chrono::steady_clock::now() - start);
    const absl::Duration bound = bound_for(result.status());
    if (elapsed - bound < best_elapsed - best_bound) {
      best_elapsed = elapsed;
      best_bound = bound;
    }
    // Stopped by the wall clock, and not as the attack expects: the machine's load.
    const bool stalled = ExceededLimit(result.status()) == Limit::kWallTime &&
                         (result.status().code() != attack.code ||
                          !absl::StrContains(result.status().message(), attack.message));
    // Abandoned when it should have been interrupted: a GC pause of a heap near its limit, on
    // a loaded machine, can outlast the short abandon grace once; a builtin that cannot be
    // interrupted is abandoned every time.
    const bool abandoned =
        attack.interrupted && absl::StrContains(result.status().message(), "cannot be interrupted");
    if (run < kRuns && (stalled || abandoned || best_elapsed > best_bound)) {
      std::fprintf(stderr, "attack %-36s %-18s %6.0f ms (%s: run again)\n", attack.function.c_str(),
                   absl::StatusCodeToString(result.status().code()).c_str(),
                   absl::ToDoubleMilliseconds(elapsed), abandoned ? "abandoned" : "stalled");
      continue;
    }

    const std::optional<Limit> limit = ExceededLimit(result.status());
    const bool answer_stopped_by_time = attack.code == absl::StatusCode::kOk &&
                                        attack.within == Within::kEither &&
                                        (limit == Limit::kCpuTime || limit == Limit::kWallTime);
    EXPECT_EQ(result.status().code(),
              answer_stopped_by_time ? absl::StatusCode::kResourceExhausted : attack.code)
        << result.status();
    if (!attack.message.empty()) {
      EXPECT_THAT(std::string(result.status().message()), HasSubstr(attack.message));
    }
    // Messages quote tenant data only in part.
    EXPECT_LT(result.status().message().size(), size_t{20} << 10);
    // Errors as data (txfn/errors.h): a limit says which; the tenant's own
    // exceptions, and only they, are AppErrors, with bounded data.
    if (attack.within == Within::kLimit) {
      EXPECT_TRUE(ExceededLimit(result.status()).has_value()) << result.status();
    }
    // A sandbox limit says so, as the scheduler's limits do: a queue must not take it for a
    // busy machine and run the call again.
    if (absl::IsResourceExhausted(result.status()) &&
        absl::StrContains(result.status().message(), "sandbox limit")) {
      EXPECT_EQ(ExceededLimit(result.status()), Limit::kSandbox) << result.status();
    }
    if (attack.interrupted) {
      EXPECT_THAT(std::string(result.status().message()), Not(HasSubstr("cannot be interrupted")));
    }
    const std::optional<AppError> app_error = GetAppError(result.status());
    EXPECT_EQ(app_error.has_value(), attack.code == absl::StatusCode::kUnknown) << result.status();
    if (app_error.has_value()) {
      EXPECT_LT(app_error->message.size(), size_t{20} << 10);
      EXPECT_LE(app_error->data.ByteSize(), size_t{64} << 10);
      if (attack.function.starts_with("errorData") && attack.function != "errorDataGetterSpin") {
        EXPECT_TRUE(app_error->data.is_null()) << ToJson(app_error->data);
      }
    }
    if (attack.function == "errorWithCodeLikeData" && app_error.has_value()) {
      EXPECT_EQ(ToJson(app_error->data), R"({"code":3})");
    }
    if (attack.code == absl::StatusCode::kOk && result.ok()) {
      EXPECT_EQ(ToJson(result->value), attack.value);
    }
    std::fprintf(stderr, "attack %-36s %-18s %6.0f ms%s\n", attack.function.c_str(),
                 absl::StatusCodeToString(result.status().code()).c_str(),
                 absl::ToDoubleMilliseconds(elapsed), run > 1 ? " (run again)" : "");
    break;
  }
  EXPECT_LE(best_elapsed, best_bound)
      << "took " << best_elapsed << " in the run with the most time to spare";

  ExpectHarmlessCallsAnswer(engine_);
  const size_t rss = testing::ResidentBytes();
  peak_rss_after_ = std::max(peak_rss_after_, rss);
  EXPECT_LT(rss, kRssBound) << "resident " << (rss >> 20) << " MiB";
}

INSTANTIATE_TEST_SUITE_P(Attacks, SandboxTest,
                         ::testing::Combine(::testing::Values(ContextMode::kHardened,
                                                              ContextMode::kFresh),
                                            ::testing::ValuesIn(Attacks())),
                         [](const ::testing::TestParamInfo<std::tuple<ContextMode, Attack>>& info) {
                           return ModeName(std::get<0>(info.param)) + "_" +
                                  std::get<1>(info.param).function;
                         });

// A fixed CPU limit for every tenant (its wall-clock limit twice that).
class FixedCpuLimit : public LimitEnforcer {
 public:
  explicit FixedCpuLimit(absl::Duration cpu) : cpu_(cpu) {}
  absl::Duration CpuLimit(const std::string&) const override { return cpu_; }

 private:
  const absl::Duration cpu_;
};

// The other sandbox tests, in each context mode.
class SandboxMisc : public ::testing::TestWithParam<ContextMode> {
 protected:
  // An engine of one worker in the test's mode, on memory, with `tenant` holding module a.js
  // (`source`) and kSchema; `limits` null: the default limits. Null if any step failed.
  std::unique_ptr<Engine> OpenWithModule(const std::string& tenant, const std::string& source,
                                         std::shared_ptr<LimitEnforcer> limits = nullptr) {
    EngineOptions options;
    options.storage = EngineStorage::kMemory;
    options.scheduler.workers = 1;
    options.runner.context_mode = GetParam();
    if (limits != nullptr) options.scheduler.limits = std::move(limits);
    absl::StatusOr<std::unique_ptr<Engine>> engine = Engine::Open(options);
    EXPECT_TRUE(engine.ok()) << engine.status();
    if (!engine.ok()) return nullptr;
    absl::Status created = (*engine)->CreateTenant(tenant);
    EXPECT_TRUE(created.ok()) << created;
    absl::Status deployed = (*engine)->DeployJson(tenant, {{"a.js", source}}, kSchema);
    EXPECT_TRUE(deployed.ok()) << deployed;
    if (!created.ok() || !deployed.ok()) return nullptr;
    return *std::move(engine);
  }
};

TEST_P(SandboxMisc, UnhandledRejectionsAppearInTheCallsLogs) {
  std::unique_ptr<Engine> engine = OpenWithModule("t", R"JS(
import { query } from "txfn/server";
export const lose = query(async () => {
  Promise.reject(new Error("lost one"));
  const later = Promise.reject(new Error("handled later"));
  await null;
  later.catch(() => {});
  return 1;
});
export const fails = query(async () => { throw new Error("the result"); });
)JS");
  ASSERT_NE(engine, nullptr);
  auto r = engine->Query("t", "a:lose", Value::Null());
  ASSERT_TRUE(r.ok()) << r.status();
  std::vector<std::string> warnings;
  for (const LogEntry& e : r->logs) warnings.push_back(e.message);
  EXPECT_THAT(warnings,
              ::testing::ElementsAre(HasSubstr("Unhandled promise rejection: Error: lost one")));
  // The function's own rejection is its error, not a lost promise.
  auto f = engine->Query("t", "a:fails", Value::Null());
  EXPECT_THAT(std::string(f.status().message()), HasSubstr("the result"));
}

// With CPU enough to make its digits (about a second), a BigInt of 4.2 million digits is
// refused by the case mapping's bound of 4 Mi characters: the bound counts a BigInt's digits
// (it measured a BigInt as no characters, and the builtin mapped them all).
TEST_P(SandboxMisc, GuardedStringBuiltinsCountABigIntsDigits) {
  std::unique_ptr<Engine> engine =
      OpenWithModule("t", R"JS(
import { query } from "txfn/server";
export const lower = query(async () => "".toLowerCase.call(10n ** 4200000n).length);
)JS",
                     std::make_shared<FixedCpuLimit>(absl::Seconds(30)));
  ASSERT_NE(engine, nullptr);
  auto r = engine->Query("t", "a:lower", Value::Null());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kResourceExhausted) << r.status();
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("sandbox limit"));
}

// A request that waits (here on slow storage) uses no CPU: the wall-clock
// limit stops it and frees its worker.
TEST_P(SandboxMisc, WallClockLimitStopsARequestThatWaits) {
  auto storage =
      std::make_shared<testing::FaultInjectingStorage>(std::make_shared<InMemoryStorage>());
  EngineOptions options;
  options.custom_storage = storage;
  options.scheduler.workers = 1;
  options.runner.context_mode = GetParam();
  options.scheduler.limits = std::make_shared<AttackerLimits>();
  auto engine = Engine::Open(options);
  ASSERT_TRUE(engine.ok());
  ASSERT_TRUE((*engine)->CreateTenant("mallory").ok());
  ASSERT_TRUE((*engine)
                  ->DeployJson("mallory", {{"a.js", R"JS(
import { query } from "txfn/server";
export const slow = query(async (ctx) => {
  for (let i = 0; i < 1000; ++i) await ctx.db.query("items").take(1);
  return 1;
});
)JS"}},
                               kSchema)
                  .ok());
  storage->SetDelay(testing::StorageMethod::kScan, absl::Milliseconds(50));
  const auto start = std::chrono::steady_clock::now();
  auto r = (*engine)->Query("mallory", "a:slow", Value::Null());
  const absl::Duration elapsed = absl::FromChrono(std::chrono::steady_clock::now() - start);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kResourceExhausted) << r.status();
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("wall time"));
  EXPECT_LE(elapsed, kTimeFactor * (2 * kAttackerCpu + kLoadedSlack + absl::Milliseconds(50)));
  storage->ClearFaults();
  EXPECT_EQ((*engine)->stats().scheduler.terminated_wall, 1u);
}

// One allocation past the heap limit that no GC notices before the request
// ends (V8 lets a single allocation through and only asks afterwards): the
// heap check at the request's end stops it and disposes of the isolate. With
// CPU to spare, so that no machine's speed decides which limit comes first.
TEST_P(SandboxMisc, OneAllocationPastTheHeapLimitIsStoppedAtTheRequestsEnd) {
  std::unique_ptr<Engine> engine =
      OpenWithModule("mallory", R"JS(
import { query } from "txfn/server";
export const big = query(() => { const s = "x".repeat(2 ** 27); return s.indexOf("y"); });
export const small = query(() => 1);
)JS",
                     std::make_shared<FixedCpuLimit>(absl::Seconds(10)));
  ASSERT_NE(engine, nullptr);
  auto r = engine->Query("mallory", "a:big", Value::Null());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kResourceExhausted) << r.status();
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("heap limit"));
  EXPECT_EQ(engine->stats().scheduler.terminated_heap, 1u);
  auto after = engine->Query("mallory", "a:small", Value::Null());
  ASSERT_TRUE(after.ok()) << after.status();
  EXPECT_EQ(ToJson(after->value), "1");
}

// A deploy runs every module's top level under the same limits: a module
// that spins or waits is refused, and the old version keeps serving.
TEST_P(SandboxMisc, DeployOfAHostileTopLevelIsRefused) {
  const std::string good = R"JS(
import { query } from "txfn/server";
export const v = query(async () => 1);
)JS";
  std::unique_ptr<Engine> engine =
      OpenWithModule("mallory", good, std::make_shared<AttackerLimits>());
  ASSERT_NE(engine, nullptr);
  struct Case {
    std::string source;
    absl::StatusCode code;
    std::string message;
  };
  for (const Case& c : std::vector<Case>{
           {"for (;;) {}", absl::StatusCode::kResourceExhausted, "time limit"},
           {"Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0);",
            absl::StatusCode::kInvalidArgument, "SharedArrayBuffer is not defined"},
           {"await new Promise(() => {});", absl::StatusCode::kInvalidArgument,
            "top-level await is not supported (in 'b.js')"},
           // 33 MiB buffers, never touched (see manyBuffers in attacks.js): 1 MiB ones may
           // be zeroed page by page, which took the CPU limit first on a slow VM.
           {"const b = []; for (;;) b.push(new ArrayBuffer(2 ** 25 + 2 ** 20));",
            absl::StatusCode::kResourceExhausted, "array buffer memory limit"},
           {"new Array(2 ** 32 - 1).indexOf(1);", absl::StatusCode::kResourceExhausted,
            "sandbox limit"},
       }) {
    const auto start = std::chrono::steady_clock::now();
    absl::Status s = engine->DeployJson("mallory", {{"a.js", good}, {"b.js", c.source}}, kSchema);
    const absl::Duration elapsed = absl::FromChrono(std::chrono::steady_clock::now() - start);
    EXPECT_EQ(s.code(), c.code) << c.source << ": " << s;
    EXPECT_THAT(std::string(s.message()), HasSubstr(c.message)) << c.source;
    EXPECT_LE(elapsed, kTimeFactor * (2 * kAttackerCpu + kLoadedSlack)) << c.source;
    auto v = engine->Query("mallory", "a:v", Value::Null());
    ASSERT_TRUE(v.ok()) << v.status();
    EXPECT_EQ(ToJson(v->value), "1");
  }
}

// An engine with the attacker's limits, both tenants deployed with the
// harmless module (and the attacker's extra `modules`).
std::unique_ptr<Engine> OpenEngine(ContextMode mode, int workers,
                                   const std::map<std::string, std::string>& extra,
                                   bool reuse_context = false) {
  EngineOptions options;
  options.storage = EngineStorage::kMemory;
  options.scheduler.workers = workers;
  options.scheduler.limits = std::make_shared<AttackerLimits>();
  options.scheduler.abandon_grace = kAbandonGrace;
  options.runner.context_mode = mode;
  if (reuse_context) options.runner.reuse_context = [](const std::string&) { return true; };
  auto engine = Engine::Open(options);
  EXPECT_TRUE(engine.ok()) << engine.status();
  if (!engine.ok()) return nullptr;
  const std::string dir = TXFN_SANDBOX_DIR;
  for (const char* tenant : {"mallory", "bystander"}) {
    EXPECT_TRUE((*engine)->CreateTenant(tenant).ok());
    std::map<std::string, std::string> modules = extra;
    modules["harmless.js"] = ReadFile(dir + "/harmless.js");
    absl::Status deployed = (*engine)->DeployJson(tenant, modules, kSchema);
    EXPECT_TRUE(deployed.ok()) << deployed;
  }
  return *std::move(engine);
}

int64_t Percentile(std::vector<int64_t> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(p * static_cast<double>(v.size())))];
}

// The attacker keeps every worker's worth of hostile calls queued (spins,
// allocation bombs, conversion bombs, waits that fail, guarded builtins)
// while a victim tenant runs a steady query/mutation mix: every victim call
// succeeds with the right result, and its latency stays bounded because one
// tenant may run on only half the workers.
TEST_P(SandboxMisc, NoisyNeighbourCannotStarveAnotherTenant) {
  const std::string dir = TXFN_SANDBOX_DIR;
  std::unique_ptr<Engine> engine =
      OpenEngine(GetParam(), 2, {{"attacks.js", ReadFile(dir + "/attacks.js")}});
  ASSERT_NE(engine, nullptr);
  std::atomic<bool> stop{false};
  std::atomic<int> attacks{0};
  std::vector<std::thread> attackers;
  const std::vector<std::string> kAttacks = {"spinningGetterInArg", "pushBomb",    "hugeResult",
                                             "atomicsWait",         "typedSort",   "manyBuffers",
                                             "microtaskLoop",       "holeyIndexOf"};
  for (int t = 0; t < 4; ++t) {
    attackers.emplace_back([&, t] {
      for (int i = t; !stop.load(); ++i) {
        (void)engine->Query("mallory", "attacks:" + kAttacks[i % kAttacks.size()], Value::Null());
        attacks.fetch_add(1);
      }
    });
  }
  std::vector<int64_t> latencies_us;
  int64_t added = 0;
  // At least 3 s, and until the attacker has made more than 8 attacks (each
  // takes up to its wall limit; a loaded machine makes fewer in 3 s), for at
  // most 20 s.
  constexpr int kMinAttacks = 9;
  const auto begin = std::chrono::steady_clock::now();
  const auto end = begin + std::chrono::seconds(3);
  const auto give_up = begin + std::chrono::seconds(20);
  auto keep_going = [&] {
    const auto now = std::chrono::steady_clock::now();
    return now < give_up && (now < end || attacks.load() < kMinAttacks);
  };
  for (int i = 0; keep_going(); ++i) {
    const auto start = std::chrono::steady_clock::now();
    if (i % 4 == 0) {
      auto r = engine->Mutation("bystander", "harmless:add",
                                Value::FromObject({{"k", Value::Int64(i)}}));
      ASSERT_TRUE(r.ok()) << r.status();
      ++added;
    } else {
      auto r = engine->Query("bystander", "harmless:count", Value::Null());
      ASSERT_TRUE(r.ok()) << r.status();
      EXPECT_EQ(ToJson(r->value), std::to_string(added));
    }
    latencies_us.push_back(std::chrono::duration_cast<std::chrono::microseconds>(
                               std::chrono::steady_clock::now() - start)
                               .count());
  }
  stop = true;
  for (auto& t : attackers) t.join();
  const int64_t p50 = Percentile(latencies_us, 0.5), p99 = Percentile(latencies_us, 0.99);
  std::fprintf(stderr,
               "noisy neighbour: %zu victim calls, p50 %.2f ms, p99 %.2f ms, max %.2f ms; "
               "%d attacks meanwhile\n",
               latencies_us.size(), p50 / 1e3, p99 / 1e3, Percentile(latencies_us, 1.0) / 1e3,
               attacks.load());
  EXPECT_GE(attacks.load(), kMinAttacks);
  EXPECT_GT(latencies_us.size(), 50u);
  // One attack runs at a time on its own worker; the victim's calls wait at
  // most for isolate creation and the CPU the attack takes from the machine.
  EXPECT_LT(p99, kTimeFactor * 250'000) << "victim p99 " << p99 << " us";
}

// A request leaves behind everything it can: continuations of promises it
// never settles, a global resolver, a self-rescheduling microtask cut off by
// its CPU limit, stolen ctx.db functions, finalizers and waits where they
// exist. The same isolate's next requests see none of it run and commit
// only their own writes.
TEST_P(SandboxMisc, NothingOfARequestRunsInTheNext) {
  std::unique_ptr<Engine> engine = OpenEngine(GetParam(), 1, {{"leave.js", R"JS(
import { query, mutation } from "txfn/server";
export const leave = mutation(async (ctx, { i, spin }) => {
  let resolve;
  const pending = new Promise((r) => { resolve = r; });
  try {
    globalThis.leftover = resolve;
    globalThis.stolen = ctx.db;
  } catch (e) {
    // A hardened context's global object is frozen: nothing to leave there.
  }
  pending.then(() => ctx.db.insert("items", { k: "leaked-" + i }));
  if (typeof FinalizationRegistry === "function") {
    new FinalizationRegistry(() => ctx.db.insert("items", { k: "finalized" })).register({}, 1);
  }
  if (typeof SharedArrayBuffer === "function") {
    Atomics.waitAsync(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 1).value
        .then(() => ctx.db.insert("items", { k: "waited" }));
  }
  await ctx.db.insert("items", { k: "own-" + i });
  if (spin) (async () => { for (;;) { await null; } })();
  return i;
});
export const next = mutation(async (ctx, { i }) => {
  if (typeof globalThis.leftover === "function") globalThis.leftover();
  if (globalThis.stolen) await globalThis.stolen.insert("items", { k: "stolen" });
  await ctx.db.insert("items", { k: "next-" + i });
  await null;
  await null;
  return i;
});
export const keys = query(async (ctx) =>
  (await ctx.db.query("items").collect()).map((d) => d.k).filter((k) => typeof k === "string"));
)JS"}});
  ASSERT_NE(engine, nullptr);
  const int kRounds = 1000;
  std::vector<std::string> expected;
  for (int i = 0; i < kRounds; ++i) {
    const bool spin = i % 200 == 0;  // a request stopped by its CPU limit, now and then
    auto left =
        engine->Mutation("bystander", "leave:leave",
                         Value::FromObject({{"i", Value::Int64(i)}, {"spin", Value::Bool(spin)}}));
    if (spin) {
      ASSERT_EQ(left.status().code(), absl::StatusCode::kResourceExhausted) << left.status();
    } else {
      ASSERT_TRUE(left.ok()) << left.status();
      expected.push_back("own-" + std::to_string(i));
    }
    auto next =
        engine->Mutation("bystander", "leave:next", Value::FromObject({{"i", Value::Int64(i)}}));
    ASSERT_TRUE(next.ok()) << next.status();
    expected.push_back("next-" + std::to_string(i));
    if (i % 100 == 0 || i == kRounds - 1) {
      auto all = engine->Query("bystander", "leave:keys", Value::Null());
      ASSERT_TRUE(all.ok()) << all.status();
      std::vector<std::string> keys;
      for (const Value& k : all->value.array()) keys.push_back(k.string());
      std::vector<std::string> want = expected;
      std::sort(keys.begin(), keys.end());
      std::sort(want.begin(), want.end());
      ASSERT_EQ(keys, want) << "round " << i;
    }
  }
}

// A context kept for the tenant's next requests (reuse_context, trusted code): a job its
// request queued (here by the result's getter) runs in that request, inside its transaction,
// and never in the next one's. (Jobs still queued when a request ends run before the context
// is kept, with no request current. A ctx kept in a global or in module state is another
// matter: the kept context's ctx is one object, documented in function_runner.h.)
TEST(SandboxReuse, NothingOfARequestWritesInTheNextInAKeptContext) {
  std::unique_ptr<Engine> engine = OpenEngine(ContextMode::kFresh, 1, {{"keep.js", R"JS(
import { query, mutation } from "txfn/server";
export const leave = mutation(async (ctx, { i }) => {
  await ctx.db.insert("items", { k: "own-" + i });
  return { get x() {
    Promise.resolve().then(() => ctx.db.insert("items", { k: "left-" + i }));
    return i;
  } };
});
export const next = mutation(async (ctx, { i }) => {
  await ctx.db.insert("items", { k: "next-" + i });
  await null;
  return i;
});
export const keys = query(async (ctx) =>
  (await ctx.db.query("items").collect()).map((d) => d.k).filter((k) => typeof k === "string"));
)JS"}},
                                              /*reuse_context=*/true);
  ASSERT_NE(engine, nullptr);
  std::vector<std::string> expected;
  for (int i = 0; i < 20; ++i) {
    const Value args = Value::FromObject({{"i", Value::Int64(i)}});
    auto left = engine->Mutation("bystander", "keep:leave", args);
    ASSERT_TRUE(left.ok()) << left.status();
    auto after_left = engine->Query("bystander", "keep:keys", Value::Null());
    ASSERT_TRUE(after_left.ok()) << after_left.status();
    EXPECT_NE(absl::c_find(after_left->value.array(), Value::String("left-" + std::to_string(i))),
              after_left->value.array().end())
        << "the getter's job did not write in its own request " << i;
    auto next = engine->Mutation("bystander", "keep:next", args);
    ASSERT_TRUE(next.ok()) << next.status();
    if (i > 0) {
      EXPECT_TRUE(next->stats.context_reused) << i;
    }
    expected.push_back("own-" + std::to_string(i));
    expected.push_back("left-" + std::to_string(i));
    expected.push_back("next-" + std::to_string(i));
  }
  auto all = engine->Query("bystander", "keep:keys", Value::Null());
  ASSERT_TRUE(all.ok()) << all.status();
  std::vector<std::string> keys;
  for (const Value& k : all->value.array()) keys.push_back(k.string());
  std::sort(keys.begin(), keys.end());
  std::sort(expected.begin(), expected.end());
  EXPECT_EQ(keys, expected);
}

// Random calls of the natives with random argument shapes (tests/sandbox/
// fuzz.js), some cut off by the CPU limit at random points: the process
// survives, every call ends with a status the runtime documents, and the
// tenants still answer.
TEST_P(SandboxMisc, NativesFuzz) {
  const std::string dir = TXFN_SANDBOX_DIR;
  std::unique_ptr<Engine> engine =
      OpenEngine(GetParam(), 2, {{"fuzz.js", ReadFile(dir + "/fuzz.js")}});
  ASSERT_NE(engine, nullptr);
  std::map<absl::StatusCode, int> seen;
  for (int seed = 1; seed <= 600; ++seed) {
    Value args = Value::FromObject({{"seed", Value::Float64(seed)}});
    auto r = seed % 3 == 0 ? engine->Mutation("mallory", "fuzz:runMutation", args)
                           : engine->Query("mallory", "fuzz:runQuery", args);
    ++seen[r.status().code()];
    const absl::StatusCode code = r.status().code();
    EXPECT_TRUE(code == absl::StatusCode::kOk || code == absl::StatusCode::kInvalidArgument ||
                code == absl::StatusCode::kNotFound ||
                code == absl::StatusCode::kResourceExhausted || code == absl::StatusCode::kUnknown)
        << "seed " << seed << ": " << r.status();
    EXPECT_LT(r.status().message().size(), size_t{20} << 10) << "seed " << seed;
  }
  for (const auto& [code, n] : seen) {
    std::fprintf(stderr, "natives fuzz: %s x %d\n", absl::StatusCodeToString(code).c_str(), n);
  }
  EXPECT_GT(seen[absl::StatusCode::kOk], 0);
  EXPECT_GT(seen[absl::StatusCode::kResourceExhausted], 0);
  auto count = engine->Query("bystander", "harmless:count", Value::Null());
  ASSERT_TRUE(count.ok()) << count.status();
}

// Each export of sandbox module `module` (in a fresh engine of `mode`) must be stopped at
// its CPU or wall-clock limit, not abandoned in a builtin.
void ExpectEachStoppedAtItsLimit(ContextMode mode, const std::string& module,
                                 const std::vector<std::string>& exports,
                                 std::map<std::string, std::string> modules = {}) {
  const std::string dir = TXFN_SANDBOX_DIR;
  modules[module + ".js"] = ReadFile(dir + "/" + module + ".js");
  std::unique_ptr<Engine> engine = OpenEngine(mode, 1, modules);
  ASSERT_NE(engine, nullptr);
  // A GC pause or a slow native step on a loaded machine can outlast the short abandon grace
  // once; a builtin that cannot be interrupted is abandoned every time: up to three runs.
  constexpr int kRuns = 3;
  size_t abandoned_runs = 0;
  for (const std::string& name : exports) {
    for (int run = 1; run <= kRuns; ++run) {
      const auto start = std::chrono::steady_clock::now();
      auto r = engine->Query("mallory", module + ":" + name, Value::Null());
      const absl::Duration elapsed = absl::FromChrono(std::chrono::steady_clock::now() - start);
      const std::string message(r.status().message());
      if (run < kRuns && absl::StrContains(message, "cannot be interrupted")) {
        std::fprintf(stderr, "%s: abandoned after %.0f ms, run again\n", name.c_str(),
                     absl::ToDoubleMilliseconds(elapsed));
        ++abandoned_runs;
        continue;
      }
      EXPECT_EQ(r.status().code(), absl::StatusCode::kResourceExhausted)
          << name << ": " << r.status();
      EXPECT_THAT(message, HasSubstr("time limit")) << name;
      EXPECT_THAT(message, Not(HasSubstr("cannot be interrupted"))) << name;
      EXPECT_LE(elapsed, kTimeFactor * (2 * kAttackerCpu + kLoadedSlack)) << name;
      break;
    }
  }
  EXPECT_EQ(engine->stats().scheduler.abandoned, abandoned_runs);
}

// A native called back by a native runs no JavaScript between calls, so V8
// never checks for termination there; the builtins that call back get each
// callback wrapped in a JavaScript function. Each loop here (~0.5 ms a call,
// 10^5 calls) must stop at its limit like any other, not be abandoned.
TEST_P(SandboxMisc, NativesCalledBackByNativesStopAtTheLimit) {
  ExpectEachStoppedAtItsLimit(
      GetParam(), "callbacks",
      {"forEach",      "map",       "filter",     "every",         "some",
       "find",         "findIndex", "findLast",   "findLastIndex", "reduce",
       "reduceRight",  "sort",      "arrayFrom",  "typedForEach",  "typedMap",
       "typedFrom",    "typedSort", "mapForEach", "setForEach",    "then",
       "thenRejected", "finally_",  "reviver",    "replaceFn",     "replaceAllFn"});
}

// V8's string search costs a long needle's length at every position, in C++ (searches.js):
// the sandbox searches such needles in chunks, so the CPU limit stops them like a loop.
TEST_P(SandboxMisc, LongNeedleSearchesStopAtTheLimit) {
  ExpectEachStoppedAtItsLimit(
      GetParam(), "searches",
      {"indexOf", "lastIndexOf", "includes", "split", "replace", "replaceAll",
       "replaceShortSubject", "objectNeedle", "splitObject", "replaceObject", "replaceAllObject"});
}

// A regexp whose attempts fail far into a long text, or a long atom, runs quadratic in C++
// (regexps.js): the sandbox compiles such patterns behind an empty lookahead, so every failed
// attempt passes V8's termination check.
TEST_P(SandboxMisc, LongPatternRegExpsStopAtTheLimit) {
  // Literals in a module's source (regexps.js imports them), in eval's and in Function's.
  const std::string text = std::string(4096, 'a') + "b" + std::string(4096, 'a');
  // Also where a lexer that placed a regexp by the token before alone would read a division.
  const std::string literals = absl::StrCat(
      "export const literal = (s) => /", text, "/.test(s);\n",
      "export const literalInTemplate = (s) => `${/", text, "/g.exec(s)}`;\n",
      "export const literalAfterOf = (s) => { for (const m of /", text, "/.exec(s) ?? []) {} };\n",
      "export const literalAfterDeclaration = (s) => { let x\n/", text, "/.exec(s); };\n");
  ExpectEachStoppedAtItsLimit(GetParam(), "regexps",
                              {"constructed",       "called",         "global",
                               "ignoreCase",        "unicode",        "alternatives",
                               "captured",          "replaced",       "split",
                               "searched",          "matchString",    "matchAllString",
                               "searchString",      "copied",         "compiled",
                               "subclassed",        "atom",           "literal",
                               "literalInTemplate", "literalAfterOf", "literalAfterDeclaration",
                               "evaluated",         "functionBody"},
                              {{"literals.js", literals}});
}

// Tenants whose requests are stuck in a builtin V8 cannot interrupt (a
// for-in listing a typed array's keys) are abandoned, up to four per worker:
// more of them than workers neither delays their callers' answers nor holds
// the workers another tenant needs. (With one abandoned thread per worker,
// the third and fourth kept both workers until their builtins ended.)
TEST(SandboxAbandon, TenantsStuckInBuiltinsDoNotHoldTheWorkers) {
  // The default context mode; the stuck tenants get the default 1 s of CPU.
  std::unique_ptr<Engine> engine = OpenEngine(ContextMode::kHardened, 2, {});
  ASSERT_NE(engine, nullptr);
  constexpr int kStuck = 4;
  // About 3.5 s (and 350 MiB) without an interrupt check: longer than the
  // bystander's bound below, so it fails if the workers are held. (A for-in
  // over a 2^22-element typed array took as long with a 3 MiB young
  // generation; with 16 MiB it ends within the grace, never abandoned.)
  const std::string stuck = R"(import { query } from "txfn/server";
export const stuck = query(async () => {
  let n = 0;
  for (const k in "x".repeat(2 ** 22)) ++n;
  return n;
});
)";
  for (int i = 0; i < kStuck; ++i) {
    const std::string tenant = "stuck" + std::to_string(i);
    ASSERT_TRUE(engine->CreateTenant(tenant).ok());
    absl::Status deployed = engine->DeployJson(tenant, {{"m.js", stuck}}, kSchema);
    ASSERT_TRUE(deployed.ok()) << deployed;
  }

  // Each stuck call is answered at its CPU (1 s) or wall-clock limit (2 s) +
  // the grace; the last two start once the first two were abandoned.
  const absl::Duration answered_within =
      2 * (absl::Seconds(2) + kAbandonGrace) + kTimeFactor * kLoadedSlack;
  std::vector<std::thread> attackers;
  std::vector<absl::Status> outcomes(kStuck);
  std::vector<absl::Duration> took(kStuck);
  for (int i = 0; i < kStuck; ++i) {
    attackers.emplace_back([&, i] {
      const auto start = std::chrono::steady_clock::now();
      outcomes[i] = engine->Query("stuck" + std::to_string(i), "m:stuck", Value::Null()).status();
      took[i] = absl::FromChrono(std::chrono::steady_clock::now() - start);
    });
  }
  for (std::thread& t : attackers) t.join();
  for (int i = 0; i < kStuck; ++i) {
    EXPECT_EQ(outcomes[i].code(), absl::StatusCode::kResourceExhausted) << outcomes[i];
    EXPECT_THAT(std::string(outcomes[i].message()), HasSubstr("cannot be interrupted"));
    EXPECT_LE(took[i], answered_within) << "stuck" << i;
  }
  // Their builtins still run, abandoned; the workers serve the bystander.
  const auto start = std::chrono::steady_clock::now();
  auto count = engine->Query("bystander", "harmless:count", Value::Null());
  const absl::Duration bystander = absl::FromChrono(std::chrono::steady_clock::now() - start);
  ASSERT_TRUE(count.ok()) << count.status();
  EXPECT_EQ(ToJson(count->value), "0");
  EXPECT_LE(bystander, kTimeFactor * kLoadedSlack);
  EXPECT_EQ(engine->stats().scheduler.abandoned, static_cast<uint64_t>(kStuck));
  // (Closing the engine waits for the abandoned builtins to return.)
}

INSTANTIATE_TEST_SUITE_P(Modes, SandboxMisc,
                         ::testing::Values(ContextMode::kHardened, ContextMode::kFresh),
                         [](const ::testing::TestParamInfo<ContextMode>& info) {
                           return ModeName(info.param);
                         });

}  // namespace
}  // namespace txfn

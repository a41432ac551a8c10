// Tests of txfn/value.h: order, the three encodings, limits, and round-trip
// property tests over randomly generated Values (fixed seeds, so a failure
// reproduces).
#include "txfn/value.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/hash/hash.h"
#include "absl/strings/escaping.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace txfn {
namespace {

using ::testing::HasSubstr;

constexpr double kInf = std::numeric_limits<double>::infinity();
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr int64_t kInt64Min = std::numeric_limits<int64_t>::min();
constexpr int64_t kInt64Max = std::numeric_limits<int64_t>::max();

Value S(std::string s) { return Value::String(std::move(s)); }
Value I(int64_t v) { return Value::Int64(v); }
Value F(double v) { return Value::Float64(v); }
Value A(Value::Array a) { return Value::FromArray(std::move(a)); }
Value O(Value::Object o) { return Value::FromObject(std::move(o)); }

int Sign(int c) { return (c > 0) - (c < 0); }

int KeyOrder(const Value& a, const Value& b) { return Sign(EncodeKey(a).compare(EncodeKey(b))); }

// Nests `v` in `levels` single-element arrays.
Value Nest(Value v, int levels) {
  for (int i = 0; i < levels; ++i) v = A({v});
  return v;
}

// ---- Random values -----------------------------------------------------------------

class ValueGenerator {
 public:
  explicit ValueGenerator(uint64_t seed) : rng_(seed) {}

  Value Random(int max_depth = 4) {
    int kind = Uniform(max_depth > 0 ? 10 : 8);
    switch (kind) {
      case 0:
        return Value::Null();
      case 1:
        return I(RandomInt());
      case 2:
        return F(RandomFloat());
      case 3:
        return Value::Bool(Uniform(2) == 1);
      case 4:
      case 5:
        return S(RandomString());
      case 6:
      case 7:
        return Value::Bytes(RandomBytes());
      case 8: {
        Value::Array a;
        for (int n = Uniform(5); n > 0; --n) a.push_back(Random(max_depth - 1));
        return A(std::move(a));
      }
      default: {
        Value::Object o;
        for (int n = Uniform(5); n > 0; --n) o[RandomName()] = Random(max_depth - 1);
        return O(std::move(o));
      }
    }
  }

  // A value near `v`: one leaf changed, or one element added or removed.
  Value Mutate(const Value& v, int max_depth = 4) {
    if (v.is_array() && !v.array().empty() && Uniform(4) != 0) {
      Value::Array a = v.array();
      size_t i = static_cast<size_t>(Uniform(static_cast<int>(a.size())));
      switch (Uniform(3)) {
        case 0:
          a[i] = Mutate(a[i], max_depth - 1);
          break;
        case 1:
          a.erase(a.begin() + static_cast<ptrdiff_t>(i));
          break;
        default:
          a.insert(a.begin() + static_cast<ptrdiff_t>(i), Random(max_depth - 1));
      }
      return A(std::move(a));
    }
    if (v.is_object() && !v.object().empty() && Uniform(4) != 0) {
      Value::Object o = v.object();
      auto it = o.begin();
      std::advance(it, Uniform(static_cast<int>(o.size())));
      switch (Uniform(3)) {
        case 0:
          it->second = Mutate(it->second, max_depth - 1);
          break;
        case 1:
          o.erase(it);
          break;
        default:
          o[RandomName()] = Random(max_depth - 1);
      }
      return O(std::move(o));
    }
    switch (v.type()) {
      case ValueType::kInt64:
        return I(static_cast<int64_t>(static_cast<uint64_t>(v.int64()) + Uniform(3) - 1));
      case ValueType::kString: {
        std::string s = v.string();
        if (!s.empty() && Uniform(2) == 0) {
          s.pop_back();
        } else {
          s += RandomString(2);
        }
        return S(std::move(s));
      }
      case ValueType::kBytes: {
        std::string s = v.bytes();
        if (!s.empty() && Uniform(2) == 0) {
          s.back() = static_cast<char>(Uniform(256));
        } else {
          s += RandomBytes(2);
        }
        return Value::Bytes(std::move(s));
      }
      default:
        return Random(std::max(0, max_depth));
    }
  }

  int Uniform(int n) { return std::uniform_int_distribution<int>(0, n - 1)(rng_); }

 private:
  int64_t RandomInt() {
    static constexpr int64_t kSpecial[] = {
        0, 1, -1, kInt64Min, kInt64Max, kInt64Min + 1, kInt64Max - 1, 255, 256, -256};
    if (Uniform(4) == 0) return kSpecial[Uniform(std::size(kSpecial))];
    uint64_t bits = rng_() >> Uniform(64);
    return Uniform(2) ? static_cast<int64_t>(bits) : -static_cast<int64_t>(bits >> 1);
  }

  double RandomFloat() {
    static constexpr double kSpecial[] = {0.0,
                                          -0.0,
                                          1.0,
                                          -1.0,
                                          kInf,
                                          -kInf,
                                          kNaN,
                                          -kNaN,
                                          std::numeric_limits<double>::denorm_min(),
                                          -std::numeric_limits<double>::denorm_min(),
                                          std::numeric_limits<double>::max(),
                                          -std::numeric_limits<double>::max(),
                                          0.1,
                                          1e300,
                                          -2.5e-300};
    switch (Uniform(4)) {
      case 0:
        return kSpecial[Uniform(std::size(kSpecial))];
      case 1:
        return std::bit_cast<double>(rng_());  // includes NaNs with payloads
      case 2:
        return static_cast<double>(Uniform(2001) - 1000);
      default:
        return std::uniform_real_distribution<double>(-1e6, 1e6)(rng_);
    }
  }

  // Valid UTF-8, from a small alphabet so that values share prefixes.
  std::string RandomString(int max_len = 6) {
    static const char* const kPieces[] = {
        "a",  "b",  "z",  "\x01", "\x7f", "\xc3\xa9", "\xe2\x82\xac", "\xf0\x9f\x98\x80",
        "\"", "\\", "\n", "\x1f"};
    std::string s;
    for (int n = Uniform(max_len + 1); n > 0; --n) {
      if (Uniform(5) == 0) {
        s.push_back('\0');
      } else {
        s += kPieces[Uniform(std::size(kPieces))];
      }
    }
    return s;
  }

  std::string RandomBytes(int max_len = 6) {
    static constexpr unsigned char kBytes[] = {0x00, 0x01, 0x7f, 0x80, 0xfe, 0xff, 'a'};
    std::string s;
    for (int n = Uniform(max_len + 1); n > 0; --n) {
      s.push_back(
          static_cast<char>(Uniform(3) == 0 ? Uniform(256) : kBytes[Uniform(std::size(kBytes))]));
    }
    return s;
  }

  std::string RandomName() {
    static const std::string kNames[] = {
        "a", "b", "ab", "", std::string("\0", 1), std::string("x\0y", 3), "\xc3\xa9", "z", "_id"};
    return kNames[Uniform(std::size(kNames))];
  }

  std::mt19937_64 rng_;
};

// ---- Construction, access, lookup ------------------------------------------------

TEST(ValueTest, ConstructsAndReadsEachType) {
  EXPECT_TRUE(Value().is_null());
  EXPECT_EQ(Value::Null().type(), ValueType::kNull);
  EXPECT_EQ(I(-7).int64(), -7);
  EXPECT_EQ(F(2.5).float64(), 2.5);
  EXPECT_TRUE(Value::Bool(true).boolean());
  EXPECT_EQ(S("hi").string(), "hi");
  EXPECT_EQ(Value::Bytes(std::string("\0\1", 2)).bytes(), std::string("\0\1", 2));
  EXPECT_EQ(A({I(1), I(2)}).array().size(), 2u);
  EXPECT_EQ(O({{"a", I(1)}}).object().size(), 1u);
  EXPECT_TRUE(S("x").is_string());
  EXPECT_FALSE(S("x").is_bytes());
}

// An accessor of another type stops the program with a message in every build (a release
// build read a null pointer: a segfault without a word, a new user's first crash).
TEST(ValueDeathTest, AnAccessorOfTheWrongTypeSaysWhichAndAborts) {
  EXPECT_DEATH((void)Value::Float64(1).int64(),
               "txfn::Value::int64\\(\\) called on a float64 value");
  EXPECT_DEATH((void)Value::Null().string(), "txfn::Value::string\\(\\) called on a null value");
  EXPECT_DEATH((void)Value::String("x").object(),
               "txfn::Value::object\\(\\) called on a string value");
}

TEST(ValueTest, TypeNames) {
  EXPECT_EQ(ValueTypeName(ValueType::kNull), "null");
  EXPECT_EQ(ValueTypeName(ValueType::kInt64), "int64");
  EXPECT_EQ(ValueTypeName(ValueType::kFloat64), "float64");
  EXPECT_EQ(ValueTypeName(ValueType::kBool), "bool");
  EXPECT_EQ(ValueTypeName(ValueType::kString), "string");
  EXPECT_EQ(ValueTypeName(ValueType::kBytes), "bytes");
  EXPECT_EQ(ValueTypeName(ValueType::kArray), "array");
  EXPECT_EQ(ValueTypeName(ValueType::kObject), "object");
}

TEST(ValueTest, CopiesShareContainers) {
  Value a = A({S("x"), S("y")});
  Value b = a;
  EXPECT_EQ(&a.array(), &b.array());
  Value o = O({{"k", I(1)}});
  Value p = o;
  EXPECT_EQ(&o.object(), &p.object());
}

TEST(ValueTest, FindAndFindPath) {
  Value doc = O({{"author", O({{"name", S("ada")}, {"age", I(36)}})}, {"tags", A({S("x")})}});
  ASSERT_NE(doc.Find("author"), nullptr);
  EXPECT_EQ(doc.Find("missing"), nullptr);
  ASSERT_NE(doc.FindPath("author.name"), nullptr);
  EXPECT_EQ(*doc.FindPath("author.name"), S("ada"));
  EXPECT_EQ(*doc.FindPath("author"), doc.object().at("author"));
  EXPECT_EQ(doc.FindPath("author.missing"), nullptr);
  EXPECT_EQ(doc.FindPath("author.name.first"), nullptr);  // through a string
  EXPECT_EQ(doc.FindPath("tags.0"), nullptr);             // arrays have no fields
  EXPECT_EQ(doc.FindPath(""), nullptr);
  EXPECT_EQ(doc.FindPath("author."), nullptr);
  EXPECT_EQ(I(1).Find("a"), nullptr);
  EXPECT_EQ(I(1).FindPath("a.b"), nullptr);
}

TEST(ValueTest, DebugStringIsJson) {
  Value v = O({{"a", A({I(1), F(1.5), Value::Null()})}});
  EXPECT_EQ(v.DebugString(), ToJson(v));
  EXPECT_EQ(v.DebugString(), R"({"a":[{"$int64":"1"},1.5,null]})");
}

TEST(ValueTest, HashAgreesWithEquality) {
  EXPECT_EQ(absl::Hash<Value>()(F(kNaN)), absl::Hash<Value>()(F(-kNaN)));
  EXPECT_EQ(absl::Hash<Value>()(A({S("a")})), absl::Hash<Value>()(A({S("a")})));
  absl::flat_hash_set<Value> set = {I(1), F(1.0), S("1"), F(kNaN), F(-0.0), F(0.0)};
  EXPECT_EQ(set.size(), 6u);
  EXPECT_TRUE(set.contains(F(std::bit_cast<double>(uint64_t{0x7FF0000000000001}))));
  EXPECT_FALSE(set.contains(I(2)));
}

// ---- Order -------------------------------------------------------------------------

// Values in strictly ascending order, covering every type and its edge cases.
std::vector<Value> AscendingValues() {
  std::string nul(1, '\0');
  return {
      Value::Null(),
      I(kInt64Min),
      I(kInt64Min + 1),
      I(-256),
      I(-1),
      I(0),
      I(1),
      I(255),
      I(256),
      I(kInt64Max),
      F(-kInf),
      F(-std::numeric_limits<double>::max()),
      F(-1.0),
      F(-std::numeric_limits<double>::denorm_min()),
      F(-0.0),
      F(0.0),
      F(std::numeric_limits<double>::denorm_min()),
      F(1.0),
      F(std::numeric_limits<double>::max()),
      F(kInf),
      F(kNaN),
      Value::Bool(false),
      Value::Bool(true),
      S(""),
      S(nul),
      S(nul + nul),
      S(nul + "a"),
      S("\x01"),
      S("a"),
      S("a" + nul),
      S("a" + nul + nul),
      S("a\x01"),
      S("ab"),
      S("b"),
      S("\xc3\xa9"),
      S("\xff"),
      Value::Bytes(""),
      Value::Bytes(nul),
      Value::Bytes("a"),
      Value::Bytes("\xff"),
      Value::Bytes("\xff\xff"),
      A({}),
      A({Value::Null()}),
      A({Value::Null(), Value::Null()}),
      A({I(1)}),
      A({I(1), S("")}),
      A({F(0.0)}),
      A({S("a")}),
      A({S("a"), Value::Null()}),
      A({S("a" + nul)}),
      A({A({})}),
      A({A({}), Value::Null()}),
      A({A({Value::Null()})}),
      A({O({})}),
      O({}),
      O({{"", Value::Null()}}),
      O({{nul, Value::Null()}}),
      O({{"a", Value::Null()}}),
      O({{"a", Value::Null()}, {"b", Value::Null()}}),
      O({{"a", I(1)}}),
      O({{"a", I(1)}, {"b", Value::Null()}}),
      O({{"a", I(2)}}),
      O({{"a", S("")}}),
      O({{"a" + nul, Value::Null()}}),
      O({{"b", Value::Null()}}),
  };
}

TEST(ValueOrderTest, AscendingListIsStrictlyOrderedByCompareAndKeys) {
  std::vector<Value> values = AscendingValues();
  for (size_t i = 0; i < values.size(); ++i) {
    for (size_t j = 0; j < values.size(); ++j) {
      int expected = (i > j) - (i < j);
      EXPECT_EQ(Compare(values[i], values[j]), expected)
          << values[i].DebugString() << " vs " << values[j].DebugString();
      EXPECT_EQ(KeyOrder(values[i], values[j]), expected)
          << values[i].DebugString() << " vs " << values[j].DebugString();
    }
  }
}

TEST(ValueOrderTest, Int64SortsBeforeEveryFloat) {
  EXPECT_LT(I(kInt64Max), F(-kInf));
  EXPECT_LT(I(5), F(1.0));
  EXPECT_NE(I(1), F(1.0));
}

TEST(ValueOrderTest, AllNaNsAreEqualAndAboveInfinity) {
  Value quiet = F(kNaN);
  Value negative = F(-kNaN);
  Value payload = F(std::bit_cast<double>(uint64_t{0x7FF0000000000001}));
  EXPECT_EQ(quiet, negative);
  EXPECT_EQ(quiet, payload);
  EXPECT_EQ(EncodeKey(quiet), EncodeKey(payload));
  EXPECT_GT(negative, F(kInf));
}

TEST(ValueOrderTest, NegativeZeroIsBelowPositiveZero) {
  EXPECT_LT(F(-0.0), F(0.0));
  EXPECT_NE(F(-0.0), F(0.0));
  EXPECT_LT(EncodeKey(F(-0.0)), EncodeKey(F(0.0)));
}

TEST(ValueOrderTest, SpaceshipOperator) {
  EXPECT_TRUE((I(1) <=> I(2)) == std::strong_ordering::less);
  EXPECT_TRUE((S("b") <=> S("a")) == std::strong_ordering::greater);
  EXPECT_TRUE((A({I(1)}) <=> A({I(1)})) == std::strong_ordering::equal);
}

// ---- Key encoding ------------------------------------------------------------------

TEST(ValueKeyTest, EveryKeyStartsWithATagAboveTheMarkers) {
  for (const Value& v : AscendingValues()) {
    std::string key = EncodeKey(v);
    ASSERT_FALSE(key.empty());
    EXPECT_GE(static_cast<unsigned char>(key[0]), 0x10) << v.DebugString();
    EXPECT_LT(std::string(1, kKeyAbsentField), key);
  }
}

TEST(ValueKeyTest, EncodesKnownBytes) {
  EXPECT_EQ(EncodeKey(Value::Null()), "\x10");
  EXPECT_EQ(EncodeKey(I(0)), std::string("\x20\x80\0\0\0\0\0\0\0", 9));
  EXPECT_EQ(EncodeKey(S(std::string("a\0b", 3))), std::string("\x50"
                                                              "a\0\xff"
                                                              "b\0\0",
                                                              7));
  EXPECT_EQ(EncodeKey(A({})), std::string("\x70\0", 2));
}

TEST(ValueKeyTest, AppendKeyAppends) {
  std::string out = "prefix";
  AppendKey(I(3), &out);
  AppendKey(S("x"), &out);
  EXPECT_EQ(out, "prefix" + EncodeKey(I(3)) + EncodeKey(S("x")));
}

TEST(ValueKeyTest, RoundTripsEdgeCases) {
  for (const Value& v : AscendingValues()) {
    absl::StatusOr<Value> back = DecodeKey(EncodeKey(v));
    ASSERT_TRUE(back.ok()) << back.status() << " for " << v.DebugString();
    EXPECT_EQ(*back, v);
    EXPECT_EQ(back->type(), v.type());
  }
  absl::StatusOr<Value> neg_zero = DecodeKey(EncodeKey(F(-0.0)));
  ASSERT_TRUE(neg_zero.ok());
  EXPECT_TRUE(std::signbit(neg_zero->float64()));
}

TEST(ValueKeyTest, DecodeKeyPrefixWalksATuple) {
  std::string key = EncodeKey(S("a")) + EncodeKey(I(7)) + EncodeKey(A({Value::Null()}));
  std::string_view rest = key;
  absl::StatusOr<Value> a = DecodeKeyPrefix(&rest);
  absl::StatusOr<Value> b = DecodeKeyPrefix(&rest);
  absl::StatusOr<Value> c = DecodeKeyPrefix(&rest);
  ASSERT_TRUE(a.ok() && b.ok() && c.ok());
  EXPECT_EQ(*a, S("a"));
  EXPECT_EQ(*b, I(7));
  EXPECT_EQ(*c, A({Value::Null()}));
  EXPECT_TRUE(rest.empty());
  EXPECT_FALSE(DecodeKeyPrefix(&rest).ok());
  // A failed decode leaves the input untouched.
  std::string_view bad = "\x50zz";
  EXPECT_FALSE(DecodeKeyPrefix(&bad).ok());
  EXPECT_EQ(bad, "\x50zz");
}

TEST(ValueKeyTest, RejectsMalformedKeys) {
  const std::string bad[] = {
      "",
      std::string(1, kKeyAbsentField),
      "\x05",
      "\x11",
      "\x20\x80",      // truncated int64
      "\x30\x01\x02",  // truncated float64
      "\x50"
      "abc",  // unterminated string
      std::string("\x50"
                  "a\0",
                  3),  // truncated terminator
      std::string("\x50"
                  "a\0\x01",
                  4),                    // bad escape
      std::string("\x60\0\x7f\0\0", 5),  // bad escape in bytes
      "\x70\x10",                        // unterminated array
      std::string("\x70\x01\0", 3),      // marker inside array
      "\x80\x10",                        // field without a name
      std::string("\x80\x50"
                  "b\0\0\x10\x50"
                  "a\0\0\x10\0",
                  13),  // names out of order
      std::string("\x80\x50"
                  "a\0\0\x10\x50"
                  "a\0\0\x10\0",
                  13),          // duplicate names
      std::string("\x10\x10"),  // trailing bytes
      EncodeKey(I(1)) + "x",
  };
  for (const std::string& key : bad) {
    absl::StatusOr<Value> v = DecodeKey(key);
    EXPECT_FALSE(v.ok()) << "accepted " << absl::CEscape(key);
    if (!v.ok()) {
      EXPECT_EQ(v.status().code(), absl::StatusCode::kInvalidArgument);
    }
  }
  // A NaN other than the canonical one is not a valid key.
  std::string nan_key = EncodeKey(F(kNaN));
  nan_key.back() = '\x01';
  EXPECT_FALSE(DecodeKey(nan_key).ok());
}

TEST(ValueKeyTest, DepthLimit) {
  EXPECT_TRUE(DecodeKey(EncodeKey(Nest(I(1), kMaxDecodeDepth))).ok());
  absl::StatusOr<Value> deep = DecodeKey(EncodeKey(Nest(I(1), kMaxDecodeDepth + 1)));
  ASSERT_FALSE(deep.ok());
  EXPECT_THAT(deep.status().message(), HasSubstr("deep"));
  // A hostile key of a million array openers fails cleanly (no stack overflow).
  EXPECT_FALSE(DecodeKey(std::string(1'000'000, '\x70')).ok());
}

TEST(ValueKeyTest, TuplesOrderLexicographically) {
  std::string nul(1, '\0');
  // ("a", 2) < ("a\0", 1): the first element decides even though it is a prefix.
  EXPECT_LT(EncodeKey(S("a")) + EncodeKey(I(2)), EncodeKey(S("a" + nul)) + EncodeKey(I(1)));
  EXPECT_LT(EncodeKey(S("a")) + EncodeKey(I(2)), EncodeKey(S("ab")) + EncodeKey(I(1)));
  EXPECT_LT(EncodeKey(A({I(1)})) + EncodeKey(I(9)), EncodeKey(A({I(1), I(0)})) + EncodeKey(I(0)));
  // An absent field sorts before every present one in the same position.
  EXPECT_LT(EncodeKey(S("a")) + kKeyAbsentField, EncodeKey(S("a")) + EncodeKey(Value::Null()));
  EXPECT_LT(std::string(1, kKeyAbsentField) + EncodeKey(I(9)), EncodeKey(Value::Null()));
}

// ---- Binary encoding ---------------------------------------------------------------

TEST(ValueBinaryTest, IsCompact) {
  EXPECT_EQ(EncodeBinary(Value::Null()).size(), 1u);
  EXPECT_EQ(EncodeBinary(Value::Bool(true)).size(), 1u);
  EXPECT_EQ(EncodeBinary(I(3)).size(), 2u);
  EXPECT_EQ(EncodeBinary(I(-64)).size(), 2u);
  EXPECT_EQ(EncodeBinary(I(kInt64Min)).size(), 11u);
  EXPECT_EQ(EncodeBinary(F(1.5)).size(), 9u);
  EXPECT_EQ(EncodeBinary(S("general")).size(), 8u);
  EXPECT_EQ(EncodeBinary(S(std::string(15, 'x'))).size(), 17u);
  EXPECT_EQ(EncodeBinary(O({{"likes", I(3)}})).size(), 1u + 1 + 5 + 2);
}

TEST(ValueBinaryTest, RoundTripsEdgeCasesAndKeepsFloatBits) {
  for (const Value& v : AscendingValues()) {
    std::string wire = EncodeBinary(v);
    EXPECT_EQ(v.ByteSize(), wire.size());
    absl::StatusOr<Value> back = DecodeBinary(wire);
    ASSERT_TRUE(back.ok()) << back.status() << " for " << v.DebugString();
    EXPECT_EQ(*back, v);
  }
  double payload_nan = std::bit_cast<double>(uint64_t{0xFFF0000000000123});
  absl::StatusOr<Value> back = DecodeBinary(EncodeBinary(F(payload_nan)));
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(std::bit_cast<uint64_t>(back->float64()), uint64_t{0xFFF0000000000123});
  back = DecodeBinary(EncodeBinary(F(-0.0)));
  ASSERT_TRUE(back.ok());
  EXPECT_TRUE(std::signbit(back->float64()));
}

TEST(ValueBinaryTest, LongLengthsUseAVarint) {
  std::string big(100000, '\0');
  Value v = Value::Bytes(big);
  absl::StatusOr<Value> back = DecodeBinary(EncodeBinary(v));
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(back->bytes(), big);
  Value::Array many(1000, I(1));
  back = DecodeBinary(EncodeBinary(A(many)));
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(back->array().size(), 1000u);
}

TEST(ValueBinaryTest, RejectsMalformedInput) {
  const std::string bad[] = {
      "",
      "\x08",                                          // unknown type
      "\x10",                                          // null with a payload nibble
      "\x23",                                          // bool nibble 2
      "\x01",                                          // int64 without varint
      "\x01\x80",                                      // truncated varint
      std::string("\x01\x80\0", 3),                    // overlong varint
      "\x01\xff\xff\xff\xff\xff\xff\xff\xff\xff\x02",  // varint beyond 64 bits
      "\x02\x01\x02",                                  // truncated float
      "\x34"
      "ab",                                        // string shorter than its length
      "\xf4\xff\xff\xff\xff\x0f",                  // huge length, no data
      "\xf6\xff\xff\xff\xff\xff\xff\xff\xff\x01",  // huge array count
      "\xf7\xff\xff\xff\xff\x0f",                  // huge object count
      "\x16\x00\x00",                              // trailing bytes
      "\x27\x01"
      "b"
      "\x00\x01"
      "a"
      "\x00",  // names out of order
      "\x27\x01"
      "a"
      "\x00\x01"
      "a"
      "\x00",  // duplicate names
      "\x17\x05"
      "a",  // name longer than the input
  };
  for (const std::string& wire : bad) {
    absl::StatusOr<Value> v = DecodeBinary(wire);
    EXPECT_FALSE(v.ok()) << "accepted " << absl::CEscape(wire);
    if (!v.ok()) {
      EXPECT_EQ(v.status().code(), absl::StatusCode::kInvalidArgument);
    }
  }
}

TEST(ValueBinaryTest, HostileNestedCountsFailWithoutHugeAllocations) {
  // 60 nested arrays each claiming 500,000 elements, then junk: every claim
  // fits the remaining input, so only bounded reservations keep this small.
  std::string wire;
  for (int i = 0; i < 60; ++i) {
    wire.push_back('\xf6');
    uint64_t extra = 500000 - 15;
    while (extra >= 0x80) {
      wire.push_back(static_cast<char>((extra & 0x7F) | 0x80));
      extra >>= 7;
    }
    wire.push_back(static_cast<char>(extra));
  }
  wire.append(600000, '\x08');
  EXPECT_FALSE(DecodeBinary(wire).ok());
}

TEST(ValueBinaryTest, DepthLimit) {
  EXPECT_TRUE(DecodeBinary(EncodeBinary(Nest(I(1), kMaxDecodeDepth))).ok());
  EXPECT_FALSE(DecodeBinary(EncodeBinary(Nest(I(1), kMaxDecodeDepth + 1))).ok());
  EXPECT_FALSE(DecodeBinary(std::string(1'000'000, '\x16')).ok());
}

// ---- JSON --------------------------------------------------------------------------

TEST(ValueJsonTest, WritesTheDocumentedForms) {
  Value msg = O({{"channel", S("general")}, {"likes", I(3)}});
  EXPECT_EQ(ToJson(msg), R"({"channel":"general","likes":{"$int64":"3"}})");
  EXPECT_EQ(ToJson(Value::Null()), "null");
  EXPECT_EQ(ToJson(Value::Bool(false)), "false");
  EXPECT_EQ(ToJson(I(kInt64Min)), R"({"$int64":"-9223372036854775808"})");
  EXPECT_EQ(ToJson(F(1.5)), "1.5");
  EXPECT_EQ(ToJson(F(-0.0)), "-0.0");
  EXPECT_EQ(ToJson(F(kNaN)), R"({"$float64":"NaN"})");
  EXPECT_EQ(ToJson(F(kInf)), R"({"$float64":"Infinity"})");
  EXPECT_EQ(ToJson(F(-kInf)), R"({"$float64":"-Infinity"})");
  EXPECT_EQ(ToJson(Value::Bytes("hello")), R"({"$bytes":"aGVsbG8="})");
  EXPECT_EQ(ToJson(A({})), "[]");
  EXPECT_EQ(ToJson(O({})), "{}");
}

TEST(ValueJsonTest, EscapesStrings) {
  EXPECT_EQ(ToJson(S(std::string("a\0b", 3))), R"("a\u0000b")");
  EXPECT_EQ(ToJson(S("q\"b\\n\n\t\x1f\x7f")), "\"q\\\"b\\\\n\\n\\t\\u001f\\u007f\"");
  EXPECT_EQ(ToJson(S("\xc3\xa9\xf0\x9f\x98\x80")), "\"\xc3\xa9\xf0\x9f\x98\x80\"");
  // C1 controls too (U+009B is a CSI to some terminals), and they read back.
  EXPECT_EQ(ToJson(S("a\xc2\x9b"
                     "2J\xc2\x80\xc2\x9f\xc2\xa0")),
            "\"a\\u009b2J\\u0080\\u009f\xc2\xa0\"");
  EXPECT_EQ(FromJson(ToJson(S("a\xc2\x9b\x7f"))).value(), S("a\xc2\x9b\x7f"));
  // Bytes that are not UTF-8 become U+FFFD.
  EXPECT_EQ(ToJson(S("a\xff")), "\"a\xef\xbf\xbd\"");
  EXPECT_EQ(ToJson(S("\xed\xa0\x80")), "\"\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\"");
}

TEST(ValueJsonTest, ReadsJson) {
  absl::StatusOr<Value> v =
      FromJson(R"( { "a" : [1, -2.5e3, true, false, null, "x\u00e9\ud83d\ude00\/"] ,
                     "b": {"$int64": "-42"}, "c": {"$bytes": "aGVsbG8="},
                     "d": {"$float64": "-Infinity"}, "e": {} } )");
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_EQ(*v, O({{"a", A({F(1), F(-2500), Value::Bool(true), Value::Bool(false), Value::Null(),
                            S("x\xc3\xa9\xf0\x9f\x98\x80/")})},
                   {"b", I(-42)},
                   {"c", Value::Bytes("hello")},
                   {"d", F(-kInf)},
                   {"e", O({})}}));
}

TEST(ValueJsonTest, NumbersAreFloats) {
  EXPECT_EQ(*FromJson("3"), F(3));
  EXPECT_EQ(*FromJson("0"), F(0));
  absl::StatusOr<Value> neg_zero = FromJson("-0");
  ASSERT_TRUE(neg_zero.ok());
  EXPECT_TRUE(std::signbit(neg_zero->float64()));
  neg_zero = FromJson("-0.0");
  ASSERT_TRUE(neg_zero.ok());
  EXPECT_TRUE(std::signbit(neg_zero->float64()));
  EXPECT_EQ(*FromJson("1e400"), F(kInf));
  EXPECT_EQ(*FromJson("-1e400"), F(-kInf));
  EXPECT_EQ(*FromJson("1e-400"), F(0.0));
  EXPECT_EQ(*FromJson("0.1"), F(0.1));
  EXPECT_EQ(*FromJson("1.7976931348623157e308"), F(std::numeric_limits<double>::max()));
  EXPECT_EQ(*FromJson("5e-324"), F(std::numeric_limits<double>::denorm_min()));
  EXPECT_EQ(*FromJson(R"({"$float64":"NaN"})"), F(kNaN));
}

TEST(ValueJsonTest, RejectsMalformedJson) {
  const std::string bad[] = {
      "",
      " ",
      "nul",
      "truex",
      "01",
      "1.",
      ".5",
      "+1",
      "1e",
      "-",
      "NaN",
      "Infinity",
      "[1,]",
      "[1 2]",
      "{\"a\":1,}",
      "{\"a\" 1}",
      "{a:1}",
      "{\"a\":1,\"a\":2}",
      "\"abc",
      "\"a\x01\"",
      "\"\\x\"",
      "\"\\u12\"",
      "\"\\ud800\"",
      "\"\\ud800\\u0041\"",
      "\"\\udc00\"",
      "\"\xff\"",
      "\"\xc0\x80\"",
      "\"\xed\xa0\x80\"",
      "1 2",
      R"({"$int64":"1.0"})",
      R"({"$int64":"01"})",
      R"({"$int64":"+1"})",
      R"({"$int64":""})",
      R"({"$int64":"9223372036854775808"})",
      R"({"$int64":1})",
      R"({"$int64":"1","x":2})",
      R"({"$float64":"nan"})",
      R"({"$bytes":"***"})",
      R"({"$other":"x"})",
      R"({"a":1,"$int64":"1"})",
  };
  for (const std::string& json : bad) {
    absl::StatusOr<Value> v = FromJson(json);
    EXPECT_FALSE(v.ok()) << "accepted " << absl::CEscape(json);
    if (!v.ok()) {
      EXPECT_EQ(v.status().code(), absl::StatusCode::kInvalidArgument);
    }
  }
}

// An error inside objects and arrays names where: the path of the field or element being read
// (a trial: offsets alone were hard to find in a long argument object).
TEST(ValueJsonTest, ErrorsNameThePathOfTheFieldOrElement) {
  const std::pair<std::string, std::string> cases[] = {
      {R"({"items":[{"price":1},{"price":1.}]})", "(at $.items[1].price): bad number fraction"},
      {R"({"a":{"b":1,"b":2}})", "(at $.a.b): duplicate field name"},
      {R"({"a b":[true, nul]})", R"((at $["a b"][1]): invalid literal)"},
      {R"({"n":{"$int64":"01"}})", "(at $.n): bad $int64 value"},
      {R"([1,[2,{"x":"\q"}]])", "(at $[1][1].x): bad escape in string"},
  };
  for (const auto& [json, want] : cases) {
    absl::StatusOr<Value> v = FromJson(json);
    ASSERT_FALSE(v.ok()) << json;
    EXPECT_THAT(std::string(v.status().message()), HasSubstr(want)) << json;
  }
  // At the top level: no path.
  EXPECT_EQ(FromJson("[1 2]").status().message(),
            "invalid JSON at offset 3: expected ',' or ']' in array");
}

TEST(ValueJsonTest, Int64ExtremesRoundTrip) {
  for (int64_t i : {kInt64Min, kInt64Max, int64_t{0}, int64_t{-1}}) {
    absl::StatusOr<Value> v = FromJson(ToJson(I(i)));
    ASSERT_TRUE(v.ok());
    EXPECT_EQ(*v, I(i));
  }
}

TEST(ValueJsonTest, DepthLimit) {
  EXPECT_TRUE(FromJson(ToJson(Nest(I(1), kMaxDecodeDepth))).ok());
  EXPECT_FALSE(FromJson(ToJson(Nest(I(1), kMaxDecodeDepth + 1))).ok());
  EXPECT_FALSE(FromJson(std::string(1'000'000, '[')).ok());
  std::string deep_objects;
  for (int i = 0; i < 100000; ++i) deep_objects += "{\"a\":";
  EXPECT_FALSE(FromJson(deep_objects).ok());
}

// ---- Documents ---------------------------------------------------------------------

TEST(FieldNameTest, Identifiers) {
  EXPECT_TRUE(IsValidFieldName("a"));
  EXPECT_TRUE(IsValidFieldName("likeCount_2"));
  EXPECT_TRUE(IsValidFieldName(std::string(64, 'x')));
  EXPECT_FALSE(IsValidFieldName(std::string(65, 'x')));
  EXPECT_FALSE(IsValidFieldName(""));
  EXPECT_FALSE(IsValidFieldName("_id"));
  EXPECT_FALSE(IsValidFieldName("$int64"));
  EXPECT_FALSE(IsValidFieldName("1a"));
  EXPECT_FALSE(IsValidFieldName("a-b"));
  EXPECT_FALSE(IsValidFieldName("a.b"));
  EXPECT_FALSE(IsValidFieldName("\xc3\xa9"));
  EXPECT_FALSE(IsValidFieldName(std::string("a\0", 2)));
  EXPECT_TRUE(IsValidFieldName("abc", {.max_field_name_bytes = 3}));
  EXPECT_FALSE(IsValidFieldName("abcd", {.max_field_name_bytes = 3}));
}

void ExpectInvalid(const absl::Status& s, const std::vector<std::string>& parts) {
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  for (const std::string& part : parts) EXPECT_THAT(s.message(), HasSubstr(part));
}

TEST(ValidateDocumentTest, AcceptsAnOrdinaryDocument) {
  Value doc = O({{"_id", S("abc")},
                 {"_creationTime", F(1.7e12)},
                 {"author", O({{"name", S("ada")}})},
                 {"tags", A({S("x"), O({{"k", I(1)}})})}});
  EXPECT_TRUE(ValidateDocument(doc).ok()) << ValidateDocument(doc);
}

TEST(ValidateDocumentTest, MustBeAnObject) {
  ExpectInvalid(ValidateDocument(A({})), {"object", "array"});
}

TEST(ValidateDocumentTest, Size) {
  Value ok = O({{"blob", Value::Bytes(std::string((1 << 20) - 100, 'x'))}});
  EXPECT_TRUE(ValidateDocument(ok).ok());
  Value big = O({{"blob", Value::Bytes(std::string(1 << 20, 'x'))}});
  ExpectInvalid(ValidateDocument(big), {"max_size_bytes", "1048576"});
  ExpectInvalid(ValidateDocument(O({{"s", S("0123456789")}}), {.max_size_bytes = 10}),
                {"max_size_bytes"});
}

TEST(ValidateDocumentTest, NestingDepth) {
  // The document is depth 1; 15 more levels make 16, the limit.
  Value at_limit = O({{"a", Nest(I(1), 15)}});
  EXPECT_TRUE(ValidateDocument(at_limit).ok()) << ValidateDocument(at_limit);
  Value over = O({{"a", Nest(O({}), 15)}});
  ExpectInvalid(ValidateDocument(over), {"max_nesting_depth", "16", "a[0]"});
  Value objects = O({{"a", O({{"b", O({{"c", O({})}})}})}});
  ExpectInvalid(ValidateDocument(objects, {.max_nesting_depth = 3}),
                {"max_nesting_depth", "a.b.c"});
}

TEST(ValidateDocumentTest, FieldCount) {
  Value::Object fields;
  for (int i = 0; i < 1024; ++i) fields["f" + std::to_string(i)] = I(i);
  EXPECT_TRUE(ValidateDocument(O(fields)).ok());
  fields["extra"] = Value::Null();
  ExpectInvalid(ValidateDocument(O(fields)), {"max_fields_per_object", "1025", "1024"});
  ExpectInvalid(ValidateDocument(O({{"inner", O(fields)}})), {"max_fields_per_object", "inner"});
}

TEST(ValidateDocumentTest, SystemFieldsDoNotCountTowardsTheFieldLimit) {
  Value::Object fields;
  for (int i = 0; i < 1024; ++i) fields["f" + std::to_string(i)] = I(i);
  fields["_id"] = S("id");
  fields["_creationTime"] = F(1.0);
  EXPECT_TRUE(ValidateDocument(O(fields)).ok()) << ValidateDocument(O(fields));
  fields["extra"] = Value::Null();
  ExpectInvalid(ValidateDocument(O(fields)), {"max_fields_per_object", "1025", "1024"});
  // Below the top level, the same names are user fields (and invalid ones).
  Value::Object inner = {{"_id", I(1)}};
  ExpectInvalid(ValidateDocument(O({{"inner", O(inner)}})), {"invalid field name", "_id"});
}

// An error quotes at most 64 bytes of a bad name (a 1 MB name was quoted whole).
TEST(ValidateDocumentTest, ABadFieldNameIsQuotedShort) {
  const absl::Status s = ValidateDocument(O({{std::string(100'000, 'k') + "-", I(1)}}));
  ExpectInvalid(s, {"invalid field name", "(100001 bytes)"});
  EXPECT_LT(s.message().size(), 400u) << s.message().size();
}

TEST(ValidateDocumentTest, ArrayLength) {
  EXPECT_TRUE(ValidateDocument(O({{"a", A(Value::Array(8192))}})).ok());
  ExpectInvalid(ValidateDocument(O({{"list", A({A(Value::Array(8193))})}})),
                {"max_array_length", "8193", "8192", "list[0]"});
}

TEST(ValidateDocumentTest, FieldNames) {
  ExpectInvalid(ValidateDocument(O({{"$x", I(1)}})), {"\"$x\"", "field name"});
  ExpectInvalid(ValidateDocument(O({{"_private", I(1)}})), {"\"_private\""});
  ExpectInvalid(ValidateDocument(O({{"", I(1)}})), {"\"\""});
  ExpectInvalid(ValidateDocument(O({{"a", A({O({{"1x", I(1)}})})}})), {"\"1x\"", "a[0]"});
  ExpectInvalid(ValidateDocument(O({{"a", O({{"_id", I(1)}})}})), {"\"_id\"", "in a"});
  ExpectInvalid(ValidateDocument(O({{std::string(65, 'n'), I(1)}})), {"max_field_name_bytes"});
  ExpectInvalid(ValidateDocument(O({{std::string("a\0", 2), I(1)}})), {"\"a\\x00\""});
}

// ---- Property tests ------------------------------------------------------------------

constexpr int kPropertyIterations = 5000;

TEST(ValuePropertyTest, BinaryRoundTrip) {
  ValueGenerator gen(1);
  for (int i = 0; i < kPropertyIterations; ++i) {
    Value v = gen.Random();
    std::string wire = EncodeBinary(v);
    ASSERT_EQ(v.ByteSize(), wire.size()) << v.DebugString();
    absl::StatusOr<Value> back = DecodeBinary(wire);
    ASSERT_TRUE(back.ok()) << back.status() << " for " << v.DebugString();
    ASSERT_EQ(*back, v) << v.DebugString();
    ASSERT_EQ(EncodeBinary(*back), wire);
  }
}

TEST(ValuePropertyTest, KeyRoundTrip) {
  ValueGenerator gen(2);
  for (int i = 0; i < kPropertyIterations; ++i) {
    Value v = gen.Random();
    std::string key = EncodeKey(v);
    absl::StatusOr<Value> back = DecodeKey(key);
    ASSERT_TRUE(back.ok()) << back.status() << " for " << v.DebugString();
    ASSERT_EQ(*back, v) << v.DebugString();
    ASSERT_EQ(EncodeKey(*back), key);
  }
}

TEST(ValuePropertyTest, JsonRoundTrip) {
  ValueGenerator gen(3);
  for (int i = 0; i < kPropertyIterations; ++i) {
    Value v = gen.Random();
    std::string json = ToJson(v);
    absl::StatusOr<Value> back = FromJson(json);
    ASSERT_TRUE(back.ok()) << back.status() << " for " << json;
    ASSERT_EQ(*back, v) << json;
    ASSERT_EQ(ToJson(*back), json);
  }
}

TEST(ValuePropertyTest, KeyOrderMatchesCompareForRandomPairs) {
  ValueGenerator gen(4);
  for (int i = 0; i < kPropertyIterations; ++i) {
    Value a = gen.Random();
    Value b = gen.Random();
    ASSERT_EQ(KeyOrder(a, b), Compare(a, b)) << a.DebugString() << " vs " << b.DebugString();
    ASSERT_EQ(Compare(a, b), -Compare(b, a));
    ASSERT_EQ(Compare(a, a), 0);
  }
}

TEST(ValuePropertyTest, KeyOrderMatchesCompareForSimilarPairs) {
  ValueGenerator gen(5);
  int unequal = 0;
  for (int i = 0; i < kPropertyIterations; ++i) {
    Value a = gen.Random();
    Value b = gen.Mutate(a);
    if (gen.Uniform(2)) b = gen.Mutate(b);
    int c = Compare(a, b);
    unequal += c != 0;
    ASSERT_EQ(KeyOrder(a, b), c) << a.DebugString() << " vs " << b.DebugString();
    ASSERT_EQ(Compare(b, a), -c);
  }
  EXPECT_GT(unequal, kPropertyIterations / 2);  // the mutations do change values
}

TEST(ValuePropertyTest, SortingByKeysEqualsSortingByCompare) {
  ValueGenerator gen(6);
  std::vector<Value> values;
  for (int i = 0; i < 2000; ++i) {
    values.push_back(i % 3 == 0 || values.empty() ? gen.Random() : gen.Mutate(values.back()));
  }
  std::vector<Value> by_compare = values;
  std::stable_sort(by_compare.begin(), by_compare.end(),
                   [](const Value& a, const Value& b) { return Compare(a, b) < 0; });
  for (size_t i = 1; i < by_compare.size(); ++i) {
    ASSERT_LE(EncodeKey(by_compare[i - 1]), EncodeKey(by_compare[i]));
  }
}

TEST(ValuePropertyTest, TupleConcatenationOrdersLikeTuples) {
  ValueGenerator gen(7);
  for (int i = 0; i < kPropertyIterations; ++i) {
    int arity = 1 + gen.Uniform(3);
    std::vector<Value> a;
    std::vector<Value> b;
    std::string ka;
    std::string kb;
    for (int j = 0; j < arity; ++j) {
      a.push_back(gen.Random(2));
      // Share a prefix of elements half the time so later elements decide.
      b.push_back(gen.Uniform(2) ? a.back() : gen.Mutate(a.back(), 2));
      AppendKey(a.back(), &ka);
      AppendKey(b.back(), &kb);
    }
    int expected = 0;
    for (int j = 0; j < arity && expected == 0; ++j) expected = Compare(a[j], b[j]);
    ASSERT_EQ(Sign(ka.compare(kb)), expected);
    // Decoding the concatenation yields the elements back.
    std::string_view rest = ka;
    for (int j = 0; j < arity; ++j) {
      absl::StatusOr<Value> e = DecodeKeyPrefix(&rest);
      ASSERT_TRUE(e.ok());
      ASSERT_EQ(*e, a[j]);
    }
    ASSERT_TRUE(rest.empty());
  }
}

TEST(ValuePropertyTest, ArbitraryByteStringsSurviveBinaryAndKeys) {
  std::mt19937_64 rng(8);
  for (int i = 0; i < 2000; ++i) {
    std::string s(rng() % 20, '\0');
    for (char& c : s) c = static_cast<char>(rng());
    Value v = O({{s, S(s)}});
    absl::StatusOr<Value> from_key = DecodeKey(EncodeKey(v));
    absl::StatusOr<Value> from_binary = DecodeBinary(EncodeBinary(v));
    ASSERT_TRUE(from_key.ok() && from_binary.ok());
    ASSERT_EQ(*from_key, v);
    ASSERT_EQ(*from_binary, v);
  }
}

}  // namespace
}  // namespace txfn

#include <optional>
#include <string>

#include "gtest/gtest.h"
#include "txfn/storage.h"
#include "txfn/value.h"

namespace txfn {
namespace {

using std::string_literals::operator""s;

TEST(PrefixSuccessorTest, IncrementsLastNonMaxByte) {
  EXPECT_EQ(PrefixSuccessor("ab"), "ac");
  EXPECT_EQ(PrefixSuccessor("a\xff\xff"), "b");
  EXPECT_EQ(PrefixSuccessor("\xff\xff"), std::nullopt);
  EXPECT_EQ(PrefixSuccessor(""), std::nullopt);
}

TEST(KeyRangeTest, PointContainsOnlyItsKey) {
  KeyRange r = KeyRange::Point("k");
  EXPECT_TRUE(r.Contains("k"));
  EXPECT_FALSE(r.Contains("k\0"s));
  EXPECT_FALSE(r.Contains("j\xff"));
  EXPECT_FALSE(r.IsEmpty());
}

TEST(KeyRangeTest, PrefixCoversExtensionsOnly) {
  KeyRange r = KeyRange::Prefix("ab");
  EXPECT_TRUE(r.Contains("ab"));
  EXPECT_TRUE(r.Contains("ab\xff\xff"));
  EXPECT_FALSE(r.Contains("ac"));
  EXPECT_FALSE(r.Contains("aa\xff"));
  EXPECT_TRUE(KeyRange::Prefix("\xff").Contains("\xff\xff\xff"));
}

TEST(KeyRangeTest, BoundsInclusiveAndExclusive) {
  EXPECT_TRUE(KeyRange::Closed("a", "c").Contains("c"));
  EXPECT_FALSE(KeyRange::Closed("a", "c").Contains("c\0"s));
  EXPECT_FALSE(KeyRange::HalfOpen("a", "c").Contains("c"));
  EXPECT_TRUE(KeyRange::HalfOpen("a", "c").Contains("a"));
  EXPECT_FALSE(KeyRange::After("a").Contains("a"));
  EXPECT_TRUE(KeyRange::After("a").Contains("a\0"s));
  EXPECT_TRUE(KeyRange::HalfOpen("c", "a").IsEmpty());
  EXPECT_TRUE(KeyRange::All().Contains(""));
}

// A failed EXPECT_EQ in the conformance suite (or any test) prints these
// values readably, not as "N-byte object <hex>".
TEST(PrintTest, StorageTypesAndValuesPrintReadably) {
  EXPECT_EQ(::testing::PrintToString(IndexEntry{"k\0"s, "v", 3}),
            R"({key="k\x00" value="v" ts=3})");
  EXPECT_EQ(::testing::PrintToString(std::optional<IndexEntry>(IndexEntry{"k", "", 1})),
            R"(({key="k" value="" ts=1}))");
  EXPECT_EQ(::testing::PrintToString(CommitRecord{"t", 7, {{1, "a", "b"}, {2, "c", std::nullopt}}}),
            R"({tenant="t" ts=7 writes=[{index=1 key="a" value="b"}, )"
            R"({index=2 key="c" value=<tombstone>}]})");
  EXPECT_EQ(::testing::PrintToString(KeyRange::HalfOpen("a", "b\xff")), R"(["a", "b\xff"))");
  EXPECT_EQ(::testing::PrintToString(KeyRange::All()), R"(["", <no end>))");
  EXPECT_EQ(::testing::PrintToString(RetentionResult{.horizon = 5, .versions_dropped = 2}),
            "{horizon=5 versions_dropped=2 commits_dropped=0 done=true}");
  EXPECT_EQ(::testing::PrintToString(ScanOrder::kDescending), "descending");
  EXPECT_EQ(::testing::PrintToString(
                Value::FromObject({{"n", Value::Int64(3)}, {"s", Value::String("x")}})),
            R"({"n":{"$int64":"3"},"s":"x"})");
}

}  // namespace
}  // namespace txfn

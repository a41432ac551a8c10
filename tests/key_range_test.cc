#include <string>

#include "gtest/gtest.h"
#include "txfn/storage.h"

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

}  // namespace
}  // namespace txfn

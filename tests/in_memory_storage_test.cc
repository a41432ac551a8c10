// InMemoryStorage: the conformance suite plus what is specific to this adapter.
#include "txfn/in_memory_storage.h"

#include <memory>
#include <optional>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "txfn/storage.h"

namespace txfn {
namespace {

TEST(InMemoryStorageTest, WriteThenReadAtTimestamps) {
  InMemoryStorage storage;
  CommitRecord commit{
      .tenant = "shop", .ts = 10, .writes = {{.index = 1, .key = "k", .value = "v"}}};
  ASSERT_TRUE(storage.Write({&commit, 1}).ok());
  auto at10 = storage.Get("shop", 1, "k", 10);
  ASSERT_TRUE(at10.ok());
  EXPECT_EQ(*at10, (IndexEntry{"k", "v", 10}));
  auto at9 = storage.Get("shop", 1, "k", 9);
  ASSERT_TRUE(at9.ok());
  EXPECT_EQ(*at9, std::nullopt);
  auto rows = storage.Scan("shop", 1, KeyRange::All(), 10, ScanOrder::kAscending, 100);
  ASSERT_TRUE(rows.ok());
  EXPECT_EQ(rows->size(), 1u);
  EXPECT_EQ(*storage.MaxCommittedTimestamp("shop"), 10u);
}

}  // namespace
}  // namespace txfn

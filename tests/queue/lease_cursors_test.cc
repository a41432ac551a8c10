// LeaseCursors (lib/queue/lease_cursors.h), the places SqliteQueue's leases
// that skip tenants start from: which cursor a lease may use, and when one
// must be forgotten. The adapter-level behaviour is in the DurableQueue
// conformance suite and sqlite_queue_test.
#include "lib/queue/lease_cursors.h"

#include <string>

#include "gtest/gtest.h"

namespace txfn::internal {
namespace {

const LeaseFilterKey kAll{.shard = 0};

absl::flat_hash_set<std::string> Set(std::initializer_list<std::string> names) {
  return absl::flat_hash_set<std::string>(names.begin(), names.end());
}

TEST(LeaseCursorsTest, ALeaseUsesTheFurthestCursorWhoseSkipsItAlsoSkips) {
  LeaseCursors cursors;
  cursors.Save(kAll, {"hog"}, {10, 1});
  cursors.Save(kAll, {"hog", "b"}, {20, 2});
  cursors.Save(kAll, {"c"}, {30, 3});
  EXPECT_EQ(cursors.Find(kAll, Set({})), std::nullopt);  // skips nothing: starts at the start
  EXPECT_EQ(cursors.Find(kAll, Set({"hog"})), (DueSeq{10, 1}));
  EXPECT_EQ(cursors.Find(kAll, Set({"b", "hog"})), (DueSeq{20, 2}));
  EXPECT_EQ(cursors.Find(kAll, Set({"b", "c", "hog"})), (DueSeq{30, 3}));
  EXPECT_EQ(cursors.Find(kAll, Set({"b"})), std::nullopt);
}

TEST(LeaseCursorsTest, ACursorServesOnlyItsOwnFilter) {
  LeaseCursors cursors;
  cursors.Save({.shard = 0, .quota = 1, .functions = {"f"}}, {}, {10, 1});
  EXPECT_EQ(cursors.Find({.shard = 0, .quota = 1, .functions = {"f"}}, Set({})), (DueSeq{10, 1}));
  EXPECT_EQ(cursors.Find({.shard = 1, .quota = 1, .functions = {"f"}}, Set({})), std::nullopt);
  EXPECT_EQ(cursors.Find({.shard = 0, .quota = -1, .functions = {"f"}}, Set({})), std::nullopt);
  EXPECT_EQ(cursors.Find({.shard = 0, .quota = 1, .functions = {"f", "g"}}, Set({})), std::nullopt);
  EXPECT_EQ(cursors.Find({.shard = 0, .quota = 1}, Set({})), std::nullopt);
}

TEST(LeaseCursorsTest, AWriteDueAtOrBeforeACursorForgetsIt) {
  LeaseCursors cursors;
  cursors.Save(kAll, {"a"}, {10, 5});
  cursors.Save(kAll, {"b"}, {20, 5});
  cursors.ForgetFrom(21);  // due after both: both stand
  EXPECT_EQ(cursors.size(), 2u);
  cursors.ForgetFrom(20);  // due at the second's time: a row of an earlier seq may move there
  EXPECT_EQ(cursors.Find(kAll, Set({"b"})), std::nullopt);
  EXPECT_EQ(cursors.Find(kAll, Set({"a"})), (DueSeq{10, 5}));
  cursors.ForgetFrom(std::numeric_limits<int64_t>::min());
  EXPECT_EQ(cursors.size(), 0u);
}

TEST(LeaseCursorsTest, SavingTheSameSkipsReplacesAndTheOldestGoWhenFull) {
  LeaseCursors cursors;
  cursors.Save(kAll, {"b", "a", "a"}, {10, 1});
  cursors.Save(kAll, {"a", "b"}, {12, 1});  // the same skips, in another order
  EXPECT_EQ(cursors.size(), 1u);
  EXPECT_EQ(cursors.Find(kAll, Set({"a", "b"})), (DueSeq{12, 1}));
  for (size_t i = 0; i < LeaseCursors::kMaxCursors; ++i) {
    cursors.Save(kAll, {"t" + std::to_string(i)}, {100, static_cast<int64_t>(i)});
  }
  EXPECT_EQ(cursors.size(), LeaseCursors::kMaxCursors);
  EXPECT_EQ(cursors.Find(kAll, Set({"a", "b"})), std::nullopt);  // the oldest, gone
  EXPECT_EQ(cursors.Find(kAll, Set({"t0"})), (DueSeq{100, 0}));
  cursors.Clear();
  EXPECT_EQ(cursors.Find(kAll, Set({"t0"})), std::nullopt);
}

}  // namespace
}  // namespace txfn::internal

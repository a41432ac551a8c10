// The Storage conformance tests of version retention (ApplyRetention); see
// txfn/testing/storage_conformance.h. Linked with the others through
// LinkStorageRetentionConformanceTests.
#include <cstdint>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "lib/testing/storage_test_util.h"
#include "txfn/storage.h"
#include "txfn/testing/storage_conformance.h"

namespace txfn::testing {

namespace internal {
int LinkStorageRetentionConformanceTests() { return 0; }
}  // namespace internal

namespace {

using internal::Commit;
using internal::Del;
using internal::GetAt;
using internal::Keys;
using internal::LogAfter;
using internal::MaxTs;
using internal::Model;
using internal::OrderedBinaryKeys;
using internal::Put;
using internal::ScanAt;
using internal::Tenants;
using internal::WriteAll;
using ::testing::ElementsAre;
using ::testing::IsEmpty;

// ---------------------------------------------------------------------------
// Version retention (ApplyRetention). An adapter that keeps every version
// (Unimplemented) skips these.

// Applies retention, or skips the test if the adapter keeps every version.
// NOLINTBEGIN(bugprone-macro-parentheses): `result` names a variable.
#define TXFN_RETAIN_OR_SKIP(result, s, tenant, ts, max_commits)                         \
  absl::StatusOr<RetentionResult> result = (s).ApplyRetention(tenant, ts, max_commits); \
  if (absl::IsUnimplemented(result.status())) {                                         \
    GTEST_SKIP() << "adapter keeps every version: " << result.status();                 \
  }                                                                                     \
  ASSERT_TRUE(result.ok()) << result.status()
// NOLINTEND(bugprone-macro-parentheses)

bool IsBelowRetention(const absl::Status& status) {
  return absl::IsFailedPrecondition(status) &&
         status.message().find("retention horizon") != absl::string_view::npos;
}

// Every read the suite makes, at `at`, against the model (reads at or above
// the horizon must be exact).
void ExpectReadsMatch(Storage& s, const Model& model, Timestamp at,
                      const std::vector<std::string>& universe) {
  SCOPED_TRACE(::testing::Message() << "read at ts " << at);
  for (IndexId index : {1u, 2u}) {
    for (const auto& key : universe) {
      ASSERT_EQ(GetAt(s, "t", index, key, at), model.Get(index, key, at))
          << "index " << index << " key " << ::testing::PrintToString(key);
    }
    for (ScanOrder order : {ScanOrder::kAscending, ScanOrder::kDescending}) {
      for (size_t limit : {0, 1, 3}) {
        ASSERT_EQ(ScanAt(s, "t", index, KeyRange::All(), at, order, limit),
                  model.Scan(index, KeyRange::All(), at, order, limit))
            << "index " << index << " limit " << limit;
      }
    }
  }
}

TEST_P(StorageConformanceTest, RetentionKeepsEveryReadAtOrAboveTheHorizonExact) {
  Storage& s = storage();
  Model model;
  std::mt19937_64 rng(1107);
  const std::vector<std::string>& universe = OrderedBinaryKeys();
  auto pick = [&](size_t n) { return static_cast<size_t>(rng() % n); };
  std::vector<Timestamp> commit_ts;
  Timestamp ts = 0;
  auto write_some = [&](int batches) {
    for (int batch = 0; batch < batches; ++batch) {
      std::vector<CommitRecord> commits;
      for (size_t c = 0, n = 1 + pick(3); c < n; ++c) {
        ts += 1 + pick(3);
        std::vector<IndexWrite> writes;
        std::map<std::pair<IndexId, std::string>, bool> used;
        // A small key set, so keys get many versions and tombstones.
        for (size_t w = 0, m = 1 + pick(4); w < m; ++w) {
          IndexId index = static_cast<IndexId>(1 + pick(2));
          const std::string& key = universe[pick(8)];
          if (std::exchange(used[{index, key}], true)) continue;
          writes.push_back(pick(3) == 0 ? Del(index, key)
                                        : Put(index, key, "v" + std::to_string(ts)));
        }
        commits.push_back(Commit("t", ts, std::move(writes)));
        commit_ts.push_back(ts);
      }
      ASSERT_TRUE(WriteAll(s, commits).ok());
      for (const auto& c : commits) model.Apply(c);
    }
  };
  write_some(30);
  // Between two commits: the horizon is the newest commit at or before it.
  const Timestamp target = commit_ts[commit_ts.size() / 2] + 1;
  const Timestamp expected =
      *std::prev(std::upper_bound(commit_ts.begin(), commit_ts.end(), target));
  TXFN_RETAIN_OR_SKIP(first, s, "t", target, 0);
  EXPECT_EQ(first->horizon, expected);
  EXPECT_TRUE(first->done);
  EXPECT_GT(first->versions_dropped, 0u);
  EXPECT_EQ(first->commits_dropped,
            static_cast<uint64_t>(std::upper_bound(commit_ts.begin(), commit_ts.end(), expected) -
                                  commit_ts.begin()));
  EXPECT_EQ(MaxTs(s, "t"), ts) << "retention never changes what is committed";
  EXPECT_THAT(Tenants(s), ElementsAre("t"));

  for (Timestamp at = expected; at <= ts + 1; ++at) ExpectReadsMatch(s, model, at, universe);
  for (Timestamp after = expected; after <= ts + 1; ++after) {
    ASSERT_EQ(LogAfter(s, "t", after), model.LogAfter(after, 0)) << "after " << after;
  }
  for (Timestamp below : {Timestamp{0}, expected - 1}) {
    SCOPED_TRACE(::testing::Message() << "below the horizon at " << below);
    EXPECT_TRUE(IsBelowRetention(s.Get("t", 1, universe[0], below).status()));
    EXPECT_TRUE(IsBelowRetention(
        s.Scan("t", 1, KeyRange::All(), below, ScanOrder::kAscending, 0).status()));
    EXPECT_TRUE(IsBelowRetention(s.ReadLog("t", below, 0).status()));
  }

  // More commits, then retention past all of them: the newest version of
  // every live key is all that is left, and it is still exact.
  write_some(10);
  TXFN_RETAIN_OR_SKIP(second, s, "t", ts + 100, 0);
  EXPECT_EQ(second->horizon, ts) << "never beyond the newest commit";
  ExpectReadsMatch(s, model, ts, universe);
  ExpectReadsMatch(s, model, ts + 1, universe);
  EXPECT_THAT(LogAfter(s, "t", ts), IsEmpty());
  // Writes go on, and are readable at and after their timestamps.
  const Timestamp horizon = ts;
  write_some(3);
  for (Timestamp at = horizon; at <= ts + 1; ++at) ExpectReadsMatch(s, model, at, universe);
  EXPECT_EQ(LogAfter(s, "t", horizon), model.LogAfter(horizon, 0));
}

TEST_P(StorageConformanceTest, RetentionDropsSupersededVersionsAndOldTombstones) {
  Storage& s = storage();
  ASSERT_TRUE(WriteAll(s, {Commit("t", 1, {Put(1, "k", "1"), Put(1, "live", "x")}),
                           Commit("t", 2, {Put(1, "k", "2")}), Commit("t", 3, {Put(1, "k", "3")}),
                           Commit("t", 4, {Del(1, "k")}), Commit("t", 5, {Put(1, "later", "y")}),
                           Commit("t", 6, {Put(1, "live", "z")})})
                  .ok());
  TXFN_RETAIN_OR_SKIP(result, s, "t", 4, 0);
  // k: three versions and the tombstone that hides them; "live" keeps its
  // version 1 (visible at 4), "later" and live@6 are after the horizon.
  EXPECT_EQ(*result, (RetentionResult{
                         .horizon = 4, .versions_dropped = 4, .commits_dropped = 4, .done = true}));
  EXPECT_EQ(GetAt(s, "t", 1, "k", 4), std::nullopt);
  EXPECT_EQ(GetAt(s, "t", 1, "live", 5), (IndexEntry{"live", "x", 1}));
  EXPECT_EQ(GetAt(s, "t", 1, "live", 6), (IndexEntry{"live", "z", 6}));
  EXPECT_THAT(Keys(ScanAt(s, "t", 1, KeyRange::All(), 4)), ElementsAre("live"));
  EXPECT_THAT(Keys(ScanAt(s, "t", 1, KeyRange::All(), 6)), ElementsAre("later", "live"));
  // Again at the same or an older timestamp: nothing to do, nothing moves back.
  for (Timestamp again : {Timestamp{4}, Timestamp{2}, Timestamp{0}}) {
    TXFN_RETAIN_OR_SKIP(noop, s, "t", again, 0);
    EXPECT_EQ(*noop, (RetentionResult{.horizon = 4}));
  }
  TXFN_RETAIN_OR_SKIP(rest, s, "t", 6, 0);
  EXPECT_EQ(*rest, (RetentionResult{
                       .horizon = 6, .versions_dropped = 1, .commits_dropped = 2, .done = true}));
  EXPECT_EQ(GetAt(s, "t", 1, "live", 6), (IndexEntry{"live", "z", 6}));
  // Unknown tenants: nothing to do.
  TXFN_RETAIN_OR_SKIP(nobody, s, "nobody", 100, 0);
  EXPECT_EQ(*nobody, RetentionResult{});
}

TEST_P(StorageConformanceTest, RetentionInStepsOfMaxCommitsIsConsistentAtEveryStep) {
  Storage& s = storage();
  Model model;
  for (Timestamp ts = 1; ts <= 10; ++ts) {
    CommitRecord c = Commit("t", ts, {Put(1, "k", "v" + std::to_string(ts)), Put(2, "a", "x")});
    if (ts % 4 == 0) c.writes.push_back(Del(1, "gone" + std::to_string(ts / 4)));
    c.writes.push_back(Put(1, "gone" + std::to_string(ts / 4 + 1), "g"));
    ASSERT_TRUE(WriteAll(s, {c}).ok());
    model.Apply(c);
  }
  std::vector<Timestamp> horizons;
  for (int step = 0; step < 10; ++step) {
    TXFN_RETAIN_OR_SKIP(r, s, "t", 9, 3);
    horizons.push_back(r->horizon);
    for (Timestamp at = r->horizon; at <= 11; ++at) {
      ExpectReadsMatch(s, model, at, {"a", "k", "gone1", "gone2", "gone3"});
    }
    if (r->done) break;
    EXPECT_LE(r->commits_dropped, 3u);
  }
  EXPECT_EQ(horizons, (std::vector<Timestamp>{3, 6, 9}));
}

TEST_P(StorageConformanceTest, DeletingATenantForgetsItsHorizon) {
  Storage& s = storage();
  ASSERT_TRUE(WriteAll(s, {Commit("t", 5, {Put(1, "k", "old")})}).ok());
  TXFN_RETAIN_OR_SKIP(r, s, "t", 5, 0);
  ASSERT_EQ(r->horizon, 5u);
  ASSERT_TRUE(s.DeleteTenant("t").ok());
  ASSERT_TRUE(WriteAll(s, {Commit("t", 1, {Put(1, "k", "new")})}).ok());
  EXPECT_EQ(GetAt(s, "t", 1, "k", 1), (IndexEntry{"k", "new", 1}));
  EXPECT_EQ(GetAt(s, "t", 1, "k", 0), std::nullopt);
  EXPECT_EQ(LogAfter(s, "t", 0).size(), 1u);
}

TEST_P(StorageConformanceTest, RetentionSurvivesReopen) {
  Storage& before = storage();
  ASSERT_TRUE(
      WriteAll(before, {Commit("t", 1, {Put(1, "k", "1")}), Commit("t", 2, {Put(1, "k", "2")}),
                        Commit("t", 3, {Put(1, "k", "3")})})
          .ok());
  TXFN_RETAIN_OR_SKIP(r, before, "t", 2, 0);
  ASSERT_EQ(r->horizon, 2u);
  if (!Reopen()) GTEST_SKIP() << "adapter has no StorageFactory::reopen";
  Storage& s = storage();
  EXPECT_TRUE(IsBelowRetention(s.Get("t", 1, "k", 1).status()));
  EXPECT_EQ(GetAt(s, "t", 1, "k", 2), (IndexEntry{"k", "2", 2}));
  EXPECT_EQ(GetAt(s, "t", 1, "k", 3), (IndexEntry{"k", "3", 3}));
  EXPECT_EQ(LogAfter(s, "t", 2).size(), 1u);
  TXFN_RETAIN_OR_SKIP(again, s, "t", 2, 0);
  EXPECT_EQ(*again, (RetentionResult{.horizon = 2}));
}

#undef TXFN_RETAIN_OR_SKIP

}  // namespace
}  // namespace txfn::testing

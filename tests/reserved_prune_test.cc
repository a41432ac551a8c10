// Deleting expired entries of reserved indexes (lib/reserved_prune.h): what the engine's passes
// over idempotency keys and call records are made of.
#include "lib/reserved_prune.h"

#include <algorithm>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "txfn/idempotency.h"
#include "txfn/in_memory_storage.h"
#include "txfn/retry.h"
#include "txfn/transaction.h"
#include "txn_test_util.h"

namespace txfn::internal {
namespace {

bool kGoOn() { return false; }

class ReservedPruneTest : public ::testing::Test {
 protected:
  ReservedPruneTest()
      : storage_(std::make_shared<InMemoryStorage>()),
        tenants_(storage_, {.committer = {.clock = clock_.AsFunction()},
                            .idle_timeout = absl::ZeroDuration()}) {}

  void SetUp() override { ASSERT_TRUE(tenants_.Create("t").ok()); }

  // Commits entries `keys` of the idempotency index in one transaction; returns its timestamp.
  Timestamp Put(const std::vector<std::string>& keys, const std::string& value = "v") {
    absl::StatusOr<std::shared_ptr<OpenTenant>> open = tenants_.Get("t");
    EXPECT_TRUE(open.ok()) << open.status();
    if (!open.ok()) return 0;
    absl::StatusOr<CommitOutcome> done = (*open)->CommitSystemTransaction(
        [&](Transaction& txn) -> absl::Status {
          for (const std::string& key : keys) {
            TXFN_RETURN_IF_ERROR(txn.PutReserved(kIdempotencyIndex, key, value));
          }
          return absl::OkStatus();
        },
        RetryOptions{.max_attempts = 1});
    EXPECT_TRUE(done.ok()) << done.status();
    return done.ok() ? done->commit_ts : 0;
  }

  std::vector<std::string> Keys() {
    absl::StatusOr<std::vector<IndexEntry>> entries = ScanNewest(*storage_, "t", kIdempotencyIndex);
    EXPECT_TRUE(entries.ok()) << entries.status();
    std::vector<std::string> keys;
    if (entries.ok()) {
      for (const IndexEntry& e : *entries) keys.push_back(e.key);
    }
    return keys;
  }

  static std::vector<std::string> Numbered(const std::string& prefix, int from, int to) {
    std::vector<std::string> keys;
    for (int i = from; i < to; ++i) keys.push_back(absl::StrCat(prefix, 10000 + i));
    return keys;
  }

  testing_util::FakeClock clock_;
  std::shared_ptr<InMemoryStorage> storage_;
  TenantCommitters tenants_;
};

// Only entries older than the cutoff go, over many pages, old and young keys interleaved in key
// order; each page is one transaction.
TEST_F(ReservedPruneTest, DeletesOnlyExpiredEntriesPageByPage) {
  std::vector<std::string> old = Numbered("a", 0, 700);
  for (const std::string& k : Numbered("c", 0, 300)) old.push_back(k);
  Put(old);
  const Timestamp cutoff = Put({"b-marker"});  // younger than `old`, not expired (ts == cutoff)
  const std::vector<std::string> young = Numbered("b", 0, 500);
  Put(young);
  const uint64_t commits_before = tenants_.stats().committer.commits;
  auto expired = [&](const IndexEntry& e) { return e.ts < cutoff; };
  uint64_t deleted = 0;
  ASSERT_TRUE(
      PruneReservedIndex(tenants_, "t", kIdempotencyIndex, expired, expired, kGoOn, &deleted, 128)
          .ok());
  EXPECT_EQ(deleted, 1000u);
  std::vector<std::string> left = young;
  left.insert(left.begin(), "b-marker");
  EXPECT_EQ(Keys(), left);
  // 1,501 entries in pages of 128: 12 pages, of which the 9 holding an "a" or "c" key commit.
  EXPECT_EQ(tenants_.stats().committer.commits - commits_before, 9u);
  // A second pass finds nothing more.
  deleted = 0;
  ASSERT_TRUE(
      PruneReservedIndex(tenants_, "t", kIdempotencyIndex, expired, expired, kGoOn, &deleted, 128)
          .ok());
  EXPECT_EQ(deleted, 0u);
}

// Asked to stop (an engine closing), it stops between two pages, keeping what it deleted.
TEST_F(ReservedPruneTest, StopsBetweenPagesWhenAsked) {
  Put(Numbered("k", 0, 1000));
  auto always = [](const IndexEntry&) { return true; };
  int pages = 0;
  auto after_two_pages = [&] { return pages++ == 2; };
  uint64_t deleted = 0;
  ASSERT_TRUE(PruneReservedIndex(tenants_, "t", kIdempotencyIndex, always, always, after_two_pages,
                                 &deleted, 100)
                  .ok());
  EXPECT_EQ(deleted, 200u);
  EXPECT_EQ(Keys().size(), 800u);
}

// Between the scan and the deleting transaction another writer replaced the entry (a call that
// used the key again after another process deleted it): the transaction reads it as it is now,
// and a young entry stays.
TEST_F(ReservedPruneTest, AnEntryReplacedAfterTheScanIsJudgedAsItIsNow) {
  Put({"k"}, "first");
  clock_.Advance(absl::ToInt64Nanoseconds(absl::Hours(1)));
  const Timestamp cutoff = clock_.Now();
  bool replaced = false;
  auto scan_says_expired = [&](const IndexEntry& e) {
    if (!replaced) {
      replaced = true;
      absl::StatusOr<std::shared_ptr<OpenTenant>> open = tenants_.Get("t");
      EXPECT_TRUE(open.ok());
      // Deleted and written again: ts past the cutoff.
      EXPECT_TRUE((*open)
                      ->CommitSystemTransaction(
                          [](Transaction& txn) {
                            return txn.PutReserved(kIdempotencyIndex, "k", std::nullopt);
                          },
                          RetryOptions{.max_attempts = 1})
                      .ok());
      Put({"k"}, "second");
    }
    return e.ts < cutoff;
  };
  auto still_expired = [&](const IndexEntry& e) { return e.ts < cutoff; };
  uint64_t deleted = 0;
  ASSERT_TRUE(PruneReservedIndex(tenants_, "t", kIdempotencyIndex, scan_says_expired, still_expired,
                                 kGoOn, &deleted)
                  .ok());
  EXPECT_TRUE(replaced);
  EXPECT_EQ(deleted, 0u);
  absl::StatusOr<std::shared_ptr<OpenTenant>> open = tenants_.Get("t");
  ASSERT_TRUE(open.ok());
  absl::StatusOr<std::optional<IndexEntry>> now = (*open)->Latest()->Get(kIdempotencyIndex, "k");
  ASSERT_TRUE(now.ok() && now->has_value());
  EXPECT_EQ((*now)->value, "second");
}

// A tenant with nothing expired is read from storage only: its committer is not opened.
TEST_F(ReservedPruneTest, ATenantWithNothingExpiredIsNotOpened) {
  Put(Numbered("k", 0, 10));
  tenants_.Sweep(clock_.Now() + 1);  // closes it (idle timeout zero)
  ASSERT_EQ(tenants_.stats().open, 0u);
  const uint64_t misses = tenants_.stats().misses;
  auto never = [](const IndexEntry&) { return false; };
  uint64_t deleted = 0;
  ASSERT_TRUE(
      PruneReservedIndex(tenants_, "t", kIdempotencyIndex, never, never, kGoOn, &deleted).ok());
  EXPECT_EQ(deleted, 0u);
  EXPECT_EQ(tenants_.stats().misses, misses);
  EXPECT_EQ(Keys().size(), 10u);
  auto always = [](const IndexEntry&) { return true; };
  ASSERT_TRUE(
      PruneReservedIndex(tenants_, "t", kIdempotencyIndex, always, always, kGoOn, &deleted).ok());
  EXPECT_EQ(deleted, 10u);
  EXPECT_EQ(tenants_.stats().misses, misses + 1);
  EXPECT_TRUE(Keys().empty());
}

// A tenant deleted since the pass listed it: nothing to delete, and it is not created again.
TEST_F(ReservedPruneTest, AnUnknownTenantIsLeftUnknown) {
  auto always = [](const IndexEntry&) { return true; };
  uint64_t deleted = 0;
  (void)PruneReservedIndex(tenants_, "nobody", kIdempotencyIndex, always, always, kGoOn, &deleted);
  EXPECT_EQ(deleted, 0u);
  absl::StatusOr<std::vector<std::string>> all = storage_->ListTenants();
  ASSERT_TRUE(all.ok());
  EXPECT_EQ(*all, std::vector<std::string>{"t"});
}

TEST(TenantPassTest, StartsEveryIntervalAndHandsOutSlices) {
  auto storage = std::make_shared<InMemoryStorage>();
  TenantCommitters tenants(storage);
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(tenants.Create(absl::StrCat("t", i)).ok());
  const absl::Time t0 = absl::FromUnixSeconds(1000);
  TenantPass pass(absl::Seconds(10), 2, t0);
  EXPECT_TRUE(pass.Next(*storage, t0, true).empty()) << "not due yet";
  EXPECT_EQ(pass.NextStart(t0), t0 + absl::Seconds(10));
  EXPECT_TRUE(pass.Next(*storage, t0 + absl::Seconds(10), false).empty()) << "may not start";
  std::vector<std::string> seen;
  for (size_t size : {2u, 2u, 1u}) {
    std::vector<std::string> slice = pass.Next(*storage, t0 + absl::Seconds(10), true);
    EXPECT_EQ(slice.size(), size);
    seen.insert(seen.end(), slice.begin(), slice.end());
    EXPECT_EQ(pass.under_way(), size == 2);
  }
  std::sort(seen.begin(), seen.end());
  EXPECT_EQ(seen, (std::vector<std::string>{"t0", "t1", "t2", "t3", "t4"}));
  EXPECT_TRUE(pass.Next(*storage, t0 + absl::Seconds(11), true).empty()) << "the next is 10 s on";
  EXPECT_EQ(pass.Next(*storage, t0 + absl::Seconds(20), true).size(), 2u);
  // A pass every hour still starts its first a minute after the process does.
  TenantPass hourly(absl::Hours(1), 10, t0);
  EXPECT_EQ(hourly.NextStart(t0), t0 + absl::Minutes(1));
  EXPECT_EQ(hourly.Next(*storage, t0 + absl::Minutes(1), true).size(), 5u);
  EXPECT_EQ(hourly.NextStart(t0 + absl::Minutes(1)), t0 + absl::Minutes(61));
}

}  // namespace
}  // namespace txfn::internal

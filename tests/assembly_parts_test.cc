// The public assembly parts that need no V8: RetryCommits with an
// AttemptResult (retry.h) and the per-tenant committer registry
// (tenant_committers.h). CallPath and DeployTenant run through the engine's
// tests and examples/assemble_host.cc.
#include <memory>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "txfn/committer.h"
#include "txfn/in_memory_storage.h"
#include "txfn/retry.h"
#include "txfn/status_macros.h"
#include "txfn/tenant_committers.h"
#include "txn_test_util.h"

namespace txfn {
namespace {

using namespace testing_util;  // NOLINT(google-build-using-namespace)

// A deadline caps the sleep: with a 10 s backoff and a deadline 50 ms away,
// the sleep ends at the deadline (a caller that checks its deadline before
// the next attempt then fails on time, not up to a backoff later).
TEST(JitteredBackoffTest, NeverSleepsPastTheGivenTime) {
  JitteredBackoff backoff({.initial_backoff = absl::Seconds(10), .max_backoff = absl::Seconds(10)});
  const absl::Time start = absl::Now();
  for (int i = 0; i < 3; ++i) backoff.Sleep(start + absl::Milliseconds(50));
  // Without the cap, three sleeps in [0, 10 s) all under 5 s is a 1-in-8 chance.
  EXPECT_LT(absl::Now() - start, absl::Seconds(5));
}

TEST(RetryCommitsTest, RetriesCommitConflictsButNotFailuresBeforeTheCommit) {
  std::unique_ptr<Committer> committer = OpenWithSchema(std::make_shared<InMemoryStorage>(), {});
  auto begin = [&] { return Transaction(committer->Latest()); };
  Transaction insert = begin();
  const std::string id =
      insert.Insert("accounts", Obj({{"owner", Str("ann")}, {"balance", I64(1)}})).value();
  ASSERT_TRUE(committer->Commit(insert.Prepare()).ok());
  int runs = 0;
  absl::StatusOr<CommitOutcome> outcome =
      RetryCommits("patch", {.max_attempts = 4, .initial_backoff = absl::Microseconds(1)},
                   [&](int attempt) -> AttemptResult {
                     ++runs;
                     Transaction txn = begin();
                     TXFN_RETURN_IF_ERROR(txn.Get(id).status());
                     if (attempt < 3) {  // someone else changes what we read before we commit
                       Transaction other = begin();
                       TXFN_RETURN_IF_ERROR(other.Patch(id, Obj({{"balance", I64(attempt)}})));
                       TXFN_RETURN_IF_ERROR(committer->Commit(other.Prepare()).status());
                     }
                     TXFN_RETURN_IF_ERROR(txn.Patch(id, Obj({{"balance", I64(100)}})));
                     return AttemptResult::Commit(committer->Commit(txn.Prepare()));
                   });
  ASSERT_TRUE(outcome.ok()) << outcome.status();
  EXPECT_EQ(outcome->attempts, 3);
  EXPECT_EQ(runs, 3);

  // An Aborted status before the commit is the caller's, not a conflict.
  runs = 0;
  outcome = RetryCommits("refused", {}, [&](int) -> AttemptResult {
    ++runs;
    return absl::AbortedError("not a conflict");
  });
  EXPECT_TRUE(absl::IsAborted(outcome.status()));
  EXPECT_EQ(runs, 1);
}

TEST(TenantCommittersTest, OpensOnFirstUseClosesIdleAndRefusesCommitsAfterDelete) {
  Timestamp now = 1'000'000'000;
  auto storage = std::make_shared<InMemoryStorage>();
  TenantCommitters tenants(
      storage, {.committer = {.clock = [&] { return now; }}, .idle_timeout = absl::Seconds(1)});
  EXPECT_TRUE(absl::IsNotFound(tenants.Get("shop").status()));
  EXPECT_TRUE(absl::IsInvalidArgument(tenants.Create("no spaces")));
  ASSERT_TRUE(tenants.Create("shop").ok());
  EXPECT_TRUE(absl::IsAlreadyExists(tenants.Create("shop")));

  // Idle and unheld: closed by a sweep, reopened from storage by Get.
  now += 2'000'000'000;
  EXPECT_EQ(tenants.Sweep(now), 1u);
  EXPECT_EQ(tenants.stats().open, 0u);
  absl::StatusOr<std::shared_ptr<OpenTenant>> shop = tenants.Get("shop");
  ASSERT_TRUE(shop.ok()) << shop.status();
  EXPECT_TRUE((*shop)->Latest()->metadata().enabled());
  EXPECT_EQ(tenants.stats().misses, 2u);  // the Get before Create, and this reopen

  // Held: never closed, however idle.
  now += 2'000'000'000;
  EXPECT_EQ(tenants.Sweep(now), 0u);

  // A commit prepared before the delete never lands after it.
  Transaction txn((*shop)->Latest());
  ASSERT_TRUE(txn.SetEnabled(false).ok());
  ASSERT_TRUE(tenants.Delete("shop").ok());
  EXPECT_TRUE(absl::IsNotFound((*shop)->Commit(txn.Prepare()).status()));
  EXPECT_TRUE(absl::IsNotFound(tenants.Get("shop").status()));
  EXPECT_TRUE(absl::IsNotFound(tenants.Delete("shop")));
}

// DeleteIfNewest undoes a Create only while the creation is the tenant's newest commit; a
// commit prepared before it never lands after it.
TEST(TenantCommittersTest, DeleteIfNewestKeepsATenantCommittedToSinceItsCreation) {
  auto storage = std::make_shared<InMemoryStorage>();
  TenantCommitters tenants(storage);
  Timestamp created_at = 0;
  ASSERT_TRUE(tenants.Create("shop", &created_at).ok());
  EXPECT_EQ(created_at, *storage->MaxCommittedTimestamp("shop"));
  absl::StatusOr<std::shared_ptr<OpenTenant>> shop = tenants.Get("shop");
  ASSERT_TRUE(shop.ok()) << shop.status();
  Transaction disable((*shop)->Latest());
  ASSERT_TRUE(disable.SetEnabled(false).ok());
  absl::StatusOr<Timestamp> disabled = (*shop)->Commit(disable.Prepare());
  ASSERT_TRUE(disabled.ok()) << disabled.status();

  absl::StatusOr<bool> undone = tenants.DeleteIfNewest("shop", created_at);
  ASSERT_TRUE(undone.ok()) << undone.status();
  EXPECT_FALSE(*undone);
  EXPECT_FALSE((*shop)->Latest()->metadata().enabled()) << "the later commit is kept";
  EXPECT_THAT(*storage->ListTenants(), ::testing::ElementsAre("shop"));

  Transaction enable((*shop)->Latest());
  ASSERT_TRUE(enable.SetEnabled(true).ok());
  undone = tenants.DeleteIfNewest("shop", *disabled);
  ASSERT_TRUE(undone.ok()) << undone.status();
  EXPECT_TRUE(*undone);
  EXPECT_TRUE(absl::IsNotFound((*shop)->Commit(enable.Prepare()).status()));
  EXPECT_TRUE(absl::IsNotFound(tenants.Get("shop").status()));
  EXPECT_THAT(*storage->ListTenants(), ::testing::IsEmpty());
  EXPECT_TRUE(absl::IsInvalidArgument(tenants.DeleteIfNewest("no spaces", 0).status()));
}

}  // namespace
}  // namespace txfn

// PostgresStorage's tenant ownership: one writer per tenant through a lease with a fencing
// token checked inside every commit; other instances read and are refused writes.
#include <atomic>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "lib/postgres/pg_connection.h"
#include "tests/postgres/pg_storage_test_util.h"
#include "tests/postgres/pg_test_util.h"
#include "txfn/committer.h"
#include "txfn/postgres_storage.h"

namespace txfn {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;
using ::txfn::testing::TempPostgresStorage;

CommitRecord Put(Timestamp ts, std::string value, std::string tenant = "t") {
  return CommitRecord{.tenant = std::move(tenant),
                      .ts = ts,
                      .writes = {{.index = 1, .key = "k", .value = std::move(value)}}};
}

absl::Status WriteOne(Storage& s, const CommitRecord& c) { return s.Write({&c, 1}); }

TEST(PostgresOwnershipTest, AnotherInstanceReadsButIsRefusedWritesNamingTheOwner) {
  TXFN_REQUIRE_PG_SERVER();
  auto a = TempPostgresStorage::Make({.owner = "owner-a"});
  ASSERT_NE(a, nullptr);
  ASSERT_TRUE(WriteOne(*a, Put(1, "a1")).ok());
  auto b = a->Another({.owner = "owner-b"});
  ASSERT_NE(b, nullptr);

  // Reads at the published timestamp are served.
  auto max = b->MaxCommittedTimestamp("t");
  ASSERT_TRUE(max.ok()) << max.status();
  EXPECT_EQ(*max, 1u);
  auto got = b->Get("t", 1, "k", 1);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(*got, (IndexEntry{"k", "a1", 1}));

  absl::Status refused = WriteOne(*b, Put(2, "b2"));
  EXPECT_EQ(refused.code(), absl::StatusCode::kFailedPrecondition) << refused;
  EXPECT_THAT(std::string(refused.message()), AllOf(HasSubstr("owner-a"), HasSubstr("owner-b")));
  absl::Status acquire = b->inner().AcquireTenant("t");
  EXPECT_EQ(acquire.code(), absl::StatusCode::kFailedPrecondition) << acquire;
  EXPECT_THAT(std::string(acquire.message()), HasSubstr("owner-a"));

  auto lease_b = b->inner().Lease("t");
  ASSERT_TRUE(lease_b.ok()) << lease_b.status();
  EXPECT_EQ(lease_b->owner, "owner-a");
  EXPECT_EQ(lease_b->token, 1);
  EXPECT_FALSE(lease_b->held_by_this);
  EXPECT_GT(lease_b->expires_at, absl::Now());
  auto lease_a = a->inner().Lease("t");
  ASSERT_TRUE(lease_a.ok());
  EXPECT_TRUE(lease_a->held_by_this);
  EXPECT_EQ(b->inner().Lease("never").status().code(), absl::StatusCode::kNotFound);

  // The refusal wrote nothing; the owner goes on.
  EXPECT_EQ(*a->MaxCommittedTimestamp("t"), 1u);
  EXPECT_TRUE(WriteOne(*a, Put(2, "a2")).ok());
  // Other tenants are free to take.
  EXPECT_TRUE(WriteOne(*b, Put(1, "b1", "u")).ok());
}

TEST(PostgresOwnershipTest, ANewOwnerAfterExpiryFencesTheOldOneUntilItWritesCurrentState) {
  TXFN_REQUIRE_PG_SERVER();
  const absl::Duration lease = absl::Milliseconds(200);
  auto a = TempPostgresStorage::Make({.owner = "owner-a", .lease_duration = lease});
  ASSERT_NE(a, nullptr);
  auto b = a->Another({.owner = "owner-b", .lease_duration = lease});
  ASSERT_NE(b, nullptr);
  ASSERT_TRUE(WriteOne(*a, Put(1, "a1")).ok());

  // A pauses past its lease; B takes over, with a higher fencing token.
  absl::SleepFor(lease + absl::Milliseconds(100));
  ASSERT_TRUE(b->inner().AcquireTenant("t").ok());
  EXPECT_EQ(b->inner().Lease("t")->token, 2);

  // A wakes up and tries to commit: fenced, nothing written.
  absl::Status stale = WriteOne(*a, Put(2, "a2"));
  EXPECT_EQ(stale.code(), absl::StatusCode::kFailedPrecondition) << stale;
  EXPECT_TRUE(IsTenantOwnedElsewhere(stale)) << stale;
  EXPECT_THAT(std::string(stale.message()), HasSubstr("owner-b"));
  EXPECT_TRUE(a->inner().MayHaveOtherWriters("t"));
  EXPECT_EQ(*b->MaxCommittedTimestamp("t"), 1u);
  ASSERT_TRUE(WriteOne(*b, Put(2, "b2")).ok());

  // Once B's lease expired, A takes the tenant back by writing, as any instance may; but
  // a Write validated on A's old state (it had seen ts 1) is refused as stale, and until a
  // Write under the new token succeeds A's readers keep following storage.
  absl::SleepFor(lease + absl::Milliseconds(100));
  CommitRecord a3 = Put(3, "a3");
  a3.previous_ts = 1;
  stale = WriteOne(*a, a3);
  EXPECT_TRUE(IsStaleWriter(stale)) << stale;
  EXPECT_TRUE(a->inner().MayHaveOtherWriters("t"));
  // A read renews the lease but does not show the committer current.
  EXPECT_EQ(*a->MaxCommittedTimestamp("t"), 2u);
  EXPECT_TRUE(a->inner().MayHaveOtherWriters("t"));
  a3.previous_ts = 2;  // reloaded
  ASSERT_TRUE(WriteOne(*a, a3).ok());
  EXPECT_EQ(a->inner().Lease("t")->token, 3);
  EXPECT_FALSE(a->inner().MayHaveOtherWriters("t"));
  // Now B is the fenced one.
  absl::Status fenced = WriteOne(*b, Put(4, "b4"));
  EXPECT_EQ(fenced.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(IsTenantOwnedElsewhere(fenced)) << fenced;

  auto log = a->ReadLog("t", 0, 0);
  ASSERT_TRUE(log.ok());
  std::vector<std::string> values;
  for (const CommitRecord& c : *log) values.push_back(*c.writes.at(0).value);
  EXPECT_THAT(values, ::testing::ElementsAre("a1", "b2", "a3"));
}

// B takes A's tenant (A's lease ran out), writes, and gives it back at once (an engine's
// pruning of a tenant it does not serve does): A's next Write takes the tenant back in the same
// call instead of failing "the lease passed to another instance": refused as stale, as A
// missed B's commit (its committer rebases), then written.
TEST(PostgresOwnershipTest, AWriteAfterTheOtherOwnerGaveTheTenantBackTakesItAgain) {
  TXFN_REQUIRE_PG_SERVER();
  const absl::Duration lease = absl::Milliseconds(200);
  auto a = TempPostgresStorage::Make({.owner = "owner-a", .lease_duration = lease});
  ASSERT_NE(a, nullptr);
  auto b = a->Another({.owner = "owner-b", .lease_duration = absl::Seconds(30)});
  ASSERT_NE(b, nullptr);
  ASSERT_TRUE(WriteOne(*a, Put(1, "a1")).ok());
  absl::SleepFor(lease + absl::Milliseconds(100));
  CommitRecord b2 = Put(2, "b2");
  b2.previous_ts = 1;
  ASSERT_TRUE(WriteOne(*b, b2).ok());
  ASSERT_TRUE(b->inner().ReleaseTenant("t").ok());

  // A still has its token (1); the tenant's is 2, and nobody holds it.
  EXPECT_EQ(a->inner().Lease("t")->owner, "");
  CommitRecord a3 = Put(3, "a3");
  a3.previous_ts = 1;  // A missed b2
  absl::Status stale = WriteOne(*a, a3);
  EXPECT_TRUE(IsStaleWriter(stale)) << stale;
  EXPECT_FALSE(IsTenantOwnedElsewhere(stale)) << stale;
  a3.previous_ts = 2;
  ASSERT_TRUE(WriteOne(*a, a3).ok());
  EXPECT_EQ(a->inner().Lease("t")->owner, "owner-a");
  EXPECT_EQ(a->inner().Lease("t")->token, 3);
  auto log = a->ReadLog("t", 0, 0);
  ASSERT_TRUE(log.ok());
  std::vector<std::string> values;
  for (const CommitRecord& c : *log) values.push_back(*c.writes.at(0).value);
  EXPECT_THAT(values, ::testing::ElementsAre("a1", "b2", "a3"));
}

// An instance that wrote tenant "t" (token 1), and a second under the same name (a restarted
// process that keeps it) that took "t" over without waiting by writing it (token 2).
void ReplaceUnderOneName(std::unique_ptr<TempPostgresStorage>& a,
                         std::unique_ptr<TempPostgresStorage>& a2) {
  a = TempPostgresStorage::Make({.owner = "owner-a", .lease_duration = absl::Hours(1)});
  ASSERT_NE(a, nullptr);
  ASSERT_TRUE(WriteOne(*a, Put(1, "a1")).ok());
  a2 = a->Another({.owner = "owner-a", .lease_duration = absl::Hours(1)});
  ASSERT_NE(a2, nullptr);
  ASSERT_TRUE(WriteOne(*a2, Put(2, "a2")).ok());
}

TEST(PostgresOwnershipTest, ClosingReleasesTheLeasesAndTheSameNameResumesAtOnce) {
  TXFN_REQUIRE_PG_SERVER();
  std::unique_ptr<TempPostgresStorage> a, a2;
  ASSERT_NO_FATAL_FAILURE(ReplaceUnderOneName(a, a2));
  EXPECT_EQ(WriteOne(*a, Put(3, "a3")).code(), absl::StatusCode::kFailedPrecondition);
  // Closed, a2 releases its lease: b, under another name, writes at once.
  auto b = a2->Another({.owner = "owner-b"});
  a2.reset();
  ASSERT_TRUE(WriteOne(*b, Put(3, "b3")).ok());
  EXPECT_EQ(b->inner().Lease("t")->owner, "owner-b");
}

// An instance replaced under its own name (a restarted process that kept it took its tenants
// over) and closed before it learnt so releases the leases it held, by their fencing tokens:
// not its successor's, though they are under the same name. (Releasing by name alone left
// the successor's writes refused until it acquired its tenants again.)
TEST(PostgresOwnershipTest, ClosingAReplacedInstanceLeavesItsSuccessorsLeases) {
  TXFN_REQUIRE_PG_SERVER();
  std::unique_ptr<TempPostgresStorage> a, a2;
  ASSERT_NO_FATAL_FAILURE(ReplaceUnderOneName(a, a2));
  a.reset();  // it still counts token 1 its own
  auto lease = a2->inner().Lease("t");
  ASSERT_TRUE(lease.ok()) << lease.status();
  EXPECT_EQ(lease->owner, "owner-a");
  EXPECT_EQ(lease->token, 2);
  EXPECT_TRUE(lease->held_by_this);
  EXPECT_TRUE(WriteOne(*a2, Put(3, "a3")).ok());
}

// A takeover whose connection breaks with it sent (the server process ends at its commit,
// as in a shutdown) may have taken the lease: AcquireTenant says the outcome is unknown, not
// "not taken" (Unavailable alone); acquiring again works.
TEST(PostgresOwnershipTest, ATakeoverLostAtCommitIsAnUnknownOutcome) {
  TXFN_REQUIRE_PG_SERVER();
  auto a = TempPostgresStorage::Make({.owner = "owner-a"});
  ASSERT_NE(a, nullptr);
  auto admin = pg_internal::PgConnection::Open(a->db().url());
  ASSERT_TRUE(admin.ok()) << admin.status();
  ASSERT_TRUE(testing::EndAtCommitAfter(**admin, "txfn_owners", "INSERT OR UPDATE").ok());
  absl::Status lost = a->inner().AcquireTenant("t");
  EXPECT_EQ(lost.code(), absl::StatusCode::kUnavailable) << lost;
  EXPECT_TRUE(IsCommitOutcomeUnknown(lost)) << lost;
  ASSERT_TRUE(testing::StopEndingAtCommit(**admin, "txfn_owners").ok());
  EXPECT_TRUE(a->inner().AcquireTenant("t").ok());
  EXPECT_TRUE(WriteOne(*a, Put(1, "a1")).ok());
}

// A DeleteTenant and a Write of the tenant at once: the delete ran statement by statement,
// so a Write committing in between kept its commit, versions and log, and lost its tenant
// row: commits that MaxCommittedTimestamp and ListTenants did not know of. The delete now
// waits for the tenant's writers (and they for it): the tenant is whole or gone.
TEST(PostgresOwnershipTest, ADeleteRacingAWriteLeavesTheTenantWholeOrGone) {
  TXFN_REQUIRE_PG_SERVER();
  auto a = TempPostgresStorage::Make({.owner = "owner-a"});
  ASSERT_NE(a, nullptr);
  ASSERT_TRUE(WriteOne(*a, Put(1, "a1")).ok());
  auto side = pg_internal::PgConnection::Open(a->db().url());
  auto watch = pg_internal::PgConnection::Open(a->db().url());
  ASSERT_TRUE(side.ok() && watch.ok());
  auto pid_of = [](pg_internal::PgConnection& c) {
    auto r = c.Exec("SELECT pg_backend_pid()");
    return r.ok() ? r->Int(0, 0) : -1;
  };
  // The server process running `statement`, once something of `blockers` blocks it.
  auto blocked = [&](const std::string& statement, const std::string& blockers) -> int64_t {
    for (int i = 0; i < 1000; ++i) {
      auto r = (*watch)->Exec("SELECT pid FROM pg_stat_activity WHERE query LIKE '%" + statement +
                              "%' AND pg_blocking_pids(pid) && ARRAY[" + blockers + "]");
      if (r.ok() && r->rows() == 1) return r->Int(0, 0);
      absl::SleepFor(absl::Milliseconds(5));
    }
    return -1;
  };
  // The Write waits for the tenant row at its end, its rows inserted.
  ASSERT_TRUE((*side)->Exec("BEGIN").ok());
  ASSERT_TRUE(
      (*side)->Exec("SELECT 1 FROM txfn_tenants WHERE tenant = 't'::bytea FOR UPDATE").ok());
  const std::string side_pid = std::to_string(pid_of(**side));
  CommitRecord second = Put(2, "a2");
  second.previous_ts = 1;
  absl::Status written, deleted;
  std::thread writer([&] { written = WriteOne(*a, second); });
  const int64_t writer_pid = blocked("txfn_write", side_pid);
  EXPECT_GT(writer_pid, 0);  // (no ASSERT: the threads must be joined)
  std::thread deleter([&] { deleted = a->DeleteTenant("t"); });
  EXPECT_GT(blocked("txfn_delete_tenant", side_pid + "," + std::to_string(writer_pid)), 0);
  ASSERT_TRUE((*side)->Exec("ROLLBACK").ok());
  writer.join();
  deleter.join();
  EXPECT_TRUE(written.ok()) << written;
  EXPECT_TRUE(deleted.ok()) << deleted;
  // The Write committed first, so the delete removed it too: nothing of the tenant is left.
  auto log = a->ReadLog("t", 0, 0);
  ASSERT_TRUE(log.ok()) << log.status();
  EXPECT_TRUE(log->empty()) << log->size() << " commits outlived the delete";
  EXPECT_EQ(*a->MaxCommittedTimestamp("t"), 0u);
  EXPECT_EQ(*a->Get("t", 1, "k", 2), std::nullopt);
  EXPECT_THAT(*a->ListTenants(), ::testing::IsEmpty());
}

// Threads of one instance writing a new tenant at once take its lease once: none of them
// fences another.
TEST(PostgresOwnershipTest, ThreadsWritingANewTenantAtOnceTakeItsLeaseOnce) {
  TXFN_REQUIRE_PG_SERVER();
  auto storage = TempPostgresStorage::Make({.owner = "owner-a"});
  ASSERT_NE(storage, nullptr);
  constexpr int kThreads = 8;
  std::atomic<int> ready{0};
  std::atomic<int> refused{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < kThreads; ++i) {
    threads.emplace_back([&, i] {
      ++ready;
      while (ready.load() < kThreads) {
      }
      // Distinct tenants' commits would not race for timestamps; one tenant's do, and
      // the losers get InvalidArgument, never FailedPrecondition.
      absl::Status s = WriteOne(*storage, Put(static_cast<Timestamp>(i + 1), "v"));
      if (s.code() == absl::StatusCode::kFailedPrecondition) ++refused;
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(refused.load(), 0);
  EXPECT_EQ(storage->inner().Lease("t")->token, 1);
}

TEST(PostgresOwnershipTest, DefaultOwnerNamesAreUnique) {
  TXFN_REQUIRE_PG_SERVER();
  auto a = TempPostgresStorage::Make();
  ASSERT_NE(a, nullptr);
  auto b = a->Another({});
  ASSERT_NE(b, nullptr);
  EXPECT_NE(a->inner().owner(), b->inner().owner());
  EXPECT_THAT(a->inner().owner(), HasSubstr(std::to_string(getpid())));
}

// Two instances keep committing to one tenant with short leases, pausing now and then so
// the other takes over (explicitly, after being refused). Every acknowledged commit is in
// the log exactly once, and nothing else is.
TEST(PostgresOwnershipTest, TakeoversNeverLoseOrDoubleACommit) {
  TXFN_REQUIRE_PG_SERVER();
  const absl::Duration lease = absl::Milliseconds(30);
  auto a = TempPostgresStorage::Make({.owner = "owner-a", .lease_duration = lease});
  ASSERT_NE(a, nullptr);
  auto b = a->Another({.owner = "owner-b", .lease_duration = lease});
  ASSERT_NE(b, nullptr);
  std::atomic<bool> stop{false};
  std::atomic<int> unexpected{0};
  std::atomic<int> takeovers{0};
  std::vector<std::map<Timestamp, std::string>> acked(2);
  auto writer = [&](int w, TempPostgresStorage& s) {
    std::mt19937_64 rng(w + 1);
    for (int n = 0; !stop.load(); ++n) {
      auto max = s.MaxCommittedTimestamp("t");
      if (!max.ok()) {
        ++unexpected;
        continue;
      }
      std::string value = std::to_string(w) + ":" + std::to_string(n);
      absl::Status st = WriteOne(s, Put(*max + 1, value));
      if (st.ok()) {
        acked[w][*max + 1] = value;
      } else if (st.code() == absl::StatusCode::kFailedPrecondition) {
        // Fenced or refused: wait for the other's lease to run out, then take over.
        absl::SleepFor(absl::Milliseconds(5));
        if (s.inner().AcquireTenant("t").ok()) ++takeovers;
      } else if (st.code() != absl::StatusCode::kInvalidArgument) {  // lost the ts race
        ADD_FAILURE() << st;
        ++unexpected;
      }
      // Now and then a pause longer than the lease.
      if (rng() % 8 == 0) absl::SleepFor(lease + absl::Milliseconds(rng() % 20));
    }
  };
  std::thread ta(writer, 0, std::ref(*a));
  std::thread tb(writer, 1, std::ref(*b));
  absl::SleepFor(absl::Milliseconds(1500));
  stop = true;
  ta.join();
  tb.join();
  EXPECT_EQ(unexpected.load(), 0);
  EXPECT_GE(takeovers.load(), 2);
  auto log = a->ReadLog("t", 0, 0);
  ASSERT_TRUE(log.ok()) << log.status();
  std::map<Timestamp, std::string> logged;
  for (const CommitRecord& c : *log) logged[c.ts] = *c.writes.at(0).value;
  std::map<Timestamp, std::string> all = acked[0];
  for (const auto& [ts, v] : acked[1]) {
    EXPECT_TRUE(all.emplace(ts, v).second) << "ts " << ts << " acknowledged to both";
  }
  EXPECT_EQ(logged, all);
  EXPECT_GT(acked[0].size(), 5u);
  EXPECT_GT(acked[1].size(), 5u);
}

// A committer of a process that does not own the tenant follows the owner's commits
// (Latest() reads at the published timestamp), and one that takes the tenant over with a
// transaction validated against its old state is refused (StaleWriterError: the owner's
// later commits are missing from its conflict history, so committing would lose the
// owner's update), reloads, and commits the retried transaction on top of them.
PreparedCommit ReadAndWriteK(Timestamp begin_ts, std::string value) {
  return PreparedCommit{.tenant = "t",
                        .begin_ts = begin_ts,
                        .reads = {{.index = 1, .range = KeyRange::Point("k")}},
                        .writes = {{.index = 1, .key = "k", .value = std::move(value)}}};
}

TEST(PostgresOwnershipTest, ACommitterNeverCommitsOverAnotherOwnersCommitsItHasNotSeen) {
  TXFN_REQUIRE_PG_SERVER();
  std::shared_ptr<TempPostgresStorage> a = TempPostgresStorage::Make({.owner = "owner-a"});
  ASSERT_NE(a, nullptr);
  std::shared_ptr<TempPostgresStorage> b = a->Another({.owner = "owner-b"});
  ASSERT_NE(b, nullptr);
  auto committer_a = Committer::Open(a, "t");
  ASSERT_TRUE(committer_a.ok()) << committer_a.status();
  auto first = (*committer_a)->Commit(ReadAndWriteK((*committer_a)->Latest()->ts(), "a1"));
  ASSERT_TRUE(first.ok()) << first.status();

  auto committer_b = Committer::Open(b, "t");
  ASSERT_TRUE(committer_b.ok()) << committer_b.status();
  std::shared_ptr<const Snapshot> old = (*committer_b)->Latest();
  EXPECT_EQ(old->ts(), *first);
  EXPECT_TRUE(b->MayHaveOtherWriters("t"));
  EXPECT_FALSE(a->MayHaveOtherWriters("t"));

  // The owner commits again; b's next snapshot has it.
  auto second = (*committer_a)->Commit(ReadAndWriteK(*first, "a2"));
  ASSERT_TRUE(second.ok()) << second.status();
  std::shared_ptr<const Snapshot> followed = (*committer_b)->Latest();
  EXPECT_EQ(followed->ts(), *second);
  EXPECT_EQ((*committer_b)->stats().reloads, 1u);
  auto seen = b->Get("t", 1, "k", followed->ts());
  ASSERT_TRUE(seen.ok() && seen->has_value());
  EXPECT_EQ((*seen)->value, "a2");

  // Not the owner: refused, nothing written.
  auto refused = (*committer_b)->Commit(ReadAndWriteK(followed->ts(), "b-refused"));
  EXPECT_FALSE(refused.ok());
  EXPECT_THAT(std::string(refused.status().message()), HasSubstr("owner-a"));

  // The owner commits a third time and hands the tenant over. b then commits a transaction
  // that read k at the old snapshot: its conflict history knows nothing after `second`...
  auto third = (*committer_a)->Commit(ReadAndWriteK(*second, "a3"));
  ASSERT_TRUE(third.ok()) << third.status();
  ASSERT_TRUE(a->inner().ReleaseTenant("t").ok());
  auto stale = (*committer_b)->Commit(ReadAndWriteK(followed->ts(), "b-lost-update"));
  // ...so only storage can tell: refused as stale, retryable, and b has reloaded.
  ASSERT_FALSE(stale.ok());
  EXPECT_EQ(stale.status().code(), absl::StatusCode::kFailedPrecondition) << stale.status();
  EXPECT_THAT(std::string(stale.status().message()), HasSubstr("another process"));
  EXPECT_EQ((*committer_b)->stats().stale_batches, 1u);
  auto kept = b->Get("t", 1, "k", *third);
  ASSERT_TRUE(kept.ok() && kept->has_value());
  EXPECT_EQ((*kept)->value, "a3");
  EXPECT_EQ(*b->MaxCommittedTimestamp("t"), *third);

  // The retry, from the new snapshot, commits on top of a3; a is fenced now.
  std::shared_ptr<const Snapshot> fresh = (*committer_b)->Latest();
  EXPECT_EQ(fresh->ts(), *third);
  auto retried = (*committer_b)->Commit(ReadAndWriteK(fresh->ts(), "b1"));
  ASSERT_TRUE(retried.ok()) << retried.status();
  EXPECT_GT(*retried, *third);
  EXPECT_FALSE(b->MayHaveOtherWriters("t"));
  EXPECT_FALSE((*committer_a)->Commit(ReadAndWriteK(*third, "a-fenced")).ok());
  auto last = b->Get("t", 1, "k", *retried);
  ASSERT_TRUE(last.ok() && last->has_value());
  EXPECT_EQ((*last)->value, "b1");
}

// An owner that only reads keeps its tenant: once its lease could have run out by its own
// clock, the next Latest() reads the newest commit and extends the lease in the same round
// trip, and the following calls cost nothing again.
TEST(PostgresOwnershipTest, AnOwnerThatOnlyReadsKeepsItsLease) {
  TXFN_REQUIRE_PG_SERVER();
  const absl::Duration lease = absl::Milliseconds(300);
  std::shared_ptr<TempPostgresStorage> a =
      TempPostgresStorage::Make({.owner = "owner-a", .lease_duration = lease});
  ASSERT_NE(a, nullptr);
  auto committer = Committer::Open(a, "t");
  ASSERT_TRUE(committer.ok()) << committer.status();
  auto first = (*committer)->Commit(ReadAndWriteK(0, "a1"));
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_FALSE(a->MayHaveOtherWriters("t"));
  for (int round = 0; round < 3; ++round) {
    absl::SleepFor(lease + absl::Milliseconds(50));
    EXPECT_TRUE(a->MayHaveOtherWriters("t")) << "round " << round;
    EXPECT_EQ((*committer)->Latest()->ts(), *first);
    EXPECT_FALSE(a->MayHaveOtherWriters("t")) << "round " << round << ": not extended";
    auto held = a->inner().Lease("t");
    ASSERT_TRUE(held.ok()) << held.status();
    EXPECT_TRUE(held->held_by_this);
    EXPECT_GT(held->expires_at, absl::Now());
  }
  // Another instance cannot take it meanwhile; the owner still writes.
  std::shared_ptr<TempPostgresStorage> b =
      a->Another({.owner = "owner-b", .lease_duration = lease});
  ASSERT_NE(b, nullptr);
  EXPECT_EQ(b->inner().AcquireTenant("t").code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE((*committer)->Commit(ReadAndWriteK(*first, "a2")).ok());
  EXPECT_EQ((*committer)->stats().reloads, 0u) << "its own commits need no reload";
}

}  // namespace
}  // namespace txfn

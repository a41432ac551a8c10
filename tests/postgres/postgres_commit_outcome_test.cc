// PostgresStorage when a Write's answer is lost: the connection breaks after the batch was
// sent (the test breaks the socket or kills the server process running it). The adapter
// resolves the outcome itself (committed: OK; absent: Unavailable), or reports an unknown
// outcome — never "not persisted" for a batch that may have committed — and then the
// tenant's MaxCommittedTimestamp/ReadLog settle it, as the committer's resolution does.
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <cstdlib>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <thread>

#include "absl/cleanup/cleanup.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "lib/postgres/pg_connection.h"
#include "tests/postgres/pg_storage_test_util.h"
#include "tests/postgres/pg_test_util.h"
#include "tests/txn_test_util.h"
#include "txfn/committer.h"
#include "txfn/postgres_storage.h"
#include "txfn/transaction.h"

namespace txfn {
namespace {

using pg_internal::PgConnection;
using pg_internal::PgParam;
using ::testing::HasSubstr;
using ::txfn::testing::TempPostgresStorage;
using namespace testing_util;  // NOLINT(google-build-using-namespace)

// What the fault hook does to the next Write.
enum class Fault {
  kNone,
  // Breaks the client's socket once the server has the batch, and waits until the server
  // process has run it and exited: committed, answer lost.
  kLoseAnswer,
  // The batch blocks on a row lock the test holds; the test then kills the server process
  // running it: absent, answer lost.
  kKillWhileBlocked,
  // The batch blocks on a row lock the test holds; the test then breaks the client's socket
  // (the server process goes on waiting, and commits once the lock is released).
  kLoseAnswerWhileBlocked,
  // As kKillWhileBlocked, then the lock is released and then_ runs (the test's next step).
  kKillWhileBlockedThen,
  // As kLoseAnswer, then then_ runs (before the Write resolves the outcome).
  kLoseAnswerThen,
};

CommitRecord Put(Timestamp ts, std::string key, std::string value) {
  return CommitRecord{.tenant = "t",
                      .ts = ts,
                      .writes = {{.index = 1, .key = std::move(key), .value = std::move(value)}}};
}

class PostgresCommitOutcomeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::txfn::testing::PgServerUrl().empty()) GTEST_SKIP() << "no PostgreSQL server";
  }

  // A storage whose Writes suffer fault_ (once each time it is set).
  std::unique_ptr<TempPostgresStorage> Make(
      absl::Duration resolution_timeout,
      absl::Duration lease_duration = PostgresStorageOptions{}.lease_duration) {
    auto storage = TempPostgresStorage::Make(
        {.lease_duration = lease_duration,
         .outcome_resolution_timeout = resolution_timeout,
         .after_write_sent = [this](int socket, int pid) { Inject(socket, pid); }});
    if (storage != nullptr) {
      auto side = PgConnection::Open(storage->db().url());
      auto watch = PgConnection::Open(storage->db().url());
      EXPECT_TRUE(side.ok() && watch.ok());
      if (side.ok() && watch.ok()) {
        side_ = *std::move(side);
        watch_ = *std::move(watch);
      }
    }
    return storage;
  }

  void Inject(int socket, int pid) {
    Fault fault = fault_.exchange(Fault::kNone);
    if (fault == Fault::kNone) return;
    blocked_pid_ = pid;
    if (fault == Fault::kLoseAnswerWhileBlocked) {
      ASSERT_TRUE(WaitFor(pid, "wait_event_type = 'Lock'"));
      BreakSocket(socket);
      return;
    }
    if (fault == Fault::kLoseAnswer || fault == Fault::kLoseAnswerThen) {
      // The socket becomes one that reads end-of-file: the connection closes, and an
      // answer that already arrived (a slow client thread) is lost with it. (shutdown(2)
      // would leave such an answer readable, and the Write would succeed.)
      BreakSocket(socket);
    } else {
      // Wait until the batch waits for the test's lock, then end its server process.
      ASSERT_TRUE(WaitFor(pid, "wait_event_type = 'Lock'"));
      ASSERT_TRUE(watch_->Exec("SELECT pg_terminate_backend($1)", {PgParam::Int(pid)}).ok());
    }
    ASSERT_TRUE(WaitFor(pid, "false")) << "the server process did not exit";
    if (fault == Fault::kKillWhileBlockedThen) Unlock();
    if (fault == Fault::kKillWhileBlockedThen || fault == Fault::kLoseAnswerThen) then_();
  }

  // `socket` becomes one that reads end-of-file.
  static void BreakSocket(int socket) {
    int dead[2];
    ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, dead), 0);
    close(dead[1]);
    ASSERT_EQ(dup2(dead[0], socket), socket);
    close(dead[0]);
  }

  // Whether server process `pid` reaches `condition` (on pg_stat_activity), or, for
  // "false", is gone; within 5 s.
  bool WaitFor(int pid, const std::string& condition) {
    for (int i = 0; i < 1000; ++i) {
      auto r = watch_->Exec("SELECT " + condition + " FROM pg_stat_activity WHERE pid = $1",
                            {PgParam::Int(pid)});
      if (!r.ok()) return false;
      if (condition == "false" ? r->rows() == 0 : (r->rows() == 1 && r->Text(0, 0) == "t")) {
        return true;
      }
      absl::SleepFor(absl::Milliseconds(5));
    }
    return false;
  }

  // Holds the row lock of tenant t's txfn_tenants row (the batch's last step waits for it).
  void LockTenantRow() {
    ASSERT_TRUE(side_->Exec("BEGIN").ok());
    ASSERT_TRUE(
        side_->Exec("SELECT 1 FROM txfn_tenants WHERE tenant = 't'::bytea FOR UPDATE").ok());
  }
  void Unlock() { ASSERT_TRUE(side_->Exec("ROLLBACK").ok()); }

  // Makes every later commit of a batch run `body` (PL/pgSQL) at the transaction's commit:
  // after the batch's statement has run and its answer row is on its way. Unset removes it.
  void AtCommit(const std::string& body) {
    ASSERT_TRUE(side_
                    ->Exec("CREATE FUNCTION at_commit() RETURNS trigger LANGUAGE plpgsql AS $$ "
                           "BEGIN " +
                           body +
                           " RETURN NULL; END $$; "
                           "CREATE CONSTRAINT TRIGGER at_commit AFTER INSERT ON txfn_commits "
                           "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION "
                           "at_commit()")
                    .ok());
  }
  void UnsetAtCommit() {
    ASSERT_TRUE(
        side_->Exec("DROP TRIGGER at_commit ON txfn_commits; DROP FUNCTION at_commit()").ok());
  }
  // Writes ts 1, then ts 2 with AtCommit(body); the second Write's status.
  absl::Status WriteTheSecondWithAtCommit(Storage& storage, const std::string& body) {
    CommitRecord first = Put(1, "a", "1");
    EXPECT_TRUE(storage.Write({&first, 1}).ok());
    AtCommit(body);
    CommitRecord second = Put(2, "b", "2");
    absl::Status s = storage.Write({&second, 1});
    UnsetAtCommit();
    return s;
  }
  // After WriteTheSecondWithAtCommit failed: ts 2 is absent, and commits when written again.
  void ExpectTheSecondAbsentAndWritable(Storage& storage) {
    EXPECT_EQ(*storage.MaxCommittedTimestamp("t"), 1u);
    EXPECT_EQ(*storage.Get("t", 1, "b", 2), std::nullopt);
    CommitRecord second = Put(2, "b", "2");
    EXPECT_TRUE(storage.Write({&second, 1}).ok());
    EXPECT_EQ(*storage.MaxCommittedTimestamp("t"), 2u);
  }

  // Another instance on the storage's schema.
  static std::unique_ptr<PostgresStorage> OpenOther(const TempPostgresStorage& storage) {
    auto other = PostgresStorage::Open({.url = storage.db().url(), .owner = "other"});
    EXPECT_TRUE(other.ok()) << other.status();
    return other.ok() ? *std::move(other) : nullptr;
  }
  // Every lease runs out now.
  void ExpireLeases() {
    ASSERT_TRUE(
        watch_->Exec("UPDATE txfn_owners SET expires_at = clock_timestamp() - interval '1 s'")
            .ok());
  }
  // Tenant t's lease passes to `other`, which writes `theirs` and applies retention up to it.
  void TakeOverWriteAndRetain(PostgresStorage& other, const CommitRecord& theirs) {
    ExpireLeases();
    ASSERT_TRUE(other.AcquireTenant("t").ok());
    const absl::Status written = other.Write({&theirs, 1});
    ASSERT_TRUE(written.ok()) << written;
    RetainUpTo(other, theirs.ts);
  }
  // `other` applies retention to tenant t up to its commit at `ts`: the rows up to it go.
  static void RetainUpTo(PostgresStorage& other, Timestamp ts) {
    auto retained = other.ApplyRetention("t", ts, 0);
    ASSERT_TRUE(retained.ok()) << retained.status();
    ASSERT_EQ(retained->horizon, ts);
  }

  std::atomic<Fault> fault_{Fault::kNone};
  std::atomic<int> blocked_pid_{0};     // the server process of the last faulty Write
  std::function<void()> then_;          // kKillWhileBlockedThen's next step
  std::unique_ptr<PgConnection> side_;  // holds the lock
  // Watches pg_stat_activity: never inside a transaction, which would freeze its view.
  std::unique_ptr<PgConnection> watch_;
};

TEST_F(PostgresCommitOutcomeTest, ALostAnswerOfACommittedBatchIsResolvedCommitted) {
  auto storage = Make(absl::Seconds(5));
  ASSERT_NE(storage, nullptr);
  std::vector<CommitRecord> batch = {Put(1, "a", "1"), Put(2, "b", "2")};
  fault_ = Fault::kLoseAnswer;
  ASSERT_TRUE(storage->Write(batch).ok());
  EXPECT_EQ(*storage->MaxCommittedTimestamp("t"), 2u);
  EXPECT_EQ(*storage->Get("t", 1, "b", 2), (IndexEntry{"b", "2", 2}));
  // And it goes on writing (a fresh connection replaced the broken one).
  CommitRecord next = Put(3, "c", "3");
  EXPECT_TRUE(storage->Write({&next, 1}).ok());
}

TEST_F(PostgresCommitOutcomeTest, ALostAnswerOfAnAbortedBatchIsNotPersistedAndNotUnknown) {
  auto storage = Make(absl::Seconds(5));
  ASSERT_NE(storage, nullptr);
  CommitRecord first = Put(1, "a", "1");
  ASSERT_TRUE(storage->Write({&first, 1}).ok());
  LockTenantRow();
  fault_ = Fault::kKillWhileBlocked;
  CommitRecord second = Put(2, "b", "2");
  absl::Status s = storage->Write({&second, 1});
  Unlock();
  EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable) << s;
  EXPECT_FALSE(IsCommitOutcomeUnknown(s)) << s;
  EXPECT_THAT(std::string(s.message()), HasSubstr("not persisted"));
  EXPECT_EQ(*storage->MaxCommittedTimestamp("t"), 1u);
  EXPECT_EQ(*storage->Get("t", 1, "b", 2), std::nullopt);
  // Absent for good: the same timestamp commits now.
  EXPECT_TRUE(storage->Write({&second, 1}).ok());
}

// The server sends a statement's rows before its implicit transaction commits (at the
// protocol's Sync). An error of the commit itself follows those rows: the batch was rolled
// back, and Write must say so, not take the rows for a success.
TEST_F(PostgresCommitOutcomeTest, ABatchRefusedAtItsCommitIsAnErrorNotASuccess) {
  auto storage = Make(absl::Seconds(5));
  ASSERT_NE(storage, nullptr);
  absl::Status s = WriteTheSecondWithAtCommit(*storage, "RAISE EXCEPTION 'refused at commit';");
  EXPECT_FALSE(s.ok()) << "the batch was rolled back";
  EXPECT_THAT(std::string(s.message()), HasSubstr("refused at commit"));
  EXPECT_FALSE(IsCommitOutcomeUnknown(s)) << s;
  ExpectTheSecondAbsentAndWritable(*storage);
}

// The server process ends during the commit (as in a server shutdown): it flushes the rows
// it had ready, and a farewell, before it exits. The batch is absent; Write must not answer
// OK for it. (The crash test met this: an "acknowledged" commit missing after a restart.)
TEST_F(PostgresCommitOutcomeTest, AServerProcessEndedDuringItsCommitIsNotASuccess) {
  auto storage = Make(absl::Seconds(5));
  ASSERT_NE(storage, nullptr);
  absl::Status s = WriteTheSecondWithAtCommit(
      *storage, "PERFORM pg_terminate_backend(pg_backend_pid()); PERFORM pg_sleep(5);");
  EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable) << s;
  EXPECT_FALSE(IsCommitOutcomeUnknown(s)) << s;
  EXPECT_THAT(std::string(s.message()), HasSubstr("not persisted"));
  ExpectTheSecondAbsentAndWritable(*storage);
}

// Resolution must find the server process that ran the batch however the session looking
// for it formats times. It compared backend_start as text: a resolver in another time zone
// found no such process, read the commits while the batch still waited for a lock, and said
// "not persisted" of a batch that committed a moment later.
TEST_F(PostgresCommitOutcomeTest, AResolverInAnotherTimeZoneStillFindsTheBatchsProcess) {
  absl::Cleanup restore_tz = [] { unsetenv("PGTZ"); };
  setenv("PGTZ", "UTC", 1);
  auto storage = Make(absl::Seconds(5));
  ASSERT_NE(storage, nullptr);
  CommitRecord first = Put(1, "a", "1");
  ASSERT_TRUE(storage->Write({&first, 1}).ok());  // opens the pooled connection, in UTC
  setenv("PGTZ", "Asia/Tokyo", 1);                // the resolver's sessions
  LockTenantRow();
  fault_ = Fault::kLoseAnswerWhileBlocked;
  CommitRecord second = Put(2, "b", "2");
  absl::Status s = storage->Write({&second, 1});
  Unlock();
  ASSERT_TRUE(WaitFor(blocked_pid_, "false")) << "the batch's server process did not exit";
  auto max = storage->MaxCommittedTimestamp("t");
  ASSERT_TRUE(max.ok()) << max.status();
  if (s.ok()) {
    EXPECT_EQ(*max, 2u);
  } else if (!IsCommitOutcomeUnknown(s)) {
    EXPECT_EQ(*max, 1u) << "Write said " << s << ", but the batch committed";
  }
  EXPECT_FALSE(s.ok()) << "the batch's process was ended while it waited";
}

// The batch's answer is lost and its process ended; meanwhile its writer's lease expired and
// another owner committed at the same timestamp. That commit is not the batch: resolution
// looked for any commit at (tenant, ts) and answered OK for a batch that never committed.
TEST_F(PostgresCommitOutcomeTest, AnotherOwnersCommitAtTheSameTimestampIsNotTheBatch) {
  auto storage = Make(absl::Seconds(5));
  ASSERT_NE(storage, nullptr);
  auto other = OpenOther(*storage);
  ASSERT_NE(other, nullptr);
  CommitRecord first = Put(1, "a", "1");
  ASSERT_TRUE(storage->Write({&first, 1}).ok());
  CommitRecord theirs = Put(2, "b", "theirs");
  theirs.previous_ts = 1;
  then_ = [&] {
    ExpireLeases();  // the lease passes to `other`
    ASSERT_TRUE(other->Write({&theirs, 1}).ok());
  };
  LockTenantRow();
  fault_ = Fault::kKillWhileBlockedThen;
  CommitRecord mine = Put(2, "b", "mine");
  absl::Status s = storage->Write({&mine, 1});
  EXPECT_FALSE(s.ok()) << "the batch's process was ended before it committed";
  auto log = other->ReadLog("t", 1, 0);
  ASSERT_TRUE(log.ok()) << log.status();
  ASSERT_EQ(log->size(), 1u);
  EXPECT_EQ((*log)[0].writes, theirs.writes);
}

// Any instance may apply retention, and it drops the commit rows up to its horizon: the
// evidence resolution looked for. A batch that committed, and whose row retention dropped
// before the writer asked, was answered "not persisted" (and retried by the caller: applied
// twice). Every commit from the writer's lease on is the writer's own, so the tenant's
// newest commit says it.
TEST_F(PostgresCommitOutcomeTest, RetentionDroppingTheBatchsCommitRowDoesNotMakeItAbsent) {
  auto storage = Make(absl::Seconds(5));
  ASSERT_NE(storage, nullptr);
  auto other = OpenOther(*storage);
  ASSERT_NE(other, nullptr);
  CommitRecord first = Put(1, "a", "1");
  ASSERT_TRUE(storage->Write({&first, 1}).ok());
  then_ = [&] { RetainUpTo(*other, 2); };  // drops the batch's commit row
  fault_ = Fault::kLoseAnswerThen;
  CommitRecord second = Put(2, "b", "2");
  EXPECT_TRUE(storage->Write({&second, 1}).ok()) << "the batch committed";
  EXPECT_EQ(*storage->Get("t", 1, "b", 2), (IndexEntry{"b", "2", 2}));
}

// The same after a takeover: the batch's answer is lost, its writer's lease passes on, and
// the other owner writes after it and applies retention past it. The row is gone and the
// tenant's newest commit is the other owner's: what the writer's lease committed, recorded
// when it passed on, tells — committed, and (no guess) absent.
TEST_F(PostgresCommitOutcomeTest, AfterATakeoverAndRetentionALostAnswerIsStillTold) {
  for (Fault fault : {Fault::kLoseAnswerThen, Fault::kKillWhileBlockedThen}) {
    const bool commits = fault == Fault::kLoseAnswerThen;
    SCOPED_TRACE(commits ? "committed" : "absent");
    auto storage = Make(absl::Seconds(5));
    ASSERT_NE(storage, nullptr);
    auto other = OpenOther(*storage);
    ASSERT_NE(other, nullptr);
    CommitRecord first = Put(1, "a", "1");
    ASSERT_TRUE(storage->Write({&first, 1}).ok());
    CommitRecord theirs = Put(3, "c", "theirs");
    theirs.previous_ts = commits ? 2 : 1;
    then_ = [&] { TakeOverWriteAndRetain(*other, theirs); };
    if (!commits) LockTenantRow();
    fault_ = fault;
    CommitRecord mine = Put(2, "b", "mine");
    const absl::Status s = storage->Write({&mine, 1});
    if (commits) {
      EXPECT_TRUE(s.ok()) << s;
      EXPECT_EQ(*other->Get("t", 1, "b", 3), (IndexEntry{"b", "mine", 2}));
    } else {
      EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable) << s;
      EXPECT_THAT(std::string(s.message()), HasSubstr("not persisted"));
      EXPECT_EQ(*other->Get("t", 1, "b", 3), std::nullopt);
    }
  }
}

// A writer that takes the lease over knowing too little: its first batch is refused (the
// tenant has newer commits, another owner's), and the answer is lost. Retention had dropped
// the rows up to a horizon past the batch: the tenant's newest commit is past it too, but
// none of it is this lease's.
TEST_F(PostgresCommitOutcomeTest, AStaleBatchRefusedWithItsAnswerLostIsNotCommitted) {
  auto storage = Make(absl::Seconds(5));
  ASSERT_NE(storage, nullptr);
  auto other = OpenOther(*storage);
  ASSERT_NE(other, nullptr);
  std::vector<CommitRecord> theirs = {Put(1, "a", "1"), Put(2, "b", "2"), Put(3, "c", "3")};
  ASSERT_TRUE(other->Write(theirs).ok());
  ASSERT_TRUE(other->ApplyRetention("t", 3, 0).ok());
  ASSERT_TRUE(other->ReleaseTenant("t").ok());
  fault_ = Fault::kLoseAnswer;
  CommitRecord stale = Put(2, "b", "stale");
  stale.previous_ts = 1;
  absl::Status s = storage->Write({&stale, 1});
  EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable) << s;
  EXPECT_THAT(std::string(s.message()), HasSubstr("not persisted"));
  EXPECT_EQ(*storage->Get("t", 1, "b", 3), (IndexEntry{"b", "2", 2}));
}

// DeleteTenant starts the tenant afresh, also for the commits its lease's writer made: a
// batch below them, committed after the delete and its row dropped by retention, is the
// writer's (it was read as absent: below the tenant's newest when the lease was taken).
TEST_F(PostgresCommitOutcomeTest, AfterADeleteALowerBatchWhoseRowRetentionDroppedIsCommitted) {
  auto storage = Make(absl::Seconds(5));
  ASSERT_NE(storage, nullptr);
  auto other = OpenOther(*storage);
  ASSERT_NE(other, nullptr);
  std::vector<CommitRecord> theirs = {Put(5, "a", "5"), Put(6, "b", "6")};
  ASSERT_TRUE(other->Write(theirs).ok());
  ASSERT_TRUE(other->ReleaseTenant("t").ok());
  CommitRecord mine = Put(7, "c", "7");
  ASSERT_TRUE(storage->Write({&mine, 1}).ok());  // takes the lease at newest 6
  ASSERT_TRUE(storage->DeleteTenant("t").ok());
  then_ = [&] { RetainUpTo(*other, 2); };
  fault_ = Fault::kLoseAnswerThen;
  CommitRecord afresh = Put(2, "d", "2");
  const absl::Status s = storage->Write({&afresh, 1});
  EXPECT_TRUE(s.ok()) << s;
  EXPECT_EQ(*storage->Get("t", 1, "d", 2), (IndexEntry{"d", "2", 2}));
}

// Handover records go after a week (with the next change of owner). A batch whose row
// retention dropped and whose record is gone cannot be told: an unknown outcome, not a
// guess; and asked once more, the tenant's calls go on (it can never be told).
TEST_F(PostgresCommitOutcomeTest, AnOutcomeWhoseEvidenceIsGoneIsUnknownNotAGuess) {
  auto storage = Make(absl::Seconds(5));
  ASSERT_NE(storage, nullptr);
  auto other = OpenOther(*storage);
  ASSERT_NE(other, nullptr);
  CommitRecord first = Put(1, "a", "1");
  ASSERT_TRUE(storage->Write({&first, 1}).ok());
  CommitRecord theirs = Put(3, "c", "theirs");
  theirs.previous_ts = 2;
  auto handovers = [&] {
    auto n = watch_->Exec("SELECT count(*) FROM txfn_handovers");
    return n.ok() ? n->Int(0, 0) : -1;
  };
  then_ = [&] {
    TakeOverWriteAndRetain(*other, theirs);
    ASSERT_EQ(handovers(), 1);
    // A week passes; `other` takes the lease again (a restart): the old record goes.
    ASSERT_TRUE(
        watch_->Exec("UPDATE txfn_handovers SET taken_at = taken_at - interval '8 days'").ok());
    ASSERT_TRUE(other->AcquireTenant("t").ok());
    ASSERT_EQ(handovers(), 1) << "the week-old record went";
  };
  fault_ = Fault::kLoseAnswerThen;
  CommitRecord mine = Put(2, "b", "mine");
  absl::Status s = storage->Write({&mine, 1});
  EXPECT_TRUE(IsCommitOutcomeUnknown(s)) << s;
  EXPECT_THAT(std::string(s.message()), HasSubstr("dropped by retention"));
  auto asked = storage->MaxCommittedTimestamp("t");
  ASSERT_FALSE(asked.ok()) << "asked once more";
  EXPECT_THAT(std::string(asked.status().message()), HasSubstr("can never be told"));
  auto max = storage->MaxCommittedTimestamp("t");
  ASSERT_TRUE(max.ok()) << max.status();
  EXPECT_EQ(*max, 3u);
}

// Resolution relies on the writer sending nothing after a batch whose outcome it does not
// know: another thread's Write of the tenant waits until the first one's outcome is told.
TEST_F(PostgresCommitOutcomeTest, ATenantsNextWriteWaitsForALostAnswerToBeTold) {
  auto storage = Make(absl::Seconds(5));
  ASSERT_NE(storage, nullptr);
  CommitRecord first = Put(1, "a", "1");
  ASSERT_TRUE(storage->Write({&first, 1}).ok());
  CommitRecord next = Put(3, "c", "3");
  next.previous_ts = 2;
  absl::Status next_written = absl::UnknownError("not written");
  std::atomic<bool> next_done{false};
  std::thread next_writer;
  then_ = [&] {
    next_writer = std::thread([&] {
      next_written = storage->Write({&next, 1});
      next_done = true;
    });
    absl::SleepFor(absl::Milliseconds(300));
    EXPECT_FALSE(next_done.load()) << "sent while the first Write's outcome was unknown";
  };
  fault_ = Fault::kLoseAnswerThen;
  CommitRecord second = Put(2, "b", "2");
  EXPECT_TRUE(storage->Write({&second, 1}).ok());
  if (next_writer.joinable()) next_writer.join();
  EXPECT_TRUE(next_written.ok()) << next_written;
  EXPECT_EQ(*storage->MaxCommittedTimestamp("t"), 3u);
}

// The cases above at random: answers lost of committed and of absent batches, with or without
// retention past them, with or without the lease passing to another owner that writes after
// them, one after another on one tenant. Every answer must be the truth: OK for a batch that
// committed, "not persisted" for one that did not.
TEST_F(PostgresCommitOutcomeTest, RandomLostAnswersRetentionAndTakeoversNeverLie) {
  auto storage = Make(absl::Seconds(5));
  ASSERT_NE(storage, nullptr);
  auto other = OpenOther(*storage);
  ASSERT_NE(other, nullptr);
  std::mt19937 rng(::testing::UnitTest::GetInstance()->random_seed());
  auto coin = [&] { return rng() % 2 == 0; };
  CommitRecord first = Put(1, "first", "1");  // a tenant row, for LockTenantRow
  ASSERT_TRUE(storage->Write({&first, 1}).ok());
  Timestamp newest = 1;  // the tenant's newest commit, as the test knows it
  int committed_lost = 0, absent_lost = 0, dropped = 0, passed = 0;
  for (int round = 0; round < 24; ++round) {
    SCOPED_TRACE(::testing::Message() << "round " << round);
    ExpireLeases();
    ASSERT_TRUE(storage->inner().AcquireTenant("t").ok());
    const Fault fault =
        std::array{Fault::kNone, Fault::kLoseAnswerThen, Fault::kKillWhileBlockedThen}[rng() % 3];
    const bool commits = fault != Fault::kKillWhileBlockedThen;
    const Timestamp ts = newest + 1 + rng() % 3;
    const bool retain = coin(), pass_on = coin();
    then_ = [&] {
      const Timestamp after = commits ? ts : newest;  // what the tenant now holds
      Timestamp top = after;
      if (pass_on) {
        ExpireLeases();
        CommitRecord theirs = Put(ts + 1, "o" + std::to_string(round), "theirs");
        theirs.previous_ts = after;
        ASSERT_TRUE(other->AcquireTenant("t").ok());
        const absl::Status written = other->Write({&theirs, 1});
        ASSERT_TRUE(written.ok()) << written;
        top = ts + 1;
        ++passed;
      }
      if (retain) {
        ASSERT_TRUE(other->ApplyRetention("t", top, 0).ok());
        if (commits) ++dropped;
      }
    };
    if (fault == Fault::kKillWhileBlockedThen) LockTenantRow();
    fault_ = fault;
    CommitRecord mine = Put(ts, "m" + std::to_string(round), "mine");
    mine.previous_ts = newest;
    const absl::Status s = storage->Write({&mine, 1});
    ASSERT_FALSE(IsCommitOutcomeUnknown(s)) << s << " (the server is up: it can tell)";
    if (commits) {
      EXPECT_TRUE(s.ok()) << s << ": the batch committed";
    } else {
      EXPECT_THAT(std::string(s.message()), HasSubstr("not persisted")) << s;
    }
    committed_lost += fault == Fault::kLoseAnswerThen;
    absent_lost += fault == Fault::kKillWhileBlockedThen;
    if (commits) newest = ts;
    if (fault != Fault::kNone && pass_on) newest = ts + 1;
    auto max = other->MaxCommittedTimestamp("t");
    ASSERT_TRUE(max.ok()) << max.status();
    EXPECT_EQ(*max, newest);
    if (HasFailure()) {
      (void)side_->Exec("ROLLBACK");  // a lock a failed step left
      break;
    }
  }
  // The draw covered the cases (the seed is in the log).
  EXPECT_GT(committed_lost, 0);
  EXPECT_GT(absent_lost, 0);
  EXPECT_GT(dropped + passed, 0);
}

TEST_F(PostgresCommitOutcomeTest, UnresolvedItIsUnknownAndTheTenantsNextCallSettlesIt) {
  for (Fault fault : {Fault::kLoseAnswer, Fault::kKillWhileBlocked}) {
    SCOPED_TRACE(fault == Fault::kLoseAnswer ? "committed" : "absent");
    // Resolution deferred: Write reports the unknown outcome at once.
    auto storage = Make(absl::ZeroDuration());
    ASSERT_NE(storage, nullptr);
    CommitRecord first = Put(1, "a", "1");
    ASSERT_TRUE(storage->Write({&first, 1}).ok());
    if (fault == Fault::kKillWhileBlocked) LockTenantRow();
    fault_ = fault;
    std::vector<CommitRecord> batch = {Put(2, "b", "2"), Put(3, "c", "3")};
    absl::Status s = storage->Write(batch);
    if (fault == Fault::kKillWhileBlocked) Unlock();
    EXPECT_TRUE(IsCommitOutcomeUnknown(s)) << s;
    EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable);
    EXPECT_EQ(CommitOutcomeUnknownTimestamp(s), 3u);
    // Reads at published timestamps go on meanwhile.
    EXPECT_EQ(*storage->Get("t", 1, "a", 1), (IndexEntry{"a", "1", 1}));
    // The next question about what is committed resolves it.
    const bool committed = fault == Fault::kLoseAnswer;
    auto max = storage->MaxCommittedTimestamp("t");
    ASSERT_TRUE(max.ok()) << max.status();
    EXPECT_EQ(*max, committed ? 3u : 1u);
    auto log = storage->ReadLog("t", 1, 0);
    ASSERT_TRUE(log.ok());
    EXPECT_EQ(log->size(), committed ? 2u : 0u);
  }
}

// Through a committer: it resolves the unknown outcome from storage before answering.
TEST_F(PostgresCommitOutcomeTest, TheCommitterAnswersALostAnswerWithTheTruth) {
  auto opened = Make(absl::ZeroDuration());
  ASSERT_NE(opened, nullptr);
  std::shared_ptr<Storage> storage(std::move(opened));
  FakeClock clock;
  std::unique_ptr<Committer> committer =
      OpenWithSchema(storage, CommitterOptions{.clock = clock.AsFunction()});
  ASSERT_NE(committer, nullptr);

  Transaction txn(committer->Latest());
  TXFN_ASSERT_OK_AND_ASSIGN(
      std::string id, txn.Insert("accounts", Obj({{"owner", Str("ann")}, {"balance", I64(1)}})));
  fault_ = Fault::kLoseAnswer;
  TXFN_ASSERT_OK_AND_ASSIGN(Timestamp ts, committer->Commit(txn.Prepare()));
  EXPECT_EQ(*storage->MaxCommittedTimestamp("t"), ts);
  Transaction after(committer->Latest());
  TXFN_ASSERT_OK_AND_ASSIGN(std::optional<Value> doc, after.Get(id));
  EXPECT_TRUE(doc.has_value());

  LockTenantRow();
  fault_ = Fault::kKillWhileBlocked;
  Transaction lost(committer->Latest());
  ASSERT_TRUE(lost.Insert("accounts", Obj({{"owner", Str("bob")}, {"balance", I64(2)}})).ok());
  absl::StatusOr<Timestamp> absent = committer->Commit(lost.Prepare());
  Unlock();
  ASSERT_FALSE(absent.ok());
  EXPECT_FALSE(IsCommitOutcomeUnknown(absent.status())) << absent.status();
  EXPECT_EQ(absent.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(*storage->MaxCommittedTimestamp("t"), ts);
}

}  // namespace
}  // namespace txfn

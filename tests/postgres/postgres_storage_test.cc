// PostgresStorage: the Storage conformance suite (with reopen), the committer on top of it,
// opening, and the indexes its reads use.
#include "txfn/postgres_storage.h"

#include <cstdlib>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/time/clock.h"
#include "fmt/core.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "lib/postgres/pg_connection.h"
#include "tests/postgres/pg_storage_test_util.h"
#include "tests/postgres/pg_test_util.h"
#include "tests/storage_reference_test_util.h"
#include "tests/txn_test_util.h"
#include "txfn/committer.h"
#include "txfn/testing/storage_conformance.h"
#include "txfn/transaction.h"

namespace txfn {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;
using ::txfn::testing::PgTestSchema;
using ::txfn::testing::TempPostgresStorage;
using namespace testing_util;  // NOLINT(google-build-using-namespace)

std::unique_ptr<Storage> MakeStorage(PostgresStorageOptions options) {
  return TempPostgresStorage::Make(std::move(options));
}

TXFN_INSTANTIATE_STORAGE_CONFORMANCE(
    Postgres, [] { return MakeStorage({}); }, &TempPostgresStorage::Reopen);

TEST(PostgresStorageTest, BadOptionsAreInvalidArgument) {
  EXPECT_EQ(PostgresStorage::Open({}).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(PostgresStorage::Open({.url = "host='unterminated"}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(PostgresStorage::Open({.url = "dbname=x", .max_connections = 0}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(PostgresStorage::Open({.url = "dbname=x", .lease_duration = absl::ZeroDuration()})
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(PostgresStorageTest, UnreachableServerIsUnavailable) {
  auto storage = PostgresStorage::Open(
      {.url = "host=/nonexistent-txfn-socket-dir dbname=x connect_timeout=2"});
  EXPECT_EQ(storage.status().code(), absl::StatusCode::kUnavailable) << storage.status();
}

TEST(PostgresStorageTest, NewerSchemaVersionIsRefusedNamingBothVersions) {
  TXFN_REQUIRE_PG_SERVER();
  PgTestSchema db;
  ASSERT_TRUE(db.Create().ok());
  ASSERT_TRUE(PostgresStorage::Open({.url = db.url()}).ok());
  auto conn = pg_internal::PgConnection::Open(db.url());
  ASSERT_TRUE(conn.ok());
  ASSERT_TRUE((*conn)->Exec("UPDATE txfn_meta SET value = 99 WHERE name = 'schema_version'").ok());
  auto storage = PostgresStorage::Open({.url = db.url()});
  EXPECT_EQ(storage.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(storage.status().message()),
              AllOf(HasSubstr("99"),
                    HasSubstr(fmt::format("version {}", PostgresStorage::kSchemaVersion))));
}

// Another instance's Writes hold their lease row (txfn_owners) and then write txfn_commits and
// the rest. Opening a database already at this schema version must lock none of those tables:
// DDL there (ALTER TABLE ... ADD COLUMN IF NOT EXISTS locks ACCESS EXCLUSIVE even when the
// column exists) stalled every Write until the Open committed, and deadlocked with one that
// held its lease row (postgres_engine_takeover_test failed so in CI).
TEST(PostgresStorageTest, OpeningACurrentSchemaLocksNoTable) {
  TXFN_REQUIRE_PG_SERVER();
  PgTestSchema db;
  ASSERT_TRUE(db.Create().ok());
  ASSERT_TRUE(PostgresStorage::Open({.url = db.url()}).ok());
  auto writer = pg_internal::PgConnection::Open(db.url());
  ASSERT_TRUE(writer.ok());
  ASSERT_TRUE((*writer)->Exec("BEGIN").ok());
  ASSERT_TRUE((*writer)
                  ->Exec("LOCK TABLE txfn_owners, txfn_tenants, txfn_versions, txfn_log, "
                         "txfn_commits, txfn_handovers IN ROW EXCLUSIVE MODE")
                  .ok());
  // Waiting for a lock fails the Open at once instead of hanging the test.
  const std::string impatient =
      fmt::format("{} options='-csearch_path={} -clock_timeout=1s'", db.url(), db.name());
  auto second = PostgresStorage::Open({.url = impatient});
  EXPECT_TRUE(second.ok()) << second.status();
  ASSERT_TRUE((*writer)->Exec("ROLLBACK").ok());
}

// A database of an older schema version gets what is missing, and its version is raised.
TEST(PostgresStorageTest, OpeningAnOlderSchemaUpgradesIt) {
  TXFN_REQUIRE_PG_SERVER();
  PgTestSchema db;
  ASSERT_TRUE(db.Create().ok());
  ASSERT_TRUE(PostgresStorage::Open({.url = db.url()}).ok());
  auto conn = pg_internal::PgConnection::Open(db.url());
  ASSERT_TRUE(conn.ok());
  // As version 3 left it: no start_max, no handovers.
  ASSERT_TRUE((*conn)
                  ->Exec("ALTER TABLE txfn_owners DROP COLUMN start_max; DROP TABLE "
                         "txfn_handovers; UPDATE txfn_meta SET value = 3 WHERE name = "
                         "'schema_version'")
                  .ok());
  ASSERT_TRUE(PostgresStorage::Open({.url = db.url()}).ok());
  auto upgraded = (*conn)->Exec(
      "SELECT (SELECT value FROM txfn_meta WHERE name = 'schema_version'), "
      "to_regclass('txfn_handovers') IS NOT NULL, EXISTS (SELECT 1 FROM pg_attribute WHERE "
      "attrelid = 'txfn_owners'::regclass AND attname = 'start_max' AND NOT attisdropped)::int");
  ASSERT_TRUE(upgraded.ok()) << upgraded.status();
  EXPECT_EQ(upgraded->Int(0, 0), PostgresStorage::kSchemaVersion);
  EXPECT_EQ(upgraded->Text(0, 1), "t");
  EXPECT_EQ(upgraded->Int(0, 2), 1);
}

// An upgrade while another instance writes waits for the Write instead of deadlocking with it:
// the Write holds its lease row and then wants txfn_commits, which the upgrade alters too.
TEST(PostgresStorageTest, AnUpgradeWaitsForAWriteHoldingItsLeaseRow) {
  TXFN_REQUIRE_PG_SERVER();
  PgTestSchema db;
  ASSERT_TRUE(db.Create().ok());
  ASSERT_TRUE(PostgresStorage::Open({.url = db.url()}).ok());
  auto writer = pg_internal::PgConnection::Open(db.url());
  auto watch = pg_internal::PgConnection::Open(db.url());
  ASSERT_TRUE(writer.ok() && watch.ok());
  ASSERT_TRUE((*writer)->Exec("UPDATE txfn_meta SET value = 3 WHERE name = 'schema_version'").ok());
  ASSERT_TRUE((*writer)->Exec("BEGIN").ok());
  ASSERT_TRUE((*writer)->Exec("LOCK TABLE txfn_owners IN ROW EXCLUSIVE MODE").ok());
  auto pid = (*writer)->Exec("SELECT pg_backend_pid()");
  ASSERT_TRUE(pid.ok());
  absl::StatusOr<std::unique_ptr<PostgresStorage>> upgraded;
  std::thread opener([&] { upgraded = PostgresStorage::Open({.url = db.url()}); });
  bool waiting = false;
  for (int i = 0; i < 2000 && !waiting; ++i) {
    auto r = (*watch)->Exec(fmt::format(
        "SELECT 1 FROM pg_stat_activity WHERE pg_blocking_pids(pid) && ARRAY[{}]", pid->Int(0, 0)));
    waiting = r.ok() && r->rows() > 0;
    if (!waiting) absl::SleepFor(absl::Milliseconds(5));
  }
  EXPECT_TRUE(waiting) << "the upgrade never waited for the Write";
  absl::Status wrote = (*writer)->Exec("LOCK TABLE txfn_commits IN ROW EXCLUSIVE MODE").status();
  (void)(*writer)->Exec(wrote.ok() ? "COMMIT" : "ROLLBACK");
  opener.join();
  EXPECT_TRUE(wrote.ok()) << wrote;
  EXPECT_TRUE(upgraded.ok()) << upgraded.status();
}

TEST(PostgresStorageTest, CommitterFlowsSurviveAReopen) {
  TXFN_REQUIRE_PG_SERVER();
  FakeClock clock;
  std::unique_ptr<TempPostgresStorage> first = TempPostgresStorage::Make();
  ASSERT_NE(first, nullptr);
  std::string id;
  Timestamp last = 0;
  {
    std::shared_ptr<Storage> storage(first.get(), [](Storage*) {});
    std::unique_ptr<Committer> committer =
        OpenWithSchema(storage, CommitterOptions{.clock = clock.AsFunction()});
    ASSERT_NE(committer, nullptr);
    Transaction txn(committer->Latest());
    TXFN_ASSERT_OK_AND_ASSIGN(
        id, txn.Insert("accounts", Obj({{"owner", Str("ann")}, {"balance", I64(10)}})));
    TXFN_ASSERT_OK_AND_ASSIGN(last, committer->Commit(txn.Prepare()));
  }
  std::shared_ptr<Storage> storage = TempPostgresStorage::Reopen(std::move(first));
  ASSERT_NE(storage, nullptr);
  auto committer = Committer::Open(storage, "t", CommitterOptions{.clock = clock.AsFunction()});
  ASSERT_TRUE(committer.ok()) << committer.status();
  std::shared_ptr<const Snapshot> latest = (*committer)->Latest();
  EXPECT_EQ(latest->ts(), last);
  Transaction txn(latest);
  TXFN_ASSERT_OK_AND_ASSIGN(std::optional<Value> doc, txn.Get(id));
  ASSERT_TRUE(doc.has_value());
  EXPECT_EQ(doc->Find("balance")->int64(), 10);
  ASSERT_TRUE(txn.Insert("accounts", Obj({{"owner", Str("bob")}, {"balance", I64(1)}})).ok());
  TXFN_ASSERT_OK_AND_ASSIGN(Timestamp ts, (*committer)->Commit(txn.Prepare()));
  EXPECT_GT(ts, last);
}

TEST(PostgresStorageTest, ScansOverKeysWithManyVersionsMatchTheReference) {
  TXFN_REQUIRE_PG_SERVER();
  std::unique_ptr<TempPostgresStorage> storage = TempPostgresStorage::Make();
  ASSERT_NE(storage, nullptr);
  ExpectHotKeyScansMatchReference(*storage);
}

TEST(PostgresStorageTest, RandomHistoriesWithRetentionMatchTheReference) {
  TXFN_REQUIRE_PG_SERVER();
  for (uint64_t seed : {1, 2}) {
    SCOPED_TRACE(seed);
    std::unique_ptr<TempPostgresStorage> storage = TempPostgresStorage::Make();
    ASSERT_NE(storage, nullptr);
    ExpectRandomHistoryMatchesReference(*storage, seed);
  }
}

TEST(PostgresStorageTest, TimestampsAboveInt64MaxKeepTheirOrder) {
  TXFN_REQUIRE_PG_SERVER();
  std::unique_ptr<TempPostgresStorage> storage = TempPostgresStorage::Make();
  ASSERT_NE(storage, nullptr);
  const Timestamp big = (Timestamp{1} << 63) + 5;
  CommitRecord a{.tenant = "t", .ts = 7, .writes = {{.index = 1, .key = "k", .value = "a"}}};
  CommitRecord b{.tenant = "t", .ts = big, .writes = {{.index = 1, .key = "k", .value = "b"}}};
  ASSERT_TRUE(storage->Write({&a, 1}).ok());
  ASSERT_TRUE(storage->Write({&b, 1}).ok());
  EXPECT_EQ(storage->MaxCommittedTimestamp("t").value(), big);
  EXPECT_EQ(storage->Get("t", 1, "k", big - 1).value()->value, "a");
  EXPECT_EQ(storage->Get("t", 1, "k", ~Timestamp{0}).value()->value, "b");
  CommitRecord c{.tenant = "t", .ts = 8};
  EXPECT_EQ(storage->Write({&c, 1}).code(), absl::StatusCode::kInvalidArgument);
}

TEST(PostgresStorageTest, OneConnectionIsEnoughForEveryCall) {
  TXFN_REQUIRE_PG_SERVER();
  std::unique_ptr<TempPostgresStorage> storage = TempPostgresStorage::Make({.max_connections = 1});
  ASSERT_NE(storage, nullptr);
  CommitRecord commit{.tenant = "t", .ts = 5, .writes = {{.index = 1, .key = "k", .value = "v"}}};
  ASSERT_TRUE(storage->Write({&commit, 1}).ok());
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(storage->Get("t", 1, "k", 5).value(), (IndexEntry{"k", "v", 5}));
    EXPECT_EQ(storage->ReadLog("t", 0, 0).value().size(), 1u);
    EXPECT_EQ(storage->MaxCommittedTimestamp("t").value(), 5u);
    EXPECT_TRUE(storage->inner().AcquireTenant("t").ok());
  }
  EXPECT_TRUE(storage->ApplyRetention("t", 5, 0).ok());
  EXPECT_TRUE(storage->DeleteTenant("t").ok());
}

TEST(PostgresStorageTest, ALogEntryWithoutItsVersionIsDataLoss) {
  TXFN_REQUIRE_PG_SERVER();
  std::unique_ptr<TempPostgresStorage> storage = TempPostgresStorage::Make();
  ASSERT_NE(storage, nullptr);
  CommitRecord commit{.tenant = "t", .ts = 5, .writes = {{.index = 1, .key = "k", .value = "v"}}};
  ASSERT_TRUE(storage->Write({&commit, 1}).ok());
  auto conn = pg_internal::PgConnection::Open(storage->db().url());
  ASSERT_TRUE(conn.ok());
  ASSERT_TRUE((*conn)->Exec("DELETE FROM txfn_versions").ok());
  auto log = storage->ReadLog("t", 0, 0);
  EXPECT_EQ(log.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(std::string(log.status().message()), HasSubstr("has no version"));
}

// Reads are index range scans: on a table of many versions, no Get, Scan or ReadLog reads
// txfn_versions, txfn_log or txfn_commits sequentially.
TEST(PostgresStorageTest, ReadsUseTheIndexesNotSequentialScans) {
  TXFN_REQUIRE_PG_SERVER();
  PgTestSchema schema;
  ASSERT_TRUE(schema.Create().ok());
  auto conn = pg_internal::PgConnection::Open(schema.url());
  ASSERT_TRUE(conn.ok());
  auto seq_scans = [&] {
    EXPECT_TRUE((*conn)->Exec("SELECT pg_stat_force_next_flush()").ok());
    auto r = (*conn)->Exec(fmt::format(
        "SELECT coalesce(sum(seq_scan), 0)::bigint FROM pg_stat_user_tables WHERE schemaname = "
        "'{}' AND relname IN ('txfn_versions', 'txfn_log', 'txfn_commits')",
        schema.name()));
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? r->Int(0, 0) : -1;
  };
  {
    auto storage = PostgresStorage::Open({.url = schema.url()});
    ASSERT_TRUE(storage.ok()) << storage.status();
    std::vector<CommitRecord> batch;
    for (Timestamp ts = 1; ts <= 400; ++ts) {
      CommitRecord& c = batch.emplace_back(CommitRecord{.tenant = "t", .ts = ts});
      for (int i = 0; i < 10; ++i) {
        c.writes.push_back({.index = 1,
                            .key = fmt::format("k{:03}", (i * 37 + ts) % 300),
                            .value = std::string(20, 'v')});
      }
    }
    ASSERT_TRUE((*storage)->Write(batch).ok());
    ASSERT_TRUE((*conn)->Exec("ANALYZE").ok());
  }
  // Closing a storage's connections makes their backends report their statistics (building
  // the primary keys counts as a scan).
  absl::SleepFor(absl::Milliseconds(300));
  const int64_t before = seq_scans();
  {
    auto storage = PostgresStorage::Open({.url = schema.url()});
    ASSERT_TRUE(storage.ok()) << storage.status();
    for (Timestamp ts : {Timestamp{50}, Timestamp{400}}) {
      // More than five calls each: the prepared statements switch to their generic plans.
      for (int i = 0; i < 8; ++i) {
        ASSERT_TRUE((*storage)->Get("t", 1, fmt::format("k{:03}", i), ts).ok());
        auto asc = (*storage)->Scan("t", 1, KeyRange::HalfOpen("k100", "k200"), ts,
                                    ScanOrder::kAscending, 10);
        ASSERT_TRUE(asc.ok()) << asc.status();
        EXPECT_EQ(asc->size(), 10u);
        auto desc = (*storage)->Scan("t", 1, KeyRange::All(), ts, ScanOrder::kDescending, 10);
        ASSERT_TRUE(desc.ok()) << desc.status();
        EXPECT_EQ(desc->size(), 10u);
        ASSERT_TRUE((*storage)->ReadLog("t", ts - 1, 2).ok());
      }
    }
  }
  absl::SleepFor(absl::Milliseconds(300));
  EXPECT_EQ(seq_scans(), before);
  // The counters are live: a sequential scan of our own shows.
  ASSERT_TRUE((*conn)->Exec("SELECT count(*) FROM txfn_log").ok());
  EXPECT_GT(seq_scans(), before);
}

}  // namespace
}  // namespace txfn

// Without a server (and outside CI) the conformance suites are filtered out, as
// TXFN_REQUIRE_PG_SERVER skips the other tests.
int main(int argc, char** argv) {
  ::testing::InitGoogleMock(&argc, argv);
  txfn::testing::FilterOutWithoutServer("*ConformanceTest*");
  return RUN_ALL_TESTS();
}

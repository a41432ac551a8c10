// SqliteStorage: the Storage conformance suite (with reopen), the committer
// on top of it, and opening missing, foreign, newer, corrupt and truncated files.
#include "txfn/sqlite_storage.h"

#include <sqlite3.h>

#include <atomic>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "fmt/core.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "sqlite_test_util.h"
#include "storage_reference_test_util.h"
#include "txfn/committer.h"
#include "txfn/in_memory_storage.h"
#include "txfn/testing/storage_conformance.h"
#include "txfn/transaction.h"
#include "txn_test_util.h"

namespace txfn {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;
using testing_util::TempDir;
using testing_util::TempSqliteStorage;
using namespace testing_util;  // NOLINT(google-build-using-namespace)
using namespace std::string_literals;

// synchronous=OFF keeps the suite fast; durability is sqlite_crash_test's job.
TXFN_INSTANTIATE_STORAGE_CONFORMANCE(
    Sqlite,
    [] { return TempSqliteStorage::Make({.synchronous = SqliteOptions::Synchronous::kOff}); },
    &TempSqliteStorage::Reopen);

const SqliteOptions kFast = {.synchronous = SqliteOptions::Synchronous::kOff};

// Runs `sql` on the file directly (as another program would).
void RawExec(const std::string& path, const std::string& sql) {
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
  char* err = nullptr;
  int rc = sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &err);
  EXPECT_EQ(rc, SQLITE_OK) << (err != nullptr ? err : "");
  sqlite3_free(err);
  sqlite3_close(db);
}

// A closed database file with enough data to span many pages.
void FillDatabase(const std::string& path) {
  auto storage = SqliteStorage::Open(path, kFast);
  ASSERT_TRUE(storage.ok()) << storage.status();
  for (Timestamp ts = 1; ts <= 20; ++ts) {
    CommitRecord commit{.tenant = "t", .ts = ts};
    for (int i = 0; i < 50; ++i) {
      commit.writes.push_back({.index = 1,
                               .key = fmt::format("key{:04}-{:02}", i, ts),
                               .value = std::string(100, static_cast<char>('a' + ts))});
    }
    ASSERT_TRUE((*storage)->Write({&commit, 1}).ok());
  }
}

TEST(SqliteStorageTest, CommitterFlowsSurviveAReopen) {
  TempDir dir;
  const std::string path = dir.File("app.db");
  FakeClock clock;
  std::string id;
  Timestamp last = 0;
  {
    auto opened = SqliteStorage::Open(path, kFast);
    ASSERT_TRUE(opened.ok()) << opened.status();
    std::shared_ptr<Storage> storage = *std::move(opened);
    std::unique_ptr<Committer> committer =
        OpenWithSchema(storage, CommitterOptions{.clock = clock.AsFunction()});
    ASSERT_NE(committer, nullptr);
    Transaction txn(committer->Latest());
    TXFN_ASSERT_OK_AND_ASSIGN(
        id, txn.Insert("accounts", Obj({{"owner", Str("ann")}, {"balance", I64(10)}})));
    TXFN_ASSERT_OK_AND_ASSIGN(last, committer->Commit(txn.Prepare()));
  }
  EXPECT_FALSE(std::filesystem::exists(path + "-wal")) << "a clean close removes the WAL";

  auto reopened = SqliteStorage::Open(path, kFast);
  ASSERT_TRUE(reopened.ok()) << reopened.status();
  std::shared_ptr<Storage> storage = *std::move(reopened);
  auto committer = Committer::Open(storage, "t", CommitterOptions{.clock = clock.AsFunction()});
  ASSERT_TRUE(committer.ok()) << committer.status();
  std::shared_ptr<const Snapshot> latest = (*committer)->Latest();
  EXPECT_EQ(latest->ts(), last);
  EXPECT_NE(latest->metadata().FindTable("accounts"), nullptr);
  EXPECT_NE(latest->metadata().FindTable("messages"), nullptr);
  Transaction txn(latest);
  TXFN_ASSERT_OK_AND_ASSIGN(std::optional<Value> doc, txn.Get(id));
  ASSERT_TRUE(doc.has_value());
  EXPECT_EQ(doc->Find("owner")->string(), "ann");
  EXPECT_EQ(doc->Find("balance")->int64(), 10);
  // And it keeps committing after the restart.
  ASSERT_TRUE(txn.Insert("accounts", Obj({{"owner", Str("bob")}, {"balance", I64(1)}})).ok());
  TXFN_ASSERT_OK_AND_ASSIGN(Timestamp ts, (*committer)->Commit(txn.Prepare()));
  EXPECT_GT(ts, last);
}

// Two SqliteStorages on one file: what two processes' engines see.
struct TwoStoragesOnOneFile {
  bool Open() {
    auto opened_a = SqliteStorage::Open(dir.File("two.db"), kFast);
    auto opened_b = SqliteStorage::Open(dir.File("two.db"), kFast);
    EXPECT_TRUE(opened_a.ok()) << opened_a.status();
    EXPECT_TRUE(opened_b.ok()) << opened_b.status();
    if (!opened_a.ok() || !opened_b.ok()) return false;
    a = *std::move(opened_a);
    b = *std::move(opened_b);
    return true;
  }
  TempDir dir;
  std::shared_ptr<Storage> a;
  std::shared_ptr<Storage> b;
};

// Two engines on one file (two processes, e.g. `txfn serve` and a `txfn run` beside it):
// a committer whose state lacks the other's commits is refused by storage rather than
// validating a transaction against that stale state (which would lose the other's update),
// reloads, and the retried transaction commits on top.
TEST(SqliteStorageTest, ACommitterNeverCommitsOverAnotherConnectionsCommitsItHasNotSeen) {
  TwoStoragesOnOneFile two;
  ASSERT_TRUE(two.Open());
  std::shared_ptr<Storage> a = two.a;
  std::shared_ptr<Storage> b = two.b;
  auto put = [](Timestamp begin_ts, std::string value) {
    return PreparedCommit{.tenant = "t",
                          .begin_ts = begin_ts,
                          .reads = {{.index = 1, .range = KeyRange::Point("k")}},
                          .writes = {{.index = 1, .key = "k", .value = std::move(value)}}};
  };
  auto committer_a = Committer::Open(a, "t");
  ASSERT_TRUE(committer_a.ok());
  ASSERT_TRUE((*committer_a)->Commit(put(0, "a1")).ok());
  auto committer_b = Committer::Open(b, "t");
  ASSERT_TRUE(committer_b.ok());
  const Timestamp seen_by_b = (*committer_b)->Latest()->ts();
  auto a2 = (*committer_a)->Commit(put(seen_by_b, "a2"));
  ASSERT_TRUE(a2.ok()) << a2.status();

  // b read k at its snapshot (a1) and writes: only storage knows a2 came in between.
  auto stale = (*committer_b)->Commit(put(seen_by_b, "b-lost-update"));
  ASSERT_FALSE(stale.ok());
  EXPECT_EQ(stale.status().code(), absl::StatusCode::kFailedPrecondition) << stale.status();
  EXPECT_THAT(std::string(stale.status().message()), HasSubstr("another"));
  EXPECT_EQ((*committer_b)->stats().stale_batches, 1u);
  EXPECT_EQ((*committer_b)->Latest()->ts(), *a2) << "b reloaded";
  auto kept = b->Get("t", 1, "k", *a2);
  ASSERT_TRUE(kept.ok() && kept->has_value());
  EXPECT_EQ((*kept)->value, "a2");

  auto retried = (*committer_b)->Commit(put(*a2, "b1"));
  ASSERT_TRUE(retried.ok()) << retried.status();
  // And now a is the stale one.
  EXPECT_EQ((*committer_a)->Commit(put(*a2, "a-lost-update")).status().code(),
            absl::StatusCode::kFailedPrecondition);
  auto last = a->Get("t", 1, "k", *retried);
  ASSERT_TRUE(last.ok() && last->has_value());
  EXPECT_EQ((*last)->value, "b1");
}

// Reads follow another process's commits: a committer on one file's second
// SqliteStorage hands out its next snapshot at the other's newest commit (one
// reload), and neither reloads for its own commits or when nothing changed.
TEST(SqliteStorageTest, ACommittersNextSnapshotIncludesAnotherConnectionsCommits) {
  TwoStoragesOnOneFile two;
  ASSERT_TRUE(two.Open());
  std::shared_ptr<Storage> a = two.a;
  std::shared_ptr<Storage> b = two.b;
  auto put = [](std::string tenant, Timestamp begin_ts, std::string value) {
    return PreparedCommit{.tenant = std::move(tenant),
                          .begin_ts = begin_ts,
                          .writes = {{.index = 1, .key = "k", .value = std::move(value)}}};
  };
  auto committer_a = Committer::Open(a, "t");
  auto committer_b = Committer::Open(b, "t");
  auto other_b = Committer::Open(b, "u");
  ASSERT_TRUE(committer_a.ok() && committer_b.ok() && other_b.ok());
  EXPECT_EQ((*committer_b)->Latest()->ts(), 0u);

  auto a1 = (*committer_a)->Commit(put("t", 0, "a1"));
  ASSERT_TRUE(a1.ok()) << a1.status();
  std::shared_ptr<const Snapshot> seen = (*committer_b)->Latest();
  EXPECT_EQ(seen->ts(), *a1) << "b's next snapshot includes a's commit";
  auto value = seen->Get(1, "k");
  ASSERT_TRUE(value.ok() && value->has_value()) << value.status();
  EXPECT_EQ((*value)->value, "a1");
  EXPECT_EQ((*committer_b)->stats().reloads, 1u);
  EXPECT_EQ((*committer_b)->Latest()->ts(), *a1);
  EXPECT_EQ((*committer_b)->stats().reloads, 1u) << "nothing new: no second reload";
  EXPECT_EQ((*other_b)->Latest()->ts(), 0u) << "another tenant looks, finds nothing newer";
  EXPECT_EQ((*other_b)->stats().reloads, 0u);

  auto b1 = (*committer_b)->Commit(put("t", *a1, "b1"));
  ASSERT_TRUE(b1.ok()) << b1.status();
  EXPECT_EQ((*committer_b)->Latest()->ts(), *b1);
  EXPECT_EQ((*committer_b)->stats().reloads, 1u) << "its own commit needs no reload";
  EXPECT_EQ((*committer_a)->Latest()->ts(), *b1) << "and a follows b";
  EXPECT_EQ((*committer_a)->stats().reloads, 1u);
}

// The same while the reading storage's own writer is busy (here: waiting for the file's lock,
// as it would wait for its fsync). It skipped the check then, and a read that began after
// the other process's commit was acknowledged did not see it.
TEST(SqliteStorageTest, AnotherConnectionsCommitIsSeenWhileThisWriterIsBusy) {
  TwoStoragesOnOneFile two;
  ASSERT_TRUE(two.Open());
  auto put = [](std::string tenant, std::string value) {
    return PreparedCommit{.tenant = std::move(tenant),
                          .writes = {{.index = 1, .key = "k", .value = std::move(value)}}};
  };
  auto committer_a = Committer::Open(two.a, "t");
  auto committer_b = Committer::Open(two.b, "t");
  auto other_b = Committer::Open(two.b, "u");
  ASSERT_TRUE(committer_a.ok() && committer_b.ok() && other_b.ok());
  ASSERT_EQ((*committer_b)->Latest()->ts(), 0u);
  // b has seen another connection commit (until then a busy writer means b's own commit).
  auto a0 = (*committer_a)->Commit(put("t", "a0"));
  ASSERT_TRUE(a0.ok()) << a0.status();
  ASSERT_EQ((*committer_b)->Latest()->ts(), *a0);
  auto a1 = (*committer_a)->Commit(put("t", "a1"));
  ASSERT_TRUE(a1.ok()) << a1.status();

  // A third connection holds the write lock; b's commit to "u" waits for it inside b's writer.
  sqlite3* lock_holder = nullptr;
  ASSERT_EQ(sqlite3_open(two.dir.File("two.db").c_str(), &lock_holder), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(lock_holder, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr), SQLITE_OK);
  std::thread busy([&] { EXPECT_TRUE((*other_b)->Commit(put("u", "b1")).ok()); });
  absl::SleepFor(absl::Milliseconds(300));

  std::shared_ptr<const Snapshot> seen = (*committer_b)->Latest();
  EXPECT_EQ(seen->ts(), *a1) << "b's snapshot, taken after a's commit, lacks it";
  sqlite3_exec(lock_holder, "ROLLBACK", nullptr, nullptr, nullptr);
  sqlite3_close(lock_holder);
  busy.join();
}

// Once another connection was seen to commit, every caller is told to catch up, not only the
// first per tenant: while the first was still reloading, a second reader of the tenant (a
// query thread, a mutation) was told "no" and handed the old snapshot (a multi-process hunt:
// ~0.6% of queries stale with two query threads). A file only one storage writes stays "no".
TEST(SqliteStorageTest, EveryCallerCatchesUpOnceAnotherConnectionCommitted) {
  TwoStoragesOnOneFile two;
  ASSERT_TRUE(two.Open());
  auto committer_a = Committer::Open(two.a, "t");
  auto committer_b = Committer::Open(two.b, "t");
  ASSERT_TRUE(committer_a.ok() && committer_b.ok());
  auto put = [](std::string value) {
    return PreparedCommit{.tenant = "t",
                          .writes = {{.index = 1, .key = "k", .value = std::move(value)}}};
  };
  ASSERT_TRUE((*committer_b)->Commit(put("b0")).ok());
  EXPECT_FALSE(two.b->MayHaveOtherWriters("t")) << "only its own commits so far";
  ASSERT_TRUE((*committer_a)->Commit(put("a1")).ok());
  for (int caller = 0; caller < 3; ++caller) {
    EXPECT_TRUE(two.b->MayHaveOtherWriters("t")) << "caller " << caller;
    EXPECT_TRUE(two.b->MayHaveOtherWriters("u")) << "caller " << caller;
  }

  TempDir alone_dir;
  auto opened = SqliteStorage::Open(alone_dir.File("alone.db"), kFast);
  ASSERT_TRUE(opened.ok()) << opened.status();
  std::shared_ptr<Storage> alone = *std::move(opened);
  auto committer = Committer::Open(alone, "t");
  ASSERT_TRUE(committer.ok()) << committer.status();
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE((*committer)->Commit(put(fmt::format("v{}", i))).ok());
    EXPECT_FALSE(alone->MayHaveOtherWriters("t"));
  }
}

TEST(SqliteStorageTest, MissingDirectoryIsUnavailableAndNamesIt) {
  TempDir dir;
  const std::string path = dir.File("no/such/dir/app.db");
  auto storage = SqliteStorage::Open(path);
  ASSERT_FALSE(storage.ok());
  EXPECT_EQ(storage.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(std::string(storage.status().message()),
              AllOf(HasSubstr(path), HasSubstr("does not exist")));
}

TEST(SqliteStorageTest, BadArgumentsAreInvalidArgument) {
  EXPECT_EQ(SqliteStorage::Open("").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(SqliteStorage::Open(":memory:").status().code(), absl::StatusCode::kInvalidArgument);
  TempDir dir;
  EXPECT_EQ(SqliteStorage::Open(dir.File("a.db"), {.max_read_connections = 0}).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(SqliteStorageTest, NewerSchemaVersionIsRefusedNamingBothVersions) {
  TempDir dir;
  const std::string path = dir.File("app.db");
  ASSERT_TRUE(SqliteStorage::Open(path, kFast).ok());
  RawExec(path, "PRAGMA user_version = 99");
  auto storage = SqliteStorage::Open(path, kFast);
  ASSERT_FALSE(storage.ok());
  EXPECT_EQ(storage.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(
      std::string(storage.status().message()),
      AllOf(HasSubstr("99"), HasSubstr(fmt::format("version {}", SqliteStorage::kSchemaVersion))));
  // Refused before anything was changed: the version is still there.
  RawExec(path, "PRAGMA user_version = 1");
  EXPECT_TRUE(SqliteStorage::Open(path, kFast).ok());
}

TEST(SqliteStorageTest, AnotherApplicationsDatabaseIsRefused) {
  TempDir dir;
  const std::string path = dir.File("other.db");
  RawExec(path, "CREATE TABLE users(name TEXT)");
  auto storage = SqliteStorage::Open(path, kFast);
  EXPECT_EQ(storage.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(storage.status().message()), HasSubstr("not a txfn database"));
  RawExec(path, "PRAGMA application_id = 42");
  EXPECT_EQ(SqliteStorage::Open(path, kFast).status().code(),
            absl::StatusCode::kFailedPrecondition);
}

TEST(SqliteStorageTest, DroppedTableIsDataLoss) {
  TempDir dir;
  const std::string path = dir.File("app.db");
  ASSERT_TRUE(SqliteStorage::Open(path, kFast).ok());
  RawExec(path, "DROP TABLE log");
  auto storage = SqliteStorage::Open(path, kFast);
  EXPECT_EQ(storage.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(std::string(storage.status().message()), HasSubstr("'log' is missing"));
}

void OverwriteWithGarbage(const std::string& path, std::streamoff offset, size_t n) {
  std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
  ASSERT_TRUE(f.is_open());
  f.seekp(offset);
  std::string garbage(n, '\0');
  for (size_t i = 0; i < n; ++i) garbage[i] = static_cast<char>((i * 131 + 7) % 251);
  f.write(garbage.data(), static_cast<std::streamsize>(n));
  ASSERT_TRUE(f.good());
}

TEST(SqliteStorageTest, GarbageInTheMiddleIsDataLoss) {
  TempDir dir;
  const std::string path = dir.File("app.db");
  FillDatabase(path);
  auto size = std::filesystem::file_size(path);
  ASSERT_GT(size, 64u * 1024);
  OverwriteWithGarbage(path, static_cast<std::streamoff>(size / 2), 8192);
  auto storage = SqliteStorage::Open(path, kFast);
  ASSERT_FALSE(storage.ok());
  EXPECT_EQ(storage.status().code(), absl::StatusCode::kDataLoss) << storage.status();
  EXPECT_THAT(std::string(storage.status().message()), HasSubstr(path));
}

TEST(SqliteStorageTest, GarbageOverTheHeaderIsDataLoss) {
  TempDir dir;
  const std::string path = dir.File("app.db");
  FillDatabase(path);
  OverwriteWithGarbage(path, 0, 100);
  auto storage = SqliteStorage::Open(path, kFast);
  ASSERT_FALSE(storage.ok());
  EXPECT_EQ(storage.status().code(), absl::StatusCode::kDataLoss) << storage.status();
}

TEST(SqliteStorageTest, TruncatedFileIsDataLoss) {
  TempDir dir;
  const std::string path = dir.File("app.db");
  FillDatabase(path);
  auto size = std::filesystem::file_size(path);
  std::filesystem::resize_file(path, size / 2);
  auto storage = SqliteStorage::Open(path, kFast);
  ASSERT_FALSE(storage.ok());
  EXPECT_EQ(storage.status().code(), absl::StatusCode::kDataLoss) << storage.status();
}

TEST(SqliteStorageTest, FileOfAnotherKindIsDataLoss) {
  TempDir dir;
  const std::string path = dir.File("notes.txt");
  std::ofstream(path) << std::string(5000, 'x');
  auto storage = SqliteStorage::Open(path, kFast);
  ASSERT_FALSE(storage.ok());
  EXPECT_EQ(storage.status().code(), absl::StatusCode::kDataLoss) << storage.status();
  EXPECT_THAT(std::string(storage.status().message()), HasSubstr("not a database"));
}

TEST(SqliteStorageTest, QuickCheckOffStillChecksTheHeader) {
  TempDir dir;
  const std::string path = dir.File("app.db");
  FillDatabase(path);
  OverwriteWithGarbage(path, 0, 100);
  EXPECT_EQ(SqliteStorage::Open(path, {.quick_check_on_open = false}).status().code(),
            absl::StatusCode::kDataLoss);
}

TEST(SqliteStorageTest, OneReadConnectionIsEnoughForEveryCall) {
  TempDir dir;
  auto storage = SqliteStorage::Open(
      dir.File("app.db"),
      {.synchronous = SqliteOptions::Synchronous::kOff, .max_read_connections = 1});
  ASSERT_TRUE(storage.ok());
  CommitRecord commit{.tenant = "t", .ts = 5, .writes = {{.index = 1, .key = "k", .value = "v"}}};
  ASSERT_TRUE((*storage)->Write({&commit, 1}).ok());
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ((*storage)->Get("t", 1, "k", 5).value(), (IndexEntry{"k", "v", 5}));
    EXPECT_EQ((*storage)->ReadLog("t", 0, 0).value().size(), 1u);
    EXPECT_EQ((*storage)->MaxCommittedTimestamp("t").value(), 5u);
  }
}

TEST(SqliteStorageTest, TimestampsAboveInt64MaxKeepTheirOrder) {
  TempDir dir;
  auto storage = SqliteStorage::Open(dir.File("app.db"), kFast);
  ASSERT_TRUE(storage.ok());
  const Timestamp big = (Timestamp{1} << 63) + 5;
  CommitRecord a{.tenant = "t", .ts = 7, .writes = {{.index = 1, .key = "k", .value = "a"}}};
  CommitRecord b{.tenant = "t", .ts = big, .writes = {{.index = 1, .key = "k", .value = "b"}}};
  ASSERT_TRUE((*storage)->Write({&a, 1}).ok());
  ASSERT_TRUE((*storage)->Write({&b, 1}).ok());
  EXPECT_EQ((*storage)->MaxCommittedTimestamp("t").value(), big);
  EXPECT_EQ((*storage)->Get("t", 1, "k", big - 1).value()->value, "a");
  EXPECT_EQ((*storage)->Get("t", 1, "k", ~Timestamp{0}).value()->value, "b");
  CommitRecord c{.tenant = "t", .ts = 8};
  EXPECT_EQ((*storage)->Write({&c, 1}).code(), absl::StatusCode::kInvalidArgument);
}

// Keys with many versions are left by a seek (past kMaxVersionsWalked rows);
// the result must not change.
TEST(SqliteStorageTest, ScansOverKeysWithManyVersionsMatchTheReference) {
  TempDir dir;
  auto sqlite = SqliteStorage::Open(dir.File("app.db"), kFast);
  ASSERT_TRUE(sqlite.ok());
  ExpectHotKeyScansMatchReference(**sqlite);
}

TEST(SqliteStorageTest, RandomHistoriesWithRetentionMatchTheReference) {
  TempDir dir;
  auto sqlite = SqliteStorage::Open(dir.File("app.db"), kFast);
  ASSERT_TRUE(sqlite.ok());
  ExpectRandomHistoryMatchesReference(**sqlite, /*seed=*/1);
}

// The tables versions, log and commits of schema versions 1 and 2, as their
// builds wrote them (the log held a copy of every value).
constexpr const char* kVersionOneAndTwoTables = R"sql(
    PRAGMA journal_mode = WAL;
    CREATE TABLE versions (tenant BLOB NOT NULL, index_id INTEGER NOT NULL, key BLOB NOT NULL,
      ts INTEGER NOT NULL, value BLOB, PRIMARY KEY (tenant, index_id, key, ts)) WITHOUT ROWID;
    CREATE TABLE log (tenant BLOB NOT NULL, ts INTEGER NOT NULL, seq INTEGER NOT NULL,
      index_id INTEGER NOT NULL, key BLOB NOT NULL, value BLOB,
      PRIMARY KEY (tenant, ts, seq)) WITHOUT ROWID;
    CREATE TABLE commits (tenant BLOB NOT NULL, ts INTEGER NOT NULL,
      PRIMARY KEY (tenant, ts)) WITHOUT ROWID;
)sql";

TEST(SqliteStorageTest, AVersionOneFileIsUpgradedInPlace) {
  TempDir dir;
  const std::string path = dir.File("v1.db");
  // The schema of version 1 (no retention horizon).
  RawExec(path, std::string(kVersionOneAndTwoTables) + R"sql(
    CREATE TABLE tenants (tenant BLOB NOT NULL PRIMARY KEY, max_ts INTEGER NOT NULL) WITHOUT ROWID;
    PRAGMA application_id = 1954047598;
    PRAGMA user_version = 1;
  )sql");
  {
    auto storage = SqliteStorage::Open(path, kFast);
    ASSERT_TRUE(storage.ok()) << storage.status();
    CommitRecord commit{.tenant = "t", .ts = 5, .writes = {{.index = 1, .key = "k", .value = "v"}}};
    ASSERT_TRUE((*storage)->Write({&commit, 1}).ok());
    auto retained = (*storage)->ApplyRetention("t", 5, 0);
    ASSERT_TRUE(retained.ok()) << retained.status();
    EXPECT_EQ(retained->horizon, 5u);
  }
  auto again = SqliteStorage::Open(path, kFast);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ((*again)->Get("t", 1, "k", 5).value(), (IndexEntry{"k", "v", 5}));
  EXPECT_EQ((*again)->Get("t", 1, "k", 4).status().code(), absl::StatusCode::kFailedPrecondition);
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
  sqlite3_stmt* stmt = nullptr;
  ASSERT_EQ(sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &stmt, nullptr), SQLITE_OK);
  ASSERT_EQ(sqlite3_step(stmt), SQLITE_ROW);
  EXPECT_EQ(sqlite3_column_int(stmt, 0), SqliteStorage::kSchemaVersion);
  sqlite3_finalize(stmt);
  sqlite3_close(db);
}

// The first column of the first row of `sql` on the file at `path`, as text.
std::string RawQuery(const std::string& path, const std::string& sql) {
  sqlite3* db = nullptr;
  std::string out;
  if (sqlite3_open(path.c_str(), &db) == SQLITE_OK) {
    sqlite3_stmt* stmt = nullptr;
    if (sqlite3_prepare_v2(db, sql.c_str(), -1, &stmt, nullptr) == SQLITE_OK &&
        sqlite3_step(stmt) == SQLITE_ROW && sqlite3_column_text(stmt, 0) != nullptr) {
      out = reinterpret_cast<const char*>(sqlite3_column_text(stmt, 0));
    }
    sqlite3_finalize(stmt);
  }
  sqlite3_close(db);
  return out;
}

TEST(SqliteStorageTest, AVersionTwoFileWithValuesInTheLogIsUpgradedInPlace) {
  TempDir dir;
  const std::string path = dir.File("v2.db");
  // The schema of version 2, with two commits of tenant "t": at ts 5, k1 = "v1" and
  // k2 = "v2"; at ts 6, k1 deleted. Timestamps are stored with the top bit
  // flipped (5 -> -9223372036854775803).
  RawExec(path, std::string(kVersionOneAndTwoTables) + R"sql(
    CREATE TABLE tenants (tenant BLOB NOT NULL PRIMARY KEY, max_ts INTEGER NOT NULL,
      horizon INTEGER NOT NULL DEFAULT (-9223372036854775807 - 1)) WITHOUT ROWID;
    INSERT INTO versions VALUES (X'74', 1, X'6B31', -9223372036854775803, X'7631'),
                                (X'74', 1, X'6B32', -9223372036854775803, X'7632'),
                                (X'74', 1, X'6B31', -9223372036854775802, NULL);
    INSERT INTO log VALUES (X'74', -9223372036854775803, 0, 1, X'6B31', X'7631'),
                           (X'74', -9223372036854775803, 1, 1, X'6B32', X'7632'),
                           (X'74', -9223372036854775802, 0, 1, X'6B31', NULL);
    INSERT INTO commits VALUES (X'74', -9223372036854775803), (X'74', -9223372036854775802);
    INSERT INTO tenants(tenant, max_ts) VALUES (X'74', -9223372036854775802);
    PRAGMA application_id = 1954047598;
    PRAGMA user_version = 2;
  )sql");
  const std::vector<CommitRecord> want = {
      {.tenant = "t",
       .ts = 5,
       .writes = {{.index = 1, .key = "k1", .value = "v1"},
                  {.index = 1, .key = "k2", .value = "v2"}}},
      {.tenant = "t", .ts = 6, .writes = {{.index = 1, .key = "k1", .value = std::nullopt}}},
  };
  {
    auto storage = SqliteStorage::Open(path, kFast);
    ASSERT_TRUE(storage.ok()) << storage.status();
    auto log = (*storage)->ReadLog("t", 0, 0);
    ASSERT_TRUE(log.ok()) << log.status();
    EXPECT_EQ(*log, want);
    EXPECT_EQ((*storage)->MaxCommittedTimestamp("t").value(), 6u);
    EXPECT_EQ((*storage)->Get("t", 1, "k1", 5).value(), (IndexEntry{"k1", "v1", 5}));
    EXPECT_EQ((*storage)->Get("t", 1, "k1", 6).value(), std::nullopt);
    CommitRecord next{.tenant = "t", .ts = 7, .writes = {{.index = 1, .key = "k2", .value = "v3"}}};
    ASSERT_TRUE((*storage)->Write({&next, 1}).ok());
    auto retained = (*storage)->ApplyRetention("t", 6, 0);
    ASSERT_TRUE(retained.ok()) << retained.status();
    EXPECT_EQ(retained->horizon, 6u);
    EXPECT_EQ(retained->versions_dropped, 2u);  // k1's value and its tombstone
  }
  EXPECT_EQ(RawQuery(path, "PRAGMA user_version"), std::to_string(SqliteStorage::kSchemaVersion));
  EXPECT_EQ(RawQuery(path, "SELECT count(*) FROM pragma_table_info('log') WHERE name = 'value'"),
            "0");
  auto again = SqliteStorage::Open(path, kFast);
  ASSERT_TRUE(again.ok()) << again.status();
  auto log = (*again)->ReadLog("t", 6, 0);
  ASSERT_TRUE(log.ok()) << log.status();
  ASSERT_EQ(log->size(), 1u);
  EXPECT_EQ((*log)[0].writes, (std::vector<IndexWrite>{{.index = 1, .key = "k2", .value = "v3"}}));
  EXPECT_EQ((*again)->Get("t", 1, "k2", 6).value(), (IndexEntry{"k2", "v2", 5}));
}

TEST(SqliteStorageTest, ALogEntryWithoutItsVersionIsDataLoss) {
  TempDir dir;
  const std::string path = dir.File("app.db");
  {
    auto storage = SqliteStorage::Open(path, kFast);
    ASSERT_TRUE(storage.ok()) << storage.status();
    CommitRecord commit{.tenant = "t", .ts = 5, .writes = {{.index = 1, .key = "k", .value = "v"}}};
    ASSERT_TRUE((*storage)->Write({&commit, 1}).ok());
  }
  RawExec(path, "DELETE FROM versions");
  auto storage = SqliteStorage::Open(path, kFast);
  ASSERT_TRUE(storage.ok()) << storage.status();
  auto log = (*storage)->ReadLog("t", 0, 0);
  EXPECT_EQ(log.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(std::string(log.status().message()), HasSubstr("has no version"));
}

TEST(SqliteStorageTest, AnUnknownVfsIsInvalidArgument) {
  TempDir dir;
  auto storage = SqliteStorage::Open(dir.File("a.db"), {.vfs = "no-such-vfs"});
  EXPECT_EQ(storage.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(storage.status().message()), HasSubstr("no-such-vfs"));
  EXPECT_TRUE(SqliteStorage::Open(dir.File("b.db"), {.vfs = "unix"}).ok());
}

TEST(SqliteStorageTest, RetentionShrinksTheFile) {
  TempDir dir;
  const std::string path = dir.File("shrink.db");
  auto storage = SqliteStorage::Open(path, kFast);
  ASSERT_TRUE(storage.ok()) << storage.status();
  // One document written 5,000 times (issue 11: 36 KB -> 2.8 MB before).
  for (Timestamp ts = 1; ts <= 5000; ++ts) {
    CommitRecord c{.tenant = "t",
                   .ts = ts,
                   .writes = {{.index = 1, .key = "doc", .value = std::string(200, 'x')}}};
    ASSERT_TRUE((*storage)->Write({&c, 1}).ok());
  }
  auto pages = [&] {
    sqlite3* db = nullptr;
    EXPECT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
    sqlite3_stmt* stmt = nullptr;
    EXPECT_EQ(sqlite3_prepare_v2(db, "PRAGMA page_count", -1, &stmt, nullptr), SQLITE_OK);
    EXPECT_EQ(sqlite3_step(stmt), SQLITE_ROW);
    int64_t n = sqlite3_column_int64(stmt, 0);
    sqlite3_finalize(stmt);
    sqlite3_close(db);
    return n;
  };
  const int64_t before = pages();
  auto result = (*storage)->ApplyRetention("t", 5000, 0);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->versions_dropped, 4999u);
  EXPECT_EQ(result->commits_dropped, 5000u);
  const int64_t after = pages();
  EXPECT_LT(after * 10, before) << before << " pages before, " << after << " after";
  EXPECT_EQ((*storage)->Get("t", 1, "doc", 5000)->value().ts, 5000u);
}

TEST(SqliteStorageTest, BackupOfALiveDatabaseOpensAsACommittedPrefix) {
  TempDir dir;
  const std::string path = dir.File("live.db");
  const std::string copy = dir.File("copy.db");
  auto storage = SqliteStorage::Open(path, kFast);
  ASSERT_TRUE(storage.ok()) << storage.status();
  for (Timestamp ts = 1; ts <= 100; ++ts) {
    CommitRecord c{.tenant = "t",
                   .ts = ts,
                   .writes = {{.index = 1, .key = fmt::format("k{:04}", ts), .value = "v"},
                              {.index = 2, .key = "count", .value = std::to_string(ts)}}};
    ASSERT_TRUE((*storage)->Write({&c, 1}).ok());
  }
  // A writer goes on while the backup runs.
  std::atomic<bool> stop{false};
  std::thread writer([&] {
    for (Timestamp ts = 101; !stop.load() && ts < 100'000; ++ts) {
      CommitRecord c{.tenant = "t",
                     .ts = ts,
                     .writes = {{.index = 1, .key = fmt::format("k{:04}", ts), .value = "v"},
                                {.index = 2, .key = "count", .value = std::to_string(ts)}}};
      if (!(*storage)->Write({&c, 1}).ok()) break;
    }
  });
  absl::Status backup = (*storage)->Backup(copy);
  stop = true;
  writer.join();
  ASSERT_TRUE(backup.ok()) << backup;
  EXPECT_FALSE(std::filesystem::exists(copy + ".partial"));
  EXPECT_EQ((*storage)->Backup(copy).code(), absl::StatusCode::kAlreadyExists);
  EXPECT_EQ((*storage)->Backup("").code(), absl::StatusCode::kInvalidArgument);
  storage->reset();

  auto restored = SqliteStorage::Open(copy, kFast);
  ASSERT_TRUE(restored.ok()) << restored.status();
  const Timestamp max = (*restored)->MaxCommittedTimestamp("t").value();
  ASSERT_GE(max, 100u);
  // Every commit up to its newest, none after: a consistent snapshot.
  auto keys = (*restored)->Scan("t", 1, KeyRange::All(), max, ScanOrder::kAscending, 0);
  ASSERT_TRUE(keys.ok()) << keys.status();
  EXPECT_EQ(keys->size(), max);
  EXPECT_EQ((*restored)->Get("t", 2, "count", max)->value().value, std::to_string(max));
  EXPECT_EQ((*restored)->ReadLog("t", 0, 0)->size(), max);
}

}  // namespace
}  // namespace txfn

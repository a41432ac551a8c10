// SqliteQueue: the DurableQueue conformance suite with reopen (one shard and
// four), its BlobStore, options and files it must refuse.
#include "txfn/sqlite_queue.h"

#include <sqlite3.h>

#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "queue_test_util.h"
#include "sqlite_queue_test_util.h"
#include "txfn/testing/durable_queue_conformance.h"

namespace txfn {
namespace {

using queue_test::TempDir;
using queue_test::TempSqliteQueue;
using ::testing::HasSubstr;

TXFN_INSTANTIATE_DURABLE_QUEUE_CONFORMANCE(
    Sqlite, [] { return TempSqliteQueue::Make(1); }, &TempSqliteQueue::Reopen);
TXFN_INSTANTIATE_DURABLE_QUEUE_CONFORMANCE(
    SqliteFourShards, [] { return TempSqliteQueue::Make(4); }, &TempSqliteQueue::Reopen);

TEST(SqliteQueueTest, BlobStoreRoundTripsAndSurvivesAReopen) {
  TempDir dir;
  const std::string path = dir.File("q.db");
  {
    auto q = SqliteQueue::Open(path);
    ASSERT_TRUE(q.ok()) << q.status();
    BlobStore& blobs = (*q)->blob_store();
    ASSERT_TRUE(blobs.Put("a", std::string(100000, 'x')).ok());
    ASSERT_TRUE(blobs.Put("b", "first").ok());
    ASSERT_TRUE(blobs.Put("b", "second").ok());
    ASSERT_TRUE(blobs.Put("c", "gone").ok());
    ASSERT_TRUE(blobs.Delete("c").ok());
    ASSERT_TRUE(blobs.Delete("never").ok());
    EXPECT_EQ(blobs.Put("", "x").code(), absl::StatusCode::kInvalidArgument);
    EXPECT_EQ(blobs.Put(std::string(300, 'k'), "x").code(), absl::StatusCode::kInvalidArgument);
  }
  auto q = SqliteQueue::Open(path);
  ASSERT_TRUE(q.ok()) << q.status();
  BlobStore& blobs = (*q)->blob_store();
  EXPECT_EQ(*blobs.Get("a"), std::string(100000, 'x'));
  EXPECT_EQ(*blobs.Get("b"), "second");
  EXPECT_EQ(blobs.Get("c").status().code(), absl::StatusCode::kNotFound);
}

TEST(SqliteQueueTest, OpenRefusesBadPathsOptionsAndFiles) {
  TempDir dir;
  EXPECT_EQ(SqliteQueue::Open("").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(SqliteQueue::Open(":memory:").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(SqliteQueue::Open(dir.File("x.db"), {.shards = -1}).status().code(),
            absl::StatusCode::kInvalidArgument);
  auto missing = SqliteQueue::Open(dir.File("no/such/dir/q.db"));
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(missing.status().message(), HasSubstr("no/such/dir/q.db"));

  // The shard count is fixed when the file is created.
  const std::string path = dir.File("shards.db");
  {
    auto q = SqliteQueue::Open(path, {.shards = 3});
    ASSERT_TRUE(q.ok()) << q.status();
    EXPECT_EQ((*q)->shard_count(), 3);
  }
  auto other = SqliteQueue::Open(path, {.shards = 2});
  EXPECT_EQ(other.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(other.status().message(), HasSubstr("3 shards"));
  auto same = SqliteQueue::Open(path);
  ASSERT_TRUE(same.ok()) << same.status();
  EXPECT_EQ((*same)->shard_count(), 3);
  same->reset();

  // A newer queue schema.
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(db, "UPDATE txfn_queue_meta SET value = 99 WHERE name = 'schema_version'",
                         nullptr, nullptr, nullptr),
            SQLITE_OK);
  sqlite3_close(db);
  auto newer = SqliteQueue::Open(path);
  EXPECT_EQ(newer.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(newer.status().message(), HasSubstr("99"));

  // Not a database at all.
  const std::string junk = dir.File("junk.db");
  std::ofstream(junk) << std::string(8192, 'j');
  EXPECT_EQ(SqliteQueue::Open(junk).status().code(), absl::StatusCode::kDataLoss);
}

}  // namespace
}  // namespace txfn

// PostgresQueue under SIGKILL of a client process (see tests/queue/queue_crash_harness.h for
// what is checked): the server survives, the killed client's connection is dropped mid-batch,
// and whatever it had committed must be exact.
#include <memory>
#include <string>
#include <utility>

#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "lib/postgres/pg_connection.h"
#include "tests/postgres/pg_test_util.h"
#include "tests/queue/queue_crash_harness.h"
#include "txfn/postgres_queue.h"

namespace txfn {
namespace {

std::unique_ptr<DurableQueue> OpenOrNull(const std::string& url) {
  auto q = PostgresQueue::Open({.url = url, .max_connections = 1});
  if (!q.ok()) return nullptr;
  return *std::move(q);
}

// A killed client's server session outlives it: the statement it had sent (an enqueue, a
// lease, an ACK) still runs and may commit while the parent checks, which reads one shard at
// a time, so a batch committed between two reads looked partly there (a CI failure under
// load). The check waits until every other client session of the database has ended (up to
// 30 s): what the child sent is final then, committed or not.
bool OtherSessionsEnded(const std::string& url) {
  auto conn = pg_internal::PgConnection::Open(url);
  if (!conn.ok()) return false;
  for (int i = 0; i < 3000; ++i) {
    auto others = (*conn)->Exec(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
        "AND backend_type = 'client backend' AND pid <> pg_backend_pid()",
        {}, true);
    if (!others.ok()) return false;
    if (others->Int(0, 0) == 0) return true;
    absl::SleepFor(absl::Milliseconds(10));
  }
  return false;
}

TEST(PostgresQueueCrashTest, AcknowledgedWorkSurvivesSigkillAndLeasesComeBack) {
  TXFN_REQUIRE_PG_SERVER();
  testing::PgTestDatabase db;
  ASSERT_TRUE(db.Create().ok());
  {
    auto q = PostgresQueue::Open({.url = db.url(), .shards = 2});
    ASSERT_TRUE(q.ok()) << q.status();
  }
  // Connecting takes a few ms, and over 100 ms under ASan on a slow VM (up to 250 ms left
  // 9 of 20 rounds doing work there): a wider window than SqliteQueue's, so most rounds do.
  queue_test::RunCrashRounds(
      20, [&](int) { return OpenOrNull(db.url()); },
      [&] { return OtherSessionsEnded(db.url()) ? OpenOrNull(db.url()) : nullptr; },
      /*max_delay_ms=*/500);
}

}  // namespace
}  // namespace txfn

// PostgresQueue under SIGKILL of a client process (see tests/queue/queue_crash_harness.h for
// what is checked): the server survives, the killed client's connection is dropped mid-batch,
// and whatever it had committed must be exact.
#include <memory>
#include <string>
#include <utility>

#include "gtest/gtest.h"
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
      20, [&](int) { return OpenOrNull(db.url()); }, [&] { return OpenOrNull(db.url()); },
      /*max_delay_ms=*/500);
}

}  // namespace
}  // namespace txfn

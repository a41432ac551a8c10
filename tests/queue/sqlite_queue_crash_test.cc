// SqliteQueue under SIGKILL (see queue_crash_harness.h for what is checked). Rounds alternate
// synchronous FULL and NORMAL (both promise to survive a process crash).
#include <memory>
#include <string>
#include <utility>

#include "gtest/gtest.h"
#include "queue_crash_harness.h"
#include "queue_test_util.h"
#include "txfn/sqlite_queue.h"

namespace txfn {
namespace {

using queue_test::TempDir;

std::unique_ptr<DurableQueue> OpenOrNull(const std::string& path, SqliteQueueOptions options) {
  auto q = SqliteQueue::Open(path, options);
  if (!q.ok()) return nullptr;
  return *std::move(q);
}

TEST(SqliteQueueCrashTest, AcknowledgedWorkSurvivesSigkillAndLeasesComeBack) {
  TempDir dir;
  const std::string path = dir.File("queue.db");
  {
    auto q = SqliteQueue::Open(path, {.shards = 2});
    ASSERT_TRUE(q.ok()) << q.status();
  }
  queue_test::RunCrashRounds(
      20,
      [&](int round) {
        return OpenOrNull(
            path, {.synchronous = round % 2 == 0 ? SqliteQueueOptions::Synchronous::kFull
                                                 : SqliteQueueOptions::Synchronous::kNormal});
      },
      [&] { return OpenOrNull(path, {.synchronous = SqliteQueueOptions::Synchronous::kOff}); });
}

}  // namespace
}  // namespace txfn

// SqliteQueue under SIGKILL (see queue_crash_harness.h for what is checked). Rounds alternate
// synchronous FULL and NORMAL (both promise to survive a process crash). And a failed COMMIT
// (a WAL fsync error) followed by a process crash: reported as an unknown outcome, rightly.
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "../failing_wal_sync_vfs.h"
#include "gtest/gtest.h"
#include "queue_crash_harness.h"
#include "queue_test_util.h"
#include "txfn/sqlite_queue.h"
#include "txfn/storage.h"

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

Call CallOf(const std::string& function) {
  Call c;
  c.id = CallId::FromKey("sqlite-queue-crash-test", function);
  c.tenant = "t";
  c.function = function;
  c.start_after = absl::FromUnixSeconds(1'700'000'000);
  c.deadline = c.start_after + absl::Hours(1);
  return c;
}

// Exit codes of the child below.
enum ChildExit : int {
  kChildOk = 0,
  kSetupFailed = 10,
  kNoSyncFailed,
  kNotUnknown,
  kNotRefused,
};

// Enqueues `first`, then `second` with the WAL sync failing; checks what it is told, and
// that the queue answers nothing more; then dies without closing anything.
[[noreturn]] void EnqueueWithAFailedSyncAndCrash(const std::string& path, const Call& first,
                                                 const Call& second) {
  testing_util::FailingWalSyncVfs vfs;
  if (!vfs.registered()) _exit(kSetupFailed);
  auto q = SqliteQueue::Open(path, {.vfs = testing_util::FailingWalSyncVfs::kName});
  if (!q.ok() || !(*q)->Enqueue({&first, 1}).ok()) _exit(kSetupFailed);
  vfs.FailNextWalSyncAfterFrames();
  absl::StatusOr<size_t> added = (*q)->Enqueue({&second, 1});
  if (!vfs.failed_a_sync()) _exit(kNoSyncFailed);
  if (!IsCommitOutcomeUnknown(added.status())) {
    std::fprintf(stderr, "child: Enqueue returned %s\n", added.status().ToString().c_str());
    _exit(kNotUnknown);
  }
  // Every answer now could be contradicted by recovery: refused, and not as unknown.
  auto refused = [](const absl::Status& s) {
    return absl::IsUnavailable(s) && !IsCommitOutcomeUnknown(s);
  };
  const Call third = CallOf("third");
  if (!refused((*q)->Enqueue({&third, 1}).status()) ||
      !refused((*q)->Find(second.id, second.start_after).status()) ||
      !refused((*q)->Find(first.id, first.start_after).status()) ||
      !refused((*q)->Lease({.shard = 0, .now = second.start_after, .max = 10}).status()) ||
      !refused((*q)->Depths(second.start_after).status()) ||
      !refused((*q)->blob_store().Put("k", "v")) ||
      !refused((*q)->blob_store().Get("k").status()) || !refused((*q)->Backup(path + ".copy"))) {
    _exit(kNotRefused);
  }
  _exit(kChildOk);  // the crash: no destructor runs, the WAL keeps the written frames
}

TEST(SqliteQueueCrashTest, AFailedCommitIsAnUnknownOutcomeThatRecoveryMaySettleAsStored) {
  TempDir dir;
  const std::string path = dir.File("queue.db");
  const Call first = CallOf("first");
  const Call second = CallOf("second");
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) EnqueueWithAFailedSyncAndCrash(path, first, second);
  int wstatus = 0;
  ASSERT_EQ(waitpid(pid, &wstatus, 0), pid);
  ASSERT_TRUE(WIFEXITED(wstatus));
  ASSERT_EQ(WEXITSTATUS(wstatus), kChildOk)
      << "child exit " << WEXITSTATUS(wstatus) << " (" << kNotUnknown
      << ": the failed COMMIT was not reported as an unknown outcome; " << kNotRefused
      << ": the queue answered after it)";

  // The OS kept the frames: recovery replays the Enqueue the child was not sure of. Had
  // it been told "nothing stored", its spilled arguments would have been deleted.
  auto q = SqliteQueue::Open(path);
  ASSERT_TRUE(q.ok()) << q.status();
  for (const Call* c : {&first, &second}) {
    auto found = (*q)->Find(c->id, c->start_after);
    ASSERT_TRUE(found.ok()) << found.status();
    EXPECT_TRUE(found->has_value()) << c->function << " is not in the queue";
  }
  // The host's retry of the same Enqueue is exact.
  std::vector<Call> retry = {second, CallOf("third")};
  auto added = (*q)->Enqueue(retry);
  ASSERT_TRUE(added.ok()) << added.status();
  EXPECT_EQ(*added, 1u);
}

}  // namespace
}  // namespace txfn

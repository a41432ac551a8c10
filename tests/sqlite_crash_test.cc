// SqliteStorage durability under SIGKILL: a forked child commits in a loop and
// acknowledges each commit on a pipe; the parent kills it at random moments,
// reopens the file and checks that every acknowledged commit is there, whole,
// and that no commit is there in part.
//
// Each round forks a fresh child (no threads exist at fork time; SQLite is
// opened only after the fork, and the parent's own connection is closed before
// the next one). Rounds alternate synchronous FULL and NORMAL: both promise to
// survive a process crash.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "fmt/core.h"
#include "gtest/gtest.h"
#include "sqlite_test_util.h"
#include "storage_crash_test_util.h"
#include "txfn/sqlite_storage.h"

namespace txfn {
namespace {

using namespace testing_util;  // NOLINT(google-build-using-namespace)

// The child: commits n = max + 1, max + 2, ... forever, acknowledging each.
[[noreturn]] void ChildLoop(const std::string& path, SqliteOptions options, int ack_fd) {
  auto storage = SqliteStorage::Open(path, options);
  if (!storage.ok()) _exit(2);
  CommitAndAckForever(**storage, ack_fd);
}

// Everything in the file is whole commits 1..max, and max >= last_acked.
void Verify(const std::string& path, Timestamp last_acked, Timestamp* max_out) {
  auto storage = SqliteStorage::Open(path, {.synchronous = SqliteOptions::Synchronous::kOff});
  ASSERT_TRUE(storage.ok()) << storage.status();
  VerifyCommittedPrefix(**storage, last_acked, max_out);
}

TEST(SqliteCrashTest, AcknowledgedCommitsSurviveSigkillAndNoCommitIsPartial) {
  TempDir dir;
  const std::string path = dir.File("crash.db");
  std::mt19937 rng(testing::UnitTest::GetInstance()->random_seed());
  std::uniform_int_distribution<int> delay_ms(0, 300);
  constexpr int kRounds = 24;
  Timestamp last_acked = 0;
  Timestamp max = 0;
  int rounds_with_acks = 0;
  for (int round = 0; round < kRounds; ++round) {
    SqliteOptions options{.synchronous = round % 2 == 0 ? SqliteOptions::Synchronous::kFull
                                                        : SqliteOptions::Synchronous::kNormal};
    int fds[2];
    ASSERT_EQ(pipe2(fds, O_CLOEXEC), 0);
    pid_t child = fork();
    ASSERT_GE(child, 0);
    if (child == 0) {
      close(fds[0]);
      ChildLoop(path, options, fds[1]);
    }
    close(fds[1]);
    auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(delay_ms(rng));
    Timestamp before = last_acked;
    last_acked = ReadAcks(fds[0], deadline, max);
    ASSERT_EQ(kill(child, SIGKILL), 0);
    int wstatus = 0;
    ASSERT_EQ(waitpid(child, &wstatus, 0), child);
    EXPECT_TRUE(WIFSIGNALED(wstatus) && WTERMSIG(wstatus) == SIGKILL)
        << "the child exited by itself, status " << wstatus;
    // Acks written before the kill are still in the pipe.
    last_acked = ReadAcks(fds[0], std::chrono::steady_clock::now(), last_acked);
    close(fds[0]);
    if (last_acked > before) ++rounds_with_acks;
    ASSERT_NO_FATAL_FAILURE(Verify(path, last_acked, &max));
    EXPECT_LE(max, last_acked + 1) << "at most the one commit in flight was not acknowledged";
    last_acked = max;  // the next child continues from here
  }
  EXPECT_GT(max, 0u);
  EXPECT_GE(rounds_with_acks, kRounds / 3) << "too few rounds committed anything";
  RecordProperty("commits", static_cast<int>(max));
  fmt::print("{} rounds, {} commits in all, {} rounds with acknowledged commits\n", kRounds, max,
             rounds_with_acks);
}

}  // namespace
}  // namespace txfn

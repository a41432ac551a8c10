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
#include "txfn/sqlite_storage.h"

namespace txfn {
namespace {

using testing_util::TempDir;

constexpr char kTenant[] = "crash";
constexpr int kSharedKeys = 5;

std::string Key(Timestamp n, char part) { return fmt::format("c{:08}/{}", n, part); }
std::string Val(Timestamp n, char part) { return fmt::format("v{}-{}", n, part); }
std::string SharedKey(Timestamp n) { return fmt::format("shared{}", n % kSharedKeys); }

// Commit n: three keys of its own, one of the shared keys, and the counter.
CommitRecord MakeCommit(Timestamp n) {
  CommitRecord c{.tenant = kTenant, .ts = n};
  for (char part : {'a', 'b', 'c'}) c.writes.push_back({1, Key(n, part), Val(n, part)});
  c.writes.push_back({2, SharedKey(n), std::to_string(n)});
  c.writes.push_back({3, "counter", std::to_string(n)});
  return c;
}

// The child: commits n = max + 1, max + 2, ... forever, acknowledging each.
[[noreturn]] void ChildLoop(const std::string& path, SqliteOptions options, int ack_fd) {
  auto storage = SqliteStorage::Open(path, options);
  if (!storage.ok()) _exit(2);
  auto max = (*storage)->MaxCommittedTimestamp(kTenant);
  if (!max.ok()) _exit(3);
  for (Timestamp n = *max + 1;; ++n) {
    CommitRecord commit = MakeCommit(n);
    if (!(*storage)->Write({&commit, 1}).ok()) _exit(4);
    if (write(ack_fd, &n, sizeof n) != sizeof n) _exit(5);
  }
}

// Reads acknowledgements until `deadline` (or EOF); returns the newest.
Timestamp ReadAcks(int fd, std::chrono::steady_clock::time_point deadline, Timestamp last) {
  while (true) {
    auto now = std::chrono::steady_clock::now();
    int timeout_ms = 0;
    if (now < deadline) {
      timeout_ms = static_cast<int>(
          std::chrono::duration_cast<std::chrono::milliseconds>(deadline - now).count());
    }
    pollfd p{.fd = fd, .events = POLLIN, .revents = 0};
    int ready = poll(&p, 1, timeout_ms);
    if (ready <= 0) return last;  // deadline
    Timestamp n = 0;
    ssize_t got = read(fd, &n, sizeof n);
    if (got == 0) return last;  // EOF: the child is gone
    if (got != sizeof n) {
      ADD_FAILURE() << "short read on the ack pipe: " << got;
      return last;
    }
    EXPECT_EQ(n, last + 1) << "acks arrive in commit order";
    last = n;
  }
}

// Everything in the file is whole commits 1..max, and max >= last_acked.
void Verify(const std::string& path, Timestamp last_acked, Timestamp* max_out) {
  auto storage = SqliteStorage::Open(path, {.synchronous = SqliteOptions::Synchronous::kOff});
  ASSERT_TRUE(storage.ok()) << storage.status();
  SqliteStorage& s = **storage;
  auto max = s.MaxCommittedTimestamp(kTenant);
  ASSERT_TRUE(max.ok()) << max.status();
  *max_out = *max;
  EXPECT_GE(*max, last_acked) << "an acknowledged commit was lost";

  auto log = s.ReadLog(kTenant, 0, 0);
  ASSERT_TRUE(log.ok()) << log.status();
  ASSERT_EQ(log->size(), *max) << "commits are 1..max without gaps";
  for (Timestamp n = 1; n <= *max; ++n) {
    ASSERT_EQ((*log)[n - 1], MakeCommit(n)) << "commit " << n << " in the log";
  }
  // Every commit's keys, read back at the newest timestamp (a partial commit
  // would miss some), and the counter and shared keys at a few timestamps.
  auto rows = s.Scan(kTenant, 1, KeyRange::All(), *max, ScanOrder::kAscending, 0);
  ASSERT_TRUE(rows.ok()) << rows.status();
  ASSERT_EQ(rows->size(), 3 * *max);
  for (Timestamp n = 1; n <= *max; ++n) {
    for (int i = 0; i < 3; ++i) {
      const IndexEntry& e = (*rows)[3 * (n - 1) + static_cast<size_t>(i)];
      char part = static_cast<char>('a' + i);
      ASSERT_EQ(e, (IndexEntry{Key(n, part), Val(n, part), n}));
    }
  }
  for (Timestamp t : {*max, *max / 2 + 1, Timestamp{1}}) {
    if (t == 0 || t > *max) continue;
    auto counter = s.Get(kTenant, 3, "counter", t);
    ASSERT_TRUE(counter.ok() && counter->has_value());
    EXPECT_EQ((*counter)->value, std::to_string(t));
    auto shared = s.Get(kTenant, 2, SharedKey(t), t);
    ASSERT_TRUE(shared.ok() && shared->has_value());
    EXPECT_EQ((*shared)->value, std::to_string(t));
  }
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

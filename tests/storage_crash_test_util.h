// tests/storage_crash_test_util.h — the commits and checks of the crash tests, for every
// durable Storage adapter: a writer commits MakeCommit(1), MakeCommit(2), ... acknowledging
// each on a pipe; after a crash, VerifyCommittedPrefix checks that every acknowledged commit
// is there, whole, and that no commit is there in part.
#ifndef TXFN_TESTS_STORAGE_CRASH_TEST_UTIL_H_
#define TXFN_TESTS_STORAGE_CRASH_TEST_UTIL_H_

#include <poll.h>
#include <unistd.h>

#include <chrono>
#include <string>

#include "fmt/core.h"
#include "gtest/gtest.h"
#include "txfn/storage.h"

namespace txfn::testing_util {

inline constexpr char kTenant[] = "crash";
inline constexpr int kSharedKeys = 5;

inline std::string Key(Timestamp n, char part) { return fmt::format("c{:08}/{}", n, part); }
inline std::string Val(Timestamp n, char part) { return fmt::format("v{}-{}", n, part); }
inline std::string SharedKey(Timestamp n) { return fmt::format("shared{}", n % kSharedKeys); }

// Commit n: three keys of its own, one of the shared keys, and the counter.
inline CommitRecord MakeCommit(Timestamp n) {
  CommitRecord c{.tenant = kTenant, .ts = n};
  for (char part : {'a', 'b', 'c'}) c.writes.push_back({1, Key(n, part), Val(n, part)});
  c.writes.push_back({2, SharedKey(n), std::to_string(n)});
  c.writes.push_back({3, "counter", std::to_string(n)});
  return c;
}

// Reads acknowledgements until `deadline` (or EOF); returns the newest.
inline Timestamp ReadAcks(int fd, std::chrono::steady_clock::time_point deadline, Timestamp last) {
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

// Commits n = max + 1, max + 2, ... to `s` forever, writing each n to `ack_fd` once its
// Write returned OK; exits the process (_exit, status 3..5) on the first error.
[[noreturn]] inline void CommitAndAckForever(Storage& s, int ack_fd) {
  auto max = s.MaxCommittedTimestamp(kTenant);
  if (!max.ok()) _exit(3);
  for (Timestamp n = *max + 1;; ++n) {
    CommitRecord commit = MakeCommit(n);
    if (!s.Write({&commit, 1}).ok()) _exit(4);
    if (write(ack_fd, &n, sizeof n) != sizeof n) _exit(5);
  }
}

// Everything `s` holds of kTenant is whole commits 1..max, and max >= last_acked.
inline void VerifyCommittedPrefix(Storage& s, Timestamp last_acked, Timestamp* max_out) {
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

}  // namespace txfn::testing_util

#endif  // TXFN_TESTS_STORAGE_CRASH_TEST_UTIL_H_

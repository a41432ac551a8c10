// A DurableQueue adapter under SIGKILL, for durable adapters' crash tests: a forked child
// enqueues batches, leases and acks in a loop, reporting each acknowledged Enqueue and each
// acknowledged ACK on a pipe; the parent kills it at random moments, opens the queue again and
// checks:
//   - every acknowledged enqueue is there (unless acknowledged as ACKed);
//   - a batch is there whole or not at all;
//   - calls the child had leased but not ACKed come back once their leases expire (the parent
//     leases them all after expiry);
//   - nothing ACKed comes back, and nothing is handed out twice.
//
//   queue_test::RunCrashRounds(20,
//       [&](int round) { return OpenMyQueue(round); },   // in the child, after fork
//       [&] { return OpenMyQueue(-1); });                // in the parent, to check
//
// The child's queue is opened after the fork (no connection or file handle is shared with
// the parent); the parent's check queue is destroyed before the next fork.
#ifndef TXFN_TESTS_QUEUE_QUEUE_CRASH_HARNESS_H_
#define TXFN_TESTS_QUEUE_QUEUE_CRASH_HARNESS_H_

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "fmt/core.h"
#include "gtest/gtest.h"
#include "txfn/durable_queue.h"

namespace txfn::queue_test {

namespace crash_internal {

constexpr int kBatch = 8;
inline const absl::Time kT0 = absl::FromUnixSeconds(1'700'000'000);

struct Msg {
  uint64_t kind;  // 'E': calls up to n enqueued; 'A': call n acked
  uint64_t n;
};

inline CallId IdOf(uint64_t n) { return CallId::FromKey("crash", std::to_string(n)); }

inline Call MakeCall(uint64_t n) {
  Call c;
  c.id = IdOf(n);
  c.tenant = "crash";
  c.function = n % 2 == 0 ? "even" : "odd";
  c.args = Value::Int64(static_cast<int64_t>(n));
  c.start_after = kT0;
  c.deadline = kT0 + absl::Hours(24);
  c.retry.max_attempts = 100;
  return c;
}

inline void Send(int fd, Msg m) {
  if (write(fd, &m, sizeof m) != sizeof m) _exit(5);
}

// The child: enqueue a batch, lease a few, ack a third of them, forever.
[[noreturn]] inline void ChildLoop(DurableQueue* q, uint64_t next, absl::Time now, int fd) {
  if (q == nullptr) _exit(2);
  for (;;) {
    std::vector<Call> batch;
    for (int i = 0; i < kBatch; ++i) batch.push_back(MakeCall(next + i));
    if (!q->Enqueue(batch).ok()) _exit(3);
    next += kBatch;
    Send(fd, {'E', next - 1});
    auto leased = q->Lease({.shard = static_cast<int>(next / kBatch) % q->shard_count(),
                            .now = now,
                            .max = 4,
                            .lease_duration = absl::Minutes(10)});
    if (!leased.ok()) _exit(4);
    std::vector<Settlement> acks;
    std::vector<uint64_t> ns;
    for (const LeasedCall& l : *leased) {
      const auto n = static_cast<uint64_t>(l.call.args.int64());
      if (n % 3 != 0) continue;  // left leased: it must come back after expiry
      acks.push_back(Settlement::Ack(l.token));
      ns.push_back(n);
    }
    auto r = q->Settle(acks, now);
    if (!r.ok()) _exit(6);
    for (size_t i = 0; i < ns.size(); ++i) {
      if ((*r)[i].ok()) Send(fd, {'A', ns[i]});
    }
  }
}

inline void ReadMsgs(int fd, std::chrono::steady_clock::time_point deadline, uint64_t* enqueued,
                     std::set<uint64_t>* acked) {
  while (true) {
    const auto now = std::chrono::steady_clock::now();
    int timeout_ms = 0;
    if (now < deadline) {
      timeout_ms = static_cast<int>(
          std::chrono::duration_cast<std::chrono::milliseconds>(deadline - now).count());
    }
    pollfd p{.fd = fd, .events = POLLIN, .revents = 0};
    if (poll(&p, 1, timeout_ms) <= 0) return;
    Msg m{};
    const ssize_t got = read(fd, &m, sizeof m);
    if (got == 0) return;
    ASSERT_EQ(got, static_cast<ssize_t>(sizeof m));
    if (m.kind == 'E') {
      *enqueued = std::max(*enqueued, m.n);
    } else {
      EXPECT_TRUE(acked->insert(m.n).second) << "call " << m.n << " acked twice";
    }
  }
}

}  // namespace crash_internal

// Runs `rounds` (1 .. 23: round r runs r hours after the calls' start, within their 24 h
// deadline) kill rounds. `open_child(round)` opens the queue in the child (nullptr: the
// child exits); `open_check()` opens it in the parent after each kill. The queue must hold at
// least one shard and start empty. The child runs 20..`max_delay_ms` ms before the kill.
inline void RunCrashRounds(int rounds,
                           const std::function<std::unique_ptr<DurableQueue>(int)>& open_child,
                           const std::function<std::unique_ptr<DurableQueue>()>& open_check,
                           int max_delay_ms = 150) {
  using namespace crash_internal;  // NOLINT(build/namespaces): the harness's own helpers
  ASSERT_TRUE(rounds >= 1 && rounds <= 23) << rounds << " rounds";
  std::mt19937 rng(::testing::UnitTest::GetInstance()->random_seed());
  std::uniform_int_distribution<int> delay_ms(20, max_delay_ms);
  uint64_t enqueued = 0;     // every call 1..enqueued was acknowledged as enqueued
  std::set<uint64_t> acked;  // calls acknowledged as ACKed (or gone with an unreported ACK)
  uint64_t next = 1;
  int rounds_with_work = 0;
  for (int round = 0; round < rounds; ++round) {
    const absl::Time child_now = kT0 + absl::Hours(round);
    int fds[2];
    ASSERT_EQ(pipe2(fds, O_CLOEXEC), 0);
    const pid_t child = fork();
    ASSERT_GE(child, 0);
    if (child == 0) {
      close(fds[0]);
      std::unique_ptr<DurableQueue> q = open_child(round);
      ChildLoop(q.get(), next, child_now, fds[1]);
    }
    close(fds[1]);
    const uint64_t before = enqueued;
    ReadMsgs(fds[0], std::chrono::steady_clock::now() + std::chrono::milliseconds(delay_ms(rng)),
             &enqueued, &acked);
    ASSERT_EQ(kill(child, SIGKILL), 0);
    int wstatus = 0;
    ASSERT_EQ(waitpid(child, &wstatus, 0), child);
    EXPECT_TRUE(WIFSIGNALED(wstatus) && WTERMSIG(wstatus) == SIGKILL)
        << "the child exited by itself, status " << wstatus;
    ReadMsgs(fds[0], std::chrono::steady_clock::now(), &enqueued, &acked);
    close(fds[0]);
    if (enqueued > before) ++rounds_with_work;

    // After the child's leases expired, everything not ACKed is leasable, exactly once.
    std::unique_ptr<DurableQueue> q = open_check();
    ASSERT_NE(q, nullptr);
    const absl::Time check = child_now + absl::Minutes(30);
    std::map<uint64_t, LeaseToken> present;
    for (int s = 0; s < q->shard_count(); ++s) {
      absl::StatusOr<std::vector<LeasedCall>> got;
      while (true) {
        got = q->Lease({.shard = s,
                        .now = check,
                        .max = DurableQueue::kMaxLeaseBatch,
                        .lease_duration = absl::Minutes(1)});
        ASSERT_TRUE(got.ok()) << got.status();
        if (got->empty()) break;
        for (const LeasedCall& l : *got) {
          const auto n = static_cast<uint64_t>(l.call.args.int64());
          Call want = MakeCall(n);
          want.attempt = l.call.attempt;
          ASSERT_EQ(l.call, want) << "call " << n << " came back changed";
          EXPECT_TRUE(present.emplace(n, l.token).second) << "call " << n << " handed out twice";
        }
      }
    }
    auto dead = q->ListDeadLetters(CallId(), 10);
    ASSERT_TRUE(dead.ok());
    EXPECT_TRUE(dead->empty()) << "nothing should be dead-lettered";

    // Acked calls never come back; every other acknowledged enqueue is here, except at most
    // the one ACK batch (4 calls) whose report the kill cut off.
    int unexplained = 0;
    for (uint64_t n = 1; n <= enqueued; ++n) {
      const bool is_acked = acked.count(n) > 0;
      const bool is_present = present.count(n) > 0;
      EXPECT_FALSE(is_acked && is_present) << "acked call " << n << " came back";
      if (!is_acked && !is_present) {
        ++unexplained;
        acked.insert(n);  // gone: an ACK whose report was lost
      }
    }
    EXPECT_LE(unexplained, 4) << "acknowledged enqueues were lost";
    // Batches past the last acknowledged one are whole or absent.
    std::map<uint64_t, int> beyond;
    uint64_t max_present = 0;
    for (const auto& [n, token] : present) {
      max_present = std::max(max_present, n);
      if (n > enqueued) ++beyond[(n - 1) / kBatch];
    }
    for (const auto& [b, count] : beyond) {
      EXPECT_EQ(count, kBatch) << "batch " << b << " is partly there";
    }
    // Put them back for the next child (NACK: due now).
    std::vector<Settlement> nacks;
    for (const auto& [n, token] : present) nacks.push_back(Settlement::Nack(token, check));
    auto r = q->Settle(nacks, check);
    ASSERT_TRUE(r.ok()) << r.status();
    for (const absl::Status& s : *r) ASSERT_TRUE(s.ok()) << s;
    next = std::max({next, enqueued + 1, max_present + 1});
    next = ((next - 1 + kBatch - 1) / kBatch) * kBatch + 1;  // a batch boundary
    enqueued = std::max(enqueued, next - 1);
  }
  EXPECT_GE(rounds_with_work, rounds / 2) << "too few rounds enqueued anything";
  fmt::print("{} rounds, {} calls enqueued, {} acked\n", rounds, enqueued, acked.size());
}

}  // namespace txfn::queue_test

#endif  // TXFN_TESTS_QUEUE_QUEUE_CRASH_HARNESS_H_

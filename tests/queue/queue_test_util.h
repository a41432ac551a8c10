// Helpers for the queue-side tests: a temporary directory and SqliteQueue
// factories for the conformance suite.
#ifndef TXFN_TESTS_QUEUE_QUEUE_TEST_UTIL_H_
#define TXFN_TESTS_QUEUE_QUEUE_TEST_UTIL_H_

#include <atomic>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "../temp_dir.h"
#include "gtest/gtest.h"
#include "txfn/clock.h"
#include "txfn/durable_queue.h"
#include "txfn/storage.h"

namespace txfn::queue_test {

// A wall clock that an operator or NTP steps: set anywhere, back included (VirtualClock
// never goes back).
class SteppedClock final : public Clock {
 public:
  explicit SteppedClock(absl::Time t) : nanos_(absl::ToUnixNanos(t)) {}
  absl::Time Now() const override { return absl::FromUnixNanos(nanos_.load()); }
  void Set(absl::Time t) { nanos_.store(absl::ToUnixNanos(t)); }

 private:
  std::atomic<int64_t> nanos_;
};

// Directories named txfn_queue_*.
class TempDir : public testing_util::TempDir {
 public:
  TempDir() : testing_util::TempDir("txfn_queue_") {}
};

// Forwards every DurableQueue method to `inner` (LevelDB's EnvWrapper idea):
// test wrappers override only what they change.
class ForwardingQueue : public DurableQueue {
 public:
  // Shared: two wrappers over one queue stand for two processes on one database.
  explicit ForwardingQueue(std::shared_ptr<DurableQueue> inner) : inner_(std::move(inner)) {}
  DurableQueue& inner() { return *inner_; }

  int shard_count() const override { return inner_->shard_count(); }
  int ShardOf(const CallId& id) const override { return inner_->ShardOf(id); }
  absl::StatusOr<size_t> Enqueue(absl::Span<const Call> calls) override {
    return inner_->Enqueue(calls);
  }
  absl::StatusOr<std::vector<LeasedCall>> Lease(const LeaseRequest& request) override {
    return inner_->Lease(request);
  }
  absl::StatusOr<std::vector<absl::Status>> Settle(absl::Span<const Settlement> settlements,
                                                   absl::Time now) override {
    return inner_->Settle(settlements, now);
  }
  absl::StatusOr<std::vector<absl::Status>> Extend(absl::Span<const LeaseToken> leases,
                                                   absl::Time now,
                                                   absl::Duration lease_duration) override {
    return inner_->Extend(leases, now, lease_duration);
  }
  absl::StatusOr<std::vector<DeadLetter>> ListDeadLetters(CallId after, size_t limit) override {
    return inner_->ListDeadLetters(after, limit);
  }
  absl::StatusOr<std::vector<absl::Status>> Redrive(absl::Span<const CallId> ids,
                                                    absl::Time now) override {
    return inner_->Redrive(ids, now);
  }
  absl::StatusOr<std::vector<FunctionDepth>> Depths(absl::Time now) override {
    return inner_->Depths(now);
  }
  absl::StatusOr<std::vector<TenantDepth>> TenantDepths(absl::Time now) override {
    return inner_->TenantDepths(now);
  }
  absl::StatusOr<std::vector<absl::Status>> RemovePending(absl::Span<const CallId> ids,
                                                          absl::Time now) override {
    return inner_->RemovePending(ids, now);
  }
  absl::StatusOr<std::vector<absl::Status>> RemoveDeadLetters(absl::Span<const CallId> ids,
                                                              absl::Time dead_before) override {
    return inner_->RemoveDeadLetters(ids, dead_before);
  }
  absl::StatusOr<std::optional<QueuedCall>> Find(const CallId& id, absl::Time now) override {
    return inner_->Find(id, now);
  }
  absl::StatusOr<std::vector<QueuedCall>> ListCalls(CallId after, size_t limit,
                                                    const ListFilter& filter,
                                                    absl::Time now) override {
    return inner_->ListCalls(after, limit, filter, now);
  }

 private:
  std::shared_ptr<DurableQueue> inner_;
};

// Answers every Extend with OK but never extends a lease: a call that runs
// longer than its lease is delivered again while it still runs.
class NoExtendQueue final : public ForwardingQueue {
 public:
  using ForwardingQueue::ForwardingQueue;
  absl::StatusOr<std::vector<absl::Status>> Extend(absl::Span<const LeaseToken> leases, absl::Time,
                                                   absl::Duration) override {
    return std::vector<absl::Status>(leases.size(), absl::OkStatus());
  }
};

// Counts Enqueue calls (and their batches), and fails chosen methods.
class CountingQueue final : public ForwardingQueue {
 public:
  using ForwardingQueue::ForwardingQueue;

  absl::StatusOr<size_t> Enqueue(absl::Span<const Call> calls) override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      batches_.emplace_back(calls.begin(), calls.end());
      if (fail_enqueue_) return absl::UnavailableError("injected Enqueue failure");
    }
    absl::StatusOr<size_t> added = ForwardingQueue::Enqueue(calls);
    std::lock_guard<std::mutex> lock(mu_);
    if (added.ok() && lose_enqueue_answer_) {
      return CommitOutcomeUnknownError("injected: Enqueue stored the batch, its answer was lost");
    }
    return added;
  }
  absl::StatusOr<std::vector<absl::Status>> Settle(absl::Span<const Settlement> settlements,
                                                   absl::Time now) override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (fail_settle_) return absl::UnavailableError("injected Settle failure");
    }
    return ForwardingQueue::Settle(settlements, now);
  }
  absl::StatusOr<std::vector<LeasedCall>> Lease(const LeaseRequest& request) override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      ++leases_;
      if (fail_lease_) return absl::UnavailableError("injected Lease failure");
    }
    return ForwardingQueue::Lease(request);
  }

  void FailEnqueue(bool fail) {
    std::lock_guard<std::mutex> lock(mu_);
    fail_enqueue_ = fail;
  }
  // Enqueue stores the batch, then fails as an unknown outcome.
  void LoseEnqueueAnswer(bool lose) {
    std::lock_guard<std::mutex> lock(mu_);
    lose_enqueue_answer_ = lose;
  }
  void FailSettle(bool fail) {
    std::lock_guard<std::mutex> lock(mu_);
    fail_settle_ = fail;
  }
  void FailLease(bool fail) {
    std::lock_guard<std::mutex> lock(mu_);
    fail_lease_ = fail;
  }
  std::vector<std::vector<Call>> batches() {
    std::lock_guard<std::mutex> lock(mu_);
    return batches_;
  }
  int leases() {
    std::lock_guard<std::mutex> lock(mu_);
    return leases_;
  }

 private:
  std::mutex mu_;
  std::vector<std::vector<Call>> batches_;
  bool fail_enqueue_ = false;
  bool lose_enqueue_answer_ = false;
  bool fail_settle_ = false;
  bool fail_lease_ = false;
  int leases_ = 0;
};

// Leases and acks every due call of every shard; returns them.
inline std::vector<Call> DrainAll(DurableQueue& q, absl::Time now) {
  std::vector<Call> out;
  for (int s = 0; s < q.shard_count(); ++s) {
    auto got = q.Lease({.shard = s, .now = now, .max = DurableQueue::kMaxLeaseBatch});
    EXPECT_TRUE(got.ok()) << got.status();
    if (!got.ok()) continue;
    for (LeasedCall& l : *got) {
      EXPECT_TRUE(q.Ack(l.token, now).ok());
      out.push_back(std::move(l.call));
    }
  }
  return out;
}

}  // namespace txfn::queue_test

#endif  // TXFN_TESTS_QUEUE_QUEUE_TEST_UTIL_H_

// txfn/in_memory_queue.h — the reference DurableQueue adapter, in memory.
//
// Passes the DurableQueue conformance suite except the reopen tests (it is
// not durable: everything is lost with the object). For tests, the simulator
// and hosts that accept losing queued calls on a crash.
//
//   txfn::InMemoryQueue queue({.shards = 4});
//   absl::StatusOr<size_t> added = queue.Enqueue(calls);
//   auto leased = queue.Lease({.shard = 2, .now = clock.Now(), .max = 100});
//
// Costs: per shard, calls live in a hash map by id plus ordered sets (due
// calls by (start, enqueue order) overall and per function; leases by
// expiry), so Enqueue, a leased call and a settlement each cost O(log n) in
// the shard's size. Depths and ListDeadLetters walk the calls: O(n), for
// monitoring.
//
// Memory: about 280 bytes a queued call with small arguments (a backlog of
// 10 million calls is under 3 GiB; BM_InMemoryQueueBytesPerCall). What the
// calls of a function share (tenant, function and client names, retry
// policy, criticality, quota class) is stored once per shard and counted;
// spilled-args keys, idempotency keys and failure reasons only by the calls
// that have them. Arguments are kept as given: large ones belong in a
// BlobStore (Call::args_blob).
//
// Leasing walks the due calls of each (tenant, function, ...) profile
// merged by the heads of those orders, so a lease that skips a tenant steps
// over the heads of its orders, never over its calls: a skipped backlog of
// any size costs other tenants' leases nothing (BM_LeaseSkippingABacklog).
//
// Thread safety: every method may be called concurrently; each shard has its
// own lock, so leases of different shards do not contend.
#ifndef TXFN_IN_MEMORY_QUEUE_H_
#define TXFN_IN_MEMORY_QUEUE_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <vector>

#include "txfn/durable_queue.h"

namespace txfn {

struct InMemoryQueueOptions {
  int shards = 1;  // 1 .. kMaxShards
};

class InMemoryQueue final : public DurableQueue {
 public:
  // `options.shards` below 1 is taken as 1, above kMaxShards as kMaxShards.
  explicit InMemoryQueue(InMemoryQueueOptions options = {});
  ~InMemoryQueue() override;
  InMemoryQueue(const InMemoryQueue&) = delete;
  InMemoryQueue& operator=(const InMemoryQueue&) = delete;

  int shard_count() const override { return static_cast<int>(shards_.size()); }
  int ShardOf(const CallId& id) const override { return DefaultShardOf(id, shard_count()); }

  absl::StatusOr<size_t> Enqueue(absl::Span<const Call> calls) override;
  absl::StatusOr<std::vector<LeasedCall>> Lease(const LeaseRequest& request) override;
  absl::StatusOr<std::vector<absl::Status>> Settle(absl::Span<const Settlement> settlements,
                                                   absl::Time now) override;
  absl::StatusOr<std::vector<absl::Status>> Extend(absl::Span<const LeaseToken> leases,
                                                   absl::Time now,
                                                   absl::Duration lease_duration) override;
  absl::StatusOr<std::vector<DeadLetter>> ListDeadLetters(CallId after, size_t limit) override;
  absl::StatusOr<std::vector<absl::Status>> Redrive(absl::Span<const CallId> ids,
                                                    absl::Time now) override;
  absl::StatusOr<std::vector<FunctionDepth>> Depths(absl::Time now) override;
  absl::StatusOr<std::vector<TenantDepth>> TenantDepths(absl::Time now) override;
  absl::StatusOr<std::vector<absl::Status>> RemovePending(absl::Span<const CallId> ids,
                                                          absl::Time now) override;
  absl::StatusOr<std::vector<absl::Status>> RemoveDeadLetters(absl::Span<const CallId> ids,
                                                              absl::Time dead_before) override;
  absl::StatusOr<std::optional<QueuedCall>> Find(const CallId& id, absl::Time now) override;
  absl::StatusOr<std::vector<QueuedCall>> ListCalls(CallId after, size_t limit,
                                                    const ListFilter& filter,
                                                    absl::Time now) override;

  // Calls held (pending, leased or dead-lettered) across all shards.
  [[nodiscard]] size_t size() const;

 private:
  struct Shard;
  Shard& ShardFor(const CallId& id) { return *shards_[ShardOf(id)]; }

  std::vector<std::unique_ptr<Shard>> shards_;
  std::atomic<uint64_t> next_token_{1};
  std::atomic<uint64_t> next_seq_{1};
};

}  // namespace txfn

#endif  // TXFN_IN_MEMORY_QUEUE_H_

// txfn/sharded_queue.h — one DurableQueue over N others, spread by call id.
//
// ShardedQueue sends each call to one of its children by a stable hash of the
// high half of its UUID (XFaaS shards DurableQ by UUID), and numbers the
// children's shards one after the other: with children of 2 and 3 shards it
// has shards 0-1 (child 0) and 2-4 (child 1). A scheduler leases shard by
// shard as from any queue.
//
//   auto a = std::make_shared<txfn::InMemoryQueue>();
//   auto b = *txfn::SqliteQueue::Open("b.db");
//   auto queue = txfn::ShardedQueue::Create({a, std::move(b)});
//
// Atomicity: Enqueue checks the whole batch before writing anything (bad
// input stores nothing), then enqueues each child's part. If a child fails
// with an I/O error after another child stored its part, the error is
// returned and the stored part stays: retry the same batch — Enqueue skips
// ids already present, so the retry is exact. Settle, Extend and Redrive are
// atomic per child. (The Submitter batches per shard, so its batches go to
// one child and stay atomic.)
//
// Thread safety: as the children's (every method may be called concurrently).
#ifndef TXFN_SHARDED_QUEUE_H_
#define TXFN_SHARDED_QUEUE_H_

#include <memory>
#include <vector>

#include "txfn/durable_queue.h"

namespace txfn {

class ShardedQueue final : public DurableQueue {
 public:
  // InvalidArgument for no children or a null child.
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<ShardedQueue>> Create(
      std::vector<std::shared_ptr<DurableQueue>> children);

  // Which child holds call `id` (a pure function of the id and the number of
  // children).
  [[nodiscard]] int ChildOf(const CallId& id) const;
  [[nodiscard]] DurableQueue& child(int i) { return *children_[i]; }
  [[nodiscard]] int child_count() const { return static_cast<int>(children_.size()); }

  int shard_count() const override { return shard_count_; }
  int ShardOf(const CallId& id) const override;

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

 private:
  explicit ShardedQueue(std::vector<std::shared_ptr<DurableQueue>> children);

  std::vector<std::shared_ptr<DurableQueue>> children_;
  std::vector<int> first_shard_;  // of each child
  int shard_count_ = 0;
};

}  // namespace txfn

#endif  // TXFN_SHARDED_QUEUE_H_

// ShardedQueue; see txfn/sharded_queue.h.
#include "txfn/sharded_queue.h"

#include <algorithm>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "txfn/internal/strings.h"
#include "txfn/rendezvous_router.h"
#include "txfn/status_macros.h"

namespace txfn {

absl::StatusOr<std::unique_ptr<ShardedQueue>> ShardedQueue::Create(
    std::vector<std::shared_ptr<DurableQueue>> children) {
  if (children.empty()) return absl::InvalidArgumentError("ShardedQueue: no children");
  for (size_t i = 0; i < children.size(); ++i) {
    if (children[i] == nullptr) {
      return absl::InvalidArgumentError(internal::StrCat("ShardedQueue: child ", i, " is null"));
    }
  }
  return std::unique_ptr<ShardedQueue>(new ShardedQueue(std::move(children)));
}

ShardedQueue::ShardedQueue(std::vector<std::shared_ptr<DurableQueue>> children)
    : children_(std::move(children)) {
  for (const auto& c : children_) {
    first_shard_.push_back(shard_count_);
    shard_count_ += c->shard_count();
  }
}

int ShardedQueue::ChildOf(const CallId& id) const {
  // The high half: independent of the children's own DefaultShardOf (low half).
  const uint64_t h = RendezvousHash::Mix64(id.hi());
  return static_cast<int>((static_cast<unsigned __int128>(h) * children_.size()) >> 64);
}

int ShardedQueue::ShardOf(const CallId& id) const {
  const int c = ChildOf(id);
  return first_shard_[c] + children_[c]->ShardOf(id);
}

absl::StatusOr<size_t> ShardedQueue::Enqueue(absl::Span<const Call> calls) {
  TXFN_RETURN_IF_ERROR(ValidateEnqueueBatch(calls));
  std::vector<std::vector<Call>> parts(children_.size());
  for (const Call& c : calls) parts[ChildOf(c.id)].push_back(c);
  size_t added = 0;
  for (size_t i = 0; i < parts.size(); ++i) {
    if (parts[i].empty()) continue;
    TXFN_ASSIGN_OR_RETURN(size_t n, children_[i]->Enqueue(parts[i]));
    added += n;
  }
  return added;
}

absl::StatusOr<std::optional<QueuedCall>> ShardedQueue::Find(const CallId& id, absl::Time now) {
  return children_[ChildOf(id)]->Find(id, now);
}

absl::StatusOr<std::vector<QueuedCall>> ShardedQueue::ListCalls(CallId after, size_t limit,
                                                                const ListFilter& filter,
                                                                absl::Time now) {
  TXFN_RETURN_IF_ERROR(ValidateListLimit(limit));
  std::vector<QueuedCall> out;
  for (const auto& child : children_) {
    TXFN_ASSIGN_OR_RETURN(std::vector<QueuedCall> part,
                          child->ListCalls(after, limit, filter, now));
    for (QueuedCall& q : part) out.push_back(std::move(q));
  }
  std::sort(out.begin(), out.end(),
            [](const QueuedCall& a, const QueuedCall& b) { return a.call.id < b.call.id; });
  if (out.size() > limit) out.resize(limit);
  return out;
}

absl::StatusOr<std::vector<LeasedCall>> ShardedQueue::Lease(const LeaseRequest& request) {
  TXFN_RETURN_IF_ERROR(ValidateLeaseRequest(request, shard_count_));
  const int c =
      static_cast<int>(std::upper_bound(first_shard_.begin(), first_shard_.end(), request.shard) -
                       first_shard_.begin() - 1);
  LeaseRequest local = request;
  local.shard = request.shard - first_shard_[c];
  TXFN_ASSIGN_OR_RETURN(std::vector<LeasedCall> out, children_[c]->Lease(local));
  for (LeasedCall& l : out) l.shard = request.shard;
  return out;
}

namespace {

// Runs `op` on each child's part of `items` (by `child_of`), and puts the
// per-item results back in the original order.
template <typename Item, typename ChildOf, typename Op>
absl::StatusOr<std::vector<absl::Status>> PerChild(absl::Span<const Item> items, size_t children,
                                                   ChildOf child_of, Op op) {
  std::vector<std::vector<Item>> parts(children);
  std::vector<std::vector<size_t>> where(children);
  for (size_t i = 0; i < items.size(); ++i) {
    const int c = child_of(items[i]);
    parts[c].push_back(items[i]);
    where[c].push_back(i);
  }
  std::vector<absl::Status> out(items.size());
  for (size_t c = 0; c < children; ++c) {
    if (parts[c].empty()) continue;
    TXFN_ASSIGN_OR_RETURN(std::vector<absl::Status> r, op(c, parts[c]));
    if (r.size() != parts[c].size()) {
      return absl::InternalError("ShardedQueue: a child returned the wrong number of results");
    }
    for (size_t j = 0; j < r.size(); ++j) out[where[c][j]] = std::move(r[j]);
  }
  return out;
}

}  // namespace

absl::StatusOr<std::vector<absl::Status>> ShardedQueue::Settle(
    absl::Span<const Settlement> settlements, absl::Time now) {
  TXFN_RETURN_IF_ERROR(ValidateSettlements(settlements));
  return PerChild(
      settlements, children_.size(), [&](const Settlement& s) { return ChildOf(s.lease.id); },
      [&](size_t c, const std::vector<Settlement>& part) {
        return children_[c]->Settle(part, now);
      });
}

absl::StatusOr<std::vector<absl::Status>> ShardedQueue::Extend(absl::Span<const LeaseToken> leases,
                                                               absl::Time now,
                                                               absl::Duration lease_duration) {
  TXFN_RETURN_IF_ERROR(ValidateLeaseDuration(lease_duration));
  return PerChild(
      leases, children_.size(), [&](const LeaseToken& t) { return ChildOf(t.id); },
      [&](size_t c, const std::vector<LeaseToken>& part) {
        return children_[c]->Extend(part, now, lease_duration);
      });
}

absl::StatusOr<std::vector<DeadLetter>> ShardedQueue::ListDeadLetters(CallId after, size_t limit) {
  TXFN_RETURN_IF_ERROR(ValidateListLimit(limit));
  std::vector<DeadLetter> out;
  for (size_t c = 0; c < children_.size(); ++c) {
    TXFN_ASSIGN_OR_RETURN(std::vector<DeadLetter> part,
                          children_[c]->ListDeadLetters(after, limit));
    for (DeadLetter& d : part) {
      d.shard += first_shard_[c];
      out.push_back(std::move(d));
    }
  }
  std::sort(out.begin(), out.end(),
            [](const DeadLetter& a, const DeadLetter& b) { return a.call.id < b.call.id; });
  if (out.size() > limit) out.resize(limit);
  return out;
}

absl::StatusOr<std::vector<absl::Status>> ShardedQueue::Redrive(absl::Span<const CallId> ids,
                                                                absl::Time now) {
  return PerChild(
      ids, children_.size(), [&](const CallId& id) { return ChildOf(id); },
      [&](size_t c, const std::vector<CallId>& part) { return children_[c]->Redrive(part, now); });
}

absl::StatusOr<std::vector<absl::Status>> ShardedQueue::RemovePending(absl::Span<const CallId> ids,
                                                                      absl::Time now) {
  TXFN_RETURN_IF_ERROR(ValidateRemovePending(ids));
  return PerChild(
      ids, children_.size(), [&](const CallId& id) { return ChildOf(id); },
      [&](size_t c, const std::vector<CallId>& part) {
        return children_[c]->RemovePending(part, now);
      });
}

absl::StatusOr<std::vector<absl::Status>> ShardedQueue::RemoveDeadLetters(
    absl::Span<const CallId> ids, absl::Time dead_before) {
  TXFN_RETURN_IF_ERROR(ValidateRemovePending(ids));
  return PerChild(
      ids, children_.size(), [&](const CallId& id) { return ChildOf(id); },
      [&](size_t c, const std::vector<CallId>& part) {
        return children_[c]->RemoveDeadLetters(part, dead_before);
      });
}

absl::StatusOr<std::vector<TenantDepth>> ShardedQueue::TenantDepths(absl::Time now) {
  std::map<std::string, TenantDepth> depths;
  for (const auto& child : children_) {
    TXFN_ASSIGN_OR_RETURN(std::vector<TenantDepth> part, child->TenantDepths(now));
    for (const TenantDepth& d : part) {
      TenantDepth& sum = depths[d.tenant];
      sum.calls += d.calls;
      sum.bytes += d.bytes;
    }
  }
  return SortedTenantDepths(depths);
}

absl::StatusOr<std::vector<FunctionDepth>> ShardedQueue::Depths(absl::Time now) {
  std::map<std::string, FunctionDepth> merged;
  for (const auto& child : children_) {
    TXFN_ASSIGN_OR_RETURN(std::vector<FunctionDepth> part, child->Depths(now));
    for (FunctionDepth& d : part) {
      FunctionDepth& m = merged[d.function];
      m.function = d.function;
      m.pending += d.pending;
      m.due += d.due;
      m.leased += d.leased;
      m.oldest_due = std::min(m.oldest_due, d.oldest_due);
    }
  }
  std::vector<FunctionDepth> out;
  out.reserve(merged.size());
  for (auto& [name, d] : merged) {
    if (d.due > 0) d.oldest_due_age = now - d.oldest_due;
    out.push_back(std::move(d));
  }
  return out;
}

}  // namespace txfn

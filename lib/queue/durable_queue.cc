// The adapter-independent parts of DurableQueue; see txfn/durable_queue.h.
#include "txfn/durable_queue.h"

#include <cmath>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "txfn/internal/strings.h"
#include "txfn/rendezvous_router.h"
#include "txfn/status_macros.h"

namespace txfn {
namespace {

using internal::StrCat;

absl::Status FoldOne(absl::StatusOr<std::vector<absl::Status>> results) {
  if (!results.ok()) return results.status();
  if (results->size() != 1) {
    return absl::InternalError(
        StrCat("a DurableQueue returned ", results->size(), " results for one settlement"));
  }
  return (*results)[0];
}

}  // namespace

absl::StatusOr<std::optional<QueuedCall>> DurableQueue::Find(const CallId& id, absl::Time) {
  return absl::UnimplementedError(
      internal::StrCat("this queue adapter cannot look up call ", id.ToString()));
}

absl::StatusOr<std::vector<absl::Status>> DurableQueue::RemovePending(absl::Span<const CallId>,
                                                                      absl::Time) {
  return absl::UnimplementedError("this queue adapter cannot remove pending calls");
}

std::string NotADeadLetterBefore(const CallId& id, absl::Time dead_before) {
  return dead_before == absl::InfiniteFuture()
             ? StrCat("call ", id.ToString(), " is not a dead letter")
             : StrCat("call ", id.ToString(), " is not a dead letter from before ",
                      absl::FormatTime(dead_before, absl::UTCTimeZone()));
}

absl::StatusOr<std::vector<absl::Status>> DurableQueue::RemoveDeadLetters(absl::Span<const CallId>,
                                                                          absl::Time) {
  return absl::UnimplementedError("this queue adapter cannot remove dead letters");
}

absl::StatusOr<std::vector<QueuedCall>> DurableQueue::ListCalls(CallId, size_t, const ListFilter&,
                                                                absl::Time) {
  return absl::UnimplementedError("this queue adapter cannot list its calls");
}

absl::StatusOr<std::vector<TenantDepth>> DurableQueue::TenantDepths(absl::Time now) {
  std::map<std::string, TenantDepth> depths;
  CallId after;
  while (true) {
    TXFN_ASSIGN_OR_RETURN(std::vector<QueuedCall> page,
                          ListCalls(after, kMaxLeaseBatch, ListFilter{}, now));
    for (const QueuedCall& q : page) {
      if (q.state == QueuedCall::State::kDead) continue;
      TenantDepth& d = depths[q.call.tenant];
      ++d.calls;
      d.bytes += EncodeCall(q.call).size();
    }
    if (page.empty()) break;  // ListCalls may answer fewer than asked before the end
    after = page.back().call.id;
  }
  return SortedTenantDepths(depths);
}

std::vector<TenantDepth> SortedTenantDepths(const std::map<std::string, TenantDepth>& depths) {
  std::vector<TenantDepth> out;
  out.reserve(depths.size());
  for (const auto& [tenant, d] : depths) {
    out.push_back({.tenant = tenant, .calls = d.calls, .bytes = d.bytes});
  }
  return out;
}

std::vector<TenantDepth> SortedTenantDepths(const std::map<std::string, size_t>& calls) {
  std::vector<TenantDepth> out;
  out.reserve(calls.size());
  for (const auto& [tenant, n] : calls) out.push_back({.tenant = tenant, .calls = n});
  return out;
}

std::string ListBeforeBytes(const DurableQueue::ListFilter& filter) {
  return filter.before.has_value() ? filter.before->Bytes() : std::string(17, '\xff');
}

bool MatchesListFilter(const QueuedCall& call, const DurableQueue::ListFilter& filter) {
  return (filter.tenant.empty() || call.call.tenant == filter.tenant) &&
         (filter.function.empty() || call.call.function == filter.function) &&
         (!filter.state.has_value() || call.state == *filter.state) &&
         (!filter.before.has_value() || call.call.id < *filter.before);
}

absl::Status DurableQueue::Ack(const LeaseToken& lease, absl::Time now) {
  Settlement s = Settlement::Ack(lease);
  return FoldOne(Settle({&s, 1}, now));
}

absl::Status DurableQueue::Nack(const LeaseToken& lease, absl::Time now, absl::Time retry_at,
                                std::string reason) {
  Settlement s = Settlement::Nack(lease, retry_at, std::move(reason));
  return FoldOne(Settle({&s, 1}, now));
}

absl::Status DurableQueue::DeadLetterCall(const LeaseToken& lease, absl::Time now,
                                          std::string reason) {
  Settlement s = Settlement::DeadLetter(lease, std::move(reason));
  return FoldOne(Settle({&s, 1}, now));
}

void RedriveWindow(absl::Time now, absl::Time& start_after, absl::Time& deadline) {
  const absl::Duration window = deadline - start_after;
  if (now + window <= deadline) return;
  start_after = now;
  deadline = now + window;
}

int DefaultShardOf(const CallId& id, int shard_count) {
  if (shard_count <= 1) return 0;
  // The low half holds 62 random bits (random ids) or hash bits (derived
  // ids); mixing makes the shard independent of ShardedQueue's choice, which
  // uses the high half.
  const uint64_t h = RendezvousHash::Mix64(id.lo() ^ 0x5bd1e9955bd1e995ULL);
  return static_cast<int>(
      (static_cast<unsigned __int128>(h) * static_cast<uint64_t>(shard_count)) >> 64);
}

absl::Status ValidateEnqueueBatch(absl::Span<const Call> calls) {
  if (calls.size() > DurableQueue::kMaxEnqueueBatch) {
    return absl::InvalidArgumentError(StrCat("Enqueue: a batch of ", calls.size(),
                                             " calls is over the limit of ",
                                             DurableQueue::kMaxEnqueueBatch));
  }
  absl::flat_hash_set<CallId> ids;
  ids.reserve(calls.size());
  for (const Call& call : calls) {
    if (absl::Status s = ValidateCall(call); !s.ok()) {
      return absl::InvalidArgumentError(StrCat("Enqueue: ", s.message()));
    }
    if (!ids.insert(call.id).second) {
      return absl::InvalidArgumentError(
          StrCat("Enqueue: call ", call.id.ToString(), " appears twice in the batch"));
    }
  }
  return absl::OkStatus();
}

absl::Status ValidateLeaseDuration(absl::Duration d) {
  if (d <= absl::ZeroDuration() || d > absl::Hours(24)) {
    return absl::InvalidArgumentError(
        StrCat("lease_duration is ", absl::FormatDuration(d), "; it must be > 0 and <= 24h"));
  }
  return absl::OkStatus();
}

absl::Status ValidateListLimit(size_t limit) {
  if (limit == 0 || limit > DurableQueue::kMaxLeaseBatch) {
    return absl::InvalidArgumentError(
        StrCat("limit is ", limit, "; it must be between 1 and ", DurableQueue::kMaxLeaseBatch));
  }
  return absl::OkStatus();
}

absl::Status ValidateRemovePending(absl::Span<const CallId> ids) {
  if (ids.size() > DurableQueue::kMaxLeaseBatch) {
    return absl::InvalidArgumentError(StrCat("RemovePending: ", ids.size(),
                                             " ids are over the limit of ",
                                             DurableQueue::kMaxLeaseBatch));
  }
  absl::flat_hash_set<CallId> seen;
  seen.reserve(ids.size());
  for (const CallId& id : ids) {
    if (!seen.insert(id).second) {
      return absl::InvalidArgumentError(
          StrCat("RemovePending: call ", id.ToString(), " appears twice"));
    }
  }
  return absl::OkStatus();
}

absl::Status ValidateLeaseRequest(const LeaseRequest& request, int shard_count) {
  if (request.shard < 0 || request.shard >= shard_count) {
    return absl::InvalidArgumentError(StrCat("Lease: shard ", request.shard,
                                             " is out of range (the queue has ", shard_count,
                                             " shards)"));
  }
  if (request.max == 0 || request.max > DurableQueue::kMaxLeaseBatch) {
    return absl::InvalidArgumentError(StrCat("Lease: max is ", request.max,
                                             "; it must be between 1 and ",
                                             DurableQueue::kMaxLeaseBatch));
  }
  if (request.now == absl::InfinitePast() || request.now == absl::InfiniteFuture()) {
    return absl::InvalidArgumentError("Lease: now is not a finite time");
  }
  if (absl::Status s = ValidateLeaseDuration(request.lease_duration); !s.ok()) {
    return absl::InvalidArgumentError(StrCat("Lease: ", s.message()));
  }
  if (request.functions.size() > 1000) {
    return absl::InvalidArgumentError(
        StrCat("Lease: ", request.functions.size(), " functions; a filter names at most 1000"));
  }
  for (const std::string& f : request.functions) {
    if (absl::Status s = ValidateFunctionName(f); !s.ok()) {
      return absl::InvalidArgumentError(StrCat("Lease: ", s.message()));
    }
  }
  if (request.skip_tenants.size() > DurableQueue::kMaxSkippedTenants) {
    return absl::InvalidArgumentError(StrCat("Lease: ", request.skip_tenants.size(),
                                             " tenants to skip; a lease skips at most ",
                                             DurableQueue::kMaxSkippedTenants));
  }
  for (const std::string& t : request.skip_tenants) {
    if (absl::Status s = ValidateTenantName(t); !s.ok()) {
      return absl::InvalidArgumentError(StrCat("Lease: skip_tenants: ", s.message()));
    }
  }
  if (request.quota.has_value() && *request.quota != QuotaClass::kReserved &&
      *request.quota != QuotaClass::kOpportunistic) {
    return absl::InvalidArgumentError(
        StrCat("Lease: unknown quota class ", static_cast<int>(*request.quota)));
  }
  return absl::OkStatus();
}

absl::Status ValidateSettlements(absl::Span<const Settlement> settlements) {
  absl::flat_hash_set<std::pair<CallId, uint64_t>> leases;
  leases.reserve(settlements.size());
  for (const Settlement& s : settlements) {
    if (!leases.insert({s.lease.id, s.lease.token}).second) {
      return absl::InvalidArgumentError(StrCat("Settle: the lease token ", s.lease.token,
                                               " of call ", s.lease.id.ToString(),
                                               " appears twice in the batch"));
    }
    const auto kind = static_cast<int>(s.kind);
    if (kind < 0 || kind > static_cast<int>(Settlement::Kind::kRelease)) {
      return absl::InvalidArgumentError(StrCat("Settle: unknown settlement kind ", kind));
    }
    if ((s.kind == Settlement::Kind::kNack || s.kind == Settlement::Kind::kRelease) &&
        (s.retry_at == absl::InfinitePast() || s.retry_at == absl::InfiniteFuture())) {
      return absl::InvalidArgumentError(
          StrCat("Settle: the NACK of call ", s.lease.id.ToString(), " has no finite retry_at"));
    }
  }
  return absl::OkStatus();
}

std::string DeadlineReason(absl::Time deadline, absl::Time now) {
  return StrCat("deadline passed: it was ", absl::FormatTime(deadline, absl::UTCTimeZone()), ", ",
                absl::FormatDuration(now - deadline), " before it could be delivered");
}

std::string AttemptsReason(int attempts, std::string_view last_reason) {
  std::string out = StrCat("attempts exhausted after ", attempts, " deliveries");
  if (!last_reason.empty()) out += StrCat(": ", last_reason);
  return out;
}

std::string StaleLeaseMessage(const LeaseToken& t, QueuedCall::State state, uint64_t token,
                              absl::Time expires) {
  std::string why;
  if (state == QueuedCall::State::kDead) {
    why = "the call was dead-lettered";
  } else if (state == QueuedCall::State::kPending) {
    why = "the call is not leased (its lease ended)";
  } else if (token != t.token) {
    why = StrCat("the call is now leased under token ", token);
  } else {
    why = StrCat("the lease expired at ", absl::FormatTime(expires, absl::UTCTimeZone()));
  }
  return StrCat("lease token ", t.token, " of call ", t.id.ToString(), " is stale: ", why);
}

std::string NotPendingMessage(const CallId& id, QueuedCall::State state) {
  return StrCat("call ", id.ToString(), " is not pending: ",
                state == QueuedCall::State::kDead ? "it was dead-lettered"
                                                  : "it is leased (its holder settles it)");
}

}  // namespace txfn

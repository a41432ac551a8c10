// InMemoryQueue; see txfn/in_memory_queue.h.
#include "txfn/in_memory_queue.h"

#include <algorithm>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/algorithm/container.h"
#include "absl/container/btree_set.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/container/node_hash_map.h"
#include "txfn/internal/mutex.h"
#include "txfn/internal/strings.h"
#include "txfn/status_macros.h"

namespace txfn {
namespace {

using internal::StrCat;

enum class State : uint8_t { kPending, kLeased, kDead };

// What the calls of a function usually share: names, retry policy,
// criticality and quota class. A queue may hold tens of millions of calls of
// a few thousand functions, so a shard keeps one counted copy of each profile
// and a call points to it.
struct Profile {
  std::string tenant;
  std::string function;
  std::string client;
  RetryPolicy retry;
  Criticality criticality = Criticality::kNormal;
  QuotaClass quota = QuotaClass::kReserved;

  friend bool operator==(const Profile&, const Profile&) = default;
  // Consistent with ==: a valid multiplier is finite and >= 1 (no NaN, no -0).
  template <typename H>
  friend H AbslHashValue(H h, const Profile& p) {
    return H::combine(std::move(h), p.tenant, p.function, p.client, p.retry.max_attempts,
                      p.retry.initial_backoff, p.retry.max_backoff, p.retry.multiplier,
                      p.criticality, p.quota);
  }
};

class ProfilePool {
 public:
  const Profile* Acquire(const Call& c) {
    Profile key{.tenant = c.tenant,
                .function = c.function,
                .client = c.client,
                .retry = c.retry,
                .criticality = c.criticality,
                .quota = c.quota};
    auto [it, inserted] = refs_.try_emplace(std::move(key), 0);
    ++it->second;
    return &it->first;
  }
  void Release(const Profile* profile) {
    auto it = refs_.find(*profile);
    if (--it->second == 0) refs_.erase(it);
  }

 private:
  absl::node_hash_map<Profile, uint64_t> refs_;  // a node's key never moves
};

struct Entry;

// A position in a due order: by time, then enqueue order.
struct DueKey {
  absl::Time due;
  uint64_t seq;
  Entry* entry;
  friend bool operator<(const DueKey& a, const DueKey& b) {
    if (a.due != b.due) return a.due < b.due;
    return a.seq < b.seq;
  }
};

using Order = absl::btree_set<DueKey>;

struct LeaseKey {
  absl::Time expires;
  uint64_t token;
  Entry* entry;
  friend bool operator<(const LeaseKey& a, const LeaseKey& b) {
    if (a.expires != b.expires) return a.expires < b.expires;
    return a.token < b.token;
  }
};

// What few calls carry, kept apart so the many do not pay for it.
struct RareFields {
  std::string args_blob;
  std::string idempotency_key;
  std::string reason;  // dead: why; otherwise the last NACK's reason
};

// A queued call, stored compactly: a queue may hold tens of millions (an
// XFaaS-style backlog of time-shifted calls), so what its function's calls
// share is pooled, its rare fields are apart, and one time serves each state.
struct Entry {
  CallId id;
  const Profile* profile;
  Value args;
  absl::Time start_after;
  absl::Time deadline;
  int attempt = 0;  // deliveries so far
  State state = State::kPending;
  uint64_t seq = 0;
  uint64_t token = 0;  // the current (or last) lease's
  // Pending: when due (an expired lease's call: from the expiry). Leased:
  // when the lease expires. Dead: when it was dead-lettered.
  absl::Time at;
  std::unique_ptr<RareFields> rare;

  DueKey due_key() { return {at, seq, this}; }
  LeaseKey lease_key() { return {at, token, this}; }
  std::string_view reason() const { return rare ? std::string_view(rare->reason) : ""; }
  void set_reason(std::string reason) {
    if (reason.empty() && !rare) return;
    if (!rare) rare = std::make_unique<RareFields>();
    rare->reason = std::move(reason);
  }
  Call ToCall() const {
    Call c;
    c.id = id;
    c.tenant = profile->tenant;
    c.function = profile->function;
    c.args = args;
    c.criticality = profile->criticality;
    c.start_after = start_after;
    c.deadline = deadline;
    c.quota = profile->quota;
    c.attempt = attempt;
    c.retry = profile->retry;
    c.client = profile->client;
    if (rare) {
      c.args_blob = rare->args_blob;
      c.idempotency_key = rare->idempotency_key;
    }
    return c;
  }
};

std::string Stale(const LeaseToken& t, const Entry& e, absl::Time now) {
  std::string why;
  if (e.state == State::kDead) {
    why = "the call was dead-lettered";
  } else if (e.state == State::kPending) {
    why = "the call is not leased (its lease ended)";
  } else if (e.token != t.token) {
    why = StrCat("the call is now leased under token ", e.token);
  } else {
    why = StrCat("the lease expired at ", absl::FormatTime(e.at, absl::UTCTimeZone()));
  }
  return StrCat("lease token ", t.token, " of call ", t.id.ToString(), " is stale: ", why);
}

// The entries of a shard, found by call id: a set of the entries themselves
// (8 bytes a slot) rather than a map from a copy of the id.
struct EntryById {
  using is_transparent = void;
  size_t operator()(const CallId& id) const { return absl::Hash<CallId>()(id); }
  size_t operator()(const std::unique_ptr<Entry>& e) const { return (*this)(e->id); }
  bool operator()(const std::unique_ptr<Entry>& a, const std::unique_ptr<Entry>& b) const {
    return a->id == b->id;
  }
  bool operator()(const std::unique_ptr<Entry>& a, const CallId& b) const { return a->id == b; }
  bool operator()(const CallId& a, const std::unique_ptr<Entry>& b) const { return a == b->id; }
};

}  // namespace

struct InMemoryQueue::Shard {
  internal::Mutex mu;
  // Entries live apart from the set so the orders can point to them.
  absl::flat_hash_set<std::unique_ptr<Entry>, EntryById, EntryById> entries ABSL_GUARDED_BY(mu);
  ProfilePool profiles ABSL_GUARDED_BY(mu);
  // The due calls of each profile (so of one tenant and one function), by
  // quota class, in due order; and the heads of those orders: the first of
  // `heads[q]` is quota class q's next due call, the first of
  // `function_heads[q][f]` function f's. An unfiltered or function-filtered
  // lease starts from them without a second order of every pending call (a
  // backlog of tens of millions saves a key each), and a lease that skips a
  // tenant steps over its orders' heads, never over its calls.
  absl::flat_hash_map<const Profile*, Order> due_by_profile[2] ABSL_GUARDED_BY(mu);
  Order heads[2] ABSL_GUARDED_BY(mu);
  absl::flat_hash_map<std::string, Order> function_heads[2] ABSL_GUARDED_BY(mu);
  absl::btree_set<LeaseKey> leases ABSL_GUARDED_BY(mu);
  absl::btree_set<CallId> dead ABSL_GUARDED_BY(mu);

  Entry* Find(const CallId& id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    auto it = entries.find(id);
    return it == entries.end() ? nullptr : it->get();
  }

  // Stores a copy of `c` (not yet delivered), due at its start; false if its
  // id is already queued.
  bool Add(const Call& c, uint64_t seq) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    if (entries.contains(c.id)) return false;
    auto owned = std::make_unique<Entry>();
    Entry& e = *owned;
    e.id = c.id;
    e.profile = profiles.Acquire(c);
    e.args = c.args;
    e.start_after = c.start_after;
    e.deadline = c.deadline;
    e.seq = seq;
    e.at = c.start_after;
    if (!c.args_blob.empty() || !c.idempotency_key.empty()) {
      e.rare = std::make_unique<RareFields>();
      e.rare->args_blob = c.args_blob;
      e.rare->idempotency_key = c.idempotency_key;
    }
    entries.insert(std::move(owned));
    AddDue(e);
    return true;
  }
  // Forgets a leased call (acknowledged) or a pending one (removed).
  void Remove(Entry& e) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    if (e.state == State::kPending) RemoveDue(e);
    if (e.state == State::kLeased) leases.erase(e.lease_key());
    if (e.state == State::kDead) dead.erase(e.id);
    profiles.Release(e.profile);
    const CallId id = e.id;
    entries.erase(id);  // destroys e
  }
  void AddDue(Entry& e) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    const int q = static_cast<int>(e.profile->quota);
    Order& order = due_by_profile[q][e.profile];
    const DueKey key = e.due_key();
    if (order.empty() || key < *order.begin()) {
      Order& function_order = function_heads[q][e.profile->function];
      if (!order.empty()) {
        heads[q].erase(*order.begin());
        function_order.erase(*order.begin());
      }
      heads[q].insert(key);
      function_order.insert(key);
    }
    order.insert(key);
  }
  void RemoveDue(Entry& e) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    const int q = static_cast<int>(e.profile->quota);
    auto it = due_by_profile[q].find(e.profile);
    if (it == due_by_profile[q].end()) return;
    Order& order = it->second;
    const DueKey key = e.due_key();
    const bool was_head = !order.empty() && order.begin()->entry == &e;  // one key an entry
    order.erase(key);
    if (!was_head) return;
    heads[q].erase(key);
    auto function_order = function_heads[q].find(e.profile->function);
    function_order->second.erase(key);
    if (order.empty()) {
      due_by_profile[q].erase(it);
      if (function_order->second.empty()) function_heads[q].erase(function_order);
    } else {
      heads[q].insert(*order.begin());
      function_order->second.insert(*order.begin());
    }
  }
  // Pending (due index) or leased -> dead.
  void Kill(Entry& e, std::string reason, absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    if (e.state == State::kPending) RemoveDue(e);
    if (e.state == State::kLeased) leases.erase(e.lease_key());
    e.state = State::kDead;
    e.set_reason(std::move(reason));
    e.at = now;
    dead.insert(e.id);
  }
  // Ends every lease that expired at or before `now`: the call is due again
  // from the lease's expiry (which `at` already holds).
  void ReclaimExpired(absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    while (!leases.empty() && leases.begin()->expires <= now) {
      Entry& e = *leases.begin()->entry;
      leases.erase(leases.begin());
      e.state = State::kPending;
      AddDue(e);
    }
  }
};

InMemoryQueue::InMemoryQueue(InMemoryQueueOptions options) {
  const int n = std::clamp(options.shards, 1, kMaxShards);
  shards_.reserve(n);
  for (int i = 0; i < n; ++i) shards_.push_back(std::make_unique<Shard>());
}

InMemoryQueue::~InMemoryQueue() = default;

absl::StatusOr<size_t> InMemoryQueue::Enqueue(absl::Span<const Call> calls) {
  TXFN_RETURN_IF_ERROR(ValidateEnqueueBatch(calls));
  // Group by shard, then insert shard by shard. Nothing below can fail, so
  // the batch is all-or-nothing.
  std::vector<std::vector<const Call*>> by_shard(shards_.size());
  for (const Call& c : calls) by_shard[ShardOf(c.id)].push_back(&c);
  size_t added = 0;
  for (size_t s = 0; s < shards_.size(); ++s) {
    if (by_shard[s].empty()) continue;
    Shard& shard = *shards_[s];
    const uint64_t first_seq = next_seq_.fetch_add(by_shard[s].size());
    internal::MutexLock lock(&shard.mu);
    uint64_t seq = first_seq;
    for (const Call* c : by_shard[s]) {
      if (shard.Add(*c, seq++)) ++added;
    }
  }
  return added;
}

absl::StatusOr<std::vector<LeasedCall>> InMemoryQueue::Lease(const LeaseRequest& request) {
  TXFN_RETURN_IF_ERROR(ValidateLeaseRequest(request, shard_count()));
  Shard& shard = *shards_[request.shard];
  const absl::Time now = request.now;
  std::vector<LeasedCall> out;
  internal::MutexLock lock(&shard.mu);
  shard.ReclaimExpired(now);

  // Takes the due call at `key` if it may be delivered; dead-letters it if
  // not. Returns false once the order reaches calls not yet due.
  auto take = [&](const DueKey& key) ABSL_EXCLUSIVE_LOCKS_REQUIRED(shard.mu) {
    Entry& e = *key.entry;
    if (e.deadline <= now) {
      shard.Kill(e, DeadlineReason(e.deadline, now), now);
      return;
    }
    if (e.attempt >= e.profile->retry.max_attempts) {
      shard.Kill(e, AttemptsReason(e.attempt, e.reason()), now);
      return;
    }
    shard.RemoveDue(e);
    e.state = State::kLeased;
    e.token = next_token_.fetch_add(1, std::memory_order_relaxed);
    e.at = now + request.lease_duration;
    shard.leases.insert(e.lease_key());
    LeasedCall& lc = out.emplace_back();
    lc.call = e.ToCall();
    lc.token = {e.id, e.token};
    lc.expires = e.at;
    lc.shard = request.shard;
    ++e.attempt;  // this delivery counts from now on
  };

  std::vector<std::string> functions;
  {
    absl::flat_hash_set<std::string> seen;
    for (const std::string& f : request.functions) {
      if (seen.insert(f).second) functions.push_back(f);
    }
  }
  // The orders of heads to start from: of each quota class asked for, whole
  // or of the functions asked for. Looked up again after take() (which
  // erases a function's heads when its last due call goes).
  auto head_orders = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(shard.mu) {
    std::vector<const Order*> orders;
    for (int q : {0, 1}) {
      if (request.quota && static_cast<int>(*request.quota) != q) continue;
      if (functions.empty()) orders.push_back(&shard.heads[q]);
      for (const std::string& f : functions) {
        auto it = shard.function_heads[q].find(f);
        if (it != shard.function_heads[q].end()) orders.push_back(&it->second);
      }
    }
    return orders;
  };
  if (!request.skip_tenants.empty() || request.max_per_tenant > 0) {
    // Picks first, then takes: the profiles' orders are walked (merged by a
    // heap of cursors; the orders of skipped or capped tenants are left
    // out) before any of them changes. A pick that take() dead-letters frees
    // its place for another round.
    absl::flat_hash_set<std::string_view> skipped(request.skip_tenants.begin(),
                                                  request.skip_tenants.end());
    absl::flat_hash_map<std::string_view, size_t> per_tenant;
    struct Cursor {
      Order::const_iterator at, end;
    };
    auto later = [](const Cursor& a, const Cursor& b) { return *b.at < *a.at; };
    while (out.size() < request.max) {
      std::vector<Cursor> cursors;
      // Pushes `c` if it is at a due call of a tenant not skipped.
      auto push = [&](Cursor c) {
        if (c.at == c.end || c.at->due > now || skipped.contains(c.at->entry->profile->tenant)) {
          return;
        }
        cursors.push_back(c);
        std::push_heap(cursors.begin(), cursors.end(), later);
      };
      // The orders' heads, in due order, pushed only once they could come
      // next (an order's calls are all due no earlier than its head), so a
      // lease walks the orders it takes from, and the heads of skipped ones.
      std::vector<std::pair<Order::const_iterator, Order::const_iterator>> heads;
      for (const Order* o : head_orders()) heads.emplace_back(o->begin(), o->end());
      auto push_heads = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(shard.mu) {
        for (auto& [head, end] : heads) {
          while (head != end && head->due <= now &&
                 (cursors.empty() || *head < *cursors.front().at)) {
            const Entry& e = *head->entry;
            const Order& order =
                shard.due_by_profile[static_cast<int>(e.profile->quota)].at(e.profile);
            push({order.begin(), order.end()});
            ++head;
          }
        }
      };
      std::vector<DueKey> picked;
      while (out.size() + picked.size() < request.max) {
        push_heads();
        if (cursors.empty()) break;
        std::pop_heap(cursors.begin(), cursors.end(), later);
        Cursor c = cursors.back();
        cursors.pop_back();
        const DueKey& key = *c.at;
        const std::string_view tenant = key.entry->profile->tenant;
        if (skipped.contains(tenant)) continue;  // capped since the cursor was pushed
        picked.push_back(key);
        if (request.max_per_tenant > 0 && ++per_tenant[tenant] >= request.max_per_tenant) {
          skipped.insert(tenant);
        }
        ++c.at;
        push(c);
      }
      if (picked.empty()) break;
      const size_t before = out.size();
      for (const DueKey& key : picked) take(key);
      if (out.size() - before == picked.size()) break;  // nothing dead-lettered
      // A dead-lettered pick does not count towards its tenant's cap.
      for (const DueKey& key : picked) {
        if (key.entry->state == State::kLeased) continue;
        const std::string_view tenant = key.entry->profile->tenant;
        if (request.max_per_tenant > 0 && per_tenant[tenant]-- == request.max_per_tenant &&
            absl::c_find(request.skip_tenants, tenant) == request.skip_tenants.end()) {
          skipped.erase(tenant);
        }
      }
    }
    return out;
  }
  while (out.size() < request.max) {
    const DueKey* best = nullptr;
    for (const Order* o : head_orders()) {
      if (o->empty()) continue;
      const DueKey& head = *o->begin();
      if (head.due <= now && (best == nullptr || head < *best)) best = &head;
    }
    if (best == nullptr) break;
    const DueKey key = *best;  // take() erases it from the sets
    take(key);
  }
  return out;
}

absl::StatusOr<std::vector<absl::Status>> InMemoryQueue::Settle(
    absl::Span<const Settlement> settlements, absl::Time now) {
  TXFN_RETURN_IF_ERROR(ValidateSettlements(settlements));
  std::vector<absl::Status> results(settlements.size());
  for (size_t i = 0; i < settlements.size(); ++i) {
    const Settlement& s = settlements[i];
    Shard& shard = ShardFor(s.lease.id);
    internal::MutexLock lock(&shard.mu);
    Entry* found = shard.Find(s.lease.id);
    if (found == nullptr) {
      results[i] = absl::NotFoundError(StrCat("call ", s.lease.id.ToString(), " is not queued"));
      continue;
    }
    Entry& e = *found;
    if (e.state != State::kLeased || e.token != s.lease.token || e.at <= now) {
      results[i] = absl::FailedPreconditionError(Stale(s.lease, e, now));
      continue;
    }
    switch (s.kind) {
      case Settlement::Kind::kAck:
        shard.Remove(e);
        break;
      case Settlement::Kind::kNack:
        e.set_reason(s.reason.substr(0, 1024));
        if (e.attempt >= e.profile->retry.max_attempts) {
          shard.Kill(e, AttemptsReason(e.attempt, e.reason()), now);
          break;
        }
        shard.leases.erase(e.lease_key());
        e.state = State::kPending;
        e.at = s.retry_at;
        shard.AddDue(e);
        break;
      case Settlement::Kind::kDeadLetter:
        shard.Kill(e, s.reason.substr(0, 1024), now);
        break;
      case Settlement::Kind::kRelease:
        shard.leases.erase(e.lease_key());
        --e.attempt;  // not started: the delivery does not count
        e.state = State::kPending;
        e.at = s.retry_at;
        shard.AddDue(e);
        break;
    }
  }
  return results;
}

absl::StatusOr<std::vector<absl::Status>> InMemoryQueue::Extend(absl::Span<const LeaseToken> leases,
                                                                absl::Time now,
                                                                absl::Duration lease_duration) {
  TXFN_RETURN_IF_ERROR(ValidateLeaseDuration(lease_duration));
  std::vector<absl::Status> results(leases.size());
  for (size_t i = 0; i < leases.size(); ++i) {
    const LeaseToken& t = leases[i];
    Shard& shard = ShardFor(t.id);
    internal::MutexLock lock(&shard.mu);
    Entry* found = shard.Find(t.id);
    if (found == nullptr) {
      results[i] = absl::NotFoundError(StrCat("call ", t.id.ToString(), " is not queued"));
      continue;
    }
    Entry& e = *found;
    if (e.state != State::kLeased || e.token != t.token || e.at <= now) {
      results[i] = absl::FailedPreconditionError(Stale(t, e, now));
      continue;
    }
    shard.leases.erase(e.lease_key());
    e.at = now + lease_duration;
    shard.leases.insert(e.lease_key());
  }
  return results;
}

// RemovePending and RemoveDeadLetters: removes each of `ids` from its shard (`shard_for(id)`)
// unless `refusal(entry)` says why not (FailedPrecondition); NotFound for an id not held.
template <typename ShardFor, typename Refusal>
std::vector<absl::Status> RemoveUnlessRefused(absl::Span<const CallId> ids, ShardFor shard_for,
                                              Refusal refusal) {
  std::vector<absl::Status> results(ids.size());
  for (size_t i = 0; i < ids.size(); ++i) {
    auto& shard = shard_for(ids[i]);
    internal::MutexLock lock(&shard.mu);
    Entry* found = shard.Find(ids[i]);
    if (found == nullptr) {
      results[i] = absl::NotFoundError(StrCat("call ", ids[i].ToString(), " is not queued"));
    } else if (std::optional<std::string> why = refusal(*found); why.has_value()) {
      results[i] = absl::FailedPreconditionError(*std::move(why));
    } else {
      shard.Remove(*found);
    }
  }
  return results;
}

absl::StatusOr<std::vector<absl::Status>> InMemoryQueue::RemovePending(absl::Span<const CallId> ids,
                                                                       absl::Time now) {
  TXFN_RETURN_IF_ERROR(ValidateRemovePending(ids));
  return RemoveUnlessRefused(
      ids, [this](const CallId& id) -> Shard& { return ShardFor(id); },
      [now](const Entry& e) -> std::optional<std::string> {
        if (e.state == State::kPending || (e.state == State::kLeased && e.at <= now)) {
          return std::nullopt;  // pending, or its lease expired
        }
        return NotPendingMessage(
            e.id, e.state == State::kDead ? QueuedCall::State::kDead : QueuedCall::State::kLeased);
      });
}

absl::StatusOr<std::vector<absl::Status>> InMemoryQueue::RemoveDeadLetters(
    absl::Span<const CallId> ids, absl::Time dead_before) {
  TXFN_RETURN_IF_ERROR(ValidateRemovePending(ids));
  return RemoveUnlessRefused(
      ids, [this](const CallId& id) -> Shard& { return ShardFor(id); },
      [dead_before](const Entry& e) -> std::optional<std::string> {
        if (e.state == State::kDead && e.at < dead_before) return std::nullopt;
        return NotADeadLetterBefore(e.id, dead_before);
      });
}

absl::StatusOr<std::vector<DeadLetter>> InMemoryQueue::ListDeadLetters(CallId after, size_t limit) {
  TXFN_RETURN_IF_ERROR(ValidateListLimit(limit));
  std::vector<DeadLetter> out;
  for (size_t s = 0; s < shards_.size(); ++s) {
    Shard& shard = *shards_[s];
    internal::MutexLock lock(&shard.mu);
    size_t taken = 0;
    for (auto it = shard.dead.upper_bound(after); it != shard.dead.end() && taken < limit;
         ++it, ++taken) {
      const Entry& e = *shard.Find(*it);
      out.push_back({e.ToCall(), std::string(e.reason()), e.at, static_cast<int>(s)});
    }
    // Keep only the `limit` smallest ids seen so far.
    std::sort(out.begin(), out.end(),
              [](const DeadLetter& a, const DeadLetter& b) { return a.call.id < b.call.id; });
    if (out.size() > limit) out.resize(limit);
  }
  return out;
}

namespace {
QueuedCall AsQueued(const Entry& e, absl::Time now) {
  QueuedCall out{.call = e.ToCall(), .reason = std::string(e.reason())};
  out.at = e.at;  // dead: since; leased: until; pending (or an expired lease): due
  if (e.state == State::kDead) {
    out.state = QueuedCall::State::kDead;
  } else if (e.state == State::kLeased && e.at > now) {
    out.state = QueuedCall::State::kLeased;
  } else {
    out.state = QueuedCall::State::kPending;
  }
  return out;
}
}  // namespace

absl::StatusOr<std::optional<QueuedCall>> InMemoryQueue::Find(const CallId& id, absl::Time now) {
  Shard& shard = ShardFor(id);
  internal::MutexLock lock(&shard.mu);
  const Entry* e = shard.Find(id);
  if (e == nullptr) return std::nullopt;
  return AsQueued(*e, now);
}

absl::StatusOr<std::vector<QueuedCall>> InMemoryQueue::ListCalls(CallId after, size_t limit,
                                                                 const ListFilter& filter,
                                                                 absl::Time now) {
  TXFN_RETURN_IF_ERROR(ValidateListLimit(limit));
  std::vector<QueuedCall> out;
  std::vector<const Entry*> candidates;
  for (const auto& shard : shards_) {
    internal::MutexLock lock(&shard->mu);
    // The shard's calls after `after` of the tenant and function, in id order; only the first
    // `limit` that pass the state filter are copied, with their arguments.
    candidates.clear();
    for (const std::unique_ptr<Entry>& e : shard->entries) {
      if (e->id <= after || (filter.before.has_value() && e->id >= *filter.before)) continue;
      if (!filter.tenant.empty() && e->profile->tenant != filter.tenant) continue;
      if (!filter.function.empty() && e->profile->function != filter.function) continue;
      candidates.push_back(e.get());
    }
    std::sort(candidates.begin(), candidates.end(),
              [](const Entry* a, const Entry* b) { return a->id < b->id; });
    size_t taken = 0;
    for (const Entry* e : candidates) {
      if (taken == limit) break;
      QueuedCall q = AsQueued(*e, now);
      if (!MatchesListFilter(q, filter)) continue;
      out.push_back(std::move(q));
      ++taken;
    }
  }
  std::sort(out.begin(), out.end(),
            [](const QueuedCall& a, const QueuedCall& b) { return a.call.id < b.call.id; });
  if (out.size() > limit) out.resize(limit);
  return out;
}

absl::StatusOr<std::vector<absl::Status>> InMemoryQueue::Redrive(absl::Span<const CallId> ids,
                                                                 absl::Time now) {
  std::vector<absl::Status> results(ids.size());
  for (size_t i = 0; i < ids.size(); ++i) {
    Shard& shard = ShardFor(ids[i]);
    internal::MutexLock lock(&shard.mu);
    Entry* found = shard.Find(ids[i]);
    if (found == nullptr || found->state != State::kDead) {
      results[i] = absl::NotFoundError(StrCat("call ", ids[i].ToString(), " is not a dead letter"));
      continue;
    }
    Entry& e = *found;
    shard.dead.erase(e.id);
    RedriveWindow(now, e.start_after, e.deadline);
    e.attempt = 0;
    e.state = State::kPending;
    e.set_reason("");
    e.at = now;
    shard.AddDue(e);
  }
  return results;
}

absl::StatusOr<std::vector<FunctionDepth>> InMemoryQueue::Depths(absl::Time now) {
  std::map<std::string, FunctionDepth> by_function;
  for (auto& shard_ptr : shards_) {
    Shard& shard = *shard_ptr;
    internal::MutexLock lock(&shard.mu);
    for (const std::unique_ptr<Entry>& entry : shard.entries) {
      const Entry& e = *entry;
      if (e.state == State::kDead) continue;
      FunctionDepth& d = by_function[e.profile->function];
      const bool expired = e.state == State::kLeased && e.at <= now;
      if (e.state == State::kLeased && !expired) {
        ++d.leased;
        continue;
      }
      ++d.pending;
      const absl::Time due = e.at;  // an expired lease's call is due from the expiry
      if (due <= now) {
        ++d.due;
        d.oldest_due = std::min(d.oldest_due, due);
      }
    }
  }
  std::vector<FunctionDepth> out;
  out.reserve(by_function.size());
  for (auto& [name, d] : by_function) {
    d.function = name;
    if (d.due > 0) d.oldest_due_age = now - d.oldest_due;
    out.push_back(std::move(d));
  }
  return out;
}

absl::StatusOr<std::vector<TenantDepth>> InMemoryQueue::TenantDepths(absl::Time) {
  // About EncodeCall's size, without encoding: the arguments, the strings and ~64 bytes of
  // fixed fields.
  constexpr uint64_t kFixedBytes = 64;
  std::map<std::string, TenantDepth> depths;
  for (const auto& shard : shards_) {
    internal::MutexLock lock(&shard->mu);
    for (const std::unique_ptr<Entry>& e : shard->entries) {
      if (e->state == State::kDead) continue;
      TenantDepth& d = depths[e->profile->tenant];
      ++d.calls;
      d.bytes += kFixedBytes + e->args.ByteSize() + e->profile->tenant.size() +
                 e->profile->function.size() + e->profile->client.size();
      if (e->rare != nullptr)
        d.bytes += e->rare->args_blob.size() + e->rare->idempotency_key.size();
    }
  }
  return SortedTenantDepths(depths);
}

size_t InMemoryQueue::size() const {
  size_t n = 0;
  for (const auto& shard : shards_) {
    internal::MutexLock lock(&shard->mu);
    n += shard->entries.size();
  }
  return n;
}

}  // namespace txfn

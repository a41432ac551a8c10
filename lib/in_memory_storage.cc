// InMemoryStorage: see txfn/in_memory_storage.h.
#include "txfn/in_memory_storage.h"

#include <algorithm>
#include <deque>
#include <iterator>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/container/btree_map.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/container/inlined_vector.h"
#include "absl/strings/escaping.h"
#include "absl/strings/string_view.h"
#include "fmt/core.h"
#include "txfn/internal/mutex.h"
#include "txfn/internal/strings.h"
#include "txfn/status_macros.h"

namespace txfn {
namespace {

struct Version {
  Timestamp ts = 0;
  std::optional<std::string> value;  // nullopt: a tombstone
};
// Ascending by ts; most keys have one version.
using Versions = absl::InlinedVector<Version, 1>;
using Index = absl::btree_map<std::string, Versions>;

// The version of `versions` visible at `ts`, or nullptr.
const Version* VisibleAt(const Versions& versions, Timestamp ts) {
  if (versions.back().ts <= ts) return &versions.back();  // the common case: the newest
  auto it = std::upper_bound(versions.begin(), versions.end(), ts,
                             [](Timestamp t, const Version& v) { return t < v.ts; });
  if (it == versions.begin()) return nullptr;
  return &*std::prev(it);
}

}  // namespace

struct InMemoryStorage::TenantState {
  mutable internal::SharedMutex mu;
  absl::flat_hash_map<IndexId, Index> indexes ABSL_GUARDED_BY(mu);
  std::deque<CommitRecord> log ABSL_GUARDED_BY(mu);  // ascending ts, all > horizon
  Timestamp max_ts ABSL_GUARDED_BY(mu) = 0;
  Timestamp horizon ABSL_GUARDED_BY(mu) = 0;  // reads below it fail
};

// The commits of one tenant within a Write batch, and the tenant's state.
struct InMemoryStorage::Group {
  TenantBatch batch;
  TenantState* state = nullptr;
};

InMemoryStorage::InMemoryStorage() = default;
InMemoryStorage::~InMemoryStorage() = default;

absl::Status InMemoryStorage::Write(absl::Span<const CommitRecord> commits) {
  if (commits.empty()) return absl::OkStatus();

  // Stateless checks, and the batch grouped by tenant (sorted: the lock order).
  TXFN_ASSIGN_OR_RETURN(const auto batches, ValidateCommitBatch(commits));
  absl::InlinedVector<Group, 2> groups;
  groups.reserve(batches.size());
  for (const TenantBatch& b : batches) groups.push_back({.batch = b});
  // The log's copy of the batch is made before any lock is taken, so the
  // tenant's exclusive section (which readers wait for) only links it in.
  std::vector<CommitRecord> log_copy(commits.begin(), commits.end());
  for (CommitRecord& c : log_copy) c.previous_ts.reset();  // the writer's view, not stored

  {
    internal::ReaderMutexLock lock(&mu_);
    bool all_present = true;
    for (Group& g : groups) {
      auto it = tenants_.find(internal::ToAbsl(g.batch.tenant));
      if (it == tenants_.end()) {
        all_present = false;
        break;
      }
      g.state = it->second.get();
    }
    if (all_present) return ApplyLocked(absl::MakeSpan(log_copy), absl::MakeSpan(groups));
  }

  // Some tenant is new: create it under the exclusive lock (so no
  // DeleteTenant can interleave), and drop it again if the batch fails.
  internal::WriterMutexLock lock(&mu_);
  absl::InlinedVector<std::string_view, 2> created;
  for (Group& g : groups) {
    auto [it, inserted] = tenants_.try_emplace(internal::ToAbsl(g.batch.tenant));
    if (inserted) {
      it->second = std::make_unique<TenantState>();
      created.push_back(g.batch.tenant);
    }
    g.state = it->second.get();
  }
  absl::Status status = ApplyLocked(absl::MakeSpan(log_copy), absl::MakeSpan(groups));
  if (!status.ok()) {
    for (std::string_view tenant : created) tenants_.erase(internal::ToAbsl(tenant));
  }
  return status;
}

absl::Status InMemoryStorage::ApplyLocked(absl::Span<CommitRecord> commits,
                                          absl::Span<Group> groups) {
  // Locks every written tenant, in name order; the analysis cannot follow a
  // loop of locks, hence the AssertHeld() calls below.
  struct Locks {
    absl::Span<Group> groups;
    explicit Locks(absl::Span<Group> g) ABSL_NO_THREAD_SAFETY_ANALYSIS : groups(g) {
      for (Group& group : groups) group.state->mu.Lock();
    }
    ~Locks() ABSL_NO_THREAD_SAFETY_ANALYSIS {
      for (auto it = groups.rbegin(); it != groups.rend(); ++it) it->state->mu.Unlock();
    }
  } locks(groups);

  for (const Group& g : groups) {
    g.state->mu.AssertHeld();
    // A stale writer here: two committers of one tenant (two engines sharing this storage).
    TXFN_RETURN_IF_ERROR(
        CheckTenantBatchAgainstNewest("InMemoryStorage", g.batch, g.state->max_ts));
  }

  // Everything is checked: apply. Nothing below fails (short of bad_alloc).
  for (CommitRecord& commit : commits) {
    TenantState* state = groups.size() == 1
                             ? groups[0].state
                             : std::lower_bound(groups.begin(), groups.end(), commit.tenant,
                                                [](const Group& g, std::string_view t) {
                                                  return g.batch.tenant < t;
                                                })
                                   ->state;
    state->mu.AssertHeld();
    Index* index = nullptr;
    IndexId index_id = 0;
    for (const IndexWrite& w : commit.writes) {
      if (index == nullptr || w.index != index_id) {
        index = &state->indexes[w.index];
        index_id = w.index;
      }
      Versions& versions = (*index)[w.key];
      versions.push_back(Version{commit.ts, w.value});
    }
    state->max_ts = commit.ts;
    state->log.push_back(std::move(commit));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::optional<IndexEntry>> InMemoryStorage::Get(std::string_view tenant,
                                                               IndexId index, std::string_view key,
                                                               Timestamp ts) {
  internal::ReaderMutexLock lock(&mu_);
  auto tenant_it = tenants_.find(internal::ToAbsl(tenant));
  if (tenant_it == tenants_.end()) return std::nullopt;
  TenantState& state = *tenant_it->second;
  internal::ReaderMutexLock tenant_lock(&state.mu);
  if (ts < state.horizon) return ReadBelowRetentionError("Get", tenant, ts, state.horizon);
  auto index_it = state.indexes.find(index);
  if (index_it == state.indexes.end()) return std::nullopt;
  auto key_it = index_it->second.find(internal::ToAbsl(key));
  if (key_it == index_it->second.end()) return std::nullopt;
  const Version* version = VisibleAt(key_it->second, ts);
  if (version == nullptr || !version->value.has_value()) return std::nullopt;
  return IndexEntry{key_it->first, *version->value, version->ts};
}

absl::StatusOr<std::vector<IndexEntry>> InMemoryStorage::Scan(std::string_view tenant,
                                                              IndexId index, const KeyRange& range,
                                                              Timestamp ts, ScanOrder order,
                                                              size_t limit) {
  std::vector<IndexEntry> out;
  if (range.IsEmpty()) return out;
  internal::ReaderMutexLock lock(&mu_);
  auto tenant_it = tenants_.find(internal::ToAbsl(tenant));
  if (tenant_it == tenants_.end()) return out;
  TenantState& state = *tenant_it->second;
  internal::ReaderMutexLock tenant_lock(&state.mu);
  if (ts < state.horizon) return ReadBelowRetentionError("Scan", tenant, ts, state.horizon);
  auto index_it = state.indexes.find(index);
  if (index_it == state.indexes.end()) return out;
  const Index& keys = index_it->second;

  auto emit = [&](const Index::value_type& kv) {
    const Version* version = VisibleAt(kv.second, ts);
    if (version != nullptr && version->value.has_value()) {
      out.push_back(IndexEntry{kv.first, *version->value, version->ts});
    }
    return limit == 0 || out.size() < limit;  // true: keep going
  };
  auto first = keys.lower_bound(internal::ToAbsl(range.start));
  auto last = range.end.has_value() ? keys.lower_bound(internal::ToAbsl(*range.end)) : keys.end();
  if (order == ScanOrder::kAscending) {
    for (auto it = first; it != last; ++it) {
      if (!emit(*it)) break;
    }
  } else {
    for (auto it = last; it != first;) {
      --it;
      if (!emit(*it)) break;
    }
  }
  return out;
}

absl::StatusOr<std::vector<CommitRecord>> InMemoryStorage::ReadLog(std::string_view tenant,
                                                                   Timestamp after, size_t limit) {
  std::vector<CommitRecord> out;
  internal::ReaderMutexLock lock(&mu_);
  auto tenant_it = tenants_.find(internal::ToAbsl(tenant));
  if (tenant_it == tenants_.end()) return out;
  TenantState& state = *tenant_it->second;
  internal::ReaderMutexLock tenant_lock(&state.mu);
  if (after < state.horizon) {
    return ReadBelowRetentionError("ReadLog", tenant, after, state.horizon);
  }
  auto first = std::upper_bound(state.log.begin(), state.log.end(), after,
                                [](Timestamp t, const CommitRecord& c) { return t < c.ts; });
  size_t n = static_cast<size_t>(state.log.end() - first);
  if (limit != 0 && limit < n) n = limit;
  out.assign(first, first + static_cast<std::ptrdiff_t>(n));
  return out;
}

absl::StatusOr<Timestamp> InMemoryStorage::MaxCommittedTimestamp(std::string_view tenant) {
  internal::ReaderMutexLock lock(&mu_);
  auto tenant_it = tenants_.find(internal::ToAbsl(tenant));
  if (tenant_it == tenants_.end()) return Timestamp{0};
  TenantState& state = *tenant_it->second;
  internal::ReaderMutexLock tenant_lock(&state.mu);
  return state.max_ts;
}

bool InMemoryStorage::MayHaveOtherWriters(std::string_view /*tenant*/) { return true; }

absl::StatusOr<std::vector<std::string>> InMemoryStorage::ListTenants() {
  std::vector<std::string> out;
  {
    internal::ReaderMutexLock lock(&mu_);
    out.reserve(tenants_.size());
    // Write creates and, if the batch fails, drops a new tenant under the
    // exclusive lock, so every tenant seen here has a commit; check anyway.
    for (const auto& [name, state] : tenants_) {
      internal::ReaderMutexLock tenant_lock(&state->mu);
      if (state->max_ts != 0) out.push_back(name);
    }
  }
  std::sort(out.begin(), out.end());
  return out;
}

absl::StatusOr<RetentionResult> InMemoryStorage::ApplyRetention(std::string_view tenant,
                                                                Timestamp ts, size_t max_commits) {
  internal::ReaderMutexLock lock(&mu_);
  auto tenant_it = tenants_.find(internal::ToAbsl(tenant));
  if (tenant_it == tenants_.end()) return RetentionResult{};
  TenantState& state = *tenant_it->second;
  internal::WriterMutexLock tenant_lock(&state.mu);
  RetentionResult result{.horizon = state.horizon};
  // The log holds exactly the commits after the horizon: those up to `ts`
  // are the ones whose keys may now have versions nobody can see.
  auto first = state.log.begin();
  auto last = std::upper_bound(first, state.log.end(), ts,
                               [](Timestamp t, const CommitRecord& c) { return t < c.ts; });
  if (max_commits != 0 && static_cast<size_t>(last - first) > max_commits) {
    last = first + static_cast<std::ptrdiff_t>(max_commits);
    result.done = false;
  }
  if (first == last) return result;
  const Timestamp horizon = std::prev(last)->ts;

  absl::flat_hash_set<std::pair<IndexId, absl::string_view>> pruned;
  for (auto commit = first; commit != last; ++commit) {
    for (const IndexWrite& w : commit->writes) {
      if (!pruned.emplace(w.index, internal::ToAbsl(w.key)).second) continue;
      Index& index = state.indexes[w.index];
      auto key_it = index.find(internal::ToAbsl(w.key));
      if (key_it == index.end()) continue;
      Versions& versions = key_it->second;
      // Keep the newest version at or before the horizon (it was written by
      // one of these commits, so there is one) and everything after it;
      // drop that version too if it is a tombstone.
      auto visible = std::upper_bound(versions.begin(), versions.end(), horizon,
                                      [](Timestamp t, const Version& v) { return t < v.ts; });
      auto keep_from = std::prev(visible);
      if (!keep_from->value.has_value()) ++keep_from;
      result.versions_dropped += static_cast<uint64_t>(keep_from - versions.begin());
      versions.erase(versions.begin(), keep_from);
      if (versions.empty()) index.erase(key_it);
    }
  }
  result.commits_dropped = static_cast<uint64_t>(last - first);
  state.log.erase(first, last);
  state.horizon = result.horizon = horizon;
  return result;
}

InMemoryTenantSize InMemoryStorage::Size(std::string_view tenant) const {
  InMemoryTenantSize size;
  internal::ReaderMutexLock lock(&mu_);
  auto tenant_it = tenants_.find(internal::ToAbsl(tenant));
  if (tenant_it == tenants_.end()) return size;
  const TenantState& state = *tenant_it->second;
  internal::ReaderMutexLock tenant_lock(&state.mu);
  for (const auto& [id, index] : state.indexes) {
    size.keys += index.size();
    for (const auto& [key, versions] : index) size.versions += versions.size();
  }
  size.log_commits = state.log.size();
  return size;
}

absl::Status InMemoryStorage::DeleteTenant(std::string_view tenant) {
  (void)DeleteTenantWhere(tenant, std::nullopt);
  return absl::OkStatus();
}

absl::StatusOr<bool> InMemoryStorage::DeleteTenantIfNewest(std::string_view tenant,
                                                           Timestamp newest) {
  return DeleteTenantWhere(tenant, newest);
}

bool InMemoryStorage::DeleteTenantWhere(std::string_view tenant, std::optional<Timestamp> newest) {
  std::unique_ptr<TenantState> doomed;
  {
    // The exclusive lock holds off every Write, so the check still holds at the erase.
    internal::WriterMutexLock lock(&mu_);
    auto it = tenants_.find(internal::ToAbsl(tenant));
    if (it == tenants_.end()) return newest.value_or(0) == 0;
    if (newest.has_value()) {
      internal::ReaderMutexLock tenant_lock(&it->second->mu);
      if (it->second->max_ts != *newest) return false;
    }
    doomed = std::move(it->second);
    tenants_.erase(it);
  }
  // Freed outside the lock: a large tenant takes a while.
  return true;
}

}  // namespace txfn

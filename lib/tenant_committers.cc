// The per-tenant committer registry (txfn/tenant_committers.h).
//
// Locking: lifecycle_mu serialises tenant creation, deletion and the first
// open of a tenant's committer (all of which ask the storage whether the
// tenant exists); map_mu guards the map of open tenants and is held only for
// lookups. Order: lifecycle_mu, then map_mu. Each open tenant has a
// SharedMutex: commits hold it shared, Delete exclusively, so no commit lands
// after a tenant was deleted.
//
// Idle tenants: a handle is shared only by copying it out of the map under
// map_mu (FindOpen, Get). So a sweep that holds map_mu and sees the map's
// reference as the only one (use_count() == 1) knows nothing uses the tenant
// and nothing can start to; it erases the entry, and the next use opens a new
// committer. Two committers of one tenant never coexist with work on both.
#include "txfn/tenant_committers.h"

#include <algorithm>
#include <atomic>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/time/clock.h"
#include "lib/contention_lanes.h"
#include "txfn/internal/mutex.h"
#include "txfn/internal/strings.h"
#include "txfn/status_macros.h"

namespace txfn {

using internal::StrCat;
using internal::ToAbsl;

namespace {

constexpr size_t kMaxTenantNameBytes = 64;

// Stricter than the queue's ValidateTenantName (call.h): a tenant's name is
// also a storage key and a file-system-safe label.
absl::Status CheckTenantName(std::string_view tenant) {
  if (tenant.empty() || tenant.size() > kMaxTenantNameBytes) {
    return absl::InvalidArgumentError(
        StrCat("tenant name must have 1..", kMaxTenantNameBytes, " bytes"));
  }
  for (char c : tenant) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '_' || c == '-' || c == '.';
    if (!ok) {
      return absl::InvalidArgumentError(
          StrCat("tenant name '", tenant, "' may only contain [A-Za-z0-9_.-]"));
    }
  }
  return absl::OkStatus();
}

}  // namespace

struct OpenTenant::State {
  std::unique_ptr<Committer> committer;
  internal::ContentionLanes lanes;
  // When a Get last took the handle (the committer's clock), for Sweep.
  std::atomic<Timestamp> last_used{0};
  internal::SharedMutex mu;  // shared: a commit; exclusive: deletion
  bool deleted ABSL_GUARDED_BY(mu) = false;

  absl::StatusOr<Timestamp> CommitLocked(PreparedCommit commit, CommitIntent intent, BatchHold hold)
      ABSL_SHARED_LOCKS_REQUIRED(mu) {
    if (deleted)
      return absl::NotFoundError(StrCat("tenant '", committer->tenant(), "' was deleted"));
    return committer->Commit(std::move(commit), std::move(intent), hold);
  }
};

OpenTenant::OpenTenant(std::unique_ptr<State> state) : state_(std::move(state)) {}
OpenTenant::~OpenTenant() = default;

const std::string& OpenTenant::name() const { return state_->committer->tenant(); }
Committer& OpenTenant::committer() const { return *state_->committer; }
std::shared_ptr<const Snapshot> OpenTenant::Latest() const { return state_->committer->Latest(); }
internal::ContentionLanes& OpenTenant::lanes() const { return state_->lanes; }

absl::StatusOr<Timestamp> OpenTenant::Commit(PreparedCommit commit, CommitIntent intent,
                                             BatchHold hold) {
  internal::ReaderMutexLock lock(&state_->mu);
  return state_->CommitLocked(std::move(commit), std::move(intent), hold);
}

absl::StatusOr<CommitOutcome> OpenTenant::CommitSystemTransaction(
    const std::function<absl::Status(Transaction&)>& body, const RetryOptions& retry,
    const std::function<void(bool will_retry)>& on_conflict) {
  State& s = *state_;
  auto attempt = [&]() ABSL_SHARED_LOCKS_REQUIRED(s.mu) -> AttemptResult {
    std::shared_ptr<const Snapshot> snapshot = s.committer->Latest();
    HistoryPin pin = s.committer->PinHistory(snapshot->ts());
    Transaction txn(std::move(snapshot));
    TXFN_RETURN_IF_ERROR(body(txn));
    return AttemptResult::Commit(
        s.CommitLocked(txn.Prepare(), CommitIntent(), BatchHold::kAllowed));
  };
  return RetryCommits(
      "system transaction", retry,
      [&](int n) -> AttemptResult {
        if (n == 1) {
          internal::ReaderMutexLock lock(&s.mu);
          return attempt();
        }
        internal::WriterMutexLock lock(&s.mu);
        return attempt();
      },
      [&](bool will_retry) {
        if (on_conflict) on_conflict(will_retry);
      });
}

struct TenantCommitters::Registry {
  Registry(std::shared_ptr<Storage> storage, TenantCommittersOptions options)
      : storage(std::move(storage)), options(std::move(options)) {}

  const std::shared_ptr<Storage> storage;
  const TenantCommittersOptions options;

  internal::Mutex lifecycle_mu ABSL_ACQUIRED_BEFORE(map_mu);
  mutable internal::Mutex map_mu;
  absl::flat_hash_map<std::string, std::shared_ptr<OpenTenant>> tenants ABSL_GUARDED_BY(map_mu);
  // What the committers closed idle had counted (their stats live on).
  CommitterStats closed_stats ABSL_GUARDED_BY(map_mu);
  uint64_t closed_idle ABSL_GUARDED_BY(map_mu) = 0;
  std::atomic<uint64_t> hits{0};
  std::atomic<uint64_t> misses{0};

  Timestamp Now() const {
    return options.committer.clock ? options.committer.clock()
                                   : static_cast<Timestamp>(absl::GetCurrentTimeNanos());
  }
  void Touch(const OpenTenant& tenant) const {
    tenant.state_->last_used.store(Now(), std::memory_order_relaxed);
  }

  // The open tenant, or null. One whose committer found it deleted by another writer
  // (Committer::DeletedElsewhere) is dropped: its state is the deleted tenant's, so the next
  // Get opens what storage holds now (nothing: NotFound; or a tenant created again since).
  std::shared_ptr<OpenTenant> FindOpen(std::string_view tenant) {
    internal::MutexLock lock(&map_mu);
    auto it = tenants.find(ToAbsl(tenant));
    if (it == tenants.end()) return nullptr;
    if (it->second->committer().DeletedElsewhere()) {
      tenants.erase(it);
      return nullptr;
    }
    return it->second;
  }

  // Opens a committer for a tenant that exists in storage (lifecycle_mu held).
  absl::StatusOr<std::shared_ptr<OpenTenant>> OpenLocked(std::string_view tenant)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(lifecycle_mu) {
    auto state = std::make_unique<OpenTenant::State>();
    TXFN_ASSIGN_OR_RETURN(state->committer,
                          Committer::Open(storage, std::string(tenant), options.committer));
    std::shared_ptr<OpenTenant> open(new OpenTenant(std::move(state)));
    Touch(*open);
    internal::MutexLock lock(&map_mu);
    tenants[ToAbsl(tenant)] = open;
    return open;
  }
};

TenantCommitters::TenantCommitters(std::shared_ptr<Storage> storage,
                                   TenantCommittersOptions options)
    : registry_(std::make_unique<Registry>(std::move(storage), std::move(options))) {}
TenantCommitters::~TenantCommitters() = default;

absl::Status TenantCommitters::Create(std::string_view tenant, Timestamp* created_at) {
  TXFN_RETURN_IF_ERROR(CheckTenantName(tenant));
  Registry& r = *registry_;
  internal::MutexLock lifecycle(&r.lifecycle_mu);
  auto exists = [&](std::string_view how = "") {
    return absl::AlreadyExistsError(StrCat("tenant '", tenant, "' already exists", how));
  };
  if (r.FindOpen(tenant) != nullptr) return exists();
  TXFN_ASSIGN_OR_RETURN(Timestamp max, r.storage->MaxCommittedTimestamp(tenant));
  if (max != 0) return exists();
  // Another process may create it from here on. Until Open, this commit would overwrite
  // that one's metadata: Open's snapshot shows it. After, this commit is refused as stale.
  constexpr std::string_view kMeanwhile = " (created by another process meanwhile)";
  TXFN_ASSIGN_OR_RETURN(std::unique_ptr<Committer> committer,
                        Committer::Open(r.storage, std::string(tenant), r.options.committer));
  // One snapshot: a second Latest() could catch up with another process's creation, and
  // this commit, knowing of it, would not be refused.
  std::shared_ptr<const Snapshot> latest = committer->Latest();
  if (latest->ts() != 0) return exists(kMeanwhile);
  Transaction txn(std::move(latest));
  TXFN_RETURN_IF_ERROR(txn.DeploySchema(Schema()));
  TXFN_RETURN_IF_ERROR(txn.SetEnabled(true));
  absl::StatusOr<Timestamp> created = committer->Commit(txn.Prepare());
  if (absl::IsFailedPrecondition(created.status())) {
    TXFN_ASSIGN_OR_RETURN(Timestamp newest, r.storage->MaxCommittedTimestamp(tenant));
    if (newest != 0) return exists(kMeanwhile);
  }
  TXFN_RETURN_IF_ERROR(created.status());
  if (created_at != nullptr) *created_at = *created;
  auto state = std::make_unique<OpenTenant::State>();
  state->committer = std::move(committer);
  std::shared_ptr<OpenTenant> open(new OpenTenant(std::move(state)));
  r.Touch(*open);
  internal::MutexLock lock(&r.map_mu);
  r.tenants[ToAbsl(tenant)] = std::move(open);
  return absl::OkStatus();
}

absl::StatusOr<std::shared_ptr<OpenTenant>> TenantCommitters::Get(std::string_view tenant) {
  Registry& r = *registry_;
  if (std::shared_ptr<OpenTenant> open = r.FindOpen(tenant)) {
    r.hits.fetch_add(1, std::memory_order_relaxed);
    r.Touch(*open);
    return open;
  }
  TXFN_RETURN_IF_ERROR(CheckTenantName(tenant));
  internal::MutexLock lifecycle(&r.lifecycle_mu);
  if (std::shared_ptr<OpenTenant> open = r.FindOpen(tenant)) {
    r.hits.fetch_add(1, std::memory_order_relaxed);
    r.Touch(*open);
    return open;
  }
  r.misses.fetch_add(1, std::memory_order_relaxed);
  TXFN_ASSIGN_OR_RETURN(Timestamp max, r.storage->MaxCommittedTimestamp(tenant));
  if (max == 0) return absl::NotFoundError(StrCat("tenant '", tenant, "' not found"));
  return r.OpenLocked(tenant);
}

absl::Status TenantCommitters::Delete(std::string_view tenant) {
  auto delete_existing = [&](Storage& storage, bool open) -> absl::StatusOr<bool> {
    // An open tenant is deleted without a look: its handles must go even if another
    // process deleted it already.
    if (!open) {
      TXFN_ASSIGN_OR_RETURN(Timestamp max, storage.MaxCommittedTimestamp(tenant));
      if (max == 0) return absl::NotFoundError(StrCat("tenant '", tenant, "' not found"));
    }
    TXFN_RETURN_IF_ERROR(storage.DeleteTenant(tenant));
    return true;
  };
  return DeleteWith(tenant, delete_existing).status();
}

absl::StatusOr<bool> TenantCommitters::DeleteIfNewest(std::string_view tenant, Timestamp newest) {
  return DeleteWith(tenant, [&](Storage& storage, bool) -> absl::StatusOr<bool> {
    return storage.DeleteTenantIfNewest(tenant, newest);
  });
}

absl::StatusOr<bool> TenantCommitters::DeleteWith(
    std::string_view tenant,
    absl::FunctionRef<absl::StatusOr<bool>(Storage&, bool open)> delete_tenant) {
  TXFN_RETURN_IF_ERROR(CheckTenantName(tenant));
  Registry& r = *registry_;
  internal::MutexLock lifecycle(&r.lifecycle_mu);
  std::shared_ptr<OpenTenant> open = r.FindOpen(tenant);
  if (open == nullptr) return delete_tenant(*r.storage, /*open=*/false);
  // Holds off this process's commits to the tenant until its handles are marked deleted.
  OpenTenant::State& state = *open->state_;
  internal::WriterMutexLock lock(&state.mu);
  TXFN_ASSIGN_OR_RETURN(bool deleted, delete_tenant(*r.storage, /*open=*/true));
  if (!deleted) return false;
  state.deleted = true;
  internal::MutexLock map_lock(&r.map_mu);
  r.tenants.erase(ToAbsl(tenant));
  return true;
}

size_t TenantCommitters::Sweep(Timestamp now) {
  Registry& r = *registry_;
  const bool close_idle = r.options.idle_timeout != absl::InfiniteDuration();
  const auto idle_ns = static_cast<Timestamp>(
      absl::ToInt64Nanoseconds(std::max(r.options.idle_timeout, absl::ZeroDuration())));
  std::vector<std::shared_ptr<OpenTenant>> open;
  std::vector<std::shared_ptr<OpenTenant>> closed;  // destroyed outside map_mu
  {
    internal::MutexLock lock(&r.map_mu);
    open.reserve(r.tenants.size());
    for (auto it = r.tenants.begin(); it != r.tenants.end();) {
      const std::shared_ptr<OpenTenant>& tenant = it->second;
      const Timestamp used = tenant->state_->last_used.load(std::memory_order_relaxed);
      // use_count() == 1: only the map holds it (see the file comment).
      if (close_idle && tenant.use_count() == 1 && (now <= used ? 0 : now - used) >= idle_ns) {
        CommitterStats gone = tenant->committer().stats();
        gone.history_keys = gone.history_commits = 0;
        r.closed_stats += gone;
        closed.push_back(tenant);
        r.tenants.erase(it++);
      } else {
        open.push_back(tenant);
        ++it;
      }
    }
    // Hand back the table's memory once most of it is empty.
    if (!closed.empty() && r.tenants.capacity() > 4 * r.tenants.size() + 64) r.tenants.rehash(0);
    r.closed_idle += closed.size();
  }
  // A committer whose batch is being written prunes itself.
  for (const std::shared_ptr<OpenTenant>& tenant : open)
    (void)tenant->committer().PruneHistory(now);
  return closed.size();
}

Timestamp TenantCommitters::Now() const { return registry_->Now(); }

const std::shared_ptr<Storage>& TenantCommitters::storage() const { return registry_->storage; }

TenantCommittersStats TenantCommitters::stats() const {
  const Registry& r = *registry_;
  TenantCommittersStats s{.hits = r.hits.load(std::memory_order_relaxed),
                          .misses = r.misses.load(std::memory_order_relaxed)};
  internal::MutexLock lock(&r.map_mu);
  s.committer = r.closed_stats;
  for (const auto& [name, tenant] : r.tenants) s.committer += tenant->committer().stats();
  s.open = r.tenants.size();
  s.closed_idle = r.closed_idle;
  return s;
}

}  // namespace txfn

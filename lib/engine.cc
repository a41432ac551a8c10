// The embedded engine: per-tenant committers on one Storage, one
// IsolateScheduler and one FunctionRunner.
//
// Locking: lifecycle_mu_ serialises tenant creation, deletion and the first
// open of a tenant's committer (all of which ask the storage whether the
// tenant exists); map_mu_ guards the map of open tenants and is held only for
// lookups. Order: lifecycle_mu_, then map_mu_. Each open tenant has a
// SharedMutex: commits hold it shared, DeleteTenant exclusively, so no commit
// lands after a tenant was deleted.
//
// Idle tenants: an entry is shared only by copying it out of the map under
// map_mu_ (FindOpen, Open). So a sweep that holds map_mu_ and sees the map's
// reference as the only one (use_count() == 1) knows nothing uses the tenant
// and nothing can start to; it erases the entry, and the next use opens a new
// committer. Two committers of one tenant never coexist with work on both.
#include "txfn/engine.h"

#include <algorithm>
#include <atomic>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/cleanup/cleanup.h"
#include "absl/container/flat_hash_map.h"
#include "absl/functional/function_ref.h"
#include "absl/hash/hash.h"
#include "absl/random/random.h"
#include "absl/time/clock.h"
#include "lib/contention_lanes.h"
#include "txfn/function_runner.h"
#include "txfn/idempotency.h"
#include "txfn/in_memory_storage.h"
#include "txfn/internal/mutex.h"
#include "txfn/internal/status_macros.h"
#include "txfn/internal/strings.h"
#include "txfn/transaction.h"

namespace txfn {
namespace {

using internal::StrCat;
using internal::ToAbsl;

constexpr size_t kMaxTenantNameBytes = 64;

absl::Status ValidateTenantName(std::string_view tenant) {
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

// One open tenant.
struct TenantEntry {
  std::unique_ptr<Committer> committer;
  internal::ContentionLanes lanes;
  // When a call last took the entry (the committer's clock), for idle sweeps.
  std::atomic<Timestamp> last_used{0};
  internal::SharedMutex mu;  // shared: a commit; exclusive: deletion
  bool deleted ABSL_GUARDED_BY(mu) = false;
};

// A mutation's retries so far (EngineImpl::PlanRetry).
struct RetryBudget {
  int counted = 0;  // conflicts counted against max_attempts
  int free_entries = 0;
};
struct RetryPlan {
  bool retry = false;
  std::shared_ptr<internal::Lane> lane;  // the lane to retry in; null: as before
};

// Commits one ApplyRetention call processes, so a retention pass never holds
// a tenant's writes up for long (SQLite: one write transaction per call).
constexpr size_t kRetentionStepCommits = 1000;

CallResult Replayed(const IdempotentResult& first, int attempts) {
  return CallResult{.value = first.value, .ts = first.ts, .attempts = attempts, .replayed = true};
}

CallResult ToCallResult(RunResult r, Timestamp ts, int attempts) {
  return CallResult{.value = std::move(r.value),
                    .ts = ts,
                    .attempts = attempts,
                    .logs = std::move(r.logs),
                    .stats = r.stats};
}

class EngineImpl final : public Engine {
 public:
  EngineImpl(EngineOptions options, std::shared_ptr<Storage> storage,
             std::shared_ptr<IsolateScheduler> scheduler)
      : options_(std::move(options)),
        storage_(std::move(storage)),
        scheduler_(scheduler),
        runner_(std::move(scheduler), options_.runner) {
    background_thread_ = std::thread([this] { BackgroundLoop(); });
  }

  ~EngineImpl() override {
    {
      internal::MutexLock lock(&retention_mu_);
      stop_background_ = true;
      retention_cv_.SignalAll();
    }
    background_thread_.join();
    // Wait for async calls still in flight (they hold `this`).
    internal::MutexLock lock(&async_mu_);
    async_cv_.Wait([&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(async_mu_) { return async_calls_ == 0; });
  }

  // ---- Tenants ----

  absl::Status CreateTenant(std::string_view tenant) override {
    TXFN_RETURN_IF_ERROR(ValidateTenantName(tenant));
    internal::MutexLock lifecycle(&lifecycle_mu_);
    if (FindOpen(tenant) != nullptr) {
      return absl::AlreadyExistsError(StrCat("tenant '", tenant, "' already exists"));
    }
    TXFN_ASSIGN_OR_RETURN(Timestamp max, storage_->MaxCommittedTimestamp(tenant));
    if (max != 0) return absl::AlreadyExistsError(StrCat("tenant '", tenant, "' already exists"));
    auto entry = std::make_shared<TenantEntry>();
    TXFN_ASSIGN_OR_RETURN(entry->committer,
                          Committer::Open(storage_, std::string(tenant), options_.committer));
    Transaction txn(entry->committer->Latest());
    TXFN_RETURN_IF_ERROR(txn.DeploySchema(Schema()));
    TXFN_RETURN_IF_ERROR(txn.SetEnabled(true));
    TXFN_RETURN_IF_ERROR(entry->committer->Commit(txn.Prepare()).status());
    Touch(*entry);
    internal::MutexLock lock(&map_mu_);
    tenants_[ToAbsl(tenant)] = std::move(entry);
    return absl::OkStatus();
  }

  absl::Status Deploy(std::string_view tenant, const std::map<std::string, std::string>& modules,
                      const Schema& schema) override {
    absl::Status s = DeployImpl(tenant, modules, schema);
    (s.ok() ? deploys_ : deploys_refused_).fetch_add(1, std::memory_order_relaxed);
    return s;
  }

  absl::Status DeployJson(std::string_view tenant,
                          const std::map<std::string, std::string>& modules,
                          std::string_view schema_json) override {
    absl::StatusOr<Schema> schema = Schema::FromJson(schema_json);
    if (!schema.ok()) {
      deploys_refused_.fetch_add(1, std::memory_order_relaxed);
      return absl::InvalidArgumentError(
          StrCat("deploy refused: bad schema: ", schema.status().message()));
    }
    return Deploy(tenant, modules, *schema);
  }

  absl::Status SetEnabled(std::string_view tenant, bool enabled) override {
    TXFN_ASSIGN_OR_RETURN(std::shared_ptr<TenantEntry> entry, Open(tenant));
    return CommitWithRetry(*entry, [&](Transaction& txn) { return txn.SetEnabled(enabled); });
  }

  absl::Status DeleteTenant(std::string_view tenant) override {
    TXFN_RETURN_IF_ERROR(ValidateTenantName(tenant));
    internal::MutexLock lifecycle(&lifecycle_mu_);
    std::shared_ptr<TenantEntry> entry = FindOpen(tenant);
    if (entry == nullptr) {
      TXFN_ASSIGN_OR_RETURN(Timestamp max, storage_->MaxCommittedTimestamp(tenant));
      if (max == 0) return absl::NotFoundError(StrCat("tenant '", tenant, "' not found"));
      return storage_->DeleteTenant(tenant);
    }
    internal::WriterMutexLock lock(&entry->mu);
    TXFN_RETURN_IF_ERROR(storage_->DeleteTenant(tenant));
    entry->deleted = true;
    internal::MutexLock map_lock(&map_mu_);
    tenants_.erase(ToAbsl(tenant));
    return absl::OkStatus();
  }

  absl::StatusOr<std::vector<std::string>> ListTenants() override {
    return storage_->ListTenants();
  }

  absl::StatusOr<std::shared_ptr<const Snapshot>> Latest(std::string_view tenant) override {
    TXFN_ASSIGN_OR_RETURN(std::shared_ptr<TenantEntry> entry, Open(tenant));
    return entry->committer->Latest();
  }

  // ---- Calls ----

  absl::StatusOr<CallResult> Query(std::string_view tenant, std::string_view function,
                                   const Value& args) override {
    TXFN_ASSIGN_OR_RETURN(std::shared_ptr<TenantEntry> entry, Open(tenant));
    std::shared_ptr<const Snapshot> snapshot = entry->committer->Latest();
    TXFN_RETURN_IF_ERROR(CheckEnabled(*snapshot));
    const Timestamp ts = snapshot->ts();
    RunResult r =
        runner_.Run(std::move(snapshot), MakeRequest(function, args, FunctionKind::kQuery));
    if (!r.status.ok()) return std::move(r.status);
    queries_.fetch_add(1, std::memory_order_relaxed);
    return ToCallResult(std::move(r), ts, 1);
  }

  absl::StatusOr<CallResult> Mutation(std::string_view tenant, std::string_view function,
                                      const Value& args, const MutationOptions& options) override {
    const std::string& key = options.idempotency_key;
    if (!key.empty()) TXFN_RETURN_IF_ERROR(ValidateIdempotencyKey(key));
    TXFN_ASSIGN_OR_RETURN(std::shared_ptr<TenantEntry> entry, Open(tenant));
    RunResult last_run;
    std::optional<IdempotentResult> replay;
    // An unknown commit outcome is Unavailable: RetryInLanes returns it as it
    // is, never runs the mutation again.
    TXFN_ASSIGN_OR_RETURN(
        CommitOutcome outcome,
        RetryInLanes(*entry, absl::HashOf(function, args), function,
                     [&](int attempt) -> absl::StatusOr<absl::StatusOr<Timestamp>> {
                       CommitIntent intent = AnnounceFirstAttempt(*entry->committer, attempt);
                       std::shared_ptr<const Snapshot> snapshot = entry->committer->Latest();
                       TXFN_RETURN_IF_ERROR(CheckEnabled(*snapshot));
                       if (!key.empty()) {
                         TXFN_ASSIGN_OR_RETURN(replay, FindIdempotencyKey(*snapshot, key));
                         if (replay.has_value()) return absl::StatusOr<Timestamp>(replay->ts);
                       }
                       last_run = runner_.Run(std::move(snapshot),
                                              MakeRequest(function, args, FunctionKind::kMutation));
                       if (!last_run.status.ok()) return std::move(last_run.status);
                       if (!key.empty()) {
                         TXFN_RETURN_IF_ERROR(
                             AddIdempotencyKey(key, last_run.value, &last_run.commit));
                       }
                       return Commit(*entry, std::move(last_run.commit), std::move(intent));
                     }));
    if (replay.has_value()) {
      replayed_.fetch_add(1, std::memory_order_relaxed);
      return Replayed(*replay, outcome.attempts);
    }
    mutations_.fetch_add(1, std::memory_order_relaxed);
    return ToCallResult(std::move(last_run), outcome.commit_ts, outcome.attempts);
  }

  absl::Status QueryAsync(std::string_view tenant, std::string_view function, const Value& args,
                          Callback done) override {
    TXFN_ASSIGN_OR_RETURN(std::shared_ptr<TenantEntry> entry, Open(tenant));
    std::shared_ptr<const Snapshot> snapshot = entry->committer->Latest();
    TXFN_RETURN_IF_ERROR(CheckEnabled(*snapshot));
    const Timestamp ts = snapshot->ts();
    BeginAsync();
    absl::Status s =
        runner_.RunAsync(std::move(snapshot), MakeRequest(function, args, FunctionKind::kQuery),
                         [this, ts, done = std::move(done)](RunResult r) {
                           if (r.status.ok()) {
                             queries_.fetch_add(1, std::memory_order_relaxed);
                             done(ToCallResult(std::move(r), ts, 1));
                           } else {
                             done(std::move(r.status));
                           }
                           EndAsync();
                         });
    if (!s.ok()) EndAsync();
    return s;
  }

  absl::Status MutationAsync(std::string_view tenant, std::string_view function, const Value& args,
                             const MutationOptions& options, Callback done) override {
    if (!options.idempotency_key.empty()) {
      TXFN_RETURN_IF_ERROR(ValidateIdempotencyKey(options.idempotency_key));
    }
    TXFN_ASSIGN_OR_RETURN(std::shared_ptr<TenantEntry> entry, Open(tenant));
    auto call = std::make_shared<AsyncMutation>(
        AsyncMutation{.entry = std::move(entry),
                      .request = MakeRequest(function, args, FunctionKind::kMutation),
                      .idempotency_key = options.idempotency_key,
                      .done = std::move(done),
                      .call_key = absl::HashOf(function, args)});
    TXFN_RETURN_IF_ERROR(CheckEnabled(*call->entry->committer->Latest()));
    BeginAsync();
    std::shared_ptr<internal::Lane> predicted = PredictedLane(*call->entry, call->call_key);
    absl::Status s = predicted != nullptr ? EnterLaneThenSubmit(call, std::move(predicted))
                                          : SubmitMutation(call);
    if (!s.ok()) {
      LeaveLane(*call);
      EndAsync();
    }
    return s;
  }

  absl::Status ApplyRetention() override {
    if (options_.version_retention == absl::InfiniteDuration()) return absl::OkStatus();
    // One pass at a time (the background thread and a host's call).
    internal::MutexLock pass(&retention_pass_mu_);
    const Timestamp now = Now();
    const absl::Duration keep =
        std::max(options_.version_retention, options_.committer.conflict_window);
    const auto keep_ns = static_cast<Timestamp>(absl::ToInt64Nanoseconds(keep));
    std::vector<std::string> tenants;
    if (now > keep_ns) {  // else nothing is that old yet
      TXFN_ASSIGN_OR_RETURN(tenants, storage_->ListTenants());
    }
    absl::Status first_error;
    RetentionStats delta{.passes = 1};
    for (const std::string& tenant : tenants) {
      while (true) {
        absl::StatusOr<RetentionResult> r =
            storage_->ApplyRetention(tenant, now - keep_ns, kRetentionStepCommits);
        if (absl::IsUnimplemented(r.status())) return absl::OkStatus();  // keeps everything
        if (!r.ok()) {
          ++delta.failures;
          if (first_error.ok()) first_error = r.status();
          break;
        }
        delta.versions_dropped += r->versions_dropped;
        delta.commits_dropped += r->commits_dropped;
        if (r->done) break;
      }
    }
    internal::MutexLock lock(&retention_mu_);
    retention_stats_.passes += delta.passes;
    retention_stats_.versions_dropped += delta.versions_dropped;
    retention_stats_.commits_dropped += delta.commits_dropped;
    retention_stats_.failures += delta.failures;
    return first_error;
  }

  size_t SweepTenants() override {
    const Timestamp now = Now();
    const bool close_idle = options_.tenant_idle_timeout != absl::InfiniteDuration();
    const auto idle_ns = static_cast<Timestamp>(
        absl::ToInt64Nanoseconds(std::max(options_.tenant_idle_timeout, absl::ZeroDuration())));
    std::vector<std::shared_ptr<TenantEntry>> open;
    std::vector<std::shared_ptr<TenantEntry>> closed;  // destroyed outside map_mu_
    {
      internal::MutexLock lock(&map_mu_);
      open.reserve(tenants_.size());
      for (auto it = tenants_.begin(); it != tenants_.end();) {
        const std::shared_ptr<TenantEntry>& entry = it->second;
        const Timestamp used = entry->last_used.load(std::memory_order_relaxed);
        // use_count() == 1: only the map holds it (see the file comment).
        if (close_idle && entry.use_count() == 1 && (now <= used ? 0 : now - used) >= idle_ns) {
          CommitterStats gone = entry->committer->stats();
          gone.history_keys = gone.history_commits = 0;
          closed_stats_ += gone;
          closed.push_back(entry);
          tenants_.erase(it++);
        } else {
          open.push_back(entry);
          ++it;
        }
      }
      // Hand back the table's memory once most of it is empty.
      if (!closed.empty() && tenants_.capacity() > 4 * tenants_.size() + 64) tenants_.rehash(0);
      tenants_closed_idle_ += closed.size();
    }
    // A committer whose batch is being written prunes itself.
    for (const std::shared_ptr<TenantEntry>& entry : open)
      (void)entry->committer->PruneHistory(now);
    return closed.size();
  }

  EngineStats stats() const override {
    EngineStats s{.queries = queries_.load(std::memory_order_relaxed),
                  .mutations = mutations_.load(std::memory_order_relaxed),
                  .replayed = replayed_.load(std::memory_order_relaxed),
                  .conflicts = conflicts_.load(std::memory_order_relaxed),
                  .retries = retries_.load(std::memory_order_relaxed),
                  .serialised = serialised_.load(std::memory_order_relaxed),
                  .deploys = deploys_.load(std::memory_order_relaxed),
                  .deploys_refused = deploys_refused_.load(std::memory_order_relaxed),
                  .scheduler = scheduler_->stats(),
                  .module_cache = runner_.module_cache_stats(),
                  .metadata_cache = {.hits = metadata_hits_.load(std::memory_order_relaxed),
                                     .misses = metadata_misses_.load(std::memory_order_relaxed)}};
    {
      internal::MutexLock lock(&retention_mu_);
      s.retention = retention_stats_;
    }
    internal::MutexLock lock(&map_mu_);
    s.committer = closed_stats_;
    for (const auto& [name, entry] : tenants_) {
      s.committer += entry->committer->stats();
    }
    s.tenants_open = tenants_.size();
    s.tenants_closed_idle = tenants_closed_idle_;
    return s;
  }

 private:
  struct AsyncMutation {
    std::shared_ptr<TenantEntry> entry;
    RunRequest request;
    std::string idempotency_key;  // empty: none
    Callback done;
    uint64_t call_key = 0;  // the contention lanes' key: function and arguments
    int attempt = 0;
    RetryBudget budget;
    bool serialised = false;
    // The lane whose turn this call holds (or is queued for, until its
    // callback runs); set by EnterLaneThenSubmit, released by Complete.
    std::shared_ptr<internal::Lane> lane;
    std::shared_ptr<internal::Lane> next_lane;  // PlanRetry's, for the retry
  };

  // The background thread: a tenant sweep every tenant_sweep_interval and,
  // unless retention is off, a retention pass every retention_interval, until
  // stopped.
  void BackgroundLoop() {
    const bool retention = options_.version_retention != absl::InfiniteDuration();
    const absl::Duration retention_every =
        std::clamp(options_.retention_interval, absl::Milliseconds(1), absl::Hours(1));
    const absl::Duration sweep_every =
        std::clamp(options_.tenant_sweep_interval, absl::Milliseconds(1), absl::Hours(1));
    absl::Time next_retention = absl::Now() + retention_every;
    absl::Time next_sweep = absl::Now() + sweep_every;
    while (true) {
      const absl::Time wake = retention ? std::min(next_retention, next_sweep) : next_sweep;
      {
        internal::MutexLock lock(&retention_mu_);
        retention_cv_.WaitWithTimeout(
            std::max(wake - absl::Now(), absl::ZeroDuration()),
            [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(retention_mu_) { return stop_background_; });
        if (stop_background_) return;
      }
      const absl::Time now = absl::Now();
      if (now >= next_sweep) {
        (void)SweepTenants();
        next_sweep = now + sweep_every;
      }
      if (retention && now >= next_retention) {
        // Failures are counted (stats().retention) and retried next pass.
        (void)ApplyRetention();
        next_retention = now + retention_every;
      }
    }
  }

  // How a mutation retries after a conflict, blocking or not: a call that
  // conflicted on a read range retries in that range's lane
  // (lib/contention_lanes.h), one at a time with the others that lost on it
  // and without backoff (waiting for the lane is the backoff); a call whose
  // key conflicted recently starts in its lane. The first kFreeLaneEntries
  // entries into a lane are not counted against mutation_retry.max_attempts;
  // conflicts inside a lane (with calls not in it) and conflicts that name no
  // range are (the blocking form backs off before the latter, as
  // RetryCommits does).
  static constexpr int kFreeLaneEntries = 4;
  std::shared_ptr<internal::Lane> PredictedLane(TenantEntry& entry, uint64_t call_key) {
    return options_.contention_lanes ? entry.lanes.Predicted(call_key, absl::Now()) : nullptr;
  }
  // Counts a retryable commit failure and plans the retry.
  RetryPlan PlanRetry(TenantEntry& entry, uint64_t call_key, const absl::Status& conflict,
                      const internal::Lane* held, RetryBudget& budget) {
    const int max_attempts = std::max(1, options_.mutation_retry.max_attempts);
    std::optional<ReadRange> read = ConflictingRead(conflict);
    RetryPlan plan;
    if (options_.contention_lanes && read.has_value()) {
      plan.lane = entry.lanes.OnConflict(call_key, *read, absl::Now());
    }
    // (max_attempts 1 asks for no retry at all: no free entry either.)
    const bool free_entry = plan.lane != nullptr && plan.lane.get() != held &&
                            budget.free_entries < kFreeLaneEntries && max_attempts > 1;
    if (free_entry) {
      ++budget.free_entries;
    } else {
      ++budget.counted;
    }
    plan.retry = budget.counted < max_attempts;
    CountConflict(plan.retry);
    return plan;
  }

  // RetryCommits (txfn/retry.h) with contention lanes (PlanRetry).
  absl::StatusOr<CommitOutcome> RetryInLanes(
      TenantEntry& entry, uint64_t call_key, std::string_view what,
      absl::FunctionRef<absl::StatusOr<absl::StatusOr<Timestamp>>(int attempt)> attempt) {
    internal::LaneSlot slot;
    slot.Enter(PredictedLane(entry, call_key));
    bool serialised = slot.held() != nullptr;
    absl::Cleanup count_serialised = [&] {
      if (serialised) serialised_.fetch_add(1, std::memory_order_relaxed);
    };
    JitteredBackoff backoff(options_.mutation_retry);
    RetryBudget budget;
    for (int n = 1;; ++n) {
      absl::StatusOr<absl::StatusOr<Timestamp>> result = attempt(n);
      if (!result.ok()) return result.status();  // failed before its commit
      if (result->ok()) return CommitOutcome{.commit_ts = **result, .attempts = n};
      const absl::Status last = result->status();
      if (!IsRetryableCommitError(last)) return last;
      RetryPlan plan = PlanRetry(entry, call_key, last, slot.held(), budget);
      if (!plan.retry) return RetriesExhausted(what, n, last);
      if (plan.lane != nullptr) {
        slot.Enter(std::move(plan.lane));
        serialised = true;
      } else if (slot.held() == nullptr) {
        backoff.Sleep();
      }
    }
  }

  // The committer's clock (the engine's time for retention and idle tenants).
  Timestamp Now() const {
    return options_.committer.clock ? options_.committer.clock()
                                    : static_cast<Timestamp>(absl::GetCurrentTimeNanos());
  }
  void Touch(TenantEntry& entry) const { entry.last_used.store(Now(), std::memory_order_relaxed); }

  void CountConflict(bool will_retry) {
    conflicts_.fetch_add(1, std::memory_order_relaxed);
    if (will_retry) retries_.fetch_add(1, std::memory_order_relaxed);
  }

  static absl::Status CheckEnabled(const Snapshot& snapshot) {
    if (!snapshot.metadata().enabled()) {
      return absl::FailedPreconditionError(StrCat("tenant '", snapshot.tenant(), "' is disabled"));
    }
    return absl::OkStatus();
  }

  RunRequest MakeRequest(std::string_view function, const Value& args, FunctionKind kind) {
    uint64_t seed;
    {
      internal::MutexLock lock(&rng_mu_);
      seed = absl::Uniform<uint64_t>(rng_);
    }
    return RunRequest{.function = std::string(function), .args = args, .kind = kind, .seed = seed};
  }

  std::shared_ptr<TenantEntry> FindOpen(std::string_view tenant) const {
    internal::MutexLock lock(&map_mu_);
    auto it = tenants_.find(ToAbsl(tenant));
    return it == tenants_.end() ? nullptr : it->second;
  }

  // The open tenant, opening its committer on first use (or after it was
  // closed idle).
  absl::StatusOr<std::shared_ptr<TenantEntry>> Open(std::string_view tenant) {
    if (std::shared_ptr<TenantEntry> entry = FindOpen(tenant)) {
      metadata_hits_.fetch_add(1, std::memory_order_relaxed);
      Touch(*entry);
      return entry;
    }
    TXFN_RETURN_IF_ERROR(ValidateTenantName(tenant));
    internal::MutexLock lifecycle(&lifecycle_mu_);
    if (std::shared_ptr<TenantEntry> entry = FindOpen(tenant)) {
      metadata_hits_.fetch_add(1, std::memory_order_relaxed);
      Touch(*entry);
      return entry;
    }
    metadata_misses_.fetch_add(1, std::memory_order_relaxed);
    TXFN_ASSIGN_OR_RETURN(Timestamp max, storage_->MaxCommittedTimestamp(tenant));
    if (max == 0) return absl::NotFoundError(StrCat("tenant '", tenant, "' not found"));
    auto entry = std::make_shared<TenantEntry>();
    TXFN_ASSIGN_OR_RETURN(entry->committer,
                          Committer::Open(storage_, std::string(tenant), options_.committer));
    Touch(*entry);
    internal::MutexLock lock(&map_mu_);
    tenants_[ToAbsl(tenant)] = entry;
    return entry;
  }

  absl::StatusOr<Timestamp> Commit(TenantEntry& entry, PreparedCommit commit,
                                   CommitIntent intent = {}, BatchHold hold = BatchHold::kAllowed) {
    internal::ReaderMutexLock lock(&entry.mu);
    return CommitLocked(entry, std::move(commit), std::move(intent), hold);
  }
  absl::StatusOr<Timestamp> CommitLocked(TenantEntry& entry, PreparedCommit commit,
                                         CommitIntent intent = {},
                                         BatchHold hold = BatchHold::kAllowed)
      ABSL_SHARED_LOCKS_REQUIRED(entry.mu) {
    if (entry.deleted) {
      return absl::NotFoundError(StrCat("tenant '", entry.committer->tenant(), "' was deleted"));
    }
    return entry.committer->Commit(std::move(commit), std::move(intent), hold);
  }

  // A system transaction (deploy, enable), retried on conflict. Its history
  // is pinned: validating or backfilling a large table may take longer than
  // the conflict window. It runs optimistically first; once a conflict
  // showed the tenant is being written, it runs again holding the tenant's
  // commits off (they wait, then conflict with it and retry), so a deploy
  // that reads a whole table cannot be starved by a steady stream of writes.
  absl::Status CommitWithRetry(TenantEntry& entry,
                               const std::function<absl::Status(Transaction&)>& body) {
    auto attempt =
        [&]() ABSL_SHARED_LOCKS_REQUIRED(entry.mu) -> absl::StatusOr<absl::StatusOr<Timestamp>> {
      std::shared_ptr<const Snapshot> snapshot = entry.committer->Latest();
      HistoryPin pin = entry.committer->PinHistory(snapshot->ts());
      Transaction txn(std::move(snapshot));
      TXFN_RETURN_IF_ERROR(body(txn));
      return CommitLocked(entry, txn.Prepare());
    };
    return RetryCommits(
               "system transaction", options_.mutation_retry,
               [&](int n) -> absl::StatusOr<absl::StatusOr<Timestamp>> {
                 if (n == 1) {
                   internal::ReaderMutexLock lock(&entry.mu);
                   return attempt();
                 }
                 internal::WriterMutexLock lock(&entry.mu);
                 return attempt();
               },
               [&](bool) { conflicts_.fetch_add(1, std::memory_order_relaxed); })
        .status();
  }

  absl::Status DeployImpl(std::string_view tenant,
                          const std::map<std::string, std::string>& modules, const Schema& schema) {
    TXFN_ASSIGN_OR_RETURN(std::shared_ptr<TenantEntry> entry, Open(tenant));
    for (const auto& [path, source] : modules) {
      if (path.empty() || path.find(':') != std::string::npos) {
        return absl::InvalidArgumentError(
            StrCat("deploy refused: bad module path '", path, "' (empty or containing ':')"));
      }
    }
    return CommitWithRetry(*entry, [&](Transaction& txn) -> absl::Status {
      if (absl::Status s = txn.DeploySchema(schema); !s.ok()) {
        return absl::Status(s.code(), StrCat("deploy refused: schema: ", s.message()));
      }
      std::vector<std::string> removed;
      for (const auto& [path, source] : txn.metadata().modules()) {
        if (!modules.contains(path)) removed.push_back(path);
      }
      for (const std::string& path : removed) TXFN_RETURN_IF_ERROR(txn.DeleteModule(path));
      for (const auto& [path, source] : modules) TXFN_RETURN_IF_ERROR(txn.PutModule(path, source));
      // Compile, link and evaluate the new modules as they would be installed.
      auto candidate =
          std::make_shared<const Snapshot>(storage_, std::string(tenant), txn.begin_ts(),
                                           std::make_shared<const TenantMetadata>(txn.metadata()));
      if (absl::Status s = runner_.CheckModules(std::move(candidate)); !s.ok()) {
        if (absl::IsResourceExhausted(s) || absl::IsUnavailable(s)) return s;
        return absl::InvalidArgumentError(StrCat("deploy refused: ", s.message()));
      }
      return absl::OkStatus();
    });
  }

  absl::Status SubmitMutation(const std::shared_ptr<AsyncMutation>& call) {
    ++call->attempt;
    std::shared_ptr<const Snapshot> snapshot = call->entry->committer->Latest();
    if (absl::Status s = CheckEnabled(*snapshot); !s.ok()) return s;
    if (!call->idempotency_key.empty()) {
      TXFN_ASSIGN_OR_RETURN(std::optional<IdempotentResult> replay,
                            FindIdempotencyKey(*snapshot, call->idempotency_key));
      if (replay.has_value()) {
        // Answered without running; `done` still runs on a txfn thread.
        return scheduler_->Submit(call->entry->committer->tenant(),
                                  [this, call, replay = *std::move(replay)](IsolateLease&) {
                                    replayed_.fetch_add(1, std::memory_order_relaxed);
                                    Complete(*call, Replayed(replay, call->attempt));
                                  });
      }
    }
    return runner_.RunAsync(std::move(snapshot), call->request, [this, call](RunResult r) {
      std::optional<absl::StatusOr<CallResult>> out = FinishMutation(*call, std::move(r));
      if (!out.has_value()) {  // a conflict: run again on a newer snapshot
        absl::Status s = RetryAsync(call);
        if (s.ok()) return;  // the next attempt owns the call now
        out = s;
      }
      Complete(*call, *std::move(out));
    });
  }

  // The next attempt of a call that conflicted: in the lane PlanRetry chose
  // (waiting for its turn without blocking this thread), or at once.
  absl::Status RetryAsync(const std::shared_ptr<AsyncMutation>& call) {
    std::shared_ptr<internal::Lane> lane = std::move(call->next_lane);
    if (lane == nullptr || lane == call->lane) return SubmitMutation(call);
    LeaveLane(*call);
    return EnterLaneThenSubmit(call, std::move(lane));
  }

  // Submits the call's next attempt once it holds `lane`'s turn: now if the
  // lane is free, else from the thread that hands the turn over.
  absl::Status EnterLaneThenSubmit(const std::shared_ptr<AsyncMutation>& call,
                                   std::shared_ptr<internal::Lane> lane) {
    if (!call->serialised) {
      call->serialised = true;
      serialised_.fetch_add(1, std::memory_order_relaxed);
    }
    call->lane = std::move(lane);
    // Once queued, the callback may run on another thread at any moment:
    // nothing below touches `call` unless the turn was taken here.
    const bool now = call->lane->AcquireOrQueue([this, call] {
      absl::Status s = SubmitMutation(call);
      if (!s.ok()) Complete(*call, s);
    });
    return now ? SubmitMutation(call) : absl::OkStatus();
  }

  // Ends an async call: its lane turn goes to the next waiter, then `done`.
  void Complete(AsyncMutation& call, absl::StatusOr<CallResult> result) {
    LeaveLane(call);
    call.done(std::move(result));
    EndAsync();
  }
  static void LeaveLane(AsyncMutation& call) {
    if (call.lane == nullptr) return;
    call.lane->Release();
    call.lane.reset();
  }

  // Commits a finished run; nullopt asks for another attempt.
  std::optional<absl::StatusOr<CallResult>> FinishMutation(AsyncMutation& call, RunResult r) {
    if (!r.status.ok()) return absl::StatusOr<CallResult>(std::move(r.status));
    if (!call.idempotency_key.empty()) {
      absl::Status keyed = AddIdempotencyKey(call.idempotency_key, r.value, &r.commit);
      if (!keyed.ok()) return absl::StatusOr<CallResult>(keyed);
    }
    // On a scheduler worker: never hold the batch open (the commits it would
    // wait for may need this very worker to run their functions), and do not
    // announce (async attempts are not waited for).
    absl::StatusOr<Timestamp> ts =
        Commit(*call.entry, std::move(r.commit), CommitIntent(), BatchHold::kNever);
    if (ts.ok()) {
      mutations_.fetch_add(1, std::memory_order_relaxed);
      return ToCallResult(std::move(r), *ts, call.attempt);
    }
    if (!IsRetryableCommitError(ts.status())) return absl::StatusOr<CallResult>(ts.status());
    RetryPlan plan =
        PlanRetry(*call.entry, call.call_key, ts.status(), call.lane.get(), call.budget);
    if (!plan.retry) {
      return absl::StatusOr<CallResult>(
          RetriesExhausted(call.request.function, call.attempt, ts.status()));
    }
    call.next_lane = std::move(plan.lane);
    return std::nullopt;
  }

  void BeginAsync() {
    internal::MutexLock lock(&async_mu_);
    ++async_calls_;
  }
  void EndAsync() {
    internal::MutexLock lock(&async_mu_);
    if (--async_calls_ == 0) async_cv_.SignalAll();
  }

  const EngineOptions options_;
  const std::shared_ptr<Storage> storage_;
  const std::shared_ptr<IsolateScheduler> scheduler_;
  FunctionRunner runner_;

  internal::Mutex lifecycle_mu_ ABSL_ACQUIRED_BEFORE(map_mu_);
  mutable internal::Mutex map_mu_;
  absl::flat_hash_map<std::string, std::shared_ptr<TenantEntry>> tenants_ ABSL_GUARDED_BY(map_mu_);
  // What the committers closed idle had counted (their stats live on).
  CommitterStats closed_stats_ ABSL_GUARDED_BY(map_mu_);
  uint64_t tenants_closed_idle_ ABSL_GUARDED_BY(map_mu_) = 0;

  internal::Mutex rng_mu_;
  absl::BitGen rng_ ABSL_GUARDED_BY(rng_mu_);

  internal::Mutex async_mu_;
  internal::CondVar async_cv_{&async_mu_};
  int64_t async_calls_ ABSL_GUARDED_BY(async_mu_) = 0;

  std::atomic<uint64_t> queries_{0};
  std::atomic<uint64_t> mutations_{0};
  std::atomic<uint64_t> replayed_{0};
  std::atomic<uint64_t> conflicts_{0};
  std::atomic<uint64_t> retries_{0};
  std::atomic<uint64_t> serialised_{0};
  std::atomic<uint64_t> deploys_{0};
  std::atomic<uint64_t> deploys_refused_{0};
  std::atomic<uint64_t> metadata_hits_{0};
  std::atomic<uint64_t> metadata_misses_{0};

  // Version retention: passes are serialised by retention_pass_mu_. The
  // background thread (retention and tenant sweeps) waits on retention_cv_.
  // Last member: started in the constructor once everything else exists,
  // joined first in the destructor.
  internal::Mutex retention_pass_mu_;
  mutable internal::Mutex retention_mu_;
  internal::CondVar retention_cv_{&retention_mu_};
  bool stop_background_ ABSL_GUARDED_BY(retention_mu_) = false;
  RetentionStats retention_stats_ ABSL_GUARDED_BY(retention_mu_);
  std::thread background_thread_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<Engine>> Engine::Open(EngineOptions options) {
  std::shared_ptr<Storage> storage = options.custom_storage;
  if (storage == nullptr) {
    if (options.storage == EngineStorage::kMemory) {
      storage = std::make_shared<InMemoryStorage>();
    } else {
      if (options.path.empty()) {
        return absl::InvalidArgumentError("Engine::Open: an SQLite engine needs a path");
      }
      TXFN_ASSIGN_OR_RETURN(std::unique_ptr<SqliteStorage> sqlite,
                            SqliteStorage::Open(options.path, options.sqlite));
      storage = std::move(sqlite);
    }
  }
  IsolateSchedulerOptions scheduler_options = options.scheduler;
  // The engine's isolates run the function runner.
  if (scheduler_options.customizer == nullptr) {
    scheduler_options.customizer = FunctionRunnerIsolateCustomizer();
  }
  if (scheduler_options.max_in_flight_per_tenant == 0) {
    scheduler_options.max_in_flight_per_tenant =
        static_cast<int>(std::min<size_t>(scheduler_options.queue_capacity, 1 << 30));
  }
  TXFN_ASSIGN_OR_RETURN(std::unique_ptr<IsolateScheduler> scheduler,
                        IsolateScheduler::Create(scheduler_options));
  return std::make_unique<EngineImpl>(std::move(options), std::move(storage), std::move(scheduler));
}

}  // namespace txfn

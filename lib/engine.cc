// The embedded engine: a thin assembly of the public parts on one Storage —
// TenantCommitters (committers per tenant), one IsolateScheduler, one
// FunctionRunner, a CallPath and the deploy check — plus the background
// thread that sweeps idle tenants and applies version retention.
#include "txfn/engine.h"

#include <algorithm>
#include <atomic>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/cord.h"
#include "absl/strings/escaping.h"
#include "absl/time/clock.h"
#include "lib/queued_calls.h"
#include "lib/reserved_prune.h"
#include "txfn/clock.h"
#include "txfn/deploy.h"
#include "txfn/function_runner.h"
#include "txfn/idempotency.h"
#include "txfn/internal/mutex.h"
#include "txfn/internal/strings.h"
#include "txfn/status_macros.h"
#include "txfn/transaction.h"

namespace txfn {
namespace {

using internal::StrCat;

// Commits one ApplyRetention call processes at most, so a retention pass never holds writes up
// for long (SQLite: one write transaction per call, which every tenant's writes wait for).
constexpr size_t kRetentionStepCommits = 1000;
// What one such call's commits should cost. Commits differ in cost by thousands of times (a
// document of 1 MB: its retention reads it, ~3-6 ms here), so a pass's first step is one
// commit, each tenant's first eight, and the next ones are sized by what a commit cost in the
// last: its time less the least any step of the pass took (the part every step pays: the
// transaction, its commit, waiting for the store behind other writers), growing at most 2x a
// step. After a step that took over kRetentionPause the pass waits as long (up to the
// target), so writers waiting for the store go first. A tenant's 218 commits of 15 documents
// of 1 MB took one 20 s step, stalling every tenant's commits (hunt of 2026-12-07).
constexpr size_t kRetentionFirstStepCommits = 8;
constexpr absl::Duration kRetentionStepTarget = absl::Milliseconds(20);
constexpr absl::Duration kRetentionPause = absl::Milliseconds(2);
// Tenants whose idempotency keys one step of the background thread looks at, so that a pass
// over 10,000 tenants does not hold up the tenant sweeps (or Close) for long.
constexpr size_t kKeyPassSlice = 64;

int WorkerCount(const IsolateSchedulerOptions& options) {
  return options.workers > 0 ? options.workers
                             : std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
}

// Runs on `primary`; what it refuses outright runs on `fallback` (if not null).
class ExecutorWithFallback final : public FunctionExecutor {
 public:
  ExecutorWithFallback(std::shared_ptr<FunctionExecutor> primary, FunctionExecutor* fallback)
      : primary_(std::move(primary)), fallback_(fallback) {}

  absl::Status RunAsync(std::shared_ptr<const Snapshot> snapshot, RunRequest request,
                        std::function<void(RunResult)> done) override {
    // A result answers this request: its tenant and snapshot. Another is dropped, never
    // returned nor committed (a runner that mixed requests up gave one tenant's query another
    // tenant's answer, and a mutation validated against a newer snapshot than it was sent
    // committed as if it had read the older one: a lost update). The snapshot a run may take
    // as it begins (RunRequest::snapshot_at_start) is the request's too, once it was given.
    auto at_start = std::make_shared<std::atomic<Timestamp>>(snapshot->ts());
    if (request.snapshot_at_start) {
      request.snapshot_at_start = [at_start, give = std::move(request.snapshot_at_start)]()
          -> absl::StatusOr<std::shared_ptr<const Snapshot>> {
        absl::StatusOr<std::shared_ptr<const Snapshot>> at = give();
        if (at.ok() && *at != nullptr) at_start->store((*at)->ts());
        return at;
      };
    }
    done = [tenant = snapshot->tenant(), ts = snapshot->ts(), at_start,
            done = std::move(done)](RunResult r) mutable {
      const bool requests_snapshot = r.commit.begin_ts == ts || r.commit.begin_ts == *at_start;
      if (r.status.ok() && (r.commit.tenant != tenant || !requests_snapshot)) {
        r = RunResult{
            .status = absl::InternalError(StrCat(
                "the function executor answered for tenant '", absl::CEscape(r.commit.tenant),
                "' at snapshot ", r.commit.begin_ts, ", not for the request's, tenant '",
                absl::CEscape(tenant), "' at snapshot ", ts, ": its result was dropped"))};
      }
      done(std::move(r));
    };
    // TryRunAsync: a refusal hands the request and callback back, uncopied.
    absl::Status refused = primary_->TryRunAsync(snapshot, request, done);
    if (refused.ok() || fallback_ == nullptr) return refused;
    return fallback_->RunAsync(std::move(snapshot), std::move(request), std::move(done));
  }

 private:
  const std::shared_ptr<FunctionExecutor> primary_;
  FunctionExecutor* const fallback_;
};

class EngineImpl final : public Engine {
 public:
  EngineImpl(EngineOptions options, std::shared_ptr<Storage> storage,
             std::shared_ptr<IsolateScheduler> scheduler)
      : options_(std::move(options)),
        scheduler_(std::move(scheduler)),
        runner_(scheduler_, options_.runner),
        executor_(options_.executor, options_.executor_falls_back_to_local ? &runner_ : nullptr),
        tenants_(std::move(storage),
                 {.committer = options_.committer, .idle_timeout = options_.tenant_idle_timeout}),
        calls_(options_.executor != nullptr ? static_cast<FunctionExecutor&>(executor_) : runner_,
               *scheduler_,
               {.mutation_retry = options_.mutation_retry,
                .contention_lanes = options_.contention_lanes,
                .on_scheduled =
                    [this](OpenTenant& tenant, std::vector<ScheduledCall> calls) {
                      queued_->OnScheduled(tenant, std::move(calls));
                    },
                .on_cancelled =
                    [this](OpenTenant& tenant, std::vector<CallId> ids) {
                      queued_->OnCancelled(tenant, std::move(ids));
                    },
                .check_scheduled =
                    [this](OpenTenant& tenant, std::string_view function, const Value& args) {
                      return queued_->CheckScheduled(tenant, function, args);
                    },
                .admit_scheduled =
                    [this](OpenTenant& tenant, const std::vector<ScheduledCall>& calls) {
                      return queued_->AdmitScheduled(tenant, calls);
                    }}),
        queued_(std::make_unique<internal::QueuedCalls>(options_.queued, tenants_, calls_, runner_,
                                                        WorkerCount(options_.scheduler))) {
    background_thread_ = std::thread([this] { BackgroundLoop(); });
  }

  absl::Status Start() { return queued_->Start(); }

  ~EngineImpl() override {
    {
      internal::MutexLock lock(&background_mu_);
      stop_background_ = true;
      background_cv_.SignalAll();
    }
    background_thread_.join();
    // calls_ (declared after tenants_) waits for the async calls in flight.
  }

  // ---- Tenants ----

  absl::Status CreateTenant(std::string_view tenant) override { return tenants_.Create(tenant); }

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
      return absl::InvalidArgumentError(StrCat("deploy refused: bad ", schema.status().message()));
    }
    return Deploy(tenant, modules, *schema);
  }

  absl::Status SetEnabled(std::string_view tenant, bool enabled) override {
    TXFN_ASSIGN_OR_RETURN(std::shared_ptr<OpenTenant> open, tenants_.Get(tenant));
    return open
        ->CommitSystemTransaction([&](Transaction& txn) { return txn.SetEnabled(enabled); },
                                  options_.mutation_retry, CountSystemConflict())
        .status();
  }

  absl::Status DeleteTenant(std::string_view tenant) override {
    TXFN_RETURN_IF_ERROR(tenants_.Delete(tenant));
    queued_->OnDeleted(tenant);
    (void)runner_.ForgetTenant(std::string(tenant));
    return absl::OkStatus();
  }

  absl::StatusOr<bool> DeployCreatingTenant(std::string_view tenant,
                                            absl::FunctionRef<absl::Status()> deploy) override {
    Timestamp created_at = 0;
    absl::Status created = tenants_.Create(tenant, &created_at);
    if (absl::IsAlreadyExists(created)) {
      absl::Status deployed = deploy();
      if (!absl::IsNotFound(deployed)) {
        TXFN_RETURN_IF_ERROR(deployed);
        return false;
      }
      // Its creator deleted it again since (its own first deploy was refused): create it here.
      created = tenants_.Create(tenant, &created_at);
      if (absl::IsAlreadyExists(created)) return deployed;
    }
    TXFN_RETURN_IF_ERROR(created);
    absl::Status deployed = deploy();
    if (deployed.ok()) return true;
    // Deleted only if its creation is still its newest commit: another first deploy that
    // found it may have committed since, here or in another process.
    absl::StatusOr<bool> deleted = tenants_.DeleteIfNewest(tenant, created_at);
    if (deleted.ok()) return deployed;  // deleted, or kept for the later commit
    absl::Status said(deployed.code(),
                      StrCat(deployed.message(), "; tenant '", tenant,
                             "', created for it, may be left empty (deleting it failed: ",
                             deleted.status().message(), ")"));
    deployed.ForEachPayload(
        [&](absl::string_view url, const absl::Cord& payload) { said.SetPayload(url, payload); });
    return said;
  }

  absl::StatusOr<std::vector<std::string>> ListTenants() override {
    return tenants_.storage()->ListTenants();
  }

  absl::StatusOr<std::shared_ptr<const Snapshot>> Latest(std::string_view tenant) override {
    TXFN_ASSIGN_OR_RETURN(std::shared_ptr<OpenTenant> open, tenants_.Get(tenant));
    return open->committer().Newest();
  }

  // ---- Calls ----

  absl::StatusOr<CallResult> Query(std::string_view tenant, std::string_view function,
                                   const Value& args, const QueryOptions& options) override {
    TXFN_ASSIGN_OR_RETURN(std::shared_ptr<OpenTenant> open, tenants_.Get(tenant));
    return calls_.Query(*open, function, args, options);
  }

  absl::StatusOr<CallResult> Mutation(std::string_view tenant, std::string_view function,
                                      const Value& args, const MutationOptions& options) override {
    if (!options.idempotency_key.empty()) {
      // Refused before the tenant is opened.
      TXFN_RETURN_IF_ERROR(ValidateIdempotencyKey(options.idempotency_key));
    }
    TXFN_ASSIGN_OR_RETURN(std::shared_ptr<OpenTenant> open, tenants_.Get(tenant));
    return calls_.Mutation(*open, function, args, options);
  }

  absl::Status QueryAsync(std::string_view tenant, std::string_view function, const Value& args,
                          const QueryOptions& options, Callback done) override {
    TXFN_ASSIGN_OR_RETURN(std::shared_ptr<OpenTenant> open, tenants_.Get(tenant));
    return calls_.QueryAsync(std::move(open), function, args, options, std::move(done));
  }

  absl::Status MutationAsync(std::string_view tenant, std::string_view function, const Value& args,
                             const MutationOptions& options, Callback done) override {
    if (!options.idempotency_key.empty()) {
      // Refused before the tenant is opened.
      TXFN_RETURN_IF_ERROR(ValidateIdempotencyKey(options.idempotency_key));
    }
    TXFN_ASSIGN_OR_RETURN(std::shared_ptr<OpenTenant> open, tenants_.Get(tenant));
    return calls_.MutationAsync(std::move(open), function, args, options, std::move(done));
  }

  absl::StatusOr<CallResult> Action(std::string_view tenant, std::string_view function,
                                    const Value& args) override {
    return queued_->Action(tenant, function, args);
  }

  // ---- Queued calls ----

  absl::StatusOr<CallId> Submit(std::string_view tenant, std::string_view function,
                                const Value& args, const CallOptions& options) override {
    return queued_->Submit(tenant, function, args, options);
  }
  absl::StatusOr<CallInfo> GetCall(const CallId& id) override { return queued_->GetCall(id); }
  absl::Status CancelCall(const CallId& id) override { return queued_->CancelCall(id); }
  absl::StatusOr<CallInfo> GetCall(const CallId& id, std::string_view tenant) override {
    TXFN_RETURN_IF_ERROR(ValidateTenantName(tenant));
    return queued_->GetCall(id, tenant);
  }
  absl::Status CancelCall(const CallId& id, std::string_view tenant) override {
    TXFN_RETURN_IF_ERROR(ValidateTenantName(tenant));
    return queued_->CancelCall(id, tenant);
  }
  using Engine::ListCalls;
  absl::StatusOr<std::vector<CallInfo>> ListCalls(std::string_view tenant,
                                                  std::optional<CallState> state,
                                                  std::string_view function, size_t limit,
                                                  const CallId& after) override {
    return queued_->ListCalls(tenant, state, function, limit, after);
  }
  absl::StatusOr<std::vector<FunctionDepth>> QueueDepths() override { return queued_->Depths(); }
  size_t StopQueuedCalls(absl::Duration timeout) override { return queued_->Stop(timeout); }
  std::vector<std::string> ServiceNames() const override {
    std::vector<std::string> names;
    for (const auto& [name, service] : options_.queued.services) names.push_back(name);
    return names;
  }
  std::optional<double> ServiceRate(std::string_view service) const override {
    return queued_->ServiceRate(service);
  }

  // ---- Maintenance ----

  absl::Status ApplyRetention() override {
    if (options_.version_retention == absl::InfiniteDuration()) return absl::OkStatus();
    // One pass at a time (the background thread and a host's call).
    internal::MutexLock pass(&retention_pass_mu_);
    const std::shared_ptr<Storage>& storage = tenants_.storage();
    const Timestamp now = tenants_.Now();
    const absl::Duration keep =
        std::max(options_.version_retention, options_.committer.conflict_window);
    const auto keep_ns = static_cast<Timestamp>(absl::ToInt64Nanoseconds(keep));
    std::vector<std::string> tenants;
    if (now > keep_ns) {  // else nothing is that old yet
      TXFN_ASSIGN_OR_RETURN(tenants, storage->ListTenants());
    }
    absl::Status first_error;
    RetentionStats delta{.passes = 1};
    std::optional<absl::Duration> least;  // the least time a step of this pass took
    for (const std::string& tenant : tenants) {
      if (Stopping()) break;  // the engine is closing: the rest waits for the next open
      size_t step = least.has_value() ? kRetentionFirstStepCommits : 1;
      while (true) {
        const absl::Time started = absl::Now();
        absl::StatusOr<RetentionResult> r = storage->ApplyRetention(tenant, now - keep_ns, step);
        if (absl::IsUnimplemented(r.status())) return absl::OkStatus();  // keeps everything
        if (!r.ok()) {
          ++delta.failures;
          if (first_error.ok()) first_error = r.status();
          break;
        }
        delta.versions_dropped += r->versions_dropped;
        delta.commits_dropped += r->commits_dropped;
        const absl::Duration took = absl::Now() - started;
        least = std::min(least.value_or(took), took);
        if (r->done) break;
        const absl::Duration per_commit =
            (took - *least) / static_cast<int64_t>(std::max<uint64_t>(r->commits_dropped, 1));
        const double fits = per_commit <= absl::ZeroDuration()
                                ? static_cast<double>(kRetentionStepCommits)
                                : absl::FDivDuration(kRetentionStepTarget, per_commit);
        step = static_cast<size_t>(std::clamp<double>(
            fits, 1, static_cast<double>(std::min(kRetentionStepCommits, 2 * step))));
        if (took < kRetentionPause) continue;
        internal::MutexLock lock(&background_mu_);
        if (background_cv_.WaitWithTimeout(
                std::min(took, kRetentionStepTarget),
                [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(background_mu_) { return stop_background_; })) {
          break;
        }
      }
    }
    internal::MutexLock lock(&background_mu_);
    retention_stats_.passes += delta.passes;
    retention_stats_.versions_dropped += delta.versions_dropped;
    retention_stats_.commits_dropped += delta.commits_dropped;
    retention_stats_.failures += delta.failures;
    return first_error;
  }

  size_t SweepTenants() override { return tenants_.Sweep(tenants_.Now()); }

  EngineStats stats() const override {
    const CallPathStats calls = calls_.stats();
    const TenantCommittersStats tenants = tenants_.stats();
    EngineStats s{.queries = calls.queries,
                  .mutations = calls.mutations,
                  .replayed = calls.replayed,
                  .conflicts = calls.conflicts + system_conflicts_.load(std::memory_order_relaxed),
                  .retries = calls.retries,
                  .serialised = calls.serialised,
                  .deploys = deploys_.load(std::memory_order_relaxed),
                  .deploys_refused = deploys_refused_.load(std::memory_order_relaxed),
                  .committer = tenants.committer,
                  .scheduler = scheduler_->stats(),
                  .module_cache = runner_.module_cache_stats(),
                  .metadata_cache = {.hits = tenants.hits, .misses = tenants.misses},
                  .tenants_open = tenants.open,
                  .tenants_closed_idle = tenants.closed_idle,
                  .queued = queued_->stats()};
    internal::MutexLock lock(&background_mu_);
    s.retention = retention_stats_;
    return s;
  }

 private:
  // The background thread: a tenant sweep every tenant_sweep_interval and,
  // unless retention is off, a retention pass every retention_interval, until
  // stopped.
  void BackgroundLoop() {
    const bool retention = options_.version_retention != absl::InfiniteDuration();
    const absl::Duration retention_every =
        std::clamp(options_.retention_interval, absl::Milliseconds(1), absl::Hours(1));
    const absl::Duration sweep_every =
        std::clamp(options_.tenant_sweep_interval, absl::Milliseconds(1), absl::Hours(1));
    PeriodicTimer retention_timer(absl::Now() + retention_every, retention_every);
    PeriodicTimer sweep_timer(absl::Now() + sweep_every, sweep_every);
    // As the records of ended calls: only an engine that runs calls (a submit-only one beside
    // a server writes nothing: on PostgreSQL a write takes an idle tenant's lease).
    const bool forget_keys =
        options_.idempotency_key_retention != absl::InfiniteDuration() && options_.queued.run;
    internal::TenantPass key_pass(
        std::clamp(options_.idempotency_key_retention / 2, absl::Milliseconds(1), absl::Hours(1)),
        kKeyPassSlice, absl::Now());
    while (true) {
      const absl::Time before = absl::Now();
      absl::Time wake = sweep_timer.NextRun(before);
      if (retention) wake = std::min(wake, retention_timer.NextRun(before));
      if (forget_keys) {
        wake = std::min(wake, key_pass.under_way() ? before : key_pass.NextStart(before));
      }
      {
        internal::MutexLock lock(&background_mu_);
        background_cv_.WaitWithTimeout(
            std::max(wake - before, absl::ZeroDuration()),
            [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(background_mu_) { return stop_background_; });
        if (stop_background_) return;
      }
      const absl::Time now = absl::Now();
      if (sweep_timer.Due(now)) (void)SweepTenants();
      // Failures are counted (stats().retention) and retried next pass.
      if (retention && retention_timer.Due(now)) (void)ApplyRetention();
      if (forget_keys) PruneIdempotencyKeys(key_pass.Next(*tenants_.storage(), now, true));
    }
  }

  // Whether the engine is closing: background work in passes stops between its steps.
  bool Stopping() {
    internal::MutexLock lock(&background_mu_);
    return stop_background_;
  }

  // Deletes the idempotency keys of `tenants` older than idempotency_key_retention by their
  // commit timestamps, counted to the earlier of the committer's clock and the tenant's newest
  // commit (a process whose clock runs ahead of the tenant's writer must not take a key just
  // committed for an old one). Failures are retried by the next pass.
  void PruneIdempotencyKeys(absl::Span<const std::string> tenants) {
    const auto keep_ns =
        static_cast<Timestamp>(absl::ToInt64Nanoseconds(options_.idempotency_key_retention));
    uint64_t deleted = 0;
    for (const std::string& tenant : tenants) {
      if (Stopping()) break;
      absl::StatusOr<Timestamp> newest = tenants_.storage()->MaxCommittedTimestamp(tenant);
      if (!newest.ok()) continue;
      const Timestamp now = std::min(tenants_.Now(), *newest);
      if (now <= keep_ns) continue;  // nothing is that old
      auto expired = [cutoff = now - keep_ns](const IndexEntry& e) { return e.ts < cutoff; };
      (void)internal::PruneReservedIndex(
          tenants_, tenant, kIdempotencyIndex, expired, expired, [this] { return Stopping(); },
          &deleted);
    }
    internal::MutexLock lock(&background_mu_);
    retention_stats_.idempotency_keys_pruned += deleted;
  }

  std::function<void(bool)> CountSystemConflict() {
    return [this](bool) { system_conflicts_.fetch_add(1, std::memory_order_relaxed); };
  }

  absl::Status DeployImpl(std::string_view tenant,
                          const std::map<std::string, std::string>& modules, const Schema& schema) {
    TXFN_ASSIGN_OR_RETURN(std::shared_ptr<OpenTenant> open, tenants_.Get(tenant));
    // DeployTenant's transaction, with this engine's services checked too.
    std::map<std::string, FunctionInfo> functions;
    TXFN_RETURN_IF_ERROR(open->CommitSystemTransaction(
                                 [&](Transaction& txn) -> absl::Status {
                                   TXFN_RETURN_IF_ERROR(StageDeploy(txn, modules, schema));
                                   TXFN_ASSIGN_OR_RETURN(functions, DescribeDeploy(runner_, txn));
                                   TXFN_RETURN_IF_ERROR(queued_->CheckServices(functions));
                                   return RecordFunctions(txn, functions);
                                 },
                                 options_.mutation_retry, CountSystemConflict())
                             .status());
    queued_->OnDeployed(*open, functions);
    return absl::OkStatus();
  }

  const EngineOptions options_;
  const std::shared_ptr<IsolateScheduler> scheduler_;
  FunctionRunner runner_;
  ExecutorWithFallback executor_;  // options_.executor, then runner_ (if allowed)
  TenantCommitters tenants_;
  CallPath calls_;  // after tenants_: destroyed first, once its async calls are done
  // After calls_: stops its scheduler and waits for the queued calls running
  // through calls_ before calls_ goes.
  std::unique_ptr<internal::QueuedCalls> queued_;

  std::atomic<uint64_t> system_conflicts_{0};  // deploys' and SetEnabled's
  std::atomic<uint64_t> deploys_{0};
  std::atomic<uint64_t> deploys_refused_{0};

  // Version retention: passes are serialised by retention_pass_mu_. The
  // background thread (retention and tenant sweeps) waits on background_cv_.
  // Last member: started in the constructor once everything else exists,
  // joined first in the destructor.
  internal::Mutex retention_pass_mu_;
  mutable internal::Mutex background_mu_;
  internal::CondVar background_cv_{&background_mu_};
  bool stop_background_ ABSL_GUARDED_BY(background_mu_) = false;
  RetentionStats retention_stats_ ABSL_GUARDED_BY(background_mu_);
  std::thread background_thread_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<Engine>> Engine::Open(std::shared_ptr<Storage> storage,
                                                     EngineOptions options) {
  if (storage == nullptr) return absl::InvalidArgumentError("Engine::Open: no storage");
  if (options.idempotency_key_retention <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        StrCat("EngineOptions::idempotency_key_retention is ",
               absl::FormatDuration(options.idempotency_key_retention), "; it must be positive"));
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
  auto engine =
      std::make_unique<EngineImpl>(std::move(options), std::move(storage), std::move(scheduler));
  TXFN_RETURN_IF_ERROR(engine->Start());
  return engine;
}

absl::StatusOr<CallInfo> Engine::WaitForCall(const CallId& id, std::string_view tenant,
                                             absl::Duration timeout) {
  const absl::Time end = absl::Now() + timeout;
  absl::Duration pause = absl::Milliseconds(1);
  while (true) {
    absl::StatusOr<CallInfo> info = tenant.empty() ? GetCall(id) : GetCall(id, tenant);
    if (!info.ok()) return info;
    switch (info->state) {
      case CallState::kSucceeded:
      case CallState::kFailed:
      case CallState::kDeadLettered:
      case CallState::kCancelled:
        return info;
      case CallState::kPending:
      case CallState::kRunning:
        break;
    }
    const absl::Time now = absl::Now();
    if (now >= end) {
      return absl::DeadlineExceededError(StrCat("call ", id.ToString(), " is still ",
                                                CallStateName(info->state), " after ",
                                                absl::FormatDuration(timeout)));
    }
    absl::SleepFor(std::min(pause, end - now));
    pause = std::min(2 * pause, absl::Milliseconds(100));
  }
}

}  // namespace txfn

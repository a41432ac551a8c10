#include "txfn/function_runner.h"

#include <memory>
#include <utility>

#include "lib/v8/runner_core.h"
#include "txfn/internal/mutex.h"
#include "txfn/internal/status_macros.h"

namespace txfn {

std::string_view FunctionKindName(FunctionKind kind) {
  return kind == FunctionKind::kQuery ? "query" : "mutation";
}

std::string_view LogLevelName(LogLevel level) {
  switch (level) {
    case LogLevel::kDebug:
      return "debug";
    case LogLevel::kLog:
      return "log";
    case LogLevel::kInfo:
      return "info";
    case LogLevel::kWarn:
      return "warn";
    case LogLevel::kError:
      return "error";
  }
  return "log";
}

FunctionRunner::FunctionRunner(std::shared_ptr<IsolateScheduler> scheduler,
                               FunctionRunnerOptions options)
    : scheduler_(std::move(scheduler)),
      core_(std::make_shared<internal::RunnerCore>(std::move(options))) {}

FunctionRunner::~FunctionRunner() = default;

absl::Status FunctionRunner::RunAsync(std::shared_ptr<const Snapshot> snapshot, RunRequest request,
                                      std::function<void(RunResult)> done) {
  std::string tenant = snapshot->tenant();
  // The work item keeps the core alive even if the runner goes away first.
  auto item = std::make_shared<RunRequest>(std::move(request));
  return scheduler_->Submit(std::move(tenant), [core = core_, snapshot = std::move(snapshot), item,
                                                done = std::move(done)](IsolateLease& lease) {
    Transaction txn(snapshot, internal::RunnerCore::TransactionOptionsFor(*item));
    auto result = std::make_shared<RunResult>(core->RunOnIsolate(lease, *item, txn));
    // Deliver once the isolate is idle again, so the caller's next request of
    // this tenant can reuse it and is not counted against the tenant's cap.
    lease.RunAfterRelease([done, result] { done(std::move(*result)); });
  });
}

RunResult FunctionRunner::Run(std::shared_ptr<const Snapshot> snapshot, RunRequest request) {
  struct Waiter {
    internal::Mutex mu;
    internal::CondVar cv{&mu};
    bool done ABSL_GUARDED_BY(mu) = false;
    RunResult result ABSL_GUARDED_BY(mu);
  };
  auto waiter = std::make_shared<Waiter>();
  absl::Status submitted =
      RunAsync(std::move(snapshot), std::move(request), [waiter](RunResult result) {
        internal::MutexLock lock(&waiter->mu);
        waiter->result = std::move(result);
        waiter->done = true;
        waiter->cv.SignalAll();
      });
  if (!submitted.ok()) {
    RunResult result;
    result.status = std::move(submitted);
    return result;
  }
  internal::MutexLock lock(&waiter->mu);
  waiter->cv.Wait([&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(waiter->mu) { return waiter->done; });
  return std::move(waiter->result);
}

absl::Status FunctionRunner::CheckModules(std::shared_ptr<const Snapshot> snapshot) {
  struct Waiter {
    internal::Mutex mu;
    internal::CondVar cv{&mu};
    bool done ABSL_GUARDED_BY(mu) = false;
    absl::Status status ABSL_GUARDED_BY(mu);
  };
  auto waiter = std::make_shared<Waiter>();
  std::string tenant = snapshot->tenant();
  TXFN_RETURN_IF_ERROR(scheduler_->Submit(
      std::move(tenant),
      [core = core_, snapshot = std::move(snapshot), waiter](IsolateLease& lease) {
        Transaction txn(snapshot, TransactionOptions{.read_only = true});
        absl::Status status = core->CheckModulesOnIsolate(lease, txn);
        lease.RunAfterRelease([waiter, status] {
          internal::MutexLock lock(&waiter->mu);
          waiter->status = status;
          waiter->done = true;
          waiter->cv.SignalAll();
        });
      }));
  internal::MutexLock lock(&waiter->mu);
  waiter->cv.Wait([&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(waiter->mu) { return waiter->done; });
  return waiter->status;
}

ModuleCacheStats FunctionRunner::module_cache_stats() const {
  auto s = core_->module_cache().GetStats();
  return ModuleCacheStats{
      .hits = s.hits, .misses = s.misses, .entries = s.entries, .bytes = s.weight};
}

}  // namespace txfn

// lib/v8/runner_core.h — the function runner's engine, on a given isolate.
//
// RunnerCore holds what FunctionRunner shares between its isolates: the
// options, the process-wide module code cache, and the timer that answers
// async requests still queued at their deadlines. RunOnIsolate runs one
// request on an isolate the caller already entered and locked (with a
// HandleScope open) — the IsolateScheduler's lease, or a test's own isolate.
// The parts it assembles: isolate_runtime.h (ctx.db natives, per-context
// state), module_loader.h (modules and the code cache), js_errors.h (errors
// as statuses) and runner_snapshot.h (the startup snapshot).
//
// Thread safety: RunnerCore is thread-safe; RunOnIsolate may run on many
// isolates (one request per isolate at a time) concurrently.
#ifndef TXFN_LIB_V8_RUNNER_CORE_H_
#define TXFN_LIB_V8_RUNNER_CORE_H_

#include <map>
#include <memory>
#include <string>

#include "lib/deadline_timer.h"
#include "lib/v8/module_loader.h"
#include "lib/v8/runner_snapshot.h"
#include "txfn/function_runner.h"
#include "txfn/isolate_scheduler.h"
#include "txfn/transaction.h"
#include "v8-isolate.h"

namespace txfn::internal {

class RunnerCore {
 public:
  explicit RunnerCore(FunctionRunnerOptions options);

  // Transaction options for `request`: read-only for a query, id_seed = seed
  // (deterministic_ids as the request asks).
  static TransactionOptions TransactionOptionsFor(const RunRequest& request);

  // Runs `request` on lease.isolate() against `txn`. The lease's data slot is
  // owned by the runner (it keeps per-isolate templates and a reused
  // context there). If the lease reports a limit hit at any point of the
  // request, the result is ResourceExhausted naming that limit, whatever the
  // JavaScript did meanwhile.
  RunResult RunOnIsolate(IsolateLease& lease, const RunRequest& request, Transaction& txn);

  // Compiles, links and evaluates every module of txn.metadata() in a fresh
  // context on lease.isolate(); runs no function. See
  // FunctionRunner::CheckModules.
  // With `functions`, also lists every exported query, mutation and action
  // (FunctionRunner::DescribeFunctions).
  absl::Status CheckModulesOnIsolate(IsolateLease& lease, Transaction& txn,
                                     std::map<std::string, FunctionInfo>* functions = nullptr);

  const FunctionRunnerOptions& options() const { return options_; }
  // Whether requests of `kind` (not opted in to reuse) run in the isolate's
  // hardened context: queries and mutations under ContextMode::kHardened.
  bool Hardened(FunctionKind kind) const {
    return kind != FunctionKind::kAction && options_.context_mode == ContextMode::kHardened;
  }
  ModuleCache& module_cache() { return module_cache_; }
  DeadlineTimer& deadline_timer() { return deadline_timer_; }

 private:
  FunctionRunnerOptions options_;
  ModuleCache module_cache_;
  DeadlineTimer deadline_timer_;
};

}  // namespace txfn::internal

#endif  // TXFN_LIB_V8_RUNNER_CORE_H_

// lib/v8/runner_core.h — the function runner's engine, on a given isolate.
//
// RunnerCore holds what FunctionRunner shares between its isolates: the
// options and the process-wide module code cache. RunOnIsolate runs one
// request on an isolate the caller already entered and locked (with a
// HandleScope open) — the IsolateScheduler's lease, or a test's own isolate.
//
// Thread safety: RunnerCore is thread-safe; RunOnIsolate may run on many
// isolates (one request per isolate at a time) concurrently.
#ifndef TXFN_LIB_V8_RUNNER_CORE_H_
#define TXFN_LIB_V8_RUNNER_CORE_H_

#include <memory>
#include <string>

#include "txfn/async_lru_cache.h"
#include "txfn/function_runner.h"
#include "txfn/isolate_scheduler.h"
#include "txfn/transaction.h"
#include "v8-isolate.h"

namespace txfn::internal {

// Compiled module: the source it was compiled from (to rule out hash
// collisions) and V8's code cache for it. A cold code cache (made right after
// compiling) holds only the module's top-level code; the runner replaces it,
// once, by a warm one made after the module first ran successfully, which
// also holds the functions that run compiled (so they are not compiled again
// in every fresh context).
struct CompiledModule {
  std::string source;
  std::string code_cache;
  bool warm = false;
};

// Makes isolates created with `params` start from the runner's startup
// snapshot: sets params->snapshot_blob and params->external_references. With
// it, the runner's fresh context per request is deserialised with its JS
// environment ready instead of built by running the bootstrap (several times
// cheaper). The snapshot is made once per process, on the first call (tens of
// milliseconds), and never freed. Returns false, leaving params unchanged, if
// it cannot be made; the runner then builds its contexts itself. Isolates made
// without it work too. Thread-safe.
bool UseRunnerSnapshot(v8::Isolate::CreateParams* params);

// Whether isolates and contexts made from the runner's snapshot skip V8's
// rehashing on deserialisation (see SkipRehashing in runner_core.cc). False
// if the snapshot cannot be made, or if this V8 keeps the flag elsewhere.
bool RunnerSnapshotSkipsRehashing();

class RunnerCore {
 public:
  explicit RunnerCore(FunctionRunnerOptions options);

  // Transaction options for `request`: read-only for a query, id_seed = seed.
  static TransactionOptions TransactionOptionsFor(const RunRequest& request);

  // Runs `request` on lease.isolate() against `txn`. The lease's data slot is
  // owned by the runner (it keeps per-isolate templates and a reused
  // context there).
  RunResult RunOnIsolate(IsolateLease& lease, const RunRequest& request, Transaction& txn);

  // Compiles, links and evaluates every module of txn.metadata() in a fresh
  // context on lease.isolate(); runs no function. See
  // FunctionRunner::CheckModules.
  absl::Status CheckModulesOnIsolate(IsolateLease& lease, Transaction& txn);

  const FunctionRunnerOptions& options() const { return options_; }
  AsyncLruCache<std::string, CompiledModule>& module_cache() { return module_cache_; }

 private:
  FunctionRunnerOptions options_;
  AsyncLruCache<std::string, CompiledModule> module_cache_;
};

}  // namespace txfn::internal

#endif  // TXFN_LIB_V8_RUNNER_CORE_H_

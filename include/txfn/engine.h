// txfn/engine.h — one ready assembly of txfn's parts: the embedded engine.
//
// STATUS: interface draft; the implementation is in progress (issue 5).
//
// Engine::Open assembles, on one Storage (SQLite at a path by default), a
// committer per tenant (opened on first use), snapshot publication, an
// IsolateScheduler, a FunctionRunner with its module cache, and runs tenants'
// functions: queries at the latest snapshot, mutations committed under OCC
// and retried on conflict.
//
//   auto engine = txfn::Engine::Open({.path = "app.db"});
//   (*engine)->CreateTenant("shop").IgnoreError();
//   (*engine)->Deploy("shop", {{"cart.js", source}}, schema).IgnoreError();
//   absl::StatusOr<txfn::CallResult> r =
//       (*engine)->Mutation("shop", "cart:add", txfn::Value::FromObject({...}));
//
// Thread safety: every method is thread-safe.
#ifndef TXFN_ENGINE_H_
#define TXFN_ENGINE_H_

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "txfn/committer.h"
#include "txfn/function_runner.h"
#include "txfn/isolate_scheduler.h"
#include "txfn/retry.h"
#include "txfn/schema.h"
#include "txfn/storage.h"
#include "txfn/value.h"

namespace txfn {

enum class EngineStorage { kSqlite, kMemory };

struct EngineOptions {
  EngineStorage storage = EngineStorage::kSqlite;
  std::string path;                         // the SQLite file (kSqlite)
  std::shared_ptr<Storage> custom_storage;  // if set, used instead of `storage`
  IsolateSchedulerOptions scheduler;
  FunctionRunnerOptions runner;
  CommitterOptions committer;
  // Mutations re-run on OCC conflict up to this many attempts, then Aborted.
  RetryOptions mutation_retry{.max_attempts = 8};
};

// The outcome of a call.
struct CallResult {
  Value value;
  Timestamp ts = 0;  // the snapshot a query read, or the mutation's commit ts
  int attempts = 1;  // mutation runs (1 + conflict retries)
  std::vector<LogEntry> logs;
  RunStats stats;
};

struct EngineStats {
  uint64_t queries = 0;
  uint64_t mutations = 0;
  uint64_t conflicts = 0;  // OCC conflicts seen (each caused a retry or an Aborted)
  uint64_t retries = 0;
  IsolateSchedulerStats scheduler;
  ModuleCacheStats module_cache;
};

class Engine {
 public:
  using Callback = std::function<void(absl::StatusOr<CallResult>)>;

  [[nodiscard]] static absl::StatusOr<std::unique_ptr<Engine>> Open(EngineOptions options);
  virtual ~Engine() = default;

  // ---- Tenants ----
  // AlreadyExists if it exists; InvalidArgument for a bad name.
  [[nodiscard]] virtual absl::Status CreateTenant(std::string_view tenant) = 0;
  // Replaces the tenant's modules and schema in one transaction. Validates
  // first — every module compiles, the schema is well formed, existing
  // documents fit the new schema — else refused (InvalidArgument naming the
  // problem) and the old version keeps serving.
  [[nodiscard]] virtual absl::Status Deploy(std::string_view tenant,
                                            const std::map<std::string, std::string>& modules,
                                            const Schema& schema) = 0;
  [[nodiscard]] virtual absl::Status SetEnabled(std::string_view tenant, bool enabled) = 0;
  [[nodiscard]] virtual absl::Status DeleteTenant(std::string_view tenant) = 0;
  [[nodiscard]] virtual absl::StatusOr<std::vector<std::string>> ListTenants() = 0;
  // The tenant's latest snapshot (for tools: tables, export).
  [[nodiscard]] virtual absl::StatusOr<std::shared_ptr<const Snapshot>> Latest(
      std::string_view tenant) = 0;

  // ---- Calls ----
  // `function` is "path/to/module:export". NotFound for an unknown tenant.
  [[nodiscard]] virtual absl::StatusOr<CallResult> Query(std::string_view tenant,
                                                         std::string_view function,
                                                         const Value& args) = 0;
  [[nodiscard]] virtual absl::StatusOr<CallResult> Mutation(std::string_view tenant,
                                                            std::string_view function,
                                                            const Value& args) = 0;
  // Callback forms: `done` runs exactly once, on a txfn thread, unless the
  // call is refused at once (then the status is returned and `done` never runs).
  [[nodiscard]] virtual absl::Status QueryAsync(std::string_view tenant, std::string_view function,
                                                const Value& args, Callback done) = 0;
  [[nodiscard]] virtual absl::Status MutationAsync(std::string_view tenant,
                                                   std::string_view function, const Value& args,
                                                   Callback done) = 0;

  virtual EngineStats stats() const = 0;
};

}  // namespace txfn

#endif  // TXFN_ENGINE_H_

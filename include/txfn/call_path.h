// txfn/call_path.h — one call path: run a tenant's function on a
// FunctionRunner and commit a mutation through the tenant's committer,
// retried on conflict, blocking or asynchronously.
//
// This is the Engine's own call path, for hosts that assemble their own
// runner and committers (examples/assemble_host.cc):
//
//   auto scheduler = std::shared_ptr<txfn::IsolateScheduler>(
//       *txfn::IsolateScheduler::Create(
//           {.workers = 2, .customizer = txfn::FunctionRunnerIsolateCustomizer()}));
//   txfn::FunctionRunner runner(scheduler);
//   txfn::TenantCommitters tenants(storage);           // tenant_committers.h
//   txfn::CallPath calls(runner, *scheduler);
//   TXFN_ASSIGN_OR_RETURN(std::shared_ptr<txfn::OpenTenant> shop, tenants.Get("shop"));
//   TXFN_ASSIGN_OR_RETURN(txfn::CallResult r,
//       calls.Mutation(*shop, "cart:add", txfn::Value::FromObject({...})));
//
// Queries run read-only at the tenant's latest snapshot as they arrive. A
// mutation reads the tenant's latest snapshot as its run begins (not as it
// was queued: RunRequest::snapshot_at_start), so calls queued behind a commit
// see it; a keyed call whose key committed meanwhile answers with the first
// call's result unrun. It commits through OpenTenant::Commit; its first
// attempt announces its commit (AnnounceFirstAttempt, retry.h) so concurrent
// commits share one Storage::Write. On a conflict it runs again on a newer
// snapshot, up to CallPathOptions::mutation_retry.max_attempts runs, then
// fails with Aborted.
//
// Hot documents. Blind retries collapse when many calls write one document:
// they all run, one commits, the rest conflict and retry together again. So
// a mutation that conflicted retries in a contention lane: the calls that
// lost on the same read range (the conflict names it, ConflictingRead) run
// one at a time, in arrival order, each on the state the previous one
// committed; and a call whose function and arguments conflicted within the
// last second (while the lane is busy) starts in its lane instead of racing
// first. Contention on a document degrades to serial throughput instead of
// collapsing, and calls on other documents never wait in a lane. Entering a
// lane is not counted as a retry (at most 4 times per call); a conflict
// inside one is. Lanes are hints: serialisability never depends on them
// (CallPathOptions::contention_lanes turns them off). The blocking form
// sleeps a jittered backoff (JitteredBackoff) between runs outside a lane;
// the async form never blocks a thread: its retry is queued for the lane's
// turn, or re-submitted at once.
//
// Unknown outcomes. A mutation is never run again after its commit's outcome
// became unknown (IsCommitOutcomeUnknown, storage.h): it fails with it.
// Give it an idempotency key (MutationOptions) to retry such a call safely:
// once the key has committed, a call with the same key returns the first
// call's result (CallResult::replayed) instead of running again.
//
// Errors: FailedPrecondition (disabled tenant), NotFound (unknown module or
// export; a tenant deleted meanwhile), InvalidArgument (bad arguments, a
// schema violation, a bad idempotency key), Aborted (conflicts past the
// retry limit), ResourceExhausted (a limit, or the scheduler's queue is
// full), Unknown (an uncaught JS exception, with its message and stack),
// Unavailable (storage; not committed, or marked IsCommitOutcomeUnknown).
//
// Thread safety: every method is thread-safe. The runner and the scheduler
// must outlive the CallPath; its destructor waits for the async calls in
// flight. Async callbacks run on a scheduler worker: they must not block on
// another blocking call of the same scheduler (it may deadlock when every
// worker waits); calling the async forms from them is fine.
#ifndef TXFN_CALL_PATH_H_
#define TXFN_CALL_PATH_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "txfn/call_records.h"
#include "txfn/function_runner.h"
#include "txfn/idempotency.h"
#include "txfn/isolate_scheduler.h"
#include "txfn/retry.h"
#include "txfn/tenant_committers.h"
#include "txfn/value.h"

namespace txfn {

// A record committed with a mutation's writes that makes a later run of the
// same logical call a no-op: an idempotency key, or a queued call's record
// (<txfn/call_records.h>). Before each run the CallPath looks for it at the
// run's snapshot; after a run it adds it to the run's commit. Implementations
// are immutable and thread-safe.
class CompletionRecord {
 public:
  virtual ~CompletionRecord() = default;
  // At `snapshot`: a result (the call replays it without running), an error
  // (the call ends with it, without running), or nullopt (the call runs).
  [[nodiscard]] virtual absl::StatusOr<std::optional<IdempotentResult>> Find(
      const Snapshot& snapshot) const = 0;
  // Adds the record of a run that returned `result` to its commit: a write
  // and a point read of the record, so two runs racing for it conflict.
  [[nodiscard]] virtual absl::Status Add(const Value& result, PreparedCommit* commit) const = 0;
};

// Per-call options of a mutation.
struct MutationOptions {
  // If not empty (1..kMaxIdempotencyKeyBytes bytes, <txfn/idempotency.h>):
  // the key is committed with the mutation's writes, and a call whose key has
  // committed already returns that commit's result without running
  // (CallResult::replayed). Keys are per tenant; CallPath keeps them, the engine deletes them
  // EngineOptions::idempotency_key_retention (24 h) after their commit.
  std::string idempotency_key;
  // Another record with the same effect (the engine's queued calls use it).
  // At most one of the two may be set (InvalidArgument otherwise).
  std::shared_ptr<const CompletionRecord> completion;
  // When the caller stops waiting (InfiniteFuture: never). Every run gets it
  // (RunRequest::deadline: stopped there, DeadlineExceeded) and no run
  // starts after it, so conflict retries end there too. A commit already
  // under way is not stopped: DeadlineExceeded never hides a commit.
  absl::Time deadline = absl::InfiniteFuture();
};

// Per-call options of a query.
struct QueryOptions {
  // As MutationOptions::deadline.
  absl::Time deadline = absl::InfiniteFuture();
};

// The outcome of a call.
struct CallResult {
  Value value;
  Timestamp ts = 0;            // the snapshot a query read, or the mutation's commit ts
  int attempts = 1;            // mutation runs (1 + conflict retries)
  std::vector<LogEntry> logs;  // of the last run
  RunStats stats;              // of the last run
  // The idempotency key had committed already: `value` and `ts` are that
  // commit's, and nothing ran (attempts counts the lookups; logs are empty).
  bool replayed = false;
};

struct CallPathOptions {
  // Mutations re-run on OCC conflict up to this many runs in all (not
  // counting entries into a contention lane), then Aborted.
  RetryOptions mutation_retry{.max_attempts = 8};
  bool contention_lanes = true;  // see "Hot documents"
  // Called after a mutation's commit that scheduled calls (ctx.scheduler:
  // their outbox entries, txfn/call_records.h), with those calls, on the
  // committing thread, so the host can enqueue them at once. Must not block
  // for long. Unset: they stay in the tenant's outbox.
  std::function<void(OpenTenant& tenant, std::vector<ScheduledCall> calls)> on_scheduled;
  // Called after a mutation's commit that cancelled calls (ctx.scheduler.cancel: the
  // kCancelled records it writes, txfn/call_records.h), with their ids, on the committing
  // thread, so the host can take them out of its queue at once. Must not block for long.
  // Unset: they stay queued until delivered, and are skipped then (their records say so).
  std::function<void(OpenTenant& tenant, std::vector<CallId> ids)> on_cancelled;
  // Checks a mutation's ctx.scheduler call (the function it names, its
  // arguments) when the mutation makes it: an error is thrown there, so a
  // typo fails the mutation (or its code catches it) instead of the call
  // later. Called on the runner's thread, for local runs only (a remote
  // runner does not call back). Unset: the call is checked when it runs.
  std::function<absl::Status(OpenTenant& tenant, std::string_view function, const Value& args)>
      check_scheduled;
  // Called before the commit of a mutation's run that scheduled calls, with them: an error
  // fails the mutation with it (not retried; nothing it wrote commits). The engine's
  // max_pending_calls_per_tenant and max_pending_bytes_per_tenant (ResourceExhausted). Unset:
  // every commit goes ahead.
  std::function<absl::Status(OpenTenant& tenant, const std::vector<ScheduledCall>& calls)>
      admit_scheduled;
};

struct CallPathStats {
  uint64_t queries = 0;    // queries that succeeded
  uint64_t mutations = 0;  // mutations that committed
  uint64_t replayed = 0;   // mutations answered from their idempotency key
  uint64_t conflicts = 0;  // OCC conflicts seen (each caused a retry or an Aborted)
  uint64_t retries = 0;    // mutation re-runs after a conflict
  // Mutations that waited in a contention lane (after a conflict, or because
  // their function and arguments conflicted recently).
  uint64_t serialised = 0;
};

class CallPath {
 public:
  using Callback = std::function<void(absl::StatusOr<CallResult>)>;

  // `runner` runs the functions (a FunctionRunner, or a RemoteRunner); `scheduler` delivers
  // an async mutation answered by its idempotency key on a worker thread. Both must outlive
  // the CallPath.
  CallPath(FunctionExecutor& runner, IsolateScheduler& scheduler, CallPathOptions options = {});
  CallPath(const CallPath&) = delete;
  CallPath& operator=(const CallPath&) = delete;
  // Waits for the async calls in flight.
  ~CallPath();

  // `function` is "path/to/module:export". Blocks until done.
  [[nodiscard]] absl::StatusOr<CallResult> Query(OpenTenant& tenant, std::string_view function,
                                                 const Value& args,
                                                 const QueryOptions& options = {});
  [[nodiscard]] absl::StatusOr<CallResult> Mutation(OpenTenant& tenant, std::string_view function,
                                                    const Value& args,
                                                    const MutationOptions& options = {});

  // Callback forms: `done` runs exactly once, on a scheduler thread, unless
  // the call is refused at once (a disabled tenant, a bad idempotency key, a
  // full queue: then the status is returned and `done` never runs). The
  // handle is kept until `done` has run.
  [[nodiscard]] absl::Status QueryAsync(std::shared_ptr<OpenTenant> tenant,
                                        std::string_view function, const Value& args,
                                        Callback done) {
    return QueryAsync(std::move(tenant), function, args, QueryOptions{}, std::move(done));
  }
  [[nodiscard]] absl::Status QueryAsync(std::shared_ptr<OpenTenant> tenant,
                                        std::string_view function, const Value& args,
                                        const QueryOptions& options, Callback done);
  [[nodiscard]] absl::Status MutationAsync(std::shared_ptr<OpenTenant> tenant,
                                           std::string_view function, const Value& args,
                                           const MutationOptions& options, Callback done);

  [[nodiscard]] CallPathStats stats() const;

 private:
  struct State;
  std::unique_ptr<State> state_;
};

// FailedPrecondition if the snapshot's tenant is disabled.
[[nodiscard]] absl::Status CheckEnabled(const Snapshot& snapshot);
// The same, and NotFound (marked IsTenantDeletedElsewhere) if another writer deleted the
// tenant while `tenant` had it open (Committer::DeletedElsewhere, which the Latest() that
// gave `snapshot` checks): a call must not run the deleted tenant's modules. Call it after
// Latest().
[[nodiscard]] absl::Status CheckEnabled(const OpenTenant& tenant, const Snapshot& snapshot);

}  // namespace txfn

#endif  // TXFN_CALL_PATH_H_

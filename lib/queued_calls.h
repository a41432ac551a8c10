// lib/queued_calls.h — the engine's queued calls ("Queued calls" in
// txfn/engine.h): Submit, GetCall, CancelCall, actions, and the loop that
// runs a CallScheduler over the durable queue with the engine as its worker.
//
// How a delivered call runs (StartCall): the tenant's function table (its
// deployed modules' exports, kinds and attributes, cached per metadata
// version) gives the kind; a mutation runs through the CallPath with a
// CompletionRecord that commits the call's record with its writes; a query
// or an action runs, then its record is committed. A call whose record
// exists is acknowledged without running. How it ended decides the
// CallOutcome: the function's own failure is recorded (kFailed) and
// acknowledged; infrastructure failures are retried (NACK); a full isolate
// queue gives the call back without using an attempt. A tenant runs at most
// slots_per_tenant calls at once (CallScheduler::Options::
// max_running_per_tenant: a few of its other calls wait in the scheduler's
// buffers, the rest in the queue, paced back at the tenant's rate).
//
// One thread (the loop) ticks the scheduler and the submitter, starts the
// calls the scheduler hands to the engine's worker, enqueues the calls that
// committed mutations scheduled, and deletes their outbox entries once the
// queue holds them. At start it re-enqueues every tenant's outbox (calls a
// crash left there).
//
// Thread safety: every public method is thread-safe.
#ifndef TXFN_LIB_QUEUED_CALLS_H_
#define TXFN_LIB_QUEUED_CALLS_H_

#include <array>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "lib/queue/log_budgets.h"
#include "lib/queue/pending_calls_cap.h"
#include "txfn/call_path.h"
#include "txfn/call_records.h"
#include "txfn/call_scheduler.h"
#include "txfn/clock.h"
#include "txfn/engine.h"
#include "txfn/function_runner.h"
#include "txfn/internal/mutex.h"
#include "txfn/submitter.h"
#include "txfn/tenant_committers.h"

namespace txfn::internal {

// One tenant's exported functions as its deployed modules declare them.
struct TenantFunctions {
  struct Function {
    FunctionKind kind = FunctionKind::kQuery;
    FunctionAttributes attributes;
    Value args;  // FunctionInfo::args: the checked validator, or null
  };
  // The modules they were read from: which version the table is of. Weak: the table outlives
  // its tenant's closing (idle, deleted), and must not keep the modules' sources alive.
  std::weak_ptr<const TenantMetadata> metadata;
  std::map<std::string, Function> by_name;  // by canonical name
};

// Checks `args` (an object) against a function's checked validator
// (FunctionInfo::args) as its JavaScript wrapper would. InvalidArgument
// naming the argument.
[[nodiscard]] absl::Status CheckArgs(const Value& validator, const Value& args);

// One tenant's turns at the action isolates: when its last queued action started, and when
// one was last given back because no isolate could run it (it is waiting, offered again every
// busy_retry).
struct ActionTurn {
  absl::Time last_started = absl::InfinitePast();
  absl::Time last_refused = absl::InfinitePast();
};
// Whether an action of `tenant`, which an action isolate could run now, should leave that
// isolate to another tenant whose action is waiting (given back within `window` of `now`):
// one that runs fewer actions there (`in_flight`, IsolateSchedulerStats::in_flight), or as
// many but started its last one earlier. A free isolate went to whichever given-back action
// was offered first: tenants with a backlog of long actions took nearly every one.
[[nodiscard]] bool AnotherTenantsTurn(const std::string& tenant,
                                      const absl::flat_hash_map<std::string, ActionTurn>& turns,
                                      const std::map<std::string, int>& in_flight, absl::Time now,
                                      absl::Duration window);

class QueuedCalls {
 public:
  // `tenants`, `calls` and `runner` must outlive this. `workers`: the main
  // scheduler's worker count (for the default slots).
  QueuedCalls(QueuedCallOptions options, TenantCommitters& tenants, CallPath& calls,
              FunctionRunner& runner, int workers);
  // Gives back the calls not started and waits for the running ones.
  ~QueuedCalls();
  QueuedCalls(const QueuedCalls&) = delete;
  QueuedCalls& operator=(const QueuedCalls&) = delete;

  // Creates the submitter, the scheduler and the action runner, and starts
  // the loop (which first re-enqueues every tenant's outbox).
  [[nodiscard]] absl::Status Start();

  [[nodiscard]] absl::StatusOr<CallId> Submit(std::string_view tenant, std::string_view function,
                                              const Value& args, const CallOptions& options);
  // `of_tenant` non-empty: NotFound unless the call is that tenant's (an action's cancel).
  [[nodiscard]] absl::StatusOr<CallInfo> GetCall(const CallId& id, std::string_view of_tenant = {});
  [[nodiscard]] absl::Status CancelCall(const CallId& id, std::string_view of_tenant = {});
  [[nodiscard]] absl::StatusOr<std::vector<CallInfo>> ListCalls(std::string_view tenant,
                                                                std::optional<CallState> state,
                                                                std::string_view function,
                                                                size_t limit, const CallId& after);
  [[nodiscard]] absl::StatusOr<std::vector<FunctionDepth>> Depths();
  [[nodiscard]] absl::StatusOr<CallResult> Action(std::string_view tenant,
                                                  std::string_view function, const Value& args);
  size_t Stop(absl::Duration timeout);
  [[nodiscard]] QueuedCallStats stats() const;
  [[nodiscard]] std::optional<double> ServiceRate(std::string_view service) const;

  // The CallPath's on_scheduled hook: enqueues the calls (from the loop).
  void OnScheduled(OpenTenant& tenant, std::vector<ScheduledCall> calls);
  // The CallPath's on_cancelled hook: takes the calls out of the queue (from the loop), those
  // of `tenant` only (its mutation wrote the records, in its own store).
  void OnCancelled(OpenTenant& tenant, std::vector<CallId> ids);
  // The CallPath's admit_scheduled hook: max_pending_calls_per_tenant.
  [[nodiscard]] absl::Status AdmitScheduled(OpenTenant& tenant,
                                            const std::vector<ScheduledCall>& calls);
  // The CallPath's check_scheduled hook: what Submit checks of a call (the
  // tenant has the function; its arguments are an object its validator
  // accepts), for a mutation's ctx.scheduler call when it is made.
  [[nodiscard]] absl::Status CheckScheduled(OpenTenant& tenant, std::string_view function,
                                            const Value& args);
  // A deploy committed these functions (primes the function table).
  void OnDeployed(OpenTenant& tenant, const std::map<std::string, FunctionInfo>& functions);
  // The tenant was deleted: forgets its function table and its functions' scheduler limits,
  // and takes its calls out of the queue (waiting and dead-lettered; a call running now ends
  // as its run does). They would otherwise run in a tenant created again under the name, and
  // their idempotency keys refuse its calls.
  void OnDeleted(std::string_view tenant);
  // Checks a deploy's functions against this engine: every declared service
  // must be registered. InvalidArgument "deploy refused: ..." otherwise.
  [[nodiscard]] absl::Status CheckServices(
      const std::map<std::string, FunctionInfo>& functions) const;

 private:
  class EngineWorker;
  class Host;
  class Record;
  struct Handed {
    Call call;
    Worker::Done done;
  };
  struct Scheduled {
    std::string tenant;
    std::vector<ScheduledCall> calls;
    // The tenant (this incarnation of the name) whose commit or outbox they came from: they are
    // not queued for, and are taken out of the queue again if they were, one created again.
    std::shared_ptr<OpenTenant> from;
  };

  absl::StatusOr<std::shared_ptr<const TenantFunctions>> FunctionsOf(OpenTenant& tenant);
  // The table already built for `latest`'s metadata, or the one its deploy recorded, or null
  // (nothing runs; it may be called on an isolate's thread, by a running mutation).
  std::shared_ptr<const TenantFunctions> KnownFunctionsOf(const std::string& tenant,
                                                          const Snapshot& latest);
  // Removes `tenant`'s functions from config_; whether there were any.
  bool EraseConfigOf(std::string_view tenant) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Keeps `found` as `tenant`'s table and its functions' limits in config_, handed to the
  // scheduler now, or with `defer_config` by the loop (the scheduler's lock may be held
  // across queue I/O: a running mutation must not wait for it).
  std::shared_ptr<const TenantFunctions> Install(const std::string& tenant,
                                                 std::shared_ptr<const TenantMetadata> metadata,
                                                 const std::map<std::string, FunctionInfo>& found,
                                                 bool defer_config = false);
  // The function of `tenant` named `function` (any spelling); NotFound.
  absl::StatusOr<TenantFunctions::Function> Lookup(OpenTenant& tenant,
                                                   const std::string& canonical);
  // Writes `calls` through the submitter and waits until they are durable.
  absl::Status Enqueue(std::vector<Call> calls);
  Call MakeCall(const std::string& tenant, const std::string& function, Value args,
                const FunctionAttributes& attributes, const CallOptions& options,
                absl::Time now) const;

  void Hand(const Call& call, Worker::Done done);
  void Loop();
  void Wake();
  // Whether Stop's wait is over: a queued action asking for something now is given up.
  bool GivenUp() const;
  void StartCall(const Call& call, Worker::Done done);
  void RunQueuedAction(const std::shared_ptr<OpenTenant>& tenant, const Call& call,
                       const TenantFunctions::Function& function,
                       absl::AnyInvocable<void(CallOutcome) &&> finish);
  // A call of `function` with `args` as Submit takes it: its canonical name,
  // the function, and its arguments ({} for null); NotFound or
  // InvalidArgument naming what is wrong.
  struct CheckedCall {
    std::string name;
    TenantFunctions::Function function;
    Value args;
  };
  static absl::StatusOr<CheckedCall> Check(const TenantFunctions& table, std::string_view tenant,
                                           std::string_view function, const Value& args);
  static absl::StatusOr<TenantFunctions::Function> LookupIn(const TenantFunctions& table,
                                                            std::string_view tenant,
                                                            const std::string& canonical);
  // How a failed run of a `kind` function ends: recorded (kFailed) and
  // acknowledged, or retried.
  CallOutcome Failed(OpenTenant& tenant, const Call& call, const absl::Status& status,
                     bool synchronous, FunctionKind kind);
  // How a successful run of a query or action ends: its result recorded
  // (kSucceeded) unless the call has a record already, and acknowledged.
  CallOutcome Succeeded(OpenTenant& tenant, const Call& call, const Value& result,
                        absl::Duration cpu);
  // How a delivery of a `kind` function whose failure could not be recorded ends (`written`,
  // the refusal): a mutation's is given back without counting an attempt when another
  // process owns the tenant (PostgreSQL; it or this one, once the owner lets go, runs the
  // call again and records it); anything else is retried.
  CallOutcome Unrecorded(const absl::Status& written, FunctionKind kind);
  // Whether a queued action of `tenant` starts now: an action isolate can run it at once, and
  // no other tenant's waiting action has the turn (AnotherTenantsTurn). Notes the answer in
  // action_turns_.
  bool ActionMayStart(const std::string& tenant);
  // Commits `record` for `call` unless the call already has a record: how it
  // ended first stays (a cancel while it ran, a delivery that committed before
  // its function was removed). True if `record` was written; false if another
  // record was there or won the race.
  absl::StatusOr<bool> WriteRecord(OpenTenant& tenant, const CallId& id, const CallRecord& record);
  // Whether `record` ends a delivery of `id` (it then runs nothing and records nothing).
  // Every record does but a dead letter's once Redrive put the call back (the queue holds it
  // again, not dead): that delivery runs, and its record replaces the dead letter's. Errors:
  // the queue's (the delivery is retried).
  absl::StatusOr<bool> EndsDelivery(const CallId& id, const CallRecord& record);
  // Whether `id` has a record at the tenant's latest snapshot that ends a delivery.
  absl::StatusOr<bool> HasEnded(OpenTenant& tenant, const CallId& id);
  void EnqueueScheduled();
  // Takes the calls mutations cancelled out of the queue (RemovePending), with their spilled
  // arguments; those leased meanwhile are skipped when they run.
  void RemoveCancelled();
  // Takes `tenant`'s waiting and dead-lettered calls out of the queue, with their blobs (a page
  // at a time; what a failure leaves is left), and marks those leased (running, or ended and
  // not yet settled) orphaned_.
  void RemoveCallsOf(std::string_view tenant);
  // RemovePending of `ids`, deleting blobs[i] (if not empty) of each call taken out. Returns
  // which were (gone[i]).
  std::vector<bool> RemoveWithBlobs(absl::Span<const CallId> ids,
                                    absl::Span<const std::string> blobs, absl::Time now);
  // Whether `from` is no longer the open tenant of its name (deleted, maybe created again).
  bool Gone(const OpenTenant& from);
  // Takes the calls `ids` (just enqueued) out of the queue again, with their blobs.
  void RemoveEnqueued(absl::Span<const CallId> ids);
  // RemoveDeadLetters(ids, dead_before), deleting blobs[i] (if not empty) of each call taken
  // out; returns how many were, or the queue's error.
  absl::StatusOr<uint64_t> RemoveDeadLettersWithBlobs(absl::Span<const CallId> ids,
                                                      absl::Span<const std::string> blobs,
                                                      absl::Time dead_before);
  // Hands the outbox entries of `tenants` committed at least `min_age` ago to
  // EnqueueScheduled: every tenant's at start (min_age 0: all, what a crash of this engine
  // left, also entries whose commit time is ahead of this clock), and every
  // outbox_sweep_interval, a slice per round of the loop, what another process left (one
  // killed between its commit and its enqueue; a younger entry is its writer's to enqueue,
  // unless it was already young at the tenant's last pass). Enqueuing one again changes
  // nothing: the queue keeps the call it holds, and a call that ended has a record that ends
  // its delivery.
  void RecoverOutboxes(absl::Span<const std::string> tenants, absl::Duration min_age);
  // Deletes the records of `tenants`' calls that ended more than record_retention ago, each
  // checked again in the deleting transaction (a record Redrive's run replaced stays).
  void PruneRecords(absl::Span<const std::string> tenants);
  // One page of a pass over the queue's dead letters (every tenant's), deleting those
  // dead-lettered more than dead_letter_retention ago with their spilled arguments. `after` is
  // where the pass is (nil: its start); returns where the next page starts, or nullopt when
  // the pass is done (or the queue cannot list or remove dead letters).
  std::optional<CallId> PruneDeadLetters(CallId after);
  // The queue answered RemoveDeadLetters Unimplemented. Used by the loop's thread only.
  bool dead_letters_unremovable_ = false;
  // Whether Stop was called (long loop-side work stops early).
  bool Stopping() ABSL_LOCKS_EXCLUDED(mu_);
  void CleanOutboxes();
  // The tenant a call id belongs to: from the queue, else by its tag.
  struct Located {
    std::shared_ptr<OpenTenant> tenant;
    std::optional<QueuedCall> queued;
    std::optional<CallRecord> record;
    std::optional<ScheduledCall> outbox;
  };
  // Locates `id`; a dead letter is recorded first (RecordDeadLetters). With `tenant`, only
  // among that tenant's calls: another tenant whose name shares the id's tag may hold records
  // of the id (its mutations may cancel any id with its tag), which must not answer for it.
  absl::StatusOr<Located> Locate(const CallId& id, std::string_view tenant = {});
  // Makes the queue's dead letters among `where` (of `tenant`) final before they are
  // reported: each gets a kDeadLettered record, in one transaction, so a delivery still
  // running (its lease expired, or its deadline passed, under it) can no longer commit or
  // record an outcome, and a call GetCall said was dead-lettered never turns succeeded. One
  // whose late delivery committed first keeps that record (`record` is set to what it is).
  // If the transaction fails (the storage, or a tenant another instance owns), `where` is
  // left as the queue sees it.
  void RecordDeadLetters(OpenTenant& tenant, absl::Span<Located> where);
  // Whether `where`'s record is a dead letter's that the queue's view supersedes: Redrive put
  // the call back (the queue holds it, not dead), or the queue's dead letter is a later one.
  static bool Superseded(const Located& where);
  absl::StatusOr<CallInfo> InfoOf(const CallId& id, const Located& where);
  // OK if `first`, the call an idempotency key names (id), is a call of `function` with
  // `args` (compared with its record's digest once it ended, else while it is queued, also
  // when spilled); else AlreadyExists. Unavailable if its spilled arguments cannot be read.
  absl::Status CheckKeyNamesThisCall(const Located& first, const CallId& id,
                                     std::string_view function, const Value& args,
                                     std::string_view key);
  // Gives the kCancelled record of keyed `call` (a mutation's ctx.scheduler.cancel writes it
  // knowing neither) the call's function and arguments' digest, unless it has them.
  absl::Status CompleteCancelRecord(const Call& call);
  // KeyedArgsDigest(call), reading its arguments if they are spilled and not loaded; empty if
  // they are gone (the call ended); the blob store's error otherwise.
  absl::StatusOr<std::string> KeyedArgsDigestReading(const Call& call);
  void SetStat(uint64_t QueuedCallStats::*field);
  // Hands a delivery's console output to QueuedCallOptions::on_logs (if set and any), as much
  // of it as its tenant's log_bytes_per_second_per_tenant lets through.
  void ReportLogs(const Call& call, std::vector<LogEntry> logs);

  const QueuedCallOptions options_;
  TenantCommitters& tenants_;
  CallPath& calls_;
  FunctionRunner& runner_;
  const int slots_;
  const int slots_per_tenant_;
  RealClock clock_;
  std::shared_ptr<DurableQueue> queue_;
  PendingCallsCap pending_cap_;  // max_pending_calls_per_tenant
  LogBudgets log_budgets_;       // log_bytes_per_second_per_tenant
  std::unique_ptr<Submitter> submitter_;
  std::unique_ptr<CallScheduler> scheduler_;
  std::shared_ptr<IsolateScheduler> action_scheduler_;
  std::unique_ptr<FunctionRunner> action_runner_;

  // Held while writing the submitter's batches (Enqueue's group commit).
  internal::Mutex enqueue_mu_;
  // A Submit with an idempotency key holds its call id's stripe from the look for an earlier
  // call of the key to its own Enqueue: two concurrent Submits of one key with other
  // arguments would both pass the look, and the second would answer OK for a call that is
  // the first's (its own lost without a word). Within this process only: across processes,
  // Submit checks after its Enqueue which call the queue kept.
  std::array<internal::Mutex, 64> key_stripes_;
  mutable internal::Mutex mu_;
  internal::CondVar cv_{&mu_};
  bool woken_ ABSL_GUARDED_BY(mu_) = false;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  bool draining_ ABSL_GUARDED_BY(mu_) = false;
  int64_t in_flight_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<Handed> handed_ ABSL_GUARDED_BY(mu_);
  std::vector<Scheduled> scheduled_ ABSL_GUARDED_BY(mu_);
  // Calls of deleted tenants that were leased when RemoveCallsOf looked: each ends at its next
  // start or at the end of its run, whatever the outcome (acknowledged, not retried), so none
  // runs in a tenant created again under the name. An id leaves at either.
  absl::flat_hash_set<CallId> orphaned_ ABSL_GUARDED_BY(mu_);
  // Calls whose cancel records committed, with the tenant that wrote them.
  std::vector<std::pair<CallId, std::string>> cancelled_ ABSL_GUARDED_BY(mu_);
  // Outbox entries the queue now holds, to delete, by tenant.
  std::map<std::string, std::vector<CallId>> enqueued_outbox_ ABSL_GUARDED_BY(mu_);
  // Outbox entries RecoverOutboxes left to their writers (young), by tenant: taken at the
  // tenant's next pass if still there.
  absl::flat_hash_map<std::string, absl::flat_hash_set<CallId>> young_outbox_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, std::shared_ptr<const TenantFunctions>> functions_
      ABSL_GUARDED_BY(mu_);
  // functions_.size() after Install last dropped the tables whose modules are gone.
  size_t functions_kept_ ABSL_GUARDED_BY(mu_) = 0;
  SchedulerConfig config_ ABSL_GUARDED_BY(mu_);
  // Tenants' turns at the action isolates (AnotherTenantsTurn); entries idle a minute go
  // whenever the map has doubled.
  absl::flat_hash_map<std::string, ActionTurn> action_turns_ ABSL_GUARDED_BY(mu_);
  size_t action_turns_kept_ ABSL_GUARDED_BY(mu_) = 0;
  // config_ changed by an Install that left it to the loop to hand to the scheduler.
  bool config_pending_ ABSL_GUARDED_BY(mu_) = false;
  QueuedCallStats stats_ ABSL_GUARDED_BY(mu_);
  std::thread loop_;
};

}  // namespace txfn::internal

#endif  // TXFN_LIB_QUEUED_CALLS_H_

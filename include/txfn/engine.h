// txfn/engine.h — one ready assembly of txfn's parts: the embedded engine.
//
// Engine::Open assembles, on one Storage, the public parts a host could
// assemble itself: a TenantCommitters registry (tenant_committers.h: a
// committer per tenant, opened on first use, closed when idle or deleted), an
// IsolateScheduler, a FunctionRunner with its module cache, a CallPath
// (call_path.h: run, commit, retry in contention lanes, sync and async) and
// the deploy check (deploy.h), plus background version retention. Hosts that
// need another shape (remote runners, several runners behind a router)
// assemble the same parts; see examples/assemble_host.cc and
// examples/assemble_runner.cc.
//
//   auto storage = std::make_shared<txfn::InMemoryStorage>();   // any Storage
//   TXFN_ASSIGN_OR_RETURN(std::unique_ptr<txfn::Engine> engine,
//                         txfn::Engine::Open(storage, {}));
//   TXFN_RETURN_IF_ERROR(engine->CreateTenant("shop"));
//   TXFN_RETURN_IF_ERROR(engine->Deploy("shop", {{"cart.js", source}}, schema));
//   absl::StatusOr<txfn::CallResult> r =
//       engine->Mutation("shop", "cart:add", txfn::Value::FromObject({...}));
//
// On an SQLite file, txfn::OpenSqliteEngine("app.db") (<txfn/sqlite_engine.h>,
// target txfn::sqlite_engine); txfn::engine itself does not link SQLite.
//
// Tenants. A tenant exists once it has a commit: CreateTenant commits its
// initial metadata (empty schema, no modules, enabled). Everything of a
// tenant — schema, modules, state, documents — lives in the Storage, so
// reopening an engine on the same SQLite file restores every tenant as it
// was. One Engine per Storage object: two engines sharing one Storage object (or an engine
// and another committer on it) writing one tenant would break serialisability. Engines
// opened on one file each with its own storage (OpenSqliteEngine twice, `txfn run` beside
// `txfn serve`, processes on one PostgreSQL database) are safe: each commit is checked
// against what the others wrote, and they contend: a mutation that loses every attempt to
// the others fails Aborted ("written by another process"), nothing of it committed; retry it.
//
// Calls. A function name is "path/to/module:export" (see function_runner.h
// for the JavaScript side). Queries and mutations take the CallPath
// (call_path.h): a mutation commits through the tenant's committer (group
// commit) and, on an OCC conflict, runs again on a newer snapshot, in a
// contention lane when many calls fight over one read range ("Hot
// documents" there), up to EngineOptions::mutation_retry.max_attempts runs,
// then fails with Aborted. A mutation is never run again after its commit's
// outcome became unknown (IsCommitOutcomeUnknown, declared in storage.h): when the
// committer cannot resolve it (SqliteStorage after a failed COMMIT, until
// the engine is opened again on the file), the call fails with that unknown
// outcome and the tenant's later mutations with Unavailable. To retry such a
// call safely, give it an idempotency key (MutationOptions).
//
// Deadlines. A query or mutation may carry its caller's deadline
// (QueryOptions / MutationOptions::deadline; txfn serve uses the client's
// gRPC deadline): each run gets it as RunRequest::deadline — stopped there
// with DeadlineExceeded, locally or on a remote runner — and no mutation run
// (a conflict retry included) starts after it. A blocking call waiting at its
// deadline (for an isolate, behind its tenant's other calls; or for its turn
// behind other calls on a contended document) is answered DeadlineExceeded
// there, and runs nothing later (a run under way is stopped at the deadline,
// a commit under way is waited for); so is an async call (QueryAsync,
// MutationAsync), on a txfn timer thread (it was answered only when its turn
// came until 2026-12-07). A queued call's deadline (CallOptions::deadline) is another thing:
// the time by which it should have run, on the engine's injected clock,
// enforced by the scheduler (a call not started by then is dead-lettered).
// Its runs get no RunRequest::deadline: a call that started in time runs to
// completion under its time limits, and being cut off near its deadline would
// only turn a late success into a failure that is retried or dead-lettered
// anyway.
//
// Version retention. Every retention_interval a background thread drops, for
// every tenant, the versions no snapshot taken in the last version_retention
// can see (Storage::ApplyRetention: the horizon is the newest commit older
// than that), so a database whose documents are rewritten does not grow
// forever. A read at an older snapshot (a request running for longer than the
// retention) fails with FailedPrecondition.
//
// Idle tenants. An open tenant (its committer, conflict history and decoded
// metadata: from a few KiB to tens of MiB of history) that no call, deploy or
// other operation has used for tenant_idle_timeout is closed by a background
// sweep, and reopened from storage, transparently, by its next use (as on
// first use: one MaxCommittedTimestamp and one metadata read). A tenant is
// never closed while anything uses it, so nothing in flight is lost; a
// reopened tenant sees every commit. The same sweep prunes each open
// committer's conflict history once it leaves the conflict window, without
// waiting for the tenant's next commit. So the memory of the open tenants is
// bounded by those used within tenant_idle_timeout, not by all ever used.
//
// Queued calls (XFaaS's side, on the durable queue EngineOptions::queued.queue).
// Engine::Submit enqueues a call of a tenant's query, mutation or action with
// a start time, a deadline, a criticality, a quota class and a retry policy
// (each defaulting to the function's attributes, declared with its wrapper:
// see txfn/call_records.h FunctionAttributes); a mutation schedules calls
// with ctx.scheduler.runAfter(ms, "mod:fn", args) / runAt(time, ...) and
// cancels them with ctx.scheduler.cancel(id), atomically with its commit
// (the function named and the arguments are checked as Submit checks them,
// when scheduled: see CallPathOptions::check_scheduled for when not). A
// CallScheduler (call_scheduler.h) leases due calls and runs them here:
// quotas, per-function concurrency limits, and an AIMD limiter per
// downstream service. Delivery is at-least-once; the effects are not:
//   - a queued mutation commits its record (how it ended) with its writes, so
//     a call delivered again after its commit is acknowledged without running
//     (exactly-once effects, also across crashes and expired leases);
//   - a queued query or action records its result after it returned: an
//     action whose process dies before the record commits runs again
//     (actions are at-least-once: make their side effects idempotent).
// A function that fails (throws, bad arguments, a limit) is recorded kFailed
// and not retried; infrastructure failures (storage unavailable, conflicts
// past the retries, an unknown commit outcome, a service's back-pressure, and
// a query or mutation stopped at its wall-clock limit, which only the host's
// time reaches before the CPU limit: a paused or overloaded process) are
// retried per the call's retry policy, then dead-lettered, as is a call whose
// deadline passes before it started (checked in the scheduler's buffers and
// again when a worker takes it). A call nothing could start (the isolates'
// queue full; an action no action isolate can run at once, so that waiting
// actions hold no slot; with an executor, every remote runner down), and a
// mutation whose commit or failure record another process owning the tenant
// refused (PostgreSQL: it runs again there, or here once the owner lets go),
// is given back without counting an attempt and offered again later (busy_retry,
// unavailable_retry), until its deadline. A tenant runs at most QueuedCallOptions::slots_per_tenant
// queued calls at once, so one tenant never holds the slots: a few of its other calls wait in the
// scheduler's buffers while other tenants' run, and the rest wait in the queue, due and in order,
// leased only as the tenant runs them (the scheduler leases by tenant: LeaseRequest::skip_tenants
// and max_per_tenant), so another tenant's newer call is leased past a backlog of any size
// (docs/queued-calls.md, "Fairness"). Actions run on an IsolateScheduler of their own
// (QueuedCallOptions::actions) and reach the host's services (QueuedCallOptions::services) through
// ctx.services.<name>(args); a service answering ResourceExhausted or Unavailable is back-pressure:
// the AIMD limiter of that service slows every function that declared it.
//
// Errors: NotFound (unknown tenant, module or export), FailedPrecondition
// (disabled tenant; a read older than the version retention), InvalidArgument
// (bad name, bad arguments, a schema violation, a refused deploy, a bad
// idempotency key), Aborted (conflicts past the retry limit),
// ResourceExhausted (a limit, or the scheduler's queue is full), Unknown (an
// uncaught JS exception, with its message and stack), Unavailable (storage;
// not committed), Unavailable marked IsCommitOutcomeUnknown (see above).
//
// Thread safety: every method is thread-safe. The callback forms run `done`
// on a txfn thread: it must not block on another call of the same engine (it
// could wait for the thread it runs on), so a blocking Query or Mutation
// called inside `done` fails at once with FailedPrecondition naming the async
// form; calling the async forms from `done` is fine. Nor may `done` (or what
// it captures) hold the last reference to the engine: the engine's destructor
// joins the thread `done` runs on (the process aborts). A RemoteRunner, by
// contrast, may be released from its own `done`.
#ifndef TXFN_ENGINE_H_
#define TXFN_ENGINE_H_

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "txfn/blob_store.h"
#include "txfn/call.h"
#include "txfn/call_path.h"
#include "txfn/call_records.h"
#include "txfn/call_scheduler.h"
#include "txfn/committer.h"
#include "txfn/durable_queue.h"
#include "txfn/function_runner.h"
#include "txfn/isolate_scheduler.h"
#include "txfn/limiters.h"
#include "txfn/retry.h"
#include "txfn/schema.h"
#include "txfn/snapshot.h"
#include "txfn/sqlite_storage.h"
#include "txfn/storage.h"
#include "txfn/submitter.h"
#include "txfn/tenant_committers.h"
#include "txfn/value.h"

namespace txfn {

// A host service an action reaches with ctx.services.<name>(args). Called
// on an action thread (it may block); thread-safe. ResourceExhausted or
// Unavailable is back-pressure (see "Queued calls"). `args` is converted from
// JavaScript as results are, so no field name starts with '$' (JSON's tags):
// a service taking operators such as MongoDB's "$set" takes them under other
// names. Its result may hold any Value; the action sees it as JavaScript.
using ServiceFn = std::function<absl::StatusOr<Value>(const Value& args)>;

// The console output (console.log, .warn, ...) of one delivery of a queued call
// (QueuedCallOptions::on_logs).
struct QueuedCallLogs {
  std::string tenant;
  std::string function;
  CallId id;
  int attempt = 0;  // deliveries before this one
  std::vector<LogEntry> logs;
};

// The queued calls' part of EngineOptions.
struct QueuedCallOptions {
  // Where calls wait. Null: an InMemoryQueue (lost with the process).
  // OpenSqliteEngine uses a SqliteQueue in its own file, SqliteQueuePath(path)
  // ("<path>.queue").
  std::shared_ptr<DurableQueue> queue;
  // Where arguments over the submitter's spill threshold go (owned by the
  // queue or outliving the engine); null: none are spilled.
  BlobStore* blobs = nullptr;
  // Run queued calls in this engine (a scheduler leasing from `queue`).
  // false: Submit, GetCall and CancelCall only (a second process beside a
  // server on the same database).
  bool run = true;
  // Calls running at once (0 = 2 x the scheduler's workers), and per tenant
  // (0 = half of that, at least 1; a few of a tenant's other calls wait in
  // the scheduler's buffers while other tenants' run, the rest in the queue:
  // CallScheduler::Options::max_running_per_tenant).
  int slots = 0;
  int slots_per_tenant = 0;
  // How long a call the isolates refused (their queue full) waits before it
  // is offered again (not counted as an attempt).
  absl::Duration busy_retry = absl::Milliseconds(50);
  // How long a call refused Unavailable before it started waits before it is
  // offered again (not counted as an attempt): with an executor and no local
  // fallback, every remote runner down; storage unreachable before the run;
  // or a mutation whose commit another process owning the tenant refused
  // (IsTenantOwnedElsewhere, PostgreSQL: the mutation ran here, and runs again
  // each time until the owner runs it or lets the tenant go). Calls wait
  // until their deadlines instead of using up their attempts. busy_retry and
  // unavailable_retry must be positive (Engine::Open: InvalidArgument).
  absl::Duration unavailable_retry = absl::Seconds(1);
  // How often an engine that runs calls (run) looks through every tenant's
  // outbox, a slice per round, for calls a mutation of another process
  // committed but never queued (it was killed between its commit and its
  // enqueue); an entry younger than half of this (by its commit time) is left
  // to its writer until the tenant's next pass, whatever the clocks say then.
  // At start it queues what the outboxes hold whatever their age. Positive;
  // InfiniteDuration: only at start.
  absl::Duration outbox_sweep_interval = absl::Minutes(1);
  // How long the record of an ended call (succeeded, failed, cancelled,
  // dead-lettered: what GetCall reports, and what makes a delivery of it
  // again run nothing) is kept. An engine that runs calls deletes older ones
  // in passes every min(record_retention / 2, 1 h) (the first a minute after it
  // opened), a slice of tenants per round. After that GetCall answers NotFound,
  // a Submit with the call's idempotency key starts a new call, and a dead
  // letter Redrive puts back runs as a new call would. Positive; InfiniteDuration: kept forever
  // (they grew without bound: ~250 bytes per call).
  absl::Duration record_retention = absl::Hours(24 * 7);
  // How long the queue keeps a dead letter (with its arguments, for DurableQueue::Redrive)
  // before an engine that runs calls deletes it, with its spilled arguments, in passes every
  // min(dead_letter_retention / 2, 1 h), a page of 1,000 per round of its loop
  // (QueuedCallStats::dead_letters_pruned; DurableQueue::RemoveDeadLetters). Its record (what
  // GetCall reports) then goes with record_retention. Positive; InfiniteDuration (the
  // default, as before 2026-12-06): kept until redriven.
  absl::Duration dead_letter_retention = absl::InfiniteDuration();
  // The largest result (Value::ByteSize) a succeeded call's record keeps. A bigger one is
  // dropped: GetCall reports the call succeeded with a null result and its size in
  // CallInfo::result_dropped_bytes (the function ran and committed as usual). Records are kept
  // record_retention and no cap counts them, so that results of 15 MB cannot grow a tenant's
  // storage by gigabytes (3 GB from 200 calls in the 2026-12 hunt); a result meant to be read
  // later belongs in a document. 0: no result is kept; SIZE_MAX: every result.
  size_t max_recorded_result_bytes = 64 << 10;
  // The most calls one tenant may have waiting in the queue (pending or running: not yet
  // ended), so that one tenant (a mutation that schedules itself twice) cannot grow the queue
  // without end. Past it a mutation that schedules calls fails ResourceExhausted (nothing it
  // wrote commits; a queued one is retried under its retry policy, and recorded failed when its
  // attempts run out, not dead-lettered: a dead letter keeps its arguments and leaves room, so
  // such a chain grew its dead letters instead; it stops growing), and so does Submit (and an
  // action whose ctx.scheduler call it refuses, caught or not); a mutation that schedules more than
  // the cap at once never commits. Approximate: the engine counts the queue per tenant
  // (DurableQueue::TenantDepths, one scan, on the calling thread) at the first call that schedules
  // and when a tenant's estimate (the last count plus the calls this engine added since) would pass
  // the cap, at most once a second (up to a minute if counting took over 100 ms), and refuses only
  // on such a count; another process's calls are seen at the next count. While counts fail (an
  // adapter that cannot count: Unimplemented), nothing is refused. 0: no cap.
  size_t max_pending_calls_per_tenant = 1'000'000;
  // The most bytes those calls may take in the queue (about their encoded size with their
  // arguments, spilled or not: DurableQueue::TenantDepths), so that calls with big arguments
  // cannot fill the disk before the count of calls stops them (16 KiB arguments reach 16 GB at
  // 1,000,000 calls). Past it, as above: the calls that would pass it are refused
  // ResourceExhausted, counted and enforced the same way, with the calls. Arguments spilled to
  // a BlobStore other than the queue's own are not counted (QueuedCallOptions::blobs). 0: no
  // cap.
  uint64_t max_pending_bytes_per_tenant = uint64_t{1} << 30;
  absl::Duration lease_duration = absl::Seconds(60);
  absl::Duration poll_interval = absl::Milliseconds(10);
  size_t lease_batch = 256;
  SubmitterOptions submitter;  // rate limits per client, batching, spill
  // Quotas of every function unless its attributes say otherwise
  // (reservedCpuQuota, opportunisticRate): the reserved CPU quota in
  // CPU-seconds per second and the opportunistic rate r0 (calls/s at S = 1).
  // Unlimited by default: then the quota classes differ only in their
  // deadlines and criticality.
  FunctionConfig function_defaults;
  // S, the opportunistic share, follows the slots' utilization (in use /
  // slots, sampled every utilization_interval) toward utilization.target.
  UtilizationControllerOptions utilization;
  absl::Duration utilization_interval = absl::Seconds(1);
  // An opportunistic call runs regardless of S once its deadline is this
  // close (plus its function's average cost).
  absl::Duration opportunistic_deadline_slack = absl::Minutes(5);
  // The AIMD limiter of each service (the defaults are XFaaS's; tests
  // shorten the window).
  AimdOptions service_limits;
  // Services actions may call, by name.
  std::map<std::string, ServiceFn> services;
  // The isolates that run actions (apart from queries and mutations, so an
  // action waiting on a service or on ctx.runMutation never holds their
  // workers). workers 0 = 2; limits null = 1 s of CPU and 30 s of
  // wall-clock time per action (it may wait on services).
  IsolateSchedulerOptions actions;
  // If set: the console output of each delivery that ran a function and logged
  // something (whether it succeeded or failed), on a txfn thread as the
  // delivery ends. Must be thread-safe and must not block. (A direct call's
  // output is in its CallResult, or FailedCallLogs of its error.)
  std::function<void(const QueuedCallLogs&)> on_logs;
  // The console output on_logs receives of one tenant's queued calls, in bytes per second, with
  // a burst of 4 seconds' worth. A console.* message costs about what printing it a line at a
  // time after a header, controls escaped as \xNN, writes: its bytes; for each line in it 64
  // and the tenant's and function's names; 3 more for each byte of a control character (but
  // tab). A message that costs more than the burst never passes. Each delivery caps its own
  // output (FunctionRunnerOptions::max_log_bytes), but a tenant running many could write
  // gigabytes a minute to the host's log (5 GB in 15 s in the 2026-12 hunt). Past it, the rest
  // of a delivery's messages are dropped (QueuedCallStats::log_lines_dropped) and a kWarn
  // message ends what passed; the next delivery of the tenant whose output passes begins with
  // one saying how many were dropped before it. >= 0; 0: nothing passes; infinity: no limit.
  double log_bytes_per_second_per_tenant = 1 << 20;
};

// What the one-argument Engine::Open (kept for source compatibility) opens.
enum class EngineStorage { kSqlite, kMemory };

struct EngineOptions {
  // Read only by the one-argument Engine::Open; Engine::Open(storage, ...)
  // and OpenSqliteEngine ignore them.
  EngineStorage storage = EngineStorage::kSqlite;
  std::string path;                         // the SQLite file (kSqlite)
  SqliteOptions sqlite;                     // options of that file (kSqlite)
  std::shared_ptr<Storage> custom_storage;  // if set, used instead of `storage`
  // The engine's scheduler. max_in_flight_per_tenant == 0 here means "no
  // per-tenant cap beyond the queue" (the engine sets it to queue_capacity):
  // an embedded engine's callers are its own back-pressure. A tenant still
  // runs on at most max_running_per_tenant workers at once (default half of
  // them), so one tenant's calls can never take every worker; its limits
  // (CPU, wall-clock, heap, array buffers) come from scheduler.limits.
  IsolateSchedulerOptions scheduler;
  FunctionRunnerOptions runner;
  // Where queries and mutations run; null: the engine's own FunctionRunner. A RemoteRunner
  // (txfn/remote_runner.h) sends them to runner processes reading the same storage (so it
  // must be shared, e.g. PostgreSQL), and the engine's committers validate and commit their
  // writes. Deploys' module checks and actions still run on the engine's own runner.
  std::shared_ptr<FunctionExecutor> executor;
  // With an executor: a run it refuses outright (every runner at its cap, or none healthy)
  // runs on the engine's own runner instead of failing ("both": remote first, local when
  // the remote side cannot take it). A run the executor took and then lost is not re-run
  // here: its result (Unavailable after its attempts) is the call's.
  bool executor_falls_back_to_local = true;
  CommitterOptions committer;  // for every tenant's committer
  // Mutations re-run on OCC conflict up to this many runs in all (not
  // counting the runs after entering a contention lane, see "Hot
  // documents"), then Aborted. The blocking form sleeps a jittered exponential backoff between
  // runs; the callback form re-submits at once (it never sleeps on a worker).
  RetryOptions mutation_retry{.max_attempts = 8};
  // Contention lanes for Mutation retries (call_path.h, "Hot documents").
  bool contention_lanes = true;
  // Version retention (see the file comment): keep what snapshots of the last
  // `version_retention` read (default 5 minutes, as Convex's write-log
  // window; raised to committer.conflict_window if shorter), collected every
  // `retention_interval` (at most an hour). InfiniteDuration(): keep every
  // version, no background thread. Storage adapters without retention
  // (Unimplemented) keep everything. Time is the committer's clock.
  absl::Duration version_retention = absl::Minutes(5);
  absl::Duration retention_interval = absl::Minutes(1);
  // How long a mutation's idempotency key (MutationOptions::idempotency_key) is kept after
  // the commit that first used it: at least this long, a call with the key replays that
  // commit's result (<txfn/idempotency.h>); after it, a pass deletes the key, and a call with
  // it then runs and commits again. An engine that runs calls (queued.run; a submit-only one
  // writes nothing) deletes expired keys in passes every min(retention / 2, 1 h), the first
  // a minute after it opened, 64 tenants per step, each page of keys in one transaction that
  // reads them again (a racing call with a key conflicts with its deletion, never loses its
  // result). So a key goes between `retention` and about `retention` + min(retention / 2,
  // 1 h) after its commit. A key's age is its commit timestamp's, counted to the earlier of
  // this engine's committer clock and the tenant's newest commit (an engine whose clock runs
  // ahead does not take fresh keys for old ones). Default 24 hours (as Stripe's); positive
  // (Engine::Open: InvalidArgument); InfiniteDuration: kept for the tenant's life (as every
  // key was until 2026-12-06).
  absl::Duration idempotency_key_retention = absl::Hours(24);
  // Idle tenants (see the file comment): a tenant no call or other operation
  // has used for this long (on the committer's clock) is closed by the next
  // sweep, and reopened on its next use. Default 10 minutes. Zero: closed by
  // the first sweep after its last use ends. InfiniteDuration(): never
  // closed (every tenant used stays in memory until deleted).
  absl::Duration tenant_idle_timeout = absl::Minutes(10);
  // How often the background thread sweeps the open tenants: closes idle
  // ones and prunes each committer's conflict history. Clamped to
  // [1 ms, 1 hour]. Engine::SweepTenants runs a sweep on demand.
  absl::Duration tenant_sweep_interval = absl::Seconds(5);
  // See "Queued calls" in the file comment.
  QueuedCallOptions queued;
};

// Per-call options of Engine::Submit. Unset fields take the function's
// attributes (its wrapper's criticality, quota, deadlineMs, retry).
struct CallOptions {
  absl::Time start_after = absl::InfinitePast();  // InfinitePast: now
  absl::Time deadline = absl::InfinitePast();     // InfinitePast: start + the function's deadline
  std::optional<Criticality> criticality;
  std::optional<QuotaClass> quota;
  std::optional<RetryPolicy> retry;
  // Calls of a tenant with the same key are one call: a second Submit returns
  // the first one's id and enqueues nothing (<= 256 bytes). It is refused
  // (AlreadyExists) if it names another function, or, while the first is still
  // in the queue, other arguments.
  std::string idempotency_key;
  std::string client;  // whose rate limit applies (QueuedCallOptions::submitter)
};

// A queued call as Engine::GetCall sees it.
struct CallInfo {
  CallId id;
  std::string tenant;
  std::string function;
  CallState state = CallState::kPending;
  Value result;  // kSucceeded (null if not kept: result_dropped_bytes)
  // kSucceeded: the result was not kept, being this many bytes, over
  // QueuedCallOptions::max_recorded_result_bytes. 0: kept (or not succeeded).
  uint64_t result_dropped_bytes = 0;
  absl::Status error;   // kFailed: the function's error; kDeadLettered: why
  int attempts = 0;     // deliveries that began
  absl::Time at;        // kPending: due; kRunning: lease expiry; else when it ended
  absl::Time deadline;  // InfinitePast when no longer known (the queue forgot the call)
};

struct QueuedCallStats {
  uint64_t submitted = 0;  // calls Submit enqueued
  uint64_t scheduled = 0;  // calls mutations scheduled (ctx.scheduler), enqueued after commit
  uint64_t ran = 0;        // deliveries that ran the function
  uint64_t skipped = 0;    // deliveries that found the call ended (cancelled, or recorded
                           // by an earlier delivery) and recorded nothing
  uint64_t succeeded = 0;
  uint64_t failed = 0;         // recorded failed (the function failed), or its tenant deleted
  uint64_t busy = 0;           // deliveries given back unstarted: the isolates' queue was full,
                               // or (actions) no action isolate could run it at once
  uint64_t unavailable = 0;    // deliveries given back, not an attempt: refused Unavailable
                               // before they started (every remote runner down, storage
                               // unreachable), or another process owns the tenant
                               // (IsTenantOwnedElsewhere: refusing a mutation's commit, or
                               // the record of its failure)
  uint64_t retried = 0;        // deliveries that ended in a retryable failure (an attempt)
  uint64_t back_pressure = 0;  // service answers that were back-pressure
  // Gauges: tenants whose function table (kinds, attributes) is kept, and functions with
  // scheduler limits of their own (maxConcurrency, services, quotas). A deleted tenant's go
  // at once; a closed tenant's table once others' tables doubled the count.
  uint64_t function_tables = 0;
  uint64_t limited_functions = 0;
  uint64_t records_pruned = 0;       // records of ended calls deleted after record_retention
  uint64_t dead_letters_pruned = 0;  // dead letters deleted after dead_letter_retention
  // Console messages of queued calls not passed to on_logs: log_bytes_per_second_per_tenant.
  uint64_t log_lines_dropped = 0;
  // Calls refused (Submit) and mutations failed for max_pending_calls_per_tenant, and the
  // counts of the queue it took.
  uint64_t pending_cap_refused = 0;
  uint64_t pending_cap_recounts = 0;
  SchedulerStats scheduler;
  SubmitterStats submitter;
};

// Tenant metadata (schema, modules, enabled) is kept decoded in memory with
// each tenant's published snapshot; storage is read only to open a tenant
// and when a commit changes the metadata (CommitterStats::metadata_loads).
struct MetadataCacheStats {
  uint64_t hits = 0;    // engine calls that found the tenant's metadata in memory
  uint64_t misses = 0;  // engine calls that loaded it from storage (first use, or after an
                        // idle close)
};

// The background version retention (EngineOptions::version_retention).
struct RetentionStats {
  uint64_t passes = 0;            // passes over every tenant
  uint64_t versions_dropped = 0;  // Storage::ApplyRetention totals
  uint64_t commits_dropped = 0;
  uint64_t failures = 0;  // ApplyRetention calls that failed (retried next pass)
  // Idempotency keys deleted after EngineOptions::idempotency_key_retention.
  uint64_t idempotency_keys_pruned = 0;
};

struct EngineStats {
  uint64_t queries = 0;    // Query calls that succeeded
  uint64_t mutations = 0;  // Mutation calls that committed
  uint64_t replayed = 0;   // Mutation calls answered from their idempotency key
  uint64_t conflicts = 0;  // OCC conflicts seen (each caused a retry or an Aborted)
  uint64_t retries = 0;    // mutation re-runs after a conflict
  // Mutation calls that waited in a contention lane (after a conflict, or
  // because their function and arguments conflicted recently).
  uint64_t serialised = 0;
  uint64_t deploys = 0;
  uint64_t deploys_refused = 0;
  // Summed over the committers open now and those closed idle (a deleted
  // tenant's are gone; history_* count open committers only): commits /
  // batches is the number of commits per Storage::Write (fsync).
  CommitterStats committer;
  IsolateSchedulerStats scheduler;
  ModuleCacheStats module_cache;
  MetadataCacheStats metadata_cache;
  RetentionStats retention;
  uint64_t tenants_open = 0;         // tenants in memory now (a committer each)
  uint64_t tenants_closed_idle = 0;  // closures by idle sweeps (each reopens on next use)
  QueuedCallStats queued;
};

class Engine {
 public:
  using Callback = std::function<void(absl::StatusOr<CallResult>)>;

  // Assembles an engine on `storage` (not null; the engine shares it) and
  // starts the scheduler's threads. InvalidArgument for a null storage; the
  // scheduler's error otherwise.
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<Engine>> Open(
      std::shared_ptr<Storage> storage, EngineOptions options);
  // The former opener: options.custom_storage if set, else an InMemoryStorage
  // (kMemory) or the SQLite file options.path (kSqlite; created if missing;
  // InvalidArgument for an empty path). Defined in txfn::sqlite_engine (it
  // may open SQLite): link that target to call it. Prefer the two-argument
  // form or OpenSqliteEngine (<txfn/sqlite_engine.h>).
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<Engine>> Open(EngineOptions options);
  // Waits for running calls' work items, stops the threads. No call may be
  // made concurrently with or after destruction.
  virtual ~Engine() = default;

  // ---- Tenants ----
  // A valid name is 1..64 bytes of [A-Za-z0-9_.-]. AlreadyExists if it
  // exists; InvalidArgument for a bad name.
  [[nodiscard]] virtual absl::Status CreateTenant(std::string_view tenant) = 0;
  // Replaces the tenant's modules (path -> source; paths not listed are
  // removed) and schema in one transaction. Validates first — every module
  // compiles, links and evaluates its top level, existing documents fit the
  // new schema — else refused with InvalidArgument naming the problem (or
  // FailedPrecondition for dropping a table that still has documents), and
  // the old version keeps serving. NotFound for an unknown tenant. Allowed
  // on a disabled tenant.
  [[nodiscard]] virtual absl::Status Deploy(std::string_view tenant,
                                            const std::map<std::string, std::string>& modules,
                                            const Schema& schema) = 0;
  // The same with the schema in its JSON form (schema.h); a schema that does
  // not parse is refused with InvalidArgument.
  [[nodiscard]] virtual absl::Status DeployJson(std::string_view tenant,
                                                const std::map<std::string, std::string>& modules,
                                                std::string_view schema_json) = 0;
  // Disabled: every call fails with FailedPrecondition (no JS runs); data,
  // modules and schema are kept. NotFound for an unknown tenant.
  [[nodiscard]] virtual absl::Status SetEnabled(std::string_view tenant, bool enabled) = 0;
  // A first deploy that creates its tenant: creates `tenant` unless it
  // exists, then runs `deploy` (Deploy or DeployJson for it). If the deploy is
  // refused, a tenant this call created is deleted again, so a refused first
  // deploy leaves no empty tenant behind, unless anything was committed to it
  // since its creation (another first deploy that found it, from this process
  // or another sharing the storage): the check and the delete are one step
  // (Storage::DeleteTenantIfNewest), so no such commit is lost. Returns
  // whether it created the tenant; else the deploy's error, or CreateTenant's
  // (not AlreadyExists). If the tenant could not be deleted, the deploy's
  // error says so (same code and payloads). A tenant its creator deleted
  // again between this call's look and its deploy is created once more. On
  // PostgreSQL, while another instance holds the tenant's lease (it is
  // creating or serving it), the creation fails with Unavailable: try again.
  // Thread-safe.
  [[nodiscard]] virtual absl::StatusOr<bool> DeployCreatingTenant(
      std::string_view tenant, absl::FunctionRef<absl::Status()> deploy) = 0;
  // Removes the tenant and all its data. NotFound if it does not exist. A
  // mutation that was running then fails with NotFound at its commit. This
  // engine's idle isolates of the tenant and its compiled modules go at once,
  // disposed of on the calling thread (about a millisecond each; called from a
  // callback, on that txfn thread); a request still running finishes on its
  // isolate, which the LRU evicts later, as do remote runners' and other
  // processes'.
  // Another engine with the tenant open (another process on the same SQLite
  // file or PostgreSQL database) never writes it again: storage refuses its
  // next commit (NotFound, IsTenantDeletedElsewhere), and from then on its
  // calls fail with NotFound until the tenant is created again, which it then
  // opens afresh. It notices at its next call where it asks storage for newer
  // commits (SQLite: after any other connection's commit; PostgreSQL: an
  // engine that does not hold the tenant's lease), else at its next mutation:
  // until then, the owner on PostgreSQL serves queries of the emptied data
  // with its modules (docs/postgres.md).
  // The tenant's queued calls go too: those waiting (due or not) and its dead
  // letters are taken out of the queue with their blobs, so none runs in, nor
  // holds an idempotency key of, a tenant created again under the name (until
  // 2026-12-07 they did). A call running at that moment ends with its run, whatever the run's
  // outcome: not retried, not dead-lettered (until 2026-12-08 a retry could start in a
  // tenant created again meanwhile), within this process; one another process runs ends as
  // its run does there.
  [[nodiscard]] virtual absl::Status DeleteTenant(std::string_view tenant) = 0;
  // Every tenant, sorted.
  [[nodiscard]] virtual absl::StatusOr<std::vector<std::string>> ListTenants() = 0;
  // The tenant's latest snapshot (for tools: tables, modules, export).
  [[nodiscard]] virtual absl::StatusOr<std::shared_ptr<const Snapshot>> Latest(
      std::string_view tenant) = 0;

  // ---- Calls ----
  // `function` is "path/to/module:export". Blocks until done.
  [[nodiscard]] absl::StatusOr<CallResult> Query(std::string_view tenant, std::string_view function,
                                                 const Value& args) {
    return Query(tenant, function, args, QueryOptions{});
  }
  // With options (a deadline: QueryOptions, txfn/call_path.h). A query sees every commit
  // acknowledged before it began, this process's or another's: where another process may
  // have committed and storage cannot say (a server restarting), it fails Unavailable
  // rather than run on a snapshot that may be stale (Committer::Newest).
  [[nodiscard]] virtual absl::StatusOr<CallResult> Query(std::string_view tenant,
                                                         std::string_view function,
                                                         const Value& args,
                                                         const QueryOptions& options) = 0;
  [[nodiscard]] absl::StatusOr<CallResult> Mutation(std::string_view tenant,
                                                    std::string_view function, const Value& args) {
    return Mutation(tenant, function, args, MutationOptions{});
  }
  // With options (an idempotency key, InvalidArgument for a bad one; a
  // deadline: MutationOptions, txfn/call_path.h).
  [[nodiscard]] virtual absl::StatusOr<CallResult> Mutation(std::string_view tenant,
                                                            std::string_view function,
                                                            const Value& args,
                                                            const MutationOptions& options) = 0;
  // Callback forms: `done` runs exactly once, on a txfn thread (an isolate
  // worker, or the timer that answers calls still waiting at their deadlines:
  // keep it short, it holds up other calls' answers), unless the call is
  // refused at once: then the status is returned and `done` never runs (an
  // unknown or disabled tenant, a bad idempotency key, a full queue or a
  // tenant over its in-flight cap, a deadline already past as the call is
  // queued, a storage error opening the tenant or reading its key). The call
  // itself may block while an idle tenant is opened (a storage read).
  [[nodiscard]] absl::Status QueryAsync(std::string_view tenant, std::string_view function,
                                        const Value& args, Callback done) {
    return QueryAsync(tenant, function, args, QueryOptions{}, std::move(done));
  }
  [[nodiscard]] virtual absl::Status QueryAsync(std::string_view tenant, std::string_view function,
                                                const Value& args, const QueryOptions& options,
                                                Callback done) = 0;
  [[nodiscard]] absl::Status MutationAsync(std::string_view tenant, std::string_view function,
                                           const Value& args, Callback done) {
    return MutationAsync(tenant, function, args, MutationOptions{}, std::move(done));
  }
  [[nodiscard]] virtual absl::Status MutationAsync(std::string_view tenant,
                                                   std::string_view function, const Value& args,
                                                   const MutationOptions& options,
                                                   Callback done) = 0;

  // Runs an action (blocking the caller until it ends) on the action isolates,
  // with ctx.runQuery, ctx.runMutation, ctx.scheduler and ctx.services. Not
  // transactional: the mutations it ran stay committed if it fails later. Its
  // time is bounded by QueuedCallOptions::actions.limits (default 1 s of CPU,
  // 30 s of wall-clock time). Errors as Query's (NotFound, InvalidArgument,
  // a limit's ResourceExhausted, the function's own error); a service's error
  // the action does not catch fails it.
  [[nodiscard]] virtual absl::StatusOr<CallResult> Action(std::string_view tenant,
                                                          std::string_view function,
                                                          const Value& args) = 0;

  // ---- Queued calls (see the file comment) ----
  // Enqueues a call of `function` (a query, mutation or action the tenant's
  // modules export) and returns its id once the call is durable in the
  // queue. NotFound: unknown tenant or function; InvalidArgument: args that
  // are not an object or fail the function's `args` validator, a bad option
  // (a deadline not 1 s - 24 h after the start, ...); ResourceExhausted: the
  // client is over its rate (RetryAfter() says when to retry). Nothing is
  // enqueued on error, except an Unavailable marked IsCommitOutcomeUnknown
  // (<txfn/storage.h>): the queue's commit failed or its answer was lost, or a keyed
  // Submit's look after its Enqueue (below) failed, and the call may be queued. Retry with
  // CallOptions::idempotency_key to get exactly one call either way. A key names one call: a Submit
  // of a key whose call exists returns its id and queues nothing; one whose call has other
  // arguments (spilled ones too; once it ended, its record's digest of them, see CallRecord), or
  // is of another function, is AlreadyExists, also when the two Submits race in this engine or in
  // two processes sharing the queue (the queue keeps the first; the other Submit checks after its
  // Enqueue which call was kept, or, if the first ended meanwhile, its record).
  [[nodiscard]] virtual absl::StatusOr<CallId> Submit(std::string_view tenant,
                                                      std::string_view function, const Value& args,
                                                      const CallOptions& options = {}) = 0;
  // Where call `id` is. NotFound if no tenant of this engine knows it. A dead
  // letter is recorded in its tenant before it is first reported (here, by
  // ListCalls or CancelCall), so a delivery still running then cannot commit
  // or record an outcome: kDeadLettered, once said, stays (until
  // DurableQueue::Redrive puts the call back). Unrecorded by an engine with
  // queued.run = false, or if the tenant's storage refuses the write.
  [[nodiscard]] virtual absl::StatusOr<CallInfo> GetCall(const CallId& id) = 0;
  // Cancels a call that has not ended: it will not run (a mutation that is
  // running then conflicts and does not commit; a query or action already
  // running finishes, and an action's ctx.runMutation calls commit, but the
  // call stays kCancelled: how a call ended first is never overwritten).
  // NotFound: unknown call; FailedPrecondition: it already ended (the message
  // says how).
  [[nodiscard]] virtual absl::Status CancelCall(const CallId& id) = 0;
  // GetCall and CancelCall among `tenant`'s calls only: NotFound if `id` is not
  // one of them. A call id carries a 32-bit tag of its tenant's name, which
  // two names may share, so the unscoped forms may find a call of either; a
  // host acting for one tenant (a server answering its API key) uses these.
  // InvalidArgument: an empty `tenant`.
  [[nodiscard]] virtual absl::StatusOr<CallInfo> GetCall(const CallId& id,
                                                         std::string_view tenant) = 0;
  [[nodiscard]] virtual absl::Status CancelCall(const CallId& id, std::string_view tenant) = 0;
  // Blocks until call `id` has ended (succeeded, failed, dead-lettered or cancelled) and
  // returns how: GetCall(id, tenant) (GetCall(id) for an empty `tenant`), asked every 1 ms at
  // first, then less often, up to every 100 ms (nothing tells this engine when a call ends:
  // another process may run it). DeadlineExceeded naming the call and its state if it has not
  // ended within `timeout` (real time, not EngineOptions' clock); GetCall's errors as they are
  // (NotFound: no tenant knows the id). Thread-safe.
  //
  //   TXFN_ASSIGN_OR_RETURN(CallId id, engine->Submit("shop", "mail:send", args));
  //   TXFN_ASSIGN_OR_RETURN(CallInfo done, engine->WaitForCall(id, "shop", absl::Seconds(30)));
  //   if (done.state != CallState::kSucceeded) return done.error;
  [[nodiscard]] absl::StatusOr<CallInfo> WaitForCall(const CallId& id, std::string_view tenant,
                                                     absl::Duration timeout);
  // The calls of a tenant in id order, after `after` (the last id of the page before; a
  // default CallId: from the first), optionally only those in `state` and of `function`, at
  // most `limit` (0: none; SIZE_MAX: all): pending, running and dead-lettered ones from the
  // queue, ended ones from the tenant's call records, and, pending too, those its mutations
  // scheduled that are still in its outbox (committed, not yet queued: listed from the commit
  // on, as GetCall finds them; missing until 2026-12-07). All are read a page at a time in id
  // order, merged, until `limit` calls matched: a short listing reads little of a long
  // history (the queue's adapters still walk their calls of every tenant, filtering as they
  // go, but decode only the tenant's), while one that few calls match reads every record and
  // queued call after `after` (for tools). Ids are random, so id order is no time order.
  // NotFound: no such tenant.
  //
  //   CallId after;
  //   for (;;) {
  //     TXFN_ASSIGN_OR_RETURN(auto page, engine->ListCalls("shop", CallState::kFailed, "",
  //                                                        100, after));
  //     for (const CallInfo& c : page) Report(c);
  //     if (page.size() < 100) break;
  //     after = page.back().id;
  //   }
  [[nodiscard]] virtual absl::StatusOr<std::vector<CallInfo>> ListCalls(
      std::string_view tenant, std::optional<CallState> state, std::string_view function,
      size_t limit, const CallId& after) = 0;
  // The first page: ListCalls(tenant, state, function, limit, CallId()).
  [[nodiscard]] absl::StatusOr<std::vector<CallInfo>> ListCalls(std::string_view tenant,
                                                                std::optional<CallState> state,
                                                                std::string_view function,
                                                                size_t limit) {
    return ListCalls(tenant, state, function, limit, CallId());
  }
  // The queue's backlog per function (every tenant).
  [[nodiscard]] virtual absl::StatusOr<std::vector<FunctionDepth>> QueueDepths() = 0;
  // Stops leasing queued calls, gives back the ones not started and waits up
  // to `timeout` for the running ones (a graceful stop; the destructor does
  // it with a 2 s timeout). Returns how many were still running. Final: this
  // engine runs no queued calls after it (Submit still enqueues; open an
  // engine again to run them).
  virtual size_t StopQueuedCalls(absl::Duration timeout) = 0;
  // The AIMD limit of a service in calls per second (nullopt before its
  // first use).
  [[nodiscard]] virtual std::optional<double> ServiceRate(std::string_view service) const = 0;
  // The services queued actions may call (QueuedCallOptions::services), sorted.
  [[nodiscard]] virtual std::vector<std::string> ServiceNames() const = 0;

  // ---- Maintenance ----
  // Runs one version-retention pass over every tenant now (the background
  // thread runs one every retention_interval). OK, doing nothing, when
  // retention is off or the storage keeps every version; otherwise the first
  // storage error (the other tenants are still processed).
  [[nodiscard]] virtual absl::Status ApplyRetention() = 0;
  // Runs one tenant sweep now (the background thread runs one every
  // tenant_sweep_interval): prunes every open committer's conflict history
  // past its window and closes the tenants idle for tenant_idle_timeout
  // (none if it is InfiniteDuration()). Returns how many it closed. Never
  // fails; may run concurrently with calls (a tenant in use is skipped).
  virtual size_t SweepTenants() = 0;

  virtual EngineStats stats() const = 0;
};

// The former free function, kept for source compatibility.
[[deprecated("use Engine::DeployCreatingTenant")]] [[nodiscard]] inline absl::StatusOr<bool>
DeployCreatingTenant(Engine& engine, std::string_view tenant,
                     absl::FunctionRef<absl::Status()> deploy) {
  return engine.DeployCreatingTenant(tenant, deploy);
}

}  // namespace txfn

#endif  // TXFN_ENGINE_H_

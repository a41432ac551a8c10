// txfn/function_runner.h — runs a tenant's JavaScript query or mutation.
//
// A FunctionRunner runs "path/to/module:exportName" of a tenant, with a Value
// argument object, against a Transaction begun at a Snapshot, on an isolate of
// an IsolateScheduler. It returns plain data that can cross a process
// boundary: the returned Value or the error, the read set and the buffered
// writes (a PreparedCommit for a committer, possibly elsewhere), the console
// logs and stats.
//
//   auto scheduler = *txfn::IsolateScheduler::Create(
//       {.workers = 2, .customizer = txfn::FunctionRunnerIsolateCustomizer()});
//   txfn::FunctionRunner runner(std::move(scheduler));
//   txfn::RunResult r = runner.Run(committer->Latest(),
//       {.function = "messages:send", .args = args, .kind = txfn::FunctionKind::kMutation,
//        .seed = absl::Uniform<uint64_t>(bitgen)});
//   if (r.status.ok()) TXFN_RETURN_IF_ERROR(committer->Commit(std::move(r.commit)).status());
//
// The JavaScript side. Modules are ES modules stored in the tenant's metadata
// (TenantMetadata::modules(), path -> source; Transaction::PutModule). A
// function name "dir/mod:fn" finds the module "dir/mod" or "dir/mod.js" and
// its export "fn" (no ":" = export "default"). Imports resolve "./x.js" and
// "../x.js" relative to the importing module and other specifiers from the
// root ("lib/util.js"), with "." and ".." normalised and ".js" optional; the
// built-in module "txfn/server" exports the wrappers:
//
//   import { query, mutation } from "txfn/server";
//   export const list = query({args: {channel: "string"}, handler: async (ctx, {channel}) =>
//       ctx.db.query("messages").withIndex("by_channel", q => q.eq("channel", channel))
//             .order("desc").take(20)});
//   export const send = mutation(async (ctx, {channel, body}) =>
//       ctx.db.insert("messages", {channel, body}));
//
// Validator types are the schema's (schema.h): "null", "int64" (a BigInt),
// "float64" (a number), "bool", "string", "bytes" (an ArrayBuffer), "array",
// "object", "any", with "number", "bigint" and "boolean" accepted as aliases;
// a trailing "?" makes the argument optional; arguments not listed are
// rejected. Errors use the schema's names ("argument `n` must be int64, got
// float64"); an unknown type's error lists the valid ones.
//
// ctx.db (every method returns a Promise): get(id) -> document or null;
// query(table) [.withIndex(name, q => q.eq(f, v)... .gt/.gte(f, v) .lt/.lte(f, v))]
// [.order("asc"|"desc")] [.filter(doc => bool)] then .take(n), .first(),
// .unique() (error if more than one), .collect(), or
// .paginate({cursor, numItems}) -> {page, continueCursor, isDone} where the
// cursors are opaque strings, stable under concurrent inserts (null or "" =
// start), that continue only the query that returned them: one of another
// table, index, eq() values or order, cut short or made up is InvalidArgument;
// insert(table, doc) -> id, patch(id, fields) (sets those fields; one set to
// undefined is removed, as in Convex: patch(id, {due: undefined})),
// replace(id, doc), delete(id).
// Every read goes through the Transaction, so the read set is exact: filter()
// runs in JS over what was read; take(n) without filter() reads n documents.
//
// Values: int64 <-> BigInt, float64 <-> number, bool, string, bytes <->
// ArrayBuffer (any ArrayBuffer view is accepted too), null <-> null, arrays,
// plain objects (undefined fields are dropped, undefined array elements
// become null, undefined as a whole becomes null); documents carry _id (a
// string) and _creationTime (ms, a number). Functions, symbols, cyclic
// objects, objects whose state is not in own properties (Date, Map, Set,
// RegExp, Promise, Proxy, boxed primitives such as new Number(5), Errors,
// iterators), getters that throw and nesting deeper than 64 are
// InvalidArgument naming the path; any other object (a class instance, an
// Intl object) is converted by its own enumerable properties. A result or a
// ctx.db value larger than FunctionRunnerOptions::max_value_bytes is
// ResourceExhausted (Limit::kValueSize); arguments that large are the
// caller's bad input, InvalidArgument (no Limit payload), refused before any
// code runs.
//
// Determinism: Math.random is a splitmix64 PRNG seeded from RunRequest::seed;
// Date.now(), new Date(), Date() and Intl.DateTimeFormat's format() and
// formatToParts() without a date use the run's time, frozen for the run
// (RunRequest::now in ms, at the earliest the snapshot's timestamp),
// and no path leads to the real clock (Date's prototype chain holds no
// original Date); there are no timers (setTimeout is undefined), network or
// file APIs, and no WebAssembly (unless the host's own V8 platform enables
// it: InitializeV8). Document ids are unique whatever the seed (the
// transaction draws them from its own entropy), unless
// RunRequest::deterministic_ids asks for a replay: then they come from the
// seed too, and the same function, arguments, seed, time and snapshot give
// identical results and writes (but for how deep a recursion in code made by
// Function or eval goes in a hardened context: docs/hardened.md, "Its
// limits"). console.log/info/warn/error/debug are
// captured into RunResult::logs, and so is every promise still rejected
// without a handler when the request ends ("Unhandled promise rejection:
// ...", a warning).
//
// The sandbox. Tenant code is assumed hostile; what holds for any code:
// - Nothing of a request runs after it returns: each context has its own
//   microtask queue and is closed when its request ends (V8 refuses to run
//   JavaScript in it), SharedArrayBuffer (and with it Atomics.wait and
//   waitAsync), WeakRef and FinalizationRegistry do not exist, and ctx.db
//   serves only calls made while its own request runs. A request's writes
//   can only reach its own transaction.
// - Limits (IsolateScheduler's LimitEnforcer): CPU time (1 s), wall-clock
//   time (2 s), V8 heap (64 MiB), ArrayBuffer memory (64 MiB). A request
//   that hits one fails with ResourceExhausted "function F exceeded its cpu
//   time / wall time / heap / array buffer memory limit", whatever its code
//   did meanwhile (a termination inside a getter, a stack hook or a result
//   conversion too), and its isolate is replaced. Converting arguments and
//   results checks the limits as it goes and bounds the memory it takes.
// - Builtins that V8 runs without checking for termination are bounded:
//   generic Array methods refuse receivers of more than 2^24 indices
//   (holey arrays, array-likes, a length from a getter), split() strings of
//   more than 2^24 characters, key listings and JSON of typed arrays or
//   strings over 2^20 elements; typed-array sort and global replaces on long
//   strings run in an interruptible form; typed array views hold at most
//   2^22 elements (DataView is not capped). A refusal is ResourceExhausted
//   naming the "sandbox limit". A request the scheduler cannot stop (inside
//   a builtin V8 never interrupts) is answered ResourceExhausted at its
//   limit + abandon_grace, and its worker replaced (IsolateLease::OnAbandon).
// - ctx.db checks every argument's type and size first (ids up to 64
//   characters, table and index names up to 64, page sizes integers in
//   [0, 2^30] for take(n); paginate's numItems is at least 1) and answers bad
//   input with InvalidArgument; error messages
//   quote at most a short prefix of tenant data.
//
// Errors (RunResult::status):
// - FailedPrecondition: the tenant is disabled (no JS runs).
// - NotFound: no such module or export.
// - InvalidArgument: bad arguments (validator), a value that cannot be
//   converted, a query calling a mutation or the other way round, a write in
//   a query, a schema violation, an export that is not a query or mutation.
// - ResourceExhausted: a transaction limit (then the function fails even if
//   JS caught the error), a value over max_value_bytes, a scheduler limit
//   (CPU time, wall time, heap, array buffer memory: the message names it), a
//   sandbox limit on a builtin, a full scheduler queue.
// - Unknown: an uncaught JS exception (including a syntax error, deep
//   recursion and a promise that was still pending after the microtask queue
//   drained). An error a ctx.db call threw keeps its code when it propagates
//   uncaught (e.g. NotFound from patch of a missing document).
// Every error message of a JS exception carries the JS message and stack with
// module paths and line numbers ("messages.js:3"). On error, `value` is null
// and `commit` holds the read set but no writes.
//
// Contexts (FunctionRunnerOptions::context_mode; docs/hardened.md has the
// threat list and the tests behind each claim):
// - kHardened, the default for queries and mutations: each isolate keeps one
//   context for its tenant, prepared once from the startup snapshot and then
//   locked down: every intrinsic, txfn's own objects (ctx, ctx.db, console,
//   query(), the ctx.db.query() classes, the Date and Math.random
//   replacements) and the global object are deeply frozen (own properties
//   with symbol keys, getters and setters, and prototypes, transitively),
//   and the per-context state a request could write is removed: the legacy
//   RegExp statics (RegExp.$1..$9, input, lastMatch, ...) are gone,
//   Error.stackTraceLimit is fixed at 10 and Error.prepareStackTrace cannot
//   be set. Each request gets new instances of its modules (compiled from
//   the code cache, linked and evaluated again: module-level state starts
//   fresh), a new ctx object, and its own Date and Math.random seed. What
//   holds: no request sees anything another request made (every object a
//   request can reach is either immutable or made in that request), and no
//   job of a request runs in a later one (jobs still queued when it ends run
//   before its worker moves on, with ctx.db and console refusing them; a
//   request stopped by a limit takes the context with it). What it costs
//   tenants: built-ins cannot be patched or extended (no polyfills that add
//   to a prototype, no globalThis.x = ...: a TypeError in module code, which
//   is strict), Error.stackTraceLimit/prepareStackTrace cannot be changed,
//   RegExp.$1 and friends do not exist, and assigning a property that
//   shadows a frozen inherited one throws (the "override mistake"), except
//   for the names libraries commonly assign (constructor, toString,
//   valueOf, ... of Object.prototype; name, message, toString of the Error
//   prototypes; toString of Function.prototype), which are made accessors
//   that define the property on the receiver. Symbol.for's registry is
//   per isolate (as in every mode): a registered symbol carries no data, and
//   whether a key was registered before is unobservable except through
//   timing. Several times faster than kFresh (bench/runner_bench.cc).
// - kFresh: every request gets a new v8::Context (globals and prototype
//   changes never outlive a request; built-ins may be patched within it).
//   The strongest isolation and the most compatible, at the price of
//   creating a context per request.
// - FunctionRunnerOptions::reuse_context (for trusted code only; it wins over
//   context_mode): an isolate keeps one unhardened context (with its
//   evaluated modules) for its tenant and runs the tenant's next requests in
//   it while the tenant's modules are unchanged. Fastest, but globals,
//   prototype changes and module-level state of one request are visible to
//   the next requests of that tenant on that isolate (never to other
//   tenants). Math.random and Date still follow each request; ctx is one
//   object of the context, so a ctx kept in module state or a global acts
//   for whichever request runs when it is used. Jobs a request leaves queued
//   run before its context is kept, while ctx refuses (none runs in the next
//   request). Module state is a cache, not a store: it goes with the isolate
//   (evicted, stopped by a limit, or idle with over half its heap limit live:
//   txfn/isolate_scheduler.h).
// Actions always get a fresh context (unless reuse_context opts their tenant
// in): they run for long and block on their host, so a context per action
// costs little, and their ctx reaches the host's services.
// RunStats says which mode served a request. Deploy checks
// (CheckModules, DescribeFunctions) evaluate the modules in the mode their
// queries and mutations will run in, so a module that patches a built-in
// at its top level is refused at deploy time under kHardened.
//
// Thread safety: FunctionRunner is thread-safe; Run and RunAsync may be called
// from any threads concurrently.
#ifndef TXFN_FUNCTION_RUNNER_H_
#define TXFN_FUNCTION_RUNNER_H_

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "txfn/errors.h"  // LogEntry, and the payloads of failed runs
#include "txfn/isolate_scheduler.h"
#include "txfn/snapshot.h"
#include "txfn/transaction.h"
#include "txfn/value.h"

namespace txfn {

namespace internal {
class RunnerCore;
}  // namespace internal

enum class FunctionKind { kQuery, kMutation, kAction };

// What an action's ctx reaches beyond its isolate: ctx.runQuery,
// ctx.runMutation, ctx.services.<name>(args) and ctx.scheduler. Called on
// the action's isolate thread, which the call may block (run actions on a
// scheduler of their own, so a blocked action never holds a worker that the
// queries and mutations it waits for need). An error becomes a JS exception
// carrying its status code (a service's ResourceExhausted or Unavailable
// stays so). Implementations must be thread-safe.
class ActionHost {
 public:
  virtual ~ActionHost() = default;
  [[nodiscard]] virtual absl::StatusOr<Value> RunQuery(std::string_view function,
                                                       const Value& args) = 0;
  [[nodiscard]] virtual absl::StatusOr<Value> RunMutation(std::string_view function,
                                                          const Value& args) = 0;
  [[nodiscard]] virtual absl::StatusOr<Value> CallService(std::string_view service,
                                                          const Value& args) = 0;
  // Schedules `function` after `delay` or at `at` (one is set); returns the
  // call id's text form. Not atomic with anything: an action has no
  // transaction.
  [[nodiscard]] virtual absl::StatusOr<std::string> Schedule(std::string_view function,
                                                             const Value& args,
                                                             std::optional<absl::Duration> delay,
                                                             std::optional<absl::Time> at) = 0;
  [[nodiscard]] virtual absl::Status Cancel(std::string_view call_id) = 0;
};

// An exported function as a deploy sees it (FunctionRunner::DescribeFunctions).
struct FunctionInfo {
  FunctionKind kind = FunctionKind::kQuery;
  // The wrapper's options other than handler and args (criticality, quota,
  // retry, ...: <txfn/call_records.h> ParseFunctionAttributes), or null.
  Value attributes;
  // Its `args` validator as checked: [[name, type, optional], ...] with the
  // schema's type names; null when it has none (any object is accepted).
  Value args;
};

// The canonical name of a function: "dir/mod:fn" for "dir/mod.js:fn", and
// "dir/mod:default" for "dir/mod" (the keys of DescribeFunctions).
[[nodiscard]] std::string CanonicalFunctionName(std::string_view function);

// The IsolateCustomizer (txfn/isolate_customizer.h) for schedulers whose
// isolates run a FunctionRunner: it makes them from the runner's startup
// snapshot (its JavaScript environment prebuilt, so a fresh context per
// request is deserialised instead of bootstrapped: about 0.3 ms instead of
// several) and refuses Atomics.wait on them. The snapshot is made once per
// process, when the first isolate is. A runner also works on isolates made
// without it, only slower. Thread-safe; the same object on every call.
std::shared_ptr<const IsolateCustomizer> FunctionRunnerIsolateCustomizer();

// "query", "mutation" or "action".
std::string_view FunctionKindName(FunctionKind kind);
// "a query", "a mutation" or "an action" (for messages).
std::string FunctionKindWithArticle(FunctionKind kind);

// A call of an export as another kind (a mutation run as a query, a query
// as an action, ...) fails with InvalidArgument before any of the function's code runs,
// carrying this payload; its value is the declared kind's name. A caller that
// does not know the kind (the txfn CLI's `run`) calls it as a query and, on
// DeclaredKind(status) == kMutation, as a mutation.
inline constexpr std::string_view kKindMismatchTypeUrl = "type.txfn.dev/txfn.KindMismatch";
// The kind the export was declared as, if `status` is such a mismatch; else nullopt.
[[nodiscard]] std::optional<FunctionKind> DeclaredKind(const absl::Status& status);
// Such a mismatch: `function` declared as `declared`, called as `called`.
[[nodiscard]] absl::Status KindMismatchError(std::string_view function, FunctionKind declared,
                                             FunctionKind called);

// Decides, once, between a run starting and its caller giving up on it (FunctionExecutor::Run
// at the request's deadline): exactly one of them wins. Giving up is opt-in: an executor that
// keeps the request waiting in this process (FunctionRunner, in its isolates' queue) calls
// Queued() before it queues it, and Begin() as the run starts; a run whose executor never
// called Queued() is never given up (its caller waits for its answer, as an executor that
// does not know of the gate may still run it and reach the request's callbacks).
// Thread-safe.
class RunStartGate {
 public:
  // For the executor, before it queues the run: from now on its caller may give up on it.
  void Queued() {
    int expected = kNew;
    state_.compare_exchange_strong(expected, kQueued);
  }
  // For the executor, as the run starts: true if it may begin (again true for a later attempt
  // of it); false if the caller gave up first: then run nothing, and touch none of the
  // request's callbacks (check_scheduled may point at what its caller no longer holds).
  [[nodiscard]] bool Begin() {
    int state = state_.load();
    while (state != kBegun && state != kGivenUp) {
      if (state_.compare_exchange_weak(state, kBegun)) return true;
    }
    return state == kBegun;
  }
  // For the caller: true if it gave up on a queued run before it began (it will not begin);
  // false if it began, or its executor never said it was queued (wait for the answer then).
  [[nodiscard]] bool GiveUp() {
    int expected = kQueued;
    return state_.compare_exchange_strong(expected, kGivenUp) || expected == kGivenUp;
  }
  // Whether the caller gave up (for a scheduler to drop the run unstarted).
  [[nodiscard]] bool given_up() const { return state_.load() == kGivenUp; }

 private:
  static constexpr int kNew = 0, kQueued = 1, kBegun = 2, kGivenUp = 3;
  std::atomic<int> state_{kNew};
};

struct RunRequest {
  std::string function;  // "path/to/module:exportName"
  Value args;            // an object; null means {}
  FunctionKind kind = FunctionKind::kQuery;
  // Seeds Math.random (and, with deterministic_ids, document ids).
  uint64_t seed = 0;
  // For replays only: document ids from `seed` (TransactionOptions::
  // deterministic_ids), so a replay writes the same ids. Two requests with one
  // seed then draw the same ids, and the second insert of one conflicts.
  bool deterministic_ids = false;
  // Queries and mutations: the time their code sees (TransactionOptions::now), in nanoseconds
  // since the Unix epoch: Date.now() and the _creationTime of the documents it inserts,
  // frozen for the run (a replay passes the same). CallPath sets the committers' clock when
  // it hands the run (each attempt of a mutation) to the isolates. 0, or earlier than the
  // snapshot: the snapshot's timestamp, the tenant's last commit (which may be long ago).
  Timestamp now = 0;
  TransactionLimits limits;
  // When the caller stops waiting for the result (InfiniteFuture: never). A run still going
  // then is stopped like one at its wall-clock limit, so the limit that applies is the
  // earlier of the two; one that has not started by then does not start. Either way the run
  // fails with DeadlineExceeded ("function F passed its deadline"), not ResourceExhausted:
  // the function did nothing wrong, its caller gave up. A RemoteRunner sends it to the
  // runner (which enforces it there too) and never retries past it. Wall-clock time
  // (absl::Now), not an injected clock: it bounds real waiting.
  absl::Time deadline = absl::InfiniteFuture();
  // Set by FunctionExecutor::Run for a request with a deadline (null otherwise). An executor
  // that may keep the run waiting in this process past the deadline calls
  // start_gate->Queued() before it queues it and start_gate->Begin() as it starts, running
  // nothing if Begin says no (FunctionRunner does): then Run gives up at the deadline on a
  // run still queued. An executor that does neither is waited for (it must answer by the
  // deadline itself, as RemoteRunner does).
  std::shared_ptr<RunStartGate> start_gate;
  // The snapshot to run at, asked for as the run begins (null: the one passed with the
  // request). A mutation queued behind its tenant's other runs would otherwise read what the
  // tenant held when it was queued, and on a document those runs commit to, it would run only
  // to conflict; CallPath sets it for mutations. It returns a snapshot of the same tenant, or
  // an error that answers the request unrun. An executor calls it at most once, on the run's
  // thread, after start_gate->Begin() and before any code, and never after it answered the
  // request (it may use what the caller holds until then: FunctionRunner answers a run it
  // abandons only once this returned). It runs in the run's wall-clock time, which cannot stop
  // it: a run whose call of it outlasted the limit is stopped as its code starts.
  // One that does not call it (RemoteRunner) runs at the snapshot passed, which is as correct
  // (the commit validates the reads) and only staler.
  std::function<absl::StatusOr<std::shared_ptr<const Snapshot>>()> snapshot_at_start;
  // kAction: what its ctx reaches (null: ctx.runQuery and the others fail
  // with FailedPrecondition). An action runs against a read-only transaction
  // (for its modules only: its ctx has no db), its Date.now() is the real
  // time, and its ctx.scheduler goes through the host.
  std::shared_ptr<ActionHost> action_host;
  // kMutation: checks each ctx.scheduler call (the function it names, its
  // arguments) when the mutation makes it; an error is thrown to the code
  // there. Null: not checked until the call runs. Called on the run's
  // thread; not sent to a remote runner (CallPathOptions::check_scheduled).
  // FunctionRunner calls it only until the caller is answered: a run
  // abandoned at its limit (IsolateLease::OnAbandon) goes on after its
  // answer, and is refused its further checks (a check under way is waited
  // for first), so it may point at what the caller holds until then.
  std::function<absl::Status(std::string_view function, const Value& args)> check_scheduled;
};

struct RunStats {
  bool isolate_reused = false;    // the isolate served this tenant before
  bool context_reused = false;    // ran in a kept context (reuse_context)
  bool context_hardened = false;  // ran in the isolate's hardened context
  // ... which was made (and locked down) for this request: the isolate's first, or the one
  // after a context a limit stopped, or whose requests made 128 MiB of Intl objects.
  bool hardened_context_made = false;
  bool module_cache_hit = false;  // no module was compiled from source
  int modules_compiled = 0;       // compiled from source (then cached)
  int modules_from_cache = 0;     // compiled from cached V8 code
  absl::Duration cpu_time;        // thread CPU time of the request
};

struct RunResult {
  // On failure it also carries `logs` (FailedCallLogs), an AppError when the
  // function's code threw (GetAppError) or the Limit that stopped it
  // (ExceededLimit): txfn/errors.h.
  absl::Status status;
  Value value;            // the function's result (null on error)
  PreparedCommit commit;  // read set and writes (no writes on error)
  std::vector<LogEntry> logs;
  RunStats stats;
};

// How queries and mutations get their context (see the file comment).
enum class ContextMode {
  kHardened,  // one deeply frozen context per isolate, new module instances per request
  kFresh,     // a new context per request
};

struct FunctionRunnerOptions {
  // Weight (source + code cache bytes) of the process-wide module cache.
  size_t module_cache_bytes = size_t{64} << 20;
  // The context of queries and mutations (actions: always fresh).
  ContextMode context_mode = ContextMode::kHardened;
  // Opt-in unhardened context reuse per tenant, for trusted code only (see
  // the file comment); wins over context_mode. Null: never.
  std::function<bool(const std::string& tenant)> reuse_context;
  // Largest argument, result or ctx.db argument, in Value::ByteSize terms.
  size_t max_value_bytes = size_t{16} << 20;
  // Log capture limits; past them one "[logs truncated]" entry is added.
  size_t max_log_entries = 256;
  size_t max_log_bytes = size_t{1} << 20;
};

struct ModuleCacheStats {
  uint64_t hits = 0;
  uint64_t misses = 0;
  size_t entries = 0;
  size_t bytes = 0;
};

// Where queries and mutations run: a FunctionRunner in this process, or a RemoteRunner
// (txfn/remote_runner.h) sending them to runner processes. The engine's call path takes
// either. Implementations are thread-safe.
class FunctionExecutor {
 public:
  virtual ~FunctionExecutor() = default;
  // Runs `request` against a new Transaction at `snapshot` without blocking: `done` runs
  // once, on a thread of the executor's, with the result. If the executor refuses the
  // request, `done` is not called and the refusal (ResourceExhausted, or Unavailable when
  // the executor has nowhere to run it) is returned. FunctionRunner answers a request with a
  // deadline that is still queued then (behind its tenant's other runs) DeadlineExceeded at
  // the deadline, from its timer thread, and never runs it; a request that brings its own
  // start_gate (Run's) is left to its caller to give up.
  [[nodiscard]] virtual absl::Status RunAsync(std::shared_ptr<const Snapshot> snapshot,
                                              RunRequest request,
                                              std::function<void(RunResult)> done) = 0;
  // RunAsync for a caller with somewhere else to go: when the executor refuses, `request`
  // and `done` are left as they were, so the caller can hand them on without having copied
  // them (the engine's fallback to its own runner); when it accepts, it has taken them. The
  // default copies them for RunAsync; an executor that decides before it takes them
  // (RemoteRunner) overrides it.
  [[nodiscard]] virtual absl::Status TryRunAsync(std::shared_ptr<const Snapshot> snapshot,
                                                 RunRequest& request,
                                                 std::function<void(RunResult)>& done) {
    return RunAsync(std::move(snapshot), request, done);
  }
  // RunAsync, then waits for `done`: every executor blocks the same way, so this is not
  // virtual. Every failure, a refusal included, is in RunResult::status. A request past its
  // deadline is not run (DeadlineExceeded). One still queued at its deadline (behind its
  // tenant's other runs, in an executor that uses RunRequest::start_gate) is given up there:
  // DeadlineExceeded at once, and it never runs; one that began is waited for (it is stopped
  // at its deadline). Must not be called
  // from a thread the executor needs to finish the run (e.g. inside another run's `done`).
  RunResult Run(std::shared_ptr<const Snapshot> snapshot, RunRequest request);
};

class FunctionRunner : public FunctionExecutor {
 public:
  explicit FunctionRunner(std::shared_ptr<IsolateScheduler> scheduler,
                          FunctionRunnerOptions options = {});
  ~FunctionRunner() override;
  FunctionRunner(const FunctionRunner&) = delete;
  FunctionRunner& operator=(const FunctionRunner&) = delete;

  // Runs `request` against a new Transaction at `snapshot` (read-only for a
  // query, id_seed = request.seed) on one of the scheduler's isolates of
  // snapshot->tenant(): `done` runs once, on a scheduler thread, with the
  // result. If the scheduler refuses the request, `done` is not called and
  // the refusal (ResourceExhausted) is returned. Run (FunctionExecutor) is
  // the blocking form.
  [[nodiscard]] absl::Status RunAsync(std::shared_ptr<const Snapshot> snapshot, RunRequest request,
                                      std::function<void(RunResult)> done) override;

  // Compiles, links and evaluates (top level only) every module of
  // snapshot->metadata() in a fresh context on one of the scheduler's
  // isolates of snapshot->tenant(), without calling any function; blocks.
  // Meant for deploys: pass a Snapshot whose metadata is the one the deploy
  // would install (e.g. built from Transaction::metadata() before commit).
  // `queue`: kAheadOfCalls (a deploy's) waits for one of the tenant's
  // running requests at most, never behind its queued calls nor refused
  // for their number (IsolateScheduler::SubmitAhead); kWithCalls queues as a
  // call does (for a check on a call's path, which must not jump the queue).
  // OK if every module loads; else the first failure, its message naming the
  // module: Unknown for a syntax error or a throwing top level (with the JS
  // message and line), NotFound for an import that names no module,
  // ResourceExhausted for a limit or (kWithCalls) a full queue. Compiled
  // modules land in the module cache, so the first calls after the deploy
  // hit it. Works on a disabled tenant too.
  enum class Queue { kAheadOfCalls, kWithCalls };
  [[nodiscard]] absl::Status CheckModules(std::shared_ptr<const Snapshot> snapshot,
                                          Queue queue = Queue::kAheadOfCalls);
  // CheckModules, and on success every exported query, mutation and action,
  // by canonical name, with its kind and attributes.
  [[nodiscard]] absl::StatusOr<std::map<std::string, FunctionInfo>> DescribeFunctions(
      std::shared_ptr<const Snapshot> snapshot, Queue queue = Queue::kAheadOfCalls);

  ModuleCacheStats module_cache_stats() const;

  // Forgets `tenant` (Engine::DeleteTenant calls it): disposes of its idle isolates and
  // drops its modules from the module cache, which would otherwise keep its code and
  // memory until evicted. Requests of the tenant running meanwhile finish on their
  // isolates; a later request starts cold. Returns how many isolates were disposed of.
  // Thread-safe; must not be called from a request's thread (it disposes isolates).
  int ForgetTenant(const std::string& tenant);

 private:
  absl::Status LoadModules(std::shared_ptr<const Snapshot> snapshot, Queue queue,
                           std::map<std::string, FunctionInfo>* functions);

  std::shared_ptr<IsolateScheduler> scheduler_;
  std::shared_ptr<internal::RunnerCore> core_;
};

}  // namespace txfn

#endif  // TXFN_FUNCTION_RUNNER_H_

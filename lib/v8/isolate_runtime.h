// lib/v8/isolate_runtime.h — the function runner's state on one isolate, and
// the natives behind ctx.db, console, Date and Math.random.
//
// IsolateRuntime (kept in the lease's data slot) owns per-isolate templates
// and knows the request running now. Each context the runner makes has a
// ContextState (reachable from the context's embedder data) with its own
// microtask queue. The natives carry no data: they find their ContextState
// through the calling context and serve a call only when that context is the
// one the running request was given.
//
// The sandbox rules this file enforces (see isolate_runtime.cc):
//   - every native checks its arguments' types and sizes before converting
//     them, converts structured arguments through the bounded, interruptible
//     FromJs, and answers bad input with a JS exception that becomes a clear
//     InvalidArgument; nothing a tenant influences is ToLocalChecked();
//   - a context is closed when its request ends: V8 aborts any later attempt
//     to run JavaScript in it (Context::SetAbortScriptExecution), its natives
//     refuse to serve, and its microtask queue is its own, so a job left
//     behind by one request can never run in another's checkpoint, read its
//     state or write to its transaction.
//
// Thread safety: everything here runs on the isolate's thread.
#ifndef TXFN_LIB_V8_ISOLATE_RUNTIME_H_
#define TXFN_LIB_V8_ISOLATE_RUNTIME_H_

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "txfn/function_runner.h"
#include "txfn/isolate_scheduler.h"
#include "txfn/transaction.h"
#include "v8.h"

namespace txfn::internal {

class IsolateRuntime;
struct ContextState;

// Indices into the runner's startup snapshot (runner_snapshot.cc): the
// bootstrapped context, and the data attached to it (the bootstrap's exports
// and a marker string that tells the runner's snapshot from another
// embedder's).
inline constexpr size_t kSnapshotContextIndex = 0;
inline constexpr size_t kSnapshotExportsIndex = 0;
inline constexpr size_t kSnapshotMarkerIndex = 1;
inline constexpr std::string_view kSnapshotMarker = "txfn.runner.snapshot.v2";
// Intl objects keep ICU's formatters outside V8's heap, where the heap limit
// does not see them (a DateTimeFormat ~60 KiB): the objects one request makes
// may hold this much by the bootstrap's estimates (1,024 DateTimeFormats),
// each reported to V8's GC as external memory.
inline constexpr int64_t kMaxIntlBytesPerRequest = int64_t{64} << 20;
// What the requests run in one hardened context may charge in all: a request
// can keep its Intl objects past its end on the context's frozen intrinsics
// (private fields), where the idle GC cannot free them and no heap limit sees
// them. Past this the context is made anew (its lockdown, ~4 ms, once every
// 2,000 DateTimeFormats or so).
inline constexpr int64_t kMaxIntlBytesPerHardenedContext = 2 * kMaxIntlBytesPerRequest;
// The arguments of the calls one action schedules, in all (encoded size): as
// much as a mutation may write (TransactionLimits::max_bytes_written).
inline constexpr size_t kMaxScheduledBytesPerAction = size_t{16} << 20;

// The request running on an isolate now.
struct RequestState {
  Transaction* txn = nullptr;
  const FunctionRunnerOptions* options = nullptr;
  const IsolateLease* lease = nullptr;  // its limits stop conversions in C++
  ContextState* context = nullptr;      // natives serve only calls from this context
  uint64_t rng = 0;
  double now_ms = 0;
  std::vector<LogEntry>* logs = nullptr;
  size_t log_bytes = 0;
  bool logs_truncated = false;
  // The first ResourceExhausted from the transaction: the request fails with
  // it even if JS caught the exception.
  absl::Status sticky;
  // An action's request: its ctx reaches `host` (may be null), Date.now()
  // is the real time.
  bool action = false;
  std::shared_ptr<ActionHost> host;
  // What the action's function returned, once it has: its calls out of the isolate (runQuery,
  // runMutation, services, the scheduler) are refused once that is a value or a settled promise
  // (ActionSettled). The checkpoint still runs the jobs it left, and a chain it did not await
  // went on committing mutations after its outcome was decided (5,461 of them after it
  // returned, until its CPU limit).
  bool action_returned = false;
  v8::Global<v8::Promise> action_promise;  // empty: it returned no promise
  // A mutation's check of each ctx.scheduler call (RunRequest::
  // check_scheduled); null: none. Points into the request, which outlives this.
  const std::function<absl::Status(std::string_view, const Value&)>* check_scheduled = nullptr;
  size_t scheduled = 0;        // calls ctx.scheduler scheduled in this request
  size_t cancelled = 0;        // calls a mutation's ctx.scheduler.cancel recorded cancelled
  size_t scheduled_bytes = 0;  // their arguments' encoded size (bounded for actions)
  int64_t intl_bytes = 0;      // ICU memory of the Intl objects it made (IntlObject)
  void BecomeAction(std::shared_ptr<ActionHost> action_host) {
    action = true;
    host = std::move(action_host);
  }
  // Promises rejected with no handler (yet), with a rendering of the reason.
  std::vector<std::pair<v8::Global<v8::Promise>, std::string>> unhandled;
  size_t unhandled_dropped = 0;  // past kMaxUnhandledRejections

  // Appends a console line, within the options' log limits.
  void AppendLog(LogLevel level, std::string message);
};

struct ModuleEntry {
  std::string path;
  v8::Global<v8::Module> module;
};

// One context of the runner: its bootstrap exports and the modules
// evaluated in it. Destroying it closes the context for good.
struct ContextState {
  ContextState() = default;
  ContextState(const ContextState&) = delete;
  ContextState& operator=(const ContextState&) = delete;
  ~ContextState();

  // Lets JavaScript run in the context again (a reused context, between its
  // requests); Close() is the opposite.
  void Open();
  // After this no JavaScript runs in the context: V8 aborts any attempt.
  void Close();
  // Forgets the modules loaded in the context (a hardened context, between
  // requests: each request gets new instances).
  void ResetModules();

  IsolateRuntime* rt = nullptr;
  // The context's own queue: a job queued in one request runs only in that
  // request's checkpoints (and never once the context is closed).
  std::unique_ptr<v8::MicrotaskQueue> microtasks;
  // Set while the jobs a request left queued run after it (RunLeftoverJobs):
  // no request is current, yet it is the request's code that runs.
  bool running_leftovers = false;
  // ICU memory charged by the requests that ran in the context (IntlObject).
  int64_t intl_bytes = 0;
  v8::Global<v8::Context> context;
  v8::Global<v8::Object> server;      // {query, mutation, action}
  v8::Global<v8::Object> ctx;         // the ctx argument of queries and mutations
  v8::Global<v8::Object> action_ctx;  // the ctx argument of actions
  v8::Global<v8::Module> server_module;
  std::vector<ModuleEntry> modules;
  std::map<std::string, size_t, std::less<>> by_path;
  size_t fingerprint = 0;  // of the tenant's modules, for reuse
  // A hardened context's frozen ctx.db and ctx.scheduler, from which each
  // request's new ctx is made (empty in other contexts).
  v8::Global<v8::Object> db;
  v8::Global<v8::Object> scheduler;
};

// The ContextState of a context the runner made; nullptr for any other
// context or one whose state was destroyed.
ContextState* StateOf(v8::Local<v8::Context> context);

// Notes what an action's function returned (`returned`), for ActionSettled.
void NoteActionReturned(v8::Isolate* isolate, v8::Local<v8::Value> returned, RequestState& req);
// Notes that an action's function threw: it has settled (ActionSettled) before anything reads
// what it threw.
void NoteActionThrew(RequestState& req);
// Whether the action of `req` has settled: it returned a value, or a promise no longer
// pending (checked at each call: a job queued before the promise settled runs after it).
bool ActionSettled(v8::Isolate* isolate, const RequestState& req);

class IsolateRuntime : public IsolateData {
 public:
  explicit IsolateRuntime(v8::Isolate* isolate);
  ~IsolateRuntime() override;

  // Every native callback, null-terminated: the external references of the
  // runner's startup snapshot (a snapshot's functions refer to their C++
  // callbacks through this table; isolates made from it must pass the same).
  static const intptr_t* ExternalReferences();

  // Runs the bootstrap in `context` (entered by the caller) and returns its
  // exports {server, ctx}. The natives carry no data, so the same code serves
  // contexts made here and contexts from the startup snapshot.
  static absl::StatusOr<v8::Local<v8::Object>> Bootstrap(v8::Isolate* isolate,
                                                         v8::Local<v8::Context> context);

  v8::Isolate* isolate() const { return isolate_; }
  RequestState* current() const { return current_; }
  void set_current(RequestState* r) {
    current_ = r;
    ++code_epoch_;
  }
  // Changes whenever a request starts or ends: code compiled from strings (eval, Function)
  // gets it as a trailing comment (OnCodeGeneration), so V8's isolate-wide compilation cache
  // never hands one request's compile to another.
  uint64_t code_epoch() const { return code_epoch_; }
  std::unique_ptr<ContextState>& reused() { return reused_; }
  std::unique_ptr<ContextState>& hardened() { return hardened_; }
  v8::Local<v8::Private> kind_key() const { return kind_key_.Get(isolate_); }
  v8::Local<v8::Private> code_key() const { return code_key_.Get(isolate_); }
  v8::Local<v8::Private> attrs_key() const { return attrs_key_.Get(isolate_); }
  v8::Local<v8::Private> args_key() const { return args_key_.Get(isolate_); }

  // A new context with the bootstrap run in it: deserialised from the
  // runner's startup snapshot if the isolate was made from it (see
  // UseRunnerSnapshot), else a plain context that runs the bootstrap now.
  absl::StatusOr<std::unique_ptr<ContextState>> NewContext();

  // The isolate's hardened context, opened for a request (made and locked
  // down on first use, which runs the lockdown under the caller's limits):
  // its module registry empty and its `ctx` new. The caller closes it
  // (ContextState::Close) or drops it (hardened().reset()) when the request
  // is over.
  absl::StatusOr<ContextState*> OpenHardened();

  // Throws a JS Error carrying `status` (its code as a private property).
  void Throw(const absl::Status& status);

 private:
  // A context from the isolate's startup snapshot, if it holds the runner's.
  bool FromSnapshot(v8::MicrotaskQueue* queue, v8::Local<v8::Context>* context,
                    v8::Local<v8::Object>* exports);

  enum class Tri { kUnknown, kYes, kNo };

  v8::Isolate* isolate_;
  Tri from_snapshot_ = Tri::kUnknown;
  v8::Global<v8::Private> kind_key_;
  v8::Global<v8::Private> code_key_;
  v8::Global<v8::Private> attrs_key_;
  v8::Global<v8::Private> args_key_;
  // Freezes everything reachable in `cs`'s context (harden_js.h).
  absl::Status Harden(ContextState& cs);

  std::unique_ptr<ContextState> reused_;
  std::unique_ptr<ContextState> hardened_;
  RequestState* current_ = nullptr;
  uint64_t code_epoch_ = 0;
};

// Makes a RequestState the runtime's current request (what the natives
// serve) for its lifetime, in the context `cs`.
class CurrentRequest {
 public:
  CurrentRequest(IsolateRuntime* rt, ContextState* cs, Transaction& txn,
                 const FunctionRunnerOptions& options, const IsolateLease& lease, uint64_t seed,
                 std::vector<LogEntry>* logs);
  CurrentRequest(const CurrentRequest&) = delete;
  CurrentRequest& operator=(const CurrentRequest&) = delete;
  ~CurrentRequest();

  RequestState& state() { return state_; }
  // Logs the promises still rejected without a handler, except `result`
  // (the caller reports that one), as warnings.
  void LogUnhandledRejections(v8::Local<v8::Value> result);

 private:
  IsolateRuntime* const rt_;
  RequestState state_;
};

}  // namespace txfn::internal

#endif  // TXFN_LIB_V8_ISOLATE_RUNTIME_H_

// txfn/isolate_scheduler.h — owns V8 isolates and the threads that run them.
//
// An IsolateScheduler runs work items ("requests") of tenants on a fixed set
// of worker threads, each request on a V8 isolate that serves only that
// tenant. For tenant T it picks the most recently used idle isolate that has
// served T; else creates one if under the bound; else disposes the least
// recently used idle isolate of another tenant and creates one. Requests
// beyond the workers wait in a bounded queue; a full queue, or a tenant over
// its in-flight cap, fails the request at once with ResourceExhausted. A
// tenant whose isolates are all busy gets another one the same way, so a
// tenant with k requests running holds k isolates. No tenant runs more than
// max_running_per_tenant requests at once (default half the workers, at
// least 1): its further requests wait in the queue while other tenants'
// are served, so one tenant's calls can never hold every worker (one item
// queued ahead, SubmitAhead: a deploy's check, may run beside them). Only at the bound, such a
// request first waits up to own_isolate_patience (2 ms) for its tenant's isolate rather than
// evicting another tenant's, while the requests behind it are served. The policy lives in
// txfn/internal/isolate_pool.h, tested without V8.
//
//   auto scheduler = txfn::IsolateScheduler::Create({.workers = 2});
//   absl::Status s = (*scheduler)->Submit("shop", [](txfn::IsolateLease& lease) {
//     v8::Isolate* isolate = lease.isolate();   // entered and locked for you
//     ... create a context, run JS ...
//   });
//
// Why bounds on isolates: each costs ~2.6 ms to create (a fresh context per
// request ~0.2 ms) and about 1.2 MiB once idle (the deserialised startup
// snapshot, a few heap pages), more if its tenant's code keeps data alive.
// So tenants keep their isolates warm as long as memory allows: the bound is
// a memory budget (default a quarter of the machine's memory), measured on
// each isolate as it goes idle (after a full GC if it grew past
// idle_trim_bytes), with max_isolates as a count bound on top (default the
// budget / 2 MiB). At a bound, the least recently used idle isolate goes.
// The full GC also comes when the heap passes half its limit, when live
// ArrayBuffers pass idle_trim_bytes, and when the external memory V8 was told
// of (the runner's Intl objects) grew by idle_trim_bytes since the last one.
// An idle isolate that still holds more than half its tenant's heap limit, or
// of its ArrayBuffer limit, after that full GC is disposed of at once: with no
// request running, that is memory its requests left where no later request
// frees it (a hardened context's frozen intrinsics still take private
// fields), and kept it would stop the tenant's later requests at their limit.
// A few spare isolates (spare_isolates) are made ahead, when a worker has
// nothing else to do, so a tenant's first request does not pay for one.
// When every isolate is busy the request waits in the queue (only possible
// when max_isolates < workers).
//
// Limits (LimitEnforcer), per request, for every entry into JavaScript of
// the work item (including the message-loop pump after it):
//   - CPU time: a watchdog thread samples each running request's worker-thread
//     CPU time every `watchdog_interval` and calls TerminateExecution on that
//     isolate only, once the tenant's CPU limit is spent;
//   - wall-clock time (default twice the CPU limit): the same watchdog stops a
//     request that waits or is starved instead of computing;
//   - heap: each isolate's V8 heap is capped at the tenant's heap limit; near
//     the cap V8 calls back, and the scheduler grants enough for V8 to unwind
//     (the heap in use plus headroom: a single allocation can exceed the cap
//     by a lot, and granting less would make V8 abort the process), and
//     terminates the request;
//   - ArrayBuffer memory: each isolate has its own allocator counting live
//     backing stores against the tenant's limit (default 64 MiB); beyond it
//     an allocation is refused (a RangeError in JavaScript).
// After a termination lease.limit_exceeded() is true for the rest of the work
// item (exceeded_limit() names it) and the isolate is disposed of afterwards
// (it may hold the terminated request's garbage, half-run jobs or a heap far
// over its limit), so the next request of the tenant gets a clean one.
//
// The isolates' make-up (startup snapshot, callbacks) is not the scheduler's
// business: the layer that runs JavaScript on them supplies an
// IsolateCustomizer (txfn/isolate_customizer.h), which the scheduler calls as
// it creates isolates and around every work item.
//
// Public header without V8 includes: v8::Isolate is only forward-declared.
//
// Thread safety: every method of IsolateScheduler is thread-safe. A lease is
// used only on the worker thread that runs the work item.
#ifndef TXFN_ISOLATE_SCHEDULER_H_
#define TXFN_ISOLATE_SCHEDULER_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "txfn/v8_platform.h"  // InitializeV8, V8Platform

namespace v8 {
class Isolate;
class Platform;
}  // namespace v8

namespace txfn {

class IsolateCustomizer;  // txfn/isolate_customizer.h

// Per-isolate state another layer keeps on an isolate (e.g. the function
// runner's compiled modules or a reused context). Destroyed on the isolate's
// thread, with the isolate entered and locked, before the isolate is disposed.
class IsolateData {
 public:
  virtual ~IsolateData() = default;
};

// What a work item gets: an isolate of its tenant, entered (Isolate::Scope),
// locked (v8::Locker) and with a HandleScope open, for the duration of the
// item. No context is entered: a fresh context per request is the caller's.
// Valid only during the work item, on its worker thread.
class IsolateLease {
 public:
  virtual ~IsolateLease() = default;
  virtual v8::Isolate* isolate() = 0;
  virtual const std::string& tenant() const = 0;
  // True when this isolate served earlier requests (of this tenant).
  virtual bool reused() const = 0;
  // Per-isolate slot for another layer's state; null until set.
  virtual IsolateData* data() = 0;
  virtual void set_data(std::unique_ptr<IsolateData> data) = 0;
  // Whether the watchdog or the heap-limit callback stopped this request, and
  // which limit ("cpu time", "wall time", "heap", or "deadline" for StopAt's);
  // the runner turns this into ResourceExhausted naming the limit
  // (DeadlineExceeded for "deadline"). Thread-safe (the watchdog sets it).
  virtual bool limit_exceeded() const = 0;
  virtual std::string exceeded_limit() const = 0;
  // Checks what V8 does not check by itself until its next garbage
  // collection: a heap grown past its limit by single large allocations
  // (V8 lets one through, e.g. a flattened string of hundreds of MiB). If
  // so, the request counts as stopped at its heap limit (limit_exceeded()),
  // so that it fails and the isolate is disposed of instead of making the
  // tenant's next request pay. For runners to call before they report.
  virtual void CheckHeapLimit() {}
  // ArrayBuffer allocations the isolate's allocator refused so far (over its
  // whole life): a request that fails after this grew failed because of the
  // array buffer limit.
  virtual uint64_t array_buffers_refused() const { return 0; }
  // The isolate's ArrayBuffer limit, for messages; 0 when unknown.
  virtual size_t array_buffer_limit_bytes() const { return 0; }
  // Stops this request at `deadline` (wall clock) too, the way the watchdog
  // stops one at its wall-clock limit, with exceeded_limit() "deadline": the
  // caller's deadline, when it comes before the limits. For the work item to
  // call as it starts; InfiniteFuture changes nothing. (Test leases ignore it.)
  virtual void StopAt(absl::Time /*deadline*/) {}
  // Asks the scheduler to dispose of this isolate after the item (e.g. it is
  // in an unknown state).
  virtual void Discard() = 0;
  // Registers what to do if the scheduler gives up waiting for this item: it
  // was stopped at a limit but has not returned abandon_grace later (V8 is
  // in a builtin that never checks for termination). Then `fn` runs once, on
  // another thread, with the limit's name ("cpu time", ...), while the item
  // may still be running; a new worker takes this one's place, and the item's
  // thread leaves once it returns. `fn` must not touch the lease. A runner
  // uses it to answer its caller at once (and must then ignore the item's
  // own answer). The default (test leases) never abandons.
  // NOLINTNEXTLINE(performance-unnecessary-value-param): overriders keep `fn`.
  virtual void OnAbandon(std::function<void(const std::string& limit)> /*fn*/) {}
  // Runs `fn` on the worker thread once the work item has returned, the
  // isolate is back in the pool and the tenant's in-flight count has dropped:
  // the place to wake a caller waiting for the item, so that its next request
  // finds the isolate idle. (This default, for test leases, runs it at once.)
  // NOLINTNEXTLINE(performance-unnecessary-value-param): overriders keep `fn`.
  virtual void RunAfterRelease(std::function<void()> fn) { fn(); }
  // Identifies the isolate for its whole life; never reused by another
  // isolate of this scheduler (unlike the v8::Isolate* address).
  virtual uint64_t isolate_id() const { return 0; }
};

// Limits per request and isolate, checked by the scheduler's watchdog. A host
// replaces the policy by subclassing (workerd's limit enforcer is the model).
// Called from worker threads and the watchdog concurrently: must be
// thread-safe. The heap limit is read once per isolate, at its creation.
class LimitEnforcer {
 public:
  virtual ~LimitEnforcer() = default;
  virtual absl::Duration CpuLimit(const std::string& /*tenant*/) const { return absl::Seconds(1); }
  // Wall-clock time a request may take on its worker; by default twice its
  // CPU limit (a request that blocks or is starved uses little CPU).
  virtual absl::Duration WallLimit(const std::string& tenant) const { return 2 * CpuLimit(tenant); }
  virtual size_t HeapLimitBytes(const std::string& /*tenant*/) const { return size_t{64} << 20; }
  // Live ArrayBuffer backing stores of one isolate (read at its creation).
  virtual size_t ArrayBufferLimitBytes(const std::string& /*tenant*/) const {
    return size_t{64} << 20;
  }
};

struct IsolateSchedulerOptions {
  int workers = 0;       // 0 = hardware concurrency
  int max_isolates = 0;  // 0 = isolate_memory_budget / 2 MiB (at least 4 per worker)
  // Bytes the live isolates may take (0 = a quarter of physical memory).
  size_t isolate_memory_budget = 0;
  // An idle isolate whose heap takes more than this gets a full GC first (and
  // is disposed of if over half its heap or ArrayBuffer limit is still live
  // after it; see the file comment for the other reasons for that GC).
  size_t idle_trim_bytes = size_t{8} << 20;
  // Isolates made ahead of need, by idle workers (for tenants whose limits
  // are the LimitEnforcer's defaults, i.e. those of tenant "").
  int spare_isolates = 2;
  size_t queue_capacity = 1024;
  int max_in_flight_per_tenant = 0;  // 0 = half the workers (at least 1)
  // Requests of one tenant running at once; the tenant's further requests
  // wait in the queue (others are served past them), so one tenant can never
  // hold every worker. 0 = half the workers (at least 1).
  int max_running_per_tenant = 0;
  // At the bound, a request whose tenant already has a busy isolate waits
  // this long for it before evicting another tenant's idle isolate to make a
  // second one (about what creating an isolate costs; requests of other
  // tenants are served meanwhile). Zero: evict at once.
  absl::Duration own_isolate_patience = absl::Milliseconds(2);
  std::shared_ptr<const LimitEnforcer> limits;  // null = defaults
  // How long a request stopped at a limit may take to return before the
  // scheduler abandons it (see IsolateLease::OnAbandon): its caller is
  // answered and a new thread replaces its worker. One whose thread is
  // waiting for a CPU and has had under a quarter of this since the stop (a
  // loaded host, not a builtin) is waited for up to ten times as long.
  absl::Duration abandon_grace = absl::Milliseconds(250);
  // At most this many abandoned threads at once (each runs at the lowest
  // priority and keeps its isolate until its builtin returns, which a tenant
  // can make take minutes); past it a stuck request keeps its worker until it
  // returns. An abandoned request still counts against its tenant's
  // max_running_per_tenant, so one tenant holds at most that many of them,
  // and it takes many tenants stuck at once to use them all up. 0 = four per
  // worker.
  int max_abandoned = 0;
  // How often the watchdog samples running requests' CPU time; a request
  // overruns its CPU limit by at most about this much (plus V8's time to
  // reach an interrupt check).
  absl::Duration watchdog_interval = absl::Milliseconds(2);
  // How the layer running JavaScript on these isolates shapes them (create
  // params such as a startup snapshot, per-isolate settings) and observes its
  // requests: see txfn/isolate_customizer.h. Null: V8's own snapshot, nothing
  // customised. A FunctionRunner's isolates want
  // FunctionRunnerIsolateCustomizer() (txfn/function_runner.h); the Engine
  // sets it when this is null.
  std::shared_ptr<const IsolateCustomizer> customizer;
};

struct IsolateSchedulerStats {
  uint64_t isolates_created = 0;
  uint64_t isolates_reused = 0;  // requests served by an isolate that served before
  uint64_t isolates_disposed = 0;
  uint64_t rejected = 0;  // ResourceExhausted at Submit
  size_t queue_length = 0;
  // Added detail:
  uint64_t isolates_evicted = 0;        // of disposed: given up for another tenant
  uint64_t waited_for_own_isolate = 0;  // requests that waited for their tenant's busy isolate
  uint64_t waited_for_tenant_cap = 0;   // requests that waited at max_running_per_tenant
  uint64_t rejected_queue_full = 0;     // of rejected
  uint64_t rejected_tenant_cap = 0;     // of rejected
  // Queued requests dropped unrun: their callers gave up on them (SubmitUnlessGivenUp).
  uint64_t given_up = 0;
  uint64_t terminated_cpu = 0;       // requests stopped at their CPU limit
  uint64_t terminated_wall = 0;      // requests stopped at their wall-clock limit
  uint64_t terminated_deadline = 0;  // requests stopped at their caller's deadline (StopAt)
  uint64_t terminated_heap = 0;      // requests stopped at their isolate's heap limit
  uint64_t abandoned = 0;  // stopped requests that did not return in time (see abandon_grace)
  int live_isolates = 0;
  int busy_isolates = 0;
  size_t isolate_bytes = 0;  // live isolates' memory, as measured when they went idle
  uint64_t isolates_evicted_for_memory = 0;  // of isolates_evicted
  uint64_t spare_isolates_used = 0;          // tenants' first isolates that were made ahead
  // Of disposed: idle isolates with more than half their heap (or ArrayBuffer) limit live
  // after a full GC.
  uint64_t isolates_disposed_retaining = 0;
  std::map<std::string, int> in_flight;  // per tenant with requests queued or running
};

class IsolateScheduler {
 public:
  using Work = std::function<void(IsolateLease&)>;

  // Starts the workers and the watchdog (initialising V8 if needed).
  // InvalidArgument for negative counts or a non-positive watchdog interval.
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<IsolateScheduler>> Create(
      const IsolateSchedulerOptions& options = {});
  // Stops admitting requests, runs every queued one, joins the threads and
  // disposes of the isolates. Must not be called from a work item.
  virtual ~IsolateScheduler() = default;

  // Queues `work` for `tenant`. ResourceExhausted (naming the queue or the
  // tenant cap) if it cannot be queued; then `work` never runs. Otherwise
  // `work` runs exactly once on a worker thread. `work` must not block on
  // another request of this scheduler (it could be queued behind it).
  [[nodiscard]] virtual absl::Status Submit(std::string tenant, Work work) = 0;
  // Submit for work its caller may give up on while it waits (FunctionExecutor::Run at its
  // deadline): once `given_up()` is true (it is called under the scheduler's lock: keep it
  // to an atomic load), work still queued is dropped, never run (destroyed on a thread that
  // found it; stats().given_up counts it), freeing its place in the queue and in its tenant's
  // in-flight count. Work that started runs on. This default, for schedulers that do not
  // drop, is Submit (the work must then check for itself).
  [[nodiscard]] virtual absl::Status SubmitUnlessGivenUp(std::string tenant, Work work,
                                                         std::function<bool()> given_up) {
    (void)given_up;
    return Submit(std::move(tenant), std::move(work));
  }

  // Queues `work` for `tenant` ahead of every request queued by Submit (behind earlier ahead
  // ones), never refused for the queue's capacity or max_in_flight_per_tenant (it counts in
  // InFlight), and serves one such item per tenant at a time even while the tenant runs
  // max_running_per_tenant requests (so a tenant holds at most one worker more; its further
  // ahead items wait for that one or for the cap). It then waits only for a free worker. For
  // an operator's work that the tenant's own flood must not hold up: the Engine's deploy checks
  // its modules this way (FunctionRunner::CheckModules), so a fix deploys while the tenant's
  // queue is full of calls that each run to their CPU limit. The work runs under the tenant's
  // limits as any request. Not for work a tenant's calls can cause (they would jump their own
  // queue). `work` runs exactly once on a worker thread; InvalidArgument for an empty one. This
  // default, for schedulers without a priority, is Submit.
  [[nodiscard]] virtual absl::Status SubmitAhead(std::string tenant, Work work) {
    return Submit(std::move(tenant), std::move(work));
  }

  // In-flight (queued or running) requests of `tenant`.
  virtual int InFlight(const std::string& tenant) const = 0;
  // Disposes of `tenant`'s idle isolates now, on the calling thread (each takes about a
  // millisecond): for a deleted tenant, whose isolates would otherwise hold memory until
  // the LRU evicts them. Isolates running its requests are left to them. Returns how many
  // were disposed of. Must not be called from a work item.
  virtual int DisposeIdleIsolatesOf(const std::string& tenant) = 0;
  virtual IsolateSchedulerStats stats() const = 0;
};

}  // namespace txfn

#endif  // TXFN_ISOLATE_SCHEDULER_H_

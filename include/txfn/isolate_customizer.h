// txfn/isolate_customizer.h — how the layer that runs JavaScript on the
// IsolateScheduler's isolates shapes them and observes its requests.
//
// The scheduler owns isolates and threads and enforces limits, but knows
// nothing of what runs on its isolates. The layer that does (the function
// runner: its startup snapshot, its natives' external references, its
// sandbox settings) supplies an IsolateCustomizer, which the scheduler calls
// at fixed points of an isolate's and a request's life, in the spirit of
// workerd's IsolateLimitEnforcer:
//   1. ConfigureCreateParams: before v8::Isolate::New, to fill the create
//      params (startup snapshot and its external references, or stricter
//      heap constraints);
//   2. CustomizeIsolate: once, on the new isolate (callbacks, flags);
//   3. EnterJs / ExitJs: around every work item run on an isolate, with what
//      the request used (CPU and wall time, the limit that stopped it);
//   4. ReportIsolateMetrics: whenever an isolate goes idle, its memory.
// Limits themselves stay the LimitEnforcer's (txfn/isolate_scheduler.h): a
// host chooses its limits, the runner chooses how isolates are built, and
// neither has to know the other's class.
//
// The default (IsolateSchedulerOptions::customizer null) is this base class:
// V8's own snapshot, nothing customised, nothing observed. The function
// runner's is FunctionRunnerIsolateCustomizer() (txfn/function_runner.h);
// the runner also works on isolates made without it, only slower (each
// fresh context then runs the runner's bootstrap instead of deserialising it).
//
//   class CountingCustomizer : public txfn::IsolateCustomizer {
//    public:
//     void ExitJs(txfn::IsolateLease& lease,
//                 const txfn::RequestUsage& usage) const override {
//       requests_.fetch_add(1, std::memory_order_relaxed);
//     }
//    private:
//     mutable std::atomic<uint64_t> requests_{0};
//   };
//   auto scheduler = txfn::IsolateScheduler::Create(
//       {.customizer = std::make_shared<CountingCustomizer>()});
//
// Thread safety: one customizer serves every worker thread of a scheduler
// (and may serve several schedulers): all methods are const and may be
// called concurrently, each for a different isolate. Calls for one isolate
// come from one thread at a time, with that isolate locked (except
// ConfigureCreateParams, which comes before the isolate exists).
//
// Errors: the hooks cannot fail a request or an isolate; a customizer that
// cannot apply a setting leaves it out (e.g. ConfigureCreateParams without a
// snapshot), and the layer above must cope with an isolate built without it.
#ifndef TXFN_ISOLATE_CUSTOMIZER_H_
#define TXFN_ISOLATE_CUSTOMIZER_H_

#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/time/time.h"
#include "v8-isolate.h"

namespace txfn {

class IsolateLease;

// What one work item used, as the scheduler measured it.
struct RequestUsage {
  absl::Duration cpu;   // the worker thread's CPU time during the item
  absl::Duration wall;  // from the item's start to its return
  // The limit that stopped the item ("cpu time", "wall time", "heap",
  // "deadline"), or
  // empty if none did.
  std::string exceeded_limit;
};

// An idle isolate's memory, measured as it returned to the pool.
struct IsolateMetrics {
  const std::string* tenant = nullptr;  // valid during the call only
  uint64_t isolate_id = 0;              // IsolateLease::isolate_id()
  size_t heap_bytes = 0;                // V8's heap (physical) and its malloced memory
  size_t array_buffer_bytes = 0;        // live ArrayBuffer backing stores
};

class IsolateCustomizer {
 public:
  virtual ~IsolateCustomizer() = default;

  // Fills in the create params of a new isolate for `tenant` ("" for a spare
  // isolate made ahead of need, for a tenant with default limits). The
  // scheduler has already set the ArrayBuffer allocator (which counts against
  // the tenant's limit: keep it) and the heap constraints (from its
  // LimitEnforcer: lower them if you must, never raise them). Anything the
  // params point to (a snapshot blob, external references) must outlive
  // every isolate made with them. Called on any thread, no isolate locked.
  virtual void ConfigureCreateParams(const std::string& /*tenant*/,
                                     v8::Isolate::CreateParams* /*params*/) const {}

  // Called once for every new isolate, right after v8::Isolate::New, on the
  // thread that made it, with the isolate locked and entered and a
  // HandleScope open; `tenant` as for ConfigureCreateParams (a spare isolate
  // serves another tenant later). The scheduler has installed its
  // near-heap-limit callback already; a customizer must not remove it (it
  // enforces the heap limit).
  virtual void CustomizeIsolate(const std::string& /*tenant*/, v8::Isolate* /*isolate*/) const {}

  // Called on the worker thread just before a work item runs on `lease`'s
  // isolate (locked and entered, a HandleScope open; the lease is the item's,
  // valid for this call only, and the same as ExitJs gets) ...
  virtual void EnterJs(IsolateLease& /*lease*/) const {}
  // ... and after it returned and V8's pending tasks for the isolate ran, with
  // what the item used (the isolate still locked and entered, a termination
  // already cancelled). Called once for every EnterJs, also when a limit
  // stopped the item; for an item the scheduler abandoned (IsolateLease::
  // OnAbandon) only once the item did return, possibly long after.
  virtual void ExitJs(IsolateLease& /*lease*/, const RequestUsage& /*usage*/) const {}

  // Called on the worker thread each time an isolate goes back to the pool
  // idle, with its memory as the scheduler measured it (the same figure its
  // memory budget counts). The isolate is not locked here: do not touch it.
  virtual void ReportIsolateMetrics(const IsolateMetrics& /*metrics*/) const {}
};

}  // namespace txfn

#endif  // TXFN_ISOLATE_CUSTOMIZER_H_

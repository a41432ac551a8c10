// txfn/isolate_scheduler.h — owns V8 isolates and the threads that run them.
//
// STATUS: interface fixed, implementation in progress (issue 4). The
// implementation owns everything below; the function runner codes against it.
//
// An IsolateScheduler runs work items ("requests") of tenants on a fixed set
// of worker threads, each request on a V8 isolate that serves only that
// tenant. For tenant T it picks the most recently used idle isolate that has
// served T; else creates one if under the bound; else disposes the least
// recently used idle isolate of another tenant and creates one. Requests
// beyond the workers wait in a bounded queue; a full queue, or a tenant over
// its in-flight cap, fails the request at once with ResourceExhausted.
//
//   auto scheduler = txfn::IsolateScheduler::Create({.workers = 2});
//   absl::Status s = (*scheduler)->Submit("shop", [](txfn::IsolateLease& lease) {
//     v8::Isolate* isolate = lease.isolate();   // entered and locked for you
//     ... create a context, run JS ...
//   });
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
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace v8 {
class Isolate;
class Platform;
}  // namespace v8

namespace txfn {

// Initialises V8 once per process (thread-safe, idempotent). A host that
// already owns a v8::Platform (and has initialised V8) passes it here first;
// txfn then uses it and never disposes it.
absl::Status InitializeV8(v8::Platform* host_platform = nullptr);

// Per-isolate state another layer keeps on an isolate (e.g. the function
// runner's compiled modules or a reused context). Destroyed on the isolate's
// thread, with the isolate entered and locked, before the isolate is disposed.
class IsolateData {
 public:
  virtual ~IsolateData() = default;
};

// What a work item gets: an isolate of its tenant, entered, locked and with a
// HandleScope open, for the duration of the item.
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
  // which limit ("cpu time" or "heap"); the runner turns this into
  // ResourceExhausted naming the limit.
  virtual bool limit_exceeded() const = 0;
  virtual std::string exceeded_limit() const = 0;
  // Asks the scheduler to dispose of this isolate after the item (e.g. it is
  // in an unknown state).
  virtual void Discard() = 0;
};

// Limits per request and isolate, checked by the scheduler's watchdog. A host
// replaces the policy by subclassing (workerd's limit enforcer is the model).
class LimitEnforcer {
 public:
  virtual ~LimitEnforcer() = default;
  virtual absl::Duration CpuLimit(const std::string& tenant) const { return absl::Seconds(1); }
  virtual size_t HeapLimitBytes(const std::string& tenant) const { return size_t{64} << 20; }
};

struct IsolateSchedulerOptions {
  int workers = 0;                 // 0 = hardware concurrency
  int max_isolates = 0;            // 0 = 4 per worker
  size_t queue_capacity = 1024;
  int max_in_flight_per_tenant = 0;  // 0 = half the workers (at least 1)
  std::shared_ptr<const LimitEnforcer> limits;  // null = defaults
};

struct IsolateSchedulerStats {
  uint64_t isolates_created = 0;
  uint64_t isolates_reused = 0;  // requests served by an isolate that served before
  uint64_t isolates_disposed = 0;
  uint64_t rejected = 0;         // ResourceExhausted at Submit
  size_t queue_length = 0;
};

class IsolateScheduler {
 public:
  using Work = std::function<void(IsolateLease&)>;

  [[nodiscard]] static absl::StatusOr<std::unique_ptr<IsolateScheduler>> Create(
      IsolateSchedulerOptions options = {});
  virtual ~IsolateScheduler() = default;

  // Queues `work` for `tenant`. ResourceExhausted (naming the queue or the
  // tenant cap) if it cannot be queued; then `work` never runs. Otherwise
  // `work` runs exactly once on a worker thread.
  [[nodiscard]] virtual absl::Status Submit(std::string tenant, Work work) = 0;

  // In-flight (queued or running) requests of `tenant`.
  virtual int InFlight(const std::string& tenant) const = 0;
  virtual IsolateSchedulerStats stats() const = 0;
};

}  // namespace txfn

#endif  // TXFN_ISOLATE_SCHEDULER_H_

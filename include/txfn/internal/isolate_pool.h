// txfn/internal/isolate_pool.h — the IsolateScheduler's policy, without V8.
//
// IsolatePool<Request, Isolate> decides which isolate serves which request,
// and nothing else: it never creates, enters or disposes an isolate itself. It
// owns the bounded request queue, the per-tenant in-flight caps and the idle
// isolates (as opaque `std::unique_ptr<Isolate>`), so the policy is unit- and
// TSan-tested with a plain struct for `Isolate`, and the V8 layer
// (lib/v8/isolate_scheduler.cc) only carries out its decisions.
//
// The policy, for a request of tenant T taken from the head of the FIFO queue:
//   1. reuse the most recently used idle isolate that has served T; else
//   2. create a new isolate for T if fewer than max_isolates exist; else
//   3. evict the least recently used idle isolate (necessarily of another
//      tenant) and create a new one for T in its place; else
//   4. wait: every isolate is busy, the request stays queued.
// An isolate serves one tenant for its whole life. Since any idle isolate (or
// any free place under the bound) can serve any tenant, the queue head is
// always the next request served: no head-of-line blocking.
//
// Admission: Submit fails at once with ResourceExhausted when the queue holds
// queue_capacity requests, or when the tenant already has
// max_in_flight_per_tenant requests queued or running.
//
//   IsolatePool<Work, Holder> pool({.max_isolates = 8, .queue_capacity = 1024,
//                                   .max_in_flight_per_tenant = 2});
//   RETURN_IF_ERROR(pool.Submit("shop", work));          // any thread
//   while (auto a = pool.Acquire()) {                    // worker threads
//     if (a->evicted) Dispose(std::move(a->evicted));
//     if (!a->isolate) a->isolate = Create(a->tenant);
//     Run(a->request, *a->isolate);
//     pool.Release(a->isolate_id, std::move(a->isolate));  // null: disposed
//   }
//
// Invariants (checked by tests/isolate_pool_policy*_test.cc):
//   - live isolates (idle + busy + being created) <= max_isolates;
//   - an isolate id is handed out only with requests of the tenant it was
//     created for;
//   - every admitted request is handed to exactly one Acquire.
//
// Thread safety: all methods are thread-safe. An Assignment is owned by the
// thread that acquired it until it calls Release.
#ifndef TXFN_INTERNAL_ISOLATE_POOL_H_
#define TXFN_INTERNAL_ISOLATE_POOL_H_

#include <cstddef>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "txfn/internal/mutex.h"
#include "txfn/internal/strings.h"

namespace txfn::internal {

struct IsolatePoolOptions {
  int max_isolates = 1;              // >= 1
  size_t queue_capacity = 1024;      // >= 1; queued, not yet running
  int max_in_flight_per_tenant = 1;  // >= 1; queued + running, per tenant
};

struct IsolatePoolStats {
  uint64_t created = 0;   // isolates the pool asked to create
  uint64_t reused = 0;    // requests handed an isolate that served before
  uint64_t disposed = 0;  // evicted, released as disposed, or taken at shutdown
  uint64_t evicted = 0;   // of `disposed`: evicted for another tenant
  uint64_t rejected_queue_full = 0;
  uint64_t rejected_tenant_cap = 0;
  size_t queue_length = 0;
  int live_isolates = 0;  // idle + busy
  int busy_isolates = 0;
  std::map<std::string, int> in_flight;  // tenants with requests queued or running
};

template <typename Request, typename Isolate>
class IsolatePool {
 public:
  // One request handed to a worker, with the isolate to run it on.
  struct Assignment {
    std::string tenant;
    Request request;
    uint64_t isolate_id = 0;           // stable for the isolate's life; never reused
    bool reused = false;               // the isolate served earlier requests (of `tenant`)
    std::unique_ptr<Isolate> isolate;  // null: create one for `tenant`
    std::unique_ptr<Isolate> evicted;  // non-null: another tenant's isolate to dispose first
  };

  // Values below 1 are raised to 1.
  explicit IsolatePool(IsolatePoolOptions options) : options_(Clamp(options)) {}
  IsolatePool(const IsolatePool&) = delete;
  IsolatePool& operator=(const IsolatePool&) = delete;

  // Queues `request`. ResourceExhausted naming the queue or the tenant cap when
  // it cannot be admitted, FailedPrecondition after Shutdown; the request is
  // then dropped.
  [[nodiscard]] absl::Status Submit(std::string tenant, Request request) {
    MutexLock lock(&mu_);
    if (shutdown_) return absl::FailedPreconditionError("isolate scheduler is shutting down");
    if (queue_.size() >= options_.queue_capacity) {
      ++stats_.rejected_queue_full;
      return absl::ResourceExhaustedError(
          StrCat("isolate scheduler queue is full (capacity ", options_.queue_capacity, ")"));
    }
    int& in_flight = in_flight_[ToAbsl(tenant)];
    if (in_flight >= options_.max_in_flight_per_tenant) {
      ++stats_.rejected_tenant_cap;
      return absl::ResourceExhaustedError(StrCat("tenant '", tenant, "' has ", in_flight,
                                                 " requests in flight (per-tenant cap ",
                                                 options_.max_in_flight_per_tenant, ")"));
    }
    ++in_flight;
    queue_.push_back(Pending{std::move(tenant), std::move(request)});
    cv_.SignalAll();
    return absl::OkStatus();
  }

  // Blocks until the queue head can be served and returns it, or returns
  // nullopt once Shutdown was called and the queue is empty.
  [[nodiscard]] std::optional<Assignment> Acquire() {
    MutexLock lock(&mu_);
    cv_.Wait([&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return CanServeLocked() || (shutdown_ && queue_.empty());
    });
    if (!CanServeLocked()) return std::nullopt;
    return AssignLocked();
  }

  // Non-blocking Acquire: nullopt when the queue is empty or every isolate is busy.
  [[nodiscard]] std::optional<Assignment> TryAcquire() {
    MutexLock lock(&mu_);
    if (!CanServeLocked()) return std::nullopt;
    return AssignLocked();
  }

  // Ends the request running on `isolate_id`. A non-null `isolate` becomes
  // idle for its tenant; null means the caller disposed of it (its place
  // under the bound frees up). Requires a matching Acquire.
  void Release(uint64_t isolate_id, std::unique_ptr<Isolate> isolate) {
    MutexLock lock(&mu_);
    auto it = slots_.find(isolate_id);
    if (it == slots_.end()) return;  // not acquired: a caller bug, ignored
    Slot& slot = it->second;
    auto f = in_flight_.find(ToAbsl(slot.tenant));
    if (f != in_flight_.end() && --f->second <= 0) in_flight_.erase(f);
    --busy_;
    if (isolate == nullptr) {
      ++stats_.disposed;
      slots_.erase(it);
    } else {
      slot.busy = false;
      slot.isolate = std::move(isolate);
      slot.tick = ++tick_;
      idle_lru_.emplace(slot.tick, isolate_id);
      idle_by_tenant_[ToAbsl(slot.tenant)].emplace(slot.tick, isolate_id);
    }
    cv_.SignalAll();
  }

  // Stops admitting requests; Acquire drains the queue, then returns nullopt.
  void Shutdown() {
    MutexLock lock(&mu_);
    shutdown_ = true;
    cv_.SignalAll();
  }

  // Removes and returns every idle isolate (for disposal at shutdown).
  [[nodiscard]] std::vector<std::unique_ptr<Isolate>> TakeIdle() {
    MutexLock lock(&mu_);
    std::vector<std::unique_ptr<Isolate>> out;
    for (const auto& [tick, id] : idle_lru_) {
      auto it = slots_.find(id);
      out.push_back(std::move(it->second.isolate));
      slots_.erase(it);
      ++stats_.disposed;
    }
    idle_lru_.clear();
    idle_by_tenant_.clear();
    cv_.SignalAll();
    return out;
  }

  // Queued + running requests of `tenant`.
  int InFlight(const std::string& tenant) const {
    MutexLock lock(&mu_);
    auto it = in_flight_.find(ToAbsl(tenant));
    return it == in_flight_.end() ? 0 : it->second;
  }

  IsolatePoolStats stats() const {
    MutexLock lock(&mu_);
    IsolatePoolStats s = stats_;
    s.queue_length = queue_.size();
    s.live_isolates = static_cast<int>(slots_.size());
    s.busy_isolates = busy_;
    for (const auto& [tenant, n] : in_flight_) s.in_flight.emplace(tenant, n);
    return s;
  }

  const IsolatePoolOptions& options() const { return options_; }

 private:
  struct Pending {
    std::string tenant;
    Request request;
  };
  struct Slot {
    std::string tenant;
    bool busy = true;
    uint64_t tick = 0;                 // last release, for MRU/LRU; keys idle_lru_/idle_by_tenant_
    std::unique_ptr<Isolate> isolate;  // null while busy (the worker holds it)
  };
  using IdleByTick = std::map<uint64_t, uint64_t>;  // tick -> isolate id

  static IsolatePoolOptions Clamp(IsolatePoolOptions o) {
    if (o.max_isolates < 1) o.max_isolates = 1;
    if (o.queue_capacity < 1) o.queue_capacity = 1;
    if (o.max_in_flight_per_tenant < 1) o.max_in_flight_per_tenant = 1;
    return o;
  }

  bool CanServeLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return !queue_.empty() &&
           (!idle_lru_.empty() || static_cast<int>(slots_.size()) < options_.max_isolates);
  }

  // Removes idle isolate `id` (released at `tick`) from the idle indexes.
  void UnidleLocked(const std::string& tenant, uint64_t tick) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    idle_lru_.erase(tick);
    auto t = idle_by_tenant_.find(ToAbsl(tenant));
    t->second.erase(tick);
    if (t->second.empty()) idle_by_tenant_.erase(t);
  }

  // Requires CanServeLocked().
  Assignment AssignLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    Pending p = std::move(queue_.front());
    queue_.pop_front();
    Assignment a{.tenant = std::move(p.tenant), .request = std::move(p.request)};
    ++busy_;
    // 1. The tenant's most recently used idle isolate.
    if (auto t = idle_by_tenant_.find(ToAbsl(a.tenant)); t != idle_by_tenant_.end()) {
      const auto [tick, id] = *t->second.rbegin();
      UnidleLocked(a.tenant, tick);
      Slot& slot = slots_.at(id);
      slot.busy = true;
      a.isolate_id = id;
      a.isolate = std::move(slot.isolate);
      a.reused = true;
      ++stats_.reused;
      return a;
    }
    // 3. At the bound: evict the least recently used idle isolate (another tenant's).
    if (static_cast<int>(slots_.size()) >= options_.max_isolates) {
      const auto [tick, id] = *idle_lru_.begin();
      auto it = slots_.find(id);
      UnidleLocked(it->second.tenant, tick);
      a.evicted = std::move(it->second.isolate);
      slots_.erase(it);
      ++stats_.disposed;
      ++stats_.evicted;
    }
    // 2. A new isolate for the tenant.
    a.isolate_id = ++next_id_;
    slots_.emplace(a.isolate_id, Slot{.tenant = a.tenant});
    ++stats_.created;
    return a;
  }

  const IsolatePoolOptions options_;
  mutable Mutex mu_;
  CondVar cv_{&mu_};
  bool shutdown_ ABSL_GUARDED_BY(mu_) = false;
  std::deque<Pending> queue_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, int> in_flight_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<uint64_t, Slot> slots_ ABSL_GUARDED_BY(mu_);
  IdleByTick idle_lru_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, IdleByTick> idle_by_tenant_ ABSL_GUARDED_BY(mu_);
  int busy_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t tick_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t next_id_ ABSL_GUARDED_BY(mu_) = 0;
  IsolatePoolStats stats_ ABSL_GUARDED_BY(mu_);
};

}  // namespace txfn::internal

#endif  // TXFN_INTERNAL_ISOLATE_POOL_H_

// txfn/internal/isolate_pool.h — the IsolateScheduler's policy, without V8.
//
// IsolatePool<Request, Isolate> decides which isolate serves which request,
// and nothing else: it never creates, enters or disposes an isolate itself. It
// owns the bounded request queue, the per-tenant in-flight caps and the idle
// isolates (as opaque `std::unique_ptr<Isolate>`), so the policy is unit- and
// TSan-tested with a plain struct for `Isolate`, and the V8 layer
// (lib/v8/isolate_scheduler.cc) only carries out its decisions.
//
// Two bounds: at most max_isolates isolates, and (if memory_budget_bytes is
// set) at most that many bytes of them, as measured by the caller at each
// Release (a new isolate counts new_isolate_bytes until then). "At the
// bound" below means either.
//
// The policy, for a request of tenant T, taking the queue in FIFO order and
// passing over requests of tenants already running max_running_per_tenant:
//   1. reuse the most recently used idle isolate that has served T; else
//   2. create a new isolate for T if under the bound; else
//   3. evict the least recently used idle isolate (necessarily of another
//      tenant) and create a new one for T in its place, unless T already has
//      a busy isolate and the request has been queued for less than
//      own_isolate_patience: then it waits for T's isolate, and the requests
//      behind it are considered instead; else
//   4. wait: every isolate is busy, the request stays queued.
// An isolate serves one tenant for its whole life. The patience in step 3 is
// ski rental: evicting a warm isolate to build a second one for T costs about
// as much as the patience (an isolate takes ~2 ms to create), while T's own
// isolate is usually free again sooner; a request that keeps T's isolate busy
// longer costs the waiting one at most the patience. A request passed over
// never blocks the others (no head-of-line blocking); it is served as soon
// as T's isolate is released, ahead of later requests.
//
// Admission: Submit fails at once with ResourceExhausted when the queue holds
// queue_capacity requests, or when the tenant already has
// max_in_flight_per_tenant requests queued or running.
//
// Ahead: SubmitAhead queues a request in front of every request queued by Submit (behind
// those queued ahead before it) and admits it past both caps (so the queue may hold more than
// queue_capacity, and a tenant more than its cap in flight). One ahead request per tenant at
// a time is served past the tenant's max_running_per_tenant (a tenant thus holds at most one
// more worker than its cap); the bound and the patience apply as to any request. For an
// operator's short work that a flood of the tenant's own requests must neither delay behind
// its queue nor refuse (a deploy's check of its modules).
//
// Given up: a request submitted with a `given_up` predicate (its caller stopped waiting at
// its deadline) is dropped, never handed out, once the predicate says so: checked as the
// queue is searched and before a Submit would be refused (until then it still counts in the
// queue and its tenant's in-flight requests). Dropped requests are destroyed outside the
// pool's lock, by the Acquire or Submit that found them.
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
// Acquire costs O(queue length) when requests are waiting for their
// tenants' busy isolates (they are passed over one by one).
//
// Thread safety: all methods are thread-safe. An Assignment is owned by the
// thread that acquired it until it calls Release.
#ifndef TXFN_INTERNAL_ISOLATE_POOL_H_
#define TXFN_INTERNAL_ISOLATE_POOL_H_

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/time/time.h"
#include "txfn/internal/mutex.h"
#include "txfn/internal/strings.h"

namespace txfn::internal {

struct IsolatePoolOptions {
  int max_isolates = 1;              // >= 1
  size_t queue_capacity = 1024;      // >= 1; queued, not yet running (SubmitAhead may exceed it)
  int max_in_flight_per_tenant = 1;  // >= 1; queued + running, per tenant
  // >= 1; running at once, per tenant (the rest wait, others pass them).
  int max_running_per_tenant = 1 << 30;
  // The second bound (0 = none), and what a new isolate counts against it
  // until its first Release says what it takes.
  size_t memory_budget_bytes = 0;
  size_t new_isolate_bytes = size_t{2} << 20;
  // Step 3 of the policy: how long a request whose tenant has a busy isolate
  // waits for it before evicting another tenant's. Zero: never waits. Clamped
  // to [0, 24 h].
  absl::Duration own_isolate_patience = absl::Milliseconds(2);
};

struct IsolatePoolStats {
  uint64_t created = 0;                // isolates the pool asked to create
  uint64_t reused = 0;                 // requests handed an isolate that served before
  uint64_t disposed = 0;               // evicted, released as disposed, or taken at shutdown
  uint64_t evicted = 0;                // of `disposed`: evicted for another tenant
  uint64_t waited_for_own = 0;         // requests passed over while their tenant's isolate was busy
  uint64_t waited_for_tenant_cap = 0;  // requests passed over at max_running_per_tenant
  uint64_t rejected_queue_full = 0;
  uint64_t rejected_tenant_cap = 0;
  uint64_t given_up = 0;  // queued requests dropped because their callers gave up on them
  size_t queue_length = 0;
  int live_isolates = 0;  // idle + busy
  int busy_isolates = 0;
  size_t isolate_bytes = 0;              // the live isolates' sizes as last reported
  uint64_t evicted_for_memory = 0;       // of `evicted`: for the memory budget, not the count
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

  // Values below 1 are raised to 1; own_isolate_patience is clamped.
  explicit IsolatePool(IsolatePoolOptions options) : options_(Clamp(options)) {}
  IsolatePool(const IsolatePool&) = delete;
  IsolatePool& operator=(const IsolatePool&) = delete;

  // Queues `request`. ResourceExhausted naming the queue or the tenant cap when
  // it cannot be admitted, FailedPrecondition after Shutdown; the request is
  // then dropped. `given_up` (may be null), called under the pool's lock: true once the
  // request's caller no longer wants it run (it is then dropped if still queued).
  [[nodiscard]] absl::Status Submit(std::string tenant, Request request,
                                    std::function<bool()> given_up = nullptr) {
    std::vector<Request> dropped;  // destroyed after the lock is released
    MutexLock lock(&mu_);
    if (shutdown_) return ShuttingDown();
    if (auto f = in_flight_.find(ToAbsl(tenant));
        queue_.size() >= options_.queue_capacity ||
        (f != in_flight_.end() && f->second >= options_.max_in_flight_per_tenant)) {
      DropGivenUpLocked(&dropped);  // their places are free
    }
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
    queue_.push_back(Pending{.tenant = std::move(tenant),
                             .request = std::move(request),
                             .given_up = std::move(given_up),
                             .queued_at = Clock::now()});
    ChangedLocked();
    return absl::OkStatus();
  }

  // Queues `request` ahead (see "Ahead" above): never refused for the queue's capacity or
  // the tenant's cap; FailedPrecondition after Shutdown, the request then dropped.
  [[nodiscard]] absl::Status SubmitAhead(std::string tenant, Request request) {
    MutexLock lock(&mu_);
    if (shutdown_) return ShuttingDown();
    ++in_flight_[ToAbsl(tenant)];
    auto behind_ahead =
        std::find_if(queue_.begin(), queue_.end(), [](const Pending& p) { return !p.ahead; });
    queue_.insert(behind_ahead, Pending{.tenant = std::move(tenant),
                                        .request = std::move(request),
                                        .queued_at = Clock::now(),
                                        .ahead = true});
    ChangedLocked();
    return absl::OkStatus();
  }

  // Blocks until a queued request can be served and returns it, or returns
  // nullopt once Shutdown was called and the queue is empty.
  [[nodiscard]] std::optional<Assignment> Acquire() {
    while (true) {
      std::vector<Request> dropped;  // destroyed after the lock is released
      MutexLock lock(&mu_);
      DropGivenUpLocked(&dropped);
      std::optional<Clock::time_point> retry_at;
      if (std::optional<size_t> i = FindServableLocked(&retry_at)) return AssignLocked(*i);
      if (shutdown_ && queue_.empty()) return std::nullopt;
      // Not kept while waiting (a request holds its snapshot): destroyed unlocked, then look
      // again.
      if (!dropped.empty()) continue;
      // Wait for a change (a submit, a release, shutdown) or until a waiting
      // request's patience runs out.
      const uint64_t seen = changes_;
      auto changed = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return changes_ != seen; };
      if (!retry_at) {
        cv_.Wait(changed);
      } else {
        cv_.WaitWithTimeout(absl::FromChrono(*retry_at - Clock::now()), changed);
      }
    }
  }

  // Non-blocking Acquire: nullopt when no queued request can be served now.
  [[nodiscard]] std::optional<Assignment> TryAcquire() {
    std::vector<Request> dropped;  // destroyed after the lock is released
    MutexLock lock(&mu_);
    DropGivenUpLocked(&dropped);
    std::optional<Clock::time_point> retry_at;
    std::optional<size_t> i = FindServableLocked(&retry_at);
    if (!i) return std::nullopt;
    return AssignLocked(*i);
  }

  // Ends the request running on `isolate_id`. A non-null `isolate` becomes
  // idle for its tenant, taking `bytes` of the memory budget (0: keep the
  // last figure); null means the caller disposed of it (its place under the
  // bound frees up). Requires a matching Acquire. Returns idle isolates
  // evicted to bring the pool back under its memory budget (least recently
  // used first), for the caller to dispose of.
  std::vector<std::unique_ptr<Isolate>> Release(uint64_t isolate_id,
                                                std::unique_ptr<Isolate> isolate,
                                                size_t bytes = 0) {
    MutexLock lock(&mu_);
    std::vector<std::unique_ptr<Isolate>> evicted;
    auto it = slots_.find(isolate_id);
    if (it == slots_.end()) return evicted;  // not acquired: a caller bug, ignored
    Slot& slot = it->second;
    CountDown(in_flight_, slot.tenant);
    CountDown(busy_by_tenant_, slot.tenant);
    if (slot.ahead) CountDown(ahead_busy_by_tenant_, slot.tenant);
    slot.ahead = false;
    --busy_;
    if (isolate == nullptr) {
      ++stats_.disposed;
      bytes_ -= slot.bytes;
      slots_.erase(it);
    } else {
      slot.busy = false;
      slot.isolate = std::move(isolate);
      if (bytes != 0) {
        bytes_ += bytes;
        bytes_ -= slot.bytes;
        slot.bytes = bytes;
      }
      slot.tick = ++tick_;
      idle_lru_.emplace(slot.tick, isolate_id);
      idle_by_tenant_[ToAbsl(slot.tenant)].emplace(slot.tick, isolate_id);
      // Over the memory budget: the least recently used idle isolates go
      // (possibly this one, if it is the only idle one).
      while (OverBudgetLocked(0) && !idle_lru_.empty()) {
        evicted.push_back(EvictLruLocked());
        ++stats_.evicted_for_memory;
      }
    }
    ChangedLocked();
    return evicted;
  }

  // Stops admitting requests; Acquire drains the queue, then returns nullopt.
  void Shutdown() {
    MutexLock lock(&mu_);
    shutdown_ = true;
    ChangedLocked();
  }

  // Removes and returns every idle isolate (for disposal at shutdown).
  [[nodiscard]] std::vector<std::unique_ptr<Isolate>> TakeIdle() {
    MutexLock lock(&mu_);
    std::vector<std::unique_ptr<Isolate>> out;
    for (const auto& [tick, id] : idle_lru_) out.push_back(RemoveSlotLocked(id));
    idle_lru_.clear();
    idle_by_tenant_.clear();
    ChangedLocked();
    return out;
  }

  // Removes and returns `tenant`'s idle isolates (for disposal: a deleted tenant's isolates
  // would otherwise hold memory until the LRU evicts them). Busy ones are left to their
  // requests.
  [[nodiscard]] std::vector<std::unique_ptr<Isolate>> TakeIdleOf(const std::string& tenant) {
    MutexLock lock(&mu_);
    std::vector<std::unique_ptr<Isolate>> out;
    auto t = idle_by_tenant_.find(ToAbsl(tenant));
    if (t == idle_by_tenant_.end()) return out;
    for (const auto& [tick, id] : t->second) {
      idle_lru_.erase(tick);
      out.push_back(RemoveSlotLocked(id));
    }
    idle_by_tenant_.erase(t);
    ChangedLocked();
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
    s.isolate_bytes = bytes_;
    for (const auto& [tenant, n] : in_flight_) s.in_flight.emplace(tenant, n);
    return s;
  }

  const IsolatePoolOptions& options() const { return options_; }

 private:
  // Patience is measured on a monotonic clock (a wall-clock step must not
  // make a request wait longer or evict early).
  using Clock = std::chrono::steady_clock;
  struct Pending {
    std::string tenant;
    Request request;
    std::function<bool()> given_up;  // null: never
    Clock::time_point queued_at;
    bool passed_over = false;      // counted in waited_for_own
    bool passed_over_cap = false;  // counted in waited_for_tenant_cap
    bool ahead = false;            // SubmitAhead (see "Ahead" above)
  };
  struct Slot {
    std::string tenant;
    size_t bytes = 0;  // last reported size (new_isolate_bytes until then)
    bool busy = true;
    bool ahead = false;                // serving a request queued ahead
    uint64_t tick = 0;                 // last release, for MRU/LRU; keys idle_lru_/idle_by_tenant_
    std::unique_ptr<Isolate> isolate;  // null while busy (the worker holds it)
  };
  using IdleByTick = std::map<uint64_t, uint64_t>;  // tick -> isolate id

  // Decrements the count of `key`, erasing it at zero.
  static void CountDown(absl::flat_hash_map<std::string, int>& counts, std::string_view key) {
    auto it = counts.find(ToAbsl(key));
    if (it != counts.end() && --it->second <= 0) counts.erase(it);
  }

  static absl::Status ShuttingDown() {
    return absl::FailedPreconditionError("isolate scheduler is shutting down");
  }

  static IsolatePoolOptions Clamp(IsolatePoolOptions o) {
    if (o.max_isolates < 1) o.max_isolates = 1;
    if (o.queue_capacity < 1) o.queue_capacity = 1;
    if (o.max_in_flight_per_tenant < 1) o.max_in_flight_per_tenant = 1;
    if (o.max_running_per_tenant < 1) o.max_running_per_tenant = 1;
    // Within [0, a day]: an infinite patience must not overflow the clock.
    o.own_isolate_patience =
        std::clamp(o.own_isolate_patience, absl::ZeroDuration(), absl::Hours(24));
    return o;
  }

  void ChangedLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    ++changes_;
    cv_.SignalAll();
  }

  // Moves the queued requests whose callers gave up on them to *dropped, freeing their
  // places in the queue and their tenants' in-flight counts.
  void DropGivenUpLocked(std::vector<Request>* dropped) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    const size_t before = queue_.size();
    for (auto it = queue_.begin(); it != queue_.end();) {
      if (it->given_up == nullptr || !it->given_up()) {
        ++it;
        continue;
      }
      dropped->push_back(std::move(it->request));
      CountDown(in_flight_, it->tenant);
      ++stats_.given_up;
      it = queue_.erase(it);
    }
    if (queue_.size() != before) ChangedLocked();
  }

  // The first queued request the policy serves now, if any. Sets *retry_at
  // to when a request waiting for its tenant's busy isolate runs out of
  // patience (nullopt if none is waiting).
  std::optional<size_t> FindServableLocked(std::optional<Clock::time_point>* retry_at)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    retry_at->reset();
    const bool under_bound =
        slots_.empty() || (static_cast<int>(slots_.size()) < options_.max_isolates &&
                           !OverBudgetLocked(options_.new_isolate_bytes));
    if (!under_bound && idle_lru_.empty()) return std::nullopt;  // every isolate busy
    const Clock::time_point now = Clock::now();
    for (size_t i = 0; i < queue_.size(); ++i) {
      Pending& p = queue_[i];
      const auto tenant = ToAbsl(p.tenant);
      const bool past_cap = p.ahead && !ahead_busy_by_tenant_.contains(tenant);
      if (auto b = busy_by_tenant_.find(tenant);
          !past_cap && b != busy_by_tenant_.end() && b->second >= options_.max_running_per_tenant) {
        if (!p.passed_over_cap) {
          p.passed_over_cap = true;
          ++stats_.waited_for_tenant_cap;
        }
        continue;  // served when one of the tenant's requests ends (Release)
      }
      if (under_bound || idle_by_tenant_.contains(tenant) || !busy_by_tenant_.contains(tenant)) {
        return i;  // steps 1, 2, or 3 for a tenant with no busy isolate
      }
      const Clock::time_point patience_ends =
          p.queued_at + std::chrono::duration_cast<Clock::duration>(
                            absl::ToChronoNanoseconds(options_.own_isolate_patience));
      if (now >= patience_ends) return i;  // step 3 after waiting
      if (!p.passed_over) {
        p.passed_over = true;
        ++stats_.waited_for_own;
      }
      *retry_at = retry_at->has_value() ? std::min(**retry_at, patience_ends) : patience_ends;
    }
    return std::nullopt;
  }

  // Whether `extra` more bytes would take the live isolates past the budget.
  bool OverBudgetLocked(size_t extra) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return options_.memory_budget_bytes != 0 && bytes_ + extra > options_.memory_budget_bytes;
  }

  // Removes the least recently used idle isolate from the pool (there must
  // be one) and returns it, for disposal.
  std::unique_ptr<Isolate> EvictLruLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    const auto [tick, id] = *idle_lru_.begin();
    UnidleLocked(slots_.at(id).tenant, tick);
    ++stats_.evicted;
    return RemoveSlotLocked(id);
  }

  // Removes idle isolate `id`'s slot (the caller took it out of the idle indexes, or clears
  // them) and returns the isolate, for disposal.
  std::unique_ptr<Isolate> RemoveSlotLocked(uint64_t id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    auto it = slots_.find(id);
    std::unique_ptr<Isolate> out = std::move(it->second.isolate);
    bytes_ -= it->second.bytes;
    slots_.erase(it);
    ++stats_.disposed;
    return out;
  }

  // Removes idle isolate `id` (released at `tick`) from the idle indexes.
  void UnidleLocked(const std::string& tenant, uint64_t tick) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    idle_lru_.erase(tick);
    auto t = idle_by_tenant_.find(ToAbsl(tenant));
    t->second.erase(tick);
    if (t->second.empty()) idle_by_tenant_.erase(t);
  }

  // Serves queue_[index], which FindServableLocked chose.
  Assignment AssignLocked(size_t index) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    Pending p = std::move(queue_[index]);
    queue_.erase(queue_.begin() + static_cast<std::ptrdiff_t>(index));
    Assignment a{.tenant = std::move(p.tenant), .request = std::move(p.request)};
    ++busy_;
    ++busy_by_tenant_[ToAbsl(a.tenant)];
    if (p.ahead) ++ahead_busy_by_tenant_[ToAbsl(a.tenant)];
    // 1. The tenant's most recently used idle isolate.
    if (auto t = idle_by_tenant_.find(ToAbsl(a.tenant)); t != idle_by_tenant_.end()) {
      const auto [tick, id] = *t->second.rbegin();
      UnidleLocked(a.tenant, tick);
      Slot& slot = slots_.at(id);
      slot.busy = true;
      slot.ahead = p.ahead;
      a.isolate_id = id;
      a.isolate = std::move(slot.isolate);
      a.reused = true;
      ++stats_.reused;
      return a;
    }
    // 3. At the bound: evict the least recently used idle isolate (another tenant's).
    // (FindServableLocked only gets here at the bound with an idle isolate,
    // or with none live at all, which is under any bound.)
    const bool at_count = static_cast<int>(slots_.size()) >= options_.max_isolates;
    if ((at_count || OverBudgetLocked(options_.new_isolate_bytes)) && !idle_lru_.empty()) {
      a.evicted = EvictLruLocked();
      if (!at_count) ++stats_.evicted_for_memory;
    }
    // 2. A new isolate for the tenant.
    a.isolate_id = ++next_id_;
    slots_.emplace(a.isolate_id,
                   Slot{.tenant = a.tenant, .bytes = options_.new_isolate_bytes, .ahead = p.ahead});
    bytes_ += options_.new_isolate_bytes;
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
  absl::flat_hash_map<std::string, int> busy_by_tenant_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, int> ahead_busy_by_tenant_ ABSL_GUARDED_BY(mu_);  // of busy
  int busy_ ABSL_GUARDED_BY(mu_) = 0;
  size_t bytes_ ABSL_GUARDED_BY(mu_) = 0;      // sum of the slots' bytes
  uint64_t changes_ ABSL_GUARDED_BY(mu_) = 0;  // bumped on every change Acquire waits for
  uint64_t tick_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t next_id_ ABSL_GUARDED_BY(mu_) = 0;
  IsolatePoolStats stats_ ABSL_GUARDED_BY(mu_);
};

}  // namespace txfn::internal

#endif  // TXFN_INTERNAL_ISOLATE_POOL_H_

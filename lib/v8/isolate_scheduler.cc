// IsolateScheduler: carries out IsolatePool's decisions with V8.
//
// Threads: `workers` worker threads loop on IsolatePool::Acquire, dispose of
// an evicted isolate, create a missing one, run the work item with the
// isolate locked and entered, and release it. One watchdog thread samples the
// CPU clocks of the workers that are running a request and terminates the
// offender. The near-heap-limit callback runs on the worker thread itself.
//
// Lifetimes: an IsolateHolder (v8::Isolate + what the scheduler keeps with
// it) is owned by the pool while idle and by the worker while busy. The
// watchdog touches a running request's isolate only under wd_mu_, and the
// worker unregisters the request under wd_mu_ before the isolate can be
// released, so TerminateExecution never reaches an isolate after its request.
// The request stays registered until the message loop is pumped after the
// work item: whatever JavaScript a pumped task runs is under the request's
// limits too.
#include "txfn/isolate_scheduler.h"

#include <fcntl.h>
#include <pthread.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "lib/v8/array_buffer_allocator.h"
#include "lib/v8/platform.h"
#include "lib/v8/termination_deferral.h"
#include "libplatform/libplatform.h"
#include "txfn/internal/isolate_pool.h"
#include "txfn/internal/mutex.h"
#include "txfn/isolate_customizer.h"
#include "v8-array-buffer.h"
#include "v8-isolate.h"
#include "v8-local-handle.h"
#include "v8-locker.h"
#include "v8-statistics.h"

namespace txfn {
namespace {

using internal::CondVar;
using internal::Mutex;
using internal::MutexLock;

enum Limit : int { kNoLimit = 0, kCpuLimit = 1, kWallLimit = 2, kHeapLimit = 3, kDeadline = 4 };

// Heap granted past what is in use once the limit is reached, so V8 can
// unwind the terminated request instead of aborting the process. V8 lets a
// single large object (a flattened string, a grown array: up to ~1 GiB)
// through before it asks, or asks with that allocation still to come; a
// grant below what it needs is a fatal OOM. The grant is only a ceiling: real
// memory grows by what the request actually allocates before the
// termination reaches it, and the isolate is disposed of right after.
constexpr size_t kHeapGrant = size_t{1} << 30;
// Past this much above its limit an isolate gets no more: a builtin that
// keeps allocating without ever checking for termination would otherwise
// take the machine's memory (V8 then aborts; the builtins known to do this
// are refused up front by the runner's bootstrap).
constexpr size_t kHeapGrantCeiling = size_t{3} << 30;
constexpr size_t kYoungGenerationBytes = size_t{16} << 20;

int64_t CpuNanos(clockid_t clock) {
  timespec ts{};
  if (clock_gettime(clock, &ts) != 0) return 0;
  return int64_t{ts.tv_sec} * 1000000000 + ts.tv_nsec;
}

int64_t MonotonicNanos() { return CpuNanos(CLOCK_MONOTONIC); }

// Whether thread `tid` of this process is runnable (on a CPU or waiting for one), not
// sleeping or blocked: the state in /proc/self/task/TID/stat. False if it cannot tell.
bool ThreadIsRunnable(pid_t tid) {
  const std::string path = "/proc/self/task/" + std::to_string(tid) + "/stat";
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  char buffer[512];
  const ssize_t n = read(fd, buffer, sizeof(buffer) - 1);
  close(fd);
  if (n <= 0) return false;
  const std::string_view stat(buffer, static_cast<size_t>(n));
  // "TID (NAME) STATE ...": the name may hold spaces and parentheses; the last ')' ends it.
  const size_t name_end = stat.rfind(')');
  return name_end != std::string_view::npos && name_end + 2 < stat.size() &&
         stat[name_end + 2] == 'R';
}

// A request stopped at a limit whose thread has had less than a quarter of the grace of CPU
// since is not stuck in a builtin if its thread is waiting for a CPU (an overloaded host):
// it is waited for up to this many graces before it is abandoned all the same.
constexpr int64_t kStarvedGraces = 10;

// What a new isolate counts against the memory budget until it is measured
// (a fresh one takes about 1.2 MiB once idle), and the default budget: an
// quarter of physical memory (at least 256 MiB).
constexpr size_t kNewIsolateBytes = size_t{2} << 20;
size_t DefaultMemoryBudget() {
  const long pages = sysconf(_SC_PHYS_PAGES);
  const long page = sysconf(_SC_PAGESIZE);
  const size_t physical =
      pages > 0 && page > 0 ? static_cast<size_t>(pages) * static_cast<size_t>(page) : 0;
  return std::max<size_t>(physical / 4, size_t{256} << 20);
}

class LeaseImpl;

// A V8 isolate and what the scheduler keeps with it. Owned by the pool while
// idle, by one worker while busy; its fields are only touched by that owner
// (the near-heap-limit callback runs on the owner's thread).
struct IsolateHolder {
  v8::Isolate* isolate = nullptr;
  uint64_t id = 0;
  std::string tenant;
  std::unique_ptr<IsolateData> data;
  size_t heap_limit = 0;  // as configured at creation
  bool heap_exceeded = false;
  // V8's count of external memory (AdjustAmountOfExternalAllocatedMemory: the runner's
  // Intl objects) at the last full GC MeasureIdle made.
  size_t external_at_last_trim = 0;
  std::shared_ptr<internal::ArrayBufferBudget> buffers;
  // Set while the runner cannot take a termination (termination_deferral.h).
  internal::TerminationDeferral termination_deferral;
  LeaseImpl* current = nullptr;                      // the request running on it, if any
  std::atomic<uint64_t>* terminated_heap = nullptr;  // the scheduler's counter
};

class LeaseImpl final : public IsolateLease {
 public:
  LeaseImpl(IsolateHolder* holder, bool reused, std::vector<std::function<void()>>* after_release)
      : holder_(holder), reused_(reused), after_release_(after_release) {}

  v8::Isolate* isolate() override { return holder_->isolate; }
  const std::string& tenant() const override { return holder_->tenant; }
  bool reused() const override { return reused_; }
  IsolateData* data() override { return holder_->data.get(); }
  void set_data(std::unique_ptr<IsolateData> data) override { holder_->data = std::move(data); }
  bool limit_exceeded() const override { return exceeded_.load(std::memory_order_acquire) != 0; }
  std::string exceeded_limit() const override {
    switch (exceeded_.load(std::memory_order_acquire)) {
      case kCpuLimit:
        return "cpu time";
      case kWallLimit:
        return "wall time";
      case kHeapLimit:
        return "heap";
      case kDeadline:
        return "deadline";
      default:
        return "";
    }
  }
  void Discard() override { discarded_ = true; }
  void StopAt(absl::Time deadline) override {
    if (deadline == absl::InfiniteFuture()) return;
    // The watchdog's clock is the monotonic one: translate once, now.
    const absl::Duration left = std::max(deadline - absl::Now(), absl::ZeroDuration());
    const int64_t at = MonotonicNanos() + absl::ToInt64Nanoseconds(std::min(left, absl::Hours(24)));
    int64_t current = deadline_ns_.load(std::memory_order_relaxed);
    while (at < current &&
           !deadline_ns_.compare_exchange_weak(current, at, std::memory_order_relaxed)) {
    }
  }
  // StopAt's deadline on the monotonic clock; INT64_MAX when none.
  int64_t deadline_ns() const { return deadline_ns_.load(std::memory_order_relaxed); }
  uint64_t isolate_id() const override { return holder_->id; }
  uint64_t array_buffers_refused() const override {
    return holder_->buffers->refused.load(std::memory_order_relaxed);
  }
  size_t array_buffer_limit_bytes() const override { return holder_->buffers->limit_bytes; }
  void CheckHeapLimit() override {
    if (holder_->heap_exceeded) return;
    v8::HeapStatistics heap;
    holder_->isolate->GetHeapStatistics(&heap);
    if (heap.used_heap_size() <= heap.heap_size_limit()) return;
    holder_->heap_exceeded = true;
    if (Mark(kHeapLimit)) holder_->terminated_heap->fetch_add(1, std::memory_order_relaxed);
  }
  void RunAfterRelease(std::function<void()> fn) override {
    after_release_->push_back(std::move(fn));
  }
  void OnAbandon(std::function<void(const std::string&)> fn) override {
    MutexLock lock(&abandon_mu_);
    on_abandon_ = std::move(fn);
  }
  // The watchdog gave up on this item: returns its callback (to run on
  // another thread), once.
  std::function<void(const std::string&)> TakeAbandonCallback() {
    MutexLock lock(&abandon_mu_);
    return std::exchange(on_abandon_, nullptr);
  }

  bool discarded() const { return discarded_; }
  // Terminates the request unless the runner holds terminations back (termination_deferral.h).
  bool TryTerminate() {
    return holder_->termination_deferral.TryTerminate(holder_->isolate,
                                                      internal::DeferralClockNanos());
  }
  // Records the first limit this request hit; false if one was already recorded.
  bool Mark(Limit limit) {
    int none = kNoLimit;
    return exceeded_.compare_exchange_strong(none, limit, std::memory_order_acq_rel);
  }

 private:
  IsolateHolder* const holder_;
  const bool reused_;
  std::vector<std::function<void()>>* const after_release_;
  bool discarded_ = false;
  std::atomic<int> exceeded_{kNoLimit};          // written by the watchdog or the heap callback
  std::atomic<int64_t> deadline_ns_{INT64_MAX};  // StopAt's, read by the watchdog
  Mutex abandon_mu_;  // the item's thread sets the callback, the watchdog takes it
  std::function<void(const std::string&)> on_abandon_ ABSL_GUARDED_BY(abandon_mu_);
};

// Runs on the worker thread, inside a GC, with the request still running.
size_t NearHeapLimit(void* data, size_t current_limit, size_t /*initial_limit*/) {
  auto* holder = static_cast<IsolateHolder*>(data);
  if (!holder->heap_exceeded) {
    holder->heap_exceeded = true;  // dispose of the isolate after this item
    if (holder->current != nullptr && holder->current->Mark(kHeapLimit)) {
      holder->terminated_heap->fetch_add(1, std::memory_order_relaxed);
    }
  }
  holder->isolate->TerminateExecution();
  v8::HeapStatistics heap;
  holder->isolate->GetHeapStatistics(&heap);
  const size_t in_use = std::max({current_limit, heap.total_heap_size(), heap.used_heap_size()});
  const size_t ceiling = holder->heap_limit + kHeapGrantCeiling;
  if (in_use >= ceiling) return current_limit;  // nothing more to give
  return std::min(in_use + kHeapGrant, ceiling);
}

using Pool = internal::IsolatePool<IsolateScheduler::Work, IsolateHolder>;

class IsolateSchedulerImpl final : public IsolateScheduler {
 public:
  IsolateSchedulerImpl(const IsolateSchedulerOptions& options, int workers, int max_isolates,
                       size_t memory_budget, int max_in_flight, int max_running)
      : limits_(options.limits ? options.limits : std::make_shared<const LimitEnforcer>()),
        watchdog_interval_(options.watchdog_interval),
        abandon_grace_ns_(absl::ToInt64Nanoseconds(options.abandon_grace)),
        idle_trim_bytes_(options.idle_trim_bytes),
        spare_target_(std::max(0, options.spare_isolates)),
        max_abandoned_(options.max_abandoned > 0 ? options.max_abandoned : 4 * workers),
        customizer_(options.customizer ? options.customizer
                                       : std::make_shared<const IsolateCustomizer>()),
        pump_platform_(internal::V8DefaultPlatform()),
        pool_({.max_isolates = max_isolates,
               .queue_capacity = options.queue_capacity,
               .max_in_flight_per_tenant = max_in_flight,
               .max_running_per_tenant = max_running,
               .memory_budget_bytes = memory_budget,
               .new_isolate_bytes = kNewIsolateBytes,
               .own_isolate_patience = options.own_isolate_patience}) {
    {
      MutexLock lock(&wd_mu_);
      running_.resize(workers);
      for (int i = 0; i < workers; ++i) {
        threads_.emplace_back([this, i] { WorkerMain(i); });
      }
    }
    watchdog_ = std::thread([this] { WatchdogMain(); });
  }

  ~IsolateSchedulerImpl() override {
    pool_.Shutdown();  // workers drain the queue, then return
    std::vector<std::thread> threads;
    {
      MutexLock lock(&wd_mu_);
      no_more_threads_ = true;  // the watchdog replaces no more workers
      threads = std::move(threads_);
      // Nothing is left to protect from the abandoned threads: back to normal
      // priority, or a loaded machine starves their builtins (and this wait)
      // for minutes. Best effort: without CAP_SYS_NICE raising it fails.
      for (const Running& r : running_) {
        if (r.active && r.abandoned) setpriority(PRIO_PROCESS, static_cast<id_t>(r.tid), 0);
      }
    }
    // Abandoned workers are among them: this waits for their builtins too.
    for (auto& t : threads) t.join();
    {
      MutexLock lock(&wd_mu_);
      stop_ = true;
      wd_cv_.SignalAll();
    }
    watchdog_.join();
    for (auto& holder : pool_.TakeIdle()) DisposeIsolate(std::move(holder));
    MutexLock lock(&spare_mu_);
    for (auto& holder : spares_) DisposeIsolate(std::move(holder));
  }

  absl::Status Submit(std::string tenant, Work work) override {
    return SubmitUnlessGivenUp(std::move(tenant), std::move(work), nullptr);
  }

  // (A null `given_up`: never given up.)
  absl::Status SubmitUnlessGivenUp(std::string tenant, Work work,
                                   std::function<bool()> given_up) override {
    if (!work) return absl::InvalidArgumentError("IsolateScheduler::Submit: empty work item");
    return pool_.Submit(std::move(tenant), std::move(work), std::move(given_up));
  }

  absl::Status SubmitAhead(std::string tenant, Work work) override {
    if (!work) return absl::InvalidArgumentError("IsolateScheduler::SubmitAhead: empty work item");
    return pool_.SubmitAhead(std::move(tenant), std::move(work));
  }

  int InFlight(const std::string& tenant) const override { return pool_.InFlight(tenant); }

  int DisposeIdleIsolatesOf(const std::string& tenant) override {
    std::vector<std::unique_ptr<IsolateHolder>> idle = pool_.TakeIdleOf(tenant);
    for (auto& holder : idle) DisposeIsolate(std::move(holder));
    return static_cast<int>(idle.size());
  }

  IsolateSchedulerStats stats() const override {
    internal::IsolatePoolStats p = pool_.stats();
    return IsolateSchedulerStats{
        .isolates_created = p.created,
        .isolates_reused = p.reused,
        .isolates_disposed = p.disposed,
        .rejected = p.rejected_queue_full + p.rejected_tenant_cap,
        .queue_length = p.queue_length,
        .isolates_evicted = p.evicted,
        .waited_for_own_isolate = p.waited_for_own,
        .waited_for_tenant_cap = p.waited_for_tenant_cap,
        .rejected_queue_full = p.rejected_queue_full,
        .rejected_tenant_cap = p.rejected_tenant_cap,
        .given_up = p.given_up,
        .terminated_cpu = terminated_cpu_.load(std::memory_order_relaxed),
        .terminated_wall = terminated_wall_.load(std::memory_order_relaxed),
        .terminated_deadline = terminated_deadline_.load(std::memory_order_relaxed),
        .terminated_heap = terminated_heap_.load(std::memory_order_relaxed),
        .abandoned = abandoned_total_.load(std::memory_order_relaxed),
        .live_isolates = p.live_isolates,
        .busy_isolates = p.busy_isolates,
        .isolate_bytes = p.isolate_bytes,
        .isolates_evicted_for_memory = p.evicted_for_memory,
        .spare_isolates_used = spares_used_.load(std::memory_order_relaxed),
        .isolates_disposed_retaining = retained_too_much_.load(std::memory_order_relaxed),
        .in_flight = std::move(p.in_flight),
    };
  }

 private:
  // A worker's request as the watchdog sees it.
  struct Running {
    bool active = false;
    clockid_t clock{};
    int64_t cpu_start = 0;
    int64_t cpu_limit = 0;
    int64_t wall_start = 0;
    int64_t wall_limit = 0;
    int64_t terminated_at = 0;  // when the watchdog first stopped it; 0: not yet
    int64_t cpu_at_stop = 0;    // its thread's CPU time then
    pid_t tid = 0;              // the worker thread's, for setpriority
    bool abandoned = false;     // given up on: its thread leaves once the item returns
    v8::Isolate* isolate = nullptr;
    LeaseImpl* lease = nullptr;
  };

  void WorkerMain(int index) {
    const pid_t tid = static_cast<pid_t>(syscall(SYS_gettid));
    clockid_t clock{};
    if (pthread_getcpuclockid(pthread_self(), &clock) != 0) clock = CLOCK_THREAD_CPUTIME_ID;
    while (std::optional<Pool::Assignment> a = NextAssignment()) {
      if (a->evicted != nullptr) DisposeIsolate(std::move(a->evicted));
      if (a->isolate == nullptr) a->isolate = TakeSpareOrCreate(a->tenant, a->isolate_id);
      std::vector<std::function<void()>> after_release;
      const bool keep = RunOne(index, clock, tid, *a, &after_release);
      if (!keep) DisposeIsolate(std::move(a->isolate));
      a->request = nullptr;  // drop the work item's captures before the next
      size_t bytes = 0;
      bool retains_too_much = false;
      if (a->isolate != nullptr) {
        const IsolateMetrics m = MeasureIdle(*a->isolate, &retains_too_much);
        if (retains_too_much) {
          DisposeIsolate(std::move(a->isolate));
        } else {
          bytes = m.heap_bytes + m.array_buffer_bytes;
          customizer_->ReportIsolateMetrics(m);
        }
      }
      for (auto& evicted : pool_.Release(a->isolate_id, std::move(a->isolate), bytes)) {
        DisposeIsolate(std::move(evicted));
      }
      // (After Release, so that the stats never count it before isolates_disposed does.)
      if (retains_too_much) retained_too_much_.fetch_add(1, std::memory_order_relaxed);
      // Now the isolate is idle and the tenant's count dropped: wake waiters.
      for (std::function<void()>& fn : after_release) fn();
      MutexLock lock(&wd_mu_);
      if (running_[index].abandoned) {
        // A replacement took this worker's place: leave, freeing the slot.
        running_[index] = Running{};
        free_slots_.push_back(index);
        --abandoned_now_;
        return;
      }
    }
  }

  // The next request to serve; while there is none, makes spare isolates.
  std::optional<Pool::Assignment> NextAssignment() {
    for (;;) {
      if (std::optional<Pool::Assignment> a = pool_.TryAcquire()) return a;
      {
        MutexLock lock(&spare_mu_);
        if (static_cast<int>(spares_.size()) + spares_in_making_ >= spare_target_) break;
        ++spares_in_making_;
      }
      std::unique_ptr<IsolateHolder> spare = NewIsolate("", 0);
      MutexLock lock(&spare_mu_);
      --spares_in_making_;
      spares_.push_back(std::move(spare));
    }
    return pool_.Acquire();
  }

  // A spare isolate for `tenant`'s first request if its limits are the
  // defaults the spares were made with; else a new one.
  std::unique_ptr<IsolateHolder> TakeSpareOrCreate(const std::string& tenant, uint64_t id) {
    if (limits_->HeapLimitBytes(tenant) == limits_->HeapLimitBytes("") &&
        limits_->ArrayBufferLimitBytes(tenant) == limits_->ArrayBufferLimitBytes("")) {
      MutexLock lock(&spare_mu_);
      if (!spares_.empty()) {
        std::unique_ptr<IsolateHolder> holder = std::move(spares_.back());
        spares_.pop_back();
        holder->id = id;
        holder->tenant = tenant;
        spares_used_.fetch_add(1, std::memory_order_relaxed);
        return holder;
      }
    }
    return NewIsolate(tenant, id);
  }

  // What an isolate going idle takes: its heap (after a full GC if it grew
  // past idle_trim_bytes, or the external memory V8 was told of grew that
  // much since the last such GC: the garbage of its last requests, and the
  // ICU memory of their Intl objects, which the heap size does not show) and
  // its live ArrayBuffers. Sets *retains_too_much when, after that GC, more than half
  // its heap limit, or of its ArrayBuffer limit, is still live: no request runs now, so that is
  // memory its requests left where no later one frees it (e.g. private fields a request stamped on
  // a hardened context's frozen intrinsics); kept, it would stop the tenant's later requests at
  // their heap limit one after another.
  IsolateMetrics MeasureIdle(IsolateHolder& holder, bool* retains_too_much) {
    v8::Locker locker(holder.isolate);
    v8::Isolate::Scope isolate_scope(holder.isolate);
    v8::HeapStatistics heap;
    holder.isolate->GetHeapStatistics(&heap);
    *retains_too_much = false;
    // The external memory V8 was told of (HeapStatistics::external_memory() does not show it
    // in this V8; a change of 0 answers the total). It hardly ever shrinks: the runner never
    // takes back what it told V8.
    auto external = [&] {
      return static_cast<size_t>(
          std::max<int64_t>(0, holder.isolate->AdjustAmountOfExternalAllocatedMemory(0)));
    };
    const size_t external_now = external();
    holder.external_at_last_trim = std::min(holder.external_at_last_trim, external_now);
    // Half the heap limit (a customizer may have lowered it) and of the ArrayBuffer limit.
    const size_t heap_bound = std::min(holder.heap_limit, heap.heap_size_limit()) / 2;
    const size_t buffer_bound = holder.buffers->limit_bytes / 2;
    auto buffers = [&] { return holder.buffers->live_bytes.load(std::memory_order_relaxed); };
    if (heap.total_physical_size() > idle_trim_bytes_ || heap.used_heap_size() > heap_bound ||
        external_now - holder.external_at_last_trim > idle_trim_bytes_ ||
        buffers() > std::min(idle_trim_bytes_, buffer_bound)) {
      holder.isolate->LowMemoryNotification();
      holder.isolate->GetHeapStatistics(&heap);
      holder.external_at_last_trim = external();
      *retains_too_much = heap.used_heap_size() > heap_bound || buffers() > buffer_bound;
    }
    return IsolateMetrics{
        .tenant = &holder.tenant,
        .isolate_id = holder.id,
        .heap_bytes = heap.total_physical_size() + heap.malloced_memory(),
        .array_buffer_bytes = holder.buffers->live_bytes.load(std::memory_order_relaxed)};
  }

  // Runs the item; false when the isolate must be disposed of afterwards.
  bool RunOne(int index, clockid_t clock, pid_t tid, Pool::Assignment& a,
              std::vector<std::function<void()>>* after_release) {
    IsolateHolder& holder = *a.isolate;
    v8::Isolate* isolate = holder.isolate;
    LeaseImpl lease(&holder, a.reused, after_release);
    const int64_t cpu_limit = absl::ToInt64Nanoseconds(limits_->CpuLimit(a.tenant));
    const int64_t wall_limit = absl::ToInt64Nanoseconds(limits_->WallLimit(a.tenant));
    {
      v8::Locker locker(isolate);
      v8::Isolate::Scope isolate_scope(isolate);
      v8::HandleScope handle_scope(isolate);
      holder.termination_deferral.Reset();
      holder.current = &lease;
      customizer_->EnterJs(lease);
      const int64_t cpu_start = CpuNanos(clock);
      const int64_t wall_start = MonotonicNanos();
      {
        MutexLock lock(&wd_mu_);
        running_[index] = Running{.active = true,
                                  .clock = clock,
                                  .cpu_start = cpu_start,
                                  .cpu_limit = cpu_limit,
                                  .wall_start = wall_start,
                                  .wall_limit = wall_limit,
                                  .tid = tid,
                                  .isolate = isolate,
                                  .lease = &lease};
        ++active_;
        wd_cv_.SignalAll();
      }
      a.request(lease);
      // Tasks V8 posted for this isolate run now, still under the request's
      // limits (the runner's contexts refuse to run JavaScript after their
      // request, so these are V8's own: GC and compilation work).
      if (pump_platform_ != nullptr && !lease.limit_exceeded()) {
        while (v8::platform::PumpMessageLoop(pump_platform_, isolate)) {
        }
      }
      {
        MutexLock lock(&wd_mu_);
        running_[index].active = false;  // (abandoned stays set: WorkerMain reads it)
        --active_;
      }
      holder.current = nullptr;
      // From here on nobody terminates this isolate for this request; clear a
      // termination that was requested (possibly after the JS had returned).
      if (lease.limit_exceeded() || isolate->IsExecutionTerminating()) {
        isolate->CancelTerminateExecution();
      }
      customizer_->ExitJs(lease, RequestUsage{
                                     .cpu = absl::Nanoseconds(CpuNanos(clock) - cpu_start),
                                     .wall = absl::Nanoseconds(MonotonicNanos() - wall_start),
                                     .exceeded_limit = lease.exceeded_limit(),
                                 });
    }
    // A stopped request's isolate is not reused: it may hold the request's
    // half-run work and garbage, or a heap granted far past its limit.
    return !lease.discarded() && !holder.heap_exceeded && !lease.limit_exceeded();
  }

  std::unique_ptr<IsolateHolder> NewIsolate(const std::string& tenant, uint64_t id) {
    auto holder = std::make_unique<IsolateHolder>();
    holder->id = id;
    holder->tenant = tenant;
    holder->terminated_heap = &terminated_heap_;
    holder->heap_limit = limits_->HeapLimitBytes(tenant);
    holder->buffers =
        std::make_shared<internal::ArrayBufferBudget>(limits_->ArrayBufferLimitBytes(tenant));
    v8::Isolate::CreateParams params;
    params.array_buffer_allocator_shared =
        internal::NewCountingArrayBufferAllocator(holder->buffers);
    params.constraints.ConfigureDefaultsFromHeapSize(0, holder->heap_limit);
    // A young generation of 16 MiB, not the 3 MiB a 64 MiB heap gets by default (the old
    // generation keeps its limit): with small semispaces a builtin that fills a large array
    // with new objects (a for-in listing a long string's indices) scavenged every ~1 MiB and
    // rescanned the array each time, so an abandoned thread ran for minutes (2^23 indices:
    // 51 s; now 13 s). It grows only as a request allocates (+0.05-0.3 MiB per live isolate
    // in BM_EngineQueryManyTenants).
    params.constraints.set_max_young_generation_size_in_bytes(
        std::max(params.constraints.max_young_generation_size_in_bytes(), kYoungGenerationBytes));
    customizer_->ConfigureCreateParams(tenant, &params);
    holder->isolate = v8::Isolate::New(params);
    holder->isolate->AddNearHeapLimitCallback(&NearHeapLimit, holder.get());
    internal::InstallTerminationDeferral(holder->isolate, &holder->termination_deferral);
    {
      v8::Locker locker(holder->isolate);
      v8::Isolate::Scope isolate_scope(holder->isolate);
      v8::HandleScope handle_scope(holder->isolate);
      customizer_->CustomizeIsolate(tenant, holder->isolate);
    }
    return holder;
  }

  // Destroys the IsolateData with the isolate locked and entered, then the isolate.
  void DisposeIsolate(std::unique_ptr<IsolateHolder> holder) {
    v8::Isolate* isolate = holder->isolate;
    {
      v8::Locker locker(isolate);
      v8::Isolate::Scope isolate_scope(isolate);
      v8::HandleScope handle_scope(isolate);
      holder->data.reset();
      if (pump_platform_ != nullptr) v8::platform::NotifyIsolateShutdown(pump_platform_, isolate);
    }
    isolate->Dispose();
  }

  void WatchdogMain() {
    MutexLock lock(&wd_mu_);
    while (!stop_) {
      if (active_ == 0) {
        wd_cv_.Wait([&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(wd_mu_) { return stop_ || active_ > 0; });
        continue;
      }
      wd_cv_.WaitWithTimeout(watchdog_interval_,
                             [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(wd_mu_) { return stop_; });
      const int64_t now = MonotonicNanos();
      for (size_t i = 0; i < running_.size(); ++i) {
        Running& r = running_[i];
        if (!r.active) continue;
        if (r.terminated_at != 0 && !r.abandoned && now - r.terminated_at > abandon_grace_ns_) {
          if (!StarvedSinceStopped(r, now)) {
            AbandonLocked(r);
            continue;
          }
          // Waiting for a CPU: stopped again below, as before the grace.
        }
        Limit hit = kNoLimit;
        if (CpuNanos(r.clock) - r.cpu_start > r.cpu_limit) {
          hit = kCpuLimit;
        } else if (now - r.wall_start > r.wall_limit) {
          hit = kWallLimit;
        } else if (now > r.lease->deadline_ns()) {
          hit = kDeadline;
        }
        if (hit == kNoLimit) continue;
        if (r.lease->Mark(hit)) {
          (hit == kCpuLimit   ? terminated_cpu_
           : hit == kDeadline ? terminated_deadline_
                              : terminated_wall_)
              .fetch_add(1, std::memory_order_relaxed);
        }
        // Again at every tick: a termination can be cancelled by the request's
        // own error handling before it returns (thread-safe; only this isolate). Not
        // while V8 cannot take it (a module's evaluation starting): then the next tick.
        if (!r.lease->TryTerminate()) continue;
        if (r.terminated_at == 0) {
          r.terminated_at = now;
          r.cpu_at_stop = CpuNanos(r.clock);
        }
      }
    }
  }

  // Whether the request stopped on `r` has not returned only because its thread got no CPU
  // (runnable, little CPU used since the stop), within kStarvedGraces graces of the stop. A
  // loaded host (load 6-10 on 2 cores) left about 1 request in 1,000-3,000 stopped at a limit
  // unscheduled past the grace: each was abandoned as stuck in a builtin, which it was not,
  // and cost a thread and an isolate. A thread stuck in a builtin runs (uses CPU); one
  // blocked in a host call sleeps: both are abandoned at the grace as before.
  bool StarvedSinceStopped(const Running& r, int64_t now) const {
    if (now - r.terminated_at > kStarvedGraces * abandon_grace_ns_) return false;
    if (CpuNanos(r.clock) - r.cpu_at_stop >= abandon_grace_ns_ / 4) return false;
    return ThreadIsRunnable(r.tid);
  }

  // The request on `r` was stopped abandon_grace ago and still runs: V8 is in
  // a builtin that never checks for termination. Its caller gets its error
  // now and a new thread takes its worker's place; the stuck thread finishes
  // the builtin (the termination lands as soon as it returns to JavaScript),
  // disposes of the isolate and leaves. At most max_abandoned_ threads are
  // abandoned at once; past that the request is simply waited for.
  void AbandonLocked(Running& r) ABSL_EXCLUSIVE_LOCKS_REQUIRED(wd_mu_) {
    if (abandoned_now_ >= max_abandoned_ || no_more_threads_) return;
    r.abandoned = true;
    ++abandoned_now_;
    // Its CPU goes to the others first (the thread ends once the builtin does).
    setpriority(PRIO_PROCESS, static_cast<id_t>(r.tid), 19);
    abandoned_total_.fetch_add(1, std::memory_order_relaxed);
    std::function<void(const std::string&)> notify = r.lease->TakeAbandonCallback();
    const std::string limit = r.lease->exceeded_limit();
    int slot;
    if (!free_slots_.empty()) {
      slot = free_slots_.back();
      free_slots_.pop_back();
    } else {
      slot = static_cast<int>(running_.size());
      running_.emplace_back();  // `r` may move: not used below
    }
    // The new worker first tells the caller (callbacks never run on the
    // watchdog: a slow one would delay every limit).
    threads_.emplace_back([this, slot, notify = std::move(notify), limit] {
      if (notify) notify(limit);
      WorkerMain(slot);
    });
  }

  const std::shared_ptr<const LimitEnforcer> limits_;
  const absl::Duration watchdog_interval_;
  const int64_t abandon_grace_ns_;
  const size_t idle_trim_bytes_;
  const int spare_target_;
  const int max_abandoned_;
  const std::shared_ptr<const IsolateCustomizer> customizer_;
  v8::Platform* const pump_platform_;  // non-null when it is libplatform's default
  std::atomic<uint64_t> terminated_cpu_{0};
  std::atomic<uint64_t> terminated_wall_{0};
  std::atomic<uint64_t> terminated_deadline_{0};
  std::atomic<uint64_t> abandoned_total_{0};
  std::atomic<uint64_t> spares_used_{0};
  std::atomic<uint64_t> terminated_heap_{0};
  std::atomic<uint64_t> retained_too_much_{0};  // idle isolates disposed of by MeasureIdle
  Pool pool_;

  Mutex spare_mu_;
  std::vector<std::unique_ptr<IsolateHolder>> spares_ ABSL_GUARDED_BY(spare_mu_);
  int spares_in_making_ ABSL_GUARDED_BY(spare_mu_) = 0;

  Mutex wd_mu_;
  CondVar wd_cv_{&wd_mu_};
  bool stop_ ABSL_GUARDED_BY(wd_mu_) = false;
  int active_ ABSL_GUARDED_BY(wd_mu_) = 0;
  std::vector<Running> running_ ABSL_GUARDED_BY(wd_mu_);  // one per worker thread
  std::vector<int> free_slots_ ABSL_GUARDED_BY(wd_mu_);   // of running_, left by abandoned threads
  std::vector<std::thread> threads_ ABSL_GUARDED_BY(wd_mu_);  // workers, abandoned ones included
  int abandoned_now_ ABSL_GUARDED_BY(wd_mu_) = 0;
  bool no_more_threads_ ABSL_GUARDED_BY(wd_mu_) = false;

  std::thread watchdog_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<IsolateScheduler>> IsolateScheduler::Create(
    const IsolateSchedulerOptions& options) {
  if (options.workers < 0 || options.max_isolates < 0 || options.max_in_flight_per_tenant < 0 ||
      options.max_running_per_tenant < 0 || options.max_abandoned < 0) {
    return absl::InvalidArgumentError("IsolateSchedulerOptions: counts must not be negative");
  }
  if (options.queue_capacity == 0) {
    return absl::InvalidArgumentError("IsolateSchedulerOptions: queue_capacity must be positive");
  }
  if (options.watchdog_interval <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        "IsolateSchedulerOptions: watchdog_interval must be positive");
  }
  if (options.abandon_grace < absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        "IsolateSchedulerOptions: abandon_grace must not be negative");
  }
  if (options.own_isolate_patience < absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        "IsolateSchedulerOptions: own_isolate_patience must not be negative");
  }
  if (absl::Status s = InitializeV8(); !s.ok()) return s;
  const int workers = options.workers > 0
                          ? options.workers
                          : std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
  const size_t memory_budget =
      options.isolate_memory_budget > 0 ? options.isolate_memory_budget : DefaultMemoryBudget();
  const int max_isolates =
      options.max_isolates > 0
          ? options.max_isolates
          : static_cast<int>(std::clamp<size_t>(memory_budget / (kNewIsolateBytes),
                                                static_cast<size_t>(4 * workers), 100'000));
  const int max_in_flight = options.max_in_flight_per_tenant > 0 ? options.max_in_flight_per_tenant
                                                                 : std::max(1, workers / 2);
  const int max_running = options.max_running_per_tenant > 0 ? options.max_running_per_tenant
                                                             : std::max(1, workers / 2);
  return std::unique_ptr<IsolateScheduler>(new IsolateSchedulerImpl(
      options, workers, max_isolates, memory_budget, max_in_flight, max_running));
}

}  // namespace txfn

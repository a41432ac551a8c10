// lib/queue/call_scheduler_internal.h — CallScheduler's private state and
// helpers, shared by its two sources: call_scheduler_config.cc (validation,
// creation, configuration, workers) and call_scheduler.cc (the loop).
#ifndef TXFN_LIB_QUEUE_CALL_SCHEDULER_INTERNAL_H_
#define TXFN_LIB_QUEUE_CALL_SCHEDULER_INTERNAL_H_

#include <algorithm>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "txfn/call_scheduler.h"
#include "txfn/internal/mutex.h"

namespace txfn {
namespace internal {

inline constexpr int kReserved = static_cast<int>(QuotaClass::kReserved);
inline constexpr int kOpportunistic = static_cast<int>(QuotaClass::kOpportunistic);

// The measured CPU per call averages about this many calls.
inline constexpr int kCostWindow = 1000;

inline double BucketBurst(double rate, absl::Duration burst) {
  return std::max(1.0, rate * absl::ToDoubleSeconds(burst));
}

// r0 * S, with an unlimited r0 and S = 0 meaning "none" (not NaN).
inline double OpportunisticRate(double r0, double share) { return share <= 0 ? 0 : r0 * share; }

// Heap order for a FuncBuffer: the "largest" is the next to run — higher
// criticality, then earlier deadline, then earlier start, then id.
template <typename H>
bool RunsLater(const H* a, const H* b) {
  const Call& x = a->call();
  const Call& y = b->call();
  if (x.criticality != y.criticality) return x.criticality < y.criticality;
  if (x.deadline != y.deadline) return x.deadline > y.deadline;
  if (x.start_after != y.start_after) return x.start_after > y.start_after;
  return x.id > y.id;
}

}  // namespace internal

struct CallScheduler::Held {
  LeasedCall leased;
  FunctionState* fs = nullptr;
  enum class Where : uint8_t { kBuffer, kRunQ, kRunning, kSettling } where = Where::kBuffer;
  bool lost = false;                  // its lease could not be extended: someone else may own it
  bool concurrency = false;           // holds a concurrency slot
  bool tenant_slot = false;           // counts against max_running_per_tenant
  std::vector<Downstream*> acquired;  // holds a slot of each
  int worker = -1;

  const Call& call() const { return leased.call; }
};

struct CallScheduler::Downstream {
  std::string name;
  AimdLimiter aimd;
  // When the next call released for this downstream's limit is due again:
  // released calls are paced at its rate (CallScheduler::PacedRelease).
  absl::Time next_release = absl::InfinitePast();
  int callers = 0;  // functions configured with this downstream
};

struct CallScheduler::FunctionState {
  std::string name;
  FunctionConfig config;
  int group = 0;
  std::vector<Held*> buffer[2];  // heaps (RunsLater), by quota class
  TokenBucket reserved;
  TokenBucket opportunistic;
  ConcurrencyLimiter concurrency;
  std::vector<Downstream*> downstreams;
  double avg_cost_s = 0.01;
  int cost_samples = 1;  // in avg_cost_s, the initial cost included; capped at kCostWindow
  // Calls held with this state (Held::fs), and since when none is
  // (Options::forget_idle_functions; InfiniteFuture while some are).
  int64_t held = 0;
  absl::Time idle_since = absl::InfiniteFuture();
};

struct CallScheduler::WorkerSlot {
  std::string id;
  uint64_t hash = 0;
  std::shared_ptr<Worker> worker;
  int slots = 1;
  int in_flight = 0;
  int group = 0;
  bool removed = false;
};

struct CallScheduler::Group {
  std::string name;
  std::vector<int> workers;      // indexes into workers_ (live ones)
  std::vector<Held*> run_queue;  // a heap (RunsLater): the next to dispatch on top
};

// Where workers put outcomes; shared with their callbacks so that a callback
// after the scheduler is gone is harmless.
class CallScheduler::Sink {
 public:
  explicit Sink(std::function<void()> wakeup) : wakeup_(std::move(wakeup)) {}
  void Push(CallId id, CallOutcome outcome) {
    {
      internal::MutexLock lock(&mu_);
      items_.emplace_back(id, std::move(outcome));
    }
    if (wakeup_) wakeup_();
  }
  std::vector<std::pair<CallId, CallOutcome>> TakeAll() {
    internal::MutexLock lock(&mu_);
    std::vector<std::pair<CallId, CallOutcome>> out;
    out.swap(items_);
    return out;
  }

 private:
  const std::function<void()> wakeup_;
  internal::Mutex mu_;
  std::vector<std::pair<CallId, CallOutcome>> items_ ABSL_GUARDED_BY(mu_);
};

}  // namespace txfn

#endif  // TXFN_LIB_QUEUE_CALL_SCHEDULER_INTERNAL_H_

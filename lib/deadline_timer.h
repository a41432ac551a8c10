// lib/deadline_timer.h — runs callbacks at their deadlines on one thread of its own.
//
// For answering asynchronous callers at their deadlines (FunctionRunner::RunAsync: a request
// still queued for an isolate when its deadline comes) without a waiting thread per call. The
// thread starts at the first Schedule, so a timer nobody uses costs none.
//
//   txfn::internal::DeadlineTimer timer;
//   DeadlineTimer::Handle h = timer.Schedule(absl::Now() + absl::Seconds(1), [] { ... });
//   if (answered_first) timer.Cancel(h);  // it will not run (unless it already began)
//
// Thread safety: every method may be called from any thread. Callbacks run one at a time on
// the timer's thread, in deadline order (ties in the order scheduled), without the timer's
// lock held (they may Schedule and Cancel); they must be short, and must not destroy the
// timer. The destructor drops the callbacks not yet run (destroying them on its own thread)
// and waits for one that is running; it must not be called from a callback.
#ifndef TXFN_LIB_DEADLINE_TIMER_H_
#define TXFN_LIB_DEADLINE_TIMER_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <thread>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/container/btree_map.h"
#include "absl/time/time.h"
#include "txfn/internal/mutex.h"

namespace txfn::internal {

class DeadlineTimer {
 public:
  // What Cancel needs to find a callback.
  struct Handle {
    absl::Time at;
    uint64_t id = 0;
  };

  DeadlineTimer() = default;
  ~DeadlineTimer();
  DeadlineTimer(const DeadlineTimer&) = delete;
  DeadlineTimer& operator=(const DeadlineTimer&) = delete;

  // Runs `callback` at `at` (at once if `at` has passed; never if `at` is InfiniteFuture).
  [[nodiscard]] Handle Schedule(absl::Time at, std::function<void()> callback);
  // Drops the callback of `handle` unless it began (or ran, or was dropped) already; then
  // returns false. The dropped callback is destroyed on this thread.
  bool Cancel(const Handle& handle);
  // Callbacks scheduled and not yet begun.
  [[nodiscard]] size_t pending() const;

 private:
  using Key = std::pair<absl::Time, uint64_t>;
  void Loop();

  mutable Mutex mu_;
  CondVar cv_{&mu_};
  absl::btree_map<Key, std::function<void()>> due_ ABSL_GUARDED_BY(mu_);
  uint64_t next_id_ ABSL_GUARDED_BY(mu_) = 1;
  // Bumped when the earliest deadline moves earlier: the waiting thread looks again.
  uint64_t earlier_ ABSL_GUARDED_BY(mu_) = 0;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_ ABSL_GUARDED_BY(mu_);  // started by the first Schedule
};

}  // namespace txfn::internal

#endif  // TXFN_LIB_DEADLINE_TIMER_H_

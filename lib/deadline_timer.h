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
// lock held (they may Schedule and Cancel); a slow one delays the others. The destructor drops
// the callbacks not yet run (destroying them on its own thread) and waits for one that is
// running, unless it runs on the timer's thread (a callback dropped the timer's last owner):
// then the thread finishes that callback and ends on its own.
#ifndef TXFN_LIB_DEADLINE_TIMER_H_
#define TXFN_LIB_DEADLINE_TIMER_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
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

  DeadlineTimer();
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
  // What the thread uses: shared with it, so that it may outlive the timer (see above).
  struct State {
    using Key = std::pair<absl::Time, uint64_t>;
    mutable Mutex mu;
    CondVar cv{&mu};
    absl::btree_map<Key, std::function<void()>> due ABSL_GUARDED_BY(mu);
    uint64_t next_id ABSL_GUARDED_BY(mu) = 1;
    // Bumped when the earliest deadline moves earlier: the waiting thread looks again.
    uint64_t earlier ABSL_GUARDED_BY(mu) = 0;
    bool stop ABSL_GUARDED_BY(mu) = false;
  };
  static void Loop(const std::shared_ptr<State>& state);

  const std::shared_ptr<State> state_;
  Mutex thread_mu_;
  std::thread thread_ ABSL_GUARDED_BY(thread_mu_);  // started by the first Schedule
};

}  // namespace txfn::internal

#endif  // TXFN_LIB_DEADLINE_TIMER_H_

// A virtual-time harness for CallScheduler tests: fake workers whose calls
// take virtual time, and a loop that advances the clock, completes calls and
// ticks the scheduler.
#ifndef TXFN_TESTS_QUEUE_SCHEDULER_TEST_UTIL_H_
#define TXFN_TESTS_QUEUE_SCHEDULER_TEST_UTIL_H_

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "txfn/call_scheduler.h"
#include "txfn/clock.h"

namespace txfn::queue_test {

// A worker whose calls take `duration(call)` of virtual time and end with
// `outcome(call)`. Not thread-safe: used from the test's loop only.
class FakeWorker final : public Worker {
 public:
  struct Started {
    Call call;
    absl::Time at;
  };
  FakeWorker(const Clock* clock, std::function<absl::Duration(const Call&)> duration,
             std::function<CallOutcome(const Call&)> outcome)
      : clock_(clock), duration_(std::move(duration)), outcome_(std::move(outcome)) {}

  void Run(const Call& call, Done done) override {
    const absl::Time now = clock_->Now();
    started_.push_back({call, now});
    running_.push_back({call, now + duration_(call), std::move(done)});
    max_running_ = std::max(max_running_, running_.size());
  }
  // Finishes the calls whose time is up.
  void CompleteDue() {
    const absl::Time now = clock_->Now();
    std::vector<Running> still;
    std::vector<Running> due;
    for (Running& r : running_) (r.end <= now ? due : still).push_back(std::move(r));
    running_ = std::move(still);
    for (Running& r : due) std::move(r.done)(outcome_(r.call));
  }
  const std::vector<Started>& started() const { return started_; }
  size_t running() const { return running_.size(); }
  size_t max_running() const { return max_running_; }

 private:
  struct Running {
    Call call;
    absl::Time end;
    Done done;
  };
  const Clock* clock_;
  std::function<absl::Duration(const Call&)> duration_;
  std::function<CallOutcome(const Call&)> outcome_;
  std::vector<Running> running_;
  std::vector<Started> started_;
  size_t max_running_ = 0;
};

// Advances `clock` by `step` until `until`, completing workers' calls and
// ticking the scheduler at every step; `each_step` runs after each tick.
inline void RunUntil(VirtualClock& clock, CallScheduler& scheduler,
                     const std::vector<std::shared_ptr<FakeWorker>>& workers, absl::Time until,
                     absl::Duration step, const std::function<void()>& each_step = nullptr) {
  while (clock.Now() < until) {
    clock.Advance(step);
    for (const auto& w : workers) w->CompleteDue();
    scheduler.Tick();
    if (each_step) each_step();
  }
}

}  // namespace txfn::queue_test

#endif  // TXFN_TESTS_QUEUE_SCHEDULER_TEST_UTIL_H_

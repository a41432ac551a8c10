// txfn/clock.h — the injected source of time for the queue side.
//
// Every part of the queue side (DurableQueue adapters take `now` as an
// argument; Submitter, CallScheduler and the limiters are given a Clock) reads
// time only through this interface and never sleeps: a host drives them with
// RealClock and a thread that calls their Tick(), a test or the simulator with
// a VirtualClock that it advances itself, so a run is repeatable.
//
//   txfn::VirtualClock clock(absl::FromUnixSeconds(1'700'000'000));
//   TXFN_ASSIGN_OR_RETURN(std::unique_ptr<txfn::Submitter> submitter,
//                         txfn::Submitter::Create(queue, blobs, &clock, {}));
//   clock.Advance(absl::Milliseconds(5));   // time moves only when told to
//   submitter->Tick();                      // flushes batches older than 5 ms
//
// Thread safety: Now() may be called from any thread on either clock;
// VirtualClock::Advance/Set may race with Now() (readers see the old or the
// new time). A Clock must outlive every component it was given to.
#ifndef TXFN_CLOCK_H_
#define TXFN_CLOCK_H_

#include <atomic>
#include <cstdint>

#include "absl/time/time.h"

namespace txfn {

class Clock {
 public:
  virtual ~Clock() = default;
  // The current time. Need not be monotonic for RealClock (it is the system's
  // wall clock); components treat a step backwards as "no time passed".
  [[nodiscard]] virtual absl::Time Now() const = 0;
};

// The system clock (absl::Now()). Stateless; one may be shared by everything.
class RealClock final : public Clock {
 public:
  [[nodiscard]] absl::Time Now() const override { return absl::Now(); }
  // A process-wide instance, for hosts that have no clock of their own. It has
  // no state, so sharing it is not shared mutable state.
  static const RealClock& Get() {
    static const RealClock clock;
    return clock;
  }
};

// A clock that moves only when told to, with nanosecond resolution. Starts at
// `start` (default: the Unix epoch plus one day, so that "now minus a
// duration" never underflows in tests).
class VirtualClock final : public Clock {
 public:
  explicit VirtualClock(absl::Time start = absl::UnixEpoch() + absl::Hours(24))
      : nanos_(absl::ToUnixNanos(start)) {}
  VirtualClock(const VirtualClock&) = delete;
  VirtualClock& operator=(const VirtualClock&) = delete;

  [[nodiscard]] absl::Time Now() const override {
    return absl::FromUnixNanos(nanos_.load(std::memory_order_acquire));
  }
  // Moves the clock forward by `d` (a negative `d` is ignored: time never goes back).
  void Advance(absl::Duration d) {
    if (d > absl::ZeroDuration()) {
      nanos_.fetch_add(absl::ToInt64Nanoseconds(d), std::memory_order_acq_rel);
    }
  }
  // Sets the clock to `t` if `t` is later than now; otherwise leaves it.
  void AdvanceTo(absl::Time t) {
    const int64_t target = absl::ToUnixNanos(t);
    int64_t cur = nanos_.load(std::memory_order_acquire);
    while (cur < target && !nanos_.compare_exchange_weak(cur, target, std::memory_order_acq_rel)) {
    }
  }

 private:
  std::atomic<int64_t> nanos_;
};

// For a periodic task that runs once `now` reaches `next` and then sets `next = now +
// interval`: `next`, pulled back after the clock stepped back so that it is never more than
// `interval` after `now`. A wall clock stepped back by X (NTP, an operator) then delays the
// task by at most one interval, as if no time had passed, instead of by X.
[[nodiscard]] inline absl::Time ClampNextRun(absl::Time next, absl::Time now,
                                             absl::Duration interval) {
  return next - now > interval ? now + interval : next;
}

// A task run every `interval` on a clock that may step, with ClampNextRun's rule in one place:
// once a run is due it is next due `interval` after it ran; a clock set back delays it by at
// most one interval. Each loop of the queue side, the engine and RemoteRunner keeps its
// periodic work (polls, lease extensions, sweeps, pings) in one:
//
//   txfn::PeriodicTimer sweep(clock.Now() + absl::Seconds(1), absl::Seconds(1));
//   while (...) {
//     if (sweep.Due(clock.Now())) Sweep();
//     WaitUntil(sweep.NextRun(clock.Now()));
//   }
//
// Not thread-safe: one owner, or used under the owner's lock.
class PeriodicTimer {
 public:
  // The first run is due at `first`, then every `interval` (> 0).
  PeriodicTimer(absl::Time first, absl::Duration interval) : next_(first), interval_(interval) {}

  // Whether a run is due at `now`; if so, the next is due at `now + interval`.
  [[nodiscard]] bool Due(absl::Time now) {
    next_ = NextRun(now);
    if (now < next_) return false;
    next_ = now + interval_;
    return true;
  }
  // When the next run is due, seen at `now`: never more than one interval after it. (It keeps
  // what it answers: the interval after a step back counts from the first look after it.)
  [[nodiscard]] absl::Time NextRun(absl::Time now) {
    next_ = ClampNextRun(next_, now, interval_);
    return next_;
  }
  // The next run `interval` after `now`, and every `interval` from then on.
  void Reschedule(absl::Time now, absl::Duration interval) {
    interval_ = interval;
    next_ = now + interval;
  }
  // The next Due() answers true, whatever the time.
  void RunNow() { next_ = absl::InfinitePast(); }
  [[nodiscard]] absl::Duration interval() const { return interval_; }

 private:
  absl::Time next_;
  absl::Duration interval_;
};

}  // namespace txfn

#endif  // TXFN_CLOCK_H_

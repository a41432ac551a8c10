// lib/v8/termination_deferral.h — keeps the watchdog's TerminateExecution out of the
// moment V8 cannot take it.
//
// V8 10.2 aborts the whole process ("Check failed: module->status() == kErrored" in
// SourceTextModule::Evaluate) when a termination is handled as Module::Evaluate starts,
// before the module it evaluates is marked as evaluating: a caller's deadline or a limit
// landing there (a helper's history check hit it in 2 of 3 runs of 20,000 calls whose
// deadlines fell while modules evaluated). So the runner defers termination from just
// before Module::Evaluate until its first callback into txfn (the `txfn/server` module's
// evaluation, which V8 runs only once the root module is marked), and the watchdog holds
// back TerminateExecution while a deferral is on, for at most kMaxTerminationDeferral:
// a module graph that never reaches that callback (no import of `txfn/server`, or one
// already evaluated in the context) is stopped that much later, never not at all.
//
//   if (!DeferralOf(isolate)->Defer()) return stopped;  // the runner, before Module::Evaluate
//   DeferralOf(isolate)->Allow();            // in the first callback, and after Evaluate
//   deferral.TryTerminate(isolate, now);     // the watchdog, instead of TerminateExecution
//
// Thread safety: the deferral is an atomic; the runner sets it on the isolate's thread,
// the watchdog reads it from its own.
#ifndef TXFN_LIB_V8_TERMINATION_DEFERRAL_H_
#define TXFN_LIB_V8_TERMINATION_DEFERRAL_H_

#include <atomic>
#include <chrono>
#include <cstdint>

#include "v8-isolate.h"

namespace txfn::internal {

inline constexpr int64_t kMaxTerminationDeferralNanos = 50'000'000;  // 50 ms

inline int64_t DeferralClockNanos() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// One per isolate (the scheduler's), under the isolate's last data slot.
class TerminationDeferral {
 public:
  // The scheduler, as a request starts on the isolate.
  void Reset() {
    since_.store(0);
    terminated_.store(false);
  }

  // The runner, on the isolate's thread: holds back terminations from now on. False if
  // one was already sent in this request (the runner must then not start what it deferred
  // for: a termination may be pending).
  [[nodiscard]] bool Defer() {
    const int64_t now = DeferralClockNanos();
    int64_t seen = since_.load();
    // Waits only while the watchdog is between its check and TerminateExecution; a deferral
    // already on is restarted.
    while (seen == kTerminating || !since_.compare_exchange_weak(seen, now)) {
      if (seen == kTerminating) seen = since_.load();
    }
    return !terminated_.load();
  }
  void Allow() { since_.store(0); }

  // The watchdog: terminates `isolate` unless a deferral is on (for less than
  // kMaxTerminationDeferralNanos). Its check and TerminateExecution are one step as the
  // runner sees them: Defer waits while the watchdog is between them.
  bool TryTerminate(v8::Isolate* isolate, int64_t now) {
    int64_t expected = 0;
    if (since_.compare_exchange_strong(expected, kTerminating)) {
      terminated_.store(true);
      isolate->TerminateExecution();
      since_.store(0);
      return true;
    }
    if (now - expected < kMaxTerminationDeferralNanos) return false;
    terminated_.store(true);  // deferred too long: a graph that never calls back
    isolate->TerminateExecution();
    return true;
  }

 private:
  static constexpr int64_t kTerminating = -1;
  std::atomic<int64_t> since_{0};  // when the deferral began; 0: none; kTerminating
  std::atomic<bool> terminated_{false};
};

inline uint32_t TerminationDeferralSlot() { return v8::Isolate::GetNumberOfDataSlots() - 1; }

// Installs `deferral` on `isolate` (the scheduler, as it creates the isolate).
inline void InstallTerminationDeferral(v8::Isolate* isolate, TerminationDeferral* deferral) {
  isolate->SetData(TerminationDeferralSlot(), deferral);
}

// The isolate's deferral, or null (an isolate the scheduler did not make).
inline TerminationDeferral* DeferralOf(v8::Isolate* isolate) {
  return static_cast<TerminationDeferral*>(isolate->GetData(TerminationDeferralSlot()));
}

}  // namespace txfn::internal

#endif  // TXFN_LIB_V8_TERMINATION_DEFERRAL_H_

// PendingCallsCap: how many calls each tenant has waiting in a DurableQueue, and their bytes,
// estimated cheaply enough to be asked before every call a tenant adds, so that one tenant (a
// mutation that schedules itself twice, with big arguments) cannot grow the queue without end.
// The engine's QueuedCallOptions::max_pending_calls_per_tenant and max_pending_bytes_per_tenant.
//
// The estimate of a tenant is the last recount of the queue (DurableQueue::TenantDepths) plus
// the calls (and bytes) this process added since. Calls that ended since are not subtracted, so it
// errs high, never low (for this process's calls), until the next recount. Admit refuses only on a
// recount: a call that the estimate puts past the cap starts one, if the last is older than the
// recount interval, and is refused only if the fresh count is still past the cap. The interval
// is ten times as long as the last recount took, within [1 s, 1 min], so that a tenant pressing
// on its cap keeps the queue counting at most a tenth of the time. The first Admit counts (the
// queue may hold an earlier process's calls), and the Admits beside it wait for that count
// (admitted meanwhile, a tenant at its cap went past it by ~5,000 calls at each restart). While
// counts fail (the queue is down, or an adapter cannot count: Unimplemented), Admit admits: the cap
// is enforced on counts only. Calls other processes add are seen at the next recount, and calls
// announced (Added) before a recount but enqueued after it are missed by it until the one after.
//
//   txfn::internal::PendingCallsCap cap(queue, clock, {.calls = 1'000'000, .bytes = 1 << 30});
//   TXFN_RETURN_IF_ERROR(cap.Admit("shop", {.calls = n, .bytes = b}));  // ResourceExhausted
//   ... enqueue the calls ...
//   cap.Added("shop", {.calls = n, .bytes = b});
//
// Thread safety: thread-safe. The queue and the clock must outlive it.
#ifndef TXFN_LIB_QUEUE_PENDING_CALLS_CAP_H_
#define TXFN_LIB_QUEUE_PENDING_CALLS_CAP_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/time/time.h"
#include "txfn/clock.h"
#include "txfn/durable_queue.h"
#include "txfn/internal/mutex.h"

namespace txfn::internal {

// Whether `status` is a PendingCallsCap refusal (Admit's ResourceExhausted), as it is or
// with context added (Prefixed keeps payloads).
[[nodiscard]] bool IsPendingCapRefusal(const absl::Status& status);

class PendingCallsCap {
 public:
  // Calls and their bytes (about their encoded size, TenantDepth::bytes).
  struct Load {
    uint64_t calls = 0;
    uint64_t bytes = 0;
  };
  // A limit 0: that one is not capped. Both 0: Admit always answers OK and never reads the
  // queue.
  PendingCallsCap(DurableQueue& queue, const Clock& clock, Load cap);
  PendingCallsCap(const PendingCallsCap&) = delete;
  PendingCallsCap& operator=(const PendingCallsCap&) = delete;

  // OK if `tenant` may add `more`; ResourceExhausted naming the tenant, what it has and the cap
  // it would pass if a recount (now or within the interval) found it past a cap with them.
  // Reads the queue (a recount) at most once per interval, on the calling thread.
  [[nodiscard]] absl::Status Admit(std::string_view tenant, Load more);
  // `added` of `tenant` went into the queue.
  void Added(std::string_view tenant, Load added);

  [[nodiscard]] uint64_t recounts() const;
  [[nodiscard]] uint64_t refused() const;

 private:
  bool Fits(Load have, Load more) const;
  Load Estimate(std::string_view tenant) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // OK if the last count failed (or none was made yet) or `more` fits the estimate; else
  // Refuse.
  absl::Status Decide(std::string_view tenant, Load more) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status Refuse(std::string_view tenant, Load more, Load have)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status RefusalOf(std::string_view tenant, Load more, Load have) const;

  DurableQueue& queue_;
  const Clock& clock_;
  const Load cap_;

  mutable Mutex mu_;
  absl::flat_hash_map<std::string, Load> estimate_ ABSL_GUARDED_BY(mu_);
  bool counted_ ABSL_GUARDED_BY(mu_) = false;       // the last count succeeded
  bool counted_once_ ABSL_GUARDED_BY(mu_) = false;  // a count ever succeeded
  // While a recount runs: the calls added meanwhile, which it may not have seen.
  bool recounting_ ABSL_GUARDED_BY(mu_) = false;
  CondVar recounted_{&mu_};  // signalled as a recount ends
  absl::flat_hash_map<std::string, Load> added_while_recounting_ ABSL_GUARDED_BY(mu_);
  PeriodicTimer recount_ ABSL_GUARDED_BY(mu_){absl::InfinitePast(), absl::Seconds(1)};
  uint64_t recounts_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t refused_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace txfn::internal

#endif  // TXFN_LIB_QUEUE_PENDING_CALLS_CAP_H_

// PendingCallsCap: how many calls each tenant has waiting in a DurableQueue, estimated cheaply
// enough to be asked before every call a tenant adds, so that one tenant (a mutation that
// schedules itself twice) cannot grow the queue without end. The engine's
// QueuedCallOptions::max_pending_calls_per_tenant.
//
// The estimate of a tenant is the last recount of the queue (DurableQueue::TenantDepths) plus
// the calls this process added since. Calls that ended since are not subtracted, so it errs
// high, never low (for this process's calls), until the next recount. Admit refuses only on a
// recount: a call that the estimate puts past the cap starts one, if the last is older than the
// recount interval, and is refused only if the fresh count is still past the cap. The interval
// is ten times as long as the last recount took, within [1 s, 1 min], so that a tenant pressing
// on its cap keeps the queue counting at most a tenth of the time. The first Admit counts (the
// queue may hold an earlier process's calls). While counts fail (the queue is down, or an
// adapter cannot count: Unimplemented), Admit admits: the cap is enforced on counts only. Calls
// other processes add are seen at the next recount, and calls announced (Added) before a recount
// but enqueued after it are missed by it until the one after.
//
//   txfn::internal::PendingCallsCap cap(queue, clock, 1'000'000);
//   TXFN_RETURN_IF_ERROR(cap.Admit("shop", calls.size()));   // ResourceExhausted past the cap
//   ... enqueue the calls ...
//   cap.Added("shop", calls.size());
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

class PendingCallsCap {
 public:
  // `cap` 0: no cap (Admit always answers OK and never reads the queue).
  PendingCallsCap(DurableQueue& queue, const Clock& clock, size_t cap);
  PendingCallsCap(const PendingCallsCap&) = delete;
  PendingCallsCap& operator=(const PendingCallsCap&) = delete;

  // OK if `tenant` may add `n` more calls; ResourceExhausted naming the tenant, its calls and
  // the cap if a recount (now or within the interval) found it past the cap with them. Reads
  // the queue (a recount) at most once per interval, on the calling thread.
  [[nodiscard]] absl::Status Admit(std::string_view tenant, size_t n);
  // `n` calls of `tenant` were added to the queue.
  void Added(std::string_view tenant, size_t n);

  [[nodiscard]] uint64_t recounts() const;
  [[nodiscard]] uint64_t refused() const;

 private:
  size_t Estimate(std::string_view tenant) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // OK if the last count failed (or none was made yet) or `n` more fit the estimate; else
  // Refuse.
  absl::Status Decide(std::string_view tenant, size_t n) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status Refuse(std::string_view tenant, size_t n, size_t have)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  DurableQueue& queue_;
  const Clock& clock_;
  const size_t cap_;

  mutable Mutex mu_;
  absl::flat_hash_map<std::string, size_t> estimate_ ABSL_GUARDED_BY(mu_);
  bool counted_ ABSL_GUARDED_BY(mu_) = false;  // the last count succeeded
  // While a recount runs: the calls added meanwhile, which it may not have seen.
  bool recounting_ ABSL_GUARDED_BY(mu_) = false;
  absl::flat_hash_map<std::string, size_t> added_while_recounting_ ABSL_GUARDED_BY(mu_);
  PeriodicTimer recount_ ABSL_GUARDED_BY(mu_){absl::InfinitePast(), absl::Seconds(1)};
  uint64_t recounts_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t refused_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace txfn::internal

#endif  // TXFN_LIB_QUEUE_PENDING_CALLS_CAP_H_

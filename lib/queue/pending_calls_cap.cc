// PendingCallsCap; see pending_calls_cap.h.
#include "lib/queue/pending_calls_cap.h"

#include <algorithm>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "txfn/internal/strings.h"

namespace txfn::internal {
namespace {

// Whether `n` more calls keep `have` within `cap` (without overflowing).
bool Fits(size_t have, size_t n, size_t cap) { return have <= cap && n <= cap - have; }

}  // namespace

PendingCallsCap::PendingCallsCap(DurableQueue& queue, const Clock& clock, size_t cap)
    : queue_(queue), clock_(clock), cap_(cap) {}

absl::Status PendingCallsCap::Admit(std::string_view tenant, size_t n) {
  if (cap_ == 0) return absl::OkStatus();
  absl::Time start;
  {
    MutexLock lock(&mu_);
    // Until a count succeeded (the first call counts: the queue may hold an earlier
    // process's calls), Decide admits.
    if (counted_ && Fits(Estimate(tenant), n, cap_)) return absl::OkStatus();
    start = clock_.Now();
    if (recounting_ || !recount_.Due(start)) return Decide(tenant, n);
    recounting_ = true;
    ++recounts_;
  }
  absl::StatusOr<std::vector<TenantDepth>> counted = queue_.TenantDepths(start);
  MutexLock lock(&mu_);
  recounting_ = false;
  // Ten times as long as the count took, within [1 s, 1 min] (a clock stepped during the count
  // says little about how long it took).
  const absl::Time end = clock_.Now();
  recount_.Reschedule(end, std::clamp(10 * (end - start), absl::Seconds(1), absl::Minutes(1)));
  counted_ = counted.ok();
  if (counted_) {
    estimate_.clear();
    for (const TenantDepth& d : *counted) estimate_[d.tenant] = d.calls;
    for (const auto& [t, added] : added_while_recounting_) estimate_[t] += added;
  }
  added_while_recounting_.clear();
  return Decide(tenant, n);
}

size_t PendingCallsCap::Estimate(std::string_view tenant) const {
  auto it = estimate_.find(ToAbsl(tenant));
  return it == estimate_.end() ? size_t{0} : it->second;
}

absl::Status PendingCallsCap::Decide(std::string_view tenant, size_t n) {
  if (!counted_ || Fits(Estimate(tenant), n, cap_)) return absl::OkStatus();
  return Refuse(tenant, n, Estimate(tenant));
}

void PendingCallsCap::Added(std::string_view tenant, size_t n) {
  if (cap_ == 0 || n == 0) return;
  MutexLock lock(&mu_);
  estimate_[ToAbsl(tenant)] += n;
  if (recounting_) added_while_recounting_[ToAbsl(tenant)] += n;
}

absl::Status PendingCallsCap::Refuse(std::string_view tenant, size_t n, size_t have) {
  ++refused_;
  return absl::ResourceExhaustedError(
      StrCat("tenant ", tenant, " has ", have, " calls waiting in the queue and may have at most ",
             cap_, " (max_pending_calls_per_tenant): ", n, n == 1 ? " more is" : " more are",
             " refused until some have run or are cancelled"));
}

uint64_t PendingCallsCap::recounts() const {
  MutexLock lock(&mu_);
  return recounts_;
}

uint64_t PendingCallsCap::refused() const {
  MutexLock lock(&mu_);
  return refused_;
}

}  // namespace txfn::internal

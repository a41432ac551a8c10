// PendingCallsCap; see pending_calls_cap.h.
#include "lib/queue/pending_calls_cap.h"

#include <algorithm>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/cord.h"
#include "txfn/internal/strings.h"

namespace txfn::internal {
namespace {

// Whether `more` keeps `have` within `cap` (without overflowing); a cap 0 is no cap.
bool Within(uint64_t have, uint64_t more, uint64_t cap) {
  return cap == 0 || (have <= cap && more <= cap - have);
}

void Add(PendingCallsCap::Load& to, PendingCallsCap::Load more) {
  to.calls += more.calls;
  to.bytes += more.bytes;
}

constexpr std::string_view kRefusalPayload = "type.txfn.dev/txfn.PendingCapRefusal";

}  // namespace

bool IsPendingCapRefusal(const absl::Status& status) {
  return absl::IsResourceExhausted(status) &&
         status.GetPayload(ToAbsl(kRefusalPayload)).has_value();
}

PendingCallsCap::PendingCallsCap(DurableQueue& queue, const Clock& clock, Load cap)
    : queue_(queue), clock_(clock), cap_(cap) {}

bool PendingCallsCap::Fits(Load have, Load more) const {
  return Within(have.calls, more.calls, cap_.calls) && Within(have.bytes, more.bytes, cap_.bytes);
}

absl::Status PendingCallsCap::Admit(std::string_view tenant, Load more) {
  if (cap_.calls == 0 && cap_.bytes == 0) return absl::OkStatus();
  absl::Time start;
  {
    MutexLock lock(&mu_);
    // Until a count succeeded (the first call counts: the queue may hold an earlier
    // process's calls), Decide admits; so the callers beside the first count wait for it.
    if (!counted_once_) {
      recounted_.Wait([&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return !recounting_; });
    }
    if (counted_ && Fits(Estimate(tenant), more)) return absl::OkStatus();
    start = clock_.Now();
    if (recounting_ || !recount_.Due(start)) return Decide(tenant, more);
    recounting_ = true;
    ++recounts_;
  }
  absl::StatusOr<std::vector<TenantDepth>> counted = queue_.TenantDepths(start);
  MutexLock lock(&mu_);
  recounting_ = false;
  recounted_.SignalAll();
  // Ten times as long as the count took, within [1 s, 1 min] (a clock stepped during the count
  // says little about how long it took).
  const absl::Time end = clock_.Now();
  recount_.Reschedule(end, std::clamp(10 * (end - start), absl::Seconds(1), absl::Minutes(1)));
  counted_ = counted.ok();
  counted_once_ = counted_once_ || counted_;
  if (counted_) {
    estimate_.clear();
    for (const TenantDepth& d : *counted)
      estimate_[d.tenant] = {.calls = d.calls, .bytes = d.bytes};
    for (const auto& [t, added] : added_while_recounting_) Add(estimate_[t], added);
  }
  added_while_recounting_.clear();
  return Decide(tenant, more);
}

PendingCallsCap::Load PendingCallsCap::Estimate(std::string_view tenant) const {
  auto it = estimate_.find(ToAbsl(tenant));
  return it == estimate_.end() ? Load{} : it->second;
}

absl::Status PendingCallsCap::Decide(std::string_view tenant, Load more) {
  if (!counted_ || Fits(Estimate(tenant), more)) return absl::OkStatus();
  return Refuse(tenant, more, Estimate(tenant));
}

void PendingCallsCap::Added(std::string_view tenant, Load added) {
  if ((cap_.calls == 0 && cap_.bytes == 0) || added.calls == 0) return;
  MutexLock lock(&mu_);
  Add(estimate_[ToAbsl(tenant)], added);
  if (recounting_) Add(added_while_recounting_[ToAbsl(tenant)], added);
}

absl::Status PendingCallsCap::Refuse(std::string_view tenant, Load more, Load have) {
  ++refused_;
  absl::Status refusal = RefusalOf(tenant, more, have);
  refusal.SetPayload(ToAbsl(kRefusalPayload), absl::Cord("1"));
  return refusal;
}

absl::Status PendingCallsCap::RefusalOf(std::string_view tenant, Load more, Load have) const {
  const char* verb = more.calls == 1 ? " is" : " are";
  constexpr std::string_view kUntil = " refused until some have run or are cancelled";
  if (!Within(have.calls, more.calls, cap_.calls)) {
    return absl::ResourceExhaustedError(StrCat(
        "tenant ", tenant, " has ", have.calls, " calls waiting in the queue and may have at most ",
        cap_.calls, " (max_pending_calls_per_tenant): ", more.calls, " more", verb, kUntil));
  }
  return absl::ResourceExhaustedError(
      StrCat("tenant ", tenant, " has ", have.calls, " calls of ", have.bytes,
             " bytes waiting in the queue and may have at most ", cap_.bytes,
             " bytes (max_pending_bytes_per_tenant): ", more.calls, " more (", more.bytes,
             " bytes)", verb, kUntil));
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

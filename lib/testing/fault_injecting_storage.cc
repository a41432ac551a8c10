// FaultInjectingStorage: see txfn/testing/fault_injecting_storage.h.
#include "txfn/testing/fault_injecting_storage.h"

#include <algorithm>
#include <memory>
#include <utility>

#include "absl/time/clock.h"
#include "txfn/internal/strings.h"
#include "txfn/status_macros.h"

namespace txfn::testing {
namespace {

// The calls a storage in doubt about its durable state must refuse: those
// that report what is committed, or change it.
bool RefusedWhileInDoubt(StorageMethod method) {
  return method != StorageMethod::kGet && method != StorageMethod::kScan;
}

}  // namespace

std::string_view StorageMethodName(StorageMethod method) {
  switch (method) {
    case StorageMethod::kWrite:
      return "Write";
    case StorageMethod::kGet:
      return "Get";
    case StorageMethod::kScan:
      return "Scan";
    case StorageMethod::kReadLog:
      return "ReadLog";
    case StorageMethod::kMaxCommittedTimestamp:
      return "MaxCommittedTimestamp";
    case StorageMethod::kListTenants:
      return "ListTenants";
    case StorageMethod::kDeleteTenant:
      return "DeleteTenant";
    case StorageMethod::kApplyRetention:
      return "ApplyRetention";
    case StorageMethod::kDeleteTenantIfNewest:
      return "DeleteTenantIfNewest";
  }
  return "?";
}

FaultInjectingStorage::FaultInjectingStorage(std::shared_ptr<Storage> base, uint64_t seed)
    : StorageWrapper(std::move(base)), rng_(seed) {}

FaultInjectingStorage::FaultInjectingStorage(Storage* base, uint64_t seed)
    : StorageWrapper(base), rng_(seed) {}

absl::Status FaultInjectingStorage::DefaultAfterForwardingStatus() {
  return CommitOutcomeUnknownError(
      "injected fault after forwarding: the call took effect, its answer was lost");
}

void FaultInjectingStorage::FailNext(StorageMethod method, int64_t n, absl::Status status) {
  if (status.ok()) status = absl::InternalError("FailNext given an OK status");
  internal::MutexLock lock(&mu_);
  Fault& f = faults_[static_cast<size_t>(method)].before;
  f.next = std::max<int64_t>(n, 0);
  f.next_status = std::move(status);
}

void FaultInjectingStorage::FailWithProbability(StorageMethod method, double p,
                                                absl::Status status) {
  if (status.ok()) status = absl::InternalError("FailWithProbability given an OK status");
  internal::MutexLock lock(&mu_);
  Fault& f = faults_[static_cast<size_t>(method)].before;
  f.probability = std::clamp(p, 0.0, 1.0);
  f.probability_status = std::move(status);
}

void FaultInjectingStorage::FailNextAfterForwarding(StorageMethod method, int64_t n,
                                                    absl::Status status) {
  if (status.ok()) status = absl::InternalError("FailNextAfterForwarding given an OK status");
  internal::MutexLock lock(&mu_);
  Fault& f = faults_[static_cast<size_t>(method)].after;
  f.next = std::max<int64_t>(n, 0);
  f.next_status = std::move(status);
}

void FaultInjectingStorage::FailWithProbabilityAfterForwarding(StorageMethod method, double p,
                                                               absl::Status status) {
  if (status.ok()) {
    status = absl::InternalError("FailWithProbabilityAfterForwarding given an OK status");
  }
  internal::MutexLock lock(&mu_);
  Fault& f = faults_[static_cast<size_t>(method)].after;
  f.probability = std::clamp(p, 0.0, 1.0);
  f.probability_status = std::move(status);
}

void FaultInjectingStorage::FailSyncNext(int64_t n) {
  internal::MutexLock lock(&mu_);
  fail_sync_next_ = std::max<int64_t>(n, 0);
}

absl::Status FaultInjectingStorage::SimulateCrash(UnsyncedWrites unsynced) {
  std::vector<std::vector<CommitRecord>> batches;
  {
    internal::MutexLock lock(&mu_);
    batches.swap(unsynced_);
  }
  if (unsynced == UnsyncedWrites::kDrop) return absl::OkStatus();
  for (const std::vector<CommitRecord>& batch : batches) {
    TXFN_RETURN_IF_ERROR(target().Write(batch));
  }
  return absl::OkStatus();
}

size_t FaultInjectingStorage::unsynced_batches() const {
  internal::MutexLock lock(&mu_);
  return unsynced_.size();
}

void FaultInjectingStorage::SetDelay(StorageMethod method, absl::Duration delay) {
  internal::MutexLock lock(&mu_);
  faults_[static_cast<size_t>(method)].delay = std::max(delay, absl::ZeroDuration());
}

void FaultInjectingStorage::ClearFaults() {
  internal::MutexLock lock(&mu_);
  for (MethodFaults& f : faults_) {
    f.before = Fault{};
    f.after = Fault{};
    f.delay = absl::ZeroDuration();
  }
  fail_sync_next_ = 0;
}

int64_t FaultInjectingStorage::calls(StorageMethod method) const {
  internal::MutexLock lock(&mu_);
  return faults_[static_cast<size_t>(method)].calls;
}

int64_t FaultInjectingStorage::failures(StorageMethod method) const {
  internal::MutexLock lock(&mu_);
  return faults_[static_cast<size_t>(method)].failures;
}

void FaultInjectingStorage::ResetCounts() {
  internal::MutexLock lock(&mu_);
  for (MethodFaults& f : faults_) f.calls = f.failures = 0;
}

absl::Status FaultInjectingStorage::Draw(Fault& fault, MethodFaults& counts) {
  if (fault.next > 0) {
    --fault.next;
    ++counts.failures;
    return fault.next_status;
  }
  if (fault.probability > 0) {
    // 53 random bits -> [0, 1): the same on every standard library.
    double draw = static_cast<double>(rng_() >> 11) * 0x1.0p-53;
    if (draw < fault.probability) {
      ++counts.failures;
      return fault.probability_status;
    }
  }
  return absl::OkStatus();
}

absl::Status FaultInjectingStorage::Enter(StorageMethod method) {
  absl::Duration delay;
  {
    internal::MutexLock lock(&mu_);
    delay = faults_[static_cast<size_t>(method)].delay;
  }
  if (delay > absl::ZeroDuration()) absl::SleepFor(delay);

  internal::MutexLock lock(&mu_);
  MethodFaults& f = faults_[static_cast<size_t>(method)];
  ++f.calls;
  if (!unsynced_.empty() && RefusedWhileInDoubt(method)) {
    ++f.failures;
    return absl::UnavailableError(internal::StrCat(
        "FaultInjectingStorage: ", StorageMethodName(method), " refused: ", unsynced_.size(),
        " write(s) failed to sync and their outcome is unknown until SimulateCrash()"));
  }
  return Draw(f.before, f);
}

absl::Status FaultInjectingStorage::Exit(StorageMethod method) {
  internal::MutexLock lock(&mu_);
  MethodFaults& f = faults_[static_cast<size_t>(method)];
  return Draw(f.after, f);
}

template <typename Call>
auto FaultInjectingStorage::Forward(StorageMethod method, Call call) -> decltype(call()) {
  TXFN_RETURN_IF_ERROR(Enter(method));
  auto result = call();
  if (!result.ok()) return result;
  TXFN_RETURN_IF_ERROR(Exit(method));
  return result;
}

absl::Status FaultInjectingStorage::Write(absl::Span<const CommitRecord> commits) {
  TXFN_RETURN_IF_ERROR(Enter(StorageMethod::kWrite));
  {
    internal::MutexLock lock(&mu_);
    if (fail_sync_next_ > 0 && !commits.empty()) {
      // A batch the adapter would refuse is refused now, not at the crash.
      TXFN_RETURN_IF_ERROR(ValidateCommitBatch(commits).status());
      --fail_sync_next_;
      ++faults_[static_cast<size_t>(StorageMethod::kWrite)].failures;
      unsynced_.emplace_back(commits.begin(), commits.end());
      return CommitOutcomeUnknownError(
          "injected: the Write was written but its sync failed; its outcome is unknown until "
          "SimulateCrash()");
    }
  }
  TXFN_RETURN_IF_ERROR(target().Write(commits));
  return Exit(StorageMethod::kWrite);
}

absl::StatusOr<std::optional<IndexEntry>> FaultInjectingStorage::Get(std::string_view tenant,
                                                                     IndexId index,
                                                                     std::string_view key,
                                                                     Timestamp ts) {
  return Forward(StorageMethod::kGet, [&] { return target().Get(tenant, index, key, ts); });
}

absl::StatusOr<std::vector<IndexEntry>> FaultInjectingStorage::Scan(std::string_view tenant,
                                                                    IndexId index,
                                                                    const KeyRange& range,
                                                                    Timestamp ts, ScanOrder order,
                                                                    size_t limit) {
  return Forward(StorageMethod::kScan,
                 [&] { return target().Scan(tenant, index, range, ts, order, limit); });
}

absl::StatusOr<std::vector<CommitRecord>> FaultInjectingStorage::ReadLog(std::string_view tenant,
                                                                         Timestamp after,
                                                                         size_t limit) {
  return Forward(StorageMethod::kReadLog, [&] { return target().ReadLog(tenant, after, limit); });
}

absl::StatusOr<Timestamp> FaultInjectingStorage::MaxCommittedTimestamp(std::string_view tenant) {
  return Forward(StorageMethod::kMaxCommittedTimestamp,
                 [&] { return target().MaxCommittedTimestamp(tenant); });
}

absl::StatusOr<std::vector<std::string>> FaultInjectingStorage::ListTenants() {
  return Forward(StorageMethod::kListTenants, [&] { return target().ListTenants(); });
}

absl::Status FaultInjectingStorage::DeleteTenant(std::string_view tenant) {
  TXFN_RETURN_IF_ERROR(Enter(StorageMethod::kDeleteTenant));
  TXFN_RETURN_IF_ERROR(target().DeleteTenant(tenant));
  return Exit(StorageMethod::kDeleteTenant);
}

absl::StatusOr<bool> FaultInjectingStorage::DeleteTenantIfNewest(std::string_view tenant,
                                                                 Timestamp newest) {
  return Forward(StorageMethod::kDeleteTenantIfNewest,
                 [&] { return target().DeleteTenantIfNewest(tenant, newest); });
}

absl::StatusOr<RetentionResult> FaultInjectingStorage::ApplyRetention(std::string_view tenant,
                                                                      Timestamp ts,
                                                                      size_t max_commits) {
  return Forward(StorageMethod::kApplyRetention,
                 [&] { return target().ApplyRetention(tenant, ts, max_commits); });
}

}  // namespace txfn::testing

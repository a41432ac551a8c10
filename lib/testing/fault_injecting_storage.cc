// FaultInjectingStorage: see txfn/testing/fault_injecting_storage.h.
#include "txfn/testing/fault_injecting_storage.h"

#include <algorithm>
#include <memory>
#include <utility>

#include "absl/time/clock.h"
#include "txfn/internal/status_macros.h"

namespace txfn::testing {

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
  }
  return "?";
}

FaultInjectingStorage::FaultInjectingStorage(std::shared_ptr<Storage> base, uint64_t seed)
    : owned_(std::move(base)), base_(owned_.get()), rng_(seed) {}

FaultInjectingStorage::FaultInjectingStorage(Storage* base, uint64_t seed)
    : base_(base), rng_(seed) {}

void FaultInjectingStorage::FailNext(StorageMethod method, int64_t n, absl::Status status) {
  if (status.ok()) status = absl::InternalError("FailNext given an OK status");
  internal::MutexLock lock(&mu_);
  MethodFaults& f = faults_[static_cast<size_t>(method)];
  f.fail_next = std::max<int64_t>(n, 0);
  f.fail_next_status = std::move(status);
}

void FaultInjectingStorage::FailWithProbability(StorageMethod method, double p,
                                                absl::Status status) {
  if (status.ok()) status = absl::InternalError("FailWithProbability given an OK status");
  internal::MutexLock lock(&mu_);
  MethodFaults& f = faults_[static_cast<size_t>(method)];
  f.probability = std::clamp(p, 0.0, 1.0);
  f.probability_status = std::move(status);
}

void FaultInjectingStorage::SetDelay(StorageMethod method, absl::Duration delay) {
  internal::MutexLock lock(&mu_);
  faults_[static_cast<size_t>(method)].delay = std::max(delay, absl::ZeroDuration());
}

void FaultInjectingStorage::ClearFaults() {
  internal::MutexLock lock(&mu_);
  for (MethodFaults& f : faults_) {
    f.fail_next = 0;
    f.probability = 0;
    f.delay = absl::ZeroDuration();
  }
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
  if (f.fail_next > 0) {
    --f.fail_next;
    ++f.failures;
    return f.fail_next_status;
  }
  if (f.probability > 0) {
    // 53 random bits -> [0, 1): the same on every standard library.
    double draw = static_cast<double>(rng_() >> 11) * 0x1.0p-53;
    if (draw < f.probability) {
      ++f.failures;
      return f.probability_status;
    }
  }
  return absl::OkStatus();
}

absl::Status FaultInjectingStorage::Write(absl::Span<const CommitRecord> commits) {
  TXFN_RETURN_IF_ERROR(Enter(StorageMethod::kWrite));
  return base_->Write(commits);
}

absl::StatusOr<std::optional<IndexEntry>> FaultInjectingStorage::Get(std::string_view tenant,
                                                                     IndexId index,
                                                                     std::string_view key,
                                                                     Timestamp ts) {
  TXFN_RETURN_IF_ERROR(Enter(StorageMethod::kGet));
  return base_->Get(tenant, index, key, ts);
}

absl::StatusOr<std::vector<IndexEntry>> FaultInjectingStorage::Scan(std::string_view tenant,
                                                                    IndexId index,
                                                                    const KeyRange& range,
                                                                    Timestamp ts, ScanOrder order,
                                                                    size_t limit) {
  TXFN_RETURN_IF_ERROR(Enter(StorageMethod::kScan));
  return base_->Scan(tenant, index, range, ts, order, limit);
}

absl::StatusOr<std::vector<CommitRecord>> FaultInjectingStorage::ReadLog(std::string_view tenant,
                                                                         Timestamp after,
                                                                         size_t limit) {
  TXFN_RETURN_IF_ERROR(Enter(StorageMethod::kReadLog));
  return base_->ReadLog(tenant, after, limit);
}

absl::StatusOr<Timestamp> FaultInjectingStorage::MaxCommittedTimestamp(std::string_view tenant) {
  TXFN_RETURN_IF_ERROR(Enter(StorageMethod::kMaxCommittedTimestamp));
  return base_->MaxCommittedTimestamp(tenant);
}

absl::StatusOr<std::vector<std::string>> FaultInjectingStorage::ListTenants() {
  TXFN_RETURN_IF_ERROR(Enter(StorageMethod::kListTenants));
  return base_->ListTenants();
}

absl::Status FaultInjectingStorage::DeleteTenant(std::string_view tenant) {
  TXFN_RETURN_IF_ERROR(Enter(StorageMethod::kDeleteTenant));
  return base_->DeleteTenant(tenant);
}

}  // namespace txfn::testing

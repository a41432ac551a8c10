// StorageWrapper: see txfn/storage_wrapper.h.
#include "txfn/storage_wrapper.h"

#include <utility>

namespace txfn {

StorageWrapper::StorageWrapper(std::shared_ptr<Storage> target)
    : owned_(std::move(target)), target_(owned_.get()) {}

StorageWrapper::StorageWrapper(Storage* target) : target_(target) {}

StorageWrapper::~StorageWrapper() = default;

absl::Status StorageWrapper::Write(absl::Span<const CommitRecord> commits) {
  return target_->Write(commits);
}

absl::StatusOr<std::optional<IndexEntry>> StorageWrapper::Get(std::string_view tenant,
                                                              IndexId index, std::string_view key,
                                                              Timestamp ts) {
  return target_->Get(tenant, index, key, ts);
}

absl::StatusOr<std::vector<IndexEntry>> StorageWrapper::Scan(std::string_view tenant, IndexId index,
                                                             const KeyRange& range, Timestamp ts,
                                                             ScanOrder order, size_t limit) {
  return target_->Scan(tenant, index, range, ts, order, limit);
}

absl::StatusOr<std::vector<CommitRecord>> StorageWrapper::ReadLog(std::string_view tenant,
                                                                  Timestamp after, size_t limit) {
  return target_->ReadLog(tenant, after, limit);
}

absl::StatusOr<Timestamp> StorageWrapper::MaxCommittedTimestamp(std::string_view tenant) {
  return target_->MaxCommittedTimestamp(tenant);
}

bool StorageWrapper::MayHaveOtherWriters(std::string_view tenant) {
  return target_->MayHaveOtherWriters(tenant);
}

bool StorageWrapper::HoldsTenant(std::string_view tenant) { return target_->HoldsTenant(tenant); }

absl::Status StorageWrapper::ReleaseTenant(std::string_view tenant) {
  return target_->ReleaseTenant(tenant);
}

absl::StatusOr<std::vector<std::string>> StorageWrapper::ListTenants() {
  return target_->ListTenants();
}

absl::Status StorageWrapper::DeleteTenant(std::string_view tenant) {
  return target_->DeleteTenant(tenant);
}

absl::StatusOr<bool> StorageWrapper::DeleteTenantIfNewest(std::string_view tenant,
                                                          Timestamp newest) {
  return target_->DeleteTenantIfNewest(tenant, newest);
}

absl::StatusOr<RetentionResult> StorageWrapper::ApplyRetention(std::string_view tenant,
                                                               Timestamp ts, size_t max_commits) {
  return target_->ApplyRetention(tenant, ts, max_commits);
}

}  // namespace txfn

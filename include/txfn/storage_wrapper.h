// txfn/storage_wrapper.h — a Storage that forwards every call to another one.
//
// The base class for a Storage that decorates another (LevelDB's EnvWrapper):
// subclass StorageWrapper and override only the calls you change; every other
// call reaches the wrapped storage as it is, including methods Storage gains
// later. The fault injector (<txfn/testing/fault_injecting_storage.h>) and the
// counting adapter of examples/ are built this way.
//
//   class ReadOnlyStorage final : public txfn::StorageWrapper {
//    public:
//     using StorageWrapper::StorageWrapper;
//     absl::Status Write(absl::Span<const txfn::CommitRecord>) override {
//       return absl::FailedPreconditionError("read-only");
//     }
//   };
//   auto storage = std::make_shared<ReadOnlyStorage>(std::make_shared<txfn::InMemoryStorage>());
//
// A tenant is deleted by DeleteTenant or by DeleteTenantIfNewest (the engine
// uses it to undo a refused first deploy): a wrapper that acts on deletes (a
// cache to drop, a log, a refusal) overrides both.
//
// Ownership: the wrapped storage is held by a shared_ptr, or, with the raw
// pointer constructor, borrowed (it must outlive the wrapper).
//
// Thread safety: as the wrapped storage (StorageWrapper adds no state).
#ifndef TXFN_STORAGE_WRAPPER_H_
#define TXFN_STORAGE_WRAPPER_H_

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "txfn/storage.h"

namespace txfn {

class StorageWrapper : public Storage {
 public:
  // Wraps `target` (shared ownership). It must not be null.
  explicit StorageWrapper(std::shared_ptr<Storage> target);
  // Wraps `target`, which must outlive this object (not owned, not null).
  explicit StorageWrapper(Storage* target);

  StorageWrapper(const StorageWrapper&) = delete;
  StorageWrapper& operator=(const StorageWrapper&) = delete;
  ~StorageWrapper() override;

  // The wrapped storage.
  Storage& target() const { return *target_; }

  // Each forwards to target() unchanged.
  [[nodiscard]] absl::Status Write(absl::Span<const CommitRecord> commits) override;
  [[nodiscard]] absl::StatusOr<std::optional<IndexEntry>> Get(std::string_view tenant,
                                                              IndexId index, std::string_view key,
                                                              Timestamp ts) override;
  [[nodiscard]] absl::StatusOr<std::vector<IndexEntry>> Scan(std::string_view tenant, IndexId index,
                                                             const KeyRange& range, Timestamp ts,
                                                             ScanOrder order,
                                                             size_t limit) override;
  [[nodiscard]] absl::StatusOr<std::vector<CommitRecord>> ReadLog(std::string_view tenant,
                                                                  Timestamp after,
                                                                  size_t limit) override;
  [[nodiscard]] absl::StatusOr<Timestamp> MaxCommittedTimestamp(std::string_view tenant) override;
  [[nodiscard]] absl::StatusOr<std::vector<std::string>> ListTenants() override;
  [[nodiscard]] bool MayHaveOtherWriters(std::string_view tenant) override;
  [[nodiscard]] bool HoldsTenant(std::string_view tenant) override;
  [[nodiscard]] absl::Status ReleaseTenant(std::string_view tenant) override;
  [[nodiscard]] absl::Status DeleteTenant(std::string_view tenant) override;
  [[nodiscard]] absl::StatusOr<bool> DeleteTenantIfNewest(std::string_view tenant,
                                                          Timestamp newest) override;
  [[nodiscard]] absl::StatusOr<RetentionResult> ApplyRetention(std::string_view tenant,
                                                               Timestamp ts,
                                                               size_t max_commits) override;

 private:
  const std::shared_ptr<Storage> owned_;  // null when borrowed
  Storage* const target_;
};

}  // namespace txfn

#endif  // TXFN_STORAGE_WRAPPER_H_

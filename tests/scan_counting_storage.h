// tests/scan_counting_storage.h — a Storage wrapper that counts the index entries its scans
// return, for tests that assert how much a read touched.
//
//   auto storage = std::make_shared<ScanCountingStorage>(std::make_shared<InMemoryStorage>());
//   ... run a query through storage ...
//   EXPECT_LE(storage->scanned, 100u);
//
// Thread-safe: `scanned` is atomic; reset it between measurements.
#ifndef TXFN_TESTS_SCAN_COUNTING_STORAGE_H_
#define TXFN_TESTS_SCAN_COUNTING_STORAGE_H_

#include <atomic>
#include <cstddef>
#include <memory>
#include <optional>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "txfn/storage.h"
#include "txfn/storage_wrapper.h"

namespace txfn::testing_util {

class ScanCountingStorage final : public StorageWrapper {
 public:
  // Counts the entries of scans of `only_index`, or of every index when it is empty.
  explicit ScanCountingStorage(std::shared_ptr<Storage> target,
                               std::optional<IndexId> only_index = std::nullopt)
      : StorageWrapper(std::move(target)), only_index_(only_index) {}

  absl::StatusOr<std::vector<IndexEntry>> Scan(std::string_view tenant, IndexId index,
                                               const KeyRange& range, Timestamp ts, ScanOrder order,
                                               size_t limit) override {
    absl::StatusOr<std::vector<IndexEntry>> entries =
        StorageWrapper::Scan(tenant, index, range, ts, order, limit);
    if (entries.ok() && (!only_index_.has_value() || *only_index_ == index)) {
      scanned += entries->size();
    }
    return entries;
  }

  std::atomic<size_t> scanned{0};

 private:
  const std::optional<IndexId> only_index_;
};

}  // namespace txfn::testing_util

#endif  // TXFN_TESTS_SCAN_COUNTING_STORAGE_H_

// counting_storage.h — a user-written Storage adapter: it decorates another
// Storage and counts the calls. The shape of any adapter a host writes in
// front of a store (a cache in front of a remote store, metrics, access
// checks): it derives from txfn::StorageWrapper, overrides only the calls it
// changes — here the four it counts — and inherits the rest, forwarded
// unchanged (ApplyRetention, ListTenants, ...). Passing the conformance suite
// (custom_storage_conformance.cc) is what makes it correct.
//
// Thread safety: as the wrapped Storage; the counters are atomics.
#ifndef TXFN_EXAMPLES_COUNTING_STORAGE_H_
#define TXFN_EXAMPLES_COUNTING_STORAGE_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "txfn/storage_wrapper.h"

namespace example {

class CountingStorage final : public txfn::StorageWrapper {
 public:
  struct Counts {
    uint64_t writes = 0;   // Write calls
    uint64_t commits = 0;  // commit records written
    uint64_t gets = 0;
    uint64_t scans = 0;
    uint64_t max_ts = 0;  // MaxCommittedTimestamp
  };

  using StorageWrapper::StorageWrapper;

  Counts counts() const {
    return {writes_.load(), commits_.load(), gets_.load(), scans_.load(), max_ts_.load()};
  }

  absl::Status Write(absl::Span<const txfn::CommitRecord> commits) override {
    ++writes_;
    commits_ += commits.size();
    return StorageWrapper::Write(commits);
  }
  absl::StatusOr<std::optional<txfn::IndexEntry>> Get(std::string_view tenant, txfn::IndexId index,
                                                      std::string_view key,
                                                      txfn::Timestamp ts) override {
    ++gets_;
    return StorageWrapper::Get(tenant, index, key, ts);
  }
  absl::StatusOr<std::vector<txfn::IndexEntry>> Scan(std::string_view tenant, txfn::IndexId index,
                                                     const txfn::KeyRange& range,
                                                     txfn::Timestamp ts, txfn::ScanOrder order,
                                                     size_t limit) override {
    ++scans_;
    return StorageWrapper::Scan(tenant, index, range, ts, order, limit);
  }
  absl::StatusOr<txfn::Timestamp> MaxCommittedTimestamp(std::string_view tenant) override {
    ++max_ts_;
    return StorageWrapper::MaxCommittedTimestamp(tenant);
  }

 private:
  std::atomic<uint64_t> writes_{0};
  std::atomic<uint64_t> commits_{0};
  std::atomic<uint64_t> gets_{0};
  std::atomic<uint64_t> scans_{0};
  std::atomic<uint64_t> max_ts_{0};
};

}  // namespace example

#endif  // TXFN_EXAMPLES_COUNTING_STORAGE_H_

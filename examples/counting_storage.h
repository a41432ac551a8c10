// counting_storage.h — a user-written Storage adapter: it forwards every call
// to another Storage and counts the calls. The shape of any adapter a host
// writes (a cache in front of a remote store, metrics, access checks): it
// subclasses txfn::Storage, and passing the conformance suite
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

#include "txfn/storage.h"

namespace example {

class CountingStorage final : public txfn::Storage {
 public:
  struct Counts {
    uint64_t writes = 0;   // Write calls
    uint64_t commits = 0;  // commit records written
    uint64_t gets = 0;
    uint64_t scans = 0;
    uint64_t other = 0;  // ReadLog, MaxCommittedTimestamp, ListTenants, DeleteTenant
  };

  explicit CountingStorage(std::shared_ptr<txfn::Storage> inner) : inner_(std::move(inner)) {}

  Counts counts() const {
    return {writes_.load(), commits_.load(), gets_.load(), scans_.load(), other_.load()};
  }

  absl::Status Write(absl::Span<const txfn::CommitRecord> commits) override {
    ++writes_;
    commits_ += commits.size();
    return inner_->Write(commits);
  }
  absl::StatusOr<std::optional<txfn::IndexEntry>> Get(std::string_view tenant, txfn::IndexId index,
                                                      std::string_view key,
                                                      txfn::Timestamp ts) override {
    ++gets_;
    return inner_->Get(tenant, index, key, ts);
  }
  absl::StatusOr<std::vector<txfn::IndexEntry>> Scan(std::string_view tenant, txfn::IndexId index,
                                                     const txfn::KeyRange& range,
                                                     txfn::Timestamp ts, txfn::ScanOrder order,
                                                     size_t limit) override {
    ++scans_;
    return inner_->Scan(tenant, index, range, ts, order, limit);
  }
  absl::StatusOr<std::vector<txfn::CommitRecord>> ReadLog(std::string_view tenant,
                                                          txfn::Timestamp after,
                                                          size_t limit) override {
    ++other_;
    return inner_->ReadLog(tenant, after, limit);
  }
  absl::StatusOr<txfn::Timestamp> MaxCommittedTimestamp(std::string_view tenant) override {
    ++other_;
    return inner_->MaxCommittedTimestamp(tenant);
  }
  absl::StatusOr<std::vector<std::string>> ListTenants() override {
    ++other_;
    return inner_->ListTenants();
  }
  absl::Status DeleteTenant(std::string_view tenant) override {
    ++other_;
    return inner_->DeleteTenant(tenant);
  }

 private:
  const std::shared_ptr<txfn::Storage> inner_;
  std::atomic<uint64_t> writes_{0};
  std::atomic<uint64_t> commits_{0};
  std::atomic<uint64_t> gets_{0};
  std::atomic<uint64_t> scans_{0};
  std::atomic<uint64_t> other_{0};
};

}  // namespace example

#endif  // TXFN_EXAMPLES_COUNTING_STORAGE_H_

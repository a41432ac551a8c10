// Helpers shared by the Storage conformance suites (private to txfn::testing).
#ifndef TXFN_LIB_TESTING_STORAGE_TEST_UTIL_H_
#define TXFN_LIB_TESTING_STORAGE_TEST_UTIL_H_

#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "gtest/gtest.h"
#include "txfn/storage.h"

namespace txfn::testing::internal {

inline IndexWrite Put(IndexId index, std::string key, std::string value) {
  return IndexWrite{index, std::move(key), std::move(value)};
}
inline IndexWrite Del(IndexId index, std::string key) {
  return IndexWrite{index, std::move(key), std::nullopt};
}
inline CommitRecord Commit(std::string tenant, Timestamp ts, std::vector<IndexWrite> writes) {
  return CommitRecord{std::move(tenant), ts, std::move(writes)};
}

// Thin wrappers that record a test failure on an error status and return an
// empty result, so the tests read as plain expectations.
inline absl::Status WriteAll(Storage& s, const std::vector<CommitRecord>& commits) {
  return s.Write(absl::MakeConstSpan(commits));
}
inline std::optional<IndexEntry> GetAt(Storage& s, std::string_view tenant, IndexId index,
                                       std::string_view key, Timestamp ts) {
  auto r = s.Get(tenant, index, key, ts);
  EXPECT_TRUE(r.ok()) << r.status();
  return r.ok() ? *r : std::nullopt;
}
inline std::vector<IndexEntry> ScanAt(Storage& s, std::string_view tenant, IndexId index,
                                      const KeyRange& range, Timestamp ts,
                                      ScanOrder order = ScanOrder::kAscending, size_t limit = 0) {
  auto r = s.Scan(tenant, index, range, ts, order, limit);
  EXPECT_TRUE(r.ok()) << r.status();
  return r.ok() ? *std::move(r) : std::vector<IndexEntry>{};
}
inline std::vector<CommitRecord> LogAfter(Storage& s, std::string_view tenant, Timestamp after,
                                          size_t limit = 0) {
  auto r = s.ReadLog(tenant, after, limit);
  EXPECT_TRUE(r.ok()) << r.status();
  return r.ok() ? *std::move(r) : std::vector<CommitRecord>{};
}
inline Timestamp MaxTs(Storage& s, std::string_view tenant) {
  auto r = s.MaxCommittedTimestamp(tenant);
  EXPECT_TRUE(r.ok()) << r.status();
  return r.ok() ? *r : 0;
}
inline std::vector<std::string> Tenants(Storage& s) {
  auto r = s.ListTenants();
  EXPECT_TRUE(r.ok()) << r.status();
  return r.ok() ? *std::move(r) : std::vector<std::string>{};
}

}  // namespace txfn::testing::internal

#endif  // TXFN_LIB_TESTING_STORAGE_TEST_UTIL_H_

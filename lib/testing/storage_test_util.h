// Helpers shared by the Storage conformance suites (private to txfn::testing).
#ifndef TXFN_LIB_TESTING_STORAGE_TEST_UTIL_H_
#define TXFN_LIB_TESTING_STORAGE_TEST_UTIL_H_

#include <algorithm>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "gtest/gtest.h"
#include "txfn/storage.h"

namespace txfn::testing::internal {

// Defined in storage_retention_conformance.cc; referenced so that a binary
// that links the main suite links the retention tests too.
int LinkStorageRetentionConformanceTests();

// Keys in ascending bytewise (unsigned) order, with the awkward bytes.
inline const std::vector<std::string>& OrderedBinaryKeys() {
  using std::string_literals::operator""s;
  static const auto* keys = new std::vector<std::string>{
      ""s,      "\0"s,   "\0\0"s,  "\0\xff"s, "\x01"s,     "a"s,           "a\0"s, "a\0\0"s,
      "a\x01"s, "ab"s,   "a\x7f"s, "a\x80"s,  "a\xff"s,    "a\xff\xff"s,   "b"s,   "\x7f"s,
      "\x80"s,  "\xfe"s, "\xff"s,  "\xff\0"s, "\xff\xff"s, "\xff\xff\x01"s};
  return *keys;
}

// The keys of `entries`, in order.
inline std::vector<std::string> Keys(const std::vector<IndexEntry>& entries) {
  std::vector<std::string> out;
  out.reserve(entries.size());
  for (const auto& e : entries) out.push_back(e.key);
  return out;
}

// A straightforward model of one tenant's indexes: every version of every key.
class Model {
 public:
  void Apply(const CommitRecord& c) {
    for (const IndexWrite& w : c.writes) versions_[{w.index, w.key}].emplace_back(c.ts, w.value);
    log_.push_back(c);
  }

  std::optional<IndexEntry> Get(IndexId index, const std::string& key, Timestamp ts) const {
    auto it = versions_.find({index, key});
    if (it == versions_.end()) return std::nullopt;
    return Visible(key, it->second, ts);
  }

  std::vector<IndexEntry> Scan(IndexId index, const KeyRange& range, Timestamp ts, ScanOrder order,
                               size_t limit) const {
    std::vector<IndexEntry> out;
    for (const auto& [ik, versions] : versions_) {
      if (ik.first != index || !range.Contains(ik.second)) continue;
      if (auto e = Visible(ik.second, versions, ts)) out.push_back(*e);
    }
    if (order == ScanOrder::kDescending) std::reverse(out.begin(), out.end());
    if (limit != 0 && out.size() > limit) out.resize(limit);
    return out;
  }

  std::vector<CommitRecord> LogAfter(Timestamp after, size_t limit) const {
    std::vector<CommitRecord> out;
    for (const auto& c : log_) {
      if (c.ts > after && (limit == 0 || out.size() < limit)) out.push_back(c);
    }
    return out;
  }

 private:
  using Versions = std::vector<std::pair<Timestamp, std::optional<std::string>>>;
  static std::optional<IndexEntry> Visible(const std::string& key, const Versions& versions,
                                           Timestamp ts) {
    const std::pair<Timestamp, std::optional<std::string>>* best = nullptr;
    for (const auto& v : versions) {
      if (v.first <= ts) best = &v;
    }
    if (best == nullptr || !best->second.has_value()) return std::nullopt;
    return IndexEntry{key, *best->second, best->first};
  }

  std::map<std::pair<IndexId, std::string>, Versions> versions_;
  std::vector<CommitRecord> log_;
};

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

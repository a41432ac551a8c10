// The single-threaded Storage conformance tests; see
// txfn/testing/storage_conformance.h.
#include "txfn/testing/storage_conformance.h"

#include <algorithm>
#include <cstdint>
#include <limits>
#include <map>
#include <optional>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "lib/testing/storage_test_util.h"
#include "txfn/storage.h"

namespace txfn::testing {

namespace internal {
// Referencing the retention tests' object file links it too.
int LinkStorageConformanceTests() { return LinkStorageRetentionConformanceTests(); }
}  // namespace internal

void StorageConformanceTest::SetUp() {
  ASSERT_TRUE(GetParam().make) << "StorageFactory::make is empty";
  storage_ = GetParam().make();
  ASSERT_NE(storage_, nullptr) << "StorageFactory::make returned nullptr";
}

void StorageConformanceTest::TearDown() { storage_.reset(); }

bool StorageConformanceTest::Reopen() {
  if (!GetParam().reopen) return false;
  storage_ = GetParam().reopen(std::move(storage_));
  EXPECT_NE(storage_, nullptr) << "StorageFactory::reopen returned nullptr";
  return storage_ != nullptr;
}

namespace {

using internal::Commit;
using internal::Del;
using internal::GetAt;
using internal::Keys;
using internal::LogAfter;
using internal::MaxTs;
using internal::Model;
using internal::OrderedBinaryKeys;
using internal::Put;
using internal::ScanAt;
using internal::Tenants;
using internal::WriteAll;
using ::testing::ElementsAre;
using ::testing::ElementsAreArray;
using ::testing::IsEmpty;
using std::string_literals::operator""s;  // NOLINT(misc-unused-using-decls): it is used

constexpr Timestamp kForever = std::numeric_limits<Timestamp>::max();

// ---------------------------------------------------------------------------
// Empty storage, basic reads.

TEST_P(StorageConformanceTest, EmptyStorageHasNothing) {
  Storage& s = storage();
  EXPECT_EQ(GetAt(s, "t", 1, "k", kForever), std::nullopt);
  EXPECT_THAT(ScanAt(s, "t", 1, KeyRange::All(), kForever), IsEmpty());
  EXPECT_THAT(LogAfter(s, "t", 0), IsEmpty());
  EXPECT_EQ(MaxTs(s, "t"), 0u);
  EXPECT_THAT(Tenants(s), IsEmpty());
  EXPECT_TRUE(s.DeleteTenant("t").ok());
  EXPECT_TRUE(s.Write({}).ok()) << "an empty batch is a no-op";
  EXPECT_THAT(Tenants(s), IsEmpty());
}

TEST_P(StorageConformanceTest, GetSeesTheNewestVersionAtOrBeforeTs) {
  Storage& s = storage();
  ASSERT_TRUE(WriteAll(s, {Commit("t", 10, {Put(1, "k", "v10")})}).ok());
  ASSERT_TRUE(WriteAll(s, {Commit("t", 20, {Put(1, "k", "v20")})}).ok());
  EXPECT_EQ(GetAt(s, "t", 1, "k", 0), std::nullopt);
  EXPECT_EQ(GetAt(s, "t", 1, "k", 9), std::nullopt);
  EXPECT_EQ(GetAt(s, "t", 1, "k", 10), (IndexEntry{"k", "v10", 10}));
  EXPECT_EQ(GetAt(s, "t", 1, "k", 19), (IndexEntry{"k", "v10", 10}));
  EXPECT_EQ(GetAt(s, "t", 1, "k", 20), (IndexEntry{"k", "v20", 20}));
  EXPECT_EQ(GetAt(s, "t", 1, "k", 21), (IndexEntry{"k", "v20", 20}));
  EXPECT_EQ(GetAt(s, "t", 1, "k", kForever), (IndexEntry{"k", "v20", 20}))
      << "a read above MaxCommittedTimestamp sees every commit so far";
  EXPECT_EQ(GetAt(s, "t", 1, "other", 20), std::nullopt);
  EXPECT_EQ(GetAt(s, "t", 2, "k", 20), std::nullopt) << "indexes are separate";
}

TEST_P(StorageConformanceTest, IndexesAreIndependent) {
  Storage& s = storage();
  ASSERT_TRUE(
      WriteAll(s, {Commit("t", 1,
                          {Put(1, "k", "one"), Put(2, "k", "two"), Put(0xffffffffu, "k", "max")})})
          .ok());
  ASSERT_TRUE(WriteAll(s, {Commit("t", 2, {Del(1, "k")})}).ok());
  EXPECT_EQ(GetAt(s, "t", 1, "k", 2), std::nullopt);
  EXPECT_EQ(GetAt(s, "t", 2, "k", 2), (IndexEntry{"k", "two", 1}));
  EXPECT_EQ(GetAt(s, "t", 0xffffffffu, "k", 2), (IndexEntry{"k", "max", 1}));
  EXPECT_THAT(ScanAt(s, "t", 2, KeyRange::All(), 2), ElementsAre(IndexEntry{"k", "two", 1}));
  EXPECT_THAT(ScanAt(s, "t", 1, KeyRange::All(), 2), IsEmpty());
  EXPECT_THAT(ScanAt(s, "t", 0, KeyRange::All(), 2), IsEmpty());
}

TEST_P(StorageConformanceTest, EmptyValueIsNotATombstone) {
  Storage& s = storage();
  ASSERT_TRUE(WriteAll(s, {Commit("t", 1, {Put(1, "k", "")})}).ok());
  EXPECT_EQ(GetAt(s, "t", 1, "k", 1), (IndexEntry{"k", "", 1}));
  EXPECT_THAT(ScanAt(s, "t", 1, KeyRange::All(), 1), ElementsAre(IndexEntry{"k", "", 1}));
}

TEST_P(StorageConformanceTest, BinaryKeysAndValuesRoundTrip) {
  Storage& s = storage();
  std::string value;
  for (int i = 0; i < 256; ++i) value.push_back(static_cast<char>(i));
  std::string big_key(2500, '\xab');
  std::string big_value(1 << 20, '\0');
  for (size_t i = 0; i < big_value.size(); i += 7) big_value[i] = static_cast<char>(i);
  ASSERT_TRUE(
      WriteAll(s, {Commit("t", 1, {Put(1, "\0k\xff"s, value), Put(1, big_key, big_value)})}).ok());
  EXPECT_EQ(GetAt(s, "t", 1, "\0k\xff"s, 1), (IndexEntry{"\0k\xff"s, value, 1}));
  EXPECT_EQ(GetAt(s, "t", 1, "\0k"s, 1), std::nullopt) << "NUL bytes are part of the key";
  EXPECT_EQ(GetAt(s, "t", 1, big_key, 1), (IndexEntry{big_key, big_value, 1}));
}

// ---------------------------------------------------------------------------
// Order and ranges.

TEST_P(StorageConformanceTest, ScanOrdersBinaryKeysBytewise) {
  Storage& s = storage();
  std::vector<std::string> keys = OrderedBinaryKeys();
  // Written in a scrambled order, in two commits.
  std::vector<std::string> shuffled = keys;
  std::mt19937_64 rng(7);
  std::shuffle(shuffled.begin(), shuffled.end(), rng);
  std::vector<IndexWrite> first, second;
  for (size_t i = 0; i < shuffled.size(); ++i) {
    (i % 2 ? first : second).push_back(Put(3, shuffled[i], "v" + shuffled[i]));
  }
  ASSERT_TRUE(WriteAll(s, {Commit("t", 1, first), Commit("t", 2, second)}).ok());
  EXPECT_THAT(Keys(ScanAt(s, "t", 3, KeyRange::All(), 2)), ElementsAreArray(keys));
  std::vector<std::string> reversed(keys.rbegin(), keys.rend());
  EXPECT_THAT(Keys(ScanAt(s, "t", 3, KeyRange::All(), 2, ScanOrder::kDescending)),
              ElementsAreArray(reversed));
  for (const auto& e : ScanAt(s, "t", 3, KeyRange::All(), 2)) EXPECT_EQ(e.value, "v" + e.key);
}

TEST_P(StorageConformanceTest, ScanHonoursEveryKindOfRange) {
  Storage& s = storage();
  const std::vector<std::string>& keys = OrderedBinaryKeys();
  std::vector<IndexWrite> writes;
  writes.reserve(keys.size());
  for (const auto& k : keys) writes.push_back(Put(1, k, "v"));
  ASSERT_TRUE(WriteAll(s, {Commit("t", 5, writes)}).ok());

  const std::vector<std::pair<std::string, KeyRange>> ranges = {
      {"All", KeyRange::All()},
      {"Point(a)", KeyRange::Point("a")},
      {"Point('')", KeyRange::Point("")},
      {"Point(\\0)", KeyRange::Point("\0"s)},
      {"Point(\\xff)", KeyRange::Point("\xff")},
      {"Point(absent)", KeyRange::Point("zz")},
      {"Prefix(a)", KeyRange::Prefix("a")},
      {"Prefix('')", KeyRange::Prefix("")},
      {"Prefix(\\0)", KeyRange::Prefix("\0"s)},
      {"Prefix(a\\xff)", KeyRange::Prefix("a\xff")},
      {"Prefix(\\xff)", KeyRange::Prefix("\xff")},
      {"Prefix(\\xff\\xff)", KeyRange::Prefix("\xff\xff")},
      {"Prefix(absent)", KeyRange::Prefix("c")},
      {"Closed(a, ab)", KeyRange::Closed("a", "ab")},
      {"Closed(a\\0, b)", KeyRange::Closed("a\0"s, "b")},
      {"Closed('', '')", KeyRange::Closed("", "")},
      {"Closed(\\xff, \\xff\\xff\\x01)", KeyRange::Closed("\xff", "\xff\xff\x01")},
      {"HalfOpen(a, ab)", KeyRange::HalfOpen("a", "ab")},
      {"HalfOpen('', \\0)", KeyRange::HalfOpen("", "\0"s)},
      {"HalfOpen(\\x01, \\xff)", KeyRange::HalfOpen("\x01", "\xff")},
      {"After(a)", KeyRange::After("a")},
      {"After('')", KeyRange::After("")},
      {"After(\\xff)", KeyRange::After("\xff")},
      {"After(\\xff\\xff\\x01)", KeyRange::After("\xff\xff\x01")},
      {"{start=b, no end}", KeyRange{"b", std::nullopt}},
      // Empty ranges.
      {"HalfOpen(a, a)", KeyRange::HalfOpen("a", "a")},
      {"HalfOpen(b, a)", KeyRange::HalfOpen("b", "a")},
      {"Closed(b, a)", KeyRange::Closed("b", "a")},
      {"HalfOpen('', '')", KeyRange::HalfOpen("", "")},
  };
  for (const auto& [name, range] : ranges) {
    SCOPED_TRACE(name);
    std::vector<std::string> expected;
    for (const auto& k : keys) {
      if (range.Contains(k)) expected.push_back(k);
    }
    std::vector<std::string> reversed(expected.rbegin(), expected.rend());
    EXPECT_THAT(Keys(ScanAt(s, "t", 1, range, 5)), ElementsAreArray(expected));
    EXPECT_THAT(Keys(ScanAt(s, "t", 1, range, 5, ScanOrder::kDescending)),
                ElementsAreArray(reversed));
    for (size_t limit : {1u, 2u, 3u}) {
      std::vector<std::string> head(expected.begin(),
                                    expected.begin() + std::min(limit, expected.size()));
      std::vector<std::string> tail(reversed.begin(),
                                    reversed.begin() + std::min(limit, reversed.size()));
      EXPECT_THAT(Keys(ScanAt(s, "t", 1, range, 5, ScanOrder::kAscending, limit)),
                  ElementsAreArray(head))
          << "limit " << limit;
      EXPECT_THAT(Keys(ScanAt(s, "t", 1, range, 5, ScanOrder::kDescending, limit)),
                  ElementsAreArray(tail))
          << "limit " << limit;
    }
    EXPECT_THAT(ScanAt(s, "t", 1, range, 4), IsEmpty()) << "nothing before the commit";
  }
  // A few spelled out, so the test does not rest on KeyRange::Contains alone.
  EXPECT_THAT(Keys(ScanAt(s, "t", 1, KeyRange::Prefix("\xff"), 5)),
              ElementsAre("\xff"s, "\xff\0"s, "\xff\xff"s, "\xff\xff\x01"s));
  EXPECT_THAT(Keys(ScanAt(s, "t", 1, KeyRange::Closed("a\xff", "b"), 5)),
              ElementsAre("a\xff"s, "a\xff\xff"s, "b"s));
  EXPECT_THAT(Keys(ScanAt(s, "t", 1, KeyRange::After("a\xff\xff"), 5, ScanOrder::kAscending, 2)),
              ElementsAre("b"s, "\x7f"s));
  EXPECT_THAT(Keys(ScanAt(s, "t", 1, KeyRange::HalfOpen("", "\x01"), 5, ScanOrder::kDescending)),
              ElementsAre("\0\xff"s, "\0\0"s, "\0"s, ""s));
}

TEST_P(StorageConformanceTest, LimitCountsLiveEntriesOnly) {
  Storage& s = storage();
  ASSERT_TRUE(WriteAll(s, {Commit("t", 1,
                                  {Put(1, "a", "1"), Put(1, "b", "1"), Put(1, "c", "1"),
                                   Put(1, "d", "1")})})
                  .ok());
  ASSERT_TRUE(WriteAll(s, {Commit("t", 2, {Del(1, "a"), Del(1, "b"), Del(1, "d")})}).ok());
  EXPECT_THAT(Keys(ScanAt(s, "t", 1, KeyRange::All(), 2, ScanOrder::kAscending, 1)),
              ElementsAre("c"));
  EXPECT_THAT(Keys(ScanAt(s, "t", 1, KeyRange::All(), 2, ScanOrder::kDescending, 1)),
              ElementsAre("c"));
  EXPECT_THAT(Keys(ScanAt(s, "t", 1, KeyRange::All(), 1, ScanOrder::kDescending, 2)),
              ElementsAre("d", "c"));
}

// ---------------------------------------------------------------------------
// Tombstones and versions.

TEST_P(StorageConformanceTest, DeleteThenPutAgain) {
  Storage& s = storage();
  ASSERT_TRUE(WriteAll(s, {Commit("t", 1, {Put(1, "k", "a"), Put(1, "j", "x")})}).ok());
  ASSERT_TRUE(WriteAll(s, {Commit("t", 2, {Del(1, "k")})}).ok());
  ASSERT_TRUE(WriteAll(s, {Commit("t", 3, {Put(1, "k", "b")})}).ok());
  ASSERT_TRUE(WriteAll(s, {Commit("t", 4, {Del(1, "k"), Del(1, "never-written")})}).ok());
  EXPECT_EQ(GetAt(s, "t", 1, "k", 1), (IndexEntry{"k", "a", 1}));
  EXPECT_EQ(GetAt(s, "t", 1, "k", 2), std::nullopt);
  EXPECT_EQ(GetAt(s, "t", 1, "k", 3), (IndexEntry{"k", "b", 3}));
  EXPECT_EQ(GetAt(s, "t", 1, "k", 4), std::nullopt);
  EXPECT_EQ(GetAt(s, "t", 1, "never-written", 4), std::nullopt);
  EXPECT_THAT(Keys(ScanAt(s, "t", 1, KeyRange::All(), 1)), ElementsAre("j", "k"));
  EXPECT_THAT(Keys(ScanAt(s, "t", 1, KeyRange::All(), 2)), ElementsAre("j"));
  EXPECT_THAT(ScanAt(s, "t", 1, KeyRange::All(), 3),
              ElementsAre(IndexEntry{"j", "x", 1}, IndexEntry{"k", "b", 3}));
  EXPECT_THAT(Keys(ScanAt(s, "t", 1, KeyRange::All(), 4, ScanOrder::kDescending)),
              ElementsAre("j"));
}

TEST_P(StorageConformanceTest, VersionedReadsMatchAModelAtEveryTimestamp) {
  Storage& s = storage();
  Model model;
  std::mt19937_64 rng(20240601);
  const std::vector<std::string>& universe = OrderedBinaryKeys();
  const std::vector<IndexId> indexes = {1, 2};
  auto pick = [&](size_t n) { return static_cast<size_t>(rng() % n); };

  Timestamp ts = 0;
  for (int batch = 0; batch < 40; ++batch) {
    std::vector<CommitRecord> commits;
    size_t n_commits = 1 + pick(3);
    for (size_t c = 0; c < n_commits; ++c) {
      ts += 1 + pick(3);  // gaps: some timestamps have no commit
      std::vector<IndexWrite> writes;
      std::map<std::pair<IndexId, std::string>, bool> used;
      size_t n_writes = 1 + pick(4);
      for (size_t w = 0; w < n_writes; ++w) {
        IndexId index = indexes[pick(indexes.size())];
        const std::string& key = universe[pick(universe.size())];
        if (used[{index, key}]) continue;
        used[{index, key}] = true;
        if (pick(4) == 0) {
          writes.push_back(Del(index, key));
        } else {
          writes.push_back(
              Put(index, key,
                  "v" + std::to_string(ts) + "." + std::to_string(w) + std::string(pick(3), '\0')));
        }
      }
      commits.push_back(Commit("t", ts, std::move(writes)));
    }
    ASSERT_TRUE(WriteAll(s, commits).ok());
    for (const auto& c : commits) model.Apply(c);
  }
  const Timestamp max_ts = ts;
  ASSERT_EQ(MaxTs(s, "t"), max_ts);

  auto random_range = [&]() -> KeyRange {
    const std::string& a = universe[pick(universe.size())];
    const std::string& b = universe[pick(universe.size())];
    switch (pick(6)) {
      case 0:
        return KeyRange::Point(a);
      case 1:
        return KeyRange::Prefix(a.substr(0, pick(a.size() + 1)));
      case 2:
        return KeyRange::Closed(a, b);
      case 3:
        return KeyRange::HalfOpen(a, b);
      case 4:
        return KeyRange::After(a);
      default:
        return KeyRange::All();
    }
  };

  for (Timestamp at = 0; at <= max_ts + 1; ++at) {
    SCOPED_TRACE(::testing::Message() << "read at ts " << at);
    for (IndexId index : {1u, 2u, 3u}) {
      for (const auto& key : universe) {
        ASSERT_EQ(GetAt(s, "t", index, key, at), model.Get(index, key, at))
            << "index " << index << " key " << ::testing::PrintToString(key);
      }
      for (ScanOrder order : {ScanOrder::kAscending, ScanOrder::kDescending}) {
        ASSERT_EQ(ScanAt(s, "t", index, KeyRange::All(), at, order),
                  model.Scan(index, KeyRange::All(), at, order, 0))
            << "index " << index;
      }
    }
    for (int i = 0; i < 8; ++i) {
      KeyRange range = random_range();
      IndexId index = indexes[pick(indexes.size())];
      ScanOrder order = pick(2) ? ScanOrder::kAscending : ScanOrder::kDescending;
      size_t limit = pick(5);
      ASSERT_EQ(ScanAt(s, "t", index, range, at, order, limit),
                model.Scan(index, range, at, order, limit))
          << "index " << index << " range [" << ::testing::PrintToString(range.start) << ", "
          << (range.end ? ::testing::PrintToString(*range.end) : "inf") << ") "
          << (order == ScanOrder::kAscending ? "asc" : "desc") << " limit " << limit;
    }
  }
  for (Timestamp after = 0; after <= max_ts + 1; ++after) {
    ASSERT_EQ(LogAfter(s, "t", after), model.LogAfter(after, 0)) << "after " << after;
    ASSERT_EQ(LogAfter(s, "t", after, 3), model.LogAfter(after, 3)) << "after " << after;
  }
}

// ---------------------------------------------------------------------------
// Batches and atomicity.

TEST_P(StorageConformanceTest, BatchOfCommitsIsWrittenWhole) {
  Storage& s = storage();
  std::vector<CommitRecord> batch = {
      Commit("t", 1, {Put(1, "a", "1")}), Commit("u", 1, {Put(1, "a", "u1")}),
      Commit("t", 2, {Put(1, "a", "2"), Put(1, "b", "2")}), Commit("t", 5, {Del(1, "a")})};
  ASSERT_TRUE(WriteAll(s, batch).ok());
  EXPECT_EQ(MaxTs(s, "t"), 5u);
  EXPECT_EQ(MaxTs(s, "u"), 1u);
  EXPECT_EQ(GetAt(s, "t", 1, "a", 1), (IndexEntry{"a", "1", 1}));
  EXPECT_EQ(GetAt(s, "t", 1, "a", 2), (IndexEntry{"a", "2", 2}));
  EXPECT_EQ(GetAt(s, "t", 1, "a", 5), std::nullopt);
  EXPECT_EQ(GetAt(s, "u", 1, "a", 5), (IndexEntry{"a", "u1", 1}));
  EXPECT_THAT(LogAfter(s, "t", 0), ElementsAre(batch[0], batch[2], batch[3]));
  EXPECT_THAT(LogAfter(s, "u", 0), ElementsAre(batch[1]));
}

TEST_P(StorageConformanceTest, CommitWithoutWritesIsACommit) {
  Storage& s = storage();
  ASSERT_TRUE(WriteAll(s, {Commit("t", 3, {})}).ok());
  EXPECT_EQ(MaxTs(s, "t"), 3u);
  EXPECT_THAT(LogAfter(s, "t", 0), ElementsAre(Commit("t", 3, {})));
  EXPECT_THAT(Tenants(s), ElementsAre("t"));
  EXPECT_FALSE(WriteAll(s, {Commit("t", 3, {Put(1, "k", "v")})}).ok());
}

// Records everything observable of tenants `tenants`, to compare before and
// after a Write that must change nothing.
struct Observation {
  std::vector<std::string> tenants;
  std::vector<Timestamp> max;
  std::vector<std::vector<CommitRecord>> logs;
  std::vector<std::vector<IndexEntry>> scans;
  friend bool operator==(const Observation&, const Observation&) = default;
};
Observation Observe(Storage& s, const std::vector<std::string>& tenants) {
  Observation o;
  o.tenants = Tenants(s);
  for (const auto& t : tenants) {
    o.max.push_back(MaxTs(s, t));
    o.logs.push_back(LogAfter(s, t, 0));
    for (IndexId index : {1u, 2u})
      o.scans.push_back(ScanAt(s, t, index, KeyRange::All(), kForever));
  }
  return o;
}

struct BadBatch {
  std::string what;
  std::vector<CommitRecord> commits;
};

std::vector<BadBatch> BadBatches() {
  // Preloaded state: tenant "t" at ts 10, tenant "u" at ts 20.
  return {
      {"empty tenant", {Commit("", 11, {Put(1, "k", "v")})}},
      {"empty tenant after a valid commit",
       {Commit("t", 11, {Put(1, "k", "v")}), Commit("", 12, {Put(1, "k", "v")})}},
      {"ts equal to max committed", {Commit("t", 10, {Put(1, "k", "v")})}},
      {"ts below max committed", {Commit("t", 5, {Put(1, "k", "v")})}},
      {"ts 0 for a new tenant", {Commit("new", 0, {Put(1, "k", "v")})}},
      {"stale ts after a valid commit",
       {Commit("t", 11, {Put(1, "k", "v")}), Commit("u", 20, {Put(1, "k", "v")})}},
      {"equal ts within the batch",
       {Commit("t", 11, {Put(1, "k", "v")}), Commit("t", 11, {Put(1, "j", "v")})}},
      {"decreasing ts within the batch",
       {Commit("t", 12, {Put(1, "k", "v")}), Commit("t", 11, {Put(1, "j", "v")})}},
      {"decreasing ts within the batch of a new tenant",
       {Commit("new", 5, {Put(1, "k", "v")}), Commit("new", 4, {Put(1, "j", "v")})}},
      {"duplicate (index, key) in a commit",
       {Commit("t", 11, {Put(1, "k", "v"), Put(2, "k", "v"), Put(1, "k", "w")})}},
      {"duplicate (index, key) as put and delete",
       {Commit("t", 11, {Put(1, "k", "v"), Del(1, "k")})}},
      {"duplicate delete", {Commit("new", 1, {Del(1, "k"), Del(1, "k")})}},
      {"duplicate in a later commit",
       {Commit("t", 11, {Put(1, "a", "v")}), Commit("new", 1, {Put(1, "b", "v")}),
        Commit("u", 21, {Put(2, "k", "1"), Put(2, "k", "2")})}},
      {"duplicate in a large commit",
       [] {
         std::vector<IndexWrite> writes;
         writes.reserve(101);
         for (int i = 0; i < 100; ++i) writes.push_back(Put(1, "k" + std::to_string(i), "v"));
         writes.push_back(Put(1, "k57", "again"));
         return std::vector<CommitRecord>{Commit("t", 11, writes)};
       }()},
  };
}

TEST_P(StorageConformanceTest, InvalidBatchesAreRejectedWholeWithInvalidArgument) {
  Storage& s = storage();
  ASSERT_TRUE(WriteAll(s, {Commit("t", 10, {Put(1, "k", "t10"), Put(2, "k", "t10")}),
                           Commit("u", 20, {Put(1, "k", "u20")})})
                  .ok());
  const std::vector<std::string> tenants = {"t", "u", "new"};
  const Observation before = Observe(s, tenants);
  for (const BadBatch& bad : BadBatches()) {
    SCOPED_TRACE(bad.what);
    absl::Status status = WriteAll(s, bad.commits);
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
    EXPECT_FALSE(status.message().empty());
    EXPECT_EQ(Observe(s, tenants), before) << "a rejected Write changed something";
  }
  // And the storage still accepts the valid parts afterwards.
  EXPECT_TRUE(WriteAll(s, {Commit("t", 11, {Put(1, "k", "t11")}), Commit("new", 1, {})}).ok());
  EXPECT_EQ(GetAt(s, "t", 1, "k", 11), (IndexEntry{"k", "t11", 11}));
  EXPECT_THAT(Tenants(s), ElementsAre("new", "t", "u"));
}

TEST_P(StorageConformanceTest, SameKeyInDifferentCommitsOfABatchIsFine) {
  Storage& s = storage();
  ASSERT_TRUE(WriteAll(s, {Commit("t", 1, {Put(1, "k", "1"), Put(2, "k", "1")}),
                           Commit("t", 2, {Put(1, "k", "2"), Del(2, "k")})})
                  .ok());
  EXPECT_EQ(GetAt(s, "t", 1, "k", 1), (IndexEntry{"k", "1", 1}));
  EXPECT_EQ(GetAt(s, "t", 1, "k", 2), (IndexEntry{"k", "2", 2}));
  EXPECT_EQ(GetAt(s, "t", 2, "k", 2), std::nullopt);
}

// ---------------------------------------------------------------------------
// The log.

TEST_P(StorageConformanceTest, ReadLogReturnsCommitsAsWritten) {
  Storage& s = storage();
  std::vector<CommitRecord> commits = {
      Commit("t", 3, {Put(2, "z", "1"), Put(1, "b", "1"), Del(1, "a"), Put(1, "\0"s, "")}),
      Commit("t", 7, {Del(9, "q")}),
      Commit("t", 8, {Put(1, "b", "2")}),
      Commit("t", 20, {Put(1, "c", "3"), Put(1, "a", "3")}),
  };
  ASSERT_TRUE(WriteAll(s, {commits[0]}).ok());
  ASSERT_TRUE(WriteAll(s, {commits[1], commits[2]}).ok());
  ASSERT_TRUE(WriteAll(s, {commits[3]}).ok());
  ASSERT_TRUE(WriteAll(s, {Commit("other", 5, {Put(1, "x", "x")})}).ok());

  EXPECT_THAT(LogAfter(s, "t", 0), ElementsAreArray(commits));
  EXPECT_THAT(LogAfter(s, "t", 2), ElementsAreArray(commits));
  EXPECT_THAT(LogAfter(s, "t", 3), ElementsAre(commits[1], commits[2], commits[3]));
  EXPECT_THAT(LogAfter(s, "t", 5), ElementsAre(commits[1], commits[2], commits[3]));
  EXPECT_THAT(LogAfter(s, "t", 8), ElementsAre(commits[3]));
  EXPECT_THAT(LogAfter(s, "t", 19), ElementsAre(commits[3]));
  EXPECT_THAT(LogAfter(s, "t", 20), IsEmpty());
  EXPECT_THAT(LogAfter(s, "t", kForever), IsEmpty());
  EXPECT_THAT(LogAfter(s, "t", 0, 1), ElementsAre(commits[0]));
  EXPECT_THAT(LogAfter(s, "t", 0, 2), ElementsAre(commits[0], commits[1]));
  EXPECT_THAT(LogAfter(s, "t", 4, 2), ElementsAre(commits[1], commits[2]));
  EXPECT_THAT(LogAfter(s, "t", 8, 5), ElementsAre(commits[3]));
  EXPECT_THAT(LogAfter(s, "missing", 0), IsEmpty());
  EXPECT_THAT(LogAfter(s, "other", 0), ElementsAre(Commit("other", 5, {Put(1, "x", "x")})));
}

// A writer states the newest commit it had seen (CommitRecord::previous_ts): storage refuses
// the batch when the tenant has a newer one (another writer's), and writes none of it.
TEST_P(StorageConformanceTest, ABatchOfAStaleWriterIsRefusedWhole) {
  Storage& s = storage();
  auto stated = [](CommitRecord c, std::optional<Timestamp> previous) {
    c.previous_ts = previous;
    return c;
  };
  ASSERT_TRUE(WriteAll(s, {stated(Commit("t", 1, {Put(1, "k", "1")}), 0)}).ok())
      << "a new tenant: nothing newer than 0";
  ASSERT_TRUE(WriteAll(s, {stated(Commit("t", 3, {Put(1, "k", "3")}), 1)}).ok());
  // The writer knew of ts 1 only: ts 3 is another's.
  absl::Status stale = WriteAll(s, {stated(Commit("u", 1, {Put(1, "k", "u")}), 0),
                                    stated(Commit("t", 5, {Put(1, "k", "5")}), 1),
                                    stated(Commit("t", 6, {Put(1, "j", "6")}), 5)});
  EXPECT_EQ(stale.code(), absl::StatusCode::kFailedPrecondition) << stale;
  EXPECT_TRUE(IsStaleWriter(stale)) << stale;
  EXPECT_NE(stale.message().find("'t'"), absl::string_view::npos) << "names the tenant: " << stale;
  EXPECT_EQ(MaxTs(s, "t"), 3u);
  EXPECT_EQ(MaxTs(s, "u"), 0u) << "the batch's other tenant was not written either";
  EXPECT_EQ(GetAt(s, "t", 1, "k", kForever), (IndexEntry{"k", "3", 3}));
  // Unstated: not checked; stated and current: written.
  ASSERT_TRUE(WriteAll(s, {stated(Commit("t", 7, {Put(1, "k", "7")}), std::nullopt)}).ok());
  ASSERT_TRUE(WriteAll(s, {stated(Commit("t", 8, {Put(1, "k", "8")}), 7)}).ok());
  EXPECT_EQ(GetAt(s, "t", 1, "k", kForever), (IndexEntry{"k", "8", 8}));
  EXPECT_FALSE(IsStaleWriter(absl::FailedPreconditionError("another failure")));
  // The other writer's clock ran ahead: its commit (ts 20) is also after this batch's
  // timestamp. Still a stale writer (it reloads and retries), not a caller's mistake.
  ASSERT_TRUE(WriteAll(s, {stated(Commit("t", 20, {Put(1, "k", "20")}), 8)}).ok());
  absl::Status behind = WriteAll(s, {stated(Commit("t", 10, {Put(1, "k", "10")}), 8)});
  EXPECT_TRUE(IsStaleWriter(behind)) << behind;
  EXPECT_EQ(MaxTs(s, "t"), 20u);
  // Unstated, or stated and current, a timestamp not after the newest is the caller's.
  absl::Status not_after = WriteAll(s, {stated(Commit("t", 20, {Put(1, "k", "x")}), 20)});
  EXPECT_EQ(not_after.code(), absl::StatusCode::kInvalidArgument) << not_after;
}

// A writer that knew of a commit storage no longer has (the tenant was deleted since, perhaps
// created again) is refused: writing would bring the deleted tenant back from its state.
TEST_P(StorageConformanceTest, ABatchBuiltOnADeletedTenantIsRefused) {
  Storage& s = storage();
  auto stated = [](CommitRecord c, std::optional<Timestamp> previous) {
    c.previous_ts = previous;
    return c;
  };
  ASSERT_TRUE(WriteAll(s, {stated(Commit("t", 1, {Put(1, "k", "1")}), 0)}).ok());
  ASSERT_TRUE(WriteAll(s, {stated(Commit("t", 3, {Put(1, "k", "3")}), 1)}).ok());
  ASSERT_TRUE(s.DeleteTenant("t").ok());
  absl::Status gone = WriteAll(s, {stated(Commit("u", 1, {Put(1, "k", "u")}), 0),
                                   stated(Commit("t", 5, {Put(1, "k", "5")}), 3)});
  EXPECT_EQ(gone.code(), absl::StatusCode::kNotFound) << gone;
  EXPECT_TRUE(IsTenantDeletedElsewhere(gone)) << gone;
  EXPECT_FALSE(IsStaleWriter(gone)) << gone;
  EXPECT_NE(gone.message().find("'t'"), absl::string_view::npos) << "names the tenant: " << gone;
  EXPECT_EQ(MaxTs(s, "t"), 0u) << "the deleted tenant was not written again";
  EXPECT_EQ(MaxTs(s, "u"), 0u) << "the batch's other tenant was not written either";
  EXPECT_THAT(Tenants(s), IsEmpty());
  // Created again, with a history older than what the writer knew of: still refused.
  ASSERT_TRUE(WriteAll(s, {stated(Commit("t", 2, {Put(1, "k", "2")}), 0)}).ok());
  EXPECT_TRUE(IsTenantDeletedElsewhere(WriteAll(s, {stated(Commit("t", 6, {}), 3)})));
  EXPECT_EQ(GetAt(s, "t", 1, "k", kForever), (IndexEntry{"k", "2", 2}));
  // Created again with a newer history: a stale writer (it reloads), as for any other writer.
  ASSERT_TRUE(WriteAll(s, {stated(Commit("t", 7, {Put(1, "k", "7")}), 2)}).ok());
  EXPECT_TRUE(IsStaleWriter(WriteAll(s, {stated(Commit("t", 8, {}), 3)})));
  EXPECT_FALSE(IsTenantDeletedElsewhere(absl::NotFoundError("another failure")));
  EXPECT_EQ(MaxTs(s, "t"), 7u);
}

TEST_P(StorageConformanceTest, MaxCommittedTimestampFollowsCommits) {
  Storage& s = storage();
  EXPECT_EQ(MaxTs(s, "t"), 0u);
  ASSERT_TRUE(WriteAll(s, {Commit("t", 1, {Put(1, "k", "v")})}).ok());
  EXPECT_EQ(MaxTs(s, "t"), 1u);
  ASSERT_TRUE(WriteAll(s, {Commit("t", 1000000000000000000u, {Del(1, "k")})}).ok());
  EXPECT_EQ(MaxTs(s, "t"), 1000000000000000000u);
  ASSERT_TRUE(WriteAll(s, {Commit("t", kForever - 1, {}), Commit("t", kForever, {})}).ok());
  EXPECT_EQ(MaxTs(s, "t"), kForever) << "the whole 64-bit range is usable";
  EXPECT_EQ(MaxTs(s, "u"), 0u);
  EXPECT_EQ(GetAt(s, "t", 1, "k", kForever - 2), std::nullopt);
}

// ---------------------------------------------------------------------------
// Tenants.

TEST_P(StorageConformanceTest, ListTenantsIsSorted) {
  Storage& s = storage();
  for (const char* t : {"m", "b", "zz", "a", "B", "b\xff", "b-2"}) {
    ASSERT_TRUE(WriteAll(s, {Commit(t, 1, {Put(1, "k", t)})}).ok());
  }
  ASSERT_TRUE(WriteAll(s, {Commit("b", 2, {Put(1, "k", "again")})}).ok());
  EXPECT_THAT(Tenants(s), ElementsAre("B", "a", "b", "b-2", "b\xff", "m", "zz"));
}

TEST_P(StorageConformanceTest, TenantsAreIsolated) {
  Storage& s = storage();
  ASSERT_TRUE(WriteAll(s, {Commit("a", 5, {Put(1, "k", "a5"), Put(1, "only-a", "x")})}).ok());
  ASSERT_TRUE(WriteAll(s, {Commit("b", 3, {Put(1, "k", "b3")})}).ok());
  ASSERT_TRUE(WriteAll(s, {Commit("ab", 1, {Put(1, "k", "ab1")})}).ok());
  EXPECT_EQ(GetAt(s, "a", 1, "k", kForever), (IndexEntry{"k", "a5", 5}));
  EXPECT_EQ(GetAt(s, "b", 1, "k", kForever), (IndexEntry{"k", "b3", 3}));
  EXPECT_EQ(GetAt(s, "b", 1, "only-a", kForever), std::nullopt);
  EXPECT_THAT(Keys(ScanAt(s, "b", 1, KeyRange::All(), kForever)), ElementsAre("k"));
  EXPECT_THAT(Keys(ScanAt(s, "ab", 1, KeyRange::All(), kForever)), ElementsAre("k"));
  EXPECT_EQ(MaxTs(s, "a"), 5u);
  EXPECT_EQ(MaxTs(s, "b"), 3u);
  // Timestamps are per tenant: "b" may commit below "a"'s newest.
  EXPECT_TRUE(WriteAll(s, {Commit("b", 4, {Put(1, "k", "b4")})}).ok());
  EXPECT_EQ(GetAt(s, "a", 1, "k", kForever), (IndexEntry{"k", "a5", 5}));
  EXPECT_THAT(LogAfter(s, "a", 0),
              ElementsAre(Commit("a", 5, {Put(1, "k", "a5"), Put(1, "only-a", "x")})));
}

TEST_P(StorageConformanceTest, DeleteTenantRemovesOnlyThatTenant) {
  Storage& s = storage();
  ASSERT_TRUE(
      WriteAll(s, {Commit("a", 1, {Put(1, "k", "a1"), Put(2, "j", "a1")}),
                   Commit("a", 2, {Put(1, "k", "a2")}), Commit("b", 1, {Put(1, "k", "b1")})})
          .ok());
  ASSERT_TRUE(s.DeleteTenant("a").ok());
  EXPECT_EQ(GetAt(s, "a", 1, "k", 1), std::nullopt);
  EXPECT_EQ(GetAt(s, "a", 1, "k", kForever), std::nullopt);
  EXPECT_THAT(ScanAt(s, "a", 1, KeyRange::All(), kForever), IsEmpty());
  EXPECT_THAT(ScanAt(s, "a", 2, KeyRange::All(), kForever), IsEmpty());
  EXPECT_THAT(LogAfter(s, "a", 0), IsEmpty());
  EXPECT_EQ(MaxTs(s, "a"), 0u);
  EXPECT_THAT(Tenants(s), ElementsAre("b"));
  EXPECT_EQ(GetAt(s, "b", 1, "k", 1), (IndexEntry{"k", "b1", 1}));
  EXPECT_THAT(LogAfter(s, "b", 0), ElementsAre(Commit("b", 1, {Put(1, "k", "b1")})));
  EXPECT_TRUE(s.DeleteTenant("a").ok()) << "deleting again is OK";
  EXPECT_TRUE(s.DeleteTenant("never").ok());

  // The name can be reused, starting afresh (timestamps from 1 again).
  ASSERT_TRUE(WriteAll(s, {Commit("a", 1, {Put(1, "new", "x")})}).ok());
  EXPECT_THAT(Keys(ScanAt(s, "a", 1, KeyRange::All(), kForever)), ElementsAre("new"));
  EXPECT_THAT(ScanAt(s, "a", 2, KeyRange::All(), kForever), IsEmpty());
  EXPECT_THAT(Tenants(s), ElementsAre("a", "b"));
}

TEST_P(StorageConformanceTest, DeleteTenantIfNewestDeletesOnlyAtThatTimestamp) {
  Storage& s = storage();
  ASSERT_TRUE(WriteAll(s, {Commit("a", 1, {Put(1, "k", "a1")}), Commit("a", 2, {Put(1, "k", "a2")}),
                           Commit("b", 1, {Put(1, "k", "b1")})})
                  .ok());
  absl::StatusOr<bool> older = s.DeleteTenantIfNewest("a", 1);
  if (absl::IsUnimplemented(older.status())) {
    GTEST_SKIP() << "adapter has no DeleteTenantIfNewest: " << older.status();
  }
  ASSERT_TRUE(older.ok()) << older.status();
  EXPECT_FALSE(*older) << "a newer commit than 1 exists";
  absl::StatusOr<bool> newer = s.DeleteTenantIfNewest("a", 3);
  ASSERT_TRUE(newer.ok()) << newer.status();
  EXPECT_FALSE(*newer) << "no commit at 3";
  absl::StatusOr<bool> none = s.DeleteTenantIfNewest("a", 0);
  ASSERT_TRUE(none.ok()) << none.status();
  EXPECT_FALSE(*none) << "the tenant has commits";
  // Nothing changed.
  EXPECT_EQ(MaxTs(s, "a"), 2u);
  EXPECT_EQ(LogAfter(s, "a", 0).size(), 2u);
  EXPECT_EQ(GetAt(s, "a", 1, "k", 1), (IndexEntry{"k", "a1", 1}));
  EXPECT_THAT(Tenants(s), ElementsAre("a", "b"));

  absl::StatusOr<bool> newest = s.DeleteTenantIfNewest("a", 2);
  ASSERT_TRUE(newest.ok()) << newest.status();
  EXPECT_TRUE(*newest);
  EXPECT_EQ(MaxTs(s, "a"), 0u);
  EXPECT_THAT(LogAfter(s, "a", 0), IsEmpty());
  EXPECT_EQ(GetAt(s, "a", 1, "k", kForever), std::nullopt);
  EXPECT_THAT(Tenants(s), ElementsAre("b"));
  EXPECT_EQ(GetAt(s, "b", 1, "k", 1), (IndexEntry{"k", "b1", 1}));

  // A tenant with no commit has newest 0: nothing to delete, and nothing newer.
  absl::StatusOr<bool> gone = s.DeleteTenantIfNewest("a", 0);
  ASSERT_TRUE(gone.ok()) << gone.status();
  EXPECT_TRUE(*gone);
  absl::StatusOr<bool> never = s.DeleteTenantIfNewest("never", 5);
  ASSERT_TRUE(never.ok()) << never.status();
  EXPECT_FALSE(*never);
  EXPECT_THAT(Tenants(s), ElementsAre("b"));

  // The name starts afresh, as after DeleteTenant.
  ASSERT_TRUE(WriteAll(s, {Commit("a", 1, {Put(1, "new", "x")})}).ok());
  EXPECT_THAT(Keys(ScanAt(s, "a", 1, KeyRange::All(), kForever)), ElementsAre("new"));
}

// ---------------------------------------------------------------------------
// Durability across a reopen (adapters with StorageFactory::reopen only).

TEST_P(StorageConformanceTest, CommittedDataSurvivesReopen) {
  Storage& before = storage();
  std::vector<CommitRecord> commits = {Commit("t", 1, {Put(1, "a", "1"), Put(2, "\0\xff"s, "x")}),
                                       Commit("t", 2, {Del(1, "a"), Put(1, "b", "2")}),
                                       Commit("u", 7, {Put(1, "a", "u")})};
  ASSERT_TRUE(WriteAll(before, commits).ok());
  ASSERT_EQ(WriteAll(before, {Commit("t", 3, {Put(1, "c", "3")}), Commit("u", 7, {})}).code(),
            absl::StatusCode::kInvalidArgument);
  ASSERT_TRUE(before.DeleteTenant("gone").ok());
  if (!Reopen()) GTEST_SKIP() << "adapter has no StorageFactory::reopen";
  Storage& s = storage();
  EXPECT_THAT(Tenants(s), ElementsAre("t", "u"));
  EXPECT_EQ(MaxTs(s, "t"), 2u);
  EXPECT_EQ(MaxTs(s, "u"), 7u);
  EXPECT_EQ(GetAt(s, "t", 1, "a", 1), (IndexEntry{"a", "1", 1}));
  EXPECT_EQ(GetAt(s, "t", 1, "a", 2), std::nullopt);
  EXPECT_EQ(GetAt(s, "t", 2, "\0\xff"s, 2), (IndexEntry{"\0\xff"s, "x", 1}));
  EXPECT_THAT(Keys(ScanAt(s, "t", 1, KeyRange::All(), kForever)), ElementsAre("b"));
  EXPECT_THAT(LogAfter(s, "t", 0), ElementsAre(commits[0], commits[1]));
  EXPECT_THAT(LogAfter(s, "u", 0), ElementsAre(commits[2]));
  EXPECT_TRUE(WriteAll(s, {Commit("t", 3, {Put(1, "c", "3")})}).ok());
  EXPECT_FALSE(WriteAll(s, {Commit("u", 7, {})}).ok());
}

TEST_P(StorageConformanceTest, DeletedTenantStaysDeletedAfterReopen) {
  Storage& before = storage();
  ASSERT_TRUE(WriteAll(before, {Commit("a", 1, {Put(1, "k", "v")}), Commit("b", 1, {})}).ok());
  ASSERT_TRUE(before.DeleteTenant("a").ok());
  if (!Reopen()) GTEST_SKIP() << "adapter has no StorageFactory::reopen";
  EXPECT_THAT(Tenants(storage()), ElementsAre("b"));
  EXPECT_EQ(GetAt(storage(), "a", 1, "k", kForever), std::nullopt);
  EXPECT_EQ(MaxTs(storage(), "a"), 0u);
}

}  // namespace
}  // namespace txfn::testing

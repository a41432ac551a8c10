// tests/storage_reference_test_util.h — checks that run a durable Storage adapter side by
// side with InMemoryStorage (the reference) and compare every answer: the same writes, the
// same reads, the same results or the same error codes.
#ifndef TXFN_TESTS_STORAGE_REFERENCE_TEST_UTIL_H_
#define TXFN_TESTS_STORAGE_REFERENCE_TEST_UTIL_H_

#include <cstdint>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "fmt/core.h"
#include "gtest/gtest.h"
#include "txfn/in_memory_storage.h"
#include "txfn/storage.h"

namespace txfn::testing_util {

// Hot keys (a version every commit, some tombstones) beside cold ones: scans at every
// timestamp, in both orders, with limits and bounds, match the reference. Adapters that
// skip over a key's history (SQLite's seek past many versions, PostgreSQL's skip scan) must
// not change the result.
inline void ExpectHotKeyScansMatchReference(Storage& storage) {
  using std::string_literals::operator""s;
  InMemoryStorage reference;
  const std::vector<std::string> keys = {"a", "b", "b\0"s, "c", "d", "e"};
  Timestamp ts = 0;
  for (int round = 0; round < 40; ++round) {
    CommitRecord c{.tenant = "t", .ts = ++ts};
    for (size_t k = 0; k < keys.size(); ++k) {
      bool hot = keys[k] == "b" || keys[k] == "d";
      if (!hot && round % 13 != static_cast<int>(k)) continue;
      std::optional<std::string> value = fmt::format("{}@{}", keys[k], ts);
      if (round % 7 == 3 && hot) value.reset();
      c.writes.push_back({1, keys[k], value});
    }
    ASSERT_TRUE(storage.Write({&c, 1}).ok());
    ASSERT_TRUE(reference.Write({&c, 1}).ok());
  }
  for (Timestamp at = 0; at <= ts + 1; ++at) {
    for (ScanOrder order : {ScanOrder::kAscending, ScanOrder::kDescending}) {
      for (size_t limit : {0, 1, 2, 3}) {
        for (const KeyRange& range :
             {KeyRange::All(), KeyRange::HalfOpen("b", "d\0"s), KeyRange::After("b")}) {
          auto got = storage.Scan("t", 1, range, at, order, limit);
          auto want = reference.Scan("t", 1, range, at, order, limit);
          ASSERT_TRUE(got.ok()) << got.status();
          ASSERT_EQ(*got, *want) << "ts " << at << " limit " << limit << " order " << order;
        }
      }
    }
  }
}

// A random history of two tenants — batches of commits with puts and tombstones over a
// small set of awkward binary keys, and retention now and then — with random Gets, Scans,
// ReadLogs and MaxCommittedTimestamps after every batch, compared with the reference
// (values, or error codes below the retention horizon).
inline void ExpectRandomHistoryMatchesReference(Storage& storage, uint64_t seed) {
  using std::string_literals::operator""s;
  std::mt19937_64 rng(seed);
  InMemoryStorage reference;
  const std::vector<std::string> tenants = {"t", "u\xff"s};
  const std::vector<std::string> keys = {""s,  "\0"s,   "a"s,    "a\0"s,  "ab"s,
                                         "b"s, "\x7f"s, "\x80"s, "\xff"s, "\xff\xff"s};
  std::vector<Timestamp> max(tenants.size(), 0);
  auto pick = [&](const auto& v) -> const auto& { return v[rng() % v.size()]; };
  auto range = [&]() {
    switch (rng() % 4) {
      case 0:
        return KeyRange::All();
      case 1:
        return KeyRange::Prefix(pick(keys));
      case 2:
        return KeyRange::After(pick(keys));
      default: {
        std::string a = pick(keys), b = pick(keys);
        if (b < a) std::swap(a, b);
        return KeyRange::HalfOpen(a, b);
      }
    }
  };
  for (int round = 0; round < 60; ++round) {
    std::vector<CommitRecord> batch;
    for (int c = 0, n = 1 + static_cast<int>(rng() % 3); c < n; ++c) {
      size_t t = rng() % tenants.size();
      CommitRecord commit{.tenant = tenants[t], .ts = max[t] += 1 + rng() % 3};
      std::vector<bool> used(keys.size() * 2, false);
      for (int w = 0, m = static_cast<int>(rng() % 5); w < m; ++w) {
        size_t k = rng() % keys.size();
        IndexId index = 1 + static_cast<IndexId>(rng() % 2);
        if (used[k * 2 + index - 1]) continue;
        used[k * 2 + index - 1] = true;
        std::optional<std::string> value;
        if (rng() % 4 != 0) value = fmt::format("{}-{}", round, w);
        commit.writes.push_back({index, keys[k], value});
      }
      batch.push_back(std::move(commit));
    }
    ASSERT_TRUE(reference.Write(batch).ok());
    ASSERT_TRUE(storage.Write(batch).ok()) << "round " << round;
    if (rng() % 6 == 0) {
      size_t t = rng() % tenants.size();
      Timestamp at = rng() % (max[t] + 1);
      size_t max_commits = rng() % 3;
      auto want = reference.ApplyRetention(tenants[t], at, max_commits);
      auto got = storage.ApplyRetention(tenants[t], at, max_commits);
      ASSERT_TRUE(want.ok() && got.ok()) << got.status();
      ASSERT_EQ(*got, *want) << "round " << round;
    }
    for (int check = 0; check < 6; ++check) {
      size_t t = rng() % tenants.size();
      const std::string& tenant = tenants[t];
      Timestamp at = rng() % (max[t] + 2);
      IndexId index = 1 + static_cast<IndexId>(rng() % 2);
      SCOPED_TRACE(fmt::format("round {} check {} ts {}", round, check, at));
      {
        const std::string& key = pick(keys);
        auto want = reference.Get(tenant, index, key, at);
        auto got = storage.Get(tenant, index, key, at);
        ASSERT_EQ(got.status().code(), want.status().code()) << got.status();
        if (want.ok()) {
          ASSERT_EQ(*got, *want);
        }
      }
      {
        KeyRange r = range();
        ScanOrder order = rng() % 2 == 0 ? ScanOrder::kAscending : ScanOrder::kDescending;
        size_t limit = rng() % 4;
        auto want = reference.Scan(tenant, index, r, at, order, limit);
        auto got = storage.Scan(tenant, index, r, at, order, limit);
        ASSERT_EQ(got.status().code(), want.status().code()) << got.status();
        if (want.ok()) {
          ASSERT_EQ(*got, *want) << r << " " << order << " limit " << limit;
        }
      }
      {
        size_t limit = rng() % 4;
        auto want = reference.ReadLog(tenant, at, limit);
        auto got = storage.ReadLog(tenant, at, limit);
        ASSERT_EQ(got.status().code(), want.status().code()) << got.status();
        if (want.ok()) {
          ASSERT_EQ(*got, *want);
        }
      }
      ASSERT_EQ(storage.MaxCommittedTimestamp(tenant).value(), max[t]);
    }
  }
  ASSERT_EQ(storage.ListTenants().value(), reference.ListTenants().value());
}

}  // namespace txfn::testing_util

#endif  // TXFN_TESTS_STORAGE_REFERENCE_TEST_UTIL_H_

// The concurrent Storage conformance tests; see
// txfn/testing/storage_conformance.h. Sized to stay well under 20 s under
// ThreadSanitizer on two cores with the in-memory adapter.
#include <atomic>
#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "lib/testing/storage_test_util.h"
#include "txfn/storage.h"
#include "txfn/testing/storage_conformance.h"

namespace txfn::testing {

namespace internal {
int LinkStorageConcurrencyConformanceTests() { return 0; }
}  // namespace internal

void StorageConcurrencyConformanceTest::SetUp() {
  ASSERT_TRUE(GetParam().make) << "StorageFactory::make is empty";
  storage_ = GetParam().make();
  ASSERT_NE(storage_, nullptr) << "StorageFactory::make returned nullptr";
}

void StorageConcurrencyConformanceTest::TearDown() { storage_.reset(); }

namespace {

using internal::Commit;
using internal::Del;
using internal::GetAt;
using internal::LogAfter;
using internal::MaxTs;
using internal::Put;
using internal::ScanAt;
using internal::Tenants;
using internal::WriteAll;
using ::testing::ElementsAreArray;

constexpr Timestamp kForever = std::numeric_limits<Timestamp>::max();
constexpr int kReaders = 2;

std::string KeyName(int i) { return "k" + std::to_string(i % 10) + std::to_string(i); }

// Readers at a timestamp <= MaxCommittedTimestamp see the same thing however
// many commits land after it.
TEST_P(StorageConcurrencyConformanceTest, ReadsAtAFixedTimestampAreRepeatable) {
  Storage& s = storage();
  for (Timestamp ts = 1; ts <= 10; ++ts) {
    std::vector<IndexWrite> writes;
    writes.reserve(6);
    for (int i = 0; i < 5; ++i)
      writes.push_back(Put(1, KeyName(static_cast<int>(ts) * 5 + i), "v"));
    if (ts > 5) writes.push_back(Del(1, KeyName(static_cast<int>(ts - 5) * 5)));
    ASSERT_TRUE(WriteAll(s, {Commit("t", ts, writes)}).ok());
  }
  constexpr Timestamp kAt = 10;
  const std::vector<IndexEntry> snapshot = ScanAt(s, "t", 1, KeyRange::All(), kAt);
  const std::vector<IndexEntry> snapshot_desc =
      ScanAt(s, "t", 1, KeyRange::All(), kAt, ScanOrder::kDescending, 7);
  const std::vector<CommitRecord> log = LogAfter(s, "t", 0);
  ASSERT_EQ(snapshot.size(), 45u);

  std::atomic<bool> done{false};
  std::atomic<int> mismatches{0};
  std::vector<std::thread> readers;
  readers.reserve(kReaders);
  for (int r = 0; r < kReaders; ++r) {
    readers.emplace_back([&, r] {
      int round = 0;
      do {
        if (ScanAt(s, "t", 1, KeyRange::All(), kAt) != snapshot) ++mismatches;
        if (ScanAt(s, "t", 1, KeyRange::All(), kAt, ScanOrder::kDescending, 7) != snapshot_desc) {
          ++mismatches;
        }
        const IndexEntry& probe = snapshot[static_cast<size_t>(round * 7 + r) % snapshot.size()];
        if (GetAt(s, "t", 1, probe.key, kAt) != probe) ++mismatches;
        if (GetAt(s, "t", 1, "late" + std::to_string(round), kAt).has_value()) ++mismatches;
        if (LogAfter(s, "t", 0, log.size()) != log) ++mismatches;
        ++round;
      } while (!done.load());
    });
  }
  // The writer overwrites, deletes and adds keys, in single commits and batches.
  Timestamp ts = kAt;
  for (int i = 0; i < 1000; ++i) {
    std::vector<CommitRecord> batch;
    for (int c = 0; c < 1 + i % 3; ++c) {
      ++ts;
      batch.push_back(Commit("t", ts,
                             {Put(1, KeyName(i * 3 + c), "new"), Del(1, KeyName(i * 3 + c + 1)),
                              Put(1, "late" + std::to_string(i), "late")}));
    }
    absl::Status status = WriteAll(s, batch);
    if (!status.ok()) {
      ADD_FAILURE() << status;  // not ASSERT: the readers must be joined
      break;
    }
  }
  done = true;
  for (auto& t : readers) t.join();
  EXPECT_EQ(mismatches.load(), 0) << "a read at a committed timestamp changed";
}

// Each commit writes the same value to three keys (two indexes); no reader
// may ever see them differ, whatever timestamp it reads at.
TEST_P(StorageConcurrencyConformanceTest, ReadersSeeWholeCommitsOnly) {
  Storage& s = storage();
  constexpr Timestamp kCommits = 2000;
  std::atomic<bool> done{false};
  std::atomic<int> torn{0};
  std::atomic<int> stale{0};
  std::atomic<int> log_gaps{0};
  std::vector<std::thread> readers;
  readers.reserve(kReaders);
  for (int r = 0; r < kReaders; ++r) {
    readers.emplace_back([&, r] {
      do {
        // At the newest committed timestamp: that commit, whole.
        Timestamp max = MaxTs(s, "t");
        if (max > 0) {
          std::string want = std::to_string(max);
          auto a = GetAt(s, "t", 1, "a", max);
          auto b = GetAt(s, "t", 1, "b", max);
          auto c = GetAt(s, "t", 2, "a", max);
          if (!a || !b || !c || a->value != want || b->value != want || c->value != want ||
              a->ts != max) {
            ++stale;
          }
          std::vector<CommitRecord> at_max = LogAfter(s, "t", max - 1, 1);
          if (at_max.size() != 1 || at_max[0].ts != max) ++log_gaps;
        }
        // Above every commit: one scan sees both keys from one commit.
        std::vector<IndexEntry> both =
            ScanAt(s, "t", 1, KeyRange::All(), kForever,
                   r % 2 == 0 ? ScanOrder::kAscending : ScanOrder::kDescending);
        if (!both.empty() && (both.size() != 2 || both[0].value != both[1].value)) ++torn;
      } while (!done.load());
    });
  }
  for (Timestamp ts = 1; ts <= kCommits; ++ts) {
    std::string v = std::to_string(ts);
    absl::Status status =
        WriteAll(s, {Commit("t", ts, {Put(1, "b", v), Put(2, "a", v), Put(1, "a", v)})});
    if (!status.ok()) {
      ADD_FAILURE() << status;  // not ASSERT: the readers must be joined
      break;
    }
  }
  done = true;
  for (auto& t : readers) t.join();
  EXPECT_EQ(torn.load(), 0) << "a scan saw part of a commit";
  EXPECT_EQ(stale.load(), 0) << "a read at MaxCommittedTimestamp missed part of that commit";
  EXPECT_EQ(log_gaps.load(), 0) << "ReadLog lacked the commit at MaxCommittedTimestamp";
}

// Writers racing to commit at MaxCommittedTimestamp + 1: exactly one wins each
// timestamp, the losers get InvalidArgument and leave no trace.
TEST_P(StorageConcurrencyConformanceTest, RacingWritersToOneTenantNeverOverlap) {
  Storage& s = storage();
  constexpr int kWriters = 3;
  constexpr int kAttempts = 200;
  std::atomic<int> won{0};
  std::atomic<int> unexpected{0};
  std::vector<std::thread> writers;
  writers.reserve(kWriters);
  for (int w = 0; w < kWriters; ++w) {
    writers.emplace_back([&, w] {
      for (int i = 0; i < kAttempts; ++i) {
        Timestamp ts = MaxTs(s, "t") + 1;
        std::string v = "w" + std::to_string(w) + "." + std::to_string(i);
        absl::Status status = WriteAll(
            s, {Commit("t", ts, {Put(1, "shared", v), Put(1, "by" + std::to_string(w), v)})});
        if (status.ok()) {
          ++won;
        } else if (status.code() != absl::StatusCode::kInvalidArgument) {
          ++unexpected;
          ADD_FAILURE() << status;
        }
      }
    });
  }
  for (auto& t : writers) t.join();
  EXPECT_EQ(unexpected.load(), 0);
  std::vector<CommitRecord> log = LogAfter(s, "t", 0);
  ASSERT_EQ(log.size(), static_cast<size_t>(won.load()));
  EXPECT_GE(won.load(), kAttempts) << "at least one writer's attempts all see a fresh max";
  for (size_t i = 0; i < log.size(); ++i) {
    ASSERT_EQ(log[i].ts, i + 1) << "winners take consecutive timestamps";
    ASSERT_EQ(log[i].writes.size(), 2u);
    EXPECT_EQ(GetAt(s, "t", 1, "shared", log[i].ts)->value, *log[i].writes[0].value);
  }
  EXPECT_EQ(MaxTs(s, "t"), log.size());
}

// Writers on separate tenants, while another thread creates and deletes a
// scratch tenant: every acknowledged commit of the kept tenants is there.
TEST_P(StorageConcurrencyConformanceTest, TenantsWrittenAndDeletedConcurrently) {
  Storage& s = storage();
  constexpr int kWriters = 2;
  constexpr Timestamp kCommits = 200;
  std::vector<std::thread> threads;
  threads.reserve(kWriters + 2);
  for (int w = 0; w < kWriters; ++w) {
    threads.emplace_back([&, w] {
      std::string tenant = "tenant" + std::to_string(w);
      for (Timestamp ts = 1; ts <= kCommits; ++ts) {
        // Batches that also touch the scratch tenant fail or succeed whole.
        EXPECT_TRUE(
            WriteAll(s, {Commit(tenant, ts, {Put(1, std::to_string(ts % 17), tenant)})}).ok());
      }
    });
  }
  threads.emplace_back([&] {
    Timestamp ts = 0;
    for (int i = 0; i < 100; ++i) {
      ASSERT_TRUE(WriteAll(s, {Commit("scratch", ++ts, {Put(1, "k", "v")})}).ok());
      if (i % 3 == 2) {
        ASSERT_TRUE(s.DeleteTenant("scratch").ok());
        EXPECT_EQ(MaxTs(s, "scratch"), 0u);
        ts = 0;
      }
    }
  });
  threads.emplace_back([&] {
    for (int i = 0; i < 100; ++i) {
      std::vector<std::string> tenants = Tenants(s);
      for (size_t j = 1; j < tenants.size(); ++j) EXPECT_LT(tenants[j - 1], tenants[j]);
    }
  });
  for (auto& t : threads) t.join();
  for (int w = 0; w < kWriters; ++w) {
    std::string tenant = "tenant" + std::to_string(w);
    EXPECT_EQ(MaxTs(s, tenant), kCommits);
    EXPECT_EQ(LogAfter(s, tenant, 0).size(), kCommits);
    EXPECT_EQ(ScanAt(s, tenant, 1, KeyRange::All(), kForever).size(), 17u);
  }
  EXPECT_THAT(Tenants(s), ElementsAreArray({"scratch", "tenant0", "tenant1"}));
}

// A writer commits to one tenant while another thread deletes it if its newest
// commit is the one it just read (DeleteTenantIfNewest). Each round lets the
// writer's next commit go just as the delete starts, so the two race: a commit
// that lands between the delete's check and its delete would be lost. In the
// end the tenant must hold exactly the commits after the newest one deleted.
TEST_P(StorageConcurrencyConformanceTest, DeleteTenantIfNewestNeverDeletesANewerCommit) {
  Storage& s = storage();
  absl::StatusOr<bool> probe = s.DeleteTenantIfNewest("t", 0);
  if (absl::IsUnimplemented(probe.status())) GTEST_SKIP() << "adapter has no DeleteTenantIfNewest";
  ASSERT_TRUE(probe.ok()) << probe.status();
  constexpr Timestamp kCommits = 300;
  std::atomic<Timestamp> released{0};  // the writer may commit timestamps up to this
  std::thread writer([&] {
    for (Timestamp ts = 1; ts <= kCommits; ++ts) {
      while (released.load() < ts) std::this_thread::yield();
      // Timestamps only rise, so each is above the tenant's newest, deleted or not.
      EXPECT_TRUE(WriteAll(s, {Commit("t", ts, {Put(1, "k", std::to_string(ts))})}).ok());
    }
  });
  Timestamp deleted_up_to = 0;
  int deletes = 0;
  for (Timestamp round = 1; round <= kCommits; ++round) {
    const Timestamp newest = MaxTs(s, "t");
    released.store(round);
    absl::StatusOr<bool> deleted = s.DeleteTenantIfNewest("t", newest);
    if (!deleted.ok()) {
      ADD_FAILURE() << deleted.status();
      released.store(kCommits);  // lets the writer finish before the join
      break;
    }
    if (*deleted && newest > 0) {
      EXPECT_GT(newest, deleted_up_to);
      deleted_up_to = newest;
      ++deletes;
    }
  }
  writer.join();
  if (HasFailure()) return;
  std::vector<CommitRecord> log = LogAfter(s, "t", 0);
  ASSERT_EQ(log.size(), kCommits - deleted_up_to)
      << deletes << " deletes, the last of the commits up to " << deleted_up_to;
  for (size_t i = 0; i < log.size(); ++i) EXPECT_EQ(log[i].ts, deleted_up_to + 1 + i);
  EXPECT_EQ(MaxTs(s, "t"), deleted_up_to == kCommits ? 0 : kCommits);
}

// Retention running beside a writer and readers: reads at a timestamp at or
// above every horizon applied stay exact, and the writer is never refused.
TEST_P(StorageConcurrencyConformanceTest, RetentionBesideWritersAndReadersKeepsReadsExact) {
  Storage& s = storage();
  constexpr int kKeys = 20;
  for (Timestamp ts = 1; ts <= 50; ++ts) {
    ASSERT_TRUE(
        WriteAll(
            s, {Commit("t", ts,
                       {Put(1, KeyName(static_cast<int>(ts) % kKeys), "v" + std::to_string(ts))})})
            .ok());
  }
  absl::StatusOr<RetentionResult> probe = s.ApplyRetention("t", 0, 0);
  if (absl::IsUnimplemented(probe.status())) GTEST_SKIP() << "adapter keeps every version";
  ASSERT_TRUE(probe.ok()) << probe.status();
  // Readers read at kAt; retention runs below it, the writer above it.
  constexpr Timestamp kAt = 50;
  const std::vector<IndexEntry> snapshot = ScanAt(s, "t", 1, KeyRange::All(), kAt);
  ASSERT_EQ(snapshot.size(), static_cast<size_t>(kKeys));
  std::atomic<bool> done{false};
  std::atomic<int> mismatches{0};
  std::vector<std::thread> readers;
  readers.reserve(kReaders);
  for (int r = 0; r < kReaders; ++r) {
    readers.emplace_back([&, r] {
      int round = 0;
      do {
        if (ScanAt(s, "t", 1, KeyRange::All(), kAt) != snapshot) ++mismatches;
        const IndexEntry& entry = snapshot[static_cast<size_t>(round + r) % snapshot.size()];
        if (GetAt(s, "t", 1, entry.key, kAt) != entry) ++mismatches;
        ++round;
      } while (!done.load());
    });
  }
  std::thread retention([&] {
    for (Timestamp ts = 1; ts <= kAt && !done.load(); ts += 3) {
      absl::StatusOr<RetentionResult> r = s.ApplyRetention("t", ts, 2);
      if (!r.ok() || r->horizon > kAt) ++mismatches;
    }
  });
  Timestamp ts = kAt;
  for (int i = 0; i < 500; ++i) {
    ++ts;
    absl::Status status =
        WriteAll(s, {Commit("t", ts, {Put(1, KeyName(i % kKeys), "w" + std::to_string(ts))})});
    if (!status.ok()) {
      ADD_FAILURE() << status;
      break;
    }
  }
  retention.join();
  done = true;
  for (auto& t : readers) t.join();
  EXPECT_EQ(mismatches.load(), 0) << "a read at or above the horizon changed";
  absl::StatusOr<RetentionResult> last = s.ApplyRetention("t", ts, 0);
  ASSERT_TRUE(last.ok()) << last.status();
  EXPECT_EQ(last->horizon, ts);
  EXPECT_EQ(ScanAt(s, "t", 1, KeyRange::All(), ts).size(), static_cast<size_t>(kKeys));
}

}  // namespace
}  // namespace txfn::testing

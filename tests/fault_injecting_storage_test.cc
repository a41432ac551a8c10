// FaultInjectingStorage: faults, delays and counts; and with no faults
// configured it is a conforming Storage.
#include "txfn/testing/fault_injecting_storage.h"

#include <atomic>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "txfn/in_memory_storage.h"
#include "txfn/storage.h"
#include "txfn/testing/storage_conformance.h"

TXFN_INSTANTIATE_STORAGE_CONFORMANCE(FaultInjectingPassThrough, [] {
  return std::make_unique<txfn::testing::FaultInjectingStorage>(
      std::make_shared<txfn::InMemoryStorage>(), /*seed=*/1);
});

namespace txfn::testing {
namespace {

CommitRecord Commit(Timestamp ts) {
  return CommitRecord{.tenant = "t", .ts = ts, .writes = {{.index = 1, .key = "k", .value = "v"}}};
}

// Calls `method` once on `s` and returns its status.
absl::Status Call(FaultInjectingStorage& s, StorageMethod method) {
  switch (method) {
    case StorageMethod::kWrite: {
      auto max = s.base().MaxCommittedTimestamp("t");  // not through the faults
      CommitRecord c = Commit((max.ok() ? *max : 1000) + 1);
      return s.Write({&c, 1});
    }
    case StorageMethod::kGet:
      return s.Get("t", 1, "k", 100).status();
    case StorageMethod::kScan:
      return s.Scan("t", 1, KeyRange::All(), 100, ScanOrder::kAscending, 0).status();
    case StorageMethod::kReadLog:
      return s.ReadLog("t", 0, 0).status();
    case StorageMethod::kMaxCommittedTimestamp:
      return s.MaxCommittedTimestamp("t").status();
    case StorageMethod::kListTenants:
      return s.ListTenants().status();
    case StorageMethod::kDeleteTenant:
      return s.DeleteTenant("nobody");
    case StorageMethod::kApplyRetention:
      return s.ApplyRetention("t", /*ts=*/0, 0).status();  // drops nothing
    case StorageMethod::kDeleteTenantIfNewest:
      return s.DeleteTenantIfNewest("nobody", 0).status();
  }
  return absl::InternalError("unreachable");
}

const StorageMethod kAllMethods[] = {StorageMethod::kWrite,
                                     StorageMethod::kGet,
                                     StorageMethod::kScan,
                                     StorageMethod::kReadLog,
                                     StorageMethod::kMaxCommittedTimestamp,
                                     StorageMethod::kListTenants,
                                     StorageMethod::kDeleteTenant,
                                     StorageMethod::kApplyRetention,
                                     StorageMethod::kDeleteTenantIfNewest};

TEST(FaultInjectingStorageTest, FailNextFailsExactlyNCallsOfThatMethodOnly) {
  for (StorageMethod method : kAllMethods) {
    SCOPED_TRACE(StorageMethodName(method));
    auto base = std::make_shared<InMemoryStorage>();
    FaultInjectingStorage s(base);
    s.FailNext(method, 2);
    for (StorageMethod other : kAllMethods) {
      if (other != method) {
        EXPECT_TRUE(Call(s, other).ok()) << StorageMethodName(other);
      }
    }
    EXPECT_EQ(Call(s, method).code(), absl::StatusCode::kUnavailable);
    EXPECT_EQ(Call(s, method).code(), absl::StatusCode::kUnavailable);
    EXPECT_TRUE(Call(s, method).ok());
    EXPECT_TRUE(Call(s, method).ok());
    EXPECT_EQ(s.failures(method), 2);
    EXPECT_GE(s.calls(method), 4);
  }
}

TEST(FaultInjectingStorageTest, FailedWriteNeverReachesTheBase) {
  auto base = std::make_shared<InMemoryStorage>();
  FaultInjectingStorage s(base);
  s.FailNext(StorageMethod::kWrite, 1, absl::DataLossError("disk on fire"));
  CommitRecord c = Commit(5);
  absl::Status status = s.Write({&c, 1});
  EXPECT_EQ(status.code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(status.message(), "disk on fire");
  EXPECT_EQ(*base->MaxCommittedTimestamp("t"), 0u);
  EXPECT_TRUE(base->ListTenants()->empty());
  ASSERT_TRUE(s.Write({&c, 1}).ok()) << "the retry goes through";
  EXPECT_EQ(*base->MaxCommittedTimestamp("t"), 5u);
  EXPECT_EQ(s.calls(StorageMethod::kWrite), 2);
  EXPECT_EQ(s.failures(StorageMethod::kWrite), 1);
}

TEST(FaultInjectingStorageTest, FailedDeleteTenantKeepsTheTenant) {
  InMemoryStorage base;
  FaultInjectingStorage s(&base);
  CommitRecord c = Commit(5);
  ASSERT_TRUE(s.Write({&c, 1}).ok());
  s.FailNext(StorageMethod::kDeleteTenant, 1);
  EXPECT_FALSE(s.DeleteTenant("t").ok());
  EXPECT_EQ(*base.MaxCommittedTimestamp("t"), 5u);
}

TEST(FaultInjectingStorageTest, PassesResultsThroughUnchanged) {
  auto base = std::make_shared<InMemoryStorage>();
  FaultInjectingStorage s(base);
  CommitRecord c = Commit(5);
  ASSERT_TRUE(s.Write({&c, 1}).ok());
  EXPECT_EQ(**s.Get("t", 1, "k", 5), (IndexEntry{"k", "v", 5}));
  EXPECT_EQ(s.Scan("t", 1, KeyRange::All(), 5, ScanOrder::kAscending, 0)->size(), 1u);
  EXPECT_EQ(*s.ReadLog("t", 0, 0), std::vector<CommitRecord>{c});
  EXPECT_EQ(*s.MaxCommittedTimestamp("t"), 5u);
  EXPECT_EQ(*s.ListTenants(), std::vector<std::string>{"t"});
  EXPECT_EQ(&s.base(), base.get());
  // A rejected write's own error comes back from the base, counted as a call, not a fault.
  EXPECT_EQ(s.Write({&c, 1}).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(s.calls(StorageMethod::kWrite), 2);
  EXPECT_EQ(s.failures(StorageMethod::kWrite), 0);
}

TEST(FaultInjectingStorageTest, AFaultAfterForwardingLetsTheCallTakeEffect) {
  auto base = std::make_shared<InMemoryStorage>();
  FaultInjectingStorage s(base);
  s.FailNextAfterForwarding(StorageMethod::kWrite, 1);
  CommitRecord c = Commit(5);
  absl::Status status = s.Write({&c, 1});
  EXPECT_EQ(status.code(), absl::StatusCode::kUnavailable);
  EXPECT_TRUE(IsCommitOutcomeUnknown(status)) << status;
  EXPECT_EQ(*base->MaxCommittedTimestamp("t"), 5u) << "the write landed";
  EXPECT_EQ(*s.MaxCommittedTimestamp("t"), 5u) << "and reads through the wrapper show it";
  EXPECT_EQ(s.failures(StorageMethod::kWrite), 1);
  CommitRecord next = Commit(6);
  EXPECT_TRUE(s.Write({&next, 1}).ok());

  // A call that fails in the base reports the base's error, not the fault.
  s.FailNextAfterForwarding(StorageMethod::kWrite, 1);
  EXPECT_EQ(s.Write({&c, 1}).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(s.failures(StorageMethod::kWrite), 1);
  // Other methods and statuses.
  s.FailNextAfterForwarding(StorageMethod::kGet, 1, absl::DeadlineExceededError("late"));
  EXPECT_EQ(Call(s, StorageMethod::kGet).code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_TRUE(Call(s, StorageMethod::kGet).ok());
  s.FailWithProbabilityAfterForwarding(StorageMethod::kScan, 1.0);
  EXPECT_TRUE(IsCommitOutcomeUnknown(Call(s, StorageMethod::kScan)));
  s.ClearFaults();
  EXPECT_TRUE(Call(s, StorageMethod::kScan).ok());
}

TEST(FaultInjectingStorageTest, AFailedSyncIsInDoubtUntilTheCrashDropsOrKeepsIt) {
  for (UnsyncedWrites mode : {UnsyncedWrites::kDrop, UnsyncedWrites::kKeep}) {
    SCOPED_TRACE(mode == UnsyncedWrites::kDrop ? "drop" : "keep");
    auto base = std::make_shared<InMemoryStorage>();
    FaultInjectingStorage s(base);
    CommitRecord first = Commit(5);
    ASSERT_TRUE(s.Write({&first, 1}).ok());
    s.FailSyncNext(1);
    CommitRecord unsynced = Commit(6);
    absl::Status status = s.Write({&unsynced, 1});
    EXPECT_TRUE(IsCommitOutcomeUnknown(status)) << status;
    EXPECT_EQ(s.unsynced_batches(), 1u);
    EXPECT_EQ(*base->MaxCommittedTimestamp("t"), 5u) << "not in the base yet";
    // In doubt: nothing that would tell what is committed, or change it.
    for (StorageMethod method : kAllMethods) {
      absl::Status call = Call(s, method);
      if (method == StorageMethod::kGet || method == StorageMethod::kScan) {
        EXPECT_TRUE(call.ok()) << StorageMethodName(method) << ": " << call;
      } else {
        EXPECT_EQ(call.code(), absl::StatusCode::kUnavailable) << StorageMethodName(method);
        EXPECT_FALSE(IsCommitOutcomeUnknown(call)) << "a refusal is definite";
      }
    }
    ASSERT_TRUE(s.SimulateCrash(mode).ok());
    EXPECT_EQ(s.unsynced_batches(), 0u);
    EXPECT_EQ(*s.MaxCommittedTimestamp("t"), mode == UnsyncedWrites::kKeep ? 6u : 5u);
    CommitRecord after = Commit(7);
    EXPECT_TRUE(s.Write({&after, 1}).ok()) << "serving again";
  }
}

TEST(FaultInjectingStorageTest, AnInvalidBatchIsRefusedRatherThanHeldUnsynced) {
  InMemoryStorage base;
  FaultInjectingStorage s(&base);
  s.FailSyncNext(1);
  CommitRecord bad{.tenant = "", .ts = 1};
  EXPECT_EQ(s.Write({&bad, 1}).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(s.unsynced_batches(), 0u);
}

std::vector<bool> FailurePattern(uint64_t seed, double p, int n) {
  InMemoryStorage base;
  FaultInjectingStorage s(&base, seed);
  s.FailWithProbability(StorageMethod::kGet, p, absl::AbortedError("flaky"));
  std::vector<bool> failed;
  for (int i = 0; i < n; ++i) {
    absl::Status status = Call(s, StorageMethod::kGet);
    if (!status.ok()) {
      EXPECT_EQ(status.code(), absl::StatusCode::kAborted);
    }
    failed.push_back(!status.ok());
  }
  return failed;
}

TEST(FaultInjectingStorageTest, ProbabilisticFailuresAreSeededAndRoughlyP) {
  std::vector<bool> a = FailurePattern(42, 0.25, 2000);
  EXPECT_EQ(a, FailurePattern(42, 0.25, 2000)) << "same seed, same failures";
  EXPECT_NE(a, FailurePattern(43, 0.25, 2000)) << "another seed, other failures";
  int64_t failures = std::count(a.begin(), a.end(), true);
  EXPECT_GT(failures, 400);  // mean 500, sd ~19
  EXPECT_LT(failures, 600);
  std::vector<bool> never = FailurePattern(42, 0.0, 200);
  EXPECT_EQ(std::count(never.begin(), never.end(), true), 0);
  std::vector<bool> always = FailurePattern(42, 1.0, 200);
  EXPECT_EQ(std::count(always.begin(), always.end(), true), 200);
}

TEST(FaultInjectingStorageTest, FailNextComesBeforeProbabilityAndClearFaultsStopsBoth) {
  InMemoryStorage base;
  FaultInjectingStorage s(&base, 7);
  s.FailWithProbability(StorageMethod::kScan, 1.0, absl::AbortedError("p"));
  s.FailNext(StorageMethod::kScan, 1, absl::ResourceExhaustedError("next"));
  EXPECT_EQ(Call(s, StorageMethod::kScan).code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(Call(s, StorageMethod::kScan).code(), absl::StatusCode::kAborted);
  s.FailNext(StorageMethod::kScan, 5);
  s.ClearFaults();
  EXPECT_TRUE(Call(s, StorageMethod::kScan).ok());
  EXPECT_EQ(s.calls(StorageMethod::kScan), 3);
  s.ResetCounts();
  EXPECT_EQ(s.calls(StorageMethod::kScan), 0);
  EXPECT_EQ(s.failures(StorageMethod::kScan), 0);
}

TEST(FaultInjectingStorageTest, DelayIsAppliedToThatMethod) {
  InMemoryStorage base;
  FaultInjectingStorage s(&base);
  s.SetDelay(StorageMethod::kListTenants, absl::Milliseconds(20));
  absl::Time start = absl::Now();
  EXPECT_TRUE(Call(s, StorageMethod::kListTenants).ok());
  // A lower bound only: sleeping at least the delay is the behaviour.
  EXPECT_GE(absl::Now() - start, absl::Milliseconds(20));
  s.SetDelay(StorageMethod::kListTenants, absl::ZeroDuration());
  s.FailNext(StorageMethod::kGet, 1);
  s.SetDelay(StorageMethod::kGet, absl::Milliseconds(20));
  start = absl::Now();
  EXPECT_FALSE(Call(s, StorageMethod::kGet).ok());
  EXPECT_GE(absl::Now() - start, absl::Milliseconds(20)) << "failed calls are delayed too";
}

TEST(FaultInjectingStorageTest, CountsAreExactUnderConcurrentCalls) {
  auto base = std::make_shared<InMemoryStorage>();
  FaultInjectingStorage s(base, 3);
  s.FailWithProbability(StorageMethod::kGet, 0.5);
  s.FailNext(StorageMethod::kScan, 100);
  std::atomic<int> get_failures{0};
  std::atomic<int> scan_failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 250; ++i) {
        if (!Call(s, StorageMethod::kGet).ok()) ++get_failures;
        if (!Call(s, StorageMethod::kScan).ok()) ++scan_failures;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(s.calls(StorageMethod::kGet), 1000);
  EXPECT_EQ(s.failures(StorageMethod::kGet), get_failures.load());
  EXPECT_EQ(s.calls(StorageMethod::kScan), 1000);
  EXPECT_EQ(scan_failures.load(), 100);
}

}  // namespace
}  // namespace txfn::testing

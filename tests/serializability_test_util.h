// tests/serializability_test_util.h — the bank workload of the serialisability tests, for
// every Storage adapter.
//
// Threads run random bank transfers and range readers (some of which write) through the
// committer with retries. Afterwards the committed history is replayed serially in
// timestamp order: every value every committed transaction read must equal what the serial
// execution had at that point, and the total balance never changes. An adapter's test
// derives from SerializabilityTest and overrides MakeBase.
#ifndef TXFN_TESTS_SERIALIZABILITY_TEST_UTIL_H_
#define TXFN_TESTS_SERIALIZABILITY_TEST_UTIL_H_

#include <algorithm>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "txfn/committer.h"
#include "txfn/in_memory_storage.h"
#include "txfn/internal/mutex.h"
#include "txfn/retry.h"
#include "txfn/status_macros.h"
#include "txfn/testing/fault_injecting_storage.h"
#include "txfn/transaction.h"
#include "txn_test_util.h"

namespace txfn::testing_util {

using ::txfn::testing::FaultInjectingStorage;
using ::txfn::testing::StorageMethod;

constexpr int kAccounts = 8;
constexpr int64_t kInitialBalance = 100;

// One committed transaction as observed by its body on the attempt that
// committed.
struct Observed {
  Timestamp ts = 0;  // commit ts; for read-only ones the begin ts
  bool read_only = false;
  bool wrote = false;                                   // wrote anything (a transfer or a note)
  std::vector<std::pair<std::string, int64_t>> reads;   // id -> balance seen
  std::vector<std::pair<std::string, int64_t>> writes;  // id -> balance written
  // For range reads: the ids the range returned, in order, and the range.
  std::vector<std::string> range_ids;
  std::string range_from;  // owner lower bound (inclusive)
  size_t range_limit = 0;
};

// The fixture: a bank of kAccounts accounts in tenant "t", through a committer over a
// FaultInjectingStorage over the adapter under test (MakeBase; InMemoryStorage unless
// overridden).
class SerializabilityTest : public ::testing::Test {
 protected:
  // The storage under test; nullptr skips the test.
  virtual std::shared_ptr<Storage> MakeBase() { return std::make_shared<InMemoryStorage>(); }

  void SetUp() override {
    base_ = MakeBase();
    if (base_ == nullptr) GTEST_SKIP() << "no storage to test";
    storage_ = std::make_shared<FaultInjectingStorage>(base_, /*seed=*/7);
    committer_ = OpenWithSchema(storage_);
    Transaction txn(committer_->Latest());
    for (int i = 0; i < kAccounts; ++i) {
      std::string owner = Owner(i);
      std::string id =
          txn.Insert("accounts", Obj({{"owner", Str(owner)}, {"balance", I64(kInitialBalance)}}))
              .value();
      ids_.push_back(id);
      owners_[id] = owner;
    }
    ASSERT_TRUE(committer_->Commit(txn.Prepare()).ok());
  }

  static std::string Owner(int i) { return "acct" + std::to_string(10 + i); }

  // A transfer between two random accounts.
  absl::Status Transfer(Transaction& txn, std::mt19937_64& rng, Observed& seen) {
    seen = Observed{};
    size_t from = rng() % kAccounts, to = (from + 1 + rng() % (kAccounts - 1)) % kAccounts;
    int64_t amount = 1 + static_cast<int64_t>(rng() % 20);
    TXFN_ASSIGN_OR_RETURN(std::optional<Value> a, txn.Get(ids_[from]));
    TXFN_ASSIGN_OR_RETURN(std::optional<Value> b, txn.Get(ids_[to]));
    int64_t balance_a = a->Find("balance")->int64(), balance_b = b->Find("balance")->int64();
    seen.reads = {{ids_[from], balance_a}, {ids_[to], balance_b}};
    if (balance_a < amount) return absl::OkStatus();  // read-only this time
    // Widen the window between reading and committing now and then, so the
    // threads overlap even on a loaded machine.
    if (rng() % 4 == 0) absl::SleepFor(absl::Microseconds(50));
    TXFN_RETURN_IF_ERROR(txn.Patch(ids_[from], Obj({{"balance", I64(balance_a - amount)}})));
    TXFN_RETURN_IF_ERROR(txn.Patch(ids_[to], Obj({{"balance", I64(balance_b + amount)}})));
    seen.writes = {{ids_[from], balance_a - amount}, {ids_[to], balance_b + amount}};
    seen.wrote = true;
    return absl::OkStatus();
  }

  // Reads a limited range of accounts by owner; sometimes records the sum.
  absl::Status RangeRead(Transaction& txn, std::mt19937_64& rng, Observed& seen) {
    seen = Observed{};
    seen.range_from = Owner(static_cast<int>(rng() % kAccounts));
    seen.range_limit = 1 + rng() % 4;
    TXFN_ASSIGN_OR_RETURN(QueryPage page,
                          txn.Query({.table = "accounts",
                                     .index = "by_owner",
                                     .lower = IndexBound{Str(seen.range_from), true},
                                     .limit = seen.range_limit}));
    int64_t sum = 0;
    for (const Value& doc : page.documents) {
      seen.range_ids.push_back(doc.Find("_id")->string());
      seen.reads.emplace_back(doc.Find("_id")->string(), doc.Find("balance")->int64());
      sum += doc.Find("balance")->int64();
    }
    if (rng() % 2 == 0) {
      seen.wrote = true;
      return txn.Insert("notes", Obj({{"sum", I64(sum)}})).status();
    }
    return absl::OkStatus();
  }

  void RunWorkload(int threads, int ops_per_thread, bool allow_failures) {
    std::vector<std::thread> workers;
    for (int t = 0; t < threads; ++t) {
      workers.emplace_back([this, t, ops_per_thread, allow_failures] {
        std::mt19937_64 rng(1000 + t);
        for (int i = 0; i < ops_per_thread; ++i) {
          bool transfer = rng() % 10 < 7;
          Observed seen;
          uint64_t seed = rng();
          auto outcome = RunTransaction(
              *committer_,
              [&](Transaction& txn) {
                std::mt19937_64 op_rng(seed);  // the same choice on every attempt
                return transfer ? Transfer(txn, op_rng, seen) : RangeRead(txn, op_rng, seen);
              },
              {.max_attempts = 100, .initial_backoff = absl::Microseconds(20)});
          if (!outcome.ok()) {
            ASSERT_TRUE(allow_failures) << outcome.status();
            ASSERT_EQ(outcome.status().code(), absl::StatusCode::kUnavailable) << outcome.status();
            continue;
          }
          seen.ts = outcome->commit_ts;
          seen.read_only = !seen.wrote;
          internal::MutexLock lock(&mu_);
          history_.push_back(std::move(seen));
        }
      });
    }
    for (std::thread& w : workers) w.join();
  }

  // Replays the history serially and checks every read.
  void VerifyHistory() {
    internal::MutexLock lock(&mu_);
    std::map<std::string, int64_t> model;
    for (const std::string& id : ids_) model[id] = kInitialBalance;
    // Read-only transactions serialise at their begin ts, after every commit
    // with a ts <= it; writers at their commit ts (unique).
    std::stable_sort(history_.begin(), history_.end(), [](const Observed& a, const Observed& b) {
      if (a.ts != b.ts) return a.ts < b.ts;
      return !a.read_only && b.read_only;  // the commit at ts happened before a read at ts
    });
    for (size_t i = 1; i < history_.size(); ++i) {
      if (!history_[i].read_only && !history_[i - 1].read_only) {
        ASSERT_NE(history_[i].ts, history_[i - 1].ts) << "two commits share a timestamp";
      }
    }
    // Owner order of ids for range reads.
    std::vector<std::pair<std::string, std::string>> by_owner;
    for (const auto& [id, owner] : owners_) by_owner.emplace_back(owner, id);
    std::sort(by_owner.begin(), by_owner.end());
    for (const Observed& o : history_) {
      for (const auto& [id, balance] : o.reads) {
        ASSERT_EQ(model[id], balance)
            << "a committed transaction at ts " << o.ts << " read a value no serial order explains";
      }
      if (o.range_limit > 0) {
        std::vector<std::string> expected;
        for (const auto& [owner, id] : by_owner) {
          if (owner >= o.range_from && expected.size() < o.range_limit) expected.push_back(id);
        }
        ASSERT_EQ(o.range_ids, expected);
      }
      for (const auto& [id, balance] : o.writes) model[id] = balance;
    }
    // The final state is the serial replay's, and money was conserved.
    Transaction txn(committer_->Latest());
    int64_t total = 0;
    for (const std::string& id : ids_) {
      int64_t balance = txn.Get(id).value()->Find("balance")->int64();
      EXPECT_EQ(balance, model[id]);
      total += balance;
    }
    EXPECT_EQ(total, kAccounts * kInitialBalance);
  }

  std::shared_ptr<Storage> base_;
  std::shared_ptr<FaultInjectingStorage> storage_;
  std::unique_ptr<Committer> committer_;
  std::vector<std::string> ids_;
  std::map<std::string, std::string> owners_;
  internal::Mutex mu_;
  std::vector<Observed> history_ ABSL_GUARDED_BY(mu_);
};

}  // namespace txfn::testing_util

#endif  // TXFN_TESTS_SERIALIZABILITY_TEST_UTIL_H_

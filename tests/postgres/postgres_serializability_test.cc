// Serialisability over PostgresStorage: the bank workload of tests/serializability_test_util.h
// through a committer, with no faults, with injected storage faults, and with answers of
// real commits lost on the wire (the client's socket broken after the batch was sent).
#include <sys/socket.h>

#include <atomic>
#include <memory>

#include "gtest/gtest.h"
#include "tests/postgres/pg_storage_test_util.h"
#include "tests/postgres/pg_test_util.h"
#include "tests/serializability_test_util.h"
#include "txfn/postgres_storage.h"

namespace txfn {
namespace {

using ::txfn::testing::StorageMethod;
using ::txfn::testing::TempPostgresStorage;

class PgSerializabilityTest : public testing_util::SerializabilityTest {
 protected:
  std::shared_ptr<Storage> MakeBase() override {
    if (::txfn::testing::PgServerUrl().empty()) return nullptr;
    // Resolution deferred: a lost answer is an unknown outcome the committer resolves.
    return std::shared_ptr<Storage>(
        TempPostgresStorage::Make({.outcome_resolution_timeout = absl::ZeroDuration(),
                                   .after_write_sent = [this](int socket, int) {
                                     if (lose_answers_.load() && writes_.fetch_add(1) % 8 == 0) {
                                       (void)shutdown(socket, SHUT_RDWR);
                                       lost_.fetch_add(1);
                                     }
                                   }}));
  }

  std::atomic<bool> lose_answers_{false};
  std::atomic<int> lost_{0};
  std::atomic<int> writes_{0};
};

TEST_F(PgSerializabilityTest, RandomTransfersAndRangeReadersHaveASerialExplanation) {
  RunWorkload(/*threads=*/4, /*ops_per_thread=*/60, /*allow_failures=*/false);
  VerifyHistory();
  EXPECT_GT(committer_->stats().commits, 0u);
}

TEST_F(PgSerializabilityTest, StorageFaultsNeverExposePartialCommitsOrLoseAcknowledgedOnes) {
  storage_->FailWithProbability(StorageMethod::kWrite, 0.2);
  RunWorkload(/*threads=*/4, /*ops_per_thread=*/40, /*allow_failures=*/true);
  storage_->ClearFaults();
  EXPECT_GT(storage_->failures(StorageMethod::kWrite), 0);
  VerifyHistory();
}

TEST_F(PgSerializabilityTest, AnswersLostOnTheWireAreResolvedNeverLostOrDoubled) {
  lose_answers_ = true;
  RunWorkload(/*threads=*/4, /*ops_per_thread=*/60, /*allow_failures=*/true);
  lose_answers_ = false;
  EXPECT_GT(lost_.load(), 0);
  CommitterStats stats = committer_->stats();
  EXPECT_GT(stats.unknown_outcomes, 0u);
  EXPECT_GT(stats.unknown_committed, 0u) << "answers lost after the commit landed";
  // Every acknowledged commit is in the replayed history and storage holds exactly its
  // result.
  VerifyHistory();
}

}  // namespace
}  // namespace txfn

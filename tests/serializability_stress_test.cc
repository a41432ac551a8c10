// Serialisability under concurrency: threads run random bank transfers and
// range readers (some of which write) through the committer with retries.
// Afterwards the committed history is replayed serially in timestamp order:
// every value every committed transaction read must equal what the serial
// execution had at that point, and the total balance never changes.
// Also: random storage faults never leave a partial commit visible and never
// lose an acknowledged one.
#include <memory>

#include "gtest/gtest.h"
#include "serializability_test_util.h"
#include "txfn/committer.h"
#include "txfn/transaction.h"

namespace txfn {
namespace {

using ::txfn::testing::StorageMethod;
using namespace testing_util;  // NOLINT(google-build-using-namespace)

TEST_F(SerializabilityTest, RandomTransfersAndRangeReadersHaveASerialExplanation) {
  RunWorkload(/*threads=*/4, /*ops_per_thread=*/300, /*allow_failures=*/false);
  VerifyHistory();
  EXPECT_GT(committer_->stats().conflicts, 0u) << "the workload should contend";
  // RunTransaction announces first attempts, so some batches were held open
  // for them: the history above includes commits that joined a held batch.
  EXPECT_GT(committer_->stats().held_batches, 0u);
}

TEST_F(SerializabilityTest, StorageFaultsNeverExposePartialCommitsOrLoseAcknowledgedOnes) {
  storage_->FailWithProbability(StorageMethod::kWrite, 0.2);
  RunWorkload(/*threads=*/4, /*ops_per_thread=*/200, /*allow_failures=*/true);
  storage_->ClearFaults();
  EXPECT_GT(storage_->failures(StorageMethod::kWrite), 0);
  // Every acknowledged commit is in the history the replay checks, and the
  // state storage holds is exactly the replay of the acknowledged ones.
  VerifyHistory();
  // Reopening from storage gives the same state.
  auto reopened = Committer::Open(base_, "t");
  ASSERT_TRUE(reopened.ok());
  Transaction before(committer_->Latest()), after((*reopened)->Latest());
  for (const std::string& id : ids_) {
    EXPECT_EQ(before.Get(id).value(), after.Get(id).value());
  }
}

// Writes whose answer is lost (the write landed, the call failed with an
// unknown outcome) and unknown outcomes of writes that never landed, under
// concurrency: the committer resolves each from storage, so every commit that
// landed is acknowledged (it is in the history the replay checks) and none
// that did not is, and no transaction commits over one it did not see.
TEST_F(SerializabilityTest, LostAnswersAreResolvedFromStorageNeverLostOrDoubled) {
  storage_->FailWithProbabilityAfterForwarding(StorageMethod::kWrite, 0.2);
  storage_->FailWithProbability(StorageMethod::kWrite, 0.05,
                                CommitOutcomeUnknownError("injected: lost before it landed"));
  RunWorkload(/*threads=*/4, /*ops_per_thread=*/200, /*allow_failures=*/true);
  storage_->ClearFaults();
  CommitterStats stats = committer_->stats();
  EXPECT_GT(stats.unknown_outcomes, 0u);
  EXPECT_GT(stats.unknown_committed, 0u);
  EXPECT_LT(stats.unknown_committed, stats.unknown_outcomes);
  VerifyHistory();
}

}  // namespace
}  // namespace txfn

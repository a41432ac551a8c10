// The OCC committer: conflicts (phantoms, write skew), the window, group
// commit, storage faults, reopening, and the retry helper.
#include "txfn/committer.h"

#include <atomic>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "txfn/call_records.h"
#include "txfn/idempotency.h"
#include "txfn/in_memory_storage.h"
#include "txfn/retry.h"
#include "txfn/status_macros.h"
#include "txfn/storage_wrapper.h"
#include "txfn/testing/fault_injecting_storage.h"
#include "txn_test_util.h"

namespace txfn {
namespace {

using ::testing::HasSubstr;
using ::txfn::testing::FaultInjectingStorage;
using ::txfn::testing::StorageMethod;
using namespace testing_util;  // NOLINT(google-build-using-namespace)

// A storage that cannot tell when another writer committed (Storage's default answer, as an
// adapter that does not override MayHaveOtherWriters gives): the tests with another writer
// check what storage refuses and what the committer then does, not what Latest() catches up
// with before (InMemoryStorage itself answers true).
class Unannounced final : public StorageWrapper {
 public:
  using StorageWrapper::StorageWrapper;
  bool MayHaveOtherWriters(std::string_view) override { return false; }
};

class CommitterTest : public ::testing::Test {
 protected:
  void SetUp() override { Open({}); }

  void Open(CommitterOptions options) {
    base_ = std::make_shared<InMemoryStorage>();
    storage_ = std::make_shared<FaultInjectingStorage>(std::make_shared<Unannounced>(base_));
    options.clock = clock_.AsFunction();
    committer_ = OpenWithSchema(storage_, std::move(options));
  }

  Transaction Begin() { return Transaction(committer_->Latest()); }

  std::string InsertAccount(const std::string& owner, int64_t balance) {
    Transaction txn = Begin();
    std::string id =
        txn.Insert("accounts", Obj({{"owner", Str(owner)}, {"balance", I64(balance)}})).value();
    EXPECT_TRUE(committer_->Commit(txn.Prepare()).ok());
    return id;
  }

  int64_t Balance(Transaction& txn, const std::string& id) {
    return txn.Get(id).value()->Find("balance")->int64();
  }

  FakeClock clock_;
  std::shared_ptr<InMemoryStorage> base_;
  std::shared_ptr<FaultInjectingStorage> storage_;
  std::unique_ptr<Committer> committer_;
};

TEST_F(CommitterTest, CommitsGetIncreasingTimestampsAndPublishSnapshots) {
  Timestamp before = committer_->Latest()->ts();
  Transaction a = Begin();
  ASSERT_TRUE(a.Insert("notes", Obj({})).ok());
  TXFN_ASSERT_OK_AND_ASSIGN(Timestamp ts_a, committer_->Commit(a.Prepare()));
  EXPECT_GT(ts_a, before);
  EXPECT_EQ(committer_->Latest()->ts(), ts_a);
  Transaction b = Begin();
  ASSERT_TRUE(b.Insert("notes", Obj({})).ok());
  TXFN_ASSERT_OK_AND_ASSIGN(Timestamp ts_b, committer_->Commit(b.Prepare()));
  EXPECT_GT(ts_b, ts_a);
  EXPECT_EQ(base_->MaxCommittedTimestamp("t").value(), ts_b);
}

TEST_F(CommitterTest, ReadOnlyCommitsSerialiseAtTheirBeginTimestamp) {
  std::string id = InsertAccount("ann", 10);
  Transaction query = Begin();
  ASSERT_TRUE(query.Get(id).ok());
  InsertAccount("bob", 5);  // would conflict with nothing the query read anyway
  TXFN_ASSERT_OK_AND_ASSIGN(Timestamp ts, committer_->Commit(query.Prepare()));
  EXPECT_EQ(ts, query.begin_ts());
  EXPECT_EQ(committer_->stats().read_only, 1u);
}

TEST_F(CommitterTest, ConcurrentReadModifyWritesOfOneDocumentConflict) {
  std::string id = InsertAccount("ann", 10);
  Transaction a = Begin();
  Transaction b = Begin();
  ASSERT_TRUE(a.Patch(id, Obj({{"balance", I64(Balance(a, id) + 1)}})).ok());
  ASSERT_TRUE(b.Patch(id, Obj({{"balance", I64(Balance(b, id) + 2)}})).ok());
  ASSERT_TRUE(committer_->Commit(a.Prepare()).ok());
  auto second = committer_->Commit(b.Prepare());
  EXPECT_EQ(second.status().code(), absl::StatusCode::kAborted);
  EXPECT_THAT(std::string(second.status().message()), HasSubstr("OCC conflict"));
  Transaction check = Begin();
  EXPECT_EQ(Balance(check, id), 11);
  EXPECT_EQ(committer_->stats().conflicts, 1u);
}

TEST_F(CommitterTest, PhantomAnEmptyRangeReadConflictsWithALaterInsertIntoIt) {
  Transaction reader = Begin();
  IndexQuery q{.table = "messages", .index = "by_channel", .eq = {Str("x")}};
  ASSERT_TRUE(reader.Query(q).value().documents.empty());
  ASSERT_TRUE(reader.Insert("notes", Obj({{"saw", I64(0)}})).ok());

  Transaction other_channel = Begin();
  ASSERT_TRUE(
      other_channel.Insert("messages", Obj({{"channel", Str("y")}, {"body", Str("b")}})).ok());
  ASSERT_TRUE(committer_->Commit(other_channel.Prepare()).ok());
  Transaction reader_ok = Begin();
  ASSERT_TRUE(reader_ok.Query(q).ok());
  ASSERT_TRUE(reader_ok.Insert("notes", Obj({})).ok());

  Transaction writer = Begin();
  ASSERT_TRUE(writer.Insert("messages", Obj({{"channel", Str("x")}, {"body", Str("b")}})).ok());
  ASSERT_TRUE(committer_->Commit(writer.Prepare()).ok());

  EXPECT_EQ(committer_->Commit(reader.Prepare()).status().code(), absl::StatusCode::kAborted);
  // Began after the insert into "y" but before the insert into "x": conflicts too.
  EXPECT_EQ(committer_->Commit(reader_ok.Prepare()).status().code(), absl::StatusCode::kAborted);
}

TEST_F(CommitterTest, AnInsertOutsideTheCoveredPartOfALimitedRangeDoesNotConflict) {
  Transaction setup = Begin();
  for (int64_t likes : {10, 20, 30}) {
    ASSERT_TRUE(setup
                    .Insert("messages",
                            Obj({{"channel", Str("a")}, {"body", Str("m")}, {"likes", I64(likes)}}))
                    .ok());
  }
  ASSERT_TRUE(committer_->Commit(setup.Prepare()).ok());
  auto insert_likes = [&](int64_t likes) {
    Transaction txn = Begin();
    EXPECT_TRUE(txn.Insert("messages",
                           Obj({{"channel", Str("a")}, {"body", Str("n")}, {"likes", I64(likes)}}))
                    .ok());
    return committer_->Commit(txn.Prepare());
  };
  auto reader = [&] {
    Transaction txn = Begin();
    EXPECT_EQ(txn.Query({.table = "messages", .index = "by_channel", .eq = {Str("a")}, .limit = 2})
                  .value()
                  .documents.size(),
              2u);
    EXPECT_TRUE(txn.Insert("notes", Obj({})).ok());
    return txn;
  };
  Transaction past_limit = reader();
  ASSERT_TRUE(insert_likes(25).ok());  // after the 2nd result: outside what was read
  EXPECT_TRUE(committer_->Commit(past_limit.Prepare()).ok());
  Transaction within = reader();
  ASSERT_TRUE(insert_likes(15).ok());  // between the 1st and 2nd result
  EXPECT_EQ(committer_->Commit(within.Prepare()).status().code(), absl::StatusCode::kAborted);
}

// Two doctors are on call; each may go off call if the other is still on.
// Under snapshot isolation both would leave; under serialisability one aborts.
TEST_F(CommitterTest, WriteSkewIsPrevented) {
  std::string alice = InsertAccount("alice", 1);  // balance 1 = on call
  std::string bob = InsertAccount("bob", 1);
  auto go_off_call = [&](Transaction& txn, const std::string& me, const std::string& other) {
    if (Balance(txn, me) + Balance(txn, other) >= 2) {
      ASSERT_TRUE(txn.Patch(me, Obj({{"balance", I64(0)}})).ok());
    }
  };
  Transaction a = Begin();
  Transaction b = Begin();
  go_off_call(a, alice, bob);
  go_off_call(b, bob, alice);
  ASSERT_TRUE(committer_->Commit(a.Prepare()).ok());
  EXPECT_EQ(committer_->Commit(b.Prepare()).status().code(), absl::StatusCode::kAborted);
  Transaction check = Begin();
  EXPECT_EQ(Balance(check, alice) + Balance(check, bob), 1);
}

// The conflict says which read a newer write hit: here the second of two
// point reads (bob's read is untouched, alice's was written).
TEST_F(CommitterTest, AConflictNamesTheReadThatANewerWriteHit) {
  std::string alice = InsertAccount("alice", 1);
  std::string bob = InsertAccount("bob", 1);
  Transaction a = Begin();
  ASSERT_TRUE(a.Patch(alice, Obj({{"balance", I64(0)}})).ok());
  Transaction b = Begin();
  (void)Balance(b, bob);
  (void)Balance(b, alice);
  ASSERT_TRUE(b.Patch(bob, Obj({{"balance", I64(0)}})).ok());
  ASSERT_TRUE(committer_->Commit(a.Prepare()).ok());
  absl::StatusOr<Timestamp> lost = committer_->Commit(b.Prepare());
  ASSERT_EQ(lost.status().code(), absl::StatusCode::kAborted);
  std::optional<ReadRange> hit = ConflictingRead(lost.status());
  ASSERT_TRUE(hit.has_value()) << lost.status();
  EXPECT_EQ(hit->range, KeyRange::Point(alice));
  // In the tenant's terms too: the table and the document.
  EXPECT_EQ(ConflictingTarget(lost.status()),
            (ConflictTarget{.table = "accounts", .index = "by_id", .document_id = alice}));
  EXPECT_THAT(std::string(lost.status().message()),
              HasSubstr("(table 'accounts', document '" + alice + "')"));

  // An index range read names the table and the index, and no document.
  Transaction reader = Begin();
  ASSERT_TRUE(
      reader.Query(IndexQuery{.table = "accounts", .index = "by_owner", .eq = {Str("carol")}})
          .ok());
  ASSERT_TRUE(reader.Insert("notes", Obj({})).ok());
  InsertAccount("carol", 3);  // a document the reader's range would now include
  absl::StatusOr<Timestamp> phantom = committer_->Commit(reader.Prepare());
  ASSERT_EQ(phantom.status().code(), absl::StatusCode::kAborted);
  EXPECT_EQ(ConflictingTarget(phantom.status()),
            (ConflictTarget{.table = "accounts", .index = "by_owner"}));
  EXPECT_THAT(std::string(phantom.status().message()),
              HasSubstr("(table 'accounts', index 'by_owner')"));

  // Round trip of a range with an end, with bytes a naive encoding would
  // split on; anything else has no conflicting read.
  const ReadRange wide{.index = 7, .range = {.start = std::string("a:1\0:", 6), .end = "z:"}};
  EXPECT_EQ(ConflictingRead(ConflictError("x", wide)), wide);
  EXPECT_FALSE(ConflictingTarget(ConflictError("x", wide)).has_value());
  const ConflictTarget target{.table = "t", .index = "by_k"};
  EXPECT_EQ(ConflictingTarget(ConflictError("x", wide, &target)), target);
  EXPECT_EQ(ConflictingRead(ConflictError("x", wide, &target)), wide);
  EXPECT_FALSE(ConflictingRead(absl::OkStatus()).has_value());
  EXPECT_FALSE(ConflictingRead(absl::AbortedError("no payload")).has_value());
  absl::Status forged = absl::AbortedError("forged");
  forged.SetPayload("type.txfn.dev/txfn.Conflict", absl::Cord("3:99:short"));
  EXPECT_FALSE(ConflictingRead(forged).has_value());
}

TEST_F(CommitterTest, AConcurrentDeployConflictsWithWriters) {
  Transaction writer = Begin();
  ASSERT_TRUE(writer.Insert("notes", Obj({})).ok());
  Transaction deploy = Begin();
  ASSERT_TRUE(deploy.PutModule("m.js", "export {}").ok());
  ASSERT_TRUE(committer_->Commit(deploy.Prepare()).ok());
  EXPECT_EQ(committer_->Commit(writer.Prepare()).status().code(), absl::StatusCode::kAborted);
}

TEST_F(CommitterTest, ABeginTimestampOlderThanTheWindowIsFailedPreconditionNotAborted) {
  Open({.conflict_window = absl::Milliseconds(1)});
  Transaction old = Begin();
  ASSERT_TRUE(old.Insert("notes", Obj({})).ok());
  Transaction other = Begin();
  ASSERT_TRUE(other.Insert("notes", Obj({})).ok());
  ASSERT_TRUE(committer_->Commit(other.Prepare()).ok());
  clock_.Advance(10'000'000);  // 10 ms: the commit above leaves the window
  Transaction fresh = Begin();
  ASSERT_TRUE(fresh.Insert("notes", Obj({})).ok());
  ASSERT_TRUE(committer_->Commit(fresh.Prepare()).ok());
  auto result = committer_->Commit(old.Prepare());
  EXPECT_EQ(result.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(result.status().message()), HasSubstr("before the conflict window"));
  EXPECT_EQ(committer_->stats().too_old, 1u);
}

// A pinned history outlives the window: a long system transaction (a
// deploy over a large table) is still checked, so it commits if nothing
// conflicts and aborts if something does, instead of being too old.
TEST_F(CommitterTest, APinnedHistoryKeepsALongTransactionCheckable) {
  Open({.conflict_window = absl::Milliseconds(1), .max_window_commits = 2});
  std::shared_ptr<const Snapshot> start = committer_->Latest();
  HistoryPin pin = committer_->PinHistory(start->ts());
  Transaction lengthy(start);
  Transaction racer(start);
  ASSERT_TRUE(lengthy.Insert("notes", Obj({})).ok());
  for (int i = 0; i < 5; ++i) {  // past both bounds of the window
    Transaction txn = Begin();
    ASSERT_TRUE(txn.Insert("notes", Obj({})).ok());
    ASSERT_TRUE(committer_->Commit(txn.Prepare()).ok());
    clock_.Advance(10'000'000);
  }
  EXPECT_TRUE(committer_->Commit(lengthy.Prepare()).ok());
  // One that read what those commits wrote still conflicts.
  ASSERT_TRUE(racer.Query({.table = "notes", .index = "by_id"}).ok());
  ASSERT_TRUE(racer.Insert("notes", Obj({})).ok());
  EXPECT_EQ(committer_->Commit(racer.Prepare()).status().code(), absl::StatusCode::kAborted);
  // Released, the window applies again.
  pin.Release();
  Transaction late(committer_->Latest());
  ASSERT_TRUE(late.Insert("notes", Obj({})).ok());
  for (int i = 0; i < 3; ++i) {
    Transaction txn = Begin();
    ASSERT_TRUE(txn.Insert("notes", Obj({})).ok());
    ASSERT_TRUE(committer_->Commit(txn.Prepare()).ok());
    clock_.Advance(10'000'000);
  }
  EXPECT_EQ(committer_->Commit(late.Prepare()).status().code(),
            absl::StatusCode::kFailedPrecondition);
}

// An idle committer's history is pruned without another commit (an engine's
// timer calls PruneHistory), but never past a pin.
TEST_F(CommitterTest, PruneHistoryForgetsWhatLeftTheWindowWithoutACommit) {
  Open({.conflict_window = absl::Seconds(1)});
  std::shared_ptr<const Snapshot> start = committer_->Latest();
  for (int i = 0; i < 10; ++i) {
    Transaction txn = Begin();
    ASSERT_TRUE(txn.Insert("notes", Obj({})).ok());
    ASSERT_TRUE(committer_->Commit(txn.Prepare()).ok());
  }
  CommitterStats before = committer_->stats();
  EXPECT_EQ(before.history_commits, 11u);  // the fixture's deploy, then ours
  EXPECT_GE(before.history_keys, 10u);
  // Within the window: nothing to forget.
  EXPECT_TRUE(committer_->PruneHistory(clock_.Now()));
  EXPECT_EQ(committer_->stats().history_commits, 11u);
  // A pin at `start` keeps every commit after it, whatever the time.
  HistoryPin pin = committer_->PinHistory(start->ts());
  clock_.Advance(absl::ToInt64Nanoseconds(absl::Seconds(2)));
  EXPECT_TRUE(committer_->PruneHistory(clock_.Now()));
  EXPECT_EQ(committer_->stats().history_commits, 10u);
  EXPECT_EQ(committer_->stats().history_keys, 10u);  // one document each
  pin.Release();
  EXPECT_TRUE(committer_->PruneHistory(clock_.Now()));
  EXPECT_EQ(committer_->stats().history_keys, 0u);
  EXPECT_EQ(committer_->stats().history_commits, 0u);
  EXPECT_EQ(committer_->stats().commits, before.commits) << "no commit was needed";
  // A transaction that began before the pruned writes is too old, as after a
  // commit's slide.
  Transaction old(start);
  ASSERT_TRUE(old.Insert("notes", Obj({})).ok());
  EXPECT_EQ(committer_->Commit(old.Prepare()).status().code(),
            absl::StatusCode::kFailedPrecondition);
}

TEST_F(CommitterTest, TheWindowAlsoHoldsAtMostMaxWindowCommits) {
  Open({.max_window_commits = 2});
  Transaction old = Begin();
  ASSERT_TRUE(old.Insert("notes", Obj({})).ok());
  for (int i = 0; i < 4; ++i) {
    Transaction txn = Begin();
    ASSERT_TRUE(txn.Insert("notes", Obj({})).ok());
    ASSERT_TRUE(committer_->Commit(txn.Prepare()).ok());
  }
  EXPECT_EQ(committer_->Commit(old.Prepare()).status().code(),
            absl::StatusCode::kFailedPrecondition);
}

TEST_F(CommitterTest, RejectsMalformedCommits) {
  Transaction txn = Begin();
  ASSERT_TRUE(txn.Insert("notes", Obj({})).ok());
  PreparedCommit other_tenant = txn.Prepare();
  other_tenant.tenant = "u";
  EXPECT_EQ(committer_->Commit(other_tenant).status().code(), absl::StatusCode::kInvalidArgument);
  PreparedCommit future = txn.Prepare();
  future.begin_ts = committer_->Latest()->ts() + 1'000'000;
  EXPECT_EQ(committer_->Commit(future).status().code(), absl::StatusCode::kInvalidArgument);
  PreparedCommit twice = txn.Prepare();
  twice.writes.push_back(twice.writes.back());
  EXPECT_EQ(committer_->Commit(twice).status().code(), absl::StatusCode::kInvalidArgument);
  PreparedCommit bad_metadata = txn.Prepare();
  bad_metadata.writes.insert(bad_metadata.writes.begin(),
                             {.index = kMetadataIndex, .key = "bogus", .value = "x"});
  EXPECT_EQ(committer_->Commit(bad_metadata).status().code(), absl::StatusCode::kInvalidArgument);
  // None of them changed anything; the real one still commits.
  EXPECT_TRUE(committer_->Commit(txn.Prepare()).ok());
}

TEST_F(CommitterTest, AStorageFailurePublishesNothingAndLaterCommitsWork) {
  std::string id = InsertAccount("ann", 10);
  std::shared_ptr<const Snapshot> before = committer_->Latest();
  Transaction txn = Begin();
  ASSERT_TRUE(txn.Patch(id, Obj({{"balance", I64(99)}})).ok());
  storage_->FailNext(StorageMethod::kWrite, 1);
  auto failed = committer_->Commit(txn.Prepare());
  EXPECT_EQ(failed.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(committer_->Latest(), before);
  EXPECT_EQ(committer_->stats().storage_failures, 1u);
  Transaction retry = Begin();
  EXPECT_EQ(Balance(retry, id), 10);
  ASSERT_TRUE(retry.Patch(id, Obj({{"balance", I64(11)}})).ok());
  ASSERT_TRUE(committer_->Commit(retry.Prepare()).ok());
  Transaction check = Begin();
  EXPECT_EQ(Balance(check, id), 11);
}

// Issue 11: a Write that reached storage but reported an error (a dropped
// connection after COMMIT, an fsync error after the WAL frames were written)
// used to be reported as "not persisted" and left out of the conflict
// history, so a concurrent read-modify-write of the same document committed
// over it: a lost update, and a caller told to retry would apply it twice.
TEST_F(CommitterTest, AWriteThatLandedButReportedAnUnknownOutcomeIsResolvedNotLost) {
  std::string id = InsertAccount("ann", 10);
  Transaction a = Begin();
  Transaction b = Begin();
  ASSERT_TRUE(a.Patch(id, Obj({{"balance", I64(Balance(a, id) + 1)}})).ok());
  ASSERT_TRUE(b.Patch(id, Obj({{"balance", I64(Balance(b, id) + 2)}})).ok());
  storage_->FailNextAfterForwarding(StorageMethod::kWrite, 1);
  absl::StatusOr<Timestamp> first = committer_->Commit(a.Prepare());
  // The committer asked storage and found the commit there.
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_EQ(committer_->Latest()->ts(), *first);
  // b read the balance before a's write: it must conflict, not overwrite it.
  EXPECT_EQ(committer_->Commit(b.Prepare()).status().code(), absl::StatusCode::kAborted);
  Transaction check = Begin();
  EXPECT_EQ(Balance(check, id), 11);
  CommitterStats stats = committer_->stats();
  EXPECT_EQ(stats.unknown_outcomes, 1u);
  EXPECT_EQ(stats.unknown_committed, 1u);
}

TEST_F(CommitterTest, AnUnknownOutcomeThatStorageShowsAbsentIsDefinitelyNotCommitted) {
  std::string id = InsertAccount("ann", 10);
  std::shared_ptr<const Snapshot> before = committer_->Latest();
  Transaction a = Begin();
  ASSERT_TRUE(a.Patch(id, Obj({{"balance", I64(Balance(a, id) + 1)}})).ok());
  // The write never landed, but storage could not say so at the time.
  storage_->FailNext(StorageMethod::kWrite, 1, CommitOutcomeUnknownError("lost connection"));
  absl::StatusOr<Timestamp> failed = committer_->Commit(a.Prepare());
  EXPECT_EQ(failed.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_FALSE(IsCommitOutcomeUnknown(failed.status())) << failed.status();
  EXPECT_THAT(std::string(failed.status().message()), HasSubstr("not persisted"));
  // The next snapshot skips the absent commit's timestamp: same data.
  EXPECT_GT(committer_->Latest()->ts(), before->ts());
  Transaction retry = Begin();
  EXPECT_EQ(Balance(retry, id), 10);
  ASSERT_TRUE(retry.Patch(id, Obj({{"balance", I64(11)}})).ok());
  EXPECT_TRUE(committer_->Commit(retry.Prepare()).ok());
  EXPECT_EQ(committer_->stats().unknown_committed, 0u);
  Transaction check = Begin();
  EXPECT_EQ(Balance(check, id), 11);
}

// A batch that was not written (e.g. another instance owned the tenant then) is no commit
// this committer knows of: stating its timestamp as previous_ts let another writer's commit
// at or below it pass the storage's staleness check, and a transaction validated without that
// commit then committed over it (a lost update).
TEST_F(CommitterTest, ABatchNotWrittenDoesNotHideAnotherWritersCommit) {
  std::string id = InsertAccount("ann", 10);
  Transaction stale = Begin();
  ASSERT_EQ(Balance(stale, id), 10);
  // Another writer of the tenant on the same storage commits 20.
  auto other = Committer::Open(base_, "t", {.clock = clock_.AsFunction()});
  ASSERT_TRUE(other.ok()) << other.status();
  Transaction theirs((*other)->Latest());
  ASSERT_TRUE(theirs.Patch(id, Obj({{"balance", I64(20)}})).ok());
  ASSERT_TRUE((*other)->Commit(theirs.Prepare()).ok());
  // This committer's next batch is refused, not written.
  storage_->FailNext(StorageMethod::kWrite, 1, absl::UnavailableError("owned elsewhere"));
  Transaction refused = Begin();
  ASSERT_TRUE(refused.Insert("notes", Obj({})).ok());
  EXPECT_FALSE(committer_->Commit(refused.Prepare()).ok());
  // The transaction that read 10 must not commit over the other writer's 20.
  ASSERT_TRUE(stale.Patch(id, Obj({{"balance", I64(11)}})).ok());
  absl::StatusOr<Timestamp> lost = committer_->Commit(stale.Prepare());
  EXPECT_FALSE(lost.ok()) << "committed at " << *lost;
  // Restarted from a new snapshot, it sees 20.
  Transaction again = Begin();
  EXPECT_EQ(Balance(again, id), 20);
  ASSERT_TRUE(again.Patch(id, Obj({{"balance", I64(21)}})).ok());
  EXPECT_TRUE(committer_->Commit(again.Prepare()).ok());
  Transaction check = Begin();
  EXPECT_EQ(Balance(check, id), 21);
}

// A batch storage refuses because another writer committed since is written again on top of
// those commits, without the ones they conflict with: a transaction whose reads the other
// writer did not touch commits at once (it was restarted, whatever it read).
TEST_F(CommitterTest, AStaleBatchIsRebasedOnAnotherWritersCommitsItDoesNotConflictWith) {
  std::string ann = InsertAccount("ann", 10);
  std::string bob = InsertAccount("bob", 5);
  Transaction mine = Begin();
  ASSERT_EQ(Balance(mine, ann), 10);
  ASSERT_TRUE(mine.Patch(ann, Obj({{"balance", I64(11)}})).ok());
  Transaction conflicting = Begin();
  ASSERT_EQ(Balance(conflicting, bob), 5);
  ASSERT_TRUE(conflicting.Patch(bob, Obj({{"balance", I64(4)}})).ok());
  // Another writer of the tenant on the same storage changes bob only.
  auto other = Committer::Open(base_, "t", {.clock = clock_.AsFunction()});
  ASSERT_TRUE(other.ok()) << other.status();
  Transaction theirs((*other)->Latest());
  ASSERT_TRUE(theirs.Patch(bob, Obj({{"balance", I64(50)}})).ok());
  TXFN_ASSERT_OK_AND_ASSIGN(Timestamp their_ts, (*other)->Commit(theirs.Prepare()));

  TXFN_ASSERT_OK_AND_ASSIGN(Timestamp ts, committer_->Commit(mine.Prepare()));
  EXPECT_GT(ts, their_ts);
  EXPECT_EQ(committer_->stats().stale_batches, 1u);
  // Their write of bob is in the history now: a transaction that read bob before it conflicts.
  absl::StatusOr<Timestamp> lost = committer_->Commit(conflicting.Prepare());
  EXPECT_EQ(lost.status().code(), absl::StatusCode::kAborted) << lost.status();
  Transaction check = Begin();
  EXPECT_GE(check.begin_ts(), ts);
  EXPECT_EQ(Balance(check, ann), 11);
  EXPECT_EQ(Balance(check, bob), 50) << "the other writer's commit stands";
  Transaction again = Begin();
  ASSERT_TRUE(again.Patch(bob, Obj({{"balance", I64(51)}})).ok());
  EXPECT_TRUE(committer_->Commit(again.Prepare()).ok());
}

// A batch of unknown outcome found absent publishes a snapshot above storage's newest commit.
// A transaction T that began there read before another writer's commit below it existed (that
// writer's clock is behind). Whether the committer then rebases a stale batch or reloads (the
// other writer's commit also changed the metadata), T must not commit over that writer's 20
// (found by a review: both lost it; the reload at HEAD too).
class CommitterAbsentSnapshotTest : public ::testing::TestWithParam<bool> {};

TEST_P(CommitterAbsentSnapshotTest, ATransactionThatReadBeforeAnotherWritersCommitDoesNotCommit) {
  const bool their_commit_changes_metadata = GetParam();
  FakeClock clock;
  auto base = std::make_shared<InMemoryStorage>();
  auto storage = std::make_shared<FaultInjectingStorage>(base);
  auto committer = OpenWithSchema(storage, {.clock = clock.AsFunction()});
  auto balance = [](Transaction& t, const std::string& id) {
    return t.Get(id).value()->Find("balance")->int64();
  };
  Transaction insert(committer->Latest());
  std::string ann =
      insert.Insert("accounts", Obj({{"owner", Str("ann")}, {"balance", I64(10)}})).value();
  TXFN_ASSERT_OK_AND_ASSIGN(Timestamp t1, committer->Commit(insert.Prepare()));
  Transaction unrelated(committer->Latest());
  ASSERT_TRUE(unrelated.Insert("notes", Obj({})).ok());
  clock.Advance(1'000'000);
  storage->FailNext(StorageMethod::kWrite, 1, CommitOutcomeUnknownError("lost"));
  Transaction absent(committer->Latest());
  ASSERT_TRUE(absent.Insert("notes", Obj({})).ok());
  EXPECT_FALSE(committer->Commit(absent.Prepare()).ok());
  std::shared_ptr<const Snapshot> above = committer->Latest();
  ASSERT_GT(above->ts(), t1 + 1);
  Transaction t(above);
  ASSERT_EQ(balance(t, ann), 10);
  auto other = Committer::Open(base, "t", {.clock = [] { return Timestamp{1}; }});
  ASSERT_TRUE(other.ok()) << other.status();
  Transaction theirs((*other)->Latest());
  ASSERT_TRUE(theirs.Patch(ann, Obj({{"balance", I64(20)}})).ok());
  if (their_commit_changes_metadata) {
    ASSERT_TRUE(theirs.SetEnabled(true).ok());
  }
  TXFN_ASSERT_OK_AND_ASSIGN(Timestamp their_ts, (*other)->Commit(theirs.Prepare()));
  ASSERT_LT(their_ts, above->ts());
  (void)committer->Commit(unrelated.Prepare());  // refused as stale: rebased or reloaded
  EXPECT_EQ(committer->stats().stale_batches, 1u);
  ASSERT_TRUE(t.Patch(ann, Obj({{"balance", I64(11)}})).ok());
  absl::StatusOr<Timestamp> lost = committer->Commit(t.Prepare());
  EXPECT_FALSE(lost.ok()) << "committed over the other writer's 20 at " << *lost;
  Transaction check(committer->Latest());
  EXPECT_EQ(balance(check, ann), 20);
}

INSTANTIATE_TEST_SUITE_P(RebasedOrReloaded, CommitterAbsentSnapshotTest, ::testing::Bool());

// A batch holding a deploy D (which read a document another writer then changed) and a blind
// commit K is not rebased: the snapshot it would publish had D's metadata, which never
// reached storage (found by a review).
TEST(CommitterRebaseTest, ABatchWithADeployIsNotRebased) {
  FakeClock clock;
  auto base = std::make_shared<InMemoryStorage>();
  auto committer =
      OpenWithSchema(base, {.max_batch_delay = absl::Seconds(20), .clock = clock.AsFunction()});
  Transaction insert(committer->Latest());
  std::string ann =
      insert.Insert("accounts", Obj({{"owner", Str("ann")}, {"balance", I64(10)}})).value();
  ASSERT_TRUE(committer->Commit(insert.Prepare()).ok());
  Transaction deploy(committer->Latest());
  ASSERT_EQ(deploy.Get(ann).value()->Find("balance")->int64(), 10);
  absl::StatusOr<Schema> schema = Schema::FromJson(R"({"tables": {
    "accounts": {"fields": {"owner": "string", "balance": "int64"},
                 "indexes": {"by_owner": ["owner"]}},
    "messages": {"fields": {"channel": "string", "body": "string", "likes": "int64?"},
                 "indexes": {"by_channel": ["channel", "likes"]}},
    "notes": {}, "extra": {}
  }})");
  ASSERT_TRUE(schema.ok()) << schema.status();
  ASSERT_TRUE(deploy.DeploySchema(*schema).ok());
  PreparedCommit blind{.tenant = "t", .begin_ts = committer->Latest()->ts()};
  blind.writes.push_back({.index = kCallOutboxIndex, .key = "x", .value = std::nullopt});
  auto other = Committer::Open(base, "t", {.clock = clock.AsFunction()});
  ASSERT_TRUE(other.ok()) << other.status();
  Transaction theirs((*other)->Latest());
  ASSERT_TRUE(theirs.Patch(ann, Obj({{"balance", I64(20)}})).ok());
  ASSERT_TRUE((*other)->Commit(theirs.Prepare()).ok());
  // D and K in one batch: the leader holds it open for the second announced commit.
  CommitIntent first = committer->AnnounceCommit();
  CommitIntent second = committer->AnnounceCommit();
  absl::StatusOr<Timestamp> deployed;
  std::thread d([&] { deployed = committer->Commit(deploy.Prepare(), std::move(first)); });
  absl::SleepFor(absl::Milliseconds(200));
  absl::StatusOr<Timestamp> k = committer->Commit(std::move(blind), std::move(second));
  d.join();
  EXPECT_FALSE(deployed.ok()) << "D read ann before the other writer's 20";
  std::shared_ptr<const Snapshot> published = committer->Latest();
  absl::StatusOr<std::shared_ptr<const Snapshot>> stored =
      Snapshot::Load(base, "t", published->ts());
  ASSERT_TRUE(stored.ok()) << stored.status();
  EXPECT_EQ(published->metadata().tables().count("extra"),
            (*stored)->metadata().tables().count("extra"))
      << "the published metadata is not storage's";
  (void)k;
}

// Another writer deletes the tenant: this committer's next batch is refused (its state is the
// deleted tenant's; writing it would bring the tenant back without its metadata), and so is
// every later one.
TEST_F(CommitterTest, ATenantDeletedByAnotherWriterIsNeverWrittenAgain) {
  std::string id = InsertAccount("ann", 10);
  ASSERT_TRUE(base_->DeleteTenant("t").ok());
  EXPECT_FALSE(committer_->DeletedElsewhere()) << "not noticed yet: this storage has no others";
  Transaction txn = Begin();  // reads storage at its snapshot: the account is gone already
  ASSERT_TRUE(txn.Insert("accounts", Obj({{"owner", Str("cy")}, {"balance", I64(1)}})).ok());
  absl::StatusOr<Timestamp> refused = committer_->Commit(txn.Prepare());
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kNotFound) << refused.status();
  EXPECT_TRUE(IsTenantDeletedElsewhere(refused.status())) << refused.status();
  EXPECT_TRUE(committer_->DeletedElsewhere());
  EXPECT_EQ(base_->MaxCommittedTimestamp("t").value(), 0u);
  // Created again meanwhile by another writer: this committer still writes nothing.
  auto other = OpenWithSchema(base_, {.clock = clock_.AsFunction()});
  Transaction later = Begin();
  ASSERT_TRUE(later.Insert("notes", Obj({})).ok());
  absl::StatusOr<Timestamp> again = committer_->Commit(later.Prepare());
  EXPECT_TRUE(IsTenantDeletedElsewhere(again.status())) << again.status();
  Transaction fresh((other)->Latest());
  EXPECT_FALSE(fresh.Get(id).value().has_value()) << "the deleted account stays deleted";
}

// Where other writers may commit (Storage::MayHaveOtherWriters), Latest() notices the deletion
// before any write: storage's newest commit is older than one this committer wrote.
TEST_F(CommitterTest, LatestNoticesATenantDeletedByAnotherWriter) {
  class Shared final : public StorageWrapper {
   public:
    using StorageWrapper::StorageWrapper;
    bool MayHaveOtherWriters(std::string_view) override { return true; }
  };
  auto shared = std::make_shared<Shared>(base_);
  auto committer = OpenWithSchema(shared, {.clock = clock_.AsFunction()});
  Transaction txn(committer->Latest());
  ASSERT_TRUE(txn.Insert("notes", Obj({})).ok());
  ASSERT_TRUE(committer->Commit(txn.Prepare()).ok());
  (void)committer->Latest();
  EXPECT_FALSE(committer->DeletedElsewhere()) << "its own commit is no deletion";
  ASSERT_TRUE(base_->DeleteTenant("t").ok());
  (void)committer->Latest();
  EXPECT_TRUE(committer->DeletedElsewhere());
  Transaction after(committer->Latest());
  absl::StatusOr<Timestamp> refused = committer->Commit(after.Prepare());
  EXPECT_TRUE(IsTenantDeletedElsewhere(refused.status())) << refused.status();
}

// Reports an unknown outcome for a Write it replaced by another writer's commit at the same
// timestamp (a network store whose lease passed on while the answer was lost): storage then
// has commits up to the batch's timestamp, but not the batch.
// With `then_retain`, retention then drops the log up to it, and the lease has passed on
// (MayHaveOtherWriters).
class SupplantingStorage final : public StorageWrapper {
 public:
  using StorageWrapper::StorageWrapper;
  void SupplantNextWrite(bool then_retain = false) {
    then_retain_ = then_retain;
    supplant_ = true;
  }
  absl::Status Write(absl::Span<const CommitRecord> commits) override {
    if (!supplant_.exchange(false)) return StorageWrapper::Write(commits);
    std::vector<CommitRecord> theirs;
    for (const CommitRecord& c : commits) {
      theirs.push_back({.tenant = c.tenant, .ts = c.ts, .previous_ts = c.previous_ts});
    }
    TXFN_RETURN_IF_ERROR(StorageWrapper::Write(theirs));
    if (then_retain_) {
      TXFN_RETURN_IF_ERROR(ApplyRetention(commits.back().tenant, commits.back().ts, 0).status());
      passed_on_ = true;
    }
    return CommitOutcomeUnknownError("lost connection", commits.back().ts);
  }
  bool MayHaveOtherWriters(std::string_view tenant) override {
    return passed_on_ || StorageWrapper::MayHaveOtherWriters(tenant);
  }

 private:
  std::atomic<bool> supplant_{false};
  std::atomic<bool> then_retain_{false};
  std::atomic<bool> passed_on_{false};
};

TEST(CommitterResolutionTest, AnotherWritersCommitAtTheBatchsTimestampIsNotTheBatch) {
  auto storage = std::make_shared<SupplantingStorage>(std::make_shared<InMemoryStorage>());
  std::unique_ptr<Committer> committer = OpenWithSchema(storage);
  ASSERT_NE(committer, nullptr);
  Transaction open(committer->Latest());
  TXFN_ASSERT_OK_AND_ASSIGN(
      std::string id, open.Insert("accounts", Obj({{"owner", Str("ann")}, {"balance", I64(10)}})));
  ASSERT_TRUE(committer->Commit(open.Prepare()).ok());
  Transaction patch(committer->Latest());
  ASSERT_TRUE(patch.Patch(id, Obj({{"balance", I64(11)}})).ok());
  storage->SupplantNextWrite();
  absl::StatusOr<Timestamp> result = committer->Commit(patch.Prepare());
  EXPECT_FALSE(result.ok()) << "the patch was never written";
  EXPECT_FALSE(IsCommitOutcomeUnknown(result.status())) << result.status();
  EXPECT_EQ(committer->stats().unknown_committed, 0u);
  Transaction check(committer->Latest());
  TXFN_ASSERT_OK_AND_ASSIGN(std::optional<Value> account, check.Get(id));
  ASSERT_TRUE(account.has_value());
  EXPECT_EQ(account->Find("balance")->int64(), 10);
}

// The same with the log below the retention horizon: the timestamps alone cannot tell the
// batch from another writer's commit, so while another writer may have written, the outcome
// stays unknown (it answered "committed").
TEST(CommitterResolutionTest, BelowTheHorizonAnotherWritersCommitLeavesTheOutcomeUnknown) {
  auto storage = std::make_shared<SupplantingStorage>(std::make_shared<InMemoryStorage>());
  std::unique_ptr<Committer> committer = OpenWithSchema(storage);
  ASSERT_NE(committer, nullptr);
  Transaction open(committer->Latest());
  ASSERT_TRUE(open.Insert("accounts", Obj({{"owner", Str("ann")}, {"balance", I64(10)}})).ok());
  ASSERT_TRUE(committer->Commit(open.Prepare()).ok());
  Transaction more(committer->Latest());
  ASSERT_TRUE(more.Insert("accounts", Obj({{"owner", Str("bob")}, {"balance", I64(1)}})).ok());
  storage->SupplantNextWrite(/*then_retain=*/true);
  absl::StatusOr<Timestamp> result = committer->Commit(more.Prepare());
  EXPECT_TRUE(IsCommitOutcomeUnknown(result.status())) << result.status();
  EXPECT_EQ(committer->stats().unknown_committed, 0u);
}

// Writes go through; with the server "down", reads of the newest commit and of the log fail
// and a Write is stored but its answer lost (CommitOutcomeUnknown).
class ServerGoesDown final : public StorageWrapper {
 public:
  using StorageWrapper::StorageWrapper;
  void SetDown(bool down) { down_ = down; }
  absl::Status Write(absl::Span<const CommitRecord> commits) override {
    if (!down_) return StorageWrapper::Write(commits);
    TXFN_RETURN_IF_ERROR(StorageWrapper::Write(commits));
    return CommitOutcomeUnknownError("the server went down", commits.back().ts);
  }
  absl::StatusOr<Timestamp> MaxCommittedTimestamp(std::string_view tenant) override {
    if (down_) return absl::UnavailableError("the server is down");
    return StorageWrapper::MaxCommittedTimestamp(tenant);
  }
  absl::StatusOr<std::vector<CommitRecord>> ReadLog(std::string_view tenant, Timestamp after,
                                                    size_t limit) override {
    if (down_) return absl::UnavailableError("the server is down");
    return StorageWrapper::ReadLog(tenant, after, limit);
  }

 private:
  std::atomic<bool> down_{false};
};

// Where another writer may commit, Newest() never hands out a snapshot that may be stale:
// Unavailable while storage cannot say what the newest commit is, and a batch of this
// committer's whose outcome was lost is settled before it reloads. Both made an engine serve
// stale queries (a PostgreSQL hunt): after a server crash-restart, and for as long as the
// engine ran no mutation after a lost answer (10 s of queries that missed others' commits).
TEST(CommitterNewestTest, NeverAStaleSnapshotWhereAnotherWriterMayHaveCommitted) {
  auto base = std::make_shared<InMemoryStorage>();  // MayHaveOtherWriters: true
  auto storage = std::make_shared<ServerGoesDown>(base);
  std::unique_ptr<Committer> reader = OpenWithSchema(storage);
  ASSERT_NE(reader, nullptr);
  TXFN_ASSERT_OK_AND_ASSIGN(std::shared_ptr<const Snapshot> first, reader->Newest());

  // Its own batch's answer is lost with the server down; another writer commits after it.
  Transaction mine(reader->Latest());
  TXFN_ASSERT_OK_AND_ASSIGN(
      std::string mine_id,
      mine.Insert("accounts", Obj({{"owner", Str("mine")}, {"balance", I64(1)}})));
  storage->SetDown(true);
  absl::StatusOr<Timestamp> lost = reader->Commit(mine.Prepare());
  ASSERT_TRUE(IsCommitOutcomeUnknown(lost.status())) << lost.status();
  absl::StatusOr<std::shared_ptr<const Snapshot>> down = reader->Newest();
  EXPECT_EQ(down.status().code(), absl::StatusCode::kUnavailable) << down.status();
  EXPECT_EQ(reader->Latest()->ts(), first->ts()) << "Latest() still answers, perhaps stale";

  auto other = Committer::Open(base, "t");
  ASSERT_TRUE(other.ok()) << other.status();
  Transaction theirs((*other)->Latest());
  TXFN_ASSERT_OK_AND_ASSIGN(
      std::string their_id,
      theirs.Insert("accounts", Obj({{"owner", Str("theirs")}, {"balance", I64(2)}})));
  TXFN_ASSERT_OK_AND_ASSIGN(Timestamp their_ts, (*other)->Commit(theirs.Prepare()));
  EXPECT_EQ(reader->Newest().status().code(), absl::StatusCode::kUnavailable);

  storage->SetDown(false);
  TXFN_ASSERT_OK_AND_ASSIGN(std::shared_ptr<const Snapshot> newest, reader->Newest());
  EXPECT_GE(newest->ts(), their_ts);
  Transaction check(newest);
  for (const std::string& id : {mine_id, their_id}) {
    absl::StatusOr<std::optional<Value>> doc = check.Get(id);
    ASSERT_TRUE(doc.ok()) << doc.status();
    EXPECT_TRUE(doc->has_value()) << id;
  }
  EXPECT_EQ(reader->stats().unknown_committed, 1u) << "its batch was settled: committed";
}

class UnresolvedOutcomeTest : public CommitterTest,
                              public ::testing::WithParamInterface<testing::UnsyncedWrites> {};

TEST_P(UnresolvedOutcomeTest, WritesWaitForTheOutcomeAndNothingIsAppliedTwice) {
  const bool kept = GetParam() == testing::UnsyncedWrites::kKeep;
  std::string id = InsertAccount("ann", 10);
  std::shared_ptr<const Snapshot> before = committer_->Latest();
  Transaction a = Begin();
  ASSERT_TRUE(a.Patch(id, Obj({{"balance", I64(Balance(a, id) + 1)}})).ok());
  storage_->FailSyncNext(1);
  absl::StatusOr<Timestamp> unknown = committer_->Commit(a.Prepare());
  ASSERT_TRUE(IsCommitOutcomeUnknown(unknown.status())) << unknown.status();
  std::optional<Timestamp> unknown_ts = CommitOutcomeUnknownTimestamp(unknown.status());
  ASSERT_TRUE(unknown_ts.has_value());
  EXPECT_GT(*unknown_ts, before->ts());
  EXPECT_EQ(committer_->Latest(), before) << "nothing published before the outcome is known";

  // Until storage can tell, writes are refused (definitely not committed);
  // reads and read-only commits go on.
  Transaction other = Begin();
  ASSERT_TRUE(other.Insert("notes", Obj({})).ok());
  absl::StatusOr<Timestamp> refused = committer_->Commit(other.Prepare());
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_FALSE(IsCommitOutcomeUnknown(refused.status()));
  EXPECT_THAT(std::string(refused.status().message()), HasSubstr("is unknown"));
  Transaction query = Begin();
  EXPECT_EQ(Balance(query, id), 10);
  EXPECT_TRUE(committer_->Commit(query.Prepare()).ok());

  // The restart settles it; the next commit resolves the outcome first.
  ASSERT_TRUE(storage_->SimulateCrash(GetParam()).ok());
  Transaction stale = Begin();  // still the snapshot before the unknown commit
  ASSERT_TRUE(stale.Patch(id, Obj({{"balance", I64(Balance(stale, id) + 1)}})).ok());
  // Its read predates the unknown commit's writes, which are in the conflict
  // history either way: it conflicts (needlessly, if they were dropped)
  // rather than risk applying +1 over a commit it did not see.
  EXPECT_EQ(committer_->Commit(stale.Prepare()).status().code(), absl::StatusCode::kAborted);
  EXPECT_EQ(committer_->Latest()->ts(), *unknown_ts)
      << "once resolved, the next snapshot is at the unknown commit's timestamp";
  ASSERT_TRUE(RunTransaction(*committer_, [&](Transaction& txn) -> absl::Status {
                return txn.Patch(id, Obj({{"balance", I64(Balance(txn, id) + 100)}}));
              }).ok());
  Transaction check = Begin();
  EXPECT_EQ(Balance(check, id), 10 + (kept ? 1 : 0) + 100);
  CommitterStats stats = committer_->stats();
  EXPECT_EQ(stats.unknown_outcomes, 1u);
  EXPECT_EQ(stats.unknown_committed, kept ? 1u : 0u);
  EXPECT_EQ(stats.refused_unresolved, 1u);
}

INSTANTIATE_TEST_SUITE_P(CrashKeepsOrDrops, UnresolvedOutcomeTest,
                         ::testing::Values(testing::UnsyncedWrites::kKeep,
                                           testing::UnsyncedWrites::kDrop));

TEST_F(CommitterTest, RunTransactionNeverRetriesAnUnknownOutcome) {
  std::string id = InsertAccount("ann", 10);
  int runs = 0;
  auto body = [&](Transaction& txn) -> absl::Status {
    ++runs;
    return txn.Patch(id, Obj({{"balance", I64(Balance(txn, id) + 1)}}));
  };
  // Resolved by the committer: committed, one run.
  storage_->FailNextAfterForwarding(StorageMethod::kWrite, 1);
  absl::StatusOr<CommitOutcome> resolved = RunTransaction(*committer_, body);
  ASSERT_TRUE(resolved.ok()) << resolved.status();
  EXPECT_EQ(resolved->attempts, 1);
  EXPECT_EQ(runs, 1);
  // Unresolvable: the unknown outcome comes back, after one run.
  storage_->FailSyncNext(1);
  absl::StatusOr<CommitOutcome> unknown = RunTransaction(*committer_, body);
  EXPECT_TRUE(IsCommitOutcomeUnknown(unknown.status())) << unknown.status();
  EXPECT_EQ(runs, 2);
  ASSERT_TRUE(storage_->SimulateCrash(testing::UnsyncedWrites::kKeep).ok());
  Transaction check = Begin();
  ASSERT_TRUE(committer_->Commit(check.Prepare()).ok());  // read-only: resolves nothing
  ASSERT_TRUE(RunTransaction(*committer_, [](Transaction& txn) {
                return txn.Insert("notes", Obj({})).status();
              }).ok());
  Transaction after = Begin();
  EXPECT_EQ(Balance(after, id), 12);
}

// A key's entry holds the call digest given with it; an entry written before digests (the
// result's encoding alone) still reads, with none.
TEST_F(CommitterTest, AnIdempotencyKeysCallDigestRoundTripsAndOldEntriesStillRead) {
  PreparedCommit with{.tenant = "t", .begin_ts = committer_->Latest()->ts()};
  ASSERT_TRUE(AddIdempotencyKey("new", Str("r1"), &with, "digest-1").ok());
  ASSERT_TRUE(committer_->Commit(std::move(with)).ok());
  PreparedCommit old{.tenant = "t", .begin_ts = committer_->Latest()->ts()};
  old.writes.push_back({.index = kIdempotencyIndex, .key = "old", .value = EncodeBinary(I64(7))});
  ASSERT_TRUE(committer_->Commit(std::move(old)).ok());
  std::shared_ptr<const Snapshot> latest = committer_->Latest();
  TXFN_ASSERT_OK_AND_ASSIGN(std::optional<IdempotentResult> found,
                            FindIdempotencyKey(*latest, "new"));
  ASSERT_TRUE(found.has_value());
  EXPECT_EQ(found->value, Str("r1"));
  EXPECT_EQ(found->call_digest, "digest-1");
  TXFN_ASSERT_OK_AND_ASSIGN(found, FindIdempotencyKey(*latest, "old"));
  ASSERT_TRUE(found.has_value());
  EXPECT_EQ(found->value, I64(7));
  EXPECT_EQ(found->call_digest, "");
  PreparedCommit untouched{.tenant = "t"};
  EXPECT_EQ(AddIdempotencyKey("k", Str("x"), &untouched, std::string(256, 'd')).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(untouched.writes.empty());
}

TEST_F(CommitterTest, AnIdempotencyKeyIsCommittedWithTheWritesAndRacingUsesConflict) {
  std::string id = InsertAccount("ann", 10);
  auto bump = [&](Transaction& txn) {
    EXPECT_TRUE(txn.Patch(id, Obj({{"balance", I64(Balance(txn, id) + 1)}})).ok());
    return txn.Prepare();
  };
  EXPECT_EQ(FindIdempotencyKey(*committer_->Latest(), "op-1").value(), std::nullopt);
  Transaction a = Begin();
  Transaction b = Begin();
  PreparedCommit first = bump(a);
  ASSERT_TRUE(b.Insert("notes", Obj({})).ok());  // nothing a writes
  PreparedCommit second = b.Prepare();
  const PreparedCommit unkeyed = second;
  ASSERT_TRUE(AddIdempotencyKey("op-1", Str("first"), &first).ok());
  ASSERT_TRUE(AddIdempotencyKey("op-1", Str("second"), &second).ok());
  EXPECT_EQ(AddIdempotencyKey("op-2", Str("x"), &second).code(),
            absl::StatusCode::kInvalidArgument);
  PreparedCommit untouched = unkeyed;
  EXPECT_EQ(AddIdempotencyKey("", Str("x"), &untouched).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(
      AddIdempotencyKey(std::string(kMaxIdempotencyKeyBytes + 1, 'k'), Str("x"), &untouched).code(),
      absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(untouched, unkeyed) << "a refused key changes nothing";

  TXFN_ASSERT_OK_AND_ASSIGN(Timestamp ts, committer_->Commit(std::move(first)));
  // The second attempt conflicts only through the key.
  EXPECT_EQ(committer_->Commit(std::move(second)).status().code(), absl::StatusCode::kAborted);
  TXFN_ASSERT_OK_AND_ASSIGN(std::optional<IdempotentResult> found,
                            FindIdempotencyKey(*committer_->Latest(), "op-1"));
  ASSERT_TRUE(found.has_value());
  EXPECT_EQ(*found, (IdempotentResult{.value = Str("first"), .ts = ts}));
  EXPECT_EQ(FindIdempotencyKey(*committer_->Latest(), "op-2").value(), std::nullopt);
  Transaction check = Begin();
  EXPECT_EQ(Balance(check, id), 11);
}

TEST_F(CommitterTest, ConcurrentCommitsAreGroupedIntoBatches) {
  storage_->SetDelay(StorageMethod::kWrite, absl::Milliseconds(100));
  constexpr int kThreads = 8;
  std::vector<std::thread> threads;
  std::atomic<int> ok{0};
  for (int i = 0; i < kThreads; ++i) {
    threads.emplace_back([&] {
      Transaction txn = Begin();
      if (txn.Insert("notes", Obj({})).ok() && committer_->Commit(txn.Prepare()).ok()) ++ok;
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(ok.load(), kThreads);
  CommitterStats stats = committer_->stats();
  EXPECT_EQ(stats.commits, kThreads + 1u);  // + the schema deploy
  // While the first write sleeps, the others queue and share a batch.
  EXPECT_LT(stats.batches, stats.commits);
  Transaction all = Begin();
  EXPECT_EQ(all.Query({.table = "notes"}).value().documents.size(), size_t{kThreads});
}

TEST_F(CommitterTest, ALeaderHoldsItsBatchOpenForAnAnnouncedCommit) {
  Open({.max_batch_delay = absl::Seconds(60)});
  const uint64_t batches_before = committer_->stats().batches;
  // Both writers announce first, so whichever commits first holds the batch
  // open until the other's commit joins it: one batch, whatever the order.
  CommitIntent first = committer_->AnnounceCommit();
  CommitIntent second = committer_->AnnounceCommit();
  EXPECT_TRUE(first.active());
  std::thread other([&] {
    Transaction txn = Begin();
    ASSERT_TRUE(txn.Insert("notes", Obj({})).ok());
    EXPECT_TRUE(committer_->Commit(txn.Prepare(), std::move(first)).ok());
  });
  Transaction txn = Begin();
  ASSERT_TRUE(txn.Insert("notes", Obj({})).ok());
  EXPECT_TRUE(committer_->Commit(txn.Prepare(), std::move(second)).ok());
  other.join();
  EXPECT_FALSE(second.active());  // NOLINT(bugprone-use-after-move): moved-from is inactive
  CommitterStats stats = committer_->stats();
  EXPECT_EQ(stats.batches, batches_before + 1);
  EXPECT_EQ(stats.held_batches, 1u);
}

TEST_F(CommitterTest, AHeldBatchWaitsAtMostMaxBatchDelay) {
  const absl::Duration delay = absl::Milliseconds(30);
  Open({.max_batch_delay = delay});
  CommitIntent never_committed = committer_->AnnounceCommit();
  Transaction txn = Begin();
  ASSERT_TRUE(txn.Insert("notes", Obj({})).ok());
  const absl::Time start = absl::Now();
  EXPECT_TRUE(committer_->Commit(txn.Prepare()).ok());
  EXPECT_GE(absl::Now() - start, delay);
  EXPECT_EQ(committer_->stats().held_batches, 1u);
}

TEST_F(CommitterTest, WithdrawingTheLastIntentEndsTheHold) {
  Open({.max_batch_delay = absl::Seconds(60)});
  CommitIntent abandoned = committer_->AnnounceCommit();
  std::atomic<bool> committed{false};
  std::thread writer([&] {
    Transaction txn = Begin();
    ASSERT_TRUE(txn.Insert("notes", Obj({})).ok());
    EXPECT_TRUE(committer_->Commit(txn.Prepare()).ok());
    committed = true;
  });
  // The writer is held (or has not started); either way it finishes once the
  // only intent is gone, long before the 60 s delay.
  abandoned.Release();
  EXPECT_FALSE(abandoned.active());
  writer.join();
  EXPECT_TRUE(committed.load());
}

TEST_F(CommitterTest, ALeaderThatMayNotHoldWritesAtOnce) {
  Open({.max_batch_delay = absl::Seconds(60)});
  CommitIntent outstanding = committer_->AnnounceCommit();
  Transaction txn = Begin();
  ASSERT_TRUE(txn.Insert("notes", Obj({})).ok());
  // Would wait 60 s for `outstanding` if it held the batch open.
  EXPECT_TRUE(committer_->Commit(txn.Prepare(), CommitIntent(), BatchHold::kNever).ok());
  EXPECT_EQ(committer_->stats().held_batches, 0u);
  EXPECT_TRUE(outstanding.active());
}

TEST_F(CommitterTest, ACommitThatMayNotWaitClosesAHeldBatch) {
  Open({.max_batch_delay = absl::Seconds(60)});
  CommitIntent outstanding = committer_->AnnounceCommit();
  std::thread holder([&] {  // leads and holds its batch open for `outstanding`
    Transaction txn = Begin();
    ASSERT_TRUE(txn.Insert("notes", Obj({})).ok());
    EXPECT_TRUE(committer_->Commit(txn.Prepare()).ok());
  });
  absl::SleepFor(absl::Milliseconds(50));  // let it start holding
  Transaction txn = Begin();
  ASSERT_TRUE(txn.Insert("notes", Obj({})).ok());
  const absl::Time start = absl::Now();
  // Joins (or leads) a batch that is then written at once, not after 60 s.
  EXPECT_TRUE(committer_->Commit(txn.Prepare(), CommitIntent(), BatchHold::kNever).ok());
  EXPECT_LT(absl::Now() - start, absl::Seconds(30));
  outstanding.Release();
  holder.join();
}

TEST_F(CommitterTest, WithoutAnnouncedCommitsNoBatchIsHeld) {
  Open({.max_batch_delay = absl::Seconds(60)});
  for (int i = 0; i < 3; ++i) InsertAccount("ann", i);
  {
    CommitIntent dropped = committer_->AnnounceCommit();
  }  // destroyed without committing: withdrawn
  InsertAccount("bob", 1);
  EXPECT_EQ(committer_->stats().held_batches, 0u);
}

TEST_F(CommitterTest, ABatchHoldsAtMostMaxBatchBytes) {
  Open({.max_batch_bytes = 64 << 10});
  storage_->SetDelay(StorageMethod::kWrite, absl::Milliseconds(100));
  const uint64_t batches_before = committer_->stats().batches;
  constexpr int kThreads = 8;
  std::vector<std::thread> threads;
  for (int i = 0; i < kThreads; ++i) {
    threads.emplace_back([&] {
      Transaction txn = Begin();
      // ~30 KiB each: at most two fit in 64 KiB.
      Value doc = Obj({{"channel", Str("c")}, {"body", Str(std::string(30 << 10, 'x'))}});
      ASSERT_TRUE(txn.Insert("messages", doc).ok());
      EXPECT_TRUE(committer_->Commit(txn.Prepare()).ok());
    });
  }
  for (std::thread& t : threads) t.join();
  const uint64_t batches = committer_->stats().batches - batches_before;
  EXPECT_GE(batches, uint64_t{kThreads / 2});
  EXPECT_LE(batches, uint64_t{kThreads});
}

TEST_F(CommitterTest, ReopeningTheStorageRestoresDataAndMetadata) {
  std::string id = InsertAccount("ann", 10);
  Timestamp last = committer_->Latest()->ts();
  committer_.reset();
  auto reopened = Committer::Open(storage_, "t", {.clock = clock_.AsFunction()});
  ASSERT_TRUE(reopened.ok()) << reopened.status();
  EXPECT_EQ((*reopened)->Latest()->ts(), last);
  EXPECT_NE((*reopened)->Latest()->metadata().FindTable("accounts"), nullptr);
  Transaction txn((*reopened)->Latest());
  EXPECT_EQ(Balance(txn, id), 10);
  ASSERT_TRUE(txn.Patch(id, Obj({{"balance", I64(12)}})).ok());
  TXFN_ASSERT_OK_AND_ASSIGN(Timestamp ts, (*reopened)->Commit(txn.Prepare()));
  EXPECT_GT(ts, last);
}

TEST_F(CommitterTest, OpenFailsCleanlyWhenStorageFails) {
  storage_->FailNext(StorageMethod::kMaxCommittedTimestamp, 1);
  EXPECT_EQ(Committer::Open(storage_, "t").status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(Committer::Open(storage_, "").status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(CommitterTest, RunTransactionRetriesConflictsAndReportsAttempts) {
  std::string id = InsertAccount("counter", 0);
  constexpr int kThreads = 4, kIncrements = 25;
  std::atomic<int> retried{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < kIncrements; ++i) {
        auto outcome =
            RunTransaction(*committer_,
                           [&](Transaction& txn) -> absl::Status {
                             TXFN_ASSIGN_OR_RETURN(std::optional<Value> doc, txn.Get(id));
                             int64_t n = doc->Find("balance")->int64();
                             return txn.Patch(id, Obj({{"balance", I64(n + 1)}}));
                           },
                           {.max_attempts = 1000, .initial_backoff = absl::Microseconds(10)});
        ASSERT_TRUE(outcome.ok()) << outcome.status();
        if (outcome->attempts > 1) ++retried;
      }
    });
  }
  for (std::thread& t : threads) t.join();
  Transaction check = Begin();
  EXPECT_EQ(Balance(check, id), kThreads * kIncrements);
  // Every retried run was preceded by at least one conflict.
  EXPECT_GE(committer_->stats().conflicts, static_cast<uint64_t>(retried.load()));
}

TEST_F(CommitterTest, RunTransactionGivesUpAfterMaxAttemptsAndPassesBodyErrorsThrough) {
  std::string id = InsertAccount("ann", 1);
  int runs = 0;
  auto always_conflicts = [&](Transaction& txn) -> absl::Status {
    ++runs;
    TXFN_RETURN_IF_ERROR(txn.Get(id).status());
    // Someone else changes what we read before we commit.
    Transaction other = Begin();
    TXFN_RETURN_IF_ERROR(other.Patch(id, Obj({{"balance", I64(runs)}})));
    TXFN_RETURN_IF_ERROR(committer_->Commit(other.Prepare()).status());
    return txn.Insert("notes", Obj({})).status();
  };
  auto outcome = RunTransaction(*committer_, always_conflicts,
                                {.max_attempts = 3, .initial_backoff = absl::Microseconds(1)});
  EXPECT_EQ(outcome.status().code(), absl::StatusCode::kAborted);
  EXPECT_THAT(std::string(outcome.status().message()), HasSubstr("gave up after 3 attempts: "));
  // A last error advising a new snapshot is told without the advice: every attempt took one.
  const absl::Status too_old = RetriesExhausted(
      "m:f", 8,
      absl::FailedPreconditionError("transaction began at 5, before the conflict window (now "
                                    "from 9); restart it from a new snapshot"));
  EXPECT_EQ(too_old.message(),
            "m:f gave up after 8 attempts: transaction began at 5, before the conflict window "
            "(now from 9)");
  // The last conflict's read stays readable as data: the account's document.
  std::optional<ReadRange> read = ConflictingRead(outcome.status());
  ASSERT_TRUE(read.has_value()) << outcome.status();
  EXPECT_TRUE(read->range.Contains(id));
  EXPECT_EQ(runs, 3);

  auto failing = RunTransaction(
      *committer_, [](Transaction&) { return absl::InvalidArgumentError("bad input"); });
  EXPECT_EQ(failing.status().code(), absl::StatusCode::kInvalidArgument);

  auto first_try = RunTransaction(
      *committer_, [](Transaction& txn) { return txn.Insert("notes", Obj({})).status(); });
  ASSERT_TRUE(first_try.ok());
  EXPECT_EQ(first_try->attempts, 1);
}

}  // namespace
}  // namespace txfn

// SqliteQueue: the DurableQueue conformance suite with reopen (one shard and
// four), its BlobStore, options and files it must refuse, and its batched
// statements (multi-row INSERT and ACK chunks, the lease's range UPDATE) at
// and around their chunk boundaries.
#include "txfn/sqlite_queue.h"

#include <sqlite3.h>

#include <fstream>
#include <iterator>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "queue_test_util.h"
#include "sqlite_queue_test_util.h"
#include "txfn/testing/durable_queue_conformance.h"

namespace txfn {
namespace {

using queue_test::TempDir;
using queue_test::TempSqliteQueue;
using ::testing::HasSubstr;
using ::testing::SizeIs;

const absl::Time kT0 = absl::FromUnixSeconds(1'700'000'000);

// `n` calls of `fn` due at kT0 + `due_offset`, in shard 0 of `q`.
std::vector<Call> Calls(DurableQueue& q, CallIdGenerator& ids, size_t n, const std::string& fn,
                        absl::Duration due_offset = absl::ZeroDuration(),
                        absl::Duration deadline = absl::Hours(1)) {
  std::vector<Call> out;
  while (out.size() < n) {
    Call c;
    c.id = ids.Next();
    if (q.ShardOf(c.id) != 0) continue;
    c.tenant = "t";
    c.function = fn;
    c.start_after = kT0 + due_offset;
    c.deadline = c.start_after + deadline;
    out.push_back(std::move(c));
  }
  return out;
}

std::vector<CallId> Ids(const std::vector<Call>& calls) {
  std::vector<CallId> out;
  for (const Call& c : calls) out.push_back(c.id);
  return out;
}
std::vector<CallId> Ids(const std::vector<LeasedCall>& leased) {
  std::vector<CallId> out;
  for (const LeasedCall& l : leased) out.push_back(l.call.id);
  return out;
}

TXFN_INSTANTIATE_DURABLE_QUEUE_CONFORMANCE(
    Sqlite, [] { return TempSqliteQueue::Make(1); }, &TempSqliteQueue::Reopen);
TXFN_INSTANTIATE_DURABLE_QUEUE_CONFORMANCE(
    SqliteFourShards, [] { return TempSqliteQueue::Make(4); }, &TempSqliteQueue::Reopen);

TEST(SqliteQueueTest, BlobStoreRoundTripsAndSurvivesAReopen) {
  TempDir dir;
  const std::string path = dir.File("q.db");
  {
    auto q = SqliteQueue::Open(path);
    ASSERT_TRUE(q.ok()) << q.status();
    BlobStore& blobs = (*q)->blob_store();
    ASSERT_TRUE(blobs.Put("a", std::string(100000, 'x')).ok());
    ASSERT_TRUE(blobs.Put("b", "first").ok());
    ASSERT_TRUE(blobs.Put("b", "second").ok());
    ASSERT_TRUE(blobs.Put("c", "gone").ok());
    ASSERT_TRUE(blobs.Delete("c").ok());
    ASSERT_TRUE(blobs.Delete("never").ok());
    EXPECT_EQ(blobs.Put("", "x").code(), absl::StatusCode::kInvalidArgument);
    EXPECT_EQ(blobs.Put(std::string(300, 'k'), "x").code(), absl::StatusCode::kInvalidArgument);
  }
  auto q = SqliteQueue::Open(path);
  ASSERT_TRUE(q.ok()) << q.status();
  BlobStore& blobs = (*q)->blob_store();
  EXPECT_EQ(*blobs.Get("a"), std::string(100000, 'x'));
  EXPECT_EQ(*blobs.Get("b"), "second");
  EXPECT_EQ(blobs.Get("c").status().code(), absl::StatusCode::kNotFound);
}

// Arguments spilled to the queue's own blob store count in TenantDepths' bytes; those spilled
// elsewhere (the key not in it) count only their call.
TEST(SqliteQueueTest, TenantDepthsCountSpilledArgumentsInItsBlobStore) {
  TempDir dir;
  auto q = SqliteQueue::Open(dir.File("q.db"));
  ASSERT_TRUE(q.ok()) << q.status();
  CallIdGenerator ids(3);
  std::vector<Call> calls = Calls(**q, ids, 3, "f");
  calls[0].args_blob = "here";
  calls[1].args_blob = "elsewhere";
  calls[2].tenant = "u";
  ASSERT_TRUE((*q)->blob_store().Put("here", std::string(7000, 'h')).ok());
  ASSERT_EQ(*(*q)->Enqueue(calls), 3u);
  auto depths = (*q)->TenantDepths(kT0);
  ASSERT_TRUE(depths.ok()) << depths.status();
  ASSERT_EQ(depths->size(), 2u);
  EXPECT_EQ((*depths)[0].calls, 2u);
  EXPECT_EQ((*depths)[0].bytes, EncodeCall(calls[0]).size() + 7000 + EncodeCall(calls[1]).size());
  EXPECT_EQ((*depths)[1].bytes, EncodeCall(calls[2]).size());
}

TEST(SqliteQueueTest, OpenRefusesBadPathsOptionsAndFiles) {
  TempDir dir;
  EXPECT_EQ(SqliteQueue::Open("").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(SqliteQueue::Open(":memory:").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(SqliteQueue::Open(dir.File("x.db"), {.shards = -1}).status().code(),
            absl::StatusCode::kInvalidArgument);
  auto too_many = SqliteQueue::Open(dir.File("x.db"), {.shards = DurableQueue::kMaxShards + 1});
  EXPECT_EQ(too_many.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(too_many.status().message(), HasSubstr("shards must be in [0, 1024]"));
  auto missing = SqliteQueue::Open(dir.File("no/such/dir/q.db"));
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(missing.status().message(), HasSubstr("no/such/dir/q.db"));

  // The shard count is fixed when the file is created.
  const std::string path = dir.File("shards.db");
  {
    auto q = SqliteQueue::Open(path, {.shards = 3});
    ASSERT_TRUE(q.ok()) << q.status();
    EXPECT_EQ((*q)->shard_count(), 3);
  }
  auto other = SqliteQueue::Open(path, {.shards = 2});
  EXPECT_EQ(other.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(other.status().message(), HasSubstr("3 shards"));
  auto same = SqliteQueue::Open(path);
  ASSERT_TRUE(same.ok()) << same.status();
  EXPECT_EQ((*same)->shard_count(), 3);
  same->reset();

  // A newer queue schema.
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(db, "UPDATE txfn_queue_meta SET value = 99 WHERE name = 'schema_version'",
                         nullptr, nullptr, nullptr),
            SQLITE_OK);
  sqlite3_close(db);
  auto newer = SqliteQueue::Open(path);
  EXPECT_EQ(newer.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(newer.status().message(), HasSubstr("99"));

  // Not a database at all.
  const std::string junk = dir.File("junk.db");
  std::ofstream(junk) << std::string(8192, 'j');
  EXPECT_EQ(SqliteQueue::Open(junk).status().code(), absl::StatusCode::kDataLoss);
}

// An older file is upgraded on Open. Version 1 had no quota column: it is
// filled from the stored calls, so the quota filter sees the old calls too.
// Version 2 leased along two indexes: they are replaced by version 3's one.
// Versions 1-3 had no tenant column: it is filled from the stored calls, so
// the lease's skip_tenants sees the old calls too. Versions 1-4 had no
// args_blob_bytes column: it is filled from the blobs of the stored calls'
// spilled arguments, so TenantDepths counts them. Any way the file then
// holds exactly the current lease index.
class SqliteQueueUpgradeTest : public ::testing::TestWithParam<int> {};

TEST_P(SqliteQueueUpgradeTest, OpenUpgradesAnOlderFile) {
  const int version = GetParam();
  TempDir dir;
  const std::string path = dir.File("old.db");
  CallIdGenerator ids(7);
  std::vector<Call> calls = Calls(**SqliteQueue::Open(path), ids, 4, "f");
  calls[0].quota = calls[2].quota = QuotaClass::kOpportunistic;
  calls[3].tenant = "skipped";
  calls[3].args_blob = "spilled/3";
  {
    auto q = SqliteQueue::Open(path);
    ASSERT_TRUE(q.ok()) << q.status();
    ASSERT_TRUE((*q)->blob_store().Put("spilled/3", std::string(5000, 's')).ok());
    ASSERT_EQ(*(*q)->Enqueue(calls), 4u);
  }
  // Back to that version's shape.
  const std::string to_v2 =
      "DROP INDEX txfn_queue_calls_lease; "
      "CREATE INDEX txfn_queue_calls_due ON txfn_queue_calls (shard, due, seq); "
      "CREATE INDEX txfn_queue_calls_due_reserved ON txfn_queue_calls (shard, due, seq) "
      "WHERE quota = 0; ";
  const std::string to_v1 =
      "DROP INDEX txfn_queue_calls_lease; "
      "CREATE INDEX txfn_queue_calls_due ON txfn_queue_calls (shard, due, seq); "
      "ALTER TABLE txfn_queue_calls DROP COLUMN quota; ";
  const std::string sql = (version == 1   ? to_v1
                           : version == 2 ? to_v2
                                          : "") +
                          (version < 4 ? "ALTER TABLE txfn_queue_calls DROP COLUMN tenant; " : "") +
                          "ALTER TABLE txfn_queue_calls DROP COLUMN args_blob_bytes; " +
                          "UPDATE txfn_queue_meta SET value = " + std::to_string(version) +
                          " WHERE name = 'schema_version'";
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(db, sql.c_str(), nullptr, nullptr, nullptr), SQLITE_OK)
      << sqlite3_errmsg(db);
  sqlite3_close(db);

  auto q = SqliteQueue::Open(path);
  ASSERT_TRUE(q.ok()) << q.status();
  auto depths = (*q)->TenantDepths(kT0);
  ASSERT_TRUE(depths.ok()) << depths.status();
  ASSERT_EQ(depths->size(), 2u);
  EXPECT_EQ((*depths)[0].tenant, "skipped");
  EXPECT_EQ((*depths)[0].bytes, EncodeCall(calls[3]).size() + 5000);
  EXPECT_EQ((*depths)[1].bytes, EncodeCall(calls[0]).size() + EncodeCall(calls[1]).size() +
                                    EncodeCall(calls[2]).size());
  auto opportunistic =
      (*q)->Lease({.shard = 0, .quota = QuotaClass::kOpportunistic, .now = kT0, .max = 10});
  ASSERT_TRUE(opportunistic.ok()) << opportunistic.status();
  EXPECT_EQ(Ids(*opportunistic), (std::vector<CallId>{calls[0].id, calls[2].id}));
  auto reserved = (*q)->Lease({.shard = 0,
                               .quota = QuotaClass::kReserved,
                               .skip_tenants = {"skipped"},
                               .now = kT0,
                               .max = 10});
  ASSERT_TRUE(reserved.ok()) << reserved.status();
  EXPECT_EQ(Ids(*reserved), (std::vector<CallId>{calls[1].id}));
  reserved = (*q)->Lease({.shard = 0, .now = kT0, .max = 10});
  ASSERT_TRUE(reserved.ok()) << reserved.status();
  EXPECT_EQ(Ids(*reserved), (std::vector<CallId>{calls[3].id}));

  ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
  std::vector<std::string> indexes;
  sqlite3_exec(
      db,
      "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'txfn_queue_calls' "
      "AND sql IS NOT NULL ORDER BY name",
      [](void* out, int, char** row, char**) {
        static_cast<std::vector<std::string>*>(out)->push_back(row[0]);
        return 0;
      },
      &indexes, nullptr);
  sqlite3_close(db);
  EXPECT_EQ(indexes, (std::vector<std::string>{"txfn_queue_calls_dead", "txfn_queue_calls_lease"}));
}

INSTANTIATE_TEST_SUITE_P(Versions, SqliteQueueUpgradeTest, ::testing::Values(1, 2, 3, 4),
                         [](const auto& info) { return "Version" + std::to_string(info.param); });

// Enqueue inserts, and Settle deletes ACKed calls, in multi-row statements of
// up to 64 rows (then 32, 16, ... for the rest); every batch size around
// those boundaries must store, hand out and delete exactly its calls, in
// order, with duplicates and stale or unknown tokens in the middle.
TEST(SqliteQueueTest, BatchesAroundTheChunkSizesAreExact) {
  for (size_t n : {1, 2, 3, 31, 63, 64, 65, 127, 128, 129, 200, 1000}) {
    SCOPED_TRACE(::testing::Message() << "batch of " << n);
    std::unique_ptr<DurableQueue> q = TempSqliteQueue::Make(2);
    ASSERT_NE(q, nullptr);
    CallIdGenerator ids(n);
    const std::vector<Call> first = Calls(*q, ids, n, "f");
    auto added = q->Enqueue(first);
    ASSERT_TRUE(added.ok()) << added.status();
    EXPECT_EQ(*added, n);
    // Half of it again, interleaved with as many new calls: only those count.
    std::vector<Call> again;
    const std::vector<Call> fresh = Calls(*q, ids, (n + 1) / 2, "f", absl::Seconds(1));
    for (size_t i = 0; i < fresh.size(); ++i) {
      again.push_back(first[i]);
      again.push_back(fresh[i]);
    }
    added = q->Enqueue(again);
    ASSERT_TRUE(added.ok()) << added.status();
    EXPECT_EQ(*added, fresh.size());

    // Everything comes back once, in due order, with distinct tokens.
    auto leased = q->Lease({.shard = 0, .now = kT0 + absl::Seconds(1), .max = 10'000});
    ASSERT_TRUE(leased.ok()) << leased.status();
    std::vector<CallId> want = Ids(first);
    for (const CallId& id : Ids(fresh)) want.push_back(id);
    EXPECT_EQ(Ids(*leased), want);
    absl::flat_hash_set<uint64_t> tokens;
    for (const LeasedCall& l : *leased) EXPECT_TRUE(tokens.insert(l.token.token).second);

    // ACK all of them but with one stale token (every 7th), plus a call that
    // is not queued: exactly the others are deleted.
    std::vector<Settlement> acks;
    for (size_t i = 0; i < leased->size(); ++i) {
      LeaseToken t = (*leased)[i].token;
      if (i % 7 == 3) t.token += 1'000'000;
      acks.push_back(Settlement::Ack(t));
    }
    acks.insert(acks.begin() + static_cast<std::ptrdiff_t>(acks.size() / 2),
                Settlement::Ack({Calls(*q, ids, 1, "f")[0].id, 1}));
    auto r = q->Settle(acks, kT0 + absl::Seconds(1));
    ASSERT_TRUE(r.ok()) << r.status();
    ASSERT_THAT(*r, SizeIs(acks.size()));
    size_t stale = 0;
    for (size_t i = 0; i < acks.size(); ++i) {
      if (i == leased->size() / 2) {
        EXPECT_EQ((*r)[i].code(), absl::StatusCode::kNotFound) << i;
        continue;
      }
      const size_t l = i < leased->size() / 2 ? i : i - 1;
      if (l % 7 == 3) {
        ++stale;
        EXPECT_EQ((*r)[i].code(), absl::StatusCode::kFailedPrecondition) << i;
        EXPECT_THAT((*r)[i].message(), HasSubstr("stale"));
      } else {
        EXPECT_TRUE((*r)[i].ok()) << i << ": " << (*r)[i];
      }
    }
    auto depths = q->Depths(kT0 + absl::Seconds(1));
    ASSERT_TRUE(depths.ok()) << depths.status();
    size_t left = 0;
    for (const FunctionDepth& d : *depths) left += d.leased + d.pending;
    EXPECT_EQ(left, stale);
  }
}

// A batched ACK never decides for a call another settlement of the same
// batch names: those apply one by one, in the batch's order.
TEST(SqliteQueueTest, SettlementsNamingOneCallTwiceApplyInOrder) {
  std::unique_ptr<DurableQueue> q = TempSqliteQueue::Make(1);
  ASSERT_NE(q, nullptr);
  CallIdGenerator ids(7);
  const std::vector<Call> calls = Calls(*q, ids, 3, "f");
  ASSERT_TRUE(q->Enqueue(calls).ok());
  // Leased twice: the first leases expire, so their tokens are stale.
  auto old = q->Lease({.shard = 0, .now = kT0, .max = 3, .lease_duration = absl::Seconds(1)});
  ASSERT_TRUE(old.ok()) << old.status();
  const absl::Time now = kT0 + absl::Seconds(2);
  auto cur = q->Lease({.shard = 0, .now = now, .max = 3});
  ASSERT_TRUE(cur.ok()) << cur.status();
  ASSERT_THAT(*cur, SizeIs(3));
  std::vector<Settlement> batch = {
      Settlement::Ack((*old)[0].token),                                   // stale, then
      Settlement::Ack((*cur)[0].token),                                   // live: deleted
      Settlement::Ack((*cur)[1].token),                                   // live: deleted, then
      Settlement::Nack((*old)[1].token, now),                             // not queued any more
      Settlement::Nack((*cur)[2].token, now),                             // live: NACKed, then
      Settlement::Ack({(*cur)[2].token.id, (*cur)[2].token.token + 99}),  // stale
  };
  auto r = q->Settle(batch, now);
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_THAT(*r, SizeIs(6));
  EXPECT_EQ((*r)[0].code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE((*r)[1].ok()) << (*r)[1];
  EXPECT_TRUE((*r)[2].ok()) << (*r)[2];
  EXPECT_EQ((*r)[3].code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE((*r)[4].ok()) << (*r)[4];
  EXPECT_EQ((*r)[5].code(), absl::StatusCode::kFailedPrecondition);
  auto back = q->Lease({.shard = 0, .now = now, .max = 3});
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(Ids(*back), std::vector<CallId>{calls[2].id});
}

// A filtered lease takes a prefix of the function's due calls, dead-letters
// the expired ones met on the way (another round fills their places), and
// leaves other functions' calls, before, between and after them, alone.
TEST(SqliteQueueTest, AFilteredLeaseSkipsOtherFunctionsAndRefillsAfterDeadLetters) {
  std::unique_ptr<DurableQueue> q = TempSqliteQueue::Make(1);
  ASSERT_NE(q, nullptr);
  CallIdGenerator ids(11);
  std::vector<Call> f, g, late;
  std::vector<Call> all;
  for (int i = 0; i < 40; ++i) {
    const absl::Duration at = absl::Milliseconds(i);
    Call c = Calls(*q, ids, 1, i % 5 == 2 ? "late" : "f", at,
                   i % 5 == 2 ? absl::Seconds(1) : absl::Hours(1))[0];
    (i % 5 == 2 ? late : f).push_back(c);
    all.push_back(c);
    Call other = Calls(*q, ids, 1, "g", at)[0];
    g.push_back(other);
    all.push_back(other);
  }
  ASSERT_TRUE(q->Enqueue(all).ok());
  const absl::Time now = kT0 + absl::Seconds(5);  // past every "late" deadline
  auto leased = q->Lease({.shard = 0, .functions = {"f", "late"}, .now = now, .max = 20});
  ASSERT_TRUE(leased.ok()) << leased.status();
  std::vector<CallId> want = Ids(f);
  want.resize(20);
  EXPECT_EQ(Ids(*leased), want);
  auto dead = q->ListDeadLetters(CallId(), 100);
  ASSERT_TRUE(dead.ok()) << dead.status();
  EXPECT_GE(dead->size(), 5u);  // those met before the 20th "f"
  for (const DeadLetter& d : *dead) EXPECT_EQ(d.call.function, "late");
  // The other function's calls are all still due, in order.
  auto rest = q->Lease({.shard = 0, .functions = {"g"}, .now = now, .max = 100});
  ASSERT_TRUE(rest.ok()) << rest.status();
  EXPECT_EQ(Ids(*rest), Ids(g));
}

// A lease whose rows' seqs are dense updates them by a walk of that seq range;
// every other row in the range (another shard's, another function's, not yet
// due, leased already) must be left exactly as it was.
TEST(SqliteQueueTest, ALeaseByASeqRangeLeavesTheRowsBetweenAlone) {
  std::unique_ptr<DurableQueue> q = TempSqliteQueue::Make(2);
  ASSERT_NE(q, nullptr);
  CallIdGenerator ids(13);
  auto in_shard = [&](int shard, const std::string& fn, absl::Duration at) {
    Call c = Calls(*q, ids, 1, fn, at)[0];
    while (q->ShardOf(c.id) != shard) c.id = ids.Next();
    return c;
  };
  std::vector<Call> batch, f, early;
  for (int i = 0; i < 32; ++i) {
    f.push_back(in_shard(0, "f", absl::ZeroDuration()));
    batch.push_back(f.back());
    switch (i % 4) {
      case 0:
        batch.push_back(in_shard(1, "f", absl::ZeroDuration()));
        break;
      case 1:
        batch.push_back(in_shard(0, "g", absl::ZeroDuration()));
        break;
      case 2:
        batch.push_back(in_shard(0, "f", absl::Hours(1)));
        break;
      case 3:
        early.push_back(in_shard(0, "f", -absl::Seconds(1)));
        batch.push_back(early.back());
        break;
    }
  }
  ASSERT_TRUE(q->Enqueue(batch).ok());
  auto first = q->Lease({.shard = 0, .functions = {"f"}, .now = kT0, .max = 8});
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_EQ(Ids(*first), Ids(early));
  auto second = q->Lease({.shard = 0, .functions = {"f"}, .now = kT0, .max = 100});
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_EQ(Ids(*second), Ids(f));
  // The first leases are untouched: their tokens still ACK.
  std::vector<Settlement> acks;
  for (const LeasedCall& l : *first) acks.push_back(Settlement::Ack(l.token));
  auto r = q->Settle(acks, kT0);
  ASSERT_TRUE(r.ok()) << r.status();
  for (const absl::Status& s : *r) EXPECT_TRUE(s.ok()) << s;
  // The other shard's and function's calls are due, the future ones are not.
  auto other_shard = q->Lease({.shard = 1, .now = kT0, .max = 100});
  ASSERT_TRUE(other_shard.ok());
  EXPECT_THAT(*other_shard, SizeIs(8));
  auto g = q->Lease({.shard = 0, .now = kT0, .max = 100});
  ASSERT_TRUE(g.ok());
  ASSERT_THAT(*g, SizeIs(8));
  for (const LeasedCall& l : *g) EXPECT_EQ(l.call.function, "g");
  // An hour on: the future calls are due; the other shard-0 ones (all leased
  // above) expired long ago and are past their deadline.
  auto later = q->Lease({.shard = 0, .now = kT0 + absl::Hours(1), .max = 100});
  ASSERT_TRUE(later.ok());
  EXPECT_THAT(*later, SizeIs(8));
  auto dead = q->ListDeadLetters(CallId(), 100);
  ASSERT_TRUE(dead.ok());
  EXPECT_EQ(dead->size(), 32u + 8u);
}

// Two connections (synchronous off) to one queue file, as two processes
// would have.
class SqliteQueueTwoConnectionsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    for (std::unique_ptr<SqliteQueue>* q : {&a_, &b_}) {
      auto opened = SqliteQueue::Open(dir_.File("q.db"),
                                      {.synchronous = SqliteQueueOptions::Synchronous::kOff});
      ASSERT_TRUE(opened.ok()) << opened.status();
      *q = *std::move(opened);
    }
  }
  TempDir dir_;
  std::unique_ptr<SqliteQueue> a_, b_;
};

// Settle finds ACKed calls by the seqs this connection leased them under; a
// remembered seq that now holds another call (the calls were ACKed through
// another connection, the table emptied, and new calls took the same seqs)
// must neither delete that call nor make a valid ACK fail.
TEST_F(SqliteQueueTwoConnectionsTest, AnAckNeverTrustsARememberedSeq) {
  CallIdGenerator ids(17);
  const std::vector<Call> old_calls = Calls(*a_, ids, 100, "f");
  ASSERT_TRUE(a_->Enqueue(old_calls).ok());
  auto old = a_->Lease({.shard = 0, .now = kT0, .max = 100});
  ASSERT_TRUE(old.ok()) << old.status();
  ASSERT_THAT(*old, SizeIs(100));
  std::vector<Settlement> acks;
  for (const LeasedCall& l : *old) acks.push_back(Settlement::Ack(l.token));
  auto r = b_->Settle(acks, kT0);  // through the other connection
  ASSERT_TRUE(r.ok()) << r.status();
  for (const absl::Status& s : *r) ASSERT_TRUE(s.ok()) << s;

  const std::vector<Call> new_calls = Calls(*b_, ids, 100, "f");
  ASSERT_TRUE(b_->Enqueue(new_calls).ok());
  auto cur = b_->Lease({.shard = 0, .now = kT0, .max = 100});
  ASSERT_TRUE(cur.ok()) << cur.status();
  ASSERT_THAT(*cur, SizeIs(100));
  // Through `a`, which remembers the old calls' seqs: the old ACKs again
  // (their calls are gone), the new calls' valid ACKs and a stale one.
  std::vector<Settlement> mixed;
  for (size_t i = 0; i < 100; ++i) {
    mixed.push_back(Settlement::Ack((*old)[i].token));
    LeaseToken t = (*cur)[i].token;
    if (i == 50) t.token += 1'000'000;
    mixed.push_back(Settlement::Ack(t));
  }
  r = a_->Settle(mixed, kT0);
  ASSERT_TRUE(r.ok()) << r.status();
  for (size_t i = 0; i < mixed.size(); ++i) {
    if (i % 2 == 0) {
      EXPECT_EQ((*r)[i].code(), absl::StatusCode::kNotFound) << i;
    } else if (i == 101) {
      EXPECT_EQ((*r)[i].code(), absl::StatusCode::kFailedPrecondition) << i;
    } else {
      EXPECT_TRUE((*r)[i].ok()) << i << ": " << (*r)[i];
    }
  }
  auto depths = a_->Depths(kT0);
  ASSERT_TRUE(depths.ok());
  ASSERT_THAT(*depths, SizeIs(1));
  EXPECT_EQ((*depths)[0].leased, 1u);  // the one with the stale ACK
}

// A lease that skips a tenant's backlog starts where the last such lease
// ended (see lib/queue/lease_cursors.h). A call another connection enqueues
// due before that point must still be leased: the cursor is dropped when the
// file changed under another connection.
TEST_F(SqliteQueueTwoConnectionsTest, ACallAnotherConnectionEnqueuesBehindASkippedBacklogIsLeased) {
  CallIdGenerator ids(23);
  std::vector<Call> backlog = Calls(*a_, ids, 300, "f", absl::Seconds(-60));
  for (Call& c : backlog) c.tenant = "hog";
  ASSERT_TRUE(a_->Enqueue(backlog).ok());
  const LeaseRequest skip_hog{
      .shard = 0, .skip_tenants = {"hog"}, .now = kT0, .max = 10, .max_per_tenant = 2};
  for (int i = 0; i < 3; ++i) {  // nothing but the hog's calls: nothing to lease
    auto none = a_->Lease(skip_hog);
    ASSERT_TRUE(none.ok()) << none.status();
    EXPECT_THAT(*none, SizeIs(0));
  }
  // Due half a minute ago: in the part of the backlog the leases went past.
  std::vector<Call> late = Calls(*b_, ids, 1, "f", absl::Seconds(-30));
  late[0].tenant = "other";
  ASSERT_TRUE(b_->Enqueue(late).ok());
  auto got = a_->Lease(skip_hog);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(Ids(*got), Ids(late));
  // And through the same connection, a call due even earlier.
  std::vector<Call> earlier = Calls(*a_, ids, 1, "f", absl::Seconds(-90));
  earlier[0].tenant = "other";
  ASSERT_TRUE(a_->Enqueue(earlier).ok());
  got = a_->Lease(skip_hog);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(Ids(*got), Ids(earlier));
}

std::string ReadWholeFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// secure_delete decides whether an acknowledged call's arguments can still be
// read from the file after the queue closed (off: left in free space).
TEST(SqliteQueueTest, SecureDeleteZeroesAcknowledgedCallsInTheFile) {
  for (bool secure : {false, true}) {
    SCOPED_TRACE(secure ? "secure_delete on" : "secure_delete off");
    TempDir dir;
    const std::string path = dir.File("q.db");
    const std::string marker = "txfn-secret-argument-4f2a9c";
    {
      auto q = SqliteQueue::Open(
          path, {.synchronous = SqliteQueueOptions::Synchronous::kOff, .secure_delete = secure});
      ASSERT_TRUE(q.ok()) << q.status();
      CallIdGenerator ids(5);
      std::vector<Call> calls = Calls(**q, ids, 20, "f");
      for (Call& c : calls) c.args = Value::FromObject({{"secret", Value::String(marker)}});
      ASSERT_TRUE((*q)->Enqueue(calls).ok());
      auto leased = (*q)->Lease({.shard = 0, .now = kT0, .max = 100});
      ASSERT_TRUE(leased.ok()) << leased.status();
      ASSERT_THAT(*leased, SizeIs(calls.size()));
      std::vector<Settlement> acks;
      for (const LeasedCall& l : *leased) acks.push_back(Settlement::Ack(l.token));
      auto settled = (*q)->Settle(acks, kT0);
      ASSERT_TRUE(settled.ok()) << settled.status();
      for (const absl::Status& s : *settled) EXPECT_TRUE(s.ok()) << s;
    }  // closing checkpoints the WAL into the file and removes it
    const std::string bytes = ReadWholeFile(path);
    ASSERT_FALSE(bytes.empty());
    EXPECT_EQ(bytes.find(marker) != std::string::npos, !secure);
  }
}

}  // namespace
}  // namespace txfn

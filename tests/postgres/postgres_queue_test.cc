// PostgresQueue: the DurableQueue conformance suite with reopen (one shard and four, each test
// on a database of its own), options and schemas it must refuse, two queue objects (as two
// processes would) sharing one database, and batches past a statement's chunk size.
#include "txfn/postgres_queue.h"

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/postgres/pg_test_util.h"
#include "tests/queue/queue_test_util.h"
#include "txfn/storage.h"
#include "txfn/testing/durable_queue_conformance.h"

namespace txfn {
namespace {

using pg_internal::PgConnection;
using ::testing::HasSubstr;
using testing::PgTestDatabase;

const absl::Time kT0 = absl::FromUnixSeconds(1'700'000'000);

// A PostgresQueue on a database of its own, dropped with the last queue on it.
class TempPostgresQueue final : public queue_test::ForwardingQueue {
 public:
  // `options` without url (shards, skip_scan_rows, ...): kept across Reopen, but for shards.
  static std::unique_ptr<DurableQueue> Make(PostgresQueueOptions options) {
    if (testing::PgServerUrl().empty()) {
      ADD_FAILURE() << "no PostgreSQL server: run scripts/test, or set TXFN_TEST_PG";
      return nullptr;
    }
    auto db = std::make_shared<PgTestDatabase>();
    if (absl::Status s = db->Create(); !s.ok()) {
      ADD_FAILURE() << s;
      return nullptr;
    }
    return Open(std::move(db), std::move(options));
  }
  static std::unique_ptr<DurableQueue> Reopen(std::unique_ptr<DurableQueue> old) {
    auto* temp = dynamic_cast<TempPostgresQueue*>(old.get());
    if (temp == nullptr) return nullptr;
    std::shared_ptr<PgTestDatabase> db = temp->db_;
    PostgresQueueOptions options = temp->options_;
    options.shards = 0;  // whatever the database has
    old.reset();
    return Open(std::move(db), std::move(options));
  }

 private:
  static std::unique_ptr<DurableQueue> Open(std::shared_ptr<PgTestDatabase> db,
                                            PostgresQueueOptions options) {
    options.url = db->url();
    auto q = PostgresQueue::Open(options);
    if (!q.ok()) {
      ADD_FAILURE() << q.status();
      return nullptr;
    }
    return std::unique_ptr<DurableQueue>(
        new TempPostgresQueue(std::move(db), std::move(options), *std::move(q)));
  }
  TempPostgresQueue(std::shared_ptr<PgTestDatabase> db, PostgresQueueOptions options,
                    std::unique_ptr<PostgresQueue> q)
      : ForwardingQueue(std::move(q)), db_(std::move(db)), options_(std::move(options)) {}

  std::shared_ptr<PgTestDatabase> db_;
  PostgresQueueOptions options_;
};

TXFN_INSTANTIATE_DURABLE_QUEUE_CONFORMANCE(
    Postgres, [] { return TempPostgresQueue::Make({.shards = 1}); }, &TempPostgresQueue::Reopen);
TXFN_INSTANTIATE_DURABLE_QUEUE_CONFORMANCE(
    PostgresFourShards, [] { return TempPostgresQueue::Make({.shards = 4}); },
    &TempPostgresQueue::Reopen);
// Leases that skip tenants go tenant by tenant at once (kLeaseByTenantHead), not only past a
// skipped backlog over 256 calls: the suite's leasing tests hold that path to the contract too.
TXFN_INSTANTIATE_DURABLE_QUEUE_CONFORMANCE(
    PostgresTenantByTenant,
    [] { return TempPostgresQueue::Make({.shards = 1, .skip_scan_rows = 0}); },
    &TempPostgresQueue::Reopen);

// `n` calls of `fn` due at kT0.
std::vector<Call> Calls(CallIdGenerator& ids, size_t n, const std::string& fn,
                        size_t args_bytes = 0) {
  std::vector<Call> out;
  for (size_t i = 0; i < n; ++i) {
    Call c;
    c.id = ids.Next();
    c.tenant = "t";
    c.function = fn;
    c.args = Value::String(std::string(args_bytes, 'a'));
    c.start_after = kT0;
    c.deadline = kT0 + absl::Hours(1);
    out.push_back(std::move(c));
  }
  return out;
}

TEST(PostgresQueueTest, OpenRefusesBadOptionsAndOtherShardCounts) {
  EXPECT_EQ(PostgresQueue::Open({}).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(PostgresQueue::Open({.url = "host='unterminated"}).status().code(),
            absl::StatusCode::kInvalidArgument);
  TXFN_REQUIRE_PG_SERVER();
  PgTestDatabase db;
  ASSERT_TRUE(db.Create().ok());
  EXPECT_EQ(PostgresQueue::Open({.url = db.url(), .shards = -1}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(PostgresQueue::Open({.url = db.url(), .shards = DurableQueue::kMaxShards + 1})
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(PostgresQueue::Open({.url = db.url(), .max_connections = 0}).status().code(),
            absl::StatusCode::kInvalidArgument);
  auto negative_scan = PostgresQueue::Open({.url = db.url(), .skip_scan_rows = -1});
  EXPECT_EQ(negative_scan.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(negative_scan.status().message(), HasSubstr("skip_scan_rows"));
  {
    auto q = PostgresQueue::Open({.url = db.url(), .shards = 3});
    ASSERT_TRUE(q.ok()) << q.status();
    EXPECT_EQ((*q)->shard_count(), 3);
  }
  auto other = PostgresQueue::Open({.url = db.url(), .shards = 2});
  EXPECT_EQ(other.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(other.status().message(), HasSubstr("3 shards"));
  auto same = PostgresQueue::Open({.url = db.url()});
  ASSERT_TRUE(same.ok()) << same.status();
  EXPECT_EQ((*same)->shard_count(), 3);

  auto conn = PgConnection::Open(db.url());
  ASSERT_TRUE(conn.ok());
  ASSERT_TRUE(
      (*conn)->Exec("UPDATE txfn_queue_meta SET value = 99 WHERE name = 'schema_version'").ok());
  auto newer = PostgresQueue::Open({.url = db.url()});
  EXPECT_EQ(newer.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(newer.status().message(), HasSubstr("version 99"));
}

// A table made before the tenant column existed gets it on Open. Its older rows count as
// tenant '' (they are not filled in); calls enqueued after are skipped by tenant.
TEST(PostgresQueueTest, OpenAddsTheTenantColumnToAnOlderTable) {
  TXFN_REQUIRE_PG_SERVER();
  PgTestDatabase db;
  ASSERT_TRUE(db.Create().ok());
  CallIdGenerator ids(3);
  std::vector<Call> calls = Calls(ids, 2, "f");
  {
    auto q = PostgresQueue::Open({.url = db.url()});
    ASSERT_TRUE(q.ok()) << q.status();
    ASSERT_EQ(*(*q)->Enqueue({&calls[0], 1}), 1u);
  }
  auto conn = PgConnection::Open(db.url());
  ASSERT_TRUE(conn.ok());
  // As a version 1 database made before the column existed.
  ASSERT_TRUE((*conn)->Exec("ALTER TABLE txfn_queue_calls DROP COLUMN tenant").ok());
  ASSERT_TRUE(
      (*conn)->Exec("UPDATE txfn_queue_meta SET value = 1 WHERE name = 'schema_version'").ok());
  auto q = PostgresQueue::Open({.url = db.url()});
  ASSERT_TRUE(q.ok()) << q.status();
  calls[1].start_after -= absl::Seconds(1);  // due first
  ASSERT_EQ(*(*q)->Enqueue({&calls[1], 1}), 1u);
  auto got = (*q)->Lease({.shard = 0, .skip_tenants = {"t"}, .now = kT0, .max = 10});
  ASSERT_TRUE(got.ok()) << got.status();
  ASSERT_EQ(got->size(), 1u);
  EXPECT_EQ((*got)[0].call.id, calls[0].id);
  EXPECT_EQ((*got)[0].call.tenant, "t");  // the stored call is whole
}

// Opening a queue already at this schema version locks no table: CREATE INDEX IF NOT EXISTS
// locks the table (SHARE) before it finds the index, so every Open waited for the other
// instances' running statements and held off their next ones.
TEST(PostgresQueueTest, OpeningACurrentSchemaLocksNoTable) {
  TXFN_REQUIRE_PG_SERVER();
  PgTestDatabase db;
  ASSERT_TRUE(db.Create().ok());
  ASSERT_TRUE(PostgresQueue::Open({.url = db.url()}).ok());
  auto writer = PgConnection::Open(db.url());
  ASSERT_TRUE(writer.ok());
  ASSERT_TRUE((*writer)->Exec("BEGIN").ok());
  ASSERT_TRUE((*writer)->Exec("LOCK TABLE txfn_queue_calls IN ROW EXCLUSIVE MODE").ok());
  // Waiting for a lock fails the Open at once instead of hanging the test.
  auto second = PostgresQueue::Open({.url = db.url() + " options='-clock_timeout=1s'"});
  EXPECT_TRUE(second.ok()) << second.status();
  ASSERT_TRUE((*writer)->Exec("ROLLBACK").ok());
}

TEST(PostgresQueueTest, UnreachableServerIsUnavailable) {
  auto q = PostgresQueue::Open({.url = "postgresql:///x?host=/nonexistent/socket/dir"});
  EXPECT_EQ(q.status().code(), absl::StatusCode::kUnavailable);
}

// Two queues on one database stand for two processes: each call is leased by one of them,
// and an ACK through either settles it.
TEST(PostgresQueueTest, TwoQueuesOnOneDatabaseShareTheCalls) {
  TXFN_REQUIRE_PG_SERVER();
  PgTestDatabase db;
  ASSERT_TRUE(db.Create().ok());
  auto a = PostgresQueue::Open({.url = db.url(), .shards = 1});
  auto b = PostgresQueue::Open({.url = db.url()});
  ASSERT_TRUE(a.ok() && b.ok());
  CallIdGenerator ids(7);
  const std::vector<Call> calls = Calls(ids, 100, "f");
  ASSERT_EQ(*(*a)->Enqueue(calls), 100u);
  EXPECT_EQ(*(*b)->Enqueue(calls), 0u) << "a retried Enqueue through another process";
  LeaseRequest req{.shard = 0, .now = kT0, .max = 60, .lease_duration = absl::Minutes(1)};
  auto la = (*a)->Lease(req);
  auto lb = (*b)->Lease(req);
  ASSERT_TRUE(la.ok() && lb.ok());
  EXPECT_EQ(la->size(), 60u);
  EXPECT_EQ(lb->size(), 40u);
  absl::flat_hash_set<CallId> seen;
  std::vector<Settlement> acks;
  for (const auto* leased : {&*la, &*lb}) {
    for (const LeasedCall& l : *leased) {
      EXPECT_TRUE(seen.insert(l.call.id).second) << "leased twice";
      acks.push_back(Settlement::Ack(l.token));
    }
  }
  auto settled = (*b)->Settle(acks, kT0);
  ASSERT_TRUE(settled.ok());
  for (const absl::Status& s : *settled) EXPECT_TRUE(s.ok()) << s;
  EXPECT_TRUE((*a)->Depths(kT0)->empty());
}

// An Enqueue larger than one statement's byte budget (one transaction of several INSERTs).
TEST(PostgresQueueTest, LargeEnqueueSpansSeveralStatements) {
  TXFN_REQUIRE_PG_SERVER();
  PgTestDatabase db;
  ASSERT_TRUE(db.Create().ok());
  auto q = PostgresQueue::Open({.url = db.url()});
  ASSERT_TRUE(q.ok());
  CallIdGenerator ids(8);
  std::vector<Call> calls = Calls(ids, 80, "big", 1 << 20);  // 80 MiB: three statements
  ASSERT_EQ(*(*q)->Enqueue(calls), 80u);
  // A batch whose last call is new and the rest known adds one.
  calls.push_back(Calls(ids, 1, "big")[0]);
  EXPECT_EQ(*(*q)->Enqueue(calls), 1u);
  auto depths = (*q)->Depths(kT0);
  ASSERT_TRUE(depths.ok());
  ASSERT_EQ(depths->size(), 1u);
  EXPECT_EQ((*depths)[0].pending, 81u);
}

// A connection the server drops fails the call on it (Unavailable: nothing changed) and is
// replaced: the next call works.
TEST(PostgresQueueTest, ALostConnectionFailsOneCallAndIsReplaced) {
  TXFN_REQUIRE_PG_SERVER();
  PgTestDatabase db;
  ASSERT_TRUE(db.Create().ok());
  auto q = PostgresQueue::Open({.url = db.url(), .max_connections = 1});
  ASSERT_TRUE(q.ok());
  CallIdGenerator ids(10);
  ASSERT_EQ(*(*q)->Enqueue(Calls(ids, 3, "f")), 3u);
  auto admin = PgConnection::Open(testing::PgServerUrl());
  ASSERT_TRUE(admin.ok());
  auto killed = (*admin)->Exec(
      "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1::text",
      {pg_internal::PgParam::Text(db.name())});
  ASSERT_TRUE(killed.ok()) << killed.status();
  ASSERT_EQ(killed->rows(), 1);
  absl::SleepFor(absl::Milliseconds(200));  // the backend exits asynchronously
  const std::vector<Call> more = Calls(ids, 2, "f");
  EXPECT_EQ((*q)->Enqueue(more).status().code(), absl::StatusCode::kUnavailable);
  auto retried = (*q)->Enqueue(more);
  ASSERT_TRUE(retried.ok()) << retried.status();
  EXPECT_EQ(*retried, 2u);
  EXPECT_EQ((*(*q)->Depths(kT0))[0].pending, 5u);
}

// The server process ends while the Enqueue commits (a deferred trigger ends it, as a
// server shutdown would): the client cannot know whether the calls were stored, and must not
// say "not stored" (a Submitter would then delete their spilled arguments).
TEST(PostgresQueueTest, AConnectionLostAtCommitIsAnUnknownOutcomeAndARetryIsExact) {
  TXFN_REQUIRE_PG_SERVER();
  PgTestDatabase db;
  ASSERT_TRUE(db.Create().ok());
  auto q = PostgresQueue::Open({.url = db.url(), .max_connections = 1});
  ASSERT_TRUE(q.ok());
  CallIdGenerator ids(11);
  ASSERT_EQ(*(*q)->Enqueue(Calls(ids, 2, "f")), 2u);
  auto admin = PgConnection::Open(db.url());
  ASSERT_TRUE(admin.ok());
  ASSERT_TRUE(testing::EndAtCommitAfter(**admin, "txfn_queue_calls", "INSERT").ok());
  const std::vector<Call> more = Calls(ids, 3, "f");
  absl::Status lost = (*q)->Enqueue(more).status();
  EXPECT_EQ(lost.code(), absl::StatusCode::kUnavailable) << lost;
  EXPECT_TRUE(IsCommitOutcomeUnknown(lost)) << lost;
  ASSERT_TRUE(testing::StopEndingAtCommit(**admin, "txfn_queue_calls").ok());
  auto retried = (*q)->Enqueue(more);
  ASSERT_TRUE(retried.ok()) << retried.status();
  EXPECT_EQ(*retried, 3u) << "the lost Enqueue was rolled back";
  EXPECT_EQ(*(*q)->Enqueue(more), 0u);
  EXPECT_EQ((*(*q)->Depths(kT0))[0].pending, 5u);
}

// Every change, not only an Enqueue, lost with its connection at COMMIT (or with its one
// statement sent) is an unknown outcome: a Settle, RemovePending or Redrive that said "not
// applied" (plain Unavailable) could have been applied, and its caller would act on the lie
// (keep a removed call's arguments forever, settle a call twice). Here nothing committed, so
// the same changes again all succeed.
TEST(PostgresQueueTest, EveryChangeLostAtCommitIsAnUnknownOutcome) {
  TXFN_REQUIRE_PG_SERVER();
  PgTestDatabase db;
  ASSERT_TRUE(db.Create().ok());
  auto q = PostgresQueue::Open({.url = db.url(), .max_connections = 1});
  ASSERT_TRUE(q.ok());
  CallIdGenerator ids(14);
  ASSERT_EQ(*(*q)->Enqueue(Calls(ids, 5, "f")), 5u);
  auto leased = (*q)->Lease({.now = kT0, .max = 4, .lease_duration = absl::Minutes(5)});
  ASSERT_TRUE(leased.ok()) << leased.status();
  ASSERT_EQ(leased->size(), 4u);
  auto token = [&](int i) { return (*leased)[i].token; };
  ASSERT_TRUE((*q)->DeadLetterCall(token(3), kT0, "to redrive").ok());
  auto pending = (*q)->ListCalls(CallId(), 10, {.state = QueuedCall::State::kPending}, kT0);
  ASSERT_TRUE(pending.ok() && pending->size() == 1u);
  const CallId pending_id = (*pending)[0].call.id;
  const CallId dead_id = (*leased)[3].call.id;
  const std::vector<Settlement> batch = {Settlement::Nack(token(0), kT0 + absl::Seconds(1)),
                                         Settlement::Ack(token(1))};
  const std::vector<Settlement> acks = {Settlement::Ack(token(2))};
  auto admin = PgConnection::Open(db.url());
  ASSERT_TRUE(admin.ok());
  ASSERT_TRUE(testing::EndAtCommitAfter(**admin, "txfn_queue_calls", "UPDATE OR DELETE").ok());
  auto expect_unknown = [](const absl::Status& s, const char* what) {
    EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable) << what << ": " << s;
    EXPECT_TRUE(IsCommitOutcomeUnknown(s)) << what << ": " << s;
  };
  expect_unknown((*q)->Settle(batch, kT0).status(), "a Settle (one transaction)");
  expect_unknown((*q)->Settle(acks, kT0).status(), "a Settle of ACKs (one statement)");
  expect_unknown((*q)->Extend({token(0)}, kT0, absl::Minutes(9)).status(), "an Extend");
  expect_unknown((*q)->RemovePending({pending_id}, kT0).status(), "a RemovePending");
  expect_unknown((*q)->Redrive({dead_id}, kT0).status(), "a Redrive");
  ASSERT_TRUE(testing::StopEndingAtCommit(**admin, "txfn_queue_calls").ok());
  auto all_ok = [](const absl::StatusOr<std::vector<absl::Status>>& r, const char* what) {
    ASSERT_TRUE(r.ok()) << what << ": " << r.status();
    for (const absl::Status& s : *r) EXPECT_TRUE(s.ok()) << what << ": " << s;
  };
  all_ok((*q)->Extend({token(0)}, kT0, absl::Minutes(9)), "Extend");
  all_ok((*q)->Settle(batch, kT0), "Settle");
  all_ok((*q)->Settle(acks, kT0), "Settle of ACKs");
  all_ok((*q)->RemovePending({pending_id}, kT0), "RemovePending");
  all_ok((*q)->Redrive({dead_id}, kT0), "Redrive");
}

// Makes the queue's UPDATEs of rows matching `when` (SQL on NEW) fail, like any statement
// error that leaves the connection up (a lock or statement timeout, a deadlock).
void FailUpdatesWhen(PgConnection& admin, const std::string& when) {
  ASSERT_TRUE(admin
                  .Exec("CREATE FUNCTION boom() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                        "RAISE EXCEPTION 'boom'; END $$; CREATE TRIGGER boom BEFORE UPDATE ON "
                        "txfn_queue_calls FOR EACH ROW WHEN (" +
                        when + ") EXECUTE FUNCTION boom()")
                  .ok());
}

// A batch of settlements is one transaction: when a statement of it fails, none of it
// applies, and Settle must say so (it said OK, and the ACK's caller deleted the spilled
// arguments of a call that was then delivered again).
TEST(PostgresQueueTest, ASettlementBatchWithAFailedStatementIsAnErrorAndChangesNothing) {
  TXFN_REQUIRE_PG_SERVER();
  PgTestDatabase db;
  ASSERT_TRUE(db.Create().ok());
  auto q = PostgresQueue::Open({.url = db.url(), .max_connections = 1});
  ASSERT_TRUE(q.ok());
  CallIdGenerator ids(12);
  ASSERT_EQ(*(*q)->Enqueue(Calls(ids, 2, "f")), 2u);
  auto leased = (*q)->Lease({.now = kT0, .max = 2});
  ASSERT_TRUE(leased.ok()) << leased.status();
  ASSERT_EQ(leased->size(), 2u);
  auto admin = PgConnection::Open(db.url());
  ASSERT_TRUE(admin.ok());
  FailUpdatesWhen(**admin, "NEW.reason = 'boom'");
  const std::vector<Settlement> batch = {
      Settlement::Ack((*leased)[0].token),
      Settlement::Nack((*leased)[1].token, kT0 + absl::Seconds(1), "boom")};
  auto settled = (*q)->Settle(batch, kT0);
  EXPECT_FALSE(settled.ok()) << "the batch was rolled back";
  for (const LeasedCall& l : *leased) {
    auto found = (*q)->Find(l.call.id, kT0);
    ASSERT_TRUE(found.ok() && found->has_value());
    EXPECT_EQ((*found)->state, QueuedCall::State::kLeased) << "the ACK did not apply";
  }
  ASSERT_TRUE((*admin)->Exec("DROP TRIGGER boom ON txfn_queue_calls").ok());
  settled = (*q)->Settle(batch, kT0);
  ASSERT_TRUE(settled.ok()) << settled.status();
  for (const absl::Status& s : *settled) EXPECT_TRUE(s.ok()) << s;
}

// A lease's calls are committed by its statement; when the dead-lettering after it fails,
// they are still handed out (they were held by nobody until they expired, an attempt spent:
// with max_attempts 1, dead-lettered without ever running).
TEST(PostgresQueueTest, ALeaseWhoseDeadLetteringFailsStillHandsOutWhatItLeased) {
  TXFN_REQUIRE_PG_SERVER();
  PgTestDatabase db;
  ASSERT_TRUE(db.Create().ok());
  auto q = PostgresQueue::Open({.url = db.url(), .max_connections = 1});
  ASSERT_TRUE(q.ok());
  CallIdGenerator ids(13);
  std::vector<Call> calls = Calls(ids, 2, "f");
  calls[0].retry.max_attempts = 1;
  calls[1].deadline = kT0 + absl::Seconds(1);  // past when leased: dead-lettered instead
  ASSERT_EQ(*(*q)->Enqueue(calls), 2u);
  auto admin = PgConnection::Open(db.url());
  ASSERT_TRUE(admin.ok());
  FailUpdatesWhen(**admin, "NEW.state = 2");
  auto leased = (*q)->Lease({.now = kT0 + absl::Seconds(2), .max = 2});
  ASSERT_TRUE(leased.ok()) << leased.status();
  ASSERT_EQ(leased->size(), 1u);
  EXPECT_EQ((*leased)[0].call.id, calls[0].id);
  ASSERT_TRUE((*admin)->Exec("DROP TRIGGER boom ON txfn_queue_calls").ok());
  auto acked = (*q)->Settle({Settlement::Ack((*leased)[0].token)}, kT0 + absl::Seconds(2));
  ASSERT_TRUE(acked.ok()) << acked.status();
  EXPECT_TRUE((*acked)[0].ok()) << (*acked)[0];
}

// Quotes and backslashes in reasons survive the array literal the lease's dead-lettering uses.
TEST(PostgresQueueTest, ReasonsWithQuotesSurviveBatchedDeadLettering) {
  TXFN_REQUIRE_PG_SERVER();
  PgTestDatabase db;
  ASSERT_TRUE(db.Create().ok());
  auto q = PostgresQueue::Open({.url = db.url()});
  ASSERT_TRUE(q.ok());
  CallIdGenerator ids(9);
  std::vector<Call> calls = Calls(ids, 1, "f");
  calls[0].retry.max_attempts = 2;
  ASSERT_TRUE((*q)->Enqueue(calls).ok());
  const std::string why = R"(a "quoted" \ reason, {with} braces)";
  auto first = (*q)->Lease({.shard = 0, .now = kT0, .max = 1});
  ASSERT_EQ(first->size(), 1u);
  ASSERT_TRUE((*q)->Nack((*first)[0].token, kT0, kT0, why).ok());
  // The second delivery's lease expires; the next lease finds the attempts used up.
  auto second = (*q)->Lease({.shard = 0, .now = kT0, .max = 1, .lease_duration = absl::Seconds(1)});
  ASSERT_EQ(second->size(), 1u);
  auto third = (*q)->Lease({.shard = 0, .now = kT0 + absl::Seconds(2), .max = 1});
  ASSERT_TRUE(third.ok());
  EXPECT_TRUE(third->empty());
  auto dead = (*q)->ListDeadLetters(CallId(), 10);
  ASSERT_TRUE(dead.ok());
  ASSERT_EQ(dead->size(), 1u);
  EXPECT_EQ((*dead)[0].reason, AttemptsReason(2, why));
}

}  // namespace
}  // namespace txfn

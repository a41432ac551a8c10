// Two engine processes on one PostgreSQL database and one tenant (issue: "several processes,
// one tenant"). A child process owns the tenant and commits mutations as fast as it can,
// acknowledging each on its stdout; this process's engine meanwhile serves the tenant's
// queries and must see every acknowledged commit (reads at the published timestamp), and
// its mutations are refused naming the owner. Then the owner is killed (SIGKILL: its lease
// is never released), and this engine takes the tenant over once the lease expires. Every
// mutation adds one item and counts it in a counter document, in one transaction, so at
// the end: every acknowledged item is there once, at most the one in flight at the kill
// besides, and the counter equals the number of items — a takeover on stale state (the
// committer's view from before the owner's last commits) would have lost counts.
//
// The test binary is its own child (`--setup URL`, `--own URL`): V8 starts in each process
// on its own.
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/child_process.h"
#include "tests/postgres/pg_test_util.h"
#include "tests/queue/queue_test_util.h"
#include "txfn/call_records.h"
#include "txfn/engine.h"
#include "txfn/postgres_engine.h"
#include "txfn/postgres_queue.h"
#include "txfn/postgres_storage.h"
#include "txfn/storage.h"

namespace txfn {
namespace {

using ::testing::HasSubstr;
using testing_util::Child;

constexpr char kTenant[] = "shop";
constexpr char kOwner[] = "engine-a";
// The killed owner's lease runs out this long after its last commit.
constexpr absl::Duration kOwnerLease = absl::Seconds(1);

constexpr const char* kSchema = R"({"tables": {
  "counters": {"fields": {"total": "number"}},
  "items": {"fields": {"n": "number", "by": "string"}, "indexes": {"by_n": ["n"]}}
}})";
constexpr const char* kModule = R"JS(
import { query, mutation } from "txfn/server";
export const add = mutation({args: {n: "number", by: "string"}, handler: async (ctx, a) => {
  const c = await ctx.db.query("counters").first();
  if (c === null) await ctx.db.insert("counters", { total: 1 });
  else await ctx.db.patch(c._id, { total: c.total + 1 });
  await ctx.db.insert("items", { n: a.n, by: a.by });
  return a.n;
}});
export const total = query({args: {}, handler: async (ctx) => {
  const c = await ctx.db.query("counters").first();
  return c === null ? 0 : c.total;
}});
export const items = query({args: {}, handler: async (ctx) =>
  (await ctx.db.query("items").collect()).map((i) => i.n)});
export const fails = mutation({args: {}, handler: async (ctx) => {
  await ctx.db.insert("items", { n: -1, by: "fails" });
  throw new Error("deliberate failure");
}});
export const later = mutation({args: {}, handler: async (ctx) =>
  await ctx.scheduler.runAfter(3600000, "m:add", {n: 99, by: "later"})});
)JS";

EngineOptions Options() {
  EngineOptions options;
  options.scheduler.workers = 2;
  options.queued.run = false;
  return options;
}

Value Add(int n, const std::string& by) {
  return Value::FromObject({{"n", Value::Float64(n)}, {"by", Value::String(by)}});
}

int Fail(const absl::Status& s) {
  std::fprintf(stderr, "child: %s\n", s.ToString().c_str());
  return 3;
}

// --setup URL: the tenant and its module, by an engine that then closes (releasing the
// tenant's lease).
int Setup(const std::string& url) {
  auto engine = OpenPostgresEngine(url, Options(), {.owner = "setup"});
  if (!engine.ok()) return Fail(engine.status());
  if (absl::Status s = (*engine)->CreateTenant(kTenant); !s.ok()) return Fail(s);
  if (absl::Status s = (*engine)->DeployJson(kTenant, {{"m.js", kModule}}, kSchema); !s.ok()) {
    return Fail(s);
  }
  return 0;
}

// --own URL: adds items 1, 2, ... until killed, printing each acknowledged one.
int Own(const std::string& url) {
  auto engine =
      OpenPostgresEngine(url, Options(), {.owner = kOwner, .lease_duration = kOwnerLease});
  if (!engine.ok()) return Fail(engine.status());
  for (int n = 1;; ++n) {
    absl::StatusOr<CallResult> added = (*engine)->Mutation(kTenant, "m:add", Add(n, kOwner));
    if (!added.ok()) return Fail(added.status());
    std::printf("%d\n", n);
    std::fflush(stdout);
  }
}

// The acknowledged item numbers among `lines`.
void CollectAcks(const std::vector<std::string>& lines, std::set<int>* acked) {
  for (const std::string& line : lines) {
    int n = 0;
    if (absl::SimpleAtoi(line, &n)) acked->insert(n);
  }
}

TEST(PostgresEngineTakeoverTest, AnotherEngineFollowsTheOwnerAndTakesOverAfterItIsKilled) {
  TXFN_REQUIRE_PG_SERVER();
  testing::PgTestDatabase db;
  ASSERT_TRUE(db.Create().ok());
  {
    Child setup({"--setup", db.url()});
    ASSERT_EQ(setup.Wait(), 0);
  }
  Child owner({"--own", db.url()});
  std::set<int> acked;
  CollectAcks(owner.Read(absl::Seconds(30)), &acked);
  ASSERT_FALSE(acked.empty()) << "the owner process committed nothing";

  auto engine = OpenPostgresEngine(db.url(), Options(), {.owner = "engine-b"});
  ASSERT_TRUE(engine.ok()) << engine.status();
  Engine& b = **engine;

  // While the owner runs: b's queries see at least every commit acknowledged before they
  // started (b's own state was loaded once; only following the owner keeps it current).
  int followed = 0;
  for (int i = 0; i < 30; ++i) {
    CollectAcks(owner.Read(absl::Milliseconds(20)), &acked);
    const int acked_so_far = acked.empty() ? 0 : *acked.rbegin();
    absl::StatusOr<CallResult> total = b.Query(kTenant, "m:total", Value::Null());
    ASSERT_TRUE(total.ok()) << total.status();
    EXPECT_GE(total->value.float64(), acked_so_far) << "query " << i << " served a stale snapshot";
    if (total->value.float64() > 0) ++followed;
  }
  EXPECT_EQ(followed, 30);
  // ...and its mutations are refused, naming the owner.
  absl::StatusOr<CallResult> refused = b.Mutation(kTenant, "m:add", Add(-1, "engine-b"));
  ASSERT_FALSE(refused.ok());
  EXPECT_THAT(std::string(refused.status().message()), HasSubstr(kOwner));

  owner.Kill();
  CollectAcks(owner.ReadAll(absl::Seconds(5)), &acked);
  const int last_acked = *acked.rbegin();

  // b takes over once the owner's lease has run out.
  const absl::Time end = absl::Now() + absl::Seconds(20);
  int first_own = 1'000'000;
  absl::StatusOr<CallResult> took = absl::UnavailableError("not tried");
  int attempts = 0;
  while (absl::Now() < end) {
    ++attempts;
    took = b.Mutation(kTenant, "m:add", Add(first_own, "engine-b"));
    if (took.ok()) break;
    EXPECT_THAT(std::string(took.status().message()), HasSubstr(kOwner)) << took.status();
    absl::SleepFor(absl::Milliseconds(50));
  }
  ASSERT_TRUE(took.ok()) << "no takeover after " << attempts << " attempts: " << took.status();
  std::set<int> own = {first_own};
  for (int n = first_own + 1; n < first_own + 20; ++n) {
    absl::StatusOr<CallResult> added = b.Mutation(kTenant, "m:add", Add(n, "engine-b"));
    ASSERT_TRUE(added.ok()) << added.status();
    own.insert(n);
  }

  absl::StatusOr<CallResult> items = b.Query(kTenant, "m:items", Value::Null());
  ASSERT_TRUE(items.ok()) << items.status();
  std::map<int, int> copies;
  for (const Value& n : items->value.array()) ++copies[static_cast<int>(n.float64())];
  for (const auto& [n, count] : copies) EXPECT_EQ(count, 1) << "item " << n << " added twice";
  for (int n : acked) EXPECT_EQ(copies.count(n), 1u) << "acknowledged item " << n << " lost";
  for (int n : own) EXPECT_EQ(copies.count(n), 1u) << "b's item " << n << " lost";
  EXPECT_EQ(copies.count(-1), 0u) << "a refused mutation wrote";
  // Besides those: at most the owner's one unacknowledged commit in flight at the kill.
  const size_t unacked = copies.size() - acked.size() - own.size();
  EXPECT_LE(unacked, 1u);
  if (unacked == 1) {
    EXPECT_EQ(copies.count(last_acked + 1), 1u);
  }
  absl::StatusOr<CallResult> total = b.Query(kTenant, "m:total", Value::Null());
  ASSERT_TRUE(total.ok()) << total.status();
  EXPECT_EQ(total->value.float64(), static_cast<double>(copies.size()))
      << "the counter lost or doubled updates across the takeover";
  RecordProperty("owner_commits_acknowledged", static_cast<int>(acked.size()));
  RecordProperty("takeover_attempts", attempts);
}

// Two live engines that take turns at a tenant, each waiting out the other's lease: an engine
// that lost the tenant takes it back by its next mutation (before, it refused every write
// until restarted, asking for an AcquireTenant no engine makes), and on state reloaded with
// the other's commits, so the counter counts every item once.
TEST(PostgresEngineTakeoverTest, TwoLiveEnginesTakeATenantInTurnsWithoutLosingUpdates) {
  TXFN_REQUIRE_PG_SERVER();
  testing::PgTestDatabase db;
  ASSERT_TRUE(db.Create().ok());
  const absl::Duration lease = absl::Milliseconds(300);
  auto a = OpenPostgresEngine(db.url(), Options(), {.owner = "a", .lease_duration = lease});
  ASSERT_TRUE(a.ok()) << a.status();
  auto b = OpenPostgresEngine(db.url(), Options(), {.owner = "b", .lease_duration = lease});
  ASSERT_TRUE(b.ok()) << b.status();
  ASSERT_TRUE((*a)->CreateTenant(kTenant).ok());
  ASSERT_TRUE((*a)->DeployJson(kTenant, {{"m.js", kModule}}, kSchema).ok());
  Engine* turns[] = {a->get(), b->get(), a->get(), b->get(), a->get()};
  int n = 0;
  for (Engine* engine : turns) {
    absl::SleepFor(lease + absl::Milliseconds(200));  // the other's lease runs out
    for (int i = 0; i < 3; ++i) {
      ++n;
      // The other engine's background reads (retention) may have extended its lease: then
      // the refusal says so, and the next try after it ran out takes the tenant.
      absl::StatusOr<CallResult> added = engine->Mutation(kTenant, "m:add", Add(n, "x"));
      for (int tries = 0; tries < 20 && IsTenantOwnedElsewhere(added.status()); ++tries) {
        absl::SleepFor(lease);
        added = engine->Mutation(kTenant, "m:add", Add(n, "x"));
      }
      ASSERT_TRUE(added.ok()) << "item " << n << ": " << added.status();
    }
  }
  for (Engine* engine : {a->get(), b->get()}) {
    absl::StatusOr<CallResult> total = engine->Query(kTenant, "m:total", Value::Null());
    ASSERT_TRUE(total.ok()) << total.status();
    EXPECT_EQ(total->value.float64(), n) << "the counter lost updates across the turns";
    absl::StatusOr<CallResult> items = engine->Query(kTenant, "m:items", Value::Null());
    ASSERT_TRUE(items.ok()) << items.status();
    EXPECT_EQ(items->value.array().size(), static_cast<size_t>(n));
  }
}

// An engine "owner" on the database at `url` that created kTenant, deployed kModule and added
// item 1 (so it holds the tenant's lease).
void OpenOwner(const std::string& url, std::unique_ptr<Engine>* owner) {
  auto engine = OpenPostgresEngine(url, Options(), {.owner = "owner"});
  ASSERT_TRUE(engine.ok()) << engine.status();
  *owner = *std::move(engine);
  ASSERT_TRUE((*owner)->CreateTenant(kTenant).ok());
  ASSERT_TRUE((*owner)->DeployJson(kTenant, {{"m.js", kModule}}, kSchema).ok());
  ASSERT_TRUE((*owner)->Mutation(kTenant, "m:add", Add(1, "owner")).ok());
}

// An engine that does not own the tenant deletes it while its owner has it open (`txfn delete`
// beside `txfn serve`): the owner's next mutation is refused, not written (it wrote the tenant
// again, without its modules and schema), and it serves the tenant no more.
TEST(PostgresEngineTakeoverTest, ATenantDeletedByAnotherEngineIsNotWrittenAgainByItsOwner) {
  TXFN_REQUIRE_PG_SERVER();
  testing::PgTestDatabase db;
  ASSERT_TRUE(db.Create().ok());
  std::unique_ptr<Engine> owner;
  ASSERT_NO_FATAL_FAILURE(OpenOwner(db.url(), &owner));
  auto other = OpenPostgresEngine(db.url(), Options(), {.owner = "other"});
  ASSERT_TRUE(other.ok()) << other.status();
  ASSERT_TRUE((*other)->DeleteTenant(kTenant).ok());

  absl::StatusOr<CallResult> added = owner->Mutation(kTenant, "m:add", Add(2, "owner"));
  EXPECT_TRUE(absl::IsNotFound(added.status())) << added.status();
  EXPECT_TRUE(IsTenantDeletedElsewhere(added.status())) << added.status();
  EXPECT_THAT(*(*other)->ListTenants(), ::testing::IsEmpty()) << "not brought back";
  absl::StatusOr<CallResult> total = owner->Query(kTenant, "m:total", Value::Null());
  EXPECT_TRUE(absl::IsNotFound(total.status())) << total.status();
}

// A queued call of `function` submitted while "owner" owns the tenant and "other" runs the
// queued calls: other's deliveries are given back, not counted as attempts, and the call
// ends in `state` once the owner lets the tenant go. Returns how it ended.
CallInfo RunQueuedByANonOwner(const std::string& url, const std::string& function,
                              const Value& args, CallState state) {
  std::unique_ptr<Engine> owner;
  OpenOwner(url, &owner);
  EngineOptions runs = Options();
  runs.queued.run = true;
  runs.queued.unavailable_retry = absl::Milliseconds(100);
  runs.queued.poll_interval = absl::Milliseconds(5);
  auto other = OpenPostgresEngine(url, runs, {.owner = "other"});
  EXPECT_TRUE(other.ok()) << other.status();
  if (owner == nullptr || !other.ok()) return {};
  absl::StatusOr<CallId> id = owner->Submit(kTenant, function, args);
  EXPECT_TRUE(id.ok()) << id.status();
  if (!id.ok()) return {};
  for (int i = 0; i < 500 && (*other)->stats().queued.unavailable < 5; ++i) {
    absl::SleepFor(absl::Milliseconds(10));
  }
  EXPECT_GE((*other)->stats().queued.unavailable, 5u);
  // Between deliveries: during one the call is leased (running, its attempt counted) until
  // other gives it back; a loaded machine caught it there. Given back, it must be pending with
  // no attempt counted.
  absl::StatusOr<CallInfo> waiting = (*other)->GetCall(*id);
  for (int i = 0; i < 200 && waiting.ok() && waiting->state == CallState::kRunning; ++i) {
    absl::SleepFor(absl::Milliseconds(5));
    waiting = (*other)->GetCall(*id);
  }
  EXPECT_TRUE(waiting.ok()) << waiting.status();
  if (waiting.ok()) {
    EXPECT_EQ(waiting->state, CallState::kPending) << waiting->error;
    EXPECT_EQ(waiting->attempts, 0);
  }

  owner.reset();  // closing releases the tenant
  absl::StatusOr<CallInfo> ended = (*other)->GetCall(*id);
  for (int i = 0; i < 1000 && ended.ok() && ended->state != state; ++i) {
    absl::SleepFor(absl::Milliseconds(10));
    ended = (*other)->GetCall(*id);
  }
  EXPECT_TRUE(ended.ok()) << ended.status();
  if (!ended.ok()) return {};
  EXPECT_EQ(ended->state, state) << ended->error;
  EXPECT_EQ(ended->attempts, 1);
  return *ended;
}

// A queued mutation that an engine not owning the tenant leases is given back, not counted as
// an attempt (it was dead-lettered after three such deliveries while its owner was healthy),
// and runs once the owner lets the tenant go.
TEST(PostgresEngineTakeoverTest, AQueuedMutationLeasedByANonOwnerWaitsForTheTenant) {
  TXFN_REQUIRE_PG_SERVER();
  testing::PgTestDatabase db;
  ASSERT_TRUE(db.Create().ok());
  RunQueuedByANonOwner(db.url(), "m:add", Add(2, "queued"), CallState::kSucceeded);
  auto engine = OpenPostgresEngine(db.url(), Options(), {.owner = "reader"});
  ASSERT_TRUE(engine.ok()) << engine.status();
  absl::StatusOr<CallResult> total = (*engine)->Query(kTenant, "m:total", Value::Null());
  ASSERT_TRUE(total.ok()) << total.status();
  EXPECT_EQ(total->value.float64(), 2);
}

// The same for one that throws: its failure could not be recorded by the non-owner either, and
// that refusal counted as an attempt, so a call that failed by its own error was
// dead-lettered "attempts exhausted ... not owned by this instance" (a PostgreSQL history
// check with three servers: up to 14 of 20 such calls).
TEST(PostgresEngineTakeoverTest, AQueuedMutationThatThrowsLeasedByANonOwnerFailsOnce) {
  TXFN_REQUIRE_PG_SERVER();
  testing::PgTestDatabase db;
  ASSERT_TRUE(db.Create().ok());
  const CallInfo failed =
      RunQueuedByANonOwner(db.url(), "m:fails", Value::FromObject({}), CallState::kFailed);
  EXPECT_THAT(failed.error.message(), HasSubstr("deliberate failure"));
  auto engine = OpenPostgresEngine(db.url(), Options(), {.owner = "reader"});
  ASSERT_TRUE(engine.ok()) << engine.status();
  absl::StatusOr<CallResult> items = (*engine)->Query(kTenant, "m:items", Value::Null());
  ASSERT_TRUE(items.ok()) << items.status();
  EXPECT_EQ(items->value, Value::FromArray({Value::Float64(1)})) << "a failed call wrote";
}

// An engine that runs calls deletes expired idempotency keys of every tenant, also of one that
// another engine serves. Its deleting write took an idle tenant's lease (nobody held it) and
// kept it for its own lease_duration, so the serving engine's mutations were refused that long
// (here 30 s); now the pruner gives the tenant back at once.
TEST(PostgresEngineTakeoverTest, PruningAnIdleTenantsKeysLeavesItsLeaseFree) {
  TXFN_REQUIRE_PG_SERVER();
  testing::PgTestDatabase db;
  ASSERT_TRUE(db.Create().ok());
  const absl::Duration lease = absl::Milliseconds(300);
  auto server =
      OpenPostgresEngine(db.url(), Options(), {.owner = "server", .lease_duration = lease});
  ASSERT_TRUE(server.ok()) << server.status();
  ASSERT_TRUE((*server)->CreateTenant(kTenant).ok());
  ASSERT_TRUE((*server)->DeployJson(kTenant, {{"m.js", kModule}}, kSchema).ok());
  const MutationOptions keyed{.idempotency_key = "k"};
  ASSERT_TRUE((*server)->Mutation(kTenant, "m:add", Add(1, "server"), keyed).ok());
  // The key must be older than the pruner's retention by the tenant's newest commit.
  absl::SleepFor(absl::Milliseconds(400));
  ASSERT_TRUE((*server)->Mutation(kTenant, "m:add", Add(2, "server")).ok());

  EngineOptions prunes = Options();
  prunes.queued.run = true;
  prunes.idempotency_key_retention = absl::Milliseconds(200);  // passes every 100 ms
  auto pruner = OpenPostgresEngine(db.url(), prunes,
                                   {.owner = "pruner", .lease_duration = absl::Seconds(30)});
  ASSERT_TRUE(pruner.ok()) << pruner.status();
  // Its passes are refused while the server's lease runs, and delete the key once it ran out.
  const absl::Time end = absl::Now() + absl::Seconds(30);
  while (absl::Now() < end && (*pruner)->stats().retention.idempotency_keys_pruned == 0) {
    absl::SleepFor(absl::Milliseconds(20));
  }
  ASSERT_EQ((*pruner)->stats().retention.idempotency_keys_pruned, 1u);
  // Given back at once (the pruner's own lease would run 30 s).
  auto observer = PostgresStorage::Open({.url = db.url(), .owner = "observer"});
  ASSERT_TRUE(observer.ok()) << observer.status();
  absl::StatusOr<TenantLease> lease_now = (*observer)->Lease(kTenant);
  ASSERT_TRUE(lease_now.ok()) << lease_now.status();
  EXPECT_EQ(lease_now->owner, "");

  absl::StatusOr<CallResult> added = (*server)->Mutation(kTenant, "m:add", Add(3, "server"));
  EXPECT_TRUE(added.ok()) << added.status();
  absl::StatusOr<CallResult> again = (*server)->Mutation(kTenant, "m:add", Add(1, "server"), keyed);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_FALSE(again->replayed) << "the key was deleted: the mutation ran again";
  absl::StatusOr<CallResult> total = (*pruner)->Query(kTenant, "m:total", Value::Null());
  ASSERT_TRUE(total.ok()) << total.status();
  EXPECT_EQ(total->value.float64(), 4);
}

// A call that an engine committed to a tenant's outbox and died before queueing is queued by
// another engine's outbox sweep, which then deletes the entry. That write took the idle
// tenant's lease and kept it for the sweeper's lease_duration (here 30 s), so the engine
// serving the tenant next had its mutations refused that long; now it is given back at once.
TEST(PostgresEngineTakeoverTest, DeletingAnIdleTenantsOutboxEntriesLeavesItsLeaseFree) {
  TXFN_REQUIRE_PG_SERVER();
  testing::PgTestDatabase db;
  ASSERT_TRUE(db.Create().ok());
  ASSERT_EQ(txfn::Setup(db.url()), 0);
  CallId left;
  {
    auto queue = PostgresQueue::Open({.url = db.url()});
    ASSERT_TRUE(queue.ok()) << queue.status();
    auto failing = std::make_shared<queue_test::CountingQueue>(*std::move(queue));
    failing->FailEnqueue(true);  // as if it died between its commit and its enqueue
    EngineOptions dies = Options();
    dies.queued.queue = failing;
    auto engine = OpenPostgresEngine(db.url(), dies, {.owner = "dies"});
    ASSERT_TRUE(engine.ok()) << engine.status();
    absl::StatusOr<CallResult> later =
        (*engine)->Mutation(kTenant, "m:later", Value::FromObject({}));
    ASSERT_TRUE(later.ok()) << later.status();
    left = CallId::Parse(later->value.string()).value();
    EXPECT_EQ(ListOutbox(**(*engine)->Latest(kTenant))->size(), 1u);
  }  // closing gives the tenant back (a killed engine's lease runs out)

  EngineOptions sweeps = Options();
  sweeps.queued.run = true;
  sweeps.queued.outbox_sweep_interval = absl::Milliseconds(200);
  auto sweeper = OpenPostgresEngine(db.url(), sweeps,
                                    {.owner = "sweeper", .lease_duration = absl::Seconds(30)});
  ASSERT_TRUE(sweeper.ok()) << sweeper.status();
  const absl::Time end = absl::Now() + absl::Seconds(20);
  while (absl::Now() < end && !ListOutbox(**(*sweeper)->Latest(kTenant))->empty()) {
    absl::SleepFor(absl::Milliseconds(20));
  }
  ASSERT_TRUE(ListOutbox(**(*sweeper)->Latest(kTenant))->empty()) << "the entry was not deleted";
  absl::StatusOr<CallInfo> queued = (*sweeper)->GetCall(left);
  ASSERT_TRUE(queued.ok()) << queued.status();
  EXPECT_EQ(queued->state, CallState::kPending) << "queued, to run in an hour";

  // Given back right after the deleting commit (polled: the release follows the commit).
  auto observer = PostgresStorage::Open({.url = db.url(), .owner = "observer"});
  ASSERT_TRUE(observer.ok()) << observer.status();
  absl::StatusOr<TenantLease> lease = (*observer)->Lease(kTenant);
  for (const absl::Time until = absl::Now() + absl::Seconds(5);
       absl::Now() < until && lease.ok() && !lease->owner.empty();) {
    absl::SleepFor(absl::Milliseconds(10));
    lease = (*observer)->Lease(kTenant);
  }
  ASSERT_TRUE(lease.ok()) << lease.status();
  EXPECT_EQ(lease->owner, "") << "the sweeper kept the tenant (its lease runs 30 s)";
  auto server = OpenPostgresEngine(db.url(), Options(), {.owner = "server"});
  ASSERT_TRUE(server.ok()) << server.status();
  absl::StatusOr<CallResult> added = (*server)->Mutation(kTenant, "m:add", Add(1, "server"));
  EXPECT_TRUE(added.ok()) << added.status();
}

}  // namespace
}  // namespace txfn

int main(int argc, char** argv) {
  if (argc >= 3) {
    const std::string mode = argv[1];
    if (mode == "--setup") return txfn::Setup(argv[2]);
    if (mode == "--own") return txfn::Own(argv[2]);
  }
  testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}

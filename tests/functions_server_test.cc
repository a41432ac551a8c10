// FunctionsServer + FunctionsClient on loopback: the engine's calls from another "process"
// (a client over real gRPC), and access control by API keys.
#include "txfn/functions_server.h"

#include <arpa/inet.h>
#include <grpc/support/time.h>
#include <grpcpp/grpcpp.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <cstdio>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/cleanup/cleanup.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "lib/remote/functions_convert.h"
#include "lib/remote/grpc_util.h"
#include "lib/wire/wire_proto.h"
#include "tests/held_grpc_streams.h"
#include "tests/resident_memory.h"
#include "txfn/errors.h"
#include "txfn/functions_client.h"
#include "txfn/in_memory_storage.h"
#include "txfn/storage.h"
#include "txfn/testing/fault_injecting_storage.h"
#include "txfn/v1/functions.grpc.pb.h"

namespace txfn {
namespace {

using ::testing::HasSubstr;

constexpr const char* kSchema = R"({"tables": {"notes": {"fields": {"text": "string"}}}})";
constexpr const char* kNotes = R"JS(
import { query, mutation } from "txfn/server";
export const add = mutation(async (ctx, { text }) => {
  console.log("adding", text);
  return ctx.db.insert("notes", { text });
});
export const echo = mutation(async (ctx, args) => {
  await ctx.db.insert("notes", { text: "deep" });
  return args;
});
export const count = query(async (ctx) => (await ctx.db.query("notes").collect()).length);
export const slowAdd = mutation(async (ctx, { text }) => {
  let x = 0;
  for (let i = 0; i < 2e7; i++) x += i;  // tens of ms (Date.now() is frozen in a run)
  return ctx.db.insert("notes", { text: text + x % 2 });
});
export const spin = query(async () => { for (;;) {} });
export const big = query(async (ctx, { n }) => "x".repeat(n));
export const refuse = mutation(async () => {
  const e = new Error("not today"); e.data = { code: "NOPE" }; throw e;
});
)JS";

Value Text(const std::string& text) { return Value::FromObject({{"text", Value::String(text)}}); }

class FunctionsServerTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_NO_FATAL_FAILURE(Reopen(QueuedCallOptions())); }
  // A new engine (with `queued`) and server, tenants "a" and "b" deployed.
  void Reopen(QueuedCallOptions queued) {
    if (server_ != nullptr) server_->Shutdown(absl::ZeroDuration());
    server_.reset();
    EngineOptions engine_options;
    engine_options.scheduler.workers = 1;
    engine_options.queued = std::move(queued);
    engine_options.queued.poll_interval = absl::Milliseconds(5);
    auto engine = Engine::Open(std::make_shared<InMemoryStorage>(), std::move(engine_options));
    ASSERT_TRUE(engine.ok()) << engine.status();
    engine_ = *std::move(engine);
    ASSERT_NO_FATAL_FAILURE(StartServer(Options()));
    for (const char* tenant : {"a", "b"}) {
      bool created = false;
      absl::Status s = admin_->Deploy(tenant, {{"notes.js", kNotes}}, kSchema, true, &created);
      ASSERT_TRUE(s.ok()) << s;
      EXPECT_TRUE(created);
    }
  }
  FunctionsServerOptions Options() {
    FunctionsServerOptions options;
    options.admin_key = "admin-secret";
    options.tenant_keys = {{"a", {"key-a", "key-a2"}}, {"b", {"key-b"}}};
    options.log = [lines = lines_](LogLevel, std::string_view line) {
      absl::MutexLock lock(&lines->mu);
      lines->text.emplace_back(line);
    };
    return options;
  }
  // (Re)starts the server on the fixture's engine.
  void StartServer(FunctionsServerOptions options) {
    if (server_ != nullptr) server_->Shutdown(absl::ZeroDuration());
    auto server = FunctionsServer::Start(*engine_, std::move(options));
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
    admin_ = Client("admin-secret");
  }
  std::unique_ptr<FunctionsClient> Client(const std::string& key) {
    auto client = FunctionsClient::Connect("127.0.0.1:" + std::to_string(server_->port()), key);
    EXPECT_TRUE(client.ok()) << client.status();
    return *std::move(client);
  }
  // The generated stub itself, for raw requests (as a client in another language sends them).
  std::unique_ptr<v1::Functions::Stub> RawStub() {
    return v1::Functions::NewStub(grpc::CreateChannel(
        "127.0.0.1:" + std::to_string(server_->port()), grpc::InsecureChannelCredentials()));
  }
  // Asks `tenant`'s notes:count until it is served (for up to 3 s); the last answer's status.
  static absl::Status CountOnceServed(FunctionsClient& client, const std::string& tenant) {
    absl::Status served = client.Query(tenant, "notes:count", Value()).status();
    for (int i = 0; i < 300 && !served.ok(); ++i) {
      absl::SleepFor(absl::Milliseconds(10));
      served = client.Query(tenant, "notes:count", Value()).status();
    }
    return served;
  }
  int CallsUnderWay() {
    MetricsText metrics;
    server_->AppendMetrics(&metrics);
    const std::string& text = metrics.text();
    const std::string name = "\ntxfn_rpc_calls_under_way ";
    const size_t at = text.find(name);
    EXPECT_NE(at, std::string::npos) << text;
    return at == std::string::npos ? -1 : std::atoi(text.c_str() + at + name.size());
  }
  int64_t Count(const std::string& tenant) {
    auto r = engine_->Query(tenant, "notes:count", Value());
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? static_cast<int64_t>(r->value.float64()) : -1;
  }

  struct Lines {
    absl::Mutex mu;
    std::vector<std::string> text ABSL_GUARDED_BY(mu);
  };
  std::shared_ptr<Lines> lines_ = std::make_shared<Lines>();
  std::unique_ptr<Engine> engine_;
  std::unique_ptr<FunctionsServer> server_;
  std::unique_ptr<FunctionsClient> admin_;
};

TEST_F(FunctionsServerTest, ATenantKeyCallsItsTenantsFunctions) {
  auto client = Client("key-a");
  auto added = client->Mutation("a", "notes:add", Text("hello"));
  ASSERT_TRUE(added.ok()) << added.status();
  EXPECT_TRUE(added->value.is_string());
  EXPECT_GT(added->ts, 0u);
  ASSERT_EQ(added->logs.size(), 1u);
  EXPECT_EQ(added->logs[0].message, "adding hello");
  auto count = Client("key-a2")->Query("a", "notes:count", Value());
  ASSERT_TRUE(count.ok()) << count.status();
  EXPECT_EQ(count->value, Value::Float64(1));
  EXPECT_EQ(Count("b"), 0);
}

// Values as deep as a function may take and return cross the wire both ways (protobuf's
// default parse refused them past 34 levels: the mutation committed, its client was told
// "No message returned"); a tenant name a request makes up is not echoed whole.
TEST_F(FunctionsServerTest, DeepValuesAndLongNamesCrossTheWire) {
  Value deep = Value::Int64(1);
  for (int i = 0; i < kMaxDecodeDepth - 2; ++i) deep = Value::FromObject({{"v", deep}});
  auto echoed = Client("key-a")->Mutation("a", "notes:echo", deep);
  ASSERT_TRUE(echoed.ok()) << echoed.status();
  EXPECT_EQ(echoed->value, deep);
  EXPECT_EQ(Count("a"), 1);
  // 8,000 bytes of name: the refusal's message is cut, so its code still arrives.
  auto denied = Client("key-a")->Query(std::string(8000, 'b'), "notes:count", Value());
  EXPECT_EQ(denied.status().code(), absl::StatusCode::kPermissionDenied) << denied.status();
  EXPECT_LT(denied.status().message().size(), 200u);
  auto unknown = Client("key-a")->Submit("a", std::string(8000, 'f') + ":x", Value::FromObject({}));
  EXPECT_EQ(unknown.status().code(), absl::StatusCode::kNotFound) << unknown.status();
  // A refusal's log line shows the made-up name escaped and cut: it cannot forge a line.
  auto forged =
      Client("nope")->Query("b\ntxfn [info] forged" + std::string(100, 'x'), "n:c", Value());
  EXPECT_EQ(forged.status().code(), absl::StatusCode::kUnauthenticated) << forged.status();
  absl::MutexLock lock(&lines_->mu);
  ASSERT_FALSE(lines_->text.empty());
  const std::string& line = lines_->text.back();
  EXPECT_EQ(line.find('\n'), std::string::npos) << line;
  EXPECT_THAT(line, HasSubstr("b\\ntxfn [info] forged")) << line;
  EXPECT_THAT(line, HasSubstr("... (120 bytes)")) << line;
}

TEST_F(FunctionsServerTest, FunctionErrorsKeepTheirPayloads) {
  auto r = Client("key-a")->Mutation("a", "notes:refuse", Value());
  ASSERT_FALSE(r.ok());
  std::optional<AppError> app = GetAppError(r.status());
  ASSERT_TRUE(app.has_value()) << r.status();
  EXPECT_EQ(app->data, Value::FromObject({{"code", Value::String("NOPE")}}));
  r = Client("key-a")->Query("a", "notes:missing", Value());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kNotFound) << r.status();
}

TEST_F(FunctionsServerTest, IdempotencyKeysReplayOverTheWire) {
  auto client = Client("key-a");
  auto first = client->Mutation("a", "notes:add", Text("once"), {.idempotency_key = "k1"});
  auto second = client->Mutation("a", "notes:add", Text("once"), {.idempotency_key = "k1"});
  ASSERT_TRUE(first.ok() && second.ok());
  EXPECT_FALSE(first->replayed);
  EXPECT_TRUE(second->replayed);
  EXPECT_EQ(first->value, second->value);
  EXPECT_EQ(Count("a"), 1);
}

// A request as a client in another language may send it: a key on a Query is refused, not
// silently ignored (nothing about a query is done once).
TEST_F(FunctionsServerTest, AnIdempotencyKeyOnAQueryIsRefused) {
  auto stub = RawStub();
  v1::CallRequest request;
  request.set_tenant("a");
  request.set_function("notes:count");
  request.set_idempotency_key("once");
  for (bool keyed : {true, false}) {
    if (!keyed) request.clear_idempotency_key();
    grpc::ClientContext context;
    context.AddMetadata(remote_internal::kApiKeyHeader, "key-a");
    v1::CallReply reply;
    const grpc::Status status = stub->Query(&context, request, &reply);
    if (keyed) {
      EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
      EXPECT_THAT(status.error_message(), HasSubstr("idempotency key is for mutations"));
    } else {
      EXPECT_TRUE(status.ok()) << status.error_message();
      EXPECT_EQ(reply.status().code(), 0) << reply.status().message();
    }
  }
}

// A call's deadline centuries ahead stays ahead (ServerContext::deadline() wraps it into the
// past: nanoseconds past 2262; a raw HTTP/2 client's grpc-timeout of 2,562,047 hours made
// every call fail "passed its deadline"); none stays none.
TEST(DeadlineOfTest, FarDeadlinesStayAheadAndNoneIsInfinite) {
  const gpr_timespec now = gpr_now(GPR_CLOCK_REALTIME);
  const int64_t kYear = 31'557'600;
  for (const int64_t years : {int64_t{1}, int64_t{300}, int64_t{100000}}) {
    const gpr_timespec raw = gpr_time_add(now, gpr_time_from_seconds(years * kYear, GPR_TIMESPAN));
    const absl::Time deadline = remote_internal::DeadlineOf(raw);
    EXPECT_EQ(absl::ToUnixSeconds(deadline), now.tv_sec + years * kYear) << years;
  }
  // (grpc::Timespec2Timepoint of the 300-year deadline answered a time in the past with the
  // gRPC of Debian 12: what ServerContext::deadline() hands over.)
  EXPECT_EQ(remote_internal::DeadlineOf(gpr_inf_future(GPR_CLOCK_REALTIME)),
            absl::InfiniteFuture());
  EXPECT_EQ(remote_internal::DeadlineOf(gpr_inf_future(GPR_CLOCK_MONOTONIC)),
            absl::InfiniteFuture());
  const absl::Time in_a_minute = remote_internal::DeadlineOf(
      gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC), gpr_time_from_seconds(60, GPR_TIMESPAN)));
  EXPECT_LT(absl::AbsDuration(in_a_minute - (absl::Now() + absl::Seconds(60))), absl::Seconds(5));
}

// End to end: a client's deadline far ahead holds, one a minute ahead too.
TEST_F(FunctionsServerTest, AFarDeadlineIsKept) {
  auto stub = RawStub();
  v1::CallRequest request;
  request.set_tenant("a");
  request.set_function("notes:count");
  for (const int64_t seconds : {int64_t{60}, int64_t{300} * 365 * 86400, int64_t{2} << 40}) {
    grpc::ClientContext context;
    context.AddMetadata(remote_internal::kApiKeyHeader, "key-a");
    context.set_deadline(
        gpr_time_add(gpr_now(GPR_CLOCK_REALTIME), gpr_time_from_seconds(seconds, GPR_TIMESPAN)));
    v1::CallReply reply;
    const grpc::Status status = stub->Query(&context, request, &reply);
    ASSERT_TRUE(status.ok()) << seconds << " s: " << status.error_message();
    EXPECT_EQ(reply.status().code(), 0) << seconds << " s: " << reply.status().message();
  }
}

TEST_F(FunctionsServerTest, BadKeysAreRefusedAndNothingIsWritten) {
  auto none = Client("")->Mutation("a", "notes:add", Text("x"));
  EXPECT_EQ(none.status().code(), absl::StatusCode::kUnauthenticated) << none.status();
  auto wrong = Client("key-a-but-wrong")->Mutation("a", "notes:add", Text("x"));
  EXPECT_EQ(wrong.status().code(), absl::StatusCode::kUnauthenticated) << wrong.status();
  auto other = Client("key-b")->Mutation("a", "notes:add", Text("x"));
  EXPECT_EQ(other.status().code(), absl::StatusCode::kPermissionDenied) << other.status();
  auto read = Client("key-b")->Query("a", "notes:count", Value());
  EXPECT_EQ(read.status().code(), absl::StatusCode::kPermissionDenied) << read.status();
  auto submit = Client("key-b")->Submit("a", "notes:add", Text("x"));
  EXPECT_EQ(submit.status().code(), absl::StatusCode::kPermissionDenied) << submit.status();
  absl::Status deploy = Client("key-a")->Deploy("a", {{"notes.js", kNotes}}, kSchema, false);
  EXPECT_EQ(deploy.code(), absl::StatusCode::kPermissionDenied) << deploy;
  absl::SleepFor(absl::Milliseconds(50));  // a wrongly accepted Submit would have run by now
  EXPECT_EQ(Count("a"), 0);
}

// Refused keys are logged at most 10 a second (anyone can send them: a flood wrote 34,236 lines
// in 10 s); the counter counts every refusal.
TEST_F(FunctionsServerTest, RefusedKeysAreLoggedAtMostTenASecond) {
  auto bad = Client("not-a-key");
  const absl::Time start = absl::Now();
  constexpr int kCalls = 100;
  for (int i = 0; i < kCalls; ++i) {
    EXPECT_EQ(bad->Query("a", "notes:count", Value()).status().code(),
              absl::StatusCode::kUnauthenticated);
  }
  const int64_t seconds_begun = absl::ToInt64Seconds(absl::Now() - start) + 2;
  size_t logged = 0;
  {
    absl::MutexLock lock(&lines_->mu);
    for (const std::string& line : lines_->text) logged += line.find("refused") != line.npos;
  }
  EXPECT_GE(logged, 10u);
  EXPECT_LE(logged, static_cast<size_t>(11 * seconds_begun)) << "in " << seconds_begun << " s";
  MetricsText metrics;
  server_->AppendMetrics(&metrics);
  EXPECT_THAT(metrics.text(), HasSubstr("txfn_rpc_refused_total{code=\"unauthenticated\"} " +
                                        std::to_string(kCalls)));
}

// A tenant's key submits as its tenant's client: tenant b cannot spend tenant a's rate limit
// (client "a", a's default) nor learn a's submit rate from its refusals, nor escape its own by
// naming new clients. Client names are the admin key's.
TEST_F(FunctionsServerTest, ATenantKeySubmitsAsItsTenantsClient) {
  QueuedCallOptions limited;
  limited.submitter.config.clients["a"] = {.calls_per_second = 0, .burst = 1};
  limited.submitter.config.clients["b"] = {.calls_per_second = 0, .burst = 2};
  ASSERT_NO_FATAL_FAILURE(Reopen(std::move(limited)));
  auto b = Client("key-b");
  for (const char* client : {"a", "x1", "b/x"}) {
    auto id = b->Submit("b", "notes:add", Text("x"), {.client = client});
    EXPECT_EQ(id.status().code(), absl::StatusCode::kPermissionDenied) << client;
    EXPECT_THAT(std::string(id.status().message()), HasSubstr("submits as its tenant's client"));
  }
  auto own = b->Submit("b", "notes:add", Text("x"), {.client = "b"});  // its own name: fine
  EXPECT_TRUE(own.ok()) << own.status();
  EXPECT_TRUE(b->Submit("b", "notes:add", Text("x")).ok());
  EXPECT_EQ(b->Submit("b", "notes:add", Text("x")).status().code(),
            absl::StatusCode::kResourceExhausted)
      << "b's limit holds: its burst of 2 is spent";
  auto a = Client("key-a");
  auto mine = a->Submit("a", "notes:add", Text("mine"));
  EXPECT_TRUE(mine.ok()) << mine.status() << ": a's bucket was untouched";
  auto over = a->Submit("a", "notes:add", Text("again"));
  EXPECT_EQ(over.status().code(), absl::StatusCode::kResourceExhausted) << over.status();
  EXPECT_THAT(std::string(over.status().message()), HasSubstr("client 'a'"));
  // The admin key names any client.
  EXPECT_TRUE(admin_->Submit("b", "notes:add", Text("x"), {.client = "x1"}).ok());
  auto host = admin_->Submit("b", "notes:add", Text("x"), {.client = "a"});
  EXPECT_EQ(host.status().code(), absl::StatusCode::kResourceExhausted) << host.status();
}

TEST_F(FunctionsServerTest, SubmittedCallsRunAndOnlyTheirTenantSeesThem) {
  auto client = Client("key-a");
  auto id = client->Submit("a", "notes:add", Text("queued"));
  ASSERT_TRUE(id.ok()) << id.status();
  absl::StatusOr<CallInfo> info;
  for (int i = 0; i < 400; ++i) {
    info = client->GetCall(*id);
    ASSERT_TRUE(info.ok()) << info.status();
    if (info->state == CallState::kSucceeded) break;
    absl::SleepFor(absl::Milliseconds(10));
  }
  EXPECT_EQ(info->state, CallState::kSucceeded);
  EXPECT_EQ(info->tenant, "a");
  EXPECT_TRUE(info->result.is_string());
  EXPECT_EQ(Count("a"), 1);
  auto foreign = Client("key-b")->GetCall(*id);
  EXPECT_EQ(foreign.status().code(), absl::StatusCode::kNotFound) << foreign.status();
  auto bad =
      client->Submit("a", "notes:add", Text("x"), {.deadline = absl::Now() - absl::Hours(1)});
  EXPECT_FALSE(bad.ok());
}

std::vector<CallId> IdsOf(const FunctionsClient::CallPage& page) {
  std::vector<CallId> ids;
  for (const CallInfo& c : page.calls) ids.push_back(c.id);
  return ids;
}

// ListCalls: a tenant's key lists its tenant's calls (naming another is PermissionDenied), the
// admin key names the tenant; pages follow `after` while `more`; a bad state or id is
// InvalidArgument.
TEST_F(FunctionsServerTest, ListCallsPagesATenantsCallsForItsKey) {
  const CallOptions later{.start_after = absl::Now() + absl::Hours(1)};
  auto a = Client("key-a");
  std::vector<CallId> mine;
  for (int i = 0; i < 5; ++i) {
    absl::StatusOr<CallId> id = a->Submit("a", "notes:add", Text("mine"), later);
    ASSERT_TRUE(id.ok()) << id.status();
    mine.push_back(*id);
  }
  std::sort(mine.begin(), mine.end());
  ASSERT_TRUE(Client("key-b")->Submit("b", "notes:add", Text("theirs"), later).ok());

  auto all = a->ListCalls("", std::nullopt, "", 0);
  ASSERT_TRUE(all.ok()) << all.status();
  EXPECT_EQ(IdsOf(*all), mine);
  EXPECT_FALSE(all->more);
  for (const CallInfo& c : all->calls) {
    EXPECT_EQ(c.tenant, "a");
    EXPECT_EQ(c.state, CallState::kPending);
    EXPECT_EQ(c.function, "notes:add");
  }
  std::vector<CallId> paged;
  CallId after;
  for (int pages = 0; pages < 10; ++pages) {
    auto page = a->ListCalls("a", CallState::kPending, "notes:add", 2, after);
    ASSERT_TRUE(page.ok()) << page.status();
    EXPECT_LE(page->calls.size(), 2u);
    for (const CallId& id : IdsOf(*page)) paged.push_back(id);
    if (!page->more) break;
    after = page->calls.back().id;
  }
  EXPECT_EQ(paged, mine);
  EXPECT_TRUE(a->ListCalls("a", CallState::kSucceeded, "", 0)->calls.empty());
  EXPECT_TRUE(a->ListCalls("a", std::nullopt, "notes:count", 0)->calls.empty());

  EXPECT_EQ(a->ListCalls("b", std::nullopt, "", 0).status().code(),
            absl::StatusCode::kPermissionDenied);
  auto unnamed = admin_->ListCalls("", std::nullopt, "", 0);
  EXPECT_EQ(unnamed.status().code(), absl::StatusCode::kInvalidArgument) << unnamed.status();
  auto theirs = admin_->ListCalls("b", std::nullopt, "", 0);
  ASSERT_TRUE(theirs.ok()) << theirs.status();
  ASSERT_EQ(theirs->calls.size(), 1u);
  EXPECT_EQ(theirs->calls[0].tenant, "b");
  EXPECT_EQ(Client("nope")->ListCalls("a", std::nullopt, "", 0).status().code(),
            absl::StatusCode::kUnauthenticated);

  auto stub = RawStub();
  for (const auto& [state, after_id] : {std::pair{"sleeping", ""}, std::pair{"", "nope"}}) {
    v1::ListCallsRequest request;
    request.set_state(state);
    request.set_after(after_id);
    grpc::ClientContext context;
    context.AddMetadata(remote_internal::kApiKeyHeader, "key-a");
    v1::ListCallsReply reply;
    const grpc::Status status = stub->ListCalls(&context, request, &reply);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << status.error_message();
  }
}

// A page of calls whose results would not fit in one reply is cut short, `more` set, and the
// next page has the rest (kept whole: results are recorded whatever their size here).
TEST_F(FunctionsServerTest, AListingOfBigResultsIsCutToFitAReply) {
  QueuedCallOptions keep_results;
  keep_results.max_recorded_result_bytes = SIZE_MAX;
  ASSERT_NO_FATAL_FAILURE(Reopen(std::move(keep_results)));
  auto a = Client("key-a");
  constexpr int64_t kResultBytes = 15 << 20;
  for (int i = 0; i < 3; ++i) {
    absl::StatusOr<CallId> id =
        a->Submit("a", "notes:big", Value::FromObject({{"n", Value::Float64(kResultBytes)}}));
    ASSERT_TRUE(id.ok()) << id.status();
    absl::StatusOr<CallInfo> done = engine_->WaitForCall(*id, "a", absl::Seconds(60));
    ASSERT_TRUE(done.ok()) << done.status();
    ASSERT_EQ(done->state, CallState::kSucceeded) << done->error;
  }
  auto first = a->ListCalls("a", std::nullopt, "", 0);
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_EQ(first->calls.size(), 2u) << "32 MiB of results at most";
  EXPECT_TRUE(first->more);
  for (const CallInfo& c : first->calls) EXPECT_EQ(c.result.string().size(), kResultBytes);
  auto rest = a->ListCalls("a", std::nullopt, "", 0, first->calls.back().id);
  ASSERT_TRUE(rest.ok()) << rest.status();
  EXPECT_EQ(rest->calls.size(), 1u);
  EXPECT_FALSE(rest->more);
}

// CancelCall: a tenant's key cancels its tenant's calls only (another's is NotFound, as for
// GetCall, and stays pending); the admin key any; a call that ended cannot be cancelled.
TEST_F(FunctionsServerTest, ATenantKeyCancelsOnlyItsTenantsCalls) {
  const CallOptions later{.start_after = absl::Now() + absl::Hours(1)};
  auto a = Client("key-a");
  auto b = Client("key-b");
  auto mine = a->Submit("a", "notes:add", Text("mine"), later);
  auto theirs = b->Submit("b", "notes:add", Text("theirs"), later);
  ASSERT_TRUE(mine.ok() && theirs.ok()) << mine.status() << theirs.status();

  absl::Status refused = a->CancelCall(*theirs);
  EXPECT_EQ(refused.code(), absl::StatusCode::kNotFound) << refused;
  refused = a->CancelCall(*theirs, "b");
  EXPECT_EQ(refused.code(), absl::StatusCode::kPermissionDenied) << refused;
  EXPECT_EQ(a->GetCall(*theirs, "b").status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(engine_->GetCall(*theirs)->state, CallState::kPending);

  absl::Status cancelled = a->CancelCall(*mine);
  ASSERT_TRUE(cancelled.ok()) << cancelled;
  EXPECT_EQ(a->GetCall(*mine)->state, CallState::kCancelled);
  EXPECT_EQ(a->CancelCall(*mine).code(), absl::StatusCode::kFailedPrecondition);

  // The admin key, with or without the tenant.
  EXPECT_EQ(admin_->GetCall(*theirs, "a").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(admin_->CancelCall(*theirs, "a").code(), absl::StatusCode::kNotFound);
  ASSERT_TRUE(admin_->CancelCall(*theirs).ok());
  EXPECT_EQ(admin_->GetCall(*theirs, "b")->state, CallState::kCancelled);
  EXPECT_EQ(Count("a"), 0);
  EXPECT_EQ(Count("b"), 0);
}

// A port another server listens on is refused (gRPC's SO_REUSEPORT let a second server share
// it, each answering some of the connections); a port out of range is not "any port".
TEST_F(FunctionsServerTest, APortInUseOrOutOfRangeIsRefused) {
  FunctionsServerOptions options;
  options.admin_key = "other-admin";
  options.listen = "127.0.0.1:" + std::to_string(server_->port());
  auto second = FunctionsServer::Start(*engine_, options);
  EXPECT_EQ(second.status().code(), absl::StatusCode::kUnavailable) << second.status();
  EXPECT_THAT(
      std::string(second.status().message()),
      HasSubstr(absl::StrCat("cannot listen on ", options.listen, ": Address already in use")));
  options.listen = "127.0.0.1:99999";
  auto out_of_range = FunctionsServer::Start(*engine_, options);
  EXPECT_EQ(out_of_range.status().code(), absl::StatusCode::kInvalidArgument)
      << out_of_range.status();
  EXPECT_THAT(std::string(out_of_range.status().message()), HasSubstr("0 to 65535"));
  // The first one still answers alone.
  EXPECT_TRUE(Client("key-a")->Query("a", "notes:count", Value()).ok());
}

// A raw call started without waiting for its answer (the stub's callback API).
struct PendingCall {
  grpc::ClientContext context;
  v1::CallRequest request;
  v1::CallReply reply;
  absl::Notification done;
  grpc::Status status;
  absl::Time ended;
};

// The call's outcome: gRPC's status, or the engine's status in an answered reply.
absl::StatusCode CodeOf(const PendingCall& call) {
  if (!call.status.ok()) return static_cast<absl::StatusCode>(call.status.error_code());
  return remote_internal::FromProto(call.reply).status().code();
}

std::unique_ptr<PendingCall> StartQuery(v1::Functions::Stub& stub, const std::string& key,
                                        const std::string& function, const Value& args,
                                        absl::Duration timeout, bool mutation = false) {
  auto call = std::make_unique<PendingCall>();
  call->context.AddMetadata(remote_internal::kApiKeyHeader, key);
  if (timeout != absl::InfiniteDuration()) {  // else none: a client that sets no deadline
    call->context.set_deadline(absl::ToChronoTime(absl::Now() + timeout));
  }
  call->request.set_tenant("a");
  call->request.set_function(function);
  wire_internal::ToProtoBytes(args, call->request.mutable_args());
  PendingCall* raw = call.get();
  auto done = [raw](grpc::Status status) {
    raw->status = std::move(status);
    raw->ended = absl::Now();
    raw->done.Notify();
  };
  if (mutation) {
    stub.async()->Mutation(&raw->context, &raw->request, &raw->reply, std::move(done));
  } else {
    stub.async()->Query(&raw->context, &raw->request, &raw->reply, std::move(done));
  }
  return call;
}

// A gRPC client over raw HTTP/2 that announces a flow-control window of 0 and never opens it:
// the server can send it no answer's bytes, as a client that never reads (the gRPC library's
// own client reads whatever arrives).
class ZeroWindowClient {
 public:
  explicit ZeroWindowClient(int port) {
    fd_ = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_port = htons(static_cast<uint16_t>(port));
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    connected_ = connect(fd_, reinterpret_cast<sockaddr*>(&address), sizeof(address)) == 0;
    // Preface, then SETTINGS_INITIAL_WINDOW_SIZE (4) = 0, then ACK the server's SETTINGS.
    Send("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
    Frame(kSettings, 0, 0, std::string("\x00\x04\x00\x00\x00\x00", 6));
    Frame(kSettings, kAck, 0, "");
  }
  ~ZeroWindowClient() { close(fd_); }  // the server then cancels the calls
  bool connected() const { return connected_; }

  // Asks a unary `method` with `body` (a serialized request) on a stream of its own.
  void Call(const std::string& method, const std::string& body, const std::string& key) {
    std::string headers;
    for (const auto& [name, value] :
         std::vector<std::pair<std::string, std::string>>{{":method", "POST"},
                                                          {":scheme", "http"},
                                                          {":path", method},
                                                          {":authority", "localhost"},
                                                          {"content-type", "application/grpc"},
                                                          {"te", "trailers"},
                                                          {remote_internal::kApiKeyHeader, key}}) {
      // HPACK "literal without indexing, new name", lengths under 127, no Huffman.
      headers += '\0';
      headers += static_cast<char>(name.size());
      headers += name;
      headers += static_cast<char>(value.size());
      headers += value;
    }
    Frame(kHeaders, kEndHeaders, stream_, headers);
    std::string message(1, '\0');  // not compressed, then the length, big-endian
    for (int shift = 24; shift >= 0; shift -= 8) {
      message += static_cast<char>((body.size() >> shift) & 0xff);
    }
    Frame(kData, kEndStream, stream_, message + body);
    stream_ += 2;
  }

 private:
  static constexpr uint8_t kData = 0, kHeaders = 1, kSettings = 4;
  static constexpr uint8_t kAck = 1, kEndStream = 1, kEndHeaders = 4;
  void Frame(uint8_t type, uint8_t flags, uint32_t stream, const std::string& payload) {
    std::string frame;
    for (int shift = 16; shift >= 0; shift -= 8) {
      frame += static_cast<char>((payload.size() >> shift) & 0xff);
    }
    frame += static_cast<char>(type);
    frame += static_cast<char>(flags);
    for (int shift = 24; shift >= 0; shift -= 8)
      frame += static_cast<char>((stream >> shift) & 0xff);
    Send(frame + payload);
  }
  void Send(const std::string& bytes) {
    if (connected_)
      connected_ =
          send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(bytes.size());
  }

  int fd_ = -1;
  bool connected_ = false;
  uint32_t stream_ = 1;
};

// A tenant with max_calls_per_tenant calls under way is refused more (RESOURCE_EXHAUSTED
// naming it, the engine not called) while another tenant's calls go in, and the admin's. The
// calls are held by a client that does not read their answers: they count until gRPC lets them
// go, as their answers are held (and a thread each) until then, so the cap bounds that too.
TEST_F(FunctionsServerTest, ATenantPastItsCallCapIsRefusedAndOthersAreNot) {
  FunctionsServerOptions options = Options();
  options.max_calls_per_tenant = 2;
  ASSERT_NO_FATAL_FAILURE(StartServer(std::move(options)));
  auto a = Client("key-a");
  {
    ZeroWindowClient unread(server_->port());
    ASSERT_TRUE(unread.connected());
    v1::CallRequest request;
    request.set_tenant("a");
    request.set_function("notes:big");
    wire_internal::ToProtoBytes(Value::FromObject({{"n", Value::Float64(1 << 20)}}),
                                request.mutable_args());
    for (int i = 0; i < 2; ++i) {
      unread.Call("/txfn.v1.Functions/Query", request.SerializeAsString(), "key-a");
    }
    for (int i = 0; i < 300 && CallsUnderWay() < 2; ++i) absl::SleepFor(absl::Milliseconds(10));
    ASSERT_EQ(CallsUnderWay(), 2);
    // The queries ran at once; their unsent answers are what keeps them counted.
    absl::SleepFor(absl::Milliseconds(300));
    absl::StatusOr<CallResult> refused = a->Query("a", "notes:count", Value());
    EXPECT_EQ(refused.status().code(), absl::StatusCode::kResourceExhausted) << refused.status();
    EXPECT_THAT(std::string(refused.status().message()),
                HasSubstr("tenant 'a' has 2 calls under way"));
    EXPECT_EQ(a->GetCall(CallId::FromKey("a", "never submitted")).status().code(),
              absl::StatusCode::kResourceExhausted);
    EXPECT_EQ(CallsUnderWay(), 2);
    // Tenant b is not held up, nor is the admin (who may deploy a fix to "a", or cancel).
    EXPECT_TRUE(Client("key-b")->Query("b", "notes:count", Value()).ok());
    EXPECT_TRUE(admin_->Submit("a", "notes:add", Text("admin")).ok());
    MetricsText metrics;
    server_->AppendMetrics(&metrics);
    EXPECT_THAT(metrics.text(), HasSubstr("txfn_rpc_refused_total{code=\"tenant_busy\"} 2"));
  }
  absl::Status served = CountOnceServed(*a, "a");  // the connection's calls are let go
  EXPECT_TRUE(served.ok()) << served;
  // (The query served is let go just after its answer reached the client.)
  for (int i = 0; i < 300 && CallsUnderWay() > 0; ++i) absl::SleepFor(absl::Milliseconds(10));
  EXPECT_EQ(CallsUnderWay(), 0);
}

// Past max_threads gRPC refuses calls RESOURCE_EXHAUSTED at once (it made a thread per call:
// 1,200 concurrent calls, 938 threads), whichever tenants they are of.
TEST_F(FunctionsServerTest, CallsPastMaxThreadsAreRefusedAtOnce) {
  FunctionsServerOptions options = Options();
  options.max_threads = 4;
  options.max_calls_per_tenant = 0;
  ASSERT_NO_FATAL_FAILURE(StartServer(std::move(options)));
  auto stub = RawStub();
  std::vector<std::unique_ptr<PendingCall>> calls;
  for (int i = 0; i < 12; ++i) {
    calls.push_back(StartQuery(*stub, "key-a", "notes:spin", Value(), absl::Seconds(2)));
  }
  // Counted with no cap too (the gauge read 0 with 180 calls under way).
  for (int i = 0; i < 300 && CallsUnderWay() == 0; ++i) absl::SleepFor(absl::Milliseconds(5));
  EXPECT_GT(CallsUnderWay(), 0);
  // Admitted calls spin until a limit stops them (1 s of CPU, or the deadline for those queued
  // behind the one worker).
  int refused = 0, admitted = 0;
  absl::Time last_refused = absl::InfinitePast(), first_admitted = absl::InfiniteFuture();
  for (auto& call : calls) {
    call->done.WaitForNotification();
    if (call->status.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED) {
      ++refused;
      last_refused = std::max(last_refused, call->ended);
    } else {
      ++admitted;
      first_admitted = std::min(first_admitted, call->ended);
    }
  }
  EXPECT_GT(refused, 0);
  EXPECT_GT(admitted, 0);
  // Refused at once, not queued for a thread: before any spinning call ended.
  EXPECT_LT(last_refused, first_admitted);
  // The server serves again once its threads are free.
  absl::Status served = CountOnceServed(*Client("key-b"), "b");
  EXPECT_TRUE(served.ok()) << served;
}

// A call queued in the engine behind its tenant's running call (one worker) is answered at its
// deadline: it does not hold a gRPC thread, nor count against its tenant's cap, until its turn.
TEST_F(FunctionsServerTest, ACallQueuedBehindItsTenantLetsGoOfItsThreadAtItsDeadline) {
  auto stub = RawStub();
  // Spins until its CPU limit (1 s) stops it.
  auto spin = StartQuery(*stub, "key-a", "notes:spin", Value(), absl::Seconds(10));
  for (int i = 0; i < 300 && CallsUnderWay() < 1; ++i) absl::SleepFor(absl::Milliseconds(5));
  ASSERT_EQ(CallsUnderWay(), 1);
  // ... and holds the engine's one worker.
  for (int i = 0; i < 600 && engine_->stats().scheduler.busy_isolates < 1; ++i) {
    absl::SleepFor(absl::Milliseconds(5));
  }
  ASSERT_EQ(engine_->stats().scheduler.busy_isolates, 1);
  auto queued = StartQuery(*stub, "key-a", "notes:count", Value(), absl::Milliseconds(200));
  queued->done.WaitForNotification();
  EXPECT_EQ(CodeOf(*queued), absl::StatusCode::kDeadlineExceeded);
  // The server let it go too (the client's deadline alone ends it on the client's side).
  for (int i = 0; i < 200 && CallsUnderWay() > 1 && !spin->done.HasBeenNotified(); ++i) {
    absl::SleepFor(absl::Milliseconds(2));
  }
  EXPECT_EQ(CallsUnderWay(), 1);
  EXPECT_FALSE(spin->done.HasBeenNotified()) << "the queued call was let go only after the spin";
  spin->done.WaitForNotification();
  EXPECT_EQ(CodeOf(*spin), absl::StatusCode::kResourceExhausted) << "its CPU limit";
}

// A call's deadline is max_call_duration after its arrival when the client sets none, or a
// later one: no call holds its thread (or keeps Shutdown waiting) for longer.
TEST_F(FunctionsServerTest, NoCallTakesLongerThanMaxCallDuration) {
  FunctionsServerOptions options = Options();
  options.max_call_duration = absl::Milliseconds(300);
  ASSERT_NO_FATAL_FAILURE(StartServer(std::move(options)));
  auto stub = RawStub();
  for (const absl::Duration client_timeout : {absl::InfiniteDuration(), absl::Seconds(20)}) {
    auto spin = StartQuery(*stub, "key-a", "notes:spin", Value(), client_timeout);
    spin->done.WaitForNotification();
    ASSERT_TRUE(spin->status.ok()) << spin->status.error_message();
    absl::Status answered = remote_internal::FromProto(spin->reply).status();
    EXPECT_EQ(answered.code(), absl::StatusCode::kDeadlineExceeded)
        << answered << " (not its 1 s CPU limit)";
    EXPECT_THAT(std::string(answered.message()), HasSubstr("notes:spin passed its deadline"));
  }
  // A client's earlier deadline still comes first.
  auto early = StartQuery(*stub, "key-a", "notes:spin", Value(), absl::Milliseconds(100));
  early->done.WaitForNotification();
  EXPECT_EQ(CodeOf(*early), absl::StatusCode::kDeadlineExceeded);
  // A quick call is served as before (with the default cap: under a sanitizer, a fresh context
  // after the stopped spins may take a good part of 300 ms).
  ASSERT_NO_FATAL_FAILURE(StartServer(Options()));
  EXPECT_TRUE(admin_->Query("a", "notes:count", Value()).ok());
}

// Shutdown lets every call whose handler runs answer with its outcome, and refuses the others
// UNAVAILABLE without running them: no caller is told UNAVAILABLE for a mutation that committed
// (gRPC's own shutdown did that for the calls still running at its deadline, and the engine went
// on to commit them: 59 of 60 in a hunt, 55 of their callers told UNAVAILABLE).
TEST_F(FunctionsServerTest, ShutdownAnswersTheCallsUnderWayWithTheirOutcomes) {
  auto stub = RawStub();
  // A client connected before (so that its refused call below reaches the server).
  std::unique_ptr<FunctionsClient> connected = Client("key-a");
  ASSERT_TRUE(connected->Query("a", "notes:count", Value()).ok());
  std::vector<std::unique_ptr<PendingCall>> calls;
  for (int i = 0; i < 12; ++i) {
    calls.push_back(StartQuery(*stub, "key-a", "notes:slowAdd", Text(std::to_string(i)),
                               absl::Seconds(60), /*mutation=*/true));
  }
  for (int i = 0; i < 300 && CallsUnderWay() < 2; ++i) absl::SleepFor(absl::Milliseconds(5));
  ASSERT_GE(CallsUnderWay(), 2) << "the calls reached the server (one engine worker: queued)";
  // Shutdown blocks until the handlers under way answered; a call made meanwhile is refused.
  std::thread stopping([&] { server_->Shutdown(absl::ZeroDuration()); });
  absl::SleepFor(absl::Milliseconds(20));
  auto late = StartQuery(*stub, "key-a", "notes:slowAdd", Text("late"), absl::Seconds(5), true);
  // The server's own UNAVAILABLE (marked its answer) says the call did not run: through
  // FunctionsClient it stays a plain Unavailable, not an unknown outcome.
  auto refused = connected->Mutation("a", "notes:slowAdd", Text("refused"));
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kUnavailable) << refused.status();
  EXPECT_THAT(std::string(refused.status().message()),
              HasSubstr("the server is stopping; the call did not run"));
  EXPECT_FALSE(IsCommitOutcomeUnknown(refused.status())) << refused.status();
  late->done.WaitForNotification();
  stopping.join();
  EXPECT_EQ(late->status.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_THAT(late->status.error_message(),
              HasSubstr("the server is stopping; the call did not run"));
  int committed_answers = 0;
  for (auto& call : calls) {
    call->done.WaitForNotification();
    if (call->status.ok()) {
      absl::StatusOr<CallResult> result = remote_internal::FromProto(call->reply);
      ASSERT_TRUE(result.ok()) << result.status();
      ++committed_answers;
    } else {
      EXPECT_EQ(call->status.error_code(), grpc::StatusCode::UNAVAILABLE)
          << call->status.error_message();
    }
  }
  EXPECT_GE(committed_answers, 2);
  EXPECT_EQ(Count("a"), committed_answers) << "every commit was answered as one, and only those";
}

// What a client without a key can make the server hold: big requests whose last byte never
// comes, so no handler runs (gRPC reads a request whole before it). Without a memory quota the
// server kept every byte (measured: 40 such 60 MiB requests, 3.1 GiB); with one it resets
// streams, and keyed clients are served meanwhile.
TEST_F(FunctionsServerTest, HeldKeylessRequestsAreBoundedByTheMemoryQuota) {
  FunctionsServerOptions options = Options();
  options.max_buffer_bytes = FunctionsServerOptions::kMinBufferBytes;
  ASSERT_NO_FATAL_FAILURE(StartServer(std::move(options)));
  std::unique_ptr<FunctionsClient> client = Client("key-a");
  // The largest argument a call may carry still crosses the smallest quota.
  const std::string large(15 << 20, 'x');
  auto echoed = client->Mutation("a", "notes:echo", Text(large));
  ASSERT_TRUE(echoed.ok()) << echoed.status();

  constexpr int64_t kMessageBytes = 32 << 20;
  constexpr int kRequests = 64;  // 2 GiB, sixteen times the quota
  const int64_t before = static_cast<int64_t>(testing::ResidentBytes());
  std::atomic<int64_t> peak = before;
  std::atomic<bool> attacking = true;
  std::thread sampler([&] {
    while (attacking.load()) {
      peak = std::max(peak.load(), static_cast<int64_t>(testing::ResidentBytes()));
      absl::SleepFor(absl::Milliseconds(5));
    }
  });
  absl::Cleanup stop_sampling = [&] {
    attacking = false;
    sampler.join();
  };
  std::vector<std::unique_ptr<testing::HeldGrpcStreams>> connections;
  int64_t sent = 0;
  int requests = 0;
  // Six a connection, as many clients would; a connection refused is replaced.
  while (requests < kRequests && connections.size() < 16) {
    auto& held = connections.emplace_back(std::make_unique<testing::HeldGrpcStreams>());
    const absl::Status connected = held->Connect(server_->port());
    ASSERT_TRUE(connected.ok()) << connected;
    for (int i = 0; i < 6 && requests < kRequests && held->usable(); ++i, ++requests) {
      sent += held->Hold("/txfn.v1.Functions/Mutation", kMessageBytes);
    }
  }
  for (auto& held : connections) held->Pump(absl::Milliseconds(100));
  std::move(stop_sampling).Invoke();
  int reset = 0, gone = 0;
  absl::flat_hash_set<uint32_t> codes;
  for (auto& held : connections) {
    reset += held->streams_reset();
    gone += held->goaway();
    codes.insert(held->reset_codes().begin(), held->reset_codes().end());
    if (held->goaway()) codes.insert(static_cast<uint32_t>(held->goaway_code()));
  }
  const int64_t grown = peak.load() - before;
  std::printf(
      "%d held requests of %lld MiB on %zu connections: %lld MiB sent, %d streams reset, %d "
      "connections gone away; resident memory grew %lld MiB (quota %lld MiB)\n",
      requests, static_cast<long long>(kMessageBytes >> 20), connections.size(),
      static_cast<long long>(sent >> 20), reset, gone, static_cast<long long>(grown >> 20),
      static_cast<long long>(FunctionsServerOptions::kMinBufferBytes >> 20));
  // The server took the data (it did not just stop reading), and refused it as gRPC does
  // when its buffers are full: ENHANCE_YOUR_CALM (11). A protocol or flow-control error
  // would be this client's mistake, not the quota.
  EXPECT_GT(sent, kRequests * kMessageBytes * 3 / 4);
  EXPECT_GT(reset + gone, 0);
  EXPECT_TRUE(codes.contains(11)) << "RST_STREAM/GOAWAY codes: " << absl::StrJoin(codes, ",");
  for (const uint32_t protocol_errors : {1, 3, 6, 9}) EXPECT_FALSE(codes.contains(protocol_errors));
  // Held whole, the requests would add 2 GiB; the quota holds it to a fraction of that (gRPC
  // enforces it loosely, and AddressSanitizer keeps 256 MiB of freed memory in quarantine:
  // measured 60-160 MiB, 430-540 MiB under it).
  EXPECT_LT(grown, kRequests * kMessageBytes / 2);
  // Keyed calls are served meanwhile, the largest too, on a connection opened before or now.
  auto small = client->Mutation("a", "notes:add", Text("during"));
  EXPECT_TRUE(small.ok()) << small.status();
  echoed = client->Mutation("a", "notes:echo", Text(large));
  EXPECT_TRUE(echoed.ok()) << echoed.status();
  echoed = Client("key-b")->Mutation("b", "notes:echo", Text(large));
  EXPECT_TRUE(echoed.ok()) << echoed.status();
  connections.clear();
  EXPECT_EQ(Count("a"), 3);
}

// Past the quota gRPC resets streams at random, calls under way among them: a mutation it
// reset may have committed, and gRPC's own RESOURCE_EXHAUSTED for it reads as "refused, retry"
// (measured: 24 concurrent 15 MiB mutations at the smallest quota, 15 answered OK, 18
// committed). The client reports such a reset as an unknown outcome, never a refusal.
TEST_F(FunctionsServerTest, AMutationTheServerResetIsAnUnknownOutcome) {
  FunctionsServerOptions options = Options();
  options.max_buffer_bytes = FunctionsServerOptions::kMinBufferBytes;
  ASSERT_NO_FATAL_FAILURE(StartServer(std::move(options)));
  const std::string large(15 << 20, 'x');
  int answered = 0, unknown = 0, queries_reset = 0;
  for (int round = 0; round < 5 && unknown == 0; ++round) {
    constexpr int kCalls = 24;  // 360 MiB at once, almost three times the quota
    std::vector<absl::Status> outcomes(kCalls);
    std::vector<std::thread> callers;
    for (int i = 0; i < kCalls; ++i) {
      callers.emplace_back([&, i] {
        std::unique_ptr<FunctionsClient> client = Client("key-a");
        // One in four a query: reset, it is Unavailable (retry it), not an unknown outcome.
        outcomes[i] = i % 4 == 0 ? client->Query("a", "notes:count", Text(large)).status()
                                 : client->Mutation("a", "notes:echo", Text(large)).status();
      });
    }
    for (std::thread& caller : callers) caller.join();
    for (int i = 0; i < kCalls; ++i) {
      const absl::Status& outcome = outcomes[i];
      if (outcome.ok()) {
        answered += i % 4 != 0;
        continue;
      }
      EXPECT_EQ(outcome.code(), absl::StatusCode::kUnavailable) << outcome;
      EXPECT_THAT(std::string(outcome.message()), HasSubstr("the server reset the call"));
      if (i % 4 == 0) {
        EXPECT_FALSE(IsCommitOutcomeUnknown(outcome)) << outcome;
        ++queries_reset;
      } else {
        EXPECT_TRUE(IsCommitOutcomeUnknown(outcome)) << outcome;
        EXPECT_THAT(std::string(outcome.message()), HasSubstr("may have committed"));
        ++unknown;
      }
    }
  }
  EXPECT_GT(unknown, 0) << "no call was reset: the quota did not bind";
  // Every commit is answered OK or unknown; none was told it was refused.
  const int64_t committed = Count("a");
  std::printf("mutations: %d answered, %d unknown, %lld committed; %d queries reset\n", answered,
              unknown, static_cast<long long>(committed), queries_reset);
  EXPECT_GE(committed, answered);
  EXPECT_LE(committed, answered + unknown);
}

TEST(FunctionsServerOptionsTest, DuplicateOrEmptyKeysAreInvalidArgument) {
  auto engine = Engine::Open(std::make_shared<InMemoryStorage>(), EngineOptions{});
  ASSERT_TRUE(engine.ok());
  FunctionsServerOptions twice;
  twice.tenant_keys = {{"a", {"k"}}, {"b", {"k"}}};
  EXPECT_EQ(FunctionsServer::Start(**engine, twice).status().code(),
            absl::StatusCode::kInvalidArgument);
  FunctionsServerOptions admin_too;
  admin_too.admin_key = "k";
  admin_too.tenant_keys = {{"a", {"k"}}};
  EXPECT_EQ(FunctionsServer::Start(**engine, admin_too).status().code(),
            absl::StatusCode::kInvalidArgument);
  FunctionsServerOptions empty;
  empty.tenant_keys = {{"a", {""}}};
  EXPECT_EQ(FunctionsServer::Start(**engine, empty).status().code(),
            absl::StatusCode::kInvalidArgument);
  FunctionsServerOptions one_thread;
  one_thread.max_threads = 1;
  auto refused = FunctionsServer::Start(**engine, one_thread);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(refused.status().message()), HasSubstr("max_threads"));
  for (const int cap : {-1, 31, 32}) {  // with max_threads 32: one tenant would take them all
    FunctionsServerOptions bad_cap;
    bad_cap.max_threads = 32;
    bad_cap.max_calls_per_tenant = cap;
    refused = FunctionsServer::Start(**engine, bad_cap);
    EXPECT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument) << cap;
    EXPECT_THAT(std::string(refused.status().message()), HasSubstr("max_calls_per_tenant"));
  }
  FunctionsServerOptions largest_cap;
  largest_cap.max_threads = 32;
  largest_cap.max_calls_per_tenant = 30;
  EXPECT_TRUE(FunctionsServer::Start(**engine, largest_cap).ok());
  for (const int64_t bad : {int64_t{0}, FunctionsServerOptions::kMinBufferBytes - 1}) {
    FunctionsServerOptions small_buffer;
    small_buffer.max_buffer_bytes = bad;
    refused = FunctionsServer::Start(**engine, small_buffer);
    EXPECT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_THAT(std::string(refused.status().message()), HasSubstr("max_buffer_bytes"));
  }
  for (const absl::Duration bad : {absl::ZeroDuration(), absl::Seconds(-1)}) {
    FunctionsServerOptions no_time;
    no_time.max_call_duration = bad;
    refused = FunctionsServer::Start(**engine, no_time);
    EXPECT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_THAT(std::string(refused.status().message()), HasSubstr("max_call_duration"));
  }
  // A key of tenant "" would look among every tenant's calls, as the admin key does.
  FunctionsServerOptions nameless;
  nameless.tenant_keys = {{"", {"k"}}};
  EXPECT_EQ(FunctionsServer::Start(**engine, nameless).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(FunctionsClientTest, NoServerIsUnavailable) {
  auto client = FunctionsClient::Connect("127.0.0.1:1", "k", absl::Seconds(5));
  ASSERT_TRUE(client.ok());
  auto r = (*client)->Query("a", "m:f", Value());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kUnavailable) << r.status();
  // Nothing was sent: not an unknown outcome. Nor with a name that does not resolve.
  r = (*client)->Mutation("a", "m:f", Value());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kUnavailable) << r.status();
  EXPECT_FALSE(IsCommitOutcomeUnknown(r.status())) << r.status();
  client = FunctionsClient::Connect("no-such-host.invalid:7400", "k", absl::Seconds(20));
  ASSERT_TRUE(client.ok());
  r = (*client)->Mutation("a", "m:f", Value());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kUnavailable) << r.status();
  EXPECT_FALSE(IsCommitOutcomeUnknown(r.status())) << r.status();
}

// The engine's unknown commit outcome reaches the client as one, whether it travels in the
// reply (a mutation's) or as the call's status (a deploy's: a status carries no payload, so
// the server marks it in a trailer).
TEST(FunctionsServerOutcomeTest, TheEnginesUnknownOutcomesCrossTheWire) {
  auto storage =
      std::make_shared<testing::FaultInjectingStorage>(std::make_shared<InMemoryStorage>());
  auto engine = Engine::Open(storage, EngineOptions{});
  ASSERT_TRUE(engine.ok()) << engine.status();
  FunctionsServerOptions options;
  options.admin_key = "admin";
  auto server = FunctionsServer::Start(**engine, options);
  ASSERT_TRUE(server.ok()) << server.status();
  auto client = FunctionsClient::Connect(absl::StrCat("127.0.0.1:", (*server)->port()), "admin");
  ASSERT_TRUE(client.ok());
  ASSERT_TRUE((*client)->Deploy("a", {{"notes.js", kNotes}}, kSchema, true, nullptr).ok());

  // A write that lands and then errs, and storage that cannot then say whether it landed.
  auto fail_unknowably = [&] {
    storage->FailNextAfterForwarding(testing::StorageMethod::kWrite, 1);
    storage->FailNext(testing::StorageMethod::kMaxCommittedTimestamp, 1000);
  };
  fail_unknowably();
  const std::string changed = std::string(kNotes) + "// changed\n";
  absl::Status deployed = (*client)->Deploy("a", {{"notes.js", changed}}, kSchema, false, nullptr);
  EXPECT_TRUE(IsCommitOutcomeUnknown(deployed)) << deployed;
  EXPECT_EQ(deployed.code(), absl::StatusCode::kUnavailable) << deployed;
  EXPECT_TRUE(CommitOutcomeUnknownTimestamp(deployed).has_value()) << deployed;
  // The next commit settles the last one's outcome first.
  auto settle = [&] {
    storage->ClearFaults();
    ASSERT_TRUE((*client)->Mutation("a", "notes:add", Text("settles")).ok());
  };
  settle();
  fail_unknowably();
  auto added = (*client)->Mutation("a", "notes:add", Text("x"));
  EXPECT_TRUE(IsCommitOutcomeUnknown(added.status())) << added.status();
  settle();
  // A keyed Submit queues its call, then reads the tenant to check what its key names: with
  // reads failing it cannot say, and its outcome (sent as a status, with no timestamp) is
  // unknown. It was queued: the key names that call once reads work again.
  storage->FailNext(testing::StorageMethod::kGet, 1000);
  storage->FailNext(testing::StorageMethod::kScan, 1000);
  const CallOptions keyed{.start_after = absl::Now() + absl::Hours(1), .idempotency_key = "k"};
  absl::StatusOr<CallId> submitted = (*client)->Submit("a", "notes:add", Text("q"), keyed);
  EXPECT_TRUE(IsCommitOutcomeUnknown(submitted.status())) << submitted.status();
  EXPECT_EQ(submitted.status().code(), absl::StatusCode::kUnavailable) << submitted.status();
  EXPECT_FALSE(CommitOutcomeUnknownTimestamp(submitted.status()).has_value());
  storage->ClearFaults();
  absl::StatusOr<CallId> again = (*client)->Submit("a", "notes:add", Text("q"), keyed);
  ASSERT_TRUE(again.ok()) << again.status();
  absl::StatusOr<CallInfo> queued = (*client)->GetCall(*again, "a");
  ASSERT_TRUE(queued.ok()) << queued.status();
  EXPECT_EQ(queued->state, CallState::kPending);
  (*server)->Shutdown(absl::ZeroDuration());
}

// A server that takes a connection, says HTTP/2 SETTINGS, and answers nothing: it reads what
// it is sent until it has seen `until`, then closes the connection, or sends `answer` and
// reads on; or reads for ever.
class MuteServer {
 public:
  explicit MuteServer(std::string until = "", std::string answer = "")
      : until_(std::move(until)), answer_(std::move(answer)) {
    listener_ = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t size = sizeof(address);
    EXPECT_EQ(bind(listener_, reinterpret_cast<sockaddr*>(&address), size), 0);
    EXPECT_EQ(listen(listener_, 4), 0);
    EXPECT_EQ(getsockname(listener_, reinterpret_cast<sockaddr*>(&address), &size), 0);
    port_ = ntohs(address.sin_port);
    serving_ = std::thread([this] { Serve(); });
  }
  ~MuteServer() {
    shutdown(listener_, SHUT_RDWR);
    if (const int connection = connection_.load(); connection >= 0) {
      shutdown(connection, SHUT_RDWR);  // a read waiting for a client that stays ends
    }
    serving_.join();
    close(listener_);
  }
  int port() const { return port_; }
  bool saw_until() const { return saw_until_.load(); }

 private:
  void Serve() {
    const int connection = accept(listener_, nullptr, nullptr);
    if (connection < 0) return;
    connection_ = connection;
    std::string settings;
    testing::AppendHttp2Frame(&settings, testing::http2::kSettings, 0, 0, "");
    (void)send(connection, settings.data(), settings.size(), MSG_NOSIGNAL);
    std::string received;
    char buffer[4096];
    for (ssize_t n; (n = read(connection, buffer, sizeof(buffer))) > 0;) {
      received.append(buffer, n);
      if (!until_.empty() && !saw_until_ && received.find(until_) != std::string::npos) {
        saw_until_ = true;
        if (answer_.empty()) break;
        (void)send(connection, answer_.data(), answer_.size(), MSG_NOSIGNAL);
      }
    }
    connection_ = -1;
    close(connection);
  }

  const std::string until_;
  const std::string answer_;
  int listener_ = -1;
  std::atomic<int> connection_ = -1;
  int port_ = 0;
  std::atomic<bool> saw_until_ = false;
  std::thread serving_;
};

// A query or mutation through a FunctionsClient to `server` whose arguments carry `text`
// (what the server waits to see), expected to reach it; its outcome.
absl::Status CallCarrying(const MuteServer& server, const std::string& text, bool mutation) {
  auto client =
      FunctionsClient::Connect(absl::StrCat("127.0.0.1:", server.port()), "k", absl::Seconds(30));
  if (!client.ok()) return client.status();
  const Value args = Value::FromObject({{"text", Value::String(text)}});
  const absl::Status outcome = mutation ? (*client)->Mutation("a", "m:f", args).status()
                                        : (*client)->Query("a", "m:f", args).status();
  EXPECT_TRUE(server.saw_until()) << outcome;
  return outcome;
}

// A mutation, submit or deploy whose answer never came may have committed: the client says
// so (IsCommitOutcomeUnknown) instead of gRPC's DEADLINE_EXCEEDED or UNAVAILABLE, which read
// as "not done" (a blind retry would apply it twice). A query keeps gRPC's code.
TEST(FunctionsClientTest, AMutationWhoseAnswerNeverCameIsAnUnknownOutcome) {
  MuteServer mute;
  auto client = FunctionsClient::Connect(absl::StrCat("127.0.0.1:", mute.port()), "k",
                                         absl::Milliseconds(500));
  ASSERT_TRUE(client.ok());
  auto query = (*client)->Query("a", "m:f", Value());
  EXPECT_EQ(query.status().code(), absl::StatusCode::kDeadlineExceeded) << query.status();
  auto mutation = (*client)->Mutation("a", "m:f", Value());
  EXPECT_TRUE(IsCommitOutcomeUnknown(mutation.status())) << mutation.status();
  EXPECT_EQ(mutation.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(std::string(mutation.status().message()),
              HasSubstr("no readable answer came (DEADLINE_EXCEEDED"));
  auto submitted = (*client)->Submit("a", "m:f", Value());
  EXPECT_TRUE(IsCommitOutcomeUnknown(submitted.status())) << submitted.status();
  EXPECT_TRUE(IsCommitOutcomeUnknown((*client)->Deploy("a", {{"m.js", ""}}, "{}", false, nullptr)));
}

// A server's OK with no reply message (or one the client cannot read) is not the server's
// answer as received: the client's own status for it (UNIMPLEMENTED "No message returned")
// comes with no marker (FunctionsServer marks only errors) or, as here, the marker of another
// code; either way, for a mutation it is an unknown outcome.
TEST(FunctionsClientTest, AnAnswerTheClientCouldNotReadIsAnUnknownOutcome) {
  const std::string sent = "the request reached the server";
  std::string fields;
  for (const auto& [name, value] : {std::pair<std::string_view, std::string_view>{":status", "200"},
                                    {"content-type", "application/grpc"},
                                    {"grpc-status", "0"},
                                    {remote_internal::kAnsweredHeader, "0"}}) {
    testing::AppendHpackField(&fields, name, value);
  }
  std::string ok_without_message;  // trailers only, on the connection's first stream
  testing::AppendHttp2Frame(&ok_without_message, testing::http2::kHeaders,
                            testing::http2::kEndStream | testing::http2::kEndHeaders, 1, fields);
  for (const bool mutation : {false, true}) {
    MuteServer answering(sent, ok_without_message);
    const absl::Status outcome = CallCarrying(answering, sent, mutation);
    EXPECT_FALSE(outcome.ok());
    EXPECT_EQ(IsCommitOutcomeUnknown(outcome), mutation) << outcome;
    std::printf("%s: %s\n", mutation ? "mutation" : "query", outcome.ToString().c_str());
  }
}

TEST(FunctionsClientTest, AMutationWhoseConnectionBrokeAfterItWasSentIsAnUnknownOutcome) {
  const std::string sent = "the whole request reached the server";
  for (const bool mutation : {false, true}) {
    MuteServer closing(sent);
    const absl::Status outcome = CallCarrying(closing, sent, mutation);
    EXPECT_EQ(outcome.code(), absl::StatusCode::kUnavailable) << outcome;
    EXPECT_EQ(IsCommitOutcomeUnknown(outcome), mutation) << outcome;
  }
}

}  // namespace
}  // namespace txfn

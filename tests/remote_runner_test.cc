// RemoteRunner + RunnerServer on loopback: an engine whose queries and mutations run on
// runner servers (in this process, over real gRPC) reading the same storage.
#include "txfn/remote_runner.h"

#include <arpa/inet.h>
#include <grpcpp/grpcpp.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "absl/random/random.h"
#include "absl/synchronization/notification.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "lib/remote/grpc_util.h"
#include "txfn/engine.h"
#include "txfn/errors.h"
#include "txfn/in_memory_storage.h"
#include "txfn/rendezvous_router.h"
#include "txfn/runner/v1/runner.grpc.pb.h"
#include "txfn/runner_server.h"
#include "txfn/storage_wrapper.h"
#include "txfn/tenant_committers.h"

namespace txfn {
namespace {

using ::testing::HasSubstr;

constexpr const char* kSchema = R"({"tables": {
  "accounts": {"fields": {"owner": "string", "balance": "int64"}, "indexes": {"by_owner": ["owner"]}}
}})";

constexpr const char* kBank = R"JS(
import { query, mutation, action } from "txfn/server";
import { VERSION } from "./version.js";
export const open = mutation(async (ctx, { owner, balance }) =>
  ctx.db.insert("accounts", { owner, balance }));
async function account(ctx, owner) {
  return ctx.db.query("accounts").withIndex("by_owner", (q) => q.eq("owner", owner)).unique();
}
export const transfer = mutation(async (ctx, { from, to, amount }) => {
  const a = await account(ctx, from), b = await account(ctx, to);
  if (from === to || a.balance < amount) return false;
  await ctx.db.patch(a._id, { balance: a.balance - amount });
  await ctx.db.patch(b._id, { balance: b.balance + amount });
  return true;
});
export const total = query(async (ctx) => {
  let sum = 0n;
  for (const a of await ctx.db.query("accounts").collect()) sum += a.balance;
  return sum;
});
export const version = query(async () => VERSION);
export const broke = query(async () => {
  const e = new Error("no funds"); e.data = { code: "NO_FUNDS" }; throw e;
});
export const act = action(async () => 1);
export const echo = mutation(async (ctx, args) => {
  await ctx.db.insert("accounts", { owner: "deep", balance: 0n });
  return args;
});
export const spin = query(async () => { for (;;) {} });
export const busy = query(async ({}, { n }) => { let x = 0; for (let i = 0; i < n; i++) x += i % 7; return x > 0; });
)JS";

std::map<std::string, std::string> Bank(const std::string& version) {
  return {{"bank.js", kBank}, {"version.js", "export const VERSION = \"" + version + "\";"}};
}

Value Args(std::map<std::string, Value, std::less<>> fields) {
  return Value::FromObject(std::move(fields));
}

constexpr int kAccounts = 4;
constexpr int64_t kBalance = 100;

// A listening socket that never accepts: gRPC connects and then waits for a server that
// never speaks, so an RPC to it hangs until its deadline — a stuck runner.
class BlackHole {
 public:
  BlackHole() {
    fd_ = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(addr);
    if (fd_ < 0 || bind(fd_, reinterpret_cast<sockaddr*>(&addr), len) != 0 ||
        listen(fd_, 64) != 0 || getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
      ADD_FAILURE() << "cannot listen on a loopback port";
      return;
    }
    address_ = "127.0.0.1:" + std::to_string(ntohs(addr.sin_port));
  }
  ~BlackHole() {
    if (fd_ >= 0) close(fd_);
  }
  BlackHole(const BlackHole&) = delete;
  BlackHole& operator=(const BlackHole&) = delete;
  const std::string& address() const { return address_; }

 private:
  int fd_ = -1;
  std::string address_;
};

// A runner that answers each run with a reply past the message limit (a bug, or a lie), and
// every ping.
class OversizedAnswers final : public runner::v1::Runner::Service {
 public:
  grpc::Status Run(grpc::ServerContext*, const v1::RunRequest*, v1::RunResult* reply) override {
    runs.fetch_add(1);
    reply->add_logs()->set_message(std::string(remote_internal::kMaxMessageBytes + 1024, 'x'));
    return grpc::Status::OK;
  }
  grpc::Status Ping(grpc::ServerContext*, const runner::v1::PingRequest*,
                    runner::v1::PingReply*) override {
    return grpc::Status::OK;
  }
  std::atomic<int> runs{0};
};

// `service` (synchronous: it holds none of gRPC's callback threads) on a loopback port, and
// tenant "t" of an in-memory storage, whose snapshots the runs carry.
struct ServiceAndTenant {
  explicit ServiceAndTenant(grpc::Service* service) {
    grpc::ServerBuilder builder;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
    builder.RegisterService(service);
    server = builder.BuildAndStart();
    if (!tenants.Create("t").ok()) return;
    if (absl::StatusOr<std::shared_ptr<OpenTenant>> t = tenants.Get("t"); t.ok()) open = *t;
  }
  ~ServiceAndTenant() {
    if (server != nullptr) server->Shutdown(std::chrono::system_clock::now());
  }
  bool ok() const { return server != nullptr && open != nullptr; }
  std::string address() const { return "127.0.0.1:" + std::to_string(port); }

  int port = 0;
  std::unique_ptr<grpc::Server> server;
  TenantCommitters tenants{std::make_shared<InMemoryStorage>()};
  std::shared_ptr<OpenTenant> open;
};

// An answer past the message limit is the run's failure (ResourceExhausted, once): it was
// taken for a full runner and run again, three times, each counted against a runner that had
// answered.
TEST(RemoteRunnerAnswersTest, AnAnswerPastTheMessageLimitFailsOnceAndBlamesNoRunner) {
  OversizedAnswers service;
  ServiceAndTenant at(&service);
  ASSERT_TRUE(at.ok());
  RemoteRunnerOptions options;
  options.runners.push_back({at.address()});
  auto remote = RemoteRunner::Create(std::move(options));
  ASSERT_TRUE(remote.ok()) << remote.status();
  RunResult r = (*remote)->Run(at.open->Latest(), RunRequest{.function = "m:f"});
  EXPECT_EQ(r.status.code(), absl::StatusCode::kResourceExhausted) << r.status;
  EXPECT_THAT(std::string(r.status.message()), HasSubstr("-byte limit"));
  EXPECT_EQ(service.runs.load(), 1);
  const RemoteRunnerStats stats = (*remote)->stats();
  EXPECT_EQ(stats.retries, 0u);
  EXPECT_EQ(stats.runners[0].failures, 0u);
  EXPECT_TRUE(stats.runners[0].healthy);
  at.server->Shutdown(std::chrono::system_clock::now());  // its answer in flight cancelled
}

// A runner that answers every run at once, with an empty result.
class EmptyAnswers final : public runner::v1::Runner::Service {
 public:
  grpc::Status Run(grpc::ServerContext*, const v1::RunRequest*, v1::RunResult*) override {
    runs.fetch_add(1);
    return grpc::Status::OK;
  }
  std::atomic<int> runs{0};
};

// How many of this process's threads are named `name`.
int ThreadsNamed(std::string_view name) {
  int n = 0;
  for (const auto& task : std::filesystem::directory_iterator("/proc/self/task")) {
    std::ifstream comm(task.path() / "comm");
    std::string line;
    if (std::getline(comm, line) && line == name) ++n;
  }
  return n;
}

// gRPC (1.51, epoll1) runs unary callbacks on the threads of one completion queue its
// channels share ("nexting_thread"s); the last channel to go shuts the queue down and joins
// them. A RemoteRunner's callback owned a reference to its call, so through the call's
// ClientContext to the channel: when it was the last (the RemoteRunner gone already), the
// channel went on one of those threads, which joined itself and freed the queue it was still
// reading, a double free that ASan caught once in CI. The channels must go with the
// RemoteRunner: once it is destroyed (nothing else here uses gRPC's callbacks: this server is
// synchronous), those threads are gone. The window is the few microseconds between the
// callback's post and gRPC destroying it: this fails at once with a 20 ms sleep put there, and
// passes with the fix and the same sleep (the first fix, a move out of a const capture, copied).
TEST(RemoteRunnerLifetimeTest, ItsChannelsGoWithTheRemoteRunnerNotOnGrpcThreads) {
  EmptyAnswers service;
  ServiceAndTenant at(&service);
  ASSERT_TRUE(at.ok());
  for (int i = 0; i < 100; ++i) {
    RemoteRunnerOptions options;
    options.runners.push_back({at.address()});
    absl::StatusOr<std::shared_ptr<RemoteRunner>> remote = RemoteRunner::Create(options);
    ASSERT_TRUE(remote.ok()) << remote.status();
    (void)(*remote)->Run(at.open->Latest(), RunRequest{.function = "m:f"});
    ASSERT_EQ(service.runs.load(), i + 1);
    if (i == 0 && ThreadsNamed("nexting_thread") == 0) {
      GTEST_SKIP() << "this gRPC runs callbacks without a queue of its own threads";
    }
    remote->reset();
    ASSERT_EQ(ThreadsNamed("nexting_thread"), 0)
        << "a channel outlived its RemoteRunner, on gRPC's threads (round " << i << ")";
  }
  at.server->Shutdown(std::chrono::system_clock::now());
}

// A run's `done` may hold the last reference to its RemoteRunner (a common keep-alive), and
// drop it as it runs or when it is destroyed: both on a completion thread, which the
// RemoteRunner's destructor joins. That aborted the process (a thread joining itself) or
// deadlocked (the destructor waiting for the run it was called from); the RemoteRunner now
// goes on a thread of its own, and its channels with it.
TEST(RemoteRunnerLifetimeTest, ADoneHoldingTheLastReferenceMayDropIt) {
  EmptyAnswers service;
  ServiceAndTenant at(&service);
  ASSERT_TRUE(at.ok());
  for (const bool inside : {false, true}) {
    for (int i = 0; i < 20; ++i) {
      RemoteRunnerOptions options;
      options.runners.push_back({at.address()});
      absl::StatusOr<std::shared_ptr<RemoteRunner>> remote = RemoteRunner::Create(options);
      ASSERT_TRUE(remote.ok()) << remote.status();
      RemoteRunner& runner = **remote;
      absl::Notification ran;
      absl::Status s =
          runner.RunAsync(at.open->Latest(), RunRequest{.function = "m:f"},
                          [keep = *remote, inside, &ran](RunResult) mutable {
                            if (inside) keep.reset();  // the last reference, dropped as `done` runs
                            ran.Notify();
                          });
      ASSERT_TRUE(s.ok()) << s;
      remote->reset();  // `done` holds the only reference now
      ran.WaitForNotification();
      // The RemoteRunner is destroyed soon after, its channels with it.
      for (int wait = 0; wait < 500 && ThreadsNamed("nexting_thread") > 0; ++wait) {
        absl::SleepFor(absl::Milliseconds(10));
      }
      ASSERT_EQ(ThreadsNamed("nexting_thread"), 0) << (inside ? "inside" : "at its end") << i;
    }
  }
  EXPECT_EQ(service.runs.load(), 40);
  at.server->Shutdown(std::chrono::system_clock::now());
}

class RemoteRunnerTest : public ::testing::Test {
 protected:
  void StartServers(int n) {
    for (int i = 0; i < n; ++i) {
      servers_.push_back(StartServer("127.0.0.1:0"));
      addresses_.push_back("127.0.0.1:" + std::to_string(servers_.back()->port()));
    }
  }
  std::unique_ptr<RunnerServer> StartServer(const std::string& listen,
                                            std::shared_ptr<Storage> storage = nullptr) {
    RunnerServerOptions options;
    options.listen = listen;
    options.storage = storage != nullptr ? std::move(storage) : storage_;
    options.scheduler.workers = 1;
    auto server = RunnerServer::Start(std::move(options));
    EXPECT_TRUE(server.ok()) << server.status();
    return server.ok() ? *std::move(server) : nullptr;
  }
  void OpenEngine(RemoteRunnerOptions remote_options = {}, bool fall_back_to_local = false) {
    AddTheRunners(remote_options);
    auto remote = RemoteRunner::Create(std::move(remote_options));
    ASSERT_TRUE(remote.ok()) << remote.status();
    remote_ = *remote;
    EngineOptions options = engine_options_;
    options.executor = remote_;
    options.executor_falls_back_to_local = fall_back_to_local;
    options.scheduler.workers = 1;
    auto engine = Engine::Open(storage_, std::move(options));
    ASSERT_TRUE(engine.ok()) << engine.status();
    engine_ = *std::move(engine);
  }
  void CreateBank(const std::string& tenant) {
    ASSERT_TRUE(engine_->CreateTenant(tenant).ok());
    absl::Status s = engine_->DeployJson(tenant, Bank("v1"), kSchema);
    ASSERT_TRUE(s.ok()) << s;
    for (int i = 0; i < kAccounts; ++i) {
      auto r = engine_->Mutation(tenant, "bank:open",
                                 Args({{"owner", Value::String("o" + std::to_string(i))},
                                       {"balance", Value::Int64(kBalance)}}));
      ASSERT_TRUE(r.ok()) << r.status();
    }
  }
  int64_t Total(const std::string& tenant) {
    auto r = engine_->Query(tenant, "bank:total", Value());
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() && r->value.is_int64() ? r->value.int64() : -1;
  }
  // Random transfers and total queries on `tenants` from `threads` threads; every call must
  // succeed. Stops after `calls_per_thread` each.
  void Load(const std::vector<std::string>& tenants, int threads, int calls_per_thread) {
    std::atomic<int> failures{0};
    std::vector<std::thread> clients;
    clients.reserve(threads);
    for (int t = 0; t < threads; ++t) {
      clients.emplace_back([&, t] {
        absl::BitGen gen;
        for (int i = 0; i < calls_per_thread; ++i) {
          const std::string& tenant = tenants[(t + i) % tenants.size()];
          absl::StatusOr<CallResult> r;
          if (i % 3 == 0) {
            r = engine_->Query(tenant, "bank:total", Value());
            if (r.ok() && r->value != Value::Int64(kAccounts * kBalance)) ++failures;
          } else {
            int from = absl::Uniform(gen, 0, kAccounts), to = absl::Uniform(gen, 0, kAccounts);
            r = engine_->Mutation(tenant, "bank:transfer",
                                  Args({{"from", Value::String("o" + std::to_string(from))},
                                        {"to", Value::String("o" + std::to_string(to))},
                                        {"amount", Value::Int64(absl::Uniform(gen, 1, 30))}}));
          }
          if (!r.ok()) {
            ADD_FAILURE() << tenant << ": " << r.status();
            ++failures;
          }
        }
      });
    }
    for (std::thread& c : clients) c.join();
    EXPECT_EQ(failures.load(), 0);
  }
  std::vector<std::string> Tenants(int n) {
    std::vector<std::string> out;
    out.reserve(n);
    for (int i = 0; i < n; ++i) out.push_back("t" + std::to_string(i));
    return out;
  }
  // The runner each tenant ranks first (the router's rule, computed independently here).
  std::map<std::string, std::string> FirstChoices(const std::vector<std::string>& tenants) {
    RendezvousRouter<std::string> router;
    for (const std::string& a : addresses_) EXPECT_TRUE(router.AddNode(a, a).ok());
    std::map<std::string, std::string> out;
    for (const std::string& t : tenants) out[t] = *router.Pick(t);
    return out;
  }

  void AddTheRunners(RemoteRunnerOptions& options) const {
    for (const std::string& a : addresses_) options.runners.push_back({a});
  }
  // One runner behind `stuck` (ranked first by the tenant): a snapshot of that tenant.
  std::shared_ptr<const Snapshot> StartBehind(const BlackHole& stuck) {
    StartServers(1);
    addresses_.insert(addresses_.begin(), stuck.address());
    return SnapshotOfATenantRankingFirst(stuck.address());
  }
  // A snapshot of a new bank tenant that ranks `address` first among addresses_, set up by an
  // engine without the runners (null on failure, reported).
  std::shared_ptr<const Snapshot> SnapshotOfATenantRankingFirst(const std::string& address) {
    std::string tenant;
    for (const auto& [t, first] : FirstChoices(Tenants(16))) {
      if (first == address) tenant = t;
    }
    EXPECT_FALSE(tenant.empty()) << "no tenant of 16 ranks " << address << " first";
    if (tenant.empty()) return nullptr;
    return BankSnapshots({tenant})[tenant];
  }
  // Snapshots of new bank tenants, set up by an engine without the runners (a missing one:
  // reported, null).
  std::map<std::string, std::shared_ptr<const Snapshot>> BankSnapshots(
      const std::vector<std::string>& tenants) {
    std::map<std::string, std::shared_ptr<const Snapshot>> out;
    EngineOptions local_options;
    local_options.scheduler.workers = 1;
    auto local = Engine::Open(storage_, std::move(local_options));
    EXPECT_TRUE(local.ok()) << local.status();
    if (!local.ok()) return out;
    for (const std::string& tenant : tenants) {
      EXPECT_TRUE((*local)->CreateTenant(tenant).ok());
      EXPECT_TRUE((*local)->DeployJson(tenant, Bank("v1"), kSchema).ok());
      auto snapshot = (*local)->Latest(tenant);
      EXPECT_TRUE(snapshot.ok()) << snapshot.status();
      if (snapshot.ok()) out[tenant] = *std::move(snapshot);
    }
    return out;
  }
  // A runner on `storage` as the only one, and a RemoteRunner for it with `options`.
  std::shared_ptr<RemoteRunner> OnlyRunnerOn(std::shared_ptr<Storage> storage,
                                             RemoteRunnerOptions options,
                                             std::unique_ptr<RunnerServer>* server) {
    *server = StartServer("127.0.0.1:0", std::move(storage));
    if (*server == nullptr) return nullptr;
    addresses_ = {"127.0.0.1:" + std::to_string((*server)->port())};
    AddTheRunners(options);
    auto remote = RemoteRunner::Create(std::move(options));
    EXPECT_TRUE(remote.ok()) << remote.status();
    return remote.ok() ? *std::move(remote) : nullptr;
  }

  std::shared_ptr<Storage> storage_ = std::make_shared<InMemoryStorage>();
  std::vector<std::unique_ptr<RunnerServer>> servers_;
  std::vector<std::string> addresses_;
  std::shared_ptr<RemoteRunner> remote_;
  EngineOptions engine_options_;  // OpenEngine's, before it sets the executor
  std::unique_ptr<Engine> engine_;
};

TEST_F(RemoteRunnerTest, BankLoadRunsOnTheTenantsFirstRunnersAndKeepsTotals) {
  StartServers(3);
  OpenEngine();
  // 12 tenants or more, until every server is some tenant's first choice (the
  // ports, and so the ranking, change from run to run: 12 random tenants leave
  // one of 3 servers without any about 2% of the time).
  std::vector<std::string> tenants = Tenants(12);
  for (int n = 13; n < 100; ++n) {
    std::set<std::string> owners;
    for (const auto& [tenant, address] : FirstChoices(tenants)) owners.insert(address);
    if (owners.size() == servers_.size()) break;
    tenants = Tenants(n);
  }
  for (const std::string& t : tenants) CreateBank(t);
  Load(tenants, 4, 60);
  for (const std::string& t : tenants) EXPECT_EQ(Total(t), kAccounts * kBalance) << t;

  // Every run went to its tenant's first choice (nothing was full): each server decoded the
  // metadata of exactly its own tenants, once each, and ran nothing else.
  std::map<std::string, std::string> first = FirstChoices(tenants);
  for (size_t i = 0; i < servers_.size(); ++i) {
    int own = 0;
    for (const auto& [tenant, address] : first) own += address == addresses_[i];
    RunnerServerStats stats = servers_[i]->stats();
    EXPECT_EQ(stats.metadata_loads, static_cast<uint64_t>(own)) << addresses_[i];
    EXPECT_EQ(stats.runs > 0, own > 0) << addresses_[i];
    EXPECT_GT(stats.metadata_hits + stats.metadata_loads, 0u);
  }
  RemoteRunnerStats remote = remote_->stats();
  EXPECT_EQ(remote.retries, 0u);
}

TEST_F(RemoteRunnerTest, ErrorsTravelWithTheirPayloads) {
  StartServers(1);
  OpenEngine();
  CreateBank("t");
  auto r = engine_->Query("t", "bank:broke", Value());
  ASSERT_FALSE(r.ok());
  std::optional<AppError> app = GetAppError(r.status());
  ASSERT_TRUE(app.has_value()) << r.status();
  EXPECT_EQ(app->data, Args({{"code", Value::String("NO_FUNDS")}}));
  r = engine_->Query("t", "bank:nothing", Value());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kNotFound) << r.status();
}

// Values as deep as a function may take and return cross the wire both ways: protobuf's
// default parse (100 nested messages, three per object level) refused them past 34 levels.
Value Nested(int levels) {
  Value v = Value::Int64(1);
  for (int i = 0; i < levels; ++i) v = Args({{"v", v}});
  return v;
}

TEST_F(RemoteRunnerTest, ValuesNestedToTheLimitCrossTheWire) {
  StartServers(1);
  OpenEngine();
  CreateBank("t");
  const Value deep = Nested(kMaxDecodeDepth - 2);
  absl::StatusOr<CallResult> r = engine_->Mutation("t", "bank:echo", deep);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->value, deep);
}

TEST_F(RemoteRunnerTest, ARedeployReachesTheRunners) {
  StartServers(2);
  OpenEngine();
  CreateBank("t");
  auto v = engine_->Query("t", "bank:version", Value());
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_EQ(v->value, Value::String("v1"));
  ASSERT_TRUE(engine_->DeployJson("t", Bank("v2"), kSchema).ok());
  v = engine_->Query("t", "bank:version", Value());
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_EQ(v->value, Value::String("v2"));
}

TEST_F(RemoteRunnerTest, ConcurrentFirstRunsOfATenantLoadItsMetadataOnce) {
  StartServers(1);
  OpenEngine();
  CreateBank("t");
  // A fresh runner: its cache holds nothing of "t" yet.
  servers_[0]->Shutdown(absl::ZeroDuration());
  const std::string& address = addresses_[0];
  servers_[0] = StartServer("127.0.0.1:" + address.substr(address.rfind(':') + 1));
  ASSERT_NE(servers_[0], nullptr);
  for (int i = 0; i < 200 && !remote_->stats().runners[0].healthy; ++i) {
    absl::SleepFor(absl::Milliseconds(20));
  }
  std::vector<std::thread> clients;
  clients.reserve(8);
  for (int c = 0; c < 8; ++c) {
    clients.emplace_back([&] { EXPECT_EQ(Total("t"), kAccounts * kBalance); });
  }
  for (std::thread& c : clients) c.join();
  EXPECT_EQ(servers_[0]->stats().metadata_loads, 1u);
  EXPECT_EQ(servers_[0]->stats().runs, 8u);
}

TEST_F(RemoteRunnerTest, ActionsAreRefused) {
  StartServers(1);
  OpenEngine();
  CreateBank("t");
  auto snapshot = engine_->Latest("t");
  ASSERT_TRUE(snapshot.ok());
  RunResult r =
      remote_->Run(*snapshot, RunRequest{.function = "bank:act", .kind = FunctionKind::kAction});
  EXPECT_EQ(r.status.code(), absl::StatusCode::kInvalidArgument) << r.status;
}

TEST_F(RemoteRunnerTest, FailsOverWhenARunnerStopsAndTakesBackOnlyItsTenants) {
  StartServers(3);
  OpenEngine();
  std::vector<std::string> tenants = Tenants(12);
  for (const std::string& t : tenants) CreateBank(t);
  std::map<std::string, std::string> first = FirstChoices(tenants);
  // The victim: the runner that most tenants rank first.
  size_t victim = 0;
  std::vector<int> own(servers_.size(), 0);
  for (size_t i = 0; i < servers_.size(); ++i) {
    for (const auto& [tenant, address] : first) own[i] += address == addresses_[i];
    if (own[i] > own[victim]) victim = i;
  }

  // Stop it while the load runs (once it has answered 40 of the ~100 runs of its tenants, so
  // that runs still go its way after: a fixed 100 ms could outlast a fast load), with runs in
  // flight there (a spinning query holds its one worker, so the load's runs queue behind it;
  // without one, the runner could go between two runs, found by its pings, and no attempt
  // fail over): every call of the load still succeeds, on the others.
  std::string victims_tenant;
  for (const auto& [tenant, address] : first) {
    if (address == addresses_[victim]) victims_tenant = tenant;
  }
  std::thread spinner;
  std::thread stopper([&] {
    for (const absl::Time end = absl::Now() + absl::Seconds(10);
         servers_[victim]->stats().runs < 40 && absl::Now() < end;) {
      absl::SleepFor(absl::Milliseconds(1));
    }
    spinner = std::thread([&] {
      // Fails over too, and ends at its deadline or CPU limit: its answer does not matter.
      (void)engine_->Query(victims_tenant, "bank:spin", Value(),
                           QueryOptions{.deadline = absl::Now() + absl::Seconds(1)});
    });
    for (const absl::Time end = absl::Now() + absl::Seconds(5);
         remote_->stats().runners[victim].in_flight < 2 && absl::Now() < end;) {
      absl::SleepFor(absl::Milliseconds(1));
    }
    servers_[victim]->Shutdown(absl::ZeroDuration());
  });
  Load(tenants, 4, 80);
  stopper.join();
  spinner.join();
  servers_[victim].reset();
  Load(tenants, 2, 24);  // now certainly without it
  for (const std::string& t : tenants) EXPECT_EQ(Total(t), kAccounts * kBalance) << t;
  RemoteRunnerStats stats = remote_->stats();
  EXPECT_FALSE(stats.runners[victim].healthy);
  EXPECT_GT(stats.runners[victim].failures, 0u);
  EXPECT_GT(stats.retries, 0u);

  // Start it again on its port: it comes back, for exactly the tenants it ranks first.
  const std::string& address = addresses_[victim];
  servers_[victim] = StartServer("127.0.0.1:" + address.substr(address.rfind(':') + 1));
  ASSERT_NE(servers_[victim], nullptr);
  for (int i = 0; i < 200 && !remote_->stats().runners[victim].healthy; ++i) {
    absl::SleepFor(absl::Milliseconds(20));
  }
  ASSERT_TRUE(remote_->stats().runners[victim].healthy);
  auto failures = [&] {
    uint64_t n = 0;
    for (const RemoteRunnerStats::Runner& r : remote_->stats().runners) n += r.failures;
    return n;
  };
  const uint64_t failures_before = failures();
  Load(tenants, 2, 48);
  // Its own tenants, each loaded once (concurrent first requests wait for one load). If
  // another runner failed an attempt meanwhile, its tenants may have come here too.
  const uint64_t loads = servers_[victim]->stats().metadata_loads;
  if (failures() == failures_before) {
    EXPECT_EQ(loads, static_cast<uint64_t>(own[victim]));
  } else {
    EXPECT_GE(loads, static_cast<uint64_t>(own[victim]));
  }
  EXPECT_GT(servers_[victim]->stats().runs, 0u);
}

TEST_F(RemoteRunnerTest, NoRunnerLeftIsUnavailable) {
  StartServers(1);
  RemoteRunnerOptions options;
  options.max_attempts = 2;
  OpenEngine(options);
  CreateBank("t");
  servers_[0]->Shutdown(absl::ZeroDuration());
  servers_[0].reset();
  auto r = engine_->Query("t", "bank:total", Value());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kUnavailable) << r.status();
  r = engine_->Query("t", "bank:total", Value());  // the runner is out of the ranking now
  EXPECT_EQ(r.status().code(), absl::StatusCode::kUnavailable) << r.status();
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("runner"));
}

// Without the local fallback and with every runner down, a queued call waits for a runner to
// come back (until its deadline): a refusal before it started is not one of its attempts, so
// it is not dead-lettered within seconds.
TEST_F(RemoteRunnerTest, AQueuedCallWaitsForARunnerInsteadOfUsingUpItsAttempts) {
  StartServers(1);
  engine_options_.queued.unavailable_retry = absl::Milliseconds(100);
  RemoteRunnerOptions options;
  options.max_attempts = 1;
  options.health_interval = absl::Milliseconds(50);
  OpenEngine(options);
  CreateBank("t");
  const std::string port = addresses_[0].substr(addresses_[0].rfind(':') + 1);
  servers_[0]->Shutdown(absl::ZeroDuration());
  servers_[0].reset();
  (void)engine_->Query("t", "bank:total", Value());  // finds it gone: out of the ranking

  absl::StatusOr<CallId> id = engine_->Submit("t", "bank:transfer",
                                              Args({{"from", Value::String("o0")},
                                                    {"to", Value::String("o1")},
                                                    {"amount", Value::Int64(7)}}),
                                              {.deadline = absl::Now() + absl::Minutes(1)});
  ASSERT_TRUE(id.ok()) << id.status();
  for (int i = 0; i < 300 && engine_->stats().queued.unavailable < 5; ++i) {
    absl::SleepFor(absl::Milliseconds(20));
  }
  EXPECT_GE(engine_->stats().queued.unavailable, 5u);  // offered again and again, refused
  absl::StatusOr<CallInfo> waiting = engine_->GetCall(*id);
  ASSERT_TRUE(waiting.ok()) << waiting.status();
  EXPECT_EQ(waiting->state, CallState::kPending);
  EXPECT_EQ(waiting->attempts, 0);

  // The runner comes back on its port: the call runs there, once.
  servers_[0] = StartServer("127.0.0.1:" + port);
  ASSERT_NE(servers_[0], nullptr);
  absl::StatusOr<CallInfo> ran = engine_->GetCall(*id);
  for (int i = 0; i < 500 && ran.ok() && ran->state != CallState::kSucceeded; ++i) {
    absl::SleepFor(absl::Milliseconds(20));
    ran = engine_->GetCall(*id);
  }
  ASSERT_TRUE(ran.ok()) << ran.status();
  EXPECT_EQ(ran->state, CallState::kSucceeded) << ran->error;
  EXPECT_EQ(ran->result, Value::Bool(true));
  EXPECT_EQ(ran->attempts, 1);
  EXPECT_GT(servers_[0]->stats().runs, 0u);
  EXPECT_EQ(Total("t"), kAccounts * kBalance);
}

TEST_F(RemoteRunnerTest, WithLocalFallbackTheEngineRunsWhatNoRunnerCanTake) {
  StartServers(1);
  OpenEngine({}, /*fall_back_to_local=*/true);
  CreateBank("t");
  const uint64_t remote_runs = servers_[0]->stats().runs;
  EXPECT_GT(remote_runs, 0u);  // the deploy's bank:open mutations ran there
  servers_[0]->Shutdown(absl::ZeroDuration());
  servers_[0].reset();
  // The first call finds the runner gone (Unavailable after its attempts: a run the runner
  // side took is not re-run locally); then the runner is out of the ranking, so the runner
  // side refuses at once and the engine runs the calls itself.
  (void)engine_->Query("t", "bank:total", Value());
  for (int i = 0; i < 3; ++i) EXPECT_EQ(Total("t"), kAccounts * kBalance);
  auto moved = engine_->Mutation("t", "bank:transfer",
                                 Args({{"from", Value::String("o0")},
                                       {"to", Value::String("o1")},
                                       {"amount", Value::Int64(5)}}));
  ASSERT_TRUE(moved.ok()) << moved.status();
  EXPECT_EQ(moved->value, Value::Bool(true));
  EXPECT_EQ(Total("t"), kAccounts * kBalance);
}

// A run's deadline goes with it: the runner stops the function there (not at its 1 s CPU
// limit), the caller hears DeadlineExceeded, and nobody blames the runner.
TEST_F(RemoteRunnerTest, ARunStopsAtItsDeadlineOnTheRunner) {
  StartServers(1);
  OpenEngine();
  CreateBank("t");
  auto snapshot = engine_->Latest("t");
  ASSERT_TRUE(snapshot.ok()) << snapshot.status();
  absl::Time start = absl::Now();
  RunResult r = remote_->Run(
      *snapshot, RunRequest{.function = "bank:spin", .deadline = start + absl::Milliseconds(200)});
  absl::Duration took = absl::Now() - start;
  EXPECT_EQ(r.status.code(), absl::StatusCode::kDeadlineExceeded) << r.status;
  EXPECT_GE(took, absl::Milliseconds(190));
  EXPECT_LT(took, absl::Milliseconds(800));
  // The runner's side ended at the deadline too: DeadlineExceeded, not its CPU limit.
  for (int i = 0; i < 100 && servers_[0]->stats().past_deadline == 0; ++i) {
    absl::SleepFor(absl::Milliseconds(10));
  }
  EXPECT_EQ(servers_[0]->stats().past_deadline, 1u);
  RemoteRunnerStats stats = remote_->stats();
  EXPECT_EQ(stats.retries, 0u);
  EXPECT_TRUE(stats.runners[0].healthy);
  EXPECT_EQ(stats.runners[0].failures, 0u);

  // Passed already: not even sent (Run does not hand it over; RunAsync's answer says so).
  const uint64_t runs = servers_[0]->stats().runs;
  r = remote_->Run(*snapshot, RunRequest{.function = "bank:total",
                                         .deadline = absl::Now() - absl::Milliseconds(1)});
  EXPECT_EQ(r.status.code(), absl::StatusCode::kDeadlineExceeded) << r.status;
  EXPECT_THAT(std::string(r.status.message()), HasSubstr("before it started"));
  absl::Notification answered;
  ASSERT_TRUE(remote_
                  ->RunAsync(*snapshot,
                             RunRequest{.function = "bank:total",
                                        .deadline = absl::Now() - absl::Milliseconds(1)},
                             [&](RunResult result) {
                               r = std::move(result);
                               answered.Notify();
                             })
                  .ok());
  answered.WaitForNotification();
  EXPECT_EQ(r.status.code(), absl::StatusCode::kDeadlineExceeded) << r.status;
  EXPECT_THAT(std::string(r.status.message()), HasSubstr("before it was sent"));
  EXPECT_EQ(servers_[0]->stats().runs, runs);

  // Through the engine: a query's deadline reaches the runner; a mutation past its deadline
  // does not run.
  start = absl::Now();
  auto q = engine_->Query("t", "bank:spin", Value(),
                          QueryOptions{.deadline = start + absl::Milliseconds(200)});
  EXPECT_EQ(q.status().code(), absl::StatusCode::kDeadlineExceeded) << q.status();
  EXPECT_LT(absl::Now() - start, absl::Milliseconds(800));
  auto m = engine_->Mutation("t", "bank:transfer",
                             Args({{"from", Value::String("o0")},
                                   {"to", Value::String("o1")},
                                   {"amount", Value::Int64(5)}}),
                             MutationOptions{.deadline = absl::Now() - absl::Milliseconds(1)});
  EXPECT_EQ(m.status().code(), absl::StatusCode::kDeadlineExceeded) << m.status();
  EXPECT_EQ(Total("t"), kAccounts * kBalance);
  auto fine = engine_->Query("t", "bank:total", Value(),
                             QueryOptions{.deadline = absl::Now() + absl::Seconds(30)});
  ASSERT_TRUE(fine.ok()) << fine.status();
}

TEST_F(RemoteRunnerTest, FailoverNeverRetriesPastTheDeadline) {
  BlackHole stuck;
  std::shared_ptr<const Snapshot> snapshot = StartBehind(stuck);
  ASSERT_NE(snapshot, nullptr);
  auto remote_with = [&](absl::Duration attempt_timeout) {
    RemoteRunnerOptions options;
    AddTheRunners(options);
    options.attempt_timeout = attempt_timeout;
    options.max_attempts = 3;
    auto remote = RemoteRunner::Create(std::move(options));
    EXPECT_TRUE(remote.ok()) << remote.status();
    return *std::move(remote);
  };

  // The deadline comes before the attempt's timeout: the stuck attempt ends at the deadline,
  // DeadlineExceeded, not retried on the healthy runner, and the stuck runner is not blamed.
  std::shared_ptr<RemoteRunner> remote = remote_with(absl::Seconds(10));
  absl::Time start = absl::Now();
  RunResult r = remote->Run(
      snapshot, RunRequest{.function = "bank:total", .deadline = start + absl::Milliseconds(300)});
  absl::Duration took = absl::Now() - start;
  EXPECT_EQ(r.status.code(), absl::StatusCode::kDeadlineExceeded) << r.status;
  EXPECT_GE(took, absl::Milliseconds(290));
  EXPECT_LT(took, absl::Seconds(2));
  RemoteRunnerStats stats = remote->stats();
  EXPECT_EQ(stats.retries, 0u);
  EXPECT_EQ(stats.runners[0].failures, 0u);
  EXPECT_TRUE(stats.runners[0].healthy);
  EXPECT_EQ(stats.runners[1].runs, 0u);

  // The attempt's timeout comes first: the run fails over within its deadline.
  remote = remote_with(absl::Milliseconds(200));
  start = absl::Now();
  r = remote->Run(snapshot,
                  RunRequest{.function = "bank:total", .deadline = start + absl::Seconds(5)});
  ASSERT_TRUE(r.status.ok()) << r.status;
  EXPECT_EQ(r.value, Value::Int64(0));
  EXPECT_LT(absl::Now() - start, absl::Seconds(2));
  stats = remote->stats();
  EXPECT_EQ(stats.retries, 1u);
  EXPECT_EQ(stats.runners[0].failures, 1u);
  EXPECT_FALSE(stats.runners[0].healthy);
  EXPECT_EQ(stats.runners[1].runs, 1u);
}

// A runner that stops answering (a stopped or hung process: its connection stays open) is
// found by its unanswered pings: its run in flight is cancelled and fails over long before
// the attempt's timeout and the deadline, and the runner stays out of the ranking while it
// does not answer. (Before pings, the run waited for its deadline, and a stopped runner whose
// channel looked ready was let back in at once.)
TEST_F(RemoteRunnerTest, ARunnerThatStopsAnsweringPingsIsLeftAndItsRunsFailOver) {
  BlackHole stuck;
  std::shared_ptr<const Snapshot> snapshot = StartBehind(stuck);
  ASSERT_NE(snapshot, nullptr);

  RemoteRunnerOptions options;
  AddTheRunners(options);
  options.attempt_timeout = absl::Seconds(30);
  options.ping_timeout = absl::Milliseconds(300);
  auto remote = RemoteRunner::Create(std::move(options));
  ASSERT_TRUE(remote.ok()) << remote.status();
  const absl::Time start = absl::Now();
  RunResult r = (*remote)->Run(
      snapshot, RunRequest{.function = "bank:total", .deadline = start + absl::Seconds(20)});
  ASSERT_TRUE(r.status.ok()) << r.status;
  EXPECT_EQ(r.value, Value::Int64(0));
  EXPECT_LT(absl::Now() - start, absl::Seconds(5)) << "waited for the stuck runner";
  absl::SleepFor(absl::Seconds(1));
  RemoteRunnerStats stats = (*remote)->stats();
  EXPECT_FALSE(stats.runners[0].healthy) << "let back in without answering";
  EXPECT_GE(stats.runners[0].pings_missed, 1u);
  EXPECT_EQ(stats.runners[0].failures, 1u);
  EXPECT_TRUE(stats.runners[1].healthy);
  EXPECT_EQ(stats.runners[1].pings_missed, 0u);
  EXPECT_EQ(stats.retries, 1u);
  // Its tenants now go to the healthy runner at once.
  const absl::Time again = absl::Now();
  r = (*remote)->Run(snapshot,
                     RunRequest{.function = "bank:total", .deadline = again + absl::Seconds(20)});
  ASSERT_TRUE(r.status.ok()) << r.status;
  EXPECT_LT(absl::Now() - again, absl::Seconds(2));
}

// A draining runner (shutting down with a grace period) answers its pings so: it leaves the
// ranking, but the runs it has finish there, not cancelled and retried elsewhere.
TEST_F(RemoteRunnerTest, ADrainingRunnersRunsFinishThere) {
  StartServers(2);
  RemoteRunnerOptions options;
  options.max_attempts = 3;
  OpenEngine(options);
  CreateBank("t");
  const size_t home = FirstChoices({"t"})["t"] == addresses_[0] ? 0 : 1;
  auto snapshot = engine_->Latest("t");
  ASSERT_TRUE(snapshot.ok()) << snapshot.status();
  RunResult r;
  std::thread run([&] {
    r = remote_->Run(*snapshot, RunRequest{.function = "bank:busy",
                                           .args = Args({{"n", Value::Float64(1.5e8)}}),
                                           .deadline = absl::Now() + absl::Seconds(20)});
  });
  absl::SleepFor(absl::Milliseconds(50));
  servers_[home]->Shutdown(absl::Seconds(10));  // returns once its runs are done
  run.join();
  ASSERT_TRUE(r.status.ok()) << r.status;
  EXPECT_EQ(r.value, Value::Bool(true));
  const RemoteRunnerStats stats = remote_->stats();
  EXPECT_EQ(stats.retries, 0u) << "the draining runner's run was moved";
  EXPECT_GE(stats.runners[home].runs, 1u);
}

// Storage whose reads (of one tenant, or of all) take `delay` once `slow` is set: a runner's
// metadata loads that block.
class SlowReads final : public StorageWrapper {
 public:
  SlowReads(std::shared_ptr<Storage> target, absl::Duration delay, std::string only = "")
      : StorageWrapper(std::move(target)), delay_(delay), only_(std::move(only)) {}
  absl::StatusOr<std::optional<IndexEntry>> Get(std::string_view tenant, IndexId index,
                                                std::string_view key, Timestamp ts) override {
    Wait(tenant);
    return StorageWrapper::Get(tenant, index, key, ts);
  }
  absl::StatusOr<std::vector<IndexEntry>> Scan(std::string_view tenant, IndexId index,
                                               const KeyRange& range, Timestamp ts, ScanOrder order,
                                               size_t limit) override {
    Wait(tenant);
    return StorageWrapper::Scan(tenant, index, range, ts, order, limit);
  }
  std::atomic<bool> slow{false};

 private:
  void Wait(std::string_view tenant) const {
    if (slow.load() && (only_.empty() || tenant == only_)) absl::SleepFor(delay_);
  }
  const absl::Duration delay_;
  const std::string only_;
};

// Many first runs at once, each loading its tenant's metadata from slow storage: the runner is
// busy, not stuck, and its pings must still be answered (a missed one takes it out of the
// ranking and cancels every run it has).
TEST_F(RemoteRunnerTest, ARunnerBusyLoadingMetadataStillAnswersItsPings) {
  constexpr int kTenants = 24;
  const auto snapshots = BankSnapshots(Tenants(kTenants));
  ASSERT_EQ(snapshots.size(), static_cast<size_t>(kTenants));
  auto slow = std::make_shared<SlowReads>(storage_, absl::Milliseconds(250));
  std::unique_ptr<RunnerServer> server;
  std::shared_ptr<RemoteRunner> remote =
      OnlyRunnerOn(slow, {.ping_timeout = absl::Milliseconds(300)}, &server);
  ASSERT_NE(remote, nullptr);

  slow->slow.store(true);
  std::vector<std::thread> runs;
  std::atomic<int> failed{0};
  for (const auto& entry : snapshots) {
    runs.emplace_back([&, snapshot = entry.second] {
      RunResult r = remote->Run(snapshot, RunRequest{.function = "bank:total",
                                                     .deadline = absl::Now() + absl::Seconds(60)});
      if (!r.status.ok()) {
        ADD_FAILURE() << r.status;
        ++failed;
      }
    });
  }
  for (std::thread& t : runs) t.join();
  const RemoteRunnerStats stats = remote->stats();
  EXPECT_EQ(failed.load(), 0);
  EXPECT_EQ(stats.runners[0].pings_missed, 0u) << "a busy runner was taken for a stuck one";
  EXPECT_EQ(stats.retries, 0u);
}

// Many runs of one tenant whose metadata load is slow join that one load without holding the
// runner's intake threads: a run of a tenant already cached does not wait for it (with a
// blocking join, four joiners held all four threads and it waited the whole load).
TEST_F(RemoteRunnerTest, ACachedTenantsRunDoesNotWaitForAnotherTenantsLoad) {
  auto snapshots = BankSnapshots({"warm", "cold"});
  ASSERT_EQ(snapshots.size(), 2u);
  auto slow = std::make_shared<SlowReads>(storage_, absl::Milliseconds(500), "cold");
  std::unique_ptr<RunnerServer> server;
  std::shared_ptr<RemoteRunner> remote = OnlyRunnerOn(slow, {}, &server);
  ASSERT_NE(remote, nullptr);
  auto run = [&](const std::string& tenant) {
    return remote->Run(snapshots[tenant], RunRequest{.function = "bank:total",
                                                     .deadline = absl::Now() + absl::Seconds(60)});
  };
  ASSERT_TRUE(run("warm").status.ok());  // cached now

  slow->slow.store(true);
  std::vector<std::thread> cold;
  for (int i = 0; i < 6; ++i) {
    cold.emplace_back([&] { EXPECT_TRUE(run("cold").status.ok()); });
  }
  absl::SleepFor(absl::Milliseconds(200));  // the cold runs are loading or joined
  const absl::Time start = absl::Now();
  EXPECT_TRUE(run("warm").status.ok());
  const absl::Duration warm = absl::Now() - start;
  for (std::thread& t : cold) t.join();
  const absl::Duration cold_load = absl::Now() - start;
  EXPECT_LT(warm, absl::Milliseconds(400))
      << "waited for the cold tenant's load, which took " << cold_load;
  EXPECT_EQ(server->stats().metadata_loads, 2u) << "one load per tenant";
}

// Storage whose reads fail (a runner's lost connection or damaged disk) while `failing` is set.
class FailingReads final : public StorageWrapper {
 public:
  explicit FailingReads(std::shared_ptr<Storage> target) : StorageWrapper(std::move(target)) {}
  absl::StatusOr<std::optional<IndexEntry>> Get(std::string_view tenant, IndexId index,
                                                std::string_view key, Timestamp ts) override {
    if (failing.load()) return absl::InternalError("FailingReads: the disk is gone");
    return StorageWrapper::Get(tenant, index, key, ts);
  }
  absl::StatusOr<std::vector<IndexEntry>> Scan(std::string_view tenant, IndexId index,
                                               const KeyRange& range, Timestamp ts, ScanOrder order,
                                               size_t limit) override {
    if (failing.load()) return absl::InternalError("FailingReads: the disk is gone");
    return StorageWrapper::Scan(tenant, index, range, ts, order, limit);
  }
  std::atomic<bool> failing{false};
};

// A runner whose storage fails answers INTERNAL (refusing the run, or as the run's result):
// the run goes to a runner it has not failed on, and the sick runner stays in the ranking.
// Before, every run of its tenants failed there, attempt after attempt, while the other
// runner was idle.
TEST_F(RemoteRunnerTest, ARunThatARunnersOwnFaultFailedRunsOnTheNextRunner) {
  auto sick_storage = std::make_shared<FailingReads>(storage_);
  auto other_storage = std::make_shared<FailingReads>(storage_);
  servers_.push_back(StartServer("127.0.0.1:0", sick_storage));
  servers_.push_back(StartServer("127.0.0.1:0", other_storage));
  for (const auto& server : servers_) {
    ASSERT_NE(server, nullptr);
    addresses_.push_back("127.0.0.1:" + std::to_string(server->port()));
  }
  // Two tenants that rank the sick runner first.
  std::vector<std::string> tenants;
  for (const auto& [tenant, first] : FirstChoices(Tenants(64))) {
    if (first == addresses_[0] && tenants.size() < 2) tenants.push_back(tenant);
  }
  ASSERT_EQ(tenants.size(), 2u) << "64 tenants did not give two that rank it first";
  auto snapshots = BankSnapshots(tenants);
  ASSERT_EQ(snapshots.size(), 2u);
  RemoteRunnerOptions options;
  AddTheRunners(options);
  auto remote = RemoteRunner::Create(std::move(options));
  ASSERT_TRUE(remote.ok()) << remote.status();
  auto total = [&](const std::string& tenant) {
    return (*remote)->Run(
        snapshots[tenant],
        RunRequest{.function = "bank:total", .deadline = absl::Now() + absl::Seconds(60)});
  };
  RunResult healthy = total(tenants[0]);
  ASSERT_TRUE(healthy.status.ok()) << healthy.status;
  ASSERT_EQ((*remote)->stats().runners[0].runs, 1u) << "the tenant's first runner ran it";

  // The first tenant's metadata is cached on the sick runner: the function's reads fail there,
  // as the run's result.
  sick_storage->failing.store(true);
  RunResult failed_in_the_run = total(tenants[0]);
  EXPECT_TRUE(failed_in_the_run.status.ok()) << failed_in_the_run.status;
  EXPECT_EQ(failed_in_the_run.value, healthy.value);
  RemoteRunnerStats stats = (*remote)->stats();
  EXPECT_EQ(stats.runners[0].runs, 2u) << "the sick runner answered the run (its result failed)";
  EXPECT_EQ(stats.runners[0].failures, 1u);
  EXPECT_EQ(stats.runners[1].runs, 1u);
  EXPECT_EQ(stats.retries, 1u);

  // The second tenant's is not: the sick runner cannot load it, and refuses the run.
  RunResult refused = total(tenants[1]);
  EXPECT_TRUE(refused.status.ok()) << refused.status;
  EXPECT_EQ(refused.value, healthy.value);
  stats = (*remote)->stats();
  EXPECT_EQ(stats.runners[0].runs, 2u) << "the sick runner refused the run (gRPC INTERNAL)";
  EXPECT_EQ(stats.runners[0].failures, 2u);
  EXPECT_EQ(stats.runners[1].runs, 2u);
  EXPECT_EQ(stats.retries, 2u);
  EXPECT_TRUE(stats.runners[0].healthy) << "a runner that answers pings stays in the ranking";

  // Both sick (a fault every runner meets): each runner tries it once, though max_attempts
  // would allow a third, and the run ends with the runner's error, not "no runner answered".
  other_storage->failing.store(true);
  RunResult everywhere = total(tenants[0]);
  EXPECT_EQ(everywhere.status.code(), absl::StatusCode::kInternal) << everywhere.status;
  EXPECT_THAT(std::string(everywhere.status.message()), HasSubstr("the disk is gone"));
  stats = (*remote)->stats();
  EXPECT_EQ(stats.runners[0].failures, 3u);
  EXPECT_EQ(stats.runners[1].failures, 1u);
  EXPECT_EQ(stats.retries, 3u);

  // Healed, the tenant's runs go back to its first runner.
  sick_storage->failing.store(false);
  other_storage->failing.store(false);
  const uint64_t runs_before = (*remote)->stats().runners[0].runs;
  EXPECT_TRUE(total(tenants[1]).status.ok());
  EXPECT_EQ((*remote)->stats().runners[0].runs, runs_before + 1);
}

TEST(RemoteRunnerOptionsTest, BadOptionsAreInvalidArgument) {
  EXPECT_EQ(RemoteRunner::Create({}).status().code(), absl::StatusCode::kInvalidArgument);
  RemoteRunnerOptions twice;
  twice.runners = {{"127.0.0.1:1"}, {"127.0.0.1:1"}};
  EXPECT_EQ(RemoteRunner::Create(twice).status().code(), absl::StatusCode::kInvalidArgument);
  RemoteRunnerOptions weight;
  weight.runners = {{"127.0.0.1:1", -1.0}};
  EXPECT_EQ(RemoteRunner::Create(weight).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(RunnerServer::Start({}).status().code(), absl::StatusCode::kInvalidArgument);
  // Durations that are not positive: a health_interval of 0 spun the health thread, an
  // attempt_timeout of 0 failed every attempt and took healthy runners out of the ranking.
  for (auto set : {+[](RemoteRunnerOptions& o) { o.attempt_timeout = absl::ZeroDuration(); },
                   +[](RemoteRunnerOptions& o) { o.health_interval = absl::ZeroDuration(); },
                   +[](RemoteRunnerOptions& o) { o.ping_timeout = -absl::Seconds(1); }}) {
    RemoteRunnerOptions options;
    options.runners = {{"127.0.0.1:1"}};
    set(options);
    absl::Status s = RemoteRunner::Create(options).status();
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
    EXPECT_THAT(std::string(s.message()), HasSubstr("must be positive")) << s;
  }
}

}  // namespace
}  // namespace txfn

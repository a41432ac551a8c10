// assemble_runner: a host assembling its own runner and committer from txfn's
// parts, in the design card's shape, instead of using txfn::Engine.
//
//   clients ──► RendezvousRouter<Runner*> (HRW on the tenant, ≤ 32 in flight per runner)
//                 ├─ runner-a: IsolateScheduler + FunctionRunner (module cache)
//                 ├─ runner-b: ...
//                 └─ runner-c: ...
//   each runner's CallPath commits a run's PreparedCommit (read set + writes) through
//   the tenant's Committer, from one TenantCommitters registry on one Storage.
//
// The runners could be other processes: a run's result is plain data. Routing
// by rendezvous hashing sends every request of a tenant to the same runner
// while that runner is under its cap, so the tenant's isolates and compiled
// modules stay warm there. The example runs the same workload twice — routed
// by the router, then spread round-robin over three fresh runners (the
// baseline) — and prints each runner's module-cache hit rate. It exits
// non-zero if a tenant's requests spread over several runners although no
// runner reached its cap, or if any call fails.
#include <atomic>
#include <cstdio>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "txfn/call_path.h"
#include "txfn/deploy.h"
#include "txfn/function_runner.h"
#include "txfn/in_memory_storage.h"
#include "txfn/isolate_scheduler.h"
#include "txfn/rendezvous_router.h"
#include "txfn/schema.h"
#include "txfn/status_macros.h"
#include "txfn/tenant_committers.h"

namespace {

using txfn::Value;

constexpr int kTenants = 12;
constexpr int kModulesPerTenant = 2;
constexpr int kClients = 4;
constexpr int kCallsPerClient = 120;
constexpr int kRunners = 3;
constexpr int kMaxInFlightPerRunner = 32;

constexpr const char* kCounter = R"JS(
import { query, mutation } from "txfn/server";
import { format } from "./lib/format.js";
export const bump = mutation(async (ctx, { name }) => {
  const c = await ctx.db.query("counters").withIndex("by_name", (q) => q.eq("name", name)).first();
  if (c === null) return ctx.db.insert("counters", { name, n: 1n });
  await ctx.db.patch(c._id, { n: c.n + 1n });
  return c._id;
});
export const read = query(async (ctx, { name }) => {
  const c = await ctx.db.query("counters").withIndex("by_name", (q) => q.eq("name", name)).first();
  return format(name, c === null ? 0n : c.n);
});
)JS";
constexpr const char* kFormat = R"JS(
export function format(name, n) { return name + "=" + n; }
)JS";

// One runner: its own scheduler (isolates, threads), FunctionRunner (module
// cache) and CallPath (run, commit, retry). A real deployment would put each
// in its own process, committing through a committer service.
struct Runner {
  std::string id;
  std::shared_ptr<txfn::IsolateScheduler> scheduler;
  std::unique_ptr<txfn::FunctionRunner> runner;
  std::unique_ptr<txfn::CallPath> calls;
  std::atomic<int> requests{0};
};

absl::StatusOr<std::unique_ptr<Runner>> MakeRunner(std::string id) {
  TXFN_ASSIGN_OR_RETURN(std::unique_ptr<txfn::IsolateScheduler> scheduler,
                        txfn::IsolateScheduler::Create({
                            .workers = 1,
                            .max_isolates = 8,
                            // The router bounds what reaches a runner; let one
                            // tenant use all of it.
                            .max_in_flight_per_tenant = kMaxInFlightPerRunner,
                            // Isolates made for the runner (its startup snapshot).
                            .customizer = txfn::FunctionRunnerIsolateCustomizer(),
                        }));
  auto r = std::make_unique<Runner>();
  r->id = std::move(id);
  r->scheduler = std::move(scheduler);
  r->runner = std::make_unique<txfn::FunctionRunner>(r->scheduler);
  r->calls = std::make_unique<txfn::CallPath>(*r->runner, *r->scheduler);
  return r;
}

// Runs `function` on `runner`; a mutation is committed through the tenant's
// committer (TenantCommitters opens it once, on first use) and re-run on a
// newer snapshot after a conflict.
absl::Status Call(Runner& runner, txfn::TenantCommitters& tenants, const std::string& tenant,
                  const std::string& function, bool mutation, const txfn::Value& args) {
  runner.requests.fetch_add(1, std::memory_order_relaxed);
  TXFN_ASSIGN_OR_RETURN(std::shared_ptr<txfn::OpenTenant> open, tenants.Get(tenant));
  return (mutation ? runner.calls->Mutation(*open, function, args)
                   : runner.calls->Query(*open, function, args))
      .status();
}

std::string TenantName(int i) { return "tenant-" + std::to_string(i); }

// Creates every tenant and deploys its schema and modules, checked (every
// module loads) on a runner of its own, so the measured runners start cold.
absl::Status DeployAll(txfn::TenantCommitters& tenants) {
  TXFN_ASSIGN_OR_RETURN(txfn::Schema schema, txfn::Schema::FromJson(R"({"tables": {
      "counters": {"fields": {"name": "string", "n": "int64"},
                   "indexes": {"by_name": ["name"]}}}})"));
  TXFN_ASSIGN_OR_RETURN(std::unique_ptr<Runner> deployer, MakeRunner("deployer"));
  for (int i = 0; i < kTenants; ++i) {
    TXFN_RETURN_IF_ERROR(tenants.Create(TenantName(i)));
    TXFN_ASSIGN_OR_RETURN(std::shared_ptr<txfn::OpenTenant> open, tenants.Get(TenantName(i)));
    TXFN_RETURN_IF_ERROR(txfn::DeployTenant(
        *open, *deployer->runner, {{"counter.js", kCounter}, {"lib/format.js", kFormat}}, schema));
  }
  return absl::OkStatus();
}

struct Placement {
  absl::Mutex mu;
  std::map<std::string, std::set<std::string>> runners_of ABSL_GUARDED_BY(mu);
  void Record(const std::string& tenant, const std::string& runner) {
    absl::MutexLock lock(&mu);
    runners_of[tenant].insert(runner);
  }
};

// kClients threads, each making kCallsPerClient calls on random tenants (a
// third of them mutations). `pick` chooses the runner and may hold a lease
// while the call runs.
template <typename Pick>
absl::Status Workload(txfn::TenantCommitters& tenants, Placement& placement, Pick pick) {
  std::vector<std::thread> clients;
  std::vector<absl::Status> results(kClients);
  for (int c = 0; c < kClients; ++c) {
    clients.emplace_back([&, c] {
      std::mt19937_64 rng(c + 1);
      for (int i = 0; i < kCallsPerClient && results[c].ok(); ++i) {
        const std::string tenant = TenantName(static_cast<int>(rng() % kTenants));
        const bool mutation = rng() % 3 == 0;
        Value args = Value::FromObject({{"name", Value::String(rng() % 2 ? "x" : "y")}});
        results[c] = pick(tenant, [&](Runner& runner) -> absl::Status {
          placement.Record(tenant, runner.id);
          return Call(runner, tenants, tenant, mutation ? "counter:bump" : "counter:read", mutation,
                      args);
        });
      }
    });
  }
  for (auto& t : clients) t.join();
  for (const absl::Status& s : results) TXFN_RETURN_IF_ERROR(s);
  return absl::OkStatus();
}

double PrintRunners(const char* title, const std::vector<std::unique_ptr<Runner>>& runners) {
  std::printf("%s\n", title);
  uint64_t hits = 0;
  uint64_t misses = 0;
  for (const auto& r : runners) {
    txfn::ModuleCacheStats s = r->runner->module_cache_stats();
    const double rate = s.hits + s.misses == 0 ? 0 : 100.0 * s.hits / (s.hits + s.misses);
    txfn::IsolateSchedulerStats is = r->scheduler->stats();
    std::printf(
        "  %s: %4d requests, module cache %5llu hits %3llu misses (hit rate %5.1f%%), "
        "isolates created %llu, evicted %llu\n",
        r->id.c_str(), r->requests.load(), static_cast<unsigned long long>(s.hits),
        static_cast<unsigned long long>(s.misses), rate,
        static_cast<unsigned long long>(is.isolates_created),
        static_cast<unsigned long long>(is.isolates_evicted));
    hits += s.hits;
    misses += s.misses;
  }
  const double rate = hits + misses == 0 ? 0 : 100.0 * hits / (hits + misses);
  std::printf("  all: hit rate %.1f%% (%llu misses)\n", rate,
              static_cast<unsigned long long>(misses));
  return rate;
}

absl::Status Run() {
  auto storage = std::make_shared<txfn::InMemoryStorage>();
  txfn::TenantCommitters tenants(storage);
  TXFN_RETURN_IF_ERROR(DeployAll(tenants));

  // ---- Routed by rendezvous hashing ----
  std::vector<std::unique_ptr<Runner>> runners;
  txfn::RendezvousRouter<Runner*> router;
  for (const char* id : {"runner-a", "runner-b", "runner-c"}) {
    TXFN_ASSIGN_OR_RETURN(std::unique_ptr<Runner> r, MakeRunner(id));
    TXFN_RETURN_IF_ERROR(router.AddNode(id, r.get(), 1.0, kMaxInFlightPerRunner));
    runners.push_back(std::move(r));
  }
  Placement routed;
  std::atomic<int> max_in_flight{0};
  TXFN_RETURN_IF_ERROR(
      Workload(tenants, routed, [&](const std::string& tenant, auto call) -> absl::Status {
        TXFN_ASSIGN_OR_RETURN(txfn::RendezvousRouter<Runner*>::Lease lease, router.Acquire(tenant));
        int in_flight = router.InFlight(lease.node_id()).value_or(0);
        for (int seen = max_in_flight.load(); in_flight > seen;) {
          if (max_in_flight.compare_exchange_weak(seen, in_flight)) break;
        }
        return call(*lease.node());
      }));
  const double routed_rate = PrintRunners("routed by RendezvousRouter (HRW):", runners);

  // ---- Baseline: round-robin over three fresh runners ----
  std::vector<std::unique_ptr<Runner>> spread;
  for (const char* id : {"rr-a", "rr-b", "rr-c"}) {
    TXFN_ASSIGN_OR_RETURN(std::unique_ptr<Runner> r, MakeRunner(id));
    spread.push_back(std::move(r));
  }
  Placement round_robin;
  std::atomic<uint64_t> next{0};
  TXFN_RETURN_IF_ERROR(
      Workload(tenants, round_robin, [&](const std::string&, auto call) -> absl::Status {
        return call(*spread[next.fetch_add(1) % spread.size()]);
      }));
  const double rr_rate = PrintRunners("baseline, round-robin:", spread);
  std::printf("module cache hit rate: routed %.1f%% vs round-robin %.1f%%\n", routed_rate, rr_rate);
  std::printf(
      "(each tenant's %d modules compile once on its one runner when routed: %d misses; "
      "up to %d when spread over %d runners)\n",
      kModulesPerTenant, kTenants * kModulesPerTenant, kTenants * kModulesPerTenant * kRunners,
      kRunners);

  // ---- The check ----
  std::printf("max in flight on one runner: %d (cap %d)\n", max_in_flight.load(),
              kMaxInFlightPerRunner);
  absl::MutexLock lock(&routed.mu);
  bool spread_out = false;
  for (const auto& [tenant, ids] : routed.runners_of) {
    std::string names;
    for (const std::string& id : ids) names += " " + id;
    std::printf("  %s ->%s\n", tenant.c_str(), names.c_str());
    if (ids.size() > 1) spread_out = true;
  }
  if (spread_out && max_in_flight.load() < kMaxInFlightPerRunner) {
    return absl::InternalError("a tenant's requests spread over runners while under the cap");
  }
  if (routed.runners_of.size() != kTenants) return absl::InternalError("a tenant got no calls");
  return absl::OkStatus();
}

}  // namespace

int main() {
  absl::Status s = Run();
  if (!s.ok()) {
    std::fprintf(stderr, "assemble_runner: %s\n", s.ToString().c_str());
    return 1;
  }
  std::printf("assemble_runner: OK\n");
  return 0;
}

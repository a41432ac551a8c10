// assemble_host: a host that assembles its own runner and committers from
// txfn's public parts (the README's "Quick start: assembling the parts"),
// instead of using txfn::Engine.
//
//   TenantCommitters  one Committer per tenant on one Storage (opened on first use)
//   IsolateScheduler + FunctionRunner   the runner: V8 isolates, module cache
//   CallPath          run, commit, retry on conflict (contention lanes), sync and async
//   DeployTenant      the deploy check: modules load, documents fit the schema
//
// It creates a tenant, deploys, runs queries and mutations (32 at once on
// one counter, the async form too), shows that a refused deploy keeps the old
// version, deletes the tenant, and exits non-zero if anything is off.
#include <atomic>
#include <cstdio>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "txfn/call_path.h"
#include "txfn/deploy.h"
#include "txfn/function_runner.h"
#include "txfn/in_memory_storage.h"
#include "txfn/isolate_scheduler.h"
#include "txfn/schema.h"
#include "txfn/status_macros.h"
#include "txfn/tenant_committers.h"
#include "txfn/value.h"

namespace {

constexpr const char* kCounter = R"JS(
import { query, mutation } from "txfn/server";
export const bump = mutation(async (ctx, { name }) => {
  const c = await ctx.db.query("counters").withIndex("by_name", (q) => q.eq("name", name)).first();
  if (c === null) return ctx.db.insert("counters", { name, n: 1n });
  await ctx.db.patch(c._id, { n: c.n + 1n });
  return c._id;
});
export const get = query(async (ctx, { name }) => {
  const c = await ctx.db.query("counters").withIndex("by_name", (q) => q.eq("name", name)).first();
  return c === null ? 0n : c.n;
});
)JS";

constexpr const char* kSchema = R"({"tables": {
    "counters": {"fields": {"name": "string", "n": "int64"}, "indexes": {"by_name": ["name"]}}}})";

absl::Status Check(bool ok, const char* what) {
  return ok ? absl::OkStatus() : absl::InternalError(what);
}

absl::Status Run() {
  // The parts. Any Storage works; SqliteStorage (<txfn/sqlite_storage.h>) is durable.
  auto storage = std::make_shared<txfn::InMemoryStorage>();
  txfn::TenantCommitters tenants(storage);
  // max_in_flight_per_tenant: by default a tenant may have only half the
  // workers' worth of calls queued; this host makes 32 at once. The runner's
  // customizer makes isolates from its startup snapshot (cheaper contexts).
  TXFN_ASSIGN_OR_RETURN(
      std::unique_ptr<txfn::IsolateScheduler> created,
      txfn::IsolateScheduler::Create({.workers = 2,
                                      .max_isolates = 4,
                                      .max_in_flight_per_tenant = 64,
                                      .customizer = txfn::FunctionRunnerIsolateCustomizer()}));
  std::shared_ptr<txfn::IsolateScheduler> scheduler = std::move(created);
  txfn::FunctionRunner runner(scheduler);
  // Each mutation runs up to 32 times on conflict (the default is 8): the
  // 32 concurrent calls below all commit even on a slow machine.
  txfn::CallPath calls(runner, *scheduler, {.mutation_retry = {.max_attempts = 32}});

  // A tenant and its code.
  TXFN_RETURN_IF_ERROR(tenants.Create("shop"));
  TXFN_ASSIGN_OR_RETURN(std::shared_ptr<txfn::OpenTenant> shop, tenants.Get("shop"));
  TXFN_ASSIGN_OR_RETURN(txfn::Schema schema, txfn::Schema::FromJson(kSchema));
  TXFN_RETURN_IF_ERROR(txfn::DeployTenant(*shop, runner, {{"counter.js", kCounter}}, schema));

  // A refused deploy (a syntax error) leaves the old version serving.
  absl::Status refused =
      txfn::DeployTenant(*shop, runner, {{"counter.js", "export const = ;"}}, schema);
  std::printf("bad deploy: %s\n", std::string(refused.message()).c_str());
  TXFN_RETURN_IF_ERROR(Check(absl::IsInvalidArgument(refused), "a bad deploy was not refused"));

  // 32 mutations at once on one document (created first): conflicts retry
  // (in a contention lane) until each has committed.
  const txfn::Value args = txfn::Value::FromObject({{"name", txfn::Value::String("visits")}});
  TXFN_RETURN_IF_ERROR(calls.Mutation(*shop, "counter:bump", args).status());
  std::vector<std::thread> threads;
  std::vector<absl::Status> results(32);
  for (absl::Status& result : results) {
    threads.emplace_back([&] { result = calls.Mutation(*shop, "counter:bump", args).status(); });
  }
  for (std::thread& t : threads) t.join();
  for (const absl::Status& result : results) TXFN_RETURN_IF_ERROR(result);

  // The async form: `done` runs on a scheduler thread.
  std::atomic<bool> done{false};
  absl::Status async_status;
  TXFN_RETURN_IF_ERROR(
      calls.MutationAsync(shop, "counter:bump", args, {}, [&](absl::StatusOr<txfn::CallResult> r) {
        async_status = r.status();
        done.store(true);
      }));
  while (!done.load()) std::this_thread::yield();
  TXFN_RETURN_IF_ERROR(async_status);

  TXFN_ASSIGN_OR_RETURN(txfn::CallResult visits, calls.Query(*shop, "counter:get", args));
  const txfn::CallPathStats stats = calls.stats();
  std::printf("visits = %s at ts %llu (%llu conflicts, %llu calls serialised)\n",
              txfn::ToJson(visits.value).c_str(), static_cast<unsigned long long>(visits.ts),
              static_cast<unsigned long long>(stats.conflicts),
              static_cast<unsigned long long>(stats.serialised));
  TXFN_RETURN_IF_ERROR(Check(visits.value == txfn::Value::Int64(34), "lost an increment"));

  // Deleting the tenant: a commit through the old handle never lands.
  TXFN_RETURN_IF_ERROR(tenants.Delete("shop"));
  absl::StatusOr<txfn::CallResult> late = calls.Mutation(*shop, "counter:bump", args);
  TXFN_RETURN_IF_ERROR(Check(absl::IsNotFound(late.status()), "a deleted tenant was written"));
  TXFN_RETURN_IF_ERROR(
      Check(absl::IsNotFound(tenants.Get("shop").status()), "a deleted tenant reopened"));
  return absl::OkStatus();
}

}  // namespace

int main() {
  absl::Status s = Run();
  if (!s.ok()) {
    std::fprintf(stderr, "assemble_host: %s\n", s.ToString().c_str());
    return 1;
  }
  std::printf("assemble_host: OK\n");
  return 0;
}

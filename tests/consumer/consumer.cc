// The consumer projects' program: uses txfn's public headers through the
// exported targets and exits non-zero if what it sees is wrong.
#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>
#include <utility>

#include "txfn/async_lru_cache.h"
#include "txfn/call_scheduler.h"
#include "txfn/committer.h"
#include "txfn/in_memory_queue.h"
#include "txfn/in_memory_storage.h"
#include "txfn/rendezvous_router.h"
#include "txfn/transaction.h"
#include "txfn/value.h"
#if defined(TXFN_CONSUMER_ENGINE) || defined(TXFN_CONSUMER_SQLITE)
#include "txfn/sqlite_storage.h"
#endif
#ifdef TXFN_CONSUMER_ENGINE
#include "txfn/engine.h"
#include "txfn/function_runner.h"
#endif

namespace {

int Fail(const char* what) {
  std::fprintf(stderr, "consumer: %s\n", what);
  return 1;
}

}  // namespace

int main() {
  // txfn::core: a committed transaction is visible at the next snapshot.
  auto storage = std::make_shared<txfn::InMemoryStorage>();
  auto committer = txfn::Committer::Open(storage, "consumer");
  if (!committer.ok()) return Fail("Committer::Open");
  txfn::Transaction deploy((*committer)->Latest());
  auto schema = txfn::Schema::FromJson(R"({"tables": {"notes": {}}})");
  if (!schema.ok() || !deploy.DeploySchema(*schema).ok()) return Fail("deploy");
  auto id = deploy.Insert("notes", txfn::Value::FromObject({{"n", txfn::Value::Int64(7)}}));
  if (!id.ok() || !(*committer)->Commit(deploy.Prepare()).ok()) return Fail("commit");
  txfn::Transaction read((*committer)->Latest());
  auto doc = read.Get(*id);
  if (!doc.ok() || !doc->has_value() || (*doc)->Find("n")->int64() != 7) return Fail("read");

  // txfn::cache: a miss loads once, a hit does not.
  txfn::AsyncLruCache<std::string, int> cache;
  int loads = 0;
  for (int i = 0; i < 2; ++i) {
    auto v = cache.Get("k", [&]() -> absl::StatusOr<std::shared_ptr<const int>> {
      ++loads;
      return std::make_shared<const int>(42);
    });
    if (!v.ok() || **v != 42) return Fail("cache value");
  }
  if (loads != 1) return Fail("cache loads");

  // txfn::router: a key always lands on the same node.
  txfn::RendezvousRouter<int> router;
  for (int n = 0; n < 3; ++n) {
    if (!router.AddNode("node" + std::to_string(n), n).ok()) return Fail("AddNode");
  }
  auto first = router.Acquire("tenant-a");
  auto again = router.Acquire("tenant-a");
  if (!first.ok() || !again.ok() || first->node() != again->node()) return Fail("router");

  // txfn::queue: a queued call reaches a worker and is acked.
  txfn::VirtualClock clock;
  txfn::InMemoryQueue queue;
  txfn::Call call{.id = txfn::CallIdGenerator(1).Next(),
                  .tenant = "consumer",
                  .function = "jobs:run",
                  .start_after = clock.Now(),
                  .deadline = clock.Now() + absl::Hours(1)};
  if (!queue.Enqueue({&call, 1}).ok()) return Fail("Enqueue");
  struct Inline final : txfn::Worker {
    int runs = 0;
    void Run(const txfn::Call&, Done done) override {
      ++runs;
      std::move(done)(txfn::CallOutcome::Ok());
    }
  };
  auto worker = std::make_shared<Inline>();
  auto scheduler = txfn::CallScheduler::Create({.queue = &queue, .clock = &clock});
  if (!scheduler.ok() || !(*scheduler)->AddWorker("w", worker, 1).ok()) return Fail("scheduler");
  for (int i = 0; i < 3; ++i) {
    clock.Advance(absl::Milliseconds(10));
    (*scheduler)->Tick();
  }
  if (worker->runs != 1 || (*scheduler)->stats().acked != 1) return Fail("queue");

#if defined(TXFN_CONSUMER_ENGINE) || defined(TXFN_CONSUMER_SQLITE)
  // txfn::sqlite: a storage on a file.
  const std::filesystem::path db = std::filesystem::temp_directory_path() / "txfn-consumer-test.db";
  std::filesystem::remove(db);
  if (!txfn::SqliteStorage::Open(db.string()).ok()) return Fail("SqliteStorage::Open");
  std::filesystem::remove(db);
#endif
#ifdef TXFN_CONSUMER_ENGINE
  // txfn::engine and txfn::v8: a JavaScript query, and a mutation called as a
  // query refused with its declared kind.
  auto engine = txfn::Engine::Open(std::make_shared<txfn::InMemoryStorage>(), {});
  if (!engine.ok() || !(*engine)->CreateTenant("shop").ok()) return Fail("Engine::Open");
  if (!(*engine)
           ->DeployJson("shop", {{"hello.js", R"(import { query, mutation } from "txfn/server";
      export const greet = query({args: {name: "string"}, handler: (ctx, {name}) => `hi ${name}`});
      export const touch = mutation(() => 1);)"}},
                        R"({"tables": {}})")
           .ok()) {
    return Fail("Deploy");
  }
  auto r = (*engine)->Query("shop", "hello:greet",
                            txfn::Value::FromObject({{"name", txfn::Value::String("ann")}}));
  if (!r.ok() || r->value.string() != "hi ann") return Fail("Query");
  auto wrong = (*engine)->Query("shop", "hello:touch", txfn::Value::FromObject({}));
  if (wrong.ok() || txfn::DeclaredKind(wrong.status()) != txfn::FunctionKind::kMutation) {
    return Fail("DeclaredKind");
  }
#endif
  std::printf("txfn consumer ok\n");
  return 0;
}

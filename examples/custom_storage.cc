// custom_storage: plug a user-written Storage adapter into the engine.
//
// CountingStorage (counting_storage.h) wraps InMemoryStorage and counts the
// calls the engine makes; custom_storage_conformance.cc checks the adapter
// with txfn's conformance suite. Exits non-zero if anything is wrong.
#include <cstdio>
#include <memory>
#include <thread>
#include <vector>

#include "counting_storage.h"
#include "txfn/engine.h"
#include "txfn/in_memory_storage.h"
#include "txfn/status_macros.h"

namespace {

constexpr const char* kVotes = R"JS(
import { query, mutation } from "txfn/server";
export const vote = mutation(async (ctx, { option }) => ctx.db.insert("votes", { option }));
export const tally = query(async (ctx, { option }) =>
  (await ctx.db.query("votes").withIndex("by_option", (q) => q.eq("option", option)).collect())
      .length);
)JS";

absl::Status Run() {
  auto storage =
      std::make_shared<example::CountingStorage>(std::make_shared<txfn::InMemoryStorage>());
  TXFN_ASSIGN_OR_RETURN(std::unique_ptr<txfn::Engine> engine, txfn::Engine::Open(storage, {}));
  TXFN_RETURN_IF_ERROR(engine->CreateTenant("poll"));
  TXFN_RETURN_IF_ERROR(engine->DeployJson("poll", {{"votes.js", kVotes}},
                                          R"({"tables": {"votes": {"fields": {"option": "string"},
                               "indexes": {"by_option": ["option"]}}}})"));

  // Four threads vote concurrently; the committer may group their commits
  // (then the adapter sees fewer Write calls than commits).
  constexpr int kThreads = 4;
  constexpr int kVotesPerThread = 25;
  std::vector<std::thread> threads;
  std::vector<absl::Status> results(kThreads);
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kVotesPerThread && results[t].ok(); ++i) {
        txfn::Value args =
            txfn::Value::FromObject({{"option", txfn::Value::String(i % 2 == 0 ? "yes" : "no")}});
        results[t] = engine->Mutation("poll", "votes:vote", args).status();
      }
    });
  }
  for (auto& t : threads) t.join();
  for (const absl::Status& s : results) TXFN_RETURN_IF_ERROR(s);

  TXFN_ASSIGN_OR_RETURN(
      txfn::CallResult yes,
      engine->Query("poll", "votes:tally",
                    txfn::Value::FromObject({{"option", txfn::Value::String("yes")}})));
  example::CountingStorage::Counts c = storage->counts();
  std::printf("yes votes: %s\n", txfn::ToJson(yes.value).c_str());
  std::printf(
      "storage calls: Write %llu (%llu commits), Get %llu, Scan %llu, MaxCommittedTimestamp %llu\n",
      static_cast<unsigned long long>(c.writes), static_cast<unsigned long long>(c.commits),
      static_cast<unsigned long long>(c.gets), static_cast<unsigned long long>(c.scans),
      static_cast<unsigned long long>(c.max_ts));
  // 100 votes + the tenant's creation + the deploy.
  constexpr int kCommits = kThreads * kVotesPerThread + 2;
  if (yes.value != txfn::Value::Float64(kThreads * ((kVotesPerThread + 1) / 2))) {
    return absl::InternalError("wrong tally");
  }
  if (c.commits != kCommits || c.writes == 0 || c.writes > c.commits) {
    return absl::InternalError("the engine did not write through the custom storage");
  }
  return absl::OkStatus();
}

}  // namespace

int main() {
  absl::Status s = Run();
  if (!s.ok()) {
    std::fprintf(stderr, "custom_storage: %s\n", s.ToString().c_str());
    return 1;
  }
  std::printf("custom_storage: OK\n");
  return 0;
}

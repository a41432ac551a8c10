// core_quickstart: the transactional core without V8.
//
// Opens an in-memory store, deploys a schema, runs concurrent bank transfers
// as OCC transactions (retried on conflict), and checks that money was
// conserved. Exits non-zero if anything is wrong.
#include <cstdio>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "txfn/committer.h"
#include "txfn/in_memory_storage.h"
#include "txfn/retry.h"
#include "txfn/schema.h"
#include "txfn/status_macros.h"
#include "txfn/transaction.h"

namespace {

using txfn::Value;

absl::Status Run() {
  auto storage = std::make_shared<txfn::InMemoryStorage>();
  TXFN_ASSIGN_OR_RETURN(std::unique_ptr<txfn::Committer> committer,
                        txfn::Committer::Open(storage, "bank"));

  // Deploys are transactions too.
  TXFN_ASSIGN_OR_RETURN(txfn::Schema schema, txfn::Schema::FromJson(R"({"tables": {
      "accounts": {"fields": {"owner": "string", "balance": "int64"},
                   "indexes": {"by_owner": ["owner"]}}}})"));
  txfn::Transaction deploy(committer->Latest());
  TXFN_RETURN_IF_ERROR(deploy.DeploySchema(schema));
  std::vector<std::string> ids;
  for (const char* owner : {"ann", "bob", "cat", "dan"}) {
    TXFN_ASSIGN_OR_RETURN(std::string id,
                          deploy.Insert("accounts", Value::FromObject({
                                                        {"owner", Value::String(owner)},
                                                        {"balance", Value::Int64(100)},
                                                    })));
    ids.push_back(id);
  }
  TXFN_RETURN_IF_ERROR(committer->Commit(deploy.Prepare()).status());

  // Two threads move money around; conflicts are retried by RunTransaction.
  std::vector<std::thread> threads;
  std::vector<absl::Status> results(2);
  int attempts[2] = {0, 0};
  for (int t = 0; t < 2; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937 rng(t);
      for (int i = 0; i < 500 && results[t].ok(); ++i) {
        const std::string& from = ids[rng() % ids.size()];
        const std::string& to = ids[rng() % ids.size()];
        if (from == to) continue;
        auto outcome = txfn::RunTransaction(
            *committer,
            [&](txfn::Transaction& txn) -> absl::Status {
              TXFN_ASSIGN_OR_RETURN(std::optional<Value> a, txn.Get(from));
              TXFN_ASSIGN_OR_RETURN(std::optional<Value> b, txn.Get(to));
              int64_t amount = 5;
              if (a->Find("balance")->int64() < amount) return absl::OkStatus();
              TXFN_RETURN_IF_ERROR(txn.Patch(
                  from, Value::FromObject(
                            {{"balance", Value::Int64(a->Find("balance")->int64() - amount)}})));
              return txn.Patch(
                  to, Value::FromObject(
                          {{"balance", Value::Int64(b->Find("balance")->int64() + amount)}}));
            },
            // Two threads on four accounts contend hard (more so on a slow,
            // sanitized build), so allow more attempts than the default 8.
            {.max_attempts = 100});
        if (!outcome.ok())
          results[t] = outcome.status();
        else
          attempts[t] += outcome->attempts;
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  for (const absl::Status& s : results) TXFN_RETURN_IF_ERROR(s);

  // A read-only query over the index, at the latest snapshot.
  txfn::Transaction query(committer->Latest(), {.read_only = true});
  TXFN_ASSIGN_OR_RETURN(txfn::QueryPage page,
                        query.Query({.table = "accounts", .index = "by_owner"}));
  int64_t total = 0;
  for (const Value& account : page.documents) {
    std::printf("  %-4s %5lld\n", account.Find("owner")->string().c_str(),
                static_cast<long long>(account.Find("balance")->int64()));
    total += account.Find("balance")->int64();
  }
  txfn::CommitterStats stats = committer->stats();
  std::printf("commits %llu, conflicts retried %llu, attempts %d, total %lld\n",
              static_cast<unsigned long long>(stats.commits),
              static_cast<unsigned long long>(stats.conflicts), attempts[0] + attempts[1],
              static_cast<long long>(total));
  if (total != 400) return absl::InternalError("money was created or destroyed");
  return absl::OkStatus();
}

}  // namespace

int main() {
  absl::Status status = Run();
  if (!status.ok()) {
    std::fprintf(stderr, "core_quickstart: %s\n", std::string(status.message()).c_str());
    return 1;
  }
  std::printf("core_quickstart ok\n");
  return 0;
}

// embed_minimal: open an engine, deploy one module, call it.
#include <cstdio>
#include <memory>

#include "txfn/engine.h"
#include "txfn/in_memory_storage.h"

int main() {
  auto engine = txfn::Engine::Open(std::make_shared<txfn::InMemoryStorage>(), {});
  if (!engine.ok()) return std::fprintf(stderr, "%s\n", engine.status().ToString().c_str()), 1;
  txfn::Engine& e = **engine;
  const char* hello = R"JS(
    import { query, mutation } from "txfn/server";
    export const add = mutation(async (ctx, { text }) => ctx.db.insert("notes", { text }));
    export const count = query(async (ctx) => (await ctx.db.query("notes").collect()).length);
  )JS";
  absl::Status s = e.CreateTenant("demo");
  if (s.ok()) s = e.DeployJson("demo", {{"notes.js", hello}}, R"({"tables": {"notes": {}}})");
  for (int i = 0; s.ok() && i < 3; ++i) {
    s = e.Mutation("demo", "notes:add",
                   txfn::Value::FromObject({{"text", txfn::Value::String("hi")}}))
            .status();
  }
  absl::StatusOr<txfn::CallResult> count = s.ok() ? e.Query("demo", "notes:count", {}) : s;
  if (!count.ok()) return std::fprintf(stderr, "%s\n", count.status().ToString().c_str()), 1;
  std::printf("notes: %s\n", txfn::ToJson(count->value).c_str());
  return count->value == txfn::Value::Float64(3) ? 0 : 1;
}

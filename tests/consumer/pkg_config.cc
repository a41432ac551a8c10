// Built by tests/consumer/run_consumer.cmake with only `pkg-config --cflags
// --libs txfn`: an embedded engine (txfn::engine, ::v8, ::sqlite, ::core).
#include <cstdio>
#include <memory>

#include "txfn/engine.h"
#include "txfn/in_memory_storage.h"

int main() {
  auto engine = txfn::Engine::Open(std::make_shared<txfn::InMemoryStorage>(), {});
  if (!engine.ok() || !(*engine)->CreateTenant("pc").ok()) return 1;
  auto tenants = (*engine)->ListTenants();
  if (!tenants.ok() || tenants->size() != 1) return 1;
  std::printf("txfn pkg-config consumer ok\n");
  return 0;
}

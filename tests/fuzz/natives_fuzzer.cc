// Fuzzes the ctx.db natives: the fuzzer's bytes drive tests/sandbox/fuzz.js,
// which calls random natives with random argument shapes (Proxies, throwing
// and spinning getters, huge strings, cyclic objects, BigInts, symbols) and
// sometimes spins into its CPU limit. Every call must end with a documented
// status, the process must survive (ASan + UBSan watch it), and a harmless
// call must still answer.
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>

#include "txfn/engine.h"

namespace {

// 50 ms of CPU a fuzzed call, so spins end quickly. The deploy (the
// process's first isolate, both modules compiled and evaluated) gets 10 s:
// under ASan on a loaded machine it took more than 50 ms, and the fuzzer
// aborted before its first input.
class FuzzLimits : public txfn::LimitEnforcer {
 public:
  absl::Duration CpuLimit(const std::string&) const override {
    return deployed_.load() ? absl::Milliseconds(50) : absl::Seconds(10);
  }
  void Deployed() { deployed_.store(true); }

 private:
  std::atomic<bool> deployed_{false};
};

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream out;
  out << in.rdbuf();
  return out.str();
}

void Check(bool ok, const std::string& what) {
  if (!ok) {
    std::fprintf(stderr, "natives_fuzzer: %s\n", what.c_str());
    std::abort();
  }
}

// Destroyed at exit, so its isolates are disposed of before LeakSanitizer looks.
txfn::Engine& TheEngine() {
  static const std::unique_ptr<txfn::Engine> engine = [] {
    txfn::EngineOptions options;
    options.storage = txfn::EngineStorage::kMemory;
    options.scheduler.workers = 1;
    auto limits = std::make_shared<FuzzLimits>();
    options.scheduler.limits = limits;
    auto opened = txfn::Engine::Open(options);
    Check(opened.ok(), "cannot open the engine");
    std::unique_ptr<txfn::Engine> e = *std::move(opened);
    Check(e->CreateTenant("fuzz").ok(), "cannot create the tenant");
    const std::string dir = TXFN_SANDBOX_DIR;
    absl::Status deployed = e->DeployJson(
        "fuzz",
        {{"fuzz.js", ReadFile(dir + "/fuzz.js")}, {"harmless.js", ReadFile(dir + "/harmless.js")}},
        R"({"tables": {"items": {"indexes": {"by_k": ["k"]}}}})");
    Check(deployed.ok(), std::string(deployed.message()));
    limits->Deployed();
    return e;
  }();
  return *engine;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  txfn::Engine& engine = TheEngine();
  txfn::Value args = txfn::Value::FromObject(
      {{"bytes", txfn::Value::Bytes(std::string(reinterpret_cast<const char*>(data), size))}});
  const bool mutation = size > 0 && data[0] % 3 == 0;
  auto r = mutation ? engine.Mutation("fuzz", "fuzz:runMutation", args)
                    : engine.Query("fuzz", "fuzz:runQuery", args);
  const absl::StatusCode code = r.status().code();
  Check(code == absl::StatusCode::kOk || code == absl::StatusCode::kInvalidArgument ||
            code == absl::StatusCode::kNotFound || code == absl::StatusCode::kResourceExhausted ||
            code == absl::StatusCode::kUnknown,
        r.status().ToString());
  Check(r.status().message().size() < (size_t{20} << 10), "status message too long");
  // The tenant still answers. Its limits are tight (50 ms CPU, 100 ms wall):
  // on a loaded machine under ASan a harmless call in a new isolate can meet
  // them once, so a limit gets two more tries; anything else fails at once.
  auto answer = engine.Query("fuzz", "harmless:answer", txfn::Value::Null());
  for (int retry = 0; retry < 2 && absl::IsResourceExhausted(answer.status()); ++retry) {
    answer = engine.Query("fuzz", "harmless:answer", txfn::Value::Null());
  }
  Check(answer.ok(), "the tenant stopped answering: " + answer.status().ToString());
  return 0;
}

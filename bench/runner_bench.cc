// Function runner throughput on one warm isolate (one thread).
//
// Baselines in the same run, two floors for a fresh context per request —
// create a context, compile a trivial module from V8 code cache, instantiate,
// evaluate, call its export, drop the context:
// BM_RawV8FreshContext: the context from Context::New on a plain isolate (the
//   minimal raw-V8 equivalent; V8's own snapshot, no embedder environment).
// BM_RawV8SnapshotContext: the context from Context::FromSnapshot on an
//   isolate made from the runner's startup snapshot, the same snapshot the
//   runner uses (its JS environment deserialised, nothing run).
// The runner benchmarks report `vs_floor` = their rate / BM_RawV8FreshContext's
// rate (goal for BM_RunQueryFreshContext: >= 0.8) and `vs_snapshot_floor` =
// their rate / BM_RawV8SnapshotContext's rate.
//
// BM_RunQueryFreshContext: a query doing one ctx.db.get on an in-memory
//   snapshot, fresh context per request.
// BM_RunQueryHardenedContext: the same in the isolate's hardened context
//   (the default: frozen intrinsics, new module instances and ctx per
//   request). Reports `vs_fresh` = its rate / BM_RunQueryFreshContext's
//   (goal >= 5).
// BM_RunQueryReusedContext: the same with the opt-in, unhardened context
//   reuse for trusted code (goal >= 50,000 req/s); `vs_hardened` = its rate /
//   BM_RunQueryHardenedContext's.
// BM_RunQueryNewIsolate: the first request of a tenant: a new isolate, the
//   module from the process-wide code cache.
//
// What the sandbox costs regexps (a pattern over 64 characters is compiled as
// (?=)(?:pattern); V8's fast paths are off, the wrapper's RegExp.prototype.constructor having
// invalidated their protector; split is done in JS): BM_RunQueryRegExp/pattern:N/split:0
// runs `text.match(new RegExp(P, "g"))` over 250 KB of text in a hardened-context query,
// split:1 `text.split(new RegExp(P))`; their baseline BM_RawV8RegExp/pattern:N/split:S, run
// first, is the same JavaScript in a plain V8 context (no sandbox). `vs_raw` = the query's
// rate / the baseline's. Patterns: 0 a 100-character URL pattern, 1 a keyword
// alternation (96), 2 a 75-character literal with `.` and `?` (guarded: V8's Boyer-Moore
// skipping is lost), 3 the same escaped (an atom V8 searches linearly: not guarded), 4 a
// 40-character pattern (never guarded: the sandbox's other costs alone). `reused:1` runs the
// query in the unhardened reused context instead (no frozen intrinsics).
//
// What the guards of generic Array builtins cost: BM_RunQueryArrayBuiltins runs 200 rounds of
// map, filter, indexOf, slice, concat, join, includes, spread, reverse and lastIndexOf on a
// 100-element array (1,800 guarded calls) in a hardened-context query; its baseline
// BM_RawV8ArrayBuiltins, run first, is the same JavaScript in a plain V8 context. `vs_raw` =
// the query's rate / the baseline's (the request's own cost, ~0.1 ms, included).
#include <time.h>

#include <algorithm>
#include <iterator>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "benchmark/benchmark.h"
#include "lib/v8/runner_core.h"
#include "tests/v8_test_util.h"
#include "txfn/committer.h"
#include "txfn/in_memory_storage.h"
#include "txfn/schema.h"
#include "txfn/transaction.h"
#include "v8.h"

namespace txfn {
namespace {

using testing_util::TestLease;

constexpr const char* kQueryModule = R"JS(
import { query } from "txfn/server";
export const get = query(async (ctx, { id }) => ctx.db.get(id));
)JS";

constexpr const char* kRegExpModule = R"JS(
import { query } from "txfn/server";
export const count = query(async (ctx, { text, pattern }) =>
  (text.repeat(3000).match(new RegExp(pattern, "g")) ?? []).length);
export const pieces = query(async (ctx, { text, pattern }) =>
  text.repeat(3000).split(new RegExp(pattern)).length);
)JS";
// What the sandbox's guards cost generic Array builtins (each guarded call checks its
// receiver's length, its prototype chain and its arguments before the builtin runs): the
// same rounds of calls on a 100-element array, in a query and in plain V8.
constexpr const char* kArrayRoundsBody = R"JS(
  const a = Array.from({length: 100}, (_, i) => i);
  let sum = 0;
  for (let r = 0; r < rounds; ++r) {
    sum += a.map((x) => x + r).filter((x) => x & 1).indexOf(r + 51);
    sum += a.slice(10, 90).concat([r], a).join(",").length;
    sum += a.includes(r) ? 1 : 0;
    sum += [...a].reverse().lastIndexOf(r);
  }
  return sum;
)JS";
std::string ArrayModule() {
  return absl::StrCat(
      "import { query } from \"txfn/server\";\n"
      "export const rounds = query(async (ctx, { rounds }) => {",
      kArrayRoundsBody, "});\n");
}
constexpr int kArrayRounds = 200;
// BM_RawV8ArrayBuiltins' rate, for BM_RunQueryArrayBuiltins' vs_raw.
double raw_array_rate = 0;

constexpr const char* kRegExpLine =
    "user42@example.com some words here, 2026-12-03 id=77 <b>tag</b> http://x.org/a?b=1\n";
constexpr const char* kRegExpPatterns[] = {
    R"(https?:\/\/(?:www\.)?[-a-zA-Z0-9@:%._\+~#=]{1,256}\.[a-zA-Z0-9()]{1,6}\b(?:[-a-zA-Z0-9()@:%_\+.~#?&\/=]*))",
    R"(\b(?:some|words|here|tag|alpha|beta|gamma|delta|epsilon|zeta|eta|theta|iota|kappa|lambda)\b)",
    R"(example.com some words here, 2026-12-03 id=77 <b>tag</b> http://x.org/a?b=1)",
    R"(example\.com some words here, 2026-12-03 id=77 <b>tag</b> http://x\.org/a\?b=1)",
    R"(\d{4}-\d{2}-\d{2} id=\d+ <b>(?:tag|gat)</b>)",
};
// BM_RawV8RegExp's rate per pattern, for BM_RunQueryRegExp's vs_raw.
double raw_regexp_rate[std::size(kRegExpPatterns)][2] = {};

// The floors' rates (requests/s of wall time), set by the floor benchmarks,
// which are registered first.
double floor_rate = 0;
double snapshot_floor_rate = 0;
// The runner's rates, for the ratios between its modes.
double fresh_rate = 0;
double hardened_rate = 0;

// Reports items/s and, once the floors ran, this benchmark's rate / theirs.
double ReportVsFloor(benchmark::State& state, absl::Duration elapsed) {
  state.SetItemsProcessed(state.iterations());
  double rate = static_cast<double>(state.iterations()) / absl::ToDoubleSeconds(elapsed);
  state.counters["req_per_s"] = rate;
  if (floor_rate > 0) state.counters["vs_floor"] = rate / floor_rate;
  if (snapshot_floor_rate > 0) state.counters["vs_snapshot_floor"] = rate / snapshot_floor_rate;
  return rate;
}

// One floor: a fresh context per request from `snapshot`'s kind of isolate.
double RawV8Floor(benchmark::State& state, testing_util::TestSnapshot snapshot) {
  TestLease lease("raw", snapshot);
  v8::Isolate* isolate = lease.isolate();
  const char* source = "export const f = (ctx, args) => ({ x: args.x + 1 });";
  auto origin = [&] {
    return v8::ScriptOrigin(isolate, v8::String::NewFromUtf8Literal(isolate, "raw.js"), 0, 0, false,
                            -1, v8::Local<v8::Value>(), false, false, true);
  };
  std::string cache;
  {
    v8::HandleScope scope(isolate);
    v8::ScriptCompiler::Source src(v8::String::NewFromUtf8(isolate, source).ToLocalChecked(),
                                   origin());
    v8::Local<v8::Module> m = v8::ScriptCompiler::CompileModule(isolate, &src).ToLocalChecked();
    std::unique_ptr<v8::ScriptCompiler::CachedData> data(
        v8::ScriptCompiler::CreateCodeCache(m->GetUnboundModuleScript()));
    cache.assign(reinterpret_cast<const char*>(data->data), static_cast<size_t>(data->length));
  }
  auto resolve = [](v8::Local<v8::Context>, v8::Local<v8::String>, v8::Local<v8::FixedArray>,
                    v8::Local<v8::Module>) -> v8::MaybeLocal<v8::Module> { return {}; };
  absl::Time start = absl::Now();
  for (auto _ : state) {
    v8::HandleScope scope(isolate);
    v8::Local<v8::Context> context =
        snapshot == testing_util::TestSnapshot::kPlain
            ? v8::Context::New(isolate)
            : v8::Context::FromSnapshot(isolate, /*runner's context*/ 0).ToLocalChecked();
    v8::Context::Scope context_scope(context);
    auto* data = new v8::ScriptCompiler::CachedData(reinterpret_cast<const uint8_t*>(cache.data()),
                                                    static_cast<int>(cache.size()),
                                                    v8::ScriptCompiler::CachedData::BufferNotOwned);
    v8::ScriptCompiler::Source src(v8::String::NewFromUtf8(isolate, source).ToLocalChecked(),
                                   origin(), data);
    v8::Local<v8::Module> m =
        v8::ScriptCompiler::CompileModule(isolate, &src, v8::ScriptCompiler::kConsumeCodeCache)
            .ToLocalChecked();
    if (m->InstantiateModule(context, resolve).IsNothing() || m->Evaluate(context).IsEmpty()) {
      state.SkipWithError("module failed");
      break;
    }
    v8::Local<v8::Value> f = m->GetModuleNamespace()
                                 .As<v8::Object>()
                                 ->Get(context, v8::String::NewFromUtf8Literal(isolate, "f"))
                                 .ToLocalChecked();
    v8::Local<v8::Object> args = v8::Object::New(isolate);
    args->Set(context, v8::String::NewFromUtf8Literal(isolate, "x"), v8::Number::New(isolate, 1))
        .Check();
    v8::Local<v8::Value> argv[2] = {v8::Undefined(isolate), args};
    benchmark::DoNotOptimize(
        f.As<v8::Function>()->Call(context, v8::Undefined(isolate), 2, argv).ToLocalChecked());
    if (src.GetCachedData()->rejected) state.SkipWithError("code cache rejected");
    isolate->ContextDisposedNotification();
  }
  absl::Duration elapsed = absl::Now() - start;
  ReportVsFloor(state, elapsed);
  return static_cast<double>(state.iterations()) / absl::ToDoubleSeconds(elapsed);
}

void BM_RawV8FreshContext(benchmark::State& state) {
  floor_rate = RawV8Floor(state, testing_util::TestSnapshot::kPlain);
}

void BM_RawV8SnapshotContext(benchmark::State& state) {
  snapshot_floor_rate = RawV8Floor(state, testing_util::TestSnapshot::kRunner);
}

struct QueryFixture {
  std::shared_ptr<InMemoryStorage> storage = std::make_shared<InMemoryStorage>();
  std::unique_ptr<Committer> committer;
  std::string id;

  QueryFixture() {
    committer = *Committer::Open(storage, "bench");
    Transaction deploy(committer->Latest());
    (void)deploy.DeploySchema(*Schema::FromJson(R"({"tables": {"notes": {}}})"));
    (void)deploy.PutModule("q.js", kQueryModule);
    (void)deploy.PutModule("r.js", kRegExpModule);
    (void)deploy.PutModule("a.js", ArrayModule());
    id = *deploy.Insert("notes", Value::FromObject({{"text", Value::String("hello")}}));
    (void)committer->Commit(deploy.Prepare());
  }
};

RunRequest GetRequest(const QueryFixture& f) {
  return RunRequest{.function = "q:get", .args = Value::FromObject({{"id", Value::String(f.id)}})};
}

// CPU time of the whole process (V8's background GC threads included).
double ProcessCpuSeconds() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

// Runs `request` once per iteration on `lease`'s isolate, against f's latest snapshot.
absl::Duration RunRequests(benchmark::State& state, internal::RunnerCore& core, TestLease& lease,
                           QueryFixture& f, const RunRequest& request) {
  auto snapshot = f.committer->Latest();
  const double cpu_start = ProcessCpuSeconds();
  absl::Time start = absl::Now();
  for (auto _ : state) {
    Transaction txn(snapshot, internal::RunnerCore::TransactionOptionsFor(request));
    RunResult r = core.RunOnIsolate(lease, request, txn);
    if (!r.status.ok()) {
      state.SkipWithError(std::string(r.status.message()).c_str());
      break;
    }
    benchmark::DoNotOptimize(r);
    lease.Finish();
  }
  absl::Duration elapsed = absl::Now() - start;
  // Process CPU per request, for comparing with other runtimes on a busy
  // machine (where wall-clock rates mostly measure contention).
  state.counters["proc_cpu_us"] = (ProcessCpuSeconds() - cpu_start) * 1e6 /
                                  static_cast<double>(std::max<int64_t>(state.iterations(), 1));
  return elapsed;
}

absl::Duration RunQueries(benchmark::State& state, internal::RunnerCore& core, TestLease& lease,
                          QueryFixture& f) {
  return RunRequests(state, core, lease, f, GetRequest(f));
}

void BM_RunQueryFreshContext(benchmark::State& state) {
  QueryFixture f;
  internal::RunnerCore core({.context_mode = ContextMode::kFresh});
  TestLease lease("bench");
  fresh_rate = ReportVsFloor(state, RunQueries(state, core, lease, f));
}

void BM_RunQueryHardenedContext(benchmark::State& state) {
  QueryFixture f;
  internal::RunnerCore core({.context_mode = ContextMode::kHardened});
  TestLease lease("bench");
  hardened_rate = ReportVsFloor(state, RunQueries(state, core, lease, f));
  if (fresh_rate > 0) state.counters["vs_fresh"] = hardened_rate / fresh_rate;
}

void BM_RunQueryReusedContext(benchmark::State& state) {
  QueryFixture f;
  internal::RunnerCore core({.reuse_context = [](const std::string&) { return true; }});
  TestLease lease("bench");
  const double rate = ReportVsFloor(state, RunQueries(state, core, lease, f));
  if (hardened_rate > 0) state.counters["vs_hardened"] = rate / hardened_rate;
}

void BM_RunQueryNewIsolate(benchmark::State& state) {
  QueryFixture f;
  internal::RunnerCore core({});
  RunRequest request = GetRequest(f);
  auto snapshot = f.committer->Latest();
  {
    TestLease warm("bench");  // fills the code cache
    Transaction txn(snapshot, internal::RunnerCore::TransactionOptionsFor(request));
    (void)core.RunOnIsolate(warm, request, txn);
  }
  int64_t cache_misses = 0;
  absl::Duration paused;
  absl::Time start = absl::Now();
  for (auto _ : state) {
    auto lease = std::make_unique<TestLease>("bench");
    Transaction txn(snapshot, internal::RunnerCore::TransactionOptionsFor(request));
    RunResult r = core.RunOnIsolate(*lease, request, txn);
    if (!r.status.ok()) {
      state.SkipWithError(std::string(r.status.message()).c_str());
      break;
    }
    cache_misses += r.stats.module_cache_hit ? 0 : 1;
    state.PauseTiming();
    absl::Time pause_start = absl::Now();
    lease.reset();  // isolate disposal is not part of a first request
    paused += absl::Now() - pause_start;
    state.ResumeTiming();
  }
  state.counters["module_cache_misses"] = static_cast<double>(cache_misses);
  ReportVsFloor(state, absl::Now() - start - paused);
}

// Calls `source`, a function expression, once per iteration in a plain V8 context, with the
// arguments `make_args(isolate)` makes: a raw-V8 baseline. Returns its calls per second.
template <typename MakeArgs>
double RawV8CallRate(benchmark::State& state, const std::string& source, MakeArgs make_args) {
  TestLease lease("raw", testing_util::TestSnapshot::kPlain);
  v8::Isolate* isolate = lease.isolate();
  v8::HandleScope scope(isolate);
  v8::Local<v8::Context> context = v8::Context::New(isolate);
  v8::Context::Scope context_scope(context);
  v8::Local<v8::Function> function =
      v8::Script::Compile(context,
                          v8::String::NewFromUtf8(isolate, source.c_str()).ToLocalChecked())
          .ToLocalChecked()
          ->Run(context)
          .ToLocalChecked()
          .As<v8::Function>();
  std::vector<v8::Local<v8::Value>> argv = make_args(isolate);
  absl::Time start = absl::Now();
  for (auto _ : state) {
    v8::HandleScope iteration(isolate);
    benchmark::DoNotOptimize(
        function->Call(context, v8::Undefined(isolate), static_cast<int>(argv.size()), argv.data())
            .ToLocalChecked());
  }
  const absl::Duration elapsed = absl::Now() - start;
  state.SetItemsProcessed(state.iterations());
  return static_cast<double>(state.iterations()) / absl::ToDoubleSeconds(elapsed);
}

void BM_RawV8RegExp(benchmark::State& state) {
  const size_t pattern = static_cast<size_t>(state.range(0));
  const char* source = state.range(1) == 0 ? "(function (text, pattern) { return (text.repeat(3000)"
                                             ".match(new RegExp(pattern, 'g')) ?? []).length; })"
                                           : "(function (text, pattern) { return text.repeat(3000)"
                                             ".split(new RegExp(pattern)).length; })";
  raw_regexp_rate[pattern][state.range(
      1)] = RawV8CallRate(state, source, [pattern](v8::Isolate* isolate) {
    auto string = [isolate](const char* s) -> v8::Local<v8::Value> {
      return v8::String::NewFromUtf8(isolate, s).ToLocalChecked();
    };
    return std::vector<v8::Local<v8::Value>>{string(kRegExpLine), string(kRegExpPatterns[pattern])};
  });
}

void BM_RunQueryRegExp(benchmark::State& state) {
  const size_t pattern = static_cast<size_t>(state.range(0));
  QueryFixture f;
  FunctionRunnerOptions options{.context_mode = ContextMode::kHardened};
  if (state.range(2) == 1) options.reuse_context = [](const std::string&) { return true; };
  internal::RunnerCore core(options);
  TestLease lease("bench");
  RunRequest request{
      .function = state.range(1) == 0 ? "r:count" : "r:pieces",
      .args = Value::FromObject({{"text", Value::String(kRegExpLine)},
                                 {"pattern", Value::String(kRegExpPatterns[pattern])}})};
  const absl::Duration elapsed = RunRequests(state, core, lease, f, request);
  state.SetItemsProcessed(state.iterations());
  const double rate = static_cast<double>(state.iterations()) / absl::ToDoubleSeconds(elapsed);
  const double raw = raw_regexp_rate[pattern][state.range(1)];
  if (raw > 0) state.counters["vs_raw"] = rate / raw;
}

void BM_RawV8ArrayBuiltins(benchmark::State& state) {
  raw_array_rate = RawV8CallRate(
      state, absl::StrCat("(function (rounds) {", kArrayRoundsBody, "})"),
      [](v8::Isolate* isolate) {
        return std::vector<v8::Local<v8::Value>>{v8::Number::New(isolate, kArrayRounds)};
      });
}

void BM_RunQueryArrayBuiltins(benchmark::State& state) {
  QueryFixture f;
  internal::RunnerCore core({.context_mode = ContextMode::kHardened});
  TestLease lease("bench");
  RunRequest request{.function = "a:rounds",
                     .args = Value::FromObject({{"rounds", Value::Float64(kArrayRounds)}})};
  const absl::Duration elapsed = RunRequests(state, core, lease, f, request);
  state.SetItemsProcessed(state.iterations());
  const double rate = static_cast<double>(state.iterations()) / absl::ToDoubleSeconds(elapsed);
  if (raw_array_rate > 0) state.counters["vs_raw"] = rate / raw_array_rate;
}

BENCHMARK(BM_RawV8FreshContext);
BENCHMARK(BM_RawV8SnapshotContext);
BENCHMARK(BM_RunQueryFreshContext);
BENCHMARK(BM_RunQueryHardenedContext);
BENCHMARK(BM_RunQueryReusedContext);
BENCHMARK(BM_RunQueryNewIsolate);
BENCHMARK(BM_RawV8RegExp)
    ->ArgNames({"pattern", "split"})
    ->ArgsProduct({benchmark::CreateDenseRange(0, std::size(kRegExpPatterns) - 1, 1), {0, 1}});
BENCHMARK(BM_RunQueryRegExp)
    ->ArgNames({"pattern", "split", "reused"})
    ->ArgsProduct({benchmark::CreateDenseRange(0, std::size(kRegExpPatterns) - 1, 1),
                   {0, 1},
                   {0, 1}});
BENCHMARK(BM_RawV8ArrayBuiltins);
BENCHMARK(BM_RunQueryArrayBuiltins);

}  // namespace
}  // namespace txfn

BENCHMARK_MAIN();

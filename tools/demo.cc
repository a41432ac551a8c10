// txfn-demo — txfn's main job: a mixed multi-tenant workload on the embedded
// engine.
//
// Opens a fresh database (SQLite in a temporary directory, or in memory),
// deploys examples/apps/chat and examples/apps/bank to --tenants tenants (half
// each), seeds them, then drives queries and mutations from --threads threads
// for --duration seconds: --mix of the calls are queries, the rest mutations,
// some deliberately contended (a hot account pair per bank, a hot message per
// chat). Prints a live progress line on a terminal, then a summary: requests,
// throughput, latency percentiles per function and kind, OCC conflicts and
// retries, isolate reuse and cache hit rates. Finally checks that every bank
// tenant's total balance is unchanged (transfers move money, never make it)
// and exits non-zero if not, or if any call failed unexpectedly.
//
// Then the queue phase (tools/demo_queue.h; --mode picks one phase or both):
// queued calls submitted on a spiky load, reserved and opportunistic, some
// through a downstream service of fixed capacity that fails for a while; it
// exits non-zero if a call is lost, applied twice or fails unexpectedly.
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/flags/usage_config.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/synchronization/mutex.h"
#include "fmt/format.h"
#include "tools/app_dir.h"
#include "tools/demo_queue.h"
#include "txfn/engine.h"
#include "txfn/errors.h"
#include "txfn/postgres_engine.h"  // IsPostgresUrl; OpenPostgresEngine with TXFN_TOOLS_POSTGRES
#include "txfn/snapshot.h"
#include "txfn/status_macros.h"
#include "txfn/value.h"

ABSL_FLAG(double, duration, 10, "Seconds to drive the workload for.");
ABSL_FLAG(int, tenants, 16, "Tenants: half run the chat app, half the bank app (at least 2).");
ABSL_FLAG(double, mix, 0.85, "Fraction of calls that are queries; the rest are mutations.");
ABSL_FLAG(std::string, storage, "sqlite",
          "sqlite (a fresh file in a temporary directory) or memory.");
ABSL_FLAG(std::string, db, "",
          "The mixed phase on this PostgreSQL database (postgresql://...) instead of --storage; "
          "its tenants' names get this run's prefix, so runs never collide.");
ABSL_FLAG(int, threads, 0, "Client threads issuing calls (0 = 2 x the workers).");
ABSL_FLAG(int, workers, 0, "Isolate worker threads (0 = the hardware concurrency).");
ABSL_FLAG(double, hot, 0.3,
          "Fraction of mutations aimed at the hot spot of the first chat or bank tenant "
          "(its first message, or its accounts 0 and 1), to provoke OCC conflicts.");
ABSL_FLAG(std::string, apps, "",
          "Directory holding the chat and bank apps (default: share/txfn/apps beside the "
          "executable's bin/ directory, where `cmake --install` puts them; the build tree links "
          "it to examples/apps).");
ABSL_FLAG(bool, reuse_context, false,
          "Opt every tenant in to context reuse (FunctionRunnerOptions::reuse_context): "
          "faster, but module state persists between a tenant's calls on an isolate.");
ABSL_FLAG(std::string, context, "hardened",
          "The context of queries and mutations (FunctionRunnerOptions::context_mode): "
          "hardened (the default: one frozen context per isolate, new module instances per "
          "call) or fresh (a new context per call).");
ABSL_FLAG(uint64_t, seed, 1, "Seed of the workload's random choices.");
ABSL_FLAG(bool, keep, false, "Keep the temporary SQLite database (its path is printed).");
ABSL_FLAG(std::string, mode, "both",
          "mixed (the multi-tenant query/mutation load), queue (queued calls under a spiky load, "
          "see tools/demo_queue.h) or both, one after the other.");
ABSL_FLAG(double, queue_duration, 0,
          "Seconds of submissions in the queue phase (0 = --duration); the drain comes after.");
ABSL_FLAG(double, queue_rate, 300,
          "Calls submitted per second in the queue phase's troughs; its peaks are 4x that.");
ABSL_FLAG(int, mailer_capacity, 4, "Calls per 100 ms the queue phase's mailer service accepts.");

namespace txfn::tools {
namespace {

using Clock = std::chrono::steady_clock;

// The code and message, without payloads (the data callers branch on).
std::string StatusText(const absl::Status& status) {
  return status.ToString(absl::StatusToStringMode::kWithNoExtraData);
}

// The bank app's refusal of a transfer (examples/apps/bank/transfers.js): an
// expected outcome under load, told apart by the error's data, not its text.
bool IsInsufficientFunds(const absl::Status& status) {
  std::optional<AppError> error = GetAppError(status);
  if (!error.has_value()) return false;
  const Value* code = error->data.Find("code");
  return code != nullptr && code->is_string() && code->string() == "INSUFFICIENT_FUNDS";
}

constexpr int kChatUsers = 16;
constexpr int kChatChannels = 4;
constexpr int kChatSeedMessages = 8;  // per channel
constexpr int kBankAccounts = 32;
constexpr int64_t kInitialBalance = 100'000;  // cents per account

Value Str(std::string s) { return Value::String(std::move(s)); }
Value Obj(Value::Object o) { return Value::FromObject(std::move(o)); }

enum class App { kChat, kBank };

struct TenantState {
  std::string name;
  App app = App::kChat;
  std::vector<std::string> users, channels, accounts;
  absl::Mutex mu;
  std::vector<std::string> messages ABSL_GUARDED_BY(mu);  // ids; [0] is the hot message
};

// One kind of call the workload makes.
struct Op {
  std::string function;
  FunctionKind kind;
};

// What one client thread saw, merged at the end.
struct OpStats {
  std::vector<uint32_t> latency_us;  // successful calls
  uint64_t ok = 0;
  uint64_t app_errors = 0;  // expected: a JS exception, e.g. insufficient funds
  uint64_t aborted = 0;     // OCC conflicts that outlasted the retries
  uint64_t rejected = 0;    // ResourceExhausted (backpressure)
  uint64_t other = 0;       // anything else: a bug
  std::string first_other;
  uint64_t attempts = 0;
  uint64_t isolate_reused = 0;  // of ok: ran on an isolate that had served the tenant
  uint64_t module_hit = 0;      // of ok: no module compiled from source

  void Merge(OpStats&& o) {
    latency_us.insert(latency_us.end(), o.latency_us.begin(), o.latency_us.end());
    ok += o.ok;
    app_errors += o.app_errors;
    aborted += o.aborted;
    rejected += o.rejected;
    other += o.other;
    attempts += o.attempts;
    isolate_reused += o.isolate_reused;
    module_hit += o.module_hit;
    if (first_other.empty()) first_other = std::move(o.first_other);
  }
};

struct Live {
  std::atomic<uint64_t> calls{0};
  std::atomic<uint64_t> failures{0};
  std::atomic<bool> stop{false};
};

// Runs a setup mutation, failing loudly.
absl::StatusOr<Value> MustMutate(Engine& engine, const std::string& tenant, const char* fn,
                                 const Value& args) {
  absl::StatusOr<CallResult> r = engine.Mutation(tenant, fn, args);
  if (!r.ok()) {
    return Prefixed(r.status(), fmt::format("{} {}", tenant, fn));
  }
  return r->value;
}

absl::Status Seed(Engine& engine, TenantState& t) {
  if (t.app == App::kChat) {
    for (int i = 0; i < kChatUsers; ++i) {
      t.users.push_back(fmt::format("user{}", i));
      TXFN_RETURN_IF_ERROR(
          MustMutate(engine, t.name, "users:register", Obj({{"name", Str(t.users.back())}}))
              .status());
    }
    for (int c = 0; c < kChatChannels; ++c) {
      t.channels.push_back(fmt::format("channel{}", c));
      TXFN_RETURN_IF_ERROR(MustMutate(engine, t.name, "channels:create",
                                      Obj({{"name", Str(t.channels.back())},
                                           {"topic", Str(fmt::format("topic {}", c))}}))
                               .status());
      for (int m = 0; m < kChatSeedMessages; ++m) {
        absl::StatusOr<Value> id =
            MustMutate(engine, t.name, "messages:send",
                       Obj({{"channel", Str(t.channels.back())},
                            {"author", Str(t.users[m % kChatUsers])},
                            {"body", Str(fmt::format("hello #{} in {}", m, t.channels.back()))}}));
        if (!id.ok()) return id.status();
        absl::MutexLock lock(&t.mu);
        t.messages.push_back(id->string());
      }
    }
  } else {
    for (int i = 0; i < kBankAccounts; ++i) {
      absl::StatusOr<Value> id = MustMutate(engine, t.name, "accounts:open",
                                            Obj({{"owner", Str(fmt::format("owner{}", i % 8))},
                                                 {"initial", Value::Int64(kInitialBalance)}}));
      if (!id.ok()) return id.status();
      t.accounts.push_back(id->string());
    }
  }
  return absl::OkStatus();
}

// The Value of a bank's total, read twice: by audit:total (JS) and by a
// direct scan of the accounts table at the latest snapshot.
absl::StatusOr<std::pair<int64_t, int64_t>> BankTotals(Engine& engine, const std::string& tenant) {
  absl::StatusOr<CallResult> audit = engine.Query(tenant, "audit:total", Value::Null());
  if (!audit.ok()) return audit.status();
  const Value* total = audit->value.Find("total");
  if (total == nullptr || !total->is_int64()) {
    return absl::InternalError(fmt::format("audit:total returned {}", ToJson(audit->value)));
  }
  absl::StatusOr<std::shared_ptr<const Snapshot>> snap = engine.Latest(tenant);
  if (!snap.ok()) return snap.status();
  const TableInfo* accounts = (*snap)->metadata().FindTable("accounts");
  if (accounts == nullptr) return absl::InternalError("no accounts table");
  absl::StatusOr<std::vector<IndexEntry>> rows =
      (*snap)->Scan(accounts->by_id, KeyRange::All(), ScanOrder::kAscending, 0);
  if (!rows.ok()) return rows.status();
  int64_t scanned = 0;
  for (const IndexEntry& e : *rows) {
    absl::StatusOr<Value> doc = DecodeBinary(e.value);
    if (!doc.ok()) return doc.status();
    scanned += doc->Find("balance")->int64();
  }
  return std::make_pair(total->int64(), scanned);
}

class Workload {
 public:
  Workload(Engine& engine, std::vector<std::unique_ptr<TenantState>>& tenants, double mix,
           double hot)
      : engine_(engine), tenants_(tenants), mix_(mix), hot_(hot) {}

  // One client thread's loop.
  std::map<std::string, OpStats> Drive(uint64_t seed, Live& live) {
    std::mt19937_64 rng(seed);
    std::map<std::string, OpStats> stats;
    while (!live.stop.load(std::memory_order_relaxed)) {
      const bool is_query = std::uniform_real_distribution<double>(0, 1)(rng) < mix_;
      // A hot mutation goes to the hot spot of the first chat or bank tenant,
      // so concurrent runs really collide there.
      const bool hot = !is_query && Hot(rng);
      TenantState& t = *tenants_[hot ? Uniform(rng, std::min<size_t>(2, tenants_.size()))
                                     : Uniform(rng, tenants_.size())];
      std::string fn;
      Value args = t.app == App::kChat ? ChatCall(t, is_query, hot, rng, &fn)
                                       : BankCall(t, is_query, hot, rng, &fn);
      const auto start = Clock::now();
      absl::StatusOr<CallResult> r =
          is_query ? engine_.Query(t.name, fn, args) : engine_.Mutation(t.name, fn, args);
      const auto us =
          std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - start).count();
      OpStats& s = stats[fmt::format("{}{}", is_query ? "Q " : "M ", fn)];
      live.calls.fetch_add(1, std::memory_order_relaxed);
      if (r.ok()) {
        ++s.ok;
        s.attempts += r->attempts;
        s.isolate_reused += r->stats.isolate_reused ? 1 : 0;
        s.module_hit += r->stats.module_cache_hit ? 1 : 0;
        s.latency_us.push_back(static_cast<uint32_t>(std::min<int64_t>(us, UINT32_MAX)));
        if (fn == "messages:send" && r->value.is_string()) {
          absl::MutexLock lock(&t.mu);
          if (t.messages.size() < 4096) t.messages.push_back(r->value.string());
        }
        continue;
      }
      const absl::Status& st = r.status();
      if (absl::IsAborted(st)) {
        ++s.aborted;
      } else if (absl::IsResourceExhausted(st)) {
        ++s.rejected;
        std::this_thread::sleep_for(std::chrono::microseconds(200));
      } else if (IsInsufficientFunds(st)) {
        ++s.app_errors;
      } else {
        ++s.other;
        live.failures.fetch_add(1, std::memory_order_relaxed);
        if (s.first_other.empty()) s.first_other = StatusText(st);
      }
    }
    return stats;
  }

 private:
  static size_t Uniform(std::mt19937_64& rng, size_t n) {
    return std::uniform_int_distribution<size_t>(0, n - 1)(rng);
  }
  bool Hot(std::mt19937_64& rng) const {
    return std::uniform_real_distribution<double>(0, 1)(rng) < hot_;
  }

  Value ChatCall(TenantState& t, bool is_query, bool hot, std::mt19937_64& rng, std::string* fn) {
    const std::string& channel = t.channels[Uniform(rng, t.channels.size())];
    const std::string& user = t.users[Uniform(rng, t.users.size())];
    const size_t pick = Uniform(rng, 100);
    if (is_query) {
      if (pick < 50) {
        *fn = "messages:latest";
        return Obj({{"channel", Str(channel)}, {"n", Value::Float64(20)}});
      }
      if (pick < 70) {
        *fn = "messages:page";
        return Obj({{"channel", Str(channel)}, {"numItems", Value::Float64(10)}});
      }
      if (pick < 85) {
        *fn = "users:get";
        return Obj({{"name", Str(user)}});
      }
      *fn = "channels:list";
      return Value::Null();
    }
    if (pick < 50 && !hot) {
      *fn = "messages:send";
      return Obj({{"channel", Str(channel)},
                  {"author", Str(user)},
                  {"body", Str(fmt::format("message {}", Uniform(rng, 1'000'000)))}});
    }
    *fn = "messages:like";
    std::string id;
    {
      absl::MutexLock lock(&t.mu);
      id = hot ? t.messages.front() : t.messages[Uniform(rng, t.messages.size())];
    }
    return Obj({{"id", Str(std::move(id))}});
  }

  Value BankCall(TenantState& t, bool is_query, bool hot, std::mt19937_64& rng, std::string* fn) {
    const std::string& account = t.accounts[Uniform(rng, t.accounts.size())];
    if (is_query) {
      const size_t pick = Uniform(rng, 100);
      if (pick < 50) {
        *fn = "accounts:get";
        return Obj({{"id", Str(account)}});
      }
      if (pick < 85) {
        *fn = "transfers:history";
        return Obj({{"account", Str(account)}, {"n", Value::Float64(10)}});
      }
      *fn = "audit:total";
      return Value::Null();
    }
    *fn = "transfers:transfer";
    size_t from, to;
    if (hot) {
      from = Uniform(rng, 2);  // the hot pair: accounts 0 and 1, both directions
      to = 1 - from;
    } else {
      from = Uniform(rng, t.accounts.size());
      to = (from + 1 + Uniform(rng, t.accounts.size() - 1)) % t.accounts.size();
    }
    return Obj({{"from", Str(t.accounts[from])},
                {"to", Str(t.accounts[to])},
                {"amount", Value::Int64(static_cast<int64_t>(1 + Uniform(rng, 2'000)))}});
  }

  Engine& engine_;
  std::vector<std::unique_ptr<TenantState>>& tenants_;
  const double mix_;
  const double hot_;
};

uint32_t Percentile(const std::vector<uint32_t>& sorted, double p) {
  if (sorted.empty()) return 0;
  size_t i = static_cast<size_t>(std::lround(p * static_cast<double>(sorted.size() - 1)));
  return sorted[std::min(i, sorted.size() - 1)];
}

std::string Ms(uint32_t us) { return fmt::format("{:.2f}", us / 1000.0); }

// The summary table: a row per function, then the totals. Every column is as
// wide as its heading or its widest value, numbers right-aligned under their
// headings; the legend below it says what each heading counts.
constexpr const char* kColumns[] = {"calls",   "calls/s", "p50 ms",   "p90 ms", "p99 ms",
                                    "app err", "aborted", "rejected", "failed"};
constexpr const char* kLegend =
    "  Q = query, M = mutation; calls: calls made (any outcome); calls/s: calls per second of\n"
    "  the run; p50/p90/p99 ms: latency percentiles of the calls that succeeded; app err: the\n"
    "  app threw an expected error (insufficient funds); aborted: a mutation still conflicting\n"
    "  after its retries; rejected: refused by back-pressure (ResourceExhausted); failed: any\n"
    "  other error (a bug: the demo then fails).\n";

std::vector<std::string> RowCells(OpStats& s, double seconds) {
  std::sort(s.latency_us.begin(), s.latency_us.end());
  const uint64_t calls = s.ok + s.app_errors + s.aborted + s.rejected + s.other;
  return {fmt::format("{}", calls),
          fmt::format("{:.0f}", static_cast<double>(calls) / seconds),
          Ms(Percentile(s.latency_us, 0.5)),
          Ms(Percentile(s.latency_us, 0.9)),
          Ms(Percentile(s.latency_us, 0.99)),
          fmt::format("{}", s.app_errors),
          fmt::format("{}", s.aborted),
          fmt::format("{}", s.rejected),
          fmt::format("{}", s.other)};
}

void PrintTable(const std::vector<std::pair<std::string, std::vector<std::string>>>& rows,
                size_t totals_from) {
  size_t name_width = std::string_view("function").size();
  std::vector<size_t> widths;
  for (const char* c : kColumns) widths.push_back(std::string_view(c).size());
  for (const auto& [name, cells] : rows) {
    name_width = std::max(name_width, name.size());
    for (size_t i = 0; i < cells.size(); ++i) widths[i] = std::max(widths[i], cells[i].size());
  }
  auto print = [&](const std::string& name, const auto& cells) {
    std::string line = fmt::format("{:<{}}", name, name_width);
    for (size_t i = 0; i < widths.size(); ++i) line += fmt::format("  {:>{}}", cells[i], widths[i]);
    std::printf("%s\n", line.c_str());
    return line.size();
  };
  const size_t width = print("function", kColumns);
  for (size_t r = 0; r < rows.size(); ++r) {
    if (r == totals_from) std::printf("%s\n", std::string(width, '-').c_str());
    print(rows[r].first, rows[r].second);
  }
  std::fputs(kLegend, stdout);
}

// --apps, or <the executable's directory>/../share/txfn/apps: the installed
// layout (bin/txfn-demo, share/txfn/apps), which the build tree mirrors with a
// link (build/tools/txfn-demo, build/share/txfn/apps -> examples/apps). No
// path of the source tree is compiled in, so an install can move.
std::filesystem::path AppsDir() {
  const std::string flag = absl::GetFlag(FLAGS_apps);
  if (!flag.empty()) return flag;
  std::error_code ec;
  const std::filesystem::path exe = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (ec) return "share/txfn/apps";
  return exe.parent_path().parent_path() / "share" / "txfn" / "apps";
}

double Rate(uint64_t hits, uint64_t total) {
  return total == 0 ? 0.0 : 100.0 * static_cast<double>(hits) / static_cast<double>(total);
}

// The queue phase's options from the flags (its file is set later).
// The mixed phase's engine: on `db` (PostgreSQL) if given, else as `options` say.
absl::StatusOr<std::unique_ptr<Engine>> OpenDemoEngine(const std::string& db,
                                                       EngineOptions options) {
  if (db.empty()) return Engine::Open(std::move(options));
#ifdef TXFN_TOOLS_POSTGRES
  return OpenPostgresEngine(db, std::move(options));
#else
  return absl::UnimplementedError("--db: this txfn-demo was built without PostgreSQL");
#endif
}

QueuePhaseOptions QueueOptionsFromFlags(double duration, int workers) {
  const double queue_duration = absl::GetFlag(FLAGS_queue_duration);
  return QueuePhaseOptions{
      .duration_s = queue_duration > 0 ? queue_duration : duration,
      .trough_rate = absl::GetFlag(FLAGS_queue_rate),
      .mailer_capacity = absl::GetFlag(FLAGS_mailer_capacity),
      .workers = workers,
      .clients = absl::GetFlag(FLAGS_threads) > 0 ? absl::GetFlag(FLAGS_threads) : 8,
      .seed = absl::GetFlag(FLAGS_seed)};
}

int Main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "txfn-demo [--duration=SECONDS] [--tenants=N] [--mix=QUERY_FRACTION] "
      "[--storage=sqlite|memory] [--threads=N] [--workers=N] [--hot=FRACTION] "
      "[--mode=both|mixed|queue] [--queue_duration=SECONDS] [--queue_rate=CALLS_PER_S]\n"
      "Deploys the chat and bank example apps to N tenants and drives a mixed "
      "query/mutation workload on them, then prints a summary and checks that "
      "every bank's total balance is unchanged. Then (--mode=both, the default) "
      "submits queued calls on a spiky load with a downstream service that "
      "fails for a while, and checks that none is lost or applied twice.");
  absl::FlagsUsageConfig usage;
  usage.contains_help_flags = [](absl::string_view file) {
    return absl::StrContains(file, "tools/demo.cc");
  };
  usage.contains_helpshort_flags = usage.contains_help_flags;
  absl::SetFlagsUsageConfig(usage);
  absl::ParseCommandLine(argc, argv);
  const double duration = absl::GetFlag(FLAGS_duration);
  const int n_tenants = absl::GetFlag(FLAGS_tenants);
  const double mix = absl::GetFlag(FLAGS_mix);
  const std::string db = absl::GetFlag(FLAGS_db);
  const std::string storage = db.empty() ? absl::GetFlag(FLAGS_storage) : "postgresql";
  const int hw = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  const int workers = absl::GetFlag(FLAGS_workers) > 0 ? absl::GetFlag(FLAGS_workers) : hw;
  const int threads = absl::GetFlag(FLAGS_threads) > 0 ? absl::GetFlag(FLAGS_threads) : 2 * workers;
  const std::string mode = absl::GetFlag(FLAGS_mode);
  const bool run_mixed = mode != "queue";
  const bool run_queue = mode != "mixed";
  QueuePhaseOptions queue_options = QueueOptionsFromFlags(duration, workers);
  if (n_tenants < 2 || duration <= 0 || mix < 0 || mix > 1 ||
      (storage != "sqlite" && storage != "memory" && !IsPostgresUrl(db)) ||
      (mode != "both" && mode != "mixed" && mode != "queue") || queue_options.trough_rate <= 0 ||
      queue_options.mailer_capacity < 1) {
    std::fprintf(stderr,
                 "txfn-demo: need --tenants >= 2, --duration > 0, 0 <= --mix <= 1, "
                 "--storage=sqlite|memory or --db=postgresql://..., --mode=both|mixed|queue, "
                 "--queue_rate > 0, "
                 "--mailer_capacity >= 1\n");
    return 2;
  }

  absl::StatusOr<AppDir> chat = AppDir{};
  absl::StatusOr<AppDir> bank = AppDir{};
  if (run_mixed) {
    const std::filesystem::path apps = AppsDir();
    chat = LoadAppDir(apps / "chat");
    bank = LoadAppDir(apps / "bank");
    if (!chat.ok() || !bank.ok()) {
      std::fprintf(stderr, "txfn-demo: %s\n",
                   StatusText(!chat.ok() ? chat.status() : bank.status()).c_str());
      return 1;
    }
  }

  EngineOptions options;
  std::filesystem::path tmp_dir;
  if (storage == "sqlite") {
    std::string templ = (std::filesystem::temp_directory_path() / "txfn-demo-XXXXXX").string();
    if (mkdtemp(templ.data()) == nullptr) {
      std::perror("txfn-demo: mkdtemp");
      return 1;
    }
    tmp_dir = templ;
    options.storage = EngineStorage::kSqlite;
    options.path = (tmp_dir / "demo.db").string();
  } else {
    options.storage = EngineStorage::kMemory;
  }
  options.scheduler.workers = workers;
  const std::string context_flag = absl::GetFlag(FLAGS_context);
  if (context_flag != "hardened" && context_flag != "fresh") {
    std::fprintf(stderr, "txfn-demo: --context must be hardened or fresh\n");
    return 1;
  }
  options.runner.context_mode =
      context_flag == "fresh" ? ContextMode::kFresh : ContextMode::kHardened;
  if (absl::GetFlag(FLAGS_reuse_context)) {
    options.runner.reuse_context = [](const std::string&) { return true; };
  }
  // Enough isolates for every tenant to keep two warm (a tenant with k calls
  // running holds k isolates), and per-tenant concurrency
  // up to the client threads (so hot spots really run concurrently).
  options.scheduler.max_isolates = 2 * n_tenants + workers;
  options.scheduler.max_in_flight_per_tenant = threads;
  options.scheduler.queue_capacity = 4 * static_cast<size_t>(threads) + 64;

  int exit_code = 0;
  if (run_mixed) {
    absl::StatusOr<std::unique_ptr<Engine>> opened = OpenDemoEngine(db, options);
    if (!opened.ok()) {
      std::fprintf(stderr, "txfn-demo: %s\n", StatusText(opened.status()).c_str());
      return 1;
    }
    Engine& engine = **opened;
    std::printf(
        "txfn-demo: %d tenants (%d chat, %d bank) on %s%s, %d workers, %d client "
        "threads, %.0f%% queries, %.1f s%s\n",
        n_tenants, n_tenants - n_tenants / 2, n_tenants / 2, storage.c_str(),
        storage == "sqlite" ? fmt::format(" ({})", options.path).c_str() : "", workers, threads,
        mix * 100, duration,
        absl::GetFlag(FLAGS_reuse_context) ? ", contexts reused"
                                           : fmt::format(", {} contexts", context_flag).c_str());

    // Deploy and seed, one thread per tenant.
    std::vector<std::unique_ptr<TenantState>> tenants;
    for (int i = 0; i < n_tenants; ++i) {
      auto t = std::make_unique<TenantState>();
      t->app = i % 2 == 0 ? App::kChat : App::kBank;
      t->name = fmt::format("{}{}{}", db.empty() ? "" : fmt::format("run{}-", getpid()),
                            t->app == App::kChat ? "chat-" : "bank-", i / 2);
      tenants.push_back(std::move(t));
    }
    const auto setup_start = Clock::now();
    std::vector<absl::Status> setup(tenants.size());
    {
      std::vector<std::thread> setup_threads;
      for (size_t i = 0; i < tenants.size(); ++i) {
        setup_threads.emplace_back([&, i] {
          TenantState& t = *tenants[i];
          const AppDir& app = t.app == App::kChat ? *chat : *bank;
          absl::Status s = engine.CreateTenant(t.name);
          if (s.ok()) s = engine.Deploy(t.name, app.modules, app.schema);
          if (s.ok()) s = Seed(engine, t);
          setup[i] = s;
        });
      }
      for (std::thread& th : setup_threads) th.join();
    }
    for (const absl::Status& s : setup) {
      if (!s.ok()) {
        std::fprintf(stderr, "txfn-demo: setup failed: %s\n", StatusText(s).c_str());
        return 1;
      }
    }
    std::printf("setup: deployed and seeded in %.2f s\n",
                std::chrono::duration<double>(Clock::now() - setup_start).count());
    const EngineStats before = engine.stats();

    // The workload.
    Workload workload(engine, tenants, mix, absl::GetFlag(FLAGS_hot));
    Live live;
    std::vector<std::map<std::string, OpStats>> per_thread(static_cast<size_t>(threads));
    const auto start = Clock::now();
    std::vector<std::thread> clients;
    clients.reserve(static_cast<size_t>(threads));
    const uint64_t seed = absl::GetFlag(FLAGS_seed);
    for (int i = 0; i < threads; ++i) {
      clients.emplace_back([&, i] {
        per_thread[static_cast<size_t>(i)] =
            workload.Drive(seed * 1'000'003 + static_cast<uint64_t>(i), live);
      });
    }
    const bool tty = isatty(fileno(stdout)) != 0;
    const Clock::time_point deadline = start + std::chrono::duration_cast<Clock::duration>(
                                                   std::chrono::duration<double>(duration));
    uint64_t last_calls = 0;
    auto last_time = start;
    while (Clock::now() < deadline) {
      std::this_thread::sleep_until(
          std::min(deadline, Clock::now() + std::chrono::milliseconds(250)));
      if (!tty) continue;
      const auto now = Clock::now();
      const uint64_t calls = live.calls.load();
      const EngineStats s = engine.stats();
      const double dt = std::chrono::duration<double>(now - last_time).count();
      const double elapsed = std::chrono::duration<double>(now - start).count();
      std::printf("\r  %5.1f s  %9" PRIu64
                  " calls  rate %.0f/s (last %.2f s), %.0f/s (whole run)"
                  "  conflicts %" PRIu64 "  failures %" PRIu64 "   ",
                  elapsed, calls, dt > 0 ? static_cast<double>(calls - last_calls) / dt : 0.0, dt,
                  elapsed > 0 ? static_cast<double>(calls) / elapsed : 0.0,
                  s.conflicts - before.conflicts, live.failures.load());
      std::fflush(stdout);
      last_calls = calls;
      last_time = now;
    }
    live.stop = true;
    for (std::thread& th : clients) th.join();
    const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
    if (tty) std::printf("\n");
    const EngineStats after = engine.stats();

    // Summary.
    std::map<std::string, OpStats> by_fn;
    for (auto& m : per_thread) {
      for (auto& [name, s] : m) by_fn[name].Merge(std::move(s));
    }
    OpStats queries, mutations, all;
    for (auto& [name, s] : by_fn) {
      OpStats copy = s;
      (name[0] == 'Q' ? queries : mutations).Merge(std::move(copy));
    }
    {
      OpStats q = queries, m = mutations;
      all.Merge(std::move(q));
      all.Merge(std::move(m));
    }
    std::vector<std::pair<std::string, std::vector<std::string>>> rows;
    rows.reserve(by_fn.size() + 3);
    for (auto& [name, s] : by_fn) rows.emplace_back(name, RowCells(s, seconds));
    const size_t totals_from = rows.size();
    rows.emplace_back("all queries", RowCells(queries, seconds));
    rows.emplace_back("all mutations", RowCells(mutations, seconds));
    rows.emplace_back("total", RowCells(all, seconds));
    std::printf("\n");
    PrintTable(rows, totals_from);

    const uint64_t conflicts = after.conflicts - before.conflicts;
    const uint64_t retries = after.retries - before.retries;
    const uint64_t created = after.scheduler.isolates_created - before.scheduler.isolates_created;
    const uint64_t reused = after.scheduler.isolates_reused - before.scheduler.isolates_reused;
    const uint64_t mc_hits = after.module_cache.hits - before.module_cache.hits;
    const uint64_t mc_misses = after.module_cache.misses - before.module_cache.misses;
    std::printf(
        "\n%.2f s, %d client threads, %d workers: %" PRIu64 " calls, %.0f calls/s\n", seconds,
        threads, workers, all.ok + all.app_errors + all.aborted + all.rejected + all.other,
        static_cast<double>(all.ok + all.app_errors + all.aborted + all.rejected + all.other) /
            seconds);
    std::printf("OCC: %" PRIu64 " conflicts, %" PRIu64 " retries, %" PRIu64
                " mutations aborted after retries; %.3f runs per committed mutation\n",
                conflicts, retries, mutations.aborted,
                mutations.ok == 0
                    ? 0.0
                    : static_cast<double>(mutations.attempts) / static_cast<double>(mutations.ok));
    // Counts since the engine opened (setup included), so that created and
    // live describe the same isolates; the run's share is in parentheses.
    std::printf("isolates: %" PRIu64 " created (%" PRIu64 " during the run), %" PRIu64
                " disposed, %d live at the end\n"
                "  during the run: %" PRIu64
                " evicted for another tenant, %.1f%% of requests on a reused isolate\n",
                after.scheduler.isolates_created, created, after.scheduler.isolates_disposed,
                after.scheduler.live_isolates,
                after.scheduler.isolates_evicted - before.scheduler.isolates_evicted,
                Rate(reused, created + reused));
    const uint64_t commits = after.committer.commits - before.committer.commits;
    const uint64_t batches = after.committer.batches - before.committer.batches;
    std::printf("group commit: %" PRIu64 " commits in %" PRIu64
                " storage writes (%.2f per write)\n",
                commits, batches,
                batches == 0 ? 0.0 : static_cast<double>(commits) / static_cast<double>(batches));
    std::printf(
        "requests: %.1f%% on a warm isolate, %.1f%% with every module from the code cache\n",
        Rate(all.isolate_reused, all.ok), Rate(all.module_hit, all.ok));
    const uint64_t md_hits = after.metadata_cache.hits - before.metadata_cache.hits;
    const uint64_t md_misses = after.metadata_cache.misses - before.metadata_cache.misses;
    std::printf("metadata cache: %.1f%% hits (%" PRIu64 " calls served from memory, %" PRIu64
                " loaded from storage; %" PRIu64 " decodes after metadata commits)\n",
                Rate(md_hits, md_hits + md_misses), md_hits, md_misses,
                after.committer.metadata_loads - before.committer.metadata_loads);
    std::printf("module cache: %.1f%% hits (%" PRIu64 " hits, %" PRIu64 " misses, %zu entries)\n",
                Rate(mc_hits, mc_hits + mc_misses), mc_hits, mc_misses, after.module_cache.entries);
    std::printf("expected app errors (insufficient funds): %" PRIu64
                "; rejected (backpressure): %" PRIu64 "\n",
                all.app_errors, all.rejected);
    if (all.other > 0) {
      std::printf("FAILED: %" PRIu64 " unexpected errors; first: %s\n", all.other,
                  all.first_other.c_str());
      exit_code = 1;
    }

    // The invariant: transfers never change a bank's total.
    const int64_t expected = kInitialBalance * kBankAccounts;
    int banks_ok = 0, banks = 0;
    for (const auto& t : tenants) {
      if (t->app != App::kBank) continue;
      ++banks;
      absl::StatusOr<std::pair<int64_t, int64_t>> totals = BankTotals(engine, t->name);
      if (!totals.ok()) {
        std::printf("FAILED: %s total: %s\n", t->name.c_str(), StatusText(totals.status()).c_str());
        exit_code = 1;
      } else if (totals->first != expected || totals->second != expected) {
        std::printf("FAILED: %s total is %" PRId64 " (audit:total) / %" PRId64
                    " (scan), expected %" PRId64 "\n",
                    t->name.c_str(), totals->first, totals->second, expected);
        exit_code = 1;
      } else {
        ++banks_ok;
      }
    }
    std::printf("bank invariant: %d/%d tenants' totals unchanged (%" PRId64 " each)%s\n", banks_ok,
                banks, expected, banks_ok == banks ? "" : " -- VIOLATED");
    if (mutations.ok == 0 || queries.ok == 0) {
      std::printf("FAILED: no successful %s\n", queries.ok == 0 ? "query" : "mutation");
      exit_code = 1;
    }
  }
  if (run_queue) {
    if (!tmp_dir.empty()) queue_options.sqlite_path = (tmp_dir / "queue.db").string();
    if (RunQueuePhase(queue_options) != 0) exit_code = 1;
  }
  if (!tmp_dir.empty()) {
    if (absl::GetFlag(FLAGS_keep)) {
      std::printf("kept %s\n", tmp_dir.c_str());
    } else {
      std::error_code ec;
      std::filesystem::remove_all(tmp_dir, ec);
    }
  }
  std::printf("%s\n", exit_code == 0 ? "OK" : "FAILED");
  return exit_code;
}

}  // namespace
}  // namespace txfn::tools

int main(int argc, char** argv) { return txfn::tools::Main(argc, argv); }

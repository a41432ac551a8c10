// txfn — a command-line front end to the embedded engine, so a person can try
// txfn without writing C++. See kUsage below (`txfn --help`).
#include <pthread.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/algorithm/container.h"
#include "absl/flags/commandlineflag.h"
#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/reflection.h"
#include "absl/flags/usage.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/time.h"
#include "fmt/format.h"
#include "lib/utf8.h"
#include "tools/address.h"
#include "tools/app_dir.h"
#include "tools/import.h"
#include "txfn/call.h"
#include "txfn/call_records.h"
#include "txfn/clock.h"
#include "txfn/committer.h"
#include "txfn/durable_queue.h"
#include "txfn/engine.h"
#include "txfn/errors.h"
#include "txfn/function_runner.h"
#include "txfn/in_memory_storage.h"
#include "txfn/internal/strings.h"
#include "txfn/metrics.h"
#ifdef TXFN_TOOLS_REMOTE
#include "txfn/functions_client.h"
#include "txfn/functions_server.h"
#include "txfn/remote_runner.h"
#endif
#include "txfn/postgres_engine.h"  // IsPostgresUrl; OpenPostgresEngine with TXFN_TOOLS_POSTGRES
#include "txfn/snapshot.h"
#include "txfn/sqlite_engine.h"
#include "txfn/sqlite_queue.h"
#include "txfn/sqlite_storage.h"
#include "txfn/status_macros.h"
#include "txfn/value.h"

ABSL_FLAG(std::string, db, "txfn.db", "The SQLite database file; it must exist unless --create.");
ABSL_FLAG(bool, create, false, "Create the --db file if it does not exist.");
ABSL_FLAG(std::string, tenant, "", "The tenant (application) to act on.");
ABSL_FLAG(std::string, kind, "auto",
          "run: 'query', 'mutation', or 'auto' (run the export as what it was declared).");
ABSL_FLAG(bool, mutation, false, "run: shorthand for --kind=mutation.");
ABSL_FLAG(bool, logs, true,
          "run: print the function's console output to stderr; serve: the queued calls'.");
ABSL_FLAG(std::string, table, "",
          "export: only this table (default: every table); import: every document must belong "
          "to it.");
ABSL_FLAG(bool, remap_ids, false,
          "import: give documents whose table has another id in this tenant ids of its tables, "
          "rewriting references to them in the imported documents.");
ABSL_FLAG(std::string, runners, "",
          "run, serve: run queries and mutations on these txfn-runner processes "
          "(HOST:PORT,HOST:PORT,...; they read the same --db) instead of in this process.");
ABSL_FLAG(
    std::string, server, "",
    "deploy, run, submit, call, cancel: send the command to a 'txfn serve --listen' at HOST:PORT "
    "instead of opening --db.");
ABSL_FLAG(std::string, api_key, "",
          "With --server: the API key (a tenant's, or the admin key; deploy needs the admin key). "
          "Default: the environment variable TXFN_API_KEY.");
ABSL_FLAG(std::string, listen, "",
          "serve: also serve the engine's functions over gRPC at HOST:PORT (loopback unless "
          "given another host); needs --api_keys.");
ABSL_FLAG(std::string, api_keys, "",
          "serve --listen: a file of API keys, one per line: 'admin KEY' or 'tenant NAME KEY'.");
ABSL_FLAG(int32_t, max_threads, 256,
          "serve --listen: gRPC threads for the server (a poller and the calls under way); a "
          "call that finds none free is refused RESOURCE_EXHAUSTED.");
ABSL_FLAG(int32_t, max_calls_per_tenant, 64,
          "serve --listen: a tenant key's calls under way at once per tenant (0: no cap; else "
          "below --max_threads - 1); past it RESOURCE_EXHAUSTED.");
ABSL_FLAG(int64_t, max_buffer_mib, 1024,
          "serve --listen: MiB gRPC may buffer for the server's connections at once (requests "
          "are read whole before their key is checked); past it gRPC resets streams. At least "
          "128.");
ABSL_FLAG(double, max_call_seconds, 60,
          "serve --listen: the longest a query or mutation may take from its arrival (the "
          "client's deadline if earlier; inf: the client's only); then DEADLINE_EXCEEDED.");
ABSL_FLAG(std::string, metrics, "",
          "serve: Prometheus metrics at http://HOST:PORT/metrics (e.g. 127.0.0.1:9464).");
ABSL_FLAG(bool, quiet, false, "serve: no status line.");
ABSL_FLAG(int32_t, status_every, 1,
          "serve: seconds between status lines when stderr is not a terminal (on a terminal the "
          "line is rewritten every second).");
ABSL_FLAG(int64_t, delay_ms, 0, "submit: start the call this many milliseconds from now.");
ABSL_FLAG(int64_t, deadline_ms, 0,
          "submit: the call's deadline, this many milliseconds after its start (default: the "
          "function's deadlineMs, else 1 hour).");
ABSL_FLAG(std::string, criticality, "",
          "submit: low|normal|high|critical (default: the function's).");
ABSL_FLAG(std::string, quota, "", "submit: reserved|opportunistic (default: the function's).");
ABSL_FLAG(std::string, key, "",
          "submit: an idempotency key: a second submit with the same key returns the first "
          "call's id and enqueues nothing. run: a mutation's: run again with it, the first "
          "run's outcome is answered and nothing more committed.");
ABSL_FLAG(std::string, client, "",
          "submit: the client whose rate limit applies (default: the tenant).");
ABSL_FLAG(std::string, status, "",
          "calls: only calls in this state: "
          "pending|running|succeeded|failed|dead_lettered|cancelled.");
ABSL_FLAG(std::string, function, "", "calls: only calls of this MODULE:FUNCTION.");
ABSL_FLAG(int64_t, limit, 100, "calls: at most this many calls (0: all).");
ABSL_FLAG(std::string, after, "",
          "calls: only calls after this id in id order (the last of the page before).");

namespace txfn::tools {
namespace {

constexpr const char* kUsage =
    R"(txfn — run transactional JavaScript functions on an embedded database.

usage: txfn [flags] COMMAND [ARGS]

commands:
  deploy --tenant NAME DIR
      Deploys the application in DIR: every .js/.mjs module under DIR (its
      module path is its path relative to DIR, e.g. "lib/util.js") and
      DIR/schema.json ({"tables": {NAME: {"fields": {...}, "indexes": {...}}}}).
      Creates the tenant if needed. The new version replaces the old one
      atomically; a module that does not compile or a schema that existing
      documents violate is refused and the old version keeps serving (a
      refused first deploy leaves no tenant, and into a new database is tried
      in memory first, so that it creates no file).
  run --tenant NAME MODULE:FUNCTION [ARGS_JSON]
      Runs an exported query or mutation with ARGS_JSON (default {}) and prints
      its result as JSON on stdout. --kind=auto (the default) runs the export
      as what it was declared with (query() or mutation()); --kind=query,
      --kind=mutation or --mutation insist on one (auto asks the runner: a
      call as a query that the runner refuses, before running any code, as a
      declared mutation is run as a mutation). Mutations commit, retrying
      on conflicts. console.* output goes to stderr (--nologs to hide it).
      --key=KEY: a mutation's idempotency key: run again with the same key, it
      answers the first run's outcome and commits nothing more (retry with it
      after an unknown outcome: 'may have committed', e.g. a lost answer from
      --server). JSON numbers arrive as JS numbers (float64); pass a BigInt
      (int64) as {"$int64": "123"}. int64 results print the same way.
  tenants
      Lists the tenants, one per line.
  tables --tenant NAME
      Lists the tenant's tables with their document counts and indexes, after
      the time of the tenant's last commit (ISO 8601, UTC) and its timestamp.
  export --tenant NAME [--table TABLE]
      Prints every document (of every table, or of TABLE) as JSON, one per
      line, with the name of its table in "_table".
  import --tenant NAME [--table TABLE] [--remap_ids] [FILE]
      Reads documents as export prints them (JSON lines) from FILE (default or
      "-": stdin) into the tenant, keeping their _id and _creationTime. Deploy
      the schema first. Each document goes to the table its "_table" names. A
      document's _id also names its table, by the table's id, and ids follow
      the order the tenant's tables and indexes were made in: if that table has
      another id here (the exporting tenant gained tables over several
      deploys), the import is refused, or with --remap_ids the document gets
      an id of that table here and references to it (strings equal to its old
      id) in the imported documents are rewritten (import every table in one
      file then). Every line is validated (JSON, table, schema, ids free and
      unique) before anything is written; then documents are committed in
      transactions of up to 500. If a commit fails, the error says how many
      documents were imported.
  backup DEST
      Copies the database (--db) into the new file DEST with SQLite's online
      backup API: a consistent snapshot, taken while other processes may keep
      writing; its queue (--db's .queue file, if any) into DEST.queue first
      (a call that ends between the two copies is then in both).
      DEST (and DEST.queue) must not exist; open it with --db=DEST like any
      database.
  serve [--quiet] [--status_every=SECONDS] [--nologs]
      Runs the queued calls of every tenant of --db (calls submitted with
      'txfn submit' or scheduled by mutations with ctx.scheduler.runAfter/runAt)
      in the foreground until SIGINT (Ctrl-C) or SIGTERM, then stops
      gracefully: leases no more calls, gives back those not started, waits up
      to 10 s for the running ones, prints "stopped: N calls still running" and
      exits 0 (a second signal while stopping ends it at once). A status line
      on stderr, rewritten every second on a terminal (else a line every
      --status_every seconds; --quiet for none): deliveries ended here, and
      how: ok (succeeded), failed (the function failed: recorded, not
      retried; or its tenant was deleted), retry (an infrastructure failure:
      runs again, an attempt), busy (given back, not an attempt: the isolates
      were full, with --runners no runner was up, or on PostgreSQL another
      process owns the tenant), skipped (the call had ended already); the
      queue's pending calls of every tenant, of them due now, and leased (by
      any process); calls running here, calls this server dead-lettered;
      calls mutations scheduled. The queued calls' console output goes to
      stderr too, each line as '[LEVEL] TENANT FUNCTION ID: MESSAGE' (a
      message's every line so, control characters shown as \xNN; --nologs
      for none). Actions have no
      services: the CLI registers none. Another process's deploy, import or
      mutation ('txfn run') on the same --db while it runs is safe: the
      server's next call of that tenant sees it, and no update is lost
      (storage refuses a commit validated without it; the server reloads
      and retries). Submitting mutations instead keeps them in its queue.
      On PostgreSQL one process writes a tenant at a time: the one that
      committed to it last, until 10 s after its last commit; meanwhile
      another's deploy, import or run of a mutation is refused, naming the
      owner, and a server that does not own it gives its calls
      back to the queue for the owner (busy).
  submit --tenant NAME MODULE:FUNCTION [ARGS_JSON]
      Enqueues a call of an exported query, mutation or action with ARGS_JSON
      (default {}) and prints its id. Works while 'txfn serve' runs on the same
      --db (a call runs once a server runs it). The call's options default to
      the function's attributes: --delay_ms=MS (start MS from now),
      --deadline_ms=MS (deadline MS after the start, 1 s to 24 h),
      --criticality=low|normal|high|critical, --quota=reserved|opportunistic,
      --key=KEY (idempotency key: the same key gives the same call),
      --client=NAME (whose rate limit applies). An unknown function or
      arguments its validator refuses fail, and nothing is enqueued.
  calls --tenant NAME [--status=STATE] [--function=MODULE:FUNCTION] [--limit=N]
        [--after=ID]
      Lists the tenant's calls in id order, one per line: id, state (pending,
      running, succeeded, failed, dead_lettered or cancelled), function,
      attempts, and the result as JSON or the error's first line; at most
      --limit (default 100, 0: all), after the call --after (the next page).
      Then the queue's backlog per function, of every tenant: pending (due now
      or later), due, leased (not with --server, which lists the key's
      tenant's calls only).
  call [--tenant NAME] ID
      Shows the call ID: its tenant, function, state (pending, running,
      succeeded, failed, dead_lettered, cancelled), attempts, result (JSON) or
      error, when it is due, its lease ends or it ended, and its deadline (when
      known). With --tenant, only a call of that tenant is found (an id's
      tenant tag, 32 bits of the name's hash, may be shared by two names).
  cancel [--tenant NAME] ID
      Cancels the call ID if it has not ended: it will not run (a mutation
      running then does not commit; a query or action already running
      finishes). Prints "cancelled ID"; a call that ended already is an error
      saying how it ended. --tenant as for call. Works while 'txfn serve'
      runs on the same --db.
  help
      Prints this text. (--version prints txfn's version.)

flags:
  --db=FILE|URL   the SQLite database (default txfn.db), for every command; it
                  must exist (a mistyped path is an error) unless --create. Or a
                  PostgreSQL database, postgresql://... (not for backup, import)
  --create        create --db if it does not exist: deploy (a first deploy),
                  tenants, serve (then deploy with --server)
  --tenant=NAME   the tenant, for deploy, run, tables, export, import, submit
                  and calls; call and cancel look among its calls only
  --kind=K        run: auto|query|mutation (default auto); --mutation = mutation
  --[no]logs      run: print console output to stderr; serve: print queued
                  calls' console output, each line with the call's tenant,
                  function and id (default on)
  --table=NAME    export: only this table; import: only documents of this table
  --remap_ids     import: new ids for documents whose table's id differs here
  --quiet, --status_every=SECONDS                          serve (see above)
  --server=[HOST:]PORT  deploy, run, submit, call, cancel, calls: send it
                  to a 'txfn serve --listen' instead of opening a database
                  (so not with --db, --create or --runners); the key is
                  --api_key=KEY or $TXFN_API_KEY (deploy needs the admin key;
                  the admin key may also run and call any tenant's functions,
                  and find and cancel any tenant's calls)
  --listen=[HOST:]PORT, --api_keys=FILE  serve: also serve the functions over
                  gRPC (a bare port binds loopback); FILE has lines 'admin KEY'
                  and 'tenant NAME KEY'. Prints 'listening on port N' (on
                  unix:PATH: 'listening on unix:PATH').
  --max_threads=N (256), --max_calls_per_tenant=N (64)  serve --listen: gRPC
                  threads (a poller and the calls under way), and a tenant
                  key's calls under way at once per tenant (0: no cap); past
                  either a call is refused RESOURCE_EXHAUSTED
  --max_buffer_mib=N (1024)  serve --listen: what gRPC may buffer for the
                  server's connections at once (a request is read whole before
                  its key is checked); past it gRPC resets streams (min. 128)
  --max_call_seconds=S (60)  serve --listen: the longest a query or mutation
                  may take from its arrival (the client's deadline if earlier;
                  inf: the client's deadline only)
  --metrics=HOST:PORT  serve: Prometheus metrics at http://HOST:PORT/metrics
  --runners=[HOST:]PORT,...  run, serve: run queries and mutations on these
                  txfn-runner processes (started with the same --db); the
                  engine here still commits. A runner that stops is skipped.
                  (A bare port in any of these flags means 127.0.0.1.)
  --delay_ms, --deadline_ms, --criticality, --quota,
  --key                                               run, submit (see above)
  --client                                                 submit (see above)
  --status, --function, --limit, --after                   calls (see above)

A flag the command does not act on (--table for run, --api_keys without
--listen, ...) is bad usage, not ignored.

exit status: 0 success; 1 the command failed (the function threw, a conflict
persisted, a deploy was refused, ...); 2 bad usage.

example:
  txfn deploy --db bank.db --create --tenant bank examples/apps/bank
  txfn run --db bank.db --tenant bank accounts:open '{"owner": "ada", "initial": 1000}'
  txfn run --db bank.db --tenant bank audit:total
  txfn export --db bank.db --tenant bank > bank.jsonl
  txfn deploy --db copy.db --create --tenant bank examples/apps/bank
  txfn import --db copy.db --tenant bank bank.jsonl
  txfn backup --db bank.db bank-backup.db
  txfn serve --db bank.db &
  txfn submit --db bank.db --tenant bank --delay_ms=5000 accounts:open '{"owner": "cy"}'
  txfn call --db bank.db 1b2c3d4e-...            # the id submit printed
  txfn cancel --db bank.db 1b2c3d4e-...
  txfn calls --db bank.db --tenant bank --status=failed
)";

constexpr int kFailed = 1;
constexpr int kUsageError = 2;

int Usage(std::string_view problem) {
  std::fprintf(stderr, "txfn: %.*s\nRun 'txfn --help' for usage.\n",
               static_cast<int>(problem.size()), problem.data());
  return kUsageError;
}

std::string RequireTenant() { return absl::GetFlag(FLAGS_tenant); }

// A --db that does not exist is a mistake unless --create says otherwise
// (SQLite would silently create an empty database). `db_given`: whether --db was on the
// command line (else the message says the default was used); `may_create`: whether `command`
// takes --create (a new database has no tenant to run, export or import into).
absl::Status CheckDatabase(std::string_view command, bool db_given, bool may_create) {
  const std::string db = absl::GetFlag(FLAGS_db);
  if (IsPostgresUrl(db)) return absl::OkStatus();  // a server's database: Open says
  if (std::error_code ec; std::filesystem::is_directory(db, ec)) {
    return absl::InvalidArgumentError(
        fmt::format("--db '{}' is a directory; name the database file in it", db));
  }
  if (absl::GetFlag(FLAGS_create) || std::filesystem::exists(db)) return absl::OkStatus();
  const std::string which = db_given
                                ? fmt::format("database '{}'", db)
                                : fmt::format("database '{}' (the default: no --db was given)", db);
  if (may_create) {
    return absl::NotFoundError(
        fmt::format("{} does not exist (pass --create to create it)", which));
  }
  return absl::NotFoundError(
      fmt::format("{} does not exist: name one with --db, or make one with a first "
                  "`txfn deploy --db FILE --create --tenant NAME APP_DIR`; {} needs a deployed "
                  "tenant",
                  which, command));
}

// Which engine a command opens.
enum class EngineRole {
  kClient,  // one command's calls; leaves queued calls to a server
  kServer,  // `serve`: runs the queued calls of every tenant
};

// A command's engine: one worker, and no queued call leased (it would wait for the command's
// short life, or be taken from a server running on the same file); Submit, GetCall and
// ListCalls work the same.
EngineOptions ClientEngineOptions() {
  EngineOptions options;
  options.scheduler.workers = 1;
  options.scheduler.max_isolates = 2;
  options.queued.run = false;
  return options;
}

// The control character at s[i] (internal::TerminalControlAt): its length, or 0.
size_t ControlAt(absl::string_view s, size_t i) {
  return internal::TerminalControlAt(std::string_view(s.data(), s.size()), i);
}

// `text` with its control characters (ControlAt) as \xNN.
std::string EscapeControls(absl::string_view text) {
  std::string shown;
  for (size_t i = 0; i < text.size(); ++i) {
    const size_t control = ControlAt(text, i);
    if (control == 0) {
      shown.push_back(text[i]);
      continue;
    }
    for (size_t b = 0; b < control; ++b) {
      shown += fmt::format("\\x{:02x}", static_cast<unsigned char>(text[i + b]));
    }
    i += control - 1;
  }
  return shown;
}

// Text from tenant code (console output, error messages) for a terminal: each of its lines
// escaped (EscapeControls), the first after `first`, the others after `rest`, joined by
// newlines. A tenant's "\n[ERROR] other-tenant ...: forged\r\x1b[2J" printed a line that read
// as another call's and cleared the operator's terminal.
std::string TerminalLines(std::string_view first, std::string_view rest, std::string_view text) {
  std::string out;
  bool first_line = true;
  for (const absl::string_view line :
       absl::StrSplit(absl::string_view(text.data(), text.size()), '\n')) {
    if (!first_line) out.push_back('\n');
    out.append(first_line ? first : rest);
    out += EscapeControls(line);
    first_line = false;
  }
  return out;
}

// Prints tenant code's console output on stderr, each of its lines after `header`.
void PrintLogLines(std::string_view header, std::string_view message) {
  std::fprintf(stderr, "%s\n", TerminalLines(header, header, message).c_str());
}

// Prints the error (its message may be tenant code's: TerminalLines) and returns kFailed.
int Fail(const absl::Status& status) {
  std::string text = status.ToString(absl::StatusToStringMode::kWithNoExtraData);
  std::fprintf(stderr, "%s\n", TerminalLines("error: ", "  ", text).c_str());
  return kFailed;
}

// serve --logs: a queued call's console output on stderr, each line with its tenant, function
// and call id (over the status line on a terminal: it is rewritten within a second).
void PrintQueuedCallLogs(const QueuedCallLogs& call) {
  const char* clear = isatty(STDERR_FILENO) == 1 ? "\r\x1b[K" : "";
  const std::string id = call.id.ToString();
  // One write: the lines of two deliveries ending at once do not interleave.
  std::string out;
  for (const LogEntry& log : call.logs) {
    const std::string header = fmt::format("{}[{}] {} {} {}: ", clear, LogLevelName(log.level),
                                           call.tenant, call.function, id);
    absl::StrAppend(&out, TerminalLines(header, header, log.message), "\n");
  }
  std::fwrite(out.data(), 1, out.size(), stderr);
}

// `executor_metrics`, if not null, is set to append the remote runners' metrics (--runners).
absl::StatusOr<std::unique_ptr<Engine>> OpenEngine(
    EngineRole role, std::function<void(MetricsText*)>* executor_metrics = nullptr) {
  EngineOptions options = role == EngineRole::kClient ? ClientEngineOptions() : EngineOptions();
  if (role == EngineRole::kServer && absl::GetFlag(FLAGS_logs)) {
    options.queued.on_logs = PrintQueuedCallLogs;
  }
  if (const std::string runners = absl::GetFlag(FLAGS_runners); !runners.empty()) {
#ifdef TXFN_TOOLS_REMOTE
    RemoteRunnerOptions remote;
    for (absl::string_view address : absl::StrSplit(runners, ',', absl::SkipEmpty())) {
      remote.runners.push_back({LoopbackIfBarePort(std::string(address))});
    }
    TXFN_ASSIGN_OR_RETURN(std::shared_ptr<RemoteRunner> runners_client,
                          RemoteRunner::Create(std::move(remote)));
    if (executor_metrics != nullptr) {
      *executor_metrics = [runners_client](MetricsText* text) {
        runners_client->AppendMetrics(text);
      };
    }
    options.executor = std::move(runners_client);
    options.executor_falls_back_to_local = false;  // --runners means there, or not at all
#else
    return absl::UnimplementedError("--runners: this txfn was built without remote runners");
#endif
  }
  const std::string db = absl::GetFlag(FLAGS_db);
  if (IsPostgresUrl(db)) {
#ifdef TXFN_TOOLS_POSTGRES
    return OpenPostgresEngine(db, std::move(options));
#else
    return absl::UnimplementedError("--db: this txfn was built without PostgreSQL");
#endif
  }
  return OpenSqliteEngine(db, std::move(options));
}

// Where deploy, run, submit, call and cancel send their work: the engine on --db, or a server.
class Target {
 public:
  virtual ~Target() = default;
  // Creates the tenant if needed; true if it was new.
  virtual absl::StatusOr<bool> Deploy(const std::string& tenant, const AppDir& app) = 0;
  virtual absl::StatusOr<CallResult> Query(const std::string& tenant, const std::string& function,
                                           const Value& args) = 0;
  virtual absl::StatusOr<CallResult> Mutation(const std::string& tenant,
                                              const std::string& function, const Value& args,
                                              const MutationOptions& options) = 0;
  virtual absl::StatusOr<CallId> Submit(const std::string& tenant, const std::string& function,
                                        const Value& args, const CallOptions& options) = 0;
  // Among `tenant`'s calls; empty: any tenant's (the server's: the API key's tenant's).
  virtual absl::StatusOr<CallInfo> GetCall(const CallId& id, const std::string& tenant) = 0;
  virtual absl::Status CancelCall(const CallId& id, const std::string& tenant) = 0;
  // Up to `limit` (SIZE_MAX: all) of `tenant`'s calls after `after`, as Engine::ListCalls.
  virtual absl::StatusOr<std::vector<CallInfo>> ListCalls(const std::string& tenant,
                                                          std::optional<CallState> state,
                                                          const std::string& function, size_t limit,
                                                          const CallId& after) = 0;
  // The queue's backlog of every tenant (Engine::QueueDepths); Unimplemented on a server.
  virtual absl::StatusOr<std::vector<FunctionDepth>> QueueDepths() = 0;
  // Where a call would have been, for "not found" messages.
  virtual std::string Where() const = 0;
};

class LocalTarget final : public Target {
 public:
  explicit LocalTarget(Engine& engine) : engine_(engine) {}
  absl::StatusOr<bool> Deploy(const std::string& tenant, const AppDir& app) override {
    return engine_.DeployCreatingTenant(
        tenant, [&] { return engine_.Deploy(tenant, app.modules, app.schema); });
  }
  absl::StatusOr<CallResult> Query(const std::string& tenant, const std::string& function,
                                   const Value& args) override {
    return engine_.Query(tenant, function, args);
  }
  absl::StatusOr<CallResult> Mutation(const std::string& tenant, const std::string& function,
                                      const Value& args, const MutationOptions& options) override {
    return engine_.Mutation(tenant, function, args, options);
  }
  absl::StatusOr<CallId> Submit(const std::string& tenant, const std::string& function,
                                const Value& args, const CallOptions& options) override {
    return engine_.Submit(tenant, function, args, options);
  }
  absl::StatusOr<CallInfo> GetCall(const CallId& id, const std::string& tenant) override {
    return tenant.empty() ? engine_.GetCall(id) : engine_.GetCall(id, tenant);
  }
  absl::Status CancelCall(const CallId& id, const std::string& tenant) override {
    return tenant.empty() ? engine_.CancelCall(id) : engine_.CancelCall(id, tenant);
  }
  absl::StatusOr<std::vector<CallInfo>> ListCalls(const std::string& tenant,
                                                  std::optional<CallState> state,
                                                  const std::string& function, size_t limit,
                                                  const CallId& after) override {
    return engine_.ListCalls(tenant, state, function, limit, after);
  }
  absl::StatusOr<std::vector<FunctionDepth>> QueueDepths() override {
    return engine_.QueueDepths();
  }
  std::string Where() const override { return "database " + absl::GetFlag(FLAGS_db); }

 private:
  Engine& engine_;
};

// A first deploy into a database this command would create, tried on an in-memory engine
// first: a refused one then creates no file. (Deleting the files after a refused deploy raced
// with another process creating the same database, and took a queue file that was there
// before.) A new tenant on a new database has nothing a deploy could be checked against but
// the modules, the schema and the services, which the scratch engine checks as --db's would.
absl::Status TryFirstDeployInMemory(const std::string& tenant, const AppDir& app) {
  TXFN_ASSIGN_OR_RETURN(std::unique_ptr<Engine> scratch,
                        Engine::Open(std::make_shared<InMemoryStorage>(), ClientEngineOptions()));
  return LocalTarget(*scratch).Deploy(tenant, app).status();
}

#ifdef TXFN_TOOLS_REMOTE
class ServerTarget final : public Target {
 public:
  explicit ServerTarget(std::unique_ptr<FunctionsClient> client) : client_(std::move(client)) {}
  absl::StatusOr<bool> Deploy(const std::string& tenant, const AppDir& app) override {
    // The schema goes as the JSON text LoadAppDir parsed.
    bool created = false;
    TXFN_RETURN_IF_ERROR(client_->Deploy(tenant, app.modules, app.schema_json, true, &created));
    return created;
  }
  absl::StatusOr<CallResult> Query(const std::string& tenant, const std::string& function,
                                   const Value& args) override {
    return client_->Query(tenant, function, args);
  }
  absl::StatusOr<CallResult> Mutation(const std::string& tenant, const std::string& function,
                                      const Value& args, const MutationOptions& options) override {
    return client_->Mutation(tenant, function, args, options);
  }
  absl::StatusOr<CallId> Submit(const std::string& tenant, const std::string& function,
                                const Value& args, const CallOptions& options) override {
    return client_->Submit(tenant, function, args, options);
  }
  absl::StatusOr<CallInfo> GetCall(const CallId& id, const std::string& tenant) override {
    return client_->GetCall(id, tenant);
  }
  absl::Status CancelCall(const CallId& id, const std::string& tenant) override {
    return client_->CancelCall(id, tenant);
  }
  // A page of the server's at a time (the server caps its pages), until `limit` calls or the
  // last.
  absl::StatusOr<std::vector<CallInfo>> ListCalls(const std::string& tenant,
                                                  std::optional<CallState> state,
                                                  const std::string& function, size_t limit,
                                                  const CallId& after) override {
    std::vector<CallInfo> calls;
    CallId from = after;
    while (calls.size() < limit) {
      TXFN_ASSIGN_OR_RETURN(
          FunctionsClient::CallPage page,
          client_->ListCalls(tenant, state, function, limit - calls.size(), from));
      for (CallInfo& c : page.calls) calls.push_back(std::move(c));
      if (!page.more || page.calls.empty()) break;
      from = calls.back().id;
    }
    return calls;
  }
  absl::StatusOr<std::vector<FunctionDepth>> QueueDepths() override {
    return absl::UnimplementedError("the queue's backlog is shown with --db only");
  }
  std::string Where() const override { return "server " + absl::GetFlag(FLAGS_server); }

 private:
  std::unique_ptr<FunctionsClient> client_;
};
#endif

// `app` is read once: a second read could see other files than the ones checked.
int DeployApp(Target& target, const std::string& tenant, const AppDir& app) {
  absl::StatusOr<bool> created = target.Deploy(tenant, app);
  if (!created.ok()) return Fail(created.status());
  std::printf("deployed %zu module(s) and %zu table(s) to tenant %s%s\n", app.modules.size(),
              app.schema.tables().size(), tenant.c_str(), *created ? " (new tenant)" : "");
  return 0;
}

int Deploy(Target& target, const std::string& tenant, const std::string& dir) {
  absl::StatusOr<AppDir> app = LoadAppDir(dir);
  if (!app.ok()) return Fail(app.status());
  return DeployApp(target, tenant, *app);
}

void PrintLogs(const std::vector<LogEntry>& logs) {
  if (!absl::GetFlag(FLAGS_logs)) return;
  for (const LogEntry& log : logs) {
    PrintLogLines(fmt::format("[{}] ", LogLevelName(log.level)), log.message);
  }
}

// ARGS_JSON as a Value, or what is wrong with it, showing the text received (the shell may
// have eaten its quotes).
absl::StatusOr<Value> ParseArgsJson(std::string_view args_json) {
  constexpr size_t kShown = 80;
  size_t cut = std::min(args_json.size(), kShown);
  while (cut < args_json.size() && cut > 0 && (args_json[cut] & 0xC0) == 0x80) --cut;  // UTF-8
  std::string shown =
      cut == args_json.size()
          ? std::string(args_json)
          : fmt::format("{}... ({} bytes)", args_json.substr(0, cut), args_json.size());
  // Escaped only if it holds control characters (ControlAt), which could forge terminal output.
  bool controls = false;
  for (size_t i = 0; i < shown.size(); ++i) controls = controls || ControlAt(shown, i) > 0;
  if (controls) shown = absl::CHexEscape(shown);
  absl::StatusOr<Value> args = FromJson(args_json);
  if (!args.ok()) {
    return absl::InvalidArgumentError(
        fmt::format("ARGS_JSON {}: {} (one JSON object, its field names in double quotes; in "
                    "single quotes for the shell, e.g. '{{\"n\": 1}}')",
                    shown, std::string(args.status().message())));
  }
  if (!args->is_object()) {
    return absl::InvalidArgumentError(fmt::format("ARGS_JSON {} must be a JSON object", shown));
  }
  return args;
}

int Run(Target& engine, const std::string& tenant, const std::string& function,
        std::string_view args_json) {
  absl::StatusOr<Value> args = ParseArgsJson(args_json);
  if (!args.ok()) return Usage(std::string(args.status().message()));
  std::string kind = absl::GetFlag(FLAGS_kind);
  if (absl::GetFlag(FLAGS_mutation)) kind = "mutation";
  if (kind != "auto" && kind != "query" && kind != "mutation") {
    return Usage(fmt::format("--kind must be auto, query or mutation, not '{}'", kind));
  }
  // A query changes nothing: a key would be a mistake to point out (the engine refuses one).
  const MutationOptions options{.idempotency_key = absl::GetFlag(FLAGS_key)};
  if (kind == "query" && !options.idempotency_key.empty()) {
    return Usage("--key is a mutation's idempotency key; a query has no effect to apply once");
  }
  absl::StatusOr<CallResult> result = kind == "mutation"
                                          ? engine.Mutation(tenant, function, *args, options)
                                          : engine.Query(tenant, function, *args);
  // auto: the runner checks the export's declared kind before running any of
  // its code and says which it is (DeclaredKind), so running a mutation
  // refused as a query again as a mutation has no side effect.
  if (kind == "auto" && !result.ok() && DeclaredKind(result.status()) == FunctionKind::kMutation) {
    result = engine.Mutation(tenant, function, *args, options);
  }
  if (!result.ok() && DeclaredKind(result.status()) == FunctionKind::kAction) {
    return Fail(absl::Status(
        result.status().code(),
        fmt::format("{}: run only queries and mutations; submit an action to the queue "
                    "(txfn submit --tenant={} {} ARGS_JSON, then txfn call ID)",
                    std::string(result.status().message()), tenant, function)));
  }
  if (!result.ok()) {
    PrintLogs(FailedCallLogs(result.status()));
    const int failed = Fail(result.status());
    std::optional<AppError> app_error = GetAppError(result.status());
    if (app_error.has_value() && !app_error->data.is_null()) {
      std::fprintf(stderr, "error data: %s\n", ToJson(app_error->data).c_str());
    }
    return failed;
  }
  PrintLogs(result->logs);
  std::printf("%s\n", ToJson(result->value).c_str());
  return 0;
}

int Tenants(Engine& engine) {
  absl::StatusOr<std::vector<std::string>> tenants = engine.ListTenants();
  if (!tenants.ok()) return Fail(tenants.status());
  for (const std::string& t : *tenants) std::printf("%s\n", t.c_str());
  return 0;
}

// Every document of `table` at `snapshot`, in _id order.
absl::StatusOr<std::vector<Value>> Documents(const Snapshot& snapshot, const TableInfo& table) {
  absl::StatusOr<std::vector<IndexEntry>> entries =
      snapshot.Scan(table.by_id, KeyRange::All(), ScanOrder::kAscending, 0);
  if (!entries.ok()) return entries.status();
  std::vector<Value> docs;
  docs.reserve(entries->size());
  for (const IndexEntry& e : *entries) {
    absl::StatusOr<Value> doc = DecodeBinary(e.value);
    if (!doc.ok()) return doc.status();
    docs.push_back(*std::move(doc));
  }
  return docs;
}

// A time in ISO 8601, UTC, to the millisecond.
std::string IsoTime(absl::Time t) {
  return absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", t, absl::UTCTimeZone());
}

// A commit timestamp (nanoseconds since the Unix epoch, the committer's
// clock) in ISO 8601, UTC, to the millisecond.
std::string CommitTime(Timestamp ts) {
  return IsoTime(absl::FromUnixNanos(static_cast<int64_t>(ts)));
}

int Tables(Engine& engine, const std::string& tenant) {
  absl::StatusOr<std::shared_ptr<const Snapshot>> snapshot = engine.Latest(tenant);
  if (!snapshot.ok()) return Fail(snapshot.status());
  const TenantMetadata& md = (*snapshot)->metadata();
  std::printf("tenant %s, last commit %s (ts %llu), %s, %zu module(s)\n", tenant.c_str(),
              CommitTime((*snapshot)->ts()).c_str(),
              static_cast<unsigned long long>((*snapshot)->ts()),
              md.enabled() ? "enabled" : "disabled", md.modules().size());
  std::printf("%-24s %10s  %s\n", "TABLE", "DOCUMENTS", "INDEXES");
  for (const auto& entry : md.tables()) {
    const TableInfo& table = entry.second;
    absl::StatusOr<std::vector<IndexEntry>> rows =
        (*snapshot)->Scan(table.by_id, KeyRange::All(), ScanOrder::kAscending, 0);
    if (!rows.ok()) return Fail(rows.status());
    std::string indexes = "by_id";
    for (const IndexInfo& index : table.indexes) {
      indexes += fmt::format(", {}(", index.name);
      for (size_t i = 0; i < index.fields.size(); ++i) {
        indexes += fmt::format("{}{}", i == 0 ? "" : ", ", index.fields[i]);
      }
      indexes += ")";
    }
    std::printf("%-24s %10zu  %s\n", table.name.c_str(), rows->size(), indexes.c_str());
  }
  return 0;
}

int Export(Engine& engine, const std::string& tenant) {
  absl::StatusOr<std::shared_ptr<const Snapshot>> snapshot = engine.Latest(tenant);
  if (!snapshot.ok()) return Fail(snapshot.status());
  const std::string only = absl::GetFlag(FLAGS_table);
  const TenantMetadata& md = (*snapshot)->metadata();
  if (!only.empty() && md.FindTable(only) == nullptr) {
    return Fail(absl::NotFoundError(fmt::format("tenant {} has no table '{}'", tenant, only)));
  }
  for (const auto& entry : md.tables()) {
    if (!only.empty() && entry.first != only) continue;
    absl::StatusOr<std::vector<Value>> docs = Documents(**snapshot, entry.second);
    if (!docs.ok()) return Fail(docs.status());
    for (const Value& doc : *docs) {
      // The table by name: an import into a tenant whose table ids differ goes by it.
      Value::Object fields = doc.object();
      fields.emplace(kExportTableField, Value::String(entry.first));
      std::printf("%s\n", ToJson(Value::FromObject(std::move(fields))).c_str());
    }
  }
  return 0;
}

int Import(const std::string& tenant, const std::string& file) {
  absl::StatusOr<std::unique_ptr<SqliteStorage>> storage =
      SqliteStorage::Open(absl::GetFlag(FLAGS_db));
  if (!storage.ok()) return Fail(storage.status());
  std::shared_ptr<Storage> shared = *std::move(storage);
  absl::StatusOr<Timestamp> max = shared->MaxCommittedTimestamp(tenant);
  if (!max.ok()) return Fail(max.status());
  if (*max == 0) {
    return Fail(absl::NotFoundError(
        fmt::format("tenant '{}' not found: deploy its schema first (txfn deploy)", tenant)));
  }
  // The documents need no JavaScript: a committer on the storage is enough.
  absl::StatusOr<std::unique_ptr<Committer>> committer = Committer::Open(shared, tenant);
  if (!committer.ok()) return Fail(committer.status());
  std::ifstream opened;
  std::istream* in = &std::cin;
  if (file != "-") {
    opened.open(file);
    if (!opened) return Fail(absl::NotFoundError(fmt::format("cannot open '{}'", file)));
    in = &opened;
  }
  absl::StatusOr<ImportReport> report = ImportJsonLines(
      **committer, *in,
      {.table = absl::GetFlag(FLAGS_table), .remap_ids = absl::GetFlag(FLAGS_remap_ids)});
  if (!report.ok()) return Fail(report.status());
  std::printf("imported %zu document(s) into tenant %s in %zu transaction(s)\n", report->documents,
              tenant.c_str(), report->transactions);
  return 0;
}

int Backup(const std::string& dest) {
  const std::string db = absl::GetFlag(FLAGS_db);
  if (!std::filesystem::exists(db)) {
    return Fail(absl::NotFoundError(fmt::format("database '{}' does not exist", db)));
  }
  for (const std::string& file : {dest, SqliteQueuePath(dest)}) {
    if (std::error_code ec; std::filesystem::exists(file, ec)) {
      return Fail(
          absl::AlreadyExistsError(fmt::format("'{}' exists; back up to a new file", file)));
    }
  }
  // The queue before the data. Every call is in the queue, in a tenant's outbox (scheduled by
  // a mutation, not yet queued) or ended (its record committed); it moves only in that order.
  // A call the queue's copy holds that ended before the data's copy has its record there, and
  // that record acknowledges it without running when the copy is opened. The other order lost
  // calls: one queued when the data was copied and ended before the queue was had neither.
  // Left: a call scheduled just before the queue's copy and moved from the outbox into the
  // queue before the data's copy (milliseconds after its commit) is in neither.
  std::error_code ec;
  const std::string queue_file = SqliteQueuePath(db);
  const std::string queue_dest = SqliteQueuePath(dest);
  const bool has_queue = std::filesystem::exists(queue_file, ec);
  if (has_queue) {
    absl::StatusOr<std::unique_ptr<SqliteQueue>> queue = SqliteQueue::Open(queue_file);
    if (!queue.ok()) return Fail(queue.status());
    if (absl::Status q = (*queue)->Backup(queue_dest); !q.ok()) return Fail(q);
  }
  absl::StatusOr<std::unique_ptr<SqliteStorage>> storage = SqliteStorage::Open(db);
  absl::Status copied = storage.ok() ? (*storage)->Backup(dest) : storage.status();
  if (!copied.ok()) {
    if (has_queue) std::filesystem::remove(queue_dest, ec);  // half a backup is none
    return Fail(copied);
  }
  std::printf("backed up %s to %s (%ju bytes)\n", db.c_str(), dest.c_str(),
              static_cast<uintmax_t>(std::filesystem::file_size(dest, ec)));
  if (has_queue) {
    std::printf("backed up its queue %s to %s (%ju bytes)\n", queue_file.c_str(),
                queue_dest.c_str(),
                static_cast<uintmax_t>(std::filesystem::file_size(queue_dest, ec)));
  }
  return 0;
}

// ---- Queued calls ----------------------------------------------------------

// serve's status line: what this server did, and the queue's backlog.
std::string StatusLine(Engine& engine, const std::string& db) {
  const QueuedCallStats q = engine.stats().queued;
  std::string backlog = "pending ? due ? leased ?";
  if (absl::StatusOr<std::vector<FunctionDepth>> depths = engine.QueueDepths(); depths.ok()) {
    size_t pending = 0, due = 0, leased = 0;
    for (const FunctionDepth& d : *depths) {
      pending += d.pending;
      due += d.due;
      leased += d.leased;
    }
    backlog = fmt::format("pending {} due {} leased {}", pending, due, leased);
  }
  // Every delivery that ended is counted once in the parts (so they add up to `delivered`).
  const uint64_t busy = q.busy + q.unavailable;
  const uint64_t delivered = q.succeeded + q.failed + q.retried + busy + q.skipped;
  return fmt::format(
      "serving {}: delivered {} ok {} failed {} retry {} busy {} skipped {} | {} | running {} "
      "dead {} | scheduled {}",
      db, delivered, q.succeeded, q.failed, q.retried, busy, q.skipped, backlog,
      q.scheduler.in_flight, q.scheduler.dead_lettered, q.scheduled);
}

#ifdef TXFN_TOOLS_REMOTE
static_assert(FunctionsServerOptions::kDefaultMaxThreads == 256 &&
                  FunctionsServerOptions::kDefaultMaxCallsPerTenant == 64 &&
                  FunctionsServerOptions::kDefaultMaxCallDuration == absl::Seconds(60) &&
                  FunctionsServerOptions::kDefaultMaxBufferBytes == int64_t{1024} << 20,
              "serve's --max_threads, --max_calls_per_tenant, --max_call_seconds and "
              "--max_buffer_mib defaults (and --help) are the options'");

// serve --api_keys: lines "admin KEY" (one) or "tenant NAME KEY", words separated by spaces or
// tabs; blank lines and "#..." skipped; CRLF line ends and a UTF-8 byte order mark are fine.
absl::StatusOr<FunctionsServerOptions> ReadApiKeys(const std::string& file) {
  std::ifstream in(file);
  if (!in) return absl::NotFoundError(fmt::format("--api_keys: cannot read '{}'", file));
  FunctionsServerOptions options;
  int admin_line = 0;
  std::string line;
  for (int number = 1; std::getline(in, line); ++number) {
    if (number == 1 && absl::StartsWith(line, "\xEF\xBB\xBF")) line.erase(0, 3);
    std::vector<std::string> words =
        absl::StrSplit(line, absl::ByAnyChar(" \t\r\v\f"), absl::SkipEmpty());
    if (words.empty() || words[0][0] == '#') continue;
    if (words[0] == "admin" && words.size() == 2) {
      if (admin_line != 0) {
        return absl::InvalidArgumentError(
            fmt::format("--api_keys: {}:{}: a second admin key (the first is on line {}); give one",
                        file, number, admin_line));
      }
      admin_line = number;
      options.admin_key = words[1];
    } else if (words[0] == "tenant" && words.size() == 3) {
      options.tenant_keys[words[1]].push_back(words[2]);
    } else {
      return absl::InvalidArgumentError(fmt::format(
          "--api_keys: {}:{}: expected 'admin KEY' or 'tenant NAME KEY'", file, number));
    }
    // A key travels in a gRPC header: only printable ASCII can be sent.
    const std::string& key = words.back();
    if (!std::all_of(key.begin(), key.end(), [](char c) { return c > ' ' && c < 0x7f; })) {
      return absl::InvalidArgumentError(
          fmt::format("--api_keys: {}:{}: a key must be printable ASCII (a gRPC header carries it)",
                      file, number));
    }
  }
  // A directory opens as a stream that reads nothing; a read that failed midway would drop the
  // keys after it: either way the server would have started with fewer keys than the file has.
  if (in.bad() || !in.eof()) {
    return absl::InvalidArgumentError(fmt::format("--api_keys: cannot read '{}'", file));
  }
  if (options.admin_key.empty() && options.tenant_keys.empty()) {
    return absl::InvalidArgumentError(fmt::format(
        "--api_keys: '{}' has no keys (lines 'admin KEY' or 'tenant NAME KEY'): every call "
        "would be refused",
        file));
  }
  return options;
}
#endif

// Runs the queued calls until one of `stop_signals` (blocked in every thread
// by the caller, before any thread started) arrives.
int Serve(const sigset_t& stop_signals) {
  const std::string db = absl::GetFlag(FLAGS_db);
  const bool quiet = absl::GetFlag(FLAGS_quiet);
  const bool tty = isatty(STDERR_FILENO) == 1;
  const absl::Duration every =
      tty ? absl::Seconds(1) : absl::Seconds(absl::GetFlag(FLAGS_status_every));
  // What the metrics endpoint adds to the engine's metrics: the remote runners' (where the
  // runs go) and the Functions service's.
  std::function<void(MetricsText*)> runner_metrics = [](MetricsText*) {};
  absl::StatusOr<std::unique_ptr<Engine>> opened = OpenEngine(EngineRole::kServer, &runner_metrics);
  if (!opened.ok()) return Fail(opened.status());
  Engine& engine = **opened;
  std::function<void(MetricsText*)> more_metrics = [](MetricsText*) {};
#ifdef TXFN_TOOLS_REMOTE
  std::unique_ptr<FunctionsServer> api;
  if (std::string listen = absl::GetFlag(FLAGS_listen); !listen.empty()) {
    absl::StatusOr<FunctionsServerOptions> options = ReadApiKeys(absl::GetFlag(FLAGS_api_keys));
    if (!options.ok()) return Fail(options.status());
    // A bare port binds loopback: exposing the server is a choice to spell out.
    listen = LoopbackIfBarePort(listen);
    options->listen = listen;
    options->max_threads = absl::GetFlag(FLAGS_max_threads);
    options->max_calls_per_tenant = absl::GetFlag(FLAGS_max_calls_per_tenant);
    const int64_t buffer_mib = absl::GetFlag(FLAGS_max_buffer_mib);
    if (buffer_mib < (FunctionsServerOptions::kMinBufferBytes >> 20) ||
        buffer_mib > (int64_t{1} << 40)) {
      return Fail(absl::InvalidArgumentError(
          fmt::format("--max_buffer_mib is {}; it must be from {} to 2^40", buffer_mib,
                      FunctionsServerOptions::kMinBufferBytes >> 20)));
    }
    options->max_buffer_bytes = buffer_mib << 20;
    const double call_seconds = absl::GetFlag(FLAGS_max_call_seconds);
    // NaN included; and a positive value too small for a Duration (1e-10 is 0).
    if (!(call_seconds > 0) || absl::Seconds(call_seconds) <= absl::ZeroDuration()) {
      return Fail(absl::InvalidArgumentError(fmt::format(
          "--max_call_seconds is {}; it must be at least 1e-9 (a nanosecond)", call_seconds)));
    }
    options->max_call_duration = absl::Seconds(call_seconds);
    absl::StatusOr<std::unique_ptr<FunctionsServer>> started =
        FunctionsServer::Start(engine, *std::move(options));
    if (!started.ok()) return Fail(started.status());
    api = *std::move(started);
    more_metrics = [server = api.get()](MetricsText* text) { server->AppendMetrics(text); };
    if (listen.starts_with("unix:")) {  // a socket has no port (gRPC reports 1)
      std::printf("listening on %s\n", listen.c_str());
    } else {
      std::printf("listening on port %d\n", api->port());
    }
    std::fflush(stdout);
  }
#else
  if (!absl::GetFlag(FLAGS_listen).empty()) {
    return Fail(absl::UnimplementedError("--listen: this txfn was built without gRPC"));
  }
#endif
  std::unique_ptr<MetricsHttpServer> metrics;
  if (const std::string listen = absl::GetFlag(FLAGS_metrics); !listen.empty()) {
    absl::StatusOr<std::unique_ptr<MetricsHttpServer>> started =
        MetricsHttpServer::Start(listen, [&engine, &runner_metrics, &more_metrics] {
          MetricsText text;
          AppendEngineMetrics(engine, &text);
          runner_metrics(&text);
          more_metrics(&text);
          return text.text();
        });
    if (!started.ok()) return Fail(started.status());
    metrics = *std::move(started);
    std::printf("metrics on port %d\n", metrics->port());
    std::fflush(stdout);
  }
  if (!quiet) {
    absl::StatusOr<std::vector<std::string>> tenants = engine.ListTenants();
    std::fprintf(stderr, "serving %s (%s tenant(s)) until SIGINT (Ctrl-C) or SIGTERM\n", db.c_str(),
                 tenants.ok() ? std::to_string(tenants->size()).c_str() : "?");
  }
  // The status line, rewritten in place on a terminal.
  auto status = [&] {
    const std::string line = StatusLine(engine, db);
    if (tty) {
      std::fprintf(stderr, "\r%s\x1b[K", line.c_str());
    } else {
      std::fprintf(stderr, "%s\n", line.c_str());
    }
    std::fflush(stderr);
  };
  int received = 0;
  PeriodicTimer lines(absl::Now() + every, every);
  while (received == 0) {
    if (quiet) {
      if (sigwait(&stop_signals, &received) != 0) received = 0;
      continue;
    }
    const absl::Time now = absl::Now();
    if (lines.Due(now)) {
      status();
      continue;
    }
    const timespec wait = absl::ToTimespec(lines.NextRun(now) - now);
    const int got = sigtimedwait(&stop_signals, nullptr, &wait);
    if (got > 0) received = got;  // else the time for a line came (EAGAIN), or EINTR
  }
  if (!quiet) {
    if (tty) std::fputc('\n', stderr);
    std::fprintf(stderr,
                 "%s: stopping (with --listen, clients' calls under way answer first; queued "
                 "calls not started are given back, running ones waited for up to 10 s; signal "
                 "again to stop at once)\n",
                 strsignal(received));
  }
  // A second signal now takes its default action (ends the process): only
  // this thread has them unblocked.
  pthread_sigmask(SIG_UNBLOCK, &stop_signals, nullptr);
  metrics.reset();
#ifdef TXFN_TOOLS_REMOTE
  if (api != nullptr) api->Shutdown(absl::Seconds(10));  // clients' calls in flight finish
#endif
  const size_t running = engine.StopQueuedCalls(absl::Seconds(10));
  if (!quiet) {
    const std::string line = StatusLine(engine, db);
    std::fprintf(stderr, "%s\n", line.c_str());
  }
  std::fprintf(stderr, "stopped: %zu calls still running\n", running);
  return 0;
}

int Submit(Target& engine, const std::string& tenant, const std::string& function,
           std::string_view args_json) {
  absl::StatusOr<Value> args = ParseArgsJson(args_json);
  if (!args.ok()) return Usage(std::string(args.status().message()));
  const int64_t delay_ms = absl::GetFlag(FLAGS_delay_ms);
  const int64_t deadline_ms = absl::GetFlag(FLAGS_deadline_ms);
  if (delay_ms < 0) return Usage("--delay_ms must not be negative");
  if (deadline_ms < 0) return Usage("--deadline_ms must not be negative");
  CallOptions options;
  const absl::Time start = absl::Now() + absl::Milliseconds(delay_ms);
  if (delay_ms > 0 || deadline_ms > 0) options.start_after = start;
  if (deadline_ms > 0) options.deadline = start + absl::Milliseconds(deadline_ms);
  if (const std::string c = absl::GetFlag(FLAGS_criticality); !c.empty()) {
    absl::StatusOr<Criticality> parsed = ParseCriticality(c);
    if (!parsed.ok())
      return Usage(fmt::format("--criticality: {}", std::string(parsed.status().message())));
    options.criticality = *parsed;
  }
  if (const std::string q = absl::GetFlag(FLAGS_quota); !q.empty()) {
    absl::StatusOr<QuotaClass> parsed = ParseQuotaClass(q);
    if (!parsed.ok())
      return Usage(fmt::format("--quota: {}", std::string(parsed.status().message())));
    options.quota = *parsed;
  }
  options.idempotency_key = absl::GetFlag(FLAGS_key);
  options.client = absl::GetFlag(FLAGS_client);
  absl::StatusOr<CallId> id = engine.Submit(tenant, function, *args, options);
  if (!id.ok()) return Fail(id.status());
  std::printf("%s\n", id->ToString().c_str());
  return 0;
}

// The status's text up to its first line break (an exception's stack follows).
std::string FirstLine(const absl::Status& status) {
  std::string text = status.ToString(absl::StatusToStringMode::kWithNoExtraData);
  if (size_t nl = text.find('\n'); nl != std::string::npos) text.resize(nl);
  return EscapeControls(text);
}

// What a call returned, or why it did not.
std::string Outcome(const CallInfo& info, bool whole_error) {
  switch (info.state) {
    case CallState::kSucceeded:
      if (info.result_dropped_bytes != 0) {
        return fmt::format("(not kept: {} bytes, over max_recorded_result_bytes)",
                           info.result_dropped_bytes);
      }
      return ToJson(info.result);
    case CallState::kFailed:
    case CallState::kDeadLettered:
      return whole_error
                 ? TerminalLines("", std::string(10, ' '),
                                 info.error.ToString(absl::StatusToStringMode::kWithNoExtraData))
                 : FirstLine(info.error);
    case CallState::kPending:
    case CallState::kRunning:
    case CallState::kCancelled:
      break;
  }
  return "-";
}

bool Known(absl::Time t) {
  return t != absl::UnixEpoch() && t != absl::InfinitePast() && t != absl::InfiniteFuture();
}

int Calls(Target& engine, const std::string& tenant) {
  std::optional<CallState> state;
  if (const std::string name = absl::GetFlag(FLAGS_status); !name.empty()) {
    absl::StatusOr<CallState> parsed = ParseCallState(name);
    if (!parsed.ok())
      return Usage(fmt::format("--status: {}", std::string(parsed.status().message())));
    state = *parsed;
  }
  const int64_t limit_flag = absl::GetFlag(FLAGS_limit);
  if (limit_flag < 0) return Usage("--limit must not be negative");
  const size_t limit = limit_flag == 0 ? SIZE_MAX : static_cast<size_t>(limit_flag);
  CallId after;
  if (const std::string text = absl::GetFlag(FLAGS_after); !text.empty()) {
    absl::StatusOr<CallId> parsed = CallId::Parse(text);
    if (!parsed.ok()) {
      return Usage(fmt::format("--after: {}", std::string(parsed.status().message())));
    }
    after = *parsed;
  }
  absl::StatusOr<std::vector<CallInfo>> calls =
      engine.ListCalls(tenant, state, absl::GetFlag(FLAGS_function), limit, after);
  if (!calls.ok()) return Fail(calls.status());
  absl::StatusOr<std::vector<FunctionDepth>> depths = engine.QueueDepths();
  if (!depths.ok() && !absl::IsUnimplemented(depths.status())) return Fail(depths.status());
  if (calls->empty()) {
    std::printf("no calls of tenant %s%s%s\n", tenant.c_str(),
                state.has_value() || !absl::GetFlag(FLAGS_function).empty() ? " that match" : "",
                after == CallId() ? "" : fmt::format(" after {}", after.ToString()).c_str());
  } else {
    std::printf("%-36s  %-13s  %-24s %8s  %s\n", "ID", "STATE", "FUNCTION", "ATTEMPTS",
                "RESULT OR ERROR");
    for (const CallInfo& c : *calls) {
      const std::string_view name = CallStateName(c.state);
      std::printf("%-36s  %-13.*s  %-24s %8d  %s\n", c.id.ToString().c_str(),
                  static_cast<int>(name.size()), name.data(), c.function.c_str(), c.attempts,
                  Outcome(c, /*whole_error=*/false).c_str());
    }
    if (calls->size() == limit) {
      std::printf("(%zu; --after=%s shows the next, --limit=0 all)\n", limit,
                  calls->back().id.ToString().c_str());
    }
  }
  if (!depths.ok()) return 0;  // a server's: not the key's to see
  if (depths->empty()) {
    std::printf("queue backlog (all tenants): none\n");
    return 0;
  }
  std::printf("queue backlog (all tenants):\n%-24s %8s %8s %8s\n", "FUNCTION", "PENDING", "DUE",
              "LEASED");
  for (const FunctionDepth& d : *depths) {
    std::printf("%-24s %8zu %8zu %8zu\n", d.function.c_str(), d.pending, d.due, d.leased);
  }
  return 0;
}

// What `call` and `cancel` say of a call `engine` does not know.
int NoSuchCall(const Target& engine, const CallId& id, const std::string& tenant) {
  return Fail(absl::NotFoundError(fmt::format(
      "no call {}{} in {} (never submitted there, or its tenant was deleted)", id.ToString(),
      tenant.empty() ? "" : fmt::format(" of tenant {}", tenant), engine.Where())));
}

int ShowCall(Target& engine, const std::string& tenant, const std::string& text) {
  absl::StatusOr<CallId> id = CallId::Parse(text);
  if (!id.ok()) return Usage(fmt::format("call: {}", std::string(id.status().message())));
  absl::StatusOr<CallInfo> info = engine.GetCall(*id, tenant);
  if (absl::IsNotFound(info.status())) return NoSuchCall(engine, *id, tenant);
  if (!info.ok()) return Fail(info.status());
  const std::string_view state = CallStateName(info->state);
  std::printf("id        %s\n", info->id.ToString().c_str());
  std::printf("tenant    %s\n", info->tenant.c_str());
  std::printf("function  %s\n", info->function.c_str());
  std::printf("state     %.*s\n", static_cast<int>(state.size()), state.data());
  std::printf("attempts  %d\n", info->attempts);
  if (info->state == CallState::kSucceeded) {
    std::printf("result    %s\n", Outcome(*info, false).c_str());
  } else if (info->state == CallState::kFailed || info->state == CallState::kDeadLettered) {
    std::printf("error     %s\n", Outcome(*info, /*whole_error=*/true).c_str());
    if (std::optional<AppError> thrown = GetAppError(info->error);
        thrown.has_value() && !thrown->data.is_null()) {
      std::printf("data      %s\n", ToJson(thrown->data).c_str());
    }
  }
  if (Known(info->at)) {
    const char* what = info->state == CallState::kPending   ? "due at"
                       : info->state == CallState::kRunning ? "leased until"
                                                            : "ended at";
    std::printf("%-9s %s\n", what, IsoTime(info->at).c_str());
  }
  if (Known(info->deadline)) std::printf("deadline  %s\n", IsoTime(info->deadline).c_str());
  return 0;
}

int CancelCall(Target& engine, const std::string& tenant, const std::string& text) {
  absl::StatusOr<CallId> id = CallId::Parse(text);
  if (!id.ok()) return Usage(fmt::format("cancel: {}", std::string(id.status().message())));
  absl::Status cancelled = engine.CancelCall(*id, tenant);
  if (absl::IsNotFound(cancelled)) return NoSuchCall(engine, *id, tenant);
  if (!cancelled.ok()) return Fail(cancelled);
  std::printf("cancelled %s\n", id->ToString().c_str());
  return 0;
}

// deploy, run, submit, call and cancel on `target`; -1 for any other command.
int RunOnTarget(Target& target, const std::string& command, const std::string& tenant,
                const std::vector<std::string>& rest) {
  const std::string args = rest.size() > 1 ? rest[1] : "{}";
  if (command == "deploy") return Deploy(target, tenant, rest[0]);
  if (command == "run") return Run(target, tenant, rest[0], args);
  if (command == "submit") return Submit(target, tenant, rest[0], args);
  if (command == "call") return ShowCall(target, tenant, rest[0]);
  if (command == "cancel") return CancelCall(target, tenant, rest[0]);
  if (command == "calls") return Calls(target, tenant);
  return -1;
}

int RunOnServer(const std::string& server, const std::string& command, const std::string& tenant,
                const std::vector<std::string>& rest) {
#ifdef TXFN_TOOLS_REMOTE
  std::string key = absl::GetFlag(FLAGS_api_key);
  if (const char* env = std::getenv("TXFN_API_KEY"); key.empty() && env != nullptr) key = env;
  absl::StatusOr<std::unique_ptr<FunctionsClient>> client =
      FunctionsClient::Connect(LoopbackIfBarePort(server), key);
  if (!client.ok()) return Fail(client.status());
  ServerTarget target(*std::move(client));
  return RunOnTarget(target, command, tenant, rest);
#else
  return Fail(absl::UnimplementedError("--server: this txfn was built without gRPC"));
#endif
}

// The flags in `args` (a command line, or a flag file's lines), checked as absl's parser will
// parse them, before it does (it exits 1; bad usage is 2 here): "" or what is wrong. The files
// --flagfile names are read and checked too (to `depth` 8: a file may name itself). The names
// of the flags given are added to `given`.
std::string CheckFlags(const std::vector<std::string>& args, int depth,
                       std::vector<std::string>* given) {
  for (size_t i = 0; i < args.size(); ++i) {
    std::string_view a = args[i];
    if (a == "--") break;
    if (!a.starts_with('-') || a == "-") continue;
    a.remove_prefix(a.starts_with("--") ? 2 : 1);
    const size_t equals = a.find('=');
    const std::string name(a.substr(0, equals));
    if (name == "flagfile" && depth < 8) {
      const std::string files(equals != std::string_view::npos ? a.substr(equals + 1)
                              : i + 1 < args.size()            ? std::string_view(args[++i])
                                                               : std::string_view());
      for (absl::string_view file : absl::StrSplit(files, ',', absl::SkipEmpty())) {
        std::ifstream in{std::string(file)};
        if (!in) return fmt::format("cannot read --flagfile {}", std::string(file));
        std::vector<std::string> lines;
        for (std::string line; std::getline(in, line);) {
          absl::string_view trimmed = absl::StripAsciiWhitespace(line);
          if (!trimmed.empty() && trimmed[0] != '#') lines.emplace_back(trimmed);
        }
        if (std::string problem = CheckFlags(lines, depth + 1, given); !problem.empty()) {
          return fmt::format("{} (in --flagfile {})", problem, std::string(file));
        }
      }
      continue;
    }
    // absl's own (--flagfile, --fromenv, ...) act when set: absl's parser alone handles them.
    if (name == "flagfile" || name == "fromenv" || name == "tryfromenv" || name == "undefok") {
      continue;
    }
    absl::CommandLineFlag* flag = absl::FindCommandLineFlag(name);
    if (flag == nullptr) {
      absl::CommandLineFlag* negated =
          name.starts_with("no") ? absl::FindCommandLineFlag(name.substr(2)) : nullptr;
      if (negated == nullptr) return fmt::format("unknown flag --{}", name);
      if (!negated->IsOfType<bool>() || equals != std::string_view::npos) {
        return fmt::format("--{} works with a bool flag, without a value", name);
      }
      given->emplace_back(negated->Name());
      continue;
    }
    given->push_back(name);
    // The value (--name=value, or --name value for a flag that is not a bool), parsed (and set:
    // harmless, ParseCommandLine sets it again) as ParseCommandLine will parse it.
    std::string value;
    if (equals != std::string_view::npos) {
      value = std::string(a.substr(equals + 1));
    } else if (flag->IsOfType<bool>()) {
      continue;
    } else if (i + 1 < args.size()) {
      value = args[++i];
    } else {
      return fmt::format("flag --{} needs a value", name);
    }
    if (std::string error; !flag->ParseFrom(value, &error)) return error;
  }
  return "";
}

// A command: its arguments, whether it needs --tenant, whether it may go to a server
// (--server), and the flags it reads apart from --db (which every command that opens the
// database reads) and --server and --api_key. --create is for the commands that make sense on
// a new, empty database (a `run --create` made one only to find no tenant in it).
struct Command {
  std::string_view name;
  size_t min_args;
  size_t max_args;
  bool needs_tenant;
  bool on_server;
  std::string_view flags;  // separated by spaces
};
constexpr Command kCommands[] = {
    {"deploy", 1, 1, true, true, "tenant create"},
    {"run", 1, 2, true, true, "tenant kind mutation key logs runners"},
    {"tenants", 0, 0, false, false, "create"},
    {"tables", 0, 0, true, false, "tenant"},
    {"export", 0, 0, true, false, "tenant table"},
    {"import", 0, 1, true, false, "tenant table remap_ids"},
    {"backup", 1, 1, false, false, ""},
    {"serve", 0, 0, false, false,
     "create quiet status_every logs listen api_keys max_threads max_calls_per_tenant "
     "max_buffer_mib max_call_seconds metrics runners"},
    {"submit", 1, 2, true, true, "tenant delay_ms deadline_ms criticality quota key client"},
    {"calls", 0, 0, true, true, "tenant status function limit after"},
    {"call", 1, 1, false, true, "tenant"},
    {"cancel", 1, 1, false, true, "tenant"},
};

bool Reads(const Command& command, std::string_view flag) {
  return absl::c_linear_search(absl::StrSplit(internal::ToAbsl(command.flags), ' '),
                               internal::ToAbsl(flag));
}

// "" if every flag in `given` is one `command` acts on, else what is wrong: a flag given to a
// command that would ignore it is a mistake to point out, not to pass over in silence.
std::string CheckFlagsApply(const Command& command, const std::vector<std::string>& given) {
  const bool to_server = absl::c_linear_search(given, "server");
  for (const std::string& name : given) {
    const absl::CommandLineFlag* flag = absl::FindCommandLineFlag(name);
    // absl's own flags, and this program's that every command reads.
    if (flag == nullptr || !absl::EndsWith(flag->Filename(), "txfn.cc")) continue;
    if (name == "server" || name == "api_key") {
      if (!command.on_server) {
        return fmt::format("--{} works with deploy, run, submit, call, cancel and calls, not {}",
                           name, command.name);
      }
      if (name == "api_key" && !to_server) return "--api_key goes with --server";
      continue;
    }
    if (to_server && (name == "db" || name == "create" || name == "runners")) {
      return fmt::format(
          "--{} does not go with --server (the command runs on the server, on its database)", name);
    }
    if (name == "db" || Reads(command, name)) continue;
    std::vector<std::string> readers;
    for (const Command& c : kCommands) {
      if (Reads(c, name)) readers.emplace_back(c.name);
    }
    return fmt::format(
        "--{} does not apply to {}{}", name, command.name,
        readers.empty() ? "" : fmt::format(" (it is for {})", absl::StrJoin(readers, ", ")));
  }
  if (command.name == "serve" && absl::GetFlag(FLAGS_listen).empty()) {
    for (const char* name : {"api_keys", "max_threads", "max_calls_per_tenant", "max_buffer_mib",
                             "max_call_seconds"}) {
      if (absl::c_linear_search(given, name)) {
        return fmt::format("serve: --{} goes with --listen", name);
      }
    }
  }
  return "";
}

int Main(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    std::string_view a = argv[i];
    if (a == "--") break;
    if (a == "--help" || a == "-h" || a == "-help" || a == "help") {
      std::fputs(kUsage, stdout);
      return 0;
    }
    if (a == "--version" || a == "-version") {
      std::printf("txfn %s\n", TXFN_VERSION);
      return 0;
    }
  }
  // absl's parser exits 1 on an unknown flag or a bad value; bad usage is 2 here.
  std::vector<std::string> given;
  if (std::string problem = CheckFlags(std::vector<std::string>(argv + 1, argv + argc), 0, &given);
      !problem.empty()) {
    return Usage(problem);
  }
  absl::SetProgramUsageMessage("Run 'txfn --help' for the commands.");
  std::vector<char*> positional = absl::ParseCommandLine(argc, argv);
  if (positional.size() < 2) return Usage("missing COMMAND");
  const std::string command = positional[1];
  const std::vector<std::string> rest(positional.begin() + 2, positional.end());
  const std::string tenant = RequireTenant();

  const Command* spec =
      absl::c_find_if(kCommands, [&](const Command& c) { return c.name == command; });
  if (spec == std::end(kCommands)) return Usage(fmt::format("unknown command '{}'", command));
  std::string problem = CheckFlagsApply(*spec, given);
  if (problem.empty() && spec->needs_tenant && tenant.empty()) {
    problem = fmt::format("{}: --tenant is required", command);
  } else if (problem.empty() && rest.size() < spec->min_args) {
    problem = fmt::format("{}: missing arguments", command);
  } else if (problem.empty() && rest.size() > spec->max_args) {
    problem = fmt::format("{}: too many arguments", command);
    if (spec->max_args == 2) {  // MODULE:FUNCTION [ARGS_JSON]: usually JSON the shell split
      problem += fmt::format(" (ARGS_JSON is one argument: quote it, e.g. '{{\"n\": 1}}')");
    }
  }
  if (problem.empty() && command == "serve" && absl::GetFlag(FLAGS_status_every) < 1) {
    problem = "serve: --status_every must be at least 1";
  }
  if (problem.empty() && command == "serve" && !absl::GetFlag(FLAGS_listen).empty() &&
      absl::GetFlag(FLAGS_api_keys).empty()) {
    problem = "serve --listen needs --api_keys=FILE";
  }
  const std::string server = absl::GetFlag(FLAGS_server);
  // A server always checks keys (serve --listen needs --api_keys): without one every call is
  // refused, so say how to give it.
  const char* env_key = std::getenv("TXFN_API_KEY");
  if (problem.empty() && !server.empty() && absl::GetFlag(FLAGS_api_key).empty() &&
      (env_key == nullptr || *env_key == '\0')) {
    problem = "--server needs an API key: --api_key=KEY or the environment variable TXFN_API_KEY";
  }
  if (!problem.empty()) return Usage(problem);
  if (!server.empty()) return RunOnServer(server, command, tenant, rest);
  if ((command == "backup" || command == "import") && IsPostgresUrl(absl::GetFlag(FLAGS_db))) {
    return Usage(
        fmt::format("{} works on an SQLite --db (for PostgreSQL use pg_dump, or "
                    "export from one database and import into an SQLite one)",
                    command));
  }
  // Neither runs JavaScript: no engine.
  if (command == "backup") return Backup(rest[0]);  // never creates its source
  if (absl::Status db =
          CheckDatabase(command, absl::c_linear_search(given, "db"), Reads(*spec, "create"));
      !db.ok()) {
    return Fail(db);
  }
  if (command == "import") return Import(tenant, rest.empty() ? "-" : rest[0]);
  if (command == "serve") {
    // Blocked before the engine starts any thread, so every thread inherits
    // the mask and the signals wait for Serve's sigtimedwait: no handler, no
    // global state.
    sigset_t stop_signals;
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGINT);
    sigaddset(&stop_signals, SIGTERM);
    // Their default actions, for the second signal: a shell that starts a command in the
    // background (`txfn serve &` in a script) makes it ignore SIGINT.
    std::signal(SIGINT, SIG_DFL);
    std::signal(SIGTERM, SIG_DFL);
    pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
    return Serve(stop_signals);
  }

  std::optional<AppDir> app_to_deploy;
  if (command == "deploy") {
    // Before any file is created: a mistyped directory, or a refused first deploy, creates no
    // database.
    absl::StatusOr<AppDir> app = LoadAppDir(rest[0]);
    if (!app.ok()) return Fail(app.status());
    const std::string db = absl::GetFlag(FLAGS_db);
    if (!IsPostgresUrl(db) && !std::filesystem::exists(db)) {
      if (absl::Status tried = TryFirstDeployInMemory(tenant, *app); !tried.ok()) {
        return Fail(tried);
      }
    }
    app_to_deploy = *std::move(app);
  }
  absl::StatusOr<std::unique_ptr<Engine>> engine = OpenEngine(EngineRole::kClient);
  if (!engine.ok()) return Fail(engine.status());
  LocalTarget local(**engine);
  if (app_to_deploy.has_value()) return DeployApp(local, tenant, *app_to_deploy);
  if (int rc = RunOnTarget(local, command, tenant, rest); rc >= 0) return rc;
  if (command == "tenants") return Tenants(**engine);
  if (command == "tables") return Tables(**engine, tenant);
  return Export(**engine, tenant);
}

}  // namespace
}  // namespace txfn::tools

int main(int argc, char** argv) { return txfn::tools::Main(argc, argv); }

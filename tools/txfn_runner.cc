// txfn-runner: a stateless function runner process (txfn/runner_server.h). Backends (an engine
// with a RemoteRunner) send it runs; it reads the tenants' data from the shared storage at
// each run's snapshot and never commits.
//
//   txfn-runner --db=app.db --listen=127.0.0.1:7401 [--workers=2]
//
// SIGTERM or SIGINT: stop taking runs (backends fail over), finish those in flight for up to
// --drain_seconds, exit 0. A second signal meanwhile ends it at once.
#include <signal.h>

#include <cstdio>
#include <filesystem>
#include <string>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/synchronization/notification.h"
#include "tools/address.h"
#include "tools/help_flags.h"
#include "txfn/metrics.h"
#include "txfn/runner_server.h"
#ifdef TXFN_TOOLS_POSTGRES
#include "txfn/postgres_engine.h"
#endif
#include "txfn/sqlite_storage.h"
#include "txfn/status_macros.h"

ABSL_FLAG(std::string, db, "txfn.db",
          "The shared storage the backend commits to: its SQLite file (it must exist), or its "
          "PostgreSQL database (postgresql://...).");
ABSL_FLAG(std::string, listen, "127.0.0.1:7401",
          "[host:]port to serve on (a bare port binds 127.0.0.1; port 0: any, the chosen port "
          "is printed).");
ABSL_FLAG(int32_t, workers, 2, "Isolate worker threads.");
ABSL_FLAG(double, drain_seconds, 10, "On SIGTERM: how long runs in flight may take to finish.");
ABSL_FLAG(std::string, metrics, "",
          "Serve Prometheus metrics at http://HOST:PORT/metrics (e.g. 127.0.0.1:9465).");

namespace {

// The backend's storage, read only here (a PostgreSQL runner never takes a tenant's lease:
// it never writes).
absl::StatusOr<std::shared_ptr<txfn::Storage>> OpenStorage(const std::string& db) {
#ifdef TXFN_TOOLS_POSTGRES
  if (txfn::IsPostgresUrl(db)) {
    TXFN_ASSIGN_OR_RETURN(std::shared_ptr<txfn::Storage> pg,
                          txfn::PostgresStorage::Open({.url = db}));
    return pg;
  }
#endif
  if (std::error_code ec; !std::filesystem::exists(db, ec)) {
    return absl::NotFoundError("database '" + db + "' does not exist");
  }
  TXFN_ASSIGN_OR_RETURN(std::shared_ptr<txfn::Storage> sqlite, txfn::SqliteStorage::Open(db));
  return sqlite;
}

int Fail(const absl::Status& status) {
  std::fprintf(stderr, "txfn-runner: %s\n", status.ToString().c_str());
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "txfn-runner --db=FILE --listen=HOST:PORT: serve function runs to txfn backends");
  txfn::tools::ListOwnFlagsInHelp();
  absl::ParseCommandLine(argc, argv);

  // Block the stop signals before any thread starts, so only sigwait below sees them.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

  absl::StatusOr<std::shared_ptr<txfn::Storage>> storage = OpenStorage(absl::GetFlag(FLAGS_db));
  if (!storage.ok()) return Fail(storage.status());

  txfn::RunnerServerOptions options;
  options.listen = txfn::tools::LoopbackIfBarePort(absl::GetFlag(FLAGS_listen));
  options.storage = *std::move(storage);
  options.scheduler.workers = absl::GetFlag(FLAGS_workers);
  absl::StatusOr<std::unique_ptr<txfn::RunnerServer>> server =
      txfn::RunnerServer::Start(std::move(options));
  if (!server.ok()) return Fail(server.status());
  std::printf("txfn-runner: serving on port %d\n", (*server)->port());
  std::unique_ptr<txfn::MetricsHttpServer> metrics;
  if (const std::string listen = absl::GetFlag(FLAGS_metrics); !listen.empty()) {
    txfn::RunnerServer* runner = server->get();
    absl::StatusOr<std::unique_ptr<txfn::MetricsHttpServer>> started =
        txfn::MetricsHttpServer::Start(listen, [runner] {
          txfn::MetricsText text;
          runner->AppendMetrics(&text);
          return text.text();
        });
    if (!started.ok()) return Fail(started.status());
    metrics = *std::move(started);
    std::printf("txfn-runner: metrics on port %d\n", metrics->port());
  }
  std::fflush(stdout);

  int signal = 0;
  sigwait(&stop_signals, &signal);
  // A second signal takes its default action (ends the process): only this thread has them
  // unblocked. It was ignored, and a drain waiting on stuck runs could only be SIGKILLed.
  pthread_sigmask(SIG_UNBLOCK, &stop_signals, nullptr);
  (*server)->Shutdown(absl::Seconds(absl::GetFlag(FLAGS_drain_seconds)));
  txfn::RunnerServerStats stats = (*server)->stats();
  std::printf("txfn-runner: stopped (%llu runs, %llu refused)\n",
              static_cast<unsigned long long>(stats.runs),
              static_cast<unsigned long long>(stats.refused));
  return 0;
}

// txfn/runner_server.h — a function runner as a gRPC service (txfn.runner.v1.Runner,
// proto/txfn/runner/v1/runner.proto), the server half of Convex's "Funrun".
//
// A backend (an Engine with a RemoteRunner as its executor) sends a function, its arguments
// and a snapshot timestamp; the server runs it read-only on its own isolates against the
// shared storage at that timestamp, and returns the result, logs, read set and writes. It
// never commits: the backend's committer validates and commits the writes. It is stateless:
// compiled modules (the FunctionRunner's module cache, keyed by source) and tenant metadata
// (keyed by TenantMetadata::fingerprint, which the request carries) are caches, so any
// server can serve any request, and a request naming metadata the server has not seen
// loads it at the request's timestamp. A request's deadline (RunRequest::deadline, sent by the
// backend) is enforced here too: the function is stopped there, DeadlineExceeded.
//
//   txfn::RunnerServerOptions options;
//   options.listen = "127.0.0.1:7401";
//   options.storage = shared_storage;  // e.g. PostgreSQL; the backend's storage
//   TXFN_ASSIGN_OR_RETURN(std::unique_ptr<txfn::RunnerServer> server,
//                         txfn::RunnerServer::Start(std::move(options)));
//   ...
//   server->Shutdown(absl::Seconds(10));  // on SIGTERM: drain, then stop
//
// Thread safety: every method may be called from any thread.
#ifndef TXFN_RUNNER_SERVER_H_
#define TXFN_RUNNER_SERVER_H_

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "txfn/function_runner.h"
#include "txfn/isolate_scheduler.h"
#include "txfn/metrics.h"
#include "txfn/storage.h"

namespace txfn {

struct RunnerServerOptions {
  // host:port to listen on; port 0 picks a free one (RunnerServer::port). Loopback by
  // default: the service has no authentication of its own, so expose it only to backends.
  std::string listen = "127.0.0.1:0";
  // The storage the backends commit to. Read only here. Required.
  std::shared_ptr<Storage> storage;
  // The server's isolates (the FunctionRunner customizer is set if none is; as in the engine,
  // max_in_flight_per_tenant 0 means no cap beyond the queue) and runner.
  IsolateSchedulerOptions scheduler;
  FunctionRunnerOptions runner;
  // Tenant metadata versions kept decoded (an AsyncLruCache keyed by tenant and fingerprint;
  // past it the least recently used go, per cache shard, so a redeployed tenant's old
  // version ages out).
  size_t metadata_cache_tenants = 4096;
  // Threads that decode requests and load tenants' metadata before a run starts (at least
  // 1): that work reads storage and may block, so it stays off gRPC's threads, which answer
  // the backends' pings (a runner that misses them is taken out and its runs cancelled).
  // Loads of this many tenants proceed at once; more wait their turn. Runs that join a
  // tenant's load under way hold no thread, and runs of cached tenants start at once.
  int intake_threads = 4;
};

struct RunnerServerStats {
  uint64_t runs = 0;            // answered with a RunResult (the function ok or not)
  uint64_t refused = 0;         // answered with a gRPC error (full, draining, malformed)
  uint64_t past_deadline = 0;   // of runs: DeadlineExceeded (the request's deadline passed)
  uint64_t metadata_hits = 0;   // a request's metadata found decoded
  uint64_t metadata_loads = 0;  // read from storage at the request's timestamp
  ModuleCacheStats modules;
};

class RunnerServer {
 public:
  // Starts serving. InvalidArgument without storage, or for `listen` not HOST:PORT with a
  // port from 0 to 65535; Unavailable when `listen` cannot be bound (a port another process
  // listens on included); a scheduler's error as IsolateScheduler::Create returns it.
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<RunnerServer>> Start(
      RunnerServerOptions options);
  // Shutdown(absl::ZeroDuration()) if not done yet.
  ~RunnerServer();
  RunnerServer(const RunnerServer&) = delete;
  RunnerServer& operator=(const RunnerServer&) = delete;

  // The port it listens on.
  int port() const;
  // Refuses new runs (UNAVAILABLE, so clients go elsewhere), lets runs in flight finish for
  // up to `grace`, then cancels the rest and stops. Idempotent.
  void Shutdown(absl::Duration grace);

  RunnerServerStats stats() const;
  // stats() as Prometheus metrics, and the runs' latency (txfn_runner_run_seconds).
  void AppendMetrics(MetricsText* out) const;

 private:
  class Impl;
  explicit RunnerServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace txfn

#endif  // TXFN_RUNNER_SERVER_H_

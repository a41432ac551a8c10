#include "txfn/runner_server.h"

#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <atomic>
#include <utility>
#include <vector>

#include "lib/remote/grpc_util.h"
#include "lib/remote/task_threads.h"
#include "lib/wire/wire_proto.h"
#include "txfn/async_lru_cache.h"
#include "txfn/internal/mutex.h"
#include "txfn/internal/strings.h"
#include "txfn/runner/v1/runner.grpc.pb.h"
#include "txfn/snapshot.h"
#include "txfn/status_macros.h"

namespace txfn {

using internal::StrCat;

class RunnerServer::Impl final : public runner::v1::Runner::CallbackService {
 public:
  Impl(RunnerServerOptions options, std::shared_ptr<IsolateScheduler> scheduler)
      : options_(std::move(options)),
        runner_(std::move(scheduler), options_.runner),
        metadata_({.capacity = std::max<size_t>(options_.metadata_cache_tenants, 1)}),
        intake_(std::max(options_.intake_threads, 1)) {}
  ~Impl() override { Shutdown(absl::ZeroDuration()); }

  absl::Status Listen() {
    internal::MutexLock lock(&shutdown_mu_);
    TXFN_ASSIGN_OR_RETURN(
        server_, remote_internal::StartGrpcServer(options_.listen, this, &port_, "RunnerServer"));
    return absl::OkStatus();
  }

  grpc::ServerUnaryReactor* Run(grpc::CallbackServerContext* context, const v1::RunRequest* request,
                                v1::RunResult* response) override {
    grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
    // Decoding and loading the tenant's metadata (storage reads) happen on the intake
    // threads: gRPC's callback threads also answer the pings, and loads that blocked them
    // made a busy runner miss its pings, be taken for a stuck one, and have its runs
    // cancelled. (The request and response live until the reactor finishes.)
    const Intake job{.in = request,
                     .response = response,
                     .reactor = reactor,
                     .context = context,
                     .received = absl::Now()};
    intake_.Post([this, job] { Begin(job); });
    return reactor;
  }

  grpc::ServerUnaryReactor* Ping(grpc::CallbackServerContext* context,
                                 const runner::v1::PingRequest* /*request*/,
                                 runner::v1::PingReply* reply) override {
    grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
    reply->set_draining(draining_.load());
    reactor->Finish(grpc::Status::OK);
    return reactor;
  }

  void Shutdown(absl::Duration grace) {
    draining_.store(true);
    internal::MutexLock lock(&shutdown_mu_);
    if (server_ == nullptr) return;
    // Runs in flight finish within their own limits (the scheduler's wall-clock limit), so
    // the wait after the deadline's cancellation is bounded too.
    server_->Shutdown(absl::ToChronoTime(absl::Now() + grace));
    server_.reset();
  }

  int port() const { return port_; }

  void AppendMetrics(MetricsText* out) const {
    const RunnerServerStats s = stats();
    out->Counter("txfn_runner_runs_total", "Runs answered.", static_cast<double>(s.runs));
    out->Counter("txfn_runner_refused_total", "Runs refused (full, draining, malformed).",
                 static_cast<double>(s.refused));
    out->Counter("txfn_runner_past_deadline_total",
                 "Runs answered DeadlineExceeded (stopped at, or not started by, their deadline).",
                 static_cast<double>(s.past_deadline));
    out->Counter("txfn_runner_metadata_hits_total", "Runs whose tenant metadata was decoded.",
                 static_cast<double>(s.metadata_hits));
    out->Counter("txfn_runner_metadata_loads_total", "Tenant metadata read from storage.",
                 static_cast<double>(s.metadata_loads));
    out->Counter("txfn_module_cache_hits_total", "Modules found compiled in the cache.",
                 static_cast<double>(s.modules.hits));
    out->Counter("txfn_module_cache_misses_total", "Modules compiled from source.",
                 static_cast<double>(s.modules.misses));
    out->Histogram("txfn_runner_run_seconds", "Run latency, from receipt to answer.", run_latency_);
  }

  RunnerServerStats stats() const {
    RunnerServerStats s;
    s.runs = runs_.load(std::memory_order_relaxed);
    s.refused = refused_.load(std::memory_order_relaxed);
    s.past_deadline = past_deadline_.load(std::memory_order_relaxed);
    s.metadata_hits = metadata_hits_.load(std::memory_order_relaxed);
    s.metadata_loads = metadata_loads_.load(std::memory_order_relaxed);
    s.modules = runner_.module_cache_stats();
    return s;
  }

 private:
  using MetadataKey = std::pair<std::string, uint64_t>;
  using MetadataCache = AsyncLruCache<MetadataKey, TenantMetadata>;

  // A request on its way to a run.
  struct Intake {
    const v1::RunRequest* in;
    v1::RunResult* response;
    grpc::ServerUnaryReactor* reactor;
    grpc::CallbackServerContext* context;
    absl::Time received;
  };

  void Refuse(const Intake& job, const absl::Status& status) {
    refused_.fetch_add(1, std::memory_order_relaxed);
    job.reactor->Finish(remote_internal::ToGrpcStatus(status));
  }

  // On an intake thread: decodes the request, then finds its snapshot and starts the run.
  // The metadata is decoded once per (tenant, fingerprint): a cached tenant's run starts at
  // once; a load runs on an intake thread, and requests that join it wait without holding a
  // thread (they continue where the load finishes).
  void Begin(const Intake& job) {
    if (draining_.load()) return Refuse(job, absl::UnavailableError("RunnerServer: draining"));
    if (job.context->IsCancelled()) {
      return Refuse(job, absl::CancelledError("RunnerServer: the backend gave up on the run"));
    }
    absl::StatusOr<RemoteRunRequest> decoded = wire_internal::FromProto(*job.in);
    if (!decoded.ok()) return Refuse(job, decoded.status());
    if (decoded->run.kind == FunctionKind::kAction) {
      return Refuse(job, absl::InvalidArgumentError(
                             StrCat("RunnerServer: ", decoded->run.function,
                                    " is an action; actions run on the backend (their ctx "
                                    "reaches its services)")));
    }
    if (decoded->tenant.empty()) {
      return Refuse(job, absl::InvalidArgumentError("RunnerServer: no tenant"));
    }
    auto request = std::make_shared<RemoteRunRequest>(*std::move(decoded));
    // A backend that names no version: nothing to match a cached one against.
    if (request->metadata_version == 0) return StartRun(job, *request, Load(*request));
    const MetadataKey key{request->tenant, request->metadata_version};
    auto loaded = std::make_shared<std::shared_ptr<const Snapshot>>();  // set if this one loads
    metadata_.GetAsync(
        key, [this](std::function<void()> task) { intake_.Post(std::move(task)); },
        [this, request, loaded]() -> MetadataCache::Result {
          TXFN_ASSIGN_OR_RETURN(*loaded, Load(*request));
          return (*loaded)->shared_metadata();
        },
        [this, job, request, loaded, key](MetadataCache::Result metadata) {
          StartRun(job, *request, SnapshotOf(*request, key, *loaded, std::move(metadata)));
        });
  }

  // The snapshot at the request's timestamp, from the metadata the cache answered with;
  // `loaded` is the snapshot this request loaded (null if it joined a load or hit).
  absl::StatusOr<std::shared_ptr<const Snapshot>> SnapshotOf(
      const RemoteRunRequest& request, const MetadataKey& key,
      const std::shared_ptr<const Snapshot>& loaded, MetadataCache::Result metadata) {
    if (!metadata.ok()) return metadata.status();
    if (loaded != nullptr) {
      // The storage disagrees with the backend about the metadata at that timestamp: serve
      // what the storage says, but do not file it under the backend's version.
      if (loaded->metadata().fingerprint() != request.metadata_version) metadata_.Invalidate(key);
      return loaded;
    }
    // Joined another request's load, or a hit; the same check for the joined load's answer.
    if ((*metadata)->fingerprint() != request.metadata_version) return Load(request);
    metadata_hits_.fetch_add(1, std::memory_order_relaxed);
    return std::make_shared<const Snapshot>(options_.storage, request.tenant, request.snapshot_ts,
                                            *std::move(metadata));
  }

  // Starts the run; the reactor is finished when it ends.
  void StartRun(const Intake& job, RemoteRunRequest& request,
                absl::StatusOr<std::shared_ptr<const Snapshot>> snapshot) {
    if (!snapshot.ok()) return Refuse(job, snapshot.status());
    // The runner enforces request.run.deadline (the backend's): it stops the function there,
    // or answers at once if it passed while the request waited.
    absl::Status started = runner_.RunAsync(
        *std::move(snapshot), std::move(request.run), [this, job](const RunResult& result) {
          wire_internal::ToProto(result, job.response);
          runs_.fetch_add(1, std::memory_order_relaxed);
          if (absl::IsDeadlineExceeded(result.status)) {
            past_deadline_.fetch_add(1, std::memory_order_relaxed);
          }
          run_latency_.Observe(absl::Now() - job.received);
          job.reactor->Finish(grpc::Status::OK);
        });
    if (!started.ok()) Refuse(job, started);
  }

  absl::StatusOr<std::shared_ptr<const Snapshot>> Load(const RemoteRunRequest& request) {
    absl::StatusOr<std::shared_ptr<const Snapshot>> snapshot =
        Snapshot::Load(options_.storage, request.tenant, request.snapshot_ts);
    if (snapshot.ok()) metadata_loads_.fetch_add(1, std::memory_order_relaxed);
    return snapshot;
  }

  const RunnerServerOptions options_;
  FunctionRunner runner_;
  int port_ = 0;
  std::atomic<bool> draining_{false};
  std::atomic<uint64_t> runs_{0};
  std::atomic<uint64_t> refused_{0};
  std::atomic<uint64_t> past_deadline_{0};
  std::atomic<uint64_t> metadata_hits_{0};
  std::atomic<uint64_t> metadata_loads_{0};
  LatencyHistogram run_latency_;

  // Decoded tenant metadata by (tenant, fingerprint); an old version ages out of the LRU.
  MetadataCache metadata_;

  // Before the server: its shutdown waits for the runs the intake threads are starting.
  remote_internal::TaskThreads intake_;

  internal::Mutex shutdown_mu_;
  // Last: shut down (its runs finished) before the runner goes.
  std::unique_ptr<grpc::Server> server_ ABSL_GUARDED_BY(shutdown_mu_);
};

absl::StatusOr<std::unique_ptr<RunnerServer>> RunnerServer::Start(RunnerServerOptions options) {
  if (options.storage == nullptr) return absl::InvalidArgumentError("RunnerServer: no storage");
  if (options.scheduler.customizer == nullptr) {
    options.scheduler.customizer = FunctionRunnerIsolateCustomizer();
  }
  // As the engine's: the backends' routers cap what a runner gets (32 in flight by default),
  // so a tenant's runs queue here rather than being refused.
  if (options.scheduler.max_in_flight_per_tenant == 0) {
    options.scheduler.max_in_flight_per_tenant =
        static_cast<int>(std::min<size_t>(options.scheduler.queue_capacity, 1 << 30));
  }
  TXFN_ASSIGN_OR_RETURN(std::unique_ptr<IsolateScheduler> scheduler,
                        IsolateScheduler::Create(options.scheduler));
  auto impl = std::make_unique<Impl>(std::move(options), std::move(scheduler));
  TXFN_RETURN_IF_ERROR(impl->Listen());
  return std::unique_ptr<RunnerServer>(new RunnerServer(std::move(impl)));
}

RunnerServer::RunnerServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
RunnerServer::~RunnerServer() = default;
int RunnerServer::port() const { return impl_->port(); }
void RunnerServer::Shutdown(absl::Duration grace) { impl_->Shutdown(grace); }
RunnerServerStats RunnerServer::stats() const { return impl_->stats(); }
void RunnerServer::AppendMetrics(MetricsText* out) const { impl_->AppendMetrics(out); }

}  // namespace txfn

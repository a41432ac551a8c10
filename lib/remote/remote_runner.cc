#include "txfn/remote_runner.h"

#include <grpcpp/alarm.h>
#include <grpcpp/grpcpp.h>

#include <atomic>
#include <cstdint>
#include <optional>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/match.h"
#include "lib/remote/grpc_util.h"
#include "lib/remote/task_threads.h"
#include "lib/wire/wire_proto.h"
#include "txfn/clock.h"
#include "txfn/internal/mutex.h"
#include "txfn/internal/strings.h"
#include "txfn/rendezvous_router.h"
#include "txfn/runner/v1/runner.grpc.pb.h"
#include "txfn/snapshot.h"
#include "txfn/status_macros.h"

namespace txfn {
namespace {

using internal::StrCat;

// One runner process: its channel, and what the stats report.
struct Endpoint {
  std::string address;
  double weight = 1.0;
  std::shared_ptr<grpc::Channel> channel;
  std::unique_ptr<runner::v1::Runner::Stub> stub;
  std::atomic<bool> healthy{true};
  std::atomic<uint64_t> runs{0};
  std::atomic<uint64_t> failures{0};
  std::atomic<uint64_t> pings_missed{0};
  // The attempts in flight here, to cancel when the runner stops answering pings.
  internal::Mutex mu;
  absl::flat_hash_set<grpc::ClientContext*> attempts ABSL_GUARDED_BY(mu);
};

// A ping in flight (WatchHealth's alone).
struct Ping {
  grpc::ClientContext context;
  runner::v1::PingRequest request;
  runner::v1::PingReply reply;
  grpc::Status status;
  std::unique_ptr<grpc::ClientAsyncResponseReader<runner::v1::PingReply>> reader;
};

using Router = RendezvousRouter<std::shared_ptr<Endpoint>>;

// Worth another runner: this one is gone, stuck, stopping (it cancels what it cannot finish;
// this client never cancels) or full. Anything else (a malformed request) would fail anywhere.
bool Retryable(grpc::StatusCode code) {
  return code == grpc::StatusCode::UNAVAILABLE || code == grpc::StatusCode::DEADLINE_EXCEEDED ||
         code == grpc::StatusCode::CANCELLED || code == grpc::StatusCode::RESOURCE_EXHAUSTED;
}

// gRPC's own refusal of a message of the run past the limit (kMaxMessageBytes): mostly the
// runner's answer, too large, which it would send again; it is not "full" (that
// ResourceExhausted is the runner's, and worth another). Retried, it ran the function three
// times and counted each as a failure of a healthy runner.
bool AnswerTooLarge(const grpc::Status& status) {
  return status.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED &&
         absl::StrContains(status.error_message(), "larger than max");
}

// The runner failed the run by a fault of its own, not the function's: its storage (a lost
// connection, a damaged file) or a bug, as its refusal (gRPC INTERNAL, UNKNOWN, DATA_LOSS) or
// as the run's result. The function's own failures have other codes (Unknown with an
// AppError when it threw, ResourceExhausted at a limit, InvalidArgument, ...). A run has no
// effect to repeat, so such a run is worth each other runner once; the runner stays in the
// ranking (it answers pings, and the fault may be one tenant's: every runner would meet it).
bool RunnerFault(grpc::StatusCode code) {
  return code == grpc::StatusCode::INTERNAL || code == grpc::StatusCode::UNKNOWN ||
         code == grpc::StatusCode::DATA_LOSS;
}
bool RunnerFault(const absl::Status& run_status) {
  return absl::IsInternal(run_status) || absl::IsDataLoss(run_status) ||
         absl::IsUnavailable(run_status);
}

RunResult Failed(absl::Status status) {
  RunResult r;
  r.status = std::move(status);
  return r;
}

}  // namespace

class RemoteRunner::Impl {
 public:
  explicit Impl(RemoteRunnerOptions options) : options_(std::move(options)) {}

  ~Impl() {
    {
      internal::MutexLock lock(&mu_);
      in_flight_cv_.Wait([this]() ABSL_NO_THREAD_SAFETY_ANALYSIS { return in_flight_ == 0; });
      stop_ = true;
    }
    // Wakes WatchHealth now rather than at its next round.
    stop_alarm_.Set(&health_queue_, std::chrono::system_clock::now(), kStopTag);
    completions_.reset();  // runs what is left, then joins
    for (std::thread& t : threads_) t.join();
    // The pings WatchHealth cancelled (and the alarm) complete before their buffers go.
    health_queue_.Shutdown();
    void* tag = nullptr;
    bool ok = false;
    while (health_queue_.Next(&tag, &ok)) {
    }
  }

  absl::Status Init() {
    if (options_.runners.empty()) return absl::InvalidArgumentError("RemoteRunner: no runners");
    if (options_.max_attempts < 1) {
      return absl::InvalidArgumentError("RemoteRunner: max_attempts must be >= 1");
    }
    for (const auto& [name, duration] : {std::pair{"attempt_timeout", options_.attempt_timeout},
                                         std::pair{"health_interval", options_.health_interval},
                                         std::pair{"ping_timeout", options_.ping_timeout}}) {
      if (duration <= absl::ZeroDuration()) {
        return absl::InvalidArgumentError(StrCat("RemoteRunner: ", name, " must be positive, not ",
                                                 absl::FormatDuration(duration)));
      }
    }
    absl::flat_hash_set<std::string> seen;
    grpc::ChannelArguments args;
    args.SetMaxReceiveMessageSize(remote_internal::kMaxMessageBytes);
    args.SetMaxSendMessageSize(remote_internal::kMaxMessageBytes);
    // A restarted runner is found within the health interval, not gRPC's default 2 minutes.
    args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 50);
    args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 500);
    for (const RemoteRunnerOptions::Runner& r : options_.runners) {
      if (!seen.insert(r.address).second) {
        return absl::InvalidArgumentError(StrCat("RemoteRunner: ", r.address, " listed twice"));
      }
      auto endpoint = std::make_shared<Endpoint>();
      endpoint->address = r.address;
      endpoint->weight = r.weight;
      endpoint->channel =
          grpc::CreateCustomChannel(r.address, grpc::InsecureChannelCredentials(), args);
      endpoint->stub = runner::v1::Runner::NewStub(endpoint->channel);
      if (absl::Status s =
              router_.AddNode(r.address, endpoint, r.weight, options_.max_in_flight_per_runner);
          !s.ok()) {
        return absl::InvalidArgumentError(StrCat("RemoteRunner: ", s.message()));
      }
      endpoints_.push_back(std::move(endpoint));
    }
    // Completions run here, not on gRPC's threads: `done` may block (a commit).
    completions_.emplace(4);
    threads_.emplace_back([this] { WatchHealth(); });
    return absl::OkStatus();
  }

  // Refuses without touching `request` and `done`, so a caller can run them elsewhere.
  absl::Status TryRunAsync(const std::shared_ptr<const Snapshot>& snapshot, RunRequest& request,
                           std::function<void(RunResult)>& done) {
    if (request.kind == FunctionKind::kAction) {
      return absl::InvalidArgumentError(
          StrCat("RemoteRunner: ", request.function, " is an action; run actions locally"));
    }
    auto call = std::make_shared<Call>();
    call->tenant = snapshot->tenant();
    call->function = request.function;
    call->deadline = request.deadline;
    std::optional<Router::Lease> lease;
    if (absl::Now() < call->deadline) {
      absl::StatusOr<Router::Lease> acquired = Acquire(*call);
      if (!acquired.ok()) return acquired.status();
      lease = *std::move(acquired);
    }
    call->done = std::move(done);
    RemoteRunRequest remote{.tenant = snapshot->tenant(),
                            .run = std::move(request),
                            .snapshot_ts = snapshot->ts(),
                            .metadata_version = snapshot->metadata().fingerprint()};
    wire_internal::ToProto(remote, &call->request);
    {
      internal::MutexLock lock(&mu_);
      ++in_flight_;
    }
    if (!lease.has_value()) {  // passed its deadline already: no runner can help
      Post([this, call] { Finish(*call, PastDeadline(*call, "before it was sent")); });
    } else {
      Send(call, *std::move(lease));
    }
    return absl::OkStatus();
  }

  bool OnCompletionThread() const {
    return completions_.has_value() && completions_->OnOwnThread();
  }

  RemoteRunnerStats stats() const {
    RemoteRunnerStats s;
    for (const std::shared_ptr<Endpoint>& e : endpoints_) {
      absl::StatusOr<int> in_flight = router_.InFlight(e->address);
      s.runners.push_back({e->address, e->healthy.load(), e->runs.load(), e->failures.load(),
                           e->pings_missed.load(), in_flight.ok() ? *in_flight : 0});
    }
    s.retries = retries_.load();
    return s;
  }

 private:
  struct Call {
    std::string tenant;
    std::string function;
    absl::Time deadline;  // RunRequest::deadline
    std::function<void(RunResult)> done;
    v1::RunRequest request;
    int attempts = 0;
    // The attempt in flight, and whether its gRPC deadline is `deadline` (not attempt_timeout).
    Router::Lease lease;
    bool ends_at_deadline = false;
    std::unique_ptr<grpc::ClientContext> context;
    v1::RunResult response;
    // The runners that failed it by a fault of their own (RunnerFault): not tried again.
    std::vector<std::string> faulted_on;
  };

  // The best runner with room for the call, or why there is none (a refusal).
  absl::StatusOr<Router::Lease> Acquire(const Call& call) {
    const std::string key = options_.routing == RemoteRunnerOptions::Routing::kRoundRobin
                                ? std::to_string(round_robin_.fetch_add(1))
                                : call.tenant;
    absl::StatusOr<Router::Lease> lease = call.faulted_on.empty()
                                              ? router_.Acquire(key)
                                              : router_.AcquireExcept(key, call.faulted_on);
    if (lease.ok()) return lease;
    if (router_.size() == 0) {
      return absl::UnavailableError(
          StrCat("RemoteRunner: no runner is healthy (", endpoints_.size(), " configured)"));
    }
    return absl::ResourceExhaustedError(StrCat("RemoteRunner: ", lease.status().message()));
  }

  // Sends the call to the runner `lease` holds. The attempt ends by the call's deadline, so a
  // failover never extends past it.
  void Send(const std::shared_ptr<Call>& call, Router::Lease lease) {
    ++call->attempts;
    call->lease = std::move(lease);
    call->context = std::make_unique<grpc::ClientContext>();
    const absl::Time timeout = absl::Now() + options_.attempt_timeout;
    call->ends_at_deadline = call->deadline <= timeout;
    call->context->set_deadline(absl::ToChronoTime(std::min(call->deadline, timeout)));
    call->response.Clear();
    std::shared_ptr<Endpoint> endpoint = call->lease.node();
    {
      internal::MutexLock lock(&endpoint->mu);
      endpoint->attempts.insert(call->context.get());
    }
    // No channel may go on a gRPC thread. gRPC runs callbacks on the threads of a completion
    // queue its channels share, and the last channel to go shuts that queue down and joins
    // them: on one of them, the thread joined itself and freed the queue it was reading (a
    // double free ASan caught). So the callback holds the endpoint by a plain pointer
    // (endpoints_ owns it), and gives its call (whose ClientContext holds the channel) to the
    // task it posts: gRPC destroys the callback on its thread after it returns, when the
    // RemoteRunner may be gone, and the completion threads end before the endpoints do.
    Endpoint* at = endpoint.get();
    endpoint->stub->async()->Run(
        call->context.get(), &call->request, &call->response,
        // An init-capture: a copy of `call` (a const reference) would be const, and only copied.
        [this, owned = call, at](grpc::Status status) mutable {
          Post([this, call = std::move(owned), at, status = std::move(status)] {
            OnAttemptDone(call, *at, status);
          });
        });
  }

  static RunResult PastDeadline(const Call& call, std::string_view detail) {
    return Failed(absl::DeadlineExceededError(StrCat(
        "RemoteRunner: ", call.function, " of ", call.tenant, " passed its deadline ", detail)));
  }

  void OnAttemptDone(const std::shared_ptr<Call>& call, Endpoint& endpoint,
                     const grpc::Status& status) {
    {
      internal::MutexLock lock(&endpoint.mu);
      endpoint.attempts.erase(call->context.get());
    }
    call->lease.Release();
    if (status.ok()) {
      endpoint.runs.fetch_add(1, std::memory_order_relaxed);
      absl::StatusOr<RunResult> result = wire_internal::FromProto(call->response);
      if (!result.ok()) return Finish(*call, Failed(result.status()));
      if (RunnerFault(result->status) && RetryElsewhere(call, endpoint)) return;
      Finish(*call, *std::move(result));
      return;
    }
    if (AnswerTooLarge(status)) {
      Finish(*call, Failed(absl::ResourceExhaustedError(
                        StrCat("RemoteRunner: a message of the run of ", call->function, " of ",
                               call->tenant, " was past the ", remote_internal::kMaxMessageBytes,
                               "-byte limit: ", status.error_message()))));
      return;
    }
    absl::Status error = remote_internal::FromGrpcStatus(status);
    if (RunnerFault(status.error_code())) {
      if (!RetryElsewhere(call, endpoint)) Finish(*call, Failed(std::move(error)));
      return;
    }
    if (!Retryable(status.error_code())) {
      Finish(*call, Failed(error));
      return;
    }
    // An attempt cut short by the caller's deadline says nothing about its runner. (gRPC's
    // timer may fire a little before absl::Now() reaches the deadline: its clock is another.)
    const bool cut_at_deadline =
        status.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED && call->ends_at_deadline;
    const bool past_deadline = cut_at_deadline || absl::Now() >= call->deadline;
    if (status.error_code() != grpc::StatusCode::DEADLINE_EXCEEDED || !past_deadline) {
      endpoint.failures.fetch_add(1, std::memory_order_relaxed);
      if (status.error_code() != grpc::StatusCode::RESOURCE_EXHAUSTED) MarkUnhealthy(endpoint);
    }
    if (past_deadline) {  // never retried: its caller has stopped waiting
      Finish(*call, PastDeadline(*call, StrCat("(", error.message(), ")")));
      return;
    }
    if (call->attempts < options_.max_attempts) {
      retries_.fetch_add(1, std::memory_order_relaxed);
      absl::StatusOr<Router::Lease> lease = Acquire(*call);
      if (lease.ok()) {
        Send(call, *std::move(lease));
        return;
      }
      error = lease.status();
    }
    Finish(*call, Failed(absl::UnavailableError(StrCat(
                      "RemoteRunner: no runner answered ", call->function, " of ", call->tenant,
                      " after ", call->attempts, " attempts; last: ", error.message()))));
  }

  // Sends a run that `endpoint` failed by a fault of its own to the best runner it has not
  // failed on, if its attempts and deadline allow and one has room. False: none (the caller
  // finishes it with that runner's answer).
  bool RetryElsewhere(const std::shared_ptr<Call>& call, Endpoint& endpoint) {
    endpoint.failures.fetch_add(1, std::memory_order_relaxed);
    call->faulted_on.push_back(endpoint.address);
    if (call->attempts >= options_.max_attempts || absl::Now() >= call->deadline) return false;
    absl::StatusOr<Router::Lease> lease = Acquire(*call);
    if (!lease.ok()) return false;
    retries_.fetch_add(1, std::memory_order_relaxed);
    Send(call, *std::move(lease));
    return true;
  }

  void Finish(Call& call, RunResult result) {
    call.done(std::move(result));
    EndCall();
  }

  void EndCall() {
    internal::MutexLock lock(&mu_);
    if (--in_flight_ == 0) in_flight_cv_.SignalAll();
  }

  // Out of the ranking until it answers a ping: its tenants go to their next choice.
  void MarkUnhealthy(Endpoint& endpoint) {
    if (endpoint.healthy.exchange(false)) (void)router_.RemoveNode(endpoint.address);
  }

  // Pings every runner every health_interval. A runner's channel state says nothing of the
  // process behind it: a stopped (SIGSTOP) or hung runner keeps its connection READY, and was
  // let back into the ranking while still stopped. The pings go through a completion queue of
  // this thread's own (not gRPC's callback threads, which must not outlive the channels: a
  // ping still out when the RemoteRunner went tripped gRPC's assertions); it cancels those in
  // flight when it stops, and the destructor drains the queue.
  void WatchHealth() {
    pings_.resize(endpoints_.size());
    PeriodicTimer rounds(absl::Now() + options_.health_interval, options_.health_interval);
    while (true) {
      {
        internal::MutexLock lock(&mu_);
        if (stop_) break;
      }
      if (rounds.Due(absl::Now())) {
        for (size_t i = 0; i < endpoints_.size(); ++i) {
          if (pings_[i] == nullptr) pings_[i] = SendPing(*endpoints_[i], i);
        }
      }
      void* tag = nullptr;
      bool ok = false;
      if (health_queue_.AsyncNext(&tag, &ok, absl::ToChronoTime(rounds.NextRun(absl::Now()))) !=
              grpc::CompletionQueue::GOT_EVENT ||
          tag == kStopTag) {
        continue;  // the next round is due, or stop_ is set
      }
      const size_t i = reinterpret_cast<uintptr_t>(tag);
      OnPing(endpoints_[i], pings_[i]->status, pings_[i]->reply);
      pings_[i].reset();
    }
    for (const std::unique_ptr<Ping>& ping : pings_) {
      if (ping != nullptr) ping->context.TryCancel();
    }
  }

  std::unique_ptr<Ping> SendPing(Endpoint& endpoint, size_t index) {
    auto ping = std::make_unique<Ping>();
    ping->context.set_deadline(absl::ToChronoTime(absl::Now() + options_.ping_timeout));
    ping->reader = endpoint.stub->AsyncPing(&ping->context, ping->request, &health_queue_);
    ping->reader->Finish(&ping->reply, &ping->status, reinterpret_cast<void*>(index));
    return ping;
  }

  void OnPing(const std::shared_ptr<Endpoint>& endpoint, const grpc::Status& status,
              const runner::v1::PingReply& reply) {
    // A draining runner answers: it takes no new runs, and finishes those it has.
    if (status.ok() && reply.draining()) {
      MarkUnhealthy(*endpoint);
      return;
    }
    // UNIMPLEMENTED: a runner from before Ping, answering all the same.
    if (status.ok() || status.error_code() == grpc::StatusCode::UNIMPLEMENTED) {
      if (!endpoint->healthy.load() && router_
                                           .AddNode(endpoint->address, endpoint, endpoint->weight,
                                                    options_.max_in_flight_per_runner)
                                           .ok()) {
        endpoint->healthy.store(true);
      }
      return;
    }
    endpoint->pings_missed.fetch_add(1, std::memory_order_relaxed);
    MarkUnhealthy(*endpoint);
    // Unanswered in time, the runner is stopped or hung: its runs in flight would wait for
    // their attempt's timeout or deadline. Cancelled, they fail over now (CANCELLED is retried
    // on the next runner). A runner that is gone fails them by itself.
    if (status.error_code() != grpc::StatusCode::DEADLINE_EXCEEDED) return;
    internal::MutexLock lock(&endpoint->mu);
    for (grpc::ClientContext* attempt : endpoint->attempts) attempt->TryCancel();
  }

  void Post(std::function<void()> work) { completions_->Post(std::move(work)); }

  const RemoteRunnerOptions options_;
  Router router_;
  std::vector<std::shared_ptr<Endpoint>> endpoints_;  // fixed after Init
  std::atomic<uint64_t> retries_{0};
  std::atomic<uint64_t> round_robin_{0};  // Routing::kRoundRobin's next key

  internal::Mutex mu_;
  internal::CondVar in_flight_cv_{&mu_};
  int in_flight_ ABSL_GUARDED_BY(mu_) = 0;
  // WatchHealth's pings complete here; stop_alarm_ wakes it when the RemoteRunner goes.
  // pings_ (in flight, per endpoint) is WatchHealth's, then the destructor's: it outlives the
  // queue's last completion.
  grpc::CompletionQueue health_queue_;
  grpc::Alarm stop_alarm_;
  std::vector<std::unique_ptr<Ping>> pings_;
  static inline void* const kStopTag = reinterpret_cast<void*>(~uintptr_t{0});
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::optional<remote_internal::TaskThreads> completions_;  // started by Init
  std::vector<std::thread> threads_;                         // WatchHealth
};

absl::StatusOr<std::shared_ptr<RemoteRunner>> RemoteRunner::Create(RemoteRunnerOptions options) {
  auto impl = std::make_shared<Impl>(std::move(options));
  TXFN_RETURN_IF_ERROR(impl->Init());
  return std::shared_ptr<RemoteRunner>(new RemoteRunner(std::move(impl)));
}

RemoteRunner::RemoteRunner(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}
RemoteRunner::~RemoteRunner() {
  // The last reference went on one of the completion threads (a run's `done`, or what it
  // captured, held it): the Impl's destructor joins those threads, so it runs on a thread of
  // its own, which waits for the runs in flight (this one's included) as usual.
  if (impl_->OnCompletionThread()) {
    std::thread([impl = std::move(impl_)]() mutable { impl.reset(); }).detach();
  }
}

absl::Status RemoteRunner::RunAsync(std::shared_ptr<const Snapshot> snapshot, RunRequest request,
                                    std::function<void(RunResult)> done) {
  return impl_->TryRunAsync(snapshot, request, done);
}

absl::Status RemoteRunner::TryRunAsync(std::shared_ptr<const Snapshot> snapshot,
                                       RunRequest& request, std::function<void(RunResult)>& done) {
  return impl_->TryRunAsync(snapshot, request, done);
}

RemoteRunnerStats RemoteRunner::stats() const { return impl_->stats(); }

void RemoteRunner::AppendMetrics(MetricsText* out) const {
  const RemoteRunnerStats s = stats();
  // One family at a time: the text format wants a family's samples together.
  auto per_runner = [&](bool counter, std::string_view name, std::string_view help, auto value) {
    for (const RemoteRunnerStats::Runner& r : s.runners) {
      const MetricLabels labels{{"runner", r.address}};
      if (counter) {
        out->Counter(name, help, static_cast<double>(value(r)), labels);
      } else {
        out->Gauge(name, help, static_cast<double>(value(r)), labels);
      }
    }
  };
  using Runner = RemoteRunnerStats::Runner;
  per_runner(false, "txfn_remote_runner_healthy",
             "1 while the runner is in the ranking, 0 while it is out (failed, not back yet).",
             [](const Runner& r) { return r.healthy ? 1 : 0; });
  per_runner(false, "txfn_remote_runner_in_flight", "Runs sent to the runner, not answered yet.",
             [](const Runner& r) { return r.in_flight; });
  per_runner(true, "txfn_remote_runner_runs_total", "Runs the runner answered.",
             [](const Runner& r) { return r.runs; });
  per_runner(true, "txfn_remote_runner_failures_total",
             "Attempts the runner failed (gone, stuck, full, or a fault of its own).",
             [](const Runner& r) { return r.failures; });
  per_runner(true, "txfn_remote_runner_pings_missed_total",
             "Pings the runner did not answer in time (each took it out of the ranking).",
             [](const Runner& r) { return r.pings_missed; });
  out->Counter("txfn_remote_runner_retries_total", "Attempts after a run's first.",
               static_cast<double>(s.retries));
}

}  // namespace txfn

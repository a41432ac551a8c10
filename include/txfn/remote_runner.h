// txfn/remote_runner.h — run queries and mutations on runner processes (txfn-runner,
// txfn/runner_server.h) instead of in this one: a FunctionExecutor for the engine
// (EngineOptions::executor) or a CallPath.
//
// Routing (Convex's Funrun): a tenant's runs go to the runner that ranks first for it by
// rendezvous hashing (txfn/rendezvous_router.h), so its modules stay warm on few runners;
// each runner takes at most `max_in_flight_per_runner` runs at once (default 32), and a run
// that finds its runner full overflows to the tenant's next-ranked runner. Runs are read-only
// (the engine commits their writes), so a run that fails with UNAVAILABLE or its per-attempt
// timeout is retried on the next runner, up to `max_attempts` runners in all; the runner
// that failed is taken out of the ranking until it answers again, and then gets back
// exactly the tenants it ranks first for. A run a runner fails by a fault of its own (its
// storage unreachable or damaged, a bug: gRPC INTERNAL, UNKNOWN or DATA_LOSS, or a result
// Internal, DataLoss or Unavailable) is retried on the best runner it has not failed on,
// within the same `max_attempts`; that runner stays in the ranking (it answers pings, and
// the fault may be one tenant's), and its other runs go on. If no other runner is left, the
// run ends with the runner's answer. Every runner is pinged every `health_interval`:
// one that does not answer within `ping_timeout` (stopped or hung: its TCP connection may
// well stay open) is taken out of the ranking at once, and its runs in flight are cancelled
// and retried on the next runners, so they need not wait for their attempt's timeout or
// deadline; one that cannot be reached, or answers that it is draining, is taken out too
// (its runs fail, or finish, by themselves). It comes back when it answers a ping.
//
//   txfn::RemoteRunnerOptions options;
//   options.runners = {{"10.0.0.5:7401"}, {"10.0.0.6:7401", /*weight=*/2.0}};
//   TXFN_ASSIGN_OR_RETURN(std::shared_ptr<txfn::RemoteRunner> remote,
//                         txfn::RemoteRunner::Create(std::move(options)));
//   txfn::EngineOptions engine_options;
//   engine_options.executor = remote;  // storage must be shared with the runners
//
// Deadlines: RunRequest::deadline travels with the run (the runner stops the function
// there) and is the gRPC deadline of every attempt, so a failover never waits past it; an
// attempt it cut short does not count against its runner, and a run whose deadline passed is
// not retried (nor sent, if it passed before). Without one, each attempt gets
// `attempt_timeout`.
//
// What a run's result says: the function's outcome is RunResult::status as a local runner
// would give it; when no runner could run it, Unavailable ("no runner answered ...") after
// the attempts, or DeadlineExceeded when the request's deadline passed. Actions are refused
// (InvalidArgument): they run where their host is.
//
// Thread safety: every method may be called from any thread.
#ifndef TXFN_REMOTE_RUNNER_H_
#define TXFN_REMOTE_RUNNER_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "txfn/function_runner.h"
#include "txfn/metrics.h"

namespace txfn {

struct RemoteRunnerOptions {
  struct Runner {
    std::string address;  // host:port of a txfn-runner
    double weight = 1.0;  // its share of tenants relative to the others
  };
  std::vector<Runner> runners;
  int max_in_flight_per_runner = 32;
  // Runners tried per run (the first included).
  int max_attempts = 3;
  // Each attempt's timeout when the request's deadline (RunRequest::deadline) is later.
  absl::Duration attempt_timeout = absl::Seconds(30);
  // How often every runner is pinged (a runner whose last ping is still unanswered is not
  // pinged again meanwhile).
  absl::Duration health_interval = absl::Milliseconds(100);
  // A ping not answered within this takes its runner out of the ranking and cancels its runs
  // in flight (retried elsewhere). Longer than a healthy runner's worst answer time across
  // the network: its RPC threads answer pings whatever its isolates are doing.
  absl::Duration ping_timeout = absl::Seconds(1);
  // kRendezvous: a tenant's runs go to its first-ranked runner (warm caches). kRoundRobin:
  // runs rotate over the runners whatever their tenant — only to measure what rendezvous
  // routing saves (txfn_bench_remote).
  enum class Routing { kRendezvous, kRoundRobin };
  Routing routing = Routing::kRendezvous;
};

struct RemoteRunnerStats {
  struct Runner {
    std::string address;
    bool healthy = true;
    uint64_t runs = 0;          // answered (whatever the function did)
    uint64_t failures = 0;      // attempts it failed (gone, stuck, full, a fault of its own)
    uint64_t pings_missed = 0;  // pings unanswered within ping_timeout, or failed
    int in_flight = 0;
  };
  std::vector<Runner> runners;
  uint64_t retries = 0;  // attempts after the first
};

class RemoteRunner : public FunctionExecutor {
 public:
  // InvalidArgument: no runners, a runner listed twice, a weight <= 0, a cap < 1, or a
  // timeout or interval that is not positive.
  [[nodiscard]] static absl::StatusOr<std::shared_ptr<RemoteRunner>> Create(
      RemoteRunnerOptions options);
  // Waits for the runs in flight. A run's `done` may hold the last reference and drop it
  // (it runs on one of the RemoteRunner's threads): the RemoteRunner is then destroyed on a
  // thread of its own, once that run has ended.
  ~RemoteRunner() override;
  RemoteRunner(const RemoteRunner&) = delete;
  RemoteRunner& operator=(const RemoteRunner&) = delete;

  // Refuses (ResourceExhausted) when every runner is at its cap, Unavailable when none is
  // healthy; then `done` is not called.
  [[nodiscard]] absl::Status RunAsync(std::shared_ptr<const Snapshot> snapshot, RunRequest request,
                                      std::function<void(RunResult)> done) override;
  // Decides before it takes `request` and `done`: a refusal leaves them as they were.
  [[nodiscard]] absl::Status TryRunAsync(std::shared_ptr<const Snapshot> snapshot,
                                         RunRequest& request,
                                         std::function<void(RunResult)>& done) override;

  RemoteRunnerStats stats() const;
  // stats() as Prometheus metrics, per runner (label runner="host:port"):
  // txfn_remote_runner_healthy, _in_flight (gauges), _runs_total, _failures_total, and
  // txfn_remote_runner_retries_total. Shows where a host's runs go, and when a restarted
  // runner is back in the ranking.
  void AppendMetrics(MetricsText* out) const;

 private:
  class Impl;
  explicit RemoteRunner(std::shared_ptr<Impl> impl);
  std::shared_ptr<Impl> impl_;
};

}  // namespace txfn

#endif  // TXFN_REMOTE_RUNNER_H_

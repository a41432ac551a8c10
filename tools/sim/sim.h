// tools/sim/sim.h — the parts of txfn-sim: a discrete-event loop on a
// VirtualClock, the XFaaS workload model, and a simulated region that drives
// txfn's real InMemoryQueue, Submitter and CallScheduler.
//
// Nothing here re-implements a scheduling decision: the simulator only makes
// calls (Submitter::Submit), runs them on model workers (txfn::Worker) and
// measures. Every choice of what runs when, where and how fast is the
// library's, so a change to the scheduler changes the simulated figures.
//
// Determinism: events are ordered by (virtual time, insertion sequence); all
// randomness comes from generators seeded from the run's seed; nothing
// iterates a hash map to decide anything. The same seed gives the same run.
#ifndef TXFN_TOOLS_SIM_SIM_H_
#define TXFN_TOOLS_SIM_SIM_H_

#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/functional/any_invocable.h"
#include "absl/time/time.h"
#include "txfn/call.h"
#include "txfn/call_scheduler.h"
#include "txfn/clock.h"
#include "txfn/in_memory_queue.h"
#include "txfn/submitter.h"

namespace txfn::sim {

// The simulation's epoch: virtual time starts here (midnight, so hour h of
// day d is Start() + d * 24h + h * 1h).
absl::Time Start();

// --- The event loop --------------------------------------------------------------

class EventLoop {
 public:
  explicit EventLoop(VirtualClock* clock) : clock_(clock) {}
  EventLoop(const EventLoop&) = delete;
  EventLoop& operator=(const EventLoop&) = delete;

  absl::Time now() const { return clock_->Now(); }
  // Runs `fn` at `t` (now, if `t` is in the past). Events at the same time
  // run in the order they were added.
  void At(absl::Time t, absl::AnyInvocable<void()> fn);
  void After(absl::Duration d, absl::AnyInvocable<void()> fn) { At(now() + d, std::move(fn)); }
  // Runs `fn` at `first` and then every `period` until the loop stops.
  void Every(absl::Time first, absl::Duration period, std::function<void()> fn);
  // Runs the events due before `end`, advancing the clock to each; leaves
  // the clock at `end`.
  void RunUntil(absl::Time end);

  uint64_t events_run() const { return events_run_; }

 private:
  struct Entry {
    int64_t t;
    uint64_t seq;
    uint32_t slot;
  };
  struct Later {
    bool operator()(const Entry& a, const Entry& b) const {
      return a.t != b.t ? a.t > b.t : a.seq > b.seq;
    }
  };

  VirtualClock* const clock_;
  std::vector<Entry> heap_;
  std::vector<absl::AnyInvocable<void()>> slots_;  // the callables, by slot
  std::vector<uint32_t> free_;
  uint64_t seq_ = 0;
  uint64_t events_run_ = 0;
};

// --- Time series -------------------------------------------------------------------

// Named columns of fixed-width time bins from Start().
class Series {
 public:
  Series(absl::Duration bin, absl::Duration span);
  // The index of a new column (or of the existing one with that name).
  int Column(const std::string& name);
  void Add(int column, absl::Time t, double v);
  // Adds `rate` per second of overlap between [from, to) and each bin.
  void AddInterval(int column, absl::Time from, absl::Time to, double rate = 1);
  double at(int column, int bin) const { return columns_[column][bin]; }
  int bins() const { return bins_; }
  absl::Duration bin() const { return bin_; }
  const std::vector<std::string>& names() const { return names_; }

 private:
  absl::Duration bin_;
  int bins_;
  std::vector<std::string> names_;
  std::vector<std::vector<double>> columns_;
};

// --- The workload model ---------------------------------------------------------------

enum class Trigger : uint8_t { kQueue = 0, kEvent = 1, kTimer = 2 };
std::string_view TriggerName(Trigger t);

// One function of the model.
struct FunctionSpec {
  std::string name;
  Trigger trigger = Trigger::kQueue;
  QuotaClass quota = QuotaClass::kReserved;
  double weight = 0;    // its share of its trigger class's calls
  double median_s = 1;  // execution time: lognormal(median, sigma), capped
  double sigma = 1;
  double mean_s = 1;       // of the capped distribution, estimated
  double jit_mib = 10;     // JIT code it leaves in a worker's memory
  absl::Duration window;   // deadline - start
  std::string downstream;  // a downstream service it calls, or ""
};

struct WorkloadOptions {
  int functions = 200;
  // Received calls per second, averaged over a day.
  double calls_per_second = 5;
  // Received peak / trough of the diurnal curve (1: flat), and the hour of the peak.
  double peak_trough = 4.3;
  double peak_hour = 14;
  // Peak / trough of the reserved calls alone (Fig 11: reserved CPU 0.72-1.0
  // of its peak, 1.4x). Reserved calls run as they arrive, so their CPU swing
  // is their arrival swing; the delay-tolerant opportunistic calls carry the
  // rest of the received curve's swing, so the two add up to `peak_trough`.
  double reserved_peak_trough = 1.4;
  // Table 1: shares of functions and of calls by trigger (queue, event, timer).
  std::array<double, 3> function_share = {0.89, 0.08, 0.03};
  std::array<double, 3> call_share = {0.15, 0.845, 0.005};
  // Table 3: P50 / P99 execution time by trigger, seconds.
  std::array<double, 3> p50_s = {2.652, 0.097, 3.625};
  std::array<double, 3> p99_s = {266, 11.2, 659};
  double max_duration_s = 900;
  // The share of calls (by function, drawn per function) on the reserved
  // quota; the rest are opportunistic.
  double reserved_call_share = 0.35;
  // Deadline windows: reserved calls 10 s .. 15 min, opportunistic 1 h .. 24 h
  // (most 24 h), log-uniform between the bounds.
  double opportunistic_24h_share = 0.7;
  // Popularity within a trigger class: Zipf exponent.
  double zipf = 1.0;
  // JIT code per function: lognormal, median in MiB.
  double jit_median_mib = 8;
  // Every function calls `downstream` with this probability ("" = none).
  std::string downstream;
  double downstream_share = 0;
};

class Workload {
 public:
  Workload(const WorkloadOptions& options, uint64_t seed);

  const std::vector<FunctionSpec>& functions() const { return functions_; }
  const FunctionSpec& spec(int f) const { return functions_[f]; }
  // The function named `name` (a "fNNNNN" name), or -1.
  int IndexOf(std::string_view name) const;
  // The received rate at `t` relative to the daily mean (the diurnal curve).
  double DiurnalFactor(absl::Time t) const { return DiurnalFactor(t, options_.peak_trough); }
  // The same for a curve of the given peak / trough (same peak hour).
  double DiurnalFactor(absl::Time t, double peak_trough) const;
  // Draws the calls received in [from, from + step): each with a function,
  // start_after in the step, a deadline, and its execution time in args.
  void Arrivals(absl::Time from, absl::Duration step, double rate_scale, std::vector<Call>* out);
  // One call of function `f` starting at `start` (its execution time drawn).
  Call MakeCall(int f, absl::Time start);
  // The execution time drawn for `call` (carried in its args).
  static absl::Duration DurationOf(const Call& call);
  // The mean CPU-seconds per received call, over the mix.
  double MeanCostSeconds() const;
  std::mt19937_64& rng() { return rng_; }
  void set_calls_per_second(double r) { options_.calls_per_second = r; }
  const WorkloadOptions& options() const { return options_; }

 private:
  WorkloadOptions options_;
  std::mt19937_64 rng_;
  std::vector<FunctionSpec> functions_;
  absl::flat_hash_map<std::string, int> index_;
  // Draws `n` calls of the functions in group `g` starting in [from, from + step).
  void Draw(int g, int64_t n, absl::Time from, double step_s, std::vector<Call>* out);

  // Per group (trigger class * 2 + quota class): its functions, their
  // cumulative weights, and the group's share of its trigger class's calls.
  std::array<std::vector<int>, 6> members_;
  std::array<std::vector<double>, 6> cumulative_;
};

// --- A region: queue, submitter, scheduler, workers -----------------------------------

// How a call runs on a model worker: how long it takes and how it ends.
struct Execution {
  absl::Duration duration;
  CallOutcome outcome;
};

// The behaviour of the model workers; scenarios subclass it (downstreams,
// JIT warm-up, memory). The default runs each call for its drawn time.
class CallModel {
 public:
  virtual ~CallModel() = default;
  virtual Execution Start(const Call& call, int worker, absl::Time now);
  // After the call ran (before the scheduler hears of it).
  virtual void Finish(const Call& call, int worker, absl::Time start, absl::Time now) {}
};

struct RegionOptions {
  std::string name = "r0";
  int workers = 4;
  int slots = 8;  // per worker
  int shards = 1;
  // Workers are spread over these locality groups (round robin); empty: one group.
  std::vector<std::string> groups;
  SchedulerConfig config;
  // The scheduler's knobs the simulator sets (the rest are the library's defaults).
  absl::Duration poll_interval = absl::Seconds(1);
  absl::Duration max_poll_interval = absl::Seconds(5);
  size_t lease_batch = 64;
  // A poll leases up to this many calls per slot when that is more than
  // lease_batch (big regions).
  double lease_per_slot = 0.125;
  size_t max_buffered = 1024;
  size_t max_buffered_per_function = 32;
  size_t run_queue_target = 0;  // 0: the region's slot count
  absl::Duration release_delay = absl::Seconds(60);
  absl::Duration max_release_delay = absl::Minutes(10);  // raised to release_delay if below
  UtilizationControllerOptions utilization;
  CallScheduler::WorkerPick worker_pick = CallScheduler::WorkerPick::kPowerOfTwoChoices;
  // A finished call wakes the scheduler at the next multiple of this.
  absl::Duration tick_quantum = absl::Milliseconds(200);
  // How often the region reports its utilization to the scheduler.
  absl::Duration utilization_period = absl::Seconds(10);
  std::function<absl::StatusOr<SchedulerConfig>()> config_source;
  std::function<absl::StatusOr<SubmitterConfig>()> submitter_config_source;
};

// What a region counts, by quota class where it matters.
struct RegionCounters {
  uint64_t submitted = 0;
  uint64_t started = 0;
  uint64_t finished = 0;
  std::array<uint64_t, 2> late_starts = {0, 0};  // began after the deadline
  std::array<uint64_t, 2> dead_letters = {0, 0};
};

class Region {
 public:
  // `model` (may be null: the default CallModel) must outlive the region.
  Region(EventLoop* loop, VirtualClock* clock, RegionOptions options, CallModel* model,
         uint64_t seed);
  ~Region();
  Region(const Region&) = delete;
  Region& operator=(const Region&) = delete;

  // Submits through the real Submitter and flushes the batch.
  void Submit(std::vector<Call>& calls);
  // Starts the scheduler's ticks and the utilization reports.
  void Start();

  // Replaces worker `w` with a fresh one (a restart): the old one finishes
  // its running calls, the new one (same index) takes new calls.
  void RestartWorker(int w);

  // Busy slots / slots right now.
  double Utilization() const;
  // Calls that began or finished on each worker (by index) so far.
  const std::vector<uint64_t>& worker_finished() const { return worker_finished_; }
  int workers() const { return options_.workers; }
  int slots() const { return options_.workers * options_.slots; }

  // Counts the dead letters by quota class into counters() (call at the end).
  void CountDeadLetters();

  // Records, if set: each start and finish (for series).
  std::function<void(const Call&, int worker, absl::Time start, absl::Time end)> on_finish;
  std::function<void(const Call&, int worker, absl::Time now)> on_start;

  CallScheduler& scheduler() { return *scheduler_; }
  Submitter& submitter() { return *submitter_; }
  InMemoryQueue& queue() { return queue_; }
  const RegionCounters& counters() const { return counters_; }
  const RegionOptions& options() const { return options_; }

 private:
  class ModelWorker;
  void WakeAt(absl::Time t);
  void DoTick();

  EventLoop* const loop_;
  VirtualClock* const clock_;
  RegionOptions options_;
  CallModel default_model_;
  CallModel* model_;
  InMemoryQueue queue_;
  std::unique_ptr<Submitter> submitter_;
  std::unique_ptr<CallScheduler> scheduler_;
  std::vector<std::shared_ptr<ModelWorker>> workers_;
  std::vector<int> generation_;  // restarts per worker
  std::vector<uint64_t> worker_finished_;
  int busy_ = 0;
  absl::Time next_tick_ = absl::InfiniteFuture();
  RegionCounters counters_;
};

// --- Small helpers ------------------------------------------------------------------

// The q-quantile (0..1) of `v` (copied and partially sorted); 0 when empty.
double Quantile(std::vector<double> v, double q);
// Pearson correlation of two equally long series; 0 when degenerate.
double Correlation(const std::vector<double>& a, const std::vector<double>& b);

}  // namespace txfn::sim

#endif  // TXFN_TOOLS_SIM_SIM_H_

// txfn/call_scheduler.h — moves due calls from the durable queue to workers,
// in order of importance, within quotas and limits (XFaaS's scheduler).
//
// Each Tick():
//   1. settles the calls that finished since the last tick, one Settle per
//      shard: ok -> ACK (and the spilled arguments are deleted); retryable
//      error or back-pressure -> NACK with the call's backoff (the queue
//      dead-letters it when its attempts are used up, and so does the
//      scheduler when the retry would start after the deadline); permanent
//      error -> dead letter;
//   2. moves calls from the per-function FuncBuffers (ordered by criticality,
//      then deadline) to the RunQ, each admitted only when its function's
//      limits allow: the concurrency limit, every downstream's AIMD limiter,
//      and its quota — reserved (a token bucket at RPS = CPU quota / measured
//      average CPU per call) or opportunistic (r0 * S, S set by the
//      UtilizationController, and only onto an idle worker slot of its group,
//      one that no RunQ call claims; an opportunistic call whose deadline is
//      near is admitted regardless, so time-shifting never makes it late);
//   3. dispatches RunQ calls — the most critical first, then the earliest
//      deadline — to workers of the function's locality group, picking a
//      worker by power-of-two choices or bounded-load rendezvous;
//      a buffer blocked by its quota or a limit keeps only what it can run
//      soon and releases the rest to the queue (time-shifting them there);
//   4. leases more due calls from its shards, reserved calls first and on
//      their own (LeaseRequest::quota), so a time-shifted opportunistic
//      backlog that became due earlier never delays them — only while the
//      buffers and the RunQ are under their bounds. A RunQ over its target stops the moves
//      and backs off the polling, so a spike's backlog stays in the durable
//      queue and the scheduler's memory stays bounded;
//   5. extends the leases of calls it holds before they expire. A call whose
//      lease expired anyway (an Extend failed or came late) and that a poll
//      leases again while the scheduler still holds it is not run twice: the
//      held call takes the new lease over and settles under it.
//
//   txfn::CallScheduler::Options options{.queue = &queue, .clock = &clock};
//   auto scheduler = *txfn::CallScheduler::Create(options);
//   (void)scheduler->AddWorker("w1", worker, /*slots=*/8);
//   for (;;) { absl::Time next = scheduler->Tick(); /* wait until next or a wake-up */ }
//
// Workers are asynchronous: Worker::Run starts a call and calls `done` once,
// from any thread, when it finished. The scheduler never sleeps and reads
// time only from its Clock, so a simulator drives it on a VirtualClock and
// the same seed gives the same run.
//
// Config (quotas, limits, downstreams, locality groups) comes as versioned
// SchedulerConfig snapshots: ApplyConfig, or a config_source polled on Tick.
// An invalid or older config is refused and the one in force kept; a source
// that fails (the controller is gone) changes nothing: the scheduler keeps
// running on its last good config.
//
// Thread safety: every method may be called from any thread; Tick must not
// run concurrently with itself (callers serialise it). Worker callbacks may
// run on any thread at any time, also after the scheduler is gone (they then
// do nothing). Worker::Run is called with the scheduler's lock held: it must
// not block or call back into the scheduler (calling `done` inline is fine).
#ifndef TXFN_CALL_SCHEDULER_H_
#define TXFN_CALL_SCHEDULER_H_

#include <cstdint>
#include <deque>
#include <functional>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/functional/any_invocable.h"
#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "txfn/blob_store.h"
#include "txfn/call.h"
#include "txfn/clock.h"
#include "txfn/durable_queue.h"
#include "txfn/internal/mutex.h"
#include "txfn/limiters.h"
#include "txfn/locality_groups.h"
#include "txfn/utilization_controller.h"

namespace txfn {

// How a call ended, as a worker reports it.
struct CallOutcome {
  enum class Kind : uint8_t {
    kOk,            // ACK
    kRetryable,     // NACK with backoff
    kBackPressure,  // a downstream pushed back: its AIMD limiter slows, NACK with backoff
    kPermanent,     // dead letter
    kBusy,          // not started (the worker is busy): released, not counted as an attempt
  };
  Kind kind = Kind::kOk;
  absl::Status status;     // why, for the failures
  std::string downstream;  // kBackPressure: the downstream's name
  absl::Duration cpu;      // CPU the call used (feeds the reserved quota's RPS); 0: unknown
  std::optional<absl::Duration> retry_after;  // overrides the retry policy's backoff

  static CallOutcome Ok(absl::Duration cpu = absl::ZeroDuration()) {
    return {Kind::kOk, absl::OkStatus(), {}, cpu, std::nullopt};
  }
  static CallOutcome Retryable(absl::Status s) {
    return {Kind::kRetryable, std::move(s), {}, absl::ZeroDuration(), std::nullopt};
  }
  static CallOutcome BackPressure(std::string downstream, absl::Status s) {
    return {Kind::kBackPressure, std::move(s), std::move(downstream), absl::ZeroDuration(),
            std::nullopt};
  }
  static CallOutcome Permanent(absl::Status s) {
    return {Kind::kPermanent, std::move(s), {}, absl::ZeroDuration(), std::nullopt};
  }
  // Due again after `retry_after` (a worker at a per-tenant cap, a full
  // queue): the delivery does not count as an attempt.
  static CallOutcome Busy(absl::Status s, absl::Duration retry_after) {
    return {Kind::kBusy, std::move(s), {}, absl::ZeroDuration(), retry_after};
  }
};

// Runs calls. Implementations: the engine's runner (next issue), the
// simulator's model workers, test fakes.
class Worker {
 public:
  using Done = absl::AnyInvocable<void(CallOutcome) &&>;
  virtual ~Worker() = default;
  // Starts `call` (its arguments loaded, never spilled). Must call `done`
  // exactly once, from any thread, possibly before Run returns. Must not
  // block (see the file comment).
  virtual void Run(const Call& call, Done done) = 0;
};

// One function's quotas and limits.
struct FunctionConfig {
  // Reserved quota in CPU-seconds per second; its rate limit is this divided
  // by the measured average CPU per call. Infinity: unlimited.
  double reserved_cpu_quota = std::numeric_limits<double>::infinity();
  // Opportunistic calls per second at S = 1 (r0). Infinity: unlimited.
  double opportunistic_rate = std::numeric_limits<double>::infinity();
  // Calls of the function running at once.
  int64_t concurrency_limit = std::numeric_limits<int64_t>::max();
  // Downstream services it calls; each one's AIMD limiter must admit a call.
  std::vector<std::string> downstreams;
  // CPU per call assumed until measured.
  absl::Duration initial_cost = absl::Milliseconds(10);
};

// A versioned snapshot from the controllers.
struct SchedulerConfig {
  uint64_t version = 0;
  FunctionConfig default_function;                             // functions without an entry
  absl::flat_hash_map<std::string, FunctionConfig> functions;  // by function name
  AimdOptions default_downstream;                              // downstreams without an entry
  absl::flat_hash_map<std::string, AimdOptions> downstreams;   // by downstream name
  // Locality groups: which group runs which function. Empty groups: one group
  // of every worker. Workers name their group in AddWorker.
  LocalityPlan locality;
};

// Checks names, rates, limits and AIMD options. InvalidArgument naming the
// entry and field.
[[nodiscard]] absl::Status ValidateSchedulerConfig(const SchedulerConfig& config);

struct SchedulerStats {
  uint64_t leased = 0;      // calls taken from the queue
  uint64_t dispatched = 0;  // calls given to workers
  uint64_t acked = 0;
  uint64_t nacked = 0;
  uint64_t dead_lettered = 0;   // by the scheduler (permanent, deadline, last attempt failed)
  uint64_t released = 0;        // buffered calls given back unstarted (time-shifted, drained)
  uint64_t back_pressure = 0;   // outcomes
  uint64_t settle_refused = 0;  // settlements the queue refused (stale leases)
  uint64_t queue_errors = 0;    // Lease/Settle/Extend calls that failed
  uint64_t lost_leases = 0;     // buffered calls dropped because their lease could not be extended
  // Calls leased again while still held (their lease had expired: an Extend failed or came
  // late): the scheduler settles them under the new lease rather than running them twice.
  uint64_t leases_adopted = 0;
  uint64_t promoted = 0;  // opportunistic calls admitted for their near deadline
  uint64_t polls = 0;
  uint64_t polls_skipped = 0;  // by flow control
  size_t buffered = 0;         // in FuncBuffers now
  size_t run_queue = 0;        // in the RunQ now
  size_t in_flight = 0;        // running on workers now
  size_t max_buffered = 0;     // the largest seen
  size_t max_run_queue = 0;
  size_t worker_slots = 0;
  size_t functions = 0;            // function states kept (Options::forget_idle_functions)
  double opportunistic_share = 1;  // S
  uint64_t config_version = 0;
  uint64_t config_failures = 0;
};

class CallScheduler {
 public:
  enum class WorkerPick { kPowerOfTwoChoices, kRendezvous };
  // What a tenant at max_running_per_tenant keeps buffered, in multiples of
  // that limit (see Options::max_running_per_tenant).
  static constexpr int64_t kTenantBufferFactor = 16;

  struct Options {
    DurableQueue* queue = nullptr;  // required, outlives the scheduler
    const Clock* clock = nullptr;   // required, outlives the scheduler
    BlobStore* blobs = nullptr;     // where spilled arguments are; null: none are
    // The shards to poll; empty = all of the queue's.
    std::vector<int> shards;
    absl::Duration lease_duration = absl::Seconds(60);
    size_t lease_batch = 256;  // calls per Lease
    // Flow control: the most calls held in FuncBuffers, and the RunQ's target.
    // Reserved calls are leased while fewer than max_buffered reserved calls
    // are held, whatever the opportunistic ones hold (so up to twice as many
    // in all); opportunistic calls only while all buffered calls are fewer.
    size_t max_buffered = 4096;
    size_t run_queue_target = 512;
    // Polling: every poll_interval while there is room; doubled (up to
    // max_poll_interval) while the RunQ is at its target or a poll came back empty.
    absl::Duration poll_interval = absl::Milliseconds(10);
    absl::Duration max_poll_interval = absl::Seconds(1);
    // An opportunistic call is admitted regardless of S once its deadline is
    // this close (plus its function's average cost).
    absl::Duration opportunistic_deadline_slack = absl::Minutes(5);
    // A buffer blocked by a limit keeps at most max_buffered_per_function
    // calls (blocked by its quota: what the quota admits in release_delay)
    // and releases the rest to the queue, due again after release_delay (an
    // opportunistic call no later than its deadline minus the slack). The
    // release does not count as an attempt. So time-shifted work waits in the
    // durable queue, and a blocked function cannot fill the buffers that
    // other functions' calls need.
    size_t max_buffered_per_function = 256;
    absl::Duration release_delay = absl::Seconds(10);
    // A buffer blocked by a downstream's AIMD limit keeps only its share of
    // what the limit admits in release_delay, and of half of max_buffered at
    // most (at least one call): the downstream is shared, and its callers'
    // buffers together must not fill max_buffered and stop the polls that
    // bring every other function's calls. The rest go back to the queue
    // paced at the downstream's current rate, after the calls released for
    // it before (so they come back about as fast as the limit admits them,
    // not all at once ahead of newer calls), at the earliest after
    // poll_interval. A call the pace would put later than max_release_delay
    // comes back at a random time between release_delay and
    // max_release_delay instead, so a backlog parked during an outage is
    // back within max_release_delay once the downstream recovers.
    absl::Duration max_release_delay = absl::Minutes(5);
    // The reserved quota's burst, in seconds of its rate.
    absl::Duration quota_burst = absl::Seconds(1);
    WorkerPick worker_pick = WorkerPick::kPowerOfTwoChoices;
    uint64_t seed = 1;  // for power-of-two choices
    SchedulerConfig config;
    std::function<absl::StatusOr<SchedulerConfig>()> config_source;
    absl::Duration config_poll_interval = absl::Seconds(10);
    UtilizationControllerOptions utilization;
    // Called (from any thread, without the scheduler's lock) when a worker
    // finished a call, so a host can Tick early. May be empty.
    std::function<void()> wakeup;
    // A function's identity for its buffer, quotas and limits (and its key
    // in SchedulerConfig::functions): the call's function name, or with
    // this set "tenant/function" (tenants whose functions share names, as
    // the engine's, each get their own).
    bool key_functions_by_tenant = false;
    // Calls of one tenant (Call::tenant) admitted at once (in the RunQ or
    // running); 0 = no limit. A tenant at its limit waits in its buffers, and
    // other tenants' calls are moved past it, so one tenant's backlog never
    // takes every worker slot. Its buffers keep kTenantBufferFactor times the
    // limit together (max_buffered_per_function each, and the buffers of all
    // tenants at their limit half of max_buffered): enough to start its next
    // calls the moment its running ones end. The scheduler leases by tenant
    // to keep to that: a lease takes at most half of it of one tenant
    // (LeaseRequest::max_per_tenant) and skips the tenants whose buffers hold
    // half already (LeaseRequest::skip_tenants); a skipped tenant that falls
    // below half is polled for at once. So a tenant's backlog of any size
    // waits in the queue, due and in order, neither filling the buffers nor
    // standing in front of other tenants' newer calls, and runs at the
    // tenant's limit from its first call to its last. (Should the buffers'
    // share shrink, as more tenants reach their limit, the excess goes back
    // to the queue due at once, not counted as an attempt.) A buffer waits
    // at its head, and without key_functions_by_tenant one buffer may hold
    // several tenants' calls: set it.
    int64_t max_running_per_tenant = 0;
    // The state of a function that is not in SchedulerConfig::functions (its
    // measured cost, quota buckets, pace) is forgotten once it has held no
    // call for this long, and made afresh if its calls come back; 0 = kept
    // for the scheduler's life. A host whose function names come from
    // tenants (the engine: 10 min) sets it, so that names used once do not
    // pile up.
    absl::Duration forget_idle_functions = absl::ZeroDuration();
  };

  // InvalidArgument for a missing queue or clock, a shard out of range, a
  // zero bound or batch, non-positive durations, a negative release_delay or
  // a max_release_delay below it, bad utilization options or an invalid
  // initial config.
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<CallScheduler>> Create(Options options);
  // Calls still running finish into nothing: their leases expire and the
  // queue hands them out again (at-least-once). Call Drain() first for a
  // graceful stop.
  ~CallScheduler();
  CallScheduler(const CallScheduler&) = delete;
  CallScheduler& operator=(const CallScheduler&) = delete;

  // Adds a worker with `slots` concurrent calls, in locality group `group`
  // ("" = the default group). InvalidArgument: null worker, slots < 1, empty
  // id; AlreadyExists: the id is taken.
  [[nodiscard]] absl::Status AddWorker(std::string id, std::shared_ptr<Worker> worker, int slots,
                                       const std::string& group = "");
  // No more calls go to the worker; its running calls still settle. NotFound.
  [[nodiscard]] absl::Status RemoveWorker(std::string_view id);

  // One round of the loop above. Returns when the scheduler wants the next
  // Tick (sooner is always fine; a finished call also warrants one).
  absl::Time Tick();

  // Makes the next Tick poll the queue, however far idle polls have backed
  // off (up to max_poll_interval): a host that has just enqueued calls that
  // are due calls it, then wakes its loop, so they start at once.
  void PollSoon();

  // Stops polling and NACKs every buffered and queued call (due at once, for
  // another scheduler); running calls still settle on later Ticks.
  void Drain();

  // A utilization sample of the workers (busy / capacity, in [0, 1]); moves
  // the opportunistic share S.
  void ReportUtilization(double utilization);
  // Sets S directly (a central controller's value), clamped to [0, 1].
  void SetOpportunisticShare(double share);

  // See SchedulerConfig / the file comment. FailedPrecondition for a version
  // not newer than the one in force; InvalidArgument for an invalid config.
  [[nodiscard]] absl::Status ApplyConfig(const SchedulerConfig& config);

  [[nodiscard]] SchedulerStats stats() const;
  // The AIMD limit of a downstream in calls per second (nullopt before its
  // first use).
  [[nodiscard]] std::optional<double> DownstreamRate(std::string_view downstream) const;

 private:
  struct Held;
  struct FunctionState;
  struct Downstream;
  struct WorkerSlot;
  struct Group;
  class Sink;

  explicit CallScheduler(Options options);

  void ProcessCompletions(absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Move(absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Dispatch(absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Poll(absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Makes the next Tick poll, whatever the backoff (PollSoon, Unbuffered).
  void PollNextTick() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void ExtendLeases(absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void MaybePollConfig(absl::Time now);
  void InstallConfig(const SchedulerConfig& config, absl::Time now)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  FunctionState& StateFor(const std::string& function, absl::Time now)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  Downstream& DownstreamFor(const std::string& name, absl::Time now)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Points fs.downstreams at those fs.config names, keeping each
  // downstream's count of callers.
  void BindDownstreams(FunctionState& fs, absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  enum class Admission {
    kAdmitted,
    kBlockedByLimit,       // its concurrency limit
    kBlockedByDownstream,  // a downstream's AIMD limit
    kBlockedByQuota,
    kBlockedByTenant,
  };
  void ReleaseTenantSlot(Held& held) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Takes the limits `held` needs (all or none) if they allow.
  // `idle_slot`: the function's group has a free slot no RunQ call claims
  // (opportunistic calls need one). Sets *blocked_by to the downstream
  // whose limit refused it (kBlockedByDownstream).
  Admission Admit(FunctionState& fs, Held& held, bool idle_slot, absl::Time now,
                  Downstream** blocked_by) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Per group: free worker slots minus the calls waiting in its RunQ.
  std::vector<int64_t> IdleSlots() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // A blocked buffer keeps what it can run soon and releases the rest
  // (`downstream`: the one that blocked it, for kBlockedByDownstream).
  void ReleaseExcess(FunctionState& fs, int quota, Admission why, Downstream* downstream,
                     absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // A buffer of a tenant at max_running_per_tenant keeps `keep` calls and
  // releases the rest, due again now: the polls skip the tenant until it has
  // room (see Poll). Returns how many calls it kept.
  size_t ReleaseTenantExcess(FunctionState& fs, int quota, size_t keep, absl::Time now)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The one loop of both releases: all but `keep` calls of a buffer go back
  // to the queue, the next to run first, each due again when `due_again`
  // says (nullopt: it stays after all). Returns how many calls it holds then.
  size_t ReleaseAllBut(FunctionState& fs, int quota, size_t keep,
                       absl::FunctionRef<std::optional<absl::Time>(const Held&)> due_again)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // What the buffers of one tenant at its limit may keep together now, and
  // the worker slots its released calls are paced by.
  // What the buffers of a tenant at max_running_per_tenant keep together.
  size_t TenantKeep() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Counts a call into or out of its tenant's buffered calls (with
  // max_running_per_tenant). A tenant the last poll skipped that falls below
  // the skipping threshold makes the next tick poll.
  // Buffered returns the tenant's count after it (0 without the limit).
  size_t Buffered(const Held& held) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Unbuffered(const Held& held) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The index of the RunQ call to dispatch next with max_running_per_tenant
  // (see Dispatch).
  size_t FairestInRunQueue(const std::vector<Held*>& run_queue) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Drops the functions idle for Options::forget_idle_functions.
  void ForgetIdleFunctions(absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // When the next call held back by a limit that admits `rate` calls a
  // second is due again, after the calls released for it before, whose pace
  // `next_release` keeps (see max_release_delay).
  absl::Time PacedRelease(absl::Time& next_release, double rate, absl::Time now)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  int GroupIndex(const std::string& name) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Settle(Held& held, Settlement settlement) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void FlushSettlements(absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Forget(const CallId& id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // `held`, whose lease expired, takes over `lease`, a new lease of the same call.
  void AdoptLease(Held& held, LeasedCall lease) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void ApplyShare(double share, absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const Options options_;
  std::shared_ptr<Sink> sink_;  // completions from workers; outlives us if they do

  mutable internal::Mutex mu_;
  SchedulerConfig config_ ABSL_GUARDED_BY(mu_);
  UtilizationController utilization_ ABSL_GUARDED_BY(mu_);
  double share_ ABSL_GUARDED_BY(mu_) = 1;
  std::vector<int> shards_;  // polled, fixed at creation
  size_t next_shard_ ABSL_GUARDED_BY(mu_) = 0;
  // Polls back off (their interval doubles) while they find nothing or may not move calls.
  PeriodicTimer poll_ ABSL_GUARDED_BY(mu_){absl::InfinitePast(), absl::ZeroDuration()};
  PeriodicTimer extend_ ABSL_GUARDED_BY(mu_){absl::InfinitePast(), absl::ZeroDuration()};
  PeriodicTimer forget_ ABSL_GUARDED_BY(mu_){absl::InfinitePast(), absl::ZeroDuration()};
  PeriodicTimer config_poll_ ABSL_GUARDED_BY(mu_){absl::InfinitePast(), absl::ZeroDuration()};
  bool draining_ ABSL_GUARDED_BY(mu_) = false;

  // Every call the scheduler holds a lease on, by id.
  absl::flat_hash_map<CallId, std::unique_ptr<Held>> held_ ABSL_GUARDED_BY(mu_);
  // Function states in creation order (a deterministic iteration order).
  std::vector<std::unique_ptr<FunctionState>> functions_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, FunctionState*> function_index_ ABSL_GUARDED_BY(mu_);
  std::vector<std::unique_ptr<Downstream>> downstreams_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, Downstream*> downstream_index_ ABSL_GUARDED_BY(mu_);
  std::vector<std::unique_ptr<Group>> groups_ ABSL_GUARDED_BY(mu_);  // [0] = the default ""
  std::vector<std::unique_ptr<WorkerSlot>> workers_ ABSL_GUARDED_BY(mu_);
  std::mt19937_64 rng_ ABSL_GUARDED_BY(mu_);
  // Settlements gathered during a tick, per shard.
  std::map<int, std::vector<std::pair<Settlement, Held*>>> settle_ ABSL_GUARDED_BY(mu_);
  SchedulerStats stats_ ABSL_GUARDED_BY(mu_);
  // stats_.buffered by quota class (reserved calls have room of their own).
  size_t buffered_[2] ABSL_GUARDED_BY(mu_) = {0, 0};
  // Admitted calls per tenant (max_running_per_tenant), only while non-zero.
  absl::flat_hash_map<std::string, int64_t> tenant_admitted_ ABSL_GUARDED_BY(mu_);
  // Buffered calls per tenant (max_running_per_tenant), only while non-zero.
  absl::flat_hash_map<std::string, size_t> tenant_buffered_ ABSL_GUARDED_BY(mu_);
  // The tenants the last poll skipped (LeaseRequest::skip_tenants) while they
  // still count, and from how many buffered calls a tenant is skipped.
  absl::flat_hash_set<std::string> tenants_skipped_ ABSL_GUARDED_BY(mu_);
  size_t tenant_skip_at_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace txfn

#endif  // TXFN_CALL_SCHEDULER_H_

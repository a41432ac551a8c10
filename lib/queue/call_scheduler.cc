// CallScheduler; see txfn/call_scheduler.h.
#include "txfn/call_scheduler.h"

#include <algorithm>
#include <cmath>
#include <string>
#include <utility>
#include <vector>

#include "txfn/internal/strings.h"
#include "txfn/rendezvous_router.h"
#include "txfn/status_macros.h"

namespace txfn {
namespace {

using internal::StrCat;

constexpr int kReserved = static_cast<int>(QuotaClass::kReserved);
constexpr int kOpportunistic = static_cast<int>(QuotaClass::kOpportunistic);

double BucketBurst(double rate, absl::Duration burst) {
  return std::max(1.0, rate * absl::ToDoubleSeconds(burst));
}

// r0 * S, with an unlimited r0 and S = 0 meaning "none" (not NaN).
double OpportunisticRate(double r0, double share) { return share <= 0 ? 0 : r0 * share; }

absl::Status CheckRate(std::string_view what, double v) {
  if (std::isnan(v) || v < 0) {
    return absl::InvalidArgumentError(StrCat("SchedulerConfig: ", what, " must be >= 0, not ", v));
  }
  return absl::OkStatus();
}

absl::Status CheckFunction(std::string_view name, const FunctionConfig& f) {
  TXFN_RETURN_IF_ERROR(CheckRate(StrCat(name, ".reserved_cpu_quota"), f.reserved_cpu_quota));
  TXFN_RETURN_IF_ERROR(CheckRate(StrCat(name, ".opportunistic_rate"), f.opportunistic_rate));
  if (f.concurrency_limit < 0) {
    return absl::InvalidArgumentError(StrCat(
        "SchedulerConfig: ", name, ".concurrency_limit must be >= 0, not ", f.concurrency_limit));
  }
  if (f.initial_cost <= absl::ZeroDuration() || f.initial_cost > absl::Hours(24)) {
    return absl::InvalidArgumentError(
        StrCat("SchedulerConfig: ", name, ".initial_cost must be in (0, 24h]"));
  }
  for (const std::string& d : f.downstreams) {
    if (d.empty() || d.size() > 128) {
      return absl::InvalidArgumentError(
          StrCat("SchedulerConfig: ", name, " names a downstream that is empty or over 128 bytes"));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status ValidateSchedulerConfig(const SchedulerConfig& c) {
  TXFN_RETURN_IF_ERROR(CheckFunction("default_function", c.default_function));
  for (const auto& [name, f] : c.functions) {
    if (absl::Status s = ValidateFunctionName(name); !s.ok()) {
      return absl::InvalidArgumentError(StrCat("SchedulerConfig: ", s.message()));
    }
    TXFN_RETURN_IF_ERROR(CheckFunction(StrCat("function '", name, "'"), f));
  }
  const absl::Time t = absl::UnixEpoch();
  if (absl::Status s = AimdLimiter::Create(c.default_downstream, t).status(); !s.ok()) {
    return absl::InvalidArgumentError(StrCat("SchedulerConfig: default_downstream: ", s.message()));
  }
  for (const auto& [name, o] : c.downstreams) {
    if (name.empty()) return absl::InvalidArgumentError("SchedulerConfig: a downstream is unnamed");
    if (absl::Status s = AimdLimiter::Create(o, t).status(); !s.ok()) {
      return absl::InvalidArgumentError(
          StrCat("SchedulerConfig: downstream '", name, "': ", s.message()));
    }
  }
  for (const std::string& g : c.locality.groups) {
    if (g.empty())
      return absl::InvalidArgumentError("SchedulerConfig: a locality group is unnamed");
  }
  for (const auto& [fn, g] : c.locality.function_group) {
    if (g < 0 || g >= static_cast<int>(c.locality.groups.size())) {
      return absl::InvalidArgumentError(StrCat("SchedulerConfig: locality: function '", fn,
                                               "' is in group ", g, ", which does not exist"));
    }
  }
  return absl::OkStatus();
}

// --- Internal state ------------------------------------------------------------

struct CallScheduler::Held {
  LeasedCall leased;
  FunctionState* fs = nullptr;
  enum class Where : uint8_t { kBuffer, kRunQ, kRunning, kSettling } where = Where::kBuffer;
  bool lost = false;                  // its lease could not be extended: someone else may own it
  bool concurrency = false;           // holds a concurrency slot
  std::vector<Downstream*> acquired;  // holds a slot of each
  int worker = -1;

  const Call& call() const { return leased.call; }
};

namespace {
// Heap order for a FuncBuffer: the "largest" is the next to run — higher
// criticality, then earlier deadline, then earlier start, then id.
template <typename H>
bool RunsLater(const H* a, const H* b) {
  const Call& x = a->call();
  const Call& y = b->call();
  if (x.criticality != y.criticality) return x.criticality < y.criticality;
  if (x.deadline != y.deadline) return x.deadline > y.deadline;
  if (x.start_after != y.start_after) return x.start_after > y.start_after;
  return x.id > y.id;
}
}  // namespace

struct CallScheduler::Downstream {
  std::string name;
  AimdLimiter aimd;
};

struct CallScheduler::FunctionState {
  std::string name;
  FunctionConfig config;
  int group = 0;
  std::vector<Held*> buffer[2];  // heaps (RunsLater), by quota class
  TokenBucket reserved;
  TokenBucket opportunistic;
  ConcurrencyLimiter concurrency;
  std::vector<Downstream*> downstreams;
  double avg_cost_s = 0.01;
};

struct CallScheduler::WorkerSlot {
  std::string id;
  uint64_t hash = 0;
  std::shared_ptr<Worker> worker;
  int slots = 1;
  int in_flight = 0;
  int group = 0;
  bool removed = false;
};

struct CallScheduler::Group {
  std::string name;
  std::vector<int> workers;  // indexes into workers_ (live ones)
  std::deque<Held*> run_queue;
};

// Where workers put outcomes; shared with their callbacks so that a callback
// after the scheduler is gone is harmless.
class CallScheduler::Sink {
 public:
  explicit Sink(std::function<void()> wakeup) : wakeup_(std::move(wakeup)) {}
  void Push(CallId id, CallOutcome outcome) {
    {
      internal::MutexLock lock(&mu_);
      items_.emplace_back(id, std::move(outcome));
    }
    if (wakeup_) wakeup_();
  }
  std::vector<std::pair<CallId, CallOutcome>> TakeAll() {
    internal::MutexLock lock(&mu_);
    std::vector<std::pair<CallId, CallOutcome>> out;
    out.swap(items_);
    return out;
  }

 private:
  const std::function<void()> wakeup_;
  internal::Mutex mu_;
  std::vector<std::pair<CallId, CallOutcome>> items_ ABSL_GUARDED_BY(mu_);
};

// --- Creation and configuration ----------------------------------------------------

absl::StatusOr<std::unique_ptr<CallScheduler>> CallScheduler::Create(Options o) {
  if (o.queue == nullptr) return absl::InvalidArgumentError("CallScheduler: the queue is null");
  if (o.clock == nullptr) return absl::InvalidArgumentError("CallScheduler: the clock is null");
  for (int s : o.shards) {
    if (s < 0 || s >= o.queue->shard_count()) {
      return absl::InvalidArgumentError(StrCat("CallScheduler: shard ", s,
                                               " is out of range (the queue has ",
                                               o.queue->shard_count(), ")"));
    }
  }
  if (absl::Status s = ValidateLeaseDuration(o.lease_duration); !s.ok()) {
    return absl::InvalidArgumentError(StrCat("CallScheduler: ", s.message()));
  }
  if (o.lease_batch == 0 || o.lease_batch > DurableQueue::kMaxLeaseBatch) {
    return absl::InvalidArgumentError(StrCat("CallScheduler: lease_batch must be in [1, ",
                                             DurableQueue::kMaxLeaseBatch, "], not ",
                                             o.lease_batch));
  }
  if (o.max_buffered == 0 || o.run_queue_target == 0) {
    return absl::InvalidArgumentError(
        "CallScheduler: max_buffered and run_queue_target must be >= 1");
  }
  if (o.poll_interval <= absl::ZeroDuration() || o.max_poll_interval < o.poll_interval ||
      o.config_poll_interval <= absl::ZeroDuration() || o.quota_burst <= absl::ZeroDuration() ||
      o.opportunistic_deadline_slack < absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        "CallScheduler: poll_interval, config_poll_interval and quota_burst must be > 0, "
        "max_poll_interval >= poll_interval, opportunistic_deadline_slack >= 0");
  }
  TXFN_RETURN_IF_ERROR(UtilizationController::Create(o.utilization).status());
  TXFN_RETURN_IF_ERROR(ValidateSchedulerConfig(o.config));
  return std::unique_ptr<CallScheduler>(new CallScheduler(std::move(o)));
}

CallScheduler::CallScheduler(Options options)
    : options_(std::move(options)),
      sink_(std::make_shared<Sink>(options_.wakeup)),
      utilization_(*UtilizationController::Create(options_.utilization)),
      rng_(options_.seed) {
  const absl::Time now = options_.clock->Now();
  shards_ = options_.shards;
  if (shards_.empty()) {
    for (int s = 0; s < options_.queue->shard_count(); ++s) shards_.push_back(s);
  }
  internal::MutexLock lock(&mu_);
  share_ = utilization_.share();
  next_poll_ = now;
  poll_backoff_ = options_.poll_interval;
  next_extend_ = now + options_.lease_duration / 4;
  next_config_poll_ = now;
  groups_.push_back(std::make_unique<Group>());  // the default group ""
  InstallConfig(options_.config, now);
}

CallScheduler::~CallScheduler() = default;

int CallScheduler::GroupIndex(const std::string& name) {
  for (size_t i = 0; i < groups_.size(); ++i) {
    if (groups_[i]->name == name) return static_cast<int>(i);
  }
  groups_.push_back(std::make_unique<Group>());
  groups_.back()->name = name;
  return static_cast<int>(groups_.size() - 1);
}

CallScheduler::Downstream& CallScheduler::DownstreamFor(const std::string& name, absl::Time now) {
  auto it = downstream_index_.find(name);
  if (it != downstream_index_.end()) return *it->second;
  auto o = config_.downstreams.find(name);
  const AimdOptions& options =
      o != config_.downstreams.end() ? o->second : config_.default_downstream;
  downstreams_.push_back(
      std::make_unique<Downstream>(Downstream{name, *AimdLimiter::Create(options, now)}));
  downstream_index_[name] = downstreams_.back().get();
  return *downstreams_.back();
}

CallScheduler::FunctionState& CallScheduler::StateFor(const std::string& function, absl::Time now) {
  auto it = function_index_.find(function);
  if (it != function_index_.end()) return *it->second;
  functions_.push_back(std::make_unique<FunctionState>());
  FunctionState& fs = *functions_.back();
  fs.name = function;
  function_index_[function] = &fs;
  auto c = config_.functions.find(function);
  fs.config = c != config_.functions.end() ? c->second : config_.default_function;
  fs.avg_cost_s = absl::ToDoubleSeconds(fs.config.initial_cost);
  const double reserved = fs.config.reserved_cpu_quota / fs.avg_cost_s;
  const double opportunistic = OpportunisticRate(fs.config.opportunistic_rate, share_);
  fs.reserved = *TokenBucket::Create(reserved, BucketBurst(reserved, options_.quota_burst), now);
  fs.opportunistic =
      *TokenBucket::Create(opportunistic, BucketBurst(opportunistic, options_.quota_burst), now);
  fs.concurrency.SetLimit(fs.config.concurrency_limit);
  for (const std::string& d : fs.config.downstreams) {
    fs.downstreams.push_back(&DownstreamFor(d, now));
  }
  fs.group = config_.locality.groups.empty()
                 ? 0
                 : GroupIndex(config_.locality.groups[config_.locality.GroupOf(function)]);
  return fs;
}

void CallScheduler::InstallConfig(const SchedulerConfig& config, absl::Time now) {
  config_ = config;
  stats_.config_version = config.version;
  for (auto& d : downstreams_) {
    auto o = config_.downstreams.find(d->name);
    const AimdOptions& options =
        o != config_.downstreams.end() ? o->second : config_.default_downstream;
    if (!(options == d->aimd.options())) d->aimd = *AimdLimiter::Create(options, now);
  }
  for (auto& fs_ptr : functions_) {
    FunctionState& fs = *fs_ptr;
    auto c = config_.functions.find(fs.name);
    fs.config = c != config_.functions.end() ? c->second : config_.default_function;
    const double reserved = fs.config.reserved_cpu_quota / fs.avg_cost_s;
    const double opportunistic = OpportunisticRate(fs.config.opportunistic_rate, share_);
    (void)fs.reserved.SetRate(reserved, now);
    (void)fs.reserved.SetBurst(BucketBurst(reserved, options_.quota_burst), now);
    (void)fs.opportunistic.SetRate(opportunistic, now);
    (void)fs.opportunistic.SetBurst(BucketBurst(opportunistic, options_.quota_burst), now);
    fs.concurrency.SetLimit(fs.config.concurrency_limit);
    fs.downstreams.clear();
    for (const std::string& d : fs.config.downstreams) {
      fs.downstreams.push_back(&DownstreamFor(d, now));
    }
    fs.group = config_.locality.groups.empty()
                   ? 0
                   : GroupIndex(config_.locality.groups[config_.locality.GroupOf(fs.name)]);
  }
}

absl::Status CallScheduler::ApplyConfig(const SchedulerConfig& config) {
  TXFN_RETURN_IF_ERROR(ValidateSchedulerConfig(config));
  const absl::Time now = options_.clock->Now();
  internal::MutexLock lock(&mu_);
  if (config.version <= config_.version) {
    return absl::FailedPreconditionError(StrCat("SchedulerConfig version ", config.version,
                                                " is not newer than version ", config_.version,
                                                " in force"));
  }
  InstallConfig(config, now);
  return absl::OkStatus();
}

void CallScheduler::MaybePollConfig(absl::Time now) {
  if (!options_.config_source) return;
  {
    internal::MutexLock lock(&mu_);
    if (now < next_config_poll_) return;
    next_config_poll_ = now + options_.config_poll_interval;
  }
  absl::StatusOr<SchedulerConfig> fetched = options_.config_source();
  absl::Status s = fetched.ok() ? ApplyConfig(*fetched) : fetched.status();
  if (!s.ok() && s.code() != absl::StatusCode::kFailedPrecondition) {
    internal::MutexLock lock(&mu_);
    ++stats_.config_failures;  // the controller is gone or sent nonsense: keep the last config
  }
}

// --- Workers ------------------------------------------------------------------------

absl::Status CallScheduler::AddWorker(std::string id, std::shared_ptr<Worker> worker, int slots,
                                      const std::string& group) {
  if (id.empty()) return absl::InvalidArgumentError("AddWorker: the worker id is empty");
  if (worker == nullptr) {
    return absl::InvalidArgumentError(StrCat("AddWorker: worker '", id, "' is null"));
  }
  if (slots < 1) {
    return absl::InvalidArgumentError(
        StrCat("AddWorker: worker '", id, "' has ", slots, " slots; it needs at least 1"));
  }
  internal::MutexLock lock(&mu_);
  for (const auto& w : workers_) {
    if (w->id == id && !w->removed) {
      return absl::AlreadyExistsError(StrCat("AddWorker: worker '", id, "' exists"));
    }
  }
  auto w = std::make_unique<WorkerSlot>();
  w->hash = RendezvousHash::Of(id);
  w->id = std::move(id);
  w->worker = std::move(worker);
  w->slots = slots;
  w->group = GroupIndex(group);
  groups_[w->group]->workers.push_back(static_cast<int>(workers_.size()));
  stats_.worker_slots += static_cast<size_t>(slots);
  workers_.push_back(std::move(w));
  return absl::OkStatus();
}

absl::Status CallScheduler::RemoveWorker(std::string_view id) {
  internal::MutexLock lock(&mu_);
  for (size_t i = 0; i < workers_.size(); ++i) {
    WorkerSlot& w = *workers_[i];
    if (w.id != id || w.removed) continue;
    w.removed = true;
    auto& list = groups_[w.group]->workers;
    list.erase(std::remove(list.begin(), list.end(), static_cast<int>(i)), list.end());
    stats_.worker_slots -= static_cast<size_t>(w.slots);
    return absl::OkStatus();
  }
  return absl::NotFoundError(StrCat("RemoveWorker: no worker '", id, "'"));
}

// --- The loop -----------------------------------------------------------------------

absl::Time CallScheduler::Tick() {
  const absl::Time now = options_.clock->Now();
  MaybePollConfig(now);
  internal::MutexLock lock(&mu_);
  ProcessCompletions(now);
  ExtendLeases(now);
  Move(now);
  Dispatch(now);
  Poll(now);
  Move(now);
  Dispatch(now);
  FlushSettlements(now);

  absl::Time next = std::min(next_poll_, next_extend_);
  if (options_.config_source) next = std::min(next, next_config_poll_);
  if (stats_.buffered > 0) next = std::min(next, now + options_.poll_interval);
  return std::max(next, now);
}

void CallScheduler::Forget(const CallId& id) { held_.erase(id); }

void CallScheduler::Settle(Held& held, Settlement settlement) {
  // Limits held by an admitted call are freed as soon as it ends.
  if (held.concurrency) {
    held.fs->concurrency.Release();
    held.concurrency = false;
  }
  for (Downstream* d : held.acquired) d->aimd.Release();
  held.acquired.clear();
  held.where = Held::Where::kSettling;
  settle_[held.leased.shard].emplace_back(std::move(settlement), &held);
}

void CallScheduler::FlushSettlements(absl::Time now) {
  std::map<int, std::vector<std::pair<Settlement, Held*>>> retry;
  for (auto& [shard, items] : settle_) {
    std::vector<Settlement> batch;
    batch.reserve(items.size());
    for (const auto& [s, h] : items) batch.push_back(s);
    absl::StatusOr<std::vector<absl::Status>> results = options_.queue->Settle(batch, now);
    if (!results.ok()) {
      // An I/O fault: try again next tick (if the leases expire meanwhile,
      // the queue refuses and another scheduler runs the calls again).
      ++stats_.queue_errors;
      retry[shard] = std::move(items);
      continue;
    }
    for (size_t i = 0; i < items.size(); ++i) {
      const Settlement& s = items[i].first;
      Held* h = items[i].second;
      if ((*results)[i].ok()) {
        switch (s.kind) {
          case Settlement::Kind::kAck:
            ++stats_.acked;
            if (options_.blobs != nullptr && !h->call().args_blob.empty()) {
              (void)options_.blobs->Delete(h->call().args_blob);
            }
            break;
          case Settlement::Kind::kNack:
            ++stats_.nacked;
            break;
          case Settlement::Kind::kDeadLetter:
            ++stats_.dead_lettered;
            break;
          case Settlement::Kind::kRelease:
            ++stats_.released;
            break;
        }
      } else {
        ++stats_.settle_refused;
      }
      Forget(h->leased.call.id);
    }
  }
  settle_ = std::move(retry);
}

void CallScheduler::ProcessCompletions(absl::Time now) {
  for (auto& [id, outcome] : sink_->TakeAll()) {
    auto it = held_.find(id);
    if (it == held_.end() || it->second->where != Held::Where::kRunning) continue;
    Held& h = *it->second;
    if (h.worker >= 0) --workers_[h.worker]->in_flight;
    --stats_.in_flight;
    FunctionState& fs = *h.fs;
    if (outcome.cpu > absl::ZeroDuration()) {
      // The reserved quota's RPS follows the measured cost (EWMA).
      fs.avg_cost_s += 0.2 * (absl::ToDoubleSeconds(outcome.cpu) - fs.avg_cost_s);
      const double rate = fs.config.reserved_cpu_quota / std::max(fs.avg_cost_s, 1e-9);
      (void)fs.reserved.SetRate(rate, now);
      (void)fs.reserved.SetBurst(BucketBurst(rate, options_.quota_burst), now);
    }
    const Call& c = h.call();
    const LeaseToken token = h.leased.token;
    switch (outcome.kind) {
      case CallOutcome::Kind::kOk:
        Settle(h, Settlement::Ack(token));
        break;
      case CallOutcome::Kind::kBackPressure:
        ++stats_.back_pressure;
        if (!outcome.downstream.empty()) {
          DownstreamFor(outcome.downstream, now).aimd.RecordBackPressure(now);
        }
        [[fallthrough]];
      case CallOutcome::Kind::kRetryable: {
        const absl::Time retry_at =
            now + outcome.retry_after.value_or(c.retry.BackoffAfter(c.attempt));
        const std::string reason(outcome.status.message().substr(0, 512));
        if (retry_at >= c.deadline) {
          Settle(h, Settlement::DeadLetter(
                        token, StrCat("the retry would start after the deadline: ", reason)));
        } else {
          Settle(h, Settlement::Nack(token, retry_at, reason));
        }
        break;
      }
      case CallOutcome::Kind::kPermanent:
        Settle(h, Settlement::DeadLetter(
                      token, StrCat("permanent error: ", outcome.status.message().substr(0, 512))));
        break;
    }
  }
}

void CallScheduler::ExtendLeases(absl::Time now) {
  if (now < next_extend_) return;
  next_extend_ = now + options_.lease_duration / 4;
  std::map<int, std::vector<LeaseToken>> due;
  for (const auto& [id, h] : held_) {
    if (h->where == Held::Where::kSettling || h->lost) continue;
    if (h->leased.expires - now < options_.lease_duration / 2) {
      due[h->leased.shard].push_back(h->leased.token);
    }
  }
  for (auto& [shard, tokens] : due) {
    std::sort(tokens.begin(), tokens.end(),
              [](const LeaseToken& a, const LeaseToken& b) { return a.id < b.id; });
    absl::StatusOr<std::vector<absl::Status>> r =
        options_.queue->Extend(tokens, now, options_.lease_duration);
    if (!r.ok()) {
      ++stats_.queue_errors;
      continue;
    }
    for (size_t i = 0; i < tokens.size(); ++i) {
      Held& h = *held_[tokens[i].id];
      if ((*r)[i].ok()) {
        h.leased.expires = now + options_.lease_duration;
      } else {
        h.lost = true;  // dropped when met in a buffer or the RunQ
      }
    }
  }
}

CallScheduler::Admission CallScheduler::Admit(FunctionState& fs, Held& h, absl::Time now) {
  const Call& c = h.call();
  if (!fs.concurrency.TryAcquire()) return Admission::kBlockedByLimit;
  size_t got = 0;
  for (; got < fs.downstreams.size(); ++got) {
    if (!fs.downstreams[got]->aimd.TryAcquire(now)) break;
  }
  bool ok = got == fs.downstreams.size();
  Admission blocked = Admission::kBlockedByLimit;
  bool promoted = false;
  if (ok) {
    blocked = Admission::kBlockedByQuota;
    if (c.quota == QuotaClass::kReserved) {
      ok = fs.reserved.TryAcquire(now);
    } else if (c.deadline - now <=
               options_.opportunistic_deadline_slack + absl::Seconds(fs.avg_cost_s)) {
      promoted = true;  // time-shifted as far as it may go: run it now
    } else {
      ok = fs.opportunistic.TryAcquire(now);
    }
  }
  if (!ok) {
    for (size_t i = 0; i < got; ++i) fs.downstreams[i]->aimd.Refund();
    fs.concurrency.Release();
    return blocked;
  }
  if (promoted) ++stats_.promoted;
  h.concurrency = true;
  h.acquired = fs.downstreams;
  return Admission::kAdmitted;
}

void CallScheduler::ReleaseExcess(FunctionState& fs, int quota, Admission why, absl::Time now) {
  std::vector<Held*>& buf = fs.buffer[quota];
  size_t keep = options_.max_buffered_per_function;
  if (why == Admission::kBlockedByQuota) {
    // Keep what the quota admits until released calls are due again; time-
    // shift the rest back into the durable queue, where waiting costs no
    // memory. (A rate of 0, S = 0, keeps nothing.)
    const TokenBucket& bucket = quota == kReserved ? fs.reserved : fs.opportunistic;
    const double until_back = bucket.rate() * absl::ToDoubleSeconds(options_.release_delay);
    if (until_back < static_cast<double>(keep)) {
      keep = static_cast<size_t>(std::ceil(std::max(until_back, 0.0)));
    }
  }
  if (buf.size() <= keep) return;
  auto later = [](Held* a, Held* b) { return RunsLater(a, b); };
  std::sort_heap(buf.begin(), buf.end(), later);  // ascending: the next to run last
  const size_t release = buf.size() - keep;
  for (size_t i = 0; i < release; ++i) {
    Held* h = buf[i];
    if (h->lost) {
      ++stats_.lost_leases;
      Forget(h->call().id);
      continue;
    }
    // Back in time to run by the deadline: promoted opportunistic calls
    // start at deadline - slack - cost.
    const absl::Time latest =
        h->call().deadline - options_.opportunistic_deadline_slack - absl::Seconds(fs.avg_cost_s);
    const absl::Time retry_at =
        std::max(now + absl::Milliseconds(1), std::min(now + options_.release_delay, latest));
    Settle(*h, Settlement::Release(h->leased.token, retry_at));
  }
  buf.erase(buf.begin(), buf.begin() + static_cast<std::ptrdiff_t>(release));
  std::make_heap(buf.begin(), buf.end(), later);
  stats_.buffered -= release;
}

void CallScheduler::Move(absl::Time now) {
  if (stats_.run_queue >= options_.run_queue_target || stats_.buffered == 0) return;
  // The heads of every non-empty buffer, best first.
  struct Head {
    FunctionState* fs;
    int quota;
  };
  auto worse = [](const Head& a, const Head& b) {
    return RunsLater(a.fs->buffer[a.quota].front(), b.fs->buffer[b.quota].front());
  };
  std::vector<Head> heads;
  for (auto& fs : functions_) {
    for (int q : {kReserved, kOpportunistic}) {
      if (!fs->buffer[q].empty()) heads.push_back({fs.get(), q});
    }
  }
  std::make_heap(heads.begin(), heads.end(), worse);
  while (!heads.empty() && stats_.run_queue < options_.run_queue_target) {
    std::pop_heap(heads.begin(), heads.end(), worse);
    Head head = heads.back();
    heads.pop_back();
    std::vector<Held*>& buf = head.fs->buffer[head.quota];
    Held* h = buf.front();
    bool moved = true;
    Admission admission = Admission::kAdmitted;
    if (h->lost) {
      ++stats_.lost_leases;
      Forget(h->call().id);
    } else if (h->call().deadline <= now) {
      Settle(*h,
             Settlement::DeadLetter(h->leased.token, DeadlineReason(h->call().deadline, now) +
                                                         " (waited in the scheduler's buffer)"));
    } else if ((admission = Admit(*head.fs, *h, now)) == Admission::kAdmitted) {
      h->where = Held::Where::kRunQ;
      groups_[head.fs->group]->run_queue.push_back(h);
      ++stats_.run_queue;
      stats_.max_run_queue = std::max(stats_.max_run_queue, stats_.run_queue);
    } else {
      // Blocked by a limit: the buffer waits for a later tick, holding only
      // what it can run soon.
      moved = false;
      ReleaseExcess(*head.fs, head.quota, admission, now);
    }
    if (!moved) continue;
    std::pop_heap(buf.begin(), buf.end(), [](Held* a, Held* b) { return RunsLater(a, b); });
    buf.pop_back();
    --stats_.buffered;
    if (!buf.empty()) {
      heads.push_back(head);
      std::push_heap(heads.begin(), heads.end(), worse);
    }
  }
}

void CallScheduler::Dispatch(absl::Time now) {
  for (size_t g = 0; g < groups_.size(); ++g) {
    Group& group = *groups_[g];
    // A group without workers borrows the default group's (or anyone's).
    const std::vector<int>* pool = &group.workers;
    std::vector<int> everyone;
    if (pool->empty()) {
      for (size_t i = 0; i < workers_.size(); ++i) {
        if (!workers_[i]->removed) everyone.push_back(static_cast<int>(i));
      }
      pool = &everyone;
    }
    while (!group.run_queue.empty()) {
      Held* h = group.run_queue.front();
      if (h->lost) {
        group.run_queue.pop_front();
        --stats_.run_queue;
        ++stats_.lost_leases;
        if (h->concurrency) h->fs->concurrency.Release();
        for (Downstream* d : h->acquired) d->aimd.Release();
        Forget(h->call().id);
        continue;
      }
      // Pick a worker with a free slot.
      int chosen = -1;
      const size_t n = pool->size();
      if (n == 0) break;
      auto free_slots = [&](int w) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return workers_[w]->slots - workers_[w]->in_flight;
      };
      if (options_.worker_pick == WorkerPick::kRendezvous) {
        const uint64_t key = RendezvousHash::Of(h->fs->name);
        uint64_t best = 0;
        for (int w : *pool) {
          if (free_slots(w) <= 0) continue;
          const uint64_t s = RendezvousHash::Score(key, workers_[w]->hash);
          if (chosen < 0 || s > best) {
            chosen = w;
            best = s;
          }
        }
      } else {
        // Power of two choices: the less loaded of two random workers with
        // room; after a few misses, the first with room.
        for (int attempt = 0; attempt < 4 && chosen < 0; ++attempt) {
          const int a = (*pool)[rng_() % n];
          const int b = (*pool)[rng_() % n];
          const auto load = [&](int w) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
            return static_cast<double>(workers_[w]->in_flight) / workers_[w]->slots;
          };
          const int better = load(a) <= load(b) ? a : b;
          const int other = better == a ? b : a;
          if (free_slots(better) > 0) {
            chosen = better;
          } else if (free_slots(other) > 0) {
            chosen = other;
          }
        }
        if (chosen < 0) {
          for (int w : *pool) {
            if (free_slots(w) > 0) {
              chosen = w;
              break;
            }
          }
        }
      }
      if (chosen < 0) break;  // the group is busy
      group.run_queue.pop_front();
      --stats_.run_queue;
      Call& call = h->leased.call;
      if (!call.args_blob.empty() && call.args.is_null()) {
        absl::StatusOr<std::string> blob =
            options_.blobs != nullptr ? options_.blobs->Get(call.args_blob)
                                      : absl::FailedPreconditionError("no BlobStore configured");
        absl::StatusOr<Value> args =
            blob.ok() ? DecodeBinary(*blob) : absl::StatusOr<Value>(blob.status());
        if (!args.ok()) {
          Settle(*h, Settlement::Nack(h->leased.token, now + call.retry.BackoffAfter(call.attempt),
                                      StrCat("loading the spilled arguments failed: ",
                                             args.status().message())));
          continue;
        }
        call.args = *std::move(args);
      }
      h->where = Held::Where::kRunning;
      h->worker = chosen;
      ++workers_[chosen]->in_flight;
      ++stats_.in_flight;
      ++stats_.dispatched;
      workers_[chosen]->worker->Run(
          call, [sink = sink_, id = call.id](CallOutcome o) { sink->Push(id, std::move(o)); });
    }
  }
}

void CallScheduler::Poll(absl::Time now) {
  if (draining_ || now < next_poll_) return;
  if (stats_.buffered >= options_.max_buffered || stats_.run_queue >= options_.run_queue_target) {
    // Flow control: the backlog stays in the durable queue.
    ++stats_.polls_skipped;
    poll_backoff_ = std::min(poll_backoff_ * 2, options_.max_poll_interval);
    next_poll_ = now + poll_backoff_;
    return;
  }
  ++stats_.polls;
  size_t got = 0;
  for (size_t i = 0; i < shards_.size() && stats_.buffered < options_.max_buffered; ++i) {
    const int shard = shards_[(next_shard_ + i) % shards_.size()];
    const size_t room = options_.max_buffered - stats_.buffered;
    absl::StatusOr<std::vector<LeasedCall>> leased =
        options_.queue->Lease({.shard = shard,
                               .now = now,
                               .max = std::min(options_.lease_batch, room),
                               .lease_duration = options_.lease_duration});
    if (!leased.ok()) {
      ++stats_.queue_errors;
      continue;
    }
    for (LeasedCall& l : *leased) {
      // Still held from an earlier lease that expired (an Extend failed):
      // keep that one; this lease expires and the call comes back later.
      if (held_.contains(l.call.id)) continue;
      auto h = std::make_unique<Held>();
      h->leased = std::move(l);
      FunctionState& fs = StateFor(h->call().function, now);
      h->fs = &fs;
      std::vector<Held*>& buf =
          fs.buffer[static_cast<int>(h->call().quota) == kReserved ? kReserved : kOpportunistic];
      buf.push_back(h.get());
      std::push_heap(buf.begin(), buf.end(), [](Held* a, Held* b) { return RunsLater(a, b); });
      const CallId id = h->call().id;
      held_[id] = std::move(h);
      ++stats_.buffered;
      ++stats_.leased;
      ++got;
    }
  }
  next_shard_ = (next_shard_ + 1) % shards_.size();
  stats_.max_buffered = std::max(stats_.max_buffered, stats_.buffered);
  poll_backoff_ =
      got == 0 ? std::min(poll_backoff_ * 2, options_.max_poll_interval) : options_.poll_interval;
  next_poll_ = now + poll_backoff_;
}

void CallScheduler::Drain() {
  const absl::Time now = options_.clock->Now();
  internal::MutexLock lock(&mu_);
  draining_ = true;
  for (auto& fs : functions_) {
    for (int q : {kReserved, kOpportunistic}) {
      for (Held* h : fs->buffer[q]) Settle(*h, Settlement::Release(h->leased.token, now));
      stats_.buffered -= fs->buffer[q].size();
      fs->buffer[q].clear();
    }
  }
  for (auto& g : groups_) {
    for (Held* h : g->run_queue) Settle(*h, Settlement::Release(h->leased.token, now));
    stats_.run_queue -= g->run_queue.size();
    g->run_queue.clear();
  }
  FlushSettlements(now);
}

void CallScheduler::ApplyShare(double share, absl::Time now) {
  if (share == share_) return;
  share_ = share;
  for (auto& fs : functions_) {
    const double rate = OpportunisticRate(fs->config.opportunistic_rate, share_);
    (void)fs->opportunistic.SetRate(rate, now);
    (void)fs->opportunistic.SetBurst(BucketBurst(rate, options_.quota_burst), now);
  }
}

void CallScheduler::ReportUtilization(double utilization) {
  const absl::Time now = options_.clock->Now();
  internal::MutexLock lock(&mu_);
  ApplyShare(utilization_.Update(utilization), now);
}

void CallScheduler::SetOpportunisticShare(double share) {
  const absl::Time now = options_.clock->Now();
  internal::MutexLock lock(&mu_);
  if (!std::isnan(share)) ApplyShare(std::clamp(share, 0.0, 1.0), now);
}

SchedulerStats CallScheduler::stats() const {
  internal::MutexLock lock(&mu_);
  SchedulerStats s = stats_;
  s.max_run_queue = std::max(s.max_run_queue, s.run_queue);
  s.opportunistic_share = share_;
  return s;
}

std::optional<double> CallScheduler::DownstreamRate(std::string_view downstream) const {
  internal::MutexLock lock(&mu_);
  auto it = downstream_index_.find(std::string(downstream));
  if (it == downstream_index_.end()) return std::nullopt;
  return it->second->aimd.calls_per_second();
}

}  // namespace txfn

// CallScheduler: validation of its config, creation, configuration and
// workers; see txfn/call_scheduler.h (the loop is in call_scheduler.cc).
#include <algorithm>
#include <cmath>
#include <string>
#include <utility>
#include <vector>

#include "lib/queue/call_scheduler_internal.h"
#include "txfn/call_scheduler.h"
#include "txfn/clock.h"
#include "txfn/internal/strings.h"
#include "txfn/rendezvous_router.h"
#include "txfn/status_macros.h"

namespace txfn {
namespace {

using internal::BucketBurst;
using internal::OpportunisticRate;
using internal::StrCat;

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
  if (o.max_running_per_tenant < 0) {
    return absl::InvalidArgumentError("CallScheduler: max_running_per_tenant must be >= 0");
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
  if (o.release_delay < absl::ZeroDuration() || o.max_release_delay < o.release_delay) {
    return absl::InvalidArgumentError(
        "CallScheduler: release_delay must be >= 0 and max_release_delay >= release_delay");
  }
  if (o.forget_idle_functions < absl::ZeroDuration()) {
    return absl::InvalidArgumentError("CallScheduler: forget_idle_functions must be >= 0");
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
  poll_ = PeriodicTimer(now, options_.poll_interval);
  forget_ = PeriodicTimer(now, options_.forget_idle_functions / 4);
  extend_ = PeriodicTimer(now + options_.lease_duration / 4, options_.lease_duration / 4);
  config_poll_ = PeriodicTimer(now, options_.config_poll_interval);
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

void CallScheduler::BindDownstreams(FunctionState& fs, absl::Time now) {
  for (Downstream* d : fs.downstreams) --d->callers;
  fs.downstreams.clear();
  for (const std::string& d : fs.config.downstreams) {
    fs.downstreams.push_back(&DownstreamFor(d, now));
    ++fs.downstreams.back()->callers;
  }
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
  BindDownstreams(fs, now);
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
    BindDownstreams(fs, now);
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
    if (!config_poll_.Due(now)) return;
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

}  // namespace txfn

// CallScheduler: the loop (settle, admit, move, dispatch, poll); see
// txfn/call_scheduler.h. Creation, configuration and workers are in
// call_scheduler_config.cc.
#include "txfn/call_scheduler.h"

#include <algorithm>
#include <cmath>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "lib/queue/call_scheduler_internal.h"
#include "txfn/clock.h"
#include "txfn/internal/strings.h"
#include "txfn/rendezvous_router.h"
#include "txfn/status_macros.h"

namespace txfn {
namespace {

using internal::BucketBurst;
using internal::kOpportunistic;
using internal::kReserved;
using internal::OpportunisticRate;
using internal::RunsLater;
using internal::StrCat;

// A held call (leased under `token`) whose deadline passed before it
// started, wherever it waited (`where`: "buffer", "run queue"):
// dead-lettered, not started late.
Settlement MissedDeadline(const LeaseToken& token, absl::Time deadline, absl::Time now,
                          std::string_view where) {
  return Settlement::DeadLetter(
      token, StrCat(DeadlineReason(deadline, now), " (waited in the scheduler's ", where, ")"));
}

}  // namespace

// --- The loop -----------------------------------------------------------------------

absl::Time CallScheduler::Tick() {
  const absl::Time now = options_.clock->Now();
  MaybePollConfig(now);
  internal::MutexLock lock(&mu_);
  ProcessCompletions(now);
  ExtendLeases(now);
  ForgetIdleFunctions(now);
  Move(now);
  Dispatch(now);
  Poll(now);
  Move(now);
  Dispatch(now);
  FlushSettlements(now);

  absl::Time next = extend_.NextRun(now);
  // A draining scheduler polls no more: its poll time stays in the past (a host waiting for
  // that would spin until the running calls end).
  if (!draining_) next = std::min(next, poll_.NextRun(now));
  if (options_.config_source) next = std::min(next, config_poll_.NextRun(now));
  if (stats_.buffered > 0) next = std::min(next, now + options_.poll_interval);
  return std::max(next, now);
}

void CallScheduler::PollSoon() {
  internal::MutexLock lock(&mu_);
  PollNextTick();
}

void CallScheduler::PollNextTick() {
  poll_.Reschedule(absl::InfinitePast(), options_.poll_interval);  // due at once
}

void CallScheduler::Forget(const CallId& id) {
  auto it = held_.find(id);
  if (it == held_.end()) return;
  if (it->second->fs != nullptr) --it->second->fs->held;
  held_.erase(it);
}

void CallScheduler::ForgetIdleFunctions(absl::Time now) {
  if (options_.forget_idle_functions <= absl::ZeroDuration()) return;
  if (!forget_.Due(now)) return;
  auto idle = [&](const std::unique_ptr<FunctionState>& fs) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (fs->held > 0 || config_.functions.contains(fs->name)) {
      fs->idle_since = absl::InfiniteFuture();
      return false;
    }
    fs->idle_since = std::min(fs->idle_since, now);
    if (now - fs->idle_since < options_.forget_idle_functions) return false;
    for (Downstream* d : fs->downstreams) --d->callers;
    function_index_.erase(fs->name);
    return true;
  };
  functions_.erase(std::remove_if(functions_.begin(), functions_.end(), idle), functions_.end());
}

void CallScheduler::Settle(Held& held, Settlement settlement) {
  // Limits held by an admitted call are freed as soon as it ends.
  if (held.concurrency) {
    held.fs->concurrency.Release();
    held.concurrency = false;
  }
  ReleaseTenantSlot(held);
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
    for (const auto& [s, h] : items) {
      batch.push_back(s);
      // Under the call's current lease: it may have been adopted since the
      // settlement was queued (a Settle that failed is retried here).
      batch.back().lease = h->leased.token;
    }
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

void CallScheduler::AdoptLease(Held& held, LeasedCall lease) {
  ++stats_.leases_adopted;
  held.lost = false;
  held.leased.token = lease.token;
  held.leased.expires = lease.expires;
  held.leased.call.attempt = lease.call.attempt;  // the queue counted this delivery
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
      // The reserved quota's RPS follows the measured cost: the mean of the
      // calls measured so far (the initial cost counting as one), then a
      // moving average over about the last kCostWindow calls. CPU per call is
      // heavy-tailed (XFaaS: P99 ~100x P50), so an average over a few calls
      // swings the rate far below the quota's on every long call.
      fs.cost_samples = std::min(fs.cost_samples + 1, internal::kCostWindow);
      fs.avg_cost_s += (absl::ToDoubleSeconds(outcome.cpu) - fs.avg_cost_s) / fs.cost_samples;
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
        } else if (c.attempt + 1 >= c.retry.max_attempts) {
          // The last attempt: a Nack would make the queue dead-letter it too; settled as a dead
          // letter, it is counted in stats().dead_lettered (txfn serve's "dead").
          Settle(h, Settlement::DeadLetter(token, AttemptsReason(c.attempt + 1, reason)));
        } else {
          Settle(h, Settlement::Nack(token, retry_at, reason));
        }
        break;
      }
      case CallOutcome::Kind::kPermanent:
        Settle(h, Settlement::DeadLetter(
                      token, StrCat("permanent error: ", outcome.status.message().substr(0, 512))));
        break;
      case CallOutcome::Kind::kBusy:
        Settle(h, Settlement::Release(
                      token, std::min(now + outcome.retry_after.value_or(absl::ZeroDuration()),
                                      c.deadline)));
        break;
    }
  }
}

void CallScheduler::ExtendLeases(absl::Time now) {
  if (!extend_.Due(now)) return;
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

void CallScheduler::ReleaseTenantSlot(Held& held) {
  if (!held.tenant_slot) return;
  held.tenant_slot = false;
  auto it = tenant_admitted_.find(held.call().tenant);
  if (it != tenant_admitted_.end() && --it->second <= 0) tenant_admitted_.erase(it);
}

CallScheduler::Admission CallScheduler::Admit(FunctionState& fs, Held& h, bool idle_slot,
                                              absl::Time now, Downstream** blocked_by) {
  const Call& c = h.call();
  if (options_.max_running_per_tenant > 0) {
    auto it = tenant_admitted_.find(c.tenant);
    if (it != tenant_admitted_.end() && it->second >= options_.max_running_per_tenant) {
      return Admission::kBlockedByTenant;
    }
  }
  if (!fs.concurrency.TryAcquire()) return Admission::kBlockedByLimit;
  size_t got = 0;
  for (; got < fs.downstreams.size(); ++got) {
    if (!fs.downstreams[got]->aimd.TryAcquire(now)) break;
  }
  bool ok = got == fs.downstreams.size();
  Admission blocked = Admission::kBlockedByDownstream;
  if (!ok) *blocked_by = fs.downstreams[got];
  bool promoted = false;
  if (ok) {
    blocked = Admission::kBlockedByQuota;
    if (c.quota == QuotaClass::kReserved) {
      ok = fs.reserved.TryAcquire(now);
    } else if (c.deadline - now <=
               options_.opportunistic_deadline_slack + absl::Seconds(fs.avg_cost_s)) {
      promoted = true;  // time-shifted as far as it may go: run it now
    } else {
      // Opportunistic calls run on idle capacity only: one admitted while
      // every slot is taken would wait in the RunQ and take the next free
      // slot from a reserved call. A function whose r0 is 0 runs them only
      // once their deadline is near (promoted above), not even on the one
      // token a bucket's smallest burst holds.
      ok = idle_slot && fs.config.opportunistic_rate > 0 && fs.opportunistic.TryAcquire(now);
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
  if (options_.max_running_per_tenant > 0) {
    ++tenant_admitted_[c.tenant];
    h.tenant_slot = true;
  }
  return Admission::kAdmitted;
}

absl::Time CallScheduler::PacedRelease(absl::Time& next_release, double rate, absl::Time now) {
  const absl::Time slot = std::max(next_release, now + options_.poll_interval);
  const absl::Time horizon = now + options_.max_release_delay;
  if (rate > 0 && slot <= horizon) {
    // Never more than just past the horizon: a tiny rate must not push the
    // pace out of reach once the rate is back up.
    next_release = std::min(slot + absl::Seconds(1 / rate), horizon + absl::Nanoseconds(1));
    return slot;
  }
  // Beyond what the limit admits in max_release_delay (an outage's backlog):
  // back at a random time in the window, not all at once at its end.
  std::uniform_real_distribution<double> unit(0, 1);
  return now + options_.release_delay +
         (options_.max_release_delay - options_.release_delay) * unit(rng_);
}

void CallScheduler::ReleaseExcess(FunctionState& fs, int quota, Admission why,
                                  Downstream* downstream, absl::Time now) {
  size_t keep = options_.max_buffered_per_function;
  if (why == Admission::kBlockedByDownstream) {
    // Its share of what the downstream admits in release_delay, and of half
    // the buffers at most (at least one call): a downstream's callers keep
    // no more together, so a throttled downstream with many callers never
    // fills the buffers and stops the polls other functions' calls need.
    const double kept_for_downstream = std::min(
        downstream->aimd.calls_per_second() * absl::ToDoubleSeconds(options_.release_delay),
        static_cast<double>(options_.max_buffered) / 2);
    keep = std::max<size_t>(
        1, std::min(keep,
                    static_cast<size_t>(kept_for_downstream / std::max(1, downstream->callers))));
  } else if (why == Admission::kBlockedByQuota) {
    // Keep what the quota admits until released calls are due again; time-
    // shift the rest back into the durable queue, where waiting costs no
    // memory. (A rate of 0, S = 0, keeps nothing.)
    const TokenBucket& bucket = quota == kReserved ? fs.reserved : fs.opportunistic;
    const double until_back = bucket.rate() * absl::ToDoubleSeconds(options_.release_delay);
    if (until_back < static_cast<double>(keep)) {
      keep = static_cast<size_t>(std::ceil(std::max(until_back, 0.0)));
    }
  }
  ReleaseAllBut(
      fs, quota, keep,
      [&](const Held& h) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) -> std::optional<absl::Time> {
        const absl::Time back =
            why == Admission::kBlockedByDownstream
                ? PacedRelease(downstream->next_release, downstream->aimd.calls_per_second(), now)
                : now + options_.release_delay;
        // Back in time to run by the deadline: promoted opportunistic calls
        // start at deadline - slack - cost.
        const absl::Time latest = h.call().deadline - options_.opportunistic_deadline_slack -
                                  absl::Seconds(fs.avg_cost_s);
        return std::max(now + absl::Milliseconds(1), std::min(back, latest));
      });
}

size_t CallScheduler::ReleaseAllBut(
    FunctionState& fs, int quota, size_t keep,
    absl::FunctionRef<std::optional<absl::Time>(const Held&)> due_again) {
  std::vector<Held*>& buf = fs.buffer[quota];
  if (buf.size() <= keep) return buf.size();
  auto later = [](Held* a, Held* b) { return RunsLater(a, b); };
  std::sort_heap(buf.begin(), buf.end(), later);  // ascending: the next to run last
  const size_t excess = buf.size() - keep;
  std::vector<Held*> stay;
  // The next to run first, so a paced release gives it the earliest slot.
  for (size_t i = excess; i-- > 0;) {
    Held* h = buf[i];
    if (h->lost) {
      ++stats_.lost_leases;
      Unbuffered(*h);
      Forget(h->call().id);
      continue;
    }
    const std::optional<absl::Time> retry_at = due_again(*h);
    if (!retry_at.has_value()) {
      stay.push_back(h);
      continue;
    }
    Unbuffered(*h);
    Settle(*h, Settlement::Release(h->leased.token, *retry_at));
  }
  const size_t removed = excess - stay.size();
  buf.erase(buf.begin(), buf.begin() + static_cast<std::ptrdiff_t>(excess));
  buf.insert(buf.end(), stay.begin(), stay.end());
  std::make_heap(buf.begin(), buf.end(), later);
  buffered_[quota] -= removed;
  stats_.buffered -= removed;
  return buf.size();
}

size_t CallScheduler::ReleaseTenantExcess(FunctionState& fs, int quota, size_t keep,
                                          absl::Time now) {
  // Due again at once: the tenant holds at least what the polls skip it at,
  // so they leave these calls in the queue, in due order, until it has room.
  return ReleaseAllBut(fs, quota, std::min(keep, options_.max_buffered_per_function),
                       [&](const Held&) -> std::optional<absl::Time> { return now; });
}

size_t CallScheduler::TenantKeep() const {
  size_t at_limit = 0;
  for (const auto& [tenant, admitted] : tenant_admitted_) {
    if (admitted >= options_.max_running_per_tenant) ++at_limit;
  }
  // kTenantBufferFactor times the limit; all tenants at their limit
  // together half of max_buffered at most, so they never stop the polls.
  const size_t limit = static_cast<size_t>(options_.max_running_per_tenant);
  return std::max<size_t>(1, std::min(limit * kTenantBufferFactor,
                                      options_.max_buffered / 2 / std::max<size_t>(1, at_limit)));
}

size_t CallScheduler::Buffered(const Held& held) {
  return options_.max_running_per_tenant > 0 ? ++tenant_buffered_[held.call().tenant] : 0;
}

void CallScheduler::Unbuffered(const Held& held) {
  if (options_.max_running_per_tenant <= 0) return;
  auto it = tenant_buffered_.find(held.call().tenant);
  if (it == tenant_buffered_.end()) return;
  if (--it->second < tenant_skip_at_ && tenants_skipped_.erase(held.call().tenant) > 0) {
    PollNextTick();  // skipped by the last poll, and now with room: its calls are waiting
  }
  if (it->second == 0) tenant_buffered_.erase(it);
}

void CallScheduler::Move(absl::Time now) {
  if (stats_.run_queue >= options_.run_queue_target || stats_.buffered == 0) return;
  // The heads of every non-empty buffer, best first. Each head keeps a copy
  // of its front call's first ordering keys: comparing them needs no pointer
  // chase through the buffer, the Held and its Call (with thousands of
  // buffers, those cache misses were most of Move's time). The order is
  // RunsLater's exactly.
  struct Head {
    FunctionState* fs;
    int quota;
    Criticality criticality;
    absl::Time deadline;
    const Held* front;
  };
  auto head_of = [](FunctionState* fs, int quota) {
    const Held* front = fs->buffer[quota].front();
    return Head{fs, quota, front->call().criticality, front->call().deadline, front};
  };
  auto worse = [](const Head& a, const Head& b) {
    if (a.criticality != b.criticality) return a.criticality < b.criticality;
    if (a.deadline != b.deadline) return a.deadline > b.deadline;
    return RunsLater(a.front, b.front);
  };
  std::vector<Head> heads;
  for (auto& fs : functions_) {
    for (int q : {kReserved, kOpportunistic}) {
      if (!fs->buffer[q].empty()) heads.push_back(head_of(fs.get(), q));
    }
  }
  // Sorted once, best first; a buffer that moved its front comes back with
  // its next call through the heap `again`. Taking the better of the two
  // each time gives one heap's order at the cost of a sort (most heads are
  // blocked and never come back).
  std::sort(heads.begin(), heads.end(), [&](const Head& a, const Head& b) { return worse(b, a); });
  size_t next = 0;
  std::vector<Head> again;
  // Free slots per group not yet claimed by its RunQ; every admitted call
  // claims one.
  std::vector<int64_t> idle = IdleSlots();
  // What the buffers of each tenant at its limit keep, so far in this pass,
  // and what they may keep together.
  absl::flat_hash_map<std::string, size_t> kept_for_tenant;
  const size_t tenant_keep = options_.max_running_per_tenant > 0 ? TenantKeep() : 0;
  while ((next < heads.size() || !again.empty()) && stats_.run_queue < options_.run_queue_target) {
    Head head;
    if (!again.empty() && (next == heads.size() || worse(heads[next], again.front()))) {
      std::pop_heap(again.begin(), again.end(), worse);
      head = again.back();
      again.pop_back();
    } else {
      head = heads[next++];
    }
    std::vector<Held*>& buf = head.fs->buffer[head.quota];
    Held* h = buf.front();
    bool moved = true;
    Admission admission = Admission::kAdmitted;
    Downstream* blocked_by = nullptr;
    if (h->lost) {
      ++stats_.lost_leases;
      Unbuffered(*h);
      Forget(h->call().id);
    } else if (h->call().deadline <= now) {
      Unbuffered(*h);
      Settle(*h, MissedDeadline(h->leased.token, h->call().deadline, now, "buffer"));
    } else if ((admission = Admit(*head.fs, *h, idle[head.fs->group] > 0, now, &blocked_by)) ==
               Admission::kAdmitted) {
      Unbuffered(*h);
      h->where = Held::Where::kRunQ;
      --idle[head.fs->group];
      std::vector<Held*>& run_queue = groups_[head.fs->group]->run_queue;
      run_queue.push_back(h);
      std::push_heap(run_queue.begin(), run_queue.end(), RunsLater<Held>);
      ++stats_.run_queue;
      stats_.max_run_queue = std::max(stats_.max_run_queue, stats_.run_queue);
    } else if (admission == Admission::kBlockedByTenant) {
      // Its tenant runs as much as it may: the buffer waits (one of the
      // tenant's calls ends soon) and other buffers move past it. A buffer
      // of one tenant keeps the tenant's share of calls (the buffers met
      // first, those that run first, keep theirs first).
      moved = false;
      if (options_.key_functions_by_tenant) {
        size_t& kept = kept_for_tenant[h->call().tenant];
        kept += ReleaseTenantExcess(*head.fs, head.quota,
                                    tenant_keep > kept ? tenant_keep - kept : 0, now);
      }
    } else {
      // Blocked by a limit: the buffer waits for a later tick, holding only
      // what it can run soon.
      moved = false;
      ReleaseExcess(*head.fs, head.quota, admission, blocked_by, now);
    }
    if (!moved) continue;
    std::pop_heap(buf.begin(), buf.end(), [](Held* a, Held* b) { return RunsLater(a, b); });
    buf.pop_back();
    --buffered_[head.quota];
    --stats_.buffered;
    if (!buf.empty()) {
      again.push_back(head_of(head.fs, head.quota));
      std::push_heap(again.begin(), again.end(), worse);
    }
  }
}

size_t CallScheduler::FairestInRunQueue(const std::vector<Held*>& run_queue) const {
  auto admitted = [this](const Held* h) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    auto it = tenant_admitted_.find(h->call().tenant);
    return it == tenant_admitted_.end() ? int64_t{0} : it->second;
  };
  size_t best = 0;
  int64_t best_admitted = admitted(run_queue[0]);
  for (size_t i = 1; i < run_queue.size(); ++i) {
    const Held* h = run_queue[i];
    const Held* b = run_queue[best];
    if (h->call().criticality != b->call().criticality) {
      if (h->call().criticality < b->call().criticality) continue;
    } else {
      const int64_t n = admitted(h);
      if (n > best_admitted || (n == best_admitted && !RunsLater(b, h))) continue;
    }
    best = i;
    best_admitted = admitted(h);
  }
  return best;
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
    // The RunQ is a heap: the most critical call, then the earliest
    // deadline, takes the next free slot. With max_running_per_tenant, a
    // call of a tenant with fewer calls admitted goes first among equally
    // critical ones: tenants at their limit whose calls fill every slot
    // (their limits add up to more) must not keep a newer tenant's later
    // deadline waiting until their backlogs have run.
    std::vector<Held*>& run_queue = group.run_queue;
    size_t at = 0;  // the next call's index
    auto pop = [&run_queue, &at] {
      if (at == 0) {
        std::pop_heap(run_queue.begin(), run_queue.end(), RunsLater<Held>);
        run_queue.pop_back();
      } else {
        std::swap(run_queue[at], run_queue.back());
        run_queue.pop_back();
        std::make_heap(run_queue.begin(), run_queue.end(), RunsLater<Held>);
      }
    };
    while (!run_queue.empty()) {
      at = options_.max_running_per_tenant > 0 ? FairestInRunQueue(run_queue) : 0;
      Held* h = run_queue[at];
      if (h->lost) {
        pop();
        --stats_.run_queue;
        ++stats_.lost_leases;
        if (h->concurrency) h->fs->concurrency.Release();
        ReleaseTenantSlot(*h);
        for (Downstream* d : h->acquired) d->aimd.Release();
        Forget(h->call().id);
        continue;
      }
      // A call whose deadline passed while it waited here (behind more
      // critical or earlier calls) is not started late: dead-lettered as it
      // would have been in its buffer. Settle frees what admission took.
      if (h->call().deadline <= now) {
        pop();
        --stats_.run_queue;
        Settle(*h, MissedDeadline(h->leased.token, h->call().deadline, now, "run queue"));
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
      pop();
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
  if (draining_ || !poll_.Due(now)) return;
  // Room in the buffers per quota class: reserved calls have max_buffered of
  // their own, opportunistic ones what is left of max_buffered. So buffers
  // full of opportunistic calls never keep a reserved call in the queue.
  auto room = [this](int quota) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) -> size_t {
    const size_t used = quota == kReserved ? buffered_[kReserved] : stats_.buffered;
    return used < options_.max_buffered ? options_.max_buffered - used : 0;
  };
  if ((room(kReserved) == 0 && room(kOpportunistic) == 0) ||
      stats_.run_queue >= options_.run_queue_target) {
    // Flow control: the backlog stays in the durable queue.
    ++stats_.polls_skipped;
    poll_.Reschedule(now, std::min(poll_.interval() * 2, options_.max_poll_interval));
    return;
  }
  ++stats_.polls;
  LeaseRequest request{.now = now, .lease_duration = options_.lease_duration};
  // With a limit per tenant, leasing by tenant: a lease brings at most half
  // of what a tenant's buffers keep, and skips the tenants that hold half
  // already, so no tenant is leased more than it keeps (nothing goes back)
  // and the backlog of one at its limit waits in the queue, due, in order,
  // while other tenants' calls are leased past it. A skipped tenant whose
  // buffers fall below half makes the next tick poll (Unbuffered).
  tenants_skipped_.clear();
  auto skip = [&](const std::string& tenant) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (request.skip_tenants.size() < DurableQueue::kMaxSkippedTenants &&
        tenants_skipped_.insert(tenant).second) {
      request.skip_tenants.push_back(tenant);
    }
  };
  if (options_.max_running_per_tenant > 0) {
    tenant_skip_at_ = (TenantKeep() + 1) / 2;
    request.max_per_tenant = tenant_skip_at_;
    std::vector<std::pair<size_t, const std::string*>> full;
    for (const auto& [tenant, n] : tenant_buffered_) {
      if (n >= tenant_skip_at_) full.emplace_back(n, &tenant);
    }
    if (full.size() > DurableQueue::kMaxSkippedTenants) {
      // More than a lease skips: those holding the most, by name on ties (no
      // hash order decides); the rest are held to max_per_tenant.
      const auto more = [](const auto& a, const auto& b) {
        return a.first != b.first ? a.first > b.first : *a.second < *b.second;
      };
      std::partial_sort(full.begin(), full.begin() + DurableQueue::kMaxSkippedTenants, full.end(),
                        more);
      full.resize(DurableQueue::kMaxSkippedTenants);
    }
    for (const auto& [n, tenant] : full) skip(*tenant);
  }
  size_t got = 0;
  for (size_t i = 0; i < shards_.size(); ++i) {
    const int shard = shards_[(next_shard_ + i) % shards_.size()];
    // Reserved calls first, leased on their own: a backlog of time-shifted
    // opportunistic calls that became due earlier does not delay them.
    for (int quota : {kReserved, kOpportunistic}) {
      if (room(quota) == 0) continue;
      request.shard = shard;
      request.quota = static_cast<QuotaClass>(quota);
      request.max = std::min(options_.lease_batch, room(quota));
      absl::StatusOr<std::vector<LeasedCall>> leased = options_.queue->Lease(request);
      if (!leased.ok()) {
        ++stats_.queue_errors;
        continue;
      }
      for (LeasedCall& l : *leased) {
        // Still held from an earlier lease that expired (an Extend failed or
        // came late, the host paused): the call waits or runs here already,
        // so it takes this lease over and settles under it, instead of
        // running again once this lease expires too.
        if (auto it = held_.find(l.call.id); it != held_.end()) {
          AdoptLease(*it->second, std::move(l));
          continue;
        }
        auto h = std::make_unique<Held>();
        h->leased = std::move(l);
        FunctionState& fs = StateFor(options_.key_functions_by_tenant
                                         ? StrCat(h->call().tenant, "/", h->call().function)
                                         : h->call().function,
                                     now);
        h->fs = &fs;
        ++fs.held;
        const size_t tenant_held = Buffered(*h);
        // Full now: skipped by the leases after this one.
        if (request.max_per_tenant > 0 && tenant_held >= tenant_skip_at_) skip(h->call().tenant);
        std::vector<Held*>& buf = fs.buffer[quota];
        buf.push_back(h.get());
        std::push_heap(buf.begin(), buf.end(), RunsLater<Held>);
        const CallId id = h->call().id;
        held_[id] = std::move(h);
        ++buffered_[quota];
        ++stats_.buffered;
        ++stats_.leased;
        ++got;
      }
    }
  }
  next_shard_ = (next_shard_ + 1) % shards_.size();
  stats_.max_buffered = std::max(stats_.max_buffered, stats_.buffered);
  poll_.Reschedule(now, got == 0 ? std::min(poll_.interval() * 2, options_.max_poll_interval)
                                 : options_.poll_interval);
}

std::vector<int64_t> CallScheduler::IdleSlots() const {
  int64_t everyone = 0;  // a group without workers borrows from all
  for (const auto& w : workers_) {
    if (!w->removed) everyone += std::max(0, w->slots - w->in_flight);
  }
  std::vector<int64_t> idle(groups_.size(), 0);
  for (size_t g = 0; g < groups_.size(); ++g) {
    const Group& group = *groups_[g];
    int64_t free = group.workers.empty() ? everyone : 0;
    for (int w : group.workers) free += std::max(0, workers_[w]->slots - workers_[w]->in_flight);
    idle[g] = free - static_cast<int64_t>(group.run_queue.size());
  }
  return idle;
}

void CallScheduler::Drain() {
  const absl::Time now = options_.clock->Now();
  internal::MutexLock lock(&mu_);
  draining_ = true;
  for (auto& fs : functions_) {
    for (int q : {kReserved, kOpportunistic}) {
      for (Held* h : fs->buffer[q]) Settle(*h, Settlement::Release(h->leased.token, now));
      buffered_[q] -= fs->buffer[q].size();
      stats_.buffered -= fs->buffer[q].size();
      fs->buffer[q].clear();
    }
  }
  for (auto& g : groups_) {
    for (Held* h : g->run_queue) Settle(*h, Settlement::Release(h->leased.token, now));
    stats_.run_queue -= g->run_queue.size();
    g->run_queue.clear();
  }
  tenant_buffered_.clear();
  tenants_skipped_.clear();
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
  s.functions = functions_.size();
  return s;
}

std::optional<double> CallScheduler::DownstreamRate(std::string_view downstream) const {
  internal::MutexLock lock(&mu_);
  auto it = downstream_index_.find(std::string(downstream));
  if (it == downstream_index_.end()) return std::nullopt;
  return it->second->aimd.calls_per_second();
}

}  // namespace txfn

// The event loop, workload model and simulated region; see sim.h.
#include "tools/sim/sim.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "fmt/format.h"

namespace txfn::sim {

absl::Time Start() { return absl::FromUnixSeconds(1'700'006'400); }  // a midnight (UTC)

// --- EventLoop -------------------------------------------------------------------------

void EventLoop::At(absl::Time t, absl::AnyInvocable<void()> fn) {
  const int64_t ns = std::max(absl::ToUnixNanos(t), absl::ToUnixNanos(now()));
  uint32_t slot;
  if (!free_.empty()) {
    slot = free_.back();
    free_.pop_back();
    slots_[slot] = std::move(fn);
  } else {
    slot = static_cast<uint32_t>(slots_.size());
    slots_.push_back(std::move(fn));
  }
  heap_.push_back({ns, seq_++, slot});
  std::push_heap(heap_.begin(), heap_.end(), Later());
}

void EventLoop::Every(absl::Time first, absl::Duration period, std::function<void()> fn) {
  At(first, [this, first, period, fn = std::move(fn)]() mutable {
    fn();
    Every(first + period, period, std::move(fn));
  });
}

void EventLoop::RunUntil(absl::Time end) {
  const int64_t end_ns = absl::ToUnixNanos(end);
  while (!heap_.empty() && heap_.front().t < end_ns) {
    std::pop_heap(heap_.begin(), heap_.end(), Later());
    const Entry e = heap_.back();
    heap_.pop_back();
    clock_->AdvanceTo(absl::FromUnixNanos(e.t));
    absl::AnyInvocable<void()> fn = std::move(slots_[e.slot]);
    slots_[e.slot] = nullptr;
    free_.push_back(e.slot);
    ++events_run_;
    fn();
  }
  clock_->AdvanceTo(end);
}

// --- Series ------------------------------------------------------------------------------

Series::Series(absl::Duration bin, absl::Duration span)
    : bin_(bin), bins_(static_cast<int>(std::ceil(absl::FDivDuration(span, bin)))) {}

int Series::Column(const std::string& name) {
  for (size_t i = 0; i < names_.size(); ++i) {
    if (names_[i] == name) return static_cast<int>(i);
  }
  names_.push_back(name);
  columns_.emplace_back(bins_, 0.0);
  return static_cast<int>(names_.size() - 1);
}

namespace {
int64_t BinOf(absl::Time t, absl::Duration bin) {
  absl::Duration rem;
  return absl::IDivDuration(t - Start(), bin, &rem);
}
}  // namespace

void Series::Add(int column, absl::Time t, double v) {
  const int64_t i = BinOf(t, bin_);
  if (t >= Start() && i < bins_) columns_[column][i] += v;
}

void Series::AddInterval(int column, absl::Time from, absl::Time to, double rate) {
  from = std::max(from, Start());
  const absl::Time limit = Start() + bin_ * bins_;
  to = std::min(to, limit);
  while (from < to) {
    const int64_t i = BinOf(from, bin_);
    const absl::Time bin_end = Start() + bin_ * (i + 1);
    const absl::Time until = std::min(to, bin_end);
    columns_[column][i] += rate * absl::ToDoubleSeconds(until - from);
    from = until;
  }
}

// --- Workload --------------------------------------------------------------------------

std::string_view TriggerName(Trigger t) {
  switch (t) {
    case Trigger::kQueue:
      return "queue";
    case Trigger::kEvent:
      return "event";
    case Trigger::kTimer:
      return "timer";
  }
  return "unknown";
}

namespace {

double Phi(double x) { return 0.5 * std::erfc(-x / std::sqrt(2.0)); }

// The mean of min(X, cap) for X lognormal(mu, sigma).
double CappedLognormalMean(double mu, double sigma, double cap) {
  const double lc = std::log(cap);
  return std::exp(mu + sigma * sigma / 2) * Phi((lc - mu - sigma * sigma) / sigma) +
         cap * (1 - Phi((lc - mu) / sigma));
}

double LogUniform(std::mt19937_64& rng, double lo, double hi) {
  std::uniform_real_distribution<double> u(std::log(lo), std::log(hi));
  return std::exp(u(rng));
}

}  // namespace

Workload::Workload(const WorkloadOptions& o, uint64_t seed) : options_(o), rng_(seed) {
  const int n = std::max(o.functions, 3);
  std::array<int, 3> count;
  count[0] = std::max(1, static_cast<int>(std::lround(o.function_share[0] * n)));
  count[1] = std::max(1, static_cast<int>(std::lround(o.function_share[1] * n)));
  count[2] = std::max(1, n - count[0] - count[1]);
  std::normal_distribution<double> normal(0, 1);
  std::uniform_real_distribution<double> unit(0, 1);
  std::array<std::vector<int>, 3> by_trigger;
  for (int c = 0; c < 3; ++c) {
    double total = 0;
    for (int r = 0; r < count[c]; ++r) total += 1 / std::pow(r + 1, o.zipf);
    for (int r = 0; r < count[c]; ++r) {
      FunctionSpec f;
      f.name = fmt::format("f{:05d}", static_cast<int>(functions_.size()));
      f.trigger = static_cast<Trigger>(c);
      f.weight = 1 / std::pow(r + 1, o.zipf) / total;
      f.median_s = o.p50_s[c];
      f.sigma = std::log(o.p99_s[c] / o.p50_s[c]) / 2.326;
      f.mean_s = CappedLognormalMean(std::log(f.median_s), f.sigma, o.max_duration_s);
      f.jit_mib = o.jit_median_mib * std::exp(normal(rng_));
      if (!o.downstream.empty() && unit(rng_) < o.downstream_share) f.downstream = o.downstream;
      by_trigger[c].push_back(static_cast<int>(functions_.size()));
      index_[f.name] = static_cast<int>(functions_.size());
      functions_.push_back(std::move(f));
    }
  }
  // Quotas: walk the functions from the busiest down and make each reserved
  // while the reserved share of calls is under the target, so the split by
  // calls is close to the target whatever the popularity skew.
  std::vector<int> order(functions_.size());
  std::iota(order.begin(), order.end(), 0);
  auto share = [&](int f) {
    return o.call_share[static_cast<int>(functions_[f].trigger)] * functions_[f].weight;
  };
  std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return share(a) > share(b); });
  double reserved = 0, assigned = 0;
  for (int f : order) {
    const bool r = reserved < o.reserved_call_share * (assigned + share(f));
    functions_[f].quota = r ? QuotaClass::kReserved : QuotaClass::kOpportunistic;
    if (r) reserved += share(f);
    assigned += share(f);
  }
  for (FunctionSpec& f : functions_) {
    if (f.quota == QuotaClass::kReserved) {
      f.window = absl::Seconds(LogUniform(rng_, 30, 900));
    } else if (unit(rng_) < o.opportunistic_24h_share) {
      f.window = absl::Hours(24);
    } else {
      f.window = absl::Seconds(LogUniform(rng_, 3600, 86400));
    }
  }
  for (int c = 0; c < 3; ++c) {
    for (int f : by_trigger[c]) {
      const int g = c * 2 + static_cast<int>(functions_[f].quota);
      const double sum = cumulative_[g].empty() ? 0 : cumulative_[g].back();
      members_[g].push_back(f);
      cumulative_[g].push_back(sum + functions_[f].weight);
    }
  }
}

int Workload::IndexOf(std::string_view name) const {
  auto it = index_.find(std::string(name));
  return it == index_.end() ? -1 : it->second;
}

double Workload::DiurnalFactor(absl::Time t, double peak_trough) const {
  const double trough = 1 / peak_trough;
  const double hours = absl::ToDoubleHours(t - Start());
  const double x = (1 + std::cos(2 * M_PI * (hours - options_.peak_hour) / 24)) / 2;
  return (trough + (1 - trough) * x) / ((1 + trough) / 2);
}

Call Workload::MakeCall(int f, absl::Time start) {
  const FunctionSpec& spec = functions_[f];
  std::normal_distribution<double> normal(0, 1);
  const double d = std::clamp(std::exp(std::log(spec.median_s) + spec.sigma * normal(rng_)), 0.001,
                              options_.max_duration_s);
  Call call;
  call.tenant = "sim";
  call.function = spec.name;
  call.args = Value::Int64(absl::ToInt64Nanoseconds(absl::Seconds(d)));
  call.start_after = start;
  call.deadline = start + spec.window;
  call.quota = spec.quota;
  call.retry = {.max_attempts = 50,
                .initial_backoff = absl::Seconds(1),
                .max_backoff = absl::Minutes(2),
                .multiplier = 2};
  call.client = "sim";
  return call;
}

void Workload::Arrivals(absl::Time from, absl::Duration step, double rate_scale,
                        std::vector<Call>* out) {
  const double step_s = absl::ToDoubleSeconds(step);
  const absl::Time mid = from + step / 2;
  const double diurnal = DiurnalFactor(mid);
  const double reserved_diurnal = DiurnalFactor(mid, options_.reserved_peak_trough);
  for (int c = 0; c < 3; ++c) {
    // Timer-triggered calls fire on their schedules, whatever the hour.
    const bool timer = c == static_cast<int>(Trigger::kTimer);
    const double rate = options_.calls_per_second * options_.call_share[c] * rate_scale;
    const int gr = c * 2 + static_cast<int>(QuotaClass::kReserved);
    const int go = c * 2 + static_cast<int>(QuotaClass::kOpportunistic);
    const double reserved = cumulative_[gr].empty() ? 0 : cumulative_[gr].back();
    const double opportunistic = cumulative_[go].empty() ? 0 : cumulative_[go].back();
    // The reserved calls follow their own (flatter) curve; the opportunistic
    // ones the rest of the class's received curve.
    const double reserved_factor = timer ? 1 : reserved_diurnal;
    const double opportunistic_factor =
        timer || opportunistic <= 0
            ? 1
            : std::max(0.0, diurnal * (reserved + opportunistic) - reserved * reserved_diurnal) /
                  opportunistic;
    for (const auto& [g, mean] :
         {std::pair{gr, rate * reserved * reserved_factor * step_s},
          std::pair{go, rate * opportunistic * opportunistic_factor * step_s}}) {
      if (members_[g].empty()) continue;
      std::poisson_distribution<int64_t> poisson(std::max(mean, 1e-12));
      Draw(g, poisson(rng_), from, step_s, out);
    }
  }
}

void Workload::Draw(int g, int64_t n, absl::Time from, double step_s, std::vector<Call>* out) {
  std::uniform_real_distribution<double> unit(0, 1);
  const std::vector<double>& cum = cumulative_[g];
  for (int64_t i = 0; i < n; ++i) {
    const double x = unit(rng_) * cum.back();
    const size_t k =
        std::min<size_t>(std::upper_bound(cum.begin(), cum.end(), x) - cum.begin(), cum.size() - 1);
    out->push_back(MakeCall(members_[g][k], from + absl::Seconds(unit(rng_) * step_s)));
  }
}

absl::Duration Workload::DurationOf(const Call& call) {
  return call.args.is_int64() ? absl::Nanoseconds(call.args.int64()) : absl::Seconds(1);
}

double Workload::MeanCostSeconds() const {
  double cost = 0;
  for (const FunctionSpec& f : functions_) {
    cost += options_.call_share[static_cast<int>(f.trigger)] * f.weight * f.mean_s;
  }
  return cost;
}

// --- Region -------------------------------------------------------------------------------

Execution CallModel::Start(const Call& call, int /*worker*/, absl::Time /*now*/) {
  const absl::Duration d = Workload::DurationOf(call);
  return {d, CallOutcome::Ok(d)};
}

class Region::ModelWorker final : public Worker {
 public:
  ModelWorker(Region* region, int index) : region_(region), index_(index) {}

  // Called under the scheduler's lock: only schedules the completion.
  void Run(const Call& call, Done done) override {
    Region& r = *region_;
    const absl::Time now = r.clock_->Now();
    ++r.busy_;
    ++r.counters_.started;
    if (now > call.deadline) ++r.counters_.late_starts[static_cast<int>(call.quota)];
    Execution e = r.model_->Start(call, index_, now);
    if (r.on_start) r.on_start(call, index_, now);
    const absl::Time end_at = now + e.duration;
    r.loop_->At(end_at, [&r, index = index_, call, now, e = std::move(e),
                         done = std::move(done)]() mutable {
      const absl::Time end = r.clock_->Now();
      --r.busy_;
      ++r.counters_.finished;
      ++r.worker_finished_[index];
      r.model_->Finish(call, index, now, end);
      if (r.on_finish) r.on_finish(call, index, now, end);
      std::move(done)(std::move(e.outcome));
      r.WakeAt(end);
    });
  }

 private:
  Region* const region_;
  const int index_;
};

Region::Region(EventLoop* loop, VirtualClock* clock, RegionOptions options, CallModel* model,
               uint64_t seed)
    : loop_(loop),
      clock_(clock),
      options_(std::move(options)),
      model_(model != nullptr ? model : &default_model_),
      queue_({.shards = options_.shards}) {
  SubmitterOptions so;
  so.max_batch_calls = 4096;
  so.id_seed = seed * 2 + 1;
  so.config_source = options_.submitter_config_source;
  submitter_ = *Submitter::Create(&queue_, nullptr, clock_, std::move(so));
  CallScheduler::Options o;
  o.queue = &queue_;
  o.clock = clock_;
  // Leasing grows with the region: a poll brings up to lease_per_slot calls
  // per slot and the buffers hold twice the slots, or a paper-scale region of
  // thousands of slots starves behind a batch sized for 16 (small regions
  // keep the options' values).
  const size_t slots = static_cast<size_t>(options_.workers) * static_cast<size_t>(options_.slots);
  o.lease_batch =
      std::max(options_.lease_batch,
               std::min(DurableQueue::kMaxLeaseBatch,
                        static_cast<size_t>(options_.lease_per_slot * static_cast<double>(slots))));
  o.max_buffered = std::max(options_.max_buffered, 2 * slots);
  o.max_buffered_per_function = options_.max_buffered_per_function;
  // The RunQ's target: the region's slots (calls admitted beyond them only
  // wait, holding their limits).
  o.run_queue_target = options_.run_queue_target > 0
                           ? options_.run_queue_target
                           : static_cast<size_t>(options_.workers * options_.slots);
  o.poll_interval = options_.poll_interval;
  o.max_poll_interval = options_.max_poll_interval;
  o.release_delay = options_.release_delay;
  o.max_release_delay = std::max(options_.max_release_delay, options_.release_delay);
  o.worker_pick = options_.worker_pick;
  o.seed = seed;
  o.config = options_.config;
  o.config_source = options_.config_source;
  o.utilization = options_.utilization;
  absl::StatusOr<std::unique_ptr<CallScheduler>> s = CallScheduler::Create(std::move(o));
  if (!s.ok()) {
    fmt::print(stderr, "txfn-sim: region {}: {}\n", options_.name, s.status().ToString());
    std::abort();
  }
  scheduler_ = *std::move(s);
  generation_.assign(options_.workers, 0);
  worker_finished_.assign(options_.workers, 0);
  for (int w = 0; w < options_.workers; ++w) {
    workers_.push_back(std::make_shared<ModelWorker>(this, w));
    const std::string group =
        options_.groups.empty() ? "" : options_.groups[w % options_.groups.size()];
    (void)scheduler_->AddWorker(fmt::format("{}-w{}", options_.name, w), workers_.back(),
                                options_.slots, group);
  }
}

Region::~Region() = default;

void Region::Submit(std::vector<Call>& calls) {
  for (Call& c : calls) {
    if (submitter_->Submit(std::move(c)).ok()) ++counters_.submitted;
  }
  submitter_->Flush();
}

void Region::Start() {
  WakeAt(clock_->Now());
  loop_->Every(clock_->Now() + options_.utilization_period, options_.utilization_period,
               [this] { scheduler_->ReportUtilization(Utilization()); });
}

void Region::RestartWorker(int w) {
  const std::string group =
      options_.groups.empty() ? "" : options_.groups[w % options_.groups.size()];
  (void)scheduler_->RemoveWorker(generation_[w]
                                     ? fmt::format("{}-w{}.{}", options_.name, w, generation_[w])
                                     : fmt::format("{}-w{}", options_.name, w));
  ++generation_[w];
  workers_[w] = std::make_shared<ModelWorker>(this, w);
  (void)scheduler_->AddWorker(fmt::format("{}-w{}.{}", options_.name, w, generation_[w]),
                              workers_[w], options_.slots, group);
  WakeAt(clock_->Now());
}

double Region::Utilization() const { return static_cast<double>(busy_) / std::max(1, slots()); }

void Region::WakeAt(absl::Time t) {
  // Coalesce wake-ups to the quantum: one Tick serves every call that
  // finished in it, as a host's loop would.
  const int64_t q = absl::ToInt64Nanoseconds(options_.tick_quantum);
  const int64_t ns = absl::ToUnixNanos(t);
  t = absl::FromUnixNanos((ns + q - 1) / q * q);
  if (t >= next_tick_) return;
  next_tick_ = t;
  loop_->At(t, [this, t] {
    if (next_tick_ == t) DoTick();
  });
}

void Region::DoTick() {
  next_tick_ = absl::InfiniteFuture();
  const absl::Time now = clock_->Now();
  (void)submitter_->Tick();
  const absl::Time next = scheduler_->Tick();
  WakeAt(std::max(next, now + options_.tick_quantum));
}

void Region::CountDeadLetters() {
  counters_.dead_letters = {0, 0};
  CallId after;
  for (;;) {
    absl::StatusOr<std::vector<DeadLetter>> page = queue_.ListDeadLetters(after, 10'000);
    if (!page.ok() || page->empty()) break;
    for (const DeadLetter& d : *page) ++counters_.dead_letters[static_cast<int>(d.call.quota)];
    after = page->back().call.id;
  }
}

// --- Helpers ---------------------------------------------------------------------------------

double Quantile(std::vector<double> v, double q) {
  if (v.empty()) return 0;
  const size_t k = std::min(v.size() - 1, static_cast<size_t>(q * static_cast<double>(v.size())));
  std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(k), v.end());
  return v[k];
}

double Correlation(const std::vector<double>& a, const std::vector<double>& b) {
  const size_t n = std::min(a.size(), b.size());
  if (n < 2) return 0;
  double ma = 0, mb = 0;
  for (size_t i = 0; i < n; ++i) {
    ma += a[i];
    mb += b[i];
  }
  ma /= static_cast<double>(n);
  mb /= static_cast<double>(n);
  double cov = 0, va = 0, vb = 0;
  for (size_t i = 0; i < n; ++i) {
    cov += (a[i] - ma) * (b[i] - mb);
    va += (a[i] - ma) * (a[i] - ma);
    vb += (b[i] - mb) * (b[i] - mb);
  }
  return va <= 0 || vb <= 0 ? 0 : cov / std::sqrt(va * vb);
}

}  // namespace txfn::sim

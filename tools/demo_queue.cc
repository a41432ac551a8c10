// tools/demo_queue.cc — txfn-demo's queue phase; see demo_queue.h.
#include "tools/demo_queue.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "fmt/format.h"
#include "txfn/engine.h"
#include "txfn/snapshot.h"
#include "txfn/value.h"

namespace txfn::tools {
namespace {

using Clock = std::chrono::steady_clock;

constexpr const char* kTenant = "jobs";

// One table counts how often each job id was applied, by the kind of call
// that applied it: exactly-once effects keep every n at 1.
constexpr const char* kSchema = R"({"tables": {
  "applied": {"fields": {"job": "string", "kind": "string", "n": "int64"},
              "indexes": {"by_job": ["job"]}}
}})";

constexpr const char* kJobsModule = R"JS(
import { mutation, action } from "txfn/server";

async function count(ctx, job, kind) {
  const row = await ctx.db.query("applied").withIndex("by_job", (q) => q.eq("job", job)).unique();
  if (row === null) return ctx.db.insert("applied", { job, kind, n: 1n });
  return ctx.db.patch(row._id, { n: row.n + 1n });
}

// Reserved quota (the default): runs promptly, within 30 s.
export const record = mutation({
  args: { job: "string" }, deadlineMs: 30000,
  handler: (ctx, { job }) => count(ctx, job, "record"),
});

// Opportunistic quota: may wait while reserved work runs (low criticality:
// reserved calls go first), but is worth doing only within 5 s.
export const backfill = mutation({
  args: { job: "string" }, quota: "opportunistic", criticality: "low", deadlineMs: 5000,
  handler: (ctx, { job }) => count(ctx, job, "backfill"),
});

export const delivered = mutation({
  args: { job: "string" },
  handler: (ctx, { job }) => count(ctx, job, "delivered"),
});

// Mails the job's owner, then records the delivery. When the mailer pushes
// back (over capacity, or down) the call fails; the engine retries it and
// slows every caller of the mailer (its AIMD limiter).
export const notify = action({
  args: { job: "string" }, services: ["mailer"], deadlineMs: 30000,
  retry: { maxAttempts: 100, initialBackoffMs: 100, maxBackoffMs: 1000 },
  handler: async (ctx, { job }) => {
    await ctx.services.mailer({ to: "owner-of-" + job, subject: "job " + job + " is done" });
    await ctx.runMutation("jobs:delivered", { job });
  },
});
)JS";

// The calls the clients submit.
enum Kind { kRecord, kBackfill, kNotify, kKinds };
struct KindInfo {
  const char* function;
  const char* label;
  QuotaClass quota;
  int deadline_s;  // as the wrapper declares; passed with each call
  double share;    // of the submissions
};
constexpr KindInfo kKindInfo[kKinds] = {
    {"jobs:record", "record", QuotaClass::kReserved, 30, 0.67},
    {"jobs:backfill", "backfill", QuotaClass::kOpportunistic, 5, 0.3},
    {"jobs:notify", "notify", QuotaClass::kReserved, 30, 0.03},
};

constexpr double kPeakFactor = 4;
constexpr double kOutageStart = 0.45;  // of the load's length
constexpr double kOutageLength = 0.15;

Value Str(std::string s) { return Value::String(std::move(s)); }

double SecondsSince(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// A host service with a fixed capacity per 100 ms window (beyond it:
// ResourceExhausted), down (Unavailable) during [down_from, down_until)
// seconds after `start`. Counts its answers per second since `start`.
class Mailer {
 public:
  struct Second {
    uint64_t accepted = 0;
    uint64_t refused = 0;  // over capacity
    uint64_t down = 0;     // answered Unavailable
  };

  Mailer(int per_window, double down_from, double down_until)
      : per_window_(per_window), down_from_(down_from), down_until_(down_until) {}

  // The phase's clock starts (before any call).
  void Start(Clock::time_point start) {
    absl::MutexLock lock(&mu_);
    start_ = start;
  }

  absl::StatusOr<Value> Call(const Value&) {
    absl::MutexLock lock(&mu_);
    const double t = std::max(0.0, SecondsSince(start_));
    const int64_t window = static_cast<int64_t>(std::floor(t * 10));
    Second& s = At(static_cast<size_t>(t));
    if (t >= down_from_ && t < down_until_) {
      ++s.down;
      return absl::UnavailableError("the mailer is down");
    }
    if (window != window_) {
      window_ = window;
      used_ = 0;
    }
    if (used_ >= per_window_) {
      ++s.refused;
      return absl::ResourceExhaustedError("the mailer is over capacity");
    }
    ++used_;
    ++s.accepted;
    return Value::Bool(true);
  }

  std::vector<Second> seconds() const {
    absl::MutexLock lock(&mu_);
    return seconds_;
  }
  bool down_at(double t) const { return t >= down_from_ && t < down_until_; }
  double capacity_per_s() const { return per_window_ * 10.0; }

 private:
  Second& At(size_t i) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (seconds_.size() <= i) seconds_.resize(i + 1);
    return seconds_[i];
  }

  const int per_window_;
  const double down_from_, down_until_;
  mutable absl::Mutex mu_;
  Clock::time_point start_ ABSL_GUARDED_BY(mu_) = Clock::now();
  int64_t window_ ABSL_GUARDED_BY(mu_) = -1;
  int used_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<Second> seconds_ ABSL_GUARDED_BY(mu_);
};

// One planned submission.
struct Ticket {
  double at_s;  // since the phase's start
  Kind kind;
};

// The load: a square wave of whole seconds, peak first: kPeakFactor x
// `trough` calls/s in the odd seconds, `trough` in the even ones (so every
// trough follows a peak); each call's kind drawn by the kinds' shares.
std::vector<Ticket> Schedule(double duration_s, double trough, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> uniform(0, 1);
  std::vector<Ticket> tickets;
  for (double t = 0; t < duration_s;) {
    double pick = uniform(rng);
    int kind = 0;
    while (kind + 1 < kKinds && pick >= kKindInfo[kind].share) pick -= kKindInfo[kind++].share;
    tickets.push_back({t, static_cast<Kind>(kind)});
    const bool peak = static_cast<int64_t>(t) % 2 == 0;
    t += 1.0 / (peak ? kPeakFactor * trough : trough);
  }
  return tickets;
}

// A call the engine acknowledged.
struct Submitted {
  CallId id;
  Kind kind;
  absl::Time submitted;
  absl::Time deadline;
};

// The client threads: each takes the next ticket, waits for its time and
// submits it. Counts the acknowledged calls per second.
class Clients {
 public:
  Clients(Engine& engine, std::vector<Ticket> tickets, Clock::time_point start, size_t seconds)
      : engine_(engine), tickets_(std::move(tickets)), start_(start), received_(seconds + 1) {}

  void Start(int threads) {
    for (int i = 0; i < threads; ++i) threads_.emplace_back([this] { Run(); });
  }
  void Join() {
    for (std::thread& t : threads_) t.join();
  }
  // Every ticket submitted (or refused).
  bool done() const { return finished_.load() == tickets_.size(); }
  // Acknowledged in second `s` of the phase (the last bin holds the late ones).
  uint64_t received(size_t s) const { return received_[std::min(s, received_.size() - 1)].load(); }
  std::vector<Submitted> TakeSubmitted() {
    absl::MutexLock lock(&mu_);
    return std::move(submitted_);
  }
  uint64_t refused() const { return refused_.load(); }
  std::string first_refusal() const {
    absl::MutexLock lock(&mu_);
    return first_refusal_;
  }

 private:
  void Run() {
    std::vector<Submitted> mine;
    for (size_t i; (i = next_.fetch_add(1)) < tickets_.size();) {
      const Ticket& ticket = tickets_[i];
      std::this_thread::sleep_until(start_ + std::chrono::duration_cast<Clock::duration>(
                                                 std::chrono::duration<double>(ticket.at_s)));
      std::optional<Submitted> s = Submit(ticket.kind, fmt::format("job-{}", i));
      if (s.has_value()) mine.push_back(*s);
      finished_.fetch_add(1);
    }
    absl::MutexLock lock(&mu_);
    submitted_.insert(submitted_.end(), mine.begin(), mine.end());
  }

  std::optional<Submitted> Submit(Kind kind, const std::string& job) {
    const KindInfo& info = kKindInfo[kind];
    CallOptions options;
    options.quota = info.quota;
    options.deadline = absl::Now() + absl::Seconds(info.deadline_s);
    options.idempotency_key = job;  // a retried Submit is the same call
    const Value args = Value::FromObject({{"job", Str(job)}});
    absl::StatusOr<CallId> id;
    for (int attempt = 0; attempt < 3; ++attempt) {
      id = engine_.Submit(kTenant, info.function, args, options);
      if (id.ok() || !(absl::IsResourceExhausted(id.status()) || absl::IsUnavailable(id.status())))
        break;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    if (!id.ok()) {
      refused_.fetch_add(1);
      absl::MutexLock lock(&mu_);
      if (first_refusal_.empty()) first_refusal_ = id.status().ToString();
      return std::nullopt;
    }
    received_[std::min(static_cast<size_t>(SecondsSince(start_)), received_.size() - 1)].fetch_add(
        1);
    return Submitted{*id, kind, absl::Now(), options.deadline};
  }

  Engine& engine_;
  const std::vector<Ticket> tickets_;
  const Clock::time_point start_;
  std::vector<std::atomic<uint64_t>> received_;
  std::atomic<size_t> next_{0};
  std::atomic<size_t> finished_{0};
  std::atomic<uint64_t> refused_{0};
  std::vector<std::thread> threads_;
  mutable absl::Mutex mu_;
  std::vector<Submitted> submitted_ ABSL_GUARDED_BY(mu_);
  std::string first_refusal_ ABSL_GUARDED_BY(mu_);
};

// What one second of the phase looked like.
struct Second {
  uint64_t received = 0;
  uint64_t executed = 0;       // queued calls that ended (succeeded or failed) in it
  double utilization = 0;      // mean of in_flight / worker_slots over its samples
  size_t run_queue = 0;        // at its end
  size_t backlog = 0;          // calls pending or leased in the durable queue, at its end
  double aimd = std::nan("");  // the mailer's AIMD limit (calls/s) at its end
  bool load = true;            // false: a second of the drain
};

// The seconds of the load and of the drain after it.
struct Timeline {
  std::vector<Second> seconds;
  double load_s = 0;   // until the last Submit returned
  double drain_s = 0;  // from then until the queue was empty (or the wait gave up)
  bool drained = false;
};

size_t Backlog(Engine& engine) {
  absl::StatusOr<std::vector<FunctionDepth>> depths = engine.QueueDepths();
  if (!depths.ok()) return 0;
  size_t n = 0;
  for (const FunctionDepth& d : *depths) n += d.pending + d.leased;
  return n;
}

uint64_t Executed(const QueuedCallStats& q) { return q.succeeded + q.failed; }

bool Idle(const QueuedCallStats& q) {
  return q.scheduler.in_flight == 0 && q.scheduler.buffered == 0 && q.scheduler.run_queue == 0;
}

constexpr const char* kLineHeader =
    "     s  phase   received/s  executed/s   util   RunQ  backlog  mailer AIMD/s  "
    "mailer ok/over/down";

void PrintLine(size_t s, const Second& sec, const Mailer::Second& m, bool down) {
  const std::string aimd = std::isnan(sec.aimd) ? "-" : fmt::format("{:.1f}", sec.aimd);
  std::printf("%6zu  %-6s  %10" PRIu64 "  %10" PRIu64 "  %4.0f%%  %5zu  %7zu  %13s  %6" PRIu64
              "/%" PRIu64 "/%" PRIu64 "%s\n",
              s + 1, sec.load ? "load" : "drain", sec.received, sec.executed, 100 * sec.utilization,
              sec.run_queue, sec.backlog, aimd.c_str(), m.accepted, m.refused, m.down,
              down ? "  (mailer down)" : "");
  std::fflush(stdout);
}

// Samples the engine every 100 ms and closes a Second at every whole second
// of the phase, printing its line, until the load is done and the queue
// drained (or `drain_limit_s` after the load ended).
Timeline Monitor(Engine& engine, const Clients& clients, const Mailer& mailer,
                 Clock::time_point start, double drain_limit_s) {
  std::printf("%s\n", kLineHeader);
  Timeline timeline;
  std::vector<Second>& seconds = timeline.seconds;
  uint64_t last_executed = Executed(engine.stats().queued);
  double util_sum = 0;
  int samples = 0;
  std::optional<double> load_end;
  for (size_t tick = 1;; ++tick) {
    std::this_thread::sleep_until(start + std::chrono::milliseconds(100 * tick));
    const QueuedCallStats q = engine.stats().queued;
    const double t = SecondsSince(start);
    if (q.scheduler.worker_slots > 0) {
      util_sum += static_cast<double>(q.scheduler.in_flight) /
                  static_cast<double>(q.scheduler.worker_slots);
    }
    ++samples;
    if (!load_end.has_value() && clients.done()) load_end = t;
    const bool drained = load_end.has_value() && Idle(q) && Backlog(engine) == 0;
    const bool timed_out = load_end.has_value() && t - *load_end > drain_limit_s;
    if (tick % 10 != 0 && !drained && !timed_out) continue;
    Second sec;
    sec.received = clients.received(seconds.size());
    sec.executed = Executed(q) - last_executed;
    last_executed = Executed(q);
    sec.utilization = util_sum / samples;
    sec.run_queue = q.scheduler.run_queue;
    sec.backlog = Backlog(engine);
    sec.aimd = engine.ServiceRate("mailer").value_or(std::nan(""));
    sec.load = !load_end.has_value() || seconds.size() < static_cast<size_t>(*load_end);
    const std::vector<Mailer::Second> m = mailer.seconds();
    PrintLine(seconds.size(), sec, seconds.size() < m.size() ? m[seconds.size()] : Mailer::Second{},
              mailer.down_at(static_cast<double>(seconds.size()) + 0.5));
    seconds.push_back(sec);
    util_sum = 0;
    samples = 0;
    if (drained || timed_out) {
      timeline.load_s = *load_end;
      timeline.drain_s = t - *load_end;
      timeline.drained = drained;
      return timeline;
    }
  }
}

// How the calls of one kind ended.
struct Tally {
  uint64_t submitted = 0;
  uint64_t succeeded = 0;
  uint64_t failed = 0;         // the function failed (a bug here)
  uint64_t dead = 0;           // dead-lettered
  uint64_t unended = 0;        // no end known: lost, or still queued at the drain's timeout
  uint64_t late = 0;           // ended (succeeded or failed) after its deadline
  uint64_t on_time = 0;        // succeeded by its deadline
  std::vector<double> wait_s;  // submitted -> ended, of those that succeeded
  std::string first_error;
};

std::vector<Tally> Tallies(const std::vector<Submitted>& submitted,
                           const std::map<CallId, CallInfo>& ended) {
  std::vector<Tally> tallies(kKinds);
  for (const Submitted& s : submitted) {
    Tally& t = tallies[s.kind];
    ++t.submitted;
    auto it = ended.find(s.id);
    if (it == ended.end()) {
      ++t.unended;
      continue;
    }
    const CallInfo& info = it->second;
    switch (info.state) {
      case CallState::kSucceeded:
        ++t.succeeded;
        t.wait_s.push_back(absl::ToDoubleSeconds(info.at - s.submitted));
        ++(info.at <= s.deadline ? t.on_time : t.late);
        break;
      case CallState::kDeadLettered:
        ++t.dead;
        break;
      default:
        ++t.failed;
        if (info.at > s.deadline) ++t.late;
        break;
    }
    if (!info.error.ok() && t.first_error.empty())
      t.first_error = std::string(info.error.message());
  }
  for (Tally& t : tallies) std::sort(t.wait_s.begin(), t.wait_s.end());
  return tallies;
}

// Every call of the tenant that ended: dead letters, then the records (how
// a call ended, which wins over the queue's view).
absl::StatusOr<std::map<CallId, CallInfo>> EndedCalls(Engine& engine) {
  absl::StatusOr<std::vector<CallInfo>> calls =
      engine.ListCalls(kTenant, std::nullopt, "", std::numeric_limits<size_t>::max());
  if (!calls.ok()) return calls.status();
  std::map<CallId, CallInfo> ended;
  for (CallInfo& c : *calls) {
    if (c.state == CallState::kPending || c.state == CallState::kRunning) continue;
    ended[c.id] = std::move(c);
  }
  return ended;
}

// The applied table: rows and rows with n > 1, per kind of call.
struct Applied {
  std::map<std::string, uint64_t> rows;
  std::map<std::string, uint64_t> twice;
};

absl::StatusOr<Applied> ScanApplied(Engine& engine) {
  absl::StatusOr<std::shared_ptr<const Snapshot>> snap = engine.Latest(kTenant);
  if (!snap.ok()) return snap.status();
  const TableInfo* table = (*snap)->metadata().FindTable("applied");
  if (table == nullptr) return absl::InternalError("no applied table");
  absl::StatusOr<std::vector<IndexEntry>> rows =
      (*snap)->Scan(table->by_id, KeyRange::All(), ScanOrder::kAscending, 0);
  if (!rows.ok()) return rows.status();
  Applied applied;
  for (const IndexEntry& e : *rows) {
    absl::StatusOr<Value> doc = DecodeBinary(e.value);
    if (!doc.ok()) return doc.status();
    const std::string kind = doc->Find("kind")->string();
    ++applied.rows[kind];
    if (doc->Find("n")->int64() > 1) ++applied.twice[kind];
  }
  return applied;
}

double Quantile(const std::vector<double>& sorted, double q) {
  if (sorted.empty()) return 0;
  return sorted[std::min(sorted.size() - 1, static_cast<size_t>(std::lround(
                                                q * static_cast<double>(sorted.size() - 1))))];
}

double Pct(uint64_t part, uint64_t whole) {
  return whole == 0 ? 0.0 : 100.0 * static_cast<double>(part) / static_cast<double>(whole);
}

std::string Goal(uint64_t value) { return value == 0 ? "goal 0: met" : "goal 0: MISSED"; }

void PrintTallies(const std::vector<Tally>& tallies) {
  std::printf("\n%-24s  %9s  %9s  %6s  %6s  %7s  %7s  %7s  %s\n", "function (quota, deadline)",
              "submitted", "succeeded", "dead", "failed", "unended", "wait p50", "wait p99",
              "by deadline");
  for (int k = 0; k < kKinds; ++k) {
    const Tally& t = tallies[k];
    const KindInfo& info = kKindInfo[k];
    const std::string name =
        fmt::format("{} ({}, {} s)", info.label,
                    info.quota == QuotaClass::kReserved ? "res" : "opp", info.deadline_s);
    std::printf("%-24s  %9" PRIu64 "  %9" PRIu64 "  %6" PRIu64 "  %6" PRIu64 "  %7" PRIu64
                "  %6.2fs  %6.2fs  %" PRIu64 " (%.1f%%)\n",
                name.c_str(), t.submitted, t.succeeded, t.dead, t.failed, t.unended,
                Quantile(t.wait_s, 0.5), Quantile(t.wait_s, 0.99), t.on_time,
                Pct(t.on_time, t.submitted));
  }
  for (int k = 0; k < kKinds; ++k) {
    if (!tallies[k].first_error.empty()) {
      std::printf("  %s, first error: %s\n", kKindInfo[k].label, tallies[k].first_error.c_str());
    }
  }
  std::printf(
      "  res/opp: reserved or opportunistic quota; dead: dead-lettered (deadline passed or\n"
      "  attempts used up); failed: the function failed; unended: no end known after the\n"
      "  drain; wait: from Submit to the end of a call that succeeded; by deadline: succeeded\n"
      "  no later than its deadline.\n");
}

// Peak / trough of a per-second series over the load's whole seconds.
std::pair<uint64_t, uint64_t> PeakTrough(const std::vector<Second>& seconds,
                                         uint64_t Second::*field) {
  uint64_t peak = 0, trough = std::numeric_limits<uint64_t>::max();
  for (const Second& s : seconds) {
    if (!s.load) continue;
    peak = std::max(peak, s.*field);
    trough = std::min(trough, s.*field);
  }
  if (trough == std::numeric_limits<uint64_t>::max()) trough = 0;
  return {peak, trough};
}

std::string Ratio(std::pair<uint64_t, uint64_t> pt) {
  if (pt.second == 0) return fmt::format("{}/s / {}/s", pt.first, pt.second);
  return fmt::format("{}/s / {}/s = {:.1f}x", pt.first, pt.second,
                     static_cast<double>(pt.first) / static_cast<double>(pt.second));
}

void PrintMailer(const Mailer& mailer, const std::vector<Second>& seconds) {
  uint64_t accepted = 0, refused = 0, down = 0, overloaded = 0;
  const std::vector<Mailer::Second> m = mailer.seconds();
  for (const Mailer::Second& s : m) {
    accepted += s.accepted;
    refused += s.refused;
    down += s.down;
    if (s.refused > 0) ++overloaded;
  }
  double aimd_min = std::numeric_limits<double>::infinity(), aimd_max = 0;
  for (const Second& s : seconds) {
    if (std::isnan(s.aimd)) continue;
    aimd_min = std::min(aimd_min, s.aimd);
    aimd_max = std::max(aimd_max, s.aimd);
  }
  std::printf("mailer (capacity %.0f calls/s): %" PRIu64 " accepted, %" PRIu64
              " refused over capacity, %" PRIu64
              " refused while down\n"
              "downstream overload seconds: %" PRIu64
              " of %zu (seconds in which the mailer refused a "
              "call over its capacity)\n",
              mailer.capacity_per_s(), accepted, refused, down, overloaded, m.size());
  if (aimd_max > 0) {
    std::printf("mailer AIMD limit: %.1f .. %.1f calls/s over the seconds\n", aimd_min, aimd_max);
  }
}

struct Totals {
  uint64_t reserved_misses = 0;
  uint64_t lost = 0;
  uint64_t failed = 0;  // the function failed
  uint64_t twice = 0;
  bool applied_mismatch = false;  // job ids applied != record/backfill calls that succeeded
};

// The summary's goals. Returns what the exit code depends on.
Totals PrintGoals(const std::vector<Tally>& tallies, const Applied& applied) {
  Totals t;
  for (int k = 0; k < kKinds; ++k) {
    const Tally& tally = tallies[k];
    if (kKindInfo[k].quota == QuotaClass::kReserved) t.reserved_misses += tally.dead + tally.late;
    t.lost += tally.unended;
    t.failed += tally.failed;
  }
  const Tally& opp = tallies[kBackfill];
  std::printf("reserved deadline misses: %" PRIu64
              " (dead-lettered or ended after the deadline; %s)\n",
              t.reserved_misses, Goal(t.reserved_misses).c_str());
  std::printf("opportunistic calls finished before their deadlines: %" PRIu64 " of %" PRIu64
              " (%.1f%%)\n",
              opp.on_time, opp.submitted, Pct(opp.on_time, opp.submitted));
  std::printf("calls lost: %" PRIu64 " (acknowledged by Submit, never ended; %s)\n", t.lost,
              Goal(t.lost).c_str());
  uint64_t rows = 0;
  for (const char* kind : {"record", "backfill"}) {
    rows += applied.rows.contains(kind) ? applied.rows.at(kind) : 0;
    t.twice += applied.twice.contains(kind) ? applied.twice.at(kind) : 0;
  }
  std::printf("mutations applied twice: %" PRIu64 " of %" PRIu64 " job ids applied (%s)\n", t.twice,
              rows, Goal(t.twice).c_str());
  const uint64_t deliveries = applied.rows.contains("delivered") ? applied.rows.at("delivered") : 0;
  const uint64_t redelivered =
      applied.twice.contains("delivered") ? applied.twice.at("delivered") : 0;
  std::printf(
      "notifications: %" PRIu64 " delivered, %" PRIu64
      " recorded twice (an action is at-least-once: rerun if it ended without its record)\n",
      deliveries, redelivered);
  const uint64_t succeeded = tallies[kRecord].succeeded + tallies[kBackfill].succeeded;
  if (rows != succeeded) {
    std::printf("FAILED: %" PRIu64 " job ids applied, but %" PRIu64
                " record/backfill calls succeeded\n",
                rows, succeeded);
    t.applied_mismatch = true;
  }
  return t;
}

absl::Status Setup(Engine& engine) {
  if (absl::Status s = engine.CreateTenant(kTenant); !s.ok()) return s;
  return engine.DeployJson(kTenant, {{"jobs.js", kJobsModule}}, kSchema);
}

EngineOptions QueueEngineOptions(const QueuePhaseOptions& o,
                                 const std::shared_ptr<Mailer>& mailer) {
  EngineOptions options;
  if (o.sqlite_path.empty()) {
    options.storage = EngineStorage::kMemory;
  } else {
    options.storage = EngineStorage::kSqlite;
    options.path = o.sqlite_path;
  }
  options.scheduler.workers = o.workers;
  // One tenant: it may use every slot.
  options.queued.slots = 2 * o.workers;
  options.queued.slots_per_tenant = options.queued.slots;
  options.queued.poll_interval = absl::Milliseconds(5);
  // A short window so the limiter visibly reacts within a short demo.
  options.queued.service_limits = AimdOptions{.window = absl::Milliseconds(250),
                                              .slow_start_calls = 4,
                                              .slow_start_growth = 0.5,
                                              .additive_increase = 1,
                                              .multiplicative_decrease = 0.5,
                                              .backpressure_threshold = 0,
                                              .min_calls_per_window = 1,
                                              .burst = absl::Milliseconds(100)};
  options.queued.services["mailer"] = [mailer](const Value& args) { return mailer->Call(args); };
  return options;
}

constexpr double kDrainLimitS = 45;  // the longest deadline (30 s), and then some

double MeanUtilization(const std::vector<Second>& seconds) {
  double sum = 0;
  int n = 0;
  for (const Second& s : seconds) {
    if (!s.load) continue;
    sum += s.utilization;
    ++n;
  }
  return n == 0 ? 0.0 : sum / n;
}

void PrintScheduler(const QueuedCallStats& q) {
  std::printf("submissions: %" PRIu64 " accepted in %" PRIu64 " queue writes\n",
              q.submitter.accepted, q.submitter.batches);
  std::printf("scheduler: %" PRIu64 " deliveries, %" PRIu64 " back-pressure answers, %" PRIu64
              " retries (NACK), %" PRIu64 " dead-lettered; largest RunQ %zu, largest buffer %zu\n",
              q.ran, q.back_pressure, q.scheduler.nacked, q.scheduler.dead_lettered,
              q.scheduler.max_run_queue, q.scheduler.max_buffered);
}

int Summarize(Engine& engine, Clients& clients, const Mailer& mailer, const Timeline& timeline) {
  const std::vector<Second>& seconds = timeline.seconds;
  const std::vector<Submitted> submitted = clients.TakeSubmitted();
  absl::StatusOr<std::map<CallId, CallInfo>> ended = EndedCalls(engine);
  absl::StatusOr<Applied> applied = ScanApplied(engine);
  if (!ended.ok() || !applied.ok()) {
    std::printf("FAILED: reading the outcomes: %s\n",
                (!ended.ok() ? ended.status() : applied.status()).ToString().c_str());
    return 1;
  }
  const std::vector<Tally> tallies = Tallies(submitted, *ended);
  std::printf("\nqueue phase: %.1f s of load, then %.1f s until the queue drained%s\n",
              timeline.load_s, timeline.drain_s,
              timeline.drained ? "" : " (it did not: gave up waiting)");
  PrintTallies(tallies);
  std::printf("\nreceived per second, peak / trough: %s; executed: %s\n",
              Ratio(PeakTrough(seconds, &Second::received)).c_str(),
              Ratio(PeakTrough(seconds, &Second::executed)).c_str());
  std::printf("utilization (calls running / slots) during the load: %.0f%% on average\n",
              100 * MeanUtilization(seconds));
  PrintMailer(mailer, seconds);
  PrintScheduler(engine.stats().queued);
  const Totals t = PrintGoals(tallies, *applied);
  if (clients.refused() > 0) {
    std::printf("FAILED: %" PRIu64 " submissions refused; first: %s\n", clients.refused(),
                clients.first_refusal().c_str());
  }
  if (t.failed > 0) {
    std::printf("FAILED: %" PRIu64 " calls failed (the function threw or hit a limit)\n", t.failed);
  }
  const bool ok =
      t.lost == 0 && t.twice == 0 && t.failed == 0 && !t.applied_mismatch && clients.refused() == 0;
  std::printf("queue phase: %s\n", ok ? "OK" : "FAILED");
  return ok ? 0 : 1;
}

}  // namespace

int RunQueuePhase(const QueuePhaseOptions& o) {
  const double down_from = kOutageStart * o.duration_s;
  const double down_until = (kOutageStart + kOutageLength) * o.duration_s;
  std::printf(
      "\nqueue phase: %.1f s of submissions on a square wave (%.0f calls/s at peaks, %.0f in "
      "troughs, alternating every second), %d client threads, %d workers, %s; the mailer takes "
      "%d calls per 100 ms and is down from %.1f s to %.1f s\n",
      o.duration_s, kPeakFactor * o.trough_rate, o.trough_rate, o.clients, o.workers,
      o.sqlite_path.empty() ? "in memory" : "on SQLite", o.mailer_capacity, down_from, down_until);
  auto mailer = std::make_shared<Mailer>(o.mailer_capacity, down_from, down_until);
  absl::StatusOr<std::unique_ptr<Engine>> opened = Engine::Open(QueueEngineOptions(o, mailer));
  if (!opened.ok()) {
    std::printf("FAILED: opening the engine: %s\n", opened.status().ToString().c_str());
    return 1;
  }
  Engine& engine = **opened;
  if (absl::Status s = Setup(engine); !s.ok()) {
    std::printf("FAILED: deploying the jobs app: %s\n", s.ToString().c_str());
    return 1;
  }
  const Clock::time_point start = Clock::now();
  mailer->Start(start);
  Clients clients(engine, Schedule(o.duration_s, o.trough_rate, o.seed), start,
                  static_cast<size_t>(std::ceil(o.duration_s + kDrainLimitS)) + 1);
  clients.Start(o.clients);
  const Timeline timeline = Monitor(engine, clients, *mailer, start, kDrainLimitS);
  clients.Join();
  return Summarize(engine, clients, *mailer, timeline);
}

}  // namespace txfn::tools

// The load scenarios: diurnal (Fig 2/4), utilization (Fig 7), quota (Fig 11)
// and controller_down. Each runs the XFaaS workload model against regions of
// txfn's real queue, submitter and scheduler.
#include <algorithm>
#include <cmath>
#include <memory>

#include "fmt/format.h"
#include "tools/sim/scenario_util.h"

namespace txfn::sim {
namespace {

constexpr int kSlots = 8;

struct LoadParams {
  double days = 3;
  double calls_per_second = 4;
  int functions = 200;
  double load = 0.72;  // offered CPU over capacity, daily mean
  int slots = kSlots;
  double peak_hour = 14;
  double utilization_target = 0.75;
  double spike_hours_of_calls = 0;  // Fig 4's spiky client: this many hours of calls in 15 min
  double max_spike_calls = 0;       // > 0: but no more calls than this (the paper's 20M)
  bool local_utilization = true;
  std::function<absl::StatusOr<SchedulerConfig>()> config_source;
  std::function<absl::StatusOr<SubmitterConfig>()> submitter_config_source;
};

// One region under the diurnal workload, measured in 10-minute bins.
struct LoadRun {
  LoadRun(EventLoop* loop, VirtualClock* clock, const LoadParams& p, uint64_t seed,
          const std::string& name)
      : workload(MakeWorkload(p), seed),
        first_hour(p.days >= 2 ? 24 : static_cast<int>(p.days * 12)),
        series(absl::Minutes(10), absl::Hours(24) * p.days),
        received(series.Column("received")),
        spike(series.Column("spike")),
        executed(series.Column("executed")),
        cpu_reserved(series.Column("cpu_reserved")),
        cpu_opportunistic(series.Column("cpu_opportunistic")) {
    RegionOptions ro;
    ro.name = name;
    ro.slots = kSlots;
    ro.slots = p.slots;
    ro.workers = WorkersFor(workload, p.calls_per_second, p.load, ro.slots);
    // The received rate that offers exactly `load` of the (whole) workers.
    workload.set_calls_per_second(p.load * ro.workers * ro.slots / workload.MeanCostSeconds());
    ro.config = QuotaConfig(workload, workload.options().calls_per_second, 3, 3);
    ro.utilization.target = p.utilization_target;
    // Time-shifted calls go back to the queue for 30 min: with the default
    // 10 s the scheduler would lease and release a backlog of hours again and
    // again, which costs the simulation most of its CPU (reserved calls do not
    // wait behind that backlog either way: they are leased apart).
    ro.release_delay = absl::Minutes(30);
    ro.lease_batch = 32;
    // A poll a second must lease more than the region starts in a second
    // (slots / 3.4 s, the mix's mean cost) plus the time-shifted calls that
    // come due again and go back: half the slots. An eighth (1,473 a second
    // at paper scale) fell behind the day's rise, and the backlog grew until
    // the process ran out of memory. (Small regions lease lease_batch.)
    ro.lease_per_slot = 0.5;
    ro.tick_quantum = absl::Milliseconds(500);
    ro.config_source = p.config_source;
    ro.submitter_config_source = p.submitter_config_source;
    if (!p.local_utilization) ro.utilization_period = absl::Hours(24 * 365);
    spike_calls = p.spike_hours_of_calls * 3600 * workload.options().calls_per_second;
    if (p.max_spike_calls > 0) spike_calls = std::min(spike_calls, p.max_spike_calls);
    if (spike_calls > 0) {
      FunctionConfig fc;
      fc.opportunistic_rate = spike_calls / (8 * 3600.0);
      fc.initial_cost = absl::Milliseconds(800);
      ro.config.functions["fspike"] = fc;
    }
    region = std::make_unique<Region>(loop, clock, ro, nullptr, seed);
    region->on_start = [this](const Call&, int, absl::Time now) { series.Add(executed, now, 1); };
    region->on_finish = [this](const Call& c, int, absl::Time start, absl::Time end) {
      series.AddInterval(c.quota == QuotaClass::kReserved ? cpu_reserved : cpu_opportunistic, start,
                         end);
    };
    const absl::Time end = Start() + absl::Hours(24) * p.days;
    ScheduleArrivals(loop, &workload, region.get(), absl::Seconds(10), end, nullptr,
                     [this](const Call& c) { series.Add(received, c.start_after, 1); });
    if (spike_calls > 0) {
      // Fig 4: one client submits its burst in 15 minutes, under a 24 h SLO,
      // on day 1 at 06:00 (while the organic load rises).
      const absl::Time at = Start() + absl::Hours(24 + 6);
      const int steps = 90;
      const auto per_step = static_cast<int>(spike_calls / steps);
      for (int i = 0; i < steps; ++i) {
        loop->At(at + absl::Seconds(10) * i, [this, loop, per_step] {
          std::vector<Call> calls;
          std::normal_distribution<double> normal(0, 1);
          std::uniform_real_distribution<double> unit(0, 10);
          for (int k = 0; k < per_step; ++k) {
            const absl::Time start = loop->now() + absl::Seconds(unit(workload.rng()));
            Call c = workload.MakeCall(0, start);  // a template; the spiky function replaces it
            c.function = "fspike";
            c.args = Value::Int64(absl::ToInt64Nanoseconds(
                absl::Seconds(std::min(0.5 * std::exp(normal(workload.rng())), 60.0))));
            c.quota = QuotaClass::kOpportunistic;
            c.deadline = start + absl::Hours(24);
            series.Add(spike, start, 1);
            calls.push_back(std::move(c));
          }
          region->Submit(calls);
        });
      }
    }
  }

  static WorkloadOptions MakeWorkload(const LoadParams& p) {
    WorkloadOptions wo;
    wo.functions = p.functions;
    wo.calls_per_second = p.calls_per_second;
    wo.peak_hour = p.peak_hour;
    return wo;
  }

  // Per-hour sums of a column from first_hour on (day 0 warms the backlog up).
  std::vector<double> Hourly(int column) const {
    return Aggregate(series, column, 6, 6 * first_hour);
  }

  Workload workload;
  double spike_calls = 0;  // the spiky client's calls
  // The first measured hour: 24, or half of a run shorter than two days
  // (tests' time_factor < 1), so a short run still measures something.
  int first_hour;
  Series series;
  int received, spike, executed, cpu_reserved, cpu_opportunistic;
  std::unique_ptr<Region> region;
};

// Whole days (at least two: day 0 is the warm-up) at time_factor >= 1; below
// 1 (tests) the span shrinks down to two hours, one of warm-up.
double Days(const RunOptions& o, int small, int paper) {
  const int d = o.scale == Scale::kPaper ? paper : small;
  if (o.time_factor < 1) return std::max(2.0 / 24, d * o.time_factor);
  return std::max(2.0, std::round(d * o.time_factor));
}

// Runs `loop` until `end`, six virtual hours at a time, reporting each on
// stderr if asked to.
void RunWithProgress(const RunOptions& o, std::string_view scenario, EventLoop* loop,
                     Region& region, absl::Time end) {
  const absl::Time wall_start = absl::Now();
  for (absl::Time t = loop->now(); t < end;) {
    t = std::min(end, t + absl::Hours(6));
    loop->RunUntil(t);
    if (!o.progress) continue;
    fmt::print(stderr,
               "txfn-sim: {}: virtual hour {:.0f}, {} calls queued, {} events, {:.0f} s wall\n",
               scenario, absl::ToDoubleHours(t - Start()), region.queue().size(),
               loop->events_run(), absl::ToDoubleSeconds(absl::Now() - wall_start));
  }
}

}  // namespace

ScenarioResult RunDiurnal(const RunOptions& o) {
  const bool paper = o.scale == Scale::kPaper;
  LoadParams p;
  p.days = Days(o, 2, 7);
  p.calls_per_second = paper ? 2500 : 3;
  p.functions = paper ? 5000 : 100;
  p.spike_hours_of_calls = 3;
  p.max_spike_calls = 20e6;
  VirtualClock clock(Start());
  EventLoop loop(&clock);
  LoadRun run(&loop, &clock, p, o.seed, "r0");
  run.region->Start();
  // The calls queued (the time-shifted backlog), sampled at each bin's end.
  const int queued = run.series.Column("queued");
  loop.Every(Start() + run.series.bin(), run.series.bin(), [&] {
    run.series.Add(queued, loop.now() - absl::Nanoseconds(1),
                   static_cast<double>(run.region->queue().size()));
  });
  RunWithProgress(o, "diurnal", &loop, *run.region, Start() + absl::Hours(24) * p.days);

  const std::vector<double> rec = run.Hourly(run.received);
  const std::vector<double> exe = run.Hourly(run.executed);
  const double peak = MaxOf(rec) / 60;  // calls per minute in the busiest hour
  ScenarioResult r;
  r.name = "diurnal";
  r.figure = "Fig 2 / Fig 4";
  r.claim =
      "Received calls peak/trough 4.3x over a day; executed calls nearly flat (0.35-0.45 of the "
      "received peak); a spiky client's 20M calls in 15 min are absorbed under their 24 h SLO.";
  r.metrics = {
      {"diurnal.received_peak_trough", MaxOf(rec) / std::max(1.0, MinOf(rec)), "4.3"},
      {"diurnal.executed_peak_trough", MaxOf(exe) / std::max(1.0, MinOf(exe)), "~1.3 (0.45/0.35)"},
      {"diurnal.executed_max_of_received_peak", MaxOf(exe) / std::max(1.0, MaxOf(rec)), "0.45",
       false},
      {"diurnal.executed_min_of_received_peak", MinOf(exe) / std::max(1.0, MaxOf(rec)), "0.35",
       false},
      {"diurnal.deadline_misses",
       static_cast<double>(run.region->counters().late_starts[0] +
                           run.region->counters().late_starts[1]),
       "0", false},
  };
  run.region->CountDeadLetters();
  r.metrics.back().value += static_cast<double>(run.region->counters().dead_letters[0] +
                                                run.region->counters().dead_letters[1]);
  r.metrics.push_back(
      {"diurnal.max_queued_calls", MaxOf(Aggregate(run.series, queued, 1)), "-", false});
  // Time-shifting's cost: a deferred call is leased and released again each
  // time it comes due while there is no room for it.
  r.metrics.push_back({"diurnal.leases_per_started_call",
                       static_cast<double>(run.region->scheduler().stats().leased) /
                           std::max<double>(1, static_cast<double>(run.region->counters().started)),
                       "-", false});
  // Calls per minute, and normalised to the received peak hour's rate.
  std::string csv =
      "hour,received_per_min,spike_per_min,executed_per_min,received_norm,"
      "executed_norm,queued\n";
  for (int b = 0; b < run.series.bins(); ++b) {
    const double rm = run.series.at(run.received, b) / 10;
    const double em = run.series.at(run.executed, b) / 10;
    csv += fmt::format("{:.4f},{},{},{},{},{},{}\n", b / 6.0, Num(rm),
                       Num(run.series.at(run.spike, b) / 10), Num(em), Num(rm / peak),
                       Num(em / peak), Num(run.series.at(queued, b)));
  }
  r.csv = std::move(csv);
  r.gnuplot =
      "set title 'diurnal: received vs executed calls (normalised to the received peak)'\n"
      "set xlabel 'hour'; set ylabel 'calls/min / received peak'; set key top left\n"
      "set yrange [0:1.6]\n"
      "plot 'diurnal.csv' using 1:5 with lines lw 1 title 'received (simulated)', "
      "'' using 1:6 with lines lw 2 title 'executed (simulated)', "
      "1.0 dt 2 lc rgb 'gray40' title 'paper: received peak 1.0', "
      "0.23 dt 2 lc rgb 'gray40' title 'paper: received trough 0.23', "
      "0.45 dt 3 lc rgb 'red' title 'paper: executed 0.35-0.45', 0.35 dt 3 lc rgb 'red' notitle\n";
  r.notes = fmt::format(
      "{} model workers x {} slots; {} functions; {:.0f} calls/s received on average; "
      "35% of calls reserved, 65% opportunistic (70% of those with a 24 h deadline); the "
      "utilization controller's target is 0.75. The spiky client submits {} calls in 15 min on "
      "day 1 at 06:00 (the spike column; left out of the received peak/trough). Reserved "
      "arrivals swing 1.4x (Fig 11's reserved CPU, 0.72-1.0 of its peak: reserved calls run as "
      "they arrive) and the opportunistic ones carry the rest of the received curve's 4.3x, so "
      "what the scheduler time-shifts is what swings. Executed calls are flatter than received "
      "but not as flat as the paper's: the controller holds CPU, not calls, near its target, "
      "and the time-shifted backlog mixes cheap event-triggered and long queue-triggered calls, "
      "so the hourly count moves with the mix (busiest at night, while the day's backlog "
      "drains; the fewest at dawn, once that backlog has run out). The figure moves with the "
      "seed: seeds 1-3 give 1.49, 1.86 and 2.50 (1.85, 2.30 and 2.43 with reserved arrivals "
      "on the 4.3x curve too): a region of 16 slots is noisy.",
      run.region->workers(), kSlots, p.functions, run.workload.options().calls_per_second,
      static_cast<int64_t>(run.spike_calls));
  r.events = loop.events_run();
  r.calls = run.region->counters().submitted;
  r.virtual_hours = 24.0 * p.days;
  r.workers = run.region->workers();
  return r;
}

ScenarioResult RunQuota(const RunOptions& o) {
  const bool paper = o.scale == Scale::kPaper;
  LoadParams p;
  p.days = Days(o, 2, 7);
  p.calls_per_second = paper ? 2500 : 3;
  p.functions = paper ? 5000 : 150;
  VirtualClock clock(Start());
  EventLoop loop(&clock);
  LoadRun run(&loop, &clock, p, o.seed + 100, "r0");
  run.region->Start();
  loop.RunUntil(Start() + absl::Hours(24) * p.days);
  run.region->CountDeadLetters();

  const double capacity_hour = run.region->slots() * 3600.0;
  std::vector<double> res = run.Hourly(run.cpu_reserved);
  std::vector<double> opp = run.Hourly(run.cpu_opportunistic);
  const RegionCounters& c = run.region->counters();
  ScenarioResult r;
  r.name = "quota";
  r.figure = "Fig 11";
  r.claim =
      "Reserved-quota CPU follows the day (0.72-1.0 of its peak); opportunistic CPU fills the "
      "troughs in opposite phase (0.05-0.15); reserved calls start within seconds.";
  r.metrics = {
      {"quota.reserved_deadline_misses", static_cast<double>(c.late_starts[0] + c.dead_letters[0]),
       "0"},
      {"quota.opportunistic_deadline_misses",
       static_cast<double>(c.late_starts[1] + c.dead_letters[1]), "0 (24 h SLO)"},
      {"quota.phase_correlation", Correlation(res, opp), "< 0 (opposite phase)", false},
      {"quota.reserved_min_of_peak", MinOf(res) / std::max(1.0, MaxOf(res)), "0.72", false},
  };
  std::string csv = "hour,reserved_cpu_share,opportunistic_cpu_share,total_cpu_share\n";
  for (size_t h = 0; h < res.size(); ++h) {
    csv += fmt::format("{},{},{},{}\n", run.first_hour + h, Num(res[h] / capacity_hour),
                       Num(opp[h] / capacity_hour), Num((res[h] + opp[h]) / capacity_hour));
  }
  r.csv = std::move(csv);
  r.gnuplot =
      "set title 'quota: CPU by quota class (share of the region)'\n"
      "set xlabel 'hour'; set ylabel 'CPU share'; set key top left; set yrange [0:1.1]\n"
      "plot 'quota.csv' using 1:2 with lines lw 2 title 'reserved (simulated)', "
      "'' using 1:3 with lines lw 2 title 'opportunistic (simulated)', "
      "'' using 1:4 with lines dt 2 title 'total', "
      "0.75 dt 3 lc rgb 'gray40' title 'utilization target 0.75'\n";
  r.notes = fmt::format(
      "{} model workers x {} slots. Reserved functions have 3x their peak CPU as quota (and at "
      "least 1 call/s: a rate limit below that throttles any two calls that arrive together, "
      "which at 100 calls a day happens daily) and deadlines of 30 s - 15 min; opportunistic ones "
      "r0 = 3x their mean rate, scaled by S. Reserved calls meet their deadlines because the "
      "scheduler leases them apart from the opportunistic backlog, orders its RunQ by "
      "criticality then deadline, and runs opportunistic calls only on idle slots. The "
      "paper's Fig 11 is normalised to the reserved peak and its reserved load swings 1.4x; the "
      "model's reserved arrivals swing 1.4x too, but its reserved CPU hour by hour is noisy "
      "(cheap calls on 16 slots), so the lowest hour's share of the busiest is below 0.72.",
      run.region->workers(), kSlots);
  r.events = loop.events_run();
  r.calls = c.submitted;
  r.virtual_hours = 24.0 * p.days;
  r.workers = run.region->workers();
  return r;
}

ScenarioResult RunUtilization(const RunOptions& o) {
  const bool paper = o.scale == Scale::kPaper;
  const int regions = 12;
  LoadParams p;
  p.days = Days(o, 2, 7);
  p.functions = paper ? 2000 : 30;
  VirtualClock clock(Start());
  EventLoop loop(&clock);
  std::vector<std::unique_ptr<LoadRun>> runs;
  std::vector<int> busy;
  for (int i = 0; i < regions; ++i) {
    // Regions differ in how loaded they are (0.55-0.80 of their capacity on
    // average) and in their local peak hour; both are model choices.
    LoadParams rp = p;
    rp.load = 0.55 + 0.25 * i / (regions - 1);
    rp.calls_per_second = paper ? 400 : 0.5;
    rp.slots = paper ? 8 : 2;
    rp.peak_hour = 12 + (i % 4);
    runs.push_back(
        std::make_unique<LoadRun>(&loop, &clock, rp, o.seed * 1000 + i, fmt::format("r{}", i)));
    busy.push_back(runs.back()->series.Column("busy"));
    LoadRun* run = runs.back().get();
    run->region->on_finish = [run, col = busy.back()](const Call&, int, absl::Time s,
                                                      absl::Time e) {
      run->series.AddInterval(col, s, e);
    };
    run->region->Start();
  }
  loop.RunUntil(Start() + absl::Hours(24) * p.days);

  std::vector<std::vector<double>> util;
  std::vector<double> region_mean, all_hours;
  for (int i = 0; i < regions; ++i) {
    std::vector<double> h = runs[i]->Hourly(busy[i]);
    for (double& x : h) x /= runs[i]->region->slots() * 3600.0;
    region_mean.push_back(MeanOf(h));
    util.push_back(std::move(h));
  }
  std::string csv = "hour";
  for (int i = 0; i < regions; ++i) csv += fmt::format(",r{}", i);
  csv += ",mean\n";
  std::vector<double> hourly_mean;
  for (size_t h = 0; h < util[0].size(); ++h) {
    double sum = 0;
    csv += fmt::format("{}", runs[0]->first_hour + h);
    for (int i = 0; i < regions; ++i) {
      csv += "," + Num(util[i][h]);
      sum += util[i][h];
    }
    hourly_mean.push_back(sum / regions);
    csv += "," + Num(sum / regions) + "\n";
  }
  int workers = 0;
  uint64_t calls = 0;
  for (auto& run : runs) {
    workers += run->region->workers();
    calls += run->region->counters().submitted;
  }
  ScenarioResult r;
  r.name = "utilization";
  r.figure = "Fig 7";
  r.claim =
      "Daily average CPU utilization 66% over 12 regions (each within about 56-79%); CPU "
      "peak/trough 1.4x.";
  r.metrics = {
      {"utilization.daily_mean", MeanOf(region_mean), "0.66"},
      {"utilization.lowest_region", MinOf(region_mean), "~0.56", false},
      {"utilization.highest_region", MaxOf(region_mean), "~0.79", false},
      {"utilization.cpu_peak_trough", MaxOf(hourly_mean) / std::max(1e-9, MinOf(hourly_mean)),
       "1.4", false},
  };
  r.csv = std::move(csv);
  r.gnuplot =
      "set title 'utilization: CPU utilization per region per hour'\n"
      "set xlabel 'hour'; set ylabel 'utilization'; set key outside right; set yrange [0:1]\n"
      "plot for [i=2:13] 'utilization.csv' using 1:i with lines lw 1 notitle, "
      "'' using 1:14 with lines lw 3 lc rgb 'black' title 'mean of regions (simulated)', "
      "0.66 dt 2 lw 2 lc rgb 'red' title 'paper: daily mean 0.66', "
      "0.56 dt 3 lc rgb 'gray40' title 'paper: regions 0.56-0.79', 0.79 dt 3 lc rgb 'gray40' "
      "notitle\n";
  r.notes =
      "12 regions; region i is offered 0.55 + 0.25 i/11 of its capacity on average (a model "
      "choice standing in for the paper's uneven regions) with its peak hour shifted by 0-3 h. "
      "The daily mean therefore follows the offered load; what the scheduler adds is keeping "
      "each region near its offered mean through the day (time-shifting) without missing "
      "deadlines.";
  r.events = loop.events_run();
  r.calls = calls;
  r.virtual_hours = 24.0 * p.days;
  r.workers = workers;
  return r;
}

namespace {

// The controllers of controller_down: they serve versioned configs and the
// central opportunistic share, and can be stopped.
struct Controllers {
  SchedulerConfig scheduler;
  SubmitterConfig submitter;
  bool down = false;
  uint64_t version = 1;
};

struct DownRun {
  uint64_t finished_in_window = 0;
  uint64_t config_failures = 0;
  uint64_t config_version = 0;
  double share_during = 0;
  uint64_t events = 0, calls = 0;
  int workers = 0;
};

DownRun RunWithControllers(const RunOptions& o, bool stop, absl::Duration span,
                           absl::Time down_from, absl::Time down_to, Series* series, int col) {
  auto ctl = std::make_shared<Controllers>();
  LoadParams p;
  p.days = 1;
  p.calls_per_second = o.scale == Scale::kPaper ? 2500 : 8;
  p.functions = o.scale == Scale::kPaper ? 5000 : 150;
  p.local_utilization = false;
  p.config_source = [ctl]() -> absl::StatusOr<SchedulerConfig> {
    if (ctl->down) return absl::UnavailableError("controller stopped");
    return ctl->scheduler;
  };
  p.submitter_config_source = [ctl]() -> absl::StatusOr<SubmitterConfig> {
    if (ctl->down) return absl::UnavailableError("controller stopped");
    return ctl->submitter;
  };
  VirtualClock clock(Start());
  EventLoop loop(&clock);
  LoadRun run(&loop, &clock, p, o.seed + 7, "r0");
  ctl->scheduler = QuotaConfig(run.workload, p.calls_per_second, 3, 3);
  ctl->submitter.version = 1;
  ctl->submitter.default_limit = {.calls_per_second = 1e6, .burst = 1e6};
  // The central utilization controller: the library's UtilizationController,
  // fed the region's utilization, publishing S; it also republishes the
  // config every 10 minutes (a new version with the same content).
  auto uc = std::make_shared<UtilizationController>(*UtilizationController::Create({}));
  Region* region = run.region.get();
  loop.Every(Start(), absl::Seconds(10), [ctl, uc, region] {
    if (ctl->down) return;
    region->scheduler().SetOpportunisticShare(uc->Update(region->Utilization()));
  });
  loop.Every(Start(), absl::Minutes(10), [ctl] {
    if (ctl->down) return;
    ctl->scheduler.version = ++ctl->version;
    ctl->submitter.version = ctl->version;
  });
  DownRun out;
  if (stop) {
    loop.At(down_from, [ctl] { ctl->down = true; });
    loop.At(down_to, [ctl] { ctl->down = false; });
  }
  region->on_finish = [&](const Call&, int, absl::Time, absl::Time end) {
    series->Add(col, end, 1);
    if (end >= down_from && end < down_to) ++out.finished_in_window;
  };
  region->Start();
  loop.RunUntil(down_from + (down_to - down_from) / 2);
  out.share_during = region->scheduler().stats().opportunistic_share;
  loop.RunUntil(Start() + span);
  const SchedulerStats st = region->scheduler().stats();
  out.config_failures = st.config_failures + region->submitter().stats().config_failures;
  out.config_version = st.config_version;
  out.events = loop.events_run();
  out.calls = region->counters().submitted;
  out.workers = region->workers();
  return out;
}

}  // namespace

ScenarioResult RunControllerDown(const RunOptions& o) {
  // Down for 45 minutes at 13:00, during the day's peak, after 12 h of running.
  const absl::Duration span = absl::Hours(std::max(15.0, 16 * o.time_factor));
  const absl::Time from = Start() + absl::Hours(13);
  const absl::Time to = from + absl::Minutes(45);
  Series series(absl::Minutes(5), span);
  const int up_col = series.Column("finished_per_min_controllers_up");
  const int down_col = series.Column("finished_per_min_controllers_stopped");
  const DownRun up = RunWithControllers(o, false, span, from, to, &series, up_col);
  const DownRun down = RunWithControllers(o, true, span, from, to, &series, down_col);
  const double ratio = static_cast<double>(down.finished_in_window) /
                       std::max<double>(1, static_cast<double>(up.finished_in_window));
  ScenarioResult r;
  r.name = "controller_down";
  r.figure = "§ controllers";
  r.claim =
      "Config is cached: with the controllers gone the system keeps running for tens of "
      "minutes on its last good config.";
  r.metrics = {
      {"controller_down.throughput_ratio", ratio, "~1.0"},
      {"controller_down.config_failures_seen", static_cast<double>(down.config_failures),
       "> 0 (the sources failed)", false},
      {"controller_down.share_while_down", down.share_during, "last published S", false},
  };
  r.csv = SeriesCsv(series, {up_col, down_col}, 1.0 / 5, 12 * 10);
  r.gnuplot =
      "set title 'controller\\_down: calls finished per minute, controllers stopped 13:00-13:45'\n"
      "set xlabel 'hour'; set ylabel 'calls/min'; set key bottom left\n"
      "set object 1 rect from 13,graph 0 to 13.75,graph 1 fc rgb '#eeeeee' behind\n"
      "plot 'controller_down.csv' using 1:2 with lines lw 2 title 'controllers up', "
      "'' using 1:3 with lines lw 2 title 'controllers stopped (shaded)'\n";
  r.notes = fmt::format(
      "The same seed run twice: controllers up, and controllers stopped for 45 min (the "
      "scheduler's and submitter's config sources return Unavailable; the central "
      "UtilizationController stops publishing S). {} config polls failed; the scheduler kept "
      "config version {} and S = {:.2f}. Ratio = calls finished in the window, stopped / up "
      "(5 workers; one worker's 45 minutes swing by 10% with its heavy-tailed calls). Below 1 "
      "when the last S published before the stop was low: the time-shifted calls wait the 45 "
      "minutes out at that S (the reserved ones run), as they would in XFaaS.",
      down.config_failures, down.config_version, down.share_during);
  r.events = up.events + down.events;
  r.calls = up.calls + down.calls;
  r.virtual_hours = 2 * absl::ToDoubleHours(span);
  r.workers = down.workers;
  return r;
}

}  // namespace txfn::sim

// tools/sim/scenario_util.h — pieces the scenarios share (private to txfn-sim).
#ifndef TXFN_TOOLS_SIM_SCENARIO_UTIL_H_
#define TXFN_TOOLS_SIM_SCENARIO_UTIL_H_

#include <string>
#include <vector>

#include "tools/sim/scenarios.h"
#include "tools/sim/sim.h"

namespace txfn::sim {

// The scheduler config of a workload's functions: reserved functions get
// `reserved_headroom` times their peak CPU demand as their reserved quota,
// and at least 1 call/s of it (a lower rate limit throttles any two calls
// that arrive together);
// opportunistic ones r0 = `r0_factor` times their mean rate (so S = 1 / r0_factor
// runs them at their mean rate). `calls_per_second` is the workload's mean.
SchedulerConfig QuotaConfig(const Workload& w, double calls_per_second, double reserved_headroom,
                            double r0_factor);

// Model workers (of `slots` slots) needed for `load` of the capacity at the
// workload's mean rate.
int WorkersFor(const Workload& w, double calls_per_second, double load, int slots);

// Submits the workload's arrivals every `step` from Start() until `end`,
// multiplied by rate_scale(t); `on_call` sees each call before it is submitted.
void ScheduleArrivals(EventLoop* loop, Workload* w, Region* region, absl::Duration step,
                      absl::Time end, const std::function<double(absl::Time)>& rate_scale,
                      const std::function<void(const Call&)>& on_call);

// CSV of the series' columns, the first column the bin's start in hours.
std::string SeriesCsv(const Series& s, const std::vector<int>& columns, double scale = 1,
                      int first_bin = 0);

// Sums of a column over `per` consecutive bins from `first_bin`.
std::vector<double> Aggregate(const Series& s, int column, int per, int first_bin = 0);

double MaxOf(const std::vector<double>& v);
double MinOf(const std::vector<double>& v);
double MeanOf(const std::vector<double>& v);

// Formats a number for the report and summary: up to 4 significant digits.
std::string Num(double v);

}  // namespace txfn::sim

#endif  // TXFN_TOOLS_SIM_SCENARIO_UTIL_H_

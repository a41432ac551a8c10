// Shared scenario pieces and the scenario registry; see scenario_util.h.
#include "tools/sim/scenario_util.h"

#include <algorithm>
#include <cmath>

#include "fmt/format.h"

namespace txfn::sim {

// Defined in scenarios_load.cc and scenarios_limits.cc.
ScenarioResult RunDiurnal(const RunOptions& o);
ScenarioResult RunUtilization(const RunOptions& o);
ScenarioResult RunQuota(const RunOptions& o);
ScenarioResult RunControllerDown(const RunOptions& o);
ScenarioResult RunOutage(const RunOptions& o);
ScenarioResult RunAimd(const RunOptions& o);
ScenarioResult RunLocality(const RunOptions& o);
ScenarioResult RunJit(const RunOptions& o);

const std::vector<std::string>& ScenarioNames() {
  static const std::vector<std::string> names = {
      "diurnal", "utilization", "quota", "outage", "aimd", "locality", "jit", "controller_down"};
  return names;
}

absl::StatusOr<ScenarioResult> RunScenario(const std::string& name, const RunOptions& o) {
  if (name == "diurnal") return RunDiurnal(o);
  if (name == "utilization") return RunUtilization(o);
  if (name == "quota") return RunQuota(o);
  if (name == "outage") return RunOutage(o);
  if (name == "aimd") return RunAimd(o);
  if (name == "locality") return RunLocality(o);
  if (name == "jit") return RunJit(o);
  if (name == "controller_down") return RunControllerDown(o);
  return absl::NotFoundError(fmt::format("no scenario '{}'", name));
}

SchedulerConfig QuotaConfig(const Workload& w, double calls_per_second, double reserved_headroom,
                            double r0_factor) {
  SchedulerConfig config;
  config.version = 1;
  const double trough = 1 / w.options().peak_trough;
  const double peak = 2 / (1 + trough);  // the diurnal curve's maximum over its mean
  for (const FunctionSpec& f : w.functions()) {
    const double rate =
        calls_per_second * w.options().call_share[static_cast<int>(f.trigger)] * f.weight;
    FunctionConfig fc;
    fc.initial_cost = absl::Seconds(f.mean_s);
    if (f.quota == QuotaClass::kReserved) {
      fc.reserved_cpu_quota = std::max(reserved_headroom * rate * peak, 1.0) * f.mean_s;
    } else {
      fc.opportunistic_rate = std::max(r0_factor * rate, 1e-4);
    }
    if (!f.downstream.empty()) fc.downstreams = {f.downstream};
    config.functions[f.name] = fc;
  }
  return config;
}

int WorkersFor(const Workload& w, double calls_per_second, double load, int slots) {
  const double busy = calls_per_second * w.MeanCostSeconds();
  return std::max(1, static_cast<int>(std::lround(busy / load / slots)));
}

void ScheduleArrivals(EventLoop* loop, Workload* w, Region* region, absl::Duration step,
                      absl::Time end, const std::function<double(absl::Time)>& rate_scale,
                      const std::function<void(const Call&)>& on_call) {
  auto batch = std::make_shared<std::vector<Call>>();
  loop->Every(Start(), step, [=] {
    const absl::Time now = loop->now();
    if (now >= end) return;
    batch->clear();
    w->Arrivals(now, step, rate_scale ? rate_scale(now) : 1.0, batch.get());
    if (on_call) {
      for (const Call& c : *batch) on_call(c);
    }
    region->Submit(*batch);
  });
}

std::string SeriesCsv(const Series& s, const std::vector<int>& columns, double scale,
                      int first_bin) {
  std::string out = "hour";
  for (int c : columns) out += "," + s.names()[c];
  out += "\n";
  const double bin_h = absl::ToDoubleHours(s.bin());
  for (int b = first_bin; b < s.bins(); ++b) {
    out += fmt::format("{:.4f}", b * bin_h);
    for (int c : columns) out += "," + Num(s.at(c, b) * scale);
    out += "\n";
  }
  return out;
}

std::vector<double> Aggregate(const Series& s, int column, int per, int first_bin) {
  std::vector<double> out;
  for (int b = first_bin; b + per <= s.bins(); b += per) {
    double sum = 0;
    for (int i = 0; i < per; ++i) sum += s.at(column, b + i);
    out.push_back(sum);
  }
  return out;
}

double MaxOf(const std::vector<double>& v) {
  return v.empty() ? 0 : *std::max_element(v.begin(), v.end());
}
double MinOf(const std::vector<double>& v) {
  return v.empty() ? 0 : *std::min_element(v.begin(), v.end());
}
double MeanOf(const std::vector<double>& v) {
  double sum = 0;
  for (double x : v) sum += x;
  return v.empty() ? 0 : sum / static_cast<double>(v.size());
}

std::string Num(double v) {
  if (std::isnan(v) || std::isinf(v)) return "0";
  if (v == 0) return "0";
  std::string s = fmt::format("{:.4g}", v);
  return s == "-0" ? "0" : s;
}

}  // namespace txfn::sim

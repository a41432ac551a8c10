// txfn-sim — reproduces the XFaaS paper's figures with txfn's own queue and
// scheduler on a virtual clock. See tools/sim/scenarios.h and README.md.
//
//   txfn-sim --scenario=all --scale=small --seed=1 --out=sim-out
//
// Writes <out>/<scenario>.csv, .gp (and .svg when gnuplot is installed),
// summary.json and REPORT.md. The same seed gives byte-identical files.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "fmt/format.h"
#include "tools/help_flags.h"
#include "tools/sim/report.h"
#include "tools/sim/scenario_util.h"
#include "tools/sim/scenarios.h"

ABSL_FLAG(std::string, scenario, "all",
          "diurnal, utilization, quota, outage, aimd, locality, jit, controller_down, or all");
ABSL_FLAG(std::string, scale, "small",
          "small (every scenario in well under a minute) or paper (the paper's sizes: 10,000 "
          "workers in jit and locality, 2,500 calls/s over a week in diurnal and quota, 12 "
          "regions of 400 calls/s in utilization; hours of wall time each, see the README)");
ABSL_FLAG(uint64_t, seed, 1, "the run's seed: the same seed gives the same output");
ABSL_FLAG(std::string, out, "sim-out", "the output directory");
ABSL_FLAG(bool, plot, true, "render the plots with gnuplot when it is installed");
ABSL_FLAG(double, time_factor, 1.0,
          "multiplies each scenario's virtual duration, in (0, 100] (testing)");
ABSL_FLAG(bool, progress, false,
          "report every 6 virtual hours of diurnal on stderr, with the wall time");
ABSL_FLAG(int, jobs, static_cast<int>(std::max(1u, std::thread::hardware_concurrency())),
          "scenarios run at once, one per thread (the output does not depend on it)");

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "txfn-sim: a deterministic simulator reproducing the XFaaS paper's figures with txfn's "
      "own queue, submitter and scheduler.\n  txfn-sim --scenario=NAME|all --scale=small|paper "
      "--seed=N --out=DIR [--noplot]");
  txfn::tools::ListOwnFlagsInHelp();
  absl::ParseCommandLine(argc, argv);
  txfn::sim::RunOptions options;
  const std::string scale = absl::GetFlag(FLAGS_scale);
  if (scale == "paper") {
    options.scale = txfn::sim::Scale::kPaper;
  } else if (scale != "small") {
    fmt::print(stderr, "txfn-sim: --scale must be small or paper, not '{}'\n", scale);
    return 2;
  }
  options.seed = absl::GetFlag(FLAGS_seed);
  options.time_factor = absl::GetFlag(FLAGS_time_factor);
  // Past 100, virtual spans leave absl::Time's range in places (1e6 aborted).
  if (!(options.time_factor > 0 && options.time_factor <= 100)) {
    fmt::print(stderr, "txfn-sim: --time_factor must be a number in (0, 100], not {}\n",
               options.time_factor);
    return 2;
  }
  options.progress = absl::GetFlag(FLAGS_progress);
  std::vector<std::string> names;
  const std::string which = absl::GetFlag(FLAGS_scenario);
  if (which == "all") {
    names = txfn::sim::ScenarioNames();
  } else {
    names.push_back(which);
  }
  const std::string out = absl::GetFlag(FLAGS_out);
  // Checked before simulating: a paper-scale run takes hours to find it cannot write.
  if (absl::Status s = txfn::sim::PrepareOutputDir(out); !s.ok()) {
    fmt::print(stderr, "txfn-sim: {}\n", s.ToString());
    return 1;
  }
  // Scenarios are independent (each has its own clock, loop, queue and
  // scheduler), so they run on --jobs threads; the output is assembled in
  // scenario order, the same whatever the number of threads.
  struct Outcome {
    absl::StatusOr<txfn::sim::ScenarioResult> result = absl::UnknownError("not run");
    double wall = 0;
  };
  std::vector<Outcome> outcomes(names.size());
  std::atomic<size_t> next{0};
  const auto t0 = std::chrono::steady_clock::now();
  {
    const int jobs = std::clamp<int>(absl::GetFlag(FLAGS_jobs), 1, static_cast<int>(names.size()));
    std::vector<std::thread> threads;
    threads.reserve(jobs);
    for (int j = 0; j < jobs; ++j) {
      threads.emplace_back([&] {
        for (size_t i; (i = next.fetch_add(1)) < names.size();) {
          const auto s0 = std::chrono::steady_clock::now();
          outcomes[i].result = txfn::sim::RunScenario(names[i], options);
          outcomes[i].wall =
              std::chrono::duration<double>(std::chrono::steady_clock::now() - s0).count();
        }
      });
    }
    for (std::thread& t : threads) t.join();
  }
  std::vector<txfn::sim::ScenarioResult> results;
  std::string timing;
  for (size_t i = 0; i < names.size(); ++i) {
    absl::StatusOr<txfn::sim::ScenarioResult>& r = outcomes[i].result;
    if (!r.ok()) {
      fmt::print(stderr, "txfn-sim: {}\n", r.status().ToString());
      return 2;
    }
    const double wall = outcomes[i].wall;
    fmt::print("{} ({}): {:.1f} s wall, {:.0f} h virtual, {} workers, {} calls, {} events\n",
               names[i], r->figure, wall, r->virtual_hours, r->workers, r->calls, r->events);
    for (const txfn::sim::Metric& m : r->metrics) {
      fmt::print("  {:<45} {:>10}   paper: {}\n", m.key, txfn::sim::Num(m.value), m.paper);
    }
    timing += fmt::format("{} {:.2f} s wall, {} events\n", names[i], wall, r->events);
    results.push_back(*std::move(r));
  }
  const double total = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  timing += fmt::format("total {:.2f} s wall (scale {})\n", total, scale);
  fmt::print("total: {:.1f} s wall\n", total);
  if (absl::Status s = txfn::sim::WriteOutputs(out, results, scale, options.seed); !s.ok()) {
    fmt::print(stderr, "txfn-sim: {}\n", s.ToString());
    return 1;
  }
  {
    // Wall times vary from run to run: kept out of the deterministic files.
    std::FILE* f = std::fopen((out + "/timing.txt").c_str(), "w");
    if (f != nullptr) {
      std::fputs(timing.c_str(), f);
      std::fclose(f);
    }
  }
  if (absl::GetFlag(FLAGS_plot)) {
    if (!txfn::sim::RenderPlots(out, results)) {
      fmt::print(
          "note: gnuplot is not installed; the plots were not rendered (the .gp scripts "
          "are in {}; scripts/install-deps installs gnuplot-nox)\n",
          out);
    }
  }
  fmt::print("wrote {}/summary.json and {}/REPORT.md\n", out, out);
  return 0;
}

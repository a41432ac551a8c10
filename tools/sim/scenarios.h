// tools/sim/scenarios.h — txfn-sim's scenarios, one per XFaaS figure.
//
// Each scenario builds its regions and workload (sim.h), runs them on a
// virtual clock, and returns its time series (CSV), its headline figures next
// to the paper's, and a gnuplot script for its plot. Running one is a pure
// function of (name, scale, seed): the same arguments give the same bytes.
#ifndef TXFN_TOOLS_SIM_SCENARIOS_H_
#define TXFN_TOOLS_SIM_SCENARIOS_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace txfn::sim {

enum class Scale { kSmall, kPaper };

struct RunOptions {
  Scale scale = Scale::kSmall;
  uint64_t seed = 1;
  // Multiplies every scenario's virtual duration (tests use < 1 for a quick
  // run; the headline tolerances hold at 1).
  double time_factor = 1;
  // Report diurnal's progress every 6 virtual hours on stderr (for
  // paper-scale runs of hours); the output does not depend on it.
  bool progress = false;
};

// A headline figure: a key of summary.json (or an extra line of the report).
struct Metric {
  std::string key;    // "diurnal.received_peak_trough"
  double value = 0;   // simulated
  std::string paper;  // the paper's value, as text ("4.3", "≈1.3", "0")
  bool in_summary = true;
};

struct ScenarioResult {
  std::string name;
  std::string figure;  // "Fig 2/4"
  std::string claim;   // the paper's claim, one sentence
  std::string csv;     // the time series, with a header line
  std::vector<Metric> metrics;
  // A gnuplot script body plotting "<name>.csv" (the output terminal and
  // file are set by the caller).
  std::string gnuplot;
  std::string notes;  // how the model produces the figure; what differs
  uint64_t events = 0;
  uint64_t calls = 0;        // calls submitted
  double virtual_hours = 0;  // simulated time
  int workers = 0;           // model workers, all regions
};

// The scenario names, in the order `all` runs them.
const std::vector<std::string>& ScenarioNames();

// NotFound for an unknown name.
[[nodiscard]] absl::StatusOr<ScenarioResult> RunScenario(const std::string& name,
                                                         const RunOptions& options);

}  // namespace txfn::sim

#endif  // TXFN_TOOLS_SIM_SCENARIOS_H_

// tools/sim/report.h — writes txfn-sim's outputs: a CSV and a gnuplot script
// per scenario, summary.json, REPORT.md, and the plots when gnuplot is there.
#ifndef TXFN_TOOLS_SIM_REPORT_H_
#define TXFN_TOOLS_SIM_REPORT_H_

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "tools/sim/scenarios.h"

namespace txfn::sim {

// The summary.json text: one "key": value line per summary metric of
// `results`, in the order of the results and their metrics.
std::string SummaryJson(const std::vector<ScenarioResult>& results);

// Creates `dir` if needed and checks that a file can be written in it: Unavailable naming
// `dir` and why not.
[[nodiscard]] absl::Status PrepareOutputDir(const std::string& dir);

// Writes <dir>/<name>.csv and <name>.gp for each result, summary.json and
// REPORT.md (all deterministic: no wall times), and removes an earlier run's
// <name>.svg (RenderPlots makes this run's). Creates `dir` if needed.
[[nodiscard]] absl::Status WriteOutputs(const std::string& dir,
                                        const std::vector<ScenarioResult>& results,
                                        const std::string& scale, uint64_t seed);

// Runs gnuplot on each <name>.gp in `dir` (making <name>.svg). Returns false,
// having changed nothing, when gnuplot is not installed.
bool RenderPlots(const std::string& dir, const std::vector<ScenarioResult>& results);

}  // namespace txfn::sim

#endif  // TXFN_TOOLS_SIM_REPORT_H_

// Output files of txfn-sim; see report.h.
#include "tools/sim/report.h"

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "fmt/format.h"
#include "tools/sim/scenario_util.h"

namespace txfn::sim {
namespace {

absl::Status WriteFile(const std::filesystem::path& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
  out.close();
  if (!out) return absl::UnavailableError(fmt::format("cannot write {}", path.string()));
  return absl::OkStatus();
}

std::string ShellQuote(const std::string& s) {
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

}  // namespace

std::string SummaryJson(const std::vector<ScenarioResult>& results) {
  std::vector<std::string> lines;
  for (const ScenarioResult& r : results) {
    for (const Metric& m : r.metrics) {
      if (m.in_summary) lines.push_back(fmt::format("  \"{}\": {}", m.key, Num(m.value)));
    }
  }
  std::string out = "{\n";
  for (size_t i = 0; i < lines.size(); ++i) out += lines[i] + (i + 1 < lines.size() ? ",\n" : "\n");
  return out + "}\n";
}

absl::Status PrepareOutputDir(const std::string& dir) {
  if (dir.empty()) return absl::InvalidArgumentError("--out is empty");
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return absl::UnavailableError(fmt::format("cannot create {}: {}", dir, ec.message()));
  const std::filesystem::path probe = std::filesystem::path(dir) / "timing.txt";
  return WriteFile(probe, "(the run has not finished)\n");
}

absl::Status WriteOutputs(const std::string& dir, const std::vector<ScenarioResult>& results,
                          const std::string& scale, uint64_t seed) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return absl::UnavailableError(fmt::format("cannot create {}: {}", dir, ec.message()));
  const std::filesystem::path base(dir);
  std::string md = fmt::format(
      "# txfn-sim report\n\nScale `{}`, seed {}. Every figure below comes from txfn's own "
      "`InMemoryQueue`, `Submitter`, `CallScheduler` (with its limiters, utilization controller "
      "and locality groups) driven on a virtual clock by model workers; see each scenario's "
      "notes for the model choices behind it.\n\n"
      "**Model, in short.** Calls follow Table 1's trigger mix and Table 3's execution times "
      "(lognormal by trigger, capped at 15 min), with Zipf popularity. Received calls swing "
      "4.3x a day; reserved arrivals swing only 1.4x (Fig 11) and the delay-tolerant "
      "opportunistic ones carry the rest. A downstream sheds load above 90% of its per-second "
      "capacity; AIMD paces calls to it in 250 ms bursts. A restarted worker warms up as HHVM "
      "does (profile, then compile; a seeder's profile skips the profiling). Worker memory is a "
      "6 GiB base plus the JIT code of the functions it ran in the last hour. Constants the "
      "paper does not publish are named as calibrated where they are.\n\n"
      "| figure | metric | paper | simulated |\n|---|---|---|---|\n",
      scale, seed);
  for (const ScenarioResult& r : results) {
    for (const Metric& m : r.metrics) {
      md += fmt::format("| {} | `{}` | {} | {} |\n", r.figure, m.key, m.paper, Num(m.value));
    }
  }
  for (const ScenarioResult& r : results) {
    const std::string gp = fmt::format(
        "# gnuplot script for {0}.svg (txfn-sim)\n"
        "set terminal svg size 960,540 dynamic enhanced font 'sans,11'\n"
        "set output '{0}.svg'\nset datafile separator ','\nset key autotitle columnhead\n"
        "set grid\n{1}",
        r.name, r.gnuplot);
    // An old run's plot beside this run's numbers would lie: this run's is rendered (or not,
    // with --noplot or without gnuplot) after these files are written.
    std::filesystem::remove(base / (r.name + ".svg"), ec);
    absl::Status s = WriteFile(base / (r.name + ".csv"), r.csv);
    if (s.ok()) s = WriteFile(base / (r.name + ".gp"), gp);
    if (!s.ok()) return s;
    md += fmt::format("\n## {} ({})\n\n**Paper:** {}\n\n![{}]({}.svg)\n\n", r.name, r.figure,
                      r.claim, r.name, r.name);
    for (const Metric& m : r.metrics) {
      md += fmt::format("- `{}`: **{}** (paper: {})\n", m.key, Num(m.value), m.paper);
    }
    md += fmt::format(
        "\n{}\n\nSimulated: {:.0f} h of virtual time, {} model workers, {} calls submitted, {} "
        "events. Data: [{}.csv]({}.csv).\n",
        r.notes, r.virtual_hours, r.workers, r.calls, r.events, r.name, r.name);
  }
  absl::Status s = WriteFile(base / "summary.json", SummaryJson(results));
  if (s.ok()) s = WriteFile(base / "REPORT.md", md);
  return s;
}

bool RenderPlots(const std::string& dir, const std::vector<ScenarioResult>& results) {
  if (std::system("command -v gnuplot >/dev/null 2>&1") != 0) return false;
  for (const ScenarioResult& r : results) {
    const std::string cmd =
        fmt::format("cd {} && gnuplot {} 2>&1", ShellQuote(dir), ShellQuote(r.name + ".gp"));
    if (std::system(cmd.c_str()) != 0) {
      fmt::print(stderr, "txfn-sim: gnuplot failed on {}.gp\n", r.name);
    }
  }
  return true;
}

}  // namespace txfn::sim

// txfn-sim: the event loop's order, determinism, the scheduler's ordering
// rule seen through the simulator, and each scenario's headline figure
// against the paper's at `small` scale.
#include "tools/sim/sim.h"

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "tools/sim/report.h"
#include "tools/sim/scenarios.h"

namespace txfn::sim {
namespace {

TEST(EventLoopTest, RunsByTimeThenInsertionOrder) {
  VirtualClock clock(Start());
  EventLoop loop(&clock);
  std::vector<int> order;
  loop.At(Start() + absl::Seconds(2), [&] { order.push_back(3); });
  loop.At(Start() + absl::Seconds(1), [&] { order.push_back(1); });
  loop.At(Start() + absl::Seconds(1), [&] {
    order.push_back(2);
    loop.After(absl::ZeroDuration(), [&] { order.push_back(4); });  // same time, later
  });
  loop.RunUntil(Start() + absl::Seconds(10));
  EXPECT_EQ(order, (std::vector<int>{1, 2, 4, 3}));
  EXPECT_EQ(clock.Now(), Start() + absl::Seconds(10));
}

// The simulator's regions run txfn's CallScheduler: a single slot runs a
// function's calls by criticality, then earliest deadline (its FuncBuffer
// rule). Changing that rule in the library breaks this test.
TEST(SimRegionTest, RunsCallsInTheSchedulersOrder) {
  VirtualClock clock(Start());
  EventLoop loop(&clock);
  RegionOptions ro;
  ro.workers = 1;
  ro.slots = 1;
  ro.lease_batch = 64;
  Region region(&loop, &clock, ro, nullptr, 1);
  std::vector<std::string> ran;
  region.on_start = [&](const Call& c, int, absl::Time) { ran.push_back(c.idempotency_key); };
  std::vector<Call> calls;
  auto make = [&](std::string key, absl::Duration window, Criticality crit) {
    Call c;
    c.tenant = "t";
    c.function = "f";
    c.args = Value::Int64(absl::ToInt64Nanoseconds(absl::Seconds(1)));
    c.start_after = Start();
    c.deadline = Start() + window;
    c.criticality = crit;
    c.quota = QuotaClass::kReserved;
    c.idempotency_key = std::move(key);
    calls.push_back(std::move(c));
  };
  make("late", absl::Hours(3), Criticality::kNormal);
  make("soon", absl::Hours(1), Criticality::kNormal);
  make("critical", absl::Hours(5), Criticality::kHigh);
  make("middle", absl::Hours(2), Criticality::kNormal);
  region.Submit(calls);
  region.Start();
  loop.RunUntil(Start() + absl::Minutes(1));
  EXPECT_EQ(ran, (std::vector<std::string>{"critical", "soon", "middle", "late"}));
}

TEST(SimDeterminismTest, SameSeedSameBytes) {
  // The load scenarios shrink to two hours at this time_factor; the others
  // keep their floors (an outage needs its hours before and after).
  for (const std::string name :
       {"diurnal", "utilization", "quota", "controller_down", "locality", "outage"}) {
    RunOptions o{.scale = Scale::kSmall, .seed = 7, .time_factor = 0.01};
    absl::StatusOr<ScenarioResult> a = RunScenario(name, o);
    absl::StatusOr<ScenarioResult> b = RunScenario(name, o);
    ASSERT_TRUE(a.ok() && b.ok()) << name;
    EXPECT_EQ(a->csv, b->csv) << name;
    EXPECT_EQ(SummaryJson({*a}), SummaryJson({*b})) << name;
    EXPECT_EQ(a->events, b->events) << name;
    o.seed = 8;
    absl::StatusOr<ScenarioResult> c = RunScenario(name, o);
    ASSERT_TRUE(c.ok());
    EXPECT_NE(a->csv, c->csv) << name << ": the seed should matter";
  }
}

// An --out that cannot take the files is refused before any scenario runs (a paper-scale
// run found it out after hours), and an earlier run's plot never sits beside new numbers.
TEST(SimReportTest, TheOutputDirIsCheckedFirstAndOldPlotsAreRemoved) {
  const std::filesystem::path dir = std::filesystem::path(::testing::TempDir()) / "sim_report_test";
  std::filesystem::remove_all(dir);
  ASSERT_TRUE(PrepareOutputDir(dir.string()).ok());
  EXPECT_TRUE(std::filesystem::is_directory(dir));
  const std::filesystem::path file = dir / "a-file";
  std::ofstream(file) << "x";
  EXPECT_FALSE(PrepareOutputDir(file.string()).ok());
  EXPECT_FALSE(PrepareOutputDir((file / "below").string()).ok());
  EXPECT_FALSE(PrepareOutputDir("").ok());

  std::ofstream(dir / "tiny.svg") << "<svg>an old run's plot</svg>";
  ScenarioResult tiny{.name = "tiny", .figure = "Fig 0", .claim = "none", .csv = "t,v\n0,1\n"};
  ASSERT_TRUE(WriteOutputs(dir.string(), {tiny}, "small", 1).ok());
  EXPECT_FALSE(std::filesystem::exists(dir / "tiny.svg"));
  EXPECT_TRUE(std::filesystem::exists(dir / "tiny.csv"));
  std::filesystem::remove_all(dir);
}

double Metric(const ScenarioResult& r, const std::string& key) {
  for (const auto& m : r.metrics) {
    if (m.key == key) return m.value;
  }
  ADD_FAILURE() << "no metric " << key;
  return 0;
}

ScenarioResult RunSmall(const std::string& name) {
  absl::StatusOr<ScenarioResult> r = RunScenario(name, {.scale = Scale::kSmall, .seed = 1});
  EXPECT_TRUE(r.ok()) << r.status();
  return r.ok() ? *r : ScenarioResult{};
}

// The headline tolerances at `small` scale. Where the simulated figure does
// not match the paper (README: "txfn-sim"), the test pins what does hold.
TEST(SimHeadlineTest, Diurnal) {
  const ScenarioResult r = RunSmall("diurnal");
  EXPECT_NEAR(Metric(r, "diurnal.received_peak_trough"), 4.3, 0.5);
  // Paper ~1.3; the model gives ~1.5 (the notes say why).
  EXPECT_NEAR(Metric(r, "diurnal.executed_peak_trough"), 1.3, 0.3);
}

TEST(SimHeadlineTest, Utilization) {
  const ScenarioResult r = RunSmall("utilization");
  EXPECT_NEAR(Metric(r, "utilization.daily_mean"), 0.66, 0.06);
}

TEST(SimHeadlineTest, Quota) {
  const ScenarioResult r = RunSmall("quota");
  EXPECT_EQ(Metric(r, "quota.reserved_deadline_misses"), 0);
  // A handful of the ~380,000 opportunistic calls (those with windows near
  // 1 h, received at the peak, where the opportunistic arrivals concentrate)
  // may start late.
  EXPECT_LE(Metric(r, "quota.opportunistic_deadline_misses"), 10);
  EXPECT_LT(Metric(r, "quota.phase_correlation"), 0);
}

TEST(SimHeadlineTest, Outage) {
  const ScenarioResult r = RunSmall("outage");
  EXPECT_LT(Metric(r, "outage.drain_hours"), 2);
  EXPECT_LE(Metric(r, "outage.overload_seconds"), 20) << "paper 0: a few AIMD probes in 4 h";
}

TEST(SimHeadlineTest, Aimd) {
  const ScenarioResult r = RunSmall("aimd");
  EXPECT_NEAR(Metric(r, "aimd.downstream_reduction"), 0.40, 0.1);
  EXPECT_NEAR(Metric(r, "aimd.max_throttled_functions"), 200, 30);
  // TAO's throttle holds back only TAO's callers: no other function has a
  // call waiting over a minute (83 did before the scheduler paced what a
  // downstream holds back and bounded what its callers' buffers keep).
  EXPECT_EQ(Metric(r, "aimd.max_delayed_non_callers"), 0);
}

TEST(SimHeadlineTest, Locality) {
  const ScenarioResult r = RunSmall("locality");
  EXPECT_NEAR(Metric(r, "locality.memory_reduction"), 0.118, 0.03);
  EXPECT_NEAR(Metric(r, "locality.distinct_functions_p50_with"), 61, 15);
}

TEST(SimHeadlineTest, Jit) {
  const ScenarioResult r = RunSmall("jit");
  EXPECT_NEAR(Metric(r, "jit.minutes_to_max_with"), 3, 1);
  EXPECT_NEAR(Metric(r, "jit.minutes_to_max_without"), 21, 3);
}

TEST(SimHeadlineTest, ControllerDown) {
  const ScenarioResult r = RunSmall("controller_down");
  // Seed 1 stops the controllers at a low S (0.27): time-shifted calls wait.
  EXPECT_NEAR(Metric(r, "controller_down.throughput_ratio"), 1.0, 0.2);
}

}  // namespace
}  // namespace txfn::sim

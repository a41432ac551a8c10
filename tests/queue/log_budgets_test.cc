// LogBudgets: each tenant's console output of queued calls, within its bytes per second.
#include "lib/queue/log_budgets.h"

#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace txfn::internal {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

const absl::Time kT0 = absl::FromUnixSeconds(1'800'000'000);

// `n` kLog lines of `size` bytes, named "<prefix>0", "<prefix>1", ... (padded with '.').
std::vector<LogEntry> Lines(int n, size_t size, const std::string& prefix = "line") {
  std::vector<LogEntry> out;
  for (int i = 0; i < n; ++i) {
    std::string message = prefix + std::to_string(i);
    message.resize(std::max(size, message.size()), '.');
    out.push_back({LogLevel::kLog, message});
  }
  return out;
}

TEST(LogBudgetsTest, ValidateRefusesNegativeAndNaNRatesAndNamesTheOption) {
  EXPECT_TRUE(LogBudgets::Validate(0).ok());
  EXPECT_TRUE(LogBudgets::Validate(1 << 20).ok());
  EXPECT_TRUE(LogBudgets::Validate(std::numeric_limits<double>::infinity()).ok());
  for (double bad : {-1.0, std::nan("")}) {
    absl::Status s = LogBudgets::Validate(bad);
    EXPECT_TRUE(absl::IsInvalidArgument(s)) << s;
    EXPECT_THAT(s.message(), HasSubstr("log_bytes_per_second_per_tenant")) << s;
  }
}

TEST(LogBudgetsTest, AnUnlimitedBudgetPassesEverything) {
  LogBudgets budgets(std::numeric_limits<double>::infinity());
  uint64_t dropped = 0;
  EXPECT_EQ(budgets.Pass("t", "", Lines(8, 1 << 20), kT0, &dropped), Lines(8, 1 << 20));
  EXPECT_EQ(dropped, 0u);
}

// A message costs its bytes, 64 and the names in its header (tenant "t": 1 byte); the burst is
// 4 s' worth. With 100 bytes/s (a burst of 400), messages of 35 bytes cost 100: four pass, the
// fifth and the rest of the delivery are dropped, and a warning ends what passed.
TEST(LogBudgetsTest, ADeliveryPassesUntilALineDoesNotFitThenSaysHowManyWereCut) {
  LogBudgets budgets(100);
  uint64_t dropped = 0;
  std::vector<LogEntry> passed = budgets.Pass("t", "", Lines(7, 35), kT0, &dropped);
  ASSERT_EQ(passed.size(), 5u);
  std::vector<LogEntry> first_four = Lines(4, 35);
  EXPECT_EQ(std::vector<LogEntry>(passed.begin(), passed.begin() + 4), first_four);
  EXPECT_EQ(passed[4].level, LogLevel::kWarn);
  EXPECT_THAT(passed[4].message,
              StartsWith("[txfn] 3 console message(s) (105 bytes) more of this call were dropped: "
                         "tenant t is over QueuedCallOptions::log_bytes_per_second_per_tenant "
                         "(100)"));
  EXPECT_EQ(dropped, 3u);
}

// A delivery none of whose lines fit is dropped whole; the tenant's next delivery that passes
// begins by saying so. Tokens come back at the rate: 1 s later one 35-byte message fits.
TEST(LogBudgetsTest, WholeDeliveriesDroppedAreSaidBeforeTheNextThatPasses) {
  LogBudgets budgets(100);
  uint64_t dropped = 0;
  ASSERT_EQ(budgets.Pass("t", "", Lines(4, 35), kT0, &dropped).size(), 4u);  // the burst, spent
  EXPECT_TRUE(budgets.Pass("t", "", Lines(2, 35), kT0, &dropped).empty());
  EXPECT_TRUE(budgets.Pass("t", "", Lines(1, 50), kT0 + absl::Milliseconds(500), &dropped).empty());
  EXPECT_EQ(dropped, 3u);
  std::vector<LogEntry> passed =
      budgets.Pass("t", "", Lines(1, 35, "later"), kT0 + absl::Seconds(1), &dropped);
  ASSERT_EQ(passed.size(), 2u);
  EXPECT_EQ(passed[0].level, LogLevel::kWarn);
  EXPECT_THAT(passed[0].message,
              StartsWith("[txfn] 3 console message(s) (120 bytes) of the tenant's earlier queued "
                         "calls were dropped"));
  EXPECT_EQ(passed[1], Lines(1, 35, "later")[0]);
  // Said once.
  std::vector<LogEntry> again =
      budgets.Pass("t", "", Lines(1, 35, "again"), kT0 + absl::Seconds(2), &dropped);
  EXPECT_EQ(again, Lines(1, 35, "again"));
  EXPECT_EQ(dropped, 3u);
}

// A message costs about what printing it writes, a line at a time after headers, controls
// escaped (a hunt passed 110 MB/s through 1 MiB/s with messages of 100,000 newlines).
TEST(LogBudgetsTest, AMessageCostsItsLinesAndItsEscapedControls) {
  EXPECT_EQ(LogBudgets::Cost(""), 64);
  EXPECT_EQ(LogBudgets::Cost("abc"), 67);
  EXPECT_EQ(LogBudgets::Cost("a\nb"), 64 + 3 + 64);
  EXPECT_EQ(LogBudgets::Cost("\x01\x1b\x7f"), 64 + 3 + 9);
  EXPECT_EQ(LogBudgets::Cost("\xc2\x85"), 64 + 2 + 6) << "a C1 control, two bytes escaped";
  EXPECT_EQ(LogBudgets::Cost("\xc3\xa9\xe2\x82\xac"), 64 + 5) << "text that is not control";
  EXPECT_EQ(LogBudgets::Cost("a\tb"), 64 + 3) << "a tab is printed as it is";
  // The names in each line's header: 10 bytes.
  EXPECT_EQ(LogBudgets::Cost("a\nb", 10), 74 + 3 + 74);
  LogBudgets budgets(1 << 20);  // a burst of 4 MiB
  uint64_t dropped = 0;
  EXPECT_TRUE(
      budgets.Pass("t", "", {LogEntry{.message = std::string(100'000, '\n')}}, kT0, &dropped)
          .empty())
      << "6.4 MB printed";
  EXPECT_EQ(dropped, 1u);
}

TEST(LogBudgetsTest, OneTenantsOutputDoesNotSpendAnothersBudget) {
  LogBudgets budgets(100);
  uint64_t dropped = 0;
  EXPECT_EQ(budgets.Pass("noisy", "", Lines(100, 31), kT0, &dropped).size(), 5u);
  EXPECT_EQ(budgets.Pass("quiet", "", Lines(4, 31), kT0, &dropped), Lines(4, 31));
  EXPECT_EQ(dropped, 96u);
}

// Rate 0: nothing passes, not even an empty line, and no tenant is kept for it.
TEST(LogBudgetsTest, RateZeroPassesNothingAndKeepsNoTenant) {
  LogBudgets budgets(0);
  uint64_t dropped = 0;
  EXPECT_TRUE(budgets.Pass("t", "", {LogEntry{}}, kT0, &dropped).empty());
  EXPECT_TRUE(budgets.Pass("t", "", Lines(3, 1), kT0 + absl::Hours(1), &dropped).empty());
  EXPECT_EQ(dropped, 4u);
  EXPECT_EQ(budgets.tenants(), 0u);
}

// Tenants whose buckets are full again and who have nothing to report are forgotten whenever
// the map has doubled (at least past 128); recent ones and one with drops to report are kept.
TEST(LogBudgetsTest, IdleTenantsAreForgottenAndOnesWithDropsToReportKept) {
  LogBudgets budgets(100);
  uint64_t dropped = 0;
  ASSERT_EQ(budgets.Pass("owes", "", Lines(5, 32), kT0, &dropped).size(), 5u);  // 1 cut, said
  ASSERT_TRUE(budgets.Pass("owes", "", Lines(1, 32), kT0, &dropped).empty());   // owed
  // The 129th tenant passes 128: nothing to forget yet (every bucket was just used).
  for (int i = 0; i < 128; ++i) {
    ASSERT_EQ(budgets.Pass("t" + std::to_string(i), "", Lines(1, 0), kT0, &dropped).size(), 1u);
  }
  EXPECT_EQ(budgets.tenants(), 129u);
  // 10 s later the t* buckets are full; the 259th tenant passes 2 x 129 and they go.
  const absl::Time later = kT0 + absl::Seconds(10);
  for (int i = 0; i < 130; ++i) {
    ASSERT_EQ(budgets.Pass("u" + std::to_string(i), "", Lines(1, 0), later, &dropped).size(), 1u);
  }
  EXPECT_EQ(budgets.tenants(), 131u) << "the 130 recent ones and the one owing a report";
  std::vector<LogEntry> passed = budgets.Pass("owes", "", Lines(1, 0), later, &dropped);
  ASSERT_EQ(passed.size(), 2u);
  EXPECT_THAT(passed[0].message, HasSubstr("1 console message(s) (32 bytes) of the tenant's"));
}

}  // namespace
}  // namespace txfn::internal

// TokenBucket, ConcurrencyLimiter, AimdLimiter, UtilizationController and PeriodicTimer on a
// virtual clock: rates, slow start, convergence to a downstream's capacity and
// recovery after an outage, damped control, and every bad option.
#include "txfn/limiters.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "txfn/clock.h"
#include "txfn/utilization_controller.h"

namespace txfn {
namespace {

using ::testing::HasSubstr;

const absl::Time kT0 = absl::FromUnixSeconds(1'700'000'000);

TEST(PeriodicTimerTest, RunsOnceDueThenOneIntervalAfterEachRunWithoutBursts) {
  const absl::Duration every = absl::Seconds(10);
  PeriodicTimer timer(kT0, every);
  EXPECT_FALSE(timer.Due(kT0 - absl::Nanoseconds(1)));
  EXPECT_TRUE(timer.Due(kT0));
  EXPECT_FALSE(timer.Due(kT0));
  EXPECT_EQ(timer.NextRun(kT0), kT0 + every);
  EXPECT_FALSE(timer.Due(kT0 + every - absl::Nanoseconds(1)));
  EXPECT_TRUE(timer.Due(kT0 + every));
  // A loop that fell ten intervals behind runs once, then an interval after that run.
  const absl::Time late = kT0 + 11.5 * every;
  EXPECT_TRUE(timer.Due(late));
  EXPECT_FALSE(timer.Due(late + every / 2));
  EXPECT_TRUE(timer.Due(late + every));
}

TEST(PeriodicTimerTest, AClockSetBackDelaysTheNextRunByAtMostOneInterval) {
  const absl::Duration every = absl::Seconds(10);
  PeriodicTimer timer(kT0, every);
  ASSERT_TRUE(timer.Due(kT0));
  const absl::Time back = kT0 - absl::Hours(1);  // NTP or an operator set the clock back
  EXPECT_EQ(timer.NextRun(back), back + every);
  EXPECT_FALSE(timer.Due(back + every - absl::Nanoseconds(1)));
  EXPECT_TRUE(timer.Due(back + every));
  // A step forward runs it at once (time passed), then on the interval again.
  const absl::Time forward = back + absl::Hours(2);
  EXPECT_TRUE(timer.Due(forward));
  EXPECT_EQ(timer.NextRun(forward), forward + every);
}

TEST(PeriodicTimerTest, RescheduleChangesTheIntervalAndRunNowMakesItDue) {
  PeriodicTimer timer(kT0, absl::Seconds(1));
  ASSERT_TRUE(timer.Due(kT0));
  timer.Reschedule(kT0, absl::Seconds(8));  // a poll backing off
  EXPECT_EQ(timer.interval(), absl::Seconds(8));
  EXPECT_FALSE(timer.Due(kT0 + absl::Seconds(7)));
  EXPECT_TRUE(timer.Due(kT0 + absl::Seconds(8)));
  EXPECT_EQ(timer.NextRun(kT0 + absl::Seconds(8)), kT0 + absl::Seconds(16));
  timer.RunNow();
  EXPECT_TRUE(timer.Due(kT0 + absl::Seconds(9)));
  EXPECT_FALSE(timer.Due(kT0 + absl::Seconds(9)));
  // Reschedule from the infinite past (CallScheduler::PollSoon) is due at once too.
  timer.Reschedule(absl::InfinitePast(), absl::Seconds(1));
  EXPECT_TRUE(timer.Due(kT0 + absl::Seconds(9)));
}

TEST(TokenBucketTest, StartsFullRefillsAtItsRateAndNeverAboveTheBurst) {
  auto b = TokenBucket::Create(/*rate=*/10, /*burst=*/5, kT0);
  ASSERT_TRUE(b.ok()) << b.status();
  for (int i = 0; i < 5; ++i) EXPECT_TRUE(b->TryAcquire(kT0)) << i;
  EXPECT_FALSE(b->TryAcquire(kT0));
  EXPECT_EQ(b->AvailableAt(kT0), kT0 + absl::Milliseconds(100));
  EXPECT_FALSE(b->TryAcquire(kT0 + absl::Milliseconds(99)));
  EXPECT_TRUE(b->TryAcquire(kT0 + absl::Milliseconds(100)));
  EXPECT_NEAR(b->tokens(kT0 + absl::Hours(1)), 5, 1e-9) << "capped at the burst";
  // Time going back refills nothing.
  EXPECT_NEAR(b->tokens(kT0), 0, 1e-9);
  b->Refund(100);
  EXPECT_NEAR(b->tokens(kT0 + absl::Milliseconds(100)), 5, 1e-9);
  EXPECT_EQ(b->AvailableAt(kT0, 6), absl::InfiniteFuture()) << "more than the burst";
}

// The wall clock set back an hour: the bucket refills from there (it refilled nothing until
// the clock came back to where it had been). Readings a little out of order (threads) are
// not a step: they refill nothing twice.
TEST(TokenBucketTest, AClockSetBackRefillsFromThere) {
  const absl::Time later = kT0 + absl::Hours(1);
  auto b = TokenBucket::Create(/*rate=*/10, /*burst=*/5, later);
  ASSERT_TRUE(b.ok()) << b.status();
  for (int i = 0; i < 5; ++i) EXPECT_TRUE(b->TryAcquire(later)) << i;
  EXPECT_FALSE(b->TryAcquire(later - absl::Milliseconds(5)));  // jitter: no refill
  EXPECT_FALSE(b->TryAcquire(later + absl::Milliseconds(95))) << "refilled twice";
  EXPECT_TRUE(b->TryAcquire(later + absl::Milliseconds(100)));
  EXPECT_FALSE(b->TryAcquire(kT0));  // set back: nothing yet
  EXPECT_TRUE(b->TryAcquire(kT0 + absl::Milliseconds(100))) << "no refill after the step";
}

// A negative or NaN count neither passes nor fills the bucket past its burst.
TEST(TokenBucketTest, NegativeAndNanCountsChangeNothing) {
  auto b = TokenBucket::Create(/*rate=*/0, /*burst=*/5, kT0);
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_FALSE(b->TryAcquire(kT0, -100));
  EXPECT_FALSE(b->TryAcquire(kT0, std::nan("")));
  EXPECT_NEAR(b->tokens(kT0), 5, 1e-9);
  ASSERT_TRUE(b->TryAcquire(kT0, 5));
  b->Refund(-100);
  b->Refund(std::nan(""));
  EXPECT_NEAR(b->tokens(kT0), 0, 1e-9);
  EXPECT_FALSE(b->TryAcquire(kT0));
}

TEST(TokenBucketTest, RateChangesApplyFromNowAndZeroMeansNever) {
  auto b = TokenBucket::Create(1, 1, kT0);
  ASSERT_TRUE(b.ok());
  ASSERT_TRUE(b->TryAcquire(kT0));
  ASSERT_TRUE(b->SetRate(0, kT0 + absl::Milliseconds(500)).ok());
  EXPECT_NEAR(b->tokens(kT0 + absl::Hours(1)), 0.5, 1e-9) << "the half token earned before";
  EXPECT_EQ(b->AvailableAt(kT0 + absl::Hours(1)), absl::InfiniteFuture());
  ASSERT_TRUE(b->SetRate(100, kT0 + absl::Hours(1)).ok());
  EXPECT_TRUE(b->TryAcquire(kT0 + absl::Hours(1) + absl::Milliseconds(5)));
  TokenBucket unlimited;
  for (int i = 0; i < 1000; ++i) EXPECT_TRUE(unlimited.TryAcquire(kT0));
}

TEST(TokenBucketTest, BadRatesAndBurstsAreRefused) {
  for (double rate : {-1.0, std::nan("")}) {
    auto b = TokenBucket::Create(rate, 1, kT0);
    EXPECT_EQ(b.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(b.status().message(), HasSubstr("rate"));
  }
  for (double burst : {0.0, -1.0, std::nan("")}) {
    auto b = TokenBucket::Create(1, burst, kT0);
    EXPECT_EQ(b.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(b.status().message(), HasSubstr("burst"));
  }
  auto b = TokenBucket::Create(1, 1, kT0);
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(b->SetRate(-2, kT0).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(b->SetBurst(0, kT0).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(b->rate(), 1);
}

TEST(ConcurrencyLimiterTest, CapsInFlightAndALowerLimitWaitsForCallsToFinish) {
  ConcurrencyLimiter c(2);
  EXPECT_TRUE(c.TryAcquire());
  EXPECT_TRUE(c.TryAcquire());
  EXPECT_FALSE(c.TryAcquire());
  c.SetLimit(1);
  c.Release();
  EXPECT_FALSE(c.TryAcquire()) << "one still in flight, limit 1";
  c.Release();
  EXPECT_TRUE(c.TryAcquire());
  EXPECT_EQ(c.in_flight(), 1);
  ConcurrencyLimiter zero(-5);
  EXPECT_EQ(zero.limit(), 0);
  EXPECT_FALSE(zero.TryAcquire());
}

// Admits as many calls as the limiter allows in one window, spread over it.
int64_t RunWindow(AimdLimiter& aimd, absl::Time start, absl::Duration window, int64_t demand) {
  int64_t admitted = 0;
  const absl::Duration step = window / demand;
  for (int64_t i = 0; i < demand; ++i) {
    const absl::Time now = start + step * i;
    if (aimd.TryAcquire(now)) {
      ++admitted;
      aimd.Release();
    }
  }
  return admitted;
}

TEST(AimdLimiterTest, SlowStartGrowsTwentyPercentPerWindowFromTUntilBackPressure) {
  AimdOptions o;  // W = 1 min, T = 100, alpha = 20%
  auto aimd = AimdLimiter::Create(o, kT0);
  ASSERT_TRUE(aimd.ok()) << aimd.status();
  EXPECT_TRUE(aimd->in_slow_start());
  double expected = 100;
  absl::Time t = kT0;
  for (int w = 0; w < 6; ++w) {
    aimd->Update(t);
    EXPECT_NEAR(aimd->calls_per_window(), expected, 1e-6) << "window " << w;
    const int64_t admitted = RunWindow(*aimd, t, o.window, 10'000);  // demand far above
    EXPECT_NEAR(admitted, expected, expected * 0.03 + 2) << "window " << w;
    t += o.window;
    expected *= 1.2;
  }
  // The first back-pressure ends slow start: r * M, then additive.
  const double before = aimd->calls_per_window();
  aimd->RecordBackPressure(t - absl::Seconds(1));
  aimd->Update(t);
  EXPECT_FALSE(aimd->in_slow_start());
  EXPECT_NEAR(aimd->calls_per_window(), before * 0.5, 1e-6) << "a binding window with "
                                                               "back-pressure only decreases";
}

// The wall clock set back an hour: the windows keep turning from there (they waited for the
// clock to come back to where it had been, the limit frozen for the hour).
TEST(AimdLimiterTest, AClockSetBackKeepsTheWindowsTurning) {
  AimdOptions o;  // W = 1 min, T = 100, alpha = 20%
  auto aimd = AimdLimiter::Create(o, kT0 + absl::Hours(1));
  ASSERT_TRUE(aimd.ok()) << aimd.status();
  RunWindow(*aimd, kT0 + absl::Hours(1), o.window, 10'000);
  absl::Time t = kT0;  // set back, in the middle of the first window
  RunWindow(*aimd, t, o.window, 10'000);
  aimd->Update(t + o.window);
  EXPECT_NEAR(aimd->calls_per_window(), 120, 1e-6) << "the window did not end";
}

TEST(AimdLimiterTest, AnUnboundLimiterDoesNotGrow) {
  auto aimd = AimdLimiter::Create({}, kT0);
  ASSERT_TRUE(aimd.ok());
  absl::Time t = kT0;
  for (int w = 0; w < 10; ++w) {
    EXPECT_EQ(RunWindow(*aimd, t, absl::Minutes(1), 50), 50);  // demand below the limit
    t += absl::Minutes(1);
  }
  aimd->Update(t);
  EXPECT_EQ(aimd->calls_per_window(), 100);
  EXPECT_EQ(aimd->increases(), 0);
}

// Lumpy demand: each minute a burst of 10 calls arrives at once, above the
// burst the limiter lets through (1 s of a 100-a-minute rate), so some are
// refused, yet the window admits far less than its limit. Growing the limit
// then would only let a later, larger burst overload the downstream.
TEST(AimdLimiterTest, RefusalsInAWindowThatAdmittedUnderHalfItsLimitDoNotGrowIt) {
  auto aimd = AimdLimiter::Create({}, kT0);  // 100 a minute, bursts of 1 s (1.67 calls)
  ASSERT_TRUE(aimd.ok());
  absl::Time t = kT0;
  int refused = 0;
  for (int w = 0; w < 10; ++w) {
    for (int i = 0; i < 10; ++i) refused += aimd->TryAcquire(t) ? 0 : 1;
    t += absl::Minutes(1);
  }
  aimd->Update(t);
  EXPECT_GT(refused, 0) << "each burst ran into the limiter";
  EXPECT_EQ(aimd->calls_per_window(), 100);
  EXPECT_EQ(aimd->increases(), 0);
  // Demand that uses the limit (a call every 0.5 s, 120 asked for a minute)
  // grows it again.
  for (int i = 0; i < 120; ++i) (void)aimd->TryAcquire(t + absl::Milliseconds(500) * i);
  aimd->Update(t + absl::Minutes(1));
  EXPECT_EQ(aimd->increases(), 1);
}

// A fake downstream of capacity C calls per window: every call above C in a
// window is answered with back-pressure. `outage` windows fail every call.
struct Downstream {
  int64_t capacity;
  std::vector<int64_t> admitted;  // per window

  void Run(AimdLimiter& aimd, absl::Time* t, int windows, bool outage) {
    const absl::Duration w = aimd.options().window;
    for (int i = 0; i < windows; ++i) {
      const int64_t n = RunWindow(aimd, *t, w, 20 * capacity);
      const int64_t over = outage ? n : std::max<int64_t>(0, n - capacity);
      aimd.RecordBackPressure(*t + w - absl::Milliseconds(1), over);
      admitted.push_back(n);
      *t += w;
    }
  }
};

TEST(AimdLimiterTest, ConvergesAroundADownstreamsCapacityAndRecoversAfterAnOutage) {
  AimdOptions o{.window = absl::Seconds(10),
                .slow_start_calls = 20,
                .additive_increase = 40,
                .multiplicative_decrease = 0.7};
  auto aimd = AimdLimiter::Create(o, kT0);
  ASSERT_TRUE(aimd.ok()) << aimd.status();
  Downstream ds{.capacity = 1000};
  absl::Time t = kT0;
  ds.Run(*aimd, &t, 60, /*outage=*/false);
  // Steady state (the last 30 windows): a sawtooth between M*C and C.
  double sum = 0;
  int64_t peak = 0;
  for (size_t i = 30; i < 60; ++i) {
    sum += static_cast<double>(ds.admitted[i]);
    peak = std::max(peak, ds.admitted[i]);
  }
  const double mean = sum / 30;
  EXPECT_GT(mean, 0.7 * ds.capacity);
  EXPECT_LT(mean, 1.05 * ds.capacity);
  EXPECT_LT(peak, 1.1 * ds.capacity) << "never far above capacity";

  // An outage: every call fails; the limit collapses.
  ds.Run(*aimd, &t, 15, /*outage=*/true);
  EXPECT_LT(ds.admitted.back(), 0.05 * ds.capacity);
  // Recovery: back near capacity within ~C / I windows, without overshooting.
  const size_t recovery_start = ds.admitted.size();
  ds.Run(*aimd, &t, 40, /*outage=*/false);
  size_t reached = 0;
  for (size_t i = recovery_start; i < ds.admitted.size(); ++i) {
    EXPECT_LT(ds.admitted[i], 1.1 * ds.capacity) << "window " << i;
    if (reached == 0 && ds.admitted[i] >= 0.7 * ds.capacity) reached = i - recovery_start;
  }
  EXPECT_GT(reached, 0u) << "never got back to 70% of capacity";
  EXPECT_LE(reached, 30u);
}

TEST(AimdLimiterTest, CapsConcurrencyAtRateTimesP) {
  AimdOptions o{.window = absl::Seconds(1), .slow_start_calls = 50, .concurrency_factor = 0.1};
  auto aimd = AimdLimiter::Create(o, kT0);
  ASSERT_TRUE(aimd.ok());
  EXPECT_EQ(aimd->concurrency_cap(), 5);  // 50 calls/s * 0.1 s
  int admitted = 0;
  for (int i = 0; i < 20; ++i) admitted += aimd->TryAcquire(kT0) ? 1 : 0;
  EXPECT_EQ(admitted, 5);
  aimd->Release();
  EXPECT_TRUE(aimd->TryAcquire(kT0));
  aimd->Refund();
  EXPECT_EQ(aimd->in_flight(), 4);
}

// A cap past int64's range is no cap (the conversion was undefined: it gave 1), and a back-
// pressure count past it saturates (it wrapped around to a window without back-pressure).
TEST(AimdLimiterTest, HugeCapsAndCountsDoNotWrap) {
  AimdOptions o{.window = absl::Seconds(1),
                .slow_start_calls = 1e12,
                .max_calls_per_window = 1e12,
                .concurrency_factor = 1e7};
  auto aimd = AimdLimiter::Create(o, kT0);
  ASSERT_TRUE(aimd.ok()) << aimd.status();
  EXPECT_EQ(aimd->concurrency_cap(), std::numeric_limits<int64_t>::max());
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(aimd->TryAcquire(kT0)) << i;

  auto limited = AimdLimiter::Create(AimdOptions{}, kT0);
  ASSERT_TRUE(limited.ok());
  const double before = limited->calls_per_window();
  limited->RecordBackPressure(kT0, std::numeric_limits<int64_t>::max());
  limited->RecordBackPressure(kT0, std::numeric_limits<int64_t>::max());
  limited->RecordBackPressure(kT0, -5);
  limited->Update(kT0 + AimdOptions{}.window);
  EXPECT_NEAR(limited->calls_per_window(), before * 0.5, 1e-6);
}

TEST(AimdLimiterTest, EveryBadOptionIsRefusedByName) {
  struct Case {
    const char* name;
    AimdOptions o;
  };
  const std::vector<Case> cases = {
      {"window", {.window = absl::ZeroDuration()}},
      {"slow_start_calls", {.slow_start_calls = 0.5}},
      {"slow_start_growth", {.slow_start_growth = -0.1}},
      {"additive_increase", {.additive_increase = -1}},
      {"multiplicative_decrease", {.multiplicative_decrease = 1.0}},
      {"multiplicative_decrease", {.multiplicative_decrease = 0}},
      {"backpressure_threshold", {.backpressure_threshold = -1}},
      {"min_calls_per_window", {.min_calls_per_window = 0}},
      {"max_calls_per_window", {.max_calls_per_window = 0.5}},
      {"concurrency_factor", {.concurrency_factor = -1}},
      {"burst", {.burst = absl::ZeroDuration()}},
      {"(a value)", {.additive_increase = std::nan("")}},
  };
  for (const Case& c : cases) {
    auto a = AimdLimiter::Create(c.o, kT0);
    EXPECT_EQ(a.status().code(), absl::StatusCode::kInvalidArgument) << c.name;
    EXPECT_THAT(a.status().message(), HasSubstr(c.name));
  }
}

// A plant: utilization = background + 0.5 * S (opportunistic work fills up
// to half the fleet). A step in background load must be followed without
// oscillation.
TEST(UtilizationControllerTest, FollowsAStepInLoadWithoutOscillating) {
  auto c = UtilizationController::Create({});
  ASSERT_TRUE(c.ok()) << c.status();
  const double target = c->options().target;
  double background = 0.1;
  double u = 0;
  for (int i = 0; i < 60; ++i) {
    u = background + 0.5 * c->share();
    c->Update(u);
  }
  EXPECT_NEAR(c->share(), 1.0, 1e-9) << "idle fleet: full opportunistic share";
  background = 0.55;  // the step: peak-time reserved load
  int sign_changes = 0;
  double prev_error = 0;
  double max_overshoot = 0;
  for (int i = 0; i < 80; ++i) {
    u = background + 0.5 * c->share();
    const double error = u - target;
    if (i > 0 && std::abs(error) > 0.02 && std::abs(prev_error) > 0.02 &&
        (error > 0) != (prev_error > 0)) {
      ++sign_changes;
    }
    if (std::abs(error) > 0.02) prev_error = error;
    if (i > 20) max_overshoot = std::max(max_overshoot, target - u);
    c->Update(u);
  }
  EXPECT_NEAR(u, target, 0.03) << "settled at the target";
  EXPECT_LE(sign_changes, 1) << "no oscillation";
  EXPECT_LT(max_overshoot, 0.05);
  // Load drops again: S climbs back.
  background = 0.1;
  for (int i = 0; i < 60; ++i) c->Update(background + 0.5 * c->share());
  EXPECT_NEAR(c->share(), 1.0, 1e-9);
}

TEST(UtilizationControllerTest, BadOptionsAreRefusedAndNanSamplesIgnored) {
  EXPECT_THAT(UtilizationController::Create({.target = 0}).status().message(), HasSubstr("target"));
  EXPECT_THAT(UtilizationController::Create({.gain = -1}).status().message(), HasSubstr("gain"));
  EXPECT_THAT(UtilizationController::Create({.smoothing = 2}).status().message(),
              HasSubstr("smoothing"));
  EXPECT_THAT(
      UtilizationController::Create({.min_share = 0.8, .max_share = 0.2}).status().message(),
      HasSubstr("min_share"));
  EXPECT_THAT(
      UtilizationController::Create({.initial_share = 1.0, .max_share = 0.5}).status().message(),
      HasSubstr("initial_share"));
  auto c = UtilizationController::Create({});
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->Update(std::nan("")), 1.0);
}

}  // namespace
}  // namespace txfn

// TokenBucket, ConcurrencyLimiter, AimdLimiter; see txfn/limiters.h.
#include "txfn/limiters.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "txfn/clock.h"
#include "txfn/internal/strings.h"
#include "txfn/status_macros.h"

namespace txfn {
namespace {

using internal::StrCat;

absl::Status CheckRate(double rate) {
  if (std::isnan(rate) || rate < 0) {
    return absl::InvalidArgumentError(StrCat("token bucket rate must be >= 0, not ", rate));
  }
  return absl::OkStatus();
}
absl::Status CheckBurst(double burst) {
  if (std::isnan(burst) || burst <= 0) {
    return absl::InvalidArgumentError(StrCat("token bucket burst must be > 0, not ", burst));
  }
  return absl::OkStatus();
}

}  // namespace

// --- TokenBucket ------------------------------------------------------------

absl::StatusOr<TokenBucket> TokenBucket::Create(double rate, double burst, absl::Time now) {
  TXFN_RETURN_IF_ERROR(CheckRate(rate));
  TXFN_RETURN_IF_ERROR(CheckBurst(burst));
  return TokenBucket(rate, burst, now);
}

TokenBucket::TokenBucket(double rate, double burst, absl::Time now)
    : rate_(rate), burst_(burst), tokens_(burst), last_ns_(absl::ToUnixNanos(now)) {}

void TokenBucket::Refill(absl::Time now) {
  const int64_t ns = absl::ToUnixNanos(now);
  if (ns <= last_ns_) {
    // Time stood still or went back: none passed. A step back of more than a second (the wall
    // clock set back) is counted from here, else the bucket would not refill until the clock
    // came back to where it was; the jitter of threads' readings is not (it would refill
    // twice).
    if (last_ns_ - ns > 1'000'000'000) last_ns_ = ns;
    return;
  }
  if (tokens_ < burst_) {
    tokens_ = std::min(burst_, tokens_ + rate_ * (static_cast<double>(ns - last_ns_) * 1e-9));
  }
  last_ns_ = ns;
}

bool TokenBucket::TryAcquire(absl::Time now, double n) {
  if (!(n >= 0)) return false;  // negative or NaN: would add tokens past the burst, or NaN
  Refill(now);
  if (tokens_ < n) return false;
  tokens_ -= n;
  return true;
}

void TokenBucket::Refund(double n) {
  if (n > 0) tokens_ = std::min(burst_, tokens_ + n);  // not a negative or NaN `n`
}

double TokenBucket::tokens(absl::Time now) const {
  TokenBucket copy = *this;
  copy.Refill(now);
  return copy.tokens_;
}

absl::Time TokenBucket::AvailableAt(absl::Time now, double n) const {
  const double have = tokens(now);
  if (have >= n) return now;
  if (n > burst_ || rate_ <= 0) return absl::InfiniteFuture();
  return now + absl::Seconds((n - have) / rate_);
}

absl::Status TokenBucket::SetRate(double rate, absl::Time now) {
  TXFN_RETURN_IF_ERROR(CheckRate(rate));
  Refill(now);
  rate_ = rate;
  return absl::OkStatus();
}

absl::Status TokenBucket::SetBurst(double burst, absl::Time now) {
  TXFN_RETURN_IF_ERROR(CheckBurst(burst));
  Refill(now);
  burst_ = burst;
  tokens_ = std::min(tokens_, burst_);
  return absl::OkStatus();
}

// --- ConcurrencyLimiter -------------------------------------------------------

bool ConcurrencyLimiter::TryAcquire() {
  int64_t cur = in_flight_.load(std::memory_order_relaxed);
  while (cur < limit_.load(std::memory_order_relaxed)) {
    if (in_flight_.compare_exchange_weak(cur, cur + 1, std::memory_order_acq_rel)) return true;
  }
  return false;
}

void ConcurrencyLimiter::Release() { in_flight_.fetch_sub(1, std::memory_order_acq_rel); }

// --- AimdLimiter ----------------------------------------------------------------

absl::StatusOr<AimdLimiter> AimdLimiter::Create(AimdOptions o, absl::Time now) {
  auto bad = [](std::string_view what, double v) {
    return absl::InvalidArgumentError(StrCat("AimdOptions.", what, " is invalid: ", v));
  };
  for (double v :
       {o.slow_start_calls, o.slow_start_growth, o.additive_increase, o.multiplicative_decrease,
        o.min_calls_per_window, o.max_calls_per_window, o.concurrency_factor}) {
    if (!std::isfinite(v)) return bad("(a value)", v);
  }
  if (o.window <= absl::ZeroDuration() || o.window == absl::InfiniteDuration()) {
    return bad("window (seconds)", absl::ToDoubleSeconds(o.window));
  }
  if (o.min_calls_per_window <= 0) return bad("min_calls_per_window", o.min_calls_per_window);
  if (o.max_calls_per_window < o.min_calls_per_window) {
    return bad("max_calls_per_window (below the minimum)", o.max_calls_per_window);
  }
  if (o.slow_start_calls < o.min_calls_per_window || o.slow_start_calls > o.max_calls_per_window) {
    return bad("slow_start_calls (outside [min, max] calls per window)", o.slow_start_calls);
  }
  if (o.slow_start_growth < 0) return bad("slow_start_growth", o.slow_start_growth);
  if (o.additive_increase < 0) return bad("additive_increase", o.additive_increase);
  if (!(o.multiplicative_decrease > 0 && o.multiplicative_decrease < 1)) {
    return bad("multiplicative_decrease (must be in (0, 1))", o.multiplicative_decrease);
  }
  if (o.backpressure_threshold < 0) {
    return bad("backpressure_threshold", static_cast<double>(o.backpressure_threshold));
  }
  if (o.concurrency_factor < 0) return bad("concurrency_factor", o.concurrency_factor);
  if (o.burst <= absl::ZeroDuration() || o.burst == absl::InfiniteDuration()) {
    return bad("burst (seconds)", absl::ToDoubleSeconds(o.burst));
  }
  return AimdLimiter(o, now);
}

AimdLimiter::AimdLimiter(AimdOptions options, absl::Time now)
    : options_(options),
      window_seconds_(absl::ToDoubleSeconds(options.window)),
      limit_(options.slow_start_calls),
      window_end_(now + options.window) {
  // Starts with one burst saved up.
  bucket_ = *TokenBucket::Create(calls_per_second(), BurstTokens(), now);
}

double AimdLimiter::BurstTokens() const {
  return std::max(1.0, calls_per_second() * absl::ToDoubleSeconds(options_.burst));
}

void AimdLimiter::ApplyLimit(absl::Time now) {
  // Both values were checked by Create and stay finite and positive.
  (void)bucket_.SetRate(calls_per_second(), now);
  (void)bucket_.SetBurst(BurstTokens(), now);
}

int64_t AimdLimiter::concurrency_cap() const {
  constexpr int64_t kUncapped = std::numeric_limits<int64_t>::max();
  if (options_.concurrency_factor <= 0) return kUncapped;
  const double cap = std::ceil(calls_per_second() * options_.concurrency_factor);
  // Past int64's range (2^63 as a double) the conversion would be undefined: no cap then.
  if (!(cap < 0x1p63)) return kUncapped;
  return std::max<int64_t>(1, static_cast<int64_t>(cap));
}

void AimdLimiter::Update(absl::Time now) {
  window_end_ = ClampNextRun(window_end_, now, options_.window);
  if (now < window_end_) return;
  // The window that just ended decides; windows after it (with no activity
  // recorded) change nothing.
  if (backpressure_ > options_.backpressure_threshold) {
    limit_ = std::max(options_.min_calls_per_window, limit_ * options_.multiplicative_decrease);
    slow_start_ = false;
    ++decreases_;
  } else if (binding_ && static_cast<double>(admitted_) >= limit_ / 2) {
    limit_ = slow_start_ ? limit_ * (1 + options_.slow_start_growth)
                         : limit_ + options_.additive_increase;
    limit_ = std::min(limit_, options_.max_calls_per_window);
    ++increases_;
  }
  backpressure_ = 0;
  binding_ = false;
  admitted_ = 0;
  const int64_t behind = (now - window_end_) / options_.window;  // whole windows skipped
  window_end_ += options_.window * (behind + 1);
  ApplyLimit(now);
}

bool AimdLimiter::TryAcquire(absl::Time now) {
  Update(now);
  if (in_flight_ >= concurrency_cap() || !bucket_.TryAcquire(now)) {
    binding_ = true;
    return false;
  }
  ++in_flight_;
  ++admitted_;
  return true;
}

void AimdLimiter::Refund() {
  bucket_.Refund();
  if (in_flight_ > 0) --in_flight_;
  if (admitted_ > 0) --admitted_;
}

void AimdLimiter::Release() {
  if (in_flight_ > 0) --in_flight_;
}

void AimdLimiter::RecordBackPressure(absl::Time now, int64_t n) {
  Update(now);
  // Saturating: a huge `n` must not wrap the count around to "no back-pressure".
  backpressure_ +=
      std::min(std::max<int64_t>(n, 0), std::numeric_limits<int64_t>::max() - backpressure_);
}

}  // namespace txfn

// txfn/limiters.h — the rate and concurrency limiters of the call scheduler.
//
// TokenBucket         `rate` tokens per second, at most `burst` saved up. The
//                     reserved quota (RPS = CPU quota / average cost per
//                     call), the opportunistic quota (r0 * S) and per-client
//                     submit limits are token buckets.
// ConcurrencyLimiter  at most `limit` calls in flight (per function).
// AimdLimiter         XFaaS's TCP-like limiter per downstream service: once a
//                     window (W) ends, the limit r (calls per window) becomes
//                     r * M if back-pressure signals in that window exceeded
//                     the threshold, else r + I; it starts in slow start at
//                     T calls per window and grows by a factor (1 + alpha) per
//                     window until the first back-pressure. It also caps
//                     concurrency at R = r_per_second * p.
//
//   txfn::AimdLimiter aimd = *txfn::AimdLimiter::Create({}, clock.Now());
//   if (aimd.TryAcquire(clock.Now())) {
//     ... call the downstream ...
//     if (overloaded) aimd.RecordBackPressure(clock.Now());
//     aimd.Release();
//   }
//
// Time: every method takes `now` from the caller's (injected) clock; a `now`
// earlier than one seen before counts as no time passing.
//
// Increase only when the limit binds: a window ends with an increase only if
// some acquisition was refused in it (TCP's rule for application-limited
// senders, RFC 7661). An idle or lightly used limiter keeps its limit instead
// of growing without bound and then flooding the downstream after a lull.
//
// Thread safety: TokenBucket and AimdLimiter are not thread-safe (the
// scheduler and the submitter use them under their own locks; guard them
// yourself otherwise). ConcurrencyLimiter is thread-safe (atomics): calls may
// finish on any thread.
#ifndef TXFN_LIMITERS_H_
#define TXFN_LIMITERS_H_

#include <atomic>
#include <cstdint>
#include <limits>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace txfn {

class TokenBucket {
 public:
  // An unlimited bucket (rate and burst infinite).
  TokenBucket() = default;

  // `rate` >= 0 tokens per second (+infinity: unlimited); `burst` > 0 (may be
  // +infinity). Starts full. InvalidArgument naming the bad value otherwise.
  [[nodiscard]] static absl::StatusOr<TokenBucket> Create(double rate, double burst,
                                                          absl::Time now);

  // Takes `n` (>= 0) tokens if available at `now`; false for a negative or NaN `n`.
  [[nodiscard]] bool TryAcquire(absl::Time now, double n = 1);
  // Gives back `n` tokens taken by TryAcquire (up to the burst); a negative or NaN `n` is
  // ignored.
  void Refund(double n = 1);
  // When `n` tokens will be available if nothing else takes any: `now` if
  // they are; InfiniteFuture if they never will be (rate 0, or n > burst).
  [[nodiscard]] absl::Time AvailableAt(absl::Time now, double n = 1) const;
  // Changes rate / burst from `now` on (tokens saved so far are kept, capped
  // at the new burst). InvalidArgument as for Create (nothing changed).
  [[nodiscard]] absl::Status SetRate(double rate, absl::Time now);
  [[nodiscard]] absl::Status SetBurst(double burst, absl::Time now);

  double rate() const { return rate_; }
  double burst() const { return burst_; }
  // Tokens available at `now`.
  double tokens(absl::Time now) const;

 private:
  TokenBucket(double rate, double burst, absl::Time now);
  void Refill(absl::Time now);

  double rate_ = std::numeric_limits<double>::infinity();
  double burst_ = std::numeric_limits<double>::infinity();
  double tokens_ = std::numeric_limits<double>::infinity();
  int64_t last_ns_ = std::numeric_limits<int64_t>::min();
};

class ConcurrencyLimiter {
 public:
  // `limit` >= 0 calls at once (negative is taken as 0).
  explicit ConcurrencyLimiter(int64_t limit = std::numeric_limits<int64_t>::max())
      : limit_(limit < 0 ? 0 : limit) {}

  // Takes a slot if fewer than limit() are in flight.
  [[nodiscard]] bool TryAcquire();
  // Returns a slot taken by TryAcquire.
  void Release();
  // Lowering the limit below in_flight() refuses acquisitions until enough
  // calls finished; nothing running is affected.
  void SetLimit(int64_t limit) { limit_.store(limit < 0 ? 0 : limit, std::memory_order_relaxed); }

  int64_t limit() const { return limit_.load(std::memory_order_relaxed); }
  int64_t in_flight() const { return in_flight_.load(std::memory_order_relaxed); }

 private:
  std::atomic<int64_t> limit_;
  std::atomic<int64_t> in_flight_{0};
};

struct AimdOptions {
  // The control window W; the limit changes once per window.
  absl::Duration window = absl::Minutes(1);
  // Slow start: the first window's limit T (calls per window), multiplied by
  // (1 + slow_start_growth) each binding window until the first back-pressure.
  // A window binds when an acquisition was refused in it and it admitted at
  // least half its limit (RFC 7661's rule for TCP: a limit that lumpy demand
  // bumps into now and then, but that admits far more than it is asked for
  // on average, must not grow until a burst overloads the downstream).
  double slow_start_calls = 100;
  double slow_start_growth = 0.2;
  // Congestion avoidance: + additive_increase calls per window per binding
  // window; * multiplicative_decrease (0 < M < 1) after a window whose
  // back-pressure signals exceeded backpressure_threshold.
  double additive_increase = 10;
  double multiplicative_decrease = 0.5;
  int64_t backpressure_threshold = 0;
  // Bounds of the limit, calls per window.
  double min_calls_per_window = 1;
  double max_calls_per_window = 1e12;
  // p of the concurrency cap R = r * p (r in calls per second, p in seconds:
  // the expected call latency, by Little's law); 0 = no concurrency cap.
  double concurrency_factor = 0;
  // Tokens the limiter lets through at once: the limit's rate times this
  // (at least 1 call).
  absl::Duration burst = absl::Seconds(1);

  friend bool operator==(const AimdOptions&, const AimdOptions&) = default;
};

class AimdLimiter {
 public:
  // InvalidArgument naming the option: window <= 0, T < min or > max,
  // growth < 0, increase < 0, M not in (0, 1), threshold < 0, min <= 0 or
  // min > max, concurrency_factor < 0, burst <= 0, any value not finite.
  [[nodiscard]] static absl::StatusOr<AimdLimiter> Create(AimdOptions options, absl::Time now);

  // Admits one call at `now` if the rate and the concurrency cap allow
  // (closing windows that ended first). A refusal marks the window binding.
  [[nodiscard]] bool TryAcquire(absl::Time now);
  // Undoes a TryAcquire (the call was not sent after all).
  void Refund();
  // The admitted call finished (frees its concurrency slot).
  void Release();
  // `n` back-pressure signals from the downstream (overload, throttling); a negative `n`
  // counts as 0, and the count saturates.
  void RecordBackPressure(absl::Time now, int64_t n = 1);
  // Closes the windows that ended by `now`, adjusting the limit.
  void Update(absl::Time now);

  // The limit r, in calls per window and per second.
  double calls_per_window() const { return limit_; }
  double calls_per_second() const { return limit_ / window_seconds_; }
  // R = ceil(r * p), at least 1; int64 max when there is no cap.
  int64_t concurrency_cap() const;
  bool in_slow_start() const { return slow_start_; }
  int64_t in_flight() const { return in_flight_; }
  // Windows ended with a decrease / an increase since creation.
  int64_t decreases() const { return decreases_; }
  int64_t increases() const { return increases_; }
  const AimdOptions& options() const { return options_; }

 private:
  AimdLimiter(AimdOptions options, absl::Time now);
  void ApplyLimit(absl::Time now);
  double BurstTokens() const;

  AimdOptions options_;
  double window_seconds_ = 60;
  double limit_ = 100;
  bool slow_start_ = true;
  TokenBucket bucket_;
  absl::Time window_end_;
  int64_t backpressure_ = 0;  // in the current window
  bool binding_ = false;      // an acquisition was refused in the current window
  int64_t admitted_ = 0;      // acquisitions in the current window (less refunds)
  int64_t in_flight_ = 0;
  int64_t decreases_ = 0;
  int64_t increases_ = 0;
};

}  // namespace txfn

#endif  // TXFN_LIMITERS_H_

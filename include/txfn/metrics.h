// txfn/metrics.h — Prometheus metrics: latency histograms, the text exposition format, and a
// minimal HTTP endpoint serving it (GET /metrics), for `txfn serve` and `txfn-runner`.
//
//   txfn::LatencyHistogram calls;                    // one per thing measured
//   calls.Observe(absl::Milliseconds(3));
//   txfn::MetricsText text;
//   text.Counter("txfn_queries_total", "Queries that succeeded.", stats.queries);
//   text.Histogram("txfn_call_seconds", "Call latency.", calls, {{"method", "query"}});
//   TXFN_ASSIGN_OR_RETURN(auto http, txfn::MetricsHttpServer::Start(
//       "127.0.0.1:9464", [&] { return BuildText(); }));
//
// Thread safety: LatencyHistogram is thread-safe (atomics); MetricsText is a builder used by
// one thread; MetricsHttpServer calls its callback from its own thread.
#ifndef TXFN_METRICS_H_
#define TXFN_METRICS_H_

#include <array>
#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "txfn/engine.h"

namespace txfn {

// Counts of observed durations in fixed buckets (seconds: 0.5 ms .. 10 s, then +Inf), with
// their sum, as a Prometheus histogram.
class LatencyHistogram {
 public:
  static constexpr std::array<double, 14> kBounds = {
      0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
  void Observe(absl::Duration d);
  // Cumulative count of observations <= kBounds[i]; i == kBounds.size() is the total.
  uint64_t CumulativeCount(size_t i) const;
  double SumSeconds() const;

 private:
  std::array<std::atomic<uint64_t>, kBounds.size() + 1> counts_{};
  std::atomic<uint64_t> sum_nanos_{0};
};

using MetricLabels = std::map<std::string, std::string>;

// Builds the text exposition format; each metric's HELP and TYPE lines are written once, the
// first time the metric is named.
class MetricsText {
 public:
  void Counter(std::string_view name, std::string_view help, double value,
               const MetricLabels& labels = {});
  void Gauge(std::string_view name, std::string_view help, double value,
             const MetricLabels& labels = {});
  void Histogram(std::string_view name, std::string_view help, const LatencyHistogram& h,
                 const MetricLabels& labels = {});
  const std::string& text() const { return text_; }

 private:
  void Header(std::string_view name, std::string_view help, std::string_view type);
  void Sample(std::string_view name, const MetricLabels& labels, double value);
  std::string text_;
  std::map<std::string, bool, std::less<>> described_;
};

// The engine's counters and gauges (calls, conflicts, commits, isolates, module and metadata
// caches, queued calls and their backlog by function, the AIMD limiters' rates).
void AppendEngineMetrics(Engine& engine, MetricsText* out);

// Serves `render()` as text/plain at GET /metrics (HTTP/1.0, one request per connection; any
// other path is 404). For scraping only: no TLS, bind loopback unless told otherwise.
class MetricsHttpServer {
 public:
  // `listen` is HOST:PORT (port 0: any, see port()). Unavailable when it cannot be bound.
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<MetricsHttpServer>> Start(
      const std::string& listen, std::function<std::string()> render);
  ~MetricsHttpServer();  // stops serving
  MetricsHttpServer(const MetricsHttpServer&) = delete;
  MetricsHttpServer& operator=(const MetricsHttpServer&) = delete;
  int port() const;

 private:
  class Impl;
  explicit MetricsHttpServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace txfn

#endif  // TXFN_METRICS_H_

#include "txfn/metrics.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "fmt/format.h"
#include "txfn/internal/strings.h"
#include "txfn/log_sink.h"

namespace txfn {

using internal::StrCat;

LogSink StderrLogSink() {
  return [](LogLevel level, std::string_view line) {
    const std::string_view name = LogLevelName(level);
    std::fprintf(stderr, "txfn [%.*s] %.*s\n", static_cast<int>(name.size()), name.data(),
                 static_cast<int>(line.size()), line.data());
  };
}

void LatencyHistogram::Observe(absl::Duration d) {
  const double seconds = absl::ToDoubleSeconds(d);
  size_t i = 0;
  while (i < kBounds.size() && seconds > kBounds[i]) ++i;
  counts_[i].fetch_add(1, std::memory_order_relaxed);
  sum_nanos_.fetch_add(static_cast<uint64_t>(std::max<int64_t>(0, absl::ToInt64Nanoseconds(d))),
                       std::memory_order_relaxed);
}

uint64_t LatencyHistogram::CumulativeCount(size_t i) const {
  uint64_t total = 0;
  for (size_t j = 0; j <= i && j < counts_.size(); ++j) {
    total += counts_[j].load(std::memory_order_relaxed);
  }
  return total;
}

double LatencyHistogram::SumSeconds() const {
  return static_cast<double>(sum_nanos_.load(std::memory_order_relaxed)) * 1e-9;
}

namespace {

// A label value escaped as the exposition format wants (\\, \", \n).
std::string Escaped(std::string_view value) {
  std::string out;
  for (char c : value) {
    if (c == '\\' || c == '"') out += '\\';
    if (c == '\n') {
      out += "\\n";
      continue;
    }
    out += c;
  }
  return out;
}

std::string LabelText(const MetricLabels& labels) {
  if (labels.empty()) return "";
  std::string out = "{";
  for (const auto& [name, value] : labels) {
    if (out.size() > 1) out += ',';
    out += StrCat(name, "=\"", Escaped(value), "\"");
  }
  return out + "}";
}

}  // namespace

void MetricsText::Header(std::string_view name, std::string_view help, std::string_view type) {
  if (described_.find(name) != described_.end()) return;
  described_.emplace(std::string(name), true);
  text_ += StrCat("# HELP ", name, " ", help, "\n# TYPE ", name, " ", type, "\n");
}

void MetricsText::Sample(std::string_view name, const MetricLabels& labels, double value) {
  text_ += fmt::format("{}{} {}\n", name, LabelText(labels), value);
}

void MetricsText::Counter(std::string_view name, std::string_view help, double value,
                          const MetricLabels& labels) {
  Header(name, help, "counter");
  Sample(name, labels, value);
}

void MetricsText::Gauge(std::string_view name, std::string_view help, double value,
                        const MetricLabels& labels) {
  Header(name, help, "gauge");
  Sample(name, labels, value);
}

void MetricsText::Histogram(std::string_view name, std::string_view help, const LatencyHistogram& h,
                            const MetricLabels& labels) {
  Header(name, help, "histogram");
  const std::string bucket = StrCat(name, "_bucket");
  for (size_t i = 0; i <= LatencyHistogram::kBounds.size(); ++i) {
    MetricLabels with_le = labels;
    with_le["le"] = i < LatencyHistogram::kBounds.size()
                        ? fmt::format("{}", LatencyHistogram::kBounds[i])
                        : "+Inf";
    Sample(bucket, with_le, static_cast<double>(h.CumulativeCount(i)));
  }
  Sample(StrCat(name, "_sum"), labels, h.SumSeconds());
  Sample(StrCat(name, "_count"), labels,
         static_cast<double>(h.CumulativeCount(LatencyHistogram::kBounds.size())));
}

void AppendEngineMetrics(Engine& engine, MetricsText* out) {
  const EngineStats s = engine.stats();
  auto count = [&](std::string_view name, std::string_view help, uint64_t v) {
    out->Counter(name, help, static_cast<double>(v));
  };
  count("txfn_queries_total", "Queries that succeeded.", s.queries);
  count("txfn_mutations_total", "Mutations that committed.", s.mutations);
  count("txfn_mutations_replayed_total", "Mutations answered from their idempotency key.",
        s.replayed);
  count("txfn_idempotency_keys_pruned_total",
        "Idempotency keys deleted after idempotency_key_retention.",
        s.retention.idempotency_keys_pruned);
  count("txfn_conflicts_total", "OCC conflicts seen.", s.conflicts);
  count("txfn_mutation_retries_total", "Mutation re-runs after a conflict.", s.retries);
  count("txfn_deploys_total", "Deploys that succeeded.", s.deploys);
  count("txfn_commits_total", "Commits with writes.", s.committer.commits);
  count("txfn_commit_batches_total", "Storage writes (group-commit batches).", s.committer.batches);
  count("txfn_isolates_created_total", "Isolates created.", s.scheduler.isolates_created);
  count("txfn_requests_rejected_total", "Requests the isolate scheduler refused.",
        s.scheduler.rejected);
  count("txfn_requests_given_up_total",
        "Requests dropped unrun from the isolate scheduler's queue: their callers' deadlines "
        "passed.",
        s.scheduler.given_up);
  out->Gauge("txfn_isolates_live", "Isolates alive now.", s.scheduler.live_isolates);
  out->Gauge("txfn_isolates_busy", "Isolates running a request now.", s.scheduler.busy_isolates);
  out->Gauge("txfn_scheduler_queue_length", "Requests waiting for an isolate.",
             static_cast<double>(s.scheduler.queue_length));
  count("txfn_module_cache_hits_total", "Modules found compiled in the cache.",
        s.module_cache.hits);
  count("txfn_module_cache_misses_total", "Modules compiled from source.", s.module_cache.misses);
  count("txfn_metadata_cache_hits_total", "Calls that found tenant metadata in memory.",
        s.metadata_cache.hits);
  count("txfn_metadata_cache_misses_total", "Calls that loaded tenant metadata.",
        s.metadata_cache.misses);
  out->Gauge("txfn_tenants_open", "Tenants in memory now.", static_cast<double>(s.tenants_open));
  count("txfn_queued_calls_submitted_total", "Calls submitted.", s.queued.submitted);
  count("txfn_queued_calls_ran_total", "Queued-call deliveries that ran the function.",
        s.queued.ran);
  count("txfn_queued_calls_succeeded_total", "Queued calls that succeeded.", s.queued.succeeded);
  count("txfn_queued_calls_failed_total", "Queued calls that failed.", s.queued.failed);
  count("txfn_queued_calls_dead_lettered_total", "Queued calls dead-lettered by the scheduler.",
        s.queued.scheduler.dead_lettered);
  count("txfn_service_back_pressure_total", "Service answers that were back-pressure.",
        s.queued.back_pressure);
  count("txfn_pending_cap_refused_total",
        "Calls and mutations refused for max_pending_calls_per_tenant.",
        s.queued.pending_cap_refused);
  count("txfn_queued_call_log_lines_dropped_total",
        "Console messages of queued calls dropped for log_bytes_per_second_per_tenant.",
        s.queued.log_lines_dropped);
  count("txfn_pending_cap_recounts_total",
        "Counts of the queue per tenant for max_pending_calls_per_tenant.",
        s.queued.pending_cap_recounts);
  if (absl::StatusOr<std::vector<FunctionDepth>> depths = engine.QueueDepths(); depths.ok()) {
    for (const FunctionDepth& d : *depths) {
      out->Gauge("txfn_queue_pending", "Queued calls not yet finished, by function.",
                 static_cast<double>(d.pending), {{"function", d.function}});
      out->Gauge("txfn_queue_due", "Queued calls due now, by function.", static_cast<double>(d.due),
                 {{"function", d.function}});
      out->Gauge("txfn_queue_leased", "Queued calls leased now, by function.",
                 static_cast<double>(d.leased), {{"function", d.function}});
    }
  }
  for (const std::string& service : engine.ServiceNames()) {
    if (std::optional<double> rate = engine.ServiceRate(service); rate.has_value()) {
      out->Gauge("txfn_service_rate", "The AIMD limiter's rate for a service (calls/s).", *rate,
                 {{"service", service}});
    }
  }
}

class MetricsHttpServer::Impl {
 public:
  Impl(int fd, int port, std::function<std::string()> render)
      : fd_(fd), port_(port), render_(std::move(render)) {
    if (pipe(stop_) != 0) stop_[0] = stop_[1] = -1;
    thread_ = std::thread([this] { Serve(); });
  }
  ~Impl() {
    if (stop_[1] >= 0) (void)!write(stop_[1], "x", 1);
    thread_.join();
    close(fd_);
    if (stop_[0] >= 0) close(stop_[0]);
    if (stop_[1] >= 0) close(stop_[1]);
  }
  int port() const { return port_; }

 private:
  // A connection whose request line has not arrived yet.
  struct Client {
    int fd;
    std::string request;
    absl::Time give_up;  // on SteadyNow()
  };
  // At most this many connections wait for their request line at once (the oldest goes), and
  // each for at most a second: idle connections cannot keep a scrape waiting.
  static constexpr size_t kMaxWaiting = 32;
  static constexpr absl::Duration kRequestTimeout = absl::Seconds(1);
  static constexpr size_t kMaxRequestBytes = 2048;

  // The steady clock as an absl::Time (for durations only): a wall clock set back would keep
  // a waiting connection for the length of the step.
  static absl::Time SteadyNow() {
    return absl::FromUnixNanos(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                   std::chrono::steady_clock::now().time_since_epoch())
                                   .count());
  }

  void Serve() {
    std::vector<Client> waiting;
    while (true) {
      std::vector<pollfd> fds = {{fd_, POLLIN, 0}, {stop_[0], POLLIN, 0}};
      absl::Time next = absl::InfiniteFuture();
      for (const Client& c : waiting) {
        fds.push_back({c.fd, POLLIN, 0});
        next = std::min(next, c.give_up);
      }
      const int timeout_ms = next == absl::InfiniteFuture()
                                 ? -1
                                 : static_cast<int>(std::max<int64_t>(
                                       0, absl::ToInt64Milliseconds(absl::Ceil(
                                              next - SteadyNow(), absl::Milliseconds(1)))));
      if (poll(fds.data(), fds.size(), timeout_ms) < 0 && errno != EINTR) break;
      if (stop_[0] >= 0 && fds[1].revents != 0) break;
      // Read what arrived; answer each connection whose request line is complete.
      const absl::Time now = SteadyNow();
      std::vector<Client> still;
      for (size_t i = 0; i < waiting.size(); ++i) {
        Client& c = waiting[i];
        bool done = now >= c.give_up;
        if (!done && fds[i + 2].revents != 0) {
          char buffer[kMaxRequestBytes];
          const ssize_t n = recv(c.fd, buffer, kMaxRequestBytes - c.request.size(), MSG_DONTWAIT);
          if (n > 0) c.request.append(buffer, static_cast<size_t>(n));
          // A whole line, a full buffer, or the client's end of what it sends (a request
          // without its line end, then a half-close).
          const bool complete = c.request.find('\n') != std::string::npos ||
                                c.request.size() >= kMaxRequestBytes ||
                                (n == 0 && !c.request.empty());
          if (complete) Answer(c.fd, c.request);
          done = complete || n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR);
        }
        if (done) {
          close(c.fd);
        } else {
          still.push_back(std::move(c));
        }
      }
      waiting = std::move(still);
      if ((fds[0].revents & POLLIN) != 0) {
        const int client = accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
        if (client >= 0) {
          if (waiting.size() >= kMaxWaiting) {
            close(waiting.front().fd);
            waiting.erase(waiting.begin());
          }
          waiting.push_back({client, "", now + kRequestTimeout});
        }
      }
    }
    for (const Client& c : waiting) close(c.fd);
  }

  // Answers a request (its first line is all that matters) and sends the response: a scrape's
  // text fits the socket's buffer, and a client that reads nothing holds the sender for at most
  // a second.
  void Answer(int client, std::string_view request) {
    const bool metrics = request.starts_with("GET /metrics ") ||
                         request.starts_with("GET /metrics?") || request.starts_with("GET / ");
    const std::string body = metrics ? render_() : "not found\n";
    const std::string response = fmt::format(
        "HTTP/1.0 {}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\n"
        "Connection: close\r\n\r\n{}",
        metrics ? "200 OK" : "404 Not Found", body.size(), body);
    timeval timeout{1, 0};
    setsockopt(client, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof timeout);
    size_t sent = 0;
    while (sent < response.size()) {
      const ssize_t w = send(client, response.data() + sent, response.size() - sent, MSG_NOSIGNAL);
      if (w <= 0) return;
      sent += static_cast<size_t>(w);
    }
  }

  const int fd_;
  const int port_;
  const std::function<std::string()> render_;
  int stop_[2] = {-1, -1};
  std::thread thread_;  // last: started once the rest exists
};

absl::StatusOr<std::unique_ptr<MetricsHttpServer>> MetricsHttpServer::Start(
    const std::string& listen, std::function<std::string()> render) {
  const size_t colon = listen.rfind(':');
  int port = 0;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  if (colon == std::string::npos || !absl::SimpleAtoi(listen.substr(colon + 1), &port) ||
      port < 0 || port > 65535 ||
      inet_pton(AF_INET, listen.substr(0, colon).c_str(), &addr.sin_addr) != 1) {
    return absl::InvalidArgumentError(
        StrCat("metrics: '", listen, "' is not IPV4_ADDRESS:PORT (e.g. 127.0.0.1:9464)"));
  }
  addr.sin_port = htons(static_cast<uint16_t>(port));
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return absl::UnavailableError(StrCat("metrics: socket: ", std::strerror(errno)));
  const int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  socklen_t length = sizeof addr;
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 || ::listen(fd, 16) != 0 ||
      getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &length) != 0) {
    const std::string why = std::strerror(errno);
    close(fd);
    return absl::UnavailableError(StrCat("metrics: cannot listen on ", listen, ": ", why));
  }
  return std::unique_ptr<MetricsHttpServer>(
      new MetricsHttpServer(std::make_unique<Impl>(fd, ntohs(addr.sin_port), std::move(render))));
}

MetricsHttpServer::MetricsHttpServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
MetricsHttpServer::~MetricsHttpServer() = default;
int MetricsHttpServer::port() const { return impl_->port(); }

}  // namespace txfn

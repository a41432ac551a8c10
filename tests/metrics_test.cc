// txfn/metrics.h: histograms, the text exposition format, the HTTP endpoint and the engine's
// metrics.
#include "txfn/metrics.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <string>
#include <vector>

#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "txfn/in_memory_storage.h"

namespace txfn {
namespace {

using ::testing::HasSubstr;

// A connection to 127.0.0.1:`port`, or -1.
int Connect(int port) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

// Everything `fd` sends until it closes; closes `fd`.
std::string ReadAllAndClose(int fd) {
  std::string out;
  char buffer[4096];
  for (ssize_t n; (n = read(fd, buffer, sizeof buffer)) > 0;) out.append(buffer, n);
  close(fd);
  return out;
}

// An HTTP GET of `path` on 127.0.0.1:`port`; the whole response.
std::string Get(int port, const std::string& path) {
  const int fd = Connect(port);
  if (fd < 0) return "connect failed";
  const std::string request = "GET " + path + " HTTP/1.0\r\n\r\n";
  (void)!write(fd, request.data(), request.size());
  return ReadAllAndClose(fd);
}

TEST(LatencyHistogram, CountsCumulativelyByBucket) {
  LatencyHistogram h;
  h.Observe(absl::Microseconds(100));  // <= 0.5 ms
  h.Observe(absl::Milliseconds(1));    // == 1 ms: the 1 ms bucket (le is inclusive)
  h.Observe(absl::Milliseconds(30));   // <= 50 ms
  h.Observe(absl::Seconds(60));        // +Inf only
  EXPECT_EQ(h.CumulativeCount(0), 1u);
  EXPECT_EQ(h.CumulativeCount(1), 2u);
  EXPECT_EQ(h.CumulativeCount(5), 2u);  // <= 25 ms
  EXPECT_EQ(h.CumulativeCount(6), 3u);  // <= 50 ms
  EXPECT_EQ(h.CumulativeCount(13), 3u);
  EXPECT_EQ(h.CumulativeCount(LatencyHistogram::kBounds.size()), 4u);
  EXPECT_NEAR(h.SumSeconds(), 60.0311, 1e-9);
}

TEST(MetricsText, WritesTheExpositionFormat) {
  MetricsText text;
  text.Counter("x_total", "Some things.", 3, {{"kind", "a\"b"}});
  text.Counter("x_total", "Some things.", 4, {{"kind", "c"}});
  text.Gauge("y", "A level.", 1.5);
  LatencyHistogram h;
  h.Observe(absl::Milliseconds(2));
  text.Histogram("z_seconds", "Latency.", h, {{"m", "q"}});
  const std::string& t = text.text();
  EXPECT_THAT(t, HasSubstr("# HELP x_total Some things.\n# TYPE x_total counter\n"
                           "x_total{kind=\"a\\\"b\"} 3\nx_total{kind=\"c\"} 4\n"));
  EXPECT_EQ(t.find("# HELP x_total"), t.rfind("# HELP x_total"));  // described once
  EXPECT_THAT(t, HasSubstr("# TYPE y gauge\ny 1.5\n"));
  EXPECT_THAT(t, HasSubstr("z_seconds_bucket{le=\"0.001\",m=\"q\"} 0\n"));
  EXPECT_THAT(t, HasSubstr("z_seconds_bucket{le=\"0.0025\",m=\"q\"} 1\n"));
  EXPECT_THAT(t, HasSubstr("z_seconds_bucket{le=\"+Inf\",m=\"q\"} 1\n"));
  EXPECT_THAT(t, HasSubstr("z_seconds_count{m=\"q\"} 1\n"));
}

TEST(MetricsHttpServer, ServesMetricsAndNothingElse) {
  std::atomic<int> renders{0};
  auto server = MetricsHttpServer::Start("127.0.0.1:0", [&] {
    ++renders;
    return std::string("up 1\n");
  });
  ASSERT_TRUE(server.ok()) << server.status();
  const std::string ok = Get((*server)->port(), "/metrics");
  EXPECT_THAT(ok, HasSubstr("HTTP/1.0 200 OK"));
  EXPECT_THAT(ok, HasSubstr("Content-Length: 5\r\n"));
  EXPECT_THAT(ok, HasSubstr("\r\n\r\nup 1\n"));
  EXPECT_THAT(Get((*server)->port(), "/secrets"), HasSubstr("404 Not Found"));
  EXPECT_EQ(renders.load(), 1);
  EXPECT_EQ(MetricsHttpServer::Start("localhost", [] { return std::string(); }).status().code(),
            absl::StatusCode::kInvalidArgument);
}

// Idle connections do not hold a scrape back: it is answered while they are still open (they
// were served one at a time, each given up on after a second: 20 of them made a scrape wait
// 17 s), and a request line that arrives in two pieces is read whole (it was a 404).
TEST(MetricsHttpServer, IdleConnectionsDoNotHoldAScrape) {
  auto server = MetricsHttpServer::Start("127.0.0.1:0", [] { return std::string("up 1\n"); });
  ASSERT_TRUE(server.ok()) << server.status();
  const int port = (*server)->port();
  std::vector<int> idle;
  for (int i = 0; i < 5; ++i) {
    idle.push_back(Connect(port));
    ASSERT_GE(idle.back(), 0);
  }
  const int fd = Connect(port);
  ASSERT_GE(fd, 0);
  (void)!write(fd, "GET /met", 8);
  absl::SleepFor(absl::Milliseconds(20));
  const std::string rest = "rics HTTP/1.0\r\n\r\n";
  (void)!write(fd, rest.data(), rest.size());
  EXPECT_THAT(ReadAllAndClose(fd), HasSubstr("HTTP/1.0 200 OK"));
  // A request line without its end, then the client's half-close: answered too.
  const int half = Connect(port);
  ASSERT_GE(half, 0);
  (void)!write(half, "GET /metrics HTTP/1.0", 21);
  shutdown(half, SHUT_WR);
  EXPECT_THAT(ReadAllAndClose(half), HasSubstr("HTTP/1.0 200 OK"));
  for (int c : idle) {
    char byte;
    EXPECT_EQ(recv(c, &byte, 1, MSG_DONTWAIT), -1) << "closed before the scrape was answered";
    EXPECT_EQ(errno, EAGAIN);
    close(c);
  }
}

TEST(EngineMetrics, CountCallsAndQueueDepth) {
  auto engine = Engine::Open(std::make_shared<InMemoryStorage>(), EngineOptions{});
  ASSERT_TRUE(engine.ok()) << engine.status();
  ASSERT_TRUE((*engine)->CreateTenant("t").ok());
  ASSERT_TRUE((*engine)
                  ->DeployJson("t", {{"m.js", R"(import { query } from "txfn/server";
                                            export const f = query(async () => 1);)"}},
                               R"({"tables": {}})")
                  .ok());
  for (int i = 0; i < 3; ++i) ASSERT_TRUE((*engine)->Query("t", "m:f", Value()).ok());
  MetricsText text;
  AppendEngineMetrics(**engine, &text);
  EXPECT_THAT(text.text(), HasSubstr("\ntxfn_queries_total 3\n"));
  EXPECT_THAT(text.text(), HasSubstr("# TYPE txfn_isolates_live gauge\n"));
  EXPECT_THAT(text.text(), HasSubstr("txfn_module_cache_misses_total "));
}

}  // namespace
}  // namespace txfn

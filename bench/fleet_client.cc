// txfn_fleet_client: the load of bench/fleet.sh. THREADS threads call a `txfn serve --listen`
// for SECONDS: bank transfers (mutations) and totals (queries), 2:1, on every tenant given;
// prints "calls N failed F seconds S calls_per_s R". Exit 1 if a call failed.
//
//   txfn_fleet_client HOST:PORT API_KEY THREADS SECONDS TENANT:ACCOUNT_A:ACCOUNT_B ...
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "txfn/functions_client.h"

int main(int argc, char** argv) {
  if (argc < 6) {
    std::fprintf(stderr,
                 "usage: %s HOST:PORT API_KEY THREADS SECONDS TENANT:ACCOUNT_A:ACCOUNT_B...\n",
                 argv[0]);
    return 2;
  }
  auto client = txfn::FunctionsClient::Connect(argv[1], argv[2]);
  if (!client.ok()) return 1;
  const int threads = std::atoi(argv[3]);
  const absl::Duration duration = absl::Seconds(std::atof(argv[4]));
  struct Bank {
    std::string tenant, a, b;
  };
  std::vector<Bank> banks;
  for (int i = 5; i < argc; ++i) {
    std::vector<std::string> parts = absl::StrSplit(argv[i], ':');
    if (parts.size() != 3) return 2;
    banks.push_back({parts[0], parts[1], parts[2]});
  }
  std::atomic<long> calls{0}, failed{0};
  const absl::Time start = absl::Now(), end = start + duration;
  std::vector<std::thread> workers;
  for (int t = 0; t < threads; ++t) {
    workers.emplace_back([&, t] {
      for (long i = 0; absl::Now() < end; ++i) {
        const Bank& bank = banks[static_cast<size_t>(t + i) % banks.size()];
        absl::StatusOr<txfn::CallResult> r;
        if (i % 3 == 2) {
          r = (*client)->Query(bank.tenant, "audit:total", txfn::Value::FromObject({}));
        } else {
          const bool forward = (i / 3) % 2 == 0;
          r = (*client)->Mutation(
              bank.tenant, "transfers:transfer",
              txfn::Value::FromObject({{"from", txfn::Value::String(forward ? bank.a : bank.b)},
                                       {"to", txfn::Value::String(forward ? bank.b : bank.a)},
                                       {"amount", txfn::Value::Int64(1)}}));
        }
        ++calls;
        if (!r.ok()) {
          if (failed++ == 0) std::fprintf(stderr, "%s\n", r.status().ToString().c_str());
        }
      }
    });
  }
  for (std::thread& w : workers) w.join();
  const double seconds = absl::ToDoubleSeconds(absl::Now() - start);
  std::printf("calls %ld failed %ld seconds %.1f calls_per_s %.0f\n", calls.load(), failed.load(),
              seconds, static_cast<double>(calls.load()) / seconds);
  return failed.load() == 0 ? 0 : 1;
}

// bench/queue_bench_util.h — the no-op calls the queue benchmarks push through.
#ifndef TXFN_BENCH_QUEUE_BENCH_UTIL_H_
#define TXFN_BENCH_QUEUE_BENCH_UTIL_H_

#include <cstddef>
#include <vector>

#include "absl/time/time.h"
#include "fmt/core.h"
#include "txfn/call.h"

namespace txfn::bench {

// `n` calls of tenant "bench" with no arguments, due at `start` with an hour
// to run, spread round-robin over `functions` functions ("fn0", "fn1", ...;
// "noop" when there is one).
inline std::vector<Call> NoOpCalls(CallIdGenerator& ids, size_t n, absl::Time start,
                                   int functions = 1) {
  std::vector<Call> calls(n);
  for (size_t i = 0; i < n; ++i) {
    Call& c = calls[i];
    c.id = ids.Next();
    c.tenant = "bench";
    c.function = functions == 1 ? "noop" : fmt::format("fn{}", i % static_cast<size_t>(functions));
    c.start_after = start;
    c.deadline = start + absl::Hours(1);
  }
  return calls;
}

}  // namespace txfn::bench

#endif  // TXFN_BENCH_QUEUE_BENCH_UTIL_H_

// lib/queue/queue_time.h — times as the durable queue adapters store them (internal):
// nanoseconds since the Unix epoch in an int64, InfinitePast/InfiniteFuture and anything
// beyond clamped to its ends, so they still sort.
#ifndef TXFN_LIB_QUEUE_QUEUE_TIME_H_
#define TXFN_LIB_QUEUE_QUEUE_TIME_H_

#include <cstdint>
#include <limits>

#include "absl/time/time.h"

namespace txfn::internal {

inline int64_t QueueNanos(absl::Time t) {
  if (t >= absl::FromUnixNanos(std::numeric_limits<int64_t>::max())) {
    return std::numeric_limits<int64_t>::max();
  }
  if (t <= absl::FromUnixNanos(std::numeric_limits<int64_t>::min())) {
    return std::numeric_limits<int64_t>::min();
  }
  return absl::ToUnixNanos(t);
}

inline absl::Time FromQueueNanos(int64_t n) { return absl::FromUnixNanos(n); }

}  // namespace txfn::internal

#endif  // TXFN_LIB_QUEUE_QUEUE_TIME_H_

// lib/queue/queue_rows.h — how the SQL queue adapters (SqliteQueue, PostgresQueue) store a
// call's time and state in its row (internal): times as nanoseconds since the Unix epoch in an
// int64, InfinitePast/InfiniteFuture and beyond clamped to its ends (so they still sort); the
// state as 0 pending, 1 leased (its due time is then the lease's expiry), 2 dead-lettered.
#ifndef TXFN_LIB_QUEUE_QUEUE_ROWS_H_
#define TXFN_LIB_QUEUE_QUEUE_ROWS_H_

#include <cstddef>
#include <cstdint>
#include <limits>

#include "absl/time/time.h"
#include "txfn/durable_queue.h"

namespace txfn::internal {

inline constexpr int kRowPending = 0;
inline constexpr int kRowLeased = 1;
inline constexpr int kRowDead = 2;
// The most tenants a SQL adapter's lease statement skips: those asked
// (LeaseRequest::skip_tenants) and those found at max_per_tenant.
inline constexpr size_t kMaxStatementSkips = 2048;

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

// Sets out->state and out->at from a row's state, due and dead_at columns, as the queue holds
// the call at `now`: dead since dead_at; leased until due while the lease lasts; else pending,
// due at due (an expired lease is pending again).
inline void SetRowState(int64_t state, int64_t due, int64_t dead_at, absl::Time now,
                        QueuedCall* out) {
  if (state == kRowDead) {
    out->state = QueuedCall::State::kDead;
    out->at = FromQueueNanos(dead_at);
    return;
  }
  const absl::Time due_at = FromQueueNanos(due);
  out->state = state == kRowLeased && due_at > now ? QueuedCall::State::kLeased
                                                   : QueuedCall::State::kPending;
  out->at = due_at;
}

}  // namespace txfn::internal

#endif  // TXFN_LIB_QUEUE_QUEUE_ROWS_H_

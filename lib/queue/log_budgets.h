// LogBudgets: how much of its queued calls' console output each tenant may hand the host per
// second (QueuedCallOptions::log_bytes_per_second_per_tenant). Each delivery caps its own
// output, but a tenant running thousands of calls could write gigabytes a minute to the host's
// log (5 GB to `txfn serve`'s stderr in 15 s in the 2026-12 hunt).
//
// A token bucket per tenant. A console message (one console.* call, a LogEntry) costs about
// what printing it a line at a time, each line after a header naming the tenant, the function
// and the call, its control characters escaped as \xNN (as `txfn serve` does), writes: its
// bytes; for each line in it (a message "\n\n\n..." is as many lines) 64 and the tenant's and
// the function's names; and 3 more for each byte of a control character (C0 but tab, DEL,
// C1). The burst is 4 seconds' worth (at least one empty message): a message that costs more
// never passes. A delivery's messages pass until one does not fit; that one and the rest of
// the delivery's are dropped, so what passes of a delivery has no gaps, and a kWarn message
// saying how many were dropped ends it.
// A delivery none of whose messages pass is dropped whole and counted: the tenant's next
// delivery that passes begins with a kWarn message saying how many were dropped before it. Rate 0:
// every line is dropped (and counted), and no tenant is kept.
//
//   txfn::internal::LogBudgets budgets(1 << 20);
//   uint64_t dropped = 0;
//   std::vector<txfn::LogEntry> passed =
//       budgets.Pass("shop", "mail:send", std::move(logs), now, &dropped);
//   if (!passed.empty()) on_logs(passed);
//
// Thread safety: thread-safe.
#ifndef TXFN_LIB_QUEUE_LOG_BUDGETS_H_
#define TXFN_LIB_QUEUE_LOG_BUDGETS_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/time/time.h"
#include "txfn/errors.h"
#include "txfn/internal/mutex.h"
#include "txfn/limiters.h"

namespace txfn::internal {

class LogBudgets {
 public:
  // What each line of a message costs beside its bytes and the names in its header.
  static constexpr double kLineCost = 64;
  // What passing `message` costs (above), each of its lines after a header of kLineCost +
  // `header_bytes` (the tenant's and the function's names).
  [[nodiscard]] static double Cost(std::string_view message, size_t header_bytes = 0);

  // OK for a rate >= 0 (infinity: no limit); InvalidArgument naming the option otherwise.
  [[nodiscard]] static absl::Status Validate(double bytes_per_second);

  // `bytes_per_second` must pass Validate.
  explicit LogBudgets(double bytes_per_second);

  // The messages of `logs` (of a call of `function`) that `tenant`'s budget lets pass at `now`,
  // with the kWarn messages about what was dropped (above); empty if none passes. Adds the
  // messages it dropped to `*dropped`.
  [[nodiscard]] std::vector<LogEntry> Pass(std::string_view tenant, std::string_view function,
                                           std::vector<LogEntry> logs, absl::Time now,
                                           uint64_t* dropped);

  // Tenants with a budget kept (for tests): one with a full bucket and nothing to report is
  // forgotten whenever the count has doubled.
  size_t tenants() const;

 private:
  struct Budget {
    TokenBucket bucket;
    uint64_t dropped_lines = 0;  // whole deliveries dropped since the last that passed
    uint64_t dropped_bytes = 0;
  };
  LogEntry Dropped(std::string_view tenant, uint64_t lines, uint64_t bytes,
                   std::string_view which) const;

  const double rate_;
  mutable Mutex mu_;
  absl::flat_hash_map<std::string, Budget> budgets_ ABSL_GUARDED_BY(mu_);
  size_t kept_ ABSL_GUARDED_BY(mu_) = 0;  // budgets_.size() after the last forgetting
};

}  // namespace txfn::internal

#endif  // TXFN_LIB_QUEUE_LOG_BUDGETS_H_

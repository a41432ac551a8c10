// LogBudgets: see log_budgets.h.
#include "lib/queue/log_budgets.h"

#include <algorithm>
#include <limits>
#include <utility>

#include "fmt/format.h"
#include "lib/utf8.h"
#include "txfn/internal/strings.h"

namespace txfn::internal {

absl::Status LogBudgets::Validate(double bytes_per_second) {
  if (bytes_per_second >= 0) return absl::OkStatus();  // false for NaN
  return absl::InvalidArgumentError(internal::StrCat(
      "QueuedCallOptions::log_bytes_per_second_per_tenant is ", fmt::format("{}", bytes_per_second),
      "; it must be >= 0 (infinity: no limit)"));
}

LogBudgets::LogBudgets(double bytes_per_second) : rate_(bytes_per_second) {}

double LogBudgets::Cost(std::string_view message, size_t header_bytes) {
  // Printed line by line after headers, controls escaped: a hunt wrote 110 MB/s past a 1 MiB/s
  // budget with messages of 100,000 newlines, and 4x it with control characters, when a
  // message cost its bytes and one header.
  constexpr double kEscapedExtra = 3;  // "\xNN" for one byte
  const double line = kLineCost + static_cast<double>(header_bytes);
  double cost = line + static_cast<double>(message.size());
  for (size_t i = 0; i < message.size(); ++i) {
    if (message[i] == '\n') {
      cost += line;
      continue;
    }
    const size_t control = TerminalControlAt(message, i);  // as the CLI escapes them
    if (control == 0) continue;
    cost += kEscapedExtra * static_cast<double>(control);
    i += control - 1;
  }
  return cost;
}

LogEntry LogBudgets::Dropped(std::string_view tenant, uint64_t lines, uint64_t bytes,
                             std::string_view which) const {
  return LogEntry{.level = LogLevel::kWarn,
                  .message = internal::StrCat("[txfn] ", lines, " console message(s) (", bytes,
                                              " bytes) ", which, " were dropped: tenant ", tenant,
                                              " is over QueuedCallOptions::"
                                              "log_bytes_per_second_per_tenant (",
                                              fmt::format("{}", rate_), ")")};
}

std::vector<LogEntry> LogBudgets::Pass(std::string_view tenant, std::string_view function,
                                       std::vector<LogEntry> logs, absl::Time now,
                                       uint64_t* dropped) {
  // A rate Validate refuses (the engine does not start with one) limits nothing here.
  if (!(rate_ < std::numeric_limits<double>::infinity() && rate_ >= 0) || logs.empty()) {
    return logs;
  }
  if (rate_ == 0) {  // none passes: nothing to say, and nothing to keep per tenant
    *dropped += logs.size();
    return {};
  }
  std::vector<LogEntry> passed;
  uint64_t cut_lines = 0;  // of this delivery
  uint64_t cut_bytes = 0;
  MutexLock lock(&mu_);
  // Heterogeneous: no copy of a known tenant's name.
  auto it = budgets_.find(absl::string_view(tenant.data(), tenant.size()));
  const bool added = it == budgets_.end();
  if (added) it = budgets_.try_emplace(std::string(tenant)).first;
  Budget& budget = it->second;
  if (added) {
    // Validate passed: Create cannot fail.
    budget.bucket = TokenBucket::Create(rate_, std::max(4 * rate_, kLineCost), now).value();
  }
  for (LogEntry& line : logs) {
    if (cut_lines == 0 &&
        budget.bucket.TryAcquire(now, Cost(line.message, tenant.size() + function.size()))) {
      passed.push_back(std::move(line));
    } else {
      ++cut_lines;
      cut_bytes += line.message.size();
    }
  }
  *dropped += cut_lines;
  if (passed.empty()) {
    budget.dropped_lines += cut_lines;
    budget.dropped_bytes += cut_bytes;
  } else {
    if (budget.dropped_lines > 0) {
      passed.insert(passed.begin(), Dropped(tenant, budget.dropped_lines, budget.dropped_bytes,
                                            "of the tenant's earlier queued calls"));
      budget.dropped_lines = 0;
      budget.dropped_bytes = 0;
    }
    if (cut_lines > 0) passed.push_back(Dropped(tenant, cut_lines, cut_bytes, "more of this call"));
  }
  if (budgets_.size() > 2 * std::max<size_t>(kept_, 64)) {
    absl::erase_if(budgets_, [now](const auto& entry) {
      const Budget& b = entry.second;
      return b.dropped_lines == 0 && b.bucket.tokens(now) >= b.bucket.burst();
    });
    kept_ = budgets_.size();
  }
  return passed;
}

size_t LogBudgets::tenants() const {
  MutexLock lock(&mu_);
  return budgets_.size();
}

}  // namespace txfn::internal

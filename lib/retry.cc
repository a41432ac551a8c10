// Conflict retries with jittered backoff (txfn/retry.h).
#include "txfn/retry.h"

#include <algorithm>

#include "absl/random/random.h"
#include "absl/time/clock.h"
#include "txfn/internal/strings.h"

namespace txfn {

absl::StatusOr<CommitOutcome> RunTransaction(Committer& committer,
                                             absl::FunctionRef<absl::Status(Transaction&)> body,
                                             const RetryOptions& retry,
                                             const TransactionOptions& options) {
  absl::BitGen jitter;
  absl::Duration backoff = retry.initial_backoff;
  absl::Status last;
  for (int attempt = 1; attempt <= std::max(1, retry.max_attempts); ++attempt) {
    Transaction txn(committer.Latest(), options);
    if (absl::Status s = body(txn); !s.ok()) return s;
    absl::StatusOr<Timestamp> ts = committer.Commit(txn.Prepare());
    if (ts.ok()) return CommitOutcome{.commit_ts = *ts, .attempts = attempt};
    last = ts.status();
    if (!absl::IsAborted(last) && !absl::IsFailedPrecondition(last)) return last;
    if (attempt < retry.max_attempts) {
      // Full jitter: a random sleep in [0, backoff), so contenders spread out.
      absl::SleepFor(backoff * absl::Uniform(jitter, 0.0, 1.0));
      backoff = std::min(backoff * 2, retry.max_backoff);
    }
  }
  return absl::AbortedError(internal::StrCat("transaction gave up after ", retry.max_attempts,
                                             " attempts: ", last.message()));
}

}  // namespace txfn

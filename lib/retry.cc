// Conflict retries with jittered backoff (txfn/retry.h).
#include "txfn/retry.h"

#include <algorithm>
#include <utility>

#include "absl/random/random.h"
#include "absl/time/clock.h"
#include "txfn/internal/strings.h"

namespace txfn {

bool IsRetryableCommitError(const absl::Status& commit_status) {
  return absl::IsAborted(commit_status) || absl::IsFailedPrecondition(commit_status);
}

void JitteredBackoff::Sleep(absl::Time no_later_than) {
  absl::SleepFor(std::min(next_ * absl::Uniform(jitter_, 0.0, 1.0), no_later_than - absl::Now()));
  next_ = std::min(next_ * 2, max_);
}

absl::Status RetriesExhausted(std::string_view what, int attempts, const absl::Status& last) {
  // The committer's advice to restart from a new snapshot (a transaction that began before the
  // conflict window) is what a retry does: after retries it only misleads.
  std::string_view message = internal::ToStd(last.message());
  constexpr std::string_view kAdvice = "; restart it from a new snapshot";
  if (attempts > 1 && message.ends_with(kAdvice)) message.remove_suffix(kAdvice.size());
  absl::Status exhausted = absl::AbortedError(
      internal::StrCat(what, " gave up after ", attempts, " attempts: ", message));
  // The last conflict's payload (ConflictingRead) stays readable.
  last.ForEachPayload([&exhausted](absl::string_view type_url, const absl::Cord& payload) {
    exhausted.SetPayload(type_url, payload);
  });
  return exhausted;
}

absl::StatusOr<CommitOutcome> RetryCommits(std::string_view what, const RetryOptions& retry,
                                           absl::FunctionRef<AttemptResult(int attempt)> attempt,
                                           absl::FunctionRef<void(bool will_retry)> on_conflict) {
  const int max_attempts = std::max(1, retry.max_attempts);
  JitteredBackoff backoff(retry);
  absl::Status last;
  for (int n = 1; n <= max_attempts; ++n) {
    const AttemptResult result = attempt(n);
    if (!result.reached_commit()) return result.result().status();  // failed before its commit
    if (result.result().ok()) return CommitOutcome{.commit_ts = *result.result(), .attempts = n};
    last = result.result().status();
    if (!IsRetryableCommitError(last)) return last;
    const bool will_retry = n < max_attempts;
    on_conflict(will_retry);
    if (will_retry) backoff.Sleep();
  }
  return RetriesExhausted(what, max_attempts, last);
}

absl::StatusOr<CommitOutcome> RetryCommits(
    std::string_view what, const RetryOptions& retry,
    absl::FunctionRef<absl::StatusOr<absl::StatusOr<Timestamp>>(int attempt)> attempt,
    absl::FunctionRef<void(bool will_retry)> on_conflict) {
  return RetryCommits(
      what, retry,
      [&](int n) -> AttemptResult {
        absl::StatusOr<absl::StatusOr<Timestamp>> r = attempt(n);
        if (!r.ok()) return r.status();
        return AttemptResult::Commit(*std::move(r));
      },
      on_conflict);
}

CommitIntent AnnounceFirstAttempt(Committer& committer, int attempt) {
  return attempt == 1 ? committer.AnnounceCommit() : CommitIntent();
}

absl::StatusOr<CommitOutcome> RunTransaction(Committer& committer,
                                             absl::FunctionRef<absl::Status(Transaction&)> body,
                                             const RetryOptions& retry,
                                             const TransactionOptions& options) {
  return RetryCommits("transaction", retry, [&](int attempt) -> AttemptResult {
    CommitIntent intent = AnnounceFirstAttempt(committer, attempt);
    Transaction txn(committer.Latest(), options);
    if (absl::Status s = body(txn); !s.ok()) return s;
    return AttemptResult::Commit(committer.Commit(txn.Prepare(), std::move(intent)));
  });
}

}  // namespace txfn

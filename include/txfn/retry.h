// txfn/retry.h — run a transaction body until it commits, retrying OCC conflicts.
//
//   absl::StatusOr<txfn::CommitOutcome> outcome = txfn::RunTransaction(
//       *committer, [&](txfn::Transaction& txn) -> absl::Status {
//         TXFN_ASSIGN_OR_RETURN(auto doc, txn.Get(id));
//         return txn.Patch(id, txfn::Value::FromObject({{"n", txfn::Value::Int64(1)}}));
//       });
//   // outcome->attempts says how many runs it took.
//
// Each attempt runs `body` on a fresh Transaction at the committer's latest
// snapshot and commits it (the first attempt announced: AnnounceFirstAttempt). An Aborted commit (a
// conflict) and a FailedPrecondition commit (the snapshot fell out of the conflict window) are
// retried after a jittered exponential backoff; any error from `body` itself,
// or any other commit error, is returned at once. After max_attempts
// conflicts the result is Aborted, naming the number of attempts.
//
// Unknown outcomes: a commit whose storage write may or may not have happened
// is resolved by the committer from storage when it can (committed: success;
// absent: Unavailable); when it cannot, the unknown outcome
// (IsCommitOutcomeUnknown) is returned as it is. Either way the body never
// runs again after it: a blind re-run could apply it twice. Hosts that must
// retry use an idempotency key (<txfn/idempotency.h>).
//
// Thread safety: as the Committer; `body` runs on the calling thread.
#ifndef TXFN_RETRY_H_
#define TXFN_RETRY_H_

#include <cstdint>
#include <string_view>
#include <utility>

#include "absl/functional/function_ref.h"
#include "absl/random/random.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "txfn/committer.h"
#include "txfn/transaction.h"

namespace txfn {

struct RetryOptions {
  int max_attempts = 8;
  absl::Duration initial_backoff = absl::Milliseconds(1);
  absl::Duration max_backoff = absl::Milliseconds(100);
};

struct CommitOutcome {
  Timestamp commit_ts = 0;
  int attempts = 0;
};

// The wait between retries: full jitter (a random sleep in [0, backoff)), the
// backoff doubling from retry.initial_backoff up to retry.max_backoff, so
// contenders spread out. One per retry loop; not thread-safe.
class JitteredBackoff {
 public:
  explicit JitteredBackoff(const RetryOptions& retry)
      : next_(retry.initial_backoff), max_(retry.max_backoff) {}
  // Sleeps the next jittered backoff, but not past `no_later_than` (a
  // caller's deadline: a retry loop that checks it before each attempt then
  // fails at the deadline, not up to one backoff after it).
  void Sleep(absl::Time no_later_than = absl::InfiniteFuture());

 private:
  absl::Duration next_;
  const absl::Duration max_;
  absl::BitGen jitter_;
};

// Whether a Committer::Commit error is worth a new attempt: Aborted (a
// conflict) or FailedPrecondition (the snapshot left the conflict window).
bool IsRetryableCommitError(const absl::Status& commit_status);
// Aborted: "<what> gave up after <attempts> attempts: <last error>" (after more than one
// attempt, without the committer's advice to restart from a new snapshot: a retry did), the
// last error's payloads kept.
absl::Status RetriesExhausted(std::string_view what, int attempts, const absl::Status& last);

// One attempt's outcome for RetryCommits: a failure before the commit
// (returned at once, never retried) or the commit's result (retried when
// IsRetryableCommitError). An absl::Status converts implicitly to the former,
// so TXFN_RETURN_IF_ERROR and TXFN_ASSIGN_OR_RETURN work inside an attempt;
// the commit's result must be named: `return AttemptResult::Commit(
// committer.Commit(...))`. Cheap to copy.
class AttemptResult {
 public:
  // A failure before the commit. OK is a caller's bug: it becomes Internal.
  AttemptResult(absl::Status before_commit)  // NOLINT(google-explicit-constructor)
      : commit_(before_commit.ok() ? absl::InternalError("an attempt failed with an OK status")
                                   : std::move(before_commit)),
        committed_(false) {}
  // The result of Committer::Commit (or of anything with its contract).
  [[nodiscard]] static AttemptResult Commit(absl::StatusOr<Timestamp> commit) {
    AttemptResult r;
    r.commit_ = std::move(commit);
    return r;
  }
  // Whether the attempt reached its commit.
  bool reached_commit() const { return committed_; }
  // The commit's result, or the failure before it.
  const absl::StatusOr<Timestamp>& result() const { return commit_; }

 private:
  AttemptResult() : committed_(true) {}
  absl::StatusOr<Timestamp> commit_;
  bool committed_;
};

// The loop under RunTransaction, for callers whose attempt is not a
// Transaction body (a runner runs a JS mutation, then its result is
// committed). `attempt(n)` runs once per try, n = 1, 2, ...; an
// AttemptResult made from a Status failed before its commit and is returned
// at once; a commit result is retried as above when Aborted or
// FailedPrecondition, with `on_conflict(will_retry)` called for each such
// failure. After max_attempts the result is Aborted: "<what> gave up after N
// attempts: <last error>". `attempt` and `on_conflict` run on the calling
// thread; the loop sleeps (JitteredBackoff) between attempts.
//
//   absl::StatusOr<txfn::CommitOutcome> outcome = txfn::RetryCommits(
//       "mutation", {.max_attempts = 4}, [&](int n) -> txfn::AttemptResult {
//         txfn::CommitIntent intent = txfn::AnnounceFirstAttempt(committer, n);
//         txfn::RunResult r = runner.Run(committer.Latest(), request);
//         TXFN_RETURN_IF_ERROR(r.status);
//         return txfn::AttemptResult::Commit(
//             committer.Commit(std::move(r.commit), std::move(intent)));
//       });
[[nodiscard]] absl::StatusOr<CommitOutcome> RetryCommits(
    std::string_view what, const RetryOptions& retry,
    absl::FunctionRef<AttemptResult(int attempt)> attempt,
    absl::FunctionRef<void(bool will_retry)> on_conflict = [](bool) {});

// The former form, whose attempt returns the commit's result nested in the
// status of what ran before it. Kept for source compatibility.
[[deprecated(
    "return txfn::AttemptResult from the attempt")]] [[nodiscard]] absl::StatusOr<CommitOutcome>
RetryCommits(
    std::string_view what, const RetryOptions& retry,
    absl::FunctionRef<absl::StatusOr<absl::StatusOr<Timestamp>>(int attempt)> attempt,
    absl::FunctionRef<void(bool will_retry)> on_conflict = [](bool) {});

// The intent an attempt announces (Committer::AnnounceCommit): the first
// attempt announces, so a concurrent commit may hold its batch open for it
// and both share one Storage::Write. A retry does not: it conflicted, so it
// likely contends with the commits a leader would hold for, and a hold would
// only make it miss their writes again.
[[nodiscard]] CommitIntent AnnounceFirstAttempt(Committer& committer, int attempt);

[[nodiscard]] absl::StatusOr<CommitOutcome> RunTransaction(
    Committer& committer, absl::FunctionRef<absl::Status(Transaction&)> body,
    const RetryOptions& retry = {}, const TransactionOptions& options = {});

}  // namespace txfn

#endif  // TXFN_RETRY_H_

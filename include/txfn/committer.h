// txfn/committer.h — serialises one tenant's commits under optimistic
// concurrency control.
//
// The committer validates each PreparedCommit's read set against every write
// committed after the transaction's begin timestamp (a conflict is any such
// write whose old or new index key lies in a read range), assigns a strictly
// increasing commit timestamp, persists the batch atomically through Storage
// and publishes a new Snapshot.
//
//   auto committer = txfn::Committer::Open(storage, "shop");
//   txfn::Transaction txn((*committer)->Latest());
//   ... reads and writes ...
//   absl::StatusOr<txfn::Timestamp> ts = (*committer)->Commit(txn.Prepare());
//   // Aborted: a conflict, run the transaction again (see retry.h).
//
// Conflict detection uses a ConflictSet (conflict_set.h), so its cost does
// not grow with the length of the history. The history is kept for a window
// (CommitterOptions::conflict_window and max_window_commits); a transaction
// that began before the window is FailedPrecondition — distinct from a
// conflict's Aborted — and must restart from a new snapshot.
//
// Group commit: concurrent Commit calls queue; one of them (the leader)
// validates the queued commits in arrival order, each against the history and
// the ones accepted before it, and writes all accepted ones in one
// Storage::Write. If that write fails, every commit of the batch gets
// Unavailable, nothing is published, and later commits are served normally.
//
// Thread safety: Commit and Latest may be called from any thread
// concurrently. One Committer per tenant per storage: two committers writing
// one tenant would break serialisability (Storage rejects their interleaved
// timestamps only if they happen to collide).
#ifndef TXFN_COMMITTER_H_
#define TXFN_COMMITTER_H_

#include <cstddef>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "txfn/conflict_set.h"
#include "txfn/internal/mutex.h"
#include "txfn/snapshot.h"
#include "txfn/storage.h"
#include "txfn/transaction.h"

namespace txfn {

struct CommitterOptions {
  // A begin timestamp older than this (on the clock below) is too old.
  absl::Duration conflict_window = absl::Seconds(5);
  // ... and the history never holds more commits than this.
  size_t max_window_commits = 1'000'000;
  // The most commits one group-commit batch writes.
  size_t max_batch_commits = 64;
  // Commit timestamps: max(clock(), previous + 1). Default: nanoseconds since
  // the Unix epoch. Tests inject a fake clock.
  std::function<Timestamp()> clock;
};

struct CommitterStats {
  uint64_t commits = 0;           // accepted and persisted commits with writes
  uint64_t read_only = 0;         // commits without writes (no timestamp assigned)
  uint64_t conflicts = 0;         // Aborted
  uint64_t too_old = 0;           // FailedPrecondition: began before the window
  uint64_t storage_failures = 0;  // batches whose Storage::Write failed
  uint64_t batches = 0;           // Storage::Write calls
};

class Committer {
 public:
  // Reads the tenant's latest timestamp and metadata from `storage`.
  // Unavailable (or the storage's error) if storage fails.
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<Committer>> Open(
      std::shared_ptr<Storage> storage, std::string tenant, CommitterOptions options = {});

  Committer(const Committer&) = delete;
  Committer& operator=(const Committer&) = delete;
  ~Committer();

  const std::string& tenant() const { return tenant_; }

  // The newest published snapshot. Never null.
  std::shared_ptr<const Snapshot> Latest() const;

  // Validates and commits. Returns the commit timestamp; for a commit without
  // writes, its begin timestamp (a read-only transaction is serialised there).
  // Errors: Aborted (conflict, retryable), FailedPrecondition (began before
  // the conflict window), InvalidArgument (another tenant's commit, a begin
  // timestamp in the future, writes to an index twice), Unavailable (storage).
  [[nodiscard]] absl::StatusOr<Timestamp> Commit(PreparedCommit commit);

  CommitterStats stats() const;

 private:
  struct Pending {
    PreparedCommit commit;
    absl::StatusOr<Timestamp> result = Timestamp{0};
    bool done = false;
  };

  Committer(std::shared_ptr<Storage> storage, std::string tenant, CommitterOptions options,
            std::shared_ptr<const Snapshot> latest);
  absl::Status Check(const PreparedCommit& commit) const;
  // Validates, persists and publishes one batch. Runs on the leader only.
  void ProcessBatch(const std::vector<Pending*>& batch) ABSL_EXCLUSIVE_LOCKS_REQUIRED(leader_mu_);
  void SlideWindow(Timestamp now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(leader_mu_);
  void Publish(std::shared_ptr<const Snapshot> snapshot);

  const std::shared_ptr<Storage> storage_;
  const std::string tenant_;
  const CommitterOptions options_;

  // The queue of commits waiting for a leader.
  mutable internal::Mutex queue_mu_;
  internal::CondVar queue_cv_{&queue_mu_};
  std::deque<Pending*> queue_ ABSL_GUARDED_BY(queue_mu_);
  bool leader_active_ ABSL_GUARDED_BY(queue_mu_) = false;

  // State only the leader touches (held for a whole batch; uncontended).
  internal::Mutex leader_mu_;
  ConflictSet history_ ABSL_GUARDED_BY(leader_mu_);
  std::deque<Timestamp> window_ ABSL_GUARDED_BY(leader_mu_);  // commit timestamps in history_
  Timestamp last_ts_ ABSL_GUARDED_BY(leader_mu_);

  mutable internal::Mutex latest_mu_;
  std::shared_ptr<const Snapshot> latest_ ABSL_GUARDED_BY(latest_mu_);
  CommitterStats stats_ ABSL_GUARDED_BY(latest_mu_);
};

}  // namespace txfn

#endif  // TXFN_COMMITTER_H_

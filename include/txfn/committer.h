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
// Conflict detection uses a B+tree of recent writes (a ConflictSet), so its cost does
// not grow with the length of the history. The history is kept for a window
// (CommitterOptions::conflict_window and max_window_commits); a transaction
// that began before the window is FailedPrecondition — distinct from a
// conflict's Aborted — and must restart from a new snapshot.
//
// A conflict's status (Aborted) carries the read a newer write hit
// (ConflictingRead below).
//
// Group commit: concurrent Commit calls queue; one of them (the leader)
// validates the queued commits in arrival order, each against the history and
// the ones accepted before it, and writes all accepted ones in one
// Storage::Write. If that write fails, every commit of the batch gets
// Unavailable, nothing is published, and later commits are served normally.
//
// Unknown outcomes. If the Write fails with an unknown outcome
// (IsCommitOutcomeUnknown: the batch may be durable, see Storage::Write), the
// batch is treated as possibly committed: its writes enter the conflict
// history (at worst a later transaction conflicts needlessly), nothing is
// published, and the committer asks storage (MaxCommittedTimestamp) which it
// was. Found committed: the commits succeed and the snapshot is published, as
// if the Write had succeeded. Found absent: they fail with Unavailable ("not
// persisted"), definitely not committed. (Storage holding commits up to the
// batch's timestamp says committed if its log holds the batch's writes there;
// once retention dropped that log, only while no other writer can have
// written, Storage::MayHaveOtherWriters.) If storage cannot say (SqliteStorage
// refuses until it is reopened), each commit of the batch returns the unknown
// outcome (CommitOutcomeUnknownError, carrying its commit timestamp), and the
// committer resolves the batch before it accepts any other write: each later
// batch asks storage again, and while storage cannot say, every commit with
// writes is refused with Unavailable (definitely not committed) — for
// SqliteStorage until the database is reopened. Never retry an unknown
// outcome blindly: look for the commit (its timestamp is in the status) or
// use an idempotency key (<txfn/idempotency.h>).
//
// Holding a batch open: a caller that is about to run a transaction and
// commit it can say so with AnnounceCommit(). While announced commits are
// outstanding, a leader waits up to CommitterOptions::max_batch_delay for
// them to join its batch before it writes, so two writers share one fsync
// instead of taking turns. With nothing announced a leader never waits, so a
// lone writer pays no delay.
//
//   txfn::CommitIntent intent = committer->AnnounceCommit();
//   txfn::Transaction txn(committer->Latest());
//   ... run the function ...
//   committer->Commit(txn.Prepare(), std::move(intent));
//
// Thread safety: Commit and Latest may be called from any thread
// concurrently. Committers of one tenant on one storage (engines in several
// processes, or sharing a storage object) stay serialisable: storage refuses a
// batch built without another committer's newer commits (StaleWriterError;
// the committer reloads, or rebases the batch). Their reads follow each other's
// commits only as far as Storage::MayHaveOtherWriters says.
#ifndef TXFN_COMMITTER_H_
#define TXFN_COMMITTER_H_

#include <cstddef>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "txfn/snapshot.h"
#include "txfn/storage.h"
#include "txfn/transaction.h"

namespace txfn {

struct CommitterOptions {
  // A begin timestamp older than this (on the clock below) is too old.
  absl::Duration conflict_window = absl::Seconds(5);
  // ... and the history never holds more commits than this.
  size_t max_window_commits = 1'000'000;
  // The most commits one group-commit batch writes, and (approximately, keys
  // plus values) the most bytes; a batch always takes at least one commit.
  // Zeros are raised to 1.
  size_t max_batch_commits = 64;
  size_t max_batch_bytes = 64 << 10;
  // How long a leader holds a batch open for announced commits (see
  // AnnounceCommit). Zero: never hold. At most an hour.
  absl::Duration max_batch_delay = absl::Milliseconds(1);
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
  // Of those, batches whose outcome was unknown, and how many of them storage
  // later showed committed (the rest were absent, or are still unresolved).
  uint64_t unknown_outcomes = 0;
  uint64_t unknown_committed = 0;
  // Commits with writes refused while an unknown outcome was unresolved.
  uint64_t refused_unresolved = 0;
  uint64_t batches = 0;       // Storage::Write calls
  uint64_t held_batches = 0;  // batches a leader held open for announced commits
  // Tenant metadata decoded from storage: once at Open, then once per
  // accepted commit that writes metadata (a deploy, enabling). Every other
  // commit and every snapshot reuses the decoded metadata in memory.
  uint64_t metadata_loads = 0;
  // Reloads after another process committed to the tenant (see Latest()), and
  // batches storage refused because of such commits (StaleWriterError: not
  // written; their transactions fail FailedPrecondition and restart).
  uint64_t reloads = 0;
  uint64_t stale_batches = 0;
  // The conflict history now (gauges, not counts): distinct (index, key)
  // pairs held, and the commits they came from. Pruned as the window slides,
  // on each batch and on PruneHistory.
  uint64_t history_keys = 0;
  uint64_t history_commits = 0;

  // Field-wise sum (a batch's counts into the totals; totals over tenants).
  CommitterStats& operator+=(const CommitterStats& other) {
    commits += other.commits;
    read_only += other.read_only;
    conflicts += other.conflicts;
    too_old += other.too_old;
    storage_failures += other.storage_failures;
    reloads += other.reloads;
    stale_batches += other.stale_batches;
    unknown_outcomes += other.unknown_outcomes;
    unknown_committed += other.unknown_committed;
    refused_unresolved += other.refused_unresolved;
    batches += other.batches;
    held_batches += other.held_batches;
    metadata_loads += other.metadata_loads;
    history_keys += other.history_keys;
    history_commits += other.history_commits;
    return *this;
  }
};

class Committer;

// An OCC conflict (Aborted) says which of the transaction's reads a newer
// write hit, as a typed payload (type.txfn.dev/txfn.Conflict): the index and
// key range. ConflictingRead returns it; nullopt for any other status.
// Callers that serialise contended work key on it (the engine's contention
// lanes); nobody needs to parse the message.
[[nodiscard]] std::optional<ReadRange> ConflictingRead(const absl::Status& status);

// The conflicting read in the tenant's terms, for callers that report or
// branch on it: which table and index, and which document for a read of one
// document by its id.
struct ConflictTarget {
  std::string table;                       // empty for a read of no table (the tenant's metadata)
  std::string index;                       // "by_id", a secondary index's name, or "metadata"
  std::optional<std::string> document_id;  // a read of one document by _id
  friend bool operator==(const ConflictTarget&, const ConflictTarget&) = default;
};

// `read` described with the tenant's `metadata` (index ids are never reused,
// so a later version's metadata describes an earlier read too).
[[nodiscard]] ConflictTarget DescribeRead(const TenantMetadata& metadata, const ReadRange& read);

// The target the committer named in a conflict (Aborted); nullopt for any
// other status, or for a conflict made without one.
[[nodiscard]] std::optional<ConflictTarget> ConflictingTarget(const absl::Status& status);

// Aborted(`message`) with the payload above; `target`, when given, is carried
// too. For adapters of the commit path (the committer makes these).
[[nodiscard]] absl::Status ConflictError(std::string_view message, const ReadRange& read,
                                         const ConflictTarget* target = nullptr);

// Whether a Commit call that becomes the group-commit leader may hold its
// batch open for announced commits (see Committer::Commit).
enum class BatchHold { kAllowed, kNever };

// A promise to call Committer::Commit soon (see AnnounceCommit). Move-only;
// handing it to Commit, destroying it or calling Release() withdraws it.
// Must not outlive its Committer. Not thread-safe (one owner at a time).
class CommitIntent {
 public:
  CommitIntent() = default;
  CommitIntent(CommitIntent&& other) noexcept
      : committer_(std::exchange(other.committer_, nullptr)) {}
  CommitIntent& operator=(CommitIntent&& other) noexcept {
    if (this != &other) {
      Release();
      committer_ = std::exchange(other.committer_, nullptr);
    }
    return *this;
  }
  ~CommitIntent() { Release(); }

  void Release();
  bool active() const { return committer_ != nullptr; }

 private:
  friend class Committer;
  explicit CommitIntent(Committer* committer) : committer_(committer) {}
  Committer* committer_ = nullptr;
};

// Keeps a committer's conflict history from a timestamp on, while it lives
// (see Committer::PinHistory). Move-only; must not outlive its Committer.
class HistoryPin {
 public:
  HistoryPin() = default;
  HistoryPin(HistoryPin&& other) noexcept
      : committer_(std::exchange(other.committer_, nullptr)), ts_(other.ts_) {}
  HistoryPin& operator=(HistoryPin&& other) noexcept {
    if (this != &other) {
      Release();
      committer_ = std::exchange(other.committer_, nullptr);
      ts_ = other.ts_;
    }
    return *this;
  }
  ~HistoryPin() { Release(); }
  void Release();

 private:
  friend class Committer;
  HistoryPin(Committer* committer, Timestamp ts) : committer_(committer), ts_(ts) {}
  Committer* committer_ = nullptr;
  Timestamp ts_ = 0;
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

  [[nodiscard]] const std::string& tenant() const;

  // The newest published snapshot. Never null. When another process may write
  // the tenant (Storage::MayHaveOtherWriters: a PostgreSQL database this
  // process does not hold the tenant's lease of), it first asks storage for the
  // tenant's newest commit (one read) and, if that is newer, reloads: the
  // snapshot is then at that commit, and the conflict window restarts there
  // (a transaction that began earlier fails FailedPrecondition and restarts).
  // If that read fails, the last published snapshot is returned (consistent,
  // perhaps stale). If storage's newest commit is older than one this committer
  // knows it held, the tenant was deleted (DeletedElsewhere() turns true).
  std::shared_ptr<const Snapshot> Latest() const;
  // Latest(), but never a snapshot that may be stale: Unavailable where Latest() would
  // return the last published one because storage could not tell (or load) the tenant's
  // newest commit. A batch of this committer's whose outcome is unknown is settled first
  // (storage is asked, as the next commit would); if it cannot be, Unavailable too. What
  // reads must see every acknowledged commit (an engine's queries) use this.
  [[nodiscard]] absl::StatusOr<std::shared_ptr<const Snapshot>> Newest() const;

  // The clock of CommitterOptions now (what a commit made now would be stamped at least):
  // the time a run beginning now sees (RunRequest::now). Thread-safe.
  [[nodiscard]] Timestamp Now() const;

  // Whether another writer (another process, or another committer of the
  // storage) deleted the tenant under this committer: a Write was refused with
  // TenantDeletedElsewhereError, or Latest() found storage's newest commit older
  // than one this committer wrote or loaded. Final: every later Commit fails
  // with NotFound and writes nothing (the tenant's state here is the deleted
  // one's); open a new committer to see what storage holds now.
  // TenantCommitters::Get does. Thread-safe.
  [[nodiscard]] bool DeletedElsewhere() const;

  // Validates and commits. Returns the commit timestamp; for a commit without
  // writes, its begin timestamp (a read-only transaction is serialised there).
  // Errors: Aborted (conflict, retryable), FailedPrecondition (began before
  // the conflict window), InvalidArgument (another tenant's commit, a begin
  // timestamp in the future, writes to an index twice), Unavailable (storage:
  // not committed), Unavailable marked IsCommitOutcomeUnknown (storage could
  // not say whether it committed; see "Unknown outcomes" above), NotFound
  // marked IsTenantDeletedElsewhere (DeletedElsewhere(); not committed).
  // `intent`, if given, is withdrawn as the commit joins the queue. With
  // BatchHold::kNever, a batch this call leads is written at once, never held
  // open for announced commits: for a thread that announced work may itself
  // be waiting on (a scheduler worker), where holding would stall both.
  [[nodiscard]] absl::StatusOr<Timestamp> Commit(PreparedCommit commit, CommitIntent intent = {},
                                                 BatchHold hold = BatchHold::kAllowed);

  // Announces a commit this caller will make soon, so a leader may hold its
  // batch open for it (at most max_batch_delay). Cheap: one mutex round trip.
  [[nodiscard]] CommitIntent AnnounceCommit();

  CommitterStats stats() const;

  // Keeps every commit after `ts` in the conflict history while the pin
  // lives, whatever the window, so a long system transaction that began at
  // `ts` (a deploy validating or backfilling a large table) can still be
  // checked and committed instead of being FailedPrecondition. Pin before the
  // history could have moved past `ts` (e.g. right after Latest()). The
  // history grows by the commits made meanwhile. Thread-safe.
  [[nodiscard]] HistoryPin PinHistory(Timestamp ts);

  // Forgets the conflict history that has left the window at `now` (on the
  // clock of CommitterOptions), as the next commit's batch would: without
  // it, an idle committer keeps its history until its next commit. Never
  // prunes past a HistoryPin. Returns false, doing nothing, while a batch is
  // being processed (its leader slides the window itself). Thread-safe; cost:
  // O(log n) per commit pruned. An engine calls it on a timer.
  bool PruneHistory(Timestamp now);

 private:
  friend class CommitIntent;
  friend class HistoryPin;
  // The queue, the conflict history and the published snapshot
  // (lib/committer.cc), out of this header so that their layout and locks
  // are nobody's business but the committer's.
  class Core;
  explicit Committer(std::unique_ptr<Core> core);
  std::unique_ptr<Core> core_;
};

}  // namespace txfn

#endif  // TXFN_COMMITTER_H_

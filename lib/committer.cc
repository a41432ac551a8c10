// The OCC committer with group commit (txfn/committer.h). Committer is a
// handle on its Core, defined here: the commit queue, the conflict history
// and the published snapshot, with their locks.
#include "txfn/committer.h"

#include <algorithm>
#include <atomic>
#include <deque>
#include <limits>
#include <map>
#include <set>
#include <string>
#include <string_view>
#include <utility>

#include "absl/algorithm/container.h"
#include "absl/strings/cord.h"
#include "absl/time/clock.h"
#include "absl/types/span.h"
#include "lib/conflict_set.h"
#include "txfn/internal/mutex.h"
#include "txfn/internal/strings.h"
#include "txfn/status_macros.h"
#include "txfn/value.h"

namespace txfn {

namespace {

// How many times a batch refused as stale is written again on top of the other writer's
// commits, and the most of those commits read to do it.
constexpr int kRebaseRounds = 3;
constexpr size_t kMaxRebaseCommits = 1000;

Timestamp WallClockNanos() { return static_cast<Timestamp>(absl::GetCurrentTimeNanos()); }

// Whether `writes` change the tenant's metadata (a deploy, enabling).
bool WritesMetadata(absl::Span<const IndexWrite> writes) {
  return absl::c_any_of(writes, [](const IndexWrite& w) { return w.index == kMetadataIndex; });
}

}  // namespace

class Committer::Core {
 public:
  struct Pending {
    PreparedCommit commit;
    size_t bytes = 0;         // keys plus values written, for max_batch_bytes
    bool never_hold = false;  // BatchHold::kNever: a batch holding it closes at once
    absl::StatusOr<Timestamp> result = Timestamp{0};
    bool done = false;
  };

  Core(std::shared_ptr<Storage> storage, std::string tenant, CommitterOptions options,
       std::shared_ptr<const Snapshot> latest);

  // Committer's methods, as documented in committer.h.
  std::shared_ptr<const Snapshot> Latest() const;
  absl::StatusOr<Timestamp> Commit(PreparedCommit commit, CommitIntent intent, BatchHold hold);
  CommitIntent AnnounceCommit();
  CommitterStats stats() const;
  HistoryPin PinHistory(Timestamp ts);
  bool PruneHistory(Timestamp now);

  void WithdrawIntent();
  // Waits, as the leader, until no announced commit is outstanding, the
  // queue holds a full batch, or max_batch_delay passes. Returns whether it
  // waited at all.
  bool HoldBatchOpen() ABSL_EXCLUSIVE_LOCKS_REQUIRED(queue_mu_);
  // A holding leader stops: the queue holds a full batch, or a commit that
  // must not wait (BatchHold::kNever) is queued.
  bool BatchShouldClose() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(queue_mu_);
  // Takes the next batch off the queue.
  std::vector<Pending*> TakeBatch() ABSL_EXCLUSIVE_LOCKS_REQUIRED(queue_mu_);
  absl::Status Check(const PreparedCommit& commit) const;
  // A batch whose Storage::Write outcome is unknown, until storage says.
  struct Unresolved {
    Timestamp first_ts = 0;
    Timestamp last_ts = 0;
    std::vector<IndexWrite> last_writes;             // the writes of its commit at last_ts
    std::shared_ptr<const TenantMetadata> metadata;  // the snapshot's if committed
    std::string error;                               // the Write's
  };
  enum class Resolution { kCommitted, kAbsent, kUnknown };
  // Asks storage about unresolved_; on an answer, publishes (if committed)
  // and clears it.
  Resolution Resolve(CommitterStats* delta) ABSL_EXCLUSIVE_LOCKS_REQUIRED(leader_mu_);
  void AddToHistory(const std::vector<CommitRecord>& records)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(leader_mu_);
  // Validates, persists and publishes one batch. Runs on the leader only.
  void ProcessBatch(const std::vector<Pending*>& batch, bool held)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(leader_mu_);
  void SlideWindow(Timestamp now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(leader_mu_);
  // Copies the history's size into the gauges stats() reads.
  void UpdateHistoryGauges() ABSL_EXCLUSIVE_LOCKS_REQUIRED(leader_mu_);
  void Publish(std::shared_ptr<const Snapshot> snapshot);
  // Latest()'s catching up with other processes' commits, when storage says
  // there may be any.
  // Reloads if another writer committed since the published snapshot (see Latest()); an
  // unresolved batch of this committer's is settled first. Unavailable if the newest commit
  // could not be told or loaded, or the batch settled (the snapshot may then be stale).
  absl::Status CatchUp();
  // Sets durable_ts_ and its copy known_durable_.
  void SetDurable(Timestamp ts) ABSL_EXCLUSIVE_LOCKS_REQUIRED(leader_mu_) {
    durable_ts_ = ts;
    known_durable_.store(ts, std::memory_order_release);
  }
  // The error of a commit refused because deleted_elsewhere_ is set (`why`: what showed it).
  absl::Status DeletedElsewhereError(std::string_view why) const;
  // A batch (`records`, one per `accepted` commit) storage refused as stale: the tenant has
  // another writer's commits after durable_ts_. Reads them from the log, fails the commits
  // whose reads they wrote (FailedPrecondition: restarted from a new snapshot, `stale` says
  // why), and gives the others timestamps above them, so the batch can be written again on
  // top: a commit another process's commit did not touch is not restarted (it was, whatever
  // it read, so a `txfn run` beside a busy `txfn serve` could lose every try). Their writes
  // enter the history, durable_ts_ moves to the newest, and a snapshot there is published.
  // False, changing nothing, where that cannot be done safely: a snapshot was published above
  // durable_ts_ (a batch found absent), the batch deploys, the commit at durable_ts_ is gone
  // (the tenant was created again), the log is unreadable (below the retention horizon) or
  // long, or another writer changed the metadata.
  bool Rebase(std::vector<CommitRecord>& records, std::vector<Pending*>& accepted,
              const absl::Status& stale, const std::shared_ptr<const TenantMetadata>& metadata)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(leader_mu_);
  // The FailedPrecondition of a commit in a batch refused as stale.
  absl::Status StaleCommitError(const absl::Status& stale) const;
  // Loads the tenant's state at `newest` (its newest commit in storage, which
  // another process wrote): publishes a snapshot there and restarts the
  // conflict window at it, since the history lacks those commits. Nothing
  // changes if storage fails or `newest` is not past the published snapshot.
  void Reload(Timestamp newest, CommitterStats* delta) ABSL_EXCLUSIVE_LOCKS_REQUIRED(leader_mu_);

  Committer* owner_ = nullptr;  // the Committer this is the core of
  const std::shared_ptr<Storage> storage_;
  const std::string tenant_;
  const CommitterOptions options_;

  // The queue of commits waiting for a leader.
  mutable internal::Mutex queue_mu_;
  internal::CondVar queue_cv_{&queue_mu_};
  std::deque<Pending*> queue_ ABSL_GUARDED_BY(queue_mu_);
  size_t queued_bytes_ ABSL_GUARDED_BY(queue_mu_) = 0;
  bool leader_active_ ABSL_GUARDED_BY(queue_mu_) = false;
  // Announced commits not yet queued; a holding leader waits on hold_cv_.
  int64_t announced_ ABSL_GUARDED_BY(queue_mu_) = 0;
  bool holding_ ABSL_GUARDED_BY(queue_mu_) = false;
  int64_t never_hold_queued_ ABSL_GUARDED_BY(queue_mu_) = 0;
  internal::CondVar hold_cv_{&queue_mu_};

  // State only the leader touches (held for a whole batch; uncontended).
  internal::Mutex leader_mu_;
  ConflictSet history_ ABSL_GUARDED_BY(leader_mu_);
  std::deque<Timestamp> window_ ABSL_GUARDED_BY(leader_mu_);  // commit timestamps in history_
  Timestamp last_ts_ ABSL_GUARDED_BY(leader_mu_);
  // The tenant's newest commit this committer knows storage holds, which its conflict checks
  // cover: what a batch states as CommitRecord::previous_ts. Below last_ts_ once a batch was
  // not written (refused, absent): its timestamps advanced last_ts_ but are no commits, and
  // stating them would let another writer's commits below them pass the storage's check.
  Timestamp durable_ts_ ABSL_GUARDED_BY(leader_mu_);
  std::optional<Unresolved> unresolved_ ABSL_GUARDED_BY(leader_mu_);
  // durable_ts_, readable without leader_mu_: storage held a commit at it when it was set, so
  // storage's newest commit is below it later only if the tenant was deleted.
  std::atomic<Timestamp> known_durable_{0};
  // Committer::DeletedElsewhere(): set once, by the leader or CatchUp.
  std::atomic<bool> deleted_elsewhere_{false};
  // history_.size() and window_.size(), readable without leader_mu_.
  std::atomic<uint64_t> history_keys_{0};
  std::atomic<uint64_t> history_commits_{0};

  // Pinned timestamps (HistoryPin); SlideWindow never prunes past the least.
  // Lock order: leader_mu_, then pins_mu_.
  mutable internal::Mutex pins_mu_;
  std::multiset<Timestamp> pins_ ABSL_GUARDED_BY(pins_mu_);

  mutable internal::Mutex latest_mu_;
  std::shared_ptr<const Snapshot> latest_ ABSL_GUARDED_BY(latest_mu_);
  CommitterStats stats_ ABSL_GUARDED_BY(latest_mu_);
};

absl::StatusOr<std::unique_ptr<Committer>> Committer::Open(std::shared_ptr<Storage> storage,
                                                           std::string tenant,
                                                           CommitterOptions options) {
  if (tenant.empty()) return absl::InvalidArgumentError("committer: tenant name is empty");
  if (!options.clock) options.clock = WallClockNanos;
  if (options.max_batch_commits == 0) options.max_batch_commits = 1;
  if (options.max_batch_bytes == 0) options.max_batch_bytes = 1;
  // A longer wait would overflow the condition variable's clock arithmetic.
  options.max_batch_delay = std::min(options.max_batch_delay, absl::Hours(1));
  TXFN_ASSIGN_OR_RETURN(Timestamp ts, storage->MaxCommittedTimestamp(tenant));
  TXFN_ASSIGN_OR_RETURN(std::shared_ptr<const Snapshot> latest,
                        Snapshot::Load(storage, tenant, ts));
  return std::unique_ptr<Committer>(new Committer(std::make_unique<Core>(
      std::move(storage), std::move(tenant), std::move(options), std::move(latest))));
}

Committer::Core::Core(std::shared_ptr<Storage> storage, std::string tenant,
                      CommitterOptions options, std::shared_ptr<const Snapshot> latest)
    : storage_(std::move(storage)), tenant_(std::move(tenant)), options_(std::move(options)) {
  internal::MutexLock leader(&leader_mu_);
  last_ts_ = latest->ts();
  SetDurable(last_ts_);
  // Nothing before the snapshot we start from can be validated.
  history_.PruneThrough(last_ts_);
  internal::MutexLock lock(&latest_mu_);
  latest_ = std::move(latest);
  stats_.metadata_loads = 1;  // Snapshot::Load in Open
}

Committer::Committer(std::unique_ptr<Core> core) : core_(std::move(core)) { core_->owner_ = this; }
Committer::~Committer() = default;

const std::string& Committer::tenant() const { return core_->tenant_; }
std::shared_ptr<const Snapshot> Committer::Latest() const {
  (void)core_->CatchUp();  // consistent, perhaps stale, if it fails (see the header)
  return core_->Latest();
}
absl::StatusOr<std::shared_ptr<const Snapshot>> Committer::Newest() const {
  TXFN_RETURN_IF_ERROR(core_->CatchUp());
  return core_->Latest();
}
Timestamp Committer::Now() const { return core_->options_.clock(); }
absl::StatusOr<Timestamp> Committer::Commit(PreparedCommit commit, CommitIntent intent,
                                            BatchHold hold) {
  return core_->Commit(std::move(commit), std::move(intent), hold);
}
CommitIntent Committer::AnnounceCommit() { return core_->AnnounceCommit(); }
CommitterStats Committer::stats() const { return core_->stats(); }
bool Committer::DeletedElsewhere() const {
  return core_->deleted_elsewhere_.load(std::memory_order_acquire);
}
HistoryPin Committer::PinHistory(Timestamp ts) { return core_->PinHistory(ts); }
bool Committer::PruneHistory(Timestamp now) { return core_->PruneHistory(now); }

std::shared_ptr<const Snapshot> Committer::Core::Latest() const {
  internal::MutexLock lock(&latest_mu_);
  return latest_;
}

CommitterStats Committer::Core::stats() const {
  CommitterStats s;
  {
    internal::MutexLock lock(&latest_mu_);
    s = stats_;
  }
  s.history_keys = history_keys_.load(std::memory_order_relaxed);
  s.history_commits = history_commits_.load(std::memory_order_relaxed);
  return s;
}

void Committer::Core::Publish(std::shared_ptr<const Snapshot> snapshot) {
  internal::MutexLock lock(&latest_mu_);
  latest_ = std::move(snapshot);
}

void CommitIntent::Release() {
  if (committer_ != nullptr) std::exchange(committer_, nullptr)->core_->WithdrawIntent();
}

CommitIntent Committer::Core::AnnounceCommit() {
  internal::MutexLock lock(&queue_mu_);
  ++announced_;
  return CommitIntent(owner_);
}

void Committer::Core::WithdrawIntent() {
  internal::MutexLock lock(&queue_mu_);
  --announced_;
  if (holding_ && announced_ == 0) hold_cv_.Signal();
}

absl::StatusOr<Timestamp> Committer::Core::Commit(PreparedCommit commit, CommitIntent intent,
                                                  BatchHold hold) {
  Pending pending{.commit = std::move(commit)};
  for (const IndexWrite& w : pending.commit.writes) {
    pending.bytes += w.key.size() + (w.value ? w.value->size() : 0);
  }
  // An intent of another committer is not this queue's business: withdraw it
  // now rather than after this commit.
  if (intent.committer_ != owner_) intent.Release();
  pending.never_hold = hold == BatchHold::kNever;
  queue_mu_.Lock();
  queue_.push_back(&pending);
  queued_bytes_ += pending.bytes;
  if (pending.never_hold) ++never_hold_queued_;
  // Withdrawn with the same lock as the enqueue, so a holding leader never
  // sees the intent gone before the commit is in the queue.
  if (intent.committer_ == owner_) {
    intent.committer_ = nullptr;
    --announced_;
  }
  if (holding_ && (announced_ == 0 || BatchShouldClose())) hold_cv_.Signal();
  while (true) {
    queue_cv_.Wait(
        [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(queue_mu_) { return pending.done || !leader_active_; });
    if (pending.done) break;
    // Become the leader for the commits queued so far (ours among them,
    // unless more than a batch is ahead of us).
    leader_active_ = true;
    const bool held = hold == BatchHold::kAllowed && HoldBatchOpen();
    std::vector<Pending*> batch = TakeBatch();
    queue_mu_.Unlock();
    {
      internal::MutexLock leader(&leader_mu_);
      ProcessBatch(batch, held);
    }
    queue_mu_.Lock();
    for (Pending* p : batch) p->done = true;
    leader_active_ = false;
    queue_cv_.SignalAll();
  }
  queue_mu_.Unlock();
  return std::move(pending.result);
}

bool Committer::Core::BatchShouldClose() const {
  return queue_.size() >= options_.max_batch_commits || queued_bytes_ >= options_.max_batch_bytes ||
         never_hold_queued_ > 0;
}

bool Committer::Core::HoldBatchOpen() {
  if (options_.max_batch_delay <= absl::ZeroDuration() || announced_ == 0 || BatchShouldClose()) {
    return false;
  }
  holding_ = true;
  hold_cv_.WaitWithTimeout(options_.max_batch_delay,
                           [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(queue_mu_) {
                             return announced_ == 0 || BatchShouldClose();
                           });
  holding_ = false;
  return true;
}

std::vector<Committer::Core::Pending*> Committer::Core::TakeBatch() {
  std::vector<Pending*> batch;
  size_t bytes = 0;
  while (!queue_.empty() && batch.size() < options_.max_batch_commits) {
    Pending* next = queue_.front();
    if (!batch.empty() && bytes + next->bytes > options_.max_batch_bytes) break;
    bytes += next->bytes;
    if (next->never_hold) --never_hold_queued_;
    batch.push_back(next);
    queue_.pop_front();
  }
  queued_bytes_ -= bytes;
  return batch;
}

absl::Status Committer::Core::Check(const PreparedCommit& commit) const {
  if (commit.tenant != tenant_) {
    return absl::InvalidArgumentError(internal::StrCat(
        "commit for tenant '", commit.tenant, "' sent to the committer of '", tenant_, "'"));
  }
  for (size_t i = 1; i < commit.writes.size(); ++i) {
    const IndexWrite& a = commit.writes[i - 1];
    const IndexWrite& b = commit.writes[i];
    if (std::tie(a.index, a.key) >= std::tie(b.index, b.key)) {
      return absl::InvalidArgumentError(
          "commit writes are not sorted by (index, key) or write a key twice");
    }
  }
  return absl::OkStatus();
}

void Committer::Core::AddToHistory(const std::vector<CommitRecord>& records) {
  for (const CommitRecord& record : records) {
    for (const IndexWrite& w : record.writes) history_.Add(w.index, w.key, record.ts);
    window_.push_back(record.ts);
  }
  UpdateHistoryGauges();
}

Committer::Core::Resolution Committer::Core::Resolve(CommitterStats* delta) {
  absl::StatusOr<Timestamp> max = storage_->MaxCommittedTimestamp(tenant_);
  if (!max.ok()) return Resolution::kUnknown;
  const Unresolved& u = *unresolved_;
  if (*max >= u.first_ts && *max < u.last_ts) {
    // Storage holds part of an atomic batch: it broke its contract, and no
    // answer is safe. Keep refusing writes.
    return Resolution::kUnknown;
  }
  bool committed = *max >= u.last_ts;
  if (committed) {
    // Storage has commits up to the batch's: its own, unless another writer took the
    // tenant and its timestamps meanwhile (a network store whose lease passed on while the
    // answer was lost). The log says whose commit is at last_ts. Below the retention
    // horizon it can no longer say: the timestamps decide while no other writer can have
    // written (an old batch of a tenant this storage alone writes); otherwise it stays
    // unknown (the storage's own resolution may know; this committer's writes are fenced).
    absl::StatusOr<std::vector<CommitRecord>> log = storage_->ReadLog(tenant_, u.last_ts - 1, 1);
    if (log.ok()) {
      committed =
          !log->empty() && log->front().ts == u.last_ts && log->front().writes == u.last_writes;
    } else if (!absl::IsFailedPrecondition(log.status()) ||
               storage_->MayHaveOtherWriters(tenant_)) {
      return Resolution::kUnknown;
    }
  }
  Resolution resolution = Resolution::kAbsent;
  std::shared_ptr<const TenantMetadata> metadata = u.metadata;
  if (committed) {
    resolution = Resolution::kCommitted;
    SetDurable(std::max(durable_ts_, u.last_ts));
    ++delta->unknown_committed;
  } else {
    // Absent: its timestamps stay unused. A snapshot at its last timestamp
    // reads what the previous one read, and lets transactions begin after
    // its writes, which stay in the conflict history: otherwise every retry
    // would begin before them and conflict until some other commit landed.
    metadata = Latest()->shared_metadata();
  }
  Publish(std::make_shared<const Snapshot>(storage_, tenant_, u.last_ts, std::move(metadata)));
  unresolved_.reset();
  return resolution;
}

absl::Status Committer::Core::CatchUp() {
  if (!storage_->MayHaveOtherWriters(tenant_)) return absl::OkStatus();
  // Read outside the leader lock: concurrent readers must not queue behind
  // one another's round trips. `known` is read first: storage held that commit already.
  const Timestamp known = known_durable_.load(std::memory_order_acquire);
  absl::StatusOr<Timestamp> newest = storage_->MaxCommittedTimestamp(tenant_);
  if (!newest.ok()) {
    return absl::UnavailableError(internal::StrCat(
        "cannot tell tenant '", tenant_, "''s newest commit (", newest.status().message(),
        "): another writer may have committed since this snapshot"));
  }
  if (*newest < known) {
    // Another writer deleted the tenant (and may have created it again since).
    deleted_elsewhere_.store(true, std::memory_order_release);
    return absl::OkStatus();
  }
  if (*newest <= Latest()->ts()) return absl::OkStatus();
  CommitterStats delta;
  absl::Status status;
  {
    internal::MutexLock leader(&leader_mu_);
    // An unresolved batch is settled first: until then storage's newest commit may be that
    // batch's own. Settled here, not only by the next ProcessBatch: a committer that only
    // served reads kept its snapshot from before the batch, whatever others committed (a
    // PostgreSQL hunt: 10 s of stale queries, until a mutation was tried).
    if (unresolved_.has_value() && Resolve(&delta) == Resolution::kUnknown) {
      status = absl::UnavailableError(internal::StrCat(
          "tenant '", tenant_, "': the outcome of a commit of this process (", unresolved_->error,
          ") is not settled yet, so its newest state is unknown"));
    } else {
      Reload(*newest, &delta);
      if (Latest()->ts() < *newest) {
        status = absl::UnavailableError(
            internal::StrCat("cannot load tenant '", tenant_, "''s newest commit at ts ", *newest));
      }
    }
  }
  internal::MutexLock lock(&latest_mu_);
  stats_ += delta;
  return status;
}

absl::Status Committer::Core::DeletedElsewhereError(std::string_view why) const {
  return TenantDeletedElsewhereError(internal::StrCat(
      "commit not persisted: tenant '", tenant_,
      "' was deleted by another writer (another process, or another engine on this storage) "
      "while this one had it open (",
      why, "); nothing of it was written"));
}

absl::Status Committer::Core::StaleCommitError(const absl::Status& stale) const {
  return absl::FailedPreconditionError(
      internal::StrCat("commit not persisted: tenant '", tenant_,
                       "' was written by another process since this transaction's snapshot (",
                       stale.message(), "); restart it from a new snapshot"));
}

bool Committer::Core::Rebase(std::vector<CommitRecord>& records, std::vector<Pending*>& accepted,
                             const absl::Status& stale,
                             const std::shared_ptr<const TenantMetadata>& metadata) {
  // Only while nothing of this committer is above durable_ts_: a snapshot published there
  // (after a batch found absent) let transactions read before the other writer's commits
  // below it existed, and its history would be out of timestamp order. A deploy in the batch
  // is not rebased either: the metadata this batch would publish may be a dropped one's.
  if (Latest()->ts() > durable_ts_ || history_.horizon() > durable_ts_ ||
      (!window_.empty() && window_.back() > durable_ts_)) {
    return false;
  }
  if (absl::c_any_of(records, [](const CommitRecord& r) { return WritesMetadata(r.writes); })) {
    return false;
  }
  // The commit at durable_ts_ must still be there: a tenant deleted and created again since
  // (by a writer whose clock is behind) has other commits above it, not this one's state.
  if (durable_ts_ > 0) {
    absl::StatusOr<std::vector<CommitRecord>> mine = storage_->ReadLog(tenant_, durable_ts_ - 1, 1);
    if (!mine.ok() || mine->empty() || mine->front().ts != durable_ts_) return false;
  }
  // Every commit storage holds after durable_ts_ is another writer's: this committer's own
  // batches since were not written (an unknown outcome is resolved before any write).
  absl::StatusOr<std::vector<CommitRecord>> theirs =
      storage_->ReadLog(tenant_, durable_ts_, kMaxRebaseCommits + 1);
  if (!theirs.ok() || theirs->empty() || theirs->size() > kMaxRebaseCommits) return false;
  ConflictSet their_writes;
  for (const CommitRecord& c : *theirs) {
    // The snapshot published below keeps the metadata published before the batch.
    if (WritesMetadata(c.writes)) return false;
    for (const IndexWrite& w : c.writes) their_writes.Add(w.index, w.key, c.ts);
  }
  const Timestamp newest = theirs->back().ts;
  std::vector<CommitRecord> kept_records;
  std::vector<Pending*> kept;
  for (size_t i = 0; i < records.size(); ++i) {
    Pending* p = accepted[i];
    if (their_writes.Conflicts(p->commit.reads, p->commit.begin_ts)) {
      p->result = StaleCommitError(stale);
      continue;
    }
    kept_records.push_back(std::move(records[i]));
    kept.push_back(p);
  }
  // Serialised after their commits, in the batch's order (each was checked against the
  // commits before it in the batch when it was accepted).
  last_ts_ = std::max(last_ts_, newest);
  Timestamp previous = newest;
  for (CommitRecord& r : kept_records) {
    r.ts = std::max(options_.clock(), last_ts_ + 1);
    last_ts_ = r.ts;
    r.previous_ts = previous;
    previous = r.ts;
  }
  AddToHistory(*theirs);
  SetDurable(newest);
  if (newest > Latest()->ts()) {
    Publish(std::make_shared<const Snapshot>(storage_, tenant_, newest, metadata));
  }
  records = std::move(kept_records);
  accepted = std::move(kept);
  return true;
}

void Committer::Core::Reload(Timestamp newest, CommitterStats* delta) {
  if (newest <= durable_ts_) return;
  // Another writer's commits up to `newest`, which this committer's history lacks. The
  // published snapshot may be above them (after a batch of unknown outcome that was absent):
  // transactions that began there read before those commits existed, so every transaction
  // up to both is refused (too old: begin_ts below the horizon) and restarts from the
  // reloaded snapshot, which is one past the published one (a transaction that began exactly
  // there passed, and lost the other writer's update).
  const Timestamp published = Latest()->ts();
  const Timestamp at = published > newest ? published + 1 : newest;
  absl::StatusOr<std::shared_ptr<const Snapshot>> loaded = Snapshot::Load(storage_, tenant_, at);
  if (!loaded.ok()) return;
  last_ts_ = std::max(last_ts_, at);
  SetDurable(newest);
  history_.PruneThrough(at);
  window_.clear();
  UpdateHistoryGauges();
  Publish(*std::move(loaded));
  ++delta->reloads;
  ++delta->metadata_loads;
}

void Committer::Core::ProcessBatch(const std::vector<Pending*>& batch, bool held) {
  if (deleted_elsewhere_.load(std::memory_order_acquire)) {
    for (Pending* p : batch) p->result = DeletedElsewhereError("found earlier");
    return;
  }
  CommitterStats delta;
  // An earlier batch's outcome must be known before anything else is written:
  // its writes may be durable, and the next snapshot must say which.
  const bool refuse_writes = unresolved_.has_value() && Resolve(&delta) == Resolution::kUnknown;
  std::shared_ptr<const Snapshot> latest = Latest();
  std::shared_ptr<const TenantMetadata> metadata = latest->shared_metadata();
  std::vector<Pending*> accepted;
  std::vector<CommitRecord> records;
  ConflictSet batch_writes;
  SlideWindow(options_.clock());

  for (Pending* p : batch) {
    PreparedCommit& commit = p->commit;
    if (absl::Status s = Check(commit); !s.ok()) {
      p->result = s;
      continue;
    }
    if (commit.begin_ts > last_ts_) {
      p->result = absl::InvalidArgumentError(internal::StrCat(
          "begin timestamp ", commit.begin_ts, " is newer than the last commit ", last_ts_));
      continue;
    }
    if (commit.writes.empty()) {
      p->result = commit.begin_ts;
      ++delta.read_only;
      continue;
    }
    if (refuse_writes) {
      p->result = absl::UnavailableError(internal::StrCat(
          "commit refused (not committed): the outcome of an earlier commit of tenant '", tenant_,
          "' at ts ", unresolved_->last_ts, " is unknown (", unresolved_->error,
          ") and storage cannot tell yet; writes resume once it can (SqliteStorage: reopen the "
          "database)"));
      ++delta.refused_unresolved;
      continue;
    }
    if (commit.begin_ts < history_.horizon()) {
      p->result = absl::FailedPreconditionError(internal::StrCat(
          "transaction began at ", commit.begin_ts, ", before the conflict window (now from ",
          history_.horizon(), "); restart it from a new snapshot"));
      ++delta.too_old;
      continue;
    }
    // Conflicts with the history, or with a commit accepted earlier in this
    // batch (in `batch_writes` until the batch is durable).
    if (history_.Conflicts(commit.reads, commit.begin_ts) ||
        batch_writes.Conflicts(commit.reads, commit.begin_ts)) {
      // Which read it was (the slow path only): callers that serialise
      // contended work (the engine's contention lanes) key on it.
      const ReadRange* hit = nullptr;
      for (const ReadRange& read : commit.reads) {
        if (history_.Conflicts({&read, 1}, commit.begin_ts) ||
            batch_writes.Conflicts({&read, 1}, commit.begin_ts)) {
          hit = &read;
          break;
        }
      }
      const ReadRange& conflicting = hit != nullptr ? *hit : commit.reads.front();
      const ConflictTarget target = DescribeRead(*metadata, conflicting);
      std::string what = target.table.empty() ? "the tenant's metadata"
                                              : internal::StrCat("table '", target.table, "'");
      if (target.document_id.has_value()) {
        what = internal::StrCat(what, ", document '", *target.document_id, "'");
      } else if (!target.table.empty()) {
        what = internal::StrCat(what, ", index '", target.index, "'");
      }
      p->result = ConflictError(
          internal::StrCat("OCC conflict: a write committed after timestamp ", commit.begin_ts,
                           " changed what the transaction read (", what, "); retry it"),
          conflicting, &target);
      ++delta.conflicts;
      continue;
    }
    // Metadata writes must leave decodable metadata (the next snapshot needs it).
    if (WritesMetadata(commit.writes)) {
      std::map<std::string, std::string> entries;
      absl::StatusOr<std::vector<IndexEntry>> current = storage_->Scan(
          tenant_, kMetadataIndex, KeyRange::All(), latest->ts(), ScanOrder::kAscending, 0);
      if (!current.ok()) {
        p->result = absl::UnavailableError(current.status().message());
        continue;
      }
      for (IndexEntry& e : *current) entries[e.key] = std::move(e.value);
      auto apply = [&entries](const std::vector<IndexWrite>& writes) {
        for (const IndexWrite& w : writes) {
          if (w.index != kMetadataIndex) continue;
          if (w.value) {
            entries[w.key] = *w.value;
          } else {
            entries.erase(w.key);
          }
        }
      };
      for (const CommitRecord& r : records) apply(r.writes);  // accepted earlier in this batch
      apply(commit.writes);
      std::vector<IndexEntry> list;
      list.reserve(entries.size());
      for (auto& [key, value] : entries) list.push_back({.key = key, .value = value});
      absl::StatusOr<TenantMetadata> decoded = TenantMetadata::FromEntries(list);
      if (!decoded.ok()) {
        p->result = decoded.status();
        continue;
      }
      metadata = std::make_shared<const TenantMetadata>(*std::move(decoded));
      ++delta.metadata_loads;
    }
    Timestamp ts = std::max(options_.clock(), last_ts_ + 1);
    // The batch's first record states what storage holds as far as this committer knows; the
    // others follow the record before them (one batch, written atomically).
    const Timestamp previous = records.empty() ? durable_ts_ : records.back().ts;
    last_ts_ = ts;
    for (const IndexWrite& w : commit.writes) batch_writes.Add(w.index, w.key, ts);
    records.push_back(
        {.tenant = tenant_, .ts = ts, .writes = std::move(commit.writes), .previous_ts = previous});
    accepted.push_back(p);
  }

  if (!records.empty()) {
    ++delta.batches;
    if (held) ++delta.held_batches;
    absl::Status written = storage_->Write(records);
    // Another writer committed to the tenant: nothing was written. Written again on top of
    // its commits, without those they conflict with (a few rounds: it may go on writing).
    for (int round = 0; round < kRebaseRounds && IsStaleWriter(written); ++round) {
      ++delta.stale_batches;
      if (!Rebase(records, accepted, written, latest->shared_metadata())) break;
      if (records.empty()) {
        written = absl::OkStatus();
        break;
      }
      written = storage_->Write(records);
    }
    Resolution resolution = written.ok() ? Resolution::kCommitted : Resolution::kAbsent;
    if (!written.ok()) ++delta.storage_failures;
    if (records.empty()) {
      // Every commit of the batch conflicted with the other writer's (failed by Rebase).
    } else if (IsStaleWriter(written)) {
      // Not rebased: reload, and let the transactions restart from the new snapshot
      // (FailedPrecondition is retryable).
      if (std::optional<Timestamp> newest = StaleWriterNewest(written)) Reload(*newest, &delta);
      for (Pending* p : accepted) p->result = StaleCommitError(written);
      accepted.clear();
    } else if (IsTenantDeletedElsewhere(written)) {
      // Its history is gone: this committer's state is of the deleted tenant, and writing
      // it would bring the tenant back without what the deleted one had.
      deleted_elsewhere_.store(true, std::memory_order_release);
      for (Pending* p : accepted) p->result = DeletedElsewhereError(std::string(written.message()));
      accepted.clear();
    } else if (IsCommitOutcomeUnknown(written)) {
      // Possibly committed: its writes enter the history now (at worst a
      // needless conflict later), and storage decides whether it happened.
      AddToHistory(records);
      ++delta.unknown_outcomes;
      unresolved_ = Unresolved{.first_ts = records.front().ts,
                               .last_ts = records.back().ts,
                               .last_writes = records.back().writes,
                               .metadata = metadata,
                               .error = std::string(written.message())};
      resolution = Resolve(&delta);
    } else if (written.ok()) {
      // Only commits that may be durable enter the history: a failed batch
      // must not make later transactions conflict with writes that never
      // happened.
      AddToHistory(records);
      SetDurable(records.back().ts);
      Publish(std::make_shared<const Snapshot>(storage_, tenant_, records.back().ts, metadata));
    }
    for (size_t i = 0; i < accepted.size(); ++i) {
      switch (resolution) {
        case Resolution::kCommitted:
          accepted[i]->result = records[i].ts;
          ++delta.commits;
          break;
        case Resolution::kAbsent: {
          const std::string absent =
              internal::StrCat("commit not persisted: storage failed: ", written.message());
          // That another instance owns the tenant goes with it (a queue gives the call back).
          accepted[i]->result =
              IsTenantOwnedElsewhere(written)
                  ? TenantOwnedElsewhereError(absent, absl::StatusCode::kUnavailable)
                  : absl::UnavailableError(absent);
          break;
        }
        case Resolution::kUnknown:
          accepted[i]->result = CommitOutcomeUnknownError(
              internal::StrCat("commit outcome unknown: the storage write at ts ", records[i].ts,
                               " failed after it may have become durable (", written.message(),
                               "); it is resolved before tenant '", tenant_,
                               "' accepts another write; do not retry it blindly"),
              records[i].ts);
          break;
      }
    }
  }
  internal::MutexLock lock(&latest_mu_);
  stats_ += delta;
}

namespace {
constexpr std::string_view kConflictPayload = "type.txfn.dev/txfn.Conflict";
}  // namespace

// The payload is the read as [index, start, end or null], then, when the
// committer described it, [table, index name, document id or null], in the
// binary Value encoding (its decoder refuses anything malformed).
absl::Status ConflictError(std::string_view message, const ReadRange& read,
                           const ConflictTarget* target) {
  absl::Status status = absl::AbortedError(internal::ToAbsl(message));
  Value::Array encoded = {
      Value::Int64(read.index), Value::Bytes(read.range.start),
      read.range.end.has_value() ? Value::Bytes(*read.range.end) : Value::Null()};
  if (target != nullptr) {
    encoded.push_back(Value::String(target->table));
    encoded.push_back(Value::String(target->index));
    encoded.push_back(target->document_id.has_value() ? Value::String(*target->document_id)
                                                      : Value::Null());
  }
  status.SetPayload(internal::ToAbsl(kConflictPayload),
                    absl::Cord(EncodeBinary(Value::FromArray(std::move(encoded)))));
  return status;
}

namespace {

// The conflict payload's elements; nullopt if absent or malformed.
std::optional<Value::Array> ConflictPayload(const absl::Status& status) {
  if (!absl::IsAborted(status)) return std::nullopt;
  absl::optional<absl::Cord> payload = status.GetPayload(internal::ToAbsl(kConflictPayload));
  if (!payload.has_value()) return std::nullopt;
  absl::StatusOr<Value> decoded = DecodeBinary(std::string(*payload));
  if (!decoded.ok() || !decoded->is_array()) return std::nullopt;
  const size_t size = decoded->array().size();
  if (size != 3 && size != 6) return std::nullopt;
  return decoded->array();
}

}  // namespace

std::optional<ReadRange> ConflictingRead(const absl::Status& status) {
  std::optional<Value::Array> fields = ConflictPayload(status);
  if (!fields.has_value()) return std::nullopt;
  const Value& index = (*fields)[0];
  const Value& start = (*fields)[1];
  const Value& end = (*fields)[2];
  if (!index.is_int64() || index.int64() < 0 || index.int64() > UINT32_MAX || !start.is_bytes() ||
      !(end.is_bytes() || end.is_null())) {
    return std::nullopt;
  }
  ReadRange read{.index = static_cast<IndexId>(index.int64()), .range = {.start = start.bytes()}};
  if (end.is_bytes()) read.range.end = end.bytes();
  return read;
}

std::optional<ConflictTarget> ConflictingTarget(const absl::Status& status) {
  std::optional<Value::Array> fields = ConflictPayload(status);
  if (!fields.has_value() || fields->size() != 6) return std::nullopt;
  const Value& table = (*fields)[3];
  const Value& index = (*fields)[4];
  const Value& document = (*fields)[5];
  if (!table.is_string() || !index.is_string() || !(document.is_string() || document.is_null())) {
    return std::nullopt;
  }
  ConflictTarget target{.table = table.string(), .index = index.string()};
  if (document.is_string()) target.document_id = document.string();
  return target;
}

ConflictTarget DescribeRead(const TenantMetadata& metadata, const ReadRange& read) {
  if (read.index == kMetadataIndex) return ConflictTarget{.index = "metadata"};
  for (const auto& [name, table] : metadata.tables()) {
    if (table.by_id == read.index) {
      ConflictTarget target{.table = name, .index = std::string(kByIdIndexName)};
      if (read.range == KeyRange::Point(read.range.start)) target.document_id = read.range.start;
      return target;
    }
    for (const IndexInfo& index : table.indexes) {
      if (index.id == read.index) return ConflictTarget{.table = name, .index = index.name};
    }
  }
  // An index dropped since: only its id is left.
  return ConflictTarget{.index = internal::StrCat("index ", read.index)};
}

HistoryPin Committer::Core::PinHistory(Timestamp ts) {
  internal::MutexLock lock(&pins_mu_);
  pins_.insert(ts);
  return HistoryPin(owner_, ts);
}

void HistoryPin::Release() {
  if (committer_ == nullptr) return;
  internal::MutexLock lock(&committer_->core_->pins_mu_);
  committer_->core_->pins_.erase(committer_->core_->pins_.find(ts_));
  committer_ = nullptr;
}

bool Committer::Core::PruneHistory(Timestamp now) {
  if (!leader_mu_.TryLock()) return false;
  SlideWindow(now);
  leader_mu_.Unlock();
  return true;
}

void Committer::Core::UpdateHistoryGauges() {
  history_keys_.store(history_.size(), std::memory_order_relaxed);
  history_commits_.store(window_.size(), std::memory_order_relaxed);
}

void Committer::Core::SlideWindow(Timestamp now) {
  Timestamp window = static_cast<Timestamp>(absl::ToInt64Nanoseconds(options_.conflict_window));
  Timestamp pinned = std::numeric_limits<Timestamp>::max();
  {
    internal::MutexLock lock(&pins_mu_);
    if (!pins_.empty()) pinned = *pins_.begin();
  }
  while (!window_.empty() && window_.front() <= pinned &&
         (window_.size() > options_.max_window_commits || window_.front() + window < now)) {
    history_.PruneThrough(window_.front());
    window_.pop_front();
  }
  UpdateHistoryGauges();
}

}  // namespace txfn

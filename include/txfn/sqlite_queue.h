// txfn/sqlite_queue.h — the embedded, durable DurableQueue adapter.
//
// SqliteQueue keeps calls, leases, dead letters and spilled arguments in its
// own tables of an SQLite database file (WAL journal, synchronous=FULL by
// default). It passes the DurableQueue conformance suite including its reopen
// tests, and survives kill -9: once Enqueue or Settle returns OK the change is
// on disk (with kFull, also across a power failure); a batch is never
// partly applied. Leases are stored too, so a restarted process finds the
// calls it had leased still leased until they expire, then due again.
//
//   auto queue = txfn::SqliteQueue::Open("/var/lib/app/queue.db", {.shards = 4});
//   if (!queue.ok()) return queue.status();
//   (void)(*queue)->Enqueue(calls);                     // one transaction, one fsync
//   txfn::BlobStore& blobs = (*queue)->blob_store();    // same file
//
// Link txfn::queue_sqlite (built when TXFN_WITH_SQLITE is ON).
//
// Tables (created if missing; every name starts with txfn_queue_ so the file
// may also hold other tables — a SqliteStorage that created the file first,
// for example):
//   txfn_queue_meta(name, value)      schema version, shard count, next token
//   txfn_queue_calls(seq INTEGER PRIMARY KEY, id BLOB UNIQUE, shard, function,
//                    state, due, attempts, max_attempts, deadline, token,
//                    reason, dead_at, call BLOB, quota)
//       state 0 pending, 1 leased, 2 dead. `due` is when the row can be
//       leased: the start or retry time of a pending call, the lease expiry
//       of a leased one (an expired lease is just due again), never
//       (INT64_MAX) for a dead letter. `call` is EncodeCall of the call; seq
//       is the enqueue order; `quota` the call's QuotaClass (0 reserved);
//       `args_blob_bytes` the size of its spilled arguments if they are in
//       txfn_queue_blobs when it is enqueued (else 0), for TenantDepths.
//   indexes: (shard, quota, due) (and seq, the rowid) for leasing: a Lease of one quota
//            class walks that class's due calls in order, an unfiltered one
//            merges the two classes' walks; a function filter skips the other
//            functions' calls on the way. (id) WHERE state = 2 for the
//            dead-letter listing.
//   Schema version 2 added `quota`; version 3 replaced version 2's two lease
//   indexes with the one above; version 4 added `tenant`, version 5
//   `args_blob_bytes`. An older file is upgraded on Open.
//   txfn_queue_blobs(key PRIMARY KEY, value)   the BlobStore
// Times are int64 nanoseconds since the Unix epoch.
//
// Costs: every mutating call is one BEGIN IMMEDIATE..COMMIT transaction (one
// WAL fsync under kFull, whatever the batch size: batch your enqueues and
// settlements). Per call: Enqueue inserts a row and two index entries (up to
// 64 rows per statement); Lease reads the due rows in index order and updates
// them all with one statement (moving their index entries); ACKs are deleted
// together, by a walk of their rows when this queue leased them from
// consecutive rows, else up to 64 per statement by id; other settlements take
// a lookup and an update each. A lease that skips tenants (LeaseRequest::
// skip_tenants, or tenants at max_per_tenant) starts where the last lease
// with the same filter and (a subset of) those skips ended, so a skipped
// tenant's backlog is walked once, not at every poll; the connection forgets
// those places when a write makes a call due before them, and when another
// connection has written the file (PRAGMA data_version). Depths and
// TenantDepths scan the table on a second connection of their own (WAL: they
// read the last commit and hold up no lease, ack or enqueue meanwhile; two
// counts take turns). The queue remembers the row of each call it
// leased until it is settled (at most 2^18 calls, under 16 MiB).
//
// A failed COMMIT (an fsync error after the WAL frames were written, say) is
// an unknown outcome, as in SqliteStorage: the operation returns Unavailable
// marked IsCommitOutcomeUnknown (<txfn/storage.h>), since recovery on the next
// open may replay it, and from then on every method of this queue (reads, its
// blob store, Backup) returns Unavailable until the file is reopened. An
// Enqueue retried with the same calls after the reopen is exact (ids).
//
// Thread safety: every method may be called concurrently; they are
// serialised on one connection. Another process may open the same file
// (each operation is its own transaction; writers wait up to busy_timeout,
// then Unavailable), and tokens stay unique across processes.
#ifndef TXFN_SQLITE_QUEUE_H_
#define TXFN_SQLITE_QUEUE_H_

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/functional/function_ref.h"
#include "absl/time/time.h"
#include "txfn/blob_store.h"
#include "txfn/durable_queue.h"
#include "txfn/internal/mutex.h"

namespace txfn {

struct SqliteQueueOptions {
  // PRAGMA synchronous: kFull (durable against power loss when a call
  // returns), kNormal (durable against a process crash), kOff (tests and
  // benchmarks only).
  enum class Synchronous { kOff, kNormal, kFull };
  Synchronous synchronous = Synchronous::kFull;
  // Shards of a new file (1 .. kMaxShards). An existing file keeps the count it was
  // created with; 0 means "whatever the file has" (1 for a new file). A
  // different non-zero count than the file's is FailedPrecondition (a call's
  // shard must never change).
  int shards = 0;
  // How long to wait for another connection's write lock before Unavailable.
  absl::Duration busy_timeout = absl::Seconds(5);
  // PRAGMA secure_delete: overwrite the content of acknowledged calls in the
  // file with zeros when they are deleted. Off (SQLite's upstream default;
  // Debian builds SQLite with it on) saves ~4% of the CPU per job: the bytes
  // of a finished call's arguments then stay in free pages of the file until
  // SQLite reuses them. Turn it on when call arguments are sensitive and the
  // file could be read by someone who must not see past calls.
  bool secure_delete = false;
  // The name of a registered sqlite3_vfs to open the file with (empty: SQLite's default).
  // For tests that inject I/O faults.
  std::string vfs;
};

class SqliteQueue final : public DurableQueue {
 public:
  static constexpr int kSchemaVersion = 5;

  // Opens (creating if missing) the queue in the database file at `path`.
  // Errors: InvalidArgument — an empty path, ":memory:", shards < 0 or > kMaxShards;
  // Unavailable — the file cannot be opened (the message names it);
  // FailedPrecondition — a newer schema version, or another shard count;
  // DataLoss — not an SQLite database, or corrupt.
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<SqliteQueue>> Open(
      std::string path, SqliteQueueOptions options = {});

  ~SqliteQueue() override;
  SqliteQueue(const SqliteQueue&) = delete;
  SqliteQueue& operator=(const SqliteQueue&) = delete;

  const std::string& path() const { return path_; }

  int shard_count() const override { return shards_; }
  int ShardOf(const CallId& id) const override { return DefaultShardOf(id, shards_); }

  absl::StatusOr<size_t> Enqueue(absl::Span<const Call> calls) override;
  absl::StatusOr<std::vector<LeasedCall>> Lease(const LeaseRequest& request) override;
  absl::StatusOr<std::vector<absl::Status>> Settle(absl::Span<const Settlement> settlements,
                                                   absl::Time now) override;
  absl::StatusOr<std::vector<absl::Status>> Extend(absl::Span<const LeaseToken> leases,
                                                   absl::Time now,
                                                   absl::Duration lease_duration) override;
  absl::StatusOr<std::vector<DeadLetter>> ListDeadLetters(CallId after, size_t limit) override;
  absl::StatusOr<std::vector<absl::Status>> Redrive(absl::Span<const CallId> ids,
                                                    absl::Time now) override;
  absl::StatusOr<std::vector<FunctionDepth>> Depths(absl::Time now) override;
  absl::StatusOr<std::vector<TenantDepth>> TenantDepths(absl::Time now) override;
  absl::StatusOr<std::vector<absl::Status>> RemovePending(absl::Span<const CallId> ids,
                                                          absl::Time now) override;
  absl::StatusOr<std::vector<absl::Status>> RemoveDeadLetters(absl::Span<const CallId> ids,
                                                              absl::Time dead_before) override;
  absl::StatusOr<std::optional<QueuedCall>> Find(const CallId& id, absl::Time now) override;
  absl::StatusOr<std::vector<QueuedCall>> ListCalls(CallId after, size_t limit,
                                                    const ListFilter& filter,
                                                    absl::Time now) override;

  // Copies the queue, consistently (one read transaction on a connection of
  // its own, so the queue's operations go on meanwhile), into a new file at
  // `dest_path` with SQLite's online backup API; SqliteQueue::Open opens it.
  // Written as dest_path + ".partial" and renamed into place when complete.
  // Errors: InvalidArgument (empty path), AlreadyExists (dest_path exists:
  // never overwritten), Unavailable (I/O; nothing is left at dest_path).
  // Thread-safe. Blocks until done; cost: a read of every page.
  [[nodiscard]] absl::Status Backup(const std::string& dest_path);

  // A BlobStore on this queue's database file (table txfn_queue_blobs). Lives
  // as long as the queue.
  BlobStore& blob_store();

 private:
  class Db;  // the connection and its prepared statements
  class Blobs;

  SqliteQueue(std::string path, int shards, std::unique_ptr<Db> db, std::unique_ptr<Db> reader);
  // The upgrade from schema version 1: adds and fills the quota column.
  static absl::Status AddQuotaColumn(Db& db);
  // The upgrade from schema versions 1-3: adds and fills the tenant column.
  static absl::Status AddTenantColumn(Db& db);
  // The upgrade from schema versions 1-4: adds and fills the args_blob_bytes column.
  static absl::Status AddArgsBlobBytesColumn(Db& db);
  // Calls `fn(seq, call)` for every stored call.
  static absl::Status ForEachStoredCall(Db& db,
                                        absl::FunctionRef<absl::Status(int64_t, const Call&)> fn);

  // RemovePending and RemoveDeadLetters: deletes each of `ids` with `remove` (?1 the id, ?2
  // `bound`), in one transaction; an id it did not delete answers NotFound if the queue does
  // not hold it, else FailedPrecondition(refusal(id, kDead for a dead letter, else kLeased)).
  absl::StatusOr<std::vector<absl::Status>> RemoveEach(
      absl::Span<const CallId> ids, const char* remove, absl::Time bound,
      absl::FunctionRef<std::string(const CallId&, QueuedCall::State)> refusal);
  // Runs `body` inside BEGIN IMMEDIATE..COMMIT on the connection; rolls back
  // on any error.
  template <typename Body>
  absl::Status InWriteTransaction(Body&& body) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Unavailable once a COMMIT failed (doubt_ is set), else OK.
  absl::Status RefuseIfInDoubt() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The same, for work off the writer's connection (Backup, the counts): takes mu_ to look.
  absl::Status RefuseIfInDoubtNow() ABSL_LOCKS_EXCLUDED(mu_);

  const std::string path_;
  const int shards_;
  internal::Mutex mu_;
  std::unique_ptr<Db> db_ ABSL_GUARDED_BY(mu_);
  // Why a COMMIT failed; empty while none has.
  std::string doubt_ ABSL_GUARDED_BY(mu_);
  // A second connection for the counts that scan the whole table (Depths, TenantDepths): in
  // WAL mode it reads the last commit without holding mu_, so a count of a million calls
  // (~0.3 s) does not hold up every other tenant's leases and acks.
  internal::Mutex read_mu_;
  std::unique_ptr<Db> reader_ ABSL_GUARDED_BY(read_mu_);
  std::unique_ptr<Blobs> blobs_;
};

}  // namespace txfn

#endif  // TXFN_SQLITE_QUEUE_H_

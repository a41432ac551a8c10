// txfn/postgres_storage.h — the Storage adapter over a PostgreSQL server, for several
// processes sharing one database.
//
// PostgresStorage keeps every tenant's versioned index entries and commit log in a few
// tables of one PostgreSQL database (the schema it creates, below). It passes the Storage
// conformance suite (<txfn/testing/storage_conformance.h>) including its reopen tests:
// after Write returns OK the commits are committed in PostgreSQL (as durable as the
// server's fsync / synchronous_commit settings make them).
//
//   absl::StatusOr<std::unique_ptr<txfn::PostgresStorage>> storage =
//       txfn::PostgresStorage::Open({.url = "postgresql:///txfn?host=/run/postgresql"});
//   if (!storage.ok()) return storage.status();
//   // Take the tenant over before its committer loads its state (see "Ownership").
//   if (absl::Status s = (*storage)->AcquireTenant("shop"); !s.ok()) return s;
//   std::shared_ptr<txfn::Storage> shared = *std::move(storage);
//   auto committer = txfn::Committer::Open(shared, "shop");
//
// Link txfn::postgres (built when TXFN_WITH_POSTGRES is ON).
//
// Ownership: one committer per tenant, fenced. Every process may read every tenant, but
// only one PostgresStorage at a time — the tenant's owner — may write it. Ownership is a
// lease row in txfn_owners (owner name, fencing token, expiry by the *server's* clock, so
// the processes' clocks never need to agree). Every Write's transaction first updates the
// lease row of each of its tenants `WHERE owner = <this instance> AND token = <its token>`
// and writes nothing unless that hit the row: a former owner that was paused (GC, a
// stopped VM, a partition) past its lease, and woke up after another instance took the
// tenant over, cannot commit — its token is stale — and is told FailedPrecondition naming
// the new owner. Each Write also extends the lease by lease_duration. The row lock taken
// by that update serialises the commits of one tenant inside PostgreSQL, so even two
// owners racing at a takeover cannot both commit.
//   - A tenant nobody holds (no lease row, a released one, or an expired one) is taken
//     by the first Write to it (implicitly) or by AcquireTenant; the fencing token then
//     goes up by one.
//   - A tenant another instance holds with an unexpired lease: Write and AcquireTenant
//     fail with FailedPrecondition naming the owner and when its lease expires, marked
//     IsTenantOwnedElsewhere (storage.h).
//   - An instance that has lost a tenant (its token was superseded) takes it back as any
//     other: by its next Write once nobody holds it, or by the refused Write itself (once)
//     when the other instance has released it since (ReleaseTenant) and the batch states
//     previous_ts. Its committer's state is stale then (it missed the other owner's commits),
//     so that Write is refused by the stale-writer check below and the committer reloads;
//     until a Write under the new token succeeds, MayHaveOtherWriters stays true, so its
//     readers ask storage for the newest commit and do not serve the stale state.
//   - Destroying a PostgresStorage releases its leases, so a successor (a restart, the
//     conformance suite's reopen) takes the tenants over at once.
//   - No stale writer: every Write states, per tenant, the newest commit its committer had
//     seen (CommitRecord::previous_ts), and txfn_write refuses the batch when the tenant has
//     a newer one (StaleWriterError, nothing written). So an instance that takes a tenant
//     over — implicitly, once the former owner's lease expired or it released the tenant —
//     never commits a transaction validated against state that lacks the former owner's
//     last commits: its committer reloads and the transaction restarts (Committer).
//   - Readers follow the owner: MayHaveOtherWriters is true for a tenant this instance
//     does not hold a live lease of, so its committer's Latest() reads the tenant's newest
//     commit (one round trip) and serves snapshots at it.
// A host that moves a tenant between processes calls AcquireTenant *before* opening the
// tenant's committer, so that the committer loads everything the former owner committed.
//
// Schema (created if missing; PostgreSQL schema = the connection's search_path):
//   txfn_versions(tenant, index_id, key, ts, value)  PRIMARY KEY(tenant, index_id, key, ts);
//                                                    value NULL = a tombstone
//   txfn_log(tenant, ts, seq, index_id, key)         PRIMARY KEY(tenant, ts, seq): the keys
//                                                    each commit wrote, in Write order
//   txfn_commits(tenant, ts, writer)                 PRIMARY KEY(tenant, ts); writer = the
//                                                    fencing token it was written under
//   txfn_tenants(tenant, max_ts, horizon)            one row per tenant with commits
//   txfn_owners(tenant, owner, token, expires_at,    the leases (see "Ownership") and the
//               start_max)                           tenant's newest commit when taken
//   txfn_handovers(tenant, token, start_max, max_ts, the tenant's newest commit when
//                  taken_at)                         `token` took the lease and when it
//                                                    passed on (one row per change of
//                                                    owner, a week)
//   txfn_meta(name, value)                           schema_version = kSchemaVersion
// plus the functions txfn_write, txfn_take_lease, txfn_lock_tenant, txfn_apply_retention,
// txfn_delete_tenant and txfn_delete_tenant_if_newest (schema 5). Tenants, keys and
// values are bytea (ordered bytewise, like std::string); timestamps are bigint with the top
// bit flipped, so the full uint64 range keeps its order. A database whose schema version is
// newer than kSchemaVersion is refused.
//
// Costs: a Write is ONE round trip whatever the batch size (group commit pays off): one
// statement, SELECT txfn_write(arrays...), in its own transaction — it checks the leases
// and timestamps, then inserts all versions, log entries and commits with INSERT ...
// SELECT FROM unnest(arrays). A tenant's first Write by an instance adds one round trip
// (taking the lease). Get is one statement: one index descent (the newest version <= ts).
// Scan is one statement: a recursive skip scan of the primary key — per key, one descent
// to the next key and one to its newest version <= ts — so a key's history never costs
// more than a descent, in either direction, and it stops after `limit` live entries.
// ReadLog is one statement (the commits, their log entries and each write's version).
// Reads also read the retention horizon in the same statement (the same snapshot); a
// read that returns nothing reads it again (one more round trip; the horizon only rises).
// ApplyRetention is one statement (txfn_apply_retention) doing what SqliteStorage does.
// Every statement is prepared once per connection (no parsing, and soon no planning, after
// that); a new connection costs one more round trip (its server process's start time, see
// below).
//
// Commit outcomes. A Write whose statement was sent but whose answer never came (the
// connection broke, the server crashed or was restarted) may or may not have committed.
// The adapter then resolves it itself: on a new connection it terminates the old backend
// (pg_terminate_backend; named by pid and start time, as a restarted server may reuse the
// pid) and waits until it is gone — its transaction is then committed or rolled back for
// good — and looks for the batch's first commit row. Found: Write
// returns OK; absent: Unavailable ("not persisted"). Retention (by any instance) may have
// dropped that row: below the tenant's horizon the commits the writer's lease made tell
// instead — from the lease on, every commit is the writer's: those after the tenant's
// newest when it took the lease, up to its newest now (or when the lease passed on,
// recorded in txfn_handovers for a week; older, the outcome is DataLoss: it can never be
// told). This instance sends a tenant's Writes one at a time, none after one whose outcome
// it does not know; their timestamps must rise (as a committer's do). If it cannot tell
// within
// outcome_resolution_timeout (the server is down), Write returns an unknown outcome
// (CommitOutcomeUnknownError, carrying the batch's last timestamp), and the batch's
// tenants are "in doubt": Write, DeleteTenant(IfNewest), ApplyRetention, ReadLog and
// MaxCommittedTimestamp of those tenants, and ListTenants, first try the resolution again
// and fail with Unavailable while it still cannot tell; Get and Scan go on (their answers
// at published timestamps hold either way). The committer's own resolution (it calls
// MaxCommittedTimestamp) therefore settles the outcome as soon as the server is back.
//
// Thread safety: every method may be called concurrently. Calls borrow a connection from a
// pool of at most max_connections (a call beyond waits for one); a connection that broke is
// dropped and replaced, and so is every idle one (what broke it — a server restart — broke
// them too). Writes to different tenants run in parallel; PostgreSQL serialises
// those of one tenant (the lease row lock). A read is one statement, hence one snapshot: it
// sees none or all of a Write. Reads that meet a broken pooled connection are retried once
// on a new one; writes are never retried blindly.
#ifndef TXFN_POSTGRES_STORAGE_H_
#define TXFN_POSTGRES_STORAGE_H_

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "txfn/internal/mutex.h"
#include "txfn/storage.h"

namespace txfn {

struct PostgresStorageOptions {
  // A libpq connection string or postgresql:// URI. Required.
  // Unless it sets them, connections use connect_timeout=10 (s), TCP keepalives (a peer
  // silent for 30 s is probed 3 times, 10 s apart) and tcp_user_timeout=30000 (ms): a server
  // that stops answering fails the call in about a minute (Unavailable) instead of blocking
  // it forever. A query that waits on the server's own locks is not cut short.
  std::string url;
  // The most connections open at once; calls beyond wait for a free one.
  int max_connections = 8;
  // This instance's name in the lease rows (what a refused writer is told). Empty: a
  // unique "<hostname>:<pid>:<random>". Two live instances must never share a name: a
  // lease held under a name is taken over at once by an instance of the same name (a
  // restarted process that keeps its name resumes its tenants without waiting).
  std::string owner;
  // How long a lease lasts after the owner's last Write (or AcquireTenant); after that
  // another instance may take the tenant over. Timed by the server's clock.
  absl::Duration lease_duration = absl::Seconds(10);
  // How long a Write whose answer was lost spends resolving its outcome (see "Commit
  // outcomes") before it reports an unknown outcome; zero reports it at once (the next call
  // on the tenant resolves it).
  absl::Duration outcome_resolution_timeout = absl::Seconds(5);
  // Fault injection for tests: called on the writing thread after a Write's statement was
  // sent, before its answer is read, with the connection's socket and server process id.
  // A test may close the connection (the answer is lost after the server got the
  // statement: dup2(2) a dead socket over it, as shutdown(2) leaves an answer that already
  // arrived readable) or kill the backend. Empty in production.
  std::function<void(int socket, int backend_pid)> after_write_sent;
};

// One tenant's lease (see "Ownership").
struct TenantLease {
  std::string owner;          // empty: released
  int64_t token = 0;          // the fencing token; rises with every change of owner
  absl::Time expires_at;      // by the server's clock
  bool held_by_this = false;  // owner and token are this instance's
};

class PostgresStorage final : public Storage {
 public:
  // The schema version this build writes and reads (txfn_meta.schema_version).
  // 2: txfn_write checks CommitRecord::previous_ts; 3: txfn_commits.writer; 4:
  // txfn_handovers (a build of an older version must not take leases over unrecorded);
  // 5: txfn_delete_tenant_if_newest; 6: txfn_write refuses a writer whose previous_ts the
  // tenant's newest commit is older than (it was deleted since). Instances of an older build that
  // are running keep working, but once a newer build has opened the database an older one cannot
  // open it.
  static constexpr int kSchemaVersion = 6;

  // Connects to `options.url` and creates the schema if missing (under an advisory lock:
  // several processes may open the same database at once). Errors:
  //   InvalidArgument     — empty or malformed url, max_connections < 1, a lease_duration
  //                         under 1 ms;
  //   Unavailable         — the server cannot be reached;
  //   FailedPrecondition  — the database's schema version is newer than kSchemaVersion
  //                         (the message names both);
  //   Internal            — another error from the server (e.g. no permission to create
  //                         tables), with the server's message.
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<PostgresStorage>> Open(
      PostgresStorageOptions options);

  // Releases this instance's leases (best effort) and closes every connection. No call may
  // be running.
  ~PostgresStorage() override;
  PostgresStorage(const PostgresStorage&) = delete;
  PostgresStorage& operator=(const PostgresStorage&) = delete;

  // This instance's name in the lease rows.
  const std::string& owner() const { return options_.owner; }

  // See Storage. Write errors: InvalidArgument for a violated precondition (nothing
  // written; the message names tenant, timestamp and problem); FailedPrecondition when
  // another instance owns one of the batch's tenants (IsTenantOwnedElsewhere; the message
  // names the owner) or the writer is stale (IsStaleWriter);
  // Unavailable for a server or connection fault (nothing written), or with an unknown
  // outcome (see "Commit outcomes").
  [[nodiscard]] absl::Status Write(absl::Span<const CommitRecord> commits) override;
  [[nodiscard]] absl::StatusOr<std::optional<IndexEntry>> Get(std::string_view tenant,
                                                              IndexId index, std::string_view key,
                                                              Timestamp ts) override;
  [[nodiscard]] absl::StatusOr<std::vector<IndexEntry>> Scan(std::string_view tenant, IndexId index,
                                                             const KeyRange& range, Timestamp ts,
                                                             ScanOrder order,
                                                             size_t limit) override;
  [[nodiscard]] absl::StatusOr<std::vector<CommitRecord>> ReadLog(std::string_view tenant,
                                                                  Timestamp after,
                                                                  size_t limit) override;
  [[nodiscard]] absl::StatusOr<Timestamp> MaxCommittedTimestamp(std::string_view tenant) override;
  [[nodiscard]] absl::StatusOr<std::vector<std::string>> ListTenants() override;
  // False while this instance holds the tenant's lease and it cannot have expired yet (by
  // this process's clock, counted from before the request that last extended it); true
  // otherwise: another instance may own the tenant and commit to it.
  [[nodiscard]] bool MayHaveOtherWriters(std::string_view tenant) override;
  // Whether this instance holds the tenant's lease and it cannot have expired yet (the
  // opposite of MayHaveOtherWriters; also false right after a Write took the tenant, until a
  // later Write confirms the lease).
  [[nodiscard]] bool HoldsTenant(std::string_view tenant) override {
    return !MayHaveOtherWriters(tenant);
  }
  // An administrative removal: it does not check the lease (stop the tenant's committer
  // first); the lease row stays, so fencing tokens keep rising. It waits for a Write of the
  // tenant in progress (which it then removes too) and holds later ones off until it is
  // done: the tenant is left whole or gone, never commits without their tenant row.
  [[nodiscard]] absl::Status DeleteTenant(std::string_view tenant) override;
  // The same locks as DeleteTenant, then the tenant's newest commit is compared and the
  // tenant deleted only if it is `newest`, in one statement. A connection lost mid-call is
  // Unavailable and the tenant may or may not be gone.
  [[nodiscard]] absl::StatusOr<bool> DeleteTenantIfNewest(std::string_view tenant,
                                                          Timestamp newest) override;
  // Any instance may apply retention (it changes nothing a read at or above the horizon
  // sees); it is serialised with the tenant's commits by a row lock.
  [[nodiscard]] absl::StatusOr<RetentionResult> ApplyRetention(std::string_view tenant,
                                                               Timestamp ts,
                                                               size_t max_commits) override;

  // Takes `tenant` over: succeeds if nobody holds it, its lease expired, or this instance
  // (or one of the same name) holds it; the fencing token goes up and the lease runs for
  // lease_duration. FailedPrecondition (IsTenantOwnedElsewhere) naming the owner while another
  // instance's lease runs; Unavailable on a server fault, marked IsCommitOutcomeUnknown if the
  // connection broke with the takeover sent (the lease may be taken, under a token this instance
  // does not know: acquire again).
  [[nodiscard]] absl::Status AcquireTenant(std::string_view tenant);
  // Gives `tenant` up (the lease row is marked free) if this instance holds it; OK if not.
  [[nodiscard]] absl::Status ReleaseTenant(std::string_view tenant) override;
  // The tenant's lease as stored; NotFound if nobody ever held it.
  [[nodiscard]] absl::StatusOr<TenantLease> Lease(std::string_view tenant);

 private:
  struct Pooled;          // a connection and its server process's identity
  class ConnectionLease;  // a pooled connection (RAII)
  struct InDoubt;         // a Write whose answer was lost

  explicit PostgresStorage(PostgresStorageOptions options);

  absl::StatusOr<ConnectionLease> Borrow();
  void Return(std::unique_ptr<Pooled> conn);
  // Runs `read` on a pooled connection; once more on a new one if the first had broken.
  template <typename Read>
  auto WithReadConnection(Read&& read) -> decltype(read(std::declval<ConnectionLease&>()));

  // Lease times are kept on the monotonic clock: a step of the wall clock (NTP) must not
  // make this instance serve its own state after another took the tenant over.
  using SteadyClock = std::chrono::steady_clock;
  using SteadyTime = SteadyClock::time_point;
  SteadyClock::duration LeaseDuration() const;

  // The token this instance holds for `tenant`, taking the lease if nobody holds it.
  absl::StatusOr<int64_t> TokenFor(std::string_view tenant);
  // `implicit`: taken by a Write, for a committer loaded before (see TakeLease).
  absl::StatusOr<int64_t> TakeLease(std::string_view tenant, bool implicit)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(acquire_mu_);
  absl::Status NotOwnerError(std::string_view tenant, std::string_view detail);
  // One try of Write; `*lost` names the tenant whose lease passed to another instance (the
  // batch refused, nothing written), else is empty.
  absl::Status WriteAttempt(absl::Span<const CommitRecord> commits, std::string* lost);
  // After a statement sent at `sent` extended the lease of `tenant` under `token`: no other
  // instance can hold it until lease_duration after `sent` (if this instance still holds it
  // under that token).
  // `by_write`: a Write's (see TakeLease's `implicit`).
  void NoteLeaseExtended(std::string_view tenant, int64_t token, SteadyTime sent, bool by_write)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(lease_mu_);

  // Resolves the in-doubt Writes involving `tenant` (every one if nullopt); Unavailable if
  // one cannot be resolved yet.
  absl::Status ResolveDoubts(std::optional<std::string_view> tenant);
  // Whether `doubt`'s batch committed; Unavailable if that cannot be told yet.
  absl::StatusOr<bool> Resolve(const InDoubt& doubt, absl::Duration timeout);

  const PostgresStorageOptions options_;

  internal::Mutex pool_mu_;
  internal::CondVar pool_cv_{&pool_mu_};
  std::vector<std::unique_ptr<Pooled>> idle_ ABSL_GUARDED_BY(pool_mu_);
  int open_ ABSL_GUARDED_BY(pool_mu_) = 0;

  // Serialises taking leases (TakeLease): one round trip per tenant, not one per thread.
  internal::Mutex acquire_mu_;
  // The fencing tokens this instance holds.
  internal::Mutex lease_mu_;
  struct HeldLease {
    int64_t token = 0;
    // Until when no other instance can hold it: lease_duration after the request that
    // last extended it was sent (the server extends it later than that).
    SteadyTime unchallenged_until;
  };
  absl::flat_hash_map<std::string, HeldLease> tokens_ ABSL_GUARDED_BY(lease_mu_);

  // The tenants a Write is writing (and resolving, if its answer was lost): a tenant's
  // Writes go one at a time, so none is sent after one whose outcome is not known yet.
  internal::Mutex writing_mu_;
  internal::CondVar writing_cv_{&writing_mu_};
  absl::flat_hash_set<std::string> writing_ ABSL_GUARDED_BY(writing_mu_);

  // Writes whose outcome is not known yet. resolve_mu_ serialises resolutions.
  internal::Mutex resolve_mu_;
  internal::Mutex doubt_mu_;
  std::vector<std::shared_ptr<const InDoubt>> in_doubt_ ABSL_GUARDED_BY(doubt_mu_);
};

}  // namespace txfn

#endif  // TXFN_POSTGRES_STORAGE_H_

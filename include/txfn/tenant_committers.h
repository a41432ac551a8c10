// txfn/tenant_committers.h — the per-tenant committer registry: one Committer
// per tenant on one Storage, opened on first use, closed when idle, and
// closed safely when the tenant is deleted.
//
// Every tenant needs exactly one Committer (two committers writing one tenant
// would break serialisability), opened lazily, and a host must be able to
// delete a tenant while calls run on it without a commit landing afterwards.
// TenantCommitters is that bookkeeping, as the embedded Engine uses it; a host
// assembling its own runner (examples/assemble_host.cc) uses it directly:
//
//   auto storage = std::make_shared<txfn::InMemoryStorage>();
//   txfn::TenantCommitters tenants(storage);
//   TXFN_RETURN_IF_ERROR(tenants.Create("shop"));       // commits the initial metadata
//   TXFN_ASSIGN_OR_RETURN(std::shared_ptr<txfn::OpenTenant> shop, tenants.Get("shop"));
//   txfn::Transaction txn(shop->Latest());
//   ... reads and writes ...
//   TXFN_ASSIGN_OR_RETURN(txfn::Timestamp ts, shop->Commit(txn.Prepare()));
//
// Handles. Get returns a shared OpenTenant: hold it for one call (or one
// async call), not longer. A tenant is closed by Sweep only while nobody
// holds its handle, so nothing in flight is lost, and the next Get reopens
// it from storage (one MaxCommittedTimestamp and one metadata read). A handle
// kept forever keeps its tenant open forever.
//
// Deletion. Delete waits for the commits running on the tenant (they hold it
// shared), deletes it from storage, and marks the handle deleted: a commit
// made through an old handle afterwards fails with NotFound, never lands.
// Commit through OpenTenant::Commit, not through committer() directly, or a
// deleted tenant may be written again. DeleteIfNewest does the same, but only
// if nothing was committed to the tenant after a given commit (to undo a
// Create without losing another process's commit).
//
// Deleted by another writer (another process on the same storage, or another
// registry of this one): storage refuses this process's next write of the tenant
// (TenantDeletedElsewhereError), or its committer's Latest() finds the history gone
// (Committer::DeletedElsewhere); from then on its commits fail with NotFound, and
// the next Get opens what storage holds (NotFound, or the tenant created again).
// So a deleted tenant is never written again from a stale handle. Calls that
// took their snapshot before either noticed may still read the emptied data.
//
// Thread safety: every method of both classes is thread-safe. The registry
// must outlive the handles it gave out.
#ifndef TXFN_TENANT_COMMITTERS_H_
#define TXFN_TENANT_COMMITTERS_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "txfn/committer.h"
#include "txfn/retry.h"
#include "txfn/snapshot.h"
#include "txfn/storage.h"
#include "txfn/transaction.h"

namespace txfn {

namespace internal {
class ContentionLanes;
}  // namespace internal

struct TenantCommittersOptions {
  CommitterOptions committer;  // for every tenant's committer (its clock is the registry's)
  // A tenant nobody has used (Get) for this long, on the committer's clock,
  // is closed by the next Sweep. Zero: by the first Sweep after its last use
  // ends. InfiniteDuration(): never closed.
  absl::Duration idle_timeout = absl::Minutes(10);
};

struct TenantCommittersStats {
  // Summed over the committers open now and those closed idle (a deleted
  // tenant's are gone; history_* count open committers only).
  CommitterStats committer;
  uint64_t open = 0;         // tenants open now (a committer each)
  uint64_t closed_idle = 0;  // closures by Sweep (each reopens on its next Get)
  uint64_t hits = 0;         // Gets that found the tenant open
  uint64_t misses = 0;       // Gets that opened it from storage
};

// One open tenant: its committer and the lock that keeps commits off a
// deleted tenant. Obtained from TenantCommitters::Get or Create.
class OpenTenant {
 public:
  OpenTenant(const OpenTenant&) = delete;
  OpenTenant& operator=(const OpenTenant&) = delete;
  ~OpenTenant();

  [[nodiscard]] const std::string& name() const;
  // The tenant's committer, for Latest, AnnounceCommit, PinHistory and stats.
  // Commit through this->Commit instead of committer().Commit (see "Deletion").
  [[nodiscard]] Committer& committer() const;
  // committer().Latest(): the newest published snapshot, never null.
  [[nodiscard]] std::shared_ptr<const Snapshot> Latest() const;

  // Committer::Commit, unless the tenant was deleted (NotFound). Same errors
  // and arguments as Committer::Commit.
  [[nodiscard]] absl::StatusOr<Timestamp> Commit(PreparedCommit commit, CommitIntent intent = {},
                                                 BatchHold hold = BatchHold::kAllowed);

  // A system transaction (a deploy, enabling): `body` runs on a Transaction
  // at the latest snapshot and is committed, retried on conflict as
  // RetryCommits does (`on_conflict` is its callback). Its history is pinned
  // (HistoryPin): validating or backfilling a large table may take longer
  // than the conflict window. It runs optimistically first; once a conflict
  // showed the tenant is being written, it runs again holding the tenant's
  // other commits off (they wait, then conflict with it and retry), so a
  // deploy that reads a whole table cannot be starved by a stream of writes.
  // Errors: `body`'s, or Commit's.
  [[nodiscard]] absl::StatusOr<CommitOutcome> CommitSystemTransaction(
      const std::function<absl::Status(Transaction&)>& body, const RetryOptions& retry,
      const std::function<void(bool will_retry)>& on_conflict = nullptr);

  // The tenant's contention lanes, for CallPath (call_path.h); not for hosts.
  [[nodiscard]] internal::ContentionLanes& lanes() const;

 private:
  friend class TenantCommitters;
  struct State;
  explicit OpenTenant(std::unique_ptr<State> state);
  std::unique_ptr<State> state_;
};

class TenantCommitters {
 public:
  explicit TenantCommitters(std::shared_ptr<Storage> storage, TenantCommittersOptions options = {});
  TenantCommitters(const TenantCommitters&) = delete;
  TenantCommitters& operator=(const TenantCommitters&) = delete;
  ~TenantCommitters();

  // Creates the tenant: commits its initial metadata (an empty schema, no
  // modules, enabled). A valid name is 1..64 bytes of [A-Za-z0-9_.-].
  // InvalidArgument for a bad name, AlreadyExists if it
  // has a commit (also one another process made while this call ran: its
  // commit is never overwritten), the storage's error otherwise. If
  // `created_at` is not null, it receives the creating commit's timestamp
  // (for DeleteIfNewest).
  [[nodiscard]] absl::Status Create(std::string_view tenant, Timestamp* created_at = nullptr);

  // The open tenant, opening its committer on first use (or after Sweep
  // closed it). InvalidArgument for a bad name, NotFound if it has no
  // commit, the storage's error otherwise.
  [[nodiscard]] absl::StatusOr<std::shared_ptr<OpenTenant>> Get(std::string_view tenant);

  // Deletes the tenant and all its data (Storage::DeleteTenant) once the
  // commits running on it are done; later commits through its handles fail
  // with NotFound. NotFound if it does not exist.
  [[nodiscard]] absl::Status Delete(std::string_view tenant);

  // Delete, but only if the tenant's newest commit is still `newest`, checked
  // and deleted in one step against commits from this process and any other
  // sharing the storage (Storage::DeleteTenantIfNewest). Returns whether it
  // deleted; false leaves everything as it was. Unimplemented if the storage
  // cannot do it in one step. Undoes a Create (its `created_at`) without
  // losing a commit made to the tenant meanwhile.
  [[nodiscard]] absl::StatusOr<bool> DeleteIfNewest(std::string_view tenant, Timestamp newest);

  // Closes the tenants idle for idle_timeout at `now` (committer's clock)
  // that nobody holds, and prunes every other open committer's conflict
  // history past its window (Committer::PruneHistory). Returns how many it
  // closed. Never fails; a tenant in use is skipped.
  size_t Sweep(Timestamp now);

  // The committers' clock: CommitterOptions::clock, else nanoseconds since
  // the Unix epoch.
  [[nodiscard]] Timestamp Now() const;

  [[nodiscard]] const std::shared_ptr<Storage>& storage() const;
  [[nodiscard]] TenantCommittersStats stats() const;

 private:
  struct Registry;

  // Delete and DeleteIfNewest: `delete_tenant` deletes in storage (true if it
  // did; `open`: the tenant is open here) while this process's commits to the
  // tenant are held off.
  absl::StatusOr<bool> DeleteWith(
      std::string_view tenant,
      absl::FunctionRef<absl::StatusOr<bool>(Storage&, bool open)> delete_tenant);

  std::unique_ptr<Registry> registry_;
};

}  // namespace txfn

#endif  // TXFN_TENANT_COMMITTERS_H_

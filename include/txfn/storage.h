// txfn/storage.h — the pluggable, versioned store under every tenant.
//
// A Storage holds, per tenant, a set of ordered indexes of versioned entries:
// (index id, key bytes) -> value bytes, each version stamped with the commit
// timestamp that wrote it. Documents live in each table's by-id index (key:
// the encoded id, value: the encoded document); secondary indexes map an index
// key to a document id. Storage knows nothing of documents or Values: it keeps
// bytes, versions and order, which is all an adapter has to get right.
//
//   txfn::InMemoryStorage storage;
//   txfn::CommitRecord commit{.tenant = "shop", .ts = 10,
//                             .writes = {{.index = 1, .key = "k", .value = "v"}}};
//   absl::Status s = storage.Write({&commit, 1});
//   auto entry = storage.Get("shop", 1, "k", /*ts=*/10);     // "v"
//   auto before = storage.Get("shop", 1, "k", /*ts=*/9);     // nullopt
//   auto rows = storage.Scan("shop", 1, txfn::KeyRange::All(), 10,
//                            txfn::ScanOrder::kAscending, /*limit=*/100);
//
// Writing your own adapter: subclass Storage, then instantiate the conformance
// suite from <txfn/testing/storage_conformance.h> with one macro; passing it is
// the definition of a correct adapter.
//
// Commit outcomes. A Write either succeeds (durable and visible), fails
// (nothing written, now or after a restart), or — when the store cannot tell
// — fails with an "outcome unknown" status (IsCommitOutcomeUnknown():
// Unavailable with a typed payload, FoundationDB's commit_unknown_result).
// See Write below for what an adapter then promises.
//
// Version retention (MVCC garbage collection): ApplyRetention drops the
// versions and log entries that no read at or after a retention horizon can
// see; reads below the horizon then fail with FailedPrecondition.
//
// Thread safety: every method of every adapter is safe to call concurrently.
// Reads at a timestamp <= MaxCommittedTimestamp(tenant) (and at or above the
// tenant's retention horizon) are repeatable: they return the same result
// whenever they are made.
#ifndef TXFN_STORAGE_H_
#define TXFN_STORAGE_H_

#include <cstdint>
#include <iosfwd>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/inlined_vector.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"

namespace txfn {

// A commit timestamp. Strictly increasing per tenant; 0 means "before the
// first commit". txfn's committer uses nanoseconds since the Unix epoch.
using Timestamp = uint64_t;

// Names one index of a tenant. Chosen by the layer above; opaque to Storage.
using IndexId = uint32_t;

// A half-open interval of keys within one index: start <= key < end.
// A missing `end` is unbounded above. Inclusive/exclusive bounds of any kind
// are expressed with the helpers below (the immediate successor of a key k in
// bytewise order is k + '\0').
struct KeyRange {
  std::string start;               // inclusive
  std::optional<std::string> end;  // exclusive; nullopt = no upper bound

  static KeyRange All() { return {}; }
  // Exactly the key `key`.
  static KeyRange Point(std::string_view key);
  // Every key that starts with `prefix`.
  static KeyRange Prefix(std::string_view prefix);
  // lo <= key <= hi.
  static KeyRange Closed(std::string_view lo, std::string_view hi);
  // lo <= key < hi.
  static KeyRange HalfOpen(std::string_view lo, std::string_view hi);
  // lo < key (unbounded above).
  static KeyRange After(std::string_view lo);

  bool Contains(std::string_view key) const;
  bool IsEmpty() const;
  friend bool operator==(const KeyRange&, const KeyRange&) = default;
};

// The smallest key greater than every key starting with `prefix`; nullopt if
// there is none (prefix is empty or all 0xff bytes).
std::optional<std::string> PrefixSuccessor(std::string_view prefix);

// One change to one key. `value == nullopt` deletes the key (a tombstone).
struct IndexWrite {
  IndexId index = 0;
  std::string key;
  std::optional<std::string> value;
  friend bool operator==(const IndexWrite&, const IndexWrite&) = default;
};

// Everything one transaction wrote, at its commit timestamp.
struct CommitRecord {
  std::string tenant;
  Timestamp ts = 0;
  std::vector<IndexWrite> writes;
  // The writer's view: the tenant's newest commit it knew of when it validated
  // this one (its conflict checks covered every commit up to it). Storage
  // refuses a batch in which the tenant has a commit newer than its first
  // record's previous_ts — another writer's commit that those checks missed —
  // with StaleWriterError, and one in which the tenant's newest commit is older than it (the
  // tenant was deleted since) with TenantDeletedElsewhereError; either way it writes nothing.
  // txfn's adapters all check it (PostgresStorage: engines of several processes; SqliteStorage: two
  // processes on one file; InMemoryStorage: two engines sharing it); the
  // conformance suite tests it. nullopt: not stated, not checked. Not data:
  // adapters need not store it (txfn's do not; ReadLog returns nullopt).
  std::optional<Timestamp> previous_ts;
  friend bool operator==(const CommitRecord&, const CommitRecord&) = default;
};

// The version of a key visible at a read timestamp.
struct IndexEntry {
  std::string key;
  std::string value;
  Timestamp ts = 0;  // the commit that wrote this version
  friend bool operator==(const IndexEntry&, const IndexEntry&) = default;
};

enum class ScanOrder { kAscending, kDescending };

// Readable forms for test failures (googletest prints with them) and logs; keys
// and values are C-escaped bytes, e.g. {key="a\x00" value="v" ts=3}.
std::ostream& operator<<(std::ostream& os, const KeyRange& r);
std::ostream& operator<<(std::ostream& os, const IndexWrite& w);
std::ostream& operator<<(std::ostream& os, const CommitRecord& c);
std::ostream& operator<<(std::ostream& os, const IndexEntry& e);
std::ostream& operator<<(std::ostream& os, ScanOrder order);

// ---- Commit outcomes ----------------------------------------------------------

// The type URL of the payload that marks a status as "the commit may or may
// not have happened". Its value is the commit's timestamp in decimal (empty if
// unknown), e.g. for a host that later looks for that commit in the log.
inline constexpr std::string_view kCommitOutcomeUnknownTypeUrl =
    "type.txfn.dev/txfn.CommitOutcomeUnknown";

// Unavailable("<message>") marked as an unknown commit outcome: what a Write
// (or a Committer::Commit) returns when its writes may have become durable
// although it failed — an error from the store's own commit step (SQLite's
// COMMIT; an fsync after the WAL frames were written), or a connection lost
// after a network store was sent the commit. `ts`: the commit's timestamp, if
// there is one (0: none).
[[nodiscard]] absl::Status CommitOutcomeUnknownError(std::string_view message, Timestamp ts = 0);

// Whether `status` carries the payload above. Such an error is never "not
// committed": a caller that retries it blindly may apply it twice (see the
// committer's resolution and the idempotency keys of <txfn/idempotency.h>).
[[nodiscard]] bool IsCommitOutcomeUnknown(const absl::Status& status);

// The commit timestamp an outcome-unknown status carries; nullopt if it is not
// one or carries none.
[[nodiscard]] std::optional<Timestamp> CommitOutcomeUnknownTimestamp(const absl::Status& status);

// FailedPrecondition("<message>") marked as "this writer is stale": the tenant
// has commits (up to `newest`) that the writer had not seen — another process
// wrote them (CommitRecord::previous_ts) — so nothing was written. The
// committer reloads the tenant's state from storage on it.
[[nodiscard]] absl::Status StaleWriterError(std::string_view message, Timestamp newest);
// Whether `status` is a StaleWriterError.
[[nodiscard]] bool IsStaleWriter(const absl::Status& status);
// The `newest` a StaleWriterError carries; nullopt for any other status.
[[nodiscard]] std::optional<Timestamp> StaleWriterNewest(const absl::Status& status);

// FailedPrecondition("<message>") marked as "another live instance owns the tenant" (its
// lease, PostgresStorage): nothing was written, and a write here succeeds only once that
// owner lets the tenant go (or its lease expires). The committer passes the mark on with its
// "not persisted" error, so that a queue can give the call back instead of counting an
// attempt.
// `code`: another code with the mark (the committer's Unavailable "not persisted").
[[nodiscard]] absl::Status TenantOwnedElsewhereError(
    std::string_view message, absl::StatusCode code = absl::StatusCode::kFailedPrecondition);
// Whether `status` carries that mark.
[[nodiscard]] bool IsTenantOwnedElsewhere(const absl::Status& status);

// NotFound("<message>") marked as "the tenant this writer built on was deleted": storage has
// no commit of the tenant as new as the writer's CommitRecord::previous_ts (a commit it knew
// storage held), so another writer deleted the tenant since (and may have created it again);
// nothing was written. The committer stops serving the tenant on it
// (Committer::DeletedElsewhere), so a deleted tenant is never written again by a process that
// still had it open.
[[nodiscard]] absl::Status TenantDeletedElsewhereError(std::string_view message);
// Whether `status` carries that mark.
[[nodiscard]] bool IsTenantDeletedElsewhere(const absl::Status& status);

// ---- Retention -----------------------------------------------------------------

// What one Storage::ApplyRetention call did.
struct RetentionResult {
  // The tenant's retention horizon after the call: every read at a timestamp
  // >= horizon is exact, reads below it fail with FailedPrecondition. 0: the
  // tenant never dropped anything.
  Timestamp horizon = 0;
  uint64_t versions_dropped = 0;  // versions (tombstones included) removed by this call
  uint64_t commits_dropped = 0;   // commits removed from the log by this call
  // False: the call stopped after `max_commits` commits short of the target;
  // call again to go on.
  bool done = true;
  friend bool operator==(const RetentionResult&, const RetentionResult&) = default;
};
std::ostream& operator<<(std::ostream& os, const RetentionResult& r);

// FailedPrecondition for a read at `ts` below the tenant's retention horizon.
// For adapter authors, so every adapter says it the same way.
[[nodiscard]] absl::Status ReadBelowRetentionError(std::string_view what, std::string_view tenant,
                                                   Timestamp ts, Timestamp horizon);

// The checks of Storage::Write's preconditions that need no stored state: a
// non-empty tenant name and no (index, key) written twice. InvalidArgument
// naming the commit and key. For adapter authors: call it on every commit
// before writing anything.
[[nodiscard]] absl::Status ValidateCommitRecord(const CommitRecord& commit);

// One tenant's commits within a Write batch.
struct TenantBatch {
  std::string_view tenant;               // points into the batch's CommitRecord
  Timestamp first_ts = 0;                // of the tenant's first commit in the batch
  Timestamp last_ts = 0;                 // of its last
  std::optional<Timestamp> previous_ts;  // its first commit's (CommitRecord::previous_ts)
};

// Every stateless check of Storage::Write on a whole batch: ValidateCommitRecord
// on each commit, and strictly increasing timestamps within each tenant.
// Returns the batch's tenants sorted by name (an adapter's lock order), or
// InvalidArgument naming the problem. The checks against stored state are
// CheckTenantBatchAgainstNewest's.
[[nodiscard]] absl::StatusOr<absl::InlinedVector<TenantBatch, 2>> ValidateCommitBatch(
    absl::Span<const CommitRecord> commits);

// The checks of one tenant's part of a Write against what storage holds,
// `newest` being the tenant's newest stored commit (0: none): InvalidArgument
// if the batch does not come after it, StaleWriterError if the writer had not
// seen it (TenantBatch::previous_ts), TenantDeletedElsewhereError if it is older
// than the previous_ts (the commits the writer knew of are gone). `storage` names the adapter in
// the message. Run them with the tenant locked, before writing anything.
[[nodiscard]] absl::Status CheckTenantBatchAgainstNewest(std::string_view storage,
                                                         const TenantBatch& batch,
                                                         Timestamp newest);

class Storage {
 public:
  virtual ~Storage() = default;

  // Persists `commits` atomically: after Write returns OK all of them are
  // durable (as durable as the adapter promises) and visible.
  // Preconditions, checked (InvalidArgument, nothing written): tenant names
  // are non-empty; within each tenant the commits' timestamps are strictly
  // increasing and greater than MaxCommittedTimestamp(tenant); no commit
  // writes the same (index, key) twice. Unavailable on an I/O fault.
  //
  // On an error none of the commits is visible, now or after a restart —
  // unless the error is marked IsCommitOutcomeUnknown (CommitOutcomeUnknownError):
  // then the whole batch or none of it may be durable, and the adapter must
  // not let a read claim either until it knows. It answers
  // MaxCommittedTimestamp and ReadLog for the batch's tenants only with what
  // is durable — what a restart would find — or fails them (Unavailable) until
  // it knows, e.g. until it is reopened (SqliteStorage: recovery replays or
  // discards the WAL frames whose sync failed). An adapter reports an unknown
  // outcome whenever the batch may have reached durable storage: an error
  // from its commit step itself, a connection lost after the commit was sent.
  [[nodiscard]] virtual absl::Status Write(absl::Span<const CommitRecord> commits) = 0;

  // The version of (index, key) visible at `ts`: the newest version with
  // version.ts <= ts, or nullopt if there is none or it is a tombstone.
  // Get, Scan and ReadLog fail with FailedPrecondition (ReadBelowRetentionError)
  // at a `ts` (`after`) below the tenant's retention horizon (ApplyRetention).
  [[nodiscard]] virtual absl::StatusOr<std::optional<IndexEntry>> Get(std::string_view tenant,
                                                                      IndexId index,
                                                                      std::string_view key,
                                                                      Timestamp ts) = 0;

  // The live entries of `index` with keys in `range` as visible at `ts`, in
  // key order (`order`), at most `limit` of them (0 = no limit).
  [[nodiscard]] virtual absl::StatusOr<std::vector<IndexEntry>> Scan(std::string_view tenant,
                                                                     IndexId index,
                                                                     const KeyRange& range,
                                                                     Timestamp ts, ScanOrder order,
                                                                     size_t limit) = 0;

  // The tenant's commits with ts > `after`, oldest first, at most `limit`
  // (0 = no limit). Each is returned as it was written (writes in the order
  // given to Write).
  [[nodiscard]] virtual absl::StatusOr<std::vector<CommitRecord>> ReadLog(std::string_view tenant,
                                                                          Timestamp after,
                                                                          size_t limit) = 0;

  // The timestamp of the tenant's newest commit; 0 if it has none.
  [[nodiscard]] virtual absl::StatusOr<Timestamp> MaxCommittedTimestamp(
      std::string_view tenant) = 0;

  // Every tenant with at least one commit, sorted.
  [[nodiscard]] virtual absl::StatusOr<std::vector<std::string>> ListTenants() = 0;

  // Whether another process may have committed to `tenant` since this Storage
  // last wrote it (or may do so at any moment). A committer asks before it
  // hands out a snapshot, and if so looks for newer commits
  // (MaxCommittedTimestamp) and reloads (Committer::Latest). Must be cheap: no
  // I/O. The default, false, is right only for a storage one committer per
  // tenant writes. InMemoryStorage answers true (engines may share it);
  // SqliteStorage true once per tenant after another connection to its file
  // committed, and while its writer is busy; PostgresStorage true unless this
  // instance holds the tenant's lease. Thread-safe.
  [[nodiscard]] virtual bool MayHaveOtherWriters(std::string_view tenant) {
    (void)tenant;
    return false;
  }

  // Ownership, where one instance at a time writes a tenant and a Write takes a tenant nobody
  // holds (PostgresStorage's leases; elsewhere there is nothing to hold). HoldsTenant: whether
  // this instance holds `tenant` now, so that a Write of it takes nothing; true where there is
  // no ownership. Cheap: no I/O. ReleaseTenant: gives the tenant up if this instance holds
  // it, so another instance may write it at once (this one's next Write takes it again if
  // nobody holds it); OK where there is no ownership. Background work that writes a tenant
  // this instance does not hold (the engine's pruning) releases it after. Thread-safe.
  [[nodiscard]] virtual bool HoldsTenant(std::string_view tenant) {
    (void)tenant;
    return true;
  }
  [[nodiscard]] virtual absl::Status ReleaseTenant(std::string_view tenant) {
    (void)tenant;
    return absl::OkStatus();
  }

  // Removes every version of every key of `tenant`, its log and its retention
  // horizon. Other tenants are untouched. OK if the tenant does not exist.
  [[nodiscard]] virtual absl::Status DeleteTenant(std::string_view tenant) = 0;

  // DeleteTenant, but only if the tenant's newest commit is still `newest`
  // (MaxCommittedTimestamp; 0 for a tenant with no commit): the check and the
  // delete are one step, so a Write to the tenant, from this process or any
  // other sharing the store, lands either before it (then nothing is deleted)
  // or after it (on the deleted tenant, kept). Returns true if the tenant was
  // deleted (or had no commit and `newest` is 0), false if it has another
  // newest commit, with nothing changed. Used to undo a tenant's creation
  // without losing a commit someone made to it meanwhile.
  //
  // The default answers Unimplemented: an adapter that cannot make the check
  // and the delete atomic says so, and callers keep the tenant. Every adapter
  // in this library implements it (the conformance suite checks it where an
  // adapter does).
  [[nodiscard]] virtual absl::StatusOr<bool> DeleteTenantIfNewest(std::string_view tenant,
                                                                  Timestamp newest) {
    (void)tenant;
    (void)newest;
    return absl::UnimplementedError(
        "DeleteTenantIfNewest: this Storage cannot check and delete in one step");
  }

  // Version retention (MVCC garbage collection). Raises the tenant's retention
  // horizon to R, the newest commit timestamp <= `ts` (it never lowers it;
  // with no commit in between, nothing changes), then drops what no read at a
  // timestamp >= R can see: every version of a key older than the key's newest
  // version at or before R; that version too if it is a tombstone; and the
  // log's commits with ts <= R. Afterwards Get and Scan at any timestamp >= R,
  // and ReadLog with `after` >= R, return exactly what they returned before;
  // below R they fail with FailedPrecondition. The newest version of every
  // live key is always kept, and so is MaxCommittedTimestamp. The caller picks
  // `ts` so that no open snapshot, conflict window or log reader needs
  // anything older (the engine: EngineOptions::version_retention).
  //
  // The work is proportional to the commits between the old horizon and R.
  // `max_commits` (0 = no limit) bounds the commits one call processes: the
  // call then raises the horizon only as far as those reach, still atomically,
  // and returns done = false. Each call is atomic: readers see the horizon
  // and the drops together. OK with an unchanged result for an unknown tenant.
  //
  // The default implementation is Unimplemented (the adapter keeps every
  // version); txfn's adapters implement it and the conformance suite checks it.
  [[nodiscard]] virtual absl::StatusOr<RetentionResult> ApplyRetention(std::string_view tenant,
                                                                       Timestamp ts,
                                                                       size_t max_commits);
};

}  // namespace txfn

#endif  // TXFN_STORAGE_H_

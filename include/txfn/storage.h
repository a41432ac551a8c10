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
// Thread safety: every method of every adapter is safe to call concurrently.
// Reads at a timestamp <= MaxCommittedTimestamp(tenant) are repeatable: they
// return the same result whenever they are made.
#ifndef TXFN_STORAGE_H_
#define TXFN_STORAGE_H_

#include <cstdint>
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

// The checks of Storage::Write's preconditions that need no stored state: a
// non-empty tenant name and no (index, key) written twice. InvalidArgument
// naming the commit and key. For adapter authors: call it on every commit
// before writing anything.
[[nodiscard]] absl::Status ValidateCommitRecord(const CommitRecord& commit);

// One tenant's commits within a Write batch.
struct TenantBatch {
  std::string_view tenant;  // points into the batch's CommitRecord
  Timestamp first_ts = 0;   // of the tenant's first commit in the batch
  Timestamp last_ts = 0;    // of its last
};

// Every stateless check of Storage::Write on a whole batch: ValidateCommitRecord
// on each commit, and strictly increasing timestamps within each tenant.
// Returns the batch's tenants sorted by name (an adapter's lock order), or
// InvalidArgument naming the problem. The checks against stored state
// (first_ts > MaxCommittedTimestamp) are the adapter's.
[[nodiscard]] absl::StatusOr<absl::InlinedVector<TenantBatch, 2>> ValidateCommitBatch(
    absl::Span<const CommitRecord> commits);

class Storage {
 public:
  virtual ~Storage() = default;

  // Persists `commits` atomically: after Write returns OK all of them are
  // durable (as durable as the adapter promises) and visible; on any error
  // none of them is visible, now or after a restart.
  // Preconditions, checked (InvalidArgument, nothing written): tenant names
  // are non-empty; within each tenant the commits' timestamps are strictly
  // increasing and greater than MaxCommittedTimestamp(tenant); no commit
  // writes the same (index, key) twice. Unavailable on an I/O fault.
  [[nodiscard]] virtual absl::Status Write(absl::Span<const CommitRecord> commits) = 0;

  // The version of (index, key) visible at `ts`: the newest version with
  // version.ts <= ts, or nullopt if there is none or it is a tombstone.
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

  // Removes every version of every key of `tenant` and its log. Other tenants
  // are untouched. OK if the tenant does not exist.
  [[nodiscard]] virtual absl::Status DeleteTenant(std::string_view tenant) = 0;
};

}  // namespace txfn

#endif  // TXFN_STORAGE_H_

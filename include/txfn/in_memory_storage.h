// txfn/in_memory_storage.h — the reference Storage adapter, kept in memory.
//
// InMemoryStorage is the adapter the tests, the examples and the committer
// benchmark run on, and the model the other adapters are checked against: it
// passes the conformance suite (<txfn/testing/storage_conformance.h>) and does
// nothing beyond the contract of <txfn/storage.h>. Nothing survives the
// object: "durable" means "until the InMemoryStorage is destroyed".
//
//   auto storage = std::make_shared<txfn::InMemoryStorage>();
//   txfn::CommitRecord commit{.tenant = "shop", .ts = 1,
//                             .writes = {{.index = 1, .key = "k", .value = "v"}}};
//   if (absl::Status s = storage->Write({&commit, 1}); !s.ok()) { ... }
//   auto entry = storage->Get("shop", 1, "k", /*ts=*/1);   // {"k", "v", 1}
//
// Layout: per tenant, per index, an ordered map from key to that key's
// versions (ascending by timestamp; a tombstone is a version without a value),
// plus the tenant's commit log in timestamp order and its retention horizon.
// Every version is kept until ApplyRetention drops it.
//
// Costs (n keys in the index, v versions of one key, k entries returned):
// Write O(w log n) for w writes; Get O(log n + log v); Scan O(log n + scanned
// keys * log v) — it seeks to the range's bound and stops at `limit` live
// entries, it never walks the whole index; ReadLog O(log c + k) for c commits;
// MaxCommittedTimestamp O(1); ListTenants O(t log t) for t tenants;
// ApplyRetention O(w log n) for the w writes of the commits it processes.
//
// Reads at a timestamp above MaxCommittedTimestamp(tenant) are allowed and see
// every commit made so far (they are not repeatable, per the Storage contract:
// a later commit may still land at or below that timestamp). Reads of a tenant
// that has no commits see nothing (Get: nullopt; Scan, ReadLog: empty; max: 0).
//
// Thread safety: every method may be called concurrently. Readers never block
// each other. A Write holds the written tenants' locks exclusively while it
// validates against their newest timestamps and applies, so concurrent readers
// of a tenant see either none or all of a Write's commits, and two racing
// Writes to one tenant cannot both pass the "ts > MaxCommittedTimestamp" check
// with overlapping timestamps. Writes to different tenants proceed in parallel.
// DeleteTenant and DeleteTenantIfNewest briefly exclude every other call.
#ifndef TXFN_IN_MEMORY_STORAGE_H_
#define TXFN_IN_MEMORY_STORAGE_H_

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "txfn/internal/mutex.h"
#include "txfn/storage.h"

namespace txfn {

// What one tenant holds (InMemoryStorage::Size).
struct InMemoryTenantSize {
  size_t keys = 0;         // over every index
  size_t versions = 0;     // tombstones included
  size_t log_commits = 0;  // commits in the log
  friend bool operator==(const InMemoryTenantSize&, const InMemoryTenantSize&) = default;
};

class InMemoryStorage final : public Storage {
 public:
  InMemoryStorage();
  ~InMemoryStorage() override;
  InMemoryStorage(const InMemoryStorage&) = delete;
  InMemoryStorage& operator=(const InMemoryStorage&) = delete;

  // See Storage. Errors: InvalidArgument for a violated precondition (the
  // message names the tenant, the timestamp and the problem); never
  // Unavailable. Validates the whole batch before changing anything.
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
  // Always true: several engines (committers) may share one InMemoryStorage, and this
  // storage cannot tell whose commit is whose, so a committer compares the tenant's newest
  // commit (MaxCommittedTimestamp, two shared locks) before it hands out a snapshot. Without
  // this, an engine's reads lagged another engine's acknowledged commits.
  [[nodiscard]] bool MayHaveOtherWriters(std::string_view tenant) override;
  [[nodiscard]] absl::StatusOr<std::vector<std::string>> ListTenants() override;
  [[nodiscard]] absl::Status DeleteTenant(std::string_view tenant) override;
  [[nodiscard]] absl::StatusOr<bool> DeleteTenantIfNewest(std::string_view tenant,
                                                          Timestamp newest) override;
  // See Storage. Holds the tenant's lock exclusively while it runs.
  [[nodiscard]] absl::StatusOr<RetentionResult> ApplyRetention(std::string_view tenant,
                                                               Timestamp ts,
                                                               size_t max_commits) override;

  // What `tenant` holds now (all zero for an unknown tenant). O(keys).
  InMemoryTenantSize Size(std::string_view tenant) const;

 private:
  struct TenantState;
  struct Group;

  // DeleteTenant, or DeleteTenantIfNewest when `newest` is set: whether the
  // tenant is gone (or never was, and `newest` is unset or 0).
  bool DeleteTenantWhere(std::string_view tenant, std::optional<Timestamp> newest);

  // Validates against, and applies to, `groups` (sorted by tenant, states
  // present). Takes each group's tenant lock. Moves `commits` (a copy of the
  // batch) into the log.
  absl::Status ApplyLocked(absl::Span<CommitRecord> commits, absl::Span<Group> groups)
      ABSL_SHARED_LOCKS_REQUIRED(mu_);

  // Guards the map; each TenantState has its own lock for its contents.
  // Lock order: mu_, then tenant locks in ascending tenant-name order.
  mutable internal::SharedMutex mu_;
  absl::flat_hash_map<std::string, std::unique_ptr<TenantState>> tenants_ ABSL_GUARDED_BY(mu_);
};

}  // namespace txfn

#endif  // TXFN_IN_MEMORY_STORAGE_H_

// txfn/snapshot.h — an immutable view of one tenant at one timestamp.
//
// A Snapshot reads documents and index entries from Storage *as of* its
// timestamp, and serves the tenant's system metadata (tables, indexes, schema,
// modules, state) from memory, decoded once when the snapshot was made. The
// committer publishes a new Snapshot after every commit; functions run against
// one through a Transaction, which also records what they read.
//
//   auto snapshot = txfn::Snapshot::Load(storage, "shop", ts);
//   if (!(*snapshot)->metadata().enabled()) { ... }
//   auto doc = (*snapshot)->GetDocument(id);            // optional<Value>
//   auto rows = (*snapshot)->Scan(index, txfn::KeyRange::Prefix(p),
//                                 txfn::ScanOrder::kAscending, /*limit=*/10);
//
// Reads do not record a read set: read through a Transaction for that. A
// snapshot older than its tenant's retention horizon (Storage::ApplyRetention)
// can no longer be read: its reads fail with FailedPrecondition.
//
// Thread safety: immutable; every method may be called from any thread. The
// Storage is shared and must outlive nothing in particular (it is held by a
// shared_ptr).
#ifndef TXFN_SNAPSHOT_H_
#define TXFN_SNAPSHOT_H_

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "txfn/document_id.h"  // IWYU pragma: export (document ids lived here)
#include "txfn/storage.h"
#include "txfn/tenant_metadata.h"
#include "txfn/value.h"

namespace txfn {

class Snapshot {
 public:
  // A snapshot with the given, already decoded metadata (which must be the
  // tenant's metadata at `ts`).
  Snapshot(std::shared_ptr<Storage> storage, std::string tenant, Timestamp ts,
           std::shared_ptr<const TenantMetadata> metadata);

  // Reads and decodes the tenant's metadata at `ts` from storage.
  [[nodiscard]] static absl::StatusOr<std::shared_ptr<const Snapshot>> Load(
      std::shared_ptr<Storage> storage, std::string tenant, Timestamp ts);

  const std::string& tenant() const { return tenant_; }
  Timestamp ts() const { return ts_; }
  const TenantMetadata& metadata() const { return *metadata_; }
  const std::shared_ptr<const TenantMetadata>& shared_metadata() const { return metadata_; }
  const std::shared_ptr<Storage>& storage() const { return storage_; }

  // The document with this id, or nullopt. InvalidArgument for a malformed id
  // or an id of another tenant's table; Unavailable from storage.
  [[nodiscard]] absl::StatusOr<std::optional<Value>> GetDocument(std::string_view id) const;

  // Raw index access at this snapshot's timestamp (see Storage).
  [[nodiscard]] absl::StatusOr<std::optional<IndexEntry>> Get(IndexId index,
                                                              std::string_view key) const;
  [[nodiscard]] absl::StatusOr<std::vector<IndexEntry>> Scan(IndexId index, const KeyRange& range,
                                                             ScanOrder order, size_t limit) const;

 private:
  std::shared_ptr<Storage> storage_;
  std::string tenant_;
  Timestamp ts_;
  std::shared_ptr<const TenantMetadata> metadata_;
};

}  // namespace txfn

#endif  // TXFN_SNAPSHOT_H_

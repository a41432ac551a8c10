// Snapshot (txfn/snapshot.h).
#include "txfn/snapshot.h"

#include <cstdint>
#include <string>
#include <utility>

#include "txfn/internal/strings.h"
#include "txfn/status_macros.h"

namespace txfn {

Snapshot::Snapshot(std::shared_ptr<Storage> storage, std::string tenant, Timestamp ts,
                   std::shared_ptr<const TenantMetadata> metadata)
    : storage_(std::move(storage)),
      tenant_(std::move(tenant)),
      ts_(ts),
      metadata_(std::move(metadata)) {}

absl::StatusOr<std::shared_ptr<const Snapshot>> Snapshot::Load(std::shared_ptr<Storage> storage,
                                                               std::string tenant, Timestamp ts) {
  TXFN_ASSIGN_OR_RETURN(
      std::vector<IndexEntry> entries,
      storage->Scan(tenant, kMetadataIndex, KeyRange::All(), ts, ScanOrder::kAscending, 0));
  TXFN_ASSIGN_OR_RETURN(TenantMetadata metadata, TenantMetadata::FromEntries(entries));
  return std::make_shared<const Snapshot>(
      std::move(storage), std::move(tenant), ts,
      std::make_shared<const TenantMetadata>(std::move(metadata)));
}

absl::StatusOr<std::optional<Value>> Snapshot::GetDocument(std::string_view id) const {
  TXFN_ASSIGN_OR_RETURN(IndexId table, DocumentIdTable(id));
  if (metadata_->FindTableById(table) == nullptr) {
    return absl::InvalidArgumentError(internal::StrCat("document id '", id, "' names no table"));
  }
  TXFN_ASSIGN_OR_RETURN(std::optional<IndexEntry> entry, Get(table, id));
  if (!entry.has_value()) return std::nullopt;
  TXFN_ASSIGN_OR_RETURN(Value doc, DecodeBinary(entry->value));
  return doc;
}

absl::StatusOr<std::optional<IndexEntry>> Snapshot::Get(IndexId index, std::string_view key) const {
  return storage_->Get(tenant_, index, key, ts_);
}

absl::StatusOr<std::vector<IndexEntry>> Snapshot::Scan(IndexId index, const KeyRange& range,
                                                       ScanOrder order, size_t limit) const {
  return storage_->Scan(tenant_, index, range, ts_, order, limit);
}

}  // namespace txfn

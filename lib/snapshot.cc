// Snapshot and document ids (txfn/snapshot.h).
#include "txfn/snapshot.h"

#include <string>
#include <utility>

#include "txfn/internal/status_macros.h"
#include "txfn/internal/strings.h"

namespace txfn {
namespace {

constexpr std::string_view kIdAlphabet = "0123456789abcdefghjkmnpqrstvwxyz";
constexpr size_t kIdBytes = 20;

int IdDigit(char c) {
  size_t pos = kIdAlphabet.find(c);
  return pos == std::string_view::npos ? -1 : static_cast<int>(pos);
}

}  // namespace

std::string MakeDocumentId(IndexId table, std::string_view bytes16) {
  unsigned char raw[kIdBytes];
  for (size_t i = 0; i < 16; ++i) raw[i] = static_cast<unsigned char>(bytes16[i]);
  for (int i = 0; i < 4; ++i) raw[16 + i] = static_cast<unsigned char>(table >> (24 - 8 * i));
  std::string id;
  id.reserve(kDocumentIdLength);
  // 160 bits = 32 groups of 5 bits.
  for (size_t group = 0; group < kDocumentIdLength; ++group) {
    unsigned value = 0;
    for (size_t b = group * 5; b < group * 5 + 5; ++b) {
      value = (value << 1) | ((raw[b / 8] >> (7 - b % 8)) & 1u);
    }
    id.push_back(kIdAlphabet[value]);
  }
  return id;
}

absl::StatusOr<IndexId> DocumentIdTable(std::string_view id) {
  if (id.size() != kDocumentIdLength) {
    return absl::InvalidArgumentError(internal::StrCat(
        "malformed document id '", id, "': expected ", kDocumentIdLength, " chars"));
  }
  unsigned char raw[kIdBytes] = {};
  for (size_t group = 0; group < kDocumentIdLength; ++group) {
    int digit = IdDigit(id[group]);
    if (digit < 0) {
      return absl::InvalidArgumentError(internal::StrCat("malformed document id '", id, "'"));
    }
    for (size_t bit = 0; bit < 5; ++bit) {
      size_t b = group * 5 + bit;
      if ((digit >> (4 - bit)) & 1) raw[b / 8] |= static_cast<unsigned char>(1u << (7 - b % 8));
    }
  }
  IndexId table = 0;
  for (int i = 0; i < 4; ++i) table = (table << 8) | raw[16 + i];
  return table;
}

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

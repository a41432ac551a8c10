// Decoding of a tenant's metadata index (txfn/tenant_metadata.h).
#include "txfn/tenant_metadata.h"

#include <string>
#include <utility>

#include "absl/strings/numbers.h"
#include "txfn/internal/strings.h"
#include "txfn/status_macros.h"

namespace txfn {
namespace {

absl::Status Malformed(std::string_view key, std::string_view why) {
  return absl::InvalidArgumentError(
      internal::StrCat("tenant metadata: entry '", key, "' is malformed: ", why));
}

absl::StatusOr<IndexId> ReadId(const Value& v, std::string_view what) {
  if (!v.is_int64() || v.int64() <= 0 || v.int64() > int64_t{UINT32_MAX}) {
    return absl::InvalidArgumentError(internal::StrCat("bad index id for ", what));
  }
  return static_cast<IndexId>(v.int64());
}

}  // namespace

const IndexInfo* TableInfo::FindIndex(std::string_view index) const {
  for (const IndexInfo& info : indexes) {
    if (info.name == index) return &info;
  }
  return nullptr;
}

Value TableInfo::ToValue() const {
  Value::Object index_values;
  for (const IndexInfo& index : indexes) {
    Value::Array fields;
    for (const std::string& f : index.fields) fields.push_back(Value::String(f));
    index_values.emplace(index.name,
                         Value::FromObject({{"id", Value::Int64(index.id)},
                                            {"fields", Value::FromArray(std::move(fields))}}));
  }
  return Value::FromObject(
      {{"by_id", Value::Int64(by_id)}, {"indexes", Value::FromObject(std::move(index_values))}});
}

absl::StatusOr<TableInfo> TableInfo::FromValue(std::string name, const Value& value) {
  TableInfo table{.name = std::move(name)};
  const Value* by_id = value.Find("by_id");
  const Value* indexes = value.Find("indexes");
  if (by_id == nullptr || indexes == nullptr || !indexes->is_object()) {
    return absl::InvalidArgumentError("table info needs by_id and indexes");
  }
  TXFN_ASSIGN_OR_RETURN(table.by_id, ReadId(*by_id, "by_id"));
  for (const auto& [index_name, info] : indexes->object()) {
    const Value* id = info.Find("id");
    const Value* fields = info.Find("fields");
    if (id == nullptr || fields == nullptr || !fields->is_array()) {
      return absl::InvalidArgumentError(internal::StrCat("index '", index_name, "' is incomplete"));
    }
    IndexInfo index{.name = index_name};
    TXFN_ASSIGN_OR_RETURN(index.id, ReadId(*id, index_name));
    for (const Value& f : fields->array()) {
      if (!f.is_string()) return absl::InvalidArgumentError("index field is not a string");
      index.fields.push_back(f.string());
    }
    table.indexes.push_back(std::move(index));
  }
  return table;
}

namespace {

// 64-bit FNV-1a of `bytes`' length (8 bytes, little end first) and bytes, continuing from `h`:
// with the length in, ("ab", "c") and ("a", "bc") differ.
uint64_t Fnv1a(uint64_t h, std::string_view bytes) {
  constexpr uint64_t kPrime = 0x100000001b3ULL;
  uint64_t length = bytes.size();
  for (int i = 0; i < 8; ++i, length >>= 8) h = (h ^ (length & 0xff)) * kPrime;
  for (char c : bytes) h = (h ^ static_cast<unsigned char>(c)) * kPrime;
  return h;
}

}  // namespace

absl::StatusOr<TenantMetadata> TenantMetadata::FromEntries(absl::Span<const IndexEntry> entries) {
  namespace keys = metadata_keys;
  TenantMetadata md;
  for (const IndexEntry& entry : entries) {
    md.fingerprint_ = Fnv1a(md.fingerprint_, entry.key);
    md.fingerprint_ = Fnv1a(md.fingerprint_, entry.value);
    std::string_view key = entry.key;
    if (key == keys::kSchema) {
      absl::StatusOr<Value> value = DecodeBinary(entry.value);
      if (!value.ok()) return Malformed(key, internal::ToStd(value.status().message()));
      absl::StatusOr<Schema> schema = Schema::FromValue(*value);
      if (!schema.ok()) return Malformed(key, internal::ToStd(schema.status().message()));
      md.schema_ = *std::move(schema);
    } else if (key == keys::kState) {
      if (entry.value != "enabled" && entry.value != "disabled") return Malformed(key, "state");
      md.enabled_ = entry.value == "enabled";
    } else if (key == keys::kNextId) {
      if (!absl::SimpleAtoi(entry.value, &md.next_id_) || md.next_id_ == 0) {
        return Malformed(key, "not a positive integer");
      }
    } else if (key == keys::kFunctions) {
      absl::StatusOr<Value> value = DecodeBinary(entry.value);
      if (!value.ok()) return Malformed(key, internal::ToStd(value.status().message()));
      if (!value->is_object()) return Malformed(key, "not an object");
      md.functions_ = *std::move(value);
    } else if (key.starts_with(keys::kModulePrefix)) {
      key.remove_prefix(keys::kModulePrefix.size());
      md.modules_.emplace(std::string(key), entry.value);
    } else if (key.starts_with(keys::kTablePrefix)) {
      key.remove_prefix(keys::kTablePrefix.size());
      absl::StatusOr<Value> value = DecodeBinary(entry.value);
      if (!value.ok()) return Malformed(entry.key, internal::ToStd(value.status().message()));
      absl::StatusOr<TableInfo> table = TableInfo::FromValue(std::string(key), *value);
      if (!table.ok()) return Malformed(entry.key, internal::ToStd(table.status().message()));
      md.table_by_id_.emplace(table->by_id, table->name);
      std::string name = table->name;
      md.tables_.emplace(std::move(name), *std::move(table));
    } else {
      // A commit writing one is refused (the committer decodes what it would publish); so is
      // a later txfn's new key ("functions" was one on 2026-12-06): upgrade every process.
      return Malformed(key, "unknown key");
    }
  }
  return md;
}

const TableInfo* TenantMetadata::FindTable(std::string_view name) const {
  auto it = tables_.find(name);
  return it == tables_.end() ? nullptr : &it->second;
}

const TableInfo* TenantMetadata::FindTableById(IndexId by_id) const {
  auto it = table_by_id_.find(by_id);
  return it == table_by_id_.end() ? nullptr : FindTable(it->second);
}

}  // namespace txfn

// txfn/tenant_metadata.h — a tenant's system metadata, decoded into memory.
//
// Every tenant keeps its tables, index ids, schema, modules and state in the
// reserved index kMetadataIndex of its Storage namespace, written by ordinary
// transactions (Transaction::DeploySchema, PutModule, SetEnabled). A Snapshot
// decodes it once, so function execution reads metadata from memory, and a
// transaction that writes documents implicitly reads it, so a concurrent
// deploy conflicts with it.
//
//   const txfn::TenantMetadata& md = snapshot->metadata();
//   const txfn::TableInfo* messages = md.FindTable("messages");
//   const txfn::IndexInfo* by_channel = messages->FindIndex("by_channel");
//
// Thread safety: immutable; safe to share between threads.
#ifndef TXFN_TENANT_METADATA_H_
#define TXFN_TENANT_METADATA_H_

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "txfn/schema.h"
#include "txfn/storage.h"
#include "txfn/value.h"

namespace txfn {

// The index that holds a tenant's metadata. User indexes never use it.
inline constexpr IndexId kMetadataIndex = 0;

// Keys within kMetadataIndex.
namespace metadata_keys {
inline constexpr std::string_view kSchema = "schema";         // EncodeBinary(Schema::ToValue())
inline constexpr std::string_view kState = "state";           // "enabled" | "disabled"
inline constexpr std::string_view kNextId = "next_id";        // decimal; next IndexId to hand out
inline constexpr std::string_view kModulePrefix = "module/";  // + path -> source
inline constexpr std::string_view kTablePrefix = "table/";    // + name -> EncodeBinary(TableInfo)
// EncodeBinary of the exports the deploy of the current modules described
// (txfn/deploy.h, RecordFunctions); absent when the modules were written
// without it. txfn from before 2026-12-06 refuses metadata with it, as any
// txfn refuses keys it does not know.
inline constexpr std::string_view kFunctions = "functions";
}  // namespace metadata_keys

struct IndexInfo {
  std::string name;
  IndexId id = 0;
  std::vector<std::string> fields;
  friend bool operator==(const IndexInfo&, const IndexInfo&) = default;
};

struct TableInfo {
  std::string name;
  // The table's by_id index. Document ids carry it, so it also names the table.
  IndexId by_id = 0;
  std::vector<IndexInfo> indexes;  // secondary indexes
  friend bool operator==(const TableInfo&, const TableInfo&) = default;

  const IndexInfo* FindIndex(std::string_view index) const;
  Value ToValue() const;
  [[nodiscard]] static absl::StatusOr<TableInfo> FromValue(std::string name, const Value& value);
};

class TenantMetadata {
 public:
  // No tables, no modules, enabled, ids start at 1.
  TenantMetadata() = default;

  // Decodes the live entries of kMetadataIndex (as a Scan returns them).
  // InvalidArgument if an entry is malformed.
  [[nodiscard]] static absl::StatusOr<TenantMetadata> FromEntries(
      absl::Span<const IndexEntry> entries);

  const Schema& schema() const { return schema_; }
  bool enabled() const { return enabled_; }
  const std::map<std::string, std::string, std::less<>>& modules() const { return modules_; }
  const std::map<std::string, TableInfo, std::less<>>& tables() const { return tables_; }
  // The exports of modules() as their deploy described them (txfn/deploy.h,
  // RecordFunctions, which also decodes them: FunctionsFromValue); nullopt
  // when the modules were written without (PutModule, ReplaceModules, a deploy
  // that did not record them). Lets an engine check a mutation's ctx.scheduler
  // calls without running the modules.
  const std::optional<Value>& functions() const { return functions_; }
  const TableInfo* FindTable(std::string_view name) const;
  // The table whose by_id index is `by_id`; nullptr if none.
  const TableInfo* FindTableById(IndexId by_id) const;
  // The next IndexId to allocate; ids are never reused.
  IndexId next_id() const { return next_id_; }
  // A 64-bit fingerprint of the entries this was decoded from (FNV-1a over each key and value
  // with their lengths; the same in every process): equal metadata, equal fingerprint. Remote
  // runners key their metadata caches on it. Not a defence against a tenant crafting
  // collisions, which could only confuse the caches of its own metadata.
  uint64_t fingerprint() const { return fingerprint_; }

 private:
  Schema schema_;
  bool enabled_ = true;
  IndexId next_id_ = 1;
  uint64_t fingerprint_ = 0xcbf29ce484222325ULL;  // of no entries
  std::map<std::string, std::string, std::less<>> modules_;
  std::optional<Value> functions_;
  std::map<std::string, TableInfo, std::less<>> tables_;
  std::map<IndexId, std::string> table_by_id_;
};

}  // namespace txfn

#endif  // TXFN_TENANT_METADATA_H_

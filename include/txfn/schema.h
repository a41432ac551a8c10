// txfn/schema.h — a tenant's tables, their field validators and indexes.
//
// A schema declares every table a tenant may write. A table may list its
// fields (then documents must match them exactly: no missing required field,
// no unknown field) or leave them out (then any valid document is accepted).
// Secondary indexes are ordered lists of field paths; every table also has the
// implicit index "by_id".
//
//   auto schema = txfn::Schema::FromJson(R"({"tables": {
//     "messages": {
//       "fields":  {"channel": "string", "body": "string", "likes": "int64?"},
//       "indexes": {"by_channel": ["channel", "_creationTime"]}
//     }}})");
//
// Field types: "null", "int64", "float64", "bool", "string", "bytes", "array",
// "object", or "any"; a trailing "?" makes the field optional. These are the
// type names everywhere (argument validators too, function_runner.h); the
// JavaScript names "number", "bigint" and "boolean" are accepted as aliases of
// float64, int64 and bool. An unknown name's error lists the valid ones. Field and index
// names follow IsValidFieldName (value.h); index fields may be dotted paths
// ("author.name") and may name the system field "_creationTime".
//
// Thread safety: immutable after construction; safe to share between threads.
#ifndef TXFN_SCHEMA_H_
#define TXFN_SCHEMA_H_

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "txfn/value.h"

namespace txfn {

// The name of the implicit primary index of every table.
inline constexpr std::string_view kByIdIndexName = "by_id";

struct FieldSpec {
  std::string name;
  std::optional<ValueType> type;  // nullopt = any type
  bool optional = false;
  friend bool operator==(const FieldSpec&, const FieldSpec&) = default;
};

// Bounds a deploy enforces (Convex's): every write of a document writes an
// entry in each of its table's indexes, with the indexed values. Also at
// deploy: with a table's fields declared, its indexes use only those fields
// (or _creationTime).
inline constexpr size_t kMaxIndexesPerTable = 32;
inline constexpr size_t kMaxFieldsPerIndex = 16;

struct IndexSpec {
  std::string name;
  std::vector<std::string> fields;  // dotted paths, in key order
  friend bool operator==(const IndexSpec&, const IndexSpec&) = default;
};

struct TableSpec {
  std::string name;
  // nullopt: any document; otherwise exactly these fields.
  std::optional<std::vector<FieldSpec>> fields;
  std::vector<IndexSpec> indexes;
  friend bool operator==(const TableSpec&, const TableSpec&) = default;

  const IndexSpec* FindIndex(std::string_view index_name) const;
};

class Schema {
 public:
  // The empty schema: no tables.
  Schema() = default;

  // Parses the JSON form above. InvalidArgument naming the offending table,
  // field or index: unknown keys, bad type names, invalid or duplicate names,
  // an index named "by_id", an index with no fields.
  [[nodiscard]] static absl::StatusOr<Schema> FromJson(std::string_view json);
  [[nodiscard]] static absl::StatusOr<Schema> FromValue(const Value& value);
  // The JSON form as a Value; FromValue(ToValue()) == *this.
  Value ToValue() const;

  const std::vector<TableSpec>& tables() const { return tables_; }
  const TableSpec* FindTable(std::string_view table) const;

  // Checks a user document (without system fields) against `table`'s fields
  // and the document limits. NotFound if the table is not declared;
  // InvalidArgument naming the field otherwise.
  [[nodiscard]] absl::Status ValidateDocument(std::string_view table, const Value& doc,
                                              const DocumentLimits& limits = {}) const;

  friend bool operator==(const Schema&, const Schema&) = default;

 private:
  std::vector<TableSpec> tables_;  // sorted by name
};

}  // namespace txfn

#endif  // TXFN_SCHEMA_H_

// Schema parsing and document validation (txfn/schema.h).
#include "txfn/schema.h"

#include <algorithm>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_split.h"
#include "txfn/internal/strings.h"
#include "txfn/status_macros.h"

namespace txfn {
namespace {

constexpr std::string_view kCreationTimeField = "_creationTime";

// The schema's type names, and the JavaScript names argument validators also
// accept (function_runner.h); both say the same thing.
constexpr std::string_view kValidTypeNames =
    "null, int64, float64, bool, string, bytes, array, object, any (aliases: number = float64, "
    "bigint = int64, boolean = bool), with a trailing '?' for an optional field";

std::optional<ValueType> ParseTypeName(std::string_view name) {
  if (name == "number") return ValueType::kFloat64;
  if (name == "bigint") return ValueType::kInt64;
  if (name == "boolean") return ValueType::kBool;
  for (int t = 0; t <= static_cast<int>(ValueType::kObject); ++t) {
    if (ValueTypeName(static_cast<ValueType>(t)) == name) return static_cast<ValueType>(t);
  }
  return std::nullopt;
}

absl::StatusOr<FieldSpec> ParseFieldType(std::string_view table, std::string_view field,
                                         const Value& type) {
  if (!type.is_string()) {
    return absl::InvalidArgumentError(
        internal::StrCat("schema: table '", table, "' field '", field, "': type must be a string"));
  }
  std::string_view name = type.string();
  FieldSpec spec{.name = std::string(field)};
  if (name.ends_with('?')) {
    spec.optional = true;
    name.remove_suffix(1);
  }
  if (name == "any") return spec;
  if (std::optional<ValueType> t = ParseTypeName(name)) {
    spec.type = *t;
    return spec;
  }
  return absl::InvalidArgumentError(internal::StrCat("schema: table '", table, "' field '", field,
                                                     "': unknown type '", type.string(),
                                                     "'; valid types: ", kValidTypeNames));
}

absl::Status CheckIndexField(std::string_view table, std::string_view index,
                             std::string_view path) {
  if (path == kCreationTimeField) return absl::OkStatus();
  for (absl::string_view part : absl::StrSplit(internal::ToAbsl(path), '.')) {
    if (!IsValidFieldName(internal::ToStd(part))) {
      return absl::InvalidArgumentError(internal::StrCat(
          "schema: table '", table, "' index '", index, "': invalid field path '", path, "'"));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<TableSpec> ParseTable(std::string_view name, const Value& v) {
  if (!IsValidFieldName(name)) {
    return absl::InvalidArgumentError(internal::StrCat("schema: invalid table name '", name, "'"));
  }
  if (!v.is_object()) {
    return absl::InvalidArgumentError(
        internal::StrCat("schema: table '", name, "' must be an object"));
  }
  TableSpec table{.name = std::string(name)};
  for (const auto& [key, part] : v.object()) {
    if (key == "fields") {
      if (!part.is_object()) {
        return absl::InvalidArgumentError(
            internal::StrCat("schema: table '", name, "': \"fields\" must be an object"));
      }
      std::vector<FieldSpec> fields;
      for (const auto& [field, type] : part.object()) {
        if (!IsValidFieldName(field)) {
          return absl::InvalidArgumentError(
              internal::StrCat("schema: table '", name, "': invalid field name '", field, "'"));
        }
        TXFN_ASSIGN_OR_RETURN(FieldSpec spec, ParseFieldType(name, field, type));
        fields.push_back(std::move(spec));
      }
      table.fields = std::move(fields);
    } else if (key == "indexes") {
      if (!part.is_object()) {
        return absl::InvalidArgumentError(
            internal::StrCat("schema: table '", name, "': \"indexes\" must be an object"));
      }
      for (const auto& [index, paths] : part.object()) {
        if (index == kByIdIndexName || !IsValidFieldName(index)) {
          return absl::InvalidArgumentError(
              internal::StrCat("schema: table '", name, "': invalid index name '", index, "'"));
        }
        if (!paths.is_array() || paths.array().empty()) {
          return absl::InvalidArgumentError(
              internal::StrCat("schema: table '", name, "' index '", index,
                               "': needs a non-empty array of field paths"));
        }
        IndexSpec spec{.name = index};
        for (const Value& path : paths.array()) {
          if (!path.is_string()) {
            return absl::InvalidArgumentError(internal::StrCat(
                "schema: table '", name, "' index '", index, "': field paths must be strings"));
          }
          TXFN_RETURN_IF_ERROR(CheckIndexField(name, index, path.string()));
          spec.fields.push_back(path.string());
        }
        table.indexes.push_back(std::move(spec));
      }
    } else {
      return absl::InvalidArgumentError(
          internal::StrCat("schema: table '", name, "': unknown key '", key, "'"));
    }
  }
  return table;
}

}  // namespace

const IndexSpec* TableSpec::FindIndex(std::string_view index_name) const {
  for (const IndexSpec& index : indexes) {
    if (index.name == index_name) return &index;
  }
  return nullptr;
}

absl::StatusOr<Schema> Schema::FromJson(std::string_view json) {
  absl::StatusOr<Value> value = txfn::FromJson(json);
  if (!value.ok()) {
    return absl::InvalidArgumentError(internal::StrCat("schema: ", value.status().message()));
  }
  return FromValue(*value);
}

absl::StatusOr<Schema> Schema::FromValue(const Value& value) {
  if (!value.is_object()) {
    return absl::InvalidArgumentError("schema: must be an object with a \"tables\" object");
  }
  Schema schema;
  for (const auto& [key, part] : value.object()) {
    if (key != "tables") {
      return absl::InvalidArgumentError(internal::StrCat("schema: unknown key '", key, "'"));
    }
    if (!part.is_object()) {
      return absl::InvalidArgumentError("schema: \"tables\" must be an object");
    }
    for (const auto& [name, table] : part.object()) {
      TXFN_ASSIGN_OR_RETURN(TableSpec spec, ParseTable(name, table));
      schema.tables_.push_back(std::move(spec));
    }
  }
  return schema;  // std::map iteration already sorted tables and indexes by name
}

Value Schema::ToValue() const {
  Value::Object tables;
  for (const TableSpec& table : tables_) {
    Value::Object spec;
    if (table.fields.has_value()) {
      Value::Object fields;
      for (const FieldSpec& field : *table.fields) {
        std::string type(field.type ? ValueTypeName(*field.type) : "any");
        if (field.optional) type += '?';
        fields.emplace(field.name, Value::String(std::move(type)));
      }
      spec.emplace("fields", Value::FromObject(std::move(fields)));
    }
    Value::Object indexes;
    for (const IndexSpec& index : table.indexes) {
      Value::Array paths;
      for (const std::string& path : index.fields) paths.push_back(Value::String(path));
      indexes.emplace(index.name, Value::FromArray(std::move(paths)));
    }
    if (!indexes.empty()) spec.emplace("indexes", Value::FromObject(std::move(indexes)));
    tables.emplace(table.name, Value::FromObject(std::move(spec)));
  }
  return Value::FromObject({{"tables", Value::FromObject(std::move(tables))}});
}

const TableSpec* Schema::FindTable(std::string_view table) const {
  auto it =
      std::lower_bound(tables_.begin(), tables_.end(), table,
                       [](const TableSpec& t, std::string_view name) { return t.name < name; });
  return it != tables_.end() && it->name == table ? &*it : nullptr;
}

absl::Status Schema::ValidateDocument(std::string_view table, const Value& doc,
                                      const DocumentLimits& limits) const {
  const TableSpec* spec = FindTable(table);
  if (spec == nullptr) {
    return absl::NotFoundError(internal::StrCat("table '", table, "' is not in the schema"));
  }
  TXFN_RETURN_IF_ERROR(txfn::ValidateDocument(doc, limits));
  if (!spec->fields.has_value()) return absl::OkStatus();
  for (const FieldSpec& field : *spec->fields) {
    const Value* v = doc.Find(field.name);
    if (v == nullptr) {
      if (field.optional) continue;
      return absl::InvalidArgumentError(
          internal::StrCat("table '", table, "': missing required field '", field.name, "'"));
    }
    if (field.type.has_value() && v->type() != *field.type) {
      return absl::InvalidArgumentError(internal::StrCat("table '", table, "': field '", field.name,
                                                         "' must be ", ValueTypeName(*field.type),
                                                         ", got ", ValueTypeName(v->type())));
    }
  }
  for (const auto& [name, v] : doc.object()) {
    if (name.starts_with('_')) continue;  // system fields are checked by the transaction
    std::string_view field_name = name;   // clang 14 cannot capture a structured binding
    bool declared = std::any_of(spec->fields->begin(), spec->fields->end(),
                                [&](const FieldSpec& f) { return f.name == field_name; });
    if (!declared) {
      return absl::InvalidArgumentError(
          internal::StrCat("table '", table, "': field '", name, "' is not in the schema"));
    }
  }
  return absl::OkStatus();
}

}  // namespace txfn

// The deploy check (txfn/deploy.h).
#include "txfn/deploy.h"

#include <algorithm>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/str_split.h"
#include "txfn/call_records.h"
#include "txfn/errors.h"
#include "txfn/internal/strings.h"
#include "txfn/snapshot.h"
#include "txfn/status_macros.h"

namespace txfn {

using internal::StrCat;
using internal::ToAbsl;

namespace {

// Why `path` can be neither called ("path:export") nor imported (relative to another module),
// or "" if it can: "/abs.js", "../up.js", "lib//x.js" were deployed only to be never found.
// Other names (spaces, '@') stay allowed: a module only imported needs no function name.
std::string BadModulePath(std::string_view path) {
  constexpr size_t kMaxPathBytes = 200;  // a function name ("path:export") has at most 256
  if (path.empty()) return "empty";
  if (path.size() > kMaxPathBytes) return StrCat("over ", kMaxPathBytes, " bytes");
  for (char c : path) {
    const auto u = static_cast<unsigned char>(c);
    if (u < 0x20 || u == 0x7f) return "a control character";
    if (c == ':' || c == '\\') return "':' and '\\' are not allowed";
  }
  for (absl::string_view segment : absl::StrSplit(ToAbsl(path), '/')) {
    if (segment.empty()) return "a leading, trailing or doubled '/'";
    if (segment == "." || segment == "..") return "'.' and '..' are not allowed";
  }
  return "";
}

// Each module's path, and the sizes (kMaxModuleBytes, kMaxDeployBytes).
absl::Status CheckModules(const std::map<std::string, std::string>& modules) {
  size_t total = 0;
  for (const auto& [path, source] : modules) {
    if (std::string why = BadModulePath(path); !why.empty()) {
      return absl::InvalidArgumentError(StrCat("deploy refused: bad module path '",
                                               absl::CHexEscape(ToAbsl(path.substr(0, 200))),
                                               "': ", why));
    }
    if (source.size() > kMaxModuleBytes) {
      return absl::InvalidArgumentError(StrCat("deploy refused: module '", path, "' is ",
                                               source.size(), " bytes, over the limit of ",
                                               kMaxModuleBytes, " per module"));
    }
    total += source.size();
  }
  if (total > kMaxDeployBytes) {
    return absl::InvalidArgumentError(StrCat("deploy refused: the modules are ", total,
                                             " bytes in all, over the limit of ", kMaxDeployBytes));
  }
  return absl::OkStatus();
}

// At most kMaxIndexesPerTable indexes of at most kMaxFieldsPerIndex fields each; and with its
// fields declared, a table's documents have no others: an index on another field would index
// nothing (most likely a typo). Checked at deploy, not when a schema is parsed: schemas
// deployed before these checks must still load.
absl::Status CheckIndexes(const Schema& schema) {
  for (const TableSpec& table : schema.tables()) {
    // Every write of a document writes an entry in each index, with the
    // indexed values: Convex's bounds keep that cost in proportion.
    if (table.indexes.size() > kMaxIndexesPerTable) {
      return absl::InvalidArgumentError(
          StrCat("deploy refused: schema: table '", table.name, "' has ", table.indexes.size(),
                 " indexes, over the limit of ", kMaxIndexesPerTable));
    }
    for (const IndexSpec& index : table.indexes) {
      for (size_t i = 0; i < index.fields.size(); ++i) {
        if (std::find(index.fields.begin(), index.fields.begin() + i, index.fields[i]) !=
            index.fields.begin() + i) {
          return absl::InvalidArgumentError(StrCat("deploy refused: schema: table '", table.name,
                                                   "' index '", index.name, "' lists field '",
                                                   index.fields[i], "' twice"));
        }
      }
      if (index.fields.size() > kMaxFieldsPerIndex) {
        return absl::InvalidArgumentError(
            StrCat("deploy refused: schema: table '", table.name, "' index '", index.name, "' has ",
                   index.fields.size(), " fields, over the limit of ", kMaxFieldsPerIndex));
      }
    }
    if (!table.fields.has_value()) continue;
    for (const IndexSpec& index : table.indexes) {
      for (const std::string& path : index.fields) {
        const std::string_view top = std::string_view(path).substr(0, path.find('.'));
        if (path == "_creationTime" ||
            std::any_of(table.fields->begin(), table.fields->end(),
                        [&](const FieldSpec& f) { return f.name == top; })) {
          continue;
        }
        return absl::InvalidArgumentError(StrCat("deploy refused: schema: table '", table.name,
                                                 "' index '", index.name, "': field '", top,
                                                 "' is not among the table's \"fields\""));
      }
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status StageDeploy(Transaction& txn, const std::map<std::string, std::string>& modules,
                         const Schema& schema) {
  TXFN_RETURN_IF_ERROR(CheckModules(modules));
  TXFN_RETURN_IF_ERROR(CheckIndexes(schema));
  if (absl::Status s = txn.DeploySchema(schema); !s.ok()) {
    return Prefixed(s, "deploy refused: schema");
  }
  return txn.ReplaceModules(modules);
}

absl::StatusOr<std::map<std::string, FunctionInfo>> DescribeDeploy(FunctionRunner& runner,
                                                                   const Transaction& txn) {
  // The modules as they would be installed: a snapshot at the transaction's
  // begin with its (staged) metadata.
  auto candidate =
      std::make_shared<const Snapshot>(txn.snapshot().storage(), txn.tenant(), txn.begin_ts(),
                                       std::make_shared<const TenantMetadata>(txn.metadata()));
  absl::StatusOr<std::map<std::string, FunctionInfo>> functions =
      runner.DescribeFunctions(std::move(candidate));
  if (!functions.ok()) {
    const absl::Status& s = functions.status();
    if (absl::IsResourceExhausted(s) || absl::IsUnavailable(s)) return s;
    return absl::InvalidArgumentError(StrCat("deploy refused: ", s.message()));
  }
  for (const auto& [name, info] : *functions) {
    if (absl::Status s = ParseFunctionAttributes(info.attributes).status(); !s.ok()) {
      return absl::InvalidArgumentError(
          StrCat("deploy refused: ", FunctionKindName(info.kind), " ", name, ": ", s.message()));
    }
  }
  return functions;
}

// The version of FunctionsToValue's encoding: a record of another is not read (the modules are
// described again), so a later change of what DescribeFunctions reports cannot be misread.
constexpr int64_t kFunctionsRecordVersion = 1;

Value FunctionsToValue(const std::map<std::string, FunctionInfo>& functions) {
  Value::Object out;
  for (const auto& [name, info] : functions) {
    out.emplace(
        name, Value::FromObject({{"kind", Value::String(std::string(FunctionKindName(info.kind)))},
                                 {"attributes", info.attributes},
                                 {"args", info.args}}));
  }
  return Value::FromObject({{"version", Value::Int64(kFunctionsRecordVersion)},
                            {"functions", Value::FromObject(std::move(out))}});
}

absl::StatusOr<std::map<std::string, FunctionInfo>> FunctionsFromValue(const Value& value) {
  const Value* version = value.is_object() ? value.Find("version") : nullptr;
  const Value* functions = value.is_object() ? value.Find("functions") : nullptr;
  if (version == nullptr || !version->is_int64() || functions == nullptr ||
      !functions->is_object()) {
    return absl::InvalidArgumentError("functions: malformed record");
  }
  if (version->int64() != kFunctionsRecordVersion) {
    return absl::InvalidArgumentError(StrCat("functions: a record of version ", version->int64(),
                                             "; this txfn reads version ",
                                             kFunctionsRecordVersion));
  }
  std::map<std::string, FunctionInfo> out;
  for (const auto& [name, entry] : functions->object()) {
    const Value* kind = entry.is_object() ? entry.Find("kind") : nullptr;
    const Value* attributes = entry.is_object() ? entry.Find("attributes") : nullptr;
    const Value* args = entry.is_object() ? entry.Find("args") : nullptr;
    if (kind == nullptr || !kind->is_string() || attributes == nullptr || args == nullptr) {
      return absl::InvalidArgumentError(StrCat("functions: ", name, ": malformed"));
    }
    // The names FunctionsToValue wrote (FunctionKindName), as DeclaredKind reads them.
    std::optional<FunctionKind> named;
    for (FunctionKind k : {FunctionKind::kQuery, FunctionKind::kMutation, FunctionKind::kAction}) {
      if (kind->string() == FunctionKindName(k)) named = k;
    }
    if (!named.has_value()) {
      return absl::InvalidArgumentError(
          StrCat("functions: ", name, ": unknown kind '", kind->string(), "'"));
    }
    FunctionInfo& info = out[name];
    info.kind = *named;
    info.attributes = *attributes;
    info.args = *args;
  }
  return out;
}

absl::Status RecordFunctions(Transaction& txn,
                             const std::map<std::string, FunctionInfo>& functions) {
  return txn.SetFunctions(FunctionsToValue(functions));
}

absl::Status CheckDeploy(FunctionRunner& runner, const Transaction& txn) {
  return DescribeDeploy(runner, txn).status();
}

absl::Status DeployTenant(OpenTenant& tenant, FunctionRunner& runner,
                          const std::map<std::string, std::string>& modules, const Schema& schema,
                          const RetryOptions& retry,
                          const std::function<void(bool will_retry)>& on_conflict,
                          std::map<std::string, FunctionInfo>* functions) {
  // Paths are checked before any transaction runs.
  TXFN_RETURN_IF_ERROR(CheckModules(modules));
  std::map<std::string, FunctionInfo> described;
  TXFN_RETURN_IF_ERROR(tenant
                           .CommitSystemTransaction(
                               [&](Transaction& txn) -> absl::Status {
                                 TXFN_RETURN_IF_ERROR(StageDeploy(txn, modules, schema));
                                 TXFN_ASSIGN_OR_RETURN(described, DescribeDeploy(runner, txn));
                                 return RecordFunctions(txn, described);
                               },
                               retry, on_conflict)
                           .status());
  if (functions != nullptr) *functions = std::move(described);
  return absl::OkStatus();
}

}  // namespace txfn

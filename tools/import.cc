// ImportJsonLines: see tools/import.h.
#include "tools/import.h"

#include <algorithm>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "fmt/format.h"
#include "txfn/document_id.h"
#include "txfn/errors.h"
#include "txfn/retry.h"
#include "txfn/snapshot.h"
#include "txfn/status_macros.h"
#include "txfn/transaction.h"
#include "txfn/value.h"

namespace txfn::tools {
namespace {

struct Line {
  size_t number = 0;  // 1-based line of the input
  std::string table;
  Value doc;
  size_t bytes = 0;
};

absl::Status AtLine(size_t number, const absl::Status& status) {
  return Prefixed(status, fmt::format("line {}", number));
}

// The table a document was exported from: by its "_table" (written by exports since
// session 24), which must then agree with the table its id names unless the ids are remapped;
// else (an older export) by its id's table. Sets *new_id when the id must be remapped.
absl::StatusOr<const TableInfo*> TableOf(const Value& doc, const std::string& id,
                                         const TenantMetadata& metadata,
                                         const ImportOptions& options, std::string* new_id) {
  TXFN_ASSIGN_OR_RETURN(IndexId id_table, DocumentIdTable(id));
  const Value* named = doc.Find(kExportTableField);
  if (named == nullptr) {
    const TableInfo* table = metadata.FindTableById(id_table);
    if (table == nullptr) {
      return absl::InvalidArgumentError(
          fmt::format("document {} names table id {}, which the tenant does not have: deploy "
                      "the schema of the tenant it was exported from first",
                      id, id_table));
    }
    return table;
  }
  if (!named->is_string()) {
    return absl::InvalidArgumentError(
        fmt::format("document {}: {} must be a table name (a string)", id, kExportTableField));
  }
  const TableInfo* table = metadata.FindTable(named->string());
  if (table == nullptr) {
    return absl::InvalidArgumentError(
        fmt::format("document {} is of table '{}', which the tenant does not have: deploy the "
                    "schema of the tenant it was exported from first",
                    id, named->string()));
  }
  if (table->by_id == id_table) return table;
  if (!options.remap_ids) {
    return absl::InvalidArgumentError(fmt::format(
        "document {} is of table '{}', whose id here is {}, not {} as where it was exported "
        "(a table's id follows the order its tenant's tables and indexes were made in): "
        "--remap_ids gives such documents ids of this tenant's tables (and rewrites references "
        "to them in the imported documents), or deploy the exporting tenant's schema versions "
        "in the order it had them",
        id, table->name, table->by_id, id_table));
  }
  TXFN_ASSIGN_OR_RETURN(*new_id, DocumentIdWithTable(id, table->by_id));
  return table;
}

// `v` with every string that is a key of `ids` replaced by its value.
Value Remapped(const Value& v, const absl::flat_hash_map<std::string, std::string>& ids) {
  switch (v.type()) {
    case ValueType::kString: {
      auto it = ids.find(v.string());
      return it == ids.end() ? v : Value::String(it->second);
    }
    case ValueType::kArray: {
      Value::Array out;
      out.reserve(v.array().size());
      for (const Value& element : v.array()) out.push_back(Remapped(element, ids));
      return Value::FromArray(std::move(out));
    }
    case ValueType::kObject: {
      Value::Object out;
      for (const auto& [name, field] : v.object()) out.emplace(name, Remapped(field, ids));
      return Value::FromObject(std::move(out));
    }
    default:
      return v;
  }
}

// Parses the input and finds each document's table.
absl::StatusOr<std::vector<Line>> Parse(std::istream& in, const TenantMetadata& metadata,
                                        const ImportOptions& options) {
  std::vector<Line> lines;
  absl::flat_hash_set<std::string> ids;
  absl::flat_hash_map<std::string, std::string> remapped;  // exported id -> id here
  constexpr size_t kNone = std::numeric_limits<size_t>::max();
  size_t first_named = kNone, first_unnamed = kNone;  // lines with and without "_table"
  std::string text;
  for (size_t number = 1; std::getline(in, text); ++number) {
    if (text.find_first_not_of(" \t\r") == std::string::npos) continue;
    absl::StatusOr<Value> doc = FromJson(text);
    if (!doc.ok()) return AtLine(number, doc.status());
    if (!doc->is_object()) {
      return AtLine(number, absl::InvalidArgumentError("a document must be a JSON object"));
    }
    const Value* id = doc->Find("_id");
    if (id == nullptr || !id->is_string()) {
      return AtLine(number, absl::InvalidArgumentError("the document has no string _id"));
    }
    std::string new_id;
    absl::StatusOr<const TableInfo*> table =
        TableOf(*doc, id->string(), metadata, options, &new_id);
    if (!table.ok()) return AtLine(number, table.status());
    if (!options.table.empty() && (*table)->name != options.table) {
      return AtLine(number, absl::InvalidArgumentError(
                                fmt::format("document {} belongs to table '{}', not '{}'",
                                            id->string(), (*table)->name, options.table)));
    }
    if (!ids.insert(id->string()).second) {
      return AtLine(number, absl::InvalidArgumentError(
                                fmt::format("document {} appears twice", id->string())));
    }
    if (!new_id.empty()) remapped.emplace(id->string(), std::move(new_id));
    const bool named = doc->Find(kExportTableField) != nullptr;
    if (named) {
      Value::Object fields = doc->object();
      fields.erase(std::string(kExportTableField));
      *doc = Value::FromObject(std::move(fields));
      first_named = std::min(first_named, number);
    } else {
      first_unnamed = std::min(first_unnamed, number);
    }
    lines.push_back({.number = number, .table = (*table)->name, .doc = *std::move(doc)});
  }
  if (in.bad()) return absl::UnavailableError("reading the input failed");
  // A line without "_table" goes by the table its id names, which is what goes wrong when
  // tables are numbered otherwise: only an input of such lines alone is taken that way.
  if (first_unnamed != kNone && (first_named != kNone || options.remap_ids)) {
    return AtLine(first_unnamed,
                  absl::InvalidArgumentError(
                      fmt::format("the document names no table ({}){}", kExportTableField,
                                  options.remap_ids ? ": --remap_ids needs every document's table"
                                                    : ", where others do: export again")));
  }
  // Each id moved to its table's id here, and every reference to it; the ids must stay unique
  // (without a remapped id they are the ones `ids` checked).
  absl::flat_hash_set<std::string> remapped_ids;
  for (Line& line : lines) {
    if (!remapped.empty()) {
      line.doc = Remapped(line.doc, remapped);
      const std::string& id = line.doc.Find("_id")->string();
      if (!remapped_ids.insert(id).second) {
        return AtLine(line.number, absl::InvalidArgumentError(fmt::format(
                                       "document id {} appears twice once remapped", id)));
      }
    }
    line.bytes = line.doc.ByteSize();
  }
  return lines;
}

// Splits `lines` into batches [first, last) by the options' bounds.
std::vector<std::pair<size_t, size_t>> Batches(const std::vector<Line>& lines,
                                               const ImportOptions& options) {
  std::vector<std::pair<size_t, size_t>> batches;
  size_t first = 0, bytes = 0;
  for (size_t i = 0; i < lines.size(); ++i) {
    const bool full = i > first && (i - first >= options.batch_documents ||
                                    bytes + lines[i].bytes > options.batch_bytes);
    if (full) {
      batches.emplace_back(first, i);
      first = i;
      bytes = 0;
    }
    bytes += lines[i].bytes;
  }
  if (first < lines.size()) batches.emplace_back(first, lines.size());
  return batches;
}

absl::Status ImportBatch(Transaction& txn, const std::vector<Line>& lines, size_t first,
                         size_t last) {
  for (size_t i = first; i < last; ++i) {
    absl::Status s = txn.ImportDocument(lines[i].table, lines[i].doc);
    if (!s.ok()) return AtLine(lines[i].number, s);
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<ImportReport> ImportJsonLines(Committer& committer, std::istream& in,
                                             const ImportOptions& options) {
  if (options.remap_ids && !options.table.empty()) {
    return absl::InvalidArgumentError(
        "--remap_ids rewrites references between the documents it imports: import every table "
        "at once (without --table)");
  }
  std::shared_ptr<const Snapshot> snapshot = committer.Latest();
  if (!options.table.empty() && snapshot->metadata().FindTable(options.table) == nullptr) {
    return absl::NotFoundError(
        fmt::format("tenant '{}' has no table '{}'", committer.tenant(), options.table));
  }
  TXFN_ASSIGN_OR_RETURN(std::vector<Line> lines, Parse(in, snapshot->metadata(), options));
  const std::vector<std::pair<size_t, size_t>> batches = Batches(lines, options);
  // Validate everything (schema, free ids) before writing anything.
  for (const auto& [first, last] : batches) {
    Transaction dry_run(snapshot);
    TXFN_RETURN_IF_ERROR(ImportBatch(dry_run, lines, first, last));
  }
  ImportReport report;
  for (const auto& [first, last] : batches) {
    absl::StatusOr<CommitOutcome> committed =
        RunTransaction(committer, [&, first = first, last = last](Transaction& txn) {
          return ImportBatch(txn, lines, first, last);
        });
    if (!committed.ok()) {
      return absl::Status(
          committed.status().code(),
          fmt::format("imported {} document(s){} before this failed: {}", report.documents,
                      report.documents == 0
                          ? std::string()
                          : fmt::format(" (up to line {})", lines[first - 1].number),
                      std::string(committed.status().message())));
    }
    report.documents += last - first;
    ++report.transactions;
  }
  return report;
}

}  // namespace txfn::tools

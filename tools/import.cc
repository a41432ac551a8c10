// ImportJsonLines: see tools/import.h.
#include "tools/import.h"

#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "fmt/format.h"
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

// Parses the input and finds each document's table.
absl::StatusOr<std::vector<Line>> Parse(std::istream& in, const TenantMetadata& metadata,
                                        const ImportOptions& options) {
  std::vector<Line> lines;
  absl::flat_hash_set<std::string> ids;
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
    absl::StatusOr<IndexId> table_id = DocumentIdTable(id->string());
    if (!table_id.ok()) return AtLine(number, table_id.status());
    const TableInfo* table = metadata.FindTableById(*table_id);
    if (table == nullptr) {
      return AtLine(number,
                    absl::InvalidArgumentError(fmt::format(
                        "document {} names table id {}, which the tenant does not have: deploy "
                        "the schema of the tenant it was exported from first",
                        id->string(), *table_id)));
    }
    if (!options.table.empty() && table->name != options.table) {
      return AtLine(number, absl::InvalidArgumentError(
                                fmt::format("document {} belongs to table '{}', not '{}'",
                                            id->string(), table->name, options.table)));
    }
    if (!ids.insert(id->string()).second) {
      return AtLine(number, absl::InvalidArgumentError(
                                fmt::format("document {} appears twice", id->string())));
    }
    const size_t bytes = doc->ByteSize();
    lines.push_back(
        {.number = number, .table = table->name, .doc = *std::move(doc), .bytes = bytes});
  }
  if (in.bad()) return absl::UnavailableError("reading the input failed");
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

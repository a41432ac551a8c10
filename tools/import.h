// tools/import.h — imports documents as `txfn export` writes them.
//
// The input is JSON lines: one document per line, with its _id, its
// _creationTime and the name of its table in "_table", as `txfn export`
// prints them; blank lines are skipped. Documents keep their ids, so
// references between them survive an export → import round trip.
//
// An id names its table by the table's id, and a table's id follows the order
// its tenant's tables and indexes were made in: the same final schema deployed
// into a new tenant may number the tables otherwise (the tenant exported
// added a table later). Each document goes to the table its "_table" names;
// if that table's id here differs from the one its _id names, the import is
// refused (naming the document and both ids) unless `remap_ids`: then the
// document gets the id of that table here (time and random part kept), and
// every string in the imported documents equal to its old id (a reference to
// it) is rewritten. Import every table in one input then (remap_ids refuses a
// `table`): a reference from a document imported another time is not
// rewritten. Lines without "_table" (exports of txfn before session 24) go to
// the table their id names, only in an input of such lines alone and without
// remap_ids. (txfn before session 24 refuses "_table", a reserved field.)
//
//   std::ifstream in("bank.jsonl");
//   absl::StatusOr<txfn::tools::ImportReport> report =
//       txfn::tools::ImportJsonLines(*committer, in, {});
//
// Atomicity, in documented batches: every line is parsed and validated first
// (JSON, the table its id names, the schema, ids free in the tenant and unique
// in the input), and nothing is written if any line fails — the error names
// the line. Then the documents are committed in order, in transactions of at
// most `batch_documents` documents and `batch_bytes` bytes (a transaction has
// write limits), each retried on conflict. If a commit fails (storage, or a
// concurrent writer took an id), the batches before it stay committed and the
// error says how many documents (lines) were imported.
//
// Thread safety: a free function; the committer is thread-safe. The input
// stream belongs to the caller.
#ifndef TXFN_TOOLS_IMPORT_H_
#define TXFN_TOOLS_IMPORT_H_

#include <cstddef>
#include <istream>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "txfn/committer.h"

namespace txfn::tools {

// The field `txfn export` adds to each line: the name of the document's table.
inline constexpr std::string_view kExportTableField = "_table";

struct ImportOptions {
  // If set, every document must belong to this table (InvalidArgument otherwise).
  std::string table;
  // Give documents whose table has another id here ids of this tenant's tables (see above).
  bool remap_ids = false;
  size_t batch_documents = 500;
  size_t batch_bytes = size_t{4} << 20;
};

struct ImportReport {
  size_t documents = 0;
  size_t transactions = 0;
};

// Errors: InvalidArgument naming the line (not JSON, not an object, no or a
// bad _id, a table the tenant does not have, a table whose id here differs
// without remap_ids, a line without "_table" among lines with it or with
// remap_ids, a schema violation, an id that appears twice, before or after
// remapping), InvalidArgument for remap_ids with a table, AlreadyExists naming
// the line (the tenant has that id), NotFound (--table names no table); a
// commit's error, prefixed with what was imported before it.
[[nodiscard]] absl::StatusOr<ImportReport> ImportJsonLines(Committer& committer, std::istream& in,
                                                           const ImportOptions& options);

}  // namespace txfn::tools

#endif  // TXFN_TOOLS_IMPORT_H_

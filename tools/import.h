// tools/import.h — imports documents as `txfn export` writes them.
//
// The input is JSON lines: one document per line, with its _id (which names
// its table) and _creationTime, as `txfn export` prints them; blank lines are
// skipped. Documents keep their ids, so references between them survive an
// export → import round trip into a tenant deployed with the same schema (its
// tables then have the same ids).
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

#include "absl/status/statusor.h"
#include "txfn/committer.h"

namespace txfn::tools {

struct ImportOptions {
  // If set, every document must belong to this table (InvalidArgument otherwise).
  std::string table;
  size_t batch_documents = 500;
  size_t batch_bytes = size_t{4} << 20;
};

struct ImportReport {
  size_t documents = 0;
  size_t transactions = 0;
};

// Errors: InvalidArgument naming the line (not JSON, not an object, no or a
// bad _id, a table the tenant does not have, a schema violation, an id that
// appears twice), AlreadyExists naming the line (the tenant has that id),
// NotFound (--table names no table); a commit's error, prefixed with what was
// imported before it.
[[nodiscard]] absl::StatusOr<ImportReport> ImportJsonLines(Committer& committer, std::istream& in,
                                                           const ImportOptions& options);

}  // namespace txfn::tools

#endif  // TXFN_TOOLS_IMPORT_H_

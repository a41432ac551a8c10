// txfn/document_id.h — document ids: what `_id` looks like and how it names
// its table.
//
// An id is 32 characters of lowercase base32 (Crockford's alphabet, which
// keeps byte order) encoding 20 bytes: 16 bytes from the transaction (its
// begin time in milliseconds, 6 bytes big-endian; the id's number in the
// transaction, 2 bytes big-endian; then 8 random bytes), then the table's
// by_id IndexId (4 bytes, big-endian). So an id names its table, cannot be
// guessed (64 random bits), the ids one transaction makes sort in the order
// it made them (its inserts come back from by_id in that order), and ids of
// later transactions sort after earlier ones: ordered structures keyed by id
// append rather than insert at random places.
//
//   std::string id = txfn::MakeDocumentId(table, bytes16);  // 32 characters
//   absl::StatusOr<txfn::IndexId> by_id = txfn::DocumentIdTable(id);
//
// Transactions make ids (Transaction::Insert); hosts need these to check an
// id or find its table (an import, a tool). Thread safety: pure functions.
#ifndef TXFN_DOCUMENT_ID_H_
#define TXFN_DOCUMENT_ID_H_

#include <cstddef>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "txfn/storage.h"

namespace txfn {

inline constexpr size_t kDocumentIdLength = 32;

// The id of a document of the table whose by_id index is `table`, from the
// first 16 bytes of `bytes16` (time and random part, as above).
std::string MakeDocumentId(IndexId table, std::string_view bytes16);
// The table (by_id IndexId) an id names; InvalidArgument if malformed.
[[nodiscard]] absl::StatusOr<IndexId> DocumentIdTable(std::string_view id);
// `id` with its table replaced by `table` (the time and random part kept), for a document
// moved to a table of another id (an import: tools/import.h); InvalidArgument if malformed.
[[nodiscard]] absl::StatusOr<std::string> DocumentIdWithTable(std::string_view id, IndexId table);

}  // namespace txfn

#endif  // TXFN_DOCUMENT_ID_H_

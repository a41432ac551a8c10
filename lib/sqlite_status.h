// Internal: how txfn's SQLite adapters (SqliteStorage, SqliteQueue) map an
// SQLite result code to a status code. Not installed.
#ifndef TXFN_LIB_SQLITE_STATUS_H_
#define TXFN_LIB_SQLITE_STATUS_H_

#include <sqlite3.h>

#include "absl/status/status.h"

namespace txfn::internal {

// Corruption is DataLoss, a value too large InvalidArgument, misuse Internal,
// the rest (I/O, locking, a full disk, out of memory) Unavailable: worth a
// retry.
inline absl::StatusCode SqliteStatusCode(int rc) {
  switch (rc & 0xff) {
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
      return absl::StatusCode::kDataLoss;
    case SQLITE_TOOBIG:
      return absl::StatusCode::kInvalidArgument;
    case SQLITE_MISUSE:
      return absl::StatusCode::kInternal;
    default:
      return absl::StatusCode::kUnavailable;
  }
}

}  // namespace txfn::internal

#endif  // TXFN_LIB_SQLITE_STATUS_H_

// Internal: the online backup both SQLite adapters (SqliteStorage, SqliteQueue)
// make of their file. Not installed.
#ifndef TXFN_LIB_SQLITE_BACKUP_H_
#define TXFN_LIB_SQLITE_BACKUP_H_

#include <sqlite3.h>

#include <filesystem>
#include <string>
#include <string_view>
#include <system_error>

#include "absl/status/status.h"
#include "fmt/format.h"
#include "lib/sqlite_status.h"

namespace txfn::internal {

// Copies the database open on `source` ("main") into the new file `dest_path`
// in one backup step, i.e. under one read transaction: a consistent snapshot
// while writers go on (WAL). The copy is written beside the destination
// (dest_path + ".partial") and renamed into place when complete, so a failed
// backup leaves nothing under the destination's name. `who` (such as
// "SqliteStorage::Backup") and `source_path` name things in errors:
// InvalidArgument (empty dest_path), AlreadyExists (dest_path exists: never
// overwritten), otherwise SqliteStatusCode's. The caller keeps `source` to
// itself for the call.
inline absl::Status BackupToNewFile(sqlite3* source, std::string_view source_path,
                                    const std::string& dest_path, std::string_view who) {
  std::error_code ec;
  if (dest_path.empty())
    return absl::InvalidArgumentError(fmt::format("{}: empty destination path", who));
  if (std::filesystem::exists(dest_path, ec)) {
    return absl::AlreadyExistsError(
        fmt::format("{}: '{}' exists; back up to a new file", who, dest_path));
  }
  const std::string partial = dest_path + ".partial";
  std::filesystem::remove(partial, ec);
  sqlite3* dest = nullptr;
  int rc =
      sqlite3_open_v2(partial.c_str(), &dest, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, nullptr);
  if (rc == SQLITE_OK) {
    sqlite3_backup* backup = sqlite3_backup_init(dest, "main", source, "main");
    if (backup == nullptr) {
      rc = sqlite3_errcode(dest);
    } else {
      rc = sqlite3_backup_step(backup, -1);
      const int finish = sqlite3_backup_finish(backup);
      rc = rc == SQLITE_DONE ? finish : rc;
    }
  }
  const std::string error = rc == SQLITE_OK ? "" : sqlite3_errstr(rc);
  rc = rc == SQLITE_OK ? sqlite3_close(dest) : (sqlite3_close(dest), rc);  // synced by its commit
  if (rc != SQLITE_OK) {
    std::filesystem::remove(partial, ec);
    return {SqliteStatusCode(rc), fmt::format("{}: copy of '{}' into '{}': {}", who, source_path,
                                              partial, error.empty() ? sqlite3_errstr(rc) : error)};
  }
  std::filesystem::rename(partial, dest_path, ec);
  if (ec) {
    std::filesystem::remove(partial, ec);
    return absl::UnavailableError(
        fmt::format("{}: rename '{}' to '{}': {}", who, partial, dest_path, ec.message()));
  }
  return absl::OkStatus();
}

}  // namespace txfn::internal

#endif  // TXFN_LIB_SQLITE_BACKUP_H_

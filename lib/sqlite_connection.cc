// SqliteStorage's SQL: every statement's text, the schema and its
// migrations, and opening a connection on the file (lib/sqlite_connection.h).
#include "lib/sqlite_connection.h"

#include <sqlite3.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/container/inlined_vector.h"
#include "absl/strings/escaping.h"
#include "absl/strings/string_view.h"
#include "absl/utility/utility.h"
#include "fmt/core.h"
#include "lib/sqlite_status.h"
#include "txfn/internal/mutex.h"
#include "txfn/internal/strings.h"
#include "txfn/status_macros.h"

namespace txfn {
namespace {

constexpr std::array<const char*, static_cast<size_t>(Sql::kCount)> kSqlText = {
    "BEGIN",
    "BEGIN IMMEDIATE",
    "COMMIT",
    "ROLLBACK",
    "SELECT max_ts FROM tenants WHERE tenant = ?1",
    "INSERT INTO tenants(tenant, max_ts) VALUES(?1, ?2) "
    "ON CONFLICT(tenant) DO UPDATE SET max_ts = excluded.max_ts",
    "INSERT INTO commits(tenant, ts) VALUES(?1, ?2)",
    "INSERT INTO versions(tenant, index_id, key, ts, value) VALUES(?1, ?2, ?3, ?4, ?5)",
    // The log keeps which keys a commit wrote, in Write order; the values are
    // the versions' (one copy of each document on disk).
    "INSERT INTO log(tenant, ts, seq, index_id, key) VALUES(?1, ?2, ?3, ?4, ?5)",
    // Get: one seek to the newest version at or before ts, and (in the same
    // statement, hence snapshot) the tenant's retention horizon.
    "SELECT ts, value, (SELECT horizon FROM tenants WHERE tenant = ?1) FROM versions "
    "WHERE tenant = ?1 AND index_id = ?2 AND key = ?3 AND ts <= ?4 ORDER BY ts DESC LIMIT 1",
    // Scans walk the primary key in order (no sort); ?3 start, ?4 end, ?5 ts.
    "SELECT key, ts, value FROM versions WHERE tenant = ?1 AND index_id = ?2 AND key >= ?3 "
    "AND ts <= ?5 ORDER BY key, ts",
    "SELECT key, ts, value FROM versions WHERE tenant = ?1 AND index_id = ?2 AND key >= ?3 "
    "AND key < ?4 AND ts <= ?5 ORDER BY key, ts",
    "SELECT key, ts, value FROM versions WHERE tenant = ?1 AND index_id = ?2 AND key >= ?3 "
    "AND ts <= ?5 ORDER BY key DESC, ts DESC",
    "SELECT key, ts, value FROM versions WHERE tenant = ?1 AND index_id = ?2 AND key >= ?3 "
    "AND key < ?4 AND ts <= ?5 ORDER BY key DESC, ts DESC",
    "SELECT ts FROM commits WHERE tenant = ?1 AND ts > ?2 ORDER BY ts LIMIT ?3",
    // A log entry's value is its version: one primary-key seek each. Every
    // version after the retention horizon is kept, so a missing one (v.ts
    // NULL) is corruption, not a tombstone.
    "SELECT l.ts, l.index_id, l.key, v.value, v.ts IS NOT NULL FROM log AS l "
    "LEFT JOIN versions AS v ON v.tenant = l.tenant AND v.index_id = l.index_id "
    "AND v.key = l.key AND v.ts = l.ts "
    "WHERE l.tenant = ?1 AND l.ts > ?2 AND l.ts <= ?3 ORDER BY l.ts, l.seq",
    "SELECT tenant FROM tenants ORDER BY tenant",
    "DELETE FROM versions WHERE tenant = ?1",
    "DELETE FROM log WHERE tenant = ?1",
    "DELETE FROM commits WHERE tenant = ?1",
    "DELETE FROM tenants WHERE tenant = ?1",
    "SELECT horizon FROM tenants WHERE tenant = ?1",
    // Retention: the commits after the horizon (the only ones left) up to ?2.
    "SELECT ts FROM commits WHERE tenant = ?1 AND ts <= ?2 ORDER BY ts LIMIT ?3",
    "SELECT index_id, key FROM log WHERE tenant = ?1 AND ts <= ?2",
    // Every version of a key older than its newest one at or before ?4 ...
    "DELETE FROM versions WHERE tenant = ?1 AND index_id = ?2 AND key = ?3 AND ts < "
    "(SELECT max(ts) FROM versions WHERE tenant = ?1 AND index_id = ?2 AND key = ?3 AND ts <= ?4)",
    // ... then that one, now the only one at or before ?4, if it is a tombstone.
    "DELETE FROM versions WHERE tenant = ?1 AND index_id = ?2 AND key = ?3 AND ts <= ?4 "
    "AND value IS NULL",
    "DELETE FROM log WHERE tenant = ?1 AND ts <= ?2",
    "DELETE FROM commits WHERE tenant = ?1 AND ts <= ?2",
    "UPDATE tenants SET horizon = ?2 WHERE tenant = ?1",
    // Changes whenever another connection to the file has committed.
    "PRAGMA data_version",
};

constexpr const char* kCreateSchema = R"sql(
CREATE TABLE versions (
  tenant BLOB NOT NULL, index_id INTEGER NOT NULL, key BLOB NOT NULL, ts INTEGER NOT NULL,
  value BLOB,
  PRIMARY KEY (tenant, index_id, key, ts)) WITHOUT ROWID;
CREATE TABLE log (
  tenant BLOB NOT NULL, ts INTEGER NOT NULL, seq INTEGER NOT NULL, index_id INTEGER NOT NULL,
  key BLOB NOT NULL,
  PRIMARY KEY (tenant, ts, seq)) WITHOUT ROWID;
CREATE TABLE commits (
  tenant BLOB NOT NULL, ts INTEGER NOT NULL,
  PRIMARY KEY (tenant, ts)) WITHOUT ROWID;
CREATE TABLE tenants (
  tenant BLOB NOT NULL PRIMARY KEY, max_ts INTEGER NOT NULL,
  horizon INTEGER NOT NULL DEFAULT (-9223372036854775807 - 1)) WITHOUT ROWID;
)sql";

// Schema version 1 -> 2: the retention horizon (default: timestamp 0).
constexpr const char* kAddHorizon =
    "ALTER TABLE tenants ADD COLUMN horizon INTEGER NOT NULL DEFAULT (-9223372036854775807 - 1)";

// Schema version 2 -> 3: the log loses its copy of each value (ReadLog reads
// the versions'). The table is rebuilt (one pass over the log, which
// retention keeps short); its pages are freed for reuse.
constexpr const char* kLogWithoutValues = R"sql(
CREATE TABLE log_v3 (
  tenant BLOB NOT NULL, ts INTEGER NOT NULL, seq INTEGER NOT NULL, index_id INTEGER NOT NULL,
  key BLOB NOT NULL,
  PRIMARY KEY (tenant, ts, seq)) WITHOUT ROWID;
INSERT INTO log_v3(tenant, ts, seq, index_id, key) SELECT tenant, ts, seq, index_id, key FROM log;
DROP TABLE log;
ALTER TABLE log_v3 RENAME TO log;
)sql";

constexpr std::array<std::string_view, 4> kTables = {"versions", "log", "commits", "tenants"};

}  // namespace

namespace sqlite_internal {

// An error status for SQLite result `rc`, its code by internal::SqliteStatusCode.
absl::Status SqliteError(int rc, sqlite3* db, std::string_view path, std::string_view context) {
  const char* msg = db != nullptr ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
  return absl::Status(
      internal::SqliteStatusCode(rc),
      internal::ToAbsl(fmt::format("SqliteStorage '{}': {}: {} (sqlite error {}: {})", path,
                                   context, msg, rc, sqlite3_errstr(rc))));
}

}  // namespace sqlite_internal

absl::StatusOr<sqlite3_stmt*> SqliteStorage::Connection::Prepare(Sql sql) {
  sqlite3_stmt*& stmt = stmts_[static_cast<size_t>(sql)];
  if (stmt == nullptr) {
    const char* text = kSqlText[static_cast<size_t>(sql)];
    int rc = sqlite3_prepare_v3(db_, text, -1, SQLITE_PREPARE_PERSISTENT, &stmt, nullptr);
    if (rc != SQLITE_OK) {
      sqlite3_finalize(stmt);
      stmt = nullptr;
      return SqliteError(rc, db_, path_, fmt::format("prepare \"{}\"", text));
    }
  }
  return stmt;
}

absl::Status SqliteStorage::Connection::Initialize(const SqliteOptions& options) {
  Connection& conn = *this;
  std::string_view path = path_;
  // The header first: refuse another application's file or a newer schema
  // before changing anything in it (even the journal mode).
  TXFN_ASSIGN_OR_RETURN(int64_t app_id, conn.QueryInt("PRAGMA application_id"));
  TXFN_ASSIGN_OR_RETURN(int64_t version, conn.QueryInt("PRAGMA user_version"));
  auto check_header = [&](int64_t app, int64_t ver) -> absl::Status {
    if (app != 0 && app != SqliteStorage::kApplicationId) {
      return absl::FailedPreconditionError(
          fmt::format("SqliteStorage '{}': not a txfn database (application_id {:#x}, "
                      "expected {:#x})",
                      path, app, SqliteStorage::kApplicationId));
    }
    if (ver > SqliteStorage::kSchemaVersion) {
      return absl::FailedPreconditionError(fmt::format(
          "SqliteStorage '{}': the file has schema version {}, newer than version {} which this "
          "build of txfn reads; open it with a newer txfn",
          path, ver, SqliteStorage::kSchemaVersion));
    }
    if (ver < 0 || (app == 0 && ver != 0)) {
      return absl::FailedPreconditionError(
          fmt::format("SqliteStorage '{}': not a txfn database (schema version {} without the txfn "
                      "application_id)",
                      path, ver));
    }
    return absl::OkStatus();
  };
  TXFN_RETURN_IF_ERROR(check_header(app_id, version));

  if (options.quick_check_on_open) {
    TXFN_ASSIGN_OR_RETURN(std::vector<std::string> problems, conn.Query("PRAGMA quick_check", 4));
    if (problems.empty() || problems.front() != "ok") {
      std::string joined;
      for (const std::string& p : problems) {
        if (!joined.empty()) joined += "; ";
        joined += p;
      }
      std::replace(joined.begin(), joined.end(), '\n', ' ');
      return absl::DataLossError(fmt::format(
          "SqliteStorage '{}': the database file is corrupt or truncated (quick_check: {})", path,
          joined));
    }
  }

  if (version == 0) {
    // Probably a new file: let retention hand free pages back to the file
    // system (ApplyRetention). SQLite takes this only before the first table
    // and before the switch to WAL; on a file with tables it changes nothing.
    TXFN_RETURN_IF_ERROR(conn.Exec("PRAGMA auto_vacuum = INCREMENTAL"));
  }
  TXFN_ASSIGN_OR_RETURN(std::vector<std::string> mode, conn.Query("PRAGMA journal_mode = WAL"));
  if (mode.empty() || mode.front() != "wal") {
    return absl::UnavailableError(
        fmt::format("SqliteStorage '{}': cannot switch to WAL journal mode (got '{}')", path,
                    mode.empty() ? std::string("nothing") : mode.front()));
  }
  const char* sync = options.synchronous == SqliteOptions::Synchronous::kFull     ? "FULL"
                     : options.synchronous == SqliteOptions::Synchronous::kNormal ? "NORMAL"
                                                                                  : "OFF";
  TXFN_RETURN_IF_ERROR(conn.Exec(fmt::format("PRAGMA synchronous = {}", sync)));

  // Create the schema, or check it, under the write lock (another process may
  // be creating it at the same time).
  TXFN_RETURN_IF_ERROR(conn.Run(Sql::kBeginImmediate));
  TXFN_ASSIGN_OR_RETURN(app_id, conn.QueryInt("PRAGMA application_id"));
  TXFN_ASSIGN_OR_RETURN(version, conn.QueryInt("PRAGMA user_version"));
  TXFN_RETURN_IF_ERROR(check_header(app_id, version));
  TXFN_ASSIGN_OR_RETURN(int64_t objects, conn.QueryInt("SELECT count(*) FROM sqlite_schema"));
  if (version == 0) {
    if (objects != 0) {
      return absl::FailedPreconditionError(fmt::format(
          "SqliteStorage '{}': not a txfn database (it has {} schema objects and no txfn "
          "schema version)",
          path, objects));
    }
    TXFN_RETURN_IF_ERROR(conn.Exec(kCreateSchema));
    TXFN_RETURN_IF_ERROR(
        conn.Exec(fmt::format("PRAGMA application_id = {}", SqliteStorage::kApplicationId)));
    TXFN_RETURN_IF_ERROR(
        conn.Exec(fmt::format("PRAGMA user_version = {}", SqliteStorage::kSchemaVersion)));
  } else {
    for (std::string_view table : kTables) {
      TXFN_ASSIGN_OR_RETURN(
          int64_t n,
          conn.QueryInt(fmt::format(
              "SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name = '{}'", table)));
      if (n != 1) {
        return absl::DataLossError(
            fmt::format("SqliteStorage '{}': schema version {} but table '{}' is missing", path,
                        version, table));
      }
    }
    if (version < SqliteStorage::kSchemaVersion) {
      // Version 1 -> 2: the retention horizon column; 2 -> 3: the log
      // without values. Each is checked, so a file whose version was reset by
      // hand still opens.
      TXFN_ASSIGN_OR_RETURN(
          int64_t has_horizon,
          conn.QueryInt(
              "SELECT count(*) FROM pragma_table_info('tenants') WHERE name = 'horizon'"));
      if (has_horizon == 0) TXFN_RETURN_IF_ERROR(conn.Exec(kAddHorizon));
      TXFN_ASSIGN_OR_RETURN(
          int64_t log_has_values,
          conn.QueryInt("SELECT count(*) FROM pragma_table_info('log') WHERE name = 'value'"));
      if (log_has_values != 0) TXFN_RETURN_IF_ERROR(conn.Exec(kLogWithoutValues));
      TXFN_RETURN_IF_ERROR(
          conn.Exec(fmt::format("PRAGMA user_version = {}", SqliteStorage::kSchemaVersion)));
    }
  }
  return conn.Run(Sql::kCommit);
}

}  // namespace txfn

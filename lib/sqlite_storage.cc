// SqliteStorage: see txfn/sqlite_storage.h.
#include "txfn/sqlite_storage.h"

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

// Timestamps are uint64; SQLite integers are int64. Flipping the top bit maps
// the uint64 order onto the int64 order.
int64_t ToDb(Timestamp ts) { return static_cast<int64_t>(ts ^ (uint64_t{1} << 63)); }
Timestamp FromDb(int64_t v) { return static_cast<uint64_t>(v) ^ (uint64_t{1} << 63); }

// Every statement a connection may prepare; prepared once, on first use.
enum class Sql : int {
  kBegin,
  kBeginImmediate,
  kCommit,
  kRollback,
  kTenantMaxTs,
  kUpsertTenant,
  kInsertCommit,
  kInsertVersion,
  kInsertLog,
  kGet,
  kScanAsc,
  kScanAscBounded,
  kScanDesc,
  kScanDescBounded,
  kLogCommits,
  kLogWrites,
  kListTenants,
  kDeleteVersions,
  kDeleteLog,
  kDeleteCommits,
  kDeleteTenant,
  kTenantHorizon,
  kRetentionCommits,
  kLogKeysThrough,
  kDropSuperseded,
  kDropTombstone,
  kDropLogThrough,
  kDropCommitsThrough,
  kSetHorizon,
  kCount,
};

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

// ApplyRetention vacuums (auto_vacuum = INCREMENTAL) once at least this many
// pages, and a quarter of the file, are free.
constexpr int64_t kMinFreePagesToVacuum = 256;

constexpr std::array<std::string_view, 4> kTables = {"versions", "log", "commits", "tenants"};

// An error status for SQLite result `rc`, its code by internal::SqliteStatusCode.
absl::Status SqliteError(int rc, sqlite3* db, std::string_view path, std::string_view context) {
  const char* msg = db != nullptr ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
  return absl::Status(
      internal::SqliteStatusCode(rc),
      internal::ToAbsl(fmt::format("SqliteStorage '{}': {}: {} (sqlite error {}: {})", path,
                                   context, msg, rc, sqlite3_errstr(rc))));
}

// A cached statement borrowed for one use: bound, stepped, then reset (which
// also ends the implicit read transaction of a SELECT) when it goes away.
class Stmt {
 public:
  Stmt(sqlite3_stmt* stmt, std::string_view path) : stmt_(stmt), path_(path) {}
  ~Stmt() {
    if (stmt_ == nullptr) return;
    sqlite3_reset(stmt_);
    sqlite3_clear_bindings(stmt_);
  }
  Stmt(Stmt&& other) noexcept : stmt_(std::exchange(other.stmt_, nullptr)), path_(other.path_) {}
  Stmt& operator=(Stmt&&) = delete;

  // Blobs are bound without a copy: the caller keeps them alive until reset.
  void BindBlob(int i, std::string_view v) {
    // A null pointer would bind NULL; an empty blob needs a non-null one.
    sqlite3_bind_blob(stmt_, i, v.empty() ? "" : v.data(), static_cast<int>(v.size()),
                      SQLITE_STATIC);
  }
  void BindOptionalBlob(int i, const std::optional<std::string>& v) {
    if (v.has_value()) {
      BindBlob(i, *v);
    } else {
      sqlite3_bind_null(stmt_, i);
    }
  }
  void BindInt(int i, int64_t v) { sqlite3_bind_int64(stmt_, i, v); }
  void BindTs(int i, Timestamp ts) { BindInt(i, ToDb(ts)); }

  // True: a row is ready; false: done.
  absl::StatusOr<bool> Step() {
    int rc = sqlite3_step(stmt_);
    if (rc == SQLITE_ROW) return true;
    if (rc == SQLITE_DONE) return false;
    return SqliteError(rc, sqlite3_db_handle(stmt_), path_, sqlite3_sql(stmt_));
  }
  // Steps a statement that returns no rows, then resets it for the next
  // bindings.
  absl::Status Run() {
    absl::StatusOr<bool> row = Step();
    sqlite3_reset(stmt_);
    return row.status();
  }

  bool IsNull(int col) { return sqlite3_column_type(stmt_, col) == SQLITE_NULL; }
  std::string_view Blob(int col) {
    const void* data = sqlite3_column_blob(stmt_, col);
    int size = sqlite3_column_bytes(stmt_, col);
    if (data == nullptr) return {};
    return {static_cast<const char*>(data), static_cast<size_t>(size)};
  }
  int64_t Int(int col) { return sqlite3_column_int64(stmt_, col); }
  Timestamp Ts(int col) { return FromDb(Int(col)); }

 private:
  sqlite3_stmt* stmt_;
  std::string_view path_;
};

// The commits of one tenant within a Write batch.
}  // namespace

// One sqlite3 connection and its prepared statements. Used by one thread at a
// time (the owner of write_mu_, or the holder of a ReadLease).
class SqliteStorage::Connection {
 public:
  static absl::StatusOr<std::unique_ptr<Connection>> Open(const std::string& path, int flags,
                                                          const SqliteOptions& options) {
    sqlite3* db = nullptr;
    int rc = sqlite3_open_v2(path.c_str(), &db, flags | SQLITE_OPEN_NOMUTEX,
                             options.vfs.empty() ? nullptr : options.vfs.c_str());
    auto conn = std::unique_ptr<Connection>(new Connection(db, path));
    if (rc != SQLITE_OK) {
      std::string context = "open";
      std::error_code ec;
      std::filesystem::path parent = std::filesystem::path(path).parent_path();
      if (!parent.empty() && !std::filesystem::is_directory(parent, ec)) {
        context = fmt::format("open (directory '{}' does not exist)", parent.string());
      }
      return SqliteError(rc, db, path, context);
    }
    sqlite3_extended_result_codes(db, 1);
    sqlite3_busy_timeout(
        db, static_cast<int>(std::min<int64_t>(absl::ToInt64Milliseconds(options.busy_timeout),
                                               std::numeric_limits<int>::max())));
    if (options.cache_pages > 0) {
      TXFN_RETURN_IF_ERROR(conn->Exec(fmt::format("PRAGMA cache_size = {}", options.cache_pages)));
    }
    return conn;
  }

  ~Connection() {
    for (sqlite3_stmt* stmt : stmts_) sqlite3_finalize(stmt);
    sqlite3_close_v2(db_);
  }
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  sqlite3* db() const { return db_; }
  const std::string& path() const { return path_; }

  // The cached statement `sql`, prepared on first use.
  absl::StatusOr<sqlite3_stmt*> Prepare(Sql sql) {
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

  // Runs a cached statement that returns no rows.
  absl::Status Run(Sql sql) {
    TXFN_ASSIGN_OR_RETURN(sqlite3_stmt * raw, Prepare(sql));
    return Stmt(raw, path_).Run();
  }

  // Runs ad-hoc SQL (pragmas, the schema), discarding rows.
  absl::Status Exec(const std::string& sql) {
    char* err = nullptr;
    int rc = sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &err);
    sqlite3_free(err);
    if (rc != SQLITE_OK) return SqliteError(rc, db_, path_, sql);
    return absl::OkStatus();
  }

  // Runs ad-hoc SQL and returns the first column of every row as text.
  absl::StatusOr<std::vector<std::string>> Query(const std::string& sql, size_t max_rows = 0) {
    sqlite3_stmt* raw = nullptr;
    int rc = sqlite3_prepare_v2(db_, sql.c_str(), -1, &raw, nullptr);
    std::unique_ptr<sqlite3_stmt, int (*)(sqlite3_stmt*)> owned(raw, &sqlite3_finalize);
    if (rc != SQLITE_OK) return SqliteError(rc, db_, path_, sql);
    std::vector<std::string> rows;
    while ((rc = sqlite3_step(raw)) == SQLITE_ROW) {
      const unsigned char* text = sqlite3_column_text(raw, 0);
      rows.emplace_back(text != nullptr ? reinterpret_cast<const char*>(text) : "");
      if (max_rows != 0 && rows.size() >= max_rows) return rows;
    }
    if (rc != SQLITE_DONE) return SqliteError(rc, db_, path_, sql);
    return rows;
  }

  absl::StatusOr<int64_t> QueryInt(const std::string& sql) {
    TXFN_ASSIGN_OR_RETURN(std::vector<std::string> rows, Query(sql, 1));
    if (rows.empty()) return absl::InternalError(fmt::format("'{}' returned no row", sql));
    return std::strtoll(rows[0].c_str(), nullptr, 10);
  }

  // Checks the file (header, schema version, integrity), switches it to WAL,
  // and creates the schema if the file is new. The write connection's job.
  absl::Status Initialize(const SqliteOptions& options);

  // Ends the open transaction, if any (after a failure).
  void RollbackIfOpen() {
    if (sqlite3_get_autocommit(db_) == 0) (void)Run(Sql::kRollback);
  }

 private:
  Connection(sqlite3* db, std::string path) : db_(db), path_(std::move(path)) {
    stmts_.fill(nullptr);
  }

  sqlite3* const db_;
  const std::string path_;
  std::array<sqlite3_stmt*, static_cast<size_t>(Sql::kCount)> stmts_;
};

// A read connection borrowed from the pool; returned when destroyed.
class SqliteStorage::ReadLease {
 public:
  ReadLease(SqliteStorage* owner, std::unique_ptr<Connection> conn)
      : owner_(owner), conn_(std::move(conn)) {}
  ReadLease(ReadLease&& other) noexcept = default;
  ReadLease& operator=(ReadLease&&) = delete;
  ~ReadLease() {
    if (conn_ != nullptr) owner_->ReleaseReader(std::move(conn_));
  }

  Connection& conn() { return *conn_; }
  absl::StatusOr<Stmt> Statement(Sql sql);

 private:
  SqliteStorage* owner_;
  std::unique_ptr<Connection> conn_;
};

absl::StatusOr<std::unique_ptr<SqliteStorage>> SqliteStorage::Open(std::string path,
                                                                   SqliteOptions options) {
  if (path.empty() || path == ":memory:" || path.front() == '\0') {
    return absl::InvalidArgumentError(
        fmt::format("SqliteStorage::Open: '{}' is not a file path (an in-memory database "
                    "cannot be shared by the read connections)",
                    path));
  }
  if (!options.vfs.empty() && sqlite3_vfs_find(options.vfs.c_str()) == nullptr) {
    return absl::InvalidArgumentError(
        fmt::format("SqliteStorage::Open: no SQLite VFS named '{}' is registered", options.vfs));
  }
  if (options.max_read_connections < 1) {
    return absl::InvalidArgumentError(
        fmt::format("SqliteStorage::Open: max_read_connections must be >= 1, not {}",
                    options.max_read_connections));
  }
  TXFN_ASSIGN_OR_RETURN(
      std::unique_ptr<Connection> writer,
      Connection::Open(path, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, options));
  absl::Status status = writer->Initialize(options);
  if (!status.ok()) {
    writer->RollbackIfOpen();
    return status;
  }
  return std::unique_ptr<SqliteStorage>(
      new SqliteStorage(std::move(path), options, std::move(writer)));
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

SqliteStorage::SqliteStorage(std::string path, SqliteOptions options,
                             std::unique_ptr<Connection> writer)
    : path_(std::move(path)), options_(std::move(options)), writer_(std::move(writer)) {}

SqliteStorage::~SqliteStorage() {
  // Readers first: the last connection to close checkpoints and removes the WAL.
  {
    internal::MutexLock lock(&pool_mu_);
    idle_readers_.clear();
  }
  internal::MutexLock lock(&write_mu_);
  writer_.reset();
}

absl::StatusOr<Stmt> SqliteStorage::ReadLease::Statement(Sql sql) {
  TXFN_ASSIGN_OR_RETURN(sqlite3_stmt * raw, conn_->Prepare(sql));
  return absl::StatusOr<Stmt>(absl::in_place, raw, conn_->path());
}

absl::StatusOr<SqliteStorage::ReadLease> SqliteStorage::AcquireReader() {
  {
    internal::MutexLock lock(&pool_mu_);
    pool_cv_.Wait([&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(pool_mu_) {
      return !idle_readers_.empty() || open_readers_ < options_.max_read_connections;
    });
    if (!idle_readers_.empty()) {
      std::unique_ptr<Connection> conn = std::move(idle_readers_.back());
      idle_readers_.pop_back();
      return ReadLease(this, std::move(conn));
    }
    ++open_readers_;
  }
  // A new connection, opened outside the lock.
  absl::StatusOr<std::unique_ptr<Connection>> conn =
      Connection::Open(path_, SQLITE_OPEN_READWRITE, options_);
  if (conn.ok()) {
    absl::Status s = (*conn)->Exec("PRAGMA query_only = 1");
    if (!s.ok()) conn = s;
  }
  if (!conn.ok()) {
    internal::MutexLock lock(&pool_mu_);
    --open_readers_;
    pool_cv_.Signal();
    return conn.status();
  }
  return ReadLease(this, *std::move(conn));
}

void SqliteStorage::ReleaseReader(std::unique_ptr<Connection> conn) {
  internal::MutexLock lock(&pool_mu_);
  idle_readers_.push_back(std::move(conn));
  pool_cv_.Signal();
}

absl::Status SqliteStorage::Write(absl::Span<const CommitRecord> commits) {
  if (commits.empty()) return absl::OkStatus();

  // Stateless checks, and the batch grouped by tenant.
  TXFN_ASSIGN_OR_RETURN(const auto groups, ValidateCommitBatch(commits));

  internal::MutexLock lock(&write_mu_);
  Connection& conn = *writer_;
  auto stmt = [&](Sql sql) -> absl::StatusOr<Stmt> {
    TXFN_ASSIGN_OR_RETURN(sqlite3_stmt * raw, conn.Prepare(sql));
    return absl::StatusOr<Stmt>(absl::in_place, raw, path_);
  };
  auto body = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(write_mu_) -> absl::Status {
    TXFN_RETURN_IF_ERROR(conn.Run(Sql::kBeginImmediate));
    // Checks against the stored state, before writing anything.
    for (const TenantBatch& g : groups) {
      TXFN_ASSIGN_OR_RETURN(Stmt max, stmt(Sql::kTenantMaxTs));
      max.BindBlob(1, g.tenant);
      TXFN_ASSIGN_OR_RETURN(bool found, max.Step());
      Timestamp max_ts = found ? max.Ts(0) : 0;
      if (g.first_ts <= max_ts) {
        return absl::InvalidArgumentError(
            fmt::format("Storage::Write: commit of tenant '{}' at ts {} is not after its newest "
                        "committed timestamp {}",
                        g.tenant, g.first_ts, max_ts));
      }
    }
    TXFN_ASSIGN_OR_RETURN(Stmt insert_commit, stmt(Sql::kInsertCommit));
    TXFN_ASSIGN_OR_RETURN(Stmt insert_version, stmt(Sql::kInsertVersion));
    TXFN_ASSIGN_OR_RETURN(Stmt insert_log, stmt(Sql::kInsertLog));
    for (const CommitRecord& commit : commits) {
      insert_commit.BindBlob(1, commit.tenant);
      insert_commit.BindTs(2, commit.ts);
      TXFN_RETURN_IF_ERROR(insert_commit.Run());
      for (size_t seq = 0; seq < commit.writes.size(); ++seq) {
        const IndexWrite& w = commit.writes[seq];
        insert_version.BindBlob(1, commit.tenant);
        insert_version.BindInt(2, w.index);
        insert_version.BindBlob(3, w.key);
        insert_version.BindTs(4, commit.ts);
        insert_version.BindOptionalBlob(5, w.value);
        TXFN_RETURN_IF_ERROR(insert_version.Run());
        insert_log.BindBlob(1, commit.tenant);
        insert_log.BindTs(2, commit.ts);
        insert_log.BindInt(3, static_cast<int64_t>(seq));
        insert_log.BindInt(4, w.index);
        insert_log.BindBlob(5, w.key);
        TXFN_RETURN_IF_ERROR(insert_log.Run());
      }
    }
    TXFN_ASSIGN_OR_RETURN(Stmt upsert, stmt(Sql::kUpsertTenant));
    for (const TenantBatch& g : groups) {
      upsert.BindBlob(1, g.tenant);
      upsert.BindTs(2, g.last_ts);
      TXFN_RETURN_IF_ERROR(upsert.Run());
    }
    return CommitWrite(conn, "Write");
  };
  TXFN_RETURN_IF_ERROR(CheckNotInDoubt("Write"));
  absl::Status status = body();
  if (!status.ok()) conn.RollbackIfOpen();
  return status;
}

absl::Status SqliteStorage::CheckNotInDoubt(std::string_view what) const {
  if (!in_doubt_.load(std::memory_order_acquire)) return absl::OkStatus();
  internal::MutexLock lock(&doubt_mu_);
  return absl::UnavailableError(fmt::format(
      "SqliteStorage '{}': {} refused: an earlier COMMIT failed ({}), so whether its writes are "
      "durable is unknown until the database is reopened (recovery then replays or discards "
      "them)",
      path_, what, doubt_));
}

absl::Status SqliteStorage::CommitWrite(Connection& conn, std::string_view what) {
  absl::Status committed = conn.Run(Sql::kCommit);
  if (committed.ok()) return committed;
  // An error from COMMIT itself: the WAL frames may be written (an fsync that
  // failed after them, say). This process cannot read whether they are
  // durable — they are not visible until recovery runs — so it stops
  // answering what is committed until it is reopened.
  {
    internal::MutexLock lock(&doubt_mu_);
    doubt_ = std::string(internal::ToStd(committed.message()));
  }
  in_doubt_.store(true, std::memory_order_release);
  return CommitOutcomeUnknownError(
      fmt::format("SqliteStorage '{}': {}: COMMIT failed, the outcome is unknown until the "
                  "database is reopened: {}",
                  path_, what, internal::ToStd(committed.message())));
}

absl::StatusOr<std::optional<IndexEntry>> SqliteStorage::Get(std::string_view tenant, IndexId index,
                                                             std::string_view key, Timestamp ts) {
  TXFN_ASSIGN_OR_RETURN(ReadLease lease, AcquireReader());
  Timestamp horizon = 0;
  {
    TXFN_ASSIGN_OR_RETURN(Stmt get, lease.Statement(Sql::kGet));
    get.BindBlob(1, tenant);
    get.BindInt(2, index);
    get.BindBlob(3, key);
    get.BindTs(4, ts);
    TXFN_ASSIGN_OR_RETURN(bool found, get.Step());
    if (found) {
      // The horizon came with the version, from the same snapshot.
      if (!get.IsNull(2) && ts < get.Ts(2)) {
        return ReadBelowRetentionError("Get", tenant, ts, get.Ts(2));
      }
      if (get.IsNull(1)) return std::nullopt;
      return IndexEntry{std::string(key), std::string(get.Blob(1)), get.Ts(0)};
    }
  }
  // No version at or before ts: right unless retention dropped them. The
  // horizon only rises, so a later read of it errs on the safe side.
  TXFN_ASSIGN_OR_RETURN(horizon, ReadHorizon(lease, tenant));
  if (ts < horizon) return ReadBelowRetentionError("Get", tenant, ts, horizon);
  return std::nullopt;
}

absl::StatusOr<Timestamp> SqliteStorage::ReadHorizon(ReadLease& lease, std::string_view tenant) {
  TXFN_ASSIGN_OR_RETURN(Stmt stmt, lease.Statement(Sql::kTenantHorizon));
  stmt.BindBlob(1, tenant);
  TXFN_ASSIGN_OR_RETURN(bool found, stmt.Step());
  return found ? stmt.Ts(0) : Timestamp{0};
}

absl::StatusOr<std::vector<IndexEntry>> SqliteStorage::Scan(std::string_view tenant, IndexId index,
                                                            const KeyRange& range, Timestamp ts,
                                                            ScanOrder order, size_t limit) {
  std::vector<IndexEntry> out;
  if (range.IsEmpty()) return out;
  const bool ascending = order == ScanOrder::kAscending;
  TXFN_ASSIGN_OR_RETURN(ReadLease lease, AcquireReader());
  Connection& conn = lease.conn();
  auto full = [&] { return limit != 0 && out.size() >= limit; };

  // The scan walks every version <= ts of the keys it passes. A key with many
  // versions (a hot document) is left by a seek instead: after
  // kMaxVersionsWalked rows of one key, the scan restarts past that key. The
  // restarts share one read transaction, hence one snapshot.
  constexpr int kMaxVersionsWalked = 8;
  std::string lo = range.start;
  std::optional<std::string> hi = range.end;
  auto pass = [&](bool* restart) -> absl::Status {
    *restart = false;
    Sql sql = ascending ? (hi ? Sql::kScanAscBounded : Sql::kScanAsc)
                        : (hi ? Sql::kScanDescBounded : Sql::kScanDesc);
    TXFN_ASSIGN_OR_RETURN(Stmt scan, lease.Statement(sql));
    scan.BindBlob(1, tenant);
    scan.BindInt(2, index);
    scan.BindBlob(3, lo);
    if (hi) scan.BindBlob(4, *hi);
    scan.BindTs(5, ts);

    if (ascending) {
      // Rows come by key, then ts ascending: the last row of each key is the
      // version visible at ts.
      bool pending = false;
      bool candidate_live = false;
      int walked = 0;
      IndexEntry candidate;
      while (true) {
        TXFN_ASSIGN_OR_RETURN(bool row, scan.Step());
        if (!row) break;
        std::string_view key = scan.Blob(0);
        if (pending && key == candidate.key) {
          if (++walked >= kMaxVersionsWalked) {
            // Seek to the key's visible version, and restart past the key.
            TXFN_ASSIGN_OR_RETURN(Stmt get, lease.Statement(Sql::kGet));
            get.BindBlob(1, tenant);
            get.BindInt(2, index);
            get.BindBlob(3, candidate.key);
            get.BindTs(4, ts);
            TXFN_ASSIGN_OR_RETURN(bool found, get.Step());
            if (found && !get.IsNull(1)) {
              out.push_back(IndexEntry{candidate.key, std::string(get.Blob(1)), get.Ts(0)});
            }
            lo = candidate.key + '\0';
            *restart = !full();
            return absl::OkStatus();
          }
        } else {
          if (pending && candidate_live) {
            out.push_back(std::move(candidate));
            candidate = IndexEntry{};
            if (full()) return absl::OkStatus();
          }
          pending = true;
          walked = 0;
          candidate.key.assign(key);
        }
        candidate.ts = scan.Ts(1);
        candidate_live = !scan.IsNull(2);
        if (candidate_live) candidate.value.assign(scan.Blob(2));
      }
      if (pending && candidate_live) out.push_back(std::move(candidate));
      return absl::OkStatus();
    }

    // Descending: rows come by key, then ts descending: the first row of each
    // key is the visible version; the key's older rows are skipped.
    std::string previous;
    bool have_previous = false;
    int walked = 0;
    while (!full()) {
      TXFN_ASSIGN_OR_RETURN(bool row, scan.Step());
      if (!row) break;
      std::string_view key = scan.Blob(0);
      if (have_previous && key == previous) {
        if (++walked >= kMaxVersionsWalked) {
          hi = previous;  // restart below the key
          *restart = true;
          return absl::OkStatus();
        }
        continue;
      }
      previous.assign(key);
      have_previous = true;
      walked = 0;
      if (scan.IsNull(2)) continue;
      out.push_back(IndexEntry{std::string(key), std::string(scan.Blob(2)), scan.Ts(1)});
    }
    return absl::OkStatus();
  };

  TXFN_RETURN_IF_ERROR(conn.Run(Sql::kBegin));
  absl::Status status;
  {
    absl::StatusOr<Timestamp> horizon = ReadHorizon(lease, tenant);
    if (!horizon.ok()) {
      status = horizon.status();
    } else if (ts < *horizon) {
      status = ReadBelowRetentionError("Scan", tenant, ts, *horizon);
    }
  }
  for (bool restart = status.ok(); restart && status.ok();) status = pass(&restart);
  if (!status.ok()) {
    conn.RollbackIfOpen();
    return status;
  }
  TXFN_RETURN_IF_ERROR(conn.Run(Sql::kCommit));
  return out;
}

absl::StatusOr<std::vector<CommitRecord>> SqliteStorage::ReadLog(std::string_view tenant,
                                                                 Timestamp after, size_t limit) {
  TXFN_RETURN_IF_ERROR(CheckNotInDoubt("ReadLog"));
  std::vector<CommitRecord> out;
  TXFN_ASSIGN_OR_RETURN(ReadLease lease, AcquireReader());
  Connection& conn = lease.conn();
  // Three statements, one snapshot.
  TXFN_RETURN_IF_ERROR(conn.Run(Sql::kBegin));
  auto body = [&]() -> absl::Status {
    TXFN_ASSIGN_OR_RETURN(Timestamp horizon, ReadHorizon(lease, tenant));
    if (after < horizon) return ReadBelowRetentionError("ReadLog", tenant, after, horizon);
    {
      TXFN_ASSIGN_OR_RETURN(Stmt commits, lease.Statement(Sql::kLogCommits));
      commits.BindBlob(1, tenant);
      commits.BindTs(2, after);
      commits.BindInt(3, limit == 0 ? -1 : static_cast<int64_t>(limit));
      while (true) {
        TXFN_ASSIGN_OR_RETURN(bool row, commits.Step());
        if (!row) break;
        out.push_back(CommitRecord{.tenant = std::string(tenant), .ts = commits.Ts(0)});
      }
    }
    if (out.empty()) return absl::OkStatus();
    TXFN_ASSIGN_OR_RETURN(Stmt writes, lease.Statement(Sql::kLogWrites));
    writes.BindBlob(1, tenant);
    writes.BindTs(2, after);
    writes.BindTs(3, out.back().ts);
    size_t i = 0;
    while (true) {
      TXFN_ASSIGN_OR_RETURN(bool row, writes.Step());
      if (!row) break;
      Timestamp ts = writes.Ts(0);
      while (i < out.size() && out[i].ts < ts) ++i;
      if (i == out.size() || out[i].ts != ts) {
        return absl::DataLossError(
            fmt::format("SqliteStorage '{}': log entry of tenant '{}' at ts {} has no commit",
                        path_, tenant, ts));
      }
      if (writes.Int(4) == 0) {
        return absl::DataLossError(
            fmt::format("SqliteStorage '{}': log entry of tenant '{}' at ts {} has no version",
                        path_, tenant, ts));
      }
      IndexWrite& w = out[i].writes.emplace_back();
      w.index = static_cast<IndexId>(writes.Int(1));
      w.key.assign(writes.Blob(2));
      if (!writes.IsNull(3)) w.value.emplace(writes.Blob(3));
    }
    return absl::OkStatus();
  };
  absl::Status status = body();
  if (!status.ok()) {
    conn.RollbackIfOpen();
    return status;
  }
  TXFN_RETURN_IF_ERROR(conn.Run(Sql::kCommit));
  return out;
}

absl::StatusOr<Timestamp> SqliteStorage::MaxCommittedTimestamp(std::string_view tenant) {
  TXFN_RETURN_IF_ERROR(CheckNotInDoubt("MaxCommittedTimestamp"));
  TXFN_ASSIGN_OR_RETURN(ReadLease lease, AcquireReader());
  TXFN_ASSIGN_OR_RETURN(Stmt max, lease.Statement(Sql::kTenantMaxTs));
  max.BindBlob(1, tenant);
  TXFN_ASSIGN_OR_RETURN(bool found, max.Step());
  return found ? max.Ts(0) : Timestamp{0};
}

absl::StatusOr<std::vector<std::string>> SqliteStorage::ListTenants() {
  TXFN_RETURN_IF_ERROR(CheckNotInDoubt("ListTenants"));
  std::vector<std::string> out;
  TXFN_ASSIGN_OR_RETURN(ReadLease lease, AcquireReader());
  TXFN_ASSIGN_OR_RETURN(Stmt list, lease.Statement(Sql::kListTenants));
  while (true) {
    TXFN_ASSIGN_OR_RETURN(bool row, list.Step());
    if (!row) break;
    out.emplace_back(list.Blob(0));
  }
  return out;
}

absl::Status SqliteStorage::DeleteTenant(std::string_view tenant) {
  TXFN_RETURN_IF_ERROR(CheckNotInDoubt("DeleteTenant"));
  internal::MutexLock lock(&write_mu_);
  Connection& conn = *writer_;
  auto body = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(write_mu_) -> absl::Status {
    TXFN_RETURN_IF_ERROR(conn.Run(Sql::kBeginImmediate));
    for (Sql sql :
         {Sql::kDeleteVersions, Sql::kDeleteLog, Sql::kDeleteCommits, Sql::kDeleteTenant}) {
      TXFN_ASSIGN_OR_RETURN(sqlite3_stmt * raw, conn.Prepare(sql));
      Stmt del(raw, path_);
      del.BindBlob(1, tenant);
      TXFN_RETURN_IF_ERROR(del.Run());
    }
    return CommitWrite(conn, "DeleteTenant");
  };
  absl::Status status = body();
  if (!status.ok()) conn.RollbackIfOpen();
  return status;
}

absl::StatusOr<RetentionResult> SqliteStorage::ApplyRetention(std::string_view tenant, Timestamp ts,
                                                              size_t max_commits) {
  TXFN_RETURN_IF_ERROR(CheckNotInDoubt("ApplyRetention"));
  internal::MutexLock lock(&write_mu_);
  Connection& conn = *writer_;
  auto stmt = [&](Sql sql) -> absl::StatusOr<Stmt> {
    TXFN_ASSIGN_OR_RETURN(sqlite3_stmt * raw, conn.Prepare(sql));
    return absl::StatusOr<Stmt>(absl::in_place, raw, path_);
  };
  RetentionResult result;
  auto body = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(write_mu_) -> absl::Status {
    TXFN_RETURN_IF_ERROR(conn.Run(Sql::kBeginImmediate));
    {
      TXFN_ASSIGN_OR_RETURN(Stmt horizon, stmt(Sql::kTenantHorizon));
      horizon.BindBlob(1, tenant);
      TXFN_ASSIGN_OR_RETURN(bool found, horizon.Step());
      if (!found) return conn.Run(Sql::kRollback);  // no such tenant
      result.horizon = horizon.Ts(0);
    }
    // The commits after the horizon (the only ones left) up to `ts`, at most
    // max_commits of them: the new horizon is the last one.
    Timestamp target = 0;
    {
      TXFN_ASSIGN_OR_RETURN(Stmt commits, stmt(Sql::kRetentionCommits));
      commits.BindBlob(1, tenant);
      commits.BindTs(2, ts);
      commits.BindInt(3, max_commits == 0 ? -1 : static_cast<int64_t>(max_commits) + 1);
      size_t n = 0;
      while (true) {
        TXFN_ASSIGN_OR_RETURN(bool row, commits.Step());
        if (!row) break;
        if (max_commits != 0 && n == max_commits) {
          result.done = false;
          break;
        }
        target = commits.Ts(0);
        ++n;
      }
      result.commits_dropped = n;
    }
    if (target == 0) return conn.Run(Sql::kRollback);  // nothing between
    // The keys those commits wrote are the only ones that may have versions
    // nobody at or after `target` can see.
    std::vector<std::pair<IndexId, std::string>> keys;
    {
      absl::flat_hash_set<std::pair<IndexId, std::string>> seen;
      TXFN_ASSIGN_OR_RETURN(Stmt log, stmt(Sql::kLogKeysThrough));
      log.BindBlob(1, tenant);
      log.BindTs(2, target);
      while (true) {
        TXFN_ASSIGN_OR_RETURN(bool row, log.Step());
        if (!row) break;
        std::pair<IndexId, std::string> key(static_cast<IndexId>(log.Int(0)), log.Blob(1));
        if (seen.insert(key).second) keys.push_back(std::move(key));
      }
    }
    TXFN_ASSIGN_OR_RETURN(Stmt superseded, stmt(Sql::kDropSuperseded));
    TXFN_ASSIGN_OR_RETURN(Stmt tombstone, stmt(Sql::kDropTombstone));
    for (const auto& [index, key] : keys) {
      for (Stmt* drop : {&superseded, &tombstone}) {
        drop->BindBlob(1, tenant);
        drop->BindInt(2, index);
        drop->BindBlob(3, key);
        drop->BindTs(4, target);
        TXFN_RETURN_IF_ERROR(drop->Run());
        result.versions_dropped += static_cast<uint64_t>(sqlite3_changes(conn.db()));
      }
    }
    for (Sql sql : {Sql::kDropLogThrough, Sql::kDropCommitsThrough, Sql::kSetHorizon}) {
      TXFN_ASSIGN_OR_RETURN(Stmt drop, stmt(sql));
      drop.BindBlob(1, tenant);
      drop.BindTs(2, target);
      TXFN_RETURN_IF_ERROR(drop.Run());
    }
    result.horizon = target;
    // Hand free pages back to the file system once they are a quarter of the
    // file (new files only: auto_vacuum is set when a file is created).
    TXFN_ASSIGN_OR_RETURN(int64_t free_pages, conn.QueryInt("PRAGMA freelist_count"));
    TXFN_ASSIGN_OR_RETURN(int64_t pages, conn.QueryInt("PRAGMA page_count"));
    if (free_pages >= kMinFreePagesToVacuum && free_pages * 4 >= pages) {
      TXFN_RETURN_IF_ERROR(conn.Exec("PRAGMA incremental_vacuum"));
    }
    return CommitWrite(conn, "ApplyRetention");
  };
  absl::Status status = body();
  if (!status.ok()) {
    conn.RollbackIfOpen();
    return status;
  }
  return result;
}

absl::Status SqliteStorage::Backup(const std::string& dest_path) {
  TXFN_RETURN_IF_ERROR(CheckNotInDoubt("Backup"));
  std::error_code ec;
  if (dest_path.empty() || std::filesystem::exists(dest_path, ec)) {
    return dest_path.empty()
               ? absl::InvalidArgumentError("SqliteStorage::Backup: empty destination path")
               : absl::AlreadyExistsError(fmt::format(
                     "SqliteStorage::Backup: '{}' exists; back up to a new file", dest_path));
  }
  // Into a side file, renamed into place once complete: a failed backup
  // never leaves a half-written file under the destination's name.
  const std::string partial = dest_path + ".partial";
  std::filesystem::remove(partial, ec);
  auto cleanup = [&] { std::filesystem::remove(partial, ec); };
  absl::StatusOr<std::unique_ptr<Connection>> dest =
      Connection::Open(partial, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, options_);
  if (!dest.ok()) return dest.status();
  {
    TXFN_ASSIGN_OR_RETURN(ReadLease lease, AcquireReader());
    // One step copies every page under one read transaction: a consistent
    // snapshot, while writers go on (WAL).
    sqlite3_backup* backup = sqlite3_backup_init((*dest)->db(), "main", lease.conn().db(), "main");
    if (backup == nullptr) {
      absl::Status error =
          SqliteError(sqlite3_errcode((*dest)->db()), (*dest)->db(), partial, "backup_init");
      dest->reset();
      cleanup();
      return error;
    }
    int rc = sqlite3_backup_step(backup, -1);
    int finish = sqlite3_backup_finish(backup);
    if (rc != SQLITE_DONE || finish != SQLITE_OK) {
      absl::Status error = SqliteError(rc != SQLITE_DONE ? rc : finish, (*dest)->db(), partial,
                                       fmt::format("backup of '{}'", path_));
      dest->reset();
      cleanup();
      return error;
    }
  }
  dest->reset();  // closes the copy (synced by its own commit)
  std::filesystem::rename(partial, dest_path, ec);
  if (ec) {
    cleanup();
    return absl::UnavailableError(fmt::format("SqliteStorage::Backup: rename '{}' to '{}': {}",
                                              partial, dest_path, ec.message()));
  }
  return absl::OkStatus();
}

}  // namespace txfn

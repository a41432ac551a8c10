// lib/sqlite_connection.h — SqliteStorage's connections and statements
// (internal: not installed), shared by sqlite_storage.cc (the Storage
// methods) and sqlite_connection.cc (the SQL text, the schema and its
// migrations).
#ifndef TXFN_LIB_SQLITE_CONNECTION_H_
#define TXFN_LIB_SQLITE_CONNECTION_H_

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
#include "txfn/sqlite_storage.h"
#include "txfn/status_macros.h"

namespace txfn {
namespace sqlite_internal {

// Timestamps are uint64; SQLite integers are int64. Flipping the top bit maps
// the uint64 order onto the int64 order.
inline int64_t ToDb(Timestamp ts) { return static_cast<int64_t>(ts ^ (uint64_t{1} << 63)); }
inline Timestamp FromDb(int64_t v) { return static_cast<uint64_t>(v) ^ (uint64_t{1} << 63); }

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
  kDataVersion,
  kCount,
};

// An error status for SQLite result `rc`, its code by internal::SqliteStatusCode.
absl::Status SqliteError(int rc, sqlite3* db, std::string_view path, std::string_view context);

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

}  // namespace sqlite_internal

using sqlite_internal::Sql;
using sqlite_internal::SqliteError;
using sqlite_internal::Stmt;

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
  absl::StatusOr<sqlite3_stmt*> Prepare(Sql sql);

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

}  // namespace txfn

#endif  // TXFN_LIB_SQLITE_CONNECTION_H_

// SqliteStorage: see txfn/sqlite_storage.h. The Storage methods and the
// connection pool; statements, connections and the schema are in
// lib/sqlite_connection.h and sqlite_connection.cc.
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
#include "lib/sqlite_backup.h"
#include "lib/sqlite_connection.h"
#include "lib/sqlite_status.h"
#include "txfn/internal/mutex.h"
#include "txfn/internal/strings.h"
#include "txfn/status_macros.h"

namespace txfn {
namespace {

// ApplyRetention vacuums (auto_vacuum = INCREMENTAL) once at least this many
// pages, and a quarter of the file, are free.
constexpr int64_t kMinFreePagesToVacuum = 256;
// ... and gives back at most this many a call (16 MiB of 4 KiB pages); later calls go on.
constexpr int64_t kMaxPagesVacuumedPerCall = 4096;

}  // namespace

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
  TXFN_ASSIGN_OR_RETURN(const int64_t data_version, DataVersion(*writer));
  auto storage = std::unique_ptr<SqliteStorage>(
      new SqliteStorage(std::move(path), options, std::move(writer)));
  internal::MutexLock lock(&storage->write_mu_);
  storage->data_version_ = data_version;
  return storage;
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
    // Checks against the stored state, before writing anything. A stale writer
    // here: another process's engine on this file.
    const std::string storage = fmt::format("SqliteStorage '{}'", path_);
    for (const TenantBatch& g : groups) {
      TXFN_ASSIGN_OR_RETURN(Stmt max, stmt(Sql::kTenantMaxTs));
      max.BindBlob(1, g.tenant);
      TXFN_ASSIGN_OR_RETURN(bool found, max.Step());
      TXFN_RETURN_IF_ERROR(CheckTenantBatchAgainstNewest(storage, g, found ? max.Ts(0) : 0));
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

absl::StatusOr<int64_t> SqliteStorage::DataVersion(Connection& conn) {
  TXFN_ASSIGN_OR_RETURN(sqlite3_stmt * raw, conn.Prepare(Sql::kDataVersion));
  Stmt version(raw, conn.path());
  TXFN_ASSIGN_OR_RETURN(bool row, version.Step());
  if (!row) return absl::InternalError("PRAGMA data_version returned no row");
  return version.Int(0);
}

bool SqliteStorage::MayHaveOtherWriters(std::string_view /*tenant*/) {
  // Polled only when the write connection is idle: a query must not wait for
  // a commit's fsync. Once another connection has been seen to commit at all,
  // the answer is "maybe" for every tenant at every call: another process may
  // have committed since the last look, and a read that starts after that
  // commit was acknowledged must see it, so the caller compares the tenant's
  // newest commit, which a reader connection reads without waiting for the
  // writer. It was "maybe" once per tenant per change seen: while the first
  // caller was reloading, a second (another query thread, a mutation) got
  // "no" and the old snapshot (a multi-process hunt: ~0.6% of queries with two
  // query threads, up to 47 commits behind). (A file only this storage writes
  // keeps "no": the caller would only wait for this storage's own commit,
  // checkpoint included, for nothing.) This storage's writes refuse a stale
  // batch either way.
  if (!write_mu_.TryLock()) {
    internal::MutexLock lock(&others_mu_);
    return others_commits_seen_ > 0;
  }
  bool others_committed = false;
  {
    absl::StatusOr<int64_t> version = DataVersion(*writer_);
    if (version.ok() && *version != data_version_) {
      data_version_ = *version;
      others_committed = true;
    }
    write_mu_.Unlock();
  }
  internal::MutexLock lock(&others_mu_);
  if (others_committed) ++others_commits_seen_;
  return others_commits_seen_ > 0;
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
  return DeleteTenantWhere(tenant, std::nullopt).status();
}

absl::StatusOr<bool> SqliteStorage::DeleteTenantIfNewest(std::string_view tenant,
                                                         Timestamp newest) {
  return DeleteTenantWhere(tenant, newest);
}

absl::StatusOr<bool> SqliteStorage::DeleteTenantWhere(std::string_view tenant,
                                                      std::optional<Timestamp> newest) {
  const char* what = newest.has_value() ? "DeleteTenantIfNewest" : "DeleteTenant";
  TXFN_RETURN_IF_ERROR(CheckNotInDoubt(what));
  internal::MutexLock lock(&write_mu_);
  Connection& conn = *writer_;
  auto body = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(write_mu_) -> absl::StatusOr<bool> {
    // BEGIN IMMEDIATE takes the file's write lock: no other connection commits until COMMIT,
    // so the newest timestamp read here is still the newest at the deletes.
    TXFN_RETURN_IF_ERROR(conn.Run(Sql::kBeginImmediate));
    if (newest.has_value()) {
      Timestamp now_newest = 0;
      {
        TXFN_ASSIGN_OR_RETURN(sqlite3_stmt * raw, conn.Prepare(Sql::kTenantMaxTs));
        Stmt max(raw, path_);
        max.BindBlob(1, tenant);
        TXFN_ASSIGN_OR_RETURN(bool found, max.Step());
        if (found) now_newest = max.Ts(0);
      }  // reset before the rollback
      if (now_newest != *newest) {
        TXFN_RETURN_IF_ERROR(conn.Run(Sql::kRollback));
        return false;
      }
    }
    for (Sql sql :
         {Sql::kDeleteVersions, Sql::kDeleteLog, Sql::kDeleteCommits, Sql::kDeleteTenant}) {
      TXFN_ASSIGN_OR_RETURN(sqlite3_stmt * raw, conn.Prepare(sql));
      Stmt del(raw, path_);
      del.BindBlob(1, tenant);
      TXFN_RETURN_IF_ERROR(del.Run());
    }
    TXFN_RETURN_IF_ERROR(CommitWrite(conn, what));
    return true;
  };
  absl::StatusOr<bool> deleted = body();
  if (!deleted.ok()) conn.RollbackIfOpen();
  return deleted;
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
    // file (new files only: auto_vacuum is set when a file is created), at most
    // kMaxPagesVacuumedPerCall a call: every tenant's writes wait for this one.
    TXFN_ASSIGN_OR_RETURN(int64_t free_pages, conn.QueryInt("PRAGMA freelist_count"));
    TXFN_ASSIGN_OR_RETURN(int64_t pages, conn.QueryInt("PRAGMA page_count"));
    if (free_pages >= kMinFreePagesToVacuum && free_pages * 4 >= pages) {
      TXFN_RETURN_IF_ERROR(
          conn.Exec(internal::StrCat("PRAGMA incremental_vacuum(", kMaxPagesVacuumedPerCall, ")")));
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
  TXFN_ASSIGN_OR_RETURN(ReadLease lease, AcquireReader());
  return internal::BackupToNewFile(lease.conn().db(), path_, dest_path, "SqliteStorage::Backup");
}

}  // namespace txfn

// SqliteQueue; see txfn/sqlite_queue.h.
//
// Longer than txfn's ~700-line norm on purpose: the lease, settle and enqueue
// statements, their chunking, the per-connection SQL functions they call
// (txfn_lease_token, txfn_ack) and the seq hints they share must agree row
// for row; kept in one file, a reader checks them against each other at once.
#include "txfn/sqlite_queue.h"

#include <sqlite3.h>

#include <algorithm>
#include <bit>
#include <cstdint>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/cleanup/cleanup.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/string_view.h"
#include "fmt/core.h"
#include "lib/queue/lease_cursors.h"
#include "lib/queue/queue_rows.h"
#include "lib/sqlite_backup.h"
#include "lib/sqlite_status.h"
#include "txfn/internal/status_macros.h"
#include "txfn/internal/strings.h"
#include "txfn/storage.h"

namespace txfn {
namespace {

using internal::StrCat;

constexpr int kPending = internal::kRowPending;
constexpr int kLeased = internal::kRowLeased;
constexpr int kDead = internal::kRowDead;

// Rows per multi-row statement (Enqueue's INSERT, Settle's batched ACK): the
// per-statement cost (cursors opened and closed, the program started) then
// spreads over many rows, and the largest statement stays far below
// SQLite's variable limit (kMaxChunk * 7 parameters).
constexpr int kMaxChunk = 64;
// Settle deletes ACKed calls by a walk of their seq range when they form a
// run of at least kMinSeqRun seqs at most kMaxSeqGap apart (a walk costs one
// statement, and a visit to each row between them).
constexpr int64_t kMaxSeqGap = 8;
constexpr size_t kMinSeqRun = 16;

// The 16 id bytes of CallId::Bytes(), without a heap allocation.
struct IdBytes {
  explicit IdBytes(const CallId& id) {
    for (int i = 0; i < 8; ++i) {
      b[i] = static_cast<char>(id.hi() >> (56 - 8 * i));
      b[8 + i] = static_cast<char>(id.lo() >> (56 - 8 * i));
    }
  }
  std::string_view view() const { return {b, sizeof b}; }
  char b[16];
};

int64_t Nanos(absl::Time t) { return internal::QueueNanos(t); }
absl::Time FromNanos(int64_t n) { return internal::FromQueueNanos(n); }

constexpr const char* kCreateSchema = R"sql(
CREATE TABLE IF NOT EXISTS txfn_queue_meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS txfn_queue_calls (
  seq INTEGER PRIMARY KEY, id BLOB NOT NULL UNIQUE, shard INTEGER NOT NULL,
  function TEXT NOT NULL, state INTEGER NOT NULL, due INTEGER NOT NULL,
  attempts INTEGER NOT NULL, max_attempts INTEGER NOT NULL, deadline INTEGER NOT NULL,
  token INTEGER NOT NULL DEFAULT 0, reason TEXT NOT NULL DEFAULT '',
  dead_at INTEGER NOT NULL DEFAULT 0, call BLOB NOT NULL, quota INTEGER NOT NULL DEFAULT 0,
  tenant TEXT NOT NULL DEFAULT '', args_blob_bytes INTEGER NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS txfn_queue_calls_dead ON txfn_queue_calls (id) WHERE state = 2;
)sql";
// Version 5 added the args_blob_bytes column (TenantDepths' bytes without reading the blobs).
// Version 4 added the tenant column (the lease's skip_tenants and
// max_per_tenant). Version 2 added the quota column (the lease's quota filter). Version 3
// leases along one index, (shard, quota, due), in place of version 2's two:
// (shard, due, seq) and its copy for reserved calls only, which every call
// paid to keep (about a third of a no-op job's CPU). Every index entry ends
// with the rowid, seq, so the index is in (due, seq) order within a class
// without storing seq twice. A quota-filtered
// lease walks its class's range; an unfiltered one merges the two ranges
// (SQLite's MERGE of a UNION ALL, still in due order). Created after the
// upgrade of an older file.
constexpr const char* kCreateLeaseIndex = R"sql(
DROP INDEX IF EXISTS txfn_queue_calls_due;
DROP INDEX IF EXISTS txfn_queue_calls_due_reserved;
CREATE INDEX IF NOT EXISTS txfn_queue_calls_lease ON txfn_queue_calls (shard, quota, due);
CREATE TABLE IF NOT EXISTS txfn_queue_blobs (key TEXT PRIMARY KEY, value BLOB NOT NULL)
  WITHOUT ROWID;
)sql";

// `due` orders one index for everything a lease needs: a pending call is due
// at its start (or retry) time, a leased one at its lease's expiry (so an
// expired lease is simply due again, with no reclaim pass), a dead letter
// never (INT64_MAX).

// The statements, prepared once per connection on first use.
// Enqueue inserts up to kMaxChunk rows per statement (one statement per
// power-of-two chunk size, so a batch takes at most a few steps: a statement
// step costs about as much as inserting a row), ?(10i+1).. ?(10i+10) binding row i; the last
// is the spilled arguments' blob key (NULL if none), whose size args_blob_bytes records.
constexpr const char* kInsertHead =
    "INSERT OR IGNORE INTO txfn_queue_calls (id, shard, function, state, due, attempts, "
    "max_attempts, deadline, call, quota, tenant, args_blob_bytes) VALUES ";
constexpr int kInsertParams = 10;
constexpr const char* kBlobBytesOf =
    "coalesce((SELECT length(value) FROM txfn_queue_blobs WHERE key = ?{}), 0)";
// Leasing: the first ?3 due rows of shard ?1 at ?2, in lease order, with what
// the caller needs: one kLeaseSelectClassSql per quota class leased ("{}" is
// the class and the function filter binding ?7..), in a UNION ALL when
// there are two...
constexpr const char* kLeaseSelectClassSql =
    "SELECT seq, due, attempts, max_attempts, deadline, call, reason, tenant FROM txfn_queue_calls "
    "WHERE shard = ?1 AND due <= ?2 {}";
constexpr const char* kLeaseSelectOrderSql = " ORDER BY due, seq LIMIT ?3";
// ...then one UPDATE of those rows, minus the ones just dead-lettered: every
// row of the shard up to the last live one, (?2, ?3) = its (due, seq), under
// the same filter. That range holds exactly the selected rows: they are a
// prefix of the due order (of each class's too), and the rows leased or
// dead-lettered by earlier rounds now have a due past `now`. txfn_lease_token(seq) hands each row
// the token Lease chose for it (and fails the statement for any other row).
constexpr const char* kLeaseUpdateSql =
    "UPDATE txfn_queue_calls SET state = 1, due = ?4, token = txfn_lease_token(seq), "
    "attempts = attempts + 1 WHERE shard = ?1 AND (due, seq) <= (?2, ?3) {}";
// The same rows when their seqs are dense, ?5..?6 the least and greatest:
// SQLite then walks the table's seq range and updates each row as it goes
// (no index walk, no list of rows to revisit: about 10% of a lease's cost).
// The other rows in that range only fail the filter.
constexpr const char* kLeaseUpdateBySeqSql =
    "UPDATE txfn_queue_calls NOT INDEXED SET state = 1, due = ?4, "
    "token = txfn_lease_token(seq), attempts = attempts + 1 "
    "WHERE seq BETWEEN ?5 AND ?6 AND shard = ?1 AND (due, seq) <= (?2, ?3) {}";
constexpr int kLeaseFunctionParam = 7;
constexpr const char* kMarkDead =
    "UPDATE txfn_queue_calls SET state = 2, due = 9223372036854775807, dead_at = ?2, "
    "reason = ?3 WHERE seq = ?1";
constexpr const char* kGetMeta = "SELECT value FROM txfn_queue_meta WHERE name = ?1";
constexpr const char* kSetMeta =
    "INSERT INTO txfn_queue_meta (name, value) VALUES (?1, ?2) "
    "ON CONFLICT(name) DO UPDATE SET value = excluded.value";
constexpr const char* kLookup =
    "SELECT seq, state, due, token, attempts, max_attempts FROM txfn_queue_calls WHERE id = ?1";
// The ACK fast path: deletes the row only under the live lease ?2 at ?3.
constexpr const char* kAck =
    "DELETE FROM txfn_queue_calls WHERE id = ?1 AND state = 1 AND token = ?2 AND due > ?3";
// Batched ACKs, up to kMaxChunk ids per statement: txfn_ack() is true (and
// records the ACK as done) only for a row under the live lease the batch
// names for its id; see Db::BeginAcks.
constexpr const char* kAckBatchHead =
    "DELETE FROM txfn_queue_calls WHERE txfn_ack(id, state, token, due) AND id IN (";
// Batched ACKs of calls this connection leased from a dense run of seqs
// ?1..?2 (see Db::RememberSeq): a walk of that range deleting as it goes,
// about a quarter cheaper per ACK than the lookups by id.
constexpr const char* kAckSeqRange =
    "DELETE FROM txfn_queue_calls NOT INDEXED WHERE seq BETWEEN ?1 AND ?2 AND "
    "txfn_ack(id, state, token, due)";
constexpr const char* kNack =
    "UPDATE txfn_queue_calls SET state = 0, due = ?2, token = 0, reason = ?3 WHERE seq = ?1";
constexpr const char* kRelease =
    "UPDATE txfn_queue_calls SET state = 0, due = ?2, token = 0, attempts = attempts - 1 "
    "WHERE seq = ?1";
constexpr const char* kExtend = "UPDATE txfn_queue_calls SET due = ?2 WHERE seq = ?1";
// RemovePending: the row only while it waits (pending, or its lease expired by ?2).
constexpr const char* kRemovePending =
    "DELETE FROM txfn_queue_calls WHERE id = ?1 AND (state = 0 OR (state = 1 AND due <= ?2))";
// RemoveDeadLetters: the row only if it is a dead letter.
constexpr const char* kRemoveDead =
    "DELETE FROM txfn_queue_calls WHERE id = ?1 AND state = 2 AND dead_at < ?2";
constexpr const char* kListDead =
    "SELECT id, dead_at, reason, attempts, call, shard FROM txfn_queue_calls WHERE state = 2 AND "
    "id > ?1 ORDER BY id LIMIT ?2";
constexpr const char* kRedriveLookup =
    "SELECT seq, state, call FROM txfn_queue_calls WHERE id = ?1";
constexpr const char* kRedrive =
    "UPDATE txfn_queue_calls SET state = 0, due = ?2, attempts = 0, token = 0, reason = '', "
    "deadline = ?3, call = ?4 WHERE seq = ?1";
constexpr const char* kDepths =
    "SELECT function, "
    "SUM(CASE WHEN state = 1 AND due > ?1 THEN 0 ELSE 1 END), "
    "SUM(CASE WHEN due <= ?1 THEN 1 ELSE 0 END), "
    "SUM(CASE WHEN state = 1 AND due > ?1 THEN 1 ELSE 0 END), "
    "MIN(CASE WHEN due <= ?1 THEN due END) "
    "FROM txfn_queue_calls WHERE state < 2 GROUP BY function ORDER BY function";
constexpr const char* kTenantDepths =
    "SELECT tenant, COUNT(*), SUM(length(call) + args_blob_bytes) FROM txfn_queue_calls "
    "WHERE state < 2 GROUP BY tenant ORDER BY tenant";
constexpr const char* kFind =
    "SELECT state, due, attempts, reason, dead_at, call FROM txfn_queue_calls WHERE id = ?1";
// ListCalls pages through every call in id order (the UNIQUE index on id).
// ?3, ?4: the filter's tenant and function, or '' (the rows are filtered again as decoded).
constexpr const char* kListPage =
    "SELECT state, due, attempts, reason, dead_at, call, id FROM txfn_queue_calls "
    "WHERE id > ?1 AND id < ?5 AND (?3 = '' OR tenant = ?3) AND (?4 = '' OR function = ?4) "
    "ORDER BY id LIMIT ?2";
constexpr const char* kBlobPut =
    "INSERT INTO txfn_queue_blobs (key, value) VALUES (?1, ?2) "
    "ON CONFLICT(key) DO UPDATE SET value = excluded.value";
constexpr const char* kBlobGet = "SELECT value FROM txfn_queue_blobs WHERE key = ?1";
constexpr const char* kBlobDelete = "DELETE FROM txfn_queue_blobs WHERE key = ?1";

}  // namespace

// One connection with its prepared statements. Used under SqliteQueue::mu_.
class SqliteQueue::Db {
 public:
  // A prepared statement borrowed for one use; reset when it goes away.
  class Stmt {
   public:
    Stmt(sqlite3_stmt* s, Db* db) : s_(s), db_(db) {}
    ~Stmt() {
      if (s_ == nullptr) return;
      sqlite3_reset(s_);
      sqlite3_clear_bindings(s_);
    }
    Stmt(Stmt&& other) noexcept : s_(std::exchange(other.s_, nullptr)), db_(other.db_) {}
    Stmt& operator=(Stmt&&) = delete;

    Stmt& Bind(int i, int64_t v) {
      sqlite3_bind_int64(s_, i, v);
      return *this;
    }
    // Text and blobs are bound without a copy: keep them alive until reset.
    Stmt& BindBlob(int i, std::string_view v) {
      sqlite3_bind_blob(s_, i, v.empty() ? "" : v.data(), static_cast<int>(v.size()),
                        SQLITE_STATIC);
      return *this;
    }
    Stmt& BindText(size_t i, std::string_view v) { return BindText(static_cast<int>(i), v); }
    Stmt& BindText(int i, std::string_view v) {
      sqlite3_bind_text(s_, i, v.empty() ? "" : v.data(), static_cast<int>(v.size()),
                        SQLITE_STATIC);
      return *this;
    }
    // True: a row is ready; false: done.
    absl::StatusOr<bool> Step() {
      int rc = sqlite3_step(s_);
      if (rc == SQLITE_ROW) return true;
      if (rc == SQLITE_DONE) return false;
      return db_->Error(rc, sqlite3_sql(s_));
    }
    // Steps a statement that returns no rows, then resets it for new bindings.
    absl::Status Run() {
      absl::Status s = Step().status();
      sqlite3_reset(s_);
      return s;
    }
    void Reset() { sqlite3_reset(s_); }
    int64_t Int(int col) { return sqlite3_column_int64(s_, col); }
    bool IsNull(int col) { return sqlite3_column_type(s_, col) == SQLITE_NULL; }
    std::string_view Blob(int col) {
      const void* p = sqlite3_column_blob(s_, col);
      const int n = sqlite3_column_bytes(s_, col);
      return p == nullptr ? std::string_view() : std::string_view(static_cast<const char*>(p), n);
    }

   private:
    sqlite3_stmt* s_;
    Db* db_;
  };

  static absl::StatusOr<std::unique_ptr<Db>> Open(const std::string& path,
                                                  const SqliteQueueOptions& options) {
    sqlite3* raw = nullptr;
    const int rc = sqlite3_open_v2(path.c_str(), &raw,
                                   SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                                   options.vfs.empty() ? nullptr : options.vfs.c_str());
    auto db = std::unique_ptr<Db>(new Db(raw, path));
    if (rc != SQLITE_OK) return db->Error(rc, "open");
    sqlite3_extended_result_codes(raw, 1);
    sqlite3_busy_timeout(
        raw, static_cast<int>(std::clamp<int64_t>(absl::ToInt64Milliseconds(options.busy_timeout),
                                                  0, std::numeric_limits<int>::max())));
    return db;
  }

  ~Db() {
    for (auto& [sql, stmt] : stmts_) sqlite3_finalize(stmt);
    for (auto& [sql, stmt] : dynamic_) sqlite3_finalize(stmt);
    for (auto& [key, stmt] : chunks_) sqlite3_finalize(stmt);
    sqlite3_close_v2(db_);
  }
  Db(const Db&) = delete;
  Db& operator=(const Db&) = delete;

  absl::Status Error(int rc, std::string_view context) {
    return absl::Status(internal::SqliteStatusCode(rc),
                        internal::ToAbsl(fmt::format("SqliteQueue '{}': {}: {} (sqlite error {})",
                                                     path_, context, sqlite3_errmsg(db_), rc)));
  }

  absl::StatusOr<Stmt> Prepare(const char* sql) {
    sqlite3_stmt*& s = stmts_[sql];
    if (s == nullptr) {
      const int rc = sqlite3_prepare_v3(db_, sql, -1, SQLITE_PREPARE_PERSISTENT, &s, nullptr);
      if (rc != SQLITE_OK) {
        sqlite3_finalize(s);
        s = nullptr;
        return Error(rc, StrCat("prepare ", sql));
      }
    }
    return absl::StatusOr<Stmt>(absl::in_place, s, this);
  }

  // A statement of text built at run time (cached by its text).
  absl::StatusOr<Stmt> PrepareDynamic(const std::string& sql) {
    sqlite3_stmt*& s = dynamic_[sql];
    if (s == nullptr) {
      const int rc =
          sqlite3_prepare_v3(db_, sql.c_str(), -1, SQLITE_PREPARE_PERSISTENT, &s, nullptr);
      if (rc != SQLITE_OK) {
        sqlite3_finalize(s);
        s = nullptr;
        return Error(rc, StrCat("prepare ", sql));
      }
    }
    return absl::StatusOr<Stmt>(absl::in_place, s, this);
  }

  // The most rows one chunked statement of `params_per_row` parameters
  // takes: kMaxChunk, or less when the connection's variable limit is lower
  // (a power of two, >= 1).
  int MaxChunk(int params_per_row) const {
    const int limit = sqlite3_limit(db_, SQLITE_LIMIT_VARIABLE_NUMBER, -1);
    int rows = kMaxChunk;
    while (rows > 1 && rows * params_per_row > limit) rows /= 2;
    return rows;
  }
  // The multi-row INSERT of `rows` rows, or the batched ACK of `rows` ids;
  // prepared on first use and kept.
  enum class Chunked { kInsert, kAck };
  absl::StatusOr<Stmt> PrepareChunk(Chunked kind, int rows) {
    sqlite3_stmt*& s = chunks_[{kind, rows}];
    if (s == nullptr) {
      std::string sql = kind == Chunked::kInsert ? kInsertHead : kAckBatchHead;
      for (int i = 0; i < rows; ++i) {
        if (kind == Chunked::kInsert) {
          const int p = kInsertParams * i;
          sql += StrCat(i == 0 ? "" : ", ", "(?", p + 1, ", ?", p + 2, ", ?", p + 3, ", 0, ?",
                        p + 4, ", 0, ?", p + 5, ", ?", p + 6, ", ?", p + 7, ", ?", p + 8, ", ?",
                        p + 9, ", ", fmt::format(kBlobBytesOf, p + 10), ")");
        } else {
          sql += StrCat(i == 0 ? "?" : ", ?", i + 1);
        }
      }
      if (kind == Chunked::kAck) sql += ")";
      const int rc =
          sqlite3_prepare_v3(db_, sql.c_str(), -1, SQLITE_PREPARE_PERSISTENT, &s, nullptr);
      if (rc != SQLITE_OK) {
        sqlite3_finalize(s);
        s = nullptr;
        return Error(rc, StrCat("prepare ", sql.substr(0, 200)));
      }
    }
    return absl::StatusOr<Stmt>(absl::in_place, s, this);
  }

  // Where leases that skip tenants may start (see lease_cursors.h): kept
  // while only this connection writes the file, forgotten when another one
  // committed since the last look (PRAGMA data_version changed).
  internal::LeaseCursors& cursors() { return cursors_; }
  absl::Status ForgetCursorsIfAnotherConnectionWrote() {
    TXFN_ASSIGN_OR_RETURN(Stmt version, Prepare("PRAGMA data_version"));
    TXFN_ASSIGN_OR_RETURN(bool row, version.Step());
    const int64_t v = row ? version.Int(0) : -1;
    if (v != data_version_) {
      cursors_.Clear();
      data_version_ = v;
    }
    return absl::OkStatus();
  }

  // The lease counter: set_next_token() from the file when a Lease begins,
  // next_token() to store it back.
  void set_next_token(int64_t t) { next_token_ = t; }
  int64_t next_token() const { return next_token_; }

  // txfn_lease_token(seq) answers the token assigned here to each row a
  // lease statement may update; clear them when the statement is done.
  void AssignLeaseToken(int64_t seq, int64_t token) { lease_tokens_[seq] = token; }
  void ClearLeaseTokens() { lease_tokens_.clear(); }

  // Batched ACKs: txfn_ack(id, state, token, due) is 1 for a row whose id is
  // one added by AddAck, under that ACK's token, leased and unexpired at
  // `now`; it then sets the ACK's `*done`.
  void BeginAcks(int64_t now) {
    acks_.clear();
    ack_now_ = now;
  }
  void AddAck(const CallId& id, uint64_t token, bool* done) { acks_[id] = {token, done}; }

  // The seq of each call this connection leased and has not seen settled:
  // a hint that lets Settle delete ACKed calls by a walk of their seq range.
  // Never trusted: txfn_ack checks each row's id and token. Bounded by
  // forgetting everything when full (calls settled by another process, or
  // never settled, would otherwise stay).
  void RememberSeq(const CallId& id, int64_t seq) {
    if (seq_of_.size() >= kMaxRememberedSeqs) seq_of_.clear();
    seq_of_[id] = seq;
  }
  std::optional<int64_t> FindSeq(const CallId& id) const {
    auto it = seq_of_.find(id);
    if (it == seq_of_.end()) return std::nullopt;
    return it->second;
  }
  void ForgetSeq(const CallId& id) { seq_of_.erase(id); }
  void ClearAcks() { acks_.clear(); }

  absl::Status RegisterFunctions() {
    int rc = sqlite3_create_function(
        db_, "txfn_lease_token", 1, SQLITE_UTF8 | SQLITE_DIRECTONLY, this,
        [](sqlite3_context* ctx, int, sqlite3_value** argv) {
          auto* self = static_cast<Db*>(sqlite3_user_data(ctx));
          auto it = self->lease_tokens_.find(sqlite3_value_int64(argv[0]));
          if (it == self->lease_tokens_.end()) {
            // A row Lease did not select: never expected (the statement's
            // range is exactly the selection); fail rather than lease it.
            sqlite3_result_error(ctx, "txfn_lease_token: the row was not selected", -1);
            return;
          }
          sqlite3_result_int64(ctx, it->second);
        },
        nullptr, nullptr);
    if (rc != SQLITE_OK) return Error(rc, "create function txfn_lease_token");
    rc = sqlite3_create_function(
        db_, "txfn_ack", 4, SQLITE_UTF8 | SQLITE_DIRECTONLY, this,
        [](sqlite3_context* ctx, int, sqlite3_value** argv) {
          auto* self = static_cast<Db*>(sqlite3_user_data(ctx));
          const auto* id = static_cast<const unsigned char*>(sqlite3_value_blob(argv[0]));
          bool live = id != nullptr && sqlite3_value_bytes(argv[0]) == 16;
          uint64_t hi = 0, lo = 0;
          for (int i = 0; live && i < 8; ++i) {
            hi = (hi << 8) | id[i];
            lo = (lo << 8) | id[8 + i];
          }
          auto it = live ? self->acks_.find(CallId(hi, lo)) : self->acks_.end();
          live = it != self->acks_.end() && sqlite3_value_int64(argv[1]) == kLeased &&
                 static_cast<uint64_t>(sqlite3_value_int64(argv[2])) == it->second.token &&
                 sqlite3_value_int64(argv[3]) > self->ack_now_;
          if (live) *it->second.done = true;
          sqlite3_result_int(ctx, live ? 1 : 0);
        },
        nullptr, nullptr);
    if (rc != SQLITE_OK) return Error(rc, "create function txfn_ack");
    return absl::OkStatus();
  }

  absl::Status Exec(const std::string& sql) {
    char* err = nullptr;
    const int rc = sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &err);
    sqlite3_free(err);
    if (rc != SQLITE_OK) return Error(rc, sql);
    return absl::OkStatus();
  }

  // The first column of the first row of `sql` as text ("" if none).
  absl::StatusOr<std::string> QueryText(const std::string& sql) {
    sqlite3_stmt* s = nullptr;
    int rc = sqlite3_prepare_v2(db_, sql.c_str(), -1, &s, nullptr);
    std::unique_ptr<sqlite3_stmt, int (*)(sqlite3_stmt*)> owned(s, &sqlite3_finalize);
    if (rc != SQLITE_OK) return Error(rc, sql);
    rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
      const unsigned char* t = sqlite3_column_text(s, 0);
      return std::string(t != nullptr ? reinterpret_cast<const char*>(t) : "");
    }
    if (rc != SQLITE_DONE) return Error(rc, sql);
    return std::string();
  }

  absl::StatusOr<std::optional<int64_t>> GetMeta(std::string_view name) {
    TXFN_ASSIGN_OR_RETURN(Stmt s, Prepare(kGetMeta));
    s.BindText(1, name);
    TXFN_ASSIGN_OR_RETURN(bool row, s.Step());
    if (!row) return std::optional<int64_t>();
    return std::optional<int64_t>(s.Int(0));
  }
  absl::Status SetMeta(std::string_view name, int64_t value) {
    TXFN_ASSIGN_OR_RETURN(Stmt s, Prepare(kSetMeta));
    return s.BindText(1, name).Bind(2, value).Run();
  }

  bool InTransaction() const { return sqlite3_get_autocommit(db_) == 0; }
  // Rows changed by the last INSERT, UPDATE or DELETE.
  int changes() const { return sqlite3_changes(db_); }
  const std::string& path() const { return path_; }

 private:
  Db(sqlite3* db, std::string path) : db_(db), path_(std::move(path)) {}

  sqlite3* const db_;
  const std::string path_;
  absl::flat_hash_map<const char*, sqlite3_stmt*> stmts_;
  absl::flat_hash_map<std::string, sqlite3_stmt*> dynamic_;
  absl::flat_hash_map<std::pair<Chunked, int>, sqlite3_stmt*> chunks_;
  int64_t next_token_ = 1;
  internal::LeaseCursors cursors_;
  int64_t data_version_ = -1;
  absl::flat_hash_map<int64_t, int64_t> lease_tokens_;  // seq -> token
  struct AckSlot {
    uint64_t token;
    bool* done;
  };
  absl::flat_hash_map<CallId, AckSlot> acks_;
  static constexpr size_t kMaxRememberedSeqs = 1 << 18;
  absl::flat_hash_map<CallId, int64_t> seq_of_;
  int64_t ack_now_ = 0;
};

constexpr const char* kBegin = "BEGIN IMMEDIATE";
constexpr const char* kCommit = "COMMIT";

absl::Status SqliteQueue::RefuseIfInDoubt() const {
  if (doubt_.empty()) return absl::OkStatus();
  return absl::UnavailableError(
      StrCat("SqliteQueue '", path_, "': refused: an earlier COMMIT failed (", doubt_,
             "), so whether its changes are durable is unknown until the queue is reopened "
             "(recovery then replays or discards them)"));
}

absl::Status SqliteQueue::RefuseIfInDoubtNow() {
  internal::MutexLock lock(&mu_);
  return RefuseIfInDoubt();
}

template <typename Body>
absl::Status SqliteQueue::InWriteTransaction(Body&& body) {
  TXFN_RETURN_IF_ERROR(RefuseIfInDoubt());
  absl::Status s;
  {
    absl::StatusOr<Db::Stmt> begin = db_->Prepare(kBegin);
    s = begin.ok() ? begin->Run() : begin.status();
  }
  if (s.ok()) s = body(*db_);
  if (s.ok()) {
    absl::StatusOr<Db::Stmt> commit = db_->Prepare(kCommit);
    if (!commit.ok()) {
      s = commit.status();
    } else if (absl::Status committed = commit->Run(); !committed.ok()) {
      // An error from COMMIT itself: its WAL frames may be written (an fsync that failed
      // after them), invisible now but replayed by recovery. So, as SqliteStorage does, the
      // outcome is unknown, and the queue answers nothing more until it is reopened: a
      // later commit would overwrite those frames, and a read would deny what recovery
      // may bring back.
      doubt_ = std::string(committed.message());
      if (db_->InTransaction()) (void)db_->Exec("ROLLBACK");
      return CommitOutcomeUnknownError(StrCat("SqliteQueue '", path_,
                                              "': COMMIT failed, the outcome is unknown until "
                                              "the queue is reopened: ",
                                              committed.message()));
    }
  }
  if (!s.ok() && db_->InTransaction()) (void)db_->Exec("ROLLBACK");
  return s;
}

// The BlobStore on the queue's connection.
class SqliteQueue::Blobs final : public BlobStore {
 public:
  explicit Blobs(SqliteQueue* q) : q_(q) {}
  absl::Status Put(std::string_view key, std::string_view value) override {
    TXFN_RETURN_IF_ERROR(ValidateBlobKey(key));
    internal::MutexLock lock(&q_->mu_);
    return q_->InWriteTransaction([&](Db& db) -> absl::Status {
      TXFN_ASSIGN_OR_RETURN(Db::Stmt s, db.Prepare(kBlobPut));
      return s.BindText(1, key).BindBlob(2, value).Run();
    });
  }
  absl::StatusOr<std::string> Get(std::string_view key) override {
    internal::MutexLock lock(&q_->mu_);
    TXFN_RETURN_IF_ERROR(q_->RefuseIfInDoubt());
    TXFN_ASSIGN_OR_RETURN(Db::Stmt s, q_->db_->Prepare(kBlobGet));
    s.BindText(1, key);
    TXFN_ASSIGN_OR_RETURN(bool row, s.Step());
    if (!row) return absl::NotFoundError(StrCat("blob '", key.substr(0, 64), "' not found"));
    return std::string(s.Blob(0));
  }
  absl::Status Delete(std::string_view key) override {
    internal::MutexLock lock(&q_->mu_);
    return q_->InWriteTransaction([&](Db& db) -> absl::Status {
      TXFN_ASSIGN_OR_RETURN(Db::Stmt s, db.Prepare(kBlobDelete));
      return s.BindText(1, key).Run();
    });
  }

 private:
  SqliteQueue* const q_;
};

absl::StatusOr<std::unique_ptr<SqliteQueue>> SqliteQueue::Open(std::string path,
                                                               SqliteQueueOptions options) {
  if (path.empty() || path == ":memory:") {
    return absl::InvalidArgumentError(StrCat("SqliteQueue::Open: '", path, "' is not a file path"));
  }
  if (options.shards < 0 || options.shards > kMaxShards) {
    return absl::InvalidArgumentError(
        StrCat("SqliteQueue::Open: shards must be in [0, ", kMaxShards, "], not ", options.shards));
  }
  TXFN_ASSIGN_OR_RETURN(std::unique_ptr<Db> db, Db::Open(path, options));
  TXFN_RETURN_IF_ERROR(db->RegisterFunctions());
  TXFN_ASSIGN_OR_RETURN(std::string mode, db->QueryText("PRAGMA journal_mode = WAL"));
  if (mode != "wal") {
    return absl::UnavailableError(
        StrCat("SqliteQueue '", path, "': cannot switch to WAL journal mode (got '", mode, "')"));
  }
  const char* sync = options.synchronous == SqliteQueueOptions::Synchronous::kFull     ? "FULL"
                     : options.synchronous == SqliteQueueOptions::Synchronous::kNormal ? "NORMAL"
                                                                                       : "OFF";
  TXFN_RETURN_IF_ERROR(db->Exec(StrCat("PRAGMA synchronous = ", sync)));
  TXFN_RETURN_IF_ERROR(
      db->Exec(StrCat("PRAGMA secure_delete = ", options.secure_delete ? "ON" : "OFF")));

  int shards = 0;
  TXFN_RETURN_IF_ERROR(db->Exec("BEGIN IMMEDIATE"));
  absl::Status s = [&]() -> absl::Status {
    TXFN_RETURN_IF_ERROR(db->Exec(kCreateSchema));
    TXFN_ASSIGN_OR_RETURN(std::optional<int64_t> version, db->GetMeta("schema_version"));
    if (version.has_value() && *version > kSchemaVersion) {
      return absl::FailedPreconditionError(
          StrCat("SqliteQueue '", path, "': the file has queue schema version ", *version,
                 ", newer than version ", kSchemaVersion, " which this build reads"));
    }
    if (version.has_value() && *version < 2) TXFN_RETURN_IF_ERROR(AddQuotaColumn(*db));
    if (version.has_value() && *version < 4) TXFN_RETURN_IF_ERROR(AddTenantColumn(*db));
    TXFN_RETURN_IF_ERROR(db->Exec(kCreateLeaseIndex));
    if (version.has_value() && *version < 5) TXFN_RETURN_IF_ERROR(AddArgsBlobBytesColumn(*db));
    TXFN_RETURN_IF_ERROR(db->SetMeta("schema_version", kSchemaVersion));
    TXFN_ASSIGN_OR_RETURN(std::optional<int64_t> stored, db->GetMeta("shards"));
    if (stored.has_value()) {
      if (options.shards != 0 && options.shards != *stored) {
        return absl::FailedPreconditionError(StrCat("SqliteQueue '", path, "': the file has ",
                                                    *stored, " shards; it cannot be opened with ",
                                                    options.shards));
      }
      shards = static_cast<int>(*stored);
    } else {
      shards = std::max(options.shards, 1);
      TXFN_RETURN_IF_ERROR(db->SetMeta("shards", shards));
      TXFN_RETURN_IF_ERROR(db->SetMeta("next_token", 1));
    }
    return db->Exec("COMMIT");
  }();
  if (!s.ok()) {
    if (db->InTransaction()) (void)db->Exec("ROLLBACK");
    return s;
  }
  TXFN_ASSIGN_OR_RETURN(std::unique_ptr<Db> reader, Db::Open(path, options));
  TXFN_RETURN_IF_ERROR(reader->Exec("PRAGMA query_only = ON"));  // it only counts
  return std::unique_ptr<SqliteQueue>(
      new SqliteQueue(std::move(path), shards, std::move(db), std::move(reader)));
}

SqliteQueue::SqliteQueue(std::string path, int shards, std::unique_ptr<Db> db,
                         std::unique_ptr<Db> reader)
    : path_(std::move(path)), shards_(shards), db_(std::move(db)), reader_(std::move(reader)) {
  blobs_ = std::make_unique<Blobs>(this);
}

SqliteQueue::~SqliteQueue() = default;

BlobStore& SqliteQueue::blob_store() { return *blobs_; }

absl::StatusOr<size_t> SqliteQueue::Enqueue(absl::Span<const Call> calls) {
  TXFN_RETURN_IF_ERROR(ValidateEnqueueBatch(calls));
  if (calls.empty()) return size_t{0};
  // Encode outside the lock.
  std::vector<IdBytes> ids;
  std::vector<std::string> encoded;
  ids.reserve(calls.size());
  encoded.reserve(calls.size());
  for (const Call& c : calls) {
    ids.emplace_back(c.id);
    if (c.attempt == 0) {
      encoded.push_back(EncodeCall(c));
    } else {
      Call stored = c;
      stored.attempt = 0;
      encoded.push_back(EncodeCall(stored));
    }
  }
  absl::Time earliest_due = absl::InfiniteFuture();
  for (const Call& c : calls) earliest_due = std::min(earliest_due, c.start_after);
  size_t added = 0;
  internal::MutexLock lock(&mu_);
  db_->cursors().ForgetFrom(Nanos(earliest_due));
  TXFN_RETURN_IF_ERROR(InWriteTransaction([&](Db& db) -> absl::Status {
    // Chunks of the largest power of two that fits what is left: a batch
    // of n rows takes at most n / max + log2(max) statements.
    const size_t max_chunk = static_cast<size_t>(db.MaxChunk(kInsertParams));
    size_t chunk = max_chunk;
    for (size_t i = 0; i < calls.size(); i += chunk) {
      while (chunk > calls.size() - i) chunk /= 2;
      TXFN_ASSIGN_OR_RETURN(Db::Stmt ins,
                            db.PrepareChunk(Db::Chunked::kInsert, static_cast<int>(chunk)));
      for (size_t k = 0; k < chunk; ++k) {
        const Call& c = calls[i + k];
        const int p = kInsertParams * static_cast<int>(k);
        ins.BindBlob(p + 1, ids[i + k].view())
            .Bind(p + 2, ShardOf(c.id))
            .BindText(p + 3, c.function)
            .Bind(p + 4, Nanos(c.start_after))
            .Bind(p + 5, c.retry.max_attempts)
            .Bind(p + 6, Nanos(c.deadline))
            .BindBlob(p + 7, encoded[i + k])
            .Bind(p + 8, static_cast<int64_t>(c.quota))
            .BindText(p + 9, c.tenant);
        if (!c.args_blob.empty()) ins.BindText(p + 10, c.args_blob);
      }
      TXFN_RETURN_IF_ERROR(ins.Run());
      added += static_cast<size_t>(db.changes());  // INSERT OR IGNORE: a known id adds 0
    }
    return absl::OkStatus();
  }));
  return added;
}

namespace {

// The rows a lease takes: of `quota` (nullopt: either class; the literal lets
// SQLite walk the lease index's range of each class), with `functions`
// (0: any function) of the function names bound at ?kLeaseFunctionParam...,
// with `skips` (0: any tenant) not of the tenants bound after those, and
// after the (due, seq) bound after those (the lease's cursor, or the start).
std::string LeaseFilter(size_t functions, size_t skips, std::optional<QuotaClass> quota) {
  std::string filter = quota.has_value()
                           ? StrCat("AND quota = ", static_cast<int>(*quota))
                           : StrCat("AND quota IN (", static_cast<int>(QuotaClass::kReserved), ", ",
                                    static_cast<int>(QuotaClass::kOpportunistic), ")");
  if (functions > 0) {
    filter += " AND function IN (";
    for (size_t i = 0; i < functions; ++i) {
      filter += StrCat(i == 0 ? "" : ", ", "?", kLeaseFunctionParam + i);
    }
    filter += ")";
  }
  if (skips > 0) {
    filter += " AND tenant NOT IN (";
    for (size_t i = 0; i < skips; ++i) {
      filter += StrCat(i == 0 ? "" : ", ", "?", kLeaseFunctionParam + functions + i);
    }
    filter += ")";
  }
  const size_t after = kLeaseFunctionParam + functions + skips;
  filter += StrCat(" AND (due, seq) > (?", after, ", ?", after + 1, ")");
  return filter;
}

// `sql` (an UPDATE) with the lease's filter.
std::string LeaseSql(const char* sql, size_t functions, size_t skips,
                     std::optional<QuotaClass> quota) {
  return fmt::format(fmt::runtime(sql), LeaseFilter(functions, skips, quota));
}

// The lease's SELECT: one class's range in due order, or both merged.
std::string LeaseSelectSql(size_t functions, size_t skips, std::optional<QuotaClass> quota) {
  if (quota.has_value()) {
    return StrCat(LeaseSql(kLeaseSelectClassSql, functions, skips, quota), kLeaseSelectOrderSql);
  }
  return StrCat(LeaseSql(kLeaseSelectClassSql, functions, skips, QuotaClass::kReserved),
                " UNION ALL ",
                LeaseSql(kLeaseSelectClassSql, functions, skips, QuotaClass::kOpportunistic),
                kLeaseSelectOrderSql);
}

std::string Stale(const LeaseToken& t, int64_t state, int64_t token, int64_t expires) {
  return StaleLeaseMessage(t,
                           state == kDead      ? QueuedCall::State::kDead
                           : state == kPending ? QueuedCall::State::kPending
                                               : QueuedCall::State::kLeased,
                           static_cast<uint64_t>(token), FromNanos(expires));
}

}  // namespace

absl::Status SqliteQueue::ForEachStoredCall(
    Db& db, absl::FunctionRef<absl::Status(int64_t, const Call&)> fn) {
  TXFN_ASSIGN_OR_RETURN(Db::Stmt select, db.Prepare("SELECT seq, call FROM txfn_queue_calls"));
  while (true) {
    TXFN_ASSIGN_OR_RETURN(bool row, select.Step());
    if (!row) return absl::OkStatus();
    TXFN_ASSIGN_OR_RETURN(Call call, DecodeCall(select.Blob(1)));
    TXFN_RETURN_IF_ERROR(fn(select.Int(0), call));
  }
}

absl::Status SqliteQueue::AddQuotaColumn(Db& db) {
  TXFN_RETURN_IF_ERROR(
      db.Exec("ALTER TABLE txfn_queue_calls ADD COLUMN quota INTEGER NOT NULL DEFAULT 0"));
  // The column defaults to reserved; the opportunistic calls are found in
  // their stored encoding.
  std::vector<int64_t> opportunistic;
  TXFN_RETURN_IF_ERROR(ForEachStoredCall(db, [&](int64_t seq, const Call& call) {
    if (call.quota == QuotaClass::kOpportunistic) opportunistic.push_back(seq);
    return absl::OkStatus();
  }));
  for (int64_t seq : opportunistic) {
    TXFN_ASSIGN_OR_RETURN(Db::Stmt update,
                          db.Prepare("UPDATE txfn_queue_calls SET quota = 1 WHERE seq = ?1"));
    TXFN_RETURN_IF_ERROR(update.Bind(1, seq).Run());
  }
  return absl::OkStatus();
}

absl::Status SqliteQueue::AddTenantColumn(Db& db) {
  TXFN_RETURN_IF_ERROR(
      db.Exec("ALTER TABLE txfn_queue_calls ADD COLUMN tenant TEXT NOT NULL DEFAULT ''"));
  std::vector<std::pair<int64_t, std::string>> tenants;
  TXFN_RETURN_IF_ERROR(ForEachStoredCall(db, [&](int64_t seq, const Call& call) {
    tenants.emplace_back(seq, call.tenant);
    return absl::OkStatus();
  }));
  for (const auto& [seq, tenant] : tenants) {
    TXFN_ASSIGN_OR_RETURN(Db::Stmt update,
                          db.Prepare("UPDATE txfn_queue_calls SET tenant = ?2 WHERE seq = ?1"));
    TXFN_RETURN_IF_ERROR(update.Bind(1, seq).BindText(2, tenant).Run());
  }
  return absl::OkStatus();
}

absl::Status SqliteQueue::AddArgsBlobBytesColumn(Db& db) {
  TXFN_RETURN_IF_ERROR(db.Exec(
      "ALTER TABLE txfn_queue_calls ADD COLUMN args_blob_bytes INTEGER NOT NULL DEFAULT 0"));
  std::vector<std::pair<int64_t, std::string>> spilled;
  TXFN_RETURN_IF_ERROR(ForEachStoredCall(db, [&](int64_t seq, const Call& call) {
    if (!call.args_blob.empty()) spilled.emplace_back(seq, call.args_blob);
    return absl::OkStatus();
  }));
  const std::string sql =
      StrCat("UPDATE txfn_queue_calls SET args_blob_bytes = ", fmt::format(kBlobBytesOf, 2),
             " WHERE seq = ?1");
  for (const auto& [seq, key] : spilled) {
    TXFN_ASSIGN_OR_RETURN(Db::Stmt update, db.PrepareDynamic(sql));
    TXFN_RETURN_IF_ERROR(update.Bind(1, seq).BindText(2, key).Run());
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<LeasedCall>> SqliteQueue::Lease(const LeaseRequest& request) {
  TXFN_RETURN_IF_ERROR(ValidateLeaseRequest(request, shard_count()));
  const int64_t now = Nanos(request.now);
  const absl::Time expires = request.now + request.lease_duration;
  std::vector<std::string> functions;
  {
    absl::flat_hash_set<std::string> seen;
    for (const std::string& f : request.functions) {
      if (seen.insert(f).second) functions.push_back(f);
    }
  }
  // Tenants not to lease from: those asked, then those at max_per_tenant.
  std::vector<std::string> skips;
  absl::flat_hash_set<std::string> skipped;
  for (const std::string& t : request.skip_tenants) {
    if (skipped.insert(t).second) skips.push_back(t);
  }
  internal::LeaseFilterKey key{
      .shard = request.shard,
      .quota = request.quota.has_value() ? static_cast<int>(*request.quota) : -1,
      .functions = functions};
  std::sort(key.functions.begin(), key.functions.end());
  struct NewCursor {
    std::vector<std::string> skips;
    internal::DueSeq at;
  };
  std::vector<NewCursor> new_cursors;  // saved once the lease has committed
  absl::flat_hash_map<std::string, size_t> per_tenant;
  std::vector<LeasedCall> out;
  internal::MutexLock lock(&mu_);
  TXFN_RETURN_IF_ERROR(InWriteTransaction([&](Db& db) -> absl::Status {
    TXFN_RETURN_IF_ERROR(db.ForgetCursorsIfAnotherConnectionWrote());
    TXFN_ASSIGN_OR_RETURN(std::optional<int64_t> next_token, db.GetMeta("next_token"));
    db.set_next_token(next_token.value_or(1));
    // Rounds: select what is still wanted, in due order; the rare due call
    // that must be dead-lettered instead (deadline passed, attempts used up)
    // is marked so, and another round fills its place. So does a tenant's
    // call past max_per_tenant: the round ends before it, and the next skips
    // the tenant. Each round starts at the furthest cursor its skips allow
    // (not at the shard's first due row, which may be a skipped tenant's
    // backlog) and leaves a cursor where it ended.
    struct Dead {
      int64_t seq;
      std::string reason;
    };
    std::vector<Dead> dead;
    while (out.size() < request.max) {
      // The skip list's parameters come in powers of two (the last name
      // repeated), so few statement texts are ever prepared and kept.
      const size_t skip_params = skips.empty() ? 0 : std::bit_ceil(skips.size());
      const int after_param =
          static_cast<int>(kLeaseFunctionParam + functions.size() + skip_params);
      const internal::DueSeq start = db.cursors().Find(key, skipped).value_or(internal::DueSeq{});
      TXFN_ASSIGN_OR_RETURN(Db::Stmt select, db.PrepareDynamic(LeaseSelectSql(
                                                 functions.size(), skip_params, request.quota)));
      auto bind_filter = [&](Db::Stmt& stmt) {
        for (size_t i = 0; i < functions.size(); ++i) {
          stmt.BindText(kLeaseFunctionParam + i, functions[i]);
        }
        for (size_t i = 0; i < skip_params; ++i) {
          stmt.BindText(kLeaseFunctionParam + functions.size() + i,
                        skips[std::min(i, skips.size() - 1)]);
        }
        stmt.Bind(after_param, start.due).Bind(after_param + 1, start.seq);
      };
      const size_t want = request.max - out.size();
      size_t rows = 0, live = 0;
      int64_t last_due = 0, last_seq = 0;                                  // of the last live row
      int64_t min_seq = std::numeric_limits<int64_t>::max(), max_seq = 0;  // of the live rows
      std::optional<std::string> capped;  // the tenant whose cap ended the round
      // How far this round's rows are all leased or dead (a capped row stops it).
      internal::DueSeq reached = start;
      bool exhausted = false;  // no more due rows for this round's filter
      dead.clear();
      db.ClearLeaseTokens();
      select.Bind(1, request.shard).Bind(2, now).Bind(3, static_cast<int64_t>(want));
      bind_filter(select);
      while (true) {
        TXFN_ASSIGN_OR_RETURN(bool row, select.Step());
        if (!row) {
          exhausted = rows < want;
          break;
        }
        // This row's tenant's count (valid until per_tenant's next insert).
        size_t* tenant_leased = nullptr;
        if (request.max_per_tenant > 0) {
          const std::string_view tenant = select.Blob(7);
          tenant_leased = &per_tenant[absl::string_view(tenant.data(), tenant.size())];
          if (*tenant_leased >= request.max_per_tenant) {
            capped = std::string(tenant);
            break;
          }
        }
        ++rows;
        const int64_t seq = select.Int(0);
        const int64_t attempts = select.Int(2);  // before this delivery
        const int64_t deadline = select.Int(4);
        reached = {select.Int(1), seq};
        if (deadline <= now || attempts >= select.Int(3)) {
          dead.push_back({seq, deadline <= now
                                   ? DeadlineReason(FromNanos(deadline), request.now)
                                   : AttemptsReason(static_cast<int>(attempts), select.Blob(6))});
          continue;
        }
        TXFN_ASSIGN_OR_RETURN(Call call, DecodeCall(select.Blob(5)));
        call.attempt = static_cast<int>(attempts);
        const int64_t token = db.next_token();
        db.set_next_token(token + 1);
        db.AssignLeaseToken(seq, token);
        db.RememberSeq(call.id, seq);
        ++live;
        if (tenant_leased != nullptr) ++*tenant_leased;
        last_due = select.Int(1);
        last_seq = seq;
        min_seq = std::min(min_seq, seq);
        max_seq = std::max(max_seq, seq);
        LeasedCall& lc = out.emplace_back();
        lc.token = {call.id, static_cast<uint64_t>(token)};
        lc.call = std::move(call);
        lc.expires = expires;
        lc.shard = request.shard;
      }
      select.Reset();
      // Every row due by `now` was seen: the next lease starts after it.
      if (exhausted) reached = {now, std::numeric_limits<int64_t>::max()};
      if (start < reached) new_cursors.push_back({skips, reached});
      // Dead letters first: that takes them out of the update's range.
      for (const Dead& d : dead) {
        TXFN_ASSIGN_OR_RETURN(Db::Stmt kill, db.Prepare(kMarkDead));
        TXFN_RETURN_IF_ERROR(kill.Bind(1, d.seq).Bind(2, now).BindText(3, d.reason).Run());
      }
      if (live > 0) {
        // By seq when the range holds few other rows (at most one per leased
        // row: other shards', not yet due, leased); else along the due index.
        const bool by_seq = static_cast<uint64_t>(max_seq - min_seq) < 2 * live;
        TXFN_ASSIGN_OR_RETURN(
            Db::Stmt up, db.PrepareDynamic(LeaseSql(by_seq ? kLeaseUpdateBySeqSql : kLeaseUpdateSql,
                                                    functions.size(), skip_params, request.quota)));
        up.Bind(1, request.shard).Bind(2, last_due).Bind(3, last_seq).Bind(4, Nanos(expires));
        if (by_seq) up.Bind(5, min_seq).Bind(6, max_seq);
        bind_filter(up);
        absl::Status s = up.Run();
        db.ClearLeaseTokens();
        TXFN_RETURN_IF_ERROR(s);
        if (static_cast<size_t>(db.changes()) != live) {
          return absl::InternalError(StrCat("SqliteQueue '", db.path(), "': a lease updated ",
                                            db.changes(), " rows instead of ", live));
        }
      }
      // Another round when one of the rows was dead-lettered (and more may
      // be due), or a tenant reached its cap (up to kMaxStatementSkips).
      if (capped.has_value()) {
        if (skips.size() >= internal::kMaxStatementSkips) break;
        skipped.insert(*capped);
        skips.push_back(*std::move(capped));
      } else if (dead.empty() || rows < want) {
        break;
      }
    }
    return db.SetMeta("next_token", db.next_token());
  }));
  // Committed: the leased rows are due again only when their leases expire.
  internal::LeaseCursors& cursors = db_->cursors();
  cursors.ForgetFrom(Nanos(expires));
  for (NewCursor& c : new_cursors) cursors.Save(key, std::move(c.skips), c.at);
  return out;
}

absl::StatusOr<std::vector<absl::Status>> SqliteQueue::Settle(
    absl::Span<const Settlement> settlements, absl::Time now_time) {
  TXFN_RETURN_IF_ERROR(ValidateSettlements(settlements));
  const int64_t now = Nanos(now_time);
  absl::Time earliest_due = absl::InfiniteFuture();  // of a call NACKed or released
  for (const Settlement& st : settlements) {
    if (st.kind == Settlement::Kind::kNack || st.kind == Settlement::Kind::kRelease) {
      earliest_due = std::min(earliest_due, st.retry_at);
    }
  }
  std::vector<absl::Status> results(settlements.size());
  internal::MutexLock lock(&mu_);
  db_->cursors().ForgetFrom(Nanos(earliest_due));
  TXFN_RETURN_IF_ERROR(InWriteTransaction([&](Db& db) -> absl::Status {
    // Batched ACKs: each ACK of a call no other settlement here names (so the
    // order they apply in cannot matter) is deleted by a multi-row DELETE:
    // by a walk of a dense run of seqs where this connection leased the
    // calls, else by id. The other settlements, and a batched ACK that
    // deleted nothing (to say why), follow one by one in the batch's order.
    auto done = std::make_unique<bool[]>(settlements.size());  // all false
    {
      absl::flat_hash_map<CallId, int> named;
      named.reserve(settlements.size());
      for (const Settlement& st : settlements) ++named[st.lease.id];
      db.BeginAcks(now);
      absl::Cleanup clear_acks = [&db] { db.ClearAcks(); };
      std::vector<size_t> acks;
      std::vector<std::pair<int64_t, size_t>> by_seq;  // (seq, index)
      acks.reserve(settlements.size());
      for (size_t i = 0; i < settlements.size(); ++i) {
        const Settlement& st = settlements[i];
        if (st.kind != Settlement::Kind::kAck || named[st.lease.id] != 1) continue;
        db.AddAck(st.lease.id, st.lease.token, &done[i]);
        acks.push_back(i);
        if (std::optional<int64_t> seq = db.FindSeq(st.lease.id)) by_seq.emplace_back(*seq, i);
      }
      std::sort(by_seq.begin(), by_seq.end());
      for (size_t j = 0; j < by_seq.size();) {
        // A run: seqs at most kMaxSeqGap apart, worth a walk when it holds
        // at least kMinSeqRun ACKs and at most as many other rows.
        size_t end = j + 1;
        while (end < by_seq.size() && by_seq[end].first - by_seq[end - 1].first <= kMaxSeqGap) {
          ++end;
        }
        const size_t n = end - j;
        const int64_t lo = by_seq[j].first, hi = by_seq[end - 1].first;
        if (n >= kMinSeqRun && static_cast<uint64_t>(hi - lo) < 2 * n) {
          TXFN_ASSIGN_OR_RETURN(Db::Stmt del, db.Prepare(kAckSeqRange));
          TXFN_RETURN_IF_ERROR(del.Bind(1, lo).Bind(2, hi).Run());
        }
        j = end;
      }
      // By id: the rest (a stale remembered seq just left its ACK undone).
      std::vector<IdBytes> ids;
      size_t left = 0;
      for (size_t i : acks) {
        if (done[i]) continue;
        acks[left++] = i;
        ids.emplace_back(settlements[i].lease.id);
      }
      size_t chunk = static_cast<size_t>(db.MaxChunk(1));
      for (size_t j = 0; j < left; j += chunk) {
        while (chunk > left - j) chunk /= 2;
        TXFN_ASSIGN_OR_RETURN(Db::Stmt del,
                              db.PrepareChunk(Db::Chunked::kAck, static_cast<int>(chunk)));
        for (size_t k = 0; k < chunk; ++k) {
          del.BindBlob(static_cast<int>(k) + 1, ids[j + k].view());
        }
        TXFN_RETURN_IF_ERROR(del.Run());
      }
    }
    for (size_t i = 0; i < settlements.size(); ++i) {
      if (done[i]) continue;  // ACKed above
      const Settlement& st = settlements[i];
      const IdBytes id_bytes(st.lease.id);
      const std::string_view id = id_bytes.view();
      if (st.kind == Settlement::Kind::kAck) {
        TXFN_ASSIGN_OR_RETURN(Db::Stmt ack, db.Prepare(kAck));
        TXFN_RETURN_IF_ERROR(
            ack.BindBlob(1, id).Bind(2, static_cast<int64_t>(st.lease.token)).Bind(3, now).Run());
        if (db.changes() == 1) continue;  // OK; otherwise say why below
      }
      int64_t seq = 0, state = 0, expires = 0, token = 0, attempts = 0, max_attempts = 0;
      {
        TXFN_ASSIGN_OR_RETURN(Db::Stmt look, db.Prepare(kLookup));
        look.BindBlob(1, id);
        TXFN_ASSIGN_OR_RETURN(bool row, look.Step());
        if (!row) {
          results[i] =
              absl::NotFoundError(StrCat("call ", st.lease.id.ToString(), " is not queued"));
          continue;
        }
        seq = look.Int(0);
        state = look.Int(1);
        expires = look.Int(2);
        token = look.Int(3);
        attempts = look.Int(4);
        max_attempts = look.Int(5);
      }
      if (state != kLeased || static_cast<uint64_t>(token) != st.lease.token || expires <= now) {
        results[i] = absl::FailedPreconditionError(Stale(st.lease, state, token, expires));
        continue;
      }
      const std::string reason = st.reason.substr(0, 1024);
      switch (st.kind) {
        case Settlement::Kind::kAck:
          break;  // the delete above takes every live lease's call
        case Settlement::Kind::kNack:
          if (attempts >= max_attempts) {
            TXFN_ASSIGN_OR_RETURN(Db::Stmt dead, db.Prepare(kMarkDead));
            const std::string why = AttemptsReason(static_cast<int>(attempts), reason);
            TXFN_RETURN_IF_ERROR(dead.Bind(1, seq).Bind(2, now).BindText(3, why).Run());
          } else {
            TXFN_ASSIGN_OR_RETURN(Db::Stmt nack, db.Prepare(kNack));
            TXFN_RETURN_IF_ERROR(
                nack.Bind(1, seq).Bind(2, Nanos(st.retry_at)).BindText(3, reason).Run());
          }
          break;
        case Settlement::Kind::kDeadLetter: {
          TXFN_ASSIGN_OR_RETURN(Db::Stmt dead, db.Prepare(kMarkDead));
          TXFN_RETURN_IF_ERROR(dead.Bind(1, seq).Bind(2, now).BindText(3, reason).Run());
          break;
        }
        case Settlement::Kind::kRelease: {
          TXFN_ASSIGN_OR_RETURN(Db::Stmt rel, db.Prepare(kRelease));
          TXFN_RETURN_IF_ERROR(rel.Bind(1, seq).Bind(2, Nanos(st.retry_at)).Run());
          break;
        }
      }
    }
    for (const Settlement& st : settlements) db.ForgetSeq(st.lease.id);
    return absl::OkStatus();
  }));
  return results;
}

absl::StatusOr<std::vector<absl::Status>> SqliteQueue::Extend(absl::Span<const LeaseToken> leases,
                                                              absl::Time now_time,
                                                              absl::Duration lease_duration) {
  TXFN_RETURN_IF_ERROR(ValidateLeaseDuration(lease_duration));
  const int64_t now = Nanos(now_time);
  const int64_t expires = Nanos(now_time + lease_duration);
  std::vector<absl::Status> results(leases.size());
  internal::MutexLock lock(&mu_);
  db_->cursors().ForgetFrom(expires);
  TXFN_RETURN_IF_ERROR(InWriteTransaction([&](Db& db) -> absl::Status {
    for (size_t i = 0; i < leases.size(); ++i) {
      const std::string id = leases[i].id.Bytes();
      TXFN_ASSIGN_OR_RETURN(Db::Stmt look, db.Prepare(kLookup));
      look.BindBlob(1, id);
      TXFN_ASSIGN_OR_RETURN(bool row, look.Step());
      if (!row) {
        results[i] =
            absl::NotFoundError(StrCat("call ", leases[i].id.ToString(), " is not queued"));
        continue;
      }
      const int64_t seq = look.Int(0), state = look.Int(1), old = look.Int(2), token = look.Int(3);
      look.Reset();
      if (state != kLeased || static_cast<uint64_t>(token) != leases[i].token || old <= now) {
        results[i] = absl::FailedPreconditionError(Stale(leases[i], state, token, old));
        continue;
      }
      TXFN_ASSIGN_OR_RETURN(Db::Stmt ext, db.Prepare(kExtend));
      TXFN_RETURN_IF_ERROR(ext.Bind(1, seq).Bind(2, expires).Run());
    }
    return absl::OkStatus();
  }));
  return results;
}

absl::Status SqliteQueue::Backup(const std::string& dest_path) {
  TXFN_RETURN_IF_ERROR(RefuseIfInDoubtNow());
  sqlite3* reader = nullptr;
  const int rc = sqlite3_open_v2(path_.c_str(), &reader, SQLITE_OPEN_READONLY, nullptr);
  absl::Status status =
      rc == SQLITE_OK
          ? internal::BackupToNewFile(reader, path_, dest_path, "SqliteQueue::Backup")
          : absl::Status(internal::SqliteStatusCode(rc),
                         StrCat("SqliteQueue::Backup: open '", path_, "': ", sqlite3_errstr(rc)));
  sqlite3_close(reader);
  return status;
}

absl::StatusOr<std::vector<DeadLetter>> SqliteQueue::ListDeadLetters(CallId after, size_t limit) {
  TXFN_RETURN_IF_ERROR(ValidateListLimit(limit));
  const std::string from = after.Bytes();
  std::vector<DeadLetter> out;
  internal::MutexLock lock(&mu_);
  TXFN_RETURN_IF_ERROR(RefuseIfInDoubt());
  TXFN_ASSIGN_OR_RETURN(Db::Stmt sel, db_->Prepare(kListDead));
  sel.BindBlob(1, from).Bind(2, static_cast<int64_t>(limit));
  while (true) {
    TXFN_ASSIGN_OR_RETURN(bool row, sel.Step());
    if (!row) break;
    DeadLetter& d = out.emplace_back();
    TXFN_ASSIGN_OR_RETURN(d.call, DecodeCall(sel.Blob(4)));
    d.call.attempt = static_cast<int>(sel.Int(3));
    d.at = FromNanos(sel.Int(1));
    d.reason = std::string(sel.Blob(2));
    d.shard = static_cast<int>(sel.Int(5));
  }
  return out;
}

absl::StatusOr<std::vector<absl::Status>> SqliteQueue::Redrive(absl::Span<const CallId> ids,
                                                               absl::Time now) {
  std::vector<absl::Status> results(ids.size());
  internal::MutexLock lock(&mu_);
  db_->cursors().ForgetFrom(Nanos(now));
  TXFN_RETURN_IF_ERROR(InWriteTransaction([&](Db& db) -> absl::Status {
    for (size_t i = 0; i < ids.size(); ++i) {
      const std::string id = ids[i].Bytes();
      int64_t seq = 0;
      Call call;
      {
        TXFN_ASSIGN_OR_RETURN(Db::Stmt look, db.Prepare(kRedriveLookup));
        look.BindBlob(1, id);
        TXFN_ASSIGN_OR_RETURN(bool row, look.Step());
        if (!row || look.Int(1) != kDead) {
          results[i] =
              absl::NotFoundError(StrCat("call ", ids[i].ToString(), " is not a dead letter"));
          continue;
        }
        seq = look.Int(0);
        TXFN_ASSIGN_OR_RETURN(call, DecodeCall(look.Blob(2)));
      }
      RedriveWindow(now, call.start_after, call.deadline);
      const std::string encoded = EncodeCall(call);
      TXFN_ASSIGN_OR_RETURN(Db::Stmt upd, db.Prepare(kRedrive));
      TXFN_RETURN_IF_ERROR(upd.Bind(1, seq)
                               .Bind(2, Nanos(now))
                               .Bind(3, Nanos(call.deadline))
                               .BindBlob(4, encoded)
                               .Run());
    }
    return absl::OkStatus();
  }));
  return results;
}

absl::StatusOr<std::vector<absl::Status>> SqliteQueue::RemoveEach(
    absl::Span<const CallId> ids, const char* remove, absl::Time bound,
    absl::FunctionRef<std::string(const CallId&, QueuedCall::State)> refusal) {
  TXFN_RETURN_IF_ERROR(ValidateRemovePending(ids));
  std::vector<absl::Status> results(ids.size());
  // Taking rows out keeps every lease cursor true (the rows before a cursor stay leased or
  // dead), so none is forgotten.
  internal::MutexLock lock(&mu_);
  TXFN_RETURN_IF_ERROR(InWriteTransaction([&](Db& db) -> absl::Status {
    for (size_t i = 0; i < ids.size(); ++i) {
      const IdBytes id_bytes(ids[i]);
      {
        TXFN_ASSIGN_OR_RETURN(Db::Stmt del, db.Prepare(remove));
        TXFN_RETURN_IF_ERROR(del.BindBlob(1, id_bytes.view()).Bind(2, Nanos(bound)).Run());
      }
      if (db.changes() == 1) {
        db.ForgetSeq(ids[i]);
        continue;
      }
      TXFN_ASSIGN_OR_RETURN(Db::Stmt look, db.Prepare(kLookup));
      look.BindBlob(1, id_bytes.view());
      TXFN_ASSIGN_OR_RETURN(bool row, look.Step());
      if (!row) {
        results[i] = absl::NotFoundError(StrCat("call ", ids[i].ToString(), " is not queued"));
      } else {
        // RemovePending's refusals are of dead and leased calls (it takes pending ones).
        results[i] = absl::FailedPreconditionError(refusal(
            ids[i], look.Int(1) == kDead ? QueuedCall::State::kDead : QueuedCall::State::kLeased));
      }
    }
    return absl::OkStatus();
  }));
  return results;
}

absl::StatusOr<std::vector<absl::Status>> SqliteQueue::RemovePending(absl::Span<const CallId> ids,
                                                                     absl::Time now) {
  return RemoveEach(ids, kRemovePending, now, NotPendingMessage);
}

absl::StatusOr<std::vector<absl::Status>> SqliteQueue::RemoveDeadLetters(
    absl::Span<const CallId> ids, absl::Time dead_before) {
  return RemoveEach(ids, kRemoveDead, dead_before, [dead_before](const CallId& id, auto) {
    return NotADeadLetterBefore(id, dead_before);
  });
}

namespace {
// A row of kFind / kListPage (columns state, due, attempts, reason, dead_at,
// call) as the queue holds it at `now`.
template <typename Stmt>
absl::StatusOr<QueuedCall> QueuedRow(Stmt& sel, absl::Time now) {
  QueuedCall out;
  TXFN_ASSIGN_OR_RETURN(out.call, DecodeCall(sel.Blob(5)));
  out.call.attempt = static_cast<int>(sel.Int(2));
  out.reason = std::string(sel.Blob(3));
  internal::SetRowState(sel.Int(0), sel.Int(1), sel.Int(4), now, &out);
  return out;
}
}  // namespace

absl::StatusOr<std::optional<QueuedCall>> SqliteQueue::Find(const CallId& id, absl::Time now) {
  const std::string key = id.Bytes();
  internal::MutexLock lock(&mu_);
  TXFN_RETURN_IF_ERROR(RefuseIfInDoubt());
  TXFN_ASSIGN_OR_RETURN(Db::Stmt sel, db_->Prepare(kFind));
  sel.BindBlob(1, key);
  TXFN_ASSIGN_OR_RETURN(bool row, sel.Step());
  if (!row) return std::nullopt;
  return QueuedRow(sel, now);
}

absl::StatusOr<std::vector<QueuedCall>> SqliteQueue::ListCalls(CallId after, size_t limit,
                                                               const ListFilter& filter,
                                                               absl::Time now) {
  TXFN_RETURN_IF_ERROR(ValidateListLimit(limit));
  constexpr int64_t kPage = 512;
  std::vector<QueuedCall> out;
  std::string from = after.Bytes();
  const std::string before = ListBeforeBytes(filter);
  internal::MutexLock lock(&mu_);
  TXFN_RETURN_IF_ERROR(RefuseIfInDoubt());
  while (out.size() < limit) {
    int64_t rows = 0;
    std::string last;
    {
      // `from` stays bound (not copied) until the statement is reset.
      TXFN_ASSIGN_OR_RETURN(Db::Stmt sel, db_->Prepare(kListPage));
      sel.BindBlob(1, from)
          .Bind(2, kPage)
          .BindText(3, filter.tenant)
          .BindText(4, filter.function)
          .BindBlob(5, before);
      while (out.size() < limit) {
        TXFN_ASSIGN_OR_RETURN(bool row, sel.Step());
        if (!row) break;
        ++rows;
        last = std::string(sel.Blob(6));
        TXFN_ASSIGN_OR_RETURN(QueuedCall q, QueuedRow(sel, now));
        if (MatchesListFilter(q, filter)) out.push_back(std::move(q));
      }
    }
    if (rows < kPage) break;
    from = std::move(last);
  }
  return out;
}

absl::StatusOr<std::vector<FunctionDepth>> SqliteQueue::Depths(absl::Time now) {
  std::vector<FunctionDepth> out;
  TXFN_RETURN_IF_ERROR(RefuseIfInDoubtNow());
  internal::MutexLock lock(&read_mu_);
  TXFN_ASSIGN_OR_RETURN(Db::Stmt sel, reader_->Prepare(kDepths));
  sel.Bind(1, Nanos(now));
  while (true) {
    TXFN_ASSIGN_OR_RETURN(bool row, sel.Step());
    if (!row) break;
    FunctionDepth& d = out.emplace_back();
    d.function = std::string(sel.Blob(0));
    d.pending = static_cast<size_t>(sel.Int(1));
    d.due = static_cast<size_t>(sel.Int(2));
    d.leased = static_cast<size_t>(sel.Int(3));
    if (!sel.IsNull(4)) {
      d.oldest_due = FromNanos(sel.Int(4));
      d.oldest_due_age = now - d.oldest_due;
    }
  }
  return out;
}

absl::StatusOr<std::vector<TenantDepth>> SqliteQueue::TenantDepths(absl::Time) {
  std::vector<TenantDepth> out;
  TXFN_RETURN_IF_ERROR(RefuseIfInDoubtNow());
  internal::MutexLock lock(&read_mu_);
  TXFN_ASSIGN_OR_RETURN(Db::Stmt sel, reader_->Prepare(kTenantDepths));
  while (true) {
    TXFN_ASSIGN_OR_RETURN(bool row, sel.Step());
    if (!row) break;
    out.push_back({.tenant = std::string(sel.Blob(0)),
                   .calls = static_cast<size_t>(sel.Int(1)),
                   .bytes = static_cast<uint64_t>(sel.Int(2))});
  }
  return out;
}

}  // namespace txfn

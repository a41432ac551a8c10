// lib/postgres/pg_connection.h — a libpq connection and its results, with errors as
// absl::Status (internal: not installed). Shared by txfn's PostgreSQL adapters.
//
//   TXFN_ASSIGN_OR_RETURN(std::unique_ptr<PgConnection> conn, PgConnection::Open(url));
//   TXFN_ASSIGN_OR_RETURN(PgResult r, conn->Exec("SELECT v FROM t WHERE k = $1",
//                                                {PgParam::Bytes(key)}));
//   for (int row = 0; row < r.rows(); ++row) Use(r.Bytes(row, 0));
//
// Thread safety: a PgConnection is used by one thread at a time (libpq's rule); PgResult is
// an immutable value once returned.
#ifndef TXFN_LIB_POSTGRES_PG_CONNECTION_H_
#define TXFN_LIB_POSTGRES_PG_CONNECTION_H_

#include <libpq-fe.h>

#include <cstdint>
#include <initializer_list>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"

namespace txfn::pg_internal {

// The status code for SQLSTATE `sqlstate` (five characters, or empty when the server sent
// none): connection failures, shutdowns and a full disk are Unavailable (worth a retry on a
// new connection), serialization failures and deadlocks Aborted, unique violations
// AlreadyExists, an exhausted resource ResourceExhausted, a bad value InvalidArgument, the
// rest Internal (txfn's SQL or schema is wrong).
absl::StatusCode PgStatusCode(std::string_view sqlstate);

// One query parameter, sent as text or (bytea) binary; null when `null`.
struct PgParam {
  std::string value;
  bool binary = false;
  bool null = false;

  static PgParam Text(std::string_view text) { return {std::string(text), false, false}; }
  static PgParam Bytes(std::string_view bytes) { return {std::string(bytes), true, false}; }
  static PgParam Int(int64_t v) { return {std::to_string(v), false, false}; }
  static PgParam Null() { return {std::string(), false, true}; }
};

// A query's result rows. Columns are read by their type: Bytes for bytea and text (binary or
// text result format alike), Int for integer columns.
class PgResult {
 public:
  explicit PgResult(PGresult* result) : result_(result) {}

  int rows() const { return PQntuples(result_.get()); }
  int columns() const { return PQnfields(result_.get()); }
  bool IsNull(int row, int col) const { return PQgetisnull(result_.get(), row, col) != 0; }
  // The value's bytes: bytea columns decoded from the text format's hex form.
  std::string Bytes(int row, int col) const;
  // The value as text, as the server sent it (text result format).
  std::string_view Text(int row, int col) const;
  // An integer column (int2, int4, int8; text or binary result format); 0 for null.
  int64_t Int(int row, int col) const;
  // Rows a command changed (INSERT, UPDATE, DELETE), from the command tag.
  int64_t AffectedRows() const;

  PGresult* raw() const { return result_.get(); }

 private:
  struct Clear {
    void operator()(PGresult* r) const { PQclear(r); }
  };
  std::unique_ptr<PGresult, Clear> result_;
};

// One connection to a PostgreSQL server. Errors name the query's `context` (the caller's
// description) and carry the server's message; a lost connection is Unavailable and leaves
// the connection unusable (broken() is true): make a new one.
class PgConnection {
 public:
  // Connects with `url` (a libpq connection string or postgresql:// URI). InvalidArgument
  // for a malformed string, Unavailable when the server cannot be reached. Unless `url` sets
  // them: connect_timeout=10 (s), TCP keepalives after 30 s idle (3 probes 10 s apart) and
  // tcp_user_timeout=30000 (ms), so a server that stops answering is an error, not a hang.
  static absl::StatusOr<std::unique_ptr<PgConnection>> Open(const std::string& url);
  ~PgConnection();
  PgConnection(const PgConnection&) = delete;
  PgConnection& operator=(const PgConnection&) = delete;

  // Runs `sql` (one or more statements, no parameters) with the simple query protocol.
  absl::StatusOr<PgResult> Exec(std::string_view sql);
  // Runs one statement with `params` ($1, $2, ...); results in text format unless
  // `binary_results`.
  absl::StatusOr<PgResult> Exec(std::string_view sql, absl::Span<const PgParam> params,
                                bool binary_results = false);
  absl::StatusOr<PgResult> Exec(std::string_view sql, std::initializer_list<PgParam> params,
                                bool binary_results = false) {
    return Exec(sql, absl::Span<const PgParam>(params.begin(), params.size()), binary_results);
  }

  // As Exec(sql, params), through a prepared statement made on the first call with this
  // `sql` on this connection (PQprepare) and kept for the connection's life: later calls
  // skip parsing, and once PostgreSQL settles on a generic plan, planning too. For the
  // few fixed statements a caller runs many times.
  absl::StatusOr<PgResult> ExecPrepared(std::string_view sql, absl::Span<const PgParam> params,
                                        bool binary_results = false);
  absl::StatusOr<PgResult> ExecPrepared(std::string_view sql, std::initializer_list<PgParam> params,
                                        bool binary_results = false) {
    return ExecPrepared(sql, absl::Span<const PgParam>(params.begin(), params.size()),
                        binary_results);
  }

  // Sends one statement with `params` (prepared as by ExecPrepared: the first Send of a
  // `sql` prepares it, a round trip) without waiting for its answer; Receive() reads it.
  // For a caller that must tell "not sent" from "sent, answer lost" (a commit): after an
  // OK Send, a Receive error with broken() true means the server may have run it.
  absl::Status Send(std::string_view sql, absl::Span<const PgParam> params,
                    bool binary_results = false);
  // The answer to the statement Send sent (waits for it): OK only once the server has ended
  // the statement's implicit transaction, so an OK answer to a write means it committed.
  absl::StatusOr<PgResult> Receive(std::string_view sql);

  // True once the connection to the server is lost: libpq says so, or a statement failed
  // without the server's answer (no SQLSTATE: libpq's own error, such as a send that met a
  // closed socket, which libpq reports before it marks the connection bad), or with the
  // server's "connection" or "shutting down" class (08, 57P01-57P03).
  bool broken() const { return lost_ || PQstatus(conn_) != CONNECTION_OK; }
  // The server process serving this connection (pg_backend_pid): for tests that kill it.
  int backend_pid() const { return PQbackendPID(conn_); }
  PGconn* raw() const { return conn_; }
  // The connection's socket (for tests that break it).
  int socket() const { return PQsocket(conn_); }

 private:
  explicit PgConnection(PGconn* conn) : conn_(conn) {}
  // Reads every result of the query just sent, to the end of the exchange: the first error
  // if any (an error after rows means the transaction did not commit), else the last one.
  absl::StatusOr<PgResult> Finish(std::string_view sql);
  // The name of `sql`'s prepared statement on this connection, preparing it if new.
  absl::StatusOr<const std::string*> Prepared(std::string_view sql, int params);

  // PgError for a statement that failed, noting whether the error shows the connection lost.
  absl::Status Failed(const PGresult* result, std::string_view sql);

  PGconn* conn_;
  bool lost_ = false;
  // Prepared statements by SQL text: their names are "txfn_<n>".
  absl::flat_hash_map<std::string, std::string> prepared_;
};

// `url` (a connection string or URI) naming database `dbname` instead: for tests and tools
// that make databases. InvalidArgument when `url` is malformed.
absl::StatusOr<std::string> WithDatabase(const std::string& url, std::string_view dbname);

// An error status for a failed query: the code from the SQLSTATE (Unavailable when the
// connection is lost), the message naming `sql`'s first words and the server's message.
absl::Status PgError(PGconn* conn, const PGresult* result, std::string_view sql);

}  // namespace txfn::pg_internal

#endif  // TXFN_LIB_POSTGRES_PG_CONNECTION_H_

#include "lib/postgres/pg_connection.h"

#include <arpa/inet.h>

#include <cstdlib>
#include <cstring>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "txfn/internal/strings.h"

namespace txfn::pg_internal {
namespace {

// The first line of `sql`, shortened: enough to say which query failed.
std::string_view Summary(std::string_view sql) {
  sql = internal::ToStd(absl::StripLeadingAsciiWhitespace(internal::ToAbsl(sql)));
  sql = sql.substr(0, sql.find('\n'));
  return sql.substr(0, 60);
}

// Connection settings used unless the url sets them (see Open).
constexpr std::pair<const char*, const char*> kConnectionDefaults[] = {
    {"connect_timeout", "10"},      // seconds to connect and authenticate
    {"keepalives", "1"},            // TCP keepalives: a silent peer is found dead ...
    {"keepalives_idle", "30"},      // ... after 30 s idle
    {"keepalives_interval", "10"},  // ... and 3 unanswered probes 10 s apart
    {"keepalives_count", "3"},
    {"tcp_user_timeout", "30000"},  // ms data may stay unacknowledged (a send to a black hole)
};

}  // namespace

absl::StatusCode PgStatusCode(std::string_view sqlstate) {
  if (sqlstate.size() != 5) return absl::StatusCode::kUnavailable;  // no server answer
  std::string_view cls = sqlstate.substr(0, 2);
  if (sqlstate == "40001" || sqlstate == "40P01") return absl::StatusCode::kAborted;
  if (sqlstate == "23505") return absl::StatusCode::kAlreadyExists;
  if (sqlstate == "53100") return absl::StatusCode::kUnavailable;  // disk full
  if (cls == "08" || cls == "57" || cls == "58") {
    return absl::StatusCode::kUnavailable;  // connection, shutdown, system error
  }
  if (cls == "53" || cls == "54") return absl::StatusCode::kResourceExhausted;
  if (cls == "22") return absl::StatusCode::kInvalidArgument;  // data exception
  return absl::StatusCode::kInternal;
}

absl::Status PgError(PGconn* conn, const PGresult* result, std::string_view sql) {
  const char* state = result != nullptr ? PQresultErrorField(result, PG_DIAG_SQLSTATE) : nullptr;
  std::string_view message = result != nullptr ? PQresultErrorMessage(result) : "";
  if (message.empty()) message = PQerrorMessage(conn);
  message = internal::ToStd(absl::StripTrailingAsciiWhitespace(internal::ToAbsl(message)));
  absl::StatusCode code = PQstatus(conn) != CONNECTION_OK
                              ? absl::StatusCode::kUnavailable
                              : PgStatusCode(state != nullptr ? state : "");
  return absl::Status(code, internal::StrCat("PostgreSQL: ", Summary(sql), ": ", message));
}

std::string PgResult::Bytes(int row, int col) const {
  const char* data = PQgetvalue(result_.get(), row, col);
  int length = PQgetlength(result_.get(), row, col);
  if (PQfformat(result_.get(), col) == 1 || PQftype(result_.get(), col) != 17 /* bytea */) {
    return std::string(data, length);
  }
  size_t decoded_length = 0;
  unsigned char* decoded =
      PQunescapeBytea(reinterpret_cast<const unsigned char*>(data), &decoded_length);
  std::string out(reinterpret_cast<const char*>(decoded), decoded_length);
  PQfreemem(decoded);
  return out;
}

std::string_view PgResult::Text(int row, int col) const {
  return std::string_view(PQgetvalue(result_.get(), row, col),
                          PQgetlength(result_.get(), row, col));
}

int64_t PgResult::Int(int row, int col) const {
  if (IsNull(row, col)) return 0;
  const char* data = PQgetvalue(result_.get(), row, col);
  if (PQfformat(result_.get(), col) == 1) {  // network byte order, 2, 4 or 8 bytes
    switch (PQgetlength(result_.get(), row, col)) {
      case 2: {
        uint16_t v;
        std::memcpy(&v, data, 2);
        return static_cast<int16_t>(ntohs(v));
      }
      case 4: {
        uint32_t v;
        std::memcpy(&v, data, 4);
        return static_cast<int32_t>(ntohl(v));
      }
      default: {
        uint64_t v;
        std::memcpy(&v, data, 8);
        return static_cast<int64_t>(be64toh(v));
      }
    }
  }
  int64_t v = 0;
  (void)absl::SimpleAtoi(internal::ToAbsl(Text(row, col)), &v);
  return v;
}

int64_t PgResult::AffectedRows() const {
  int64_t n = 0;
  (void)absl::SimpleAtoi(PQcmdTuples(result_.get()), &n);
  return n;
}

namespace {

// Parameters as libpq takes them: pointers into `params`, which must outlive this.
struct ParamArrays {
  explicit ParamArrays(absl::Span<const PgParam> params)
      : values(params.size()), lengths(params.size()), formats(params.size()) {
    for (size_t i = 0; i < params.size(); ++i) {
      values[i] = params[i].null ? nullptr : params[i].value.data();
      lengths[i] = static_cast<int>(params[i].value.size());
      formats[i] = params[i].binary ? 1 : 0;
    }
  }
  std::vector<const char*> values;
  std::vector<int> lengths;
  std::vector<int> formats;
};

struct FreeOptions {
  void operator()(PQconninfoOption* options) const { PQconninfoFree(options); }
};
using ParsedOptions = std::unique_ptr<PQconninfoOption, FreeOptions>;

absl::StatusOr<ParsedOptions> ParseUrl(const std::string& url) {
  char* parse_error = nullptr;
  ParsedOptions options(PQconninfoParse(url.c_str(), &parse_error));
  if (options == nullptr) {
    std::string why = parse_error != nullptr ? parse_error : "out of memory";
    PQfreemem(parse_error);
    return absl::InvalidArgumentError(internal::StrCat(
        "PostgreSQL connection string is malformed: ", absl::StripTrailingAsciiWhitespace(why)));
  }
  return options;
}

// `value` quoted for a keyword=value connection string.
std::string Quoted(std::string_view value) {
  std::string out = "'";
  for (char c : value) {
    if (c == '\\' || c == '\'') out += '\\';
    out += c;
  }
  return out + "'";
}

}  // namespace

absl::StatusOr<std::string> WithDatabase(const std::string& url, std::string_view dbname) {
  absl::StatusOr<ParsedOptions> options = ParseUrl(url);
  if (!options.ok()) return options.status();
  std::string out = internal::StrCat("dbname=", Quoted(dbname));
  for (PQconninfoOption* o = options->get(); o->keyword != nullptr; ++o) {
    if (o->val == nullptr || std::string_view(o->keyword) == "dbname") continue;
    out += internal::StrCat(" ", o->keyword, "=", Quoted(o->val));
  }
  return out;
}

absl::StatusOr<std::unique_ptr<PgConnection>> PgConnection::Open(const std::string& url) {
  if (absl::StatusOr<ParsedOptions> options = ParseUrl(url); !options.ok()) {
    return options.status();
  }
  // libpq waits forever by default: for a server that accepted the connection and never
  // answers, and for one that vanished from the network mid-query (a black hole: no reset
  // ever arrives). These defaults bound both; the url's own values (and PGCONNECT_TIMEOUT)
  // win. The url comes last and is expanded (expand_dbname), so its keywords override.
  std::vector<const char*> keywords;
  std::vector<const char*> values;
  for (const auto& [keyword, value] : kConnectionDefaults) {
    if (std::string_view(keyword) == "connect_timeout" && std::getenv("PGCONNECT_TIMEOUT")) {
      continue;
    }
    keywords.push_back(keyword);
    values.push_back(value);
  }
  keywords.insert(keywords.end(), {"dbname", nullptr});
  values.insert(values.end(), {url.c_str(), nullptr});
  PGconn* conn = PQconnectdbParams(keywords.data(), values.data(), /*expand_dbname=*/1);
  if (conn == nullptr) return absl::ResourceExhaustedError("PostgreSQL: out of memory");
  if (PQstatus(conn) != CONNECTION_OK) {
    std::string why(absl::StripTrailingAsciiWhitespace(PQerrorMessage(conn)));
    PQfinish(conn);
    return absl::UnavailableError(internal::StrCat("PostgreSQL: cannot connect: ", why));
  }
  // Notices (e.g. "table does not exist, skipping") would go to stderr: txfn reports through
  // statuses only.
  PQsetNoticeProcessor(
      conn, [](void*, const char*) {}, nullptr);
  return std::unique_ptr<PgConnection>(new PgConnection(conn));
}

PgConnection::~PgConnection() { PQfinish(conn_); }

absl::StatusOr<PgResult> PgConnection::Finish(std::string_view sql) {
  // The server sends a statement's rows before its implicit transaction commits (at the
  // protocol's Sync, or after the last statement of a simple query): an error that follows
  // them (the commit failed, the server process ended, the connection was lost) is the
  // answer, and the rows do not count. So every result is read, up to the end of the
  // exchange (ReadyForQuery), and the first error wins; else the last result (as PQexec).
  PGresult* last = nullptr;
  PGresult* error = nullptr;
  while (PGresult* result = PQgetResult(conn_)) {
    const ExecStatusType status = PQresultStatus(result);
    if (status == PGRES_COMMAND_OK || status == PGRES_TUPLES_OK) {
      PQclear(last);
      last = result;
    } else if (error == nullptr) {
      error = result;
    } else {
      PQclear(result);
    }
    // COPY would hand back the same result forever; txfn sends none.
    if (status == PGRES_COPY_IN || status == PGRES_COPY_OUT || status == PGRES_COPY_BOTH) break;
  }
  if (error == nullptr && last != nullptr) return PgResult(last);
  PQclear(last);
  absl::Status status = Failed(error, sql);
  PQclear(error);
  return status;
}

absl::Status PgConnection::Failed(const PGresult* result, std::string_view sql) {
  const char* state = result != nullptr ? PQresultErrorField(result, PG_DIAG_SQLSTATE) : nullptr;
  const std::string_view sqlstate = state != nullptr ? state : "";
  // After a crash restart a pooled connection's first statement met a closed socket: libpq
  // answered "server closed the connection unexpectedly" with the status still OK, so the
  // connection went back to the pool and the read was not retried on a new one.
  if (sqlstate.size() != 5 || sqlstate.starts_with("08") || sqlstate == "57P01" ||
      sqlstate == "57P02" || sqlstate == "57P03") {
    lost_ = true;
  }
  return PgError(conn_, result, sql);
}

absl::StatusOr<PgResult> PgConnection::Exec(std::string_view sql) {
  std::string text(sql);
  if (PQsendQuery(conn_, text.c_str()) == 0) return Failed(nullptr, sql);
  return Finish(sql);
}

absl::StatusOr<PgResult> PgConnection::Exec(std::string_view sql, absl::Span<const PgParam> params,
                                            bool binary_results) {
  std::string text(sql);
  const ParamArrays p(params);
  if (PQsendQueryParams(conn_, text.c_str(), static_cast<int>(params.size()),
                        /*paramTypes=*/nullptr, p.values.data(), p.lengths.data(), p.formats.data(),
                        binary_results ? 1 : 0) == 0) {
    return Failed(nullptr, sql);
  }
  return Finish(sql);
}

absl::StatusOr<const std::string*> PgConnection::Prepared(std::string_view sql, int params) {
  auto it = prepared_.find(internal::ToAbsl(sql));
  if (it == prepared_.end()) {
    std::string name = internal::StrCat("txfn_", prepared_.size());
    std::string text(sql);
    if (PQsendPrepare(conn_, name.c_str(), text.c_str(), params, /*paramTypes=*/nullptr) == 0) {
      return Failed(nullptr, sql);
    }
    if (absl::StatusOr<PgResult> made = Finish(sql); !made.ok()) return made.status();
    it = prepared_.emplace(std::move(text), std::move(name)).first;
  }
  return &it->second;
}

absl::StatusOr<PgResult> PgConnection::ExecPrepared(std::string_view sql,
                                                    absl::Span<const PgParam> params,
                                                    bool binary_results) {
  if (absl::Status sent = Send(sql, params, binary_results); !sent.ok()) return sent;
  return Finish(sql);
}

absl::Status PgConnection::Send(std::string_view sql, absl::Span<const PgParam> params,
                                bool binary_results) {
  absl::StatusOr<const std::string*> name = Prepared(sql, static_cast<int>(params.size()));
  if (!name.ok()) return name.status();
  const ParamArrays p(params);
  if (PQsendQueryPrepared(conn_, (*name)->c_str(), static_cast<int>(params.size()), p.values.data(),
                          p.lengths.data(), p.formats.data(), binary_results ? 1 : 0) == 0) {
    return Failed(nullptr, sql);
  }
  return absl::OkStatus();
}

absl::StatusOr<PgResult> PgConnection::Receive(std::string_view sql) { return Finish(sql); }

}  // namespace txfn::pg_internal

// PostgresQueue; see txfn/postgres_queue.h.
//
// Batches travel as a few array parameters, not as one parameter per row: ids as one bytea
// of 16-byte slices, encoded calls as one bytea with offsets and lengths, numbers and names as
// array literals. A statement then has a fixed text whatever the batch size, and a batch of
// 100,000 calls is one INSERT.
#include "txfn/postgres_queue.h"

#include <algorithm>
#include <cstdint>
#include <limits>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/functional/function_ref.h"
#include "lib/postgres/pg_connection.h"
#include "lib/queue/queue_rows.h"
#include "txfn/internal/status_macros.h"
#include "txfn/internal/strings.h"
#include "txfn/storage.h"

namespace txfn {
namespace {

using internal::StrCat;
using pg_internal::PgConnection;
using pg_internal::PgParam;
using pg_internal::PgResult;

constexpr int kPending = internal::kRowPending;
constexpr int kLeased = internal::kRowLeased;
constexpr int kDead = internal::kRowDead;

// Enqueue sends at most this many bytes of encoded calls per statement (PostgreSQL caps a
// parameter at 1 GiB; smaller statements also keep the server's memory per statement modest).
constexpr size_t kMaxEnqueueBytes = size_t{32} << 20;

int64_t Nanos(absl::Time t) { return internal::QueueNanos(t); }
absl::Time FromNanos(int64_t n) { return internal::FromQueueNanos(n); }

QueuedCall::State StateOf(int64_t state) {
  return state == kDead      ? QueuedCall::State::kDead
         : state == kPending ? QueuedCall::State::kPending
                             : QueuedCall::State::kLeased;
}

// The advisory lock Open holds while it creates or checks the schema.
constexpr int64_t kSchemaLock = 0x7478666e5155;  // "txfnQU"

constexpr const char* kCreateSchema = R"sql(
CREATE TABLE IF NOT EXISTS txfn_queue_meta (name text PRIMARY KEY, value bigint NOT NULL);
CREATE SEQUENCE IF NOT EXISTS txfn_queue_tokens CACHE 64;
CREATE TABLE IF NOT EXISTS txfn_queue_calls (
  id bytea PRIMARY KEY, seq bigint GENERATED ALWAYS AS IDENTITY, due bigint NOT NULL,
  deadline bigint NOT NULL, token bigint NOT NULL DEFAULT 0, dead_at bigint NOT NULL DEFAULT 0,
  shard integer NOT NULL, attempts integer NOT NULL, max_attempts integer NOT NULL,
  state smallint NOT NULL, function text NOT NULL, reason text NOT NULL DEFAULT '',
  call bytea NOT NULL, quota smallint NOT NULL DEFAULT 0)
  WITH (fillfactor = 80, autovacuum_vacuum_scale_factor = 0.02,
        autovacuum_vacuum_insert_scale_factor = 0.02, autovacuum_vacuum_cost_delay = 0);
CREATE INDEX IF NOT EXISTS txfn_queue_calls_due ON txfn_queue_calls (shard, due, seq)
  WHERE state < 2;
CREATE INDEX IF NOT EXISTS txfn_queue_calls_dead ON txfn_queue_calls (id) WHERE state = 2;
CREATE INDEX IF NOT EXISTS txfn_queue_calls_due_reserved ON txfn_queue_calls (shard, due, seq)
  WHERE state < 2 AND quota = 0;
DO $$ BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = 'txfn_queue_calls'::regclass
                 AND attname = 'tenant' AND NOT attisdropped) THEN
    ALTER TABLE txfn_queue_calls ADD COLUMN tenant text NOT NULL DEFAULT '';
  END IF;
END $$;
CREATE INDEX IF NOT EXISTS txfn_queue_calls_tenant_due
  ON txfn_queue_calls (shard, quota, tenant, due, seq) WHERE state <> 2;
)sql";
// Why the tenant column is added, not declared: tables made before it existed get it too (and
// only then: an ALTER TABLE would wait for every transaction on the table).
// Their older rows keep tenant '' (LeaseRequest::skip_tenants and max_per_tenant treat them
// as one tenant of that name); a version that does not know the column still reads and
// writes the table.
// Why a reserved-only due index: a scheduler leases reserved calls first and on their own
// (LeaseRequest::quota); without it, that lease would step over every due opportunistic call.
// Why a due index per quota class and tenant: a lease that skips tenants finds the other
// tenants' first calls through it when a skipped backlog fills the due order (see
// kLeaseByTenantHead). Its `state <> 2` means `state < 2` (states are 0, 1, 2) in a form that
// does not imply the due indexes' predicate, so a query that says `state <> 2` can only use it.
// Why fillfactor 80: a lease, NACK or extension writes a new version of the row, which
// PostgreSQL puts on the same page when there is room (cheaper, and the page is pruned of the
// old version by the next reader). Why the autovacuum settings: every call's row versions die
// within seconds; vacuuming after 2% of the table changed keeps the heap and indexes small.

// $1 the ids (16 bytes each, concatenated), $2.. one array per column.
constexpr const char* kInsert = R"sql(
INSERT INTO txfn_queue_calls (id, shard, function, state, due, attempts, max_attempts,
                              deadline, call, quota, tenant)
SELECT substring($1::bytea FROM (u.i::integer - 1) * 16 + 1 FOR 16), u.shard, u.function, 0,
       u.due, 0, u.max_attempts, u.deadline, substring($2::bytea FROM u.off + 1 FOR u.len),
       u.quota, u.tenant
FROM unnest($3::integer[], $4::text[], $5::bigint[], $6::integer[], $7::bigint[],
            $8::integer[], $9::integer[], $10::smallint[], $11::text[])
     WITH ORDINALITY AS u(shard, function, due, max_attempts, deadline, off, len, quota, tenant,
                          i)
ORDER BY u.i
ON CONFLICT (id) DO NOTHING)sql";

// A lease is one statement of three parts. Its parameters: $1 the shard, $2 now, $3 the most
// rows to lease, $4 the functions (null: all), $5 the leases' expiry, $6 the quota class (null:
// both), $7 the tenants to skip (null: none), $8 the most live rows of one tenant (0: no cap);
// $9 for kLeaseBoundedHead only.
//
// First a head: a CTE `locked` that locks (FOR UPDATE SKIP LOCKED: none another lessee holds)
// the first $3 due rows in due order that pass the filters, each with `live` (0 for a call to
// dead-letter instead, left untouched), and a CTE `scan_count`. Then kLeaseTail: `picked` keeps
// at most $8 live rows of one tenant (the others stay due), `leased` leases the live ones until
// $5 with fresh tokens, and the result lists the picked rows in due order. It always has a row
// (one of nulls when nothing was picked), so `considered` (the rows locked) and `scanned` (from
// scan_count) always arrive. FOR UPDATE returns the locked version of each row, so `picked` is
// what the UPDATE saw.
#define TXFN_LEASE_COLUMNS                             \
  "id, due, seq, attempts, deadline, reason, tenant, " \
  "(deadline > $2::bigint AND attempts < max_attempts)::integer AS live"
#define TXFN_LEASE_FILTERS                                  \
  "($4::text[] IS NULL OR function = ANY($4::text[])) AND " \
  "($6::smallint IS NULL OR quota = $6::smallint)"
// The due rows of group `g` (a quota class and tenant) that pass the function filter: heads and
// candidates in kLeaseByTenantHead must read the very same rows.
#define TXFN_GROUP_DUE_ROWS                                                               \
  "c.shard = $1::integer AND c.quota = g.quota AND c.tenant = g.tenant AND c.state <> 2 " \
  "AND c.due <= $2::bigint AND ($4::text[] IS NULL OR c.function = ANY($4::text[]))"

// In due order, stepping over the skipped tenants' rows: the head when no tenant is skipped,
// where every due row read is one it can lease.
constexpr const char* kLeaseInDueOrderHead = R"sql(
WITH scan_count AS (SELECT 0::bigint AS n),
locked AS MATERIALIZED (
  SELECT )sql" TXFN_LEASE_COLUMNS R"sql(
  FROM txfn_queue_calls
  WHERE shard = $1::integer AND state < 2 AND due <= $2::bigint AND )sql" TXFN_LEASE_FILTERS R"sql(
    AND ($7::text[] IS NULL OR tenant <> ALL($7::text[]))
  ORDER BY due, seq LIMIT $3::bigint
  FOR UPDATE SKIP LOCKED))sql";

// Past skipped tenants, first try: reads at most $9 due rows in due order (without locking
// them), then locks those of the other tenants. scan_count is how many it read: all $9 and too
// few rows leased means the rest may lie past them, and the next round goes kLeaseByTenantHead.
// The rows are locked by id (a primary-key lookup each; see kLeaseByTenantHead).
constexpr const char* kLeaseBoundedHead = R"sql(
WITH scanned AS MATERIALIZED (
  SELECT id, tenant FROM txfn_queue_calls
  WHERE shard = $1::integer AND state < 2 AND due <= $2::bigint AND )sql" TXFN_LEASE_FILTERS R"sql(
  ORDER BY due, seq LIMIT $9::bigint),
scan_count AS (SELECT count(*) AS n FROM scanned),
locked AS MATERIALIZED (
  SELECT )sql" TXFN_LEASE_COLUMNS R"sql(
  FROM txfn_queue_calls
  WHERE id = ANY(ARRAY(SELECT id FROM scanned
                       WHERE $7::text[] IS NULL OR tenant <> ALL($7::text[])))
    AND shard = $1::integer AND state < 2 AND due <= $2::bigint
  ORDER BY due, seq LIMIT $3::bigint
  FOR UPDATE SKIP LOCKED))sql";

// Past skipped tenants, tenant by tenant (txfn_queue_calls_tenant_due): `groups` lists the
// (quota, tenant) pairs of the shard's waiting rows, one index probe each (a loose index scan);
// `heads` takes the first due row of each group not skipped and keeps the $3 earliest; the first
// $3 due rows overall can only be of those groups (a group whose first row is not among the $3
// earliest firsts has no row among the $3 earliest rows), so `candidates` merges the first $3 of
// each. The cost is a probe per group, whatever the skipped groups hold. Two things keep the plan
// to that (the planner, misjudging how many rows a tenant has, would otherwise walk the due
// order and filter): the probes say `state <> 2`, which only the tenant index's predicate
// matches; and the rows are locked by id (= ANY(ARRAY(..)) is a primary-key lookup per id, never
// a filter on a scan).
constexpr const char* kLeaseByTenantHead = R"sql(
WITH RECURSIVE groups AS (
  (SELECT quota, tenant FROM txfn_queue_calls
   WHERE shard = $1::integer AND state <> 2 AND ($6::smallint IS NULL OR quota = $6::smallint)
   ORDER BY quota, tenant LIMIT 1)
  UNION ALL
  SELECT n.quota, n.tenant FROM groups g CROSS JOIN LATERAL (
    SELECT c.quota, c.tenant FROM txfn_queue_calls c
    WHERE c.shard = $1::integer AND c.state <> 2
      AND ($6::smallint IS NULL OR c.quota = $6::smallint)
      AND (c.quota, c.tenant) > (g.quota, g.tenant)
    ORDER BY c.quota, c.tenant LIMIT 1) n),
heads AS MATERIALIZED (
  SELECT g.quota, g.tenant, h.due, h.seq
  FROM (SELECT * FROM groups WHERE $7::text[] IS NULL OR tenant <> ALL($7::text[])) g
  CROSS JOIN LATERAL (
    SELECT c.due, c.seq FROM txfn_queue_calls c
    WHERE )sql" TXFN_GROUP_DUE_ROWS R"sql(
    ORDER BY c.due, c.seq LIMIT 1) h
  ORDER BY h.due, h.seq LIMIT $3::bigint),
candidates AS MATERIALIZED (
  SELECT r.id FROM heads g CROSS JOIN LATERAL (
    SELECT c.id, c.due, c.seq FROM txfn_queue_calls c
    WHERE )sql" TXFN_GROUP_DUE_ROWS R"sql(
    ORDER BY c.due, c.seq LIMIT $3::bigint) r
  ORDER BY r.due, r.seq LIMIT $3::bigint),
scan_count AS (SELECT 0::bigint AS n),
locked AS MATERIALIZED (
  SELECT )sql" TXFN_LEASE_COLUMNS R"sql(
  FROM txfn_queue_calls
  WHERE id = ANY(ARRAY(SELECT id FROM candidates)) AND shard = $1::integer AND state < 2
    AND due <= $2::bigint
  ORDER BY due, seq
  FOR UPDATE SKIP LOCKED))sql";

constexpr const char* kLeaseTail = R"sql(,
picked AS MATERIALIZED (
  SELECT id, due, seq, attempts, deadline, reason, live FROM (
    SELECT *, sum(live) OVER (PARTITION BY tenant ORDER BY due, seq) AS nth FROM locked) n
  WHERE $8::bigint = 0 OR live = 0 OR nth <= $8::bigint),
leased AS (
  UPDATE txfn_queue_calls c
  SET state = 1, due = $5::bigint, token = nextval('txfn_queue_tokens'), attempts = c.attempts + 1
  FROM picked p WHERE c.id = p.id AND p.live = 1
  RETURNING c.id, c.token, c.call)
SELECT p.live, p.attempts, p.deadline, p.reason, l.token, l.call, p.id,
       (SELECT count(*) FROM locked) AS considered, s.n AS scanned
FROM scan_count s LEFT JOIN (picked p LEFT JOIN leased l ON l.id = p.id) ON true
ORDER BY p.due, p.seq)sql";
#undef TXFN_LEASE_COLUMNS
#undef TXFN_LEASE_FILTERS
#undef TXFN_GROUP_DUE_ROWS

enum class LeaseScan { kInDueOrder, kBounded, kByTenant };

const std::string& LeaseStatement(LeaseScan scan) {
  static const std::string* const kStatements = new std::string[3]{
      StrCat(kLeaseInDueOrderHead, kLeaseTail), StrCat(kLeaseBoundedHead, kLeaseTail),
      StrCat(kLeaseByTenantHead, kLeaseTail)};
  return kStatements[static_cast<int>(scan)];
}

// Dead-letters the rows $1 (ids) with reasons $2 at $3 that are still due and unleased.
constexpr const char* kMarkDeadBatch = R"sql(
UPDATE txfn_queue_calls c SET state = 2, due = 9223372036854775807, dead_at = $3::bigint,
       reason = u.reason, token = 0
FROM (SELECT substring($1::bytea FROM (i::integer - 1) * 16 + 1 FOR 16) AS id, reason
      FROM unnest($2::text[]) WITH ORDINALITY AS r(reason, i)) u
WHERE c.id = u.id AND c.state < 2 AND c.due <= $3::bigint)sql";

// The (id, token) pairs of $1 (ids) and $2 (tokens) whose lease is live at $3.
constexpr const char* kLiveLeases = R"sql(
(SELECT substring($1::bytea FROM (i::integer - 1) * 16 + 1 FOR 16) AS id, token
 FROM unnest($2::bigint[]) WITH ORDINALITY AS t(token, i)) a
WHERE c.id = a.id AND c.state = 1 AND c.token = a.token AND c.due > $3::bigint
RETURNING c.id)sql";

constexpr const char* kLookup =
    "SELECT state, due, token, attempts, max_attempts FROM txfn_queue_calls WHERE id = $1::bytea";
// One settlement each: a head, then kLiveLease, so that it changes the call $1 only while its
// lease $2 is live at $3. A lessee never locks a row it does not hold, so a stale settlement
// racing the holder's cannot deadlock with it.
constexpr const char* kLiveLease =
    " WHERE id = $1::bytea AND state = 1 AND token = $2::bigint AND due > $3::bigint";
constexpr const char* kDelete = "DELETE FROM txfn_queue_calls";
constexpr const char* kMarkDead =
    "UPDATE txfn_queue_calls SET state = 2, due = 9223372036854775807, dead_at = $3::bigint, "
    "reason = $4::text, token = 0";
constexpr const char* kNack =
    "UPDATE txfn_queue_calls SET state = 0, due = $4::bigint, token = 0, reason = $5::text";
constexpr const char* kRelease =
    "UPDATE txfn_queue_calls SET state = 0, due = $4::bigint, token = 0, "
    "attempts = attempts - 1";
// RemovePending: the row only while it waits (pending, or its lease expired by $2).
constexpr const char* kRemovePending =
    "DELETE FROM txfn_queue_calls WHERE id = $1::bytea AND "
    "(state = 0 OR (state = 1 AND due <= $2::bigint)) RETURNING id";
// RemoveDeadLetters: the row only if it is a dead letter.
constexpr const char* kRemoveDead =
    "DELETE FROM txfn_queue_calls WHERE id = $1::bytea AND state = 2 AND dead_at < $2::bigint "
    "RETURNING id";
constexpr const char* kListDead =
    "SELECT id, dead_at, reason, attempts, call, shard FROM txfn_queue_calls "
    "WHERE state = 2 AND id > $1::bytea ORDER BY id LIMIT $2::bigint";
constexpr const char* kRedriveLookup =
    "SELECT state, call FROM txfn_queue_calls WHERE id = $1::bytea FOR UPDATE";
constexpr const char* kRedrive =
    "UPDATE txfn_queue_calls SET state = 0, due = $2::bigint, attempts = 0, token = 0, "
    "reason = '', dead_at = 0, deadline = $3::bigint, call = $4::bytea WHERE id = $1::bytea";
// Function names sort by their bytes (COLLATE "C"), as the other adapters sort them.
constexpr const char* kDepths = R"sql(
SELECT function,
       count(*) FILTER (WHERE NOT (state = 1 AND due > $1::bigint)),
       count(*) FILTER (WHERE due <= $1::bigint),
       count(*) FILTER (WHERE state = 1 AND due > $1::bigint),
       min(due) FILTER (WHERE due <= $1::bigint)
FROM txfn_queue_calls WHERE state < 2
GROUP BY function ORDER BY function COLLATE "C")sql";
constexpr const char* kTenantDepths =
    "SELECT tenant, count(*), sum(octet_length(call)) FROM txfn_queue_calls WHERE state <> 2 "
    "GROUP BY tenant "
    "ORDER BY tenant COLLATE \"C\"";
// Columns of kFind and kListPage, read by QueuedRow.
constexpr const char* kFind =
    "SELECT state, due, attempts, reason, dead_at, call FROM txfn_queue_calls "
    "WHERE id = $1::bytea";
// $3, $4: the filter's tenant and function, or '' (the rows are filtered again as decoded; a
// row from before the tenant column has tenant '').
constexpr const char* kListPage =
    "SELECT state, due, attempts, reason, dead_at, call, id FROM txfn_queue_calls "
    "WHERE id > $1::bytea AND id < $5::bytea "
    "AND ($3::text = '' OR tenant = $3::text OR tenant = '') "
    "AND ($4::text = '' OR function = $4::text) ORDER BY id LIMIT $2::bigint";

// The 16 bytes of each id, concatenated: the $1 of the batch statements.
template <typename Range, typename IdOf>
std::string PackIds(const Range& items, IdOf id_of) {
  std::string out;
  out.reserve(16 * items.size());
  for (const auto& item : items) out += id_of(item).Bytes();
  return out;
}

// An array literal of integers: {1,2,3}.
template <typename Int>
std::string IntArray(const std::vector<Int>& values) {
  std::string out = "{";
  for (size_t i = 0; i < values.size(); ++i) {
    if (i > 0) out += ',';
    out += std::to_string(values[i]);
  }
  return out + "}";
}

// An array literal of strings, each quoted: {"a","b\"c"}.
std::string TextArray(const std::vector<std::string_view>& values) {
  std::string out = "{";
  for (size_t i = 0; i < values.size(); ++i) {
    out += i == 0 ? "\"" : ",\"";
    for (char c : values[i]) {
      if (c == '"' || c == '\\') out += '\\';
      out += c;
    }
    out += '"';
  }
  return out + "}";
}

absl::StatusOr<CallId> IdOfRow(const PgResult& r, int row, int col) {
  return CallId::FromBytes(r.Bytes(row, col));
}

// A connection to `url` set up for the queue's statements. The lease must walk the due index in
// order and stop after `max` rows; the planner's estimate of how many rows are due is always
// stale in a queue (every lease moves rows past `now`), and with a low one it prefers a bitmap
// scan of every due row plus a sort: 70 ms instead of 3 for 100 of 50,000 due calls. Every
// statement here has a selective index, so scans that ignore indexes are switched off.
absl::StatusOr<std::unique_ptr<PgConnection>> Connect(const std::string& url) {
  TXFN_ASSIGN_OR_RETURN(std::unique_ptr<PgConnection> conn, PgConnection::Open(url));
  TXFN_RETURN_IF_ERROR(
      conn->Exec("SET enable_bitmapscan = off; SET enable_seqscan = off").status());
  return conn;
}

// `error` from a change the server was sent (a COMMIT, or a statement outside a
// transaction), marked as an unknown outcome if the connection broke: the server may have
// committed it before it went, and "not applied" would be a lie a caller acts on.
absl::Status UnlessLost(absl::Status error, const PgConnection& conn, std::string_view what) {
  if (error.ok() || !conn.broken() || IsCommitOutcomeUnknown(error)) return error;
  return CommitOutcomeUnknownError(StrCat("PostgresQueue::", what,
                                          ": the connection broke with the change sent, so "
                                          "whether it was applied is unknown: ",
                                          error.message()));
}

// Runs `body` in a transaction on `conn`; rolls back on any error. A connection lost at
// COMMIT is an unknown outcome (UnlessLost); one lost before it, a plain error (the server
// rolls back a transaction whose connection ends).
template <typename Body>
absl::Status InTransaction(PgConnection& conn, std::string_view what, Body&& body) {
  TXFN_RETURN_IF_ERROR(conn.Exec("BEGIN").status());
  absl::Status s = body();
  if (s.ok()) {
    absl::StatusOr<PgResult> committed = conn.Exec("COMMIT");
    s = UnlessLost(committed.status(), conn, what);
    // COMMIT of a transaction a statement error aborted succeeds as a ROLLBACK: a body that
    // let such an error pass must not pass for committed.
    if (s.ok() && std::string_view(PQcmdStatus(committed->raw())) != "COMMIT") {
      s = absl::InternalError(StrCat("PostgresQueue: the transaction was rolled back (",
                                     PQcmdStatus(committed->raw()),
                                     " at COMMIT): one of its statements failed"));
    }
  }
  if (!s.ok() && !conn.broken()) (void)conn.Exec("ROLLBACK");
  return s;
}

// Runs `one(id, id as a parameter, &answer)` for each of `ids` in one transaction on `conn`:
// the answers are the per-id statuses; an error `one` returns rolls the whole batch back.
template <typename One>
absl::StatusOr<std::vector<absl::Status>> EachIdInOneTransaction(PgConnection& conn,
                                                                 std::string_view what,
                                                                 absl::Span<const CallId> ids,
                                                                 One&& one) {
  std::vector<absl::Status> answers(ids.size());
  if (ids.empty()) return answers;
  TXFN_RETURN_IF_ERROR(InTransaction(conn, what, [&]() -> absl::Status {
    for (size_t i = 0; i < ids.size(); ++i) {
      TXFN_RETURN_IF_ERROR(one(ids[i], PgParam::Bytes(ids[i].Bytes()), &answers[i]));
    }
    return absl::OkStatus();
  }));
  return answers;
}

// RemovePending and RemoveDeadLetters: deletes each of `ids` with `remove` ($1 the id, $2
// `bound`), in one transaction; an id it did not delete answers NotFound if the queue does not
// hold it, else FailedPrecondition(refusal(id, kDead for a dead letter, else kLeased)).
absl::StatusOr<std::vector<absl::Status>> RemoveEach(
    PgConnection& conn, std::string_view what, absl::Span<const CallId> ids, const char* remove,
    absl::Time bound, absl::FunctionRef<std::string(const CallId&, QueuedCall::State)> refusal) {
  return EachIdInOneTransaction(
      conn, what, ids, [&](const CallId& call_id, const PgParam& id, absl::Status* answer) {
        TXFN_ASSIGN_OR_RETURN(PgResult del,
                              conn.Exec(remove, {id, PgParam::Int(Nanos(bound))}, true));
        if (del.rows() == 1) return absl::OkStatus();
        TXFN_ASSIGN_OR_RETURN(PgResult look, conn.Exec(kLookup, {id}, true));
        if (look.rows() == 0) {
          *answer = absl::NotFoundError(StrCat("call ", call_id.ToString(), " is not queued"));
        } else {
          // RemovePending's refusals are of dead and leased calls (it takes pending ones).
          *answer = absl::FailedPreconditionError(
              refusal(call_id, look.Int(0, 0) == kDead ? QueuedCall::State::kDead
                                                       : QueuedCall::State::kLeased));
        }
        return absl::OkStatus();
      });
}

// A call's lease as stored.
struct LeaseRow {
  int64_t state = 0, due = 0, token = 0, attempts = 0, max_attempts = 0;
};

// The lease row of `id`, or nullopt if the queue does not hold it.
absl::StatusOr<std::optional<LeaseRow>> LookUp(PgConnection& conn, const CallId& id) {
  TXFN_ASSIGN_OR_RETURN(PgResult r, conn.Exec(kLookup, {PgParam::Bytes(id.Bytes())}, true));
  if (r.rows() == 0) return std::nullopt;
  return LeaseRow{r.Int(0, 0), r.Int(0, 1), r.Int(0, 2), r.Int(0, 3), r.Int(0, 4)};
}

// Why `lease` is not live at `now`, given its call's row: NotFound, FailedPrecondition, or OK
// when it is live.
absl::Status LeaseStatus(const LeaseToken& lease, const std::optional<LeaseRow>& row, int64_t now) {
  if (!row.has_value()) {
    return absl::NotFoundError(StrCat("call ", lease.id.ToString(), " is not queued"));
  }
  if (row->state != kLeased || static_cast<uint64_t>(row->token) != lease.token ||
      row->due <= now) {
    return absl::FailedPreconditionError(StaleLeaseMessage(
        lease, StateOf(row->state), static_cast<uint64_t>(row->token), FromNanos(row->due)));
  }
  return absl::OkStatus();
}

// Runs `verb` kLiveLeases for `leases` at `now` ("DELETE FROM .. USING", "UPDATE .. SET ..
// FROM"; $4.. are `extra`); returns the ids it changed.
absl::StatusOr<absl::flat_hash_set<CallId>> ForLiveLeases(PgConnection& conn, std::string_view verb,
                                                          const std::vector<LeaseToken>& leases,
                                                          int64_t now,
                                                          std::vector<PgParam> extra = {}) {
  std::vector<uint64_t> tokens;
  tokens.reserve(leases.size());
  for (const LeaseToken& t : leases) tokens.push_back(t.token);
  std::vector<PgParam> params = {
      PgParam::Bytes(PackIds(leases, [](const LeaseToken& t) { return t.id; })),
      PgParam::Text(IntArray(tokens)), PgParam::Int(now)};
  for (PgParam& p : extra) params.push_back(std::move(p));
  TXFN_ASSIGN_OR_RETURN(PgResult r, conn.Exec(StrCat(verb, " ", kLiveLeases), params, true));
  absl::flat_hash_set<CallId> changed;
  for (int row = 0; row < r.rows(); ++row) {
    TXFN_ASSIGN_OR_RETURN(CallId id, IdOfRow(r, row, 0));
    changed.insert(id);
  }
  return changed;
}

// Applies `st` (one not handled in a batch) and sets *answer to its outcome: OK, or why the
// lease refused it. An error returned is the statement's own (the transaction is then
// aborted), never a refusal. The row is read without a lock: while the lease is live only its
// holder (this caller) changes it, and each change applies only if the lease is still live
// (else the row is read again to say why).
absl::Status SettleOne(PgConnection& conn, const Settlement& st, int64_t now,
                       absl::Status* answer) {
  TXFN_ASSIGN_OR_RETURN(std::optional<LeaseRow> row, LookUp(conn, st.lease.id));
  if (absl::Status live = LeaseStatus(st.lease, row, now); !live.ok()) {
    *answer = std::move(live);
    return absl::OkStatus();
  }
  std::vector<PgParam> params = {PgParam::Bytes(st.lease.id.Bytes()),
                                 PgParam::Int(static_cast<int64_t>(st.lease.token)),
                                 PgParam::Int(now)};
  const std::string reason = st.reason.substr(0, 1024);
  const char* head = kDelete;
  switch (st.kind) {
    case Settlement::Kind::kAck:
      break;
    case Settlement::Kind::kNack:
      if (row->attempts >= row->max_attempts) {
        head = kMarkDead;
        params.push_back(PgParam::Text(AttemptsReason(static_cast<int>(row->attempts), reason)));
      } else {
        head = kNack;
        params.push_back(PgParam::Int(Nanos(st.retry_at)));
        params.push_back(PgParam::Text(reason));
      }
      break;
    case Settlement::Kind::kDeadLetter:
      head = kMarkDead;
      params.push_back(PgParam::Text(reason));
      break;
    case Settlement::Kind::kRelease:
      head = kRelease;
      params.push_back(PgParam::Int(Nanos(st.retry_at)));
      break;
  }
  TXFN_ASSIGN_OR_RETURN(PgResult done, conn.Exec(StrCat(head, kLiveLease), params));
  if (done.AffectedRows() == 1) {
    *answer = absl::OkStatus();
    return absl::OkStatus();
  }
  TXFN_ASSIGN_OR_RETURN(row, LookUp(conn, st.lease.id));
  *answer = LeaseStatus(st.lease, row, now);
  if (answer->ok()) {
    *answer = absl::InternalError(
        StrCat("PostgresQueue: a settlement of call ", st.lease.id.ToString(), " changed nothing"));
  }
  return absl::OkStatus();
}

// A row of kFind / kListPage as the queue holds it at `now`.
absl::StatusOr<QueuedCall> QueuedRow(const PgResult& r, int row, absl::Time now) {
  QueuedCall out;
  TXFN_ASSIGN_OR_RETURN(out.call, DecodeCall(r.Bytes(row, 5)));
  out.call.attempt = static_cast<int>(r.Int(row, 2));
  out.reason = r.Bytes(row, 3);
  internal::SetRowState(r.Int(row, 0), r.Int(row, 1), r.Int(row, 4), now, &out);
  return out;
}

}  // namespace

// A connection borrowed from the pool; goes back (or, when broken, is closed) on destruction.
class PostgresQueue::Conn {
 public:
  Conn(PostgresQueue* queue, std::unique_ptr<PgConnection> conn)
      : queue_(queue), conn_(std::move(conn)) {}
  ~Conn() {
    if (conn_ != nullptr) queue_->Release(std::move(conn_));
  }
  Conn(Conn&& other) noexcept : queue_(other.queue_), conn_(std::move(other.conn_)) {}
  Conn& operator=(Conn&&) = delete;

  PgConnection& operator*() const { return *conn_; }
  PgConnection* operator->() const { return conn_.get(); }

 private:
  PostgresQueue* queue_;
  std::unique_ptr<PgConnection> conn_;
};

absl::StatusOr<PostgresQueue::Conn> PostgresQueue::Acquire() {
  {
    internal::MutexLock lock(&mu_);
    idle_cv_.Wait([&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return !idle_.empty() || open_ < options_.max_connections;
    });
    if (!idle_.empty()) {
      std::unique_ptr<PgConnection> conn = std::move(idle_.back());
      idle_.pop_back();
      return Conn(this, std::move(conn));
    }
    ++open_;
  }
  // Connecting takes a round trip or more: not under the lock.
  absl::StatusOr<std::unique_ptr<PgConnection>> conn = Connect(options_.url);
  if (!conn.ok()) {
    internal::MutexLock lock(&mu_);
    --open_;
    idle_cv_.Signal();
    return conn.status();
  }
  return Conn(this, *std::move(conn));
}

void PostgresQueue::Release(std::unique_ptr<PgConnection> conn) {
  internal::MutexLock lock(&mu_);
  // A broken connection, or one a failed call left inside a transaction, is closed: the next
  // Acquire opens a fresh one.
  if (conn->broken() || PQtransactionStatus(conn->raw()) != PQTRANS_IDLE) {
    --open_;
  } else {
    idle_.push_back(std::move(conn));
  }
  idle_cv_.Signal();
}

absl::StatusOr<std::unique_ptr<PostgresQueue>> PostgresQueue::Open(PostgresQueueOptions options) {
  if (options.url.empty()) return absl::InvalidArgumentError("PostgresQueue::Open: url is empty");
  if (options.shards < 0 || options.shards > kMaxShards) {
    return absl::InvalidArgumentError(StrCat("PostgresQueue::Open: shards must be in [0, ",
                                             kMaxShards, "], not ", options.shards));
  }
  if (options.max_connections < 1) {
    return absl::InvalidArgumentError(
        StrCat("PostgresQueue::Open: max_connections must be >= 1, not ", options.max_connections));
  }
  if (options.skip_scan_rows < 0) {
    return absl::InvalidArgumentError(
        StrCat("PostgresQueue::Open: skip_scan_rows must be >= 0, not ", options.skip_scan_rows));
  }

  TXFN_ASSIGN_OR_RETURN(std::unique_ptr<PgConnection> conn, Connect(options.url));
  int shards = 0;
  TXFN_RETURN_IF_ERROR(InTransaction(*conn, "Open", [&]() -> absl::Status {
    TXFN_RETURN_IF_ERROR(
        conn->Exec(StrCat("SELECT pg_advisory_xact_lock(", kSchemaLock, ")")).status());
    TXFN_RETURN_IF_ERROR(
        conn->Exec("CREATE TABLE IF NOT EXISTS txfn_queue_meta (name text PRIMARY KEY, value "
                   "bigint NOT NULL)")
            .status());
    TXFN_ASSIGN_OR_RETURN(PgResult meta,
                          conn->Exec("SELECT name, value FROM txfn_queue_meta", {}, true));
    std::optional<int64_t> version, stored;
    for (int row = 0; row < meta.rows(); ++row) {
      if (meta.Bytes(row, 0) == "schema_version") version = meta.Int(row, 1);
      if (meta.Bytes(row, 0) == "shards") stored = meta.Int(row, 1);
    }
    if (version.has_value() && *version > kSchemaVersion) {
      return absl::FailedPreconditionError(
          StrCat("PostgresQueue: the database has queue schema version ", *version,
                 ", newer than version ", kSchemaVersion, " which this build reads"));
    }
    // A queue already at this version is left alone: CREATE INDEX IF NOT EXISTS locks the
    // table (SHARE) before it finds the index, so every Open would wait for the other
    // instances' running statements and hold off their next ones until it commits.
    if (version != kSchemaVersion) {
      TXFN_RETURN_IF_ERROR(conn->Exec(kCreateSchema).status());
      TXFN_RETURN_IF_ERROR(
          conn->Exec("INSERT INTO txfn_queue_meta (name, value) VALUES ('schema_version', "
                     "$1::bigint) ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                     {PgParam::Int(kSchemaVersion)})
              .status());
    }
    if (stored.has_value()) {
      if (options.shards != 0 && options.shards != *stored) {
        return absl::FailedPreconditionError(StrCat("PostgresQueue: the queue has ", *stored,
                                                    " shards; it cannot be opened with ",
                                                    options.shards));
      }
      shards = static_cast<int>(*stored);
      return absl::OkStatus();
    }
    shards = std::max(options.shards, 1);
    return conn
        ->Exec("INSERT INTO txfn_queue_meta (name, value) VALUES ('shards', $1::bigint)",
               {PgParam::Int(shards)})
        .status();
  }));
  auto queue = std::unique_ptr<PostgresQueue>(new PostgresQueue(std::move(options), shards));
  {
    internal::MutexLock lock(&queue->mu_);
    queue->idle_.push_back(std::move(conn));
    queue->open_ = 1;
  }
  return queue;
}

PostgresQueue::PostgresQueue(PostgresQueueOptions options, int shards)
    : options_(std::move(options)), shards_(shards) {}

PostgresQueue::~PostgresQueue() = default;

absl::StatusOr<size_t> PostgresQueue::Enqueue(absl::Span<const Call> calls) {
  TXFN_RETURN_IF_ERROR(ValidateEnqueueBatch(calls));
  if (calls.empty()) return size_t{0};
  // Chunks of at most kMaxEnqueueBytes of encoded calls (one, almost always).
  struct Chunk {
    std::string ids, blob;
    std::vector<int> shard, max_attempts, off, len, quota;
    std::vector<int64_t> due, deadline;
    std::vector<std::string_view> function, tenant;
  };
  std::vector<Chunk> chunks(1);
  for (const Call& c : calls) {
    std::string encoded;
    if (c.attempt == 0) {
      encoded = EncodeCall(c);
    } else {
      Call stored = c;
      stored.attempt = 0;
      encoded = EncodeCall(stored);
    }
    if (!chunks.back().shard.empty() &&
        chunks.back().blob.size() + encoded.size() > kMaxEnqueueBytes) {
      chunks.emplace_back();
    }
    Chunk& k = chunks.back();
    k.ids += c.id.Bytes();
    k.shard.push_back(ShardOf(c.id));
    k.function.push_back(c.function);
    k.tenant.push_back(c.tenant);
    k.due.push_back(Nanos(c.start_after));
    k.max_attempts.push_back(c.retry.max_attempts);
    k.deadline.push_back(Nanos(c.deadline));
    k.off.push_back(static_cast<int>(k.blob.size()));
    k.len.push_back(static_cast<int>(encoded.size()));
    k.quota.push_back(static_cast<int>(c.quota));
    k.blob += encoded;
  }
  TXFN_ASSIGN_OR_RETURN(Conn conn, Acquire());
  size_t added = 0;
  auto insert_all = [&]() -> absl::Status {
    for (const Chunk& k : chunks) {
      TXFN_ASSIGN_OR_RETURN(
          PgResult r,
          conn->Exec(
              kInsert,
              {PgParam::Bytes(k.ids), PgParam::Bytes(k.blob), PgParam::Text(IntArray(k.shard)),
               PgParam::Text(TextArray(k.function)), PgParam::Text(IntArray(k.due)),
               PgParam::Text(IntArray(k.max_attempts)), PgParam::Text(IntArray(k.deadline)),
               PgParam::Text(IntArray(k.off)), PgParam::Text(IntArray(k.len)),
               PgParam::Text(IntArray(k.quota)), PgParam::Text(TextArray(k.tenant))}));
      added += static_cast<size_t>(r.AffectedRows());  // a known id adds nothing
    }
    return absl::OkStatus();
  };
  absl::Status inserted =
      chunks.size() == 1 ? insert_all() : InTransaction(*conn, "Enqueue", insert_all);
  // The one statement, or the COMMIT, sent with the connection then lost: the calls may be
  // stored (the same Enqueue again is exact).
  TXFN_RETURN_IF_ERROR(UnlessLost(inserted, *conn, "Enqueue"));
  return added;
}

absl::StatusOr<std::vector<LeasedCall>> PostgresQueue::Lease(const LeaseRequest& request) {
  TXFN_RETURN_IF_ERROR(ValidateLeaseRequest(request, shard_count()));
  const int64_t now = Nanos(request.now);
  const absl::Time expires = request.now + request.lease_duration;
  PgParam functions = PgParam::Null();
  if (!request.functions.empty()) {
    functions = PgParam::Text(TextArray(
        std::vector<std::string_view>(request.functions.begin(), request.functions.end())));
  }
  const PgParam quota = request.quota.has_value()
                            ? PgParam::Int(static_cast<int64_t>(*request.quota))
                            : PgParam::Null();
  // Tenants not to lease from: those asked, then those at max_per_tenant.
  std::vector<std::string> skips(request.skip_tenants.begin(), request.skip_tenants.end());
  absl::flat_hash_set<std::string> leased_from;
  std::vector<LeasedCall> out;
  TXFN_ASSIGN_OR_RETURN(Conn conn, Acquire());
  // Rounds: the rare due call that must be dead-lettered instead (deadline passed, attempts
  // used up) is marked so after the round, and another round fills its place. So do the calls
  // a tenant's cap left due: the next round skips the tenants at their cap. While tenants are
  // skipped a round reads a bounded stretch of the due order first and, once that was not
  // enough, goes tenant by tenant (see kLeaseBoundedHead), so a skipped backlog costs a lease
  // at most options_.skip_scan_rows rows, not its size.
  bool by_tenant = options_.skip_scan_rows == 0;
  // Each round's statement commits its leases by itself: once one has, an error of a later
  // statement must not lose them (they would be held by nobody until they expire, an attempt
  // spent), so the calls leased so far are returned instead, and the error only when there
  // are none. A row that cannot be decoded stays leased until it expires.
  absl::Status error;
  while (out.size() < request.max) {
    const size_t want = request.max - out.size();
    const LeaseScan scan = skips.empty() ? LeaseScan::kInDueOrder
                           : by_tenant   ? LeaseScan::kByTenant
                                         : LeaseScan::kBounded;
    const int64_t scan_rows = static_cast<int64_t>(want) + options_.skip_scan_rows;
    std::vector<PgParam> params = {
        PgParam::Int(request.shard),
        PgParam::Int(now),
        PgParam::Int(static_cast<int64_t>(want)),
        functions,
        PgParam::Int(Nanos(expires)),
        quota,
        skips.empty()
            ? PgParam::Null()
            : PgParam::Text(TextArray(std::vector<std::string_view>(skips.begin(), skips.end()))),
        PgParam::Int(static_cast<int64_t>(request.max_per_tenant))};
    if (scan == LeaseScan::kBounded) params.push_back(PgParam::Int(scan_rows));
    absl::StatusOr<PgResult> leased = conn->Exec(LeaseStatement(scan), params, true);
    if (!leased.ok()) {
      error = leased.status();
      break;
    }
    const PgResult& r = *leased;
    std::string dead_ids;
    std::vector<std::string> reasons;
    size_t picked = 0;
    for (int row = 0; row < r.rows(); ++row) {
      if (r.IsNull(row, 6)) continue;  // the row of nulls: nothing was picked
      ++picked;
      const int64_t attempts = r.Int(row, 1);  // before this delivery
      if (r.Int(row, 0) == 0) {
        const int64_t deadline = r.Int(row, 2);
        dead_ids += r.Bytes(row, 6);
        reasons.push_back(deadline <= now
                              ? DeadlineReason(FromNanos(deadline), request.now)
                              : AttemptsReason(static_cast<int>(attempts), r.Bytes(row, 3)));
        continue;
      }
      absl::StatusOr<Call> decoded = DecodeCall(r.Bytes(row, 5));
      if (!decoded.ok()) {
        error.Update(decoded.status());
        continue;
      }
      Call call = *std::move(decoded);
      call.attempt = static_cast<int>(attempts);
      LeasedCall& lc = out.emplace_back();
      lc.token = {call.id, static_cast<uint64_t>(r.Int(row, 4))};
      lc.call = std::move(call);
      lc.expires = expires;
      lc.shard = request.shard;
      if (request.max_per_tenant > 0 && leased_from.insert(lc.call.tenant).second) {
        // The next round, if any, applies the cap afresh: it skips every tenant leased from.
        skips.push_back(lc.call.tenant);
      }
    }
    if (r.rows() == 0) break;  // never: the result always has a row
    // Rows a tenant's cap left due (the statement considered more than it picked).
    const bool capped = static_cast<size_t>(r.Int(0, 7)) > picked;
    // A bounded scan that read all it could and picked too few: the rest may lie past it.
    const bool scan_ran_out =
        scan == LeaseScan::kBounded && r.Int(0, 8) >= scan_rows && picked < want;
    if (scan_ran_out) by_tenant = true;
    if (skips.size() >= internal::kMaxStatementSkips) break;
    if (reasons.empty()) {
      if (capped || scan_ran_out) continue;
      break;
    }
    // Another lessee may dead-letter the same rows first: the statement skips what is no
    // longer due and unleased.
    absl::Status marked =
        conn->Exec(kMarkDeadBatch, {PgParam::Bytes(dead_ids),
                                    PgParam::Text(TextArray(std::vector<std::string_view>(
                                        reasons.begin(), reasons.end()))),
                                    PgParam::Int(now)})
            .status();
    if (!marked.ok()) {
      error = std::move(marked);
      break;
    }
    if (picked < want && !scan_ran_out) break;
  }
  if (!error.ok() && out.empty()) return error;
  return out;
}

absl::StatusOr<std::vector<absl::Status>> PostgresQueue::Settle(
    absl::Span<const Settlement> settlements, absl::Time now_time) {
  TXFN_RETURN_IF_ERROR(ValidateSettlements(settlements));
  const int64_t now = Nanos(now_time);
  std::vector<absl::Status> results(settlements.size());
  // ACKs of calls no other settlement here names (so the order they apply in cannot matter)
  // go in one DELETE; the rest, and the ACKs that DELETE did not take (to say why), one by one
  // in the batch's order.
  absl::flat_hash_map<CallId, int> named;
  named.reserve(settlements.size());
  for (const Settlement& st : settlements) ++named[st.lease.id];
  std::vector<LeaseToken> acks;
  bool only_acks = true;
  for (const Settlement& st : settlements) {
    if (st.kind == Settlement::Kind::kAck && named[st.lease.id] == 1) {
      acks.push_back(st.lease);
    } else {
      only_acks = false;
    }
  }
  TXFN_ASSIGN_OR_RETURN(Conn conn, Acquire());
  auto settle_all = [&]() -> absl::Status {
    absl::flat_hash_set<CallId> acked;
    if (!acks.empty()) {
      TXFN_ASSIGN_OR_RETURN(
          acked, ForLiveLeases(*conn, "DELETE FROM txfn_queue_calls c USING", acks, now));
    }
    for (size_t i = 0; i < settlements.size(); ++i) {
      const Settlement& st = settlements[i];
      if (st.kind == Settlement::Kind::kAck && named[st.lease.id] == 1 &&
          acked.contains(st.lease.id)) {
        continue;
      }
      TXFN_RETURN_IF_ERROR(SettleOne(*conn, st, now, &results[i]));
    }
    return absl::OkStatus();
  };
  // Only ACKs: the DELETE is the one change (the lookups after it explain refusals), so it
  // needs no transaction around it.
  if (only_acks) {
    TXFN_RETURN_IF_ERROR(UnlessLost(settle_all(), *conn, "Settle"));
  } else {
    TXFN_RETURN_IF_ERROR(InTransaction(*conn, "Settle", settle_all));
  }
  return results;
}

absl::StatusOr<std::vector<absl::Status>> PostgresQueue::Extend(absl::Span<const LeaseToken> leases,
                                                                absl::Time now_time,
                                                                absl::Duration lease_duration) {
  TXFN_RETURN_IF_ERROR(ValidateLeaseDuration(lease_duration));
  const int64_t now = Nanos(now_time);
  std::vector<absl::Status> results(leases.size());
  if (leases.empty()) return results;
  TXFN_ASSIGN_OR_RETURN(Conn conn, Acquire());
  absl::StatusOr<absl::flat_hash_set<CallId>> extended =
      ForLiveLeases(*conn, "UPDATE txfn_queue_calls c SET due = $4::bigint FROM",
                    std::vector<LeaseToken>(leases.begin(), leases.end()), now,
                    {PgParam::Int(Nanos(now_time + lease_duration))});
  TXFN_RETURN_IF_ERROR(UnlessLost(extended.status(), *conn, "Extend"));
  for (size_t i = 0; i < leases.size(); ++i) {
    if (extended->contains(leases[i].id)) continue;
    TXFN_ASSIGN_OR_RETURN(std::optional<LeaseRow> row, LookUp(*conn, leases[i].id));
    results[i] = LeaseStatus(leases[i], row, now);
  }
  return results;
}

absl::StatusOr<std::vector<DeadLetter>> PostgresQueue::ListDeadLetters(CallId after, size_t limit) {
  TXFN_RETURN_IF_ERROR(ValidateListLimit(limit));
  TXFN_ASSIGN_OR_RETURN(Conn conn, Acquire());
  TXFN_ASSIGN_OR_RETURN(
      PgResult r,
      conn->Exec(kListDead,
                 {PgParam::Bytes(after.Bytes()), PgParam::Int(static_cast<int64_t>(limit))}, true));
  std::vector<DeadLetter> out;
  out.reserve(r.rows());
  for (int row = 0; row < r.rows(); ++row) {
    DeadLetter& d = out.emplace_back();
    TXFN_ASSIGN_OR_RETURN(d.call, DecodeCall(r.Bytes(row, 4)));
    d.call.attempt = static_cast<int>(r.Int(row, 3));
    d.at = FromNanos(r.Int(row, 1));
    d.reason = r.Bytes(row, 2);
    d.shard = static_cast<int>(r.Int(row, 5));
  }
  return out;
}

absl::StatusOr<std::vector<absl::Status>> PostgresQueue::Redrive(absl::Span<const CallId> ids,
                                                                 absl::Time now) {
  if (ids.empty()) return std::vector<absl::Status>();
  TXFN_ASSIGN_OR_RETURN(Conn conn, Acquire());
  return EachIdInOneTransaction(
      *conn, "Redrive", ids, [&](const CallId& call_id, const PgParam& id, absl::Status* answer) {
        TXFN_ASSIGN_OR_RETURN(PgResult r, conn->Exec(kRedriveLookup, {id}, true));
        if (r.rows() == 0 || r.Int(0, 0) != kDead) {
          *answer =
              absl::NotFoundError(StrCat("call ", call_id.ToString(), " is not a dead letter"));
          return absl::OkStatus();
        }
        TXFN_ASSIGN_OR_RETURN(Call call, DecodeCall(r.Bytes(0, 1)));
        RedriveWindow(now, call.start_after, call.deadline);
        return conn
            ->Exec(kRedrive, {id, PgParam::Int(Nanos(now)), PgParam::Int(Nanos(call.deadline)),
                              PgParam::Bytes(EncodeCall(call))})
            .status();
      });
}

absl::StatusOr<std::vector<absl::Status>> PostgresQueue::RemovePending(absl::Span<const CallId> ids,
                                                                       absl::Time now) {
  TXFN_RETURN_IF_ERROR(ValidateRemovePending(ids));
  if (ids.empty()) return std::vector<absl::Status>();
  TXFN_ASSIGN_OR_RETURN(Conn conn, Acquire());
  return RemoveEach(*conn, "RemovePending", ids, kRemovePending, now, NotPendingMessage);
}

absl::StatusOr<std::vector<absl::Status>> PostgresQueue::RemoveDeadLetters(
    absl::Span<const CallId> ids, absl::Time dead_before) {
  TXFN_RETURN_IF_ERROR(ValidateRemovePending(ids));
  if (ids.empty()) return std::vector<absl::Status>();
  TXFN_ASSIGN_OR_RETURN(Conn conn, Acquire());
  return RemoveEach(*conn, "RemoveDeadLetters", ids, kRemoveDead, dead_before,
                    [dead_before](const CallId& id, QueuedCall::State) {
                      return NotADeadLetterBefore(id, dead_before);
                    });
}

absl::StatusOr<std::optional<QueuedCall>> PostgresQueue::Find(const CallId& id, absl::Time now) {
  TXFN_ASSIGN_OR_RETURN(Conn conn, Acquire());
  TXFN_ASSIGN_OR_RETURN(PgResult r, conn->Exec(kFind, {PgParam::Bytes(id.Bytes())}, true));
  if (r.rows() == 0) return std::nullopt;
  return QueuedRow(r, 0, now);
}

absl::StatusOr<std::vector<QueuedCall>> PostgresQueue::ListCalls(CallId after, size_t limit,
                                                                 const ListFilter& filter,
                                                                 absl::Time now) {
  TXFN_RETURN_IF_ERROR(ValidateListLimit(limit));
  constexpr int64_t kPage = 512;
  std::vector<QueuedCall> out;
  std::string from = after.Bytes();
  const std::string before = ListBeforeBytes(filter);
  TXFN_ASSIGN_OR_RETURN(Conn conn, Acquire());
  while (out.size() < limit) {
    TXFN_ASSIGN_OR_RETURN(
        PgResult r,
        conn->Exec(kListPage,
                   {PgParam::Bytes(from), PgParam::Int(kPage), PgParam::Text(filter.tenant),
                    PgParam::Text(filter.function), PgParam::Bytes(before)},
                   true));
    for (int row = 0; row < r.rows() && out.size() < limit; ++row) {
      TXFN_ASSIGN_OR_RETURN(QueuedCall q, QueuedRow(r, row, now));
      if (MatchesListFilter(q, filter)) out.push_back(std::move(q));
    }
    if (r.rows() < kPage) break;
    from = r.Bytes(r.rows() - 1, 6);
  }
  return out;
}

absl::StatusOr<std::vector<FunctionDepth>> PostgresQueue::Depths(absl::Time now) {
  TXFN_ASSIGN_OR_RETURN(Conn conn, Acquire());
  TXFN_ASSIGN_OR_RETURN(PgResult r, conn->Exec(kDepths, {PgParam::Int(Nanos(now))}, true));
  std::vector<FunctionDepth> out;
  out.reserve(r.rows());
  for (int row = 0; row < r.rows(); ++row) {
    FunctionDepth& d = out.emplace_back();
    d.function = r.Bytes(row, 0);
    d.pending = static_cast<size_t>(r.Int(row, 1));
    d.due = static_cast<size_t>(r.Int(row, 2));
    d.leased = static_cast<size_t>(r.Int(row, 3));
    if (!r.IsNull(row, 4)) {
      d.oldest_due = FromNanos(r.Int(row, 4));
      d.oldest_due_age = now - d.oldest_due;
    }
  }
  return out;
}

absl::StatusOr<std::vector<TenantDepth>> PostgresQueue::TenantDepths(absl::Time) {
  TXFN_ASSIGN_OR_RETURN(Conn conn, Acquire());
  TXFN_ASSIGN_OR_RETURN(PgResult r, conn->Exec(kTenantDepths, {}, true));
  std::vector<TenantDepth> out;
  out.reserve(r.rows());
  for (int row = 0; row < r.rows(); ++row) {
    out.push_back({.tenant = r.Bytes(row, 0),
                   .calls = static_cast<size_t>(r.Int(row, 1)),
                   .bytes = static_cast<uint64_t>(r.Int(row, 2))});
  }
  return out;
}

}  // namespace txfn

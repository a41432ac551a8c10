// PostgresStorage: see txfn/postgres_storage.h. The schema and its PL/pgSQL functions, the
// connection pool, the leases and the resolution of lost commit answers.
#include "txfn/postgres_storage.h"

#include <unistd.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/time/clock.h"
#include "fmt/core.h"
#include "lib/postgres/pg_connection.h"
#include "txfn/internal/mutex.h"
#include "txfn/internal/strings.h"
#include "txfn/status_macros.h"

namespace txfn {

using pg_internal::PgConnection;
using pg_internal::PgParam;
using pg_internal::PgResult;

namespace {

// Serialises schema creation among processes opening one database at once.
constexpr int64_t kSchemaLockKey = 0x7478666e5f736368;  // "txfn_sch"

// Timestamps are stored as bigint with the top bit flipped: uint64 order == int64 order.
int64_t Flip(Timestamp ts) { return static_cast<int64_t>(ts ^ (uint64_t{1} << 63)); }
Timestamp Unflip(int64_t v) { return static_cast<uint64_t>(v) ^ (uint64_t{1} << 63); }
PgParam TsParam(Timestamp ts) { return PgParam::Int(Flip(ts)); }

constexpr std::string_view kSchema = R"sql(
CREATE TABLE IF NOT EXISTS txfn_meta (name text PRIMARY KEY, value bigint NOT NULL);
CREATE TABLE IF NOT EXISTS txfn_versions (
  tenant bytea NOT NULL, index_id bigint NOT NULL, key bytea NOT NULL, ts bigint NOT NULL,
  value bytea, PRIMARY KEY (tenant, index_id, key, ts));
CREATE TABLE IF NOT EXISTS txfn_log (
  tenant bytea NOT NULL, ts bigint NOT NULL, seq integer NOT NULL, index_id bigint NOT NULL,
  key bytea NOT NULL, PRIMARY KEY (tenant, ts, seq));
CREATE TABLE IF NOT EXISTS txfn_commits (
  tenant bytea NOT NULL, ts bigint NOT NULL, PRIMARY KEY (tenant, ts));
-- The fencing token of the lease a commit was written under (schema 3): a writer resolving
-- a lost answer looks for its own batch, not another owner's commit at the same timestamp.
ALTER TABLE txfn_commits ADD COLUMN IF NOT EXISTS writer bigint;
CREATE TABLE IF NOT EXISTS txfn_tenants (
  tenant bytea PRIMARY KEY, max_ts bigint NOT NULL, horizon bigint NOT NULL);
CREATE TABLE IF NOT EXISTS txfn_owners (
  tenant bytea PRIMARY KEY, owner text NOT NULL, token bigint NOT NULL,
  expires_at timestamptz NOT NULL);
-- The commits a lease's writer made (schema 4), for resolving its lost answers after
-- retention dropped their rows: from its lease on, every commit is the writer's, so they are
-- those after the tenant's newest when it took the lease (txfn_owners.start_max; NULL:
-- unknown, a lease taken by an older build) up to the newest when the lease passed on
-- (txfn_handovers.max_ts, one row per change of owner; NULL: no commit). Timestamps flipped.
ALTER TABLE txfn_owners ADD COLUMN IF NOT EXISTS start_max bigint;
CREATE TABLE IF NOT EXISTS txfn_handovers (
  tenant bytea NOT NULL, token bigint NOT NULL, start_max bigint, max_ts bigint,
  taken_at timestamptz NOT NULL, PRIMARY KEY (tenant, token));

-- Holds the tenant's advisory lock (per schema) until the transaction ends: taking a lease
-- and deleting the tenant exclude each other with it.
CREATE OR REPLACE FUNCTION txfn_lock_tenant(p_tenant bytea) RETURNS void
LANGUAGE sql AS $fn$
  SELECT pg_advisory_xact_lock(1954047598, hashtext(current_schema() || encode(p_tenant, 'hex')));
$fn$;

-- Takes the lease if it is free, expired or held under this name (r_token NULL if another
-- instance holds it), recording the handover from the former token. Records older than a
-- week go: a writer whose answer was lost asks within moments of reaching the server again.
CREATE OR REPLACE FUNCTION txfn_take_lease(
    p_tenant bytea, p_owner text, p_lease interval, OUT r_token bigint)
LANGUAGE plpgsql AS $fn$
DECLARE
  held txfn_owners%ROWTYPE;
  newest bigint;
BEGIN
  -- One take of a tenant at a time, and none while it is being deleted.
  PERFORM txfn_lock_tenant(p_tenant);
  -- Each statement below has a snapshot of its own (READ COMMITTED): once the lease row is
  -- locked, a Write that held it has committed, and the tenant's newest commit includes it.
  SELECT * INTO held FROM txfn_owners o WHERE o.tenant = p_tenant FOR UPDATE;
  SELECT t.max_ts INTO newest FROM txfn_tenants t WHERE t.tenant = p_tenant;
  newest := coalesce(newest, -9223372036854775808);
  IF held.tenant IS NULL THEN
    INSERT INTO txfn_owners (tenant, owner, token, expires_at, start_max)
      VALUES (p_tenant, p_owner, 1, clock_timestamp() + p_lease, newest);
    r_token := 1;
    RETURN;
  END IF;
  IF held.owner <> p_owner AND held.owner <> '' AND held.expires_at >= clock_timestamp() THEN
    RETURN;
  END IF;
  r_token := held.token + 1;
  UPDATE txfn_owners o SET owner = p_owner, token = r_token,
      expires_at = clock_timestamp() + p_lease, start_max = newest
    WHERE o.tenant = p_tenant;
  INSERT INTO txfn_handovers (tenant, token, start_max, max_ts, taken_at)
    VALUES (p_tenant, held.token, held.start_max, nullif(newest, -9223372036854775808),
            clock_timestamp())
    ON CONFLICT DO NOTHING;
  DELETE FROM txfn_handovers h
    WHERE h.tenant = p_tenant AND h.taken_at < clock_timestamp() - interval '7 days';
END
$fn$;

-- One batch of commits, in the caller's transaction (one statement: its own). Checks every
-- tenant's lease (fencing token) and timestamps before writing anything; a failed check
-- returns (status, tenant_no, info) and writes nothing: status 1 = the lease is not this
-- owner's (info: the owner and token), 2 = a commit is not after the tenant's newest
-- (info: that timestamp, flipped), 3 = the tenant has a commit newer than the writer knew
-- of (t_known, flipped; NULL = unchecked) (info: the newest, flipped), 4 (schema 6) = the
-- tenant's newest commit is older than t_known: it was deleted since (info: the newest,
-- flipped, or NULL for none).
-- Schema 1's signature, without t_known: gone, so that no writer skips the staleness check.
DROP FUNCTION IF EXISTS txfn_write(text, interval, bytea[], bigint[], bigint[], bigint[],
    integer[], bigint[], integer[], bigint[], integer[], bigint[], bytea[], bytea[]);
CREATE OR REPLACE FUNCTION txfn_write(
    p_owner text, p_lease interval, t_names bytea[], t_tokens bigint[], t_first bigint[],
    t_last bigint[], t_known bigint[], c_tenant integer[], c_ts bigint[], w_tenant integer[],
    w_ts bigint[], w_seq integer[], w_index bigint[], w_key bytea[], w_value bytea[],
    OUT r_status integer, OUT r_tenant integer, OUT r_info text)
LANGUAGE plpgsql AS $fn$
DECLARE
  i integer;
  m bigint;
BEGIN
  r_status := 0;
  -- t_names is sorted: the lease rows are locked in one order by every writer.
  FOR i IN 1 .. coalesce(array_length(t_names, 1), 0) LOOP
    UPDATE txfn_owners o SET expires_at = clock_timestamp() + p_lease
      WHERE o.tenant = t_names[i] AND o.owner = p_owner AND o.token = t_tokens[i];
    IF NOT FOUND THEN
      r_status := 1;
      r_tenant := i;
      SELECT format('''%s'' (fencing token %s)', o.owner, o.token) INTO r_info
        FROM txfn_owners o WHERE o.tenant = t_names[i];
      RETURN;
    END IF;
    SELECT t.max_ts INTO m FROM txfn_tenants t WHERE t.tenant = t_names[i];
    -- The writer's conflict checks covered the commits up to t_known only: a newer one is
    -- another writer's (a former owner's), which they missed. (First: the other
    -- writer's commits may also be at or after this batch's timestamps.)
    IF t_known[i] IS NOT NULL AND coalesce(m, -9223372036854775808) > t_known[i] THEN
      r_status := 3;
      r_tenant := i;
      r_info := m::text;
      RETURN;
    END IF;
    -- The commits the writer built on are gone: writing would bring a deleted tenant back.
    IF t_known[i] IS NOT NULL AND coalesce(m, -9223372036854775808) < t_known[i] THEN
      r_status := 4;
      r_tenant := i;
      r_info := m::text;
      RETURN;
    END IF;
    IF t_first[i] <= coalesce(m, -9223372036854775808) THEN
      r_status := 2;
      r_tenant := i;
      r_info := coalesce(m, -9223372036854775808)::text;
      RETURN;
    END IF;
  END LOOP;
  INSERT INTO txfn_commits (tenant, ts, writer)
    SELECT t_names[u.t], u.ts, t_tokens[u.t] FROM unnest(c_tenant, c_ts) AS u(t, ts);
  INSERT INTO txfn_versions (tenant, index_id, key, ts, value)
    SELECT t_names[u.t], u.ix, u.k, u.ts, u.v
    FROM unnest(w_tenant, w_index, w_key, w_ts, w_value) AS u(t, ix, k, ts, v);
  INSERT INTO txfn_log (tenant, ts, seq, index_id, key)
    SELECT t_names[u.t], u.ts, u.s, u.ix, u.k
    FROM unnest(w_tenant, w_ts, w_seq, w_index, w_key) AS u(t, ts, s, ix, k);
  INSERT INTO txfn_tenants AS x (tenant, max_ts, horizon)
    SELECT u.n, u.l, -9223372036854775808 FROM unnest(t_names, t_last) AS u(n, l)
    ON CONFLICT (tenant) DO UPDATE SET max_ts = excluded.max_ts;
END
$fn$;

-- Storage::ApplyRetention for one tenant (see txfn/storage.h). p_max NULL = no limit.
-- r_horizon NULL: no such tenant.
CREATE OR REPLACE FUNCTION txfn_apply_retention(
    p_tenant bytea, p_ts bigint, p_max bigint,
    OUT r_horizon bigint, OUT r_versions bigint, OUT r_commits bigint, OUT r_done boolean)
LANGUAGE plpgsql AS $fn$
DECLARE
  target bigint;
BEGIN
  r_versions := 0;
  r_commits := 0;
  r_done := true;
  -- Locks the tenant's row: retentions of one tenant, and its commits' upserts, serialise.
  SELECT t.horizon INTO r_horizon FROM txfn_tenants t WHERE t.tenant = p_tenant FOR UPDATE;
  IF NOT FOUND THEN
    RETURN;
  END IF;
  SELECT count(*), max(c.ts) INTO r_commits, target FROM (
    SELECT x.ts FROM txfn_commits x
    WHERE x.tenant = p_tenant AND x.ts > r_horizon AND x.ts <= p_ts
    ORDER BY x.ts LIMIT p_max) c;
  IF target IS NULL THEN
    RETURN;
  END IF;
  IF p_max IS NOT NULL AND EXISTS (
      SELECT 1 FROM txfn_commits x WHERE x.tenant = p_tenant AND x.ts > target AND x.ts <= p_ts)
  THEN
    r_done := false;
  END IF;
  -- Only the keys those commits wrote can have versions no read at or after target sees:
  -- every version older than the key's newest at or before target, and that one too if it
  -- is a tombstone.
  WITH keys AS (
    SELECT DISTINCT l.index_id, l.key FROM txfn_log l
    WHERE l.tenant = p_tenant AND l.ts <= target),
  newest AS (
    SELECT k.index_id, k.key,
           (SELECT max(v.ts) FROM txfn_versions v
            WHERE v.tenant = p_tenant AND v.index_id = k.index_id AND v.key = k.key
              AND v.ts <= target) AS ts
    FROM keys k)
  DELETE FROM txfn_versions v USING newest n
    WHERE v.tenant = p_tenant AND v.index_id = n.index_id AND v.key = n.key
      AND (v.ts < n.ts OR (v.ts = n.ts AND v.value IS NULL));
  GET DIAGNOSTICS r_versions = ROW_COUNT;
  DELETE FROM txfn_log l WHERE l.tenant = p_tenant AND l.ts <= target;
  DELETE FROM txfn_commits c WHERE c.tenant = p_tenant AND c.ts <= target;
  UPDATE txfn_tenants t SET horizon = target WHERE t.tenant = p_tenant;
  r_horizon := target;
END
$fn$;

-- Storage::DeleteTenant (p_newest NULL) and DeleteTenantIfNewest (schema 5: only if the
-- tenant's newest commit is still p_newest, flipped; the minimum: no commit). Returns whether
-- it deleted. (Schema 3's delete was SQL, and did not wait for the tenant's writers.)
CREATE OR REPLACE FUNCTION txfn_delete_tenant_if_newest(p_tenant bytea, p_newest bigint)
RETURNS boolean LANGUAGE plpgsql AS $fn$
BEGIN
  -- Waits for the tenant's Writes (each updates the lease row first) and retention (it locks
  -- the tenant row), and holds them off: a Write committing between the DELETEs below would
  -- keep its rows and lose its tenant row. The advisory lock holds off the first lease of a
  -- tenant with no lease row yet (txfn_take_lease takes it too).
  PERFORM txfn_lock_tenant(p_tenant);
  PERFORM 1 FROM txfn_owners o WHERE o.tenant = p_tenant FOR UPDATE;
  PERFORM 1 FROM txfn_tenants t WHERE t.tenant = p_tenant FOR UPDATE;
  -- No Write is under way now, and this statement's snapshot (READ COMMITTED: taken after
  -- the locks) has every one that committed.
  IF p_newest IS NOT NULL AND
     coalesce((SELECT t.max_ts FROM txfn_tenants t WHERE t.tenant = p_tenant),
              -9223372036854775808) <> p_newest THEN
    RETURN false;
  END IF;
  DELETE FROM txfn_versions WHERE tenant = p_tenant;
  DELETE FROM txfn_log WHERE tenant = p_tenant;
  DELETE FROM txfn_commits WHERE tenant = p_tenant;
  DELETE FROM txfn_tenants WHERE tenant = p_tenant;
  DELETE FROM txfn_handovers WHERE tenant = p_tenant;
  -- Its lease's writer may commit below its former commits now.
  UPDATE txfn_owners SET start_max = -9223372036854775808 WHERE tenant = p_tenant;
  RETURN true;
END
$fn$;

-- Kept for instances of schema 4 still running beside this one.
CREATE OR REPLACE FUNCTION txfn_delete_tenant(p_tenant bytea) RETURNS void
LANGUAGE plpgsql AS $fn$
BEGIN
  PERFORM txfn_delete_tenant_if_newest(p_tenant, NULL);
END
$fn$;
)sql";

constexpr std::string_view kWriteSql =
    "SELECT r_status, r_tenant, r_info FROM txfn_write($1, $2::interval, $3, $4, $5, $6, $7, "
    "$8, $9, $10, $11, $12, $13, $14, $15)";

// The newest version of one key at or before ts, and the tenant's horizon, in one snapshot.
// Always one row.
constexpr std::string_view kGetSql = R"sql(
SELECT v.ts, v.value, (SELECT t.horizon FROM txfn_tenants t WHERE t.tenant = $1)
FROM (SELECT 1) AS one LEFT JOIN LATERAL (
  SELECT x.ts, x.value FROM txfn_versions x
  WHERE x.tenant = $1 AND x.index_id = $2 AND x.key = $3 AND x.ts <= $4
  ORDER BY x.ts DESC LIMIT 1) v ON true)sql";

constexpr std::string_view kHorizonSql = "SELECT horizon FROM txfn_tenants WHERE tenant = $1";

// A skip scan: the recursive part steps from key to key (one index descent each), the
// lateral join takes each key's newest version at or before ts. Parameters: $1 tenant,
// $2 index, $3 range start, $4 ts, $5 limit (NULL: none), $6 range end (bounded only).
std::string ScanSql(bool ascending, bool bounded) {
  const char* cmp = ascending ? ">" : "<";
  const char* dir = ascending ? "" : " DESC";
  // The bound the scan starts from, and the one it stops at.
  std::string first_bound, step_bound;
  if (ascending) {
    first_bound = bounded ? "x.key >= $3 AND x.key < $6" : "x.key >= $3";
    step_bound = bounded ? " AND x.key < $6" : "";
  } else {
    first_bound = bounded ? "x.key >= $3 AND x.key < $6" : "x.key >= $3";
    step_bound = " AND x.key >= $3";
  }
  return fmt::format(R"sql(
WITH RECURSIVE keys(key) AS (
  (SELECT x.key FROM txfn_versions x WHERE x.tenant = $1 AND x.index_id = $2 AND {first}
   ORDER BY x.key{dir} LIMIT 1)
  UNION ALL
  SELECT (SELECT x.key FROM txfn_versions x
          WHERE x.tenant = $1 AND x.index_id = $2 AND x.key {cmp} keys.key{step}
          ORDER BY x.key{dir} LIMIT 1)
  FROM keys WHERE keys.key IS NOT NULL)
SELECT keys.key, v.ts, v.value, (SELECT t.horizon FROM txfn_tenants t WHERE t.tenant = $1)
FROM keys CROSS JOIN LATERAL (
  SELECT x.ts, x.value FROM txfn_versions x
  WHERE x.tenant = $1 AND x.index_id = $2 AND x.key = keys.key AND x.ts <= $4
  ORDER BY x.ts DESC LIMIT 1) v
WHERE keys.key IS NOT NULL AND v.value IS NOT NULL
LIMIT $5)sql",
                     fmt::arg("first", first_bound), fmt::arg("step", step_bound),
                     fmt::arg("cmp", cmp), fmt::arg("dir", dir));
}

// The commits after $2 (at most $3), each with its writes in order and each write's value.
constexpr std::string_view kReadLogSql = R"sql(
WITH c AS (
  SELECT x.ts FROM txfn_commits x WHERE x.tenant = $1 AND x.ts > $2 ORDER BY x.ts LIMIT $3)
SELECT c.ts, l.seq, l.index_id, l.key, v.ts, v.value,
       (SELECT t.horizon FROM txfn_tenants t WHERE t.tenant = $1)
FROM c LEFT JOIN LATERAL (
  -- OFFSET 0 keeps these per-row index lookups from being flattened into hash joins that
  -- read whole tables.
  SELECT x.seq, x.index_id, x.key FROM txfn_log x WHERE x.tenant = $1 AND x.ts = c.ts
  OFFSET 0) l ON true
LEFT JOIN LATERAL (
  SELECT x.ts, x.value FROM txfn_versions x
  WHERE x.tenant = $1 AND x.index_id = l.index_id AND x.key = l.key AND x.ts = c.ts
  OFFSET 0) v ON true
ORDER BY c.ts, l.seq)sql";

// Takes the lease (see txfn_take_lease): the new token, or NULL if another instance holds it.
constexpr std::string_view kTakeLeaseSql = "SELECT r_token FROM txfn_take_lease($1, $2, $3)";

// Whether a Write whose answer was lost committed, once the server process that ran it is
// gone: 1 committed, 0 absent, 2 cannot be told. $1 tenant, $2 ts, $3 token: the batch's first
// commit. Its row tells, unless retention dropped it: commits above the horizon are all
// there. Below it, the commits its lease made do (see txfn_handovers): the batch committed
// iff its timestamp lies in their range, as the writer sends a tenant's batches one at a
// time with rising timestamps and nothing after a batch whose outcome it does not know.
constexpr std::string_view kResolveSql = R"sql(
SELECT CASE
  WHEN EXISTS (SELECT 1 FROM txfn_commits c WHERE c.tenant = $1 AND c.ts = $2 AND c.writer = $3)
    THEN 1
  WHEN coalesce((SELECT t.horizon < $2 FROM txfn_tenants t WHERE t.tenant = $1), true) THEN 0
  ELSE coalesce(
    (SELECT CASE WHEN h.start_max IS NULL THEN 2 WHEN h.start_max < $2 AND h.max_ts >= $2 THEN 1
                 ELSE 0 END
     FROM txfn_handovers h WHERE h.tenant = $1 AND h.token = $3),
    (SELECT CASE WHEN o.start_max IS NULL THEN 2 WHEN o.start_max < $2 AND t.max_ts >= $2 THEN 1
                 ELSE 0 END
     FROM txfn_owners o, txfn_tenants t WHERE o.tenant = $1 AND o.token = $3 AND t.tenant = $1),
    2)
END)sql";

constexpr std::string_view kMaxTsSql = "SELECT max_ts FROM txfn_tenants WHERE tenant = $1";
// The tenant's newest commit, extending the lease if ($2, $3) still holds it: always one row
// (max_ts or NULL, whether the lease was extended).
constexpr std::string_view kMaxTsRenewingSql = R"sql(
WITH renewed AS (
  UPDATE txfn_owners SET expires_at = clock_timestamp() + $4::interval
  WHERE tenant = $1 AND owner = $2 AND token = $3 RETURNING 1)
SELECT (SELECT max_ts FROM txfn_tenants WHERE tenant = $1), (SELECT count(*) FROM renewed))sql";

constexpr std::string_view kLeaseSql =
    "SELECT owner, token, (extract(epoch FROM expires_at) * 1000000)::bigint, "
    "(extract(epoch FROM expires_at - clock_timestamp()) * 1000)::bigint "
    "FROM txfn_owners WHERE tenant = $1";

std::string Interval(absl::Duration d) {
  return fmt::format("{} microseconds", absl::ToInt64Microseconds(d));
}

std::string Escaped(std::string_view bytes) {
  return std::string(internal::ToStd(absl::CHexEscape(internal::ToAbsl(bytes))));
}

// PostgreSQL array literals in text format.
class ArrayLiteral {
 public:
  void AddInt(int64_t v) {
    Separate();
    out_ += std::to_string(v);
  }
  void AddNull() {
    Separate();
    out_ += "NULL";
  }
  void AddBytes(std::optional<std::string_view> bytes) {
    if (!bytes) return AddNull();
    Separate();
    // "\\x<hex>": the array parser turns \\ into \, and bytea reads \x<hex>.
    out_ += "\"\\\\x";
    static constexpr char kHex[] = "0123456789abcdef";
    for (unsigned char c : *bytes) {
      out_ += kHex[c >> 4];
      out_ += kHex[c & 15];
    }
    out_ += '"';
  }
  PgParam Param() const { return PgParam::Text(out_ + "}"); }

 private:
  void Separate() {
    if (out_.size() > 1) out_ += ',';
  }
  std::string out_ = "{";
};

std::string DefaultOwner() {
  char host[256] = {};
  if (gethostname(host, sizeof(host) - 1) != 0) host[0] = '\0';
  std::random_device rd;
  return fmt::format("{}:{}:{:08x}", host, getpid(), rd());
}

}  // namespace

// ---- Connections -------------------------------------------------------------------

// pg_stat_activity's backend_start as microseconds since the epoch, in text: unlike
// backend_start::text, the same in every session (whatever its TimeZone or DateStyle).
constexpr std::string_view kBackendStartMicros =
    "(extract(epoch FROM backend_start) * 1000000)::bigint::text";

struct PostgresStorage::Pooled {
  std::unique_ptr<PgConnection> conn;
  // Its server process, as the server names it (pg_backend_pid(); libpq's PQbackendPID is a
  // pooler's, behind one), and when that process started (kBackendStartMicros): with the
  // pid, it names that process even after a server restart reused the pid.
  int backend_pid = 0;
  std::string backend_start;

  static absl::StatusOr<std::unique_ptr<Pooled>> Open(const std::string& url) {
    auto pooled = std::make_unique<Pooled>();
    TXFN_ASSIGN_OR_RETURN(pooled->conn, PgConnection::Open(url));
    TXFN_ASSIGN_OR_RETURN(PgResult started,
                          pooled->conn->Exec(internal::StrCat(
                              "SELECT pg_backend_pid(), (SELECT ", kBackendStartMicros,
                              " FROM pg_stat_activity WHERE pid = pg_backend_pid())")));
    pooled->backend_pid = static_cast<int>(started.Int(0, 0));
    if (!started.IsNull(0, 1)) pooled->backend_start = started.Text(0, 1);
    return pooled;
  }
};

class PostgresStorage::ConnectionLease {
 public:
  ConnectionLease(PostgresStorage* owner, std::unique_ptr<Pooled> pooled)
      : owner_(owner), pooled_(std::move(pooled)) {}
  ConnectionLease(ConnectionLease&& other) noexcept
      : owner_(other.owner_), pooled_(std::move(other.pooled_)) {}
  ConnectionLease& operator=(ConnectionLease&&) = delete;
  ~ConnectionLease() {
    if (pooled_ != nullptr) owner_->Return(std::move(pooled_));
  }
  PgConnection* operator->() { return pooled_->conn.get(); }
  int backend_pid() const { return pooled_->backend_pid; }
  const std::string& backend_start() const { return pooled_->backend_start; }

 private:
  PostgresStorage* owner_;
  std::unique_ptr<Pooled> pooled_;
};

struct PostgresStorage::InDoubt {
  std::vector<std::string> tenants;  // the batch's
  std::string first_tenant;          // of its first commit
  Timestamp first_ts = 0;            // of its first commit
  int64_t first_token = 0;           // the fencing token it wrote first_tenant under
  Timestamp last_ts = 0;             // of its last commit
  int backend_pid = 0;               // the server process that was running it
  std::string backend_start;         // and when that process started
  std::string error;                 // what broke
};

absl::StatusOr<PostgresStorage::ConnectionLease> PostgresStorage::Borrow() {
  {
    internal::MutexLock lock(&pool_mu_);
    pool_cv_.Wait([&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(pool_mu_) {
      return !idle_.empty() || open_ < options_.max_connections;
    });
    if (!idle_.empty()) {
      std::unique_ptr<Pooled> pooled = std::move(idle_.back());
      idle_.pop_back();
      return ConnectionLease(this, std::move(pooled));
    }
    ++open_;
  }
  // A new connection, made outside the lock.
  absl::StatusOr<std::unique_ptr<Pooled>> pooled = Pooled::Open(options_.url);
  if (!pooled.ok()) {
    internal::MutexLock lock(&pool_mu_);
    --open_;
    pool_cv_.Signal();
    return pooled.status();
  }
  return ConnectionLease(this, *std::move(pooled));
}

void PostgresStorage::Return(std::unique_ptr<Pooled> pooled) {
  // A connection left inside a transaction by an error is dropped. A broken one is dropped
  // with every idle one: what broke it (a server restart, a network fault) most likely broke
  // them too, and a call must not meet them one by one.
  const bool broken = pooled->conn->broken();
  const bool reusable = !broken && PQtransactionStatus(pooled->conn->raw()) == PQTRANS_IDLE;
  std::vector<std::unique_ptr<Pooled>> dropped;  // closed outside the lock
  internal::MutexLock lock(&pool_mu_);
  if (reusable) {
    idle_.push_back(std::move(pooled));
  } else {
    dropped.push_back(std::move(pooled));
    if (broken) {
      for (auto& idle : idle_) dropped.push_back(std::move(idle));
      idle_.clear();
    }
    open_ -= static_cast<int>(dropped.size());
  }
  pool_cv_.SignalAll();
}

template <typename Read>
auto PostgresStorage::WithReadConnection(Read&& read)
    -> decltype(read(std::declval<ConnectionLease&>())) {
  for (int attempt = 0;; ++attempt) {
    TXFN_ASSIGN_OR_RETURN(ConnectionLease lease, Borrow());
    auto result = read(lease);
    // A pooled connection whose server process went away (a restart): once more, afresh.
    if (result.ok() || !lease->broken() || attempt > 0) return result;
  }
}

// ---- Open / close ------------------------------------------------------------------

namespace {

// The schema, under a transaction-scoped advisory lock (concurrent CREATE IF NOT EXISTS of one
// table can otherwise fail on a unique violation in the catalog). A database already at this
// version is left alone: the DDL would lock the tables (ALTER TABLE takes an ACCESS EXCLUSIVE
// lock even when the column exists), stalling every other instance's Writes until this Open
// commits, and deadlocking with one that holds its lease row and wants txfn_commits. An
// upgrade locks the two tables it alters in the order a Write takes them first, and is tried
// again if PostgreSQL still ends it for a deadlock (with a reader's statement).
absl::Status CreateOrUpgradeSchema(PgConnection& conn) {
  auto setup = [&]() -> absl::Status {
    TXFN_RETURN_IF_ERROR(
        conn.Exec(fmt::format("SELECT pg_advisory_xact_lock({})", kSchemaLockKey)).status());
    TXFN_RETURN_IF_ERROR(
        conn.Exec("CREATE TABLE IF NOT EXISTS txfn_meta (name text PRIMARY KEY, value bigint "
                  "NOT NULL)")
            .status());
    TXFN_ASSIGN_OR_RETURN(PgResult version,
                          conn.Exec("SELECT value FROM txfn_meta WHERE name = 'schema_version'"));
    if (version.rows() > 0 && version.Int(0, 0) > PostgresStorage::kSchemaVersion) {
      return absl::FailedPreconditionError(
          fmt::format("PostgresStorage::Open: the database's txfn schema is version {}, newer "
                      "than this build's version {}",
                      version.Int(0, 0), PostgresStorage::kSchemaVersion));
    }
    if (version.rows() > 0 && version.Int(0, 0) == PostgresStorage::kSchemaVersion) {
      return absl::OkStatus();
    }
    TXFN_RETURN_IF_ERROR(conn.Exec(R"sql(DO $$ BEGIN
  IF to_regclass('txfn_owners') IS NOT NULL THEN
    LOCK TABLE txfn_owners IN ACCESS EXCLUSIVE MODE;
  END IF;
  IF to_regclass('txfn_commits') IS NOT NULL THEN
    LOCK TABLE txfn_commits IN ACCESS EXCLUSIVE MODE;
  END IF;
END $$)sql")
                             .status());
    TXFN_RETURN_IF_ERROR(conn.Exec(kSchema).status());
    return conn
        .Exec(fmt::format("INSERT INTO txfn_meta VALUES ('schema_version', {}) ON CONFLICT "
                          "(name) DO UPDATE SET value = excluded.value",
                          PostgresStorage::kSchemaVersion))
        .status();
  };
  for (int attempt = 1;; ++attempt) {
    TXFN_RETURN_IF_ERROR(conn.Exec("BEGIN").status());
    absl::Status s = setup();
    if (s.ok()) s = conn.Exec("COMMIT").status();
    if (s.ok()) return s;
    (void)conn.Exec("ROLLBACK");
    if (!absl::IsAborted(s) || attempt == 3) return s;
    absl::SleepFor(absl::Milliseconds(20 * attempt));
  }
}

}  // namespace

absl::StatusOr<std::unique_ptr<PostgresStorage>> PostgresStorage::Open(
    PostgresStorageOptions options) {
  if (options.url.empty()) {
    return absl::InvalidArgumentError("PostgresStorage::Open: empty connection url");
  }
  if (options.max_connections < 1) {
    return absl::InvalidArgumentError(fmt::format(
        "PostgresStorage::Open: max_connections must be >= 1, not {}", options.max_connections));
  }
  if (options.lease_duration < absl::Milliseconds(1)) {
    return absl::InvalidArgumentError(
        fmt::format("PostgresStorage::Open: lease_duration must be >= 1ms, not {}",
                    absl::FormatDuration(options.lease_duration)));
  }
  if (options.owner.empty()) options.owner = DefaultOwner();
  TXFN_ASSIGN_OR_RETURN(std::unique_ptr<Pooled> pooled, Pooled::Open(options.url));
  PgConnection* conn = pooled->conn.get();
  TXFN_RETURN_IF_ERROR(CreateOrUpgradeSchema(*conn));
  std::unique_ptr<PostgresStorage> storage(new PostgresStorage(std::move(options)));
  {
    internal::MutexLock lock(&storage->pool_mu_);
    storage->idle_.push_back(std::move(pooled));
    storage->open_ = 1;
  }
  return storage;
}

PostgresStorage::PostgresStorage(PostgresStorageOptions options) : options_(std::move(options)) {}

PostgresStorage::~PostgresStorage() {
  // The leases this instance holds, by tenant and fencing token: not every row under its
  // name, which may be a successor's (a restarted process that kept the name took them over
  // while this one was stopped, so releasing them would strand its writes).
  ArrayLiteral tenants, tokens;
  bool holds_leases = false;
  {
    internal::MutexLock lock(&lease_mu_);
    for (const auto& [tenant, held] : tokens_) {
      tenants.AddBytes(tenant);
      tokens.AddInt(held.token);
      holds_leases = true;
    }
  }
  if (holds_leases) {
    // Best effort: a lease left behind simply expires.
    absl::StatusOr<ConnectionLease> lease = Borrow();
    if (lease.ok()) {
      (void)(*lease)->Exec(
          "UPDATE txfn_owners o SET owner = '', expires_at = clock_timestamp() "
          "FROM unnest($2::bytea[], $3::bigint[]) AS h(tenant, token) "
          "WHERE o.tenant = h.tenant AND o.token = h.token AND o.owner = $1",
          {PgParam::Text(options_.owner), tenants.Param(), tokens.Param()});
    }
  }
  internal::MutexLock lock(&pool_mu_);
  idle_.clear();
}

// ---- Leases ------------------------------------------------------------------------

absl::Status PostgresStorage::NotOwnerError(std::string_view tenant, std::string_view detail) {
  return TenantOwnedElsewhereError(
      fmt::format("PostgresStorage: tenant '{}' is not owned by this instance ('{}'): {}",
                  Escaped(tenant), options_.owner, detail));
}

absl::StatusOr<int64_t> PostgresStorage::TakeLease(std::string_view tenant, bool implicit) {
  TXFN_ASSIGN_OR_RETURN(ConnectionLease lease, Borrow());
  const SteadyTime asked = SteadyClock::now();
  absl::StatusOr<PgResult> took =
      lease->ExecPrepared(kTakeLeaseSql, {PgParam::Bytes(tenant), PgParam::Text(options_.owner),
                                          PgParam::Text(Interval(options_.lease_duration))});
  if (!took.ok() && lease->broken()) {
    // The statement commits by itself: it may have, with the connection gone.
    return CommitOutcomeUnknownError(
        fmt::format("PostgresStorage: the connection broke while taking the lease of tenant "
                    "'{}', so whether it was taken is unknown (acquire it again): {}",
                    Escaped(tenant), std::string(took.status().message())));
  }
  TXFN_ASSIGN_OR_RETURN(PgResult taken, std::move(took));
  if (taken.rows() == 1 && !taken.IsNull(0, 0)) {
    int64_t token = taken.Int(0, 0);
    internal::MutexLock lock(&lease_mu_);
    // Taken by a Write, the tenant's committer was loaded before: it may lack commits another
    // instance made since (the Write's previous_ts check refuses to build on them, and the
    // committer reloads). Until a Write under this token shows it current, its readers keep
    // asking storage for the newest commit (NoteLeaseExtended).
    tokens_[std::string(tenant)] = {
        .token = token,
        .unchallenged_until = implicit ? SteadyTime::min() : asked + LeaseDuration()};
    return token;
  }
  TXFN_ASSIGN_OR_RETURN(PgResult owner, lease->ExecPrepared(kLeaseSql, {PgParam::Bytes(tenant)}));
  if (owner.rows() == 0) {
    return absl::UnavailableError(fmt::format(
        "PostgresStorage: the lease of tenant '{}' changed while it was taken; try again",
        Escaped(tenant)));
  }
  return NotOwnerError(tenant,
                       fmt::format("it is owned by '{}' (fencing token {}) whose lease runs for "
                                   "another {} ms",
                                   owner.Text(0, 0), owner.Int(0, 1), owner.Int(0, 3)));
}

absl::StatusOr<int64_t> PostgresStorage::TokenFor(std::string_view tenant) {
  auto held = [&]() -> std::optional<int64_t> {
    internal::MutexLock lock(&lease_mu_);
    if (auto it = tokens_.find(internal::ToAbsl(tenant)); it != tokens_.end()) {
      return it->second.token;
    }
    return std::nullopt;
  };
  if (std::optional<int64_t> token = held()) return *token;
  // One acquisition at a time: threads writing a new tenant at once must not each take
  // the lease (each take raises the token and would fence the others).
  internal::MutexLock acquiring(&acquire_mu_);
  if (std::optional<int64_t> token = held()) return *token;
  return TakeLease(tenant, /*implicit=*/true);
}

PostgresStorage::SteadyClock::duration PostgresStorage::LeaseDuration() const {
  // At most a year: the steady clock's time points must not overflow.
  return std::chrono::duration_cast<SteadyClock::duration>(
      absl::ToChronoNanoseconds(std::min(options_.lease_duration, absl::Hours(24 * 365))));
}

void PostgresStorage::NoteLeaseExtended(std::string_view tenant, int64_t token, SteadyTime sent,
                                        bool by_write) {
  auto it = tokens_.find(internal::ToAbsl(tenant));
  if (it == tokens_.end() || it->second.token != token) return;
  // After an implicit take only a Write shows the committer current (its previous_ts passed
  // the staleness check): a read's renewal comes before the committer reloaded.
  if (!by_write && it->second.unchallenged_until == SteadyTime::min()) return;
  it->second.unchallenged_until = sent + LeaseDuration();
}

bool PostgresStorage::MayHaveOtherWriters(std::string_view tenant) {
  internal::MutexLock lock(&lease_mu_);
  auto it = tokens_.find(internal::ToAbsl(tenant));
  return it == tokens_.end() || SteadyClock::now() >= it->second.unchallenged_until;
}

absl::Status PostgresStorage::AcquireTenant(std::string_view tenant) {
  internal::MutexLock acquiring(&acquire_mu_);
  return TakeLease(tenant, /*implicit=*/false).status();
}

absl::Status PostgresStorage::ReleaseTenant(std::string_view tenant) {
  int64_t token = 0;
  {
    internal::MutexLock lock(&lease_mu_);
    auto it = tokens_.find(internal::ToAbsl(tenant));
    if (it == tokens_.end()) return absl::OkStatus();
    token = it->second.token;
    tokens_.erase(it);
  }
  TXFN_ASSIGN_OR_RETURN(ConnectionLease lease, Borrow());
  return lease
      ->Exec(
          "UPDATE txfn_owners SET owner = '', expires_at = clock_timestamp() "
          "WHERE tenant = $1 AND owner = $2 AND token = $3",
          {PgParam::Bytes(tenant), PgParam::Text(options_.owner), PgParam::Int(token)})
      .status();
}

absl::StatusOr<TenantLease> PostgresStorage::Lease(std::string_view tenant) {
  TXFN_ASSIGN_OR_RETURN(PgResult row, WithReadConnection([&](ConnectionLease& lease) {
                          return lease->ExecPrepared(kLeaseSql, {PgParam::Bytes(tenant)});
                        }));
  if (row.rows() == 0) {
    return absl::NotFoundError(
        fmt::format("PostgresStorage: tenant '{}' was never owned", Escaped(tenant)));
  }
  TenantLease out{.owner = std::string(row.Text(0, 0)),
                  .token = row.Int(0, 1),
                  .expires_at = absl::FromUnixMicros(row.Int(0, 2))};
  internal::MutexLock lock(&lease_mu_);
  auto it = tokens_.find(internal::ToAbsl(tenant));
  out.held_by_this =
      out.owner == options_.owner && it != tokens_.end() && it->second.token == out.token;
  return out;
}

// ---- Write ---------------------------------------------------------------------------

absl::Status PostgresStorage::Write(absl::Span<const CommitRecord> commits) {
  std::string lost;
  absl::Status written = WriteAttempt(commits, &lost);
  // The lease passed to another instance, which gave it back (an engine deleting expired
  // entries of a tenant it does not serve does, at once): nothing was written and this
  // instance's token is forgotten, so a second attempt takes the tenant back, as the caller's
  // next Write would have. A committer that missed the other's commits is refused by the
  // previous_ts check (StaleWriter) and rebases, instead of failing its callers.
  if (!lost.empty()) {
    absl::StatusOr<TenantLease> now = Lease(lost);
    if (now.ok() && now->owner.empty()) written = WriteAttempt(commits, &lost);
  }
  return written;
}

absl::Status PostgresStorage::WriteAttempt(absl::Span<const CommitRecord> commits,
                                           std::string* lost) {
  lost->clear();
  if (commits.empty()) return absl::OkStatus();
  TXFN_ASSIGN_OR_RETURN(const auto groups, ValidateCommitBatch(commits));
  // A tenant's Writes go one at a time, each with its resolution (see kResolveSql).
  auto being_written = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(writing_mu_) {
    for (const TenantBatch& g : groups) {
      if (writing_.contains(internal::ToAbsl(g.tenant))) return true;
    }
    return false;
  };
  {
    internal::MutexLock lock(&writing_mu_);
    writing_cv_.Wait([&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(writing_mu_) { return !being_written(); });
    for (const TenantBatch& g : groups) writing_.emplace(g.tenant);
  }
  absl::Cleanup written = [&] {
    internal::MutexLock lock(&writing_mu_);
    for (const TenantBatch& g : groups) writing_.erase(internal::ToAbsl(g.tenant));
    writing_cv_.SignalAll();
  };
  for (const TenantBatch& g : groups) TXFN_RETURN_IF_ERROR(ResolveDoubts(g.tenant));

  // The batch as arrays, tenants numbered from 1 in lock (name) order.
  ArrayLiteral t_names, t_tokens, t_first, t_last, t_known;
  absl::flat_hash_map<std::string_view, int> tenant_no;
  std::vector<int64_t> tokens;  // by tenant_no - 1
  for (const TenantBatch& g : groups) {
    absl::StatusOr<int64_t> token = TokenFor(g.tenant);
    if (IsCommitOutcomeUnknown(token.status())) {
      // Whether the lease was taken is unknown, not the batch: none of it was sent. Said
      // unknown, it made the committer refuse the tenant's commits until it settled an
      // outcome there was no doubt about (a PostgreSQL hunt: 3-4 per server crash).
      return absl::UnavailableError(
          internal::StrCat("commit not persisted: ", token.status().message()));
    }
    if (!token.ok()) return token.status();
    tokens.push_back(*token);
    tenant_no[g.tenant] = static_cast<int>(tenant_no.size()) + 1;
    t_names.AddBytes(g.tenant);
    t_tokens.AddInt(*token);
    t_first.AddInt(Flip(g.first_ts));
    t_last.AddInt(Flip(g.last_ts));
    if (g.previous_ts.has_value()) {
      t_known.AddInt(Flip(*g.previous_ts));
    } else {
      t_known.AddNull();
    }
  }
  ArrayLiteral c_tenant, c_ts, w_tenant, w_ts, w_seq, w_index, w_key, w_value;
  for (const CommitRecord& commit : commits) {
    const int no = tenant_no[commit.tenant];
    c_tenant.AddInt(no);
    c_ts.AddInt(Flip(commit.ts));
    for (size_t seq = 0; seq < commit.writes.size(); ++seq) {
      const IndexWrite& w = commit.writes[seq];
      w_tenant.AddInt(no);
      w_ts.AddInt(Flip(commit.ts));
      w_seq.AddInt(static_cast<int64_t>(seq));
      w_index.AddInt(w.index);
      w_key.AddBytes(w.key);
      w_value.AddBytes(w.value ? std::optional<std::string_view>(*w.value) : std::nullopt);
    }
  }
  const std::vector<PgParam> params = {PgParam::Text(options_.owner),
                                       PgParam::Text(Interval(options_.lease_duration)),
                                       t_names.Param(),
                                       t_tokens.Param(),
                                       t_first.Param(),
                                       t_last.Param(),
                                       t_known.Param(),
                                       c_tenant.Param(),
                                       c_ts.Param(),
                                       w_tenant.Param(),
                                       w_ts.Param(),
                                       w_seq.Param(),
                                       w_index.Param(),
                                       w_key.Param(),
                                       w_value.Param()};

  TXFN_ASSIGN_OR_RETURN(ConnectionLease lease, Borrow());
  const int backend_pid = lease.backend_pid();
  const SteadyTime sent = SteadyClock::now();  // the lease runs from after this, on the server
  absl::StatusOr<PgResult> result = [&]() -> absl::StatusOr<PgResult> {
    TXFN_RETURN_IF_ERROR(lease->Send(kWriteSql, params));
    if (options_.after_write_sent) options_.after_write_sent(lease->socket(), backend_pid);
    return lease->Receive(kWriteSql);
  }();
  if (!result.ok()) {
    // An answer from the server means its transaction was rolled back; no answer (the
    // connection broke) means the statement may have run to its commit.
    if (!lease->broken()) return result.status();
    auto doubt = std::make_shared<InDoubt>();
    for (const TenantBatch& g : groups) doubt->tenants.emplace_back(g.tenant);
    doubt->first_tenant = commits.front().tenant;
    doubt->first_ts = commits.front().ts;
    doubt->first_token = tokens[tenant_no[doubt->first_tenant] - 1];
    doubt->last_ts = commits.back().ts;
    doubt->backend_pid = backend_pid;
    doubt->backend_start = lease.backend_start();
    doubt->error = std::string(internal::ToStd(result.status().message()));
    absl::StatusOr<bool> committed = Resolve(*doubt, options_.outcome_resolution_timeout);
    if (committed.ok()) {
      if (*committed) return absl::OkStatus();
      return absl::UnavailableError(fmt::format(
          "PostgresStorage: Write not persisted: the connection broke ({}) and the batch is "
          "absent",
          doubt->error));
    }
    {
      internal::MutexLock lock(&doubt_mu_);
      in_doubt_.push_back(doubt);
    }
    return CommitOutcomeUnknownError(
        fmt::format("PostgresStorage: Write: the connection broke after the batch was sent "
                    "({}), and whether it committed cannot be told yet ({})",
                    doubt->error, internal::ToStd(committed.status().message())),
        doubt->last_ts);
  }
  const int status = static_cast<int>(result->Int(0, 0));
  if (status == 0) {
    internal::MutexLock lock(&lease_mu_);
    for (size_t i = 0; i < groups.size(); ++i) {
      NoteLeaseExtended(groups[i].tenant, tokens[i], sent, /*by_write=*/true);
    }
    return absl::OkStatus();
  }
  const size_t index = static_cast<size_t>(result->Int(0, 1)) - 1;
  const std::string_view tenant = index < groups.size() ? groups[index].tenant : "";
  if (status == 1) {
    {
      // Lost — unless an AcquireTenant of this instance raised the token meanwhile. A later
      // Write takes the tenant back once nobody holds it (its committer, stale now, is
      // refused by the previous_ts check and reloads).
      internal::MutexLock lock(&lease_mu_);
      auto it = tokens_.find(internal::ToAbsl(tenant));
      if (it != tokens_.end() && index < tokens.size() && it->second.token == tokens[index]) {
        tokens_.erase(it);
      }
    }
    // Retried (Write) only for a batch that states what it had seen of the tenant: the
    // previous_ts check then refuses it if the other instance committed meanwhile.
    if (!result->IsNull(0, 2) && index < groups.size() && groups[index].previous_ts.has_value()) {
      *lost = std::string(tenant);
    }
    std::string owner = result->IsNull(0, 2) ? "nobody (the lease row is gone)"
                                             : fmt::format("now {}", result->Text(0, 2));
    return NotOwnerError(tenant, fmt::format("its lease passed to another instance: the owner "
                                             "is {}; nothing of this Write was written",
                                             owner));
  }
  int64_t max = 0;
  const bool no_commit = result->IsNull(0, 2);
  if (!no_commit) (void)absl::SimpleAtoi(internal::ToAbsl(result->Text(0, 2)), &max);
  if (status == 4) {
    return TenantDeletedElsewhereError(fmt::format(
        "PostgresStorage: tenant '{}' was deleted since this writer's commit at ts {} (its newest "
        "commit now: {}); nothing of this Write was written",
        Escaped(tenant), index < groups.size() ? groups[index].previous_ts.value_or(0) : 0,
        no_commit ? std::string("none") : std::to_string(Unflip(max))));
  }
  if (status == 3) {
    return StaleWriterError(
        fmt::format("PostgresStorage: tenant '{}' has commits up to ts {} that this writer had "
                    "not seen (it knew of ts {}): another instance wrote them; nothing of this "
                    "Write was written",
                    Escaped(tenant), Unflip(max),
                    index < groups.size() ? groups[index].previous_ts.value_or(0) : 0),
        Unflip(max));
  }
  return absl::InvalidArgumentError(fmt::format(
      "Storage::Write: commit of tenant '{}' at ts {} is not after its newest committed "
      "timestamp {}",
      Escaped(tenant), index < groups.size() ? groups[index].first_ts : 0, Unflip(max)));
}

// ---- Commit outcomes ---------------------------------------------------------------

absl::StatusOr<bool> PostgresStorage::Resolve(const InDoubt& doubt, absl::Duration timeout) {
  if (timeout <= absl::ZeroDuration()) {
    return absl::UnavailableError("resolution deferred (outcome_resolution_timeout is 0)");
  }
  const absl::Time deadline = absl::Now() + timeout;
  absl::Status last = absl::UnavailableError("no attempt");
  while (true) {
    // A new connection: the pooled ones may be as dead as the one that broke.
    absl::StatusOr<std::unique_ptr<PgConnection>> conn = PgConnection::Open(options_.url);
    if (conn.ok()) {
      auto check = [&]() -> absl::StatusOr<bool> {
        // The old backend may still be running the statement (it has not noticed the lost
        // client yet): end it and wait until it is gone, so its transaction is settled.
        // The process is named by pid and start time: after a server restart the pid may
        // belong to another client's process.
        const std::vector<PgParam> process = {PgParam::Int(doubt.backend_pid),
                                              PgParam::Text(doubt.backend_start)};
        const std::string same_process = internal::StrCat(
            "FROM pg_stat_activity WHERE pid = $1 AND ($2 = '' OR ", kBackendStartMicros, " = $2)");
        TXFN_RETURN_IF_ERROR(
            (*conn)
                ->Exec(internal::StrCat("SELECT pg_terminate_backend(pid) ", same_process), process)
                .status());
        while (true) {
          TXFN_ASSIGN_OR_RETURN(
              PgResult alive, (*conn)->Exec(internal::StrCat("SELECT 1 ", same_process), process));
          if (alive.rows() == 0) break;
          if (absl::Now() > deadline) {
            return absl::UnavailableError(fmt::format(
                "the server process {} that ran it has not exited yet", doubt.backend_pid));
          }
          absl::SleepFor(absl::Milliseconds(5));
        }
        TXFN_ASSIGN_OR_RETURN(
            PgResult found,
            (*conn)->Exec(kResolveSql, {PgParam::Bytes(doubt.first_tenant), TsParam(doubt.first_ts),
                                        PgParam::Int(doubt.first_token)}));
        if (found.Int(0, 0) == 2) {
          return absl::DataLossError(
              "its commit row was dropped by retention, and what its writer's lease committed "
              "is no longer recorded (records are kept a week; a lease taken by a build older "
              "than schema version 4 has none)");
        }
        return found.Int(0, 0) == 1;
      };
      absl::StatusOr<bool> outcome = check();
      if (outcome.ok() || !(*conn)->broken()) return outcome;
      last = outcome.status();
    } else {
      last = conn.status();
    }
    if (absl::Now() + absl::Milliseconds(50) > deadline) return last;
    absl::SleepFor(absl::Milliseconds(50));
  }
}

absl::Status PostgresStorage::ResolveDoubts(std::optional<std::string_view> tenant) {
  auto involved = [&](const InDoubt& d) {
    if (!tenant) return true;
    for (const std::string& t : d.tenants) {
      if (t == *tenant) return true;
    }
    return false;
  };
  std::vector<std::shared_ptr<const InDoubt>> pending;
  {
    internal::MutexLock lock(&doubt_mu_);
    if (in_doubt_.empty()) return absl::OkStatus();
    for (const auto& d : in_doubt_) {
      if (involved(*d)) pending.push_back(d);
    }
  }
  if (pending.empty()) return absl::OkStatus();
  internal::MutexLock resolving(&resolve_mu_);
  for (const auto& d : pending) {
    // A short attempt: the caller is a read or a write that would rather fail fast.
    absl::StatusOr<bool> outcome = Resolve(*d, absl::Milliseconds(200));
    // Told, or never to be told (asking again would fail this tenant's calls for good).
    const bool never = absl::IsDataLoss(outcome.status());
    if (outcome.ok() || never) {
      internal::MutexLock lock(&doubt_mu_);
      std::erase(in_doubt_, d);
    }
    if (!outcome.ok()) {
      return absl::UnavailableError(fmt::format(
          "PostgresStorage: the outcome of a Write at ts {}..{} of tenant '{}' whose answer was "
          "lost ({}) {}: {}",
          d->first_ts, d->last_ts, Escaped(d->first_tenant), d->error,
          never ? "can never be told" : "is still unknown",
          internal::ToStd(outcome.status().message())));
    }
  }
  return absl::OkStatus();
}

// ---- Reads ---------------------------------------------------------------------------

namespace {

// The horizon column `col` of row 0 (null: the tenant has none).
Timestamp HorizonAt(const PgResult& r, int row, int col) {
  return r.IsNull(row, col) ? 0 : Unflip(r.Int(row, col));
}

}  // namespace

absl::StatusOr<std::optional<IndexEntry>> PostgresStorage::Get(std::string_view tenant,
                                                               IndexId index, std::string_view key,
                                                               Timestamp ts) {
  TXFN_ASSIGN_OR_RETURN(PgResult r, WithReadConnection([&](ConnectionLease& lease) {
                          return lease->ExecPrepared(kGetSql,
                                                     {PgParam::Bytes(tenant), PgParam::Int(index),
                                                      PgParam::Bytes(key), TsParam(ts)},
                                                     /*binary_results=*/true);
                        }));
  if (Timestamp horizon = HorizonAt(r, 0, 2); ts < horizon) {
    return ReadBelowRetentionError("Get", tenant, ts, horizon);
  }
  if (r.IsNull(0, 0) || r.IsNull(0, 1)) return std::nullopt;
  return IndexEntry{std::string(key), r.Bytes(0, 1), Unflip(r.Int(0, 0))};
}

absl::StatusOr<std::vector<IndexEntry>> PostgresStorage::Scan(std::string_view tenant,
                                                              IndexId index, const KeyRange& range,
                                                              Timestamp ts, ScanOrder order,
                                                              size_t limit) {
  std::vector<IndexEntry> out;
  if (range.IsEmpty()) return out;
  const bool bounded = range.end.has_value();
  const std::string sql = ScanSql(order == ScanOrder::kAscending, bounded);
  std::vector<PgParam> params = {
      PgParam::Bytes(tenant), PgParam::Int(index), PgParam::Bytes(range.start), TsParam(ts),
      limit == 0 ? PgParam::Null() : PgParam::Int(static_cast<int64_t>(limit))};
  if (bounded) params.push_back(PgParam::Bytes(*range.end));
  TXFN_ASSIGN_OR_RETURN(PgResult r, WithReadConnection([&](ConnectionLease& lease) {
                          return lease->ExecPrepared(sql, params, /*binary_results=*/true);
                        }));
  Timestamp horizon = 0;
  if (r.rows() > 0) {
    horizon = HorizonAt(r, 0, 3);
  } else {
    // Nothing found: right unless retention dropped it. The horizon only rises, so
    // reading it after the scan errs on the safe side.
    TXFN_ASSIGN_OR_RETURN(PgResult h, WithReadConnection([&](ConnectionLease& lease) {
                            return lease->ExecPrepared(kHorizonSql, {PgParam::Bytes(tenant)}, true);
                          }));
    if (h.rows() > 0) horizon = HorizonAt(h, 0, 0);
  }
  if (ts < horizon) return ReadBelowRetentionError("Scan", tenant, ts, horizon);
  out.reserve(static_cast<size_t>(r.rows()));
  for (int row = 0; row < r.rows(); ++row) {
    out.push_back(IndexEntry{r.Bytes(row, 0), r.Bytes(row, 2), Unflip(r.Int(row, 1))});
  }
  return out;
}

absl::StatusOr<std::vector<CommitRecord>> PostgresStorage::ReadLog(std::string_view tenant,
                                                                   Timestamp after, size_t limit) {
  TXFN_RETURN_IF_ERROR(ResolveDoubts(tenant));
  TXFN_ASSIGN_OR_RETURN(
      PgResult r, WithReadConnection([&](ConnectionLease& lease) {
        return lease->ExecPrepared(
            kReadLogSql,
            {PgParam::Bytes(tenant), TsParam(after),
             limit == 0 ? PgParam::Null() : PgParam::Int(static_cast<int64_t>(limit))},
            /*binary_results=*/true);
      }));
  Timestamp horizon = 0;
  if (r.rows() > 0) {
    horizon = HorizonAt(r, 0, 6);
  } else {
    TXFN_ASSIGN_OR_RETURN(PgResult h, WithReadConnection([&](ConnectionLease& lease) {
                            return lease->ExecPrepared(kHorizonSql, {PgParam::Bytes(tenant)}, true);
                          }));
    if (h.rows() > 0) horizon = HorizonAt(h, 0, 0);
  }
  if (after < horizon) return ReadBelowRetentionError("ReadLog", tenant, after, horizon);
  std::vector<CommitRecord> out;
  for (int row = 0; row < r.rows(); ++row) {
    const Timestamp ts = Unflip(r.Int(row, 0));
    if (out.empty() || out.back().ts != ts) {
      out.push_back(CommitRecord{.tenant = std::string(tenant), .ts = ts});
    }
    if (r.IsNull(row, 1)) continue;  // a commit without writes
    if (r.IsNull(row, 4)) {
      return absl::DataLossError(
          fmt::format("PostgresStorage: log entry of tenant '{}' at ts {} has no version",
                      Escaped(tenant), ts));
    }
    IndexWrite& w = out.back().writes.emplace_back();
    w.index = static_cast<IndexId>(r.Int(row, 2));
    w.key = r.Bytes(row, 3);
    if (!r.IsNull(row, 5)) w.value = r.Bytes(row, 5);
  }
  return out;
}

absl::StatusOr<Timestamp> PostgresStorage::MaxCommittedTimestamp(std::string_view tenant) {
  TXFN_RETURN_IF_ERROR(ResolveDoubts(tenant));
  std::optional<int64_t> held;
  {
    internal::MutexLock lock(&lease_mu_);
    if (auto it = tokens_.find(internal::ToAbsl(tenant)); it != tokens_.end()) {
      held = it->second.token;
    }
  }
  if (!held.has_value()) {
    TXFN_ASSIGN_OR_RETURN(PgResult r, WithReadConnection([&](ConnectionLease& lease) {
                            return lease->ExecPrepared(kMaxTsSql, {PgParam::Bytes(tenant)}, true);
                          }));
    return r.rows() == 0 ? Timestamp{0} : Unflip(r.Int(0, 0));
  }
  // This instance holds the tenant: the same round trip extends the lease, so an owner that
  // only reads for a while keeps the tenant, and MayHaveOtherWriters (whose "true" brings
  // the committer here) stays false for another lease_duration instead of costing every
  // later call this round trip.
  const SteadyTime sent = SteadyClock::now();
  TXFN_ASSIGN_OR_RETURN(
      PgResult r, WithReadConnection([&](ConnectionLease& lease) {
        return lease->ExecPrepared(
            kMaxTsRenewingSql,
            {PgParam::Bytes(tenant), PgParam::Text(options_.owner), PgParam::Int(*held),
             PgParam::Text(Interval(options_.lease_duration))});
      }));
  if (r.Int(0, 1) == 1) {
    internal::MutexLock lock(&lease_mu_);
    NoteLeaseExtended(tenant, *held, sent, /*by_write=*/false);
  }
  return r.IsNull(0, 0) ? Timestamp{0} : Unflip(r.Int(0, 0));
}

absl::StatusOr<std::vector<std::string>> PostgresStorage::ListTenants() {
  TXFN_RETURN_IF_ERROR(ResolveDoubts(std::nullopt));
  TXFN_ASSIGN_OR_RETURN(PgResult r, WithReadConnection([&](ConnectionLease& lease) {
                          return lease->ExecPrepared(
                              "SELECT tenant FROM txfn_tenants ORDER BY tenant", {}, true);
                        }));
  std::vector<std::string> out;
  out.reserve(static_cast<size_t>(r.rows()));
  for (int row = 0; row < r.rows(); ++row) out.push_back(r.Bytes(row, 0));
  return out;
}

// ---- Deletion and retention --------------------------------------------------------

absl::Status PostgresStorage::DeleteTenant(std::string_view tenant) {
  TXFN_RETURN_IF_ERROR(ResolveDoubts(tenant));
  TXFN_ASSIGN_OR_RETURN(ConnectionLease lease, Borrow());
  return lease
      ->ExecPrepared("SELECT txfn_delete_tenant_if_newest($1, NULL)", {PgParam::Bytes(tenant)})
      .status();
}

absl::StatusOr<bool> PostgresStorage::DeleteTenantIfNewest(std::string_view tenant,
                                                           Timestamp newest) {
  TXFN_RETURN_IF_ERROR(ResolveDoubts(tenant));
  TXFN_ASSIGN_OR_RETURN(ConnectionLease lease, Borrow());
  TXFN_ASSIGN_OR_RETURN(PgResult r,
                        lease->ExecPrepared("SELECT txfn_delete_tenant_if_newest($1, $2)::int",
                                            {PgParam::Bytes(tenant), TsParam(newest)}));
  return r.Int(0, 0) != 0;
}

absl::StatusOr<RetentionResult> PostgresStorage::ApplyRetention(std::string_view tenant,
                                                                Timestamp ts, size_t max_commits) {
  TXFN_RETURN_IF_ERROR(ResolveDoubts(tenant));
  TXFN_ASSIGN_OR_RETURN(ConnectionLease lease, Borrow());
  TXFN_ASSIGN_OR_RETURN(
      PgResult r,
      lease->ExecPrepared(
          "SELECT r_horizon, r_versions, r_commits, r_done::int "
          "FROM txfn_apply_retention($1, $2, $3)",
          {PgParam::Bytes(tenant), TsParam(ts),
           max_commits == 0 ? PgParam::Null() : PgParam::Int(static_cast<int64_t>(max_commits))}));
  RetentionResult result;
  if (r.IsNull(0, 0)) return result;  // no such tenant
  result.horizon = HorizonAt(r, 0, 0);
  result.versions_dropped = static_cast<uint64_t>(r.Int(0, 1));
  result.commits_dropped = static_cast<uint64_t>(r.Int(0, 2));
  result.done = r.Int(0, 3) != 0;
  return result;
}

}  // namespace txfn

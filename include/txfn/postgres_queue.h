// txfn/postgres_queue.h — the DurableQueue adapter on PostgreSQL, for many processes sharing
// one queue.
//
// PostgresQueue keeps calls, leases and dead letters in tables of a PostgreSQL database. Any
// number of processes (and threads) may open the same database and enqueue, lease and settle
// concurrently: a lease is a row lock taken with FOR UPDATE SKIP LOCKED while the lease's token
// and expiry are written into the call's row, so two lessees never get the same call, and a
// crashed lessee's calls are due again when their leases expire. It passes the DurableQueue
// conformance suite (with reopen) and survives kill -9 of a client: once Enqueue or Settle
// returns OK the change is committed (durable as the server's fsync settings make it).
//
//   auto queue = txfn::PostgresQueue::Open({.url = "postgresql:///app?host=/run/pg", .shards = 4});
//   if (!queue.ok()) return queue.status();
//   (void)(*queue)->Enqueue(calls);  // one INSERT for the batch
//   auto leased = (*queue)->Lease({.shard = 0, .now = now, .max = 256});
//   ... run them ...; (void)(*queue)->Settle(acks, now);  // one DELETE for the ACKs
//
// Link txfn::postgres (built when TXFN_WITH_POSTGRES is ON).
//
// Tables (created if missing, under an advisory lock so that processes starting together do
// not race; every name starts with txfn_queue_ so the database may hold other tables):
//   txfn_queue_meta(name, value)  schema version, shard count
//   txfn_queue_tokens             a sequence: lease tokens, unique across processes and restarts
//   txfn_queue_calls(id bytea PRIMARY KEY, seq, shard, function, state, due, attempts,
//                    max_attempts, deadline, token, reason, dead_at, call bytea)
//       state 0 pending, 1 leased, 2 dead. `due` is when the row can be leased: the start or
//       retry time of a pending call, the lease expiry of a leased one (an expired lease is
//       simply due again: no reclaim pass), never (INT64_MAX) for a dead letter. `seq` is the
//       enqueue order; `call` is EncodeCall of the call. Times are int64 Unix nanoseconds.
//   indexes: (shard, due, seq) WHERE state < 2 for leasing (and the same of reserved calls
//            only); (shard, quota, tenant, due, seq) of the same rows, for leases past skipped
//            tenants; (id) WHERE state = 2 for the dead-letter listing.
//
// Costs, per batch (every one is a single round trip on the fast path): Enqueue is one INSERT
// .. SELECT FROM unnest(..) ON CONFLICT DO NOTHING (more, in one transaction, past 32 MiB of
// calls); Lease one statement that locks the shard's first due rows with SKIP LOCKED and
// updates them with their tokens (a second one only when some must be dead-lettered); a batch
// of ACKs one DELETE .. USING unnest(..); Extend one UPDATE. Other settlements (NACK, release,
// dead-letter) take a lookup and an update (applied only while the lease is live) each, in one
// transaction with the batch's ACKs. A lease that skips tenants (LeaseRequest::skip_tenants,
// or tenants at max_per_tenant) reads at most `skip_scan_rows` due rows more than it wants in
// due order; if a skipped tenant's backlog fills those, it finds the other tenants' first due
// calls tenant by tenant instead, one index probe per (quota class, tenant) with calls in the
// shard, and merges them: the same calls, at a cost that does not grow with the skipped
// backlog (unlike SqliteQueue it cannot remember how far it got, since other processes write
// the table). Measured: a poll of 16 tenants' calls past 100,000 skipped due calls runs at
// 0.6-0.8x the speed of one past the same backlog not yet due (a full scan of it: 0.09x). The
// tenant index costs writes (roughly 10% of BM_PostgresQueueCycle's jobs/s, noisy).
//
// Dead tuples. An ACK deletes its row, so the table holds only live and dead-lettered calls,
// but each job leaves two dead row versions (its lease's old version, the deleted row) that
// only VACUUM reclaims; until it runs, new rows go to the end of the heap. The table asks
// autovacuum to run after 2% of it changed, without cost delay, but autovacuum visits each
// database once per autovacuum_naptime (server-wide, 1 min by default): at 10,000 jobs/s
// that lets over a million dead versions pile up and the table grow to ~450 MB for a backlog
// of 30,000 calls. On a server running a busy queue set autovacuum_naptime = '5s': the table
// then levels off near 200 MB at 20,000 jobs/s. Depths and ListCalls scan the table (for
// monitoring and tools). Queue connections switch bitmap and sequential scans off (every
// statement here has a selective index; the .cc's Connect says why).
//
// Thread safety: every method may be called concurrently. Each call borrows a connection from
// the queue's pool (up to `max_connections`; a caller waits when all are busy), so calls run
// in parallel on the server. Errors: Unavailable when the server cannot be reached or the
// connection is lost: nothing changed, unless the connection was lost with a change sent (a
// COMMIT; a Settle of ACKs alone, an Extend, a one-statement Enqueue): then the server may
// have applied it, and the error says the outcome is unknown (IsCommitOutcomeUnknown, from
// Enqueue, Settle, Extend, Redrive and RemovePending). Retrying an Enqueue is exact; a
// retried Settle may answer FailedPrecondition or NotFound for what it already did, a
// Redrive or RemovePending NotFound. A Lease lost so leaves the calls it took leased until
// their lease expires. Internal for an unexpected server error (a
// batch of settlements is one transaction: an error means none of it applied); otherwise as
// DurableQueue documents. A Lease whose later statement fails hands out the calls it had
// already leased, and the error only if there are none.
#ifndef TXFN_POSTGRES_QUEUE_H_
#define TXFN_POSTGRES_QUEUE_H_

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "txfn/durable_queue.h"
#include "txfn/internal/mutex.h"

namespace txfn {

namespace pg_internal {
class PgConnection;
}  // namespace pg_internal

struct PostgresQueueOptions {
  // A libpq connection string or postgresql:// URI naming the queue's database. Required.
  // Unless it sets them, connections use connect_timeout=10 (s), TCP keepalives (a peer
  // silent for 30 s is probed 3 times, 10 s apart) and tcp_user_timeout=30000 (ms): a server
  // that stops answering fails the call in about a minute (Unavailable) instead of blocking
  // it forever. A query that waits on the server's own locks is not cut short.
  std::string url;
  // Shards of a new queue (1 .. kMaxShards). An existing queue keeps the count it was created with;
  // 0 means "whatever it has" (1 for a new queue). A different non-zero count than the stored one
  // is FailedPrecondition (a call's shard must never change).
  int shards = 0;
  // The most connections the queue holds open at once (>= 1): the most of its methods that run
  // on the server at the same time.
  int max_connections = 8;
  // How far a lease that skips tenants (LeaseRequest::skip_tenants, and the tenants at
  // max_per_tenant) reads the shard's due order (>= 0): at most this many due calls more than it
  // wants. When those hold too few calls of the other tenants (a skipped tenant's backlog is in
  // the way), it finds them tenant by tenant instead, one index probe per tenant with calls in
  // the shard. So a skipped backlog costs a lease at most this many rows, not its size. 0 goes
  // tenant by tenant at once. The calls leased are the same either way.
  int skip_scan_rows = 256;
};

class PostgresQueue final : public DurableQueue {
 public:
  // 2: every table and index of this build (version 1 databases get the missing ones on Open).
  static constexpr int kSchemaVersion = 2;

  // Connects to `options.url` and creates the tables if missing. The caller owns the queue.
  // Errors: InvalidArgument — an empty or malformed url, shards < 0 or > kMaxShards,
  // max_connections < 1,
  // skip_scan_rows < 0;
  // Unavailable — the server cannot be reached; FailedPrecondition — a newer schema version, or
  // another shard count.
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<PostgresQueue>> Open(
      PostgresQueueOptions options);

  ~PostgresQueue() override;
  PostgresQueue(const PostgresQueue&) = delete;
  PostgresQueue& operator=(const PostgresQueue&) = delete;

  int shard_count() const override { return shards_; }
  int ShardOf(const CallId& id) const override { return DefaultShardOf(id, shards_); }

  absl::StatusOr<size_t> Enqueue(absl::Span<const Call> calls) override;
  absl::StatusOr<std::vector<LeasedCall>> Lease(const LeaseRequest& request) override;
  absl::StatusOr<std::vector<absl::Status>> Settle(absl::Span<const Settlement> settlements,
                                                   absl::Time now) override;
  absl::StatusOr<std::vector<absl::Status>> Extend(absl::Span<const LeaseToken> leases,
                                                   absl::Time now,
                                                   absl::Duration lease_duration) override;
  absl::StatusOr<std::vector<DeadLetter>> ListDeadLetters(CallId after, size_t limit) override;
  absl::StatusOr<std::vector<absl::Status>> Redrive(absl::Span<const CallId> ids,
                                                    absl::Time now) override;
  absl::StatusOr<std::vector<FunctionDepth>> Depths(absl::Time now) override;
  absl::StatusOr<std::vector<TenantDepth>> TenantDepths(absl::Time now) override;
  absl::StatusOr<std::vector<absl::Status>> RemovePending(absl::Span<const CallId> ids,
                                                          absl::Time now) override;
  absl::StatusOr<std::vector<absl::Status>> RemoveDeadLetters(absl::Span<const CallId> ids,
                                                              absl::Time dead_before) override;
  absl::StatusOr<std::optional<QueuedCall>> Find(const CallId& id, absl::Time now) override;
  absl::StatusOr<std::vector<QueuedCall>> ListCalls(CallId after, size_t limit,
                                                    const ListFilter& filter,
                                                    absl::Time now) override;

 private:
  class Conn;  // a pooled connection, returned to the pool when it goes away

  PostgresQueue(PostgresQueueOptions options, int shards);

  // A connection from the pool (opening one if none is idle and fewer than max_connections
  // exist; else waiting for one).
  absl::StatusOr<Conn> Acquire();
  void Release(std::unique_ptr<pg_internal::PgConnection> conn);

  const PostgresQueueOptions options_;
  const int shards_;
  internal::Mutex mu_;
  internal::CondVar idle_cv_{&mu_};
  std::vector<std::unique_ptr<pg_internal::PgConnection>> idle_ ABSL_GUARDED_BY(mu_);
  int open_ ABSL_GUARDED_BY(mu_) = 0;  // connections in idle_ or borrowed
};

}  // namespace txfn

#endif  // TXFN_POSTGRES_QUEUE_H_

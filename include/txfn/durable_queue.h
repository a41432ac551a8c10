// txfn/durable_queue.h — the pluggable store of pending function calls
// (XFaaS's DurableQ).
//
// A DurableQueue keeps Calls until they have run. Its calls are spread over
// `shard_count()` shards by id; schedulers lease due calls shard by shard.
//
//   Enqueue(batch)   atomically stores a batch of calls (ids already present
//                    are skipped, so a retried Enqueue is exact).
//   Lease(request)   hands out up to `max` due calls of one shard
//                    (start_after <= now), longest due first (optionally of
//                    some functions or one quota class, skipping some
//                    tenants, at most so many per tenant), each exclusive
//                    to the caller until its lease ends. Every lease carries a
//                    fresh token.
//   Settle(batch)    ends leases: kAck deletes the call; kNack makes it due
//                    again at `retry_at`; kRelease too, for a call that was
//                    not started (the delivery does not count as an attempt:
//                    a scheduler time-shifts work back into the queue);
//                    kDeadLetter moves it to the dead-letter set. A token that is not the call's
//                    current, unexpired lease is refused (FailedPrecondition): a late ACK of an
//                    expired lease cannot delete a call another scheduler now
//                    owns.
//   Extend(batch)    heartbeats: moves unexpired leases' expiry forward.
//   RemovePending    takes out calls not leased (a host cancelled them).
//   expiry           a lease not settled or extended by its expiry ends by
//                    itself: the call is due again (at-least-once delivery).
//
// Attempts. `Call::attempt` as returned by Lease counts the deliveries before
// this one (0 the first time). A call whose attempts are used up
// (retry.max_attempts deliveries began) is dead-lettered instead of being
// leased again or when NACKed; a due call past its deadline is dead-lettered
// instead of being leased. Dead letters are listed with ListDeadLetters and
// put back with Redrive.
//
//   txfn::InMemoryQueue queue;
//   (void)queue.Enqueue({&call, 1});
//   auto leased = queue.Lease({.shard = 0, .now = clock.Now(), .max = 64,
//                              .lease_duration = absl::Seconds(30)});
//   for (const txfn::LeasedCall& c : *leased) { ... run c.call ... }
//   auto results = queue.Settle({{txfn::Settlement::Ack((*leased)[0].token)}},
//                               clock.Now());
//
// Writing an adapter: subclass DurableQueue and instantiate the conformance
// suite of <txfn/testing/durable_queue_conformance.h>; passing it is the
// definition of a correct adapter. Adapters take `now` from the caller and
// never read a clock.
//
// Thread safety: every method of every adapter may be called concurrently.
// Errors common to all methods: InvalidArgument for bad input (nothing
// changed), Unavailable for an I/O fault (nothing changed), DataLoss for
// corruption met.
#ifndef TXFN_DURABLE_QUEUE_H_
#define TXFN_DURABLE_QUEUE_H_

#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "txfn/call.h"

namespace txfn {

// Identifies one lease of one call. `token` is never reused for the same call
// (also across restarts of a durable adapter); txfn's adapters make it unique
// queue-wide, a ShardedQueue per child.
struct LeaseToken {
  CallId id;
  uint64_t token = 0;
  friend bool operator==(const LeaseToken&, const LeaseToken&) = default;
};

// A call handed out by Lease: exclusive to the holder of `token` until
// `expires` (unless extended or settled first).
struct LeasedCall {
  Call call;  // call.attempt = deliveries before this one
  LeaseToken token;
  absl::Time expires;
  int shard = 0;
};

struct LeaseRequest {
  int shard = 0;
  // Only calls of these functions (at most 1000); empty = every function.
  std::vector<std::string> functions;
  // Only calls of this quota class; nullopt = every class. A scheduler leases
  // reserved calls on their own, so a backlog of time-shifted opportunistic
  // calls that became due earlier never holds them back.
  std::optional<QuotaClass> quota;
  // Not calls of these tenants (at most kMaxSkippedTenants names). A scheduler skips the
  // tenants that already hold what they may run soon, so their backlog waits
  // here, in due order, instead of being leased and handed back. What a lease
  // pays for a skipped tenant's due calls depends on the adapter: InMemoryQueue
  // and SqliteQueue nothing per call (see theirs), PostgresQueue a bounded read of
  // them, then an index probe per tenant with calls in the shard.
  std::vector<std::string> skip_tenants;
  absl::Time now;
  // The most calls to hand out, 1 .. kMaxLeaseBatch.
  size_t max = 1;
  // At most this many calls of one tenant (0: no cap): each tenant's
  // earliest due calls, the rest left due. To keep to it a lease may hand
  // out fewer than `max` calls while more are due, but never none: the first
  // due call (of the filters above) is always handed out.
  size_t max_per_tenant = 0;
  // How long the leases last; > 0 and <= 24 h.
  absl::Duration lease_duration = absl::Seconds(30);
};

// How a lease ends.
struct Settlement {
  enum class Kind : uint8_t { kAck, kNack, kDeadLetter, kRelease };
  Kind kind = Kind::kAck;
  LeaseToken lease;
  absl::Time retry_at;  // kNack, kRelease: when the call is due again
  std::string reason;   // kDeadLetter (and kNack when it dead-letters): why; <= 1 KiB kept

  static Settlement Ack(LeaseToken t) { return {Kind::kAck, t, absl::InfinitePast(), {}}; }
  static Settlement Nack(LeaseToken t, absl::Time retry_at, std::string reason = {}) {
    return {Kind::kNack, t, retry_at, std::move(reason)};
  }
  static Settlement DeadLetter(LeaseToken t, std::string reason) {
    return {Kind::kDeadLetter, t, absl::InfinitePast(), std::move(reason)};
  }
  static Settlement Release(LeaseToken t, absl::Time retry_at) {
    return {Kind::kRelease, t, retry_at, {}};
  }
};

// A call in the dead-letter set.
struct DeadLetter {
  Call call;  // call.attempt = deliveries it had
  std::string reason;
  absl::Time at;  // when it was dead-lettered (the `now` of that operation)
  int shard = 0;
};

// A call as the queue holds it now (DurableQueue::Find).
struct QueuedCall {
  enum class State : uint8_t {
    kPending,  // waiting (due or not yet); also a call whose lease expired
    kLeased,   // under an unexpired lease
    kDead,     // in the dead-letter set
  };
  Call call;  // call.attempt = deliveries so far
  State state = State::kPending;
  // kPending: when it is (or was) due; kLeased: when the lease expires;
  // kDead: when it was dead-lettered.
  absl::Time at;
  std::string reason;  // kDead: why; otherwise the last NACK's reason, if any
};

// The backlog of one function (calls not dead-lettered).
struct FunctionDepth {
  std::string function;
  size_t pending = 0;  // waiting: due or not yet due, not leased
  size_t due = 0;      // of those, start_after <= now
  size_t leased = 0;   // under an unexpired lease
  // When the longest-waiting due, unleased call became due (see Lease);
  // InfiniteFuture if none.
  absl::Time oldest_due = absl::InfiniteFuture();
  // now - oldest_due, or zero if none is due.
  absl::Duration oldest_due_age = absl::ZeroDuration();
};

// The calls one tenant has in the queue (Call::tenant; "" for calls without one).
struct TenantDepth {
  std::string tenant;
  size_t calls = 0;  // pending or leased: not dead-lettered
  // What those calls take in the queue: about their encoded size (EncodeCall; InMemoryQueue:
  // their arguments' Value::ByteSize and names) plus the arguments spilled to a BlobStore the
  // adapter holds itself (SqliteQueue's blob_store(); arguments spilled elsewhere are not
  // counted). The engine's max_pending_bytes_per_tenant.
  uint64_t bytes = 0;
  friend bool operator==(const TenantDepth&, const TenantDepth&) = default;
};

class DurableQueue {
 public:
  static constexpr size_t kMaxLeaseBatch = 10'000;
  static constexpr size_t kMaxEnqueueBatch = 100'000;
  static constexpr size_t kMaxSkippedTenants = 1000;  // LeaseRequest::skip_tenants
  // The most shards txfn's adapters create: a scheduler keeps state per shard, and a count
  // past what workers can poll is a mistake, not a configuration.
  static constexpr int kMaxShards = 1024;

  virtual ~DurableQueue() = default;

  // The number of shards, >= 1, fixed for the queue's life.
  [[nodiscard]] virtual int shard_count() const = 0;
  // The shard that holds (or will hold) call `id`, in [0, shard_count()).
  // A pure function of the id.
  [[nodiscard]] virtual int ShardOf(const CallId& id) const = 0;

  // Stores `calls` atomically: when it returns OK every new call is durable
  // (as durable as the adapter promises); on an error none is stored, unless
  // the error is marked IsCommitOutcomeUnknown (<txfn/storage.h>): then all
  // may be (the same Enqueue again is exact: ids already there are skipped). A call
  // whose id is already in the queue (pending, leased or dead-lettered) is
  // skipped and the stored one is kept. Returns how many calls were new.
  // InvalidArgument (nothing stored): a call fails ValidateCall, two calls of
  // the batch share an id, or the batch has more than kMaxEnqueueBatch calls.
  // `attempt` of an enqueued call is ignored (stored as 0 deliveries).
  [[nodiscard]] virtual absl::StatusOr<size_t> Enqueue(absl::Span<const Call> calls) = 0;

  // Leases up to `max` calls of `shard` that are due at `now` (and, if
  // given, of a function in `functions`, of the quota class `quota`, of a
  // tenant not in `skip_tenants`, within `max_per_tenant`), ordered by when
  // they became due, then by enqueue order. A call is due from its start_after, a NACKed or
  // released one from its retry_at, one whose lease expired from the expiry
  // (an expired lease has ended: the call is due again). Due calls whose deadline is <= now, or
  // whose attempts are used up, are dead-lettered on the way (reason says which), not returned.
  // InvalidArgument: shard out of range, max 0 or over kMaxLeaseBatch,
  // lease_duration <= 0 or over 24 h, an invalid function or tenant name,
  // over 1000 functions or tenants to skip, an unknown quota class.
  [[nodiscard]] virtual absl::StatusOr<std::vector<LeasedCall>> Lease(
      const LeaseRequest& request) = 0;

  // Ends the given leases at `now`, atomically as a batch (all changes made,
  // or none on an I/O error, unless the error is marked IsCommitOutcomeUnknown:
  // then all may have been; settling again may answer FailedPrecondition or
  // NotFound for what was done). The result has one status per settlement, in
  // order: OK, or FailedPrecondition when the token is not the call's current
  // lease or the lease expired at or before `now` (nothing changed for that
  // one), or NotFound when the call is not in the queue. A kNack whose call has
  // used all its attempts dead-letters it ("attempts exhausted: <reason>");
  // a kRelease never does (it gives the attempt back).
  // InvalidArgument (nothing settled): a token appears twice, a kNack's
  // retry_at is not finite. (A lease appearing twice: the same id and token.)
  [[nodiscard]] virtual absl::StatusOr<std::vector<absl::Status>> Settle(
      absl::Span<const Settlement> settlements, absl::Time now) = 0;

  // Sets the expiry of each unexpired lease to now + lease_duration. One
  // status per token, as for Settle. InvalidArgument as for Lease's duration.
  [[nodiscard]] virtual absl::StatusOr<std::vector<absl::Status>> Extend(
      absl::Span<const LeaseToken> leases, absl::Time now, absl::Duration lease_duration) = 0;

  // Up to `limit` (1 .. kMaxLeaseBatch) dead letters with id > `after` (nil:
  // from the start), in id order, from every shard.
  [[nodiscard]] virtual absl::StatusOr<std::vector<DeadLetter>> ListDeadLetters(CallId after,
                                                                                size_t limit) = 0;

  // Puts dead-lettered calls back: each is due at `now` with no deliveries,
  // and when now + (its deadline - start_after) is later than its deadline,
  // its window moves to start at `now` (start_after = now, the deadline that
  // much later: RedriveWindow), so it still passes ValidateCall. One status
  // per id: OK, or NotFound if it is not a dead letter. Atomic as a batch: on
  // an I/O error none is put back, unless the error is marked
  // IsCommitOutcomeUnknown (all may have been).
  [[nodiscard]] virtual absl::StatusOr<std::vector<absl::Status>> Redrive(
      absl::Span<const CallId> ids, absl::Time now) = 0;

  // The backlog per function at `now`, sorted by function name; functions
  // with nothing pending or leased are left out.
  [[nodiscard]] virtual absl::StatusOr<std::vector<FunctionDepth>> Depths(absl::Time now) = 0;

  // The call `id` as the queue holds it at `now`, or nullopt if the queue
  // does not hold it (never enqueued, or acknowledged). A read: changes
  // nothing. The default answers Unimplemented (an adapter written before
  // Find existed); txfn's adapters implement it.
  [[nodiscard]] virtual absl::StatusOr<std::optional<QueuedCall>> Find(const CallId& id,
                                                                       absl::Time now);

  // The calls the queue holds at `now` (pending, leased or dead) with id >
  // `after` (nil: from the start), in id order, at most `limit` (1 ..
  // kMaxLeaseBatch) of those that match: of `tenant` if not empty, of
  // `function` if not empty, in `state` if given, with id < `before` if
  // given. A read that changes nothing; an adapter may scan everything
  // from `after` to `before` to answer (for tools, not hot paths): a caller
  // whose ids group by tenant bounds the walk with both (the engine's ids
  // begin with their tenant's tag, TenantCallIdRange). The default answers
  // Unimplemented; txfn's adapters implement it.
  struct ListFilter {
    std::string tenant;
    std::string function;
    std::optional<QueuedCall::State> state;
    std::optional<CallId> before;
  };
  [[nodiscard]] virtual absl::StatusOr<std::vector<QueuedCall>> ListCalls(CallId after,
                                                                          size_t limit,
                                                                          const ListFilter& filter,
                                                                          absl::Time now);

  // The calls each tenant has in the queue (pending or leased, not dead-lettered) and their
  // bytes, sorted by tenant (by bytes); tenants with none are
  // left out. A read that changes nothing. It scans every call: for a periodic recount (the
  // engine's max_pending_calls_per_tenant and max_pending_bytes_per_tenant), not per call. The
  // default pages through ListCalls (counting EncodeCall's size); txfn's adapters count in place.
  [[nodiscard]] virtual absl::StatusOr<std::vector<TenantDepth>> TenantDepths(absl::Time now);

  // Takes out of the queue the calls of `ids` that wait to be leased at `now` (pending: due or
  // not yet, or whose lease expired), for a host that cancelled them: they are never delivered,
  // and Depths and Find stop counting them at once. One status per id, in order: OK (removed),
  // NotFound (not in the queue), FailedPrecondition (under an unexpired lease, or dead-lettered:
  // left as it is; a leased call is the holder's to settle). Atomic as a batch: on an I/O error
  // nothing is removed, unless the error is marked IsCommitOutcomeUnknown (all may have been:
  // removing again answers NotFound for those, whose args_blob is then the caller's to
  // delete). The caller deletes a removed call's args_blob. InvalidArgument (nothing
  // removed): more than kMaxLeaseBatch ids, or an id twice. The default answers Unimplemented
  // (an adapter written before RemovePending existed); txfn's adapters implement it.
  [[nodiscard]] virtual absl::StatusOr<std::vector<absl::Status>> RemovePending(
      absl::Span<const CallId> ids, absl::Time now);

  // Deletes the dead letters of `ids` that were dead-lettered before `dead_before`, for good (a
  // host's retention of dead letters: the engine's dead_letter_retention; or an operator's
  // purge: InfiniteFuture). One status per id: OK (removed), NotFound (not in the queue),
  // FailedPrecondition (not a dead letter, or one dead-lettered at or after `dead_before`: left
  // as it is; a call redriven and dead-lettered again since it was listed is not taken for the
  // old one). Atomic as a batch, as RemovePending. The caller deletes a removed call's args_blob
  // (as ListDeadLetters showed it). InvalidArgument (nothing removed): more than kMaxLeaseBatch
  // ids, or an id twice. The default answers Unimplemented; txfn's adapters implement it.
  [[nodiscard]] virtual absl::StatusOr<std::vector<absl::Status>> RemoveDeadLetters(
      absl::Span<const CallId> ids, absl::Time dead_before);

  // Convenience wrappers over Settle for one lease (the batch outcome and the
  // item's status folded into one).
  [[nodiscard]] absl::Status Ack(const LeaseToken& lease, absl::Time now);
  [[nodiscard]] absl::Status Nack(const LeaseToken& lease, absl::Time now, absl::Time retry_at,
                                  std::string reason = {});
  [[nodiscard]] absl::Status DeadLetterCall(const LeaseToken& lease, absl::Time now,
                                            std::string reason);
};

// The shard of `id` among `shard_count` shards as every adapter in txfn
// computes it (a stable mix of the id's low half; callers may rely on it
// being a pure function). `shard_count` must be >= 1.
[[nodiscard]] int DefaultShardOf(const CallId& id, int shard_count);

// The checks of Enqueue / Lease / Settle / Extend / ListDeadLetters that need
// no stored state, for adapter authors: call them first, before changing
// anything.
[[nodiscard]] absl::Status ValidateEnqueueBatch(absl::Span<const Call> calls);
[[nodiscard]] absl::Status ValidateLeaseRequest(const LeaseRequest& request, int shard_count);
[[nodiscard]] absl::Status ValidateSettlements(absl::Span<const Settlement> settlements);
[[nodiscard]] absl::Status ValidateLeaseDuration(absl::Duration d);
[[nodiscard]] absl::Status ValidateListLimit(size_t limit);
// RemovePending's checks: at most kMaxLeaseBatch ids, none twice.
[[nodiscard]] absl::Status ValidateRemovePending(absl::Span<const CallId> ids);

// The start and deadline Redrive gives a dead letter put back at `now`, for adapter authors:
// unchanged if its deadline is at least its window (deadline - start_after) away, else that
// window from `now`.
void RedriveWindow(absl::Time now, absl::Time& start_after, absl::Time& deadline);

// Whether `call` passes `filter` (ListCalls), for adapter authors.
[[nodiscard]] bool MatchesListFilter(const QueuedCall& call,
                                     const DurableQueue::ListFilter& filter);
// The bytes an adapter that keeps ids as 16-byte blobs compares them with for
// `filter.before` (id blob < these): its id's bytes, or (no bound) 17 bytes of
// 0xff, above every id in a bytewise order. For adapter authors.
[[nodiscard]] std::string ListBeforeBytes(const DurableQueue::ListFilter& filter);

// TenantDepths' answer from calls counted by tenant (the map's keys; each value's `tenant` is
// ignored), for adapter authors.
[[nodiscard]] std::vector<TenantDepth> SortedTenantDepths(
    const std::map<std::string, TenantDepth>& depths);
// The same from counts of calls alone (bytes 0), as adapters written before
// TenantDepth::bytes count.
[[nodiscard]] std::vector<TenantDepth> SortedTenantDepths(
    const std::map<std::string, size_t>& calls);

// The message of the FailedPrecondition RemovePending answers for call `id`, which is in `state`
// (kLeased or kDead).
std::string NotPendingMessage(const CallId& id, QueuedCall::State state);
// The message of the FailedPrecondition RemoveDeadLetters answers for call `id`.
std::string NotADeadLetterBefore(const CallId& id, absl::Time dead_before);
// The reason texts adapters use when they dead-letter a call themselves.
std::string DeadlineReason(absl::Time deadline, absl::Time now);
std::string AttemptsReason(int attempts, std::string_view last_reason);
// The message of the FailedPrecondition Settle and Extend answer for a stale lease `t`: the call
// is now in `state`; `token` and `expires` are its current lease's (read when kLeased).
std::string StaleLeaseMessage(const LeaseToken& t, QueuedCall::State state, uint64_t token,
                              absl::Time expires);

}  // namespace txfn

#endif  // TXFN_DURABLE_QUEUE_H_

// txfn/submitter.h — the front door of the queue: validation, per-client rate
// limits, batching per shard, and spilling of large arguments.
//
// Submit() checks a call (InvalidArgument, nothing enqueued), charges its
// client's token bucket (ResourceExhausted carrying when to retry), assigns an
// id if it has none (derived from the idempotency key when there is one, so a
// resubmission is recognised as a duplicate: the queue keeps the id's first
// call, and a duplicate's spilled arguments are deleted, never written over the
// first's; a key names one call, so a duplicate is acknowledged with the first's
// id whatever function, arguments or options it carries, and they are not
// compared: Engine::Submit, which keeps its calls' records, refuses a key reused
// with other ones as AlreadyExists), spills arguments larger than the threshold into the BlobStore,
// and adds the call to its shard's batch. A
// batch is written with one DurableQueue::Enqueue when it has max_batch_calls
// calls (by the Submit that filled it) or when its first call has waited
// max_batch_delay (by Tick). Each caller's `done` runs once its batch is
// durable (or failed): a call is acknowledged only after it is on disk.
//
//   auto submitter = *txfn::Submitter::Create(&queue, &blobs, &clock, {});
//   absl::StatusOr<txfn::CallId> id = submitter->Submit(call,
//       [](absl::StatusOr<txfn::CallId> durable) { /* acknowledged */ });
//   if (!id.ok()) { /* refused at once; see RetryAfter(id.status()) */ }
//   ... a host thread: wait until submitter->Tick() returns, then call again.
//
// The submitter never sleeps and never reads time except through its Clock:
// a host drives Tick() from a thread (waiting until the time Tick returns), a
// simulator from its event loop. Flush() writes every batch at once.
//
// Rate limits come from a SubmitterConfig (default and per-client
// calls/second and burst), versioned: ApplyConfig keeps the last good one,
// and a config_source that fails (a controller that is gone) changes nothing.
// A client's bucket is kept only while it is below its burst: a full bucket is
// the same as a new one, so full buckets are dropped whenever the map has
// doubled (at least 1024). Memory is bounded by the clients that submitted
// within the time their bucket takes to refill, not by every client ever seen.
//
// Thread safety: every method may be called concurrently. `done` callbacks
// run on the thread that wrote the batch (a Submit, Tick or Flush caller),
// never under the submitter's lock; they may call Submit again.
#ifndef TXFN_SUBMITTER_H_
#define TXFN_SUBMITTER_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "txfn/blob_store.h"
#include "txfn/call.h"
#include "txfn/clock.h"
#include "txfn/durable_queue.h"
#include "txfn/internal/mutex.h"
#include "txfn/limiters.h"

namespace txfn {

// The payload type of a ResourceExhausted status that says when to retry;
// the payload is the time as decimal nanoseconds since the Unix epoch.
inline constexpr char kRetryAfterPayload[] = "type.txfn.dev/retry-after";
// The retry time a status carries, if any.
[[nodiscard]] std::optional<absl::Time> RetryAfter(const absl::Status& status);

struct ClientRateLimit {
  double calls_per_second = std::numeric_limits<double>::infinity();
  double burst = std::numeric_limits<double>::infinity();
};

// Versioned settings from a controller.
struct SubmitterConfig {
  uint64_t version = 0;
  ClientRateLimit default_limit;  // clients without an entry of their own
  absl::flat_hash_map<std::string, ClientRateLimit> clients;
};

struct SubmitterOptions {
  size_t max_batch_calls = 64;                             // 1 .. DurableQueue::kMaxEnqueueBatch
  absl::Duration max_batch_delay = absl::Milliseconds(5);  // >= 0
  // Arguments whose binary encoding is larger go to the BlobStore (when one
  // is given).
  size_t spill_threshold_bytes = 64 << 10;
  CallLimits limits;
  SubmitterConfig config;  // the initial config
  // Polled by Tick every config_poll_interval; an error or an invalid config
  // keeps the last good one. Empty: no controller.
  std::function<absl::StatusOr<SubmitterConfig>()> config_source;
  absl::Duration config_poll_interval = absl::Seconds(10);
  // Seeds the id generator (repeatable ids for a simulator); 0 = entropy.
  uint64_t id_seed = 0;
};

struct SubmitterStats {
  uint64_t accepted = 0;         // Submit returned OK
  uint64_t invalid = 0;          // InvalidArgument
  uint64_t rate_limited = 0;     // ResourceExhausted
  uint64_t spilled = 0;          // args written to the BlobStore
  uint64_t batches = 0;          // Enqueue calls made
  uint64_t enqueued = 0;         // calls new to the queue
  uint64_t duplicates = 0;       // calls the queue already had (idempotent resubmits)
  uint64_t failed = 0;           // calls whose batch failed
  uint64_t config_version = 0;   // of the config in force
  uint64_t config_failures = 0;  // config_source errors and invalid configs
  uint64_t rate_buckets = 0;     // gauge: clients whose token bucket is held (not full)
};

class Submitter {
 public:
  using Done = absl::AnyInvocable<void(absl::StatusOr<CallId>) &&>;

  // `queue` and `clock` are required; `blobs` may be null (nothing is
  // spilled). All three must outlive the submitter. InvalidArgument for a
  // null queue or clock or a bad option or initial config.
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<Submitter>> Create(DurableQueue* queue,
                                                                         BlobStore* blobs,
                                                                         const Clock* clock,
                                                                         SubmitterOptions options);
  // Writes the batches still pending (their callers are answered).
  ~Submitter();
  Submitter(const Submitter&) = delete;
  Submitter& operator=(const Submitter&) = delete;

  // Accepts `call` into a batch and returns its id; `done` (may be empty) runs
  // when the batch is durable or failed. Refusals (nothing enqueued, `done`
  // not run): InvalidArgument naming the field (ValidateCall);
  // ResourceExhausted when the client is over its rate (RetryAfter() says
  // when to retry; none at a rate of 0, which admits nothing more until the
  // rate is raised); Unavailable when spilling the arguments failed.
  [[nodiscard]] absl::StatusOr<CallId> Submit(Call call, Done done = nullptr);

  // Writes the batches that are full or whose first call waited
  // max_batch_delay, and polls the config source when due. Returns when Tick
  // should run next (InfiniteFuture if nothing is pending).
  absl::Time Tick();
  // Writes every pending batch now.
  void Flush();

  // Installs `config` if it is newer than the one in force and valid.
  // FailedPrecondition for an older or equal version, InvalidArgument for a
  // bad rate (the config in force is kept either way).
  [[nodiscard]] absl::Status ApplyConfig(const SubmitterConfig& config);

  [[nodiscard]] SubmitterStats stats() const;

 private:
  // One call waiting in a batch, with the callers waiting for it (several
  // when the same id was submitted again before the batch was written).
  struct Pending {
    Call call;
    std::vector<Done> dones;
  };
  struct Batch {
    int shard = 0;
    absl::Time first_added;
    std::vector<Pending> calls;
    absl::flat_hash_map<CallId, size_t> index;  // id -> position in calls
  };

  Submitter(DurableQueue* queue, BlobStore* blobs, const Clock* clock, SubmitterOptions options);
  // Takes the batches to write (full ones, due ones, or all) out of the map.
  std::vector<Batch> TakeBatches(absl::Time now, bool all) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Enqueues each batch and runs its callbacks. Called without the lock.
  void Write(std::vector<Batch> batches);
  // After an Enqueue that skipped some of `calls` (their ids were queued already): deletes
  // the spilled arguments of those the queue does not hold with them.
  void DeleteBlobsOfSkippedCalls(absl::Span<const Call> calls);
  TokenBucket& BucketFor(const std::string& client, absl::Time now)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Drops the buckets that are full at `now` (a new bucket would be the same).
  void DropFullBuckets(absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void MaybePollConfig(absl::Time now);

  DurableQueue* const queue_;
  BlobStore* const blobs_;
  const Clock* const clock_;
  const SubmitterOptions options_;

  mutable internal::Mutex mu_;
  CallIdGenerator ids_ ABSL_GUARDED_BY(mu_);
  SubmitterConfig config_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, TokenBucket> buckets_ ABSL_GUARDED_BY(mu_);
  size_t drop_full_buckets_at_ ABSL_GUARDED_BY(mu_);  // buckets_.size() that triggers it
  absl::flat_hash_map<int, Batch> batches_ ABSL_GUARDED_BY(mu_);  // by shard
  PeriodicTimer config_poll_ ABSL_GUARDED_BY(mu_);
  SubmitterStats stats_ ABSL_GUARDED_BY(mu_);
};

}  // namespace txfn

#endif  // TXFN_SUBMITTER_H_

// Submitter; see txfn/submitter.h.
#include "txfn/submitter.h"

#include <algorithm>
#include <cmath>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/cord.h"
#include "txfn/clock.h"
#include "txfn/internal/strings.h"
#include "txfn/status_macros.h"
#include "txfn/storage.h"

namespace txfn {
namespace {

using internal::StrCat;

// Full buckets are dropped when the map reaches twice its size after the last drop, and
// never below this many: amortised O(1) per new client, no work for a few clients.
constexpr size_t kMinBucketsToDrop = 1024;

absl::Status CheckLimit(std::string_view who, const ClientRateLimit& l) {
  if (std::isnan(l.calls_per_second) || l.calls_per_second < 0) {
    return absl::InvalidArgumentError(StrCat(
        "SubmitterConfig: ", who, ": calls_per_second must be >= 0, not ", l.calls_per_second));
  }
  if (std::isnan(l.burst) || l.burst < 1) {
    return absl::InvalidArgumentError(
        StrCat("SubmitterConfig: ", who, ": burst must be >= 1 call, not ", l.burst));
  }
  return absl::OkStatus();
}

absl::Status CheckConfig(const SubmitterConfig& c) {
  TXFN_RETURN_IF_ERROR(CheckLimit("default_limit", c.default_limit));
  for (const auto& [client, limit] : c.clients) {
    TXFN_RETURN_IF_ERROR(CheckLimit(StrCat("client '", client.substr(0, 64), "'"), limit));
  }
  return absl::OkStatus();
}

// A key of its own for each spill, not one per call id: a second Submit of an id (an
// idempotency key submitted again, maybe from another process) must not replace the
// arguments of the call the queue holds.
std::string BlobKey(const CallId& id, const CallId& spill) {
  return StrCat("args/", id.ToString(), "/", spill.ToString());
}

}  // namespace

std::optional<absl::Time> RetryAfter(const absl::Status& status) {
  auto payload = status.GetPayload(kRetryAfterPayload);
  if (!payload.has_value()) return std::nullopt;
  const std::string text(*payload);
  char* end = nullptr;
  const long long nanos = std::strtoll(text.c_str(), &end, 10);
  if (end == text.c_str() || *end != '\0') return std::nullopt;
  return absl::FromUnixNanos(nanos);
}

absl::StatusOr<std::unique_ptr<Submitter>> Submitter::Create(DurableQueue* queue, BlobStore* blobs,
                                                             const Clock* clock,
                                                             SubmitterOptions options) {
  if (queue == nullptr) return absl::InvalidArgumentError("Submitter: the queue is null");
  if (clock == nullptr) return absl::InvalidArgumentError("Submitter: the clock is null");
  if (options.max_batch_calls == 0 || options.max_batch_calls > DurableQueue::kMaxEnqueueBatch) {
    return absl::InvalidArgumentError(StrCat("SubmitterOptions.max_batch_calls is ",
                                             options.max_batch_calls, "; it must be in [1, ",
                                             DurableQueue::kMaxEnqueueBatch, "]"));
  }
  if (options.max_batch_delay < absl::ZeroDuration()) {
    return absl::InvalidArgumentError("SubmitterOptions.max_batch_delay is negative");
  }
  if (options.config_poll_interval <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("SubmitterOptions.config_poll_interval must be > 0");
  }
  TXFN_RETURN_IF_ERROR(CheckConfig(options.config));
  return std::unique_ptr<Submitter>(new Submitter(queue, blobs, clock, std::move(options)));
}

Submitter::Submitter(DurableQueue* queue, BlobStore* blobs, const Clock* clock,
                     SubmitterOptions options)
    : queue_(queue),
      blobs_(blobs),
      clock_(clock),
      options_(std::move(options)),
      ids_(options_.id_seed != 0 ? CallIdGenerator(options_.id_seed) : CallIdGenerator()),
      config_(options_.config),
      drop_full_buckets_at_(kMinBucketsToDrop),
      config_poll_(clock->Now(), options_.config_poll_interval) {
  stats_.config_version = config_.version;
}

Submitter::~Submitter() { Flush(); }

TokenBucket& Submitter::BucketFor(const std::string& client, absl::Time now) {
  auto it = buckets_.find(client);
  if (it != buckets_.end()) return it->second;
  if (buckets_.size() >= drop_full_buckets_at_) {
    DropFullBuckets(now);
    drop_full_buckets_at_ = std::max(kMinBucketsToDrop, 2 * buckets_.size());
  }
  auto limit = config_.clients.find(client);
  const ClientRateLimit& l = limit != config_.clients.end() ? limit->second : config_.default_limit;
  // The config was checked, so Create cannot fail.
  return buckets_.emplace(client, *TokenBucket::Create(l.calls_per_second, l.burst, now))
      .first->second;
}

void Submitter::DropFullBuckets(absl::Time now) {
  absl::erase_if(buckets_, [now](const auto& entry) {
    const TokenBucket& bucket = entry.second;
    return bucket.tokens(now) >= bucket.burst();
  });
}

absl::StatusOr<CallId> Submitter::Submit(Call call, Done done) {
  const absl::Time now = clock_->Now();
  MaybePollConfig(now);
  call.attempt = 0;
  // A call without an id is checked before it gets one: its error names no id it never had.
  const bool numbered = !call.id.IsNil();
  if (absl::Status s = numbered ? ValidateCall(call, options_.limits)
                                : ValidateCallExceptId(call, options_.limits);
      !s.ok()) {
    internal::MutexLock lock(&mu_);
    ++stats_.invalid;
    return s;
  }
  if (!numbered) {
    if (!call.idempotency_key.empty()) {
      call.id = CallId::FromKey(call.tenant, call.idempotency_key);
    } else {
      internal::MutexLock lock(&mu_);
      call.id = ids_.Next();
    }
  }
  {
    internal::MutexLock lock(&mu_);
    TokenBucket& bucket = BucketFor(call.client, now);
    if (!bucket.TryAcquire(now)) {
      ++stats_.rate_limited;
      const absl::Time retry = bucket.AvailableAt(now);
      if (retry == absl::InfiniteFuture()) {  // a rate of 0: no time to retry at
        return absl::ResourceExhaustedError(
            StrCat("client '", call.client, "' has spent its burst and its rate limit is ",
                   bucket.rate(), " calls/s: it can submit nothing more until it is raised"));
      }
      absl::Status s = absl::ResourceExhaustedError(
          StrCat("client '", call.client, "' is over its rate limit of ", bucket.rate(),
                 " calls/s; retry after ", absl::FormatDuration(retry - now), " (at ",
                 absl::FormatTime(retry, absl::UTCTimeZone()), ")"));
      s.SetPayload(kRetryAfterPayload, absl::Cord(std::to_string(absl::ToUnixNanos(retry))));
      return s;
    }
  }
  // Spill large arguments before the call can be enqueued, so a durable call
  // never points at a blob that is not there.
  bool spilled = false;
  if (blobs_ != nullptr && call.args_blob.empty() &&
      call.args.ByteSize() > options_.spill_threshold_bytes) {
    std::string key;
    {
      internal::MutexLock lock(&mu_);
      key = BlobKey(call.id, ids_.Next());
    }
    if (absl::Status s = blobs_->Put(key, EncodeBinary(call.args)); !s.ok()) {
      internal::MutexLock lock(&mu_);
      BucketFor(call.client, now).Refund();
      return absl::UnavailableError(
          StrCat("call ", call.id.ToString(), ": spilling its arguments failed: ", s.message()));
    }
    call.args = Value();
    call.args_blob = key;
    spilled = true;
  }

  const CallId id = call.id;
  std::vector<Batch> full;
  std::string unqueued_blob;
  {
    internal::MutexLock lock(&mu_);
    ++stats_.accepted;
    if (spilled) ++stats_.spilled;
    const int shard = queue_->ShardOf(id);
    auto [it, created] = batches_.try_emplace(shard);
    Batch& batch = it->second;
    if (created || batch.calls.empty()) {
      batch.shard = shard;
      batch.first_added = now;
    }
    auto [pos, fresh] = batch.index.try_emplace(id, batch.calls.size());
    if (fresh) {
      batch.calls.push_back(Pending{std::move(call), {}});
    } else if (spilled) {
      unqueued_blob = call.args_blob;  // the batch holds the id's first call, with its own
    }
    if (done) batch.calls[pos->second].dones.push_back(std::move(done));
    if (batch.calls.size() >= options_.max_batch_calls) {
      full.push_back(std::move(batch));
      batches_.erase(it);
    }
  }
  if (!unqueued_blob.empty()) (void)blobs_->Delete(unqueued_blob);
  Write(std::move(full));
  return id;
}

std::vector<Submitter::Batch> Submitter::TakeBatches(absl::Time now, bool all) {
  std::vector<Batch> out;
  for (auto it = batches_.begin(); it != batches_.end();) {
    const Batch& b = it->second;
    // A batch started "later" than now (the clock was set back) is due: it would wait out
    // the step.
    if (!b.calls.empty() &&
        (all || b.calls.size() >= options_.max_batch_calls || now < b.first_added ||
         now - b.first_added >= options_.max_batch_delay)) {
      out.push_back(std::move(it->second));
      batches_.erase(it++);
    } else {
      ++it;
    }
  }
  return out;
}

void Submitter::Write(std::vector<Batch> batches) {
  for (Batch& batch : batches) {
    std::vector<Call> calls;
    calls.reserve(batch.calls.size());
    for (Pending& p : batch.calls) calls.push_back(p.call);
    absl::StatusOr<size_t> added = queue_->Enqueue(calls);
    {
      internal::MutexLock lock(&mu_);
      ++stats_.batches;
      if (added.ok()) {
        stats_.enqueued += *added;
        stats_.duplicates += calls.size() - *added;
      } else {
        stats_.failed += calls.size();
      }
    }
    if (added.ok() && *added < calls.size()) DeleteBlobsOfSkippedCalls(calls);
    if (!added.ok() && !IsCommitOutcomeUnknown(added.status()) && blobs_ != nullptr) {
      // The calls are not queued: their spilled arguments would leak. (After an unknown
      // outcome they may be queued: a leaked blob beats a durable call without arguments.)
      for (const Call& c : calls) {
        if (!c.args_blob.empty()) (void)blobs_->Delete(c.args_blob);
      }
    }
    for (Pending& p : batch.calls) {
      for (Done& d : p.dones) {
        if (added.ok()) {
          std::move(d)(p.call.id);
        } else {
          std::move(d)(added.status());
        }
      }
    }
  }
}

void Submitter::DeleteBlobsOfSkippedCalls(absl::Span<const Call> calls) {
  if (blobs_ == nullptr) return;
  const absl::Time now = clock_->Now();
  for (const Call& c : calls) {
    if (c.args_blob.empty()) continue;
    absl::StatusOr<std::optional<QueuedCall>> held = queue_->Find(c.id, now);
    // Kept when unsure (a leaked blob beats a queued call without its arguments). Not held:
    // skipped, or queued and already ended (its blob deleted on ACK).
    if (!held.ok()) continue;
    if (!held->has_value() || (*held)->call.args_blob != c.args_blob) {
      (void)blobs_->Delete(c.args_blob);
    }
  }
}

absl::Time Submitter::Tick() {
  const absl::Time now = clock_->Now();
  MaybePollConfig(now);
  std::vector<Batch> due;
  absl::Time next = absl::InfiniteFuture();
  {
    internal::MutexLock lock(&mu_);
    due = TakeBatches(now, /*all=*/false);
    for (const auto& [shard, b] : batches_) {
      if (!b.calls.empty()) next = std::min(next, b.first_added + options_.max_batch_delay);
    }
    if (options_.config_source) next = std::min(next, config_poll_.NextRun(now));
  }
  Write(std::move(due));
  return next;
}

void Submitter::Flush() {
  std::vector<Batch> all;
  {
    internal::MutexLock lock(&mu_);
    all = TakeBatches(clock_->Now(), /*all=*/true);
  }
  Write(std::move(all));
}

absl::Status Submitter::ApplyConfig(const SubmitterConfig& config) {
  TXFN_RETURN_IF_ERROR(CheckConfig(config));
  const absl::Time now = clock_->Now();
  internal::MutexLock lock(&mu_);
  if (config.version <= config_.version) {
    return absl::FailedPreconditionError(StrCat("SubmitterConfig version ", config.version,
                                                " is not newer than version ", config_.version,
                                                " in force"));
  }
  config_ = config;
  stats_.config_version = config.version;
  for (auto& [client, bucket] : buckets_) {
    auto it = config_.clients.find(client);
    const ClientRateLimit& l = it != config_.clients.end() ? it->second : config_.default_limit;
    (void)bucket.SetRate(l.calls_per_second, now);
    (void)bucket.SetBurst(l.burst, now);
  }
  return absl::OkStatus();
}

void Submitter::MaybePollConfig(absl::Time now) {
  if (!options_.config_source) return;
  {
    internal::MutexLock lock(&mu_);
    if (!config_poll_.Due(now)) return;
  }
  absl::StatusOr<SubmitterConfig> fetched = options_.config_source();
  absl::Status s = fetched.ok() ? ApplyConfig(*fetched) : fetched.status();
  if (!s.ok() && s.code() != absl::StatusCode::kFailedPrecondition) {
    internal::MutexLock lock(&mu_);
    ++stats_.config_failures;  // the controller is gone or sent nonsense: keep the last config
  }
}

SubmitterStats Submitter::stats() const {
  internal::MutexLock lock(&mu_);
  SubmitterStats stats = stats_;
  stats.rate_buckets = buckets_.size();
  return stats;
}

}  // namespace txfn

// The call path (txfn/call_path.h): run, commit, retry in contention lanes,
// blocking and asynchronously.
#include "txfn/call_path.h"

#include <algorithm>
#include <atomic>
#include <optional>
#include <utility>

#include "absl/cleanup/cleanup.h"
#include "absl/functional/function_ref.h"
#include "absl/hash/hash.h"
#include "absl/random/random.h"
#include "absl/strings/escaping.h"
#include "absl/time/clock.h"
#include "lib/contention_lanes.h"
#include "lib/deadline_timer.h"
#include "txfn/errors.h"
#include "txfn/idempotency.h"
#include "txfn/internal/mutex.h"
#include "txfn/internal/strings.h"
#include "txfn/status_macros.h"

namespace txfn {

absl::Status CheckEnabled(const Snapshot& snapshot) {
  if (!snapshot.metadata().enabled()) {
    return absl::FailedPreconditionError(
        internal::StrCat("tenant '", snapshot.tenant(), "' is disabled"));
  }
  return absl::OkStatus();
}

absl::Status CheckEnabled(const OpenTenant& tenant, const Snapshot& snapshot) {
  if (tenant.committer().DeletedElsewhere()) {
    return TenantDeletedElsewhereError(
        internal::StrCat("tenant '", tenant.name(),
                         "' was deleted (by another process, or another engine on this storage)"));
  }
  return CheckEnabled(snapshot);
}

namespace {

// A mutation's retries so far (PlanRetry).
struct RetryBudget {
  int counted = 0;  // conflicts counted against max_attempts
  int free_entries = 0;
};
// A bound on a call's starts over before a run (StartChoice): each needs its key's lane to be
// predicted anew while it held none, or its completion record to be found at the start of a run
// and missed when it started over, so a call all but never needs more than one.
constexpr int kMaxRestartsBeforeRun = 3;
// Why a mutation's run was not begun and its call starts over instead
// (CallPath::State::LatestAtStart), or kNone. Set by the run's snapshot_at_start, which then
// answers the run with an error; this flag, not that error, says it: an executor may reword it.
enum class Restart : char { kNone, kIntoLane, kForRecord };
using RestartFlag = std::shared_ptr<std::atomic<Restart>>;
// What a mutation's run may do instead of beginning (CallPath::State::LatestAtStart), and
// where it says what it did.
struct StartChoice {
  bool may_restart = false;  // at most kMaxRestartsBeforeRun times per call
  bool holds_lane = false;
  uint64_t call_key = 0;  // the lanes' key: function and arguments
  RestartFlag restart = std::make_shared<std::atomic<Restart>>(Restart::kNone);
};
struct RetryPlan {
  bool retry = false;
  std::shared_ptr<internal::Lane> lane;  // the lane to retry in; null: as before
};

// An idempotency key as a CompletionRecord, stored with a digest of the call (its function
// and arguments): a key stands for one call, and a call with the key and another function or
// other arguments is refused, not answered with the first call's result as if it had run.
class KeyRecord final : public CompletionRecord {
 public:
  KeyRecord(std::string key, std::string_view function, const Value& args)
      : key_(std::move(key)), call_digest_(CallDigest(function, args)) {}
  absl::StatusOr<std::optional<IdempotentResult>> Find(const Snapshot& snapshot) const override {
    TXFN_ASSIGN_OR_RETURN(std::optional<IdempotentResult> found,
                          FindIdempotencyKey(snapshot, key_));
    if (found.has_value() && !found->call_digest.empty() && found->call_digest != call_digest_) {
      return absl::AlreadyExistsError(
          internal::StrCat("idempotency key ", QuotedKey(),
                           " was first used by a call of another function or "
                           "with other arguments (committed at ",
                           found->ts,
                           "): a key stands for one call; "
                           "nothing ran"));
    }
    return found;
  }
  absl::Status Add(const Value& result, PreparedCommit* commit) const override {
    return AddIdempotencyKey(key_, result, commit, call_digest_);
  }

 private:
  // The function by its canonical name, and the arguments (none = {}, as the runner takes
  // them): two self-delimiting encodings one after the other, without copying the arguments.
  static std::string CallDigest(std::string_view function, const Value& args) {
    std::string encoded = EncodeBinary(Value::String(CanonicalFunctionName(function)));
    encoded.append(EncodeBinary(args.is_null() ? Value::FromObject({}) : args));
    return ArgsDigestOfEncoding(encoded);
  }

  // At most 64 bytes of the key, escaped (it may be any bytes).
  std::string QuotedKey() const {
    constexpr size_t kShown = 64;
    std::string out = internal::StrCat(
        "'", internal::ToStd(absl::CHexEscape(internal::ToAbsl(key_.substr(0, kShown)))), "'");
    if (key_.size() > kShown) out.append(internal::StrCat("... (", key_.size(), " bytes)"));
    return out;
  }

  const std::string key_;
  const std::string call_digest_;
};

// The record `options` asks for (null: none), checked: an idempotency key stands for
// `function` with `args`.
absl::StatusOr<std::shared_ptr<const CompletionRecord>> RecordOf(const MutationOptions& options,
                                                                 std::string_view function,
                                                                 const Value& args) {
  if (options.idempotency_key.empty()) return options.completion;
  if (options.completion != nullptr) {
    return absl::InvalidArgumentError(
        "a mutation takes an idempotency key or a completion record, not both");
  }
  TXFN_RETURN_IF_ERROR(ValidateIdempotencyKey(options.idempotency_key));
  return std::make_shared<const KeyRecord>(options.idempotency_key, function, args);
}

// The calls a commit schedules (none for almost every commit: its writes are
// sorted, so a look at the last ones tells).
std::vector<ScheduledCall> ScheduledIn(const PreparedCommit& commit) {
  bool any = false;
  for (auto it = commit.writes.rbegin();
       it != commit.writes.rend() && it->index >= kCallOutboxIndex; ++it) {
    any = any || (it->index == kCallOutboxIndex && it->value.has_value());
  }
  if (!any) return {};
  absl::StatusOr<std::vector<ScheduledCall>> calls = ScheduledBy(commit);
  // Entries the runner wrote always decode; one that did not would stay in
  // the outbox, for the engine's recovery to report.
  return calls.ok() ? *std::move(calls) : std::vector<ScheduledCall>();
}

// The calls `commit` cancels: the kCancelled records it writes (ctx.scheduler.cancel). Only
// small records are decoded: a cancelled one holds no result, a call's own record may hold a
// big one.
std::vector<CallId> CancelledIn(const PreparedCommit& commit) {
  constexpr size_t kMaxCancelledRecordBytes = 1024;
  std::vector<CallId> out;
  for (auto it = commit.writes.rbegin();
       it != commit.writes.rend() && it->index >= kCallOutboxIndex; ++it) {
    if (it->index != kCallRecordIndex || !it->value.has_value() ||
        it->value->size() > kMaxCancelledRecordBytes) {
      continue;
    }
    absl::StatusOr<CallRecord> record = DecodeCallRecord(*it->value);
    if (!record.ok() || record->state != CallState::kCancelled) continue;
    absl::StatusOr<CallId> id = CallId::FromBytes(it->key);
    if (id.ok()) out.push_back(*id);
  }
  return out;
}

// What a committed mutation tells the host: the calls it scheduled and cancelled.
struct QueueEffects {
  std::vector<ScheduledCall> scheduled;
  std::vector<CallId> cancelled;
};

QueueEffects QueueEffectsOf(const CallPathOptions& options, const PreparedCommit& commit) {
  QueueEffects effects;
  if (options.on_scheduled || options.admit_scheduled) effects.scheduled = ScheduledIn(commit);
  if (options.on_cancelled) effects.cancelled = CancelledIn(commit);
  return effects;
}

// The admit_scheduled hook's answer for a run's effects.
absl::Status AdmitScheduled(const CallPathOptions& options, OpenTenant& tenant,
                            const QueueEffects& effects) {
  if (!options.admit_scheduled || effects.scheduled.empty()) return absl::OkStatus();
  return options.admit_scheduled(tenant, effects.scheduled);
}

void Announce(const CallPathOptions& options, OpenTenant& tenant, QueueEffects effects) {
  if (!options.on_scheduled) effects.scheduled.clear();
  if (!effects.scheduled.empty()) options.on_scheduled(tenant, std::move(effects.scheduled));
  if (!effects.cancelled.empty()) options.on_cancelled(tenant, std::move(effects.cancelled));
}

// A keyed mutation's result is kept with its key (for the key's retention, a day by default)
// in the same commit: it counts in the bytes the commit writes. (A hunt kept 15 MiB results
// beside 16 MiB of writes a call, and grew a database by 41 MB/s.)
absl::Status CheckKeptResultFits(std::string_view function, size_t max_bytes_written,
                                 const RunResult& run) {
  const uint64_t result_bytes = run.value.ByteSize();
  uint64_t bytes = result_bytes;
  for (const IndexWrite& w : run.commit.writes) bytes += w.value.has_value() ? w.value->size() : 0;
  if (bytes <= max_bytes_written) return absl::OkStatus();
  return WithLimit(absl::ResourceExhaustedError(internal::StrCat(
                       "mutation ", function, ": its result (", result_bytes,
                       " bytes), kept with its idempotency key, and its writes pass the limit of ",
                       max_bytes_written, " bytes written per transaction")),
                   Limit::kBytesWritten);
}

CallResult Replayed(const IdempotentResult& first, int attempts) {
  return CallResult{.value = first.value, .ts = first.ts, .attempts = attempts, .replayed = true};
}

CallResult ToCallResult(RunResult r, Timestamp ts, int attempts) {
  return CallResult{.value = std::move(r.value),
                    .ts = ts,
                    .attempts = attempts,
                    .logs = std::move(r.logs),
                    .stats = r.stats};
}

// The CallPath state whose async `done` callback this thread is running, if
// any. Thread-local by necessity: it describes the thread, not the object.
thread_local const void* running_done_of = nullptr;

// Marks the thread as running `done` of `path` for the scope's life.
class RunningDone {
 public:
  explicit RunningDone(const void* path) : saved_(std::exchange(running_done_of, path)) {}
  ~RunningDone() { running_done_of = saved_; }
  RunningDone(const RunningDone&) = delete;
  RunningDone& operator=(const RunningDone&) = delete;

 private:
  const void* const saved_;
};

}  // namespace

struct CallPath::State {
  State(FunctionExecutor& runner, IsolateScheduler& scheduler, CallPathOptions options)
      : runner(runner), scheduler(scheduler), options(std::move(options)) {}

  ~State() {
    // Wait for async calls still in flight (they hold `this`).
    internal::MutexLock lock(&async_mu);
    async_cv.Wait([&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(async_mu) { return async_calls == 0; });
  }

  struct AsyncMutation {
    std::shared_ptr<OpenTenant> tenant;
    RunRequest request;
    std::shared_ptr<const CompletionRecord> record;  // null: none
    Callback done;
    uint64_t call_key = 0;  // the contention lanes' key: function and arguments
    int attempt = 0;
    RetryBudget budget;
    bool serialised = false;
    int restarts = 0;  // started over as its run was about to begin
    // The lane whose turn this call holds (or is queued for, until its
    // callback runs); set by EnterLaneThenSubmit, released by Complete.
    std::shared_ptr<internal::Lane> lane;
    std::shared_ptr<internal::Lane> next_lane;  // PlanRetry's, for the retry
  };

  // A blocking call from `done` of an async one waits for a txfn thread (a
  // worker, the committer) that may be the very thread waiting: refused.
  absl::Status CheckNotInDone(std::string_view form, std::string_view function) const {
    if (running_done_of != this) return absl::OkStatus();
    return absl::FailedPreconditionError(internal::StrCat(
        "the blocking ", form, " of ", function,
        " was called from the callback of an async call of the same engine, on a txfn thread: "
        "it could wait for that thread (a deadlock); call ",
        form, "Async from the callback instead"));
  }

  absl::StatusOr<CallResult> Query(OpenTenant& tenant, std::string_view function, const Value& args,
                                   const QueryOptions& options) {
    TXFN_RETURN_IF_ERROR(CheckNotInDone("Query", function));
    // Never stale: every commit acknowledged before the query began, another process's too.
    TXFN_ASSIGN_OR_RETURN(std::shared_ptr<const Snapshot> snapshot, tenant.committer().Newest());
    TXFN_RETURN_IF_ERROR(CheckEnabled(tenant, *snapshot));
    const Timestamp ts = snapshot->ts();
    RunResult r =
        runner.Run(std::move(snapshot),
                   MakeRequest(tenant, function, args, FunctionKind::kQuery, options.deadline));
    if (!r.status.ok()) return std::move(r.status);
    queries.fetch_add(1, std::memory_order_relaxed);
    return ToCallResult(std::move(r), ts, 1);
  }

  absl::StatusOr<CallResult> Mutation(OpenTenant& tenant, std::string_view function,
                                      const Value& args, const MutationOptions& options) {
    TXFN_RETURN_IF_ERROR(CheckNotInDone("Mutation", function));
    TXFN_ASSIGN_OR_RETURN(std::shared_ptr<const CompletionRecord> record,
                          RecordOf(options, function, args));
    RunResult last_run;
    std::optional<IdempotentResult> replay;
    QueueEffects effects;
    // An unknown commit outcome is Unavailable: RetryInLanes returns it as it
    // is, never runs the mutation again.
    const uint64_t call_key = absl::HashOf(function, args);
    absl::StatusOr<CommitOutcome> outcome = RetryInLanes(
        tenant, call_key, function, options.deadline,
        [&](int attempt, const StartChoice& choice) -> AttemptResult {
          TXFN_RETURN_IF_ERROR(CheckDeadline(function, options.deadline, attempt));
          CommitIntent intent = AnnounceFirstAttempt(tenant.committer(), attempt);
          std::shared_ptr<const Snapshot> snapshot = tenant.Latest();
          TXFN_RETURN_IF_ERROR(CheckEnabled(tenant, *snapshot));
          if (record != nullptr) {
            TXFN_ASSIGN_OR_RETURN(replay, record->Find(*snapshot));
            if (replay.has_value()) return AttemptResult::Commit(replay->ts);
          }
          RunRequest request = MakeMutationRequest(tenant, function, args, options.deadline);
          request.snapshot_at_start = LatestAtStart(tenant, record, snapshot, choice);
          const size_t max_bytes_written = request.limits.max_bytes_written;
          RunResult run = runner.Run(std::move(snapshot), std::move(request));
          // Started over (RetryInLanes reads the flag): the last run's logs are kept.
          if (!run.status.ok() && choice.restart->load() != Restart::kNone) return run.status;
          last_run = std::move(run);
          TXFN_RETURN_IF_ERROR(last_run.status);
          if (record != nullptr) {
            TXFN_RETURN_IF_ERROR(CheckKeptResultFits(function, max_bytes_written, last_run));
            TXFN_RETURN_IF_ERROR(record->Add(last_run.value, &last_run.commit));
          }
          effects = QueueEffectsOf(this->options, last_run.commit);
          TXFN_RETURN_IF_ERROR(AdmitScheduled(this->options, tenant, effects));
          return AttemptResult::Commit(
              tenant.Commit(std::move(last_run.commit), std::move(intent)));
        });
    if (outcome.ok() && !replay.has_value()) Announce(this->options, tenant, std::move(effects));
    // A call that failed at its commit (a conflict past the retries, an
    // unknown outcome) returns the console output of its last run too.
    if (!outcome.ok()) return WithLogs(outcome.status(), last_run.logs);
    if (replay.has_value()) {
      replayed.fetch_add(1, std::memory_order_relaxed);
      return Replayed(*replay, outcome->attempts);
    }
    mutations.fetch_add(1, std::memory_order_relaxed);
    return ToCallResult(std::move(last_run), outcome->commit_ts, outcome->attempts);
  }

  absl::Status QueryAsync(std::shared_ptr<OpenTenant> tenant, std::string_view function,
                          const Value& args, const QueryOptions& options, Callback done) {
    TXFN_ASSIGN_OR_RETURN(std::shared_ptr<const Snapshot> snapshot, tenant->committer().Newest());
    TXFN_RETURN_IF_ERROR(CheckEnabled(*tenant, *snapshot));
    const Timestamp ts = snapshot->ts();
    // Made before the call: its callback's capture moves `tenant` away.
    RunRequest request =
        MakeRequest(*tenant, function, args, FunctionKind::kQuery, options.deadline);
    BeginAsync();
    absl::Status s = runner.RunAsync(
        std::move(snapshot), std::move(request),
        [this, ts, tenant = std::move(tenant), done = std::move(done)](RunResult r) mutable {
          RunningDone running(this);
          if (r.status.ok()) {
            queries.fetch_add(1, std::memory_order_relaxed);
            done(ToCallResult(std::move(r), ts, 1));
          } else {
            done(std::move(r.status));
          }
          tenant.reset();  // before EndAsync: the registry may go once nothing is in flight
          EndAsync();
        });
    if (!s.ok()) EndAsync();
    return s;
  }

  absl::Status MutationAsync(std::shared_ptr<OpenTenant> tenant, std::string_view function,
                             const Value& args, const MutationOptions& options, Callback done) {
    TXFN_ASSIGN_OR_RETURN(std::shared_ptr<const CompletionRecord> record,
                          RecordOf(options, function, args));
    RunRequest request = MakeMutationRequest(*tenant, function, args, options.deadline);
    auto call =
        std::make_shared<AsyncMutation>(AsyncMutation{.tenant = std::move(tenant),
                                                      .request = std::move(request),
                                                      .record = std::move(record),
                                                      .done = std::move(done),
                                                      .call_key = absl::HashOf(function, args)});
    TXFN_RETURN_IF_ERROR(CheckEnabled(*call->tenant, *call->tenant->Latest()));
    BeginAsync();
    std::shared_ptr<internal::Lane> predicted = PredictedLane(*call->tenant, call->call_key);
    absl::Status s = predicted != nullptr ? EnterLaneThenSubmit(call, std::move(predicted))
                                          : SubmitMutation(call);
    if (!s.ok()) {
      LeaveLane(*call);
      EndAsync();
    }
    return s;
  }

  CallPathStats Stats() const {
    return CallPathStats{.queries = queries.load(std::memory_order_relaxed),
                         .mutations = mutations.load(std::memory_order_relaxed),
                         .replayed = replayed.load(std::memory_order_relaxed),
                         .conflicts = conflicts.load(std::memory_order_relaxed),
                         .retries = retries.load(std::memory_order_relaxed),
                         .serialised = serialised.load(std::memory_order_relaxed)};
  }

  // How a mutation retries after a conflict, blocking or not: a call that
  // conflicted on a read range retries in that range's lane
  // (lib/contention_lanes.h), one at a time with the others that lost on it
  // and without backoff (waiting for the lane is the backoff); a call whose
  // key conflicted recently starts in its lane. The first kFreeLaneEntries
  // entries into a lane are not counted against mutation_retry.max_attempts;
  // conflicts inside a lane (with calls not in it) and conflicts that name no
  // range are (the blocking form backs off before the latter, as
  // RetryCommits does).
  static constexpr int kFreeLaneEntries = 4;
  std::shared_ptr<internal::Lane> PredictedLane(OpenTenant& tenant, uint64_t call_key) {
    return options.contention_lanes ? tenant.lanes().Predicted(call_key, absl::Now()) : nullptr;
  }
  // Counts a retryable commit failure and plans the retry.
  RetryPlan PlanRetry(OpenTenant& tenant, uint64_t call_key, const absl::Status& conflict,
                      const internal::Lane* held, RetryBudget& budget) {
    const int max_attempts = std::max(1, options.mutation_retry.max_attempts);
    std::optional<ReadRange> read = ConflictingRead(conflict);
    RetryPlan plan;
    if (options.contention_lanes && read.has_value()) {
      plan.lane = tenant.lanes().OnConflict(call_key, *read, absl::Now());
    }
    // (max_attempts 1 asks for no retry at all: no free entry either.)
    const bool free_entry = plan.lane != nullptr && plan.lane.get() != held &&
                            budget.free_entries < kFreeLaneEntries && max_attempts > 1;
    if (free_entry) {
      ++budget.free_entries;
    } else {
      ++budget.counted;
    }
    plan.retry = budget.counted < max_attempts;
    conflicts.fetch_add(1, std::memory_order_relaxed);
    if (plan.retry) retries.fetch_add(1, std::memory_order_relaxed);
    return plan;
  }

  // RetryCommits (txfn/retry.h) with contention lanes (PlanRetry).
  // `deadline`: no backoff sleeps past it (the attempt checks it).
  absl::StatusOr<CommitOutcome> RetryInLanes(
      OpenTenant& tenant, uint64_t call_key, std::string_view what, absl::Time deadline,
      absl::FunctionRef<AttemptResult(int attempt, const StartChoice& choice)> attempt) {
    // A lane's turn is waited for until the deadline only: past it the call would not run,
    // and its caller's thread (a server's) would be held behind the hot document's backlog.
    internal::LaneSlot slot;
    if (!slot.Enter(PredictedLane(tenant, call_key), deadline)) return PastDeadlineInLane(what, 1);
    bool was_serialised = slot.held() != nullptr;
    absl::Cleanup count_serialised = [&] {
      if (was_serialised) serialised.fetch_add(1, std::memory_order_relaxed);
    };
    JitteredBackoff backoff(options.mutation_retry);
    RetryBudget budget;
    int restarts = 0;
    for (int n = 1;; ++n) {
      const StartChoice choice{.may_restart = restarts < kMaxRestartsBeforeRun,
                               .holds_lane = slot.held() != nullptr,
                               .call_key = call_key};
      const AttemptResult result = attempt(n, choice);
      if (!result.reached_commit()) {  // failed before its commit
        const Restart why = choice.restart->load();
        if (why == Restart::kNone) return result.result().status();
        // Not run, so no attempt: again, in its key's lane if that is why.
        ++restarts;
        --n;
        if (why == Restart::kIntoLane && slot.held() == nullptr) {
          if (!slot.Enter(PredictedLane(tenant, call_key), deadline)) {
            return PastDeadlineInLane(what, n + 1);
          }
          was_serialised = was_serialised || slot.held() != nullptr;
        }
        continue;
      }
      if (result.result().ok()) return CommitOutcome{.commit_ts = *result.result(), .attempts = n};
      const absl::Status last = result.result().status();
      if (!IsRetryableCommitError(last)) return last;
      RetryPlan plan = PlanRetry(tenant, call_key, last, slot.held(), budget);
      if (!plan.retry) return RetriesExhausted(what, n, last);
      if (plan.lane != nullptr) {
        if (!slot.Enter(std::move(plan.lane), deadline)) return PastDeadlineInLane(what, n + 1);
        was_serialised = true;
      } else if (slot.held() == nullptr) {
        backoff.Sleep(deadline);  // the next attempt fails at once past it
      }
    }
  }

  // Its code sees the committers' clock now (Date.now(), _creationTime): a run begun after
  // an idle spell sees the time it began, not the tenant's last commit.
  RunRequest MakeRequest(OpenTenant& tenant, std::string_view function, const Value& args,
                         FunctionKind kind, absl::Time deadline) {
    uint64_t seed;
    {
      internal::MutexLock lock(&rng_mu);
      seed = absl::Uniform<uint64_t>(rng);
    }
    return RunRequest{.function = std::string(function),
                      .args = args,
                      .kind = kind,
                      .seed = seed,
                      .now = tenant.committer().Now(),
                      .deadline = deadline};
  }

  // A mutation's request checks its ctx.scheduler calls as they are made.
  // The tenant and this State outlive every check (the caller holds the tenant
  // until it is answered; ~State waits for async calls; a run abandoned at its
  // limit, whose caller is answered while it goes on, checks nothing more:
  // FunctionRunner closes check_scheduled first), so two pointers are captured.
  RunRequest MakeMutationRequest(OpenTenant& tenant, std::string_view function, const Value& args,
                                 absl::Time deadline) {
    RunRequest request = MakeRequest(tenant, function, args, FunctionKind::kMutation, deadline);
    if (options.check_scheduled) {
      request.check_scheduled = [check = &options.check_scheduled, tenant = &tenant](
                                    std::string_view scheduled, const Value& scheduled_args) {
        return (*check)(*tenant, scheduled, scheduled_args);
      };
    }
    return request;
  }

  // A mutation's RunRequest::snapshot_at_start: the tenant's latest snapshot as the run
  // begins, not `queued`, the one it had when it was queued (behind a hot document's other
  // calls that one is bound to conflict). The caller holds `tenant` until the run answers, and
  // FunctionRunner answers no run before this returns (not even one it abandons).
  // Instead of beginning, a call may start over, unrun (saying why in choice.restart; a few
  // times at most):
  // - when its key has a lane prediction by then and it holds no lane (a call with its
  //   function and arguments conflicted since it was queued): it waits for its turn in that
  //   lane, as it would have had it arrived then;
  // - when its completion record's key is there now: it answers with the first call's result.
  // The record is looked up at the new snapshot because the commit's validation of the key
  // starts at the snapshot the run read: a key committed since `queued` would be missed. Past
  // the bound on restarts, a call whose key is there keeps `queued` (its commit conflicts on
  // the key, and the retry answers with the first call's result; a run that throws answers
  // its error).
  std::function<absl::StatusOr<std::shared_ptr<const Snapshot>>()> LatestAtStart(
      OpenTenant& tenant, std::shared_ptr<const CompletionRecord> record,
      std::shared_ptr<const Snapshot> queued, StartChoice choice) {
    return [this, tenant = &tenant, record = std::move(record), queued = std::move(queued),
            choice = std::move(choice)]() -> absl::StatusOr<std::shared_ptr<const Snapshot>> {
      auto start_over = [&](Restart why) {
        choice.restart->store(why);
        return absl::AbortedError("the mutation's call starts over before it runs");
      };
      std::shared_ptr<const Snapshot> latest = tenant->Latest();
      TXFN_RETURN_IF_ERROR(CheckEnabled(*tenant, *latest));
      if (record != nullptr && latest != queued) {
        TXFN_ASSIGN_OR_RETURN(std::optional<IdempotentResult> replay, record->Find(*latest));
        if (replay.has_value()) {
          if (choice.may_restart) return start_over(Restart::kForRecord);
          return queued;
        }
      }
      if (choice.may_restart && !choice.holds_lane &&
          PredictedLane(*tenant, choice.call_key) != nullptr) {
        return start_over(Restart::kIntoLane);
      }
      return latest;
    };
  }

  // No run of a mutation starts past its deadline (a retry after a conflict included).
  static absl::Status CheckDeadline(std::string_view function, absl::Time deadline, int attempt) {
    if (deadline == absl::InfiniteFuture() || absl::Now() < deadline) return absl::OkStatus();
    return PastDeadline(function, attempt, "");
  }
  // `attempt` is the run that would have come next.
  static absl::Status PastDeadline(std::string_view function, int attempt, std::string_view where) {
    return absl::DeadlineExceededError(internal::StrCat(
        "mutation ", function, " passed its deadline", where,
        attempt > 1 ? internal::StrCat(" after ", attempt - 1, " conflicting runs") : ""));
  }
  static absl::Status PastDeadlineInLane(std::string_view function, int attempt) {
    return PastDeadline(
        function, attempt,
        " waiting for its turn behind other calls on the documents it contends for");
  }

  absl::Status SubmitMutation(const std::shared_ptr<AsyncMutation>& call) {
    ++call->attempt;
    TXFN_RETURN_IF_ERROR(
        CheckDeadline(call->request.function, call->request.deadline, call->attempt));
    std::shared_ptr<const Snapshot> snapshot = call->tenant->Latest();
    if (absl::Status s = CheckEnabled(*call->tenant, *snapshot); !s.ok()) return s;
    if (call->record != nullptr) {
      TXFN_ASSIGN_OR_RETURN(std::optional<IdempotentResult> replay, call->record->Find(*snapshot));
      if (replay.has_value()) {
        // Answered without running; `done` still runs on a txfn thread.
        return scheduler.Submit(call->tenant->name(),
                                [this, call, replay = *std::move(replay)](IsolateLease&) {
                                  replayed.fetch_add(1, std::memory_order_relaxed);
                                  Complete(*call, Replayed(replay, call->attempt));
                                });
      }
    }
    call->request.now = call->tenant->committer().Now();  // each attempt's own (MakeRequest)
    const StartChoice choice{.may_restart = call->restarts < kMaxRestartsBeforeRun,
                             .holds_lane = call->lane != nullptr,
                             .call_key = call->call_key};
    call->request.snapshot_at_start = LatestAtStart(*call->tenant, call->record, snapshot, choice);
    return runner.RunAsync(
        std::move(snapshot), call->request, [this, call, restart = choice.restart](RunResult r) {
          if (Restart why = restart->load(); why != Restart::kNone) {
            absl::Status s = RestartAsync(call, why);
            if (!s.ok()) Complete(*call, s);
            return;
          }
          std::optional<absl::StatusOr<CallResult>> out = FinishMutation(*call, std::move(r));
          if (!out.has_value()) {  // a conflict: run again on a newer snapshot
            absl::Status s = RetryAsync(call);
            if (s.ok()) return;  // the next attempt owns the call now
            out = s;
          }
          Complete(*call, *std::move(out));
        });
  }

  // A call whose run was not begun (LatestAtStart) starts over as the same attempt: in its
  // key's lane if that is why (and it holds none).
  absl::Status RestartAsync(const std::shared_ptr<AsyncMutation>& call, Restart why) {
    ++call->restarts;
    --call->attempt;
    std::shared_ptr<internal::Lane> lane;
    if (why == Restart::kIntoLane && call->lane == nullptr) {
      lane = PredictedLane(*call->tenant, call->call_key);
    }
    return lane != nullptr ? EnterLaneThenSubmit(call, std::move(lane)) : SubmitMutation(call);
  }

  // The next attempt of a call that conflicted: in the lane PlanRetry chose
  // (waiting for its turn without blocking this thread), or at once.
  absl::Status RetryAsync(const std::shared_ptr<AsyncMutation>& call) {
    std::shared_ptr<internal::Lane> lane = std::move(call->next_lane);
    if (lane == nullptr || lane == call->lane) return SubmitMutation(call);
    LeaveLane(*call);
    return EnterLaneThenSubmit(call, std::move(lane));
  }

  // Submits the call's next attempt once it holds `lane`'s turn: now if the
  // lane is free, else from the thread that hands the turn over. A call with
  // a deadline still waiting then leaves the lane and is answered
  // DeadlineExceeded (on the timer's thread), as a blocking call is.
  absl::Status EnterLaneThenSubmit(const std::shared_ptr<AsyncMutation>& call,
                                   std::shared_ptr<internal::Lane> lane) {
    if (!call->serialised) {
      call->serialised = true;
      serialised.fetch_add(1, std::memory_order_relaxed);
    }
    call->lane = lane;
    const absl::Time deadline = call->request.deadline;
    const int attempt = call->attempt + 1;  // the one it waits to make
    // The timer's entry, cancelled when the turn comes first (it would stay until the deadline).
    struct DeadlineEntry {
      internal::Mutex mu;
      std::optional<internal::DeadlineTimer::Handle> handle ABSL_GUARDED_BY(mu);
      bool turn_came ABSL_GUARDED_BY(mu) = false;
    };
    auto entry = std::make_shared<DeadlineEntry>();
    uint64_t ticket = 0;
    // Once queued, the call may end on another thread, and with it the last async call that
    // keeps `this` (~State): counted as one more until the timer's entry is made.
    const bool timed = deadline != absl::InfiniteFuture();
    if (timed) BeginAsync();
    absl::Cleanup end_timed = [&] {
      if (timed) EndAsync();
    };
    // Once queued, the callback may run on another thread at any moment:
    // nothing below touches `call` unless the turn was taken here.
    const bool now = lane->AcquireOrQueue(
        [this, call, entry] {
          std::optional<internal::DeadlineTimer::Handle> handle;
          {
            internal::MutexLock lock(&entry->mu);
            entry->turn_came = true;
            handle = entry->handle;
          }
          if (handle.has_value()) lane_deadlines.Cancel(*handle);
          absl::Status s = SubmitMutation(call);
          if (!s.ok()) Complete(*call, s);
        },
        &ticket);
    if (now) return SubmitMutation(call);
    if (!timed) return absl::OkStatus();
    const internal::DeadlineTimer::Handle handle = lane_deadlines.Schedule(
        deadline,
        [this, weak_call = std::weak_ptr(call), weak_lane = std::weak_ptr(lane), ticket, attempt] {
          std::shared_ptr<AsyncMutation> call = weak_call.lock();
          std::shared_ptr<internal::Lane> lane = weak_lane.lock();
          // Gone, or its turn came (it then finds its deadline passed, or runs in time).
          if (call == nullptr || lane == nullptr || !lane->Withdraw(ticket)) return;
          call->lane.reset();  // it holds no turn to hand on
          Complete(*call, PastDeadlineInLane(call->request.function, attempt));
        });
    bool turn_came;
    {
      internal::MutexLock lock(&entry->mu);
      turn_came = entry->turn_came;
      if (!turn_came) entry->handle = handle;
    }
    if (turn_came) lane_deadlines.Cancel(handle);
    return absl::OkStatus();
  }

  // Ends an async call: its lane turn goes to the next waiter, then `done`.
  void Complete(AsyncMutation& call, absl::StatusOr<CallResult> result) {
    LeaveLane(call);
    {
      RunningDone running(this);
      call.done(std::move(result));
    }
    call.tenant.reset();  // before EndAsync: the registry may go once nothing is in flight
    EndAsync();
  }
  static void LeaveLane(AsyncMutation& call) {
    if (call.lane == nullptr) return;
    call.lane->Release();
    call.lane.reset();
  }

  // Commits a finished run; nullopt asks for another attempt.
  std::optional<absl::StatusOr<CallResult>> FinishMutation(AsyncMutation& call, RunResult r) {
    if (!r.status.ok()) return absl::StatusOr<CallResult>(std::move(r.status));
    if (call.record != nullptr) {
      if (absl::Status fits =
              CheckKeptResultFits(call.request.function, call.request.limits.max_bytes_written, r);
          !fits.ok()) {
        return absl::StatusOr<CallResult>(WithLogs(fits, r.logs));
      }
      absl::Status keyed = call.record->Add(r.value, &r.commit);
      if (!keyed.ok()) return absl::StatusOr<CallResult>(keyed);
    }
    // On a scheduler worker: never hold the batch open (the commits it would
    // wait for may need this very worker to run their functions), and do not
    // announce (async attempts are not waited for).
    QueueEffects effects = QueueEffectsOf(options, r.commit);
    if (absl::Status admitted = AdmitScheduled(options, *call.tenant, effects); !admitted.ok()) {
      return absl::StatusOr<CallResult>(WithLogs(admitted, r.logs));
    }
    absl::StatusOr<Timestamp> ts =
        call.tenant->Commit(std::move(r.commit), CommitIntent(), BatchHold::kNever);
    if (ts.ok()) {
      Announce(options, *call.tenant, std::move(effects));
      mutations.fetch_add(1, std::memory_order_relaxed);
      return ToCallResult(std::move(r), *ts, call.attempt);
    }
    if (!IsRetryableCommitError(ts.status())) {
      return absl::StatusOr<CallResult>(WithLogs(ts.status(), r.logs));
    }
    RetryPlan plan =
        PlanRetry(*call.tenant, call.call_key, ts.status(), call.lane.get(), call.budget);
    if (!plan.retry) {
      return absl::StatusOr<CallResult>(
          WithLogs(RetriesExhausted(call.request.function, call.attempt, ts.status()), r.logs));
    }
    call.next_lane = std::move(plan.lane);
    return std::nullopt;
  }

  void BeginAsync() {
    internal::MutexLock lock(&async_mu);
    ++async_calls;
  }
  void EndAsync() {
    internal::MutexLock lock(&async_mu);
    if (--async_calls == 0) async_cv.SignalAll();
  }

  FunctionExecutor& runner;
  IsolateScheduler& scheduler;
  const CallPathOptions options;

  internal::Mutex rng_mu;
  absl::BitGen rng ABSL_GUARDED_BY(rng_mu);

  internal::Mutex async_mu;
  internal::CondVar async_cv{&async_mu};
  int64_t async_calls ABSL_GUARDED_BY(async_mu) = 0;

  std::atomic<uint64_t> queries{0};
  std::atomic<uint64_t> mutations{0};
  std::atomic<uint64_t> replayed{0};
  std::atomic<uint64_t> conflicts{0};
  std::atomic<uint64_t> retries{0};
  std::atomic<uint64_t> serialised{0};

  // Answers async calls still waiting in a lane at their deadlines. Last: destroyed first,
  // once the calls ended (~State), waiting for a callback finishing on its thread.
  internal::DeadlineTimer lane_deadlines;
};

CallPath::CallPath(FunctionExecutor& runner, IsolateScheduler& scheduler, CallPathOptions options)
    : state_(std::make_unique<State>(runner, scheduler, std::move(options))) {}
CallPath::~CallPath() = default;

absl::StatusOr<CallResult> CallPath::Query(OpenTenant& tenant, std::string_view function,
                                           const Value& args, const QueryOptions& options) {
  return state_->Query(tenant, function, args, options);
}
absl::StatusOr<CallResult> CallPath::Mutation(OpenTenant& tenant, std::string_view function,
                                              const Value& args, const MutationOptions& options) {
  return state_->Mutation(tenant, function, args, options);
}
absl::Status CallPath::QueryAsync(std::shared_ptr<OpenTenant> tenant, std::string_view function,
                                  const Value& args, const QueryOptions& options, Callback done) {
  return state_->QueryAsync(std::move(tenant), function, args, options, std::move(done));
}
absl::Status CallPath::MutationAsync(std::shared_ptr<OpenTenant> tenant, std::string_view function,
                                     const Value& args, const MutationOptions& options,
                                     Callback done) {
  return state_->MutationAsync(std::move(tenant), function, args, options, std::move(done));
}
CallPathStats CallPath::stats() const { return state_->Stats(); }

}  // namespace txfn

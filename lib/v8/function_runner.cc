#include "txfn/function_runner.h"

#include <atomic>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "absl/strings/cord.h"
#include "absl/types/optional.h"
#include "lib/v8/js_errors.h"
#include "lib/v8/runner_core.h"
#include "txfn/internal/mutex.h"
#include "txfn/internal/status_macros.h"
#include "txfn/internal/strings.h"

namespace txfn {

std::string_view FunctionKindName(FunctionKind kind) {
  switch (kind) {
    case FunctionKind::kQuery:
      return "query";
    case FunctionKind::kMutation:
      return "mutation";
    case FunctionKind::kAction:
      return "action";
  }
  return "unknown";
}

std::string FunctionKindWithArticle(FunctionKind kind) {
  return internal::StrCat(kind == FunctionKind::kAction ? "an " : "a ", FunctionKindName(kind));
}

std::string CanonicalFunctionName(std::string_view function) {
  const size_t colon = function.rfind(':');
  std::string_view module = colon == std::string_view::npos ? function : function.substr(0, colon);
  std::string_view name = colon == std::string_view::npos ? "default" : function.substr(colon + 1);
  while (module.starts_with("./")) module.remove_prefix(2);  // as the module loader resolves it
  if (module.size() > 3 && module.substr(module.size() - 3) == ".js") {
    module.remove_suffix(3);
  }
  return internal::StrCat(module, ":", name);
}

std::optional<FunctionKind> DeclaredKind(const absl::Status& status) {
  if (!absl::IsInvalidArgument(status)) return std::nullopt;
  absl::optional<absl::Cord> payload = status.GetPayload(internal::ToAbsl(kKindMismatchTypeUrl));
  if (!payload) return std::nullopt;
  for (FunctionKind kind : {FunctionKind::kQuery, FunctionKind::kMutation, FunctionKind::kAction}) {
    if (*payload == internal::ToAbsl(FunctionKindName(kind))) return kind;
  }
  return std::nullopt;
}

absl::Status KindMismatchError(std::string_view function, FunctionKind declared,
                               FunctionKind called) {
  absl::Status mismatch = absl::InvalidArgumentError(
      internal::StrCat(function, " is ", FunctionKindWithArticle(declared), ", called as ",
                       FunctionKindWithArticle(called)));
  mismatch.SetPayload(internal::ToAbsl(kKindMismatchTypeUrl),
                      absl::Cord(internal::ToAbsl(FunctionKindName(declared))));
  return mismatch;
}

FunctionRunner::FunctionRunner(std::shared_ptr<IsolateScheduler> scheduler,
                               FunctionRunnerOptions options)
    : scheduler_(std::move(scheduler)),
      core_(std::make_shared<internal::RunnerCore>(std::move(options))) {}

FunctionRunner::~FunctionRunner() = default;

namespace {

// Calls `done` once: with the item's own answer, or with the error of a
// limit if the scheduler abandoned the item first (see IsolateLease::OnAbandon).
template <typename T>
class AnswerOnce {
 public:
  explicit AnswerOnce(std::function<void(T)> done) : done_(std::move(done)) {}
  void operator()(T answer) {
    if (!answered_.exchange(true)) done_(std::move(answer));
  }
  // Marks it answered without answering, for a request refused (its caller hears the refusal
  // instead). False if it was answered first.
  [[nodiscard]] bool Withdraw() { return !answered_.exchange(true); }

 private:
  std::function<void(T)> done_;
  std::atomic<bool> answered_{false};
};

// Keeps an abandoned run away from its request's check_scheduled, which may point at what the
// caller holds only until it is answered (CallPath's: its tenant): the scheduler answers an
// abandoned run's caller while the run's thread goes on (a builtin that returns, or a thread
// descheduled inside the check, may still reach it). Checks come from the run's one thread.
class CallerCallbackGate {
 public:
  using Check = std::function<absl::Status(std::string_view, const Value&)>;
  // `check`, refused once `gate` was closed.
  static Check Guard(std::shared_ptr<CallerCallbackGate> gate, Check check) {
    return [gate = std::move(gate), check = std::move(check)](std::string_view function,
                                                              const Value& args) {
      {
        internal::MutexLock lock(&gate->mu_);
        if (gate->closed_) {
          return absl::CancelledError("the run was abandoned at its limit: nothing is scheduled");
        }
        gate->in_check_ = true;
      }
      absl::Status status = check(function, args);
      std::function<void()> answer;
      {
        internal::MutexLock lock(&gate->mu_);
        gate->in_check_ = false;
        answer = std::move(gate->answer_after_check_);
      }
      if (answer) answer();
      return status;
    };
  }
  // Refuses checks from now on and calls `answer`: now, or as the check under way ends (on
  // its thread: the caller of CloseThen, a scheduler's new worker, is not held).
  void CloseThen(std::function<void()> answer) {
    {
      internal::MutexLock lock(&mu_);
      closed_ = true;
      if (in_check_) {
        answer_after_check_ = std::move(answer);
        return;
      }
    }
    answer();
  }

 private:
  internal::Mutex mu_;
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
  bool in_check_ ABSL_GUARDED_BY(mu_) = false;
  std::function<void()> answer_after_check_ ABSL_GUARDED_BY(mu_);
};

absl::Status AbandonedStatus(std::string_view who, const std::string& limit) {
  return internal::LeaseLimitError(limit, who,
                                   " (stopped inside a builtin that cannot be interrupted)");
}

// The answer to a request whose deadline came before it started.
absl::Status NotStartedByDeadline(std::string_view function) {
  return absl::DeadlineExceededError(
      internal::StrCat("function ", function, " passed its deadline before it started"));
}

// The snapshot `request` runs at: `queued`, or the newer one its snapshot_at_start gives.
absl::StatusOr<std::shared_ptr<const Snapshot>> SnapshotAtStart(
    const RunRequest& request, const std::shared_ptr<const Snapshot>& queued) {
  if (!request.snapshot_at_start) return queued;
  TXFN_ASSIGN_OR_RETURN(std::shared_ptr<const Snapshot> at, request.snapshot_at_start());
  if (at == nullptr || at->tenant() != queued->tenant()) {
    return absl::InternalError(internal::StrCat("the snapshot_at_start of function ",
                                                request.function, " gave no snapshot of tenant '",
                                                queued->tenant(), "'"));
  }
  return at;
}

}  // namespace

RunResult FunctionExecutor::Run(std::shared_ptr<const Snapshot> snapshot, RunRequest request) {
  // Shared with `done`: it may still be returning from SignalAll when this thread wakes and
  // returns.
  struct Waiter {
    internal::Mutex mu;
    internal::CondVar cv{&mu};
    bool done ABSL_GUARDED_BY(mu) = false;
    RunResult result ABSL_GUARDED_BY(mu);
  };
  auto not_started = [](std::string_view function) {
    RunResult late;
    late.status = NotStartedByDeadline(function);
    return late;
  };
  const absl::Time deadline = request.deadline;
  if (deadline != absl::InfiniteFuture() && absl::Now() >= deadline) {
    return not_started(request.function);
  }
  std::string function;  // for the answer if it is given up (`request` is moved below)
  std::shared_ptr<RunStartGate> gate;
  if (deadline != absl::InfiniteFuture()) {
    function = request.function;
    gate = std::make_shared<RunStartGate>();
    request.start_gate = gate;
  }
  auto waiter = std::make_shared<Waiter>();
  absl::Status started =
      RunAsync(std::move(snapshot), std::move(request), [waiter](RunResult result) {
        internal::MutexLock lock(&waiter->mu);
        waiter->result = std::move(result);
        waiter->done = true;
        waiter->cv.SignalAll();
      });
  if (!started.ok()) {
    RunResult refused;
    refused.status = std::move(started);
    return refused;
  }
  // A request queued behind its tenant's others would hold this thread (a server's) until its
  // turn, only to find its deadline passed: it is given up at the deadline instead, unless it
  // began (then it is stopped at the deadline, and answers).
  internal::MutexLock lock(&waiter->mu);
  auto done = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(waiter->mu) { return waiter->done; };
  if (!waiter->cv.WaitWithDeadline(deadline, done)) {
    if (gate->GiveUp()) return not_started(function);
    waiter->cv.Wait(done);
  }
  return std::move(waiter->result);
}

absl::Status FunctionRunner::RunAsync(std::shared_ptr<const Snapshot> snapshot, RunRequest request,
                                      std::function<void(RunResult)> done) {
  std::string tenant = snapshot->tenant();
  // The work item keeps the core alive even if the runner goes away first.
  auto item = std::make_shared<RunRequest>(std::move(request));
  std::shared_ptr<CallerCallbackGate> caller_callbacks;
  if (item->check_scheduled) {
    caller_callbacks = std::make_shared<CallerCallbackGate>();
    item->check_scheduled =
        CallerCallbackGate::Guard(caller_callbacks, std::move(item->check_scheduled));
  }
  auto answer = std::make_shared<AnswerOnce<RunResult>>(std::move(done));
  // An async caller (one that brings no gate: Run brings its own and gives up itself) is
  // answered at its deadline if its request is still queued then, not when its turn comes.
  std::optional<internal::DeadlineTimer::Handle> answer_at_deadline;
  if (item->start_gate == nullptr && item->deadline != absl::InfiniteFuture()) {
    item->start_gate = std::make_shared<RunStartGate>();
    // Queued before the timer may fire (a deadline past already, or passing now): a gate not
    // yet queued cannot be given up. Given up before it is submitted, it is dropped unrun.
    item->start_gate->Queued();
    answer_at_deadline = core_->deadline_timer().Schedule(
        item->deadline,
        [gate = item->start_gate, weak_answer = std::weak_ptr(answer), function = item->function] {
          // Gone: answered already. Begun: it is stopped at its deadline, and answers.
          std::shared_ptr<AnswerOnce<RunResult>> answer = weak_answer.lock();
          if (answer == nullptr || !gate->GiveUp()) return;
          RunResult late;
          late.status = NotStartedByDeadline(function);
          (*answer)(std::move(late));
        });
  }
  IsolateScheduler::Work work = [core = core_, snapshot = std::move(snapshot), item, answer,
                                 caller_callbacks, answer_at_deadline](IsolateLease& lease) {
    auto result = std::make_shared<RunResult>();
    // Its caller gave up at its deadline (FunctionExecutor::Run, or the timer above), or it
    // waited in the queue past its deadline: nobody wants its result. (Begin first: it then
    // runs or is given up.)
    const bool given_up = item->start_gate != nullptr && !item->start_gate->Begin();
    // Begun, the timer has nothing left to do; given up, it did it.
    if (answer_at_deadline.has_value()) core->deadline_timer().Cancel(*answer_at_deadline);
    if (given_up || (item->deadline != absl::InfiniteFuture() && absl::Now() >= item->deadline)) {
      result->status = NotStartedByDeadline(item->function);
    } else if (absl::StatusOr<std::shared_ptr<const Snapshot>> at =
                   SnapshotAtStart(*item, snapshot);
               !at.ok()) {
      result->status = std::move(at).status();
    } else {
      // Only now may the caller be answered before this returns: snapshot_at_start may use
      // what the caller holds until it is answered.
      lease.OnAbandon([answer, item, caller_callbacks](const std::string& limit) {
        auto answer_abandoned = [answer, item, limit] {
          RunResult abandoned;
          abandoned.status = AbandonedStatus(internal::StrCat("function ", item->function), limit);
          (*answer)(std::move(abandoned));
        };
        // Not before the caller's callbacks are closed: it may then drop what they point at.
        if (caller_callbacks == nullptr) {
          answer_abandoned();
        } else {
          caller_callbacks->CloseThen(std::move(answer_abandoned));
        }
      });
      lease.StopAt(item->deadline);
      Transaction txn(*std::move(at), internal::RunnerCore::TransactionOptionsFor(*item));
      *result = core->RunOnIsolate(lease, *item, txn);
    }
    // Deliver once the isolate is idle again, so the caller's next request of
    // this tenant can reuse it and is not counted against the tenant's cap.
    lease.RunAfterRelease([answer, result] { (*answer)(std::move(*result)); });
  };
  // With a gate its caller may give up on it from now on: dropped unrun if still queued then
  // (the work checks too: a scheduler may run it regardless).
  std::function<bool()> given_up;
  if (item->start_gate != nullptr) {
    item->start_gate->Queued();
    given_up = [gate = item->start_gate] { return gate->given_up(); };
  }
  absl::Status queued =
      scheduler_->SubmitUnlessGivenUp(std::move(tenant), std::move(work), std::move(given_up));
  if (queued.ok()) return queued;
  if (answer_at_deadline.has_value()) core_->deadline_timer().Cancel(*answer_at_deadline);
  // A deadline that came as it was queued may have been answered by the timer already: that
  // answer stands (`done` runs once, or a refusal is returned).
  return answer->Withdraw() ? queued : absl::OkStatus();
}

absl::Status FunctionRunner::CheckModules(std::shared_ptr<const Snapshot> snapshot, Queue queue) {
  return LoadModules(std::move(snapshot), queue, nullptr);
}

absl::StatusOr<std::map<std::string, FunctionInfo>> FunctionRunner::DescribeFunctions(
    std::shared_ptr<const Snapshot> snapshot, Queue queue) {
  std::map<std::string, FunctionInfo> functions;
  TXFN_RETURN_IF_ERROR(LoadModules(std::move(snapshot), queue, &functions));
  return functions;
}

absl::Status FunctionRunner::LoadModules(std::shared_ptr<const Snapshot> snapshot, Queue queue,
                                         std::map<std::string, FunctionInfo>* functions) {
  struct Waiter {
    internal::Mutex mu;
    internal::CondVar cv{&mu};
    bool done ABSL_GUARDED_BY(mu) = false;
    absl::Status status ABSL_GUARDED_BY(mu);
    std::map<std::string, FunctionInfo> functions ABSL_GUARDED_BY(mu);
  };
  using Answer = std::pair<absl::Status, std::map<std::string, FunctionInfo>>;
  auto waiter = std::make_shared<Waiter>();
  auto answer = std::make_shared<AnswerOnce<Answer>>([waiter](Answer a) {
    internal::MutexLock lock(&waiter->mu);
    waiter->status = std::move(a.first);
    waiter->functions = std::move(a.second);
    waiter->done = true;
    waiter->cv.SignalAll();
  });
  std::string tenant = snapshot->tenant();
  const bool describe = functions != nullptr;
  IsolateScheduler::Work work = [core = core_, snapshot = std::move(snapshot), answer,
                                 describe](IsolateLease& lease) {
    lease.OnAbandon([answer](const std::string& limit) {
      (*answer)(Answer(AbandonedStatus("the deploy check", limit), {}));
    });
    Transaction txn(snapshot, TransactionOptions{.read_only = true});
    auto found = std::make_shared<std::map<std::string, FunctionInfo>>();
    absl::Status status = core->CheckModulesOnIsolate(lease, txn, describe ? found.get() : nullptr);
    lease.RunAfterRelease(
        [answer, status, found] { (*answer)(Answer(status, std::move(*found))); });
  };
  // A deploy's check goes ahead of the tenant's queued calls: a deploy (a fix, perhaps) must
  // not wait behind the flood it may be meant to stop.
  TXFN_RETURN_IF_ERROR(queue == Queue::kAheadOfCalls
                           ? scheduler_->SubmitAhead(std::move(tenant), std::move(work))
                           : scheduler_->Submit(std::move(tenant), std::move(work)));
  internal::MutexLock lock(&waiter->mu);
  waiter->cv.Wait([&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(waiter->mu) { return waiter->done; });
  if (functions != nullptr) *functions = std::move(waiter->functions);
  return waiter->status;
}

int FunctionRunner::ForgetTenant(const std::string& tenant) {
  // Module cache keys start with the tenant's name and a NUL (ModuleLoader::Compile).
  const std::string prefix = internal::StrCat(tenant, std::string_view("\0", 1));
  core_->module_cache().InvalidateIf(
      [&prefix](const std::string& key) { return key.starts_with(prefix); });
  return scheduler_->DisposeIdleIsolatesOf(tenant);
}

ModuleCacheStats FunctionRunner::module_cache_stats() const {
  auto s = core_->module_cache().GetStats();
  return ModuleCacheStats{
      .hits = s.hits, .misses = s.misses, .entries = s.entries, .bytes = s.weight};
}

}  // namespace txfn

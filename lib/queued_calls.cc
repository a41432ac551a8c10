// The engine's queued calls; see lib/queued_calls.h.
#include "lib/queued_calls.h"

#include <algorithm>
#include <deque>
#include <iterator>
#include <utility>

#include "absl/algorithm/container.h"
#include "absl/random/random.h"
#include "absl/strings/cord.h"
#include "lib/reserved_prune.h"
#include "lib/utf8.h"
#include "txfn/clock.h"
#include "txfn/deploy.h"
#include "txfn/errors.h"
#include "txfn/in_memory_queue.h"
#include "txfn/internal/strings.h"
#include "txfn/status_macros.h"

namespace txfn::internal {
namespace {

// Marks the status of a delivery whose call had already ended (a record
// found by the mutation's CompletionRecord).
constexpr std::string_view kEndedPayload = "type.txfn.dev/txfn.CallEnded";
// Tenants whose outboxes one round of the loop looks at (a few storage reads each): a sweep
// of 10,000 tenants must not stall the loop for seconds.
constexpr size_t kOutboxSweepSlice = 128;
// The same for the passes that delete expired call records, and the most records one
// transaction deletes.
constexpr size_t kRecordPassSlice = 16;
constexpr size_t kRecordsPerDelete = 512;
// ListCalls reads records and queued calls in pages of at most this many (records of 130 KB,
// results and errors at their caps, make a page of 33 MB).
constexpr size_t kListPage = 256;

bool Ended(const absl::Status& status) {
  return status.GetPayload(ToAbsl(kEndedPayload)).has_value();
}

std::string_view TypeOf(const Value& v) { return ValueTypeName(v.type()); }

// Whether `record` is this dead-lettering's of the call the queue holds dead as `dead` (and not
// of an earlier one, before Redrive put the call back and it was dead-lettered again).
bool RecordsThisDeadLetter(const CallRecord& record, const QueuedCall& dead) {
  return record.state == CallState::kDeadLettered &&
         absl::ToUnixNanos(record.finished) == absl::ToUnixNanos(dead.at);
}

// What kind of failure a status is, for the call's outcome. `waits` is
// whether the function may wait on anything but its own thread (an action's
// services and calls): for a query or mutation, whose reads run on its
// thread and which cannot wait on anything else, the wall-clock limit (twice
// the CPU limit) is reached before the CPU limit only when the host took the
// time (a paused or overloaded process, slow storage). That is retried, not
// the function's failure, but only while the call has had fewer than
// kWallTimeRetries deliveries before (of any kind: a lease that expired
// counts too), whatever its retry policy says: a function that spins until
// stopped meets its wall-clock limit first on any busy host, and its tenant's
// policy (up to 100 attempts) would multiply what it burns. `synchronous`: the executor
// refused the call before it started. `attempt`: its attempts before this one.
constexpr int kWallTimeRetries = 2;
enum class Failure { kFunction, kRetry, kBusy, kUnavailable };
Failure Classify(const absl::Status& s, bool synchronous, bool waits, int attempt) {
  if (IsCommitOutcomeUnknown(s)) return Failure::kRetry;
  // Another live process owns the tenant (PostgreSQL): that process, or this one once the
  // owner lets go, runs the call; not this delivery's attempt.
  if (IsTenantOwnedElsewhere(s)) return Failure::kUnavailable;
  switch (s.code()) {
    case absl::StatusCode::kUnavailable:
      // Refused before it started (every remote runner down): not the call's attempt.
      return synchronous ? Failure::kUnavailable : Failure::kRetry;
    case absl::StatusCode::kAborted:
    case absl::StatusCode::kFailedPrecondition:  // a disabled tenant, a snapshot too old
    case absl::StatusCode::kDeadlineExceeded:
    case absl::StatusCode::kInternal:
    case absl::StatusCode::kDataLoss:
      return Failure::kRetry;
    case absl::StatusCode::kResourceExhausted:
      // A limit of the function's own is its failure; a refusal of a full
      // isolate queue, given back at once, is not an attempt.
      if (const std::optional<Limit> limit = ExceededLimit(s); limit.has_value()) {
        return *limit == Limit::kWallTime && !waits && attempt < kWallTimeRetries
                   ? Failure::kRetry
                   : Failure::kFunction;
      }
      return synchronous ? Failure::kBusy : Failure::kRetry;
    default:
      return Failure::kFunction;  // InvalidArgument, NotFound, Unknown (it threw), ...
  }
}

// What a failed call's record keeps of its error: the code, the message's first 4 KiB and
// what the code threw (GetAppError; its data only up to 64 KiB, encoded), not the logs.
absl::Status RecordedError(const absl::Status& s) {
  constexpr size_t kMaxMessageBytes = 4096;
  constexpr size_t kMaxDataBytes = 64 * 1024;
  // Cut between UTF-8 characters.
  auto cut = [](std::string_view text) {
    return std::string(text.substr(0, Utf8Boundary(text, kMaxMessageBytes)));
  };
  absl::Status plain(s.code(), cut(std::string_view(s.message().data(), s.message().size())));
  std::optional<AppError> app = GetAppError(s);
  if (!app.has_value()) return plain;
  app->message = cut(app->message);
  if (EncodeBinary(app->data).size() > kMaxDataBytes) app->data = Value::Null();
  return WithAppError(std::move(plain), *app);
}

// Erases the entries of `map` whose value `stale` says are stale, once the map has doubled
// since the last pass (`kept`: its size after that pass): a process that served 10,000
// tenants keeps no entry of each, at O(1) amortized per entry added.
template <typename Map, typename Stale>
void PruneWhenDoubled(Map& map, size_t& kept, Stale stale) {
  if (map.size() < 2 * kept + 64) return;
  for (auto it = map.begin(); it != map.end();) {
    if (stale(it->second)) {
      map.erase(it++);
    } else {
      ++it;
    }
  }
  kept = map.size();
}

// The workers of the isolates that run queued actions (QueuedCallOptions::actions).
int ActionWorkers(const IsolateSchedulerOptions& actions) {
  return actions.workers > 0 ? actions.workers : 2;
}

// How many of one tenant's actions those isolates run at once (IsolateScheduler's default
// for max_running_per_tenant): more wait in their queue.
int ActionsRunningPerTenant(const IsolateSchedulerOptions& actions) {
  return actions.max_running_per_tenant > 0 ? actions.max_running_per_tenant
                                            : std::max(1, ActionWorkers(actions) / 2);
}

// About the bytes a call of `function` with `args` takes in the queue (TenantDepth::bytes): its
// arguments, its names and ~64 bytes of other fields.
uint64_t QueuedBytes(std::string_view tenant, std::string_view function, const Value& args) {
  return 64 + tenant.size() + function.size() + args.ByteSize();
}

// A succeeded call's record with `result` if it is within `max_bytes`, else with its size
// only (QueuedCallOptions::max_recorded_result_bytes).
CallRecord SucceededRecord(CallRecord record, const Value& result, size_t max_bytes) {
  record.state = CallState::kSucceeded;
  const uint64_t bytes = result.is_null() ? 0 : result.ByteSize();
  if (bytes <= max_bytes) {
    record.result = result;
  } else {
    record.result_dropped_bytes = bytes;
  }
  return record;
}

PendingCallsCap::Load LoadOf(std::string_view tenant, const std::vector<ScheduledCall>& calls) {
  PendingCallsCap::Load load{.calls = calls.size()};
  for (const ScheduledCall& c : calls) load.bytes += QueuedBytes(tenant, c.function, c.args);
  return load;
}

// One of ListCalls's streams from a tenant's reserved index keyed by call id (its records, its
// outbox): entries in id order after a given id, read a page at a time, each page from the
// latest snapshot (a long listing would outlive version retention), pages doubling up to
// kListPage.
template <typename Entry>
class CallIndexStream {
 public:
  using Decode = absl::StatusOr<Entry> (*)(std::string_view);
  // `done`: a stream the listing does not need.
  CallIndexStream(IndexId index, Decode decode, const CallId& after, size_t first_page, bool done)
      : index_(index), decode_(decode), after_(after.Bytes()), page_(first_page), done_(done) {}

  // Reads the next page if every entry read was taken.
  absl::Status Fill(OpenTenant& tenant) {
    if (!entries_.empty() || done_) return absl::OkStatus();
    TXFN_ASSIGN_OR_RETURN(
        std::vector<IndexEntry> page,
        tenant.Latest()->Scan(index_, KeyRange::After(after_), ScanOrder::kAscending, page_));
    done_ = page.empty();
    for (IndexEntry& e : page) {
      TXFN_ASSIGN_OR_RETURN(CallId id, CallId::FromBytes(e.key));
      TXFN_ASSIGN_OR_RETURN(Entry entry, decode_(e.value));
      entries_.emplace_back(id, std::move(entry));
    }
    if (!page.empty()) after_ = std::move(page.back().key);
    page_ = std::min(kListPage, page_ * 2);
    return absl::OkStatus();
  }
  // The next entry's id, if any was read.
  std::optional<CallId> next() const {
    return entries_.empty() ? std::nullopt : std::optional<CallId>(entries_.front().first);
  }
  // The next entry if its id is `id`.
  std::optional<Entry> TakeIf(const CallId& id) {
    if (entries_.empty() || entries_.front().first != id) return std::nullopt;
    std::optional<Entry> entry(std::move(entries_.front().second));
    entries_.pop_front();
    return entry;
  }

 private:
  const IndexId index_;
  const Decode decode_;
  std::string after_;
  size_t page_;
  bool done_;
  std::deque<std::pair<CallId, Entry>> entries_;
};

}  // namespace

bool AnotherTenantsTurn(const std::string& tenant,
                        const absl::flat_hash_map<std::string, ActionTurn>& turns,
                        const std::map<std::string, int>& in_flight, absl::Time now,
                        absl::Duration window) {
  auto running = [&in_flight](const std::string& t) {
    auto it = in_flight.find(t);
    return it == in_flight.end() ? 0 : it->second;
  };
  const int mine = running(tenant);
  auto own = turns.find(tenant);
  const absl::Time my_last = own == turns.end() ? absl::InfinitePast() : own->second.last_started;
  for (const auto& [other, turn] : turns) {
    if (other == tenant || now - turn.last_refused > window) continue;
    const int theirs = running(other);
    if (theirs < mine || (theirs == mine && turn.last_started < my_last)) return true;
  }
  return false;
}

absl::Status CheckArgs(const Value& validator, const Value& args) {
  if (!validator.is_array()) return absl::OkStatus();
  std::vector<std::string_view> known;
  for (const Value& field : validator.array()) {
    if (!field.is_array() || field.array().size() != 3 || !field.array()[0].is_string() ||
        !field.array()[1].is_string() || !field.array()[2].is_bool()) {
      continue;  // not what the runner lists: the function checks it itself
    }
    const std::string& name = field.array()[0].string();
    const std::string& type = field.array()[1].string();
    known.push_back(name);
    const Value* v = args.Find(name);
    if (v == nullptr) {
      if (!field.array()[2].boolean()) {
        return absl::InvalidArgumentError(StrCat("missing argument `", name, "` (", type, ")"));
      }
      continue;
    }
    if (type != "any" && TypeOf(*v) != type) {
      return absl::InvalidArgumentError(
          StrCat("argument `", name, "` must be ", type, ", got ", TypeOf(*v)));
    }
  }
  for (const auto& [name, v] : args.object()) {
    if (std::find(known.begin(), known.end(), name) == known.end()) {
      return absl::InvalidArgumentError(StrCat("unexpected argument `", name.substr(0, 64), "`"));
    }
  }
  return absl::OkStatus();
}

// Actions wait on services and on ctx.runQuery/runMutation: a wall-clock
// limit of 30 s (CPU stays at 1 s), unless the host set its own limits.
class ActionLimits final : public LimitEnforcer {
 public:
  absl::Duration WallLimit(const std::string&) const override { return absl::Seconds(30); }
};

// The engine as the scheduler's worker: hands calls to the loop (Run is
// called under the scheduler's lock and must not block).
class QueuedCalls::EngineWorker final : public Worker {
 public:
  explicit EngineWorker(QueuedCalls* owner) : owner_(owner) {}
  void Run(const Call& call, Done done) override { owner_->Hand(call, std::move(done)); }

 private:
  QueuedCalls* const owner_;
};

// A queued mutation's record as a CompletionRecord: found, the delivery ends
// without running; added, it commits with the mutation's writes.
class QueuedCalls::Record final : public CompletionRecord {
 public:
  // For the delivery of `call` that begins now.
  Record(QueuedCalls* owner, const Call& call, const Clock& clock)
      : owner_(owner),
        id_(call.id),
        function_(call.function),
        attempts_(call.attempt + 1),
        keyed_args_(call.idempotency_key.empty() ? std::nullopt : std::optional(call.args)),
        clock_(clock) {}

  absl::StatusOr<std::optional<IdempotentResult>> Find(const Snapshot& snapshot) const override {
    TXFN_ASSIGN_OR_RETURN(std::optional<CallRecord> record, FindCallRecord(snapshot, id_));
    if (!record.has_value()) return std::nullopt;
    TXFN_ASSIGN_OR_RETURN(const bool ends, owner_->EndsDelivery(id_, *record));
    if (!ends) return std::nullopt;  // a redriven dead letter: its record is replaced
    if (record->state == CallState::kSucceeded) {
      return IdempotentResult{.value = record->result, .ts = snapshot.ts()};
    }
    absl::Status ended = absl::FailedPreconditionError(
        StrCat("call ", id_.ToString(), " already ", CallStateName(record->state)));
    ended.SetPayload(ToAbsl(kEndedPayload), absl::Cord(ToAbsl(CallStateName(record->state))));
    return ended;
  }
  absl::Status Add(const Value& result, PreparedCommit* commit) const override {
    return AddCallRecord(
        id_,
        SucceededRecord(CallRecord{.function = function_,
                                   .finished = clock_.Now(),
                                   .attempts = attempts_,
                                   // Hashed here, on the mutation's worker.
                                   .args_digest = keyed_args_.has_value() ? ArgsDigest(*keyed_args_)
                                                                          : std::string()},
                        result, owner_->options_.max_recorded_result_bytes),
        commit);
  }

 private:
  QueuedCalls* const owner_;
  const CallId id_;
  const std::string function_;
  const int attempts_;
  const std::optional<Value> keyed_args_;  // a keyed call's (a Value copies by reference)
  const Clock& clock_;
};

// What an action's ctx reaches: the tenant's queries and mutations, the
// engine's services (those the action declared), and the queue.
//
// A queued action's host gives up once Stop's wait is over: what the action asks of it after
// that fails (Unavailable), so that the action ends at once instead of working on, unseen, until
// its own limits; its call is left to be delivered again, with no record.
class QueuedCalls::Host final : public ActionHost {
 public:
  Host(QueuedCalls* owner, std::string tenant, std::string function,
       std::vector<std::string> services, bool queued)
      : owner_(owner),
        tenant_(std::move(tenant)),
        function_(std::move(function)),
        services_(std::move(services)),
        queued_(queued) {}

  // Whether a queued action asked for something after the engine stopped running queued calls.
  bool gave_up() const { return gave_up_.load(std::memory_order_acquire); }

  absl::StatusOr<Value> RunQuery(std::string_view function, const Value& args) override {
    TXFN_RETURN_IF_ERROR(CheckRunning());
    TXFN_ASSIGN_OR_RETURN(std::shared_ptr<OpenTenant> open, owner_->tenants_.Get(tenant_));
    TXFN_ASSIGN_OR_RETURN(CallResult r, owner_->calls_.Query(*open, function, args));
    return std::move(r.value);
  }
  absl::StatusOr<Value> RunMutation(std::string_view function, const Value& args) override {
    TXFN_RETURN_IF_ERROR(CheckRunning());
    TXFN_ASSIGN_OR_RETURN(std::shared_ptr<OpenTenant> open, owner_->tenants_.Get(tenant_));
    TXFN_ASSIGN_OR_RETURN(CallResult r, owner_->calls_.Mutation(*open, function, args));
    return std::move(r.value);
  }
  absl::StatusOr<Value> CallService(std::string_view service, const Value& args) override {
    TXFN_RETURN_IF_ERROR(CheckRunning());
    if (std::find(services_.begin(), services_.end(), service) == services_.end()) {
      return absl::FailedPreconditionError(
          StrCat("action ", function_, " did not declare service '", service.substr(0, 64),
                 "' (add it to its services: [...])"));
    }
    auto it = owner_->options_.services.find(std::string(service));
    if (it == owner_->options_.services.end()) {
      return absl::NotFoundError(StrCat("no service '", service, "' in this engine"));
    }
    absl::StatusOr<Value> answer = it->second(args);
    if (!answer.ok() &&
        (absl::IsResourceExhausted(answer.status()) || absl::IsUnavailable(answer.status()))) {
      owner_->SetStat(&QueuedCallStats::back_pressure);
      MutexLock lock(&mu_);
      if (back_pressure_.empty()) back_pressure_ = std::string(service);
    }
    return answer;
  }
  absl::StatusOr<std::string> Schedule(std::string_view function, const Value& args,
                                       std::optional<absl::Duration> delay,
                                       std::optional<absl::Time> at) override {
    TXFN_RETURN_IF_ERROR(CheckRunning());
    CallOptions options;
    const absl::Time now = owner_->clock_.Now();
    // As a mutation's: a runAt in the past runs now, with its whole deadline window.
    options.start_after = std::max(now, at.value_or(now + delay.value_or(absl::ZeroDuration())));
    TXFN_ASSIGN_OR_RETURN(CallId id, owner_->Submit(tenant_, function, args, options));
    return id.ToString();
  }
  absl::Status Cancel(std::string_view call_id) override {
    TXFN_RETURN_IF_ERROR(CheckRunning());
    TXFN_ASSIGN_OR_RETURN(CallId id, CallId::Parse(call_id));
    absl::Status s = owner_->CancelCall(id, tenant_);
    // As in a mutation: cancelling a call that already ended changes nothing.
    return absl::IsFailedPrecondition(s) ? absl::OkStatus() : s;
  }

  // The first service that pushed back during the run, or "".
  std::string back_pressure() const {
    MutexLock lock(&mu_);
    return back_pressure_;
  }

 private:
  // OK unless this is a queued action and the engine gave it up (see the class comment).
  absl::Status CheckRunning() {
    if (!queued_ || !owner_->GivenUp()) return absl::OkStatus();
    gave_up_.store(true, std::memory_order_release);
    return absl::UnavailableError(
        StrCat("action ", function_,
               " was given up: the engine stopped running queued calls (its call is "
               "delivered again)"));
  }

  QueuedCalls* const owner_;
  const std::string tenant_;
  const std::string function_;
  const std::vector<std::string> services_;
  const bool queued_;
  std::atomic<bool> gave_up_{false};
  mutable Mutex mu_;
  std::string back_pressure_ ABSL_GUARDED_BY(mu_);
};

QueuedCalls::QueuedCalls(QueuedCallOptions options, TenantCommitters& tenants, CallPath& calls,
                         FunctionRunner& runner, int workers)
    : options_(std::move(options)),
      tenants_(tenants),
      calls_(calls),
      runner_(runner),
      slots_(options_.slots > 0 ? options_.slots : std::max(2, 2 * workers)),
      slots_per_tenant_(options_.slots_per_tenant > 0 ? options_.slots_per_tenant
                                                      : std::max(1, slots_ / 2)),
      queue_(options_.queue != nullptr ? options_.queue : std::make_shared<InMemoryQueue>()),
      pending_cap_(*queue_, clock_,
                   {.calls = options_.max_pending_calls_per_tenant,
                    .bytes = options_.max_pending_bytes_per_tenant}),
      log_budgets_(options_.log_bytes_per_second_per_tenant) {
  config_.default_downstream = options_.service_limits;
  config_.default_function = options_.function_defaults;
}

absl::Status QueuedCalls::Start() {
  // A call given back is offered again after these: 0 would offer it again at once, forever.
  for (const auto& [name, wait] : {std::pair{"busy_retry", options_.busy_retry},
                                   std::pair{"unavailable_retry", options_.unavailable_retry}}) {
    if (wait <= absl::ZeroDuration() || wait == absl::InfiniteDuration()) {
      return absl::InvalidArgumentError(StrCat("QueuedCallOptions::", name, " is ",
                                               absl::FormatDuration(wait),
                                               "; it must be positive and finite"));
    }
  }
  for (auto [name, retention] :
       {std::pair{"record_retention", options_.record_retention},
        std::pair{"dead_letter_retention", options_.dead_letter_retention}}) {
    if (retention <= absl::ZeroDuration()) {
      return absl::InvalidArgumentError(StrCat("QueuedCallOptions::", name, " is ",
                                               absl::FormatDuration(retention),
                                               "; it must be positive"));
    }
  }
  TXFN_RETURN_IF_ERROR(LogBudgets::Validate(options_.log_bytes_per_second_per_tenant));
  if (options_.outbox_sweep_interval <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError(StrCat("QueuedCallOptions::outbox_sweep_interval is ",
                                             absl::FormatDuration(options_.outbox_sweep_interval),
                                             "; it must be positive"));
  }
  TXFN_ASSIGN_OR_RETURN(
      submitter_, Submitter::Create(queue_.get(), options_.blobs, &clock_, options_.submitter));
  IsolateSchedulerOptions actions = options_.actions;
  actions.workers = ActionWorkers(actions);
  // Set, not left to the scheduler's default: ActionMayStart gives an action back at this cap.
  actions.max_running_per_tenant = ActionsRunningPerTenant(options_.actions);
  if (actions.customizer == nullptr) actions.customizer = FunctionRunnerIsolateCustomizer();
  if (actions.limits == nullptr) actions.limits = std::make_shared<const ActionLimits>();
  if (actions.max_in_flight_per_tenant == 0) {
    actions.max_in_flight_per_tenant =
        static_cast<int>(std::min<size_t>(actions.queue_capacity, 1 << 30));
  }
  TXFN_ASSIGN_OR_RETURN(std::unique_ptr<IsolateScheduler> action_scheduler,
                        IsolateScheduler::Create(actions));
  action_scheduler_ = std::move(action_scheduler);
  action_runner_ = std::make_unique<FunctionRunner>(action_scheduler_);
  if (options_.run) {
    CallScheduler::Options so{.queue = queue_.get(), .clock = &clock_, .blobs = options_.blobs};
    so.lease_duration = options_.lease_duration;
    so.lease_batch = options_.lease_batch;
    so.poll_interval = options_.poll_interval;
    so.max_poll_interval = std::max(options_.poll_interval, absl::Milliseconds(200));
    so.opportunistic_deadline_slack = options_.opportunistic_deadline_slack;
    so.utilization = options_.utilization;
    so.key_functions_by_tenant = true;
    // Tenants name functions (and may schedule calls of names never deployed).
    so.forget_idle_functions = absl::Minutes(10);
    so.max_running_per_tenant = slots_per_tenant_;
    so.wakeup = [this] { Wake(); };
    {
      MutexLock lock(&mu_);
      so.config = config_;
    }
    TXFN_ASSIGN_OR_RETURN(scheduler_, CallScheduler::Create(std::move(so)));
    TXFN_RETURN_IF_ERROR(
        scheduler_->AddWorker("engine", std::make_shared<EngineWorker>(this), slots_));
  }
  loop_ = std::thread([this] { Loop(); });
  return absl::OkStatus();
}

QueuedCalls::~QueuedCalls() {
  (void)Stop(absl::Seconds(2));
  {
    // Calls still running hold `this` in their callbacks: wait for them (their
    // functions' own limits bound the wait).
    MutexLock lock(&mu_);
    cv_.Wait([&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return in_flight_ == 0; });
  }
  // An action abandoned at its limit was answered (so it is not in flight) while its thread
  // runs on, perhaps inside a host call (a service that does not return) that uses `this`:
  // the action scheduler joins such threads as it goes, so it goes first, while every member
  // they may touch is still here (as members it went after most of them).
  action_runner_.reset();
  action_scheduler_.reset();
}

size_t QueuedCalls::Stop(absl::Duration timeout) {
  size_t running = 0;
  {
    MutexLock lock(&mu_);
    if (!loop_.joinable()) return static_cast<size_t>(in_flight_);
    draining_ = true;
    woken_ = true;
    cv_.SignalAll();
    // The loop keeps ticking (running calls settle through it) until they
    // are done or the time is up.
    cv_.WaitWithTimeout(timeout, [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return in_flight_ == 0 && handed_.empty();
    });
    // Those running when the time was up: once stop_ is set, an action given up ends at its
    // next request, perhaps before the loop's last round is over.
    running = static_cast<size_t>(in_flight_);
    stop_ = true;
    cv_.SignalAll();
  }
  loop_.join();
  return running;
}

bool QueuedCalls::GivenUp() const {
  MutexLock lock(&mu_);
  return stop_;
}

void QueuedCalls::Wake() {
  MutexLock lock(&mu_);
  woken_ = true;
  cv_.SignalAll();
}

void QueuedCalls::SetStat(uint64_t QueuedCallStats::*field) {
  MutexLock lock(&mu_);
  ++(stats_.*field);
}

void QueuedCalls::Hand(const Call& call, Worker::Done done) {
  MutexLock lock(&mu_);
  handed_.push_back({call, std::move(done)});
  woken_ = true;
  cv_.SignalAll();
}

void QueuedCalls::Loop() {
  // A submit-only engine leaves the outboxes to the engine that runs calls.
  if (options_.run) {
    // What a crash of this engine left.
    if (absl::StatusOr<std::vector<std::string>> all = tenants_.storage()->ListTenants();
        all.ok()) {
      RecoverOutboxes(*all, absl::ZeroDuration());
    }
  }
  bool drained = false;
  PeriodicTimer utilization(clock_.Now(), options_.utilization_interval);
  TenantPass outbox_sweep(options_.outbox_sweep_interval, kOutboxSweepSlice, clock_.Now());
  TenantPass record_pass(std::min(options_.record_retention / 2, absl::Hours(1)), kRecordPassSlice,
                         clock_.Now());
  // The dead letters' pass, a page per round of the loop while it lasts; the first within a
  // minute of the start, as the records' (TenantPass).
  const absl::Duration dead_letter_every =
      std::min(options_.dead_letter_retention / 2, absl::Hours(1));
  PeriodicTimer dead_letter_pass(clock_.Now() + std::min(dead_letter_every, absl::Minutes(1)),
                                 dead_letter_every);
  std::optional<CallId> dead_letter_page;  // where the pass under way is
  while (true) {
    std::vector<Handed> handed;
    bool draining = false;
    std::optional<SchedulerConfig> config;  // an Install's, left to this loop
    {
      MutexLock lock(&mu_);
      if (stop_) break;
      handed.swap(handed_);
      draining = draining_;
      if (config_pending_) config = config_;
      config_pending_ = false;
    }
    if (config.has_value() && scheduler_ != nullptr) (void)scheduler_->ApplyConfig(*config);
    if (draining && !drained && scheduler_ != nullptr) {
      scheduler_->Drain();
      drained = true;
    }
    for (Handed& h : handed) StartCall(h.call, std::move(h.done));
    const bool may_start = options_.run && !draining;
    RecoverOutboxes(outbox_sweep.Next(*tenants_.storage(), clock_.Now(), may_start),
                    options_.outbox_sweep_interval / 2);
    PruneRecords(record_pass.Next(*tenants_.storage(), clock_.Now(), may_start));
    if (may_start && options_.dead_letter_retention != absl::InfiniteDuration() &&
        !dead_letters_unremovable_) {
      if (!dead_letter_page.has_value() && dead_letter_pass.Due(clock_.Now())) {
        dead_letter_page = CallId();
      }
      if (dead_letter_page.has_value()) dead_letter_page = PruneDeadLetters(*dead_letter_page);
    }
    EnqueueScheduled();
    RemoveCancelled();
    absl::Time next = clock_.Now() + absl::Milliseconds(100);
    if (scheduler_ != nullptr && utilization.Due(clock_.Now())) {
      // S follows how busy the slots are.
      const SchedulerStats st = scheduler_->stats();
      scheduler_->ReportUtilization(
          st.worker_slots > 0 ? static_cast<double>(st.in_flight) / st.worker_slots : 0);
    }
    if (scheduler_ != nullptr) next = std::min(next, scheduler_->Tick());
    next = std::min(next, submitter_->Tick());
    CleanOutboxes();
    MutexLock lock(&mu_);
    if (draining_ && in_flight_ == 0 && handed_.empty()) cv_.SignalAll();
    const absl::Duration wait = std::max(next - clock_.Now(), absl::ZeroDuration());
    cv_.WaitWithTimeout(wait, [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return woken_ || stop_; });
    woken_ = false;
  }
  // Calls handed over but never started go back to the queue (a later
  // process runs them); they are not attempts.
  std::vector<Handed> left;
  {
    MutexLock lock(&mu_);
    left.swap(handed_);
  }
  for (Handed& h : left) {
    std::move(h.done)(
        CallOutcome::Busy(absl::UnavailableError("the engine is stopping"), absl::ZeroDuration()));
  }
  if (scheduler_ != nullptr) (void)scheduler_->Tick();
  // The calls committed mutations scheduled go to the queue before the engine stops: an
  // engine that only made a call (`txfn run`) stops before the loop's first round, and their
  // outbox entries would wait there for some engine's next start.
  EnqueueScheduled();
  submitter_->Flush();
  CleanOutboxes();
}

// ---- Function tables ----------------------------------------------------

bool QueuedCalls::EraseConfigOf(std::string_view tenant) {
  const std::string prefix = StrCat(tenant, "/");
  bool erased = false;
  for (auto it = config_.functions.begin(); it != config_.functions.end();) {
    if (it->first.rfind(prefix, 0) == 0) {
      config_.functions.erase(it++);
      erased = true;
    } else {
      ++it;
    }
  }
  return erased;
}

void QueuedCalls::OnDeleted(std::string_view tenant) {
  RemoveCallsOf(tenant);
  SchedulerConfig config;
  {
    MutexLock lock(&mu_);
    functions_.erase(internal::ToAbsl(tenant));
    young_outbox_.erase(internal::ToAbsl(tenant));
    if (!EraseConfigOf(tenant)) return;
    ++config_.version;
    config = config_;
  }
  if (scheduler_ != nullptr) (void)scheduler_->ApplyConfig(config);
}

std::shared_ptr<const TenantFunctions> QueuedCalls::Install(
    const std::string& tenant, std::shared_ptr<const TenantMetadata> metadata,
    const std::map<std::string, FunctionInfo>& found, bool defer_config) {
  auto table = std::make_shared<TenantFunctions>();
  table->metadata = std::move(metadata);
  for (const auto& [name, info] : found) {
    TenantFunctions::Function& f = table->by_name[name];
    f.kind = info.kind;
    f.args = info.args;
    // A deploy checked them; a table read from older modules keeps defaults.
    if (absl::StatusOr<FunctionAttributes> a = ParseFunctionAttributes(info.attributes); a.ok()) {
      f.attributes = *std::move(a);
    }
  }
  SchedulerConfig config;
  {
    MutexLock lock(&mu_);
    functions_[tenant] = table;
    // Tables of tenants closed since (their modules gone) go.
    PruneWhenDoubled(functions_, functions_kept_,
                     [](const auto& table) { return table->metadata.expired(); });
    // The scheduler's limits for this tenant's functions.
    const std::string prefix = StrCat(tenant, "/");
    (void)EraseConfigOf(tenant);
    for (const auto& [name, f] : table->by_name) {
      const FunctionAttributes& a = f.attributes;
      if (a.max_concurrency == 0 && a.services.empty() && !a.reserved_cpu_quota.has_value() &&
          !a.opportunistic_rate.has_value()) {
        continue;
      }
      FunctionConfig fc = config_.default_function;
      if (a.max_concurrency > 0) fc.concurrency_limit = a.max_concurrency;
      fc.downstreams = a.services;
      if (a.reserved_cpu_quota.has_value()) fc.reserved_cpu_quota = *a.reserved_cpu_quota;
      if (a.opportunistic_rate.has_value()) fc.opportunistic_rate = *a.opportunistic_rate;
      config_.functions[StrCat(prefix, name)] = std::move(fc);
    }
    ++config_.version;
    if (defer_config) {
      config_pending_ = true;
      woken_ = true;
      cv_.SignalAll();
      return table;
    }
    config = config_;
  }
  // Outside mu_ (the scheduler calls Hand, which takes mu_, under its own
  // lock). A racing older version is refused; the newer one holds both.
  if (scheduler_ != nullptr) (void)scheduler_->ApplyConfig(config);
  return table;
}

std::shared_ptr<const TenantFunctions> QueuedCalls::KnownFunctionsOf(const std::string& tenant,
                                                                     const Snapshot& latest) {
  {
    MutexLock lock(&mu_);
    auto it = functions_.find(tenant);
    if (it != functions_.end() && it->second->metadata.lock() == latest.shared_metadata()) {
      return it->second;
    }
  }
  // Recorded by their deploy (RecordFunctions): known without running a module, so a
  // mutation's ctx.scheduler calls are checked from the first one after this engine opened,
  // not only once a call of the tenant has described its modules.
  const std::optional<Value>& recorded = latest.metadata().functions();
  if (!recorded.has_value()) return nullptr;
  absl::StatusOr<std::map<std::string, FunctionInfo>> found = FunctionsFromValue(*recorded);
  if (!found.ok()) return nullptr;  // described by running the modules, as without a record
  return Install(tenant, latest.shared_metadata(), *found, /*defer_config=*/true);
}

absl::StatusOr<std::shared_ptr<const TenantFunctions>> QueuedCalls::FunctionsOf(
    OpenTenant& tenant) {
  std::shared_ptr<const Snapshot> latest = tenant.Latest();
  if (std::shared_ptr<const TenantFunctions> known = KnownFunctionsOf(tenant.name(), *latest)) {
    return known;
  }
  std::shared_ptr<const TenantMetadata> metadata = latest->shared_metadata();
  // On a call's path (a tenant's calls reach it): queued with its calls, not ahead of them.
  TXFN_ASSIGN_OR_RETURN(
      auto found, runner_.DescribeFunctions(std::move(latest), FunctionRunner::Queue::kWithCalls));
  return Install(tenant.name(), std::move(metadata), found);
}

void QueuedCalls::OnDeployed(OpenTenant& tenant,
                             const std::map<std::string, FunctionInfo>& functions) {
  (void)Install(tenant.name(), tenant.Latest()->shared_metadata(), functions);
}

absl::Status QueuedCalls::CheckServices(
    const std::map<std::string, FunctionInfo>& functions) const {
  for (const auto& [name, info] : functions) {
    absl::StatusOr<FunctionAttributes> a = ParseFunctionAttributes(info.attributes);
    if (!a.ok()) continue;  // the deploy check reports it
    for (const std::string& service : a->services) {
      if (!options_.services.contains(service)) {
        return absl::InvalidArgumentError(StrCat("deploy refused: ", FunctionKindName(info.kind),
                                                 " ", name, " declares service '", service,
                                                 "', which this engine does not provide"));
      }
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<TenantFunctions::Function> QueuedCalls::Lookup(OpenTenant& tenant,
                                                              const std::string& canonical) {
  TXFN_ASSIGN_OR_RETURN(std::shared_ptr<const TenantFunctions> table, FunctionsOf(tenant));
  return LookupIn(*table, tenant.name(), canonical);
}

absl::StatusOr<TenantFunctions::Function> QueuedCalls::LookupIn(const TenantFunctions& table,
                                                                std::string_view tenant,
                                                                const std::string& canonical) {
  auto it = table.by_name.find(canonical);
  if (it == table.by_name.end()) {
    // What the caller may have meant, as a run of a missing export says: its module's
    // queries, mutations and actions, or (none) the tenant's.
    auto names = [&](std::string_view prefix) {
      std::vector<std::string> listed;
      for (auto f = table.by_name.lower_bound(std::string(prefix));
           f != table.by_name.end() && f->first.starts_with(prefix); ++f) {
        listed.push_back(f->first);
      }
      return FirstNames(listed);
    };
    const std::string module = canonical.substr(0, canonical.rfind(':'));
    std::string hint = names(StrCat(module, ":"));
    hint = hint.empty() ? StrCat("; it has ", table.by_name.empty() ? "none" : names(""))
                        : StrCat("; module ", module, " has ", hint);
    return absl::NotFoundError(
        StrCat("tenant '", tenant, "' has no query, mutation or action ", canonical, hint));
  }
  return it->second;
}

// ---- Submitting -----------------------------------------------------------

Call QueuedCalls::MakeCall(const std::string& tenant, const std::string& function, Value args,
                           const FunctionAttributes& a, const CallOptions& options,
                           absl::Time now) const {
  Call call;
  call.tenant = tenant;
  call.function = function;
  call.args = std::move(args);
  call.start_after = options.start_after == absl::InfinitePast() ? now : options.start_after;
  call.deadline =
      options.deadline == absl::InfinitePast() ? call.start_after + a.deadline : options.deadline;
  call.criticality = options.criticality.value_or(a.criticality);
  call.quota = options.quota.value_or(a.quota);
  call.retry = options.retry.value_or(a.retry);
  call.idempotency_key = options.idempotency_key;
  call.client = options.client.empty() ? tenant : options.client;
  return call;
}

absl::Status QueuedCalls::Enqueue(std::vector<Call> calls) {
  struct Waiter {
    Mutex mu;
    CondVar cv{&mu};
    size_t left ABSL_GUARDED_BY(mu) = 0;
    absl::Status first_error ABSL_GUARDED_BY(mu);
  };
  auto waiter = std::make_shared<Waiter>();
  {
    MutexLock lock(&waiter->mu);
    waiter->left = calls.size();
  }
  // A call due now is polled for at once, not when idle polls come round.
  const absl::Time soon = clock_.Now() + options_.poll_interval;
  const bool due_soon = absl::c_any_of(calls, [&](const Call& c) { return c.start_after <= soon; });
  absl::Status refused;
  for (Call& call : calls) {
    absl::StatusOr<CallId> id =
        submitter_->Submit(std::move(call), [waiter](const absl::StatusOr<CallId>& durable) {
          MutexLock lock(&waiter->mu);
          if (!durable.ok() && waiter->first_error.ok()) waiter->first_error = durable.status();
          if (--waiter->left == 0) waiter->cv.SignalAll();
        });
    if (!id.ok()) {
      MutexLock lock(&waiter->mu);
      --waiter->left;
      if (refused.ok()) refused = id.status();
    }
  }
  {
    // One writer at a time: while it writes, the calls of other threads
    // gather in the submitter's batches, and the next writer takes them all
    // (a group commit). A call someone else wrote needs no write of its own.
    MutexLock write(&enqueue_mu_);
    bool written = false;
    {
      MutexLock lock(&waiter->mu);
      written = waiter->left == 0;
    }
    if (!written) submitter_->Flush();
  }
  {
    MutexLock lock(&waiter->mu);
    waiter->cv.Wait([&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(waiter->mu) { return waiter->left == 0; });
    if (refused.ok()) refused = waiter->first_error;
  }
  if (due_soon && scheduler_ != nullptr) {
    scheduler_->PollSoon();
    Wake();
  }
  return refused;
}

absl::StatusOr<CallId> QueuedCalls::Submit(std::string_view tenant, std::string_view function,
                                           const Value& args, const CallOptions& options) {
  TXFN_RETURN_IF_ERROR(ValidateTenantName(tenant));
  if (options.idempotency_key.size() > 256) {
    return absl::InvalidArgumentError("an idempotency key has at most 256 bytes");
  }
  TXFN_ASSIGN_OR_RETURN(std::shared_ptr<OpenTenant> open, tenants_.Get(tenant));
  TXFN_ASSIGN_OR_RETURN(std::shared_ptr<const TenantFunctions> table, FunctionsOf(*open));
  TXFN_ASSIGN_OR_RETURN(CheckedCall checked, Check(*table, open->name(), function, args));
  const std::string& name = checked.name;
  const absl::Time now = clock_.Now();
  Call call = MakeCall(open->name(), name, std::move(checked.args), checked.function.attributes,
                       options, now);
  TXFN_RETURN_IF_ERROR(ValidateCallExceptId(call, options_.submitter.limits));
  // As far ahead as a function may schedule one (a call due in 2262 would never leave).
  if (call.start_after - now > kMaxScheduleDelay) {
    return absl::InvalidArgumentError(
        StrCat("call of ", name, " (tenant ", open->name(), "): its start is ",
               absl::FormatDuration(call.start_after - now), " ahead; it must be at most ",
               absl::FormatDuration(kMaxScheduleDelay)));
  }
  std::optional<MutexLock> key_stripe;
  std::optional<Value> keyed_args;  // a keyed call's arguments, to check what its key names
  if (!options.idempotency_key.empty()) {
    const CallId derived = CallId::FromKey(open->name(), options.idempotency_key);
    call.id = TenantCallId(open->name(), derived.hi(), derived.lo());
    key_stripe.emplace(&key_stripes_[call.id.lo() % key_stripes_.size()]);
    // The key names one call: a second Submit of it returns that call without queueing
    // anything, but only if it is the same call (else the caller's new call would be lost
    // without a word). Not found, or not found for an error, the call is queued and checked
    // after (below).
    if (absl::StatusOr<Located> first = Locate(call.id, open->name()); first.ok()) {
      TXFN_RETURN_IF_ERROR(
          CheckKeyNamesThisCall(*first, call.id, name, call.args, options.idempotency_key));
      SetStat(&QueuedCallStats::submitted);
      return call.id;
    }
    keyed_args = call.args;
  } else {
    absl::BitGen bits;
    call.id =
        TenantCallId(open->name(), absl::Uniform<uint64_t>(bits), absl::Uniform<uint64_t>(bits));
  }
  const CallId id = call.id;
  const PendingCallsCap::Load load = {.calls = 1,
                                      .bytes = QueuedBytes(open->name(), call.function, call.args)};
  TXFN_RETURN_IF_ERROR(pending_cap_.Admit(open->name(), load));
  std::vector<Call> one;
  one.push_back(std::move(call));
  TXFN_RETURN_IF_ERROR(Enqueue(std::move(one)));
  pending_cap_.Added(open->name(), load);
  SetStat(&QueuedCallStats::submitted);
  if (keyed_args.has_value()) {
    // The stripe keeps out this process's Submits of the key only: another process's may have
    // queued its call between the look above and this Enqueue, and the queue keeps the first
    // call of an id. So look at what it kept.
    // A failure to look is an outcome unknown (a call is queued under the key, this one or
    // another process's): the caller must not take it for "nothing queued".
    absl::StatusOr<Located> kept = Locate(id, open->name());
    absl::Status names = kept.status();
    if (kept.ok()) {
      names = CheckKeyNamesThisCall(*kept, id, name, *keyed_args, options.idempotency_key);
    } else if (absl::IsNotFound(names)) {
      names = absl::OkStatus();
    }
    if (!names.ok() && !absl::IsAlreadyExists(names)) {
      return CommitOutcomeUnknownError(
          StrCat("call ", id.ToString(), " was queued, but checking that idempotency key '",
                 options.idempotency_key.substr(0, 64),
                 "' names it failed (submit again with the key): ", names.message()));
    }
    TXFN_RETURN_IF_ERROR(names);
  }
  return id;
}

absl::Status QueuedCalls::CheckKeyNamesThisCall(const Located& first, const CallId& id,
                                                std::string_view function, const Value& args,
                                                std::string_view key) {
  // The first call of the id is as its record says, if it ended (see below); a record that
  // names no function (an older cancel's) leaves it unknown.
  const std::string* first_function = nullptr;
  if (first.record.has_value()) {
    if (!first.record->function.empty()) first_function = &first.record->function;
  } else if (first.queued.has_value()) {
    first_function = &first.queued->call.function;
  } else if (first.outbox.has_value()) {
    first_function = &first.outbox->function;
  }
  const bool same_function =
      first_function == nullptr || first_function->empty() || *first_function == function;
  // Arguments are compared with the digest the call's record keeps (a keyed call's: none in a
  // record from before digests, or if its spilled arguments were not read for it), else with
  // the queued call's; unknown, they are taken for the same. The record comes first: a call
  // queued under an ended call's id is a duplicate (another process's Submit that raced the
  // first), which its delivery will skip.
  std::optional<bool> same_args;
  if (same_function && first.record.has_value() && !first.record->args_digest.empty()) {
    same_args = first.record->args_digest == ArgsDigest(args);
  }
  if (same_function && !same_args.has_value() && first.queued.has_value()) {
    const Call& queued = first.queued->call;
    if (queued.args_blob.empty()) {
      if (!queued.args.is_null()) same_args = queued.args == args;
    } else if (options_.blobs != nullptr) {
      absl::StatusOr<std::string> spilled = options_.blobs->Get(queued.args_blob);
      if (spilled.ok()) {
        absl::StatusOr<Value> first_args = DecodeBinary(*spilled);
        if (first_args.ok()) same_args = *first_args == args;
      } else if (absl::IsNotFound(spilled.status()) && first.tenant != nullptr) {
        // It ended meanwhile, and its arguments went with it: its record tells now.
        TXFN_ASSIGN_OR_RETURN(std::optional<CallRecord> record,
                              FindCallRecord(*first.tenant->Latest(), id));
        if (record.has_value() && !record->args_digest.empty()) {
          same_args = record->args_digest == ArgsDigest(args);
        }
      } else if (!absl::IsNotFound(spilled.status())) {
        return absl::UnavailableError(StrCat(
            "checking that idempotency key '", key.substr(0, 64), "' names call ", id.ToString(),
            " failed: its arguments could not be read: ", spilled.status().message()));
      }
    }
  }
  if (same_function && same_args.value_or(true)) return absl::OkStatus();
  // Not known only if it is this function (a cancel's record may not name it).
  const std::string_view first_of = first_function != nullptr ? *first_function : function;
  return absl::AlreadyExistsError(
      StrCat("idempotency key '", key.substr(0, 64), "' names call ", id.ToString(), " of ",
             first_of, " with other arguments or another function: a key stands for ", "one call"));
}

absl::StatusOr<std::string> QueuedCalls::KeyedArgsDigestReading(const Call& call) {
  if (call.idempotency_key.empty() || call.args_blob.empty() || !call.args.is_null() ||
      options_.blobs == nullptr) {
    return KeyedArgsDigest(call);
  }
  absl::StatusOr<std::string> spilled = options_.blobs->Get(call.args_blob);
  if (absl::IsNotFound(spilled.status())) return std::string();  // it ended, they went
  TXFN_RETURN_IF_ERROR(spilled.status());
  return ArgsDigestOfEncoding(*spilled);  // the encoding is canonical: no need to decode
}

absl::StatusOr<QueuedCalls::CheckedCall> QueuedCalls::Check(const TenantFunctions& table,
                                                            std::string_view tenant,
                                                            std::string_view function,
                                                            const Value& args) {
  CheckedCall checked{.name = CanonicalFunctionName(function)};
  TXFN_ASSIGN_OR_RETURN(checked.function, LookupIn(table, tenant, checked.name));
  checked.args = args.is_null() ? Value::FromObject({}) : args;
  if (!checked.args.is_object()) {
    return absl::InvalidArgumentError(
        StrCat("the arguments of ", checked.name, " must be an object"));
  }
  if (absl::Status s = CheckArgs(checked.function.args, checked.args); !s.ok()) {
    return Prefixed(s, checked.name);
  }
  return checked;
}

absl::Status QueuedCalls::CheckScheduled(OpenTenant& tenant, std::string_view function,
                                         const Value& args) {
  // Only against the table already known: building it runs the tenant's
  // modules on the isolates, which a mutation (on one of them) must not wait
  // for. Then the call is checked when it runs.
  std::shared_ptr<const TenantFunctions> table = KnownFunctionsOf(tenant.name(), *tenant.Latest());
  if (table == nullptr) return absl::OkStatus();
  return Check(*table, tenant.name(), function, args).status();
}

absl::Status QueuedCalls::AdmitScheduled(OpenTenant& tenant,
                                         const std::vector<ScheduledCall>& calls) {
  return pending_cap_.Admit(tenant.name(), LoadOf(tenant.name(), calls));
}

void QueuedCalls::OnScheduled(OpenTenant& tenant, std::vector<ScheduledCall> calls) {
  // The caller holds `tenant`: if its name's open tenant is another one now, it was deleted
  // after the commit, outbox and all, and its calls go with it.
  absl::StatusOr<std::shared_ptr<OpenTenant>> from = tenants_.Get(tenant.name());
  if (!from.ok() || from->get() != &tenant) return;
  // Counted from their commit: they are the tenant's, queued or about to be.
  pending_cap_.Added(tenant.name(), LoadOf(tenant.name(), calls));
  MutexLock lock(&mu_);
  scheduled_.push_back({tenant.name(), std::move(calls), *std::move(from)});
  woken_ = true;
  cv_.SignalAll();
}

void QueuedCalls::OnCancelled(OpenTenant& tenant, std::vector<CallId> ids) {
  MutexLock lock(&mu_);
  for (const CallId& id : ids) cancelled_.emplace_back(id, tenant.name());
  woken_ = true;
  cv_.SignalAll();
}

void QueuedCalls::RemoveCancelled() {
  std::vector<std::pair<CallId, std::string>> cancelled;
  {
    MutexLock lock(&mu_);
    cancelled.swap(cancelled_);
  }
  if (cancelled.empty()) return;
  std::sort(cancelled.begin(), cancelled.end());
  cancelled.erase(std::unique(cancelled.begin(), cancelled.end()), cancelled.end());
  const absl::Time now = clock_.Now();
  // Their spilled arguments go with them: read each blob key first (a call's key never changes).
  std::vector<CallId> removed;
  std::vector<std::string> blobs;
  for (const auto& [id, tenant] : cancelled) {
    absl::StatusOr<std::optional<QueuedCall>> found = queue_->Find(id, now);
    // Only a queued call of the tenant whose record says cancelled leaves the queue: another
    // tenant's (an id whose tenant tag collides) runs, as its own records say. One not found
    // (not queued yet, or gone) or not read is left to its delivery, which finds the record.
    if (!found.ok() || !found->has_value() || (*found)->call.tenant != tenant) continue;
    const Call& call = (*found)->call;
    // The mutation's record names no function (the mutation cannot ask the queue), nor
    // a keyed call's arguments: completed here, so that ListCalls by function finds it and
    // the key's replay check knows what was asked. Left queued if that fails: delivered, it
    // is skipped.
    if (!CompleteCancelRecord(call).ok()) continue;
    removed.push_back(id);
    blobs.push_back(call.args_blob);
  }
  for (size_t from = 0; from < removed.size(); from += DurableQueue::kMaxLeaseBatch) {
    const size_t n = std::min(removed.size() - from, DurableQueue::kMaxLeaseBatch);
    RemoveWithBlobs(absl::MakeConstSpan(removed).subspan(from, n),
                    absl::MakeConstSpan(blobs).subspan(from, n), now);
  }
}

absl::Status QueuedCalls::CompleteCancelRecord(const Call& call) {
  TXFN_ASSIGN_OR_RETURN(std::shared_ptr<OpenTenant> tenant, tenants_.Get(call.tenant));
  TXFN_ASSIGN_OR_RETURN(const std::string digest, KeyedArgsDigestReading(call));
  auto complete = [&](Transaction& txn) -> absl::Status {
    const std::string key = call.id.Bytes();
    TXFN_ASSIGN_OR_RETURN(std::optional<std::string> existing,
                          txn.GetReserved(kCallRecordIndex, key));
    if (!existing.has_value()) return absl::OkStatus();
    TXFN_ASSIGN_OR_RETURN(CallRecord record, DecodeCallRecord(*existing));
    const bool adds_function = record.function.empty() && !call.function.empty();
    const bool adds_digest = record.args_digest.empty() && !digest.empty();
    if (record.state != CallState::kCancelled || (!adds_function && !adds_digest)) {
      return absl::OkStatus();
    }
    if (adds_function) record.function = call.function;
    if (adds_digest) record.args_digest = digest;
    return txn.PutReserved(kCallRecordIndex, key, EncodeCallRecord(record));
  };
  return tenant->CommitSystemTransaction(complete, RetryOptions{.max_attempts = 8}).status();
}

void QueuedCalls::RemoveCallsOf(std::string_view tenant) {
  const CallIdRange range = TenantCallIdRange(tenant);
  const DurableQueue::ListFilter filter{.tenant = std::string(tenant), .before = range.before};
  const absl::Time now = clock_.Now();
  for (CallId after = range.after;;) {
    absl::StatusOr<std::vector<QueuedCall>> page =
        queue_->ListCalls(after, DurableQueue::kMaxLeaseBatch, filter, now);
    if (!page.ok() || page->empty()) return;
    std::vector<CallId> waiting, dead, leased;
    std::vector<std::string> waiting_blobs, dead_blobs;
    for (const QueuedCall& q : *page) {
      switch (q.state) {
        case QueuedCall::State::kPending:
          waiting.push_back(q.call.id);
          waiting_blobs.push_back(q.call.args_blob);
          break;
        case QueuedCall::State::kDead:
          dead.push_back(q.call.id);
          dead_blobs.push_back(q.call.args_blob);
          break;
        case QueuedCall::State::kLeased:
          leased.push_back(q.call.id);
          break;
      }
    }
    if (!waiting.empty()) {
      // One not taken out was leased since the listing (or the queue failed): orphaned too.
      const std::vector<bool> gone = RemoveWithBlobs(waiting, waiting_blobs, now);
      for (size_t i = 0; i < waiting.size(); ++i) {
        if (!gone[i]) leased.push_back(waiting[i]);
      }
    }
    if (!leased.empty()) {
      MutexLock lock(&mu_);
      orphaned_.insert(leased.begin(), leased.end());
    }
    if (!dead.empty()) (void)RemoveDeadLettersWithBlobs(dead, dead_blobs, absl::InfiniteFuture());
    if (page->size() < DurableQueue::kMaxLeaseBatch) return;
    after = page->back().call.id;
  }
}

std::vector<bool> QueuedCalls::RemoveWithBlobs(absl::Span<const CallId> ids,
                                               absl::Span<const std::string> blobs,
                                               absl::Time now) {
  std::vector<bool> gone(ids.size(), false);
  // A failure leaves the calls queued: delivered, they find their records and are skipped.
  absl::StatusOr<std::vector<absl::Status>> removed = queue_->RemovePending(ids, now);
  // One whose outcome is unknown may have taken them out: asked again, the queue answers
  // NotFound for those, and their arguments go too (a call out of the queue needs none).
  const bool maybe_removed = !removed.ok() && IsCommitOutcomeUnknown(removed.status());
  if (maybe_removed) removed = queue_->RemovePending(ids, now);
  if (!removed.ok()) return gone;
  for (size_t i = 0; i < ids.size(); ++i) {
    gone[i] = (*removed)[i].ok() || (maybe_removed && absl::IsNotFound((*removed)[i]));
    if (gone[i] && options_.blobs != nullptr && !blobs[i].empty()) {
      (void)options_.blobs->Delete(blobs[i]);
    }
  }
  return gone;
}

absl::StatusOr<uint64_t> QueuedCalls::RemoveDeadLettersWithBlobs(
    absl::Span<const CallId> ids, absl::Span<const std::string> blobs, absl::Time dead_before) {
  absl::StatusOr<std::vector<absl::Status>> removed = queue_->RemoveDeadLetters(ids, dead_before);
  if (!removed.ok()) return removed.status();
  uint64_t n = 0;
  for (size_t i = 0; i < ids.size(); ++i) {
    if (!(*removed)[i].ok()) continue;  // redriven, or removed by another process
    ++n;
    if (options_.blobs != nullptr && !blobs[i].empty()) (void)options_.blobs->Delete(blobs[i]);
  }
  return n;
}

void QueuedCalls::EnqueueScheduled() {
  std::vector<Scheduled> batches;
  {
    MutexLock lock(&mu_);
    batches.swap(scheduled_);
  }
  if (batches.empty()) return;
  const absl::Time now = clock_.Now();
  std::vector<Call> calls;
  // The batches again, as queued (their start times fixed), to put back if Enqueue fails.
  std::vector<Scheduled> again;
  for (Scheduled& batch : batches) {
    absl::StatusOr<std::shared_ptr<OpenTenant>> open = tenants_.Get(batch.tenant);
    // Deleted (and maybe created again): its outbox went with it.
    if (!open.ok() || (batch.from != nullptr && *open != batch.from)) continue;
    again.push_back({batch.tenant, {}, batch.from != nullptr ? batch.from : *open});
    for (ScheduledCall& s : batch.calls) {
      const std::string name = CanonicalFunctionName(s.function);
      // An unknown function still runs (and fails, recorded): the call
      // committed, so its id must lead somewhere.
      absl::StatusOr<TenantFunctions::Function> f = Lookup(**open, name);
      const FunctionAttributes attributes = f.ok() ? f->attributes : FunctionAttributes{};
      CallOptions options;
      options.start_after = s.at.value_or(now + s.delay.value_or(absl::ZeroDuration()));
      // A runAt in the past runs now, with its whole deadline window.
      Call call = MakeCall(batch.tenant, name, std::move(s.args), attributes, options, now);
      if (call.start_after < now) {
        call.start_after = now;
        call.deadline = now + attributes.deadline;
      }
      call.id = s.id;
      again.back().calls.push_back(ScheduledCall{
          .id = call.id, .function = call.function, .args = call.args, .at = call.start_after});
      calls.push_back(std::move(call));
    }
  }
  const size_t n = calls.size();
  if (absl::Status s = Enqueue(std::move(calls)); !s.ok()) {
    // They stay in the outboxes (the next start would enqueue them); try
    // again on the loop's next round.
    MutexLock lock(&mu_);
    for (Scheduled& batch : again) scheduled_.push_back(std::move(batch));
    return;
  }
  // A tenant deleted while they were written: DeleteTenant may have looked through the queue
  // before they were in it. One deleted after this look finds them there.
  std::map<std::string, std::vector<CallId>> enqueued;
  for (const Scheduled& batch : again) {
    std::vector<CallId> ids;
    for (const ScheduledCall& c : batch.calls) ids.push_back(c.id);
    if (Gone(*batch.from)) {
      RemoveEnqueued(ids);
    } else {
      std::vector<CallId>& out = enqueued[batch.tenant];
      out.insert(out.end(), ids.begin(), ids.end());
    }
  }
  MutexLock lock(&mu_);
  stats_.scheduled += n;
  for (auto& [tenant, ids] : enqueued) {
    std::vector<CallId>& out = enqueued_outbox_[tenant];
    out.insert(out.end(), ids.begin(), ids.end());
  }
}

bool QueuedCalls::Gone(const OpenTenant& from) {
  absl::StatusOr<std::shared_ptr<OpenTenant>> now = tenants_.Get(from.name());
  return now.ok() ? now->get() != &from : absl::IsNotFound(now.status());
}

void QueuedCalls::RemoveEnqueued(absl::Span<const CallId> ids) {
  const absl::Time now = clock_.Now();
  std::vector<CallId> found;
  std::vector<std::string> blobs;
  for (const CallId& id : ids) {
    absl::StatusOr<std::optional<QueuedCall>> queued = queue_->Find(id, now);
    if (!queued.ok() || !queued->has_value()) continue;
    found.push_back(id);
    blobs.push_back((*queued)->call.args_blob);
  }
  const std::vector<bool> gone = RemoveWithBlobs(found, blobs, now);
  // Leased meanwhile (or an error): ended when its run does.
  MutexLock lock(&mu_);
  for (size_t i = 0; i < found.size(); ++i) {
    if (!gone[i]) orphaned_.insert(found[i]);
  }
}

void QueuedCalls::RecoverOutboxes(absl::Span<const std::string> tenants, absl::Duration min_age) {
  const absl::Time committed_by = clock_.Now() - min_age;
  for (const std::string& tenant : tenants) {
    absl::StatusOr<std::vector<IndexEntry>> entries =
        ScanNewest(*tenants_.storage(), tenant, kCallOutboxIndex);
    if (!entries.ok()) continue;               // what was young stays so for the next pass
    absl::flat_hash_set<CallId> young_before;  // the entries young at this tenant's last pass
    {
      MutexLock lock(&mu_);
      if (auto it = young_outbox_.find(tenant); it != young_outbox_.end()) {
        young_before = std::move(it->second);
        young_outbox_.erase(it);
      }
    }
    if (entries->empty()) continue;
    std::vector<ScheduledCall> calls;
    absl::flat_hash_set<CallId> young;
    for (const IndexEntry& e : *entries) {
      absl::StatusOr<CallId> id = CallId::FromBytes(e.key);
      if (!id.ok()) continue;
      // Young by its commit time, unless it was so a pass ago too: then its writer is gone,
      // whatever the clocks say (a writer's clock ahead of this one, or this one set back).
      if (min_age > absl::ZeroDuration() &&
          absl::FromUnixNanos(static_cast<int64_t>(e.ts)) > committed_by &&
          !young_before.contains(*id)) {
        young.insert(*id);
        continue;
      }
      absl::StatusOr<ScheduledCall> call = DecodeScheduledCall(e.value);
      if (!call.ok()) continue;
      call->id = *id;
      calls.push_back(*std::move(call));
    }
    // The tenant they are for (the one whose outbox was just read, unless it was deleted and
    // created again in the microseconds between).
    std::shared_ptr<OpenTenant> from;
    if (!calls.empty()) {
      absl::StatusOr<std::shared_ptr<OpenTenant>> open = tenants_.Get(tenant);
      if (open.ok()) from = *std::move(open);
    }
    MutexLock lock(&mu_);
    if (!young.empty()) young_outbox_[tenant] = std::move(young);
    if (from != nullptr) scheduled_.push_back({tenant, std::move(calls), std::move(from)});
  }
}

bool QueuedCalls::Stopping() {
  MutexLock lock(&mu_);
  return stop_;
}

void QueuedCalls::PruneRecords(absl::Span<const std::string> tenants) {
  const absl::Time cutoff = clock_.Now() - options_.record_retention;
  auto expired = [&](const IndexEntry& e) {
    absl::StatusOr<CallRecord> record = DecodeCallRecord(e.value);
    return record.ok() && record->finished < cutoff;
  };
  // A call the queue still holds keeps its record: that record is what ends its deliveries (a
  // cancelled call another process queued after the cancel, a call whose settlement keeps
  // failing), and without it the call would run.
  auto expired_and_not_queued = [&](const IndexEntry& e) {
    if (!expired(e)) return false;
    absl::StatusOr<CallId> id = CallId::FromBytes(e.key);
    if (!id.ok()) return false;
    absl::StatusOr<std::optional<QueuedCall>> queued = queue_->Find(*id, clock_.Now());
    return queued.ok() && !queued->has_value();
  };
  for (const std::string& tenant : tenants) {
    // On an error what was deleted stays deleted; the next pass tries again.
    uint64_t deleted = 0;
    (void)PruneReservedIndex(
        tenants_, tenant, kCallRecordIndex, expired_and_not_queued, expired,
        [this] { return Stopping(); }, &deleted, kRecordsPerDelete);
    if (deleted > 0) {
      MutexLock lock(&mu_);
      stats_.records_pruned += deleted;
    }
  }
}

std::optional<CallId> QueuedCalls::PruneDeadLetters(CallId after) {
  // A page a round: the loop's other work goes on between pages.
  constexpr size_t kPage = 1000;
  absl::StatusOr<std::vector<DeadLetter>> page = queue_->ListDeadLetters(after, kPage);
  if (!page.ok() || page->empty()) return std::nullopt;  // an error: the next pass tries again
  const absl::Time cutoff = clock_.Now() - options_.dead_letter_retention;
  std::vector<CallId> expired;
  std::vector<std::string> blobs;
  for (const DeadLetter& d : *page) {
    if (d.at >= cutoff) continue;
    expired.push_back(d.call.id);
    blobs.push_back(d.call.args_blob);
  }
  if (!expired.empty()) {
    // Only those still dead from before the cutoff: one redriven and dead-lettered again since
    // the listing is a new dead letter.
    absl::StatusOr<uint64_t> removed = RemoveDeadLettersWithBlobs(expired, blobs, cutoff);
    if (absl::IsUnimplemented(removed.status())) {
      dead_letters_unremovable_ = true;  // an adapter without it: no more passes
      return std::nullopt;
    }
    MutexLock lock(&mu_);
    stats_.dead_letters_pruned += removed.value_or(0);
  }
  if (page->size() < kPage) return std::nullopt;
  return page->back().call.id;
}

void QueuedCalls::CleanOutboxes() {
  std::map<std::string, std::vector<CallId>> done;
  {
    MutexLock lock(&mu_);
    done.swap(enqueued_outbox_);
  }
  for (auto& [tenant, ids] : done) {
    absl::StatusOr<std::shared_ptr<OpenTenant>> open = tenants_.Get(tenant);
    if (!open.ok()) continue;
    PreparedCommit commit{.tenant = tenant, .begin_ts = (*open)->Latest()->ts()};
    std::sort(ids.begin(), ids.end());
    ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
    // Blind deletes: they conflict with nothing (a cancel that read the entry
    // conflicts with them and runs again).
    for (const CallId& id : ids) {
      commit.writes.push_back(
          {.index = kCallOutboxIndex, .key = id.Bytes(), .value = std::nullopt});
    }
    // On failure the entries stay: enqueued again at the next start, which
    // changes nothing (the queue or the call's record knows them). Entries another process
    // left (RecoverOutboxes) are of a tenant this one may not hold: it is given back.
    const internal::UnheldTenantWrite unheld(*tenants_.storage(), tenant);
    (void)(*open)->Commit(std::move(commit), CommitIntent(), BatchHold::kNever);
  }
}

// ---- Running ----------------------------------------------------------------

absl::StatusOr<bool> QueuedCalls::EndsDelivery(const CallId& id, const CallRecord& record) {
  if (record.state != CallState::kDeadLettered) return true;
  absl::StatusOr<std::optional<QueuedCall>> queued = queue_->Find(id, clock_.Now());
  if (absl::IsUnimplemented(queued.status())) return true;
  if (!queued.ok()) {  // the delivery is retried, whatever the queue's code
    return absl::UnavailableError(
        StrCat("looking call ", id.ToString(), " up in the queue: ", queued.status().ToString()));
  }
  // Ended by this dead letter's record; an earlier one's (put back, then dead-lettered again
  // unreported) lets the late outcome land, as a first dead letter unreported does.
  return !queued->has_value() ||
         ((*queued)->state == QueuedCall::State::kDead && RecordsThisDeadLetter(record, **queued));
}

absl::StatusOr<bool> QueuedCalls::HasEnded(OpenTenant& tenant, const CallId& id) {
  TXFN_ASSIGN_OR_RETURN(std::optional<CallRecord> record, FindCallRecord(*tenant.Latest(), id));
  if (!record.has_value()) return false;
  return EndsDelivery(id, *record);
}

absl::StatusOr<bool> QueuedCalls::WriteRecord(OpenTenant& tenant, const CallId& id,
                                              const CallRecord& record) {
  // The record is read and written at one snapshot: one there already (a
  // cancel committed while the call ran) stays, and one committed after the
  // snapshot makes this commit conflict (AddCallRecord reads the key).
  std::shared_ptr<const Snapshot> snapshot = tenant.Latest();
  TXFN_ASSIGN_OR_RETURN(std::optional<CallRecord> existing, FindCallRecord(*snapshot, id));
  if (existing.has_value()) {
    TXFN_ASSIGN_OR_RETURN(const bool ends, EndsDelivery(id, *existing));
    if (ends) return false;
  }
  PreparedCommit commit{.tenant = tenant.name(), .begin_ts = snapshot->ts()};
  TXFN_RETURN_IF_ERROR(AddCallRecord(id, record, &commit));
  absl::StatusOr<Timestamp> ts =
      tenant.Commit(std::move(commit), CommitIntent(), BatchHold::kNever);
  if (ts.ok()) return true;
  // Aborted: another record of the call committed first (a cancel, another
  // delivery); the call has ended either way.
  if (absl::IsAborted(ts.status())) return false;
  return ts.status();
}

CallOutcome QueuedCalls::Failed(OpenTenant& tenant, const Call& call, const absl::Status& status,
                                bool synchronous, FunctionKind kind) {
  if (Ended(status)) {
    SetStat(&QueuedCallStats::skipped);
    return CallOutcome::Ok();
  }
  switch (Classify(status, synchronous, /*waits=*/kind == FunctionKind::kAction, call.attempt)) {
    case Failure::kBusy:
      SetStat(&QueuedCallStats::busy);
      return CallOutcome::Busy(status, options_.busy_retry);
    case Failure::kUnavailable:
      SetStat(&QueuedCallStats::unavailable);
      return CallOutcome::Busy(status, options_.unavailable_retry);
    case Failure::kRetry:
      // Refused by the pending caps on its last attempt, a call ends failed, not dead-lettered:
      // a dead letter keeps its arguments and leaves room under the caps, so a chain the caps
      // refused grew its dead letters instead (585 MB in 6 minutes in a hunt, 2026-12-06).
      if (!IsPendingCapRefusal(status) || call.attempt + 1 < call.retry.max_attempts) {
        return CallOutcome::Retryable(status);
      }
      break;
    case Failure::kFunction:
      break;
  }
  absl::StatusOr<bool> written = WriteRecord(tenant, call.id,
                                             CallRecord{.state = CallState::kFailed,
                                                        .function = call.function,
                                                        .error = RecordedError(status),
                                                        .finished = clock_.Now(),
                                                        .attempts = call.attempt + 1,
                                                        .args_digest = KeyedArgsDigest(call)});
  if (absl::IsNotFound(written.status())) {
    SetStat(&QueuedCallStats::failed);
    return CallOutcome::Permanent(written.status());  // tenant deleted
  }
  if (!written.ok()) return Unrecorded(written.status(), kind);
  SetStat(*written ? &QueuedCallStats::failed : &QueuedCallStats::skipped);
  return CallOutcome::Ok();
}

CallOutcome QueuedCalls::Unrecorded(const absl::Status& written, FunctionKind kind) {
  // A mutation's failure is not this delivery's infrastructure failure: counted as one, a
  // mutation that threw on a server not owning its tenant was dead-lettered "attempts
  // exhausted ... not owned" instead of recorded failed (a history check). Given back, it
  // runs again as a mutation that commits does (refused at its commit until the owner lets
  // go). A query's or an action's run costs more and an action's has effects: those count.
  if (kind == FunctionKind::kMutation && IsTenantOwnedElsewhere(written)) {
    SetStat(&QueuedCallStats::unavailable);
    return CallOutcome::Busy(written, options_.unavailable_retry);
  }
  return CallOutcome::Retryable(written);
}

CallOutcome QueuedCalls::Succeeded(OpenTenant& tenant, const Call& call, const Value& result,
                                   absl::Duration cpu) {
  absl::StatusOr<bool> written =
      WriteRecord(tenant, call.id,
                  SucceededRecord(CallRecord{.function = call.function,
                                             .finished = clock_.Now(),
                                             .attempts = call.attempt + 1,
                                             .args_digest = KeyedArgsDigest(call)},
                                  result, options_.max_recorded_result_bytes));
  if (!written.ok()) return CallOutcome::Retryable(written.status());
  SetStat(*written ? &QueuedCallStats::succeeded : &QueuedCallStats::skipped);
  return CallOutcome::Ok(cpu);
}

void QueuedCalls::ReportLogs(const Call& call, std::vector<LogEntry> logs) {
  if (!options_.on_logs || logs.empty()) return;
  uint64_t dropped = 0;
  logs = log_budgets_.Pass(call.tenant, call.function, std::move(logs), clock_.Now(), &dropped);
  if (dropped > 0) {
    MutexLock lock(&mu_);
    stats_.log_lines_dropped += dropped;
  }
  if (logs.empty()) return;
  options_.on_logs(QueuedCallLogs{.tenant = call.tenant,
                                  .function = call.function,
                                  .id = call.id,
                                  .attempt = call.attempt,
                                  .logs = std::move(logs)});
}

void QueuedCalls::StartCall(const Call& call, Worker::Done done) {
  bool orphaned;
  {
    MutexLock lock(&mu_);
    orphaned = orphaned_.erase(call.id) > 0;
  }
  absl::StatusOr<std::shared_ptr<OpenTenant>> opened =
      orphaned ? absl::NotFoundError("deleted") : tenants_.Get(call.tenant);
  if (!opened.ok()) {
    if (absl::IsNotFound(opened.status())) {
      // Its tenant was deleted: it goes too (acknowledged), rather than wait as a dead letter
      // for a tenant created again under the name.
      SetStat(&QueuedCallStats::failed);
      std::move(done)(CallOutcome::Ok());
    } else {
      SetStat(&QueuedCallStats::retried);
      std::move(done)(CallOutcome::Retryable(opened.status()));
    }
    return;
  }
  std::shared_ptr<OpenTenant> tenant = *std::move(opened);
  {
    MutexLock lock(&mu_);
    ++in_flight_;
  }
  // Ends the delivery once: the outcome to the scheduler (`done` may call
  // Wake: never under mu_), then the count.
  auto finish = [this, id = call.id, done = std::move(done)](CallOutcome outcome) mutable {
    bool orphaned;
    {
      MutexLock lock(&mu_);
      orphaned = orphaned_.erase(id) > 0;
    }
    if (orphaned && outcome.kind != CallOutcome::Kind::kOk) {
      // Its tenant was deleted as it ran: not retried (nor dead-lettered) into another.
      SetStat(&QueuedCallStats::failed);
      outcome = CallOutcome::Ok(outcome.cpu);
    }
    if (outcome.kind == CallOutcome::Kind::kRetryable ||
        outcome.kind == CallOutcome::Kind::kBackPressure) {
      SetStat(&QueuedCallStats::retried);
    }
    std::move(done)(std::move(outcome));
    MutexLock lock(&mu_);
    --in_flight_;
    woken_ = true;
    cv_.SignalAll();
  };

  absl::StatusOr<TenantFunctions::Function> function = Lookup(*tenant, call.function);
  if (!function.ok()) {
    // No function ran: the kind does not matter (NotFound is the call's failure).
    finish(Failed(*tenant, call, function.status(), /*synchronous=*/false, FunctionKind::kAction));
    return;
  }
  // An action starts only if an action isolate can run it now. Waiting in their queue it held
  // one of the calls' slots (and one of its tenant's) for as long as the actions ahead of it
  // ran, up to their 30 s wall-clock limit each: two tenants' long actions held every slot,
  // and no other tenant's call ran, not even a mutation (a hostile-tenant hunt). Given back
  // unstarted instead, as when the isolates' queue is full: not an attempt. Only its own
  // tenant's actions count, besides every isolate being busy: one tenant's action waiting at
  // its cap must not turn away another tenant's that an idle isolate would run.
  // Of the tenants whose actions wait so, the one running fewest, then the one whose last
  // action started longest ago, goes first.
  if (function->kind == FunctionKind::kAction && !ActionMayStart(call.tenant)) {
    SetStat(&QueuedCallStats::busy);
    finish(
        CallOutcome::Busy(absl::ResourceExhaustedError("no action isolate can run the action now"),
                          options_.busy_retry));
    return;
  }
  SetStat(&QueuedCallStats::ran);
  switch (function->kind) {
    case FunctionKind::kMutation: {
      auto shared_finish = std::make_shared<decltype(finish)>(std::move(finish));
      MutationOptions options;
      options.completion = std::make_shared<const Record>(this, call, clock_);
      absl::Status submitted = calls_.MutationAsync(
          tenant, call.function, call.args, options,
          [this, tenant, call, shared_finish](absl::StatusOr<CallResult> r) {
            ReportLogs(call, r.ok() ? std::move(r->logs) : FailedCallLogs(r.status()));
            if (r.ok()) {
              SetStat(r->replayed ? &QueuedCallStats::skipped : &QueuedCallStats::succeeded);
              (*shared_finish)(CallOutcome::Ok(r->stats.cpu_time));
            } else {
              (*shared_finish)(Failed(*tenant, call, r.status(), /*synchronous=*/false,
                                      FunctionKind::kMutation));
            }
          });
      if (!submitted.ok()) {
        (*shared_finish)(
            Failed(*tenant, call, submitted, /*synchronous=*/true, FunctionKind::kMutation));
      }
      return;
    }
    case FunctionKind::kQuery: {
      absl::StatusOr<bool> ended = HasEnded(*tenant, call.id);
      if (!ended.ok() || *ended) {
        if (ended.ok()) SetStat(&QueuedCallStats::skipped);  // else counted as a retry
        finish(ended.ok() ? CallOutcome::Ok() : CallOutcome::Retryable(ended.status()));
        return;
      }
      auto shared_finish = std::make_shared<decltype(finish)>(std::move(finish));
      absl::Status submitted = calls_.QueryAsync(
          tenant, call.function, call.args,
          [this, tenant, call, shared_finish](absl::StatusOr<CallResult> r) {
            ReportLogs(call, r.ok() ? std::move(r->logs) : FailedCallLogs(r.status()));
            if (!r.ok()) {
              (*shared_finish)(
                  Failed(*tenant, call, r.status(), /*synchronous=*/false, FunctionKind::kQuery));
              return;
            }
            (*shared_finish)(Succeeded(*tenant, call, r->value, r->stats.cpu_time));
          });
      if (!submitted.ok()) {
        (*shared_finish)(
            Failed(*tenant, call, submitted, /*synchronous=*/true, FunctionKind::kQuery));
      }
      return;
    }
    case FunctionKind::kAction:
      RunQueuedAction(tenant, call, *function, std::move(finish));
      return;
  }
}

bool QueuedCalls::ActionMayStart(const std::string& tenant) {
  const IsolateSchedulerStats actions = action_scheduler_->stats();
  const auto own = actions.in_flight.find(tenant);
  const bool can_run =
      actions.busy_isolates < ActionWorkers(options_.actions) &&
      (own == actions.in_flight.end() || own->second < ActionsRunningPerTenant(options_.actions));
  const absl::Time now = clock_.Now();
  // Waiting: given back within a few of its offers' intervals.
  const absl::Duration window = std::max(4 * options_.busy_retry, absl::Milliseconds(200));
  MutexLock lock(&mu_);
  const bool may_start =
      can_run && !AnotherTenantsTurn(tenant, action_turns_, actions.in_flight, now, window);
  ActionTurn& turn = action_turns_[tenant];
  (may_start ? turn.last_started : turn.last_refused) = now;
  PruneWhenDoubled(action_turns_, action_turns_kept_, [now](const ActionTurn& idle) {
    return now - std::max(idle.last_started, idle.last_refused) > absl::Minutes(1);
  });
  return may_start;
}

void QueuedCalls::RunQueuedAction(const std::shared_ptr<OpenTenant>& tenant, const Call& call,
                                  const TenantFunctions::Function& function,
                                  absl::AnyInvocable<void(CallOutcome) &&> finish) {
  absl::StatusOr<bool> ended = HasEnded(*tenant, call.id);
  if (!ended.ok() || *ended) {
    if (ended.ok()) SetStat(&QueuedCallStats::skipped);  // else counted as a retry
    std::move(finish)(ended.ok() ? CallOutcome::Ok() : CallOutcome::Retryable(ended.status()));
    return;
  }
  auto host = std::make_shared<Host>(this, tenant->name(), call.function,
                                     function.attributes.services, /*queued=*/true);
  absl::BitGen bits;
  RunRequest request{.function = call.function,
                     .args = call.args,
                     .kind = FunctionKind::kAction,
                     .seed = absl::Uniform<uint64_t>(bits),
                     .action_host = host};
  auto shared_finish =
      std::make_shared<absl::AnyInvocable<void(CallOutcome) &&>>(std::move(finish));
  absl::Status submitted = action_runner_->RunAsync(
      tenant->Latest(), std::move(request), [this, tenant, call, host, shared_finish](RunResult r) {
        ReportLogs(call, std::move(r.logs));
        if (host->gave_up()) {  // unfinished, however it ended: no record
          std::move (*shared_finish)(CallOutcome::Retryable(absl::UnavailableError(
              StrCat("action ", call.function, " was given up when the engine stopped"))));
          return;
        }
        if (!r.status.ok()) {
          const std::string service = host->back_pressure();
          if (!service.empty()) {
            std::move (*shared_finish)(CallOutcome::BackPressure(service, r.status));
          } else {
            std::move (*shared_finish)(
                Failed(*tenant, call, r.status, /*synchronous=*/false, FunctionKind::kAction));
          }
          return;
        }
        std::move (*shared_finish)(Succeeded(*tenant, call, r.value, r.stats.cpu_time));
      });
  if (!submitted.ok()) {
    std::move (*shared_finish)(
        Failed(*tenant, call, submitted, /*synchronous=*/true, FunctionKind::kAction));
  }
}

absl::StatusOr<CallResult> QueuedCalls::Action(std::string_view tenant, std::string_view function,
                                               const Value& args) {
  TXFN_ASSIGN_OR_RETURN(std::shared_ptr<OpenTenant> open, tenants_.Get(tenant));
  const std::string name = CanonicalFunctionName(function);
  TXFN_ASSIGN_OR_RETURN(TenantFunctions::Function f, Lookup(*open, name));
  if (f.kind != FunctionKind::kAction) {
    return KindMismatchError(name, f.kind, FunctionKind::kAction);
  }
  std::shared_ptr<const Snapshot> snapshot = open->Latest();
  TXFN_RETURN_IF_ERROR(CheckEnabled(*open, *snapshot));
  absl::BitGen bits;
  RunResult r = action_runner_->Run(
      snapshot, RunRequest{.function = name,
                           .args = args,
                           .kind = FunctionKind::kAction,
                           .seed = absl::Uniform<uint64_t>(bits),
                           .action_host = std::make_shared<Host>(
                               this, open->name(), name, f.attributes.services, /*queued=*/false)});
  if (!r.status.ok()) return std::move(r.status);
  return CallResult{.value = std::move(r.value),
                    .ts = snapshot->ts(),
                    .logs = std::move(r.logs),
                    .stats = r.stats};
}

// ---- Looking calls up -------------------------------------------------------

bool QueuedCalls::Superseded(const Located& where) {
  return where.record.has_value() && where.record->state == CallState::kDeadLettered &&
         where.queued.has_value() &&
         (where.queued->state != QueuedCall::State::kDead ||
          !RecordsThisDeadLetter(*where.record, *where.queued));
}

void QueuedCalls::RecordDeadLetters(OpenTenant& tenant, absl::Span<Located> where) {
  // An engine that only submits and looks (run = false, beside a server) writes nothing for a
  // look: on PostgreSQL a write takes an idle tenant's lease from the server.
  if (!options_.run) return;
  std::vector<Located*> dead;
  for (Located& w : where) {
    if (w.queued.has_value() && w.queued->state == QueuedCall::State::kDead &&
        (!w.record.has_value() || Superseded(w))) {
      dead.push_back(&w);
    }
  }
  if (dead.empty()) return;
  std::vector<std::string> digests;  // read before the transaction, which may run again
  digests.reserve(dead.size());
  for (const Located* d : dead) {
    absl::StatusOr<std::string> digest = KeyedArgsDigestReading(d->queued->call);
    digests.push_back(digest.ok() ? *std::move(digest) : std::string());
  }
  std::vector<CallRecord> records(dead.size());
  absl::StatusOr<CommitOutcome> committed = tenant.CommitSystemTransaction(
      [&](Transaction& txn) -> absl::Status {
        for (size_t i = 0; i < dead.size(); ++i) {
          const QueuedCall& q = *dead[i]->queued;
          const std::string key = q.call.id.Bytes();
          TXFN_ASSIGN_OR_RETURN(std::optional<std::string> existing,
                                txn.GetReserved(kCallRecordIndex, key));
          if (existing.has_value()) {
            // Its late delivery committed first (that record stays), or this dead letter is
            // recorded already. An earlier dead letter's record is replaced: a delivery
            // running since Redrive read it, and must conflict.
            TXFN_ASSIGN_OR_RETURN(records[i], DecodeCallRecord(*existing));
            if (records[i].state != CallState::kDeadLettered ||
                RecordsThisDeadLetter(records[i], q)) {
              continue;
            }
          }
          records[i] = CallRecord{.state = CallState::kDeadLettered,
                                  .function = q.call.function,
                                  .error = absl::FailedPreconditionError(q.reason),
                                  .finished = q.at,
                                  .attempts = q.call.attempt,
                                  // Unread, an earlier dead letter's (the same call's) stays.
                                  .args_digest = digests[i].empty() && existing.has_value()
                                                     ? records[i].args_digest
                                                     : digests[i]};
          TXFN_RETURN_IF_ERROR(
              txn.PutReserved(kCallRecordIndex, key, EncodeCallRecord(records[i])));
        }
        return absl::OkStatus();
      },
      RetryOptions{.max_attempts = 8});
  // Not recorded (the storage failed, or another instance owns the tenant): the queue's view
  // is reported as it is, as before records of dead letters existed.
  if (!committed.ok()) return;
  for (size_t i = 0; i < dead.size(); ++i) dead[i]->record = std::move(records[i]);
}

absl::StatusOr<QueuedCalls::Located> QueuedCalls::Locate(const CallId& id,
                                                         std::string_view tenant) {
  Located where;
  absl::StatusOr<std::optional<QueuedCall>> queued = queue_->Find(id, clock_.Now());
  if (queued.ok()) {
    where.queued = *std::move(queued);
  } else if (!absl::IsUnimplemented(queued.status())) {
    return queued.status();
  }
  if (where.queued.has_value() && !tenant.empty() && where.queued->call.tenant != tenant) {
    where.queued.reset();
  }
  std::vector<std::string> candidates;
  if (where.queued.has_value()) {
    candidates.push_back(where.queued->call.tenant);
  } else if (!tenant.empty()) {
    candidates.emplace_back(tenant);
  } else {
    TXFN_ASSIGN_OR_RETURN(std::vector<std::string> tenants, tenants_.storage()->ListTenants());
    for (std::string& t : tenants) {
      if (TenantTag(t) == TenantTagOf(id)) candidates.push_back(std::move(t));
    }
  }
  for (const std::string& name : candidates) {
    absl::StatusOr<std::shared_ptr<OpenTenant>> open = tenants_.Get(name);
    if (!open.ok()) continue;
    std::shared_ptr<const Snapshot> snapshot = (*open)->Latest();
    TXFN_ASSIGN_OR_RETURN(where.record, FindCallRecord(*snapshot, id));
    if (!where.record.has_value()) {
      TXFN_ASSIGN_OR_RETURN(std::optional<IndexEntry> entry,
                            snapshot->Get(kCallOutboxIndex, id.Bytes()));
      if (entry.has_value()) {
        TXFN_ASSIGN_OR_RETURN(ScheduledCall s, DecodeScheduledCall(entry->value));
        s.id = id;
        where.outbox = std::move(s);
      }
    }
    if (where.queued.has_value() || where.record.has_value() || where.outbox.has_value()) {
      where.tenant = *std::move(open);
      RecordDeadLetters(*where.tenant, {&where, 1});
      return where;
    }
  }
  return absl::NotFoundError(
      StrCat("no call ", id.ToString(), tenant.empty() ? "" : " of tenant ", tenant));
}

absl::StatusOr<CallInfo> QueuedCalls::InfoOf(const CallId& id, const Located& where) {
  CallInfo info{.id = id, .tenant = where.tenant->name(), .deadline = absl::InfinitePast()};
  if (where.queued.has_value()) {
    const QueuedCall& q = *where.queued;
    info.function = q.call.function;
    info.attempts = q.call.attempt;
    info.deadline = q.call.deadline;
    info.at = q.at;
    switch (q.state) {
      case QueuedCall::State::kPending:
        info.state = CallState::kPending;
        break;
      case QueuedCall::State::kLeased:
        info.state = CallState::kRunning;
        break;
      case QueuedCall::State::kDead:
        info.state = CallState::kDeadLettered;
        info.error = absl::FailedPreconditionError(q.reason);
        break;
    }
  }
  // How it ended wins over the queue's view, but for a dead letter's record it supersedes.
  if (where.record.has_value() && !Superseded(where)) {
    const CallRecord& r = *where.record;
    info.function = r.function.empty() ? info.function : r.function;
    info.state = r.state;
    info.result = r.result;
    info.result_dropped_bytes = r.result_dropped_bytes;
    info.error = r.error;
    info.attempts = std::max(info.attempts, r.attempts);
    info.at = r.finished;
  } else if (!where.queued.has_value() && where.outbox.has_value()) {
    info.function = CanonicalFunctionName(where.outbox->function);  // as written in the JS
    info.state = CallState::kPending;
  }
  return info;
}

absl::StatusOr<CallInfo> QueuedCalls::GetCall(const CallId& id, std::string_view of_tenant) {
  TXFN_ASSIGN_OR_RETURN(Located where, Locate(id, of_tenant));
  return InfoOf(id, where);
}

absl::Status QueuedCalls::CancelCall(const CallId& id, std::string_view of_tenant) {
  TXFN_ASSIGN_OR_RETURN(Located where, Locate(id, of_tenant));
  if (where.queued.has_value() && where.queued->state == QueuedCall::State::kDead &&
      !where.record.has_value()) {
    return absl::FailedPreconditionError(
        StrCat("call ", id.ToString(), " was dead-lettered: ", where.queued->reason));
  }
  // A dead letter Redrive put back is cancelled over its dead letter's record.
  const bool redriven = Superseded(where) && where.queued->state != QueuedCall::State::kDead;
  std::string function;
  std::string args_digest;
  if (where.queued.has_value()) {
    function = where.queued->call.function;
    TXFN_ASSIGN_OR_RETURN(args_digest, KeyedArgsDigestReading(where.queued->call));
  }
  std::optional<CallRecord> existing;
  auto cancel = [&](Transaction& txn) -> absl::Status {
    // Only the dead letter Locate saw put back (not one of it dead-lettered again since).
    bool replace = false;
    if (redriven) {
      TXFN_ASSIGN_OR_RETURN(std::optional<std::string> now_there,
                            txn.GetReserved(kCallRecordIndex, id.Bytes()));
      if (now_there.has_value()) {
        TXFN_ASSIGN_OR_RETURN(CallRecord r, DecodeCallRecord(*now_there));
        replace = r == *where.record;
      }
    }
    TXFN_ASSIGN_OR_RETURN(
        existing, CancelCallInTransaction(txn, id, clock_.Now(), replace, function, args_digest));
    return absl::OkStatus();
  };
  TXFN_RETURN_IF_ERROR(
      where.tenant->CommitSystemTransaction(cancel, RetryOptions{.max_attempts = 8}).status());
  if (existing.has_value()) {
    return absl::FailedPreconditionError(
        StrCat("call ", id.ToString(), " already ", CallStateName(existing->state)));
  }
  // Cancelled. A call still waiting in the queue leaves it now, with its spilled arguments,
  // instead of waiting to be delivered and skipped. One leased meanwhile (its holder skips it,
  // finding the record), or a queue that cannot remove calls, is left to that path.
  if (where.queued.has_value() && where.queued->state != QueuedCall::State::kDead) {
    RemoveWithBlobs({&id, 1}, {&where.queued->call.args_blob, 1}, clock_.Now());
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<CallInfo>> QueuedCalls::ListCalls(std::string_view tenant,
                                                             std::optional<CallState> state,
                                                             std::string_view function,
                                                             size_t limit, const CallId& after) {
  TXFN_ASSIGN_OR_RETURN(std::shared_ptr<OpenTenant> open, tenants_.Get(tenant));
  std::vector<CallInfo> out;
  if (limit == 0) return out;
  const std::string wanted = function.empty() ? "" : CanonicalFunctionName(function);
  auto matches = [&](const CallInfo& info) {
    return (!state.has_value() || info.state == *state) &&
           (wanted.empty() || info.function == wanted);
  };
  // Three streams in id order, merged: the tenant's records (how calls ended), the queue's
  // calls of the tenant, and the tenant's outbox (calls its mutations scheduled, committed and
  // not yet queued: pending, as GetCall says). Each is read a page at a time, pages growing
  // from about `limit` to kListPage, so that a short listing reads little of a long history.
  const size_t first_page = std::clamp<size_t>(limit, 16, kListPage);
  size_t queue_page = first_page;  // doubling as it is read
  CallIndexStream<CallRecord> records(kCallRecordIndex, DecodeCallRecord, after, first_page,
                                      /*done=*/false);
  // Only pending, running and dead-lettered calls are the queue's to tell; pending ones the
  // outbox's too.
  const bool queued_states = !state.has_value() || *state == CallState::kPending ||
                             *state == CallState::kRunning || *state == CallState::kDeadLettered;
  CallIndexStream<ScheduledCall> outbox(kCallOutboxIndex, DecodeScheduledCall, after, first_page,
                                        state.has_value() && *state != CallState::kPending);
  std::deque<QueuedCall> queued;
  // The queue is walked only through the tenant's ids (they begin with its tag): its calls.
  const CallIdRange range = TenantCallIdRange(open->name());
  CallId queued_after = std::max(after, range.after);
  bool queue_done = !queued_states;
  const DurableQueue::ListFilter filter{
      .tenant = open->name(), .function = wanted, .before = range.before};
  const absl::Time now = clock_.Now();
  auto read_queue = [&]() -> absl::Status {
    if (!queued.empty() || queue_done) return absl::OkStatus();
    absl::StatusOr<std::vector<QueuedCall>> page =
        queue_->ListCalls(queued_after, queue_page, filter, now);
    if (absl::IsUnimplemented(page.status())) {  // an adapter that cannot list
      queue_done = true;
      return absl::OkStatus();
    }
    if (!page.ok()) return page.status();
    queue_done = page->empty();  // a page may be short before the end
    if (!page->empty()) queued_after = page->back().call.id;
    for (QueuedCall& q : *page) queued.push_back(std::move(q));
    queue_page = std::min(kListPage, queue_page * 2);
    return absl::OkStatus();
  };
  // Calls that match, in id order, not yet reported: a dead letter among them is recorded
  // first (RecordDeadLetters, in transactions of at most a page), which may find that its late
  // delivery committed first, so that it no longer matches; then the next calls take its place.
  std::vector<CallId> matched_ids;
  std::vector<Located> matched;
  auto report = [&]() -> absl::Status {
    for (size_t from = 0; from < matched.size(); from += kListPage) {
      RecordDeadLetters(
          *open, absl::MakeSpan(matched).subspan(from, std::min(kListPage, matched.size() - from)));
    }
    for (size_t i = 0; i < matched.size(); ++i) {
      TXFN_ASSIGN_OR_RETURN(CallInfo info, InfoOf(matched_ids[i], matched[i]));
      if (matches(info) && out.size() < limit) out.push_back(std::move(info));
    }
    matched_ids.clear();
    matched.clear();
    return absl::OkStatus();
  };
  while (out.size() < limit) {
    // In the order a call passes through them (outbox, queue, record): a call that moves on
    // between two reads is then in the later one.
    TXFN_RETURN_IF_ERROR(outbox.Fill(*open));
    TXFN_RETURN_IF_ERROR(read_queue());
    TXFN_RETURN_IF_ERROR(records.Fill(*open));
    std::optional<CallId> next = records.next();
    for (const std::optional<CallId>& other :
         {queued.empty() ? std::nullopt : std::optional<CallId>(queued.front().call.id),
          outbox.next()}) {
      if (other.has_value() && (!next.has_value() || *other < *next)) next = other;
    }
    if (!next.has_value()) break;
    const CallId id = *next;
    Located where{.tenant = open, .record = records.TakeIf(id)};
    if (std::optional<ScheduledCall> scheduled = outbox.TakeIf(id); scheduled.has_value()) {
      scheduled->id = id;
      where.outbox = std::move(scheduled);
    }
    if (!queued.empty() && queued.front().call.id == id) {
      // How a call ended wins over the queue's view (a call cancelled while leased stays in
      // the queue until its holder settles it), but for a dead letter's record of a call
      // Redrive put back (and maybe dead-lettered again): RecordDeadLetters decides.
      if (!where.record.has_value() || where.record->state == CallState::kDeadLettered) {
        where.queued = std::move(queued.front());
      }
      queued.pop_front();
    }
    TXFN_ASSIGN_OR_RETURN(CallInfo info, InfoOf(id, where));
    if (!matches(info)) continue;
    matched_ids.push_back(id);
    matched.push_back(std::move(where));
    if (matched.size() >= std::min(limit - out.size(), kListPage)) TXFN_RETURN_IF_ERROR(report());
  }
  TXFN_RETURN_IF_ERROR(report());
  return out;
}

absl::StatusOr<std::vector<FunctionDepth>> QueuedCalls::Depths() {
  return queue_->Depths(clock_.Now());
}

QueuedCallStats QueuedCalls::stats() const {
  QueuedCallStats s;
  {
    MutexLock lock(&mu_);
    s = stats_;
    s.function_tables = functions_.size();
    s.limited_functions = config_.functions.size();
  }
  s.pending_cap_refused = pending_cap_.refused();
  s.pending_cap_recounts = pending_cap_.recounts();
  if (scheduler_ != nullptr) s.scheduler = scheduler_->stats();
  if (submitter_ != nullptr) s.submitter = submitter_->stats();
  return s;
}

std::optional<double> QueuedCalls::ServiceRate(std::string_view service) const {
  return scheduler_ != nullptr ? scheduler_->DownstreamRate(service) : std::nullopt;
}

}  // namespace txfn::internal

// Call records in a tenant's storage; see txfn/call_records.h.
#include "txfn/call_records.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "txfn/errors.h"
#include "txfn/internal/strings.h"
#include "txfn/status_macros.h"

namespace txfn {
namespace {

using internal::StrCat;

constexpr std::string_view kStateNames[] = {"pending", "running",       "succeeded",
                                            "failed",  "dead_lettered", "cancelled"};

Value TimeValue(absl::Time t) { return Value::Int64(absl::ToUnixNanos(t)); }

absl::Status Malformed(std::string_view what, std::string_view why) {
  return absl::InvalidArgumentError(StrCat("malformed ", what, ": ", why));
}

// A field of a decoded record object, of the given check.
template <typename Check>
absl::StatusOr<const Value*> Field(const Value& object, std::string_view name, Check check,
                                   std::string_view what) {
  const Value* v = object.Find(name);
  if (v == nullptr || !check(*v)) return Malformed(what, StrCat("field '", name, "'"));
  return v;
}

// A number of milliseconds (a JS number or BigInt) as a duration.
absl::StatusOr<absl::Duration> Millis(const Value& v, std::string_view field) {
  double ms = 0;
  if (v.is_int64()) {
    ms = static_cast<double>(v.int64());
  } else if (v.is_float64()) {
    ms = v.float64();
  } else {
    return absl::InvalidArgumentError(StrCat(field, " must be a number of milliseconds"));
  }
  if (!std::isfinite(ms) || ms < 0 || absl::Milliseconds(ms) > kMaxScheduleDelay) {
    return absl::InvalidArgumentError(StrCat(field, " must be between 0 and ",
                                             absl::FormatDuration(kMaxScheduleDelay), " in ms"));
  }
  return absl::Milliseconds(ms);
}

// A whole number in [lo, hi] (a JS number or BigInt).
absl::StatusOr<int64_t> WholeNumber(const Value& v, std::string_view field, int64_t lo,
                                    int64_t hi) {
  int64_t n = 0;
  if (v.is_int64()) {
    n = v.int64();
  } else if (v.is_float64() && std::isfinite(v.float64()) &&
             std::trunc(v.float64()) == v.float64() && std::abs(v.float64()) < 9.0e15) {
    n = static_cast<int64_t>(v.float64());
  } else {
    return absl::InvalidArgumentError(StrCat(field, " must be a whole number"));
  }
  if (n < lo || n > hi) {
    return absl::InvalidArgumentError(StrCat(field, " must be between ", lo, " and ", hi));
  }
  return n;
}

absl::StatusOr<RetryPolicy> ParseRetry(const Value& v) {
  if (!v.is_object()) return absl::InvalidArgumentError("retry must be an object");
  RetryPolicy retry;
  for (const auto& [name, field] : v.object()) {
    const std::string where = StrCat("retry.", name);
    if (name == "maxAttempts") {
      TXFN_ASSIGN_OR_RETURN(int64_t n, WholeNumber(field, where, 1, CallLimits{}.max_attempts));
      retry.max_attempts = static_cast<int>(n);
    } else if (name == "initialBackoffMs") {
      TXFN_ASSIGN_OR_RETURN(retry.initial_backoff, Millis(field, where));
    } else if (name == "maxBackoffMs") {
      TXFN_ASSIGN_OR_RETURN(retry.max_backoff, Millis(field, where));
    } else if (name == "multiplier") {
      if (!field.is_float64() && !field.is_int64()) {
        return absl::InvalidArgumentError("retry.multiplier must be a number");
      }
      retry.multiplier = field.is_int64() ? static_cast<double>(field.int64()) : field.float64();
      if (!std::isfinite(retry.multiplier) || retry.multiplier < 1 || retry.multiplier > 100) {
        return absl::InvalidArgumentError("retry.multiplier must be between 1 and 100");
      }
    } else {
      return absl::InvalidArgumentError(
          StrCat("unknown attribute '", where,
                 "' (retry takes maxAttempts, initialBackoffMs, maxBackoffMs, multiplier)"));
    }
  }
  if (retry.max_backoff < retry.initial_backoff) {
    return absl::InvalidArgumentError("retry.maxBackoffMs must not be less than initialBackoffMs");
  }
  return retry;
}

}  // namespace

uint32_t TenantTag(std::string_view tenant) {
  uint64_t h = 0xcbf29ce484222325ULL;  // FNV-1a, 64 bits, folded
  for (unsigned char c : tenant) {
    h ^= c;
    h *= 0x100000001b3ULL;
  }
  return static_cast<uint32_t>(h ^ (h >> 32));
}

CallId TenantCallId(std::string_view tenant, uint64_t a, uint64_t b) {
  const uint64_t hi = (uint64_t{TenantTag(tenant)} << 32) | (a & 0xffff0fffULL) | 0x8000ULL;
  const uint64_t lo = (b & 0x3fffffffffffffffULL) | 0x8000000000000000ULL;
  return CallId(hi, lo);
}

CallIdRange TenantCallIdRange(std::string_view tenant) {
  const uint64_t tag = TenantTag(tenant);
  CallIdRange range;
  if (tag > 0) range.after = CallId((tag << 32) - 1, ~uint64_t{0});
  if (tag < 0xffffffffULL) range.before = CallId((tag + 1) << 32, 0);
  return range;
}

std::string_view CallStateName(CallState state) {
  const auto i = static_cast<size_t>(state);
  return i < std::size(kStateNames) ? kStateNames[i] : "unknown";
}

absl::StatusOr<CallState> ParseCallState(std::string_view name) {
  for (size_t i = 0; i < std::size(kStateNames); ++i) {
    if (kStateNames[i] == name) return static_cast<CallState>(i);
  }
  return absl::InvalidArgumentError(
      StrCat("unknown call state '", name.substr(0, 32),
             "' (pending, running, succeeded, failed, dead_lettered, cancelled)"));
}

std::string EncodeCallRecord(const CallRecord& r) {
  Value::Object o{
      {"s", Value::Int64(static_cast<int64_t>(r.state))},
      {"f", Value::String(r.function)},
      {"r", r.result},
      {"c", Value::Int64(static_cast<int64_t>(r.error.code()))},
      {"m", Value::String(std::string(r.error.message()))},
      {"t", TimeValue(r.finished)},
      {"a", Value::Int64(r.attempts)},
  };
  if (!r.args_digest.empty()) o.emplace("d", Value::Bytes(r.args_digest));
  if (r.result_dropped_bytes != 0) {
    o.emplace("x", Value::Int64(static_cast<int64_t>(std::min<uint64_t>(
                       r.result_dropped_bytes, std::numeric_limits<int64_t>::max()))));
  }
  if (std::optional<AppError> app = GetAppError(r.error)) {
    o.emplace("e", Value::FromObject({{"n", Value::String(std::move(app->name))},
                                      {"m", Value::String(std::move(app->message))},
                                      {"d", std::move(app->data)}}));
  }
  return EncodeBinary(Value::FromObject(std::move(o)));
}

std::string ArgsDigest(const Value& args) { return ArgsDigestOfEncoding(EncodeBinary(args)); }

std::string ArgsDigestOfEncoding(std::string_view encoded_args) {
  return CallId::FromKey("txfn.args", encoded_args).Bytes();
}

std::string KeyedArgsDigest(const Call& call) {
  if (call.idempotency_key.empty()) return "";
  if (!call.args_blob.empty() && call.args.is_null()) return "";
  return ArgsDigest(call.args);
}

absl::StatusOr<CallRecord> DecodeCallRecord(std::string_view bytes) {
  constexpr std::string_view kWhat = "call record";
  TXFN_ASSIGN_OR_RETURN(Value v, DecodeBinary(bytes));
  if (!v.is_object()) return Malformed(kWhat, "not an object");
  auto is_int = [](const Value& x) { return x.is_int64(); };
  auto is_string = [](const Value& x) { return x.is_string(); };
  CallRecord r;
  TXFN_ASSIGN_OR_RETURN(const Value* state, Field(v, "s", is_int, kWhat));
  if (state->int64() < static_cast<int64_t>(CallState::kSucceeded) ||
      state->int64() > static_cast<int64_t>(CallState::kCancelled)) {
    return Malformed(kWhat, "state");
  }
  r.state = static_cast<CallState>(state->int64());
  TXFN_ASSIGN_OR_RETURN(const Value* function, Field(v, "f", is_string, kWhat));
  r.function = function->string();
  TXFN_ASSIGN_OR_RETURN(const Value* result, Field(
                                                 v, "r", [](const Value&) { return true; }, kWhat));
  r.result = *result;
  TXFN_ASSIGN_OR_RETURN(const Value* code, Field(v, "c", is_int, kWhat));
  TXFN_ASSIGN_OR_RETURN(const Value* message, Field(v, "m", is_string, kWhat));
  if (code->int64() < 0 ||
      code->int64() > static_cast<int64_t>(absl::StatusCode::kUnauthenticated)) {
    return Malformed(kWhat, "error code");
  }
  r.error = absl::Status(static_cast<absl::StatusCode>(code->int64()), message->string());
  TXFN_ASSIGN_OR_RETURN(const Value* finished, Field(v, "t", is_int, kWhat));
  r.finished = absl::FromUnixNanos(finished->int64());
  TXFN_ASSIGN_OR_RETURN(const Value* attempts, Field(v, "a", is_int, kWhat));
  r.attempts = static_cast<int>(attempts->int64());
  // Absent in older records. Advisory: one of another form (not this build's) is ignored
  // rather than making the record, and every look at its call, fail.
  if (const Value* digest = v.Find("d");
      digest != nullptr && digest->is_bytes() && digest->bytes().size() == 16) {
    r.args_digest = digest->bytes();
  }
  // Absent in older records, and advisory like "d": the size of a result not kept.
  if (const Value* dropped = v.Find("x"); dropped != nullptr && dropped->is_int64()) {
    r.result_dropped_bytes = static_cast<uint64_t>(std::max<int64_t>(0, dropped->int64()));
  }
  // Absent in older records, and advisory like "d": what the function threw (GetAppError).
  if (const Value* e = v.Find("e"); e != nullptr && e->is_object()) {
    const Value* name = e->Find("n");
    const Value* message = e->Find("m");
    const Value* data = e->Find("d");
    if (name != nullptr && name->is_string() && message != nullptr && message->is_string() &&
        data != nullptr) {
      r.error = WithAppError(
          std::move(r.error),
          AppError{.name = name->string(), .message = message->string(), .data = *data});
    }
  }
  return r;
}

absl::StatusOr<std::optional<CallRecord>> FindCallRecord(const Snapshot& snapshot,
                                                         const CallId& id) {
  TXFN_ASSIGN_OR_RETURN(std::optional<IndexEntry> entry,
                        snapshot.Get(kCallRecordIndex, id.Bytes()));
  if (!entry.has_value()) return std::nullopt;
  absl::StatusOr<CallRecord> record = DecodeCallRecord(entry->value);
  if (!record.ok()) {
    return absl::DataLossError(StrCat("tenant '", snapshot.tenant(), "': the record of call ",
                                      id.ToString(),
                                      " does not decode: ", record.status().message()));
  }
  return *std::move(record);
}

absl::Status AddCallRecord(const CallId& id, const CallRecord& record, PreparedCommit* commit) {
  IndexWrite write{.index = kCallRecordIndex, .key = id.Bytes(), .value = EncodeCallRecord(record)};
  auto before = [](const IndexWrite& a, const IndexWrite& b) {
    return a.index != b.index ? a.index < b.index : a.key < b.key;
  };
  auto at = std::lower_bound(commit->writes.begin(), commit->writes.end(), write, before);
  if (at != commit->writes.end() && at->index == write.index && at->key == write.key) {
    return absl::InvalidArgumentError(
        StrCat("the commit already writes the record of call ", id.ToString()));
  }
  commit->reads.push_back({.index = kCallRecordIndex, .range = KeyRange::Point(write.key)});
  commit->writes.insert(at, std::move(write));
  return absl::OkStatus();
}

std::string EncodeScheduledCall(const ScheduledCall& call) {
  Value::Object o{{"f", Value::String(call.function)}, {"a", call.args}};
  if (call.delay.has_value()) o.emplace("d", Value::Int64(absl::ToInt64Nanoseconds(*call.delay)));
  if (call.at.has_value()) o.emplace("t", TimeValue(*call.at));
  return EncodeBinary(Value::FromObject(std::move(o)));
}

absl::StatusOr<ScheduledCall> DecodeScheduledCall(std::string_view bytes) {
  constexpr std::string_view kWhat = "scheduled call";
  TXFN_ASSIGN_OR_RETURN(Value v, DecodeBinary(bytes));
  if (!v.is_object()) return Malformed(kWhat, "not an object");
  ScheduledCall call;
  TXFN_ASSIGN_OR_RETURN(const Value* function,
                        Field(
                            v, "f", [](const Value& x) { return x.is_string(); }, kWhat));
  call.function = function->string();
  TXFN_ASSIGN_OR_RETURN(const Value* args, Field(
                                               v, "a", [](const Value&) { return true; }, kWhat));
  call.args = *args;
  const Value* delay = v.Find("d");
  const Value* at = v.Find("t");
  if ((delay == nullptr) == (at == nullptr)) return Malformed(kWhat, "needs a delay or a time");
  if (delay != nullptr) {
    if (!delay->is_int64()) return Malformed(kWhat, "delay");
    call.delay = absl::Nanoseconds(delay->int64());
  } else {
    if (!at->is_int64()) return Malformed(kWhat, "time");
    call.at = absl::FromUnixNanos(at->int64());
  }
  return call;
}

absl::StatusOr<CallId> ScheduleCall(Transaction& txn, ScheduledCall call, uint64_t a, uint64_t b) {
  TXFN_RETURN_IF_ERROR(ValidateFunctionName(call.function));
  if (call.args.is_null()) call.args = Value::FromObject({});
  if (!call.args.is_object()) {
    return absl::InvalidArgumentError(
        StrCat("the arguments of scheduled call ", call.function, " must be an object"));
  }
  if (call.delay.has_value() == call.at.has_value()) {
    return absl::InvalidArgumentError("a scheduled call needs exactly one of a delay and a time");
  }
  if (call.delay.has_value() &&
      (*call.delay < absl::ZeroDuration() || *call.delay > kMaxScheduleDelay)) {
    return absl::InvalidArgumentError(StrCat("the delay of scheduled call ", call.function,
                                             " must be between 0 and ",
                                             absl::FormatDuration(kMaxScheduleDelay)));
  }
  if (call.at.has_value() &&
      (*call.at == absl::InfiniteFuture() || *call.at == absl::InfinitePast())) {
    return absl::InvalidArgumentError(
        StrCat("the time of scheduled call ", call.function, " must be finite"));
  }
  call.id = TenantCallId(txn.tenant(), a, b);
  TXFN_RETURN_IF_ERROR(
      txn.PutReserved(kCallOutboxIndex, call.id.Bytes(), EncodeScheduledCall(call)));
  return call.id;
}

absl::StatusOr<bool> CancelWritesRecord(Transaction& txn, const CallId& id,
                                        bool replace_dead_letter) {
  TXFN_ASSIGN_OR_RETURN(std::optional<std::string> existing,
                        txn.GetReserved(kCallRecordIndex, id.Bytes()));
  if (!existing.has_value()) return true;
  TXFN_ASSIGN_OR_RETURN(CallRecord record, DecodeCallRecord(*existing));
  return replace_dead_letter && record.state == CallState::kDeadLettered;
}

absl::StatusOr<std::optional<CallRecord>> CancelCallInTransaction(Transaction& txn,
                                                                  const CallId& id, absl::Time now,
                                                                  bool replace_dead_letter,
                                                                  std::string_view known_function,
                                                                  std::string_view args_digest) {
  const std::string key = id.Bytes();
  TXFN_ASSIGN_OR_RETURN(std::optional<std::string> existing,
                        txn.GetReserved(kCallRecordIndex, key));
  std::string function;
  std::string digest(args_digest);
  if (existing.has_value()) {
    TXFN_ASSIGN_OR_RETURN(CallRecord record, DecodeCallRecord(*existing));
    if (!replace_dead_letter || record.state != CallState::kDeadLettered) return record;
    function = record.function;
    if (digest.empty()) digest = std::move(record.args_digest);
  }
  TXFN_ASSIGN_OR_RETURN(std::optional<std::string> outbox, txn.GetReserved(kCallOutboxIndex, key));
  if (outbox.has_value()) {
    TXFN_ASSIGN_OR_RETURN(ScheduledCall scheduled, DecodeScheduledCall(*outbox));
    function = scheduled.function;
    TXFN_RETURN_IF_ERROR(txn.PutReserved(kCallOutboxIndex, key, std::nullopt));
  }
  if (function.empty()) function = known_function;
  CallRecord cancelled{.state = CallState::kCancelled,
                       .function = function,
                       .finished = now,
                       .args_digest = std::move(digest)};
  TXFN_RETURN_IF_ERROR(txn.PutReserved(kCallRecordIndex, key, EncodeCallRecord(cancelled)));
  return std::nullopt;
}

absl::StatusOr<std::vector<ScheduledCall>> ListOutbox(const Snapshot& snapshot) {
  TXFN_ASSIGN_OR_RETURN(std::vector<IndexEntry> entries,
                        snapshot.Scan(kCallOutboxIndex, KeyRange::All(), ScanOrder::kAscending, 0));
  std::vector<ScheduledCall> out;
  out.reserve(entries.size());
  for (const IndexEntry& e : entries) {
    TXFN_ASSIGN_OR_RETURN(ScheduledCall call, DecodeScheduledCall(e.value));
    TXFN_ASSIGN_OR_RETURN(call.id, CallId::FromBytes(e.key));
    out.push_back(std::move(call));
  }
  return out;
}

absl::StatusOr<std::vector<ScheduledCall>> ScheduledBy(const PreparedCommit& commit) {
  std::vector<ScheduledCall> out;
  for (const IndexWrite& w : commit.writes) {
    if (w.index != kCallOutboxIndex || !w.value.has_value()) continue;
    TXFN_ASSIGN_OR_RETURN(ScheduledCall call, DecodeScheduledCall(*w.value));
    TXFN_ASSIGN_OR_RETURN(call.id, CallId::FromBytes(w.key));
    out.push_back(std::move(call));
  }
  return out;
}

absl::StatusOr<FunctionAttributes> ParseFunctionAttributes(const Value& attrs) {
  FunctionAttributes out;
  if (attrs.is_null()) return out;
  if (!attrs.is_object()) return absl::InvalidArgumentError("attributes must be an object");
  for (const auto& [name, v] : attrs.object()) {
    if (name == "criticality") {
      if (!v.is_string()) return absl::InvalidArgumentError("criticality must be a string");
      TXFN_ASSIGN_OR_RETURN(out.criticality, ParseCriticality(v.string()));
    } else if (name == "quota") {
      if (!v.is_string()) return absl::InvalidArgumentError("quota must be a string");
      TXFN_ASSIGN_OR_RETURN(out.quota, ParseQuotaClass(v.string()));
    } else if (name == "maxConcurrency") {
      TXFN_ASSIGN_OR_RETURN(out.max_concurrency, WholeNumber(v, name, 1, 1'000'000));
    } else if (name == "deadlineMs") {
      TXFN_ASSIGN_OR_RETURN(out.deadline, Millis(v, name));
      const CallLimits limits;
      if (out.deadline < limits.min_deadline_window || out.deadline > limits.max_deadline_window) {
        return absl::InvalidArgumentError(
            "deadlineMs must be between 1000 (1 s) and 86400000 (24 h)");
      }
    } else if (name == "retry") {
      TXFN_ASSIGN_OR_RETURN(out.retry, ParseRetry(v));
    } else if (name == "reservedCpuQuota" || name == "opportunisticRate") {
      const bool reserved = name == "reservedCpuQuota";
      const double x = v.is_int64()     ? static_cast<double>(v.int64())
                       : v.is_float64() ? v.float64()
                                        : -1;
      if (!(v.is_int64() || v.is_float64()) || !std::isfinite(x) || x < 0 || (reserved && x == 0)) {
        return absl::InvalidArgumentError(
            StrCat(name, reserved ? " must be a number > 0 (CPU-seconds per second)"
                                  : " must be a number >= 0 (calls per second)"));
      }
      (reserved ? out.reserved_cpu_quota : out.opportunistic_rate) = x;
    } else if (name == "services") {
      if (!v.is_array()) return absl::InvalidArgumentError("services must be an array of names");
      for (const Value& s : v.array()) {
        if (!s.is_string() || s.string().empty() || s.string().size() > 64) {
          return absl::InvalidArgumentError("services must hold names of 1..64 characters");
        }
        out.services.push_back(s.string());
      }
      std::sort(out.services.begin(), out.services.end());
      out.services.erase(std::unique(out.services.begin(), out.services.end()), out.services.end());
    } else {
      return absl::InvalidArgumentError(
          StrCat("unknown attribute '", name.substr(0, 64),
                 "' (a function takes args and handler, and the attributes criticality, "
                 "quota, maxConcurrency, deadlineMs, retry, services, reservedCpuQuota, "
                 "opportunisticRate)"));
    }
  }
  return out;
}

}  // namespace txfn

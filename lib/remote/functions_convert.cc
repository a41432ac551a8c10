#include "lib/remote/functions_convert.h"

#include <utility>

#include "lib/wire/wire_proto.h"
#include "txfn/call_records.h"
#include "txfn/status_macros.h"

namespace txfn::remote_internal {

using wire_internal::FromProto;
using wire_internal::ToProto;

void ToProto(const absl::StatusOr<CallResult>& in, v1::CallReply* out) {
  if (!in.ok()) {
    ToProto(in.status(), out->mutable_status());
    return;
  }
  wire_internal::ToProtoBytes(in->value, out->mutable_value());
  out->set_ts(in->ts);
  for (const LogEntry& log : in->logs) {
    v1::LogEntry* entry = out->add_logs();
    entry->set_level(static_cast<v1::LogLevel>(wire_internal::LevelToProto(log.level)));
    entry->set_message(log.message);
  }
  out->set_attempts(static_cast<uint32_t>(in->attempts));
  out->set_replayed(in->replayed);
}

absl::StatusOr<CallResult> FromProto(const v1::CallReply& in) {
  if (in.has_status()) {
    absl::Status status;
    TXFN_RETURN_IF_ERROR(FromProto(in.status(), &status));
    if (!status.ok()) return status;
  }
  CallResult out;
  TXFN_ASSIGN_OR_RETURN(out.value, wire_internal::FromProtoBytes(in.value(), Value()));
  out.ts = in.ts();
  for (const v1::LogEntry& entry : in.logs()) {
    TXFN_ASSIGN_OR_RETURN(LogLevel level, wire_internal::LevelFromProto(entry.level()));
    out.logs.push_back(LogEntry{level, entry.message()});
  }
  out.attempts = static_cast<int>(in.attempts());
  out.replayed = in.replayed();
  return out;
}

void ToProto(const CallInfo& in, v1::CallInfo* out) {
  out->set_id(in.id.ToString());
  out->set_tenant(in.tenant);
  out->set_function(in.function);
  out->set_state(std::string(CallStateName(in.state)));
  wire_internal::ToProtoBytes(in.result, out->mutable_result());
  if (!in.error.ok()) ToProto(in.error, out->mutable_error());
  out->set_attempts(static_cast<uint32_t>(in.attempts));
  out->set_result_dropped_bytes(in.result_dropped_bytes);
  out->set_at_unix_micros(absl::ToUnixMicros(in.at));
  out->set_deadline_unix_micros(
      in.deadline == absl::InfinitePast() ? 0 : absl::ToUnixMicros(in.deadline));
}

absl::StatusOr<CallInfo> FromProto(const v1::CallInfo& in) {
  CallInfo out;
  TXFN_ASSIGN_OR_RETURN(out.id, CallId::Parse(in.id()));
  out.tenant = in.tenant();
  out.function = in.function();
  TXFN_ASSIGN_OR_RETURN(out.state, ParseCallState(in.state()));
  TXFN_ASSIGN_OR_RETURN(out.result, wire_internal::FromProtoBytes(in.result(), Value()));
  if (in.has_error()) TXFN_RETURN_IF_ERROR(FromProto(in.error(), &out.error));
  out.attempts = static_cast<int>(in.attempts());
  out.result_dropped_bytes = in.result_dropped_bytes();
  out.at = absl::FromUnixMicros(in.at_unix_micros());
  out.deadline = in.deadline_unix_micros() == 0 ? absl::InfinitePast()
                                                : absl::FromUnixMicros(in.deadline_unix_micros());
  return out;
}

void CallOptionsToProto(const CallOptions& in, absl::Time now, v1::SubmitRequest* out) {
  const absl::Time start = in.start_after == absl::InfinitePast() ? now : in.start_after;
  out->set_delay_ms(absl::ToInt64Milliseconds(std::max(start - now, absl::ZeroDuration())));
  if (in.deadline != absl::InfinitePast()) {
    out->set_deadline_ms(std::max<int64_t>(1, absl::ToInt64Milliseconds(in.deadline - start)));
  }
  if (in.criticality) out->set_criticality(std::string(CriticalityName(*in.criticality)));
  if (in.quota) out->set_quota(std::string(QuotaClassName(*in.quota)));
  out->set_idempotency_key(in.idempotency_key);
  out->set_client(in.client);
}

absl::StatusOr<CallOptions> CallOptionsFromProto(const v1::SubmitRequest& in) {
  if (in.delay_ms() < 0 || in.deadline_ms() < 0) {
    return absl::InvalidArgumentError("Submit: delay_ms and deadline_ms must not be negative");
  }
  CallOptions out;
  const absl::Time now = absl::Now();
  const absl::Time start = now + absl::Milliseconds(in.delay_ms());
  if (in.delay_ms() > 0) out.start_after = start;
  if (in.deadline_ms() > 0) out.deadline = start + absl::Milliseconds(in.deadline_ms());
  if (!in.criticality().empty()) {
    TXFN_ASSIGN_OR_RETURN(out.criticality, ParseCriticality(in.criticality()));
  }
  if (!in.quota().empty()) {
    TXFN_ASSIGN_OR_RETURN(out.quota, ParseQuotaClass(in.quota()));
  }
  out.idempotency_key = in.idempotency_key();
  out.client = in.client();
  return out;
}

}  // namespace txfn::remote_internal

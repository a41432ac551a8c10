// lib/remote/functions_convert.h — the Functions service's messages (proto/txfn/v1/
// functions.proto) to and from the engine's types; shared by FunctionsServer and
// FunctionsClient (internal).
#ifndef TXFN_LIB_REMOTE_FUNCTIONS_CONVERT_H_
#define TXFN_LIB_REMOTE_FUNCTIONS_CONVERT_H_

#include "absl/status/statusor.h"
#include "txfn/engine.h"
#include "txfn/v1/functions.pb.h"

namespace txfn::remote_internal {

// The metadata header that carries the API key.
inline constexpr char kApiKeyHeader[] = "x-txfn-api-key";
// Trailer of every error status the server's handlers send, its value the code sent: an error
// without it (or with another code) is gRPC's (the client's timeout, a connection that failed
// or broke, a stream the server reset, an answer the client could not read), which says
// nothing of whether the call ran.
inline constexpr char kAnsweredHeader[] = "x-txfn-answered";
// Trailer of an error whose commit outcome is unknown (IsCommitOutcomeUnknown: a status
// carries no payload across gRPC), its value the commit's timestamp if there is one.
inline constexpr char kOutcomeUnknownHeader[] = "x-txfn-commit-outcome-unknown";

// A call's outcome, its error (with payloads) in the reply's status.
void ToProto(const absl::StatusOr<CallResult>& in, v1::CallReply* out);
absl::StatusOr<CallResult> FromProto(const v1::CallReply& in);

void ToProto(const CallInfo& in, v1::CallInfo* out);
absl::StatusOr<CallInfo> FromProto(const v1::CallInfo& in);

// Submit's options: times travel relative to the sender's clock (delay, deadline after start).
void CallOptionsToProto(const CallOptions& in, absl::Time now, v1::SubmitRequest* out);
absl::StatusOr<CallOptions> CallOptionsFromProto(const v1::SubmitRequest& in);

}  // namespace txfn::remote_internal

#endif  // TXFN_LIB_REMOTE_FUNCTIONS_CONVERT_H_

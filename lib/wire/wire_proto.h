// lib/wire/wire_proto.h — conversions between txfn's types and the generated protobuf
// messages of proto/txfn/v1/wire.proto (internal: the gRPC services use the messages
// directly; everyone else uses txfn/wire.h's byte codec).
#ifndef TXFN_LIB_WIRE_WIRE_PROTO_H_
#define TXFN_LIB_WIRE_WIRE_PROTO_H_

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "txfn/v1/wire.pb.h"
#include "txfn/wire.h"

namespace txfn::wire_internal {

namespace pb = ::txfn::v1;

// How many nested messages a parse of these messages may enter: a Value nests up to three per
// level (Value, Object, Field), and kMaxDecodeDepth levels sit inside a few envelopes
// (RunResult, PreparedCommit, ...). protobuf's default, 100, stopped at 34 levels.
inline constexpr int kProtoRecursionLimit = 3 * (kMaxDecodeDepth + 1) + 32;

void ToProto(const Value& in, pb::Value* out);

// A Value in a message's bytes field (wire.proto's Value says why): its serialized pb::Value.
void ToProtoBytes(const Value& in, std::string* out);
// `absent` for empty bytes; InvalidArgument as DecodeWireValue.
absl::StatusOr<Value> FromProtoBytes(std::string_view bytes, const Value& absent);

void ToProto(const absl::Status& in, pb::Status* out);
// Sets `out` to the status (its payloads kept). InvalidArgument for a code absl does not know
// (a StatusOr<Status> would confuse the decoded status with the decoding's).
absl::Status FromProto(const pb::Status& in, absl::Status* out);

pb::LogLevel LevelToProto(LogLevel level);
// InvalidArgument for a level this reader does not know.
absl::StatusOr<LogLevel> LevelFromProto(int level);

void ToProto(const PreparedCommit& in, pb::PreparedCommit* out);
PreparedCommit FromProto(const pb::PreparedCommit& in);

void ToProto(const RemoteRunRequest& in, pb::RunRequest* out);
absl::StatusOr<RemoteRunRequest> FromProto(const pb::RunRequest& in);

void ToProto(const RunResult& in, pb::RunResult* out);
absl::StatusOr<RunResult> FromProto(const pb::RunResult& in);

}  // namespace txfn::wire_internal

#endif  // TXFN_LIB_WIRE_WIRE_PROTO_H_

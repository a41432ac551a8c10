// txfn/wire.h — the wire format between a backend and its function runners: a run request
// (tenant, function, arguments, snapshot timestamp, metadata version, deadline) and its
// result (value, logs, stats, error with its code and payloads, read set and writes).
//
// The messages are protobuf (proto/txfn/v1/wire.proto, installed beside the headers for
// clients in other languages); these functions are the C++ codec. Encoding then decoding
// gives back exactly what was encoded (Values bit for bit, statuses with every payload).
// Decoders refuse malformed input with InvalidArgument naming what was wrong, and never
// crash (they are fuzzed).
//
//   txfn::RemoteRunRequest request{.tenant = "acme", .snapshot_ts = ts};
//   request.run.function = "messages:list";
//   request.run.args = txfn::Value::FromObject({{"channel", txfn::Value::String("general")}});
//   std::string bytes = txfn::EncodeRunRequest(request);
//   absl::StatusOr<txfn::RemoteRunRequest> back = txfn::DecodeRunRequest(bytes);
//
// Versions: every message carries its writer's kWireVersion and the oldest reader version
// that may read it. A decoder accepts messages from older writers (missing fields read as
// the defaults those writers meant) and from newer writers unless they demand a newer reader,
// which is FailedPrecondition naming both versions. See the proto's evolution rules.
//
// Thread safety: plain functions of their arguments; any thread.
#ifndef TXFN_WIRE_H_
#define TXFN_WIRE_H_

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "txfn/function_runner.h"
#include "txfn/storage.h"
#include "txfn/value.h"

namespace txfn {

// The version this build writes, and the oldest writer it understands.
inline constexpr uint32_t kWireVersion = 1;

// What a backend asks a runner to do: run `run` read-only against the tenant's data at
// `snapshot_ts`, by `run.deadline`. `run.action_host` does not travel (actions run where
// their host is).
struct RemoteRunRequest {
  std::string tenant;
  RunRequest run;
  Timestamp snapshot_ts = 0;
  // The tenant's metadata version the backend saw (a runner with an older one refreshes).
  uint64_t metadata_version = 0;
  // (The deadline is run.deadline, sent with microsecond precision.)
};

// How much memory a decoded Value may take, counted as FromJs counts a function's results
// against FunctionRunnerOptions::max_value_bytes (each value at least sizeof(Value), a string
// its length in UTF-16 units plus one, bytes their length; 4 x the default 16 MiB): so every
// value a function can return decodes, and 16 MiB of tiny elements cannot become a gigabyte.
inline constexpr size_t kMaxWireValueMemory = size_t{64} << 20;

// A Value alone, as the wire's Value message.
[[nodiscard]] std::string EncodeWireValue(const Value& value);
// InvalidArgument for malformed bytes, a Value of an unknown kind or of two kinds, object
// fields out of order or repeated, nesting deeper than kMaxDecodeDepth, or a value that would
// take more than kMaxWireValueMemory. Reads the bytes directly (no protobuf message tree): its
// memory is the decoded Value's.
[[nodiscard]] absl::StatusOr<Value> DecodeWireValue(std::string_view bytes);

[[nodiscard]] std::string EncodeRunRequest(const RemoteRunRequest& request);
// As DecodeWireValue, plus FailedPrecondition for a message that needs a newer reader.
[[nodiscard]] absl::StatusOr<RemoteRunRequest> DecodeRunRequest(std::string_view bytes);

// The result of a run, its status included (RunResult::status with every payload).
[[nodiscard]] std::string EncodeRunResult(const RunResult& result);
// As DecodeRunRequest. The decoded result's status is the run's (OK or not); the StatusOr
// fails only when the bytes cannot be read.
[[nodiscard]] absl::StatusOr<RunResult> DecodeRunResult(std::string_view bytes);

}  // namespace txfn

#endif  // TXFN_WIRE_H_

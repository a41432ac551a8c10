// lib/remote/grpc_status.h — statuses across gRPC (internal). gRPC's status codes are
// absl's, number for number.
#ifndef TXFN_LIB_REMOTE_GRPC_STATUS_H_
#define TXFN_LIB_REMOTE_GRPC_STATUS_H_

#include <grpcpp/support/status.h>

#include <string>

#include "absl/status/status.h"

namespace txfn::remote_internal {

// Largest message either side accepts: arguments, results and writes are each bounded by
// 16 MiB (FunctionRunnerOptions::max_value_bytes, TransactionLimits), with room for all three.
inline constexpr int kMaxMessageBytes = 64 << 20;

inline grpc::Status ToGrpcStatus(const absl::Status& status) {
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()), std::string(status.message()));
}

inline absl::Status FromGrpcStatus(const grpc::Status& status) {
  return absl::Status(static_cast<absl::StatusCode>(status.error_code()), status.error_message());
}

}  // namespace txfn::remote_internal

#endif  // TXFN_LIB_REMOTE_GRPC_STATUS_H_

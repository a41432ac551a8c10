// lib/remote/grpc_util.h — what txfn's gRPC servers and clients share (internal): statuses
// across gRPC (its status codes are absl's, number for number), message limits, starting a
// server.
#ifndef TXFN_LIB_REMOTE_GRPC_UTIL_H_
#define TXFN_LIB_REMOTE_GRPC_UTIL_H_

#include <grpc/support/time.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/resource_quota.h>
#include <grpcpp/support/server_interceptor.h>
#include <netdb.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/time/time.h"
#include "txfn/internal/strings.h"

namespace txfn::remote_internal {

// Largest message either side accepts: arguments, results and writes are each bounded by
// 16 MiB (FunctionRunnerOptions::max_value_bytes, TransactionLimits), with room for all three.
inline constexpr int kMaxMessageBytes = 64 << 20;

// gRPC carries a status's message in a header, and a peer refuses headers over 8 KiB (its
// caller then sees RESOURCE_EXHAUSTED instead of the status): messages past this are cut.
inline constexpr size_t kMaxStatusMessageBytes = 2048;

inline grpc::Status ToGrpcStatus(const absl::Status& status) {
  std::string message(status.message());
  if (message.size() > kMaxStatusMessageBytes) {
    const size_t cut = message.size() - kMaxStatusMessageBytes;
    message.resize(kMaxStatusMessageBytes);
    message += internal::StrCat("... (", cut, " more bytes)");
  }
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()), std::move(message));
}

// A name from a request, as a log line or an error shows it before it was checked: at most
// 64 bytes, C-escaped (a newline or a terminal control cannot forge or hide log lines).
inline std::string Printable(std::string_view text) {
  constexpr size_t kShown = 64;
  std::string out = absl::CHexEscape(internal::ToAbsl(text.substr(0, kShown)));
  if (text.size() > kShown) out += internal::StrCat("... (", text.size(), " bytes)");
  return out;
}

inline absl::Status FromGrpcStatus(const grpc::Status& status) {
  return absl::Status(static_cast<absl::StatusCode>(status.error_code()), status.error_message());
}

// A call's deadline (ServerContext::raw_deadline()) as absl::Time, InfiniteFuture for none,
// from gRPC's seconds and nanoseconds: ServerContext::deadline()'s system_clock form counts
// nanoseconds, which wrap past the year 2262, so a client's deadline 300 years ahead arrived
// in the past and every call failed "passed its deadline".
inline absl::Time DeadlineOf(gpr_timespec raw) {
  raw = gpr_convert_clock_type(raw, GPR_CLOCK_REALTIME);
  if (gpr_time_cmp(raw, gpr_inf_future(GPR_CLOCK_REALTIME)) == 0) return absl::InfiniteFuture();
  return absl::FromUnixSeconds(raw.tv_sec) + absl::Nanoseconds(raw.tv_nsec);
}

// Why `listen` (HOST:PORT) cannot be listened on, found by binding it once more, since gRPC
// 1.51 says only "No address added" (in a log line): e.g. "Address already in use",
// "Permission denied", "Cannot assign requested address", or the resolver's error. Empty if
// it binds now, or for unix:PATH.
inline std::string WhyCannotListen(const std::string& listen) {
  const size_t colon = listen.rfind(':');
  if (listen.starts_with("unix:") || colon == std::string::npos) return "";
  std::string host = listen.substr(0, colon);
  const std::string port = listen.substr(colon + 1);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE;
  addrinfo* found = nullptr;
  if (const int error =
          getaddrinfo(host.empty() ? nullptr : host.c_str(), port.c_str(), &hints, &found);
      error != 0) {
    return gai_strerror(error);
  }
  std::string why;
  for (const addrinfo* a = found; a != nullptr && why.empty(); a = a->ai_next) {
    const int fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
    if (fd < 0) continue;
    if (bind(fd, a->ai_addr, a->ai_addrlen) != 0) why = std::strerror(errno);
    close(fd);
  }
  freeaddrinfo(found);
  return why;
}

// What a server is started with beyond its service and address.
struct GrpcServerSetup {
  // gRPC's thread quota (grpc::ResourceQuota::SetMaxThreads: pollers and calls); past it a
  // sync server refuses calls RESOURCE_EXHAUSTED. 0: gRPC's default (no cap).
  int max_threads = 0;
  // gRPC's memory quota for the server (grpc::ResourceQuota::Resize): what its connections
  // may buffer at once, requests being read whole before their handlers run among it. Past it
  // gRPC resets streams, picked at random (RST_STREAM ENHANCE_YOUR_CALM: the client sees
  // RESOURCE_EXHAUSTED "Received RST_STREAM with error code 11"). 0: no quota.
  int64_t max_buffer_bytes = 0;
  std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>> interceptors;
};

// Starts a server for `service` on `listen` (host:port, port 0 picking one, written to *port;
// or unix:PATH, a socket file)
// with the limits above. InvalidArgument, naming `who`, for a port out of range;
// Unavailable when it cannot listen (a port in use: no SO_REUSEPORT sharing).
inline absl::StatusOr<std::unique_ptr<grpc::Server>> StartGrpcServer(const std::string& listen,
                                                                     grpc::Service* service,
                                                                     int* port,
                                                                     std::string_view who,
                                                                     GrpcServerSetup setup = {}) {
  // HOST:PORT with a port gRPC would take as it is (it read 99999 as "any port").
  const size_t colon = listen.rfind(':');
  int number = -1;
  if (!listen.starts_with("unix:") &&
      (colon == std::string::npos ||
       !absl::SimpleAtoi(internal::ToAbsl(std::string_view(listen).substr(colon + 1)), &number) ||
       number < 0 || number > 65535)) {
    return absl::InvalidArgumentError(internal::StrCat(
        who, ": '", listen,
        "' is not HOST:PORT with a port from 0 to 65535 (0: any free one), nor unix:PATH"));
  }
  grpc::ServerBuilder builder;
  // Without this, gRPC sets SO_REUSEPORT: a second server on a port in use would share it,
  // each answering some of the connections.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  builder.AddListeningPort(listen, grpc::InsecureServerCredentials(), port);
  builder.SetMaxReceiveMessageSize(kMaxMessageBytes);
  builder.SetMaxSendMessageSize(kMaxMessageBytes);
  builder.RegisterService(service);
  if (setup.max_threads > 0 || setup.max_buffer_bytes > 0) {
    grpc::ResourceQuota quota(internal::StrCat(who, " quota"));
    if (setup.max_threads > 0) quota.SetMaxThreads(setup.max_threads);
    if (setup.max_buffer_bytes > 0) quota.Resize(static_cast<size_t>(setup.max_buffer_bytes));
    builder.SetResourceQuota(quota);
  }
  if (!setup.interceptors.empty()) {
    builder.experimental().SetInterceptorCreators(std::move(setup.interceptors));
  }
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr || *port == 0) {
    const std::string why = WhyCannotListen(listen);
    return absl::UnavailableError(
        internal::StrCat(who, ": cannot listen on ", listen, why.empty() ? "" : ": ", why));
  }
  return server;
}

}  // namespace txfn::remote_internal

#endif  // TXFN_LIB_REMOTE_GRPC_UTIL_H_

#include "txfn/functions_client.h"

#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "lib/remote/functions_convert.h"
#include "lib/remote/grpc_util.h"
#include "lib/wire/wire_proto.h"
#include "txfn/internal/strings.h"
#include "txfn/status_macros.h"
#include "txfn/storage.h"
#include "txfn/v1/functions.grpc.pb.h"

namespace txfn {
namespace {

// What a call changes: an answer lost after the server may have begun it is then an unknown
// outcome (IsCommitOutcomeUnknown), not gRPC's "not done". kWithKey: it takes an idempotency
// key (Mutation, Submit); kYes: it does not (Deploy, CancelCall).
enum class Commits { kNo, kWithKey, kYes };

// What a call whose stream the server reset failed with, as gRPC words it ("Received
// RST_STREAM with error code 11": RESOURCE_EXHAUSTED, from its memory quota). Matched on its
// text: grpc::Status carries no HTTP/2 code. The server may have been running the call.
bool ResetByServer(const grpc::Status& status) {
  constexpr std::string_view kReset = "Received RST_STREAM with error code ";
  const std::string& message = status.error_message();
  // REFUSED_STREAM (7) says the server did nothing with the stream (RFC 9113 8.7).
  return message.starts_with(kReset) && message != internal::StrCat(kReset, 7);
}

// gRPC's UNAVAILABLE for a call that never reached a server (gRPC 1.51's words): no address,
// no connection, or a stream the server refused unprocessed.
bool NeverSent(const grpc::Status& status) {
  if (status.error_code() != grpc::StatusCode::UNAVAILABLE) return false;
  for (const std::string_view prefix :
       {"failed to connect to all addresses", "connections to all backends failing",
        "DNS resolution failed", "empty address list", "Received RST_STREAM with error code 7"}) {
    if (status.error_message().starts_with(prefix)) return true;
  }
  return false;
}

// A status gRPC made, not the server's handlers: the client's timeout, a connection that
// failed or broke, a stream the server reset, an answer the client could not read. Of a call
// that commits, one that may have come after the server began it is an unknown outcome:
// gRPC's DEADLINE_EXCEEDED or UNAVAILABLE for it read as "not done", and a blind retry would
// apply it twice. What cannot have run keeps gRPC's code: NeverSent, gRPC's refusal when the
// server's threads are all taken (RESOURCE_EXHAUSTED, and marked: see Invoke), a request
// over the size limit (refused before it was sent).
absl::Status FromTransport(const grpc::Status& status, Commits commits) {
  const grpc::StatusCode code = status.error_code();
  const bool reset = ResetByServer(status);
  const bool may_have_run =
      reset || code == grpc::StatusCode::DEADLINE_EXCEEDED || code == grpc::StatusCode::CANCELLED ||
      code == grpc::StatusCode::INTERNAL || code == grpc::StatusCode::UNKNOWN ||
      code == grpc::StatusCode::UNIMPLEMENTED ||  // no reply read ("No message returned")
      (code == grpc::StatusCode::UNAVAILABLE && !NeverSent(status));
  if (!may_have_run || (commits == Commits::kNo && !reset)) {
    return remote_internal::FromGrpcStatus(status);
  }
  const std::string what = internal::StrCat(
      reset ? "the server reset the call (" : "no readable answer came (",
      absl::StatusCodeToString(static_cast<absl::StatusCode>(code)), ": ", status.error_message(),
      reset ? "; e.g. past its memory quota, FunctionsServerOptions::max_buffer_bytes)" : ")",
      " after the server may have begun it");
  switch (commits) {
    case Commits::kNo:
      return absl::UnavailableError(what);
    case Commits::kWithKey:
      return CommitOutcomeUnknownError(internal::StrCat(
          what, ": it may have committed; retry it with an idempotency key, not blindly"));
    case Commits::kYes:
      return CommitOutcomeUnknownError(
          internal::StrCat(what, ": it may have taken effect; look before retrying it"));
  }
  return absl::UnavailableError(what);
}

}  // namespace

class FunctionsClient::Impl {
 public:
  Impl(const std::string& address, std::string api_key, absl::Duration timeout)
      : api_key_(std::move(api_key)), timeout_(timeout) {
    grpc::ChannelArguments args;
    args.SetMaxReceiveMessageSize(remote_internal::kMaxMessageBytes);
    args.SetMaxSendMessageSize(remote_internal::kMaxMessageBytes);
    stub_ = v1::Functions::NewStub(
        grpc::CreateCustomChannel(address, grpc::InsecureChannelCredentials(), args));
  }

  // Calls `method` of the stub with a context carrying the key and the timeout. A status the
  // server's handlers sent (kAnsweredHeader, with its code) is as they sent it, an unknown
  // commit outcome marked again (kOutcomeUnknownHeader); any other is FromTransport's. (A
  // status marked with another code than the one received is the client's own, e.g. for an
  // answer it could not read.)
  template <typename Request, typename Reply, typename Method>
  absl::Status Invoke(Method method, const Request& request, Reply* reply, Commits commits) {
    grpc::ClientContext context;
    context.AddMetadata(remote_internal::kApiKeyHeader, api_key_);
    context.set_deadline(absl::ToChronoTime(absl::Now() + timeout_));
    const grpc::Status status = ((*stub_).*method)(&context, request, reply);
    if (status.ok()) return absl::OkStatus();
    const auto& trailers = context.GetServerTrailingMetadata();
    const auto answered = trailers.find(remote_internal::kAnsweredHeader);
    int sent_code = -1;
    if (answered == trailers.end() ||
        !absl::SimpleAtoi(absl::string_view(answered->second.data(), answered->second.size()),
                          &sent_code) ||
        sent_code != status.error_code()) {
      return FromTransport(status, commits);
    }
    const auto unknown = trailers.find(remote_internal::kOutcomeUnknownHeader);
    if (unknown == trailers.end()) return remote_internal::FromGrpcStatus(status);
    Timestamp ts = 0;
    (void)absl::SimpleAtoi(absl::string_view(unknown->second.data(), unknown->second.size()), &ts);
    return CommitOutcomeUnknownError(status.error_message(), ts);
  }

  absl::StatusOr<CallResult> Call(bool mutation, std::string_view tenant, std::string_view function,
                                  const Value& args, const MutationOptions& options) {
    if (options.completion != nullptr) {
      return absl::InvalidArgumentError("FunctionsClient: completion records stay in-process");
    }
    v1::CallRequest request;
    request.set_tenant(std::string(tenant));
    request.set_function(std::string(function));
    wire_internal::ToProtoBytes(args, request.mutable_args());
    request.set_idempotency_key(options.idempotency_key);
    v1::CallReply reply;
    TXFN_RETURN_IF_ERROR(
        mutation ? Invoke(&v1::Functions::Stub::Mutation, request, &reply, Commits::kWithKey)
                 : Invoke(&v1::Functions::Stub::Query, request, &reply, Commits::kNo));
    return remote_internal::FromProto(reply);
  }

  std::unique_ptr<v1::Functions::Stub> stub_;

 private:
  const std::string api_key_;
  const absl::Duration timeout_;
};

absl::StatusOr<std::unique_ptr<FunctionsClient>> FunctionsClient::Connect(
    const std::string& address, std::string api_key, absl::Duration timeout) {
  if (address.empty()) return absl::InvalidArgumentError("FunctionsClient: no server address");
  return std::unique_ptr<FunctionsClient>(
      new FunctionsClient(std::make_unique<Impl>(address, std::move(api_key), timeout)));
}

FunctionsClient::FunctionsClient(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
FunctionsClient::~FunctionsClient() = default;

absl::StatusOr<CallResult> FunctionsClient::Query(std::string_view tenant,
                                                  std::string_view function, const Value& args) {
  return impl_->Call(false, tenant, function, args, {});
}

absl::StatusOr<CallResult> FunctionsClient::Mutation(std::string_view tenant,
                                                     std::string_view function, const Value& args,
                                                     const MutationOptions& options) {
  return impl_->Call(true, tenant, function, args, options);
}

absl::StatusOr<CallId> FunctionsClient::Submit(std::string_view tenant, std::string_view function,
                                               const Value& args, const CallOptions& options) {
  v1::SubmitRequest request;
  request.set_tenant(std::string(tenant));
  request.set_function(std::string(function));
  wire_internal::ToProtoBytes(args, request.mutable_args());
  remote_internal::CallOptionsToProto(options, absl::Now(), &request);
  v1::SubmitReply reply;
  TXFN_RETURN_IF_ERROR(
      impl_->Invoke(&v1::Functions::Stub::Submit, request, &reply, Commits::kWithKey));
  return CallId::Parse(reply.id());
}

absl::StatusOr<CallInfo> FunctionsClient::GetCall(const CallId& id, std::string_view tenant) {
  v1::GetCallRequest request;
  request.set_id(id.ToString());
  request.set_tenant(std::string(tenant));
  v1::CallInfo reply;
  TXFN_RETURN_IF_ERROR(impl_->Invoke(&v1::Functions::Stub::GetCall, request, &reply, Commits::kNo));
  return remote_internal::FromProto(reply);
}

absl::Status FunctionsClient::CancelCall(const CallId& id, std::string_view tenant) {
  v1::CancelCallRequest request;
  request.set_id(id.ToString());
  request.set_tenant(std::string(tenant));
  v1::CancelCallReply reply;
  return impl_->Invoke(&v1::Functions::Stub::CancelCall, request, &reply, Commits::kYes);
}

absl::StatusOr<FunctionsClient::CallPage> FunctionsClient::ListCalls(std::string_view tenant,
                                                                     std::optional<CallState> state,
                                                                     std::string_view function,
                                                                     size_t limit,
                                                                     const CallId& after) {
  v1::ListCallsRequest request;
  request.set_tenant(std::string(tenant));
  if (state.has_value()) request.set_state(std::string(CallStateName(*state)));
  request.set_function(std::string(function));
  request.set_limit(static_cast<uint32_t>(std::min<size_t>(limit, UINT32_MAX)));
  if (after != CallId()) request.set_after(after.ToString());
  v1::ListCallsReply reply;
  TXFN_RETURN_IF_ERROR(
      impl_->Invoke(&v1::Functions::Stub::ListCalls, request, &reply, Commits::kNo));
  CallPage page;
  page.more = reply.more();
  for (const v1::CallInfo& c : reply.calls()) {
    TXFN_ASSIGN_OR_RETURN(CallInfo info, remote_internal::FromProto(c));
    page.calls.push_back(std::move(info));
  }
  return page;
}

absl::Status FunctionsClient::Deploy(std::string_view tenant,
                                     const std::map<std::string, std::string>& modules,
                                     std::string_view schema_json, bool create, bool* created) {
  v1::DeployRequest request;
  request.set_tenant(std::string(tenant));
  for (const auto& [path, source] : modules) {
    v1::Module* m = request.add_modules();
    m->set_path(path);
    m->set_source(source);
  }
  request.set_schema_json(std::string(schema_json));
  request.set_create(create);
  v1::DeployReply reply;
  TXFN_RETURN_IF_ERROR(impl_->Invoke(&v1::Functions::Stub::Deploy, request, &reply, Commits::kYes));
  if (created != nullptr) *created = reply.created();
  return absl::OkStatus();
}

}  // namespace txfn

#include "txfn/functions_client.h"

#include <grpcpp/grpcpp.h>

#include <string>
#include <string_view>
#include <utility>

#include "lib/remote/functions_convert.h"
#include "lib/remote/grpc_util.h"
#include "lib/wire/wire_proto.h"
#include "txfn/internal/strings.h"
#include "txfn/status_macros.h"
#include "txfn/storage.h"
#include "txfn/v1/functions.grpc.pb.h"

namespace txfn {
namespace {

// What a call whose stream the server reset failed with, as gRPC words it ("Received
// RST_STREAM with error code 11": RESOURCE_EXHAUSTED, from its memory quota). The server may
// have been running the call: such a status is not a refusal.
bool ResetByServer(const grpc::Status& status) {
  constexpr std::string_view kReset = "Received RST_STREAM with error code ";
  const std::string& message = status.error_message();
  // REFUSED_STREAM (7) says the server did nothing with the stream (RFC 9113 8.7).
  return message.starts_with(kReset) && message != internal::StrCat(kReset, 7);
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

  // Calls `method` of the stub with a context carrying the key and the timeout. A call the
  // server reset is Unavailable, marked IsCommitOutcomeUnknown if it `commits` (a mutation or
  // a submit may have committed: its gRPC RESOURCE_EXHAUSTED read as "refused, retry" and a
  // blind retry applied it twice).
  template <typename Request, typename Reply, typename Method>
  absl::Status Invoke(Method method, const Request& request, Reply* reply, bool commits = false) {
    grpc::ClientContext context;
    context.AddMetadata(remote_internal::kApiKeyHeader, api_key_);
    context.set_deadline(absl::ToChronoTime(absl::Now() + timeout_));
    const grpc::Status status = ((*stub_).*method)(&context, request, reply);
    if (!ResetByServer(status)) return remote_internal::FromGrpcStatus(status);
    const std::string message = internal::StrCat(
        "the server reset the call (", status.error_message(),
        "; e.g. past its memory quota, FunctionsServerOptions::max_buffer_bytes) while it may "
        "have been running it",
        commits ? ": it may have committed; retry it with an idempotency key" : "");
    return commits ? CommitOutcomeUnknownError(message) : absl::UnavailableError(message);
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
    TXFN_RETURN_IF_ERROR(mutation ? Invoke(&v1::Functions::Stub::Mutation, request, &reply, true)
                                  : Invoke(&v1::Functions::Stub::Query, request, &reply));
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
  TXFN_RETURN_IF_ERROR(impl_->Invoke(&v1::Functions::Stub::Submit, request, &reply, true));
  return CallId::Parse(reply.id());
}

absl::StatusOr<CallInfo> FunctionsClient::GetCall(const CallId& id, std::string_view tenant) {
  v1::GetCallRequest request;
  request.set_id(id.ToString());
  request.set_tenant(std::string(tenant));
  v1::CallInfo reply;
  TXFN_RETURN_IF_ERROR(impl_->Invoke(&v1::Functions::Stub::GetCall, request, &reply));
  return remote_internal::FromProto(reply);
}

absl::Status FunctionsClient::CancelCall(const CallId& id, std::string_view tenant) {
  v1::CancelCallRequest request;
  request.set_id(id.ToString());
  request.set_tenant(std::string(tenant));
  v1::CancelCallReply reply;
  return impl_->Invoke(&v1::Functions::Stub::CancelCall, request, &reply);
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
  TXFN_RETURN_IF_ERROR(impl_->Invoke(&v1::Functions::Stub::Deploy, request, &reply));
  if (created != nullptr) *created = reply.created();
  return absl::OkStatus();
}

}  // namespace txfn

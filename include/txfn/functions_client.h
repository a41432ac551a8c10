// txfn/functions_client.h — call an engine served by FunctionsServer (`txfn serve --listen`)
// from another process.
//
//   TXFN_ASSIGN_OR_RETURN(auto client, txfn::FunctionsClient::Connect("127.0.0.1:7400", key));
//   absl::StatusOr<txfn::CallResult> r = client->Mutation("shop", "cart:add", args);
//
// Results and errors are what Engine's methods of the same names return, payloads included
// (GetAppError and the others of txfn/errors.h work on them), plus the transport's:
// Unavailable when the server cannot be reached, Unauthenticated / PermissionDenied for a
// bad key, DeadlineExceeded past `timeout`. A call whose stream the server reset (past its
// memory quota, FunctionsServerOptions::max_buffer_bytes, gRPC resets streams, calls under
// way among them) is Unavailable, and for Mutation and Submit marked IsCommitOutcomeUnknown
// (txfn/storage.h): it may have committed, so retry it with an idempotency key. (gRPC itself
// says RESOURCE_EXHAUSTED, which reads as "refused, nothing ran".) As with any call whose
// answer is lost: a DeadlineExceeded or a connection lost mid-call may have committed too.
//
// Thread safety: every method may be called from any thread (one connection, multiplexed).
#ifndef TXFN_FUNCTIONS_CLIENT_H_
#define TXFN_FUNCTIONS_CLIENT_H_

#include <map>
#include <memory>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "txfn/engine.h"

namespace txfn {

class FunctionsClient {
 public:
  // Connects lazily (the first call finds out if the server is there).
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<FunctionsClient>> Connect(
      const std::string& address, std::string api_key, absl::Duration timeout = absl::Seconds(60));
  ~FunctionsClient();
  FunctionsClient(const FunctionsClient&) = delete;
  FunctionsClient& operator=(const FunctionsClient&) = delete;

  [[nodiscard]] absl::StatusOr<CallResult> Query(std::string_view tenant, std::string_view function,
                                                 const Value& args);
  [[nodiscard]] absl::StatusOr<CallResult> Mutation(std::string_view tenant,
                                                    std::string_view function, const Value& args,
                                                    const MutationOptions& options = {});
  [[nodiscard]] absl::StatusOr<CallId> Submit(std::string_view tenant, std::string_view function,
                                              const Value& args, const CallOptions& options = {});
  // Looked up among `tenant`'s calls; empty: the API key's tenant's (the admin key's: every
  // tenant's). NotFound for another tenant's call, as for an unknown one; PermissionDenied
  // for a `tenant` the key is not one of.
  [[nodiscard]] absl::StatusOr<CallInfo> GetCall(const CallId& id, std::string_view tenant = {});
  // Engine::CancelCall, the call looked up as GetCall's.
  [[nodiscard]] absl::Status CancelCall(const CallId& id, std::string_view tenant = {});
  // Needs the admin key. `created` (if not null) tells whether the tenant was new.
  [[nodiscard]] absl::Status Deploy(std::string_view tenant,
                                    const std::map<std::string, std::string>& modules,
                                    std::string_view schema_json, bool create,
                                    bool* created = nullptr);

 private:
  class Impl;
  explicit FunctionsClient(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace txfn

#endif  // TXFN_FUNCTIONS_CLIENT_H_

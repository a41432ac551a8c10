// txfn/functions_client.h — call an engine served by FunctionsServer (`txfn serve --listen`)
// from another process.
//
//   TXFN_ASSIGN_OR_RETURN(auto client, txfn::FunctionsClient::Connect("127.0.0.1:7400", key));
//   absl::StatusOr<txfn::CallResult> r = client->Mutation("shop", "cart:add", args);
//
// Results and errors are what Engine's methods of the same names return, payloads included
// (GetAppError and the others of txfn/errors.h work on them), plus the transport's:
// Unavailable when the server cannot be reached, Unauthenticated / PermissionDenied for a
// bad key, DeadlineExceeded past `timeout` (a query's; see below for the calls that commit).
//
// Unknown outcomes. A Mutation, Submit, Deploy or CancelCall whose answer was lost after the
// server may have begun it fails Unavailable marked IsCommitOutcomeUnknown (txfn/storage.h):
// it may have taken effect, so retry a mutation or submit with an idempotency key, and look
// before retrying the others; never blindly. That is: no answer within `timeout` (gRPC's
// DEADLINE_EXCEEDED), a connection that broke once the call was sent (UNAVAILABLE), a stream
// the server reset (past its memory quota, FunctionsServerOptions::max_buffer_bytes, gRPC
// resets streams at random, calls under way among them, and says RESOURCE_EXHAUSTED, which
// reads as "refused"), an answer the client could not read. gRPC's codes for these read as
// "not done" (measured: mutations told RESOURCE_EXHAUSTED had committed), and a blind retry
// would apply the call twice. A Query or GetCall keeps gRPC's code (a reset one is
// Unavailable). The server marks each error it sends itself with its code (a trailer), so
// its refusals keep their codes and mean nothing ran, and an unknown outcome of the engine's
// reaches the client as one. Not unknown either: a call that never reached a server (no
// connection, a name that does not resolve, a stream refused unprocessed), and gRPC's refusal
// when the server's threads are all taken (RESOURCE_EXHAUSTED).
//
// Thread safety: every method may be called from any thread (one connection, multiplexed).
#ifndef TXFN_FUNCTIONS_CLIENT_H_
#define TXFN_FUNCTIONS_CLIENT_H_

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

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
  // A page of `tenant`'s calls (Engine::ListCalls): in id order after `after`, optionally only
  // those in `state` and of `function`, at most `limit` (1 to 256; 0: 256), fewer if their
  // results would not fit in one reply. `more`: ask again after the last one. `tenant` empty:
  // the API key's (the admin key must name one: InvalidArgument); another tenant's is
  // PermissionDenied for a tenant key.
  //
  //   txfn::CallId after;
  //   for (bool more = true; more;) {
  //     TXFN_ASSIGN_OR_RETURN(auto page, client->ListCalls("", txfn::CallState::kFailed, "", 0,
  //                                                        after));
  //     for (const txfn::CallInfo& c : page.calls) Report(c);
  //     more = page.more && !page.calls.empty();
  //     if (more) after = page.calls.back().id;
  //   }
  struct CallPage {
    std::vector<CallInfo> calls;
    bool more = false;
  };
  [[nodiscard]] absl::StatusOr<CallPage> ListCalls(std::string_view tenant,
                                                   std::optional<CallState> state,
                                                   std::string_view function, size_t limit,
                                                   const CallId& after = CallId());
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

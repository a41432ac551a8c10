// txfn/functions_server.h — an Engine as a gRPC server (service txfn.v1.Functions,
// proto/txfn/v1/functions.proto): Query, Mutation, Submit, GetCall, CancelCall, ListCalls and
// Deploy for clients in other processes (txfn/functions_client.h, `txfn run --server`), with
// per-tenant API keys. ListCalls lists a tenant's calls a page at a time (at most 256, and
// 32 MiB of them: a page of big results is cut short, `more` set): a tenant key its own
// tenant's; the admin key names the tenant.
//
//   txfn::FunctionsServerOptions options;
//   options.listen = "127.0.0.1:7400";             // loopback unless told otherwise
//   options.admin_key = admin;                     // may deploy, and call any tenant
//   options.tenant_keys = {{"shop", {shop_key}}};  // may call "shop" only
//   TXFN_ASSIGN_OR_RETURN(auto server, txfn::FunctionsServer::Start(*engine, options));
//
// Access control: the key travels in the metadata header `x-txfn-api-key` (TLS is the
// host's business: put the server behind a proxy or bind loopback). Missing or unknown:
// UNAUTHENTICATED; another tenant's key, or a tenant key for Deploy: PERMISSION_DENIED.
// Either way the engine is not called. Keys are compared in constant time. A tenant key
// submits as its tenant's client (whose rate limit applies, SubmitterConfig::clients): another
// client name from it is PERMISSION_DENIED (no tenant spends another's limit, learns its rate,
// or escapes its own); client names are the admin key's.
//
// Limits: a call holds one of gRPC's threads from its request until its answer is sent,
// also while a client that reads slowly (or never) takes it, so the threads bound both the
// calls under way and the answers held in memory. When gRPC's threads are all taken a call is
// refused RESOURCE_EXHAUSTED at once; past `max_calls_per_tenant` calls of one tenant are, so
// that one tenant cannot take every thread. Either way the engine is not called; retry later.
// gRPC reads a request whole before its key is checked, so what requests being read may
// hold is bounded apart, by `max_buffer_bytes`, for clients with a key or without; requests
// whose handlers run (and their answers) are bounded by the threads, each up to 64 MiB.
// The admin key's calls are not counted against tenants: an operator can deploy a fix to, or
// cancel the calls of, a tenant at its cap.
//
// A Query's or Mutation's gRPC deadline (the client's timeout), or max_call_duration after
// its arrival if that comes first, becomes the call's deadline (QueryOptions /
// MutationOptions::deadline): its runs stop there, also on remote runners, and one still
// waiting in the engine (for its tenant's turn, or behind others on a contended document) is
// answered DEADLINE_EXCEEDED there, unrun.
//
// Thread safety: every method may be called from any thread. The engine must outlive the
// server.
#ifndef TXFN_FUNCTIONS_SERVER_H_
#define TXFN_FUNCTIONS_SERVER_H_

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "txfn/engine.h"
#include "txfn/log_sink.h"
#include "txfn/metrics.h"

namespace txfn {

struct FunctionsServerOptions {
  std::string listen = "127.0.0.1:0";  // port 0: any (FunctionsServer::port)
  std::string admin_key;               // empty: no key may deploy
  std::map<std::string, std::vector<std::string>> tenant_keys;  // tenant -> its keys
  // gRPC's thread quota for this server (grpc::ResourceQuota::SetMaxThreads; at least 2): a
  // poller and up to max_threads - 1 calls under way, each holding its thread until its answer
  // is sent. A call that finds none free is refused RESOURCE_EXHAUSTED (gRPC 1.51 may refuse a
  // little before the last thread is taken: one just freed is briefly not counted free).
  static constexpr int kDefaultMaxThreads = 256;
  int max_threads = kDefaultMaxThreads;
  // A tenant key's calls under way at once per tenant, counted from the key's check until gRPC
  // lets the call go (answer sent, or call cancelled); past it RESOURCE_EXHAUSTED naming the
  // tenant. 0: no cap beyond max_threads; otherwise below max_threads - 1, so that one tenant
  // cannot take every thread.
  static constexpr int kDefaultMaxCallsPerTenant = 64;
  int max_calls_per_tenant = kDefaultMaxCallsPerTenant;
  // gRPC's memory quota for this server (grpc::ResourceQuota::Resize): the bytes its
  // connections may buffer at once. gRPC reads a request's whole message (up to 64 MiB) before
  // the key is checked, so without a bound any client that reaches the port, key or none,
  // could make the server hold gigabytes (measured with `txfn serve`: 40 keyless 60 MiB
  // requests held open, all but their last byte sent, 3.1 GiB resident). Past the quota gRPC
  // resets streams until it is back under (their calls fail RESOURCE_EXHAUSTED "Received
  // RST_STREAM with error code 11"; FunctionsClient says Unavailable). gRPC picks the streams
  // at random, held requests or calls under way: like a call whose connection breaks, a
  // mutation so reset may have committed (FunctionsClient marks it IsCommitOutcomeUnknown;
  // retry it with an idempotency key). Measured, keyed calls, 15 MiB ones too, were served while
  // held requests stayed. gRPC enforces it loosely: the same 40 peaked at 1.4 GiB with the default,
  // 334 MiB with the minimum. At least kMinBufferBytes (twice the largest message).
  static constexpr int64_t kDefaultMaxBufferBytes = int64_t{1} << 30;
  static constexpr int64_t kMinBufferBytes = int64_t{128} << 20;
  int64_t max_buffer_bytes = kDefaultMaxBufferBytes;
  // The longest a Query or Mutation may take from its arrival: its deadline is the client's
  // or this, whichever comes first (a client that sets no deadline gets this one). Its runs,
  // and its waits for a turn, end there; a commit under way is waited for. So a call does not
  // hold its thread, nor keep Shutdown waiting, much past it. (Deploy, Submit, GetCall and
  // CancelCall take no deadline.) Positive; InfiniteDuration: the client's deadline only.
  static constexpr absl::Duration kDefaultMaxCallDuration = absl::Minutes(1);
  absl::Duration max_call_duration = kDefaultMaxCallDuration;
  // Refused keys (warn) and the engine's internal errors (error) go here; null: nowhere.
  LogSink log = StderrLogSink();
};

class FunctionsServer {
 public:
  // InvalidArgument: max_threads under 2, max_calls_per_tenant negative or not below
  // max_threads - 1, max_buffer_bytes under kMinBufferBytes, max_call_duration not positive, an
  // empty tenant key, a key given to two tenants (or to a tenant and as the admin key), or `listen`
  // not HOST:PORT with a port from 0 to 65535. Unavailable: `listen` cannot be bound (a port
  // another process listens on included).
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<FunctionsServer>> Start(
      Engine& engine, FunctionsServerOptions options);
  ~FunctionsServer();  // Shutdown(ZeroDuration) if not done
  FunctionsServer(const FunctionsServer&) = delete;
  FunctionsServer& operator=(const FunctionsServer&) = delete;

  int port() const;
  // Latency histograms per method (txfn_rpc_seconds{method=...}) and refused calls
  // (txfn_rpc_refused_total{code=...}: unauthenticated, permission_denied, tenant_busy), and
  // the tenant keys' calls under way now, as max_calls_per_tenant counts them (with no cap
  // too) (txfn_rpc_calls_under_way).
  void AppendMetrics(MetricsText* out) const;
  // Stops taking calls: one that arrives from now on is refused UNAVAILABLE ("the server is
  // stopping"; nothing of it ran). Waits until every call whose handler runs has answered
  // with its outcome (a Query or Mutation by about its deadline, at most max_call_duration): a
  // mutation that commits is never answered UNAVAILABLE, which a client may take for "retry". Then
  // lets gRPC send what is left for up to `grace` (at least 1 s: answers are sent after their
  // handlers return), and cancels it. Blocks until done; thread-safe.
  void Shutdown(absl::Duration grace);

 private:
  class Impl;
  explicit FunctionsServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace txfn

#endif  // TXFN_FUNCTIONS_SERVER_H_

#include "txfn/functions_server.h"

#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <optional>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "lib/remote/functions_convert.h"
#include "lib/remote/grpc_util.h"
#include "lib/wire/wire_proto.h"
#include "txfn/internal/mutex.h"
#include "txfn/internal/strings.h"
#include "txfn/status_macros.h"
#include "txfn/storage.h"
#include "txfn/v1/functions.grpc.pb.h"

namespace txfn {
namespace {

using internal::StrCat;
using remote_internal::ToGrpcStatus;

// Equal strings, in time that depends on the lengths only (a key's bytes do not leak
// through how long a wrong guess took).
bool ConstantTimeEquals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  unsigned char diff = 0;
  for (size_t i = 0; i < a.size(); ++i) diff |= static_cast<unsigned char>(a[i] ^ b[i]);
  return diff == 0;
}

// Who a key is: the admin, or a tenant's caller.
struct Principal {
  bool admin = false;
  std::string tenant;
};

// Calls under way per tenant, each counted from its handler's start until gRPC lets the call
// go (its answer sent, or the call cancelled): a client that does not read its answers keeps
// them counted. A call is known by its ServerContext's address between the two ends of its
// interceptor (CallEnds), with a serial in case gRPC frees a context before its interceptor.
class TenantCalls {
 public:
  explicit TenantCalls(int max_per_tenant) : max_per_tenant_(max_per_tenant) {}

  void Begin(const grpc::ServerContextBase* call, uint64_t serial) {
    internal::MutexLock lock(&mu_);
    auto [it, inserted] = calls_.try_emplace(call, Entry{.serial = serial});
    if (!inserted) {  // a context there before this one: that call has ended
      ReleaseLocked(it->second);
      it->second = Entry{.serial = serial};
    }
  }
  void End(const grpc::ServerContextBase* call, uint64_t serial) {
    internal::MutexLock lock(&mu_);
    auto it = calls_.find(call);
    if (it == calls_.end() || it->second.serial != serial) return;
    ReleaseLocked(it->second);
    calls_.erase(it);
  }
  // Counts `call` against `tenant` (once per call); false, counting nothing, when the tenant
  // has its cap of calls under way. With no cap (0) calls are counted all the same, for the
  // gauge (it read 0 with 180 calls under way).
  bool Admit(const grpc::ServerContextBase* call, const std::string& tenant) {
    if (tenant.empty()) return true;
    internal::MutexLock lock(&mu_);
    auto it = calls_.find(call);
    // Every call has its CallEnds (gRPC makes interceptors before the handler runs); a call
    // counted once already is not counted again.
    if (it == calls_.end() || !it->second.tenant.empty()) return true;
    int& under_way = under_way_[tenant];  // >= 1 if present: ReleaseLocked erases at 0
    if (max_per_tenant_ != 0 && under_way >= max_per_tenant_) return false;
    ++under_way;
    it->second.tenant = tenant;
    return true;
  }
  // Calls counted against their tenants now.
  int Counted() const {
    internal::MutexLock lock(&mu_);
    int counted = 0;
    for (const auto& [tenant, under_way] : under_way_) counted += under_way;
    return counted;
  }

 private:
  struct Entry {
    uint64_t serial = 0;
    std::string tenant;  // empty: not counted
  };
  void ReleaseLocked(const Entry& entry) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (entry.tenant.empty()) return;
    auto it = under_way_.find(entry.tenant);
    if (it != under_way_.end() && --it->second <= 0) under_way_.erase(it);
  }

  const int max_per_tenant_;
  mutable internal::Mutex mu_;
  absl::flat_hash_map<const grpc::ServerContextBase*, Entry> calls_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, int> under_way_ ABSL_GUARDED_BY(mu_);
};

// Made by gRPC with each call and destroyed when the call is let go: tells TenantCalls both.
class CallEnds final : public grpc::experimental::Interceptor {
 public:
  CallEnds(TenantCalls& calls, const grpc::ServerContextBase* call, uint64_t serial)
      : calls_(calls), call_(call), serial_(serial) {
    calls_.Begin(call_, serial_);
  }
  ~CallEnds() override { calls_.End(call_, serial_); }
  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    // Every error a handler sends is marked the server's, with its code: a client tells it
    // from gRPC's (and from one it made of an answer it could not read). An OK needs no mark
    // (a client that fails it finds none), so calls that succeed carry nothing more.
    if (methods->QueryInterceptionHookPoint(
            grpc::experimental::InterceptionHookPoints::PRE_SEND_STATUS)) {
      if (const grpc::Status sent = methods->GetSendStatus(); !sent.ok()) {
        methods->GetSendTrailingMetadata()->emplace(remote_internal::kAnsweredHeader,
                                                    StrCat(static_cast<int>(sent.error_code())));
      }
    }
    methods->Proceed();
  }

 private:
  TenantCalls& calls_;
  const grpc::ServerContextBase* const call_;
  const uint64_t serial_;
};

class CallEndsFactory final : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  explicit CallEndsFactory(TenantCalls& calls) : calls_(calls) {}
  grpc::experimental::Interceptor* CreateServerInterceptor(
      grpc::experimental::ServerRpcInfo* info) override {
    return new CallEnds(calls_, info->server_context(),
                        next_serial_.fetch_add(1, std::memory_order_relaxed));
  }

 private:
  TenantCalls& calls_;
  std::atomic<uint64_t> next_serial_{1};
};

}  // namespace

static_assert(FunctionsServerOptions::kMinBufferBytes == 2 * remote_internal::kMaxMessageBytes,
              "the smallest memory quota holds two of the largest messages");

class FunctionsServer::Impl final : public v1::Functions::Service {
 public:
  Impl(Engine& engine, FunctionsServerOptions options)
      : engine_(engine),
        options_(std::move(options)),
        tenant_calls_(options_.max_calls_per_tenant) {}  // Init refuses a negative one
  ~Impl() override { Shutdown(absl::ZeroDuration()); }

  absl::Status Init() {
    if (options_.max_threads < 2) {
      return absl::InvalidArgumentError(StrCat("FunctionsServer: max_threads is ",
                                               options_.max_threads,
                                               "; at least 2 (a poller and a call)"));
    }
    if (options_.max_calls_per_tenant < 0 ||
        options_.max_calls_per_tenant >= options_.max_threads - 1) {
      return absl::InvalidArgumentError(
          StrCat("FunctionsServer: max_calls_per_tenant is ", options_.max_calls_per_tenant,
                 "; 0 (no cap) or up to max_threads - 2 (", options_.max_threads - 2,
                 "), so that one tenant cannot take every thread"));
    }
    if (options_.max_buffer_bytes < FunctionsServerOptions::kMinBufferBytes) {
      return absl::InvalidArgumentError(
          StrCat("FunctionsServer: max_buffer_bytes is ", options_.max_buffer_bytes, "; at least ",
                 FunctionsServerOptions::kMinBufferBytes,
                 " (128 MiB: twice the largest message a call may carry)"));
    }
    if (!(options_.max_call_duration > absl::ZeroDuration())) {
      return absl::InvalidArgumentError(
          StrCat("FunctionsServer: max_call_duration is ",
                 absl::FormatDuration(options_.max_call_duration),
                 "; it must be positive (InfiniteDuration: the client's deadline only)"));
    }
    for (const auto& [tenant, keys] : options_.tenant_keys) {
      if (tenant.empty()) {
        return absl::InvalidArgumentError(
            "FunctionsServer: tenant_keys has keys of no tenant ('')");
      }
      for (const std::string& key : keys) {
        if (key.empty()) {
          return absl::InvalidArgumentError(
              StrCat("FunctionsServer: tenant '", tenant, "' has an empty API key"));
        }
        if (key == options_.admin_key) {
          return absl::InvalidArgumentError(
              StrCat("FunctionsServer: an API key of tenant '", tenant, "' is the admin key"));
        }
        if (!keys_.emplace(key, tenant).second) {
          return absl::InvalidArgumentError(
              StrCat("FunctionsServer: an API key of tenant '", tenant, "' is given twice"));
        }
      }
    }
    internal::MutexLock lock(&shutdown_mu_);
    remote_internal::GrpcServerSetup setup{.max_threads = options_.max_threads,
                                           .max_buffer_bytes = options_.max_buffer_bytes};
    setup.interceptors.push_back(std::make_unique<CallEndsFactory>(tenant_calls_));
    TXFN_ASSIGN_OR_RETURN(
        server_, remote_internal::StartGrpcServer(options_.listen, this, &port_, "FunctionsServer",
                                                  std::move(setup)));
    return absl::OkStatus();
  }

  int port() const { return port_; }

  void Shutdown(absl::Duration grace) {
    // First every handler under way answers with its call's outcome. gRPC's shutdown answers
    // the calls still running at its deadline UNAVAILABLE itself, which a client may take for
    // "retry", though the engine goes on and commits them (a hunt: 59 of 60 mutations committed
    // whose callers 55 were told UNAVAILABLE). Each call is bounded by its deadline and the
    // function limits; handlers that start from now on refuse their calls, unrun.
    {
      internal::MutexLock lock(&handlers_mu_);
      stopping_ = true;
      handlers_cv_.Wait([&]()
                            ABSL_EXCLUSIVE_LOCKS_REQUIRED(handlers_mu_) { return handlers_ == 0; });
    }
    internal::MutexLock lock(&shutdown_mu_);
    if (server_ == nullptr) return;
    // A handler that returned may not have sent its answer yet (the sync server sends it after,
    // on the handler's thread): even a zero grace leaves a second for that.
    server_->Shutdown(absl::ToChronoTime(absl::Now() + std::max(grace, kMinAnswerGrace)));
    server_.reset();
  }

  void AppendMetrics(MetricsText* out) const {
    static constexpr std::string_view kRefusedHelp =
        "Calls refused for their API key, or for their tenant's calls under way.";
    for (const Method& m : methods_) {
      out->Histogram("txfn_rpc_seconds", "Functions service latency by method.", m.latency,
                     {{"method", m.name}});
    }
    out->Counter("txfn_rpc_refused_total", kRefusedHelp,
                 static_cast<double>(unauthenticated_.load()), {{"code", "unauthenticated"}});
    out->Counter("txfn_rpc_refused_total", kRefusedHelp,
                 static_cast<double>(permission_denied_.load()), {{"code", "permission_denied"}});
    out->Counter("txfn_rpc_refused_total", kRefusedHelp, static_cast<double>(tenant_busy_.load()),
                 {{"code", "tenant_busy"}});
    out->Gauge("txfn_rpc_calls_under_way",
               "Calls of tenant keys under way, as max_calls_per_tenant counts them (from the "
               "key's check until the answer is sent or the call cancelled; with no cap too).",
               tenant_calls_.Counted());
  }

  grpc::Status Query(grpc::ServerContext* context, const v1::CallRequest* request,
                     v1::CallReply* reply) override {
    Handling handling(*this, kQuery);
    if (!handling.admitted()) return StoppingStatus();
    return Call(context, *request, reply, /*mutation=*/false);
  }
  grpc::Status Mutation(grpc::ServerContext* context, const v1::CallRequest* request,
                        v1::CallReply* reply) override {
    Handling handling(*this, kMutation);
    if (!handling.admitted()) return StoppingStatus();
    return Call(context, *request, reply, /*mutation=*/true);
  }

  grpc::Status Submit(grpc::ServerContext* context, const v1::SubmitRequest* request,
                      v1::SubmitReply* reply) override {
    Handling handling(*this, kSubmit);
    if (!handling.admitted()) return StoppingStatus();
    Principal who;
    if (grpc::Status s = Authorize(*context, "Submit", request->tenant(), false, &who); !s.ok()) {
      return s;
    }
    absl::StatusOr<Value> args = ArgsOf(request->args());
    if (!args.ok()) return ToGrpcStatus(args.status());
    absl::StatusOr<CallOptions> options = remote_internal::CallOptionsFromProto(*request);
    if (!options.ok()) return ToGrpcStatus(options.status());
    // A tenant's key submits as its tenant's client (whose rate limit applies): naming client
    // "a", tenant a's default, tenant b's key spent a's bucket and learnt a's submit rate from
    // the refusals, and naming new clients it would escape a limit the host set for "b".
    // Client names are the admin key's (the host's).
    if (!who.admin && !options->client.empty() && options->client != request->tenant()) {
      permission_denied_.fetch_add(1, std::memory_order_relaxed);
      return grpc::Status(grpc::StatusCode::PERMISSION_DENIED,
                          StrCat("a tenant's key submits as its tenant's client ('",
                                 remote_internal::Printable(request->tenant()),
                                 "'); other client names are for the admin key"));
    }
    absl::StatusOr<CallId> id =
        engine_.Submit(request->tenant(), request->function(), *args, *options);
    if (!id.ok()) return EngineStatus(*context, id.status());
    reply->set_id(id->ToString());
    return grpc::Status::OK;
  }

  grpc::Status GetCall(grpc::ServerContext* context, const v1::GetCallRequest* request,
                       v1::CallInfo* reply) override {
    Handling handling(*this, kGetCall);
    if (!handling.admitted()) return StoppingStatus();
    std::string scope;
    CallId id;
    if (grpc::Status s = ScopedCall(*context, "GetCall", *request, &scope, &id); !s.ok()) return s;
    // Another tenant's call is NotFound for this key, as if it did not exist: ids are not
    // secrets, but what a call did is its tenant's.
    absl::StatusOr<CallInfo> info =
        scope.empty() ? engine_.GetCall(id) : engine_.GetCall(id, scope);
    if (!info.ok()) return ToGrpcStatus(info.status());
    remote_internal::ToProto(*info, reply);
    return grpc::Status::OK;
  }

  grpc::Status CancelCall(grpc::ServerContext* context, const v1::CancelCallRequest* request,
                          v1::CancelCallReply*) override {
    Handling handling(*this, kCancelCall);
    if (!handling.admitted()) return StoppingStatus();
    std::string scope;
    CallId id;
    if (grpc::Status s = ScopedCall(*context, "CancelCall", *request, &scope, &id); !s.ok()) {
      return s;
    }
    return EngineStatus(*context,
                        scope.empty() ? engine_.CancelCall(id) : engine_.CancelCall(id, scope));
  }

  grpc::Status ListCalls(grpc::ServerContext* context, const v1::ListCallsRequest* request,
                         v1::ListCallsReply* reply) override {
    Handling handling(*this, kListCalls);
    if (!handling.admitted()) return StoppingStatus();
    std::string tenant;
    if (grpc::Status s = Scope(*context, "ListCalls", request->tenant(), &tenant); !s.ok()) {
      return s;
    }
    if (tenant.empty()) {  // the admin key's scope: every tenant
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                          "ListCalls: the admin key lists the calls of the tenant it names");
    }
    std::optional<CallState> state;
    if (!request->state().empty()) {
      absl::StatusOr<CallState> parsed = ParseCallState(request->state());
      if (!parsed.ok()) return ToGrpcStatus(parsed.status());
      state = *parsed;
    }
    CallId after;
    if (!request->after().empty()) {
      absl::StatusOr<CallId> parsed = CallId::Parse(request->after());
      if (!parsed.ok()) return ToGrpcStatus(parsed.status());
      after = *parsed;
    }
    const size_t limit = request->limit() == 0
                             ? kMaxListedCalls
                             : std::min<size_t>(request->limit(), kMaxListedCalls);
    // One engine call a page (a listing restarts each stream at `after`: the queue's adapters
    // walk their id index to its end for a tenant with few calls, so pages are not read in
    // chunks), of at most kMaxListedCalls: what is read stays near what is sent (256 records
    // with results of the default 64 KiB at most are 16 MiB). Within one message: a page of
    // calls with big results or errors is cut short (`more`).
    absl::StatusOr<std::vector<CallInfo>> calls =
        engine_.ListCalls(tenant, state, request->function(), limit, after);
    if (!calls.ok()) return ToGrpcStatus(calls.status());
    size_t bytes = 0;
    for (const CallInfo& info : *calls) {
      v1::CallInfo one;
      remote_internal::ToProto(info, &one);
      bytes += one.ByteSizeLong() + 8;  // with its field's tag and length
      if (bytes > kMaxListReplyBytes && reply->calls_size() > 0) break;
      *reply->add_calls() = std::move(one);
    }
    reply->set_more(static_cast<size_t>(reply->calls_size()) < calls->size() ||
                    calls->size() == limit);
    return grpc::Status::OK;
  }

  grpc::Status Deploy(grpc::ServerContext* context, const v1::DeployRequest* request,
                      v1::DeployReply* reply) override {
    Handling handling(*this, kDeploy);
    if (!handling.admitted()) return StoppingStatus();
    if (grpc::Status s = Authorize(*context, "Deploy", request->tenant(), true); !s.ok()) return s;
    std::map<std::string, std::string> modules;
    for (const v1::Module& m : request->modules()) {
      if (!modules.emplace(m.path(), m.source()).second) {
        return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                            StrCat("Deploy: module path '", remote_internal::Printable(m.path()),
                                   "' is given twice"));
      }
    }
    auto deploy = [&] {
      return engine_.DeployJson(request->tenant(), modules, request->schema_json());
    };
    if (!request->create()) return EngineStatus(*context, deploy());
    absl::StatusOr<bool> created = engine_.DeployCreatingTenant(request->tenant(), deploy);
    if (!created.ok()) return EngineStatus(*context, created.status());
    reply->set_created(*created);
    return grpc::Status::OK;
  }

 private:
  absl::StatusOr<Principal> Authenticate(const grpc::ServerContext& context,
                                         std::string_view method, std::string_view tenant) {
    absl::StatusOr<Principal> who = Identify(context);
    if (!who.ok()) {
      unauthenticated_.fetch_add(1, std::memory_order_relaxed);
      LogRefusal(StrCat(method, " for tenant '", remote_internal::Printable(tenant), "' from ",
                        context.peer(), " refused: ", who.status().message()));
    }
    return who;
  }

  absl::StatusOr<Principal> Identify(const grpc::ServerContext& context) const {
    auto header = context.client_metadata().find(remote_internal::kApiKeyHeader);
    if (header == context.client_metadata().end() || header->second.empty()) {
      return absl::UnauthenticatedError(
          StrCat("no API key (metadata header ", remote_internal::kApiKeyHeader, ")"));
    }
    std::string_view key(header->second.data(), header->second.size());
    if (!options_.admin_key.empty() && ConstantTimeEquals(key, options_.admin_key)) {
      return Principal{.admin = true};
    }
    // Every key is compared, so the time taken does not say which one nearly matched.
    const std::string* tenant = nullptr;
    for (const auto& [known, owner] : keys_) {
      if (ConstantTimeEquals(key, known)) tenant = &owner;
    }
    if (tenant == nullptr) return absl::UnauthenticatedError("unknown API key");
    return Principal{.tenant = *tenant};
  }

  // Authorizes a request about a tenant's calls (GetCall, CancelCall, ListCalls) naming
  // `tenant` (may be empty); sets `scope` to the tenant whose calls it looks among: `tenant`,
  // else the key's (empty for the admin key: every tenant's).
  grpc::Status Scope(const grpc::ServerContext& context, std::string_view method,
                     const std::string& tenant, std::string* scope) {
    if (!tenant.empty()) {
      *scope = tenant;
      return Authorize(context, method, *scope, false);
    }
    absl::StatusOr<Principal> who = Authenticate(context, method, "");
    if (!who.ok()) return ToGrpcStatus(who.status());
    *scope = who->admin ? "" : who->tenant;  // Init refuses a tenant key of no tenant
    return who->admin ? grpc::Status::OK : Admit(context, *scope);
  }

  // Scope for a GetCall or CancelCall `request`, and its id.
  template <typename Request>
  grpc::Status ScopedCall(const grpc::ServerContext& context, std::string_view method,
                          const Request& request, std::string* scope, CallId* id) {
    if (grpc::Status s = Scope(context, method, request.tenant(), scope); !s.ok()) return s;
    absl::StatusOr<CallId> parsed = CallId::Parse(request.id());
    if (!parsed.ok()) return ToGrpcStatus(parsed.status());
    *id = *parsed;
    return grpc::Status::OK;
  }

  // OK if the caller's key may act on `tenant` (and deploy, when `deploy`) and the tenant has
  // room for another call (Admit); who the key is in `*principal`, if given.
  grpc::Status Authorize(const grpc::ServerContext& context, std::string_view method,
                         std::string_view tenant, bool deploy, Principal* principal = nullptr) {
    absl::StatusOr<Principal> who = Authenticate(context, method, tenant);
    if (!who.ok()) return ToGrpcStatus(who.status());
    if (principal != nullptr) *principal = *who;
    if (who->admin) return grpc::Status::OK;  // not counted: see FunctionsServerOptions
    std::string denied;
    if (deploy) {
      denied = "deploying needs the admin key";
    } else if (who->tenant != tenant) {
      denied =
          StrCat("this API key is not one of tenant '", remote_internal::Printable(tenant), "'");
    }
    if (denied.empty()) return Admit(context, tenant);
    permission_denied_.fetch_add(1, std::memory_order_relaxed);
    LogRefusal(StrCat(method, " for tenant '", remote_internal::Printable(tenant),
                      "' with a key of tenant '", who->tenant, "' refused: ", denied));
    return grpc::Status(grpc::StatusCode::PERMISSION_DENIED, denied);
  }

  // Counts the call against its tenant's max_calls_per_tenant, or refuses it.
  grpc::Status Admit(const grpc::ServerContext& context, std::string_view tenant) {
    if (tenant_calls_.Admit(static_cast<const grpc::ServerContextBase*>(&context),
                            std::string(tenant))) {
      return grpc::Status::OK;
    }
    tenant_busy_.fetch_add(1, std::memory_order_relaxed);
    return grpc::Status(
        grpc::StatusCode::RESOURCE_EXHAUSTED,
        StrCat("tenant '", remote_internal::Printable(tenant), "' has ",
               options_.max_calls_per_tenant,
               " calls under way on this server (its max_calls_per_tenant); retry later"));
  }

  void Log(LogLevel level, std::string_view line) const {
    if (options_.log) options_.log(level, line);
  }
  // A refused key's warning, at most kRefusalsLoggedPerSecond a second: anyone can send calls
  // with a bad key (a hunt's flood wrote 34,236 lines in 10 s). The first line of each second
  // says how many the second before left out; the counters count them all.
  static constexpr int kRefusalsLoggedPerSecond = 10;
  void LogRefusal(std::string_view line) {
    int64_t left_out = 0;
    {
      internal::MutexLock lock(&refusals_mu_);
      const int64_t second = absl::ToUnixSeconds(absl::Now());
      if (second != refusals_second_) {
        left_out = refusals_left_out_;
        refusals_second_ = second;
        refusals_logged_ = 0;
        refusals_left_out_ = 0;
      }
      if (refusals_logged_ >= kRefusalsLoggedPerSecond) {
        ++refusals_left_out_;
        return;
      }
      ++refusals_logged_;
    }
    if (left_out > 0) {
      Log(LogLevel::kWarn, StrCat(left_out, " more refused calls were not logged (at most ",
                                  kRefusalsLoggedPerSecond, " a second)"));
    }
    Log(LogLevel::kWarn, line);
  }

  // A method's latency, observed when the handler returns.
  struct Method {
    std::string name;
    LatencyHistogram latency;
  };
  enum MethodIndex {
    kQuery,
    kMutation,
    kSubmit,
    kGetCall,
    kCancelCall,
    kListCalls,
    kDeploy,
    kMethods
  };
  // A ListCalls page: at most this many calls, in at most this many bytes (half a message).
  static constexpr size_t kMaxListedCalls = 256;
  static constexpr size_t kMaxListReplyBytes = remote_internal::kMaxMessageBytes / 2;
  // A handler while it runs: its method's latency, and the calls Shutdown waits for. Once the
  // server is stopping a handler is not admitted (it refuses its call, which has not run).
  class Handling {
   public:
    Handling(Impl& impl, MethodIndex method)
        : impl_(impl), method_(impl.methods_[method]), admitted_(impl.EnterHandler()) {}
    ~Handling() {
      method_.latency.Observe(absl::Now() - start_);
      if (admitted_) impl_.LeaveHandler();
    }
    bool admitted() const { return admitted_; }

   private:
    Impl& impl_;
    Method& method_;
    const absl::Time start_ = absl::Now();
    const bool admitted_;
  };
  bool EnterHandler() {
    internal::MutexLock lock(&handlers_mu_);
    if (stopping_) return false;
    ++handlers_;
    return true;
  }
  void LeaveHandler() {
    internal::MutexLock lock(&handlers_mu_);
    if (--handlers_ == 0) handlers_cv_.SignalAll();
  }
  static grpc::Status StoppingStatus() {
    return grpc::Status(grpc::StatusCode::UNAVAILABLE,
                        "the server is stopping; the call did not run (call another server)");
  }

  // An engine's error as the call's status; one whose commit outcome is unknown says so in a
  // trailer, as a status carries no payload across gRPC. (A Query's or Mutation's outcome
  // travels whole in its reply.)
  static grpc::Status EngineStatus(grpc::ServerContext& context, const absl::Status& status) {
    if (IsCommitOutcomeUnknown(status)) {
      const std::optional<Timestamp> ts = CommitOutcomeUnknownTimestamp(status);
      context.AddTrailingMetadata(remote_internal::kOutcomeUnknownHeader,
                                  ts.has_value() ? StrCat(*ts) : "");
    }
    return ToGrpcStatus(status);
  }

  static absl::StatusOr<Value> ArgsOf(const std::string& args) {
    return wire_internal::FromProtoBytes(args, Value::FromObject({}));
  }

  grpc::Status Call(grpc::ServerContext* context, const v1::CallRequest& request,
                    v1::CallReply* reply, bool mutation) {
    if (grpc::Status s =
            Authorize(*context, mutation ? "Mutation" : "Query", request.tenant(), false);
        !s.ok()) {
      return s;
    }
    // A query changes nothing, so there is nothing to do once only: a key sent with one would
    // be ignored, and a client that counted on it would be misled.
    if (!mutation && !request.idempotency_key().empty()) {
      return ToGrpcStatus(absl::InvalidArgumentError(
          "an idempotency key is for mutations: a query has no effect to apply once"));
    }
    absl::StatusOr<Value> args = ArgsOf(request.args());
    if (!args.ok()) return ToGrpcStatus(args.status());
    // The client's deadline is the call's, less a margin for the answer's way back (a tenth
    // of the time left, at most 50 ms): runs stop there, and no retry starts after it. With
    // the client's deadline itself, a commit that ended in its last milliseconds reached the
    // client after its own timer had said DEADLINE_EXCEEDED (8 of 33 calls in the remote
    // hunt). A slower network can still lose the race: retry with the idempotency key.
    absl::Time deadline = std::min(remote_internal::DeadlineOf(context->raw_deadline()),
                                   absl::Now() + options_.max_call_duration);
    if (deadline != absl::InfiniteFuture()) {
      deadline -= std::min(absl::Milliseconds(50),
                           std::max(deadline - absl::Now(), absl::ZeroDuration()) / 10);
    }
    absl::StatusOr<CallResult> result =
        mutation ? engine_.Mutation(request.tenant(), request.function(), *args,
                                    MutationOptions{.idempotency_key = request.idempotency_key(),
                                                    .deadline = deadline})
                 : engine_.Query(request.tenant(), request.function(), *args,
                                 QueryOptions{.deadline = deadline});
    if (!result.ok() && (absl::IsInternal(result.status()) || absl::IsDataLoss(result.status()))) {
      Log(LogLevel::kError,
          StrCat(request.tenant(), " ", remote_internal::Printable(request.function()), ": ",
                 result.status().ToString()));
    }
    remote_internal::ToProto(result, reply);
    return grpc::Status::OK;
  }

  Engine& engine_;
  const FunctionsServerOptions options_;
  std::array<Method, kMethods> methods_{
      Method{"query"},       Method{"mutation"},   Method{"submit"}, Method{"get_call"},
      Method{"cancel_call"}, Method{"list_calls"}, Method{"deploy"}};
  std::atomic<uint64_t> unauthenticated_{0};
  std::atomic<uint64_t> permission_denied_{0};
  std::atomic<uint64_t> tenant_busy_{0};
  TenantCalls tenant_calls_;  // before server_: its interceptors use it until the server is gone
  absl::flat_hash_map<std::string, std::string> keys_;  // key -> tenant; fixed after Init
  int port_ = 0;
  internal::Mutex refusals_mu_;
  int64_t refusals_second_ ABSL_GUARDED_BY(refusals_mu_) = 0;
  int refusals_logged_ ABSL_GUARDED_BY(refusals_mu_) = 0;
  int64_t refusals_left_out_ ABSL_GUARDED_BY(refusals_mu_) = 0;
  static constexpr absl::Duration kMinAnswerGrace = absl::Seconds(1);
  internal::Mutex handlers_mu_;
  internal::CondVar handlers_cv_{&handlers_mu_};
  bool stopping_ ABSL_GUARDED_BY(handlers_mu_) = false;
  int handlers_ ABSL_GUARDED_BY(handlers_mu_) = 0;  // admitted and not yet returned
  internal::Mutex shutdown_mu_;
  std::unique_ptr<grpc::Server> server_ ABSL_GUARDED_BY(shutdown_mu_);
};

absl::StatusOr<std::unique_ptr<FunctionsServer>> FunctionsServer::Start(
    Engine& engine, FunctionsServerOptions options) {
  auto impl = std::make_unique<Impl>(engine, std::move(options));
  TXFN_RETURN_IF_ERROR(impl->Init());
  return std::unique_ptr<FunctionsServer>(new FunctionsServer(std::move(impl)));
}

FunctionsServer::FunctionsServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
FunctionsServer::~FunctionsServer() = default;
int FunctionsServer::port() const { return impl_->port(); }
void FunctionsServer::Shutdown(absl::Duration grace) { impl_->Shutdown(grace); }
void FunctionsServer::AppendMetrics(MetricsText* out) const { impl_->AppendMetrics(out); }

}  // namespace txfn

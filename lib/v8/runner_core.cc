// The function runner's request path: a context per request (or a kept one),
// the tenant's modules, the call, and the result or error.
#include "lib/v8/runner_core.h"

#include <time.h>

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/strings/cord.h"
#include "absl/strings/match.h"
#include "lib/utf8.h"
#include "lib/v8/isolate_runtime.h"
#include "lib/v8/js_errors.h"
#include "lib/v8/js_strings.h"
#include "lib/v8/js_value.h"
#include "lib/v8/module_loader.h"
#include "txfn/errors.h"
#include "txfn/internal/status_macros.h"
#include "txfn/internal/strings.h"
#include "v8.h"

namespace txfn::internal {
namespace {

// The first of `names` for an error message, each quoted ("none" for none): what a caller
// who mistyped a module or export could have meant.
std::string NamesShown(const std::vector<std::string>& names) {
  if (names.empty()) return "none";
  std::vector<std::string> quoted;
  quoted.reserve(names.size());
  for (const std::string& name : names) quoted.push_back(Quote(name));
  return FirstNames(quoted);
}

// The kind mark of an exported value: set on query(), mutation() and action()
// wrappers only.
std::optional<FunctionKind> KindOf(v8::Local<v8::Context> context, IsolateRuntime& rt,
                                   v8::Local<v8::Value> fn);

// The queries, mutations and actions a module namespace exports, by name (a namespace's keys
// are its export names, sorted; reading them, their bindings and marks runs no JavaScript):
// what a caller may call, not the module's constants or plain helper functions.
std::vector<std::string> ExportedCallables(v8::Local<v8::Context> context, IsolateRuntime& rt,
                                           v8::Local<v8::Object> ns) {
  std::vector<std::string> names;
  v8::Isolate* isolate = context->GetIsolate();
  v8::TryCatch tc(isolate);  // (a binding not yet initialised throws: skipped)
  v8::Local<v8::Array> keys;
  if (!ns->GetOwnPropertyNames(context).ToLocal(&keys)) return names;
  for (uint32_t i = 0; i < keys->Length(); ++i) {
    v8::Local<v8::Value> key;
    v8::Local<v8::Value> value;
    if (keys->Get(context, i).ToLocal(&key) && key->IsString() &&
        ns->Get(context, key).ToLocal(&value) && KindOf(context, rt, value).has_value()) {
      names.push_back(Utf8Prefix(isolate, key.As<v8::String>(), kQuoteBytes));
    }
  }
  return names;
}

constexpr int kQueryMark = 1;
constexpr int kMutationMark = 2;
constexpr int kActionMark = 3;

std::optional<FunctionKind> KindOfMark(int mark) {
  switch (mark) {
    case kQueryMark:
      return FunctionKind::kQuery;
    case kMutationMark:
      return FunctionKind::kMutation;
    case kActionMark:
      return FunctionKind::kAction;
    default:
      return std::nullopt;
  }
}

// The kind mark of an exported value: set on query(), mutation() and action()
// wrappers only.
std::optional<FunctionKind> KindOf(v8::Local<v8::Context> context, IsolateRuntime& rt,
                                   v8::Local<v8::Value> fn) {
  v8::Local<v8::Value> mark;
  if (!fn->IsFunction() ||
      !fn.As<v8::Object>()->GetPrivate(context, rt.kind_key()).ToLocal(&mark) || !mark->IsInt32()) {
    return std::nullopt;
  }
  return KindOfMark(mark.As<v8::Int32>()->Value());
}

absl::Duration ThreadCpuTime() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return absl::Seconds(ts.tv_sec) + absl::Nanoseconds(ts.tv_nsec);
}

// The runner's state on the lease's isolate, made on first use. The runner
// owns the lease's data slot (no RTTI in this layer).
IsolateRuntime* RuntimeOf(IsolateLease& lease) {
  if (lease.data() == nullptr) lease.set_data(std::make_unique<IsolateRuntime>(lease.isolate()));
  return static_cast<IsolateRuntime*>(lease.data());
}

// The status of a request that failed after the isolate's ArrayBuffer
// allocator refused an allocation (V8 showed it as a RangeError, which the
// request may also have caught and survived: then it is not reported).
std::optional<absl::Status> BufferLimitStatus(const IsolateLease& lease, uint64_t refused_before,
                                              std::string_view who) {
  if (lease.array_buffers_refused() == refused_before) return std::nullopt;
  return WithLimit(
      absl::ResourceExhaustedError(StrCat(who, " exceeded its array buffer memory limit (",
                                          lease.array_buffer_limit_bytes(), " bytes)")),
      Limit::kArrayBufferMemory);
}

// Closes a context when a request is done with it: nothing of the request
// may run once it returned. A fresh context's state is destroyed (which
// closes it for good); a kept one is closed until its next request opens it.
void Retire(v8::Isolate* isolate, std::unique_ptr<ContextState> fresh, ContextState* kept) {
  if (kept != nullptr) kept->Close();
  if (fresh != nullptr) {
    fresh.reset();
    isolate->ContextDisposedNotification();
  }
}

// Runs the jobs a request left queued in `cs` (a promise it settled while its
// result was converted, or before it threw), in its own context, while ctx.db
// and console refuse them (no request is current any more): so none of them
// can run in the next request's checkpoint. Whether the context may be kept:
// not once a limit stopped the request or one of these jobs.
bool RunLeftoverJobs(IsolateLease& lease, ContextState& cs) {
  v8::Isolate* isolate = cs.rt->isolate();
  if (isolate->IsExecutionTerminating() || LimitStatus(lease, "").has_value()) return false;
  v8::HandleScope scope(isolate);
  v8::Context::Scope context_scope(cs.context.Get(isolate));
  v8::TryCatch tc(isolate);
  cs.running_leftovers = true;
  cs.microtasks->PerformCheckpoint(isolate);
  cs.running_leftovers = false;
  return !isolate->IsExecutionTerminating() && !LimitStatus(lease, "").has_value();
}

// Ends a request in the isolate's hardened context. Jobs the request left
// queued (a promise it settled while its result was converted, or before it
// threw) run now, in its own context, while ctx.db and console refuse them
// (no request is current any more): so none of them can run in the next
// request's checkpoint. Then the request's module instances and ctx are let
// go and the context is closed until the next request opens it. A request
// stopped by a limit or by the host (or a leftover job that is) takes the
// context with it: its heap or its queue may be in any state. So does one
// whose requests made more Intl objects than kMaxIntlBytesPerHardenedContext:
// they may be kept on its frozen intrinsics.
void ReleaseHardened(IsolateLease& lease, IsolateRuntime& rt, const absl::Status& status) {
  v8::Isolate* isolate = rt.isolate();
  ContextState& cs = *rt.hardened();
  const bool keep = !absl::IsCancelled(status) && RunLeftoverJobs(lease, cs) &&
                    cs.intl_bytes <= kMaxIntlBytesPerHardenedContext;
  cs.ResetModules();
  cs.ctx.Reset();
  if (keep) {
    cs.Close();
  } else {
    rt.hardened().reset();
    isolate->ContextDisposedNotification();
  }
}

// Adds the query, mutation and action exports of an evaluated module, with
// their attributes, to `functions`.
absl::Status ListExports(v8::Local<v8::Context> context, IsolateRuntime& rt,
                         v8::Local<v8::Module> module, const std::string& path,
                         absl::FunctionRef<absl::Status()> js_error,
                         std::map<std::string, FunctionInfo>& functions) {
  v8::Isolate* isolate = context->GetIsolate();
  v8::Local<v8::Object> ns = module->GetModuleNamespace().As<v8::Object>();
  v8::Local<v8::Array> names;
  if (!ns->GetOwnPropertyNames(context).ToLocal(&names)) return js_error();
  for (uint32_t i = 0; i < names->Length(); ++i) {
    v8::Local<v8::Value> name;
    v8::Local<v8::Value> fn;
    if (!names->Get(context, i).ToLocal(&name) || !ns->Get(context, name).ToLocal(&fn)) {
      return js_error();
    }
    std::optional<FunctionKind> kind = KindOf(context, rt, fn);
    if (!kind.has_value() || !name->IsString()) continue;
    const std::string export_name = Utf8Prefix(isolate, name.As<v8::String>(), 256);
    FunctionInfo info{.kind = *kind};
    v8::Local<v8::Value> attrs;
    if (fn.As<v8::Object>()->GetPrivate(context, rt.attrs_key()).ToLocal(&attrs) &&
        attrs->IsObject()) {
      absl::StatusOr<Value> value = FromJs(context, attrs, size_t{1} << 20, nullptr);
      if (!value.ok()) {
        return Prefixed(value.status(), StrCat("attributes of ", path, ":", export_name));
      }
      info.attributes = *std::move(value);
    }
    v8::Local<v8::Value> args;
    if (fn.As<v8::Object>()->GetPrivate(context, rt.args_key()).ToLocal(&args) && args->IsArray()) {
      absl::StatusOr<Value> value = FromJs(context, args, size_t{1} << 20, nullptr);
      if (value.ok()) info.args = *std::move(value);
    }
    functions[CanonicalFunctionName(StrCat(path, ":", export_name))] = std::move(info);
  }
  return absl::OkStatus();
}

}  // namespace

RunnerCore::RunnerCore(FunctionRunnerOptions options)
    : options_(std::move(options)),
      module_cache_({.capacity = options_.module_cache_bytes,
                     .weigher = [](const std::string& key, const CompiledModule& m) {
                       return key.size() + m.source.size() + m.code_cache.size();
                     }}) {}

TransactionOptions RunnerCore::TransactionOptionsFor(const RunRequest& request) {
  return TransactionOptions{.limits = request.limits,
                            .id_seed = request.seed,
                            .deterministic_ids = request.deterministic_ids,
                            .read_only = request.kind == FunctionKind::kQuery,
                            .now = request.now};
}

RunResult RunnerCore::RunOnIsolate(IsolateLease& lease, const RunRequest& request,
                                   Transaction& txn) {
  RunResult result;
  const absl::Duration cpu_start = ThreadCpuTime();
  result.stats.isolate_reused = lease.reused();
  v8::Isolate* isolate = lease.isolate();
  v8::HandleScope handle_scope(isolate);
  const std::string who = StrCat("function ", request.function);
  const uint64_t buffers_refused = lease.array_buffers_refused();
  bool keep_context = false;
  std::unique_ptr<ContextState> fresh;
  ContextState* cs = nullptr;
  ContextState* hardened = nullptr;  // cs, when it is the isolate's hardened context
  IsolateRuntime* rt = nullptr;
  std::optional<CurrentRequest> current;
  v8::Local<v8::Value> returned;  // the function's value or promise

  absl::Status status = [&]() -> absl::Status {
    const TenantMetadata& metadata = txn.metadata();
    if (!metadata.enabled()) {
      return absl::FailedPreconditionError(StrCat("tenant '", txn.tenant(), "' is disabled"));
    }
    std::string_view name = request.function;
    size_t colon = name.rfind(':');
    std::string_view module_name = colon == std::string_view::npos ? name : name.substr(0, colon);
    std::string export_name =
        colon == std::string_view::npos ? "default" : std::string(name.substr(colon + 1));
    std::optional<std::string> path = ResolveModule(metadata, "", module_name);
    if (!path.has_value()) {
      std::vector<std::string> paths;
      for (const auto& [module_path, source] : metadata.modules()) paths.push_back(module_path);
      return absl::NotFoundError(StrCat("module ", Quote(module_name), " not found (tenant '",
                                        txn.tenant(), "' has ", NamesShown(paths), ")"));
    }
    if (!request.args.is_null() && !request.args.is_object()) {
      return absl::InvalidArgumentError("arguments must be an object");
    }
    // Checked here, where every query and mutation passes (local, remote, queued): the
    // limit was enforced on what JavaScript returned and wrote, not on what it was given.
    if (const size_t bytes = request.args.ByteSize(); bytes > options_.max_value_bytes) {
      return absl::InvalidArgumentError(StrCat("arguments of ", request.function, " are ", bytes,
                                               " bytes, over the limit of ",
                                               options_.max_value_bytes, " (max_value_bytes)"));
    }
    TXFN_RETURN_IF_ERROR(CheckUtf8(request.args, StrCat("arguments of ", request.function)));

    rt = RuntimeOf(lease);
    const bool reuse = options_.reuse_context && options_.reuse_context(txn.tenant());
    const size_t fingerprint = reuse ? ModulesFingerprint(metadata) : 0;
    if (reuse && rt->reused() != nullptr && rt->reused()->fingerprint == fingerprint) {
      cs = rt->reused().get();
      cs->Open();
      result.stats.context_reused = true;
    } else if (!reuse && Hardened(request.kind)) {
      result.stats.hardened_context_made = rt->hardened() == nullptr;
      TXFN_ASSIGN_OR_RETURN(cs, rt->OpenHardened());
      hardened = cs;
      result.stats.context_hardened = true;
    } else {
      rt->reused().reset();
      TXFN_ASSIGN_OR_RETURN(fresh, rt->NewContext());
      fresh->fingerprint = fingerprint;
      cs = fresh.get();
    }
    v8::Local<v8::Context> context = cs->context.Get(isolate);
    v8::Context::Scope context_scope(context);

    current.emplace(rt, cs, txn, options_, lease, request.seed, &result.logs);
    if (request.kind == FunctionKind::kAction) current->state().BecomeAction(request.action_host);
    if (request.kind == FunctionKind::kMutation && request.check_scheduled) {
      current->state().check_scheduled = &request.check_scheduled;
    }
    RequestState& req = current->state();

    v8::TryCatch tc(isolate);
    auto js_error = [&]() -> absl::Status {
      if (std::optional<absl::Status> terminated = TerminationStatus(isolate, tc, lease, who)) {
        return *terminated;
      }
      if (!req.sticky.ok()) return req.sticky;
      return CaughtStatus(isolate, rt->code_key(), tc, "");
    };

    ModuleLoader loader(module_cache_, *rt, txn, result.stats);
    TXFN_ASSIGN_OR_RETURN(v8::Local<v8::Module> module, loader.Load(*cs, *path));
    if (absl::Status s = loader.Evaluate(*cs, module, *path, js_error); !s.ok()) {
      return req.sticky.ok() ? s : req.sticky;
    }
    v8::Local<v8::Object> ns = module->GetModuleNamespace().As<v8::Object>();
    v8::Local<v8::Value> fn;
    if (!ns->Get(context, MessageString(isolate, export_name)).ToLocal(&fn)) return js_error();
    if (fn->IsUndefined()) {
      return absl::NotFoundError(StrCat("module '", *path, "' has no export ", Quote(export_name),
                                        " (its queries, mutations and actions: ",
                                        NamesShown(ExportedCallables(context, *rt, ns)), ")"));
    }
    std::optional<FunctionKind> declared = KindOf(context, *rt, fn);
    if (!declared.has_value()) {
      return absl::InvalidArgumentError(
          StrCat(request.function,
                 " is not a query, mutation or action (wrap it with query(), mutation() or "
                 "action() from \"txfn/server\")"));
    }
    if (*declared != request.kind)
      return KindMismatchError(request.function, *declared, request.kind);
    absl::StatusOr<v8::Local<v8::Value>> args =
        ToJs(context, request.args.is_null() ? Value::FromObject({}) : request.args);
    if (!args.ok()) return args.status();
    v8::Local<v8::Value> argv[2] = {
        (request.kind == FunctionKind::kAction ? cs->action_ctx : cs->ctx).Get(isolate), *args};
    if (!fn.As<v8::Function>()->Call(context, v8::Undefined(isolate), 2, argv).ToLocal(&returned)) {
      // An action that threw has ended as one that returned has: describing what it threw
      // runs that value's getters, whose runMutation and scheduler calls committed after the
      // action had failed (a hunt: 206 documents written by a thrown Error's `message`).
      if (request.kind == FunctionKind::kAction) NoteActionThrew(req);
      return js_error();
    }
    if (request.kind == FunctionKind::kAction) NoteActionReturned(isolate, returned, req);
    cs->microtasks->PerformCheckpoint(isolate);
    if (isolate->IsExecutionTerminating()) return js_error();
    v8::Local<v8::Value> value = returned;
    if (returned->IsPromise()) {
      v8::Local<v8::Promise> p = returned.As<v8::Promise>();
      if (p->State() == v8::Promise::kRejected) {
        if (!req.sticky.ok()) return req.sticky;
        return RejectionStatus(isolate, rt->code_key(), p->Result());
      }
      if (p->State() == v8::Promise::kPending) {
        return absl::UnknownError(StrCat(request.function,
                                         " returned a promise that was still pending after the "
                                         "microtask queue drained (there are no timers or I/O)"));
      }
      value = p->Result();
    }
    // A limit hit and caught sticks to the request. A write not awaited fails
    // in a promise nobody handles: committing the mutation's other writes
    // would commit half of what it meant. Refused with that write's error, as
    // if it had been awaited.
    auto refused_by_what_ran = [&]() -> absl::Status {
      if (!req.sticky.ok()) return req.sticky;
      if (request.kind != FunctionKind::kMutation) return absl::OkStatus();
      for (const auto& [promise, text] : req.unhandled) {
        v8::Local<v8::Promise> p = promise.Get(isolate);
        if (p == returned) continue;
        return Prefixed(RejectionStatus(isolate, rt->code_key(), p->Result()),
                        "a promise the mutation did not await was rejected, so nothing was "
                        "committed (did you forget `await`?)");
      }
      return absl::OkStatus();
    };
    TXFN_RETURN_IF_ERROR(refused_by_what_ran());
    absl::StatusOr<Value> converted = FromJs(context, value, options_.max_value_bytes, &lease);
    if (!converted.ok()) {
      if (absl::IsCancelled(converted.status())) return js_error();
      return Prefixed(converted.status(), StrCat("result of ", request.function));
    }
    // The result's getters are the tenant's code too: their writes, failed
    // writes and limits count as the function's (they committed before), and
    // so do the jobs they queued (a write in a `.then`), run here while the
    // transaction is open (later, ctx.db refuses them, unseen by the caller).
    cs->microtasks->PerformCheckpoint(isolate);
    if (isolate->IsExecutionTerminating()) return js_error();
    TXFN_RETURN_IF_ERROR(refused_by_what_ran());
    result.value = *std::move(converted);
    loader.WarmCodeCaches();
    keep_context = reuse;
    return absl::OkStatus();
  }();

  if (current.has_value()) {
    current->LogUnhandledRejections(returned);
    current.reset();
  }
  if (hardened != nullptr) ReleaseHardened(lease, *rt, status);
  // A kept context's leftover jobs run now, not in the next request's checkpoint.
  if (keep_context && !RunLeftoverJobs(lease, *cs)) keep_context = false;
  if (rt != nullptr && keep_context && fresh != nullptr) rt->reused() = std::move(fresh);
  if (rt != nullptr && rt->reused() != nullptr &&
      (!status.ok() || (!keep_context && rt->reused().get() == cs))) {
    // A failed request, or one whose leftover jobs were stopped, leaves no context behind.
    if (rt->reused().get() == cs) cs = nullptr;
    rt->reused().reset();
  }
  Retire(isolate, std::move(fresh), keep_context ? cs : nullptr);
  if (isolate->IsExecutionTerminating()) isolate->CancelTerminateExecution();
  // A limit hit anywhere (a getter, a conversion, a stack hook) decides; a
  // failure naming no limit after the allocator refused a buffer is that one.
  lease.CheckHeapLimit();
  if (std::optional<absl::Status> limit = LimitStatus(lease, who)) {
    status = *std::move(limit);
  } else if (!status.ok() && !ExceededLimit(status).has_value()) {
    if (auto buffers = BufferLimitStatus(lease, buffers_refused, who)) status = *buffers;
  }
  result.stats.module_cache_hit = status.ok() && result.stats.modules_compiled == 0;
  result.commit = txn.Prepare();
  if (!status.ok()) {
    result.commit.writes.clear();
    result.value = Value::Null();
  }
  // The logs travel with an error too, for callers that only pass a status on.
  result.status = WithLogs(std::move(status), result.logs);
  result.stats.cpu_time = ThreadCpuTime() - cpu_start;
  return result;
}

absl::Status RunnerCore::CheckModulesOnIsolate(IsolateLease& lease, Transaction& txn,
                                               std::map<std::string, FunctionInfo>* functions) {
  v8::Isolate* isolate = lease.isolate();
  v8::HandleScope handle_scope(isolate);
  std::unique_ptr<ContextState> fresh;
  ContextState* hardened = nullptr;
  IsolateRuntime* rt = nullptr;
  RunStats stats;
  std::vector<LogEntry> logs;
  std::string failed_module;
  const uint64_t buffers_refused = lease.array_buffers_refused();
  absl::Status status = [&]() -> absl::Status {
    rt = RuntimeOf(lease);
    // The modules are checked in the context their queries and mutations
    // will run in: under kHardened, a top level that patches a built-in fails
    // here rather than in every request.
    ContextState* cs = nullptr;
    if (Hardened(FunctionKind::kQuery) &&
        !(options_.reuse_context && options_.reuse_context(txn.tenant()))) {
      TXFN_ASSIGN_OR_RETURN(cs, rt->OpenHardened());
      hardened = cs;
    } else {
      TXFN_ASSIGN_OR_RETURN(fresh, rt->NewContext());
      cs = fresh.get();
    }
    v8::Local<v8::Context> context = cs->context.Get(isolate);
    v8::Context::Scope context_scope(context);
    CurrentRequest current(rt, cs, txn, options_, lease, /*seed=*/0, &logs);
    v8::TryCatch tc(isolate);
    ModuleLoader loader(module_cache_, *rt, txn, stats);
    for (const auto& [path, source] : txn.metadata().modules()) {
      failed_module = path;
      const std::string who = StrCat("module '", path, "'");
      auto js_error = [&]() -> absl::Status {
        if (std::optional<absl::Status> terminated = TerminationStatus(isolate, tc, lease, who)) {
          return *terminated;
        }
        return CaughtStatus(isolate, rt->code_key(), tc, "");
      };
      absl::StatusOr<v8::Local<v8::Module>> module = loader.Load(*cs, path);
      // (The loader names the module in some of its errors: not twice.)
      const auto named = [&](const absl::Status& s) {
        return absl::StartsWith(s.message(), who) ? s : Prefixed(s, who);
      };
      if (!module.ok()) return named(module.status());
      if (absl::Status s = loader.Evaluate(*cs, *module, path, js_error); !s.ok()) {
        return named(s);
      }
      if (functions != nullptr) {
        TXFN_RETURN_IF_ERROR(ListExports(context, *rt, *module, path, js_error, *functions));
      }
    }
    return absl::OkStatus();
  }();
  if (hardened != nullptr) ReleaseHardened(lease, *rt, status);
  Retire(isolate, std::move(fresh), nullptr);
  if (isolate->IsExecutionTerminating()) isolate->CancelTerminateExecution();
  const std::string who = StrCat("module '", failed_module, "'");
  lease.CheckHeapLimit();
  if (std::optional<absl::Status> limit = LimitStatus(lease, who)) {
    status = *std::move(limit);
  } else if (!status.ok() && !ExceededLimit(status).has_value()) {
    if (auto buffers = BufferLimitStatus(lease, buffers_refused, who)) status = *buffers;
  }
  return status;
}

}  // namespace txfn::internal

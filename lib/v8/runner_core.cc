// The function runner's engine: contexts, modules, ctx.db natives, errors.
//
// Per isolate (IsolateRuntime, kept in the lease's data slot): the natives
// template, the compiled bootstrap script, two private symbols, an optional
// reused context, and a pointer to the request running now (the natives read
// it). Per context (ContextState, reachable from the context's embedder data):
// the bootstrap's exports and the modules compiled into it.
#include "lib/v8/runner_core.h"

#include <time.h>

#include <cmath>
#include <cstring>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/hash/hash.h"
#include "absl/strings/escaping.h"
#include "lib/v8/bootstrap_js.h"
#include "lib/v8/js_value.h"
#include "lib/v8/platform.h"
#include "txfn/internal/status_macros.h"
#include "txfn/internal/strings.h"
#include "v8.h"

namespace txfn::internal {
namespace {

// Embedder data index of a context's ContextState.
constexpr int kContextStateSlot = 8;
constexpr std::string_view kServerModule = "txfn/server";
constexpr int kQueryMark = 1;
constexpr int kMutationMark = 2;

absl::Duration ThreadCpuTime() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return absl::Seconds(ts.tv_sec) + absl::Nanoseconds(ts.tv_nsec);
}

uint64_t SplitMix64(uint64_t* state) {
  uint64_t z = (*state += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

v8::Local<v8::String> V8Str(v8::Isolate* isolate, std::string_view s) {
  return v8::String::NewFromUtf8(isolate, s.data(), v8::NewStringType::kNormal,
                                 static_cast<int>(s.size()))
      .ToLocalChecked();
}

std::string Utf8(v8::Isolate* isolate, v8::Local<v8::Value> v) {
  v8::String::Utf8Value text(isolate, v);
  return *text ? std::string(*text, static_cast<size_t>(text.length())) : std::string();
}

// The request running on an isolate now.
struct RequestState {
  Transaction* txn = nullptr;
  const FunctionRunnerOptions* options = nullptr;
  uint64_t rng = 0;
  double now_ms = 0;
  std::vector<LogEntry>* logs = nullptr;
  size_t log_bytes = 0;
  bool logs_truncated = false;
  // The first ResourceExhausted from the transaction: the request fails with
  // it even if JS caught the exception.
  absl::Status sticky;
};

struct ModuleEntry {
  std::string path;
  v8::Global<v8::Module> module;
};

class IsolateRuntime;

struct ContextState {
  IsolateRuntime* rt = nullptr;  // the natives find their isolate's runtime here
  v8::Global<v8::Context> context;
  v8::Global<v8::Object> server;  // {query, mutation}
  v8::Global<v8::Object> ctx;     // the ctx argument
  v8::Global<v8::Module> server_module;
  std::vector<ModuleEntry> modules;
  std::map<std::string, size_t, std::less<>> by_path;
  size_t fingerprint = 0;  // of the tenant's modules, for reuse
};

ContextState* StateOf(v8::Local<v8::Context> context) {
  return static_cast<ContextState*>(context->GetAlignedPointerFromEmbedderData(kContextStateSlot));
}

// Indices into the runner's startup snapshot: the bootstrapped context, and
// the data attached to it (the bootstrap's exports and a marker string that
// tells the runner's snapshot from another embedder's).
constexpr size_t kSnapshotContextIndex = 0;
constexpr size_t kSnapshotExportsIndex = 0;
constexpr size_t kSnapshotMarkerIndex = 1;
constexpr std::string_view kSnapshotMarker = "txfn.runner.snapshot.v1";

class IsolateRuntime : public IsolateData {
 public:
  explicit IsolateRuntime(v8::Isolate* isolate) : isolate_(isolate) {}

  absl::Status Init() {
    v8::HandleScope scope(isolate_);
    kind_key_.Reset(isolate_, v8::Private::New(isolate_, V8Str(isolate_, "txfn.kind")));
    code_key_.Reset(isolate_, v8::Private::New(isolate_, V8Str(isolate_, "txfn.code")));
    return absl::OkStatus();
  }

  // Every native callback, null-terminated: the external references of the
  // runner's startup snapshot (a snapshot's functions refer to their C++
  // callbacks through this table; isolates made from it must pass the same).
  static const intptr_t* ExternalReferences() {
    static const intptr_t kRefs[] = {
        reinterpret_cast<intptr_t>(&Now),    reinterpret_cast<intptr_t>(&Random),
        reinterpret_cast<intptr_t>(&Log),    reinterpret_cast<intptr_t>(&Fail),
        reinterpret_cast<intptr_t>(&Mark),   reinterpret_cast<intptr_t>(&Get),
        reinterpret_cast<intptr_t>(&Query),  reinterpret_cast<intptr_t>(&Insert),
        reinterpret_cast<intptr_t>(&Patch),  reinterpret_cast<intptr_t>(&Replace),
        reinterpret_cast<intptr_t>(&Delete), 0};
    return kRefs;
  }

  // Runs the bootstrap in `context` (entered by the caller) and returns its
  // exports {server, ctx}. The natives carry no data: they find their
  // IsolateRuntime through the calling context's ContextState, so the same
  // code serves contexts made here and contexts from the startup snapshot.
  static absl::StatusOr<v8::Local<v8::Object>> Bootstrap(v8::Isolate* isolate,
                                                         v8::Local<v8::Context> context) {
    v8::EscapableHandleScope scope(isolate);
    v8::Local<v8::ObjectTemplate> natives_template = v8::ObjectTemplate::New(isolate);
    auto add = [&](const char* name, v8::FunctionCallback cb) {
      natives_template->Set(isolate, name, v8::FunctionTemplate::New(isolate, cb));
    };
    add("now", &Now);
    add("random", &Random);
    add("log", &Log);
    add("fail", &Fail);
    add("mark", &Mark);
    add("get", &Get);
    add("query", &Query);
    add("insert", &Insert);
    add("patch", &Patch);
    add("replace", &Replace);
    add("del", &Delete);
    v8::TryCatch tc(isolate);
    v8::ScriptOrigin origin(isolate, V8Str(isolate, "txfn:bootstrap"));
    v8::Local<v8::Script> script;
    v8::Local<v8::Value> fn;
    v8::Local<v8::Object> natives;
    v8::Local<v8::Value> out;
    v8::Local<v8::Value> arg;
    if (!v8::Script::Compile(context, V8Str(isolate, kBootstrapSource), &origin).ToLocal(&script) ||
        !script->Run(context).ToLocal(&fn) ||
        !natives_template->NewInstance(context).ToLocal(&natives) ||
        !(arg = natives, fn.As<v8::Function>()->Call(context, v8::Undefined(isolate), 1, &arg))
             .ToLocal(&out) ||
        !out->IsObject()) {
      return absl::InternalError(StrCat("bootstrap failed: ", Utf8(isolate, tc.Exception())));
    }
    return scope.Escape(out.As<v8::Object>());
  }

  v8::Isolate* isolate() const { return isolate_; }
  RequestState* current() const { return current_; }
  void set_current(RequestState* r) { current_ = r; }
  std::unique_ptr<ContextState>& reused() { return reused_; }
  v8::Local<v8::Private> kind_key() const { return kind_key_.Get(isolate_); }
  v8::Local<v8::Private> code_key() const { return code_key_.Get(isolate_); }

  // A new context with the bootstrap run in it: deserialised from the
  // runner's startup snapshot if the isolate was made from it (see
  // UseRunnerSnapshot), else a plain context that runs the bootstrap now.
  absl::StatusOr<std::unique_ptr<ContextState>> NewContext() {
    auto state = std::make_unique<ContextState>();
    state->rt = this;
    v8::Local<v8::Context> context;
    v8::Local<v8::Object> exports;
    if (from_snapshot_ != Tri::kNo) {
      const bool ok = FromSnapshot(&context, &exports);
      if (!ok && from_snapshot_ == Tri::kYes) {
        return absl::ResourceExhaustedError("cannot create a V8 context");
      }
      from_snapshot_ = ok ? Tri::kYes : Tri::kNo;
      if (!ok) {
        context.Clear();
        exports.Clear();
      }
    }
    if (context.IsEmpty()) {
      context = v8::Context::New(isolate_);
      if (context.IsEmpty()) return absl::ResourceExhaustedError("cannot create a V8 context");
      v8::Context::Scope scope(context);
      TXFN_ASSIGN_OR_RETURN(exports, Bootstrap(isolate_, context));
    }
    context->SetAlignedPointerInEmbedderData(kContextStateSlot, state.get());
    v8::Context::Scope scope(context);
    v8::Local<v8::Value> server;
    v8::Local<v8::Value> ctx;
    if (!exports->Get(context, V8Str(isolate_, "server")).ToLocal(&server) ||
        !exports->Get(context, V8Str(isolate_, "ctx")).ToLocal(&ctx) || !server->IsObject() ||
        !ctx->IsObject()) {
      return absl::InternalError("bootstrap exports are malformed");
    }
    state->server.Reset(isolate_, server.As<v8::Object>());
    state->ctx.Reset(isolate_, ctx.As<v8::Object>());
    state->context.Reset(isolate_, context);
    return state;
  }

  // Throws a JS Error carrying `status` (its code as a private property).
  void Throw(const absl::Status& status) {
    v8::Local<v8::Context> context = isolate_->GetCurrentContext();
    v8::Local<v8::Value> error = v8::Exception::Error(V8Str(isolate_, ToStd(status.message())));
    if (error->IsObject()) {
      (void)error.As<v8::Object>()->SetPrivate(
          context, code_key(), v8::Integer::New(isolate_, static_cast<int>(status.code())));
    }
    isolate_->ThrowException(error);
  }

 private:
  static IsolateRuntime* Self(const v8::FunctionCallbackInfo<v8::Value>& info) {
    return StateOf(info.GetIsolate()->GetCurrentContext())->rt;
  }
  // The running request, or throws and returns nullptr.
  static RequestState* Current(const v8::FunctionCallbackInfo<v8::Value>& info) {
    IsolateRuntime* self = Self(info);
    if (self->current_ == nullptr) {
      self->Throw(absl::FailedPreconditionError("no request is running"));
    }
    return self->current_;
  }
  // A transaction error: thrown into JS; limits also stick to the request.
  static void ThrowTxn(const v8::FunctionCallbackInfo<v8::Value>& info, RequestState* req,
                       const absl::Status& status) {
    if (absl::IsResourceExhausted(status) && req->sticky.ok()) req->sticky = status;
    Self(info)->Throw(status);
  }
  static bool StringArg(const v8::FunctionCallbackInfo<v8::Value>& info, int i,
                        std::string_view what, std::string* out) {
    if (!info[i]->IsString()) {
      Self(info)->Throw(absl::InvalidArgumentError(StrCat(what, " must be a string")));
      return false;
    }
    *out = Utf8(info.GetIsolate(), info[i]);
    return true;
  }
  static std::optional<Value> ValueArg(const v8::FunctionCallbackInfo<v8::Value>& info,
                                       RequestState* req, int i, std::string_view what) {
    absl::StatusOr<Value> v =
        FromJs(info.GetIsolate()->GetCurrentContext(), info[i], req->options->max_value_bytes);
    if (!v.ok()) {
      if (absl::IsCancelled(v.status())) return std::nullopt;  // terminating
      Self(info)->Throw(absl::Status(v.status().code(), StrCat(what, ": ", v.status().message())));
      return std::nullopt;
    }
    return *std::move(v);
  }
  static void Return(const v8::FunctionCallbackInfo<v8::Value>& info, const Value& value) {
    absl::StatusOr<v8::Local<v8::Value>> js = ToJs(info.GetIsolate()->GetCurrentContext(), value);
    if (!js.ok()) {
      Self(info)->Throw(js.status());
      return;
    }
    info.GetReturnValue().Set(*js);
  }

  static void Now(const v8::FunctionCallbackInfo<v8::Value>& info) {
    RequestState* req = Current(info);
    if (req != nullptr) info.GetReturnValue().Set(req->now_ms);
  }
  static void Random(const v8::FunctionCallbackInfo<v8::Value>& info) {
    RequestState* req = Current(info);
    if (req == nullptr) return;
    uint64_t bits = SplitMix64(&req->rng) >> 11;
    info.GetReturnValue().Set(static_cast<double>(bits) * 0x1.0p-53);
  }
  static void Log(const v8::FunctionCallbackInfo<v8::Value>& info) {
    RequestState* req = Current(info);
    if (req == nullptr) return;
    if (req->logs_truncated) return;
    int level = info[0]->Int32Value(info.GetIsolate()->GetCurrentContext()).FromMaybe(1);
    std::string message = Utf8(info.GetIsolate(), info[1]);
    if (req->logs->size() >= req->options->max_log_entries ||
        req->log_bytes + message.size() > req->options->max_log_bytes) {
      req->logs_truncated = true;
      req->logs->push_back({LogLevel::kWarn, "[logs truncated]"});
      return;
    }
    req->log_bytes += message.size();
    req->logs->push_back(
        {static_cast<LogLevel>(std::clamp(level, 0, static_cast<int>(LogLevel::kError))),
         std::move(message)});
  }
  static void Fail(const v8::FunctionCallbackInfo<v8::Value>& info) {
    int code = info[0]->Int32Value(info.GetIsolate()->GetCurrentContext()).FromMaybe(2);
    Self(info)->Throw(
        absl::Status(static_cast<absl::StatusCode>(code), Utf8(info.GetIsolate(), info[1])));
  }
  static void Mark(const v8::FunctionCallbackInfo<v8::Value>& info) {
    IsolateRuntime* self = Self(info);
    if (!info[0]->IsFunction()) return;
    (void)info[0].As<v8::Object>()->SetPrivate(info.GetIsolate()->GetCurrentContext(),
                                               self->kind_key(), info[1]);
  }
  static void Get(const v8::FunctionCallbackInfo<v8::Value>& info) {
    RequestState* req = Current(info);
    std::string id;
    if (req == nullptr || !StringArg(info, 0, "ctx.db.get(id): id", &id)) return;
    absl::StatusOr<std::optional<Value>> doc = req->txn->Get(id);
    if (!doc.ok()) return ThrowTxn(info, req, doc.status());
    if (!doc->has_value()) {
      info.GetReturnValue().SetNull();
      return;
    }
    Return(info, **doc);
  }
  // query(table, index, eqFields, eqValues, lower, upper, desc, limit, cursor)
  // -> [docs, cursor, done]; lower/upper are null or [field, value, inclusive].
  static void Query(const v8::FunctionCallbackInfo<v8::Value>& info) {
    RequestState* req = Current(info);
    if (req == nullptr) return;
    v8::Isolate* isolate = info.GetIsolate();
    v8::Local<v8::Context> context = isolate->GetCurrentContext();
    IsolateRuntime* self = Self(info);
    IndexQuery q;
    if (!StringArg(info, 0, "ctx.db.query(table): table", &q.table) ||
        !StringArg(info, 1, "withIndex(name): name", &q.index)) {
      return;
    }
    const TableInfo* table = req->txn->metadata().FindTable(q.table);
    const IndexInfo* index = table == nullptr ? nullptr : table->FindIndex(q.index);
    std::vector<std::string> fields;
    if (index != nullptr) fields = index->fields;
    auto bad = [&](const std::string& message) {
      self->Throw(absl::InvalidArgumentError(
          StrCat("withIndex(\"", q.index, "\") on ", q.table, ": ", message)));
    };
    std::vector<std::string> eq_fields;
    std::optional<Value> eq_values = ValueArg(info, req, 3, "withIndex eq value");
    if (!eq_values.has_value()) return;
    if (info[2]->IsArray()) {
      v8::Local<v8::Array> a = info[2].As<v8::Array>();
      for (uint32_t i = 0; i < a->Length(); ++i) {
        eq_fields.push_back(Utf8(isolate, a->Get(context, i).ToLocalChecked()));
      }
    }
    if (eq_values->is_array()) q.eq = eq_values->array();
    if (index == nullptr && table != nullptr && q.index != kByIdIndexName) {
      self->Throw(
          absl::NotFoundError(StrCat("table '", q.table, "' has no index '", q.index, "'")));
      return;
    }
    if (q.index == kByIdIndexName && !eq_fields.empty()) {
      return bad("the by_id index takes no range; use ctx.db.get(id)");
    }
    for (size_t i = 0; i < eq_fields.size(); ++i) {
      if (i >= fields.size() || eq_fields[i] != fields[i]) {
        return bad(StrCat("eq(\"", eq_fields[i], "\") must name index field ", i + 1,
                          i < fields.size() ? StrCat(" \"", fields[i], "\"") : " (none left)"));
      }
    }
    for (int side = 4; side <= 5; ++side) {
      if (info[side]->IsNull() || info[side]->IsUndefined()) continue;
      v8::Local<v8::Array> b = info[side].As<v8::Array>();
      std::string field = Utf8(isolate, b->Get(context, 0).ToLocalChecked());
      if (q.index == kByIdIndexName) return bad("the by_id index takes no range");
      if (eq_fields.size() >= fields.size() || field != fields[eq_fields.size()]) {
        return bad(StrCat("a bound on \"", field, "\" must name index field ", eq_fields.size() + 1,
                          eq_fields.size() < fields.size()
                              ? StrCat(" \"", fields[eq_fields.size()], "\"")
                              : " (none left)"));
      }
      absl::StatusOr<Value> bound =
          FromJs(context, b->Get(context, 1).ToLocalChecked(), req->options->max_value_bytes);
      if (!bound.ok()) return self->Throw(bound.status());
      IndexBound ib{.value = *std::move(bound),
                    .inclusive = b->Get(context, 2).ToLocalChecked()->IsTrue()};
      (side == 4 ? q.lower : q.upper) = std::move(ib);
    }
    q.order = info[6]->IsTrue() ? ScanOrder::kDescending : ScanOrder::kAscending;
    double limit = info[7]->NumberValue(context).FromMaybe(0);
    q.limit = limit > 0 ? static_cast<size_t>(limit) : 0;
    if (info[8]->IsString()) {
      std::string cursor = Utf8(isolate, info[8]);
      absl::string_view in(cursor.data(), cursor.size());
      std::string raw;
      if (!absl::WebSafeBase64Unescape(in, &raw)) return bad("malformed cursor");
      q.cursor = std::move(raw);
    }
    absl::StatusOr<QueryPage> page = req->txn->Query(q);
    if (!page.ok()) return ThrowTxn(info, req, page.status());
    std::vector<v8::Local<v8::Value>> docs;
    docs.reserve(page->documents.size());
    for (const Value& d : page->documents) {
      absl::StatusOr<v8::Local<v8::Value>> js = ToJs(context, d);
      if (!js.ok()) return self->Throw(js.status());
      docs.push_back(*js);
    }
    std::string cursor;
    absl::WebSafeBase64Escape(absl::string_view(page->cursor.data(), page->cursor.size()), &cursor);
    v8::Local<v8::Value> out[3] = {v8::Array::New(isolate, docs.data(), docs.size()),
                                   V8Str(isolate, cursor), v8::Boolean::New(isolate, page->done)};
    info.GetReturnValue().Set(v8::Array::New(isolate, out, 3));
  }
  static void Insert(const v8::FunctionCallbackInfo<v8::Value>& info) {
    RequestState* req = Current(info);
    std::string table;
    if (req == nullptr || !StringArg(info, 0, "ctx.db.insert(table, doc): table", &table)) return;
    std::optional<Value> doc = ValueArg(info, req, 1, "ctx.db.insert(table, doc): doc");
    if (!doc.has_value()) return;
    absl::StatusOr<std::string> id = req->txn->Insert(table, *std::move(doc));
    if (!id.ok()) return ThrowTxn(info, req, id.status());
    info.GetReturnValue().Set(V8Str(info.GetIsolate(), *id));
  }
  static void Patch(const v8::FunctionCallbackInfo<v8::Value>& info) {
    RequestState* req = Current(info);
    std::string id;
    if (req == nullptr || !StringArg(info, 0, "ctx.db.patch(id, fields): id", &id)) return;
    std::optional<Value> fields = ValueArg(info, req, 1, "ctx.db.patch(id, fields): fields");
    if (!fields.has_value()) return;
    absl::Status s = req->txn->Patch(id, *fields);
    if (!s.ok()) ThrowTxn(info, req, s);
  }
  static void Replace(const v8::FunctionCallbackInfo<v8::Value>& info) {
    RequestState* req = Current(info);
    std::string id;
    if (req == nullptr || !StringArg(info, 0, "ctx.db.replace(id, doc): id", &id)) return;
    std::optional<Value> doc = ValueArg(info, req, 1, "ctx.db.replace(id, doc): doc");
    if (!doc.has_value()) return;
    absl::Status s = req->txn->Replace(id, *std::move(doc));
    if (!s.ok()) ThrowTxn(info, req, s);
  }
  static void Delete(const v8::FunctionCallbackInfo<v8::Value>& info) {
    RequestState* req = Current(info);
    std::string id;
    if (req == nullptr || !StringArg(info, 0, "ctx.db.delete(id): id", &id)) return;
    absl::Status s = req->txn->Delete(id);
    if (!s.ok()) ThrowTxn(info, req, s);
  }

  // A context from the isolate's startup snapshot, if it holds the runner's.
  bool FromSnapshot(v8::Local<v8::Context>* context, v8::Local<v8::Object>* exports) {
    if (!v8::Context::FromSnapshot(isolate_, kSnapshotContextIndex).ToLocal(context)) return false;
    v8::Local<v8::String> marker;
    if (!(*context)->GetDataFromSnapshotOnce<v8::Object>(kSnapshotExportsIndex).ToLocal(exports) ||
        !(*context)->GetDataFromSnapshotOnce<v8::String>(kSnapshotMarkerIndex).ToLocal(&marker)) {
      return false;
    }
    // Another embedder's snapshot could have data at these indices too.
    return from_snapshot_ == Tri::kYes || Utf8(isolate_, marker) == kSnapshotMarker;
  }

  enum class Tri { kUnknown, kYes, kNo };

  v8::Isolate* isolate_;
  Tri from_snapshot_ = Tri::kUnknown;
  v8::Global<v8::Private> kind_key_;
  v8::Global<v8::Private> code_key_;
  std::unique_ptr<ContextState> reused_;
  RequestState* current_ = nullptr;
};

// ---- Startup snapshot ------------------------------------------------------

// Marks `blob` as not to be rehashed when deserialised, if it can be done
// safely; otherwise leaves it as it is.
//
// Why: V8 gives every process a random hash seed (so hash flooding cannot be
// planned) and, by default, re-sorts every hash table and descriptor array of
// a snapshot as it deserialises it, in case the snapshot was hashed with
// another seed. For a context made per request that costs ~14% of the
// request. This blob is made in this process, from an isolate using this
// process's seed, so its tables are already in order, and every isolate of
// the process uses that same seed: txfn's platform fixes it at V8's
// initialisation (--hash-seed, random per process; platform.cc), so a
// read-only heap rebuilt after the last isolate died gets it again. Rehashing
// would change nothing. Only done when that holds (V8HashSeedIsFixed).
//
// How: V8 10.2 keeps the flag in the blob's second header word, outside the
// checksummed content. The public API confirms the change (CanBeRehashed
// false, IsValid true) or the word is restored.
void SkipRehashing(v8::StartupData& blob) {
  constexpr size_t kRehashabilityOffset = sizeof(uint32_t);  // after the context count
  if (!blob.CanBeRehashed() || blob.raw_size < static_cast<int>(2 * sizeof(uint32_t))) return;
  // CreateBlob allocated the data with new[]; it is ours to change.
  char* word = const_cast<char*>(blob.data) + kRehashabilityOffset;
  uint32_t before;
  std::memcpy(&before, word, sizeof before);
  const uint32_t never = 0;
  std::memcpy(word, &never, sizeof never);
  if (blob.CanBeRehashed() || !blob.IsValid()) std::memcpy(word, &before, sizeof before);
}

// The runner's startup snapshot: V8's default context, plus a context with the
// bootstrap already run (its exports and kSnapshotMarker attached), with the
// bootstrap's compiled code kept. nullptr if it cannot be made.
const v8::StartupData* CreateRunnerSnapshot() {
  (void)V8Platform();  // initialises V8 if nobody did yet
  v8::SnapshotCreator creator(IsolateRuntime::ExternalReferences());
  v8::Isolate* isolate = creator.GetIsolate();
  bool ok = false;
  {
    v8::HandleScope scope(isolate);
    creator.SetDefaultContext(v8::Context::New(isolate));
    v8::Local<v8::Context> context = v8::Context::New(isolate);
    if (!context.IsEmpty()) {
      v8::Context::Scope context_scope(context);
      absl::StatusOr<v8::Local<v8::Object>> exports = IsolateRuntime::Bootstrap(isolate, context);
      if (exports.ok()) {
        ok = creator.AddData(context, *exports) == kSnapshotExportsIndex &&
             creator.AddData(context, V8Str(isolate, kSnapshotMarker)) == kSnapshotMarkerIndex;
      }
    }
    if (ok) ok = creator.AddContext(context) == kSnapshotContextIndex;
  }
  v8::StartupData blob = creator.CreateBlob(v8::SnapshotCreator::FunctionCodeHandling::kKeep);
  if (!ok || blob.data == nullptr || blob.raw_size <= 0) {
    delete[] blob.data;
    return nullptr;
  }
  // Only when the process's hash seed is fixed (txfn's own platform): with a
  // host's platform V8 may draw another seed later (see platform.cc).
  if (V8HashSeedIsFixed()) SkipRehashing(blob);
  return new v8::StartupData(blob);
}

// ---- Paths -----------------------------------------------------------------

// "a/./b/../c" -> "a/c"; nullopt if ".." leaves the root or a segment is empty.
std::optional<std::string> NormalizePath(std::string_view path) {
  std::vector<std::string_view> parts;
  while (!path.empty()) {
    size_t slash = path.find('/');
    std::string_view part = path.substr(0, slash);
    path = slash == std::string_view::npos ? std::string_view() : path.substr(slash + 1);
    if (part.empty() || part == ".") continue;
    if (part == "..") {
      if (parts.empty()) return std::nullopt;
      parts.pop_back();
      continue;
    }
    parts.push_back(part);
  }
  if (parts.empty()) return std::nullopt;
  std::string out;
  for (std::string_view p : parts) {
    if (!out.empty()) out += '/';
    out.append(p);
  }
  return out;
}

// The stored module path `spec` (imported from `referrer`, or "" for the
// function name) names, trying "<path>" then "<path>.js".
std::optional<std::string> ResolveModule(const TenantMetadata& metadata, std::string_view referrer,
                                         std::string_view spec) {
  std::string joined;
  if (spec.starts_with("./") || spec.starts_with("../")) {
    size_t slash = referrer.rfind('/');
    joined = StrCat(slash == std::string_view::npos ? "" : referrer.substr(0, slash + 1), spec);
  } else {
    joined = std::string(spec);
  }
  std::optional<std::string> path = NormalizePath(joined);
  if (!path.has_value()) return std::nullopt;
  const auto& modules = metadata.modules();
  if (modules.contains(*path)) return path;
  std::string js = StrCat(*path, ".js");
  if (modules.contains(js)) return js;
  return std::nullopt;
}

size_t ModulesFingerprint(const TenantMetadata& metadata) {
  size_t h = 0;
  for (const auto& [path, source] : metadata.modules()) {
    h = absl::HashOf(h, std::string_view(path), std::string_view(source));
  }
  return h;
}

// ---- Errors ----------------------------------------------------------------

// The status for the exception `tc` caught: the code a ctx.db error carried,
// else Unknown; the message is the JS stack (or message and location).
absl::Status ExceptionStatus(IsolateRuntime& rt, v8::Local<v8::Context> context,
                             v8::Local<v8::Value> exception, v8::Local<v8::Message> message,
                             std::string_view what) {
  v8::Isolate* isolate = rt.isolate();
  absl::StatusCode code = absl::StatusCode::kUnknown;
  std::string text;
  {
    v8::TryCatch inner(isolate);
    if (!exception.IsEmpty() && exception->IsObject()) {
      v8::Local<v8::Object> obj = exception.As<v8::Object>();
      v8::Local<v8::Value> c;
      if (obj->GetPrivate(context, rt.code_key()).ToLocal(&c) && c->IsInt32()) {
        code = static_cast<absl::StatusCode>(c.As<v8::Int32>()->Value());
      }
      v8::Local<v8::Value> stack;
      if (obj->Get(context, V8Str(isolate, "stack")).ToLocal(&stack) && stack->IsString()) {
        text = Utf8(isolate, stack);
      }
    }
    if (text.empty() && !exception.IsEmpty()) text = Utf8(isolate, exception);
  }
  if (!message.IsEmpty()) {
    std::string resource = Utf8(isolate, message->GetScriptResourceName());
    int line = message->GetLineNumber(context).FromMaybe(0);
    std::string where = StrCat(resource, ":", line);
    if (!resource.empty() && text.find(where) == std::string::npos) {
      text = StrCat(where, ": ", text);
    }
  }
  if (code == absl::StatusCode::kOk) code = absl::StatusCode::kUnknown;
  if (code == absl::StatusCode::kUnknown) text = StrCat("Uncaught ", text);
  return absl::Status(code, what.empty() ? text : StrCat(what, ": ", text));
}

absl::Status ExceptionStatus(IsolateRuntime& rt, v8::Local<v8::Context> context, v8::TryCatch& tc,
                             std::string_view what) {
  return ExceptionStatus(rt, context, tc.Exception(), tc.Message(), what);
}

// The status for a rejected promise's reason.
absl::Status RejectionStatus(IsolateRuntime& rt, v8::Local<v8::Context> context,
                             v8::Local<v8::Value> reason) {
  v8::Local<v8::Message> message = v8::Exception::CreateMessage(rt.isolate(), reason);
  return ExceptionStatus(rt, context, reason, message, "");
}

// If `isolate`'s execution was terminated (a limit, or the host): cancels the
// termination so the isolate can serve again and returns ResourceExhausted
// "<who> exceeded its <limit> limit" when the lease's limit was hit, else
// Cancelled. nullopt if nothing was terminated.
std::optional<absl::Status> TerminationStatus(v8::Isolate* isolate, const v8::TryCatch& tc,
                                              IsolateLease& lease, std::string_view who) {
  if (!tc.HasTerminated() && !isolate->IsExecutionTerminating()) return std::nullopt;
  isolate->CancelTerminateExecution();
  if (lease.limit_exceeded()) {
    return absl::ResourceExhaustedError(
        StrCat(who, " exceeded its ", lease.exceeded_limit(), " limit"));
  }
  return absl::CancelledError("JavaScript execution was terminated");
}

// Makes a RequestState the runtime's current request (what the natives
// serve) for its lifetime.
class CurrentRequest {
 public:
  CurrentRequest(IsolateRuntime* rt, Transaction& txn, const FunctionRunnerOptions& options,
                 uint64_t seed, std::vector<LogEntry>* logs)
      : rt_(rt) {
    state_.txn = &txn;
    state_.options = &options;
    state_.rng = seed ^ 0x6a09e667f3bcc909ULL;
    state_.now_ms = std::floor(static_cast<double>(txn.begin_ts()) / 1e6);
    state_.logs = logs;
    rt_->set_current(&state_);
  }
  CurrentRequest(const CurrentRequest&) = delete;
  CurrentRequest& operator=(const CurrentRequest&) = delete;
  ~CurrentRequest() { rt_->set_current(nullptr); }

  RequestState& state() { return state_; }

 private:
  IsolateRuntime* const rt_;
  RequestState state_;
};

// ---- One request -----------------------------------------------------------

class Run {
 public:
  Run(RunnerCore& core, IsolateRuntime& rt, Transaction& txn, RunStats& stats)
      : core_(core), rt_(rt), isolate_(rt.isolate()), txn_(txn), stats_(stats) {}

  // Compiles (through the code cache) and registers `path` and its imports in
  // the context's ContextState.
  absl::StatusOr<v8::Local<v8::Module>> Load(v8::Local<v8::Context> context, ContextState& cs,
                                             const std::string& path) {
    if (auto it = cs.by_path.find(path); it != cs.by_path.end()) {
      return cs.modules[it->second].module.Get(isolate_);
    }
    const std::string& source = txn_.metadata().modules().find(path)->second;
    TXFN_ASSIGN_OR_RETURN(v8::Local<v8::Module> module, Compile(context, path, source));
    cs.by_path.emplace(path, cs.modules.size());
    cs.modules.push_back(ModuleEntry{path, v8::Global<v8::Module>(isolate_, module)});
    v8::Local<v8::FixedArray> requests = module->GetModuleRequests();
    for (int i = 0; i < requests->Length(); ++i) {
      v8::Local<v8::ModuleRequest> request = requests->Get(context, i).As<v8::ModuleRequest>();
      std::string spec = Utf8(isolate_, request->GetSpecifier());
      if (spec == kServerModule) {
        ServerModule(cs);
        continue;
      }
      std::optional<std::string> dep = ResolveModule(txn_.metadata(), path, spec);
      if (!dep.has_value()) {
        return absl::NotFoundError(
            StrCat("module '", spec, "' imported by '", path, "' not found"));
      }
      TXFN_RETURN_IF_ERROR(Load(context, cs, *dep).status());
    }
    return module;
  }

  v8::Local<v8::Module> ServerModule(ContextState& cs) {
    if (cs.server_module.IsEmpty()) {
      std::vector<v8::Local<v8::String>> names = {V8Str(isolate_, "query"),
                                                  V8Str(isolate_, "mutation")};
      cs.server_module.Reset(
          isolate_, v8::Module::CreateSyntheticModule(isolate_, V8Str(isolate_, kServerModule),
                                                      names, &EvaluateServer));
    }
    return cs.server_module.Get(isolate_);
  }

  static v8::MaybeLocal<v8::Value> EvaluateServer(v8::Local<v8::Context> context,
                                                  v8::Local<v8::Module> module) {
    v8::Isolate* isolate = context->GetIsolate();
    v8::Local<v8::Object> server = StateOf(context)->server.Get(isolate);
    for (const char* name : {"query", "mutation"}) {
      v8::Local<v8::String> key = V8Str(isolate, name);
      v8::Local<v8::Value> fn;
      if (!server->Get(context, key).ToLocal(&fn) ||
          module->SetSyntheticModuleExport(isolate, key, fn).IsNothing()) {
        return {};
      }
    }
    v8::Local<v8::Promise::Resolver> resolver;
    if (!v8::Promise::Resolver::New(context).ToLocal(&resolver) ||
        resolver->Resolve(context, v8::Undefined(isolate)).IsNothing()) {
      return {};
    }
    return resolver->GetPromise();
  }

  static v8::MaybeLocal<v8::Module> ResolveCallback(v8::Local<v8::Context> context,
                                                    v8::Local<v8::String> specifier,
                                                    v8::Local<v8::FixedArray> /*assertions*/,
                                                    v8::Local<v8::Module> referrer) {
    v8::Isolate* isolate = context->GetIsolate();
    ContextState* cs = StateOf(context);
    std::string spec = Utf8(isolate, specifier);
    if (spec == kServerModule && !cs->server_module.IsEmpty()) {
      return cs->server_module.Get(isolate);
    }
    for (const ModuleEntry& m : cs->modules) {
      if (m.module.Get(isolate) != referrer) continue;
      // Load() resolved every import already; find it by the same rule.
      std::string joined = spec;
      if (spec.starts_with("./") || spec.starts_with("../")) {
        size_t slash = m.path.rfind('/');
        joined = StrCat(slash == std::string::npos ? "" : m.path.substr(0, slash + 1), spec);
      }
      std::optional<std::string> path = NormalizePath(joined);
      if (path.has_value()) {
        for (const std::string& p : {*path, StrCat(*path, ".js")}) {
          if (auto it = cs->by_path.find(p); it != cs->by_path.end()) {
            return cs->modules[it->second].module.Get(isolate);
          }
        }
      }
    }
    isolate->ThrowException(
        v8::Exception::Error(V8Str(isolate, StrCat("cannot resolve module '", spec, "'"))));
    return {};
  }

 private:
  absl::StatusOr<v8::Local<v8::Module>> CompileSource(const std::string& path,
                                                      const std::string& source,
                                                      const CompiledModule* cached) {
    v8::Local<v8::String> text;
    if (!v8::String::NewFromUtf8(isolate_, source.data(), v8::NewStringType::kNormal,
                                 static_cast<int>(source.size()))
             .ToLocal(&text)) {
      return absl::InvalidArgumentError(StrCat("module '", path, "' is too large"));
    }
    v8::ScriptOrigin origin(isolate_, V8Str(isolate_, path), 0, 0, false, -1,
                            v8::Local<v8::Value>(), false, false, /*is_module=*/true);
    v8::ScriptCompiler::CachedData* data = nullptr;
    if (cached != nullptr) {
      data = new v8::ScriptCompiler::CachedData(
          reinterpret_cast<const uint8_t*>(cached->code_cache.data()),
          static_cast<int>(cached->code_cache.size()),
          v8::ScriptCompiler::CachedData::BufferNotOwned);
    }
    v8::ScriptCompiler::Source src(text, origin, data);  // owns `data`
    v8::TryCatch tc(isolate_);
    v8::Local<v8::Module> module;
    if (!v8::ScriptCompiler::CompileModule(isolate_, &src,
                                           cached != nullptr
                                               ? v8::ScriptCompiler::kConsumeCodeCache
                                               : v8::ScriptCompiler::kNoCompileOptions)
             .ToLocal(&module)) {
      return ExceptionStatus(rt_, isolate_->GetCurrentContext(), tc, "");
    }
    if (cached != nullptr && !src.GetCachedData()->rejected) {
      ++stats_.modules_from_cache;
    } else {
      ++stats_.modules_compiled;
    }
    return module;
  }

  absl::StatusOr<v8::Local<v8::Module>> Compile(v8::Local<v8::Context> context,
                                                const std::string& path,
                                                const std::string& source) {
    std::string key =
        StrCat(txn_.tenant(), std::string_view("\0", 1), path, std::string_view("\0", 1),
               absl::HashOf(std::string_view(source)), ":", source.size());
    v8::Local<v8::Module> fresh;
    absl::StatusOr<std::shared_ptr<const CompiledModule>> cached = core_.module_cache().Get(
        key, [&]() -> absl::StatusOr<std::shared_ptr<const CompiledModule>> {
          TXFN_ASSIGN_OR_RETURN(fresh, CompileSource(path, source, nullptr));
          auto compiled = std::make_shared<CompiledModule>();
          compiled->source = source;
          std::unique_ptr<v8::ScriptCompiler::CachedData> data(
              v8::ScriptCompiler::CreateCodeCache(fresh->GetUnboundModuleScript()));
          if (data != nullptr) {
            compiled->code_cache.assign(reinterpret_cast<const char*>(data->data),
                                        static_cast<size_t>(data->length));
          }
          return compiled;
        });
    if (!cached.ok()) return cached.status();
    v8::Local<v8::Module> module = fresh;
    const CompiledModule& c = **cached;
    if (module.IsEmpty()) {
      const bool usable = c.source == source && !c.code_cache.empty();
      TXFN_ASSIGN_OR_RETURN(module, CompileSource(path, source, usable ? &c : nullptr));
    }
    if (!c.warm && c.source == source) cold_.push_back(ColdModule{std::move(key), *cached, module});
    (void)context;
    return module;
  }

 public:
  // After a successful request: replaces the cold code caches of the modules
  // it loaded by warm ones, which include the functions compiled while it ran.
  void WarmCodeCaches() {
    for (const ColdModule& m : cold_) {
      std::unique_ptr<v8::ScriptCompiler::CachedData> data(
          v8::ScriptCompiler::CreateCodeCache(m.module->GetUnboundModuleScript()));
      if (data == nullptr || data->length <= 0) continue;
      auto warm = std::make_shared<CompiledModule>();
      warm->source = m.entry->source;
      warm->code_cache.assign(reinterpret_cast<const char*>(data->data),
                              static_cast<size_t>(data->length));
      warm->warm = true;
      core_.module_cache().Put(m.key, std::move(warm));
    }
    cold_.clear();
  }

 private:
  struct ColdModule {
    std::string key;
    std::shared_ptr<const CompiledModule> entry;
    v8::Local<v8::Module> module;
  };

  RunnerCore& core_;
  IsolateRuntime& rt_;
  v8::Isolate* isolate_;
  Transaction& txn_;
  RunStats& stats_;
  std::vector<ColdModule> cold_;  // loaded from (or made as) a cold code cache
};

}  // namespace

namespace {

// Made once per process and never freed (isolates made from it may outlive
// any owner); immutable once made. nullptr if it cannot be made.
const v8::StartupData* RunnerSnapshot() {
  static const v8::StartupData* const blob = CreateRunnerSnapshot();
  return blob;
}

}  // namespace

bool RunnerSnapshotSkipsRehashing() {
  const v8::StartupData* blob = RunnerSnapshot();
  return blob != nullptr && !blob->CanBeRehashed();
}

bool UseRunnerSnapshot(v8::Isolate::CreateParams* params) {
  const v8::StartupData* blob = RunnerSnapshot();
  if (blob == nullptr) return false;
  // CreateParams takes a non-const pointer; V8 only reads the blob.
  params->snapshot_blob = const_cast<v8::StartupData*>(blob);
  params->external_references = IsolateRuntime::ExternalReferences();
  return true;
}

RunnerCore::RunnerCore(FunctionRunnerOptions options)
    : options_(std::move(options)),
      module_cache_({.capacity = options_.module_cache_bytes,
                     .weigher = [](const std::string& key, const CompiledModule& m) {
                       return key.size() + m.source.size() + m.code_cache.size();
                     }}) {}

TransactionOptions RunnerCore::TransactionOptionsFor(const RunRequest& request) {
  return TransactionOptions{.limits = request.limits,
                            .id_seed = request.seed,
                            .read_only = request.kind == FunctionKind::kQuery};
}

RunResult RunnerCore::RunOnIsolate(IsolateLease& lease, const RunRequest& request,
                                   Transaction& txn) {
  RunResult result;
  const absl::Duration cpu_start = ThreadCpuTime();
  result.stats.isolate_reused = lease.reused();
  v8::Isolate* isolate = lease.isolate();
  v8::HandleScope handle_scope(isolate);
  bool keep_context = false;
  std::unique_ptr<ContextState> fresh;
  IsolateRuntime* rt = nullptr;

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
      return absl::NotFoundError(StrCat("module '", module_name, "' not found"));
    }
    if (!request.args.is_null() && !request.args.is_object()) {
      return absl::InvalidArgumentError("arguments must be an object");
    }

    if (lease.data() == nullptr) {
      auto runtime = std::make_unique<IsolateRuntime>(isolate);
      TXFN_RETURN_IF_ERROR(runtime->Init());
      lease.set_data(std::move(runtime));
    }
    // The runner owns the lease's data slot (no RTTI in this layer).
    rt = static_cast<IsolateRuntime*>(lease.data());

    const bool reuse = options_.reuse_context && options_.reuse_context(txn.tenant());
    const size_t fingerprint = reuse ? ModulesFingerprint(metadata) : 0;
    ContextState* cs = nullptr;
    if (reuse && rt->reused() != nullptr && rt->reused()->fingerprint == fingerprint) {
      cs = rt->reused().get();
      result.stats.context_reused = true;
    } else {
      rt->reused().reset();
      TXFN_ASSIGN_OR_RETURN(fresh, rt->NewContext());
      fresh->fingerprint = fingerprint;
      cs = fresh.get();
    }
    v8::Local<v8::Context> context = cs->context.Get(isolate);
    v8::Context::Scope context_scope(context);

    CurrentRequest current(rt, txn, options_, request.seed, &result.logs);
    RequestState& req = current.state();

    v8::TryCatch tc(isolate);
    auto js_error = [&](std::string_view what) -> absl::Status {
      if (std::optional<absl::Status> terminated =
              TerminationStatus(isolate, tc, lease, StrCat("function ", request.function))) {
        return *terminated;
      }
      if (!req.sticky.ok()) return req.sticky;
      return ExceptionStatus(*rt, context, tc, what);
    };

    Run run(*this, *rt, txn, result.stats);
    absl::StatusOr<v8::Local<v8::Module>> module = run.Load(context, *cs, *path);
    if (!module.ok()) return module.status();
    if ((*module)->GetStatus() == v8::Module::kUninstantiated) {
      if ((*module)->InstantiateModule(context, &Run::ResolveCallback).IsNothing()) {
        return js_error("");
      }
    }
    if ((*module)->GetStatus() == v8::Module::kInstantiated) {
      v8::Local<v8::Value> evaluated;
      if (!(*module)->Evaluate(context).ToLocal(&evaluated)) return js_error("");
      isolate->PerformMicrotaskCheckpoint();
      if (evaluated->IsPromise()) {
        v8::Local<v8::Promise> p = evaluated.As<v8::Promise>();
        if (p->State() == v8::Promise::kRejected) {
          if (!req.sticky.ok()) return req.sticky;
          return RejectionStatus(*rt, context, p->Result());
        }
        if (p->State() == v8::Promise::kPending) {
          return absl::UnknownError(
              StrCat("module '", *path, "' did not finish evaluating (top-level await)"));
        }
      }
    }
    if ((*module)->GetStatus() == v8::Module::kErrored) {
      return RejectionStatus(*rt, context, (*module)->GetException());
    }
    v8::Local<v8::Object> ns = (*module)->GetModuleNamespace().As<v8::Object>();
    v8::Local<v8::Value> fn;
    if (!ns->Get(context, V8Str(isolate, export_name)).ToLocal(&fn)) return js_error("");
    if (fn->IsUndefined()) {
      return absl::NotFoundError(StrCat("module '", *path, "' has no export '", export_name, "'"));
    }
    v8::Local<v8::Value> mark;
    if (!fn->IsFunction() ||
        !fn.As<v8::Object>()->GetPrivate(context, rt->kind_key()).ToLocal(&mark) ||
        !mark->IsInt32()) {
      return absl::InvalidArgumentError(
          StrCat(request.function,
                 " is not a query or mutation (wrap it with query() or "
                 "mutation() from \"txfn/server\")"));
    }
    const int kind = mark.As<v8::Int32>()->Value();
    const int wanted = request.kind == FunctionKind::kQuery ? kQueryMark : kMutationMark;
    if (kind != wanted) {
      return absl::InvalidArgumentError(StrCat(request.function, " is a ",
                                               kind == kQueryMark ? "query" : "mutation",
                                               ", called as a ", FunctionKindName(request.kind)));
    }
    absl::StatusOr<v8::Local<v8::Value>> args =
        ToJs(context, request.args.is_null() ? Value::FromObject({}) : request.args);
    if (!args.ok()) return args.status();
    v8::Local<v8::Value> argv[2] = {cs->ctx.Get(isolate), *args};
    v8::Local<v8::Value> returned;
    if (!fn.As<v8::Function>()->Call(context, v8::Undefined(isolate), 2, argv).ToLocal(&returned)) {
      return js_error("");
    }
    isolate->PerformMicrotaskCheckpoint();
    if (isolate->IsExecutionTerminating()) return js_error("");
    if (returned->IsPromise()) {
      v8::Local<v8::Promise> p = returned.As<v8::Promise>();
      if (p->State() == v8::Promise::kRejected) {
        if (isolate->IsExecutionTerminating()) return js_error("");
        if (!req.sticky.ok()) return req.sticky;
        return RejectionStatus(*rt, context, p->Result());
      }
      if (p->State() == v8::Promise::kPending) {
        return absl::UnknownError(StrCat(request.function,
                                         " returned a promise that was still pending after the "
                                         "microtask queue drained (there are no timers or I/O)"));
      }
      returned = p->Result();
    }
    if (!req.sticky.ok()) return req.sticky;
    absl::StatusOr<Value> value = FromJs(context, returned, options_.max_value_bytes);
    if (!value.ok()) {
      if (absl::IsCancelled(value.status())) return js_error("");
      return absl::Status(value.status().code(),
                          StrCat("result of ", request.function, ": ", value.status().message()));
    }
    result.value = *std::move(value);
    run.WarmCodeCaches();
    keep_context = reuse;
    return absl::OkStatus();
  }();

  if (rt != nullptr) {
    if (keep_context && fresh != nullptr) {
      rt->reused() = std::move(fresh);
    } else if (!status.ok()) {
      rt->reused().reset();
    }
  }
  if (fresh != nullptr) {
    fresh.reset();
    isolate->ContextDisposedNotification();
  }
  if (isolate->IsExecutionTerminating()) isolate->CancelTerminateExecution();
  result.stats.module_cache_hit = status.ok() && result.stats.modules_compiled == 0;
  result.commit = txn.Prepare();
  if (!status.ok()) {
    result.commit.writes.clear();
    result.value = Value::Null();
  }
  result.status = std::move(status);
  result.stats.cpu_time = ThreadCpuTime() - cpu_start;
  return result;
}

absl::Status RunnerCore::CheckModulesOnIsolate(IsolateLease& lease, Transaction& txn) {
  v8::Isolate* isolate = lease.isolate();
  v8::HandleScope handle_scope(isolate);
  std::unique_ptr<ContextState> fresh;
  RunStats stats;
  std::vector<LogEntry> logs;
  absl::Status status = [&]() -> absl::Status {
    if (lease.data() == nullptr) {
      auto runtime = std::make_unique<IsolateRuntime>(isolate);
      TXFN_RETURN_IF_ERROR(runtime->Init());
      lease.set_data(std::move(runtime));
    }
    IsolateRuntime* rt = static_cast<IsolateRuntime*>(lease.data());
    TXFN_ASSIGN_OR_RETURN(fresh, rt->NewContext());
    v8::Local<v8::Context> context = fresh->context.Get(isolate);
    v8::Context::Scope context_scope(context);
    CurrentRequest current(rt, txn, options_, /*seed=*/0, &logs);
    v8::TryCatch tc(isolate);
    auto js_error = [&](const std::string& path) -> absl::Status {
      const std::string module = StrCat("module '", path, "'");
      if (std::optional<absl::Status> terminated = TerminationStatus(isolate, tc, lease, module)) {
        return *terminated;
      }
      return ExceptionStatus(*rt, context, tc, module);
    };
    Run run(*this, *rt, txn, stats);
    for (const auto& [path, source] : txn.metadata().modules()) {
      absl::StatusOr<v8::Local<v8::Module>> module = run.Load(context, *fresh, path);
      if (!module.ok()) {
        return absl::Status(module.status().code(),
                            StrCat("module '", path, "': ", module.status().message()));
      }
      if ((*module)->GetStatus() == v8::Module::kUninstantiated &&
          (*module)->InstantiateModule(context, &Run::ResolveCallback).IsNothing()) {
        return js_error(path);
      }
      if ((*module)->GetStatus() == v8::Module::kInstantiated) {
        v8::Local<v8::Value> evaluated;
        if (!(*module)->Evaluate(context).ToLocal(&evaluated)) return js_error(path);
        isolate->PerformMicrotaskCheckpoint();
        if (evaluated->IsPromise() &&
            evaluated.As<v8::Promise>()->State() == v8::Promise::kPending) {
          return absl::UnknownError(
              StrCat("module '", path, "' did not finish evaluating (top-level await)"));
        }
      }
      if ((*module)->GetStatus() == v8::Module::kErrored) {
        absl::Status s = RejectionStatus(*rt, context, (*module)->GetException());
        return absl::Status(s.code(), StrCat("module '", path, "': ", s.message()));
      }
    }
    return absl::OkStatus();
  }();
  if (fresh != nullptr) {
    fresh.reset();
    isolate->ContextDisposedNotification();
  }
  if (isolate->IsExecutionTerminating()) isolate->CancelTerminateExecution();
  return status;
}

}  // namespace txfn::internal

#include "lib/v8/isolate_runtime.h"

#include <algorithm>
#include <cmath>
#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/random/random.h"
#include "absl/strings/escaping.h"
#include "absl/time/clock.h"
#include "lib/v8/bootstrap_js.h"
#include "lib/v8/harden_js.h"
#include "lib/v8/js_errors.h"
#include "lib/v8/js_strings.h"
#include "lib/v8/js_value.h"
#include "lib/v8/module_loader.h"
#include "lib/v8/regexp_literals.h"
#include "txfn/call_records.h"
#include "txfn/errors.h"
#include "txfn/internal/status_macros.h"
#include "txfn/internal/strings.h"
#include "txfn/rendezvous_router.h"

namespace txfn::internal {
namespace {

// Embedder data index of a context's ContextState.
constexpr int kContextStateSlot = 8;

// Argument bounds, checked before anything is copied out of V8: an id is
// kDocumentIdLength characters, a table or index name an identifier
// (DocumentLimits::max_field_name_bytes), an index field a dotted path of
// identifiers, a cursor an encoded index key (<= 2,500 bytes) in base64.
constexpr size_t kMaxIdChars = 64;
constexpr size_t kMaxNameChars = 64;
constexpr size_t kMaxFieldPathChars = 1024;
constexpr size_t kMaxCursorChars = 16 << 10;
// Largest take()/paginate() size; the transaction's read limits apply anyway.
constexpr double kMaxPageSize = 1 << 30;
constexpr size_t kMaxUnhandledRejections = 16;

uint64_t SplitMix64(uint64_t* state) {
  uint64_t z = (*state += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

// typeof, for error messages.
std::string TypeName(v8::Isolate* isolate, v8::Local<v8::Value> v) {
  if (v->IsNull()) return "null";
  if (v->IsArray()) return "an array";
  return Utf8Prefix(isolate, v->TypeOf(isolate), kQuoteBytes);
}

void AbortScript(v8::Isolate* /*isolate*/, v8::Local<v8::Context> /*context*/) {
  // V8 throws after this returns; nothing of a closed request may run.
}

// What a native sees of its call: the isolate's runtime, the request, and a
// way to fail. Made by Enter(), which throws (and returns nullopt) when the
// calling context is not the running request's.
class Call {
 public:
  static std::optional<Call> Enter(const v8::FunctionCallbackInfo<v8::Value>& info,
                                   bool needs_request = true) {
    v8::Isolate* isolate = info.GetIsolate();
    ContextState* cs = StateOf(isolate->GetCurrentContext());
    if (cs == nullptr) {
      isolate->ThrowException(
          v8::Exception::Error(MessageString(isolate, "txfn: this context is closed")));
      return std::nullopt;
    }
    RequestState* req = cs->rt->current();
    if (needs_request && (req == nullptr || req->context != cs)) {
      cs->rt->Throw(absl::FailedPreconditionError(
          "ctx.db and console may only be used while their own request runs"));
      return std::nullopt;
    }
    return Call(info, cs->rt, req);
  }

  v8::Isolate* isolate() const { return info_.GetIsolate(); }
  v8::Local<v8::Context> context() const { return isolate()->GetCurrentContext(); }
  IsolateRuntime& rt() const { return *rt_; }
  RequestState& req() const { return *req_; }
  v8::Local<v8::Value> arg(int i) const { return info_[i]; }

  void Fail(const absl::Status& status) const { rt_->Throw(status); }
  // What a nested function's own code threw (an action's ctx.runMutation or runQuery), thrown
  // here as that code would have: an Error with its message, its name, and its `data`. Not
  // marked as txfn's: uncaught, the action's status carries the same AppError, and its message
  // reads "Uncaught Error: ..." once.
  void Rethrow(const AppError& app) const {
    v8::Local<v8::String> message = MessageString(isolate(), app.message);
    using Make = v8::Local<v8::Value> (*)(v8::Local<v8::String>);
    static constexpr std::pair<std::string_view, Make> kBuiltins[] = {
        {"Error", &v8::Exception::Error},
        {"TypeError", &v8::Exception::TypeError},
        {"RangeError", &v8::Exception::RangeError},
        {"SyntaxError", &v8::Exception::SyntaxError},
        {"ReferenceError", &v8::Exception::ReferenceError}};
    Make make = &v8::Exception::Error;
    bool builtin = false;
    for (const auto& [name, maker] : kBuiltins) {
      if (app.name == name) {
        make = maker;
        builtin = true;
      }
    }
    v8::Local<v8::Value> error = make(message);
    if (error->IsObject()) {
      v8::Local<v8::Object> obj = error.As<v8::Object>();
      // Own properties (CreateDataProperty): the prototype's may be frozen (hardened contexts).
      // Another name (a subclass's) is kept as the Error's own `name`.
      if (!app.name.empty() && !builtin) {
        (void)obj
            ->CreateDataProperty(context(), MessageString(isolate(), "name"),
                                 MessageString(isolate(), app.name))
            .FromMaybe(false);
      }
      if (!app.data.is_null()) {
        absl::StatusOr<v8::Local<v8::Value>> data = ToJs(context(), app.data);
        if (data.ok()) {
          (void)obj->CreateDataProperty(context(), MessageString(isolate(), "data"), *data)
              .FromMaybe(false);
        }
      }
    }
    isolate()->ThrowException(error);
  }
  void InvalidArgument(std::string_view message) const {
    Fail(absl::InvalidArgumentError(ToAbsl(message)));
  }
  // A transaction error: thrown into JS; limits also stick to the request.
  void FailTxn(const absl::Status& status) const {
    if (absl::IsResourceExhausted(status) && req_->sticky.ok()) req_->sticky = status;
    Fail(status);
  }

  // Argument i as a string of at most `max_chars` characters.
  std::optional<std::string> String(int i, std::string_view what, size_t max_chars) const {
    v8::Local<v8::Value> v = info_[i];
    if (!v->IsString()) {
      InvalidArgument(StrCat(what, " must be a string, got ", TypeName(isolate(), v)));
      return std::nullopt;
    }
    const size_t length = static_cast<size_t>(v.As<v8::String>()->Length());
    if (length > max_chars) {
      InvalidArgument(StrCat(what, " is too long: ", length, " characters (at most ", max_chars,
                             "), starting ", DescribeValue(isolate(), v)));
      return std::nullopt;
    }
    std::string text = Utf8Prefix(isolate(), v.As<v8::String>(), max_chars * 3);
    // Names are compared as UTF-8: a lone surrogate would become U+FFFD and another name.
    if (std::optional<int> at = LoneSurrogateIn(isolate(), v.As<v8::String>(), text)) {
      InvalidArgument(StrCat(what, " has a lone surrogate at index ", *at,
                             " (not valid Unicode), starting ", DescribeValue(isolate(), v)));
      return std::nullopt;
    }
    return text;
  }

  // `js` converted to a Value, bounded by max_value_bytes and the request's
  // limits. On failure throws (unless execution is being terminated).
  std::optional<Value> ToValue(v8::Local<v8::Value> js, std::string_view what,
                               std::vector<std::string>* undefined_fields = nullptr) const {
    absl::StatusOr<Value> v =
        FromJs(context(), js, req_->options->max_value_bytes, req_->lease, undefined_fields);
    if (v.ok()) return *std::move(v);
    if (!absl::IsCancelled(v.status())) {
      Fail(Prefixed(v.status(), what));
    }
    return std::nullopt;
  }
  std::optional<Value> ValueArg(int i, std::string_view what) const {
    return ToValue(info_[i], what);
  }

  void Return(v8::Local<v8::Value> v) const { info_.GetReturnValue().Set(v); }
  void Return(const Value& value) const {
    absl::StatusOr<v8::Local<v8::Value>> js = ToJs(context(), value);
    if (!js.ok()) return Fail(js.status());
    Return(*js);
  }

 private:
  Call(const v8::FunctionCallbackInfo<v8::Value>& info, IsolateRuntime* rt, RequestState* req)
      : info_(info), rt_(rt), req_(req) {}

  const v8::FunctionCallbackInfo<v8::Value>& info_;
  IsolateRuntime* rt_;
  RequestState* req_;
};

// ---- Natives -------------------------------------------------------------

// What Date.now() answers: the transaction's time, or an action's real time.
double NowMs(const RequestState& req) {
  return req.action ? std::floor(absl::ToUnixMicros(absl::Now()) / 1e3) : req.now_ms;
}

void Now(const v8::FunctionCallbackInfo<v8::Value>& info) {
  std::optional<Call> call = Call::Enter(info);
  if (!call) return;
  call->Return(v8::Number::New(info.GetIsolate(), NowMs(call->req())));
}

void Random(const v8::FunctionCallbackInfo<v8::Value>& info) {
  std::optional<Call> call = Call::Enter(info);
  if (!call) return;
  uint64_t bits = SplitMix64(&call->req().rng) >> 11;
  call->Return(v8::Number::New(info.GetIsolate(), static_cast<double>(bits) * 0x1.0p-53));
}

// log(level, message): console.* after the bootstrap formatted the arguments.
void Log(const v8::FunctionCallbackInfo<v8::Value>& info) {
  std::optional<Call> call = Call::Enter(info);
  if (!call) return;
  RequestState& req = call->req();
  if (req.logs_truncated) return;
  const int level = info[0]->IsInt32() ? info[0].As<v8::Int32>()->Value() : 1;
  const size_t room =
      req.options->max_log_bytes - std::min(req.log_bytes, req.options->max_log_bytes);
  std::string message = info[1]->IsString()
                            ? Utf8Prefix(info.GetIsolate(), info[1].As<v8::String>(), room + 1)
                            : DescribeValue(info.GetIsolate(), info[1], room + 1);
  req.AppendLog(static_cast<LogLevel>(std::clamp(level, 0, static_cast<int>(LogLevel::kError))),
                std::move(message));
}

// fail(code, message): throws an Error with a status code (the bootstrap's
// argument validators and API checks).
void Fail(const v8::FunctionCallbackInfo<v8::Value>& info) {
  std::optional<Call> call = Call::Enter(info, /*needs_request=*/false);
  if (!call) return;
  int code = info[0]->IsInt32() ? info[0].As<v8::Int32>()->Value() : 2;
  if (code <= 0 || code > static_cast<int>(absl::StatusCode::kUnauthenticated)) code = 2;
  std::string message =
      info[1]->IsString()
          ? Utf8Prefix(info.GetIsolate(), info[1].As<v8::String>(), kMaxJsMessageBytes)
          : DescribeValue(info.GetIsolate(), info[1]);
  // The bootstrap's only ResourceExhausted is a sandbox limit (its guards' refuse()).
  call->Fail(code == static_cast<int>(absl::StatusCode::kResourceExhausted)
                 ? SandboxLimitError(message)
                 : absl::Status(static_cast<absl::StatusCode>(code), message));
}

// mark(fn, kind, attrs, argFields): tags a query(), mutation() or action()
// wrapper with its kind, its attributes (an object, or undefined) and its
// checked argument validator ([[name, type, optional], ...], or undefined).
void Mark(const v8::FunctionCallbackInfo<v8::Value>& info) {
  std::optional<Call> call = Call::Enter(info, /*needs_request=*/false);
  if (!call || !info[0]->IsFunction() || !info[1]->IsInt32()) return;
  v8::Local<v8::Object> fn = info[0].As<v8::Object>();
  (void)fn->SetPrivate(call->context(), call->rt().kind_key(), info[1]);
  if (info[2]->IsObject()) (void)fn->SetPrivate(call->context(), call->rt().attrs_key(), info[2]);
  if (info[3]->IsArray()) (void)fn->SetPrivate(call->context(), call->rt().args_key(), info[3]);
}

void Get(const v8::FunctionCallbackInfo<v8::Value>& info) {
  std::optional<Call> call = Call::Enter(info);
  if (!call) return;
  std::optional<std::string> id = call->String(0, "ctx.db.get(id): id", kMaxIdChars);
  if (!id) return;
  absl::StatusOr<std::optional<Value>> doc = call->req().txn->Get(*id);
  if (!doc.ok()) return call->FailTxn(doc.status());
  if (!doc->has_value()) return call->Return(v8::Null(info.GetIsolate()));
  call->Return(**doc);
}

// The bound of a range: null/undefined, or [field, value, inclusive].
std::optional<std::optional<std::pair<std::string, IndexBound>>> RangeBound(const Call& call,
                                                                            int i) {
  v8::Local<v8::Value> js = call.arg(i);
  if (js->IsNull() || js->IsUndefined()) return std::optional<std::pair<std::string, IndexBound>>();
  std::optional<Value> v = call.ToValue(js, "withIndex range bound");
  if (!v) return std::nullopt;
  if (!v->is_array() || v->array().size() != 3 || !v->array()[0].is_string() ||
      !v->array()[2].is_bool() || v->array()[0].string().size() > kMaxFieldPathChars) {
    call.InvalidArgument("withIndex: a range bound must be [field, value, inclusive]");
    return std::nullopt;
  }
  const Value::Array& a = v->array();
  return std::optional<std::pair<std::string, IndexBound>>(std::pair<std::string, IndexBound>(
      a[0].string(), IndexBound{.value = a[1], .inclusive = a[2].boolean()}));
}

// A cursor (paginate's continueCursor) is the base64 of the index key its page ended at and
// 8 bytes that check it against its query's table, index, eq values and order: a cursor of
// another query, cut short or made up is refused, where it read a shifted page or none. Not
// against the range's bounds: a page goes on from the cursor within whatever range is asked,
// and a bound computed from Date.now() differs at every run. A stable hash: another process
// (a remote runner) checks the cursors this one made.
constexpr size_t kCursorCheckBytes = 8;
std::string CursorCheck(const IndexQuery& q, std::string_view key) {
  std::string input = EncodeBinary(
      Value::FromArray({Value::String(q.table), Value::String(q.index), Value::FromArray(q.eq),
                        Value::Bool(q.order == ScanOrder::kDescending)}));
  input.append(key);
  const uint64_t hash = RendezvousHash::Of(input);
  std::string check(kCursorCheckBytes, '\0');
  for (size_t b = 0; b < kCursorCheckBytes; ++b) check[b] = static_cast<char>(hash >> (8 * b));
  return check;
}

// query(table, index, eqFields, eqValues, lower, upper, desc, limit, cursor)
// -> [docs, cursor, done]; every argument checked here, since tenant code can
// call it with anything through Query.prototype.page.
void QueryNative(const v8::FunctionCallbackInfo<v8::Value>& info) {
  std::optional<Call> call = Call::Enter(info);
  if (!call) return;
  v8::Isolate* isolate = info.GetIsolate();
  RequestState& req = call->req();
  IndexQuery q;
  std::optional<std::string> table = call->String(0, "ctx.db.query(table): table", kMaxNameChars);
  if (!table) return;
  std::optional<std::string> index = call->String(1, "withIndex(name): name", kMaxNameChars);
  if (!index) return;
  q.table = *std::move(table);
  q.index = *std::move(index);
  auto bad = [&](std::string_view message) {
    call->InvalidArgument(StrCat("withIndex(\"", q.index, "\") on ", q.table, ": ", message));
  };
  std::optional<Value> eq_fields = call->ValueArg(2, "withIndex eq fields");
  if (!eq_fields) return;
  std::optional<Value> eq_values = call->ValueArg(3, "withIndex eq value");
  if (!eq_values) return;
  if (!eq_fields->is_array() || !eq_values->is_array() ||
      eq_fields->array().size() != eq_values->array().size()) {
    return bad("eq() fields and values do not match");
  }
  std::vector<std::string> eq_names;
  for (const Value& f : eq_fields->array()) {
    if (!f.is_string() || f.string().size() > kMaxFieldPathChars) {
      return bad("an eq() field must be a field path");
    }
    eq_names.push_back(f.string());
  }
  q.eq = eq_values->array();

  const TableInfo* table_info = req.txn->metadata().FindTable(q.table);
  const IndexInfo* index_info = table_info == nullptr ? nullptr : table_info->FindIndex(q.index);
  if (index_info == nullptr && table_info != nullptr && q.index != kByIdIndexName) {
    std::string indexes(kByIdIndexName);
    for (const IndexInfo& i : table_info->indexes) indexes += StrCat(", ", i.name);
    return call->Fail(absl::NotFoundError(
        StrCat("table '", q.table, "' has no index '", q.index, "' (its indexes: ", indexes, ")")));
  }
  std::vector<std::string> fields;
  if (index_info != nullptr) fields = index_info->fields;
  if (q.index == kByIdIndexName && !eq_names.empty()) {
    return bad("the by_id index takes no range; use ctx.db.get(id)");
  }
  for (size_t i = 0; i < eq_names.size(); ++i) {
    if (i >= fields.size() || eq_names[i] != fields[i]) {
      return bad(StrCat("eq(", Quote(eq_names[i]), ") must name index field ", i + 1,
                        i < fields.size() ? StrCat(" \"", fields[i], "\"") : " (none left)"));
    }
  }
  for (int side = 4; side <= 5; ++side) {
    auto bound = RangeBound(*call, side);
    if (!bound) return;
    if (!bound->has_value()) continue;
    const std::string& field = (*bound)->first;
    if (q.index == kByIdIndexName) return bad("the by_id index takes no range");
    if (eq_names.size() >= fields.size() || field != fields[eq_names.size()]) {
      return bad(StrCat("a bound on ", Quote(field), " must name index field ", eq_names.size() + 1,
                        eq_names.size() < fields.size()
                            ? StrCat(" \"", fields[eq_names.size()], "\"")
                            : " (none left)"));
    }
    (side == 4 ? q.lower : q.upper) = std::move((*bound)->second);
  }
  q.order = info[6]->IsTrue() ? ScanOrder::kDescending : ScanOrder::kAscending;
  if (!info[7]->IsNumber()) return bad("the page size must be a number");
  const double limit = info[7].As<v8::Number>()->Value();
  if (!std::isfinite(limit) || limit < 0 || limit != std::floor(limit) || limit > kMaxPageSize) {
    return call->InvalidArgument(StrCat("take()/paginate(): the size must be an integer in [0, ",
                                        static_cast<int64_t>(kMaxPageSize), "], got ", limit));
  }
  q.limit = static_cast<size_t>(limit);
  if (!info[8]->IsNull() && !info[8]->IsUndefined()) {
    std::optional<std::string> cursor = call->String(8, "paginate(): cursor", kMaxCursorChars);
    if (!cursor) return;
    std::string raw;
    absl::string_view in(cursor->data(), cursor->size());
    // "" is the start, as null is.
    if (!cursor->empty()) {
      if (!absl::WebSafeBase64Unescape(in, &raw) || raw.size() < kCursorCheckBytes) {
        return bad("malformed cursor (pass a continueCursor as it was returned, or null)");
      }
      const std::string_view key(raw.data(), raw.size() - kCursorCheckBytes);
      if (CursorCheck(q, key) != std::string_view(raw).substr(key.size())) {
        return bad(
            "the cursor is not one of this query's (a continueCursor of the same table, index, "
            "eq() values and order, as it was returned), or is damaged");
      }
      q.cursor = std::string(key);
    }
  }
  absl::StatusOr<QueryPage> page = req.txn->Query(q);
  if (!page.ok()) return call->FailTxn(page.status());
  v8::Local<v8::Context> context = call->context();
  std::vector<v8::Local<v8::Value>> docs;
  docs.reserve(page->documents.size());
  for (const Value& d : page->documents) {
    absl::StatusOr<v8::Local<v8::Value>> js = ToJs(context, d);
    if (!js.ok()) return call->Fail(js.status());
    docs.push_back(*js);
  }
  std::string cursor;
  const std::string checked = page->cursor + CursorCheck(q, page->cursor);
  absl::WebSafeBase64Escape(absl::string_view(checked.data(), checked.size()), &cursor);
  v8::Local<v8::String> js_cursor;
  if (!NewString(isolate, cursor).ToLocal(&js_cursor)) {
    return call->Fail(absl::InternalError("cursor too long"));
  }
  v8::Local<v8::Value> out[3] = {v8::Array::New(isolate, docs.data(), docs.size()), js_cursor,
                                 v8::Boolean::New(isolate, page->done)};
  call->Return(v8::Array::New(isolate, out, 3));
}

void Insert(const v8::FunctionCallbackInfo<v8::Value>& info) {
  std::optional<Call> call = Call::Enter(info);
  if (!call) return;
  std::optional<std::string> table =
      call->String(0, "ctx.db.insert(table, doc): table", kMaxNameChars);
  if (!table) return;
  std::optional<Value> doc = call->ValueArg(1, "ctx.db.insert(table, doc): doc");
  if (!doc) return;
  absl::StatusOr<std::string> id = call->req().txn->Insert(*table, *std::move(doc));
  if (!id.ok()) return call->FailTxn(id.status());
  v8::Local<v8::String> js_id;
  if (!NewString(info.GetIsolate(), *id).ToLocal(&js_id))
    return call->Fail(absl::InternalError("id"));
  call->Return(js_id);
}

void Patch(const v8::FunctionCallbackInfo<v8::Value>& info) {
  std::optional<Call> call = Call::Enter(info);
  if (!call) return;
  std::optional<std::string> id = call->String(0, "ctx.db.patch(id, fields): id", kMaxIdChars);
  if (!id) return;
  // A field set to undefined is removed, as in Convex.
  std::vector<std::string> removed;
  std::optional<Value> fields =
      call->ToValue(info[1], "ctx.db.patch(id, fields): fields", &removed);
  if (!fields) return;
  if (absl::Status s = call->req().txn->Patch(*id, *fields, removed); !s.ok()) call->FailTxn(s);
}

void Replace(const v8::FunctionCallbackInfo<v8::Value>& info) {
  std::optional<Call> call = Call::Enter(info);
  if (!call) return;
  std::optional<std::string> id = call->String(0, "ctx.db.replace(id, doc): id", kMaxIdChars);
  if (!id) return;
  std::optional<Value> doc = call->ValueArg(1, "ctx.db.replace(id, doc): doc");
  if (!doc) return;
  if (absl::Status s = call->req().txn->Replace(*id, *std::move(doc)); !s.ok()) call->FailTxn(s);
}

void Delete(const v8::FunctionCallbackInfo<v8::Value>& info) {
  std::optional<Call> call = Call::Enter(info);
  if (!call) return;
  std::optional<std::string> id = call->String(0, "ctx.db.delete(id): id", kMaxIdChars);
  if (!id) return;
  if (absl::Status s = call->req().txn->Delete(*id); !s.ok()) call->FailTxn(s);
}

// The error an action's call out of its isolate gets once the action settled.
absl::Status AfterTheAction(std::string_view what) {
  return absl::FailedPreconditionError(
      StrCat(what,
             ": the action had already returned or thrown; a call it did not await "
             "before then is refused (await it, or Promise.all the calls)"));
}

// schedule(mode, when, function, args) -> call id: ctx.scheduler.runAfter
// (mode 0, `when` a delay in ms) and runAt (mode 1, `when` a time in ms since
// the epoch, or a Date's value). A mutation writes the call to its outbox
// (txfn/call_records.h), so only its commit schedules it; an action asks its
// host.
void Schedule(const v8::FunctionCallbackInfo<v8::Value>& info) {
  std::optional<Call> call = Call::Enter(info);
  if (!call) return;
  RequestState& req = call->req();
  const bool after = info[0]->IsInt32() && info[0].As<v8::Int32>()->Value() == 0;
  const char* what = after ? "ctx.scheduler.runAfter(delayMs, function, args)"
                           : "ctx.scheduler.runAt(timeMs, function, args)";
  if (!info[1]->IsNumber()) {
    return call->InvalidArgument(StrCat(what, ": the ", after ? "delay" : "time",
                                        " must be a number of milliseconds, got ",
                                        TypeName(info.GetIsolate(), info[1])));
  }
  const double when = info[1].As<v8::Number>()->Value();
  if (!std::isfinite(when) || (after && when < 0)) {
    return call->InvalidArgument(StrCat(
        what, ": the ", after ? "delay must be a finite number >= 0" : "time must be finite"));
  }
  // At most kMaxScheduleDelay ahead: runAt's time from Date.now() (the
  // transaction's time, or an action's real time).
  const double ahead_ms = after ? when : when - NowMs(req);
  if (ahead_ms > absl::ToDoubleMilliseconds(kMaxScheduleDelay)) {
    return call->InvalidArgument(
        StrCat(what, ": the ", after ? "delay" : "time", " must be at most ",
               absl::FormatDuration(kMaxScheduleDelay), after ? "" : " after Date.now()", ", got ",
               absl::FormatDuration(absl::Milliseconds(ahead_ms)), after ? "" : " after it"));
  }
  std::optional<std::string> function = call->String(2, StrCat(what, ": function"), 256);
  if (!function) return;
  std::optional<Value> args = call->ValueArg(3, StrCat(what, ": args"));
  if (!args) return;
  std::optional<absl::Duration> delay;
  std::optional<absl::Time> at;
  if (after) {
    delay = absl::Milliseconds(when);
  } else {
    at = absl::FromUnixMicros(static_cast<int64_t>(std::clamp(when, -9.0e12, 9.0e12) * 1e3));
  }
  if (req.scheduled >= kMaxScheduledPerTransaction) {
    return call->Fail(SandboxLimitError(
        StrCat(what, ": a function may schedule at most ", kMaxScheduledPerTransaction, " calls")));
  }
  absl::StatusOr<std::string> id;
  if (req.action) {
    if (req.host == nullptr) {
      return call->Fail(absl::FailedPreconditionError("ctx.scheduler: this runner has no host"));
    }
    if (ActionSettled(call->isolate(), req)) return call->Fail(AfterTheAction(what));
    // A mutation's scheduled calls count in its bytes written; an action has
    // no transaction, so they are bounded here, as much (a thousand 16 MiB
    // calls would be queued in host memory by the in-memory queue).
    const size_t bytes = args->ByteSize();
    if (req.scheduled_bytes + bytes > kMaxScheduledBytesPerAction) {
      return call->Fail(
          SandboxLimitError(StrCat(what, ": the calls one action schedules may carry at most ",
                                   kMaxScheduledBytesPerAction >> 20, " MiB of arguments in all")));
    }
    req.scheduled_bytes += bytes;
    id = req.host->Schedule(*function, *args, delay, at);
  } else {
    if (req.check_scheduled != nullptr) {
      if (absl::Status checked = (*req.check_scheduled)(*function, *args); !checked.ok()) {
        return call->Fail(Prefixed(checked, what));
      }
    }
    absl::BitGen bits;
    absl::StatusOr<CallId> scheduled = ScheduleCall(
        *req.txn,
        ScheduledCall{
            .function = *std::move(function), .args = *std::move(args), .delay = delay, .at = at},
        absl::Uniform<uint64_t>(bits), absl::Uniform<uint64_t>(bits));
    if (scheduled.ok()) {
      id = scheduled->ToString();
    } else {
      id = Prefixed(scheduled.status(), what);
    }
  }
  if (!id.ok()) return call->FailTxn(id.status());
  ++req.scheduled;
  v8::Local<v8::String> js_id;
  if (!NewString(info.GetIsolate(), *id).ToLocal(&js_id)) {
    return call->Fail(absl::InternalError("call id"));
  }
  call->Return(js_id);
}

// unschedule(id): ctx.scheduler.cancel. In a mutation, a kCancelled record
// commits with it (a call that already ended is left as it is); in an
// action, the host cancels.
void Unschedule(const v8::FunctionCallbackInfo<v8::Value>& info) {
  std::optional<Call> call = Call::Enter(info);
  if (!call) return;
  RequestState& req = call->req();
  std::optional<std::string> text = call->String(0, "ctx.scheduler.cancel(id): id", 64);
  if (!text) return;
  if (req.action) {
    if (req.host == nullptr) {
      return call->Fail(absl::FailedPreconditionError("ctx.scheduler: this runner has no host"));
    }
    if (ActionSettled(call->isolate(), req)) {
      return call->Fail(AfterTheAction("ctx.scheduler.cancel(id)"));
    }
    if (absl::Status s = req.host->Cancel(*text); !s.ok()) call->Fail(s);
    return;
  }
  absl::StatusOr<CallId> id = CallId::Parse(*text);
  if (!id.ok()) return call->Fail(Prefixed(id.status(), "ctx.scheduler.cancel(id)"));
  // Its record goes into this tenant's store, and the engine takes only this tenant's calls
  // out of the queue: an id another tenant's tag marks is none of this tenant's calls.
  if (TenantTagOf(*id) != TenantTag(req.txn->tenant())) {
    return call->Fail(absl::NotFoundError(
        StrCat("ctx.scheduler.cancel(id): ", *text, " is not a call of this tenant")));
  }
  // Each cancel writes a record (kept record_retention), whether or not the id was ever a call
  // (it may be one another process is about to queue): as many as a function may schedule.
  // (60,000 made-up ids once wrote 60,000 records in one mutation.) A cancel of a call that
  // has ended writes nothing, and is answered past the cap too.
  absl::StatusOr<bool> writes = CancelWritesRecord(*req.txn, *id, /*replace_dead_letter=*/true);
  if (!writes.ok()) return call->FailTxn(Prefixed(writes.status(), "ctx.scheduler.cancel(id)"));
  if (*writes && req.cancelled >= kMaxScheduledPerTransaction) {
    return call->Fail(
        SandboxLimitError(StrCat("ctx.scheduler.cancel(id): a function may cancel at most ",
                                 kMaxScheduledPerTransaction, " calls")));
  }
  // A dead letter's record is replaced: the call may have been put back (Redrive), which a
  // mutation cannot ask the queue about; a cancel of one still dead makes it cancelled, as
  // it did before dead letters were recorded.
  absl::StatusOr<std::optional<CallRecord>> ended =
      CancelCallInTransaction(*req.txn, *id, absl::FromUnixMillis(static_cast<int64_t>(req.now_ms)),
                              /*replace_dead_letter=*/true);
  if (!ended.ok()) return call->FailTxn(Prefixed(ended.status(), "ctx.scheduler.cancel(id)"));
  if (*writes) ++req.cancelled;
}

// runQuery(function, args), runMutation(function, args), service(name,
// args): an action's calls out of its isolate, through its host (blocking).
template <typename HostCall>
void ActionCall(const v8::FunctionCallbackInfo<v8::Value>& info, const char* what,
                HostCall host_call) {
  std::optional<Call> call = Call::Enter(info);
  if (!call) return;
  RequestState& req = call->req();
  if (!req.action || req.host == nullptr) {
    return call->Fail(absl::FailedPreconditionError(
        StrCat(what, " is only available in an action run by a host that serves it")));
  }
  if (ActionSettled(call->isolate(), req)) return call->Fail(AfterTheAction(what));
  std::optional<std::string> name = call->String(0, StrCat(what, ": name"), 256);
  if (!name) return;
  std::optional<Value> args = call->ValueArg(1, StrCat(what, ": args"));
  if (!args) return;
  absl::StatusOr<Value> result = host_call(*req.host, *name, *args);
  if (info.GetIsolate()->IsExecutionTerminating()) return;
  if (!result.ok()) {
    // Thrown into the action with its limit (ErrorTag), but a nested call's wall-clock limit:
    // that says its machine was busy, not that this action failed for good (a queue would
    // then record the action failed rather than run it again).
    absl::Status status = result.status();
    if (ExceededLimit(status) == Limit::kWallTime)
      status = absl::Status(status.code(), status.message());
    if (std::optional<AppError> app = GetAppError(status); app.has_value()) {
      return call->Rethrow(*app);
    }
    return call->Fail(status);
  }
  call->Return(*result);
}
void RunQueryNative(const v8::FunctionCallbackInfo<v8::Value>& info) {
  ActionCall(info, "ctx.runQuery",
             [](ActionHost& h, const std::string& f, const Value& a) { return h.RunQuery(f, a); });
}
void RunMutationNative(const v8::FunctionCallbackInfo<v8::Value>& info) {
  ActionCall(info, "ctx.runMutation", [](ActionHost& h, const std::string& f, const Value& a) {
    return h.RunMutation(f, a);
  });
}
void ServiceNative(const v8::FunctionCallbackInfo<v8::Value>& info) {
  ActionCall(info, "ctx.services", [](ActionHost& h, const std::string& s, const Value& a) {
    return h.CallService(s, a);
  });
}

// intlObject(kib): charged by the bootstrap's Intl wrappers before an
// object holding about `kib` KiB of ICU memory is made
// (kMaxIntlBytesPerRequest). Outside a request (the bootstrap, the lockdown)
// it only tells the GC; in the jobs a request left behind it refuses (they
// would make Intl objects charged to no request until a CPU limit).
void IntlObject(const v8::FunctionCallbackInfo<v8::Value>& info) {
  std::optional<Call> call = Call::Enter(info, /*needs_request=*/false);
  if (!call) return;
  const int64_t bytes = (info[0]->IsInt32() ? info[0].As<v8::Int32>()->Value() : 64) * 1024;
  RequestState* req = call->rt().current();
  if (ContextState* cs = StateOf(call->context()); req == nullptr && cs->running_leftovers) {
    return call->Fail(
        SandboxLimitError("Intl: no Intl object may be made after its request returned"));
  }
  if (req != nullptr) {
    if (req->intl_bytes + bytes > kMaxIntlBytesPerRequest) {
      return call->Fail(SandboxLimitError(
          StrCat("Intl: the Intl objects of one request exceed the sandbox limit of ",
                 kMaxIntlBytesPerRequest >> 20,
                 " MiB of ICU memory (outside the heap limit; ~1,000 DateTimeFormats): make "
                 "one and reuse it")));
    }
    req->intl_bytes += bytes;
    if (req->context != nullptr) req->context->intl_bytes += bytes;
  }
  info.GetIsolate()->AdjustAmountOfExternalAllocatedMemory(bytes);
}

// isProxy(v): lets the bootstrap's builtin guards tell Proxies (whose traps
// are JavaScript, so interruptible) from ordinary objects.
void IsProxy(const v8::FunctionCallbackInfo<v8::Value>& info) {
  info.GetReturnValue().Set(info[0]->IsProxy());
}

// The longest eval/Function source. V8 parses and compiles a source in one
// step that cannot be interrupted, with memory outside the heap limit: about
// 330 bytes a character for dense code (16 Mi characters of `class{},` held
// 5.3 GB and ran 17 s past the CPU limit). 256 Ki characters bound that to
// about 85 MB and a quarter of a second; code that long belongs in a module.
constexpr size_t kMaxCodeFromStringChars = size_t{1} << 18;

// `code` with "\n//N" after it, N the runtime's code epoch: a line comment, whatever `code`
// ends with (no string, template, regexp or comment that parses can take in a newline and
// "//" and digits and still end), outside every function's source text (toString) and after
// every position a stack names. V8 caches a compile from a string isolate-wide, keyed by the
// source, and a cached script keeps where it was first compiled (the caller's name, line
// and column, which stacks print as "eval at NAME (...)"), its type feedback and optimized
// code: a request compiling a source an earlier one compiled got all that, a channel from
// one request to the next (a hostile-code hunt sent any text through the caller's name,
// from a read-only query and from a mutation that rolled back, in every context mode). With
// the epoch in the source nothing compiled in one request is found by another.
v8::MaybeLocal<v8::String> WithCodeEpoch(v8::Isolate* isolate, v8::Local<v8::Context> context,
                                         v8::Local<v8::String> code) {
  const ContextState* cs = StateOf(context);
  if (cs == nullptr) return {};
  const std::string suffix = StrCat("\n//", cs->rt->code_epoch());
  v8::Local<v8::String> tail;
  if (!v8::String::NewFromUtf8(isolate, suffix.data(), v8::NewStringType::kNormal,
                               static_cast<int>(suffix.size()))
           .ToLocal(&tail)) {
    return {};
  }
  return v8::String::Concat(isolate, code, tail);
}

// eval and Function (their source as text): allowed unless the source is
// longer than kMaxCodeFromStringChars (above; also well under
// kMaxReadableChars, the longest Utf8Prefix reads) or has more
// regexp escapes than a module may (CheckRegExpCost); then V8 throws its
// EvalError ("Code generation from strings disallowed"). Long regexp literals
// are guarded as a module's are (GuardLongRegExpLiterals); a source that needs
// that and does not survive UTF-8 (a lone surrogate, say in a comment) is
// refused too, as it could only run unguarded. Every source compiled gets the
// code epoch (WithCodeEpoch); one that cannot is refused.
v8::ModifyCodeGenerationFromStringsResult OnCodeGeneration(v8::Local<v8::Context> context,
                                                           v8::Local<v8::Value> source,
                                                           bool /*is_code_like*/) {
  if (!source->IsString()) return {.codegen_allowed = true};
  v8::Isolate* isolate = context->GetIsolate();
  v8::Local<v8::String> code = source.As<v8::String>();
  if (static_cast<size_t>(code->Length()) > kMaxCodeFromStringChars) {
    return {.codegen_allowed = false};
  }
  const std::string text = Utf8Prefix(isolate, code, size_t{1} << 30);
  if (!CheckRegExpCost(text, JsGoal::kScript).ok()) return {.codegen_allowed = false};
  const std::optional<std::string> guarded = GuardLongRegExpLiterals(text, JsGoal::kScript);
  v8::Local<v8::String> with_epoch;
  if (!guarded.has_value()) {
    if (!WithCodeEpoch(isolate, context, code).ToLocal(&with_epoch)) {
      return {.codegen_allowed = false};
    }
    return {.codegen_allowed = true, .modified_source = with_epoch};
  }
  v8::Local<v8::String> exact, modified;
  if (!v8::String::NewFromUtf8(isolate, text.data(), v8::NewStringType::kNormal,
                               static_cast<int>(text.size()))
           .ToLocal(&exact) ||
      !exact->StringEquals(code) ||
      !v8::String::NewFromUtf8(isolate, guarded->data(), v8::NewStringType::kNormal,
                               static_cast<int>(guarded->size()))
           .ToLocal(&modified) ||
      !WithCodeEpoch(isolate, context, modified).ToLocal(&with_epoch)) {
    return {.codegen_allowed = false};
  }
  return {.codegen_allowed = true, .modified_source = with_epoch};
}

// isRegExp(v): whether `v` is a RegExp (its internal slots, not its
// prototype), for the bootstrap's RegExp wrapper.
void IsRegExpNative(const v8::FunctionCallbackInfo<v8::Value>& info) {
  info.GetReturnValue().Set(info[0]->IsRegExp());
}

// regexpNeedsGuard(pattern, flags): RegExpNeedsGuard (regexp_literals.h) for a pattern the
// bootstrap's RegExp wrapper is about to compile, so that it and the rewrite of literals
// decide by one rule.
void RegExpNeedsGuardNative(const v8::FunctionCallbackInfo<v8::Value>& info) {
  if (!info[0]->IsString() || !info[1]->IsString()) return;
  v8::Isolate* isolate = info.GetIsolate();
  constexpr size_t kAll = size_t{1} << 30;
  info.GetReturnValue().Set(RegExpNeedsGuard(Utf8Prefix(isolate, info[0].As<v8::String>(), kAll),
                                             Utf8Prefix(isolate, info[1].As<v8::String>(), kAll)));
}

// regexpNesting(pattern): RegExpNestingDepth (regexp_literals.h) of a pattern the bootstrap's
// RegExp wrapper is about to compile, by the rule literals are checked by.
void RegExpNestingNative(const v8::FunctionCallbackInfo<v8::Value>& info) {
  if (!info[0]->IsString()) return;
  constexpr size_t kAll = size_t{1} << 30;
  info.GetReturnValue().Set(static_cast<double>(
      RegExpNestingDepth(Utf8Prefix(info.GetIsolate(), info[0].As<v8::String>(), kAll))));
}

// typedLength(v): a typed array's length (0 once detached), or -1.
void TypedLength(const v8::FunctionCallbackInfo<v8::Value>& info) {
  info.GetReturnValue().Set(
      info[0]->IsTypedArray() ? static_cast<double>(info[0].As<v8::TypedArray>()->Length()) : -1.0);
}

// proxyTarget(p): the target of Proxy `p` (null once revoked).
void ProxyTarget(const v8::FunctionCallbackInfo<v8::Value>& info) {
  if (info[0]->IsProxy()) info.GetReturnValue().Set(info[0].As<v8::Proxy>()->GetTarget());
}

// proxyHandler(p): the handler of Proxy `p` (null once revoked), so that the bootstrap can
// tell whether a get trap (JavaScript) or the target (in C++) answers what V8 reads.
void ProxyHandler(const v8::FunctionCallbackInfo<v8::Value>& info) {
  if (info[0]->IsProxy()) info.GetReturnValue().Set(info[0].As<v8::Proxy>()->GetHandler());
}

// indexedLength(v): how many indices V8 lists in C++ for `v` (Object.keys,
// assign, freeze, ...): a string's, a String object's or a typed array's
// length, through any Proxies (a trap-less Proxy forwards to its target in
// C++); 0 for anything else.
void IndexedLength(const v8::FunctionCallbackInfo<v8::Value>& info) {
  v8::Local<v8::Value> v = info[0];
  for (int depth = 0; v->IsProxy() && depth < (1 << 20); ++depth) {
    v = v.As<v8::Proxy>()->GetTarget();
  }
  double length = 0;
  if (v->IsString()) {
    length = v.As<v8::String>()->Length();
  } else if (v->IsStringObject()) {
    length = v.As<v8::StringObject>()->ValueOf()->Length();
  } else if (v->IsTypedArray()) {
    length = static_cast<double>(v.As<v8::TypedArray>()->Length());
  }
  info.GetReturnValue().Set(length);
}

// nativeSource(f): for a function of txfn's own JavaScript (a script named
// "txfn:..."), what Function.prototype.toString shows for a builtin, named
// after the function (without the '_' that keeps some wrappers' names apart
// from the bootstrap's variables); undefined for anything else.
void NativeSource(const v8::FunctionCallbackInfo<v8::Value>& info) {
  v8::Isolate* isolate = info.GetIsolate();
  if (!info[0]->IsFunction() || info[0]->IsProxy()) return;
  v8::Local<v8::Function> fn = info[0].As<v8::Function>();
  // Empty for a bound function (not a JSFunction: no script of its own).
  v8::Local<v8::Value> script = fn->GetScriptOrigin().ResourceName();
  if (script.IsEmpty() || !script->IsString() ||
      !Utf8Prefix(isolate, script.As<v8::String>(), 64).starts_with("txfn:")) {
    return;
  }
  std::string name;
  if (v8::Local<v8::Value> n = fn->GetName(); n->IsString()) {
    name = Utf8Prefix(isolate, n.As<v8::String>(), 256);
  }
  if (name.ends_with('_')) name.pop_back();
  info.GetReturnValue().Set(
      MessageString(isolate, StrCat("function ", name, "() { [native code] }")));
}

// setOriginal(getter, value): the lockdown's note, on an override accessor's
// getter, of the data value it replaced (harden_js.h, js_strings.h). Made
// per lockdown, never reachable from tenant code.
void SetOriginal(const v8::FunctionCallbackInfo<v8::Value>& info) {
  v8::Isolate* isolate = info.GetIsolate();
  if (!info[0]->IsFunction()) return;
  v8::Local<v8::Private> key =
      v8::Private::ForApi(isolate, MessageString(isolate, kOriginalValueKey));
  (void)info[0].As<v8::Object>()->SetPrivate(isolate->GetCurrentContext(), key, info[1]);
}

// ownKeys(o): every own key of `o` (strings, indices as strings, symbols),
// for the lockdown's walk.
void OwnKeys(const v8::FunctionCallbackInfo<v8::Value>& info) {
  if (!info[0]->IsObject()) return;
  v8::Local<v8::Array> keys;
  if (info[0]
          .As<v8::Object>()
          ->GetPropertyNames(info.GetIsolate()->GetCurrentContext(),
                             v8::KeyCollectionMode::kOwnOnly, v8::ALL_PROPERTIES,
                             v8::IndexFilter::kIncludeIndices,
                             v8::KeyConversionMode::kConvertToString)
          .ToLocal(&keys)) {
    info.GetReturnValue().Set(keys);
  }
}

// Records promises rejected without a handler, for the request's logs.
// import() has no loader (a function's modules are imported statically, and checked at its
// deploy): its promise is rejected saying so, where V8 said only "Not supported".
v8::MaybeLocal<v8::Promise> RefuseDynamicImport(v8::Local<v8::Context> context,
                                                v8::Local<v8::Data> /*host_defined_options*/,
                                                v8::Local<v8::Value> /*resource_name*/,
                                                v8::Local<v8::String> specifier,
                                                v8::Local<v8::FixedArray> /*import_assertions*/) {
  v8::Isolate* isolate = context->GetIsolate();
  v8::Local<v8::Promise::Resolver> resolver;
  if (!v8::Promise::Resolver::New(context).ToLocal(&resolver)) return {};
  const std::string name = Utf8Prefix(isolate, specifier, kQuoteBytes);
  v8::Local<v8::Value> error = v8::Exception::TypeError(
      MessageString(isolate, StrCat("import(\"", name,
                                    "\"): dynamic import is not supported; import the "
                                    "module statically (import { ... } from \"",
                                    name, "\")")));
  if (resolver->Reject(context, error).IsNothing()) return {};
  return resolver->GetPromise();
}

void OnPromiseReject(v8::PromiseRejectMessage message) {
  v8::Local<v8::Promise> promise = message.GetPromise();
  v8::Isolate* isolate = promise->GetIsolate();
  ContextState* cs = StateOf(isolate->GetCurrentContext());
  if (cs == nullptr) return;
  RequestState* req = cs->rt->current();
  if (req == nullptr || req->context != cs) return;
  switch (message.GetEvent()) {
    case v8::kPromiseRejectWithNoHandler:
      if (req->unhandled.size() >= kMaxUnhandledRejections) {
        ++req->unhandled_dropped;
        return;
      }
      req->unhandled.emplace_back(v8::Global<v8::Promise>(isolate, promise),
                                  DescribeValue(isolate, message.GetValue(), 1024));
      return;
    case v8::kPromiseHandlerAddedAfterReject:
      std::erase_if(req->unhandled, [&](const auto& u) { return u.first == promise; });
      return;
    default:
      return;
  }
}

}  // namespace

void RequestState::AppendLog(LogLevel level, std::string message) {
  if (logs_truncated) return;
  if (logs->size() >= options->max_log_entries ||
      log_bytes + message.size() > options->max_log_bytes) {
    logs_truncated = true;
    logs->push_back({LogLevel::kWarn, "[logs truncated]"});
    return;
  }
  log_bytes += message.size();
  logs->push_back({level, std::move(message)});
}

ContextState::~ContextState() {
  if (context.IsEmpty()) return;
  v8::Isolate* isolate = rt->isolate();
  v8::HandleScope scope(isolate);
  v8::Local<v8::Context> c = context.Get(isolate);
  c->SetAbortScriptExecution(&AbortScript);
  c->SetAlignedPointerInEmbedderData(kContextStateSlot, nullptr);
  // The queue goes with this state; the context may linger until a GC, but
  // nothing can queue into it: no JavaScript runs in it any more.
}

void ContextState::Open() {
  v8::HandleScope scope(rt->isolate());
  context.Get(rt->isolate())->SetAbortScriptExecution(nullptr);
}

void ContextState::Close() {
  v8::HandleScope scope(rt->isolate());
  context.Get(rt->isolate())->SetAbortScriptExecution(&AbortScript);
}

void ContextState::ResetModules() {
  modules.clear();
  by_path.clear();
  server_module.Reset();
}

ContextState* StateOf(v8::Local<v8::Context> context) {
  if (context.IsEmpty() || context->GetNumberOfEmbedderDataFields() <= kContextStateSlot) {
    return nullptr;
  }
  return static_cast<ContextState*>(context->GetAlignedPointerFromEmbedderData(kContextStateSlot));
}

void NoteActionReturned(v8::Isolate* isolate, v8::Local<v8::Value> returned, RequestState& req) {
  req.action_returned = true;
  if (returned->IsPromise()) req.action_promise.Reset(isolate, returned.As<v8::Promise>());
}

void NoteActionThrew(RequestState& req) {
  req.action_returned = true;
  req.action_promise.Reset();
}

bool ActionSettled(v8::Isolate* isolate, const RequestState& req) {
  if (!req.action_returned) return false;
  return req.action_promise.IsEmpty() ||
         req.action_promise.Get(isolate)->State() != v8::Promise::kPending;
}

IsolateRuntime::IsolateRuntime(v8::Isolate* isolate) : isolate_(isolate) {
  v8::HandleScope scope(isolate_);
  kind_key_.Reset(isolate_, v8::Private::New(isolate_, MessageString(isolate_, "txfn.kind")));
  code_key_.Reset(isolate_, v8::Private::New(isolate_, MessageString(isolate_, "txfn.code")));
  attrs_key_.Reset(isolate_, v8::Private::New(isolate_, MessageString(isolate_, "txfn.attrs")));
  args_key_.Reset(isolate_, v8::Private::New(isolate_, MessageString(isolate_, "txfn.args")));
  // No blocking waits in tenant code (the bootstrap also removes
  // SharedArrayBuffer, without which Atomics cannot wait at all).
  isolate_->SetAllowAtomicsWait(false);
  isolate_->SetPromiseRejectCallback(&OnPromiseReject);
  isolate_->SetHostImportModuleDynamicallyCallback(&RefuseDynamicImport);
  // Consulted for eval and Function in every context (each disallows code
  // generation from strings, see NewContext), so that their source gets the
  // module's RegExp bound.
  isolate_->SetModifyCodeGenerationFromStringsCallback(&OnCodeGeneration);
}

IsolateRuntime::~IsolateRuntime() {
  reused_.reset();
  hardened_.reset();
}

const intptr_t* IsolateRuntime::ExternalReferences() {
  static const intptr_t kRefs[] = {reinterpret_cast<intptr_t>(&Now),
                                   reinterpret_cast<intptr_t>(&Random),
                                   reinterpret_cast<intptr_t>(&Log),
                                   reinterpret_cast<intptr_t>(&Fail),
                                   reinterpret_cast<intptr_t>(&Mark),
                                   reinterpret_cast<intptr_t>(&Get),
                                   reinterpret_cast<intptr_t>(&QueryNative),
                                   reinterpret_cast<intptr_t>(&Insert),
                                   reinterpret_cast<intptr_t>(&Patch),
                                   reinterpret_cast<intptr_t>(&Replace),
                                   reinterpret_cast<intptr_t>(&Delete),
                                   reinterpret_cast<intptr_t>(&IsProxy),
                                   reinterpret_cast<intptr_t>(&NativeSource),
                                   reinterpret_cast<intptr_t>(&IsRegExpNative),
                                   reinterpret_cast<intptr_t>(&RegExpNeedsGuardNative),
                                   reinterpret_cast<intptr_t>(&RegExpNestingNative),
                                   reinterpret_cast<intptr_t>(&TypedLength),
                                   reinterpret_cast<intptr_t>(&ProxyTarget),
                                   reinterpret_cast<intptr_t>(&ProxyHandler),
                                   reinterpret_cast<intptr_t>(&IndexedLength),
                                   reinterpret_cast<intptr_t>(&IntlObject),
                                   reinterpret_cast<intptr_t>(&Schedule),
                                   reinterpret_cast<intptr_t>(&Unschedule),
                                   reinterpret_cast<intptr_t>(&RunQueryNative),
                                   reinterpret_cast<intptr_t>(&RunMutationNative),
                                   reinterpret_cast<intptr_t>(&ServiceNative),
                                   0};
  return kRefs;
}

namespace {

// Runs one of txfn's internal scripts, `source`, whose value is a function,
// under the script name `name`, and calls that function with `args`. False
// (the exception in the caller's TryCatch) when any step fails.
bool CallInternalScript(v8::Isolate* isolate, v8::Local<v8::Context> context, std::string_view name,
                        std::string_view source, std::initializer_list<v8::Local<v8::Value>> args,
                        v8::Local<v8::Value>* out) {
  v8::ScriptOrigin origin(isolate, MessageString(isolate, name));
  v8::Local<v8::String> code;
  v8::Local<v8::Script> script;
  v8::Local<v8::Value> fn;
  std::vector<v8::Local<v8::Value>> argv(args);
  return NewString(isolate, source).ToLocal(&code) &&
         v8::Script::Compile(context, code, &origin).ToLocal(&script) &&
         script->Run(context).ToLocal(&fn) && fn->IsFunction() &&
         fn.As<v8::Function>()
             ->Call(context, v8::Undefined(isolate), static_cast<int>(argv.size()), argv.data())
             .ToLocal(out);
}

}  // namespace

absl::StatusOr<v8::Local<v8::Object>> IsolateRuntime::Bootstrap(v8::Isolate* isolate,
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
  add("query", &QueryNative);
  add("insert", &Insert);
  add("patch", &Patch);
  add("replace", &Replace);
  add("del", &Delete);
  add("isProxy", &IsProxy);
  add("nativeSource", &NativeSource);
  add("isRegExp", &IsRegExpNative);
  add("regexpNeedsGuard", &RegExpNeedsGuardNative);
  add("regexpNesting", &RegExpNestingNative);
  add("typedLength", &TypedLength);
  add("proxyTarget", &ProxyTarget);
  add("proxyHandler", &ProxyHandler);
  add("indexedLength", &IndexedLength);
  add("intlObject", &IntlObject);
  add("schedule", &Schedule);
  add("unschedule", &Unschedule);
  add("runQuery", &RunQueryNative);
  add("runMutation", &RunMutationNative);
  add("service", &ServiceNative);
  v8::TryCatch tc(isolate);
  v8::Local<v8::Object> natives;
  v8::Local<v8::Value> out;
  if (!natives_template->NewInstance(context).ToLocal(&natives) ||
      !CallInternalScript(isolate, context, "txfn:bootstrap", kBootstrapSource, {natives}, &out) ||
      !out->IsObject()) {
    return absl::InternalError(
        StrCat("bootstrap failed: ", DescribeValue(isolate, tc.Exception(), kMaxJsMessageBytes)));
  }
  return scope.Escape(out.As<v8::Object>());
}

absl::StatusOr<std::unique_ptr<ContextState>> IsolateRuntime::NewContext() {
  auto state = std::make_unique<ContextState>();
  state->rt = this;
  state->microtasks = v8::MicrotaskQueue::New(isolate_, v8::MicrotasksPolicy::kExplicit);
  v8::Local<v8::Context> context;
  v8::Local<v8::Object> exports;
  if (from_snapshot_ != Tri::kNo) {
    const bool ok = FromSnapshot(state->microtasks.get(), &context, &exports);
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
    context = v8::Context::New(isolate_, nullptr, {}, {}, {}, state->microtasks.get());
    if (context.IsEmpty()) return absl::ResourceExhaustedError("cannot create a V8 context");
    v8::Context::Scope scope(context);
    TXFN_ASSIGN_OR_RETURN(exports, Bootstrap(isolate_, context));
  }
  context->SetAlignedPointerInEmbedderData(kContextStateSlot, state.get());
  context->AllowCodeGenerationFromStrings(false);  // OnCodeGeneration decides
  state->context.Reset(isolate_, context);
  v8::Context::Scope scope(context);
  // V8 puts SharedArrayBuffer back into every context it deserialises unless
  // its flags turned it off (txfn's own platform does): remove it here too.
  v8::Local<v8::Object> global = context->Global();
  v8::Local<v8::String> sab = MessageString(isolate_, "SharedArrayBuffer");
  if (global->HasRealNamedProperty(context, sab).FromMaybe(false) &&
      !global->Delete(context, sab).FromMaybe(false)) {
    return absl::InternalError("cannot remove SharedArrayBuffer");
  }
  v8::Local<v8::Value> server;
  v8::Local<v8::Value> ctx;
  v8::Local<v8::Value> action_ctx;
  if (!exports->Get(context, MessageString(isolate_, "server")).ToLocal(&server) ||
      !exports->Get(context, MessageString(isolate_, "ctx")).ToLocal(&ctx) ||
      !exports->Get(context, MessageString(isolate_, "actionCtx")).ToLocal(&action_ctx) ||
      !server->IsObject() || !ctx->IsObject() || !action_ctx->IsObject()) {
    return absl::InternalError("bootstrap exports are malformed");
  }
  state->server.Reset(isolate_, server.As<v8::Object>());
  state->ctx.Reset(isolate_, ctx.As<v8::Object>());
  state->action_ctx.Reset(isolate_, action_ctx.As<v8::Object>());
  return state;
}

absl::Status IsolateRuntime::Harden(ContextState& cs) {
  v8::HandleScope scope(isolate_);
  v8::Local<v8::Context> context = cs.context.Get(isolate_);
  v8::Context::Scope context_scope(context);
  v8::TryCatch tc(isolate_);
  v8::Local<v8::Object> exports = v8::Object::New(isolate_);
  v8::Local<v8::Object> ctx = cs.ctx.Get(isolate_);
  v8::Local<v8::Value> db;
  v8::Local<v8::Value> scheduler;
  v8::Local<v8::Value> out;
  v8::Local<v8::Function> set_original;
  v8::Local<v8::Function> own_keys;
  if (!v8::Function::New(context, &SetOriginal).ToLocal(&set_original) ||
      !v8::Function::New(context, &OwnKeys).ToLocal(&own_keys)) {
    return absl::InternalError("lockdown failed: no natives");
  }
  if (exports->Set(context, MessageString(isolate_, "server"), cs.server.Get(isolate_))
          .IsNothing() ||
      exports->Set(context, MessageString(isolate_, "ctx"), ctx).IsNothing() ||
      exports->Set(context, MessageString(isolate_, "actionCtx"), cs.action_ctx.Get(isolate_))
          .IsNothing() ||
      !ctx->Get(context, MessageString(isolate_, "db")).ToLocal(&db) || !db->IsObject() ||
      !ctx->Get(context, MessageString(isolate_, "scheduler")).ToLocal(&scheduler) ||
      !scheduler->IsObject() ||
      !CallInternalScript(isolate_, context, "txfn:harden", kHardenSource,
                          {exports, set_original, own_keys}, &out)) {
    if (isolate_->IsExecutionTerminating()) {
      return absl::ResourceExhaustedError("the context's lockdown was stopped");
    }
    return absl::InternalError(
        StrCat("lockdown failed: ", DescribeValue(isolate_, tc.Exception(), kMaxJsMessageBytes)));
  }
  cs.db.Reset(isolate_, db.As<v8::Object>());
  cs.scheduler.Reset(isolate_, scheduler.As<v8::Object>());
  return absl::OkStatus();
}

absl::StatusOr<ContextState*> IsolateRuntime::OpenHardened() {
  if (hardened_ == nullptr) {
    TXFN_ASSIGN_OR_RETURN(std::unique_ptr<ContextState> cs, NewContext());
    TXFN_RETURN_IF_ERROR(Harden(*cs));
    hardened_ = std::move(cs);
  } else {
    hardened_->Open();
  }
  ContextState& cs = *hardened_;
  cs.ResetModules();
  // A new ctx per request: the same frozen db and scheduler, in an object
  // no earlier request held.
  v8::HandleScope scope(isolate_);
  v8::Local<v8::Context> context = cs.context.Get(isolate_);
  v8::Context::Scope context_scope(context);
  v8::Local<v8::Object> ctx = v8::Object::New(isolate_);
  if (ctx->CreateDataProperty(context, MessageString(isolate_, "db"), cs.db.Get(isolate_))
          .IsNothing() ||
      ctx->CreateDataProperty(context, MessageString(isolate_, "scheduler"),
                              cs.scheduler.Get(isolate_))
          .IsNothing() ||
      !ctx->SetIntegrityLevel(context, v8::IntegrityLevel::kFrozen).FromMaybe(false)) {
    hardened_.reset();
    return absl::ResourceExhaustedError("cannot make a request's ctx");
  }
  cs.ctx.Reset(isolate_, ctx);
  return &cs;
}

void IsolateRuntime::Throw(const absl::Status& status) {
  v8::Local<v8::Value> error =
      v8::Exception::Error(MessageString(isolate_, ToStd(status.message())));
  if (error->IsObject()) {
    (void)error.As<v8::Object>()->SetPrivate(isolate_->GetCurrentContext(), code_key(),
                                             v8::Integer::New(isolate_, ErrorTag(status)));
  }
  isolate_->ThrowException(error);
}

bool IsolateRuntime::FromSnapshot(v8::MicrotaskQueue* queue, v8::Local<v8::Context>* context,
                                  v8::Local<v8::Object>* exports) {
  if (!v8::Context::FromSnapshot(isolate_, kSnapshotContextIndex, {}, nullptr, {}, queue)
           .ToLocal(context)) {
    return false;
  }
  v8::Local<v8::String> marker;
  if (!(*context)->GetDataFromSnapshotOnce<v8::Object>(kSnapshotExportsIndex).ToLocal(exports) ||
      !(*context)->GetDataFromSnapshotOnce<v8::String>(kSnapshotMarkerIndex).ToLocal(&marker)) {
    return false;
  }
  // Another embedder's snapshot could have data at these indices too.
  return from_snapshot_ == Tri::kYes ||
         Utf8Prefix(isolate_, marker, kSnapshotMarker.size()) == kSnapshotMarker;
}

CurrentRequest::CurrentRequest(IsolateRuntime* rt, ContextState* cs, Transaction& txn,
                               const FunctionRunnerOptions& options, const IsolateLease& lease,
                               uint64_t seed, std::vector<LogEntry>* logs)
    : rt_(rt) {
  state_.txn = &txn;
  state_.options = &options;
  state_.lease = &lease;
  state_.context = cs;
  state_.rng = seed ^ 0x6a09e667f3bcc909ULL;
  state_.now_ms = std::floor(static_cast<double>(txn.now()) / 1e6);
  state_.logs = logs;
  rt_->set_current(&state_);
}

CurrentRequest::~CurrentRequest() { rt_->set_current(nullptr); }

void CurrentRequest::LogUnhandledRejections(v8::Local<v8::Value> result) {
  v8::Isolate* isolate = rt_->isolate();
  for (const auto& [promise, text] : state_.unhandled) {
    if (!result.IsEmpty() && promise.Get(isolate) == result) continue;
    state_.AppendLog(LogLevel::kWarn, StrCat("Unhandled promise rejection: ", text));
  }
  if (state_.unhandled_dropped > 0) {
    state_.AppendLog(LogLevel::kWarn,
                     StrCat(state_.unhandled_dropped, " more unhandled promise rejections"));
  }
  state_.unhandled.clear();
}

}  // namespace txfn::internal

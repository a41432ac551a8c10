#include "lib/v8/js_errors.h"

#include <algorithm>
#include <string>
#include <string_view>
#include <utility>

#include "lib/utf8.h"
#include "lib/v8/js_strings.h"
#include "lib/v8/js_value.h"
#include "txfn/errors.h"
#include "txfn/internal/strings.h"
#include "v8-exception.h"
#include "v8-object.h"
#include "v8-primitive.h"

namespace txfn::internal {

namespace {

// The prefix of the resource names of txfn's own scripts (isolate_runtime.cc:
// "txfn:bootstrap", "txfn:harden"). Module paths cannot contain ':' (deploy.cc).
constexpr std::string_view kInternalScriptPrefix = "txfn:";

// Whether `frame`, a stack line after its "at ", runs in one of txfn's own
// scripts: "fn (txfn:bootstrap:3:9)", "txfn:bootstrap:3:9", "async fn (txfn:...)".
bool IsInternalFrame(std::string_view frame) {
  if (frame.starts_with("async ")) frame.remove_prefix(6);
  return frame.starts_with(kInternalScriptPrefix) || frame.find("(txfn:") != std::string_view::npos;
}

// At most this much of a thrown value's `data` is kept as an AppError's data.
constexpr size_t kMaxAppErrorDataBytes = size_t{64} << 10;

// `stack` without the frames of txfn's own JavaScript (the wrappers of
// query()/mutation() and ctx.db), as the bootstrap's Error.prepareStackTrace
// leaves them out: a status shows only the tenant's code's frames, also when
// the tenant replaced that hook.
std::string WithoutInternalFrames(std::string_view stack) {
  std::string out;
  out.reserve(stack.size());
  while (!stack.empty()) {
    const size_t end = stack.find('\n');
    const std::string_view line = stack.substr(0, end);
    stack = end == std::string_view::npos ? std::string_view() : stack.substr(end + 1);
    const size_t first = line.find_first_not_of(" \t");
    const std::string_view trimmed =
        first == std::string_view::npos ? std::string_view() : line.substr(first);
    if (trimmed.starts_with("at ") && IsInternalFrame(trimmed.substr(3))) {
      continue;
    }
    if (!out.empty()) out.push_back('\n');
    out.append(line);
  }
  return out;
}

// `obj`'s property `name` if it is a string, cut to `max_bytes`; "" otherwise.
// A getter is tenant code: it may throw (ignored: the caller's TryCatch) or be
// terminated.
std::string StringProperty(v8::Isolate* isolate, v8::Local<v8::Object> obj, std::string_view name,
                           size_t max_bytes) {
  v8::Local<v8::Value> value;
  if (isolate->IsExecutionTerminating() ||
      !obj->Get(isolate->GetCurrentContext(), MessageString(isolate, name)).ToLocal(&value) ||
      !value->IsString()) {
    return "";
  }
  return Utf8Prefix(isolate, value.As<v8::String>(), max_bytes);
}

// What the function's own code threw, as data (txfn/errors.h): an Error's
// name, message and `data` property, or a thrown non-Error value itself.
AppError DescribeAppError(v8::Isolate* isolate, v8::Local<v8::Value> exception) {
  AppError error;
  if (exception.IsEmpty()) return error;
  v8::Local<v8::Context> context = isolate->GetCurrentContext();
  v8::Local<v8::Value> data = exception;
  if (exception->IsNativeError()) {
    v8::Local<v8::Object> obj = exception.As<v8::Object>();
    error.name = StringProperty(isolate, obj, "name", kQuoteBytes);
    error.message = StringProperty(isolate, obj, "message", kMaxJsMessageBytes);
    if (isolate->IsExecutionTerminating() ||
        !obj->Get(context, MessageString(isolate, "data")).ToLocal(&data)) {
      data = v8::Undefined(isolate);
    }
  } else {
    error.message = DescribeValue(isolate, exception, kMaxJsMessageBytes);
    // A thrown string is its own message (DescribeValue quotes it).
    if (exception->IsString()) error.message = error.message.substr(1, error.message.size() - 2);
  }
  // A value that is not plain data (a function, a cycle, too large) or whose
  // conversion was stopped leaves `data` null: the error itself still counts.
  if (!isolate->IsExecutionTerminating() && !data->IsUndefined()) {
    absl::StatusOr<Value> converted = FromJs(context, data, kMaxAppErrorDataBytes);
    if (converted.ok()) error.data = *std::move(converted);
  }
  // A thrown plain object or array (not an Error) described itself as "[object Object]": it
  // says more as the JSON of its data, converted already (no code runs here), at most its
  // first 256 bytes (cut between UTF-8 characters).
  if (!exception->IsNativeError() && (error.data.is_object() || error.data.is_array())) {
    constexpr size_t kMaxJsonBytes = 256;
    error.message = ToJson(error.data);
    if (error.message.size() > kMaxJsonBytes) {
      error.message =
          StrCat(error.message.substr(0, Utf8Boundary(error.message, kMaxJsonBytes)), "...");
    }
  }
  return error;
}

}  // namespace

absl::Status SandboxLimitError(std::string_view message) {
  return WithLimit(absl::ResourceExhaustedError(ToAbsl(message)), Limit::kSandbox);
}

// A tag is the code, plus (limit + 1) << 8 for a limit's error.
int32_t ErrorTag(const absl::Status& status) {
  const int32_t code = static_cast<int32_t>(status.code());
  const std::optional<Limit> limit = ExceededLimit(status);
  return limit.has_value() ? code | ((static_cast<int32_t>(*limit) + 1) << 8) : code;
}

absl::Status FromErrorTag(int32_t tag, std::string_view message) {
  const int32_t code = tag & 0xff, limit = (tag >> 8) - 1;
  if (code <= 0 || code > static_cast<int32_t>(absl::StatusCode::kUnauthenticated) || limit < -1 ||
      limit > static_cast<int32_t>(Limit::kSandbox)) {
    return absl::UnknownError(ToAbsl(message));
  }
  absl::Status status(static_cast<absl::StatusCode>(code), ToAbsl(message));
  return limit < 0 ? status : WithLimit(std::move(status), static_cast<Limit>(limit));
}

absl::Status ExceptionStatus(v8::Isolate* isolate, v8::Local<v8::Private> code_key,
                             v8::Local<v8::Value> exception, v8::Local<v8::Message> message,
                             std::string_view what) {
  v8::Local<v8::Context> context = isolate->GetCurrentContext();
  int32_t tag = static_cast<int32_t>(absl::StatusCode::kUnknown);
  bool thrown_by_txfn = false;
  std::string text;
  std::optional<AppError> app_error;
  {
    // A stack getter or Error.prepareStackTrace is tenant code: it may throw
    // (ignored here) or be terminated (the caller checks the lease's limits).
    v8::TryCatch inner(isolate);
    if (!exception.IsEmpty() && exception->IsObject()) {
      v8::Local<v8::Object> obj = exception.As<v8::Object>();
      v8::Local<v8::Value> c;
      // Private symbols bypass Proxy traps and getters.
      if (obj->GetPrivate(context, code_key).ToLocal(&c) && c->IsInt32()) {
        tag = c.As<v8::Int32>()->Value();
        thrown_by_txfn = true;
      }
      text = WithoutInternalFrames(StringProperty(isolate, obj, "stack", kMaxJsMessageBytes));
      // txfn's own errors are Errors only to be thrown: the status code says
      // what they are, and "INVALID_ARGUMENT: Error: ..." says it twice.
      constexpr std::string_view kErrorPrefix = "Error: ";
      if (thrown_by_txfn && text.starts_with(kErrorPrefix)) {
        text.erase(0, kErrorPrefix.size());
      }
    }
    if (text.empty() && !exception.IsEmpty()) {
      text = DescribeValue(isolate, exception, kMaxJsMessageBytes);
      if (exception->IsString()) text = text.substr(1, text.size() - 2);  // unquoted
    }
    if (!thrown_by_txfn) app_error = DescribeAppError(isolate, exception);
    // A thrown plain object or array (not an Error, so without a stack) says what its
    // AppError's message says: its JSON (it said "[object Object]").
    if (app_error.has_value() && !exception.IsEmpty() && !exception->IsNativeError() &&
        (app_error->data.is_object() || app_error->data.is_array())) {
      text = app_error->message;
    }
  }
  if (!message.IsEmpty()) {
    v8::Local<v8::Value> resource = message->GetScriptResourceName();
    std::string name =
        resource->IsString() ? Utf8Prefix(isolate, resource.As<v8::String>(), kQuoteBytes) : "";
    int line = message->GetLineNumber(context).FromMaybe(0);
    std::string where = StrCat(name, ":", line);
    if (!name.empty() && !name.starts_with(kInternalScriptPrefix) &&
        text.find(where) == std::string::npos) {
      text = StrCat(where, ": ", text);
    }
  }
  if (absl::IsUnknown(FromErrorTag(tag, ""))) text = StrCat("Uncaught ", text);
  absl::Status status = FromErrorTag(tag, what.empty() ? text : StrCat(what, ": ", text));
  if (app_error.has_value()) status = WithAppError(std::move(status), *app_error);
  return status;
}

absl::Status CaughtStatus(v8::Isolate* isolate, v8::Local<v8::Private> code_key, v8::TryCatch& tc,
                          std::string_view what) {
  return ExceptionStatus(isolate, code_key, tc.Exception(), tc.Message(), what);
}

absl::Status RejectionStatus(v8::Isolate* isolate, v8::Local<v8::Private> code_key,
                             v8::Local<v8::Value> reason) {
  v8::Local<v8::Message> message = v8::Exception::CreateMessage(isolate, reason);
  return ExceptionStatus(isolate, code_key, reason, message, "");
}

absl::Status LeaseLimitError(std::string_view limit, std::string_view who,
                             std::string_view detail) {
  // Not a limit of the function's: its caller stopped waiting (IsolateLease::StopAt).
  if (limit == "deadline") {
    return absl::DeadlineExceededError(StrCat(who, " passed its deadline", detail));
  }
  absl::Status status =
      absl::ResourceExhaustedError(StrCat(who, " exceeded its ", limit, " limit", detail));
  // The lease names its limits for people ("cpu time"); the payload is the
  // stable name.
  for (Limit which : {Limit::kCpuTime, Limit::kWallTime, Limit::kHeap}) {
    std::string spaced(LimitName(which));
    std::replace(spaced.begin(), spaced.end(), '_', ' ');
    if (spaced == limit) return WithLimit(std::move(status), which);
  }
  return status;
}

std::optional<absl::Status> LimitStatus(const IsolateLease& lease, std::string_view who) {
  if (!lease.limit_exceeded()) return std::nullopt;
  return LeaseLimitError(lease.exceeded_limit(), who, "");
}

std::optional<absl::Status> TerminationStatus(v8::Isolate* isolate, const v8::TryCatch& tc,
                                              const IsolateLease& lease, std::string_view who) {
  if (!tc.HasTerminated() && !isolate->IsExecutionTerminating()) return std::nullopt;
  isolate->CancelTerminateExecution();
  if (std::optional<absl::Status> limit = LimitStatus(lease, who)) return limit;
  return absl::CancelledError("JavaScript execution was terminated");
}

}  // namespace txfn::internal

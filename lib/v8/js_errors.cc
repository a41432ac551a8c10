#include "lib/v8/js_errors.h"

#include <string>

#include "lib/v8/js_strings.h"
#include "txfn/internal/strings.h"
#include "v8-exception.h"
#include "v8-object.h"
#include "v8-primitive.h"

namespace txfn::internal {

absl::Status ExceptionStatus(v8::Isolate* isolate, v8::Local<v8::Private> code_key,
                             v8::Local<v8::Value> exception, v8::Local<v8::Message> message,
                             std::string_view what) {
  v8::Local<v8::Context> context = isolate->GetCurrentContext();
  absl::StatusCode code = absl::StatusCode::kUnknown;
  std::string text;
  {
    // A stack getter or Error.prepareStackTrace is tenant code: it may throw
    // (ignored here) or be terminated (the caller checks the lease's limits).
    v8::TryCatch inner(isolate);
    if (!exception.IsEmpty() && exception->IsObject()) {
      v8::Local<v8::Object> obj = exception.As<v8::Object>();
      v8::Local<v8::Value> c;
      // Private symbols bypass Proxy traps and getters.
      if (obj->GetPrivate(context, code_key).ToLocal(&c) && c->IsInt32()) {
        code = static_cast<absl::StatusCode>(c.As<v8::Int32>()->Value());
      }
      v8::Local<v8::Value> stack;
      if (!isolate->IsExecutionTerminating() &&
          obj->Get(context, MessageString(isolate, "stack")).ToLocal(&stack) && stack->IsString()) {
        text = Utf8Prefix(isolate, stack.As<v8::String>(), kMaxJsMessageBytes);
      }
    }
    if (text.empty() && !exception.IsEmpty()) {
      text = DescribeValue(isolate, exception, kMaxJsMessageBytes);
      if (exception->IsString()) text = text.substr(1, text.size() - 2);  // unquoted
    }
  }
  if (!message.IsEmpty()) {
    v8::Local<v8::Value> resource = message->GetScriptResourceName();
    std::string name =
        resource->IsString() ? Utf8Prefix(isolate, resource.As<v8::String>(), kQuoteBytes) : "";
    int line = message->GetLineNumber(context).FromMaybe(0);
    std::string where = StrCat(name, ":", line);
    if (!name.empty() && text.find(where) == std::string::npos) text = StrCat(where, ": ", text);
  }
  if (code == absl::StatusCode::kOk) code = absl::StatusCode::kUnknown;
  if (code == absl::StatusCode::kUnknown) text = StrCat("Uncaught ", text);
  return absl::Status(code, what.empty() ? text : StrCat(what, ": ", text));
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

std::optional<absl::Status> LimitStatus(const IsolateLease& lease, std::string_view who) {
  if (!lease.limit_exceeded()) return std::nullopt;
  return absl::ResourceExhaustedError(
      StrCat(who, " exceeded its ", lease.exceeded_limit(), " limit"));
}

std::optional<absl::Status> TerminationStatus(v8::Isolate* isolate, const v8::TryCatch& tc,
                                              const IsolateLease& lease, std::string_view who) {
  if (!tc.HasTerminated() && !isolate->IsExecutionTerminating()) return std::nullopt;
  isolate->CancelTerminateExecution();
  if (std::optional<absl::Status> limit = LimitStatus(lease, who)) return limit;
  return absl::CancelledError("JavaScript execution was terminated");
}

}  // namespace txfn::internal

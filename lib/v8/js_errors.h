// lib/v8/js_errors.h — JavaScript exceptions and terminations as absl::Status.
//
// A tenant controls what it throws: any value, an Error with a `stack`
// getter or an Error.prepareStackTrace hook, a string of hundreds of MiB.
// The mapping runs with the request still under its CPU and wall-clock
// limits (user code in a getter may run, and may be terminated), reads at most
// kMaxJsMessageBytes of text, and never calls toString on a thrown value.
//
// Thread safety: on the isolate's thread, with a context entered.
#ifndef TXFN_LIB_V8_JS_ERRORS_H_
#define TXFN_LIB_V8_JS_ERRORS_H_

#include <cstdint>
#include <optional>
#include <string_view>

#include "absl/status/status.h"
#include "txfn/isolate_scheduler.h"
#include "v8-context.h"
#include "v8-exception.h"
#include "v8-local-handle.h"
#include "v8-message.h"
#include "v8-primitive.h"

namespace txfn::internal {

// What an Error made by txfn carries under its code key (IsolateRuntime::Throw): the status
// code and, for a limit's error, which limit (txfn/errors.h; a status payload would not survive
// the throw). FromErrorTag is its inverse; an int that is no tag gives Unknown.
[[nodiscard]] int32_t ErrorTag(const absl::Status& status);
[[nodiscard]] absl::Status FromErrorTag(int32_t tag, std::string_view message);

// ResourceExhausted `message` naming Limit::kSandbox: one of the runtime's fixed per-request
// bounds (txfn/errors.h), which the same call meets again.
[[nodiscard]] absl::Status SandboxLimitError(std::string_view message);

// The status for a thrown `exception` (with its `message`, may be empty): the
// code (and limit) an Error made by txfn carries under `code_key` (a ctx.db error keeps
// them), else Unknown prefixed "Uncaught "; the text is the JS stack, or
// the value's side-effect-free rendering, with "module.js:line" when known.
absl::Status ExceptionStatus(v8::Isolate* isolate, v8::Local<v8::Private> code_key,
                             v8::Local<v8::Value> exception, v8::Local<v8::Message> message,
                             std::string_view what);

// The same for what `tc` caught.
absl::Status CaughtStatus(v8::Isolate* isolate, v8::Local<v8::Private> code_key, v8::TryCatch& tc,
                          std::string_view what);

// The status for a rejected promise's reason.
absl::Status RejectionStatus(v8::Isolate* isolate, v8::Local<v8::Private> code_key,
                             v8::Local<v8::Value> reason);

// ResourceExhausted "<who> exceeded its <limit> limit<detail>" for a limit an
// IsolateLease names (IsolateLease::exceeded_limit), with the Limit payload
// (txfn/errors.h) when the name is one of the scheduler's; for "deadline"
// (IsolateLease::StopAt) DeadlineExceeded "<who> passed its deadline<detail>".
absl::Status LeaseLimitError(std::string_view limit, std::string_view who, std::string_view detail);

// The status of a request that the scheduler stopped at one of its limits:
// ResourceExhausted "<who> exceeded its <limit> limit". nullopt when no limit
// of `lease` was hit.
std::optional<absl::Status> LimitStatus(const IsolateLease& lease, std::string_view who);

// If `isolate`'s execution is being terminated: cancels the termination and
// returns LimitStatus, or Cancelled when no limit was hit (the host stopped
// it). nullopt if nothing was terminated.
std::optional<absl::Status> TerminationStatus(v8::Isolate* isolate, const v8::TryCatch& tc,
                                              const IsolateLease& lease, std::string_view who);

}  // namespace txfn::internal

#endif  // TXFN_LIB_V8_JS_ERRORS_H_

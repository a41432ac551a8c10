// txfn/errors.h — errors as data: what a caller can branch on without reading
// an error message.
//
// Every txfn error is an absl::Status whose code says what kind of failure it
// is; where a caller needs more than the code, the status carries a typed
// payload (absl::Status::GetPayload under a type URL of type.txfn.dev) and a
// function here or in the header named below reads it. Messages are for
// people: they may change between versions, payloads do not.
//
//   absl::StatusOr<txfn::CallResult> r = engine->Mutation("acme", "bank:transfer", args);
//   if (!r.ok()) {
//     if (std::optional<txfn::AppError> app = txfn::GetAppError(r.status())) {
//       // The function threw; app->data is what it attached (e.g. {code: "NO_FUNDS"}).
//     } else if (std::optional<txfn::Limit> limit = txfn::ExceededLimit(r.status())) {
//       // ResourceExhausted: *limit says which one (cpu time, heap, documents read...).
//     }
//     for (const txfn::LogEntry& log : txfn::FailedCallLogs(r.status())) { ... }
//   }
//
// The payloads, and where their readers are declared:
// | what                                   | code               | reader                        |
// |----------------------------------------|--------------------|-------------------------------|
// | the function threw (its own error)     | Unknown            | GetAppError (here)            |
// | a limit was exceeded, which one        | ResourceExhausted  | ExceededLimit (here)          |
// | console output of a call that failed   | any                | FailedCallLogs (here)         |
// | OCC conflict: the read a write hit,    | Aborted            | ConflictingRead,              |
// | its table and document                 |                    | ConflictingTarget (committer.h)|
// | the commit may or may not have happened| Unavailable        | IsCommitOutcomeUnknown,       |
// |                                        |                    | CommitOutcomeUnknownTimestamp |
// |                                        |                    | (storage.h)                   |
// | another process owns the tenant        | FailedPrecondition | IsTenantOwnedElsewhere        |
// | (PostgreSQL leases): nothing written   | or Unavailable     | (storage.h)                   |
// | another process deleted the tenant     | NotFound           | IsTenantDeletedElsewhere      |
// | this one had open: nothing written     |                    | (storage.h)                   |
// | called as a query, declared a mutation | InvalidArgument    | DeclaredKind                  |
// | (or the reverse)                       |                    | (function_runner.h)           |
// | back-pressure: retry after a time      | ResourceExhausted  | RetryAfter (submitter.h)      |
//
// A runtime failure (txfn refused an argument, a ctx.db call failed, a limit
// stopped the call, the host cancelled it) never carries an AppError payload;
// an exception the function's own code threw (or a promise it rejected)
// always does, with code Unknown and the message "Uncaught <stack>".
//
// Thread safety: plain functions of their arguments; any thread.
#ifndef TXFN_ERRORS_H_
#define TXFN_ERRORS_H_

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "txfn/value.h"

namespace txfn {

// `status` with "<prefix>: " before its message; the code and every payload
// kept (rebuilding a status from code and message would drop them). OK stays OK.
[[nodiscard]] absl::Status Prefixed(const absl::Status& status, std::string_view prefix);

// ---- Limits --------------------------------------------------------------------

// The limits a call can exceed. Each is ResourceExhausted with this payload.
enum class Limit {
  kCpuTime,            // IsolateScheduler's per-request CPU time
  kWallTime,           // IsolateScheduler's per-request wall-clock time
  kHeap,               // the isolate's V8 heap
  kArrayBufferMemory,  // the isolate's ArrayBuffer backing stores
  kValueSize,          // FunctionRunnerOptions::max_value_bytes (result, ctx.db values;
                       // arguments past it are InvalidArgument, the caller's input)
  kDocumentsRead,      // TransactionLimits::max_documents_read
  kBytesRead,          // TransactionLimits::max_bytes_read
  kDocumentsWritten,   // TransactionLimits::max_documents_written
  kBytesWritten,       // TransactionLimits::max_bytes_written
  kReadRanges,         // TransactionLimits::max_read_ranges
  // One of the runtime's fixed bounds on what one request may do, deterministic (the same
  // call meets it again): builtins V8 cannot interrupt ("... exceeds the sandbox limit of N"),
  // the ICU memory of Intl objects, regular expressions V8 compiles uninterrupted, the calls
  // one function may schedule.
  kSandbox,
};

// The payload's type URL; its value is LimitName(limit).
inline constexpr std::string_view kLimitTypeUrl = "type.txfn.dev/txfn.Limit";

// A stable name: "cpu_time", "wall_time", "heap", "array_buffer_memory",
// "value_size", "documents_read", "bytes_read", "documents_written",
// "bytes_written", "read_ranges", "sandbox".
[[nodiscard]] std::string_view LimitName(Limit limit);

// `status` (expected ResourceExhausted) with the payload naming `limit`.
[[nodiscard]] absl::Status WithLimit(absl::Status status, Limit limit);

// Which limit a ResourceExhausted `status` names; nullopt for any other status
// (including ResourceExhausted without the payload, e.g. a storage quota).
[[nodiscard]] std::optional<Limit> ExceededLimit(const absl::Status& status);

// ---- The function's own errors ------------------------------------------------

// What the function's code threw, as data. Like Convex's ConvexError, a
// function attaches data a caller can branch on by throwing an Error with a
// `data` property holding a plain value (or by throwing a plain value):
//
//   const e = new Error("insufficient funds"); e.data = {code: "NO_FUNDS", balance: 3n};
//   throw e;
struct AppError {
  // The Error's name ("Error", "TypeError", ...); empty if a non-Error was thrown.
  std::string name;
  // The Error's message (without the stack), at most a few KiB; for a thrown
  // non-Error value, its short rendering.
  std::string message;
  // The Error's own `data` property, or the thrown value itself if it was not
  // an Error; null when absent or not convertible to a Value (a function, a
  // cycle, larger than the value size limit).
  Value data;
  friend bool operator==(const AppError&, const AppError&) = default;
};

inline constexpr std::string_view kAppErrorTypeUrl = "type.txfn.dev/txfn.AppError";

// `status` with `error` attached (binary Value encoding).
[[nodiscard]] absl::Status WithAppError(absl::Status status, const AppError& error);

// The error the function threw if `status` is one; nullopt for a runtime
// failure or any other status.
[[nodiscard]] std::optional<AppError> GetAppError(const absl::Status& status);

// ---- Console output of failed calls ----------------------------------------------

enum class LogLevel { kDebug, kLog, kInfo, kWarn, kError };

// "debug", "log", "info", "warn" or "error".
[[nodiscard]] std::string_view LogLevelName(LogLevel level);

// One console.* call of a function (or a "[logs truncated]" marker).
struct LogEntry {
  LogLevel level = LogLevel::kLog;
  std::string message;  // the arguments, formatted and joined by spaces
  friend bool operator==(const LogEntry&, const LogEntry&) = default;
};

inline constexpr std::string_view kLogsTypeUrl = "type.txfn.dev/txfn.Logs";

// `status` (not OK) with `logs` attached; `status` unchanged if `logs` is
// empty or `status` is OK.
[[nodiscard]] absl::Status WithLogs(absl::Status status, const std::vector<LogEntry>& logs);

// The console output a failed call produced before it failed (the engine and
// the function runner attach it); empty if none or not attached.
[[nodiscard]] std::vector<LogEntry> FailedCallLogs(const absl::Status& status);

}  // namespace txfn

#endif  // TXFN_ERRORS_H_

#include "txfn/errors.h"

#include <array>
#include <string>
#include <utility>

#include "absl/strings/cord.h"
#include "txfn/internal/strings.h"

namespace txfn {
namespace {

constexpr std::array<std::pair<Limit, std::string_view>, 11> kLimitNames = {{
    {Limit::kCpuTime, "cpu_time"},
    {Limit::kWallTime, "wall_time"},
    {Limit::kHeap, "heap"},
    {Limit::kArrayBufferMemory, "array_buffer_memory"},
    {Limit::kValueSize, "value_size"},
    {Limit::kDocumentsRead, "documents_read"},
    {Limit::kBytesRead, "bytes_read"},
    {Limit::kDocumentsWritten, "documents_written"},
    {Limit::kBytesWritten, "bytes_written"},
    {Limit::kReadRanges, "read_ranges"},
    {Limit::kSandbox, "sandbox"},
}};

constexpr std::array<std::pair<LogLevel, std::string_view>, 5> kLogLevelNames = {{
    {LogLevel::kDebug, "debug"},
    {LogLevel::kLog, "log"},
    {LogLevel::kInfo, "info"},
    {LogLevel::kWarn, "warn"},
    {LogLevel::kError, "error"},
}};

// The payload under `type_url` decoded as a binary Value; nullopt if absent
// or malformed (a payload is data from wherever the status came from).
std::optional<Value> ValuePayload(const absl::Status& status, std::string_view type_url) {
  absl::optional<absl::Cord> payload = status.GetPayload(internal::ToAbsl(type_url));
  if (!payload.has_value()) return std::nullopt;
  absl::StatusOr<Value> decoded = DecodeBinary(std::string(*payload));
  if (!decoded.ok()) return std::nullopt;
  return *std::move(decoded);
}

const std::string* StringField(const Value& object, std::string_view name) {
  const Value* field = object.Find(name);
  return field != nullptr && field->is_string() ? &field->string() : nullptr;
}

}  // namespace

absl::Status Prefixed(const absl::Status& status, std::string_view prefix) {
  if (status.ok()) return status;
  absl::Status prefixed(status.code(), internal::StrCat(prefix, ": ", status.message()));
  status.ForEachPayload([&prefixed](absl::string_view type_url, const absl::Cord& payload) {
    prefixed.SetPayload(type_url, payload);
  });
  return prefixed;
}

std::string_view LimitName(Limit limit) {
  for (const auto& [value, name] : kLimitNames) {
    if (value == limit) return name;
  }
  return "unknown";
}

absl::Status WithLimit(absl::Status status, Limit limit) {
  if (status.ok()) return status;
  status.SetPayload(internal::ToAbsl(kLimitTypeUrl),
                    absl::Cord(internal::ToAbsl(LimitName(limit))));
  return status;
}

std::optional<Limit> ExceededLimit(const absl::Status& status) {
  if (!absl::IsResourceExhausted(status)) return std::nullopt;
  absl::optional<absl::Cord> payload = status.GetPayload(internal::ToAbsl(kLimitTypeUrl));
  if (!payload.has_value()) return std::nullopt;
  for (const auto& [value, name] : kLimitNames) {
    if (*payload == internal::ToAbsl(name)) return value;
  }
  return std::nullopt;
}

absl::Status WithAppError(absl::Status status, const AppError& error) {
  if (status.ok()) return status;
  const Value encoded = Value::FromObject({{"name", Value::String(error.name)},
                                           {"message", Value::String(error.message)},
                                           {"data", error.data}});
  status.SetPayload(internal::ToAbsl(kAppErrorTypeUrl), absl::Cord(EncodeBinary(encoded)));
  return status;
}

std::optional<AppError> GetAppError(const absl::Status& status) {
  std::optional<Value> decoded = ValuePayload(status, kAppErrorTypeUrl);
  if (!decoded.has_value() || !decoded->is_object()) return std::nullopt;
  const std::string* name = StringField(*decoded, "name");
  const std::string* message = StringField(*decoded, "message");
  const Value* data = decoded->Find("data");
  if (name == nullptr || message == nullptr || data == nullptr) return std::nullopt;
  return AppError{.name = *name, .message = *message, .data = *data};
}

std::string_view LogLevelName(LogLevel level) {
  for (const auto& [value, name] : kLogLevelNames) {
    if (value == level) return name;
  }
  return "log";
}

absl::Status WithLogs(absl::Status status, const std::vector<LogEntry>& logs) {
  if (status.ok() || logs.empty()) return status;
  Value::Array entries;
  entries.reserve(logs.size());
  for (const LogEntry& log : logs) {
    entries.push_back(Value::FromArray(
        {Value::String(std::string(LogLevelName(log.level))), Value::String(log.message)}));
  }
  status.SetPayload(internal::ToAbsl(kLogsTypeUrl),
                    absl::Cord(EncodeBinary(Value::FromArray(std::move(entries)))));
  return status;
}

std::vector<LogEntry> FailedCallLogs(const absl::Status& status) {
  std::vector<LogEntry> logs;
  std::optional<Value> decoded = ValuePayload(status, kLogsTypeUrl);
  if (!decoded.has_value() || !decoded->is_array()) return logs;
  for (const Value& entry : decoded->array()) {
    if (!entry.is_array() || entry.array().size() != 2 || !entry.array()[0].is_string() ||
        !entry.array()[1].is_string()) {
      continue;
    }
    LogEntry log{.message = entry.array()[1].string()};
    for (const auto& [value, name] : kLogLevelNames) {
      if (entry.array()[0].string() == name) log.level = value;
    }
    logs.push_back(std::move(log));
  }
  return logs;
}

}  // namespace txfn

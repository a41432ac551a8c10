// Idempotency keys (txfn/idempotency.h).
#include "txfn/idempotency.h"

#include <optional>
#include <string>
#include <utility>

#include "txfn/internal/strings.h"
#include "txfn/status_macros.h"

namespace txfn {

absl::Status ValidateIdempotencyKey(std::string_view key) {
  if (key.empty() || key.size() > kMaxIdempotencyKeyBytes) {
    return absl::InvalidArgumentError(internal::StrCat(
        "an idempotency key must have 1..", kMaxIdempotencyKeyBytes, " bytes, not ", key.size()));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::optional<IdempotentResult>> FindIdempotencyKey(const Snapshot& snapshot,
                                                                   std::string_view key) {
  TXFN_RETURN_IF_ERROR(ValidateIdempotencyKey(key));
  TXFN_ASSIGN_OR_RETURN(std::optional<IndexEntry> entry, snapshot.Get(kIdempotencyIndex, key));
  if (!entry.has_value()) return std::nullopt;
  absl::StatusOr<Value> value = DecodeBinary(entry->value);
  if (!value.ok()) {
    return absl::DataLossError(internal::StrCat("tenant '", snapshot.tenant(),
                                                "': the result stored for an idempotency key "
                                                "does not decode: ",
                                                value.status().message()));
  }
  return IdempotentResult{.value = *std::move(value), .ts = entry->ts};
}

absl::Status AddIdempotencyKey(std::string_view key, const Value& result, PreparedCommit* commit) {
  TXFN_RETURN_IF_ERROR(ValidateIdempotencyKey(key));
  if (!commit->writes.empty() && commit->writes.back().index == kIdempotencyIndex) {
    return absl::InvalidArgumentError("the commit already records an idempotency key");
  }
  commit->reads.push_back({.index = kIdempotencyIndex, .range = KeyRange::Point(key)});
  commit->writes.push_back(
      {.index = kIdempotencyIndex, .key = std::string(key), .value = EncodeBinary(result)});
  return absl::OkStatus();
}

}  // namespace txfn

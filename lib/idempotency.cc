// Idempotency keys (txfn/idempotency.h).
#include "txfn/idempotency.h"

#include <optional>
#include <string>
#include <utility>

#include "txfn/internal/strings.h"
#include "txfn/status_macros.h"

namespace txfn {
namespace {

// The first byte of an entry that holds a call digest before the result: no Value's binary
// encoding starts with it (a type tag's low four bits are 0..7).
constexpr char kWithDigest = '\xff';
constexpr size_t kMaxCallDigestBytes = 255;

}  // namespace

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
  std::string_view stored = entry->value;
  std::string call_digest;
  if (!stored.empty() && stored[0] == kWithDigest) {
    const size_t length = stored.size() > 1 ? static_cast<unsigned char>(stored[1]) : 0;
    if (stored.size() < 2 + length) {
      return absl::DataLossError(internal::StrCat("tenant '", snapshot.tenant(),
                                                  "': the record of an idempotency key is cut "
                                                  "short (",
                                                  stored.size(), " bytes)"));
    }
    call_digest = std::string(stored.substr(2, length));
    stored.remove_prefix(2 + length);
  }
  absl::StatusOr<Value> value = DecodeBinary(stored);
  if (!value.ok()) {
    return absl::DataLossError(internal::StrCat("tenant '", snapshot.tenant(),
                                                "': the result stored for an idempotency key "
                                                "does not decode: ",
                                                value.status().message()));
  }
  return IdempotentResult{
      .value = *std::move(value), .ts = entry->ts, .call_digest = std::move(call_digest)};
}

absl::Status AddIdempotencyKey(std::string_view key, const Value& result, PreparedCommit* commit,
                               std::string_view call_digest) {
  TXFN_RETURN_IF_ERROR(ValidateIdempotencyKey(key));
  if (call_digest.size() > kMaxCallDigestBytes) {
    return absl::InvalidArgumentError(
        internal::StrCat("an idempotency key's call digest has at most ", kMaxCallDigestBytes,
                         " bytes, not ", call_digest.size()));
  }
  if (!commit->writes.empty() && commit->writes.back().index == kIdempotencyIndex) {
    return absl::InvalidArgumentError("the commit already records an idempotency key");
  }
  std::string stored;
  if (!call_digest.empty()) {
    stored.push_back(kWithDigest);
    stored.push_back(static_cast<char>(call_digest.size()));
    stored.append(call_digest);
  }
  stored.append(EncodeBinary(result));
  commit->reads.push_back({.index = kIdempotencyIndex, .range = KeyRange::Point(key)});
  commit->writes.push_back(
      {.index = kIdempotencyIndex, .key = std::string(key), .value = std::move(stored)});
  return absl::OkStatus();
}

}  // namespace txfn

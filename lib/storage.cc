// KeyRange helpers and the stateless Write checks of txfn/storage.h.
#include "txfn/storage.h"

#include <algorithm>
#include <optional>
#include <ostream>
#include <string>
#include <string_view>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/cord.h"
#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/types/optional.h"
#include "fmt/core.h"
#include "txfn/internal/strings.h"

namespace txfn {
namespace {

// The immediate successor of `key` in bytewise order.
std::string Successor(std::string_view key) {
  std::string next(key);
  next.push_back('\0');
  return next;
}

}  // namespace

std::optional<std::string> PrefixSuccessor(std::string_view prefix) {
  std::string next(prefix);
  while (!next.empty()) {
    unsigned char last = static_cast<unsigned char>(next.back());
    if (last != 0xff) {
      next.back() = static_cast<char>(last + 1);
      return next;
    }
    next.pop_back();
  }
  return std::nullopt;
}

KeyRange KeyRange::Point(std::string_view key) { return {std::string(key), Successor(key)}; }

KeyRange KeyRange::Prefix(std::string_view prefix) {
  return {std::string(prefix), PrefixSuccessor(prefix)};
}

KeyRange KeyRange::Closed(std::string_view lo, std::string_view hi) {
  return {std::string(lo), Successor(hi)};
}

KeyRange KeyRange::HalfOpen(std::string_view lo, std::string_view hi) {
  return {std::string(lo), std::string(hi)};
}

KeyRange KeyRange::After(std::string_view lo) { return {Successor(lo), std::nullopt}; }

bool KeyRange::Contains(std::string_view key) const {
  return key >= start && (!end.has_value() || key < *end);
}

bool KeyRange::IsEmpty() const { return end.has_value() && *end <= start; }

absl::Status ValidateCommitRecord(const CommitRecord& commit) {
  if (commit.tenant.empty()) {
    return absl::InvalidArgumentError(
        fmt::format("Storage::Write: commit at ts {} has an empty tenant name", commit.ts));
  }
  const auto& writes = commit.writes;
  auto duplicate = [&](const IndexWrite& w) {
    return absl::InvalidArgumentError(fmt::format(
        "Storage::Write: commit of tenant '{}' at ts {} writes (index {}, key \"{}\") twice",
        commit.tenant, commit.ts, w.index, absl::CHexEscape(internal::ToAbsl(w.key))));
  };
  if (writes.size() <= 8) {
    for (size_t i = 0; i < writes.size(); ++i) {
      for (size_t j = i + 1; j < writes.size(); ++j) {
        if (writes[i].index == writes[j].index && writes[i].key == writes[j].key) {
          return duplicate(writes[i]);
        }
      }
    }
    return absl::OkStatus();
  }
  absl::flat_hash_set<std::pair<IndexId, absl::string_view>> seen;
  seen.reserve(writes.size());
  for (const IndexWrite& w : writes) {
    if (!seen.emplace(w.index, internal::ToAbsl(w.key)).second) return duplicate(w);
  }
  return absl::OkStatus();
}

absl::StatusOr<absl::InlinedVector<TenantBatch, 2>> ValidateCommitBatch(
    absl::Span<const CommitRecord> commits) {
  absl::InlinedVector<TenantBatch, 2> tenants;
  for (const CommitRecord& commit : commits) {
    if (absl::Status s = ValidateCommitRecord(commit); !s.ok()) return s;
    auto it = std::lower_bound(
        tenants.begin(), tenants.end(), commit.tenant,
        [](const TenantBatch& t, std::string_view name) { return t.tenant < name; });
    if (it == tenants.end() || it->tenant != commit.tenant) {
      tenants.insert(it, TenantBatch{commit.tenant, commit.ts, commit.ts, commit.previous_ts});
      continue;
    }
    if (commit.ts <= it->last_ts) {
      return absl::InvalidArgumentError(
          fmt::format("Storage::Write: timestamps of tenant '{}' are not strictly increasing "
                      "within the batch: {} after {}",
                      commit.tenant, commit.ts, it->last_ts));
    }
    it->last_ts = commit.ts;
  }
  return tenants;
}

absl::Status CommitOutcomeUnknownError(std::string_view message, Timestamp ts) {
  absl::Status status = absl::UnavailableError(internal::ToAbsl(message));
  status.SetPayload(internal::ToAbsl(kCommitOutcomeUnknownTypeUrl),
                    absl::Cord(ts == 0 ? std::string() : std::to_string(ts)));
  return status;
}

bool IsCommitOutcomeUnknown(const absl::Status& status) {
  return status.GetPayload(internal::ToAbsl(kCommitOutcomeUnknownTypeUrl)).has_value();
}

namespace {
constexpr std::string_view kStaleWriterTypeUrl = "type.txfn.dev/txfn.StaleWriter";
constexpr std::string_view kOwnedElsewhereTypeUrl = "type.txfn.dev/txfn.TenantOwnedElsewhere";
constexpr std::string_view kDeletedElsewhereTypeUrl = "type.txfn.dev/txfn.TenantDeletedElsewhere";
}  // namespace

absl::Status TenantDeletedElsewhereError(std::string_view message) {
  absl::Status status = absl::NotFoundError(internal::ToAbsl(message));
  status.SetPayload(internal::ToAbsl(kDeletedElsewhereTypeUrl), absl::Cord());
  return status;
}

bool IsTenantDeletedElsewhere(const absl::Status& status) {
  return status.GetPayload(internal::ToAbsl(kDeletedElsewhereTypeUrl)).has_value();
}

absl::Status TenantOwnedElsewhereError(std::string_view message, absl::StatusCode code) {
  absl::Status status(code, internal::ToAbsl(message));
  status.SetPayload(internal::ToAbsl(kOwnedElsewhereTypeUrl), absl::Cord());
  return status;
}

bool IsTenantOwnedElsewhere(const absl::Status& status) {
  return status.GetPayload(internal::ToAbsl(kOwnedElsewhereTypeUrl)).has_value();
}

absl::Status StaleWriterError(std::string_view message, Timestamp newest) {
  absl::Status status = absl::FailedPreconditionError(internal::ToAbsl(message));
  status.SetPayload(internal::ToAbsl(kStaleWriterTypeUrl), absl::Cord(std::to_string(newest)));
  return status;
}

bool IsStaleWriter(const absl::Status& status) {
  return status.GetPayload(internal::ToAbsl(kStaleWriterTypeUrl)).has_value();
}

namespace {
// The nonzero timestamp `status` carries as its `type_url` payload, if any.
std::optional<Timestamp> TimestampPayload(const absl::Status& status, std::string_view type_url) {
  absl::optional<absl::Cord> payload = status.GetPayload(internal::ToAbsl(type_url));
  Timestamp ts = 0;
  if (!payload.has_value() || !absl::SimpleAtoi(std::string(*payload), &ts) || ts == 0) {
    return std::nullopt;
  }
  return ts;
}
}  // namespace

std::optional<Timestamp> StaleWriterNewest(const absl::Status& status) {
  return TimestampPayload(status, kStaleWriterTypeUrl);
}

std::optional<Timestamp> CommitOutcomeUnknownTimestamp(const absl::Status& status) {
  return TimestampPayload(status, kCommitOutcomeUnknownTypeUrl);
}

absl::Status CheckTenantBatchAgainstNewest(std::string_view storage, const TenantBatch& batch,
                                           Timestamp newest) {
  // Another writer of the tenant (another process, or another committer on this storage)
  // committed after this writer's committer last looked: its conflict checks missed that.
  // First: those commits may also be at or after this batch's timestamps (the other writer's
  // clock ran ahead), which is not the caller's mistake but the same stale writer.
  if (batch.previous_ts.has_value() && newest > *batch.previous_ts) {
    return StaleWriterError(
        fmt::format("{}: tenant '{}' has commits up to ts {} that this writer had not seen (it "
                    "knew of ts {}): another writer committed them; nothing of this Write was "
                    "written",
                    storage, batch.tenant, newest, *batch.previous_ts),
        newest);
  }
  // The writer knew storage held a commit at previous_ts; storage's newest is older: that
  // history is gone (deleted, perhaps created again since). Writing would bring the tenant
  // back from a writer whose state is of the deleted one.
  if (batch.previous_ts.has_value() && newest < *batch.previous_ts) {
    return TenantDeletedElsewhereError(
        fmt::format("{}: tenant '{}' was deleted since this writer's commit at ts {} (its newest "
                    "commit now: {}); nothing of this Write was written",
                    storage, batch.tenant, *batch.previous_ts, newest));
  }
  if (batch.first_ts <= newest) {
    return absl::InvalidArgumentError(
        fmt::format("Storage::Write: commit of tenant '{}' at ts {} is not after its newest "
                    "committed timestamp {}",
                    batch.tenant, batch.first_ts, newest));
  }
  return absl::OkStatus();
}

absl::Status ReadBelowRetentionError(std::string_view what, std::string_view tenant, Timestamp ts,
                                     Timestamp horizon) {
  return absl::FailedPreconditionError(
      fmt::format("{} of tenant '{}' at timestamp {} is older than its retention horizon {}: "
                  "the versions it needs were garbage-collected (version retention); read at a "
                  "newer snapshot",
                  what, tenant, ts, horizon));
}

absl::StatusOr<RetentionResult> Storage::ApplyRetention(std::string_view tenant, Timestamp /*ts*/,
                                                        size_t /*max_commits*/) {
  return absl::UnimplementedError(fmt::format(
      "this Storage adapter keeps every version (no ApplyRetention); tenant '{}'", tenant));
}

namespace {
// "bytes", C-escaped (keys and values are binary).
std::string Quoted(std::string_view bytes) {
  return internal::StrCat("\"", absl::CHexEscape(internal::ToAbsl(bytes)), "\"");
}
}  // namespace

std::ostream& operator<<(std::ostream& os, const KeyRange& r) {
  return os << "[" << Quoted(r.start) << ", " << (r.end ? Quoted(*r.end) : "<no end>") << ")";
}

std::ostream& operator<<(std::ostream& os, const IndexWrite& w) {
  return os << "{index=" << w.index << " key=" << Quoted(w.key)
            << " value=" << (w.value ? Quoted(*w.value) : "<tombstone>") << "}";
}

std::ostream& operator<<(std::ostream& os, const CommitRecord& c) {
  os << "{tenant=" << Quoted(c.tenant) << " ts=" << c.ts << " writes=[";
  for (size_t i = 0; i < c.writes.size(); ++i) os << (i == 0 ? "" : ", ") << c.writes[i];
  return os << "]}";
}

std::ostream& operator<<(std::ostream& os, const IndexEntry& e) {
  return os << "{key=" << Quoted(e.key) << " value=" << Quoted(e.value) << " ts=" << e.ts << "}";
}

std::ostream& operator<<(std::ostream& os, ScanOrder order) {
  return os << (order == ScanOrder::kAscending ? "ascending" : "descending");
}

std::ostream& operator<<(std::ostream& os, const RetentionResult& r) {
  return os << "{horizon=" << r.horizon << " versions_dropped=" << r.versions_dropped
            << " commits_dropped=" << r.commits_dropped << " done=" << (r.done ? "true" : "false")
            << "}";
}

}  // namespace txfn

// Deleting expired entries of tenants' reserved indexes; see lib/reserved_prune.h.
#include "lib/reserved_prune.h"

#include <algorithm>
#include <iterator>
#include <memory>
#include <optional>
#include <utility>

#include "txfn/retry.h"
#include "txfn/snapshot.h"
#include "txfn/status_macros.h"
#include "txfn/transaction.h"

namespace txfn::internal {

absl::StatusOr<std::vector<IndexEntry>> ScanNewest(Storage& storage, const std::string& tenant,
                                                   IndexId index, const KeyRange& range,
                                                   size_t limit) {
  TXFN_ASSIGN_OR_RETURN(Timestamp ts, storage.MaxCommittedTimestamp(tenant));
  return storage.Scan(tenant, index, range, ts, ScanOrder::kAscending, limit);
}

absl::Status PruneReservedIndex(TenantCommitters& tenants, const std::string& tenant, IndexId index,
                                absl::FunctionRef<bool(const IndexEntry&)> expired,
                                absl::FunctionRef<bool(const IndexEntry&)> still_expired,
                                absl::FunctionRef<bool()> stop, uint64_t* deleted, size_t page) {
  page = std::max<size_t>(page, 1);
  std::shared_ptr<OpenTenant> open;  // opened at the first expired entry
  Storage& storage = *tenants.storage();
  KeyRange from = KeyRange::All();
  while (!stop()) {
    TXFN_ASSIGN_OR_RETURN(std::vector<IndexEntry> entries,
                          ScanNewest(storage, tenant, index, from, page));
    if (entries.empty()) return absl::OkStatus();
    from = KeyRange::After(entries.back().key);
    const bool last_page = entries.size() < page;
    std::vector<std::string> keys;
    for (IndexEntry& e : entries) {
      if (expired(e)) keys.push_back(std::move(e.key));
    }
    if (!keys.empty()) {
      if (open == nullptr) {
        TXFN_ASSIGN_OR_RETURN(open, tenants.Get(tenant));
      }
      // Each page gives an unheld tenant back at once. (If the serving engine takes it between
      // two pages, the next page is refused and the pass ends here; the next pass tries again.)
      uint64_t deleted_here = 0;
      const auto delete_expired = [&](Transaction& txn) -> absl::Status {
        deleted_here = 0;
        for (const std::string& key : keys) {
          // Read through the transaction (a racing writer of the key conflicts), then for the
          // commit timestamp.
          TXFN_ASSIGN_OR_RETURN(std::optional<std::string> value, txn.GetReserved(index, key));
          if (!value.has_value()) continue;
          TXFN_ASSIGN_OR_RETURN(std::optional<IndexEntry> now, txn.snapshot().Get(index, key));
          if (!now.has_value() || !still_expired(*now)) continue;
          TXFN_RETURN_IF_ERROR(txn.PutReserved(index, key, std::nullopt));
          ++deleted_here;
        }
        return absl::OkStatus();
      };
      absl::Status committed;
      {
        const UnheldTenantWrite unheld(storage, tenant);
        committed =
            open->CommitSystemTransaction(delete_expired, RetryOptions{.max_attempts = 4}).status();
      }
      TXFN_RETURN_IF_ERROR(committed);
      *deleted += deleted_here;
    }
    if (last_page) return absl::OkStatus();
  }
  return absl::OkStatus();
}

std::vector<std::string> TenantPass::Next(Storage& storage, absl::Time now, bool may_start) {
  if (may_start && left_.empty() && start_.Due(now)) {
    if (absl::StatusOr<std::vector<std::string>> all = storage.ListTenants(); all.ok()) {
      left_ = *std::move(all);
    }
  }
  const size_t n = std::min(left_.size(), slice_);
  std::vector<std::string> slice(std::make_move_iterator(left_.end() - n),
                                 std::make_move_iterator(left_.end()));
  left_.resize(left_.size() - n);
  return slice;
}

}  // namespace txfn::internal

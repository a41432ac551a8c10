// lib/reserved_prune.h — deleting the expired entries of tenants' reserved indexes (the records
// of ended calls, idempotency keys) in passes over every tenant. Internal to txfn.
//
// Each would otherwise grow with every call a tenant ever made. A pass reads a tenant's index
// straight from storage, a page at a time (a tenant with millions of entries costs one page of
// memory; one with none costs two reads and never opens its committer), and deletes each page's
// expired entries in one system transaction that reads each of them again: an entry a racing
// writer replaced (a new call with the same key) conflicts or is seen as it is now, and stays
// unless it too is expired.
//
// Thread safety: PruneReservedIndex is as thread-safe as the TenantCommitters it is given;
// a TenantPass belongs to one thread.
#ifndef TXFN_LIB_RESERVED_PRUNE_H_
#define TXFN_LIB_RESERVED_PRUNE_H_

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "txfn/clock.h"
#include "txfn/storage.h"
#include "txfn/tenant_committers.h"

namespace txfn::internal {

// A system write (a pruning page, deleting outbox entries) to a tenant this instance may not
// hold: writing takes it (PostgresStorage: its lease, for lease_duration), and the engine
// serving the tenant would be refused its mutations that long. Made before the write, it notes
// whether the tenant was held (Storage::HoldsTenant: no I/O); if not, its destructor gives the
// tenant back (Storage::ReleaseTenant; a failure only leaves the lease to run out). If one of
// this instance's own calls committed meanwhile, its next write takes the tenant again.
class UnheldTenantWrite {
 public:
  UnheldTenantWrite(Storage& storage, std::string tenant)
      : storage_(storage), tenant_(std::move(tenant)), give_back_(!storage.HoldsTenant(tenant_)) {}
  ~UnheldTenantWrite() {
    if (give_back_) (void)storage_.ReleaseTenant(tenant_);
  }
  UnheldTenantWrite(const UnheldTenantWrite&) = delete;
  UnheldTenantWrite& operator=(const UnheldTenantWrite&) = delete;

 private:
  Storage& storage_;
  const std::string tenant_;
  const bool give_back_;
};

// The live entries of one of `tenant`'s reserved indexes at its newest commit, straight from
// storage (opening every tenant's committer to look would cost each one a metadata load, and
// most have nothing there): at most `limit` (0: all) from `range`, in key order.
[[nodiscard]] absl::StatusOr<std::vector<IndexEntry>> ScanNewest(Storage& storage,
                                                                 const std::string& tenant,
                                                                 IndexId index,
                                                                 const KeyRange& range = {},
                                                                 size_t limit = 0);

// Deletes the entries of `tenant`'s reserved `index` that are expired: `expired` says so of an
// entry the scan found (it may do I/O, e.g. ask the queue), and `still_expired` must say so
// again of the entry the deleting transaction reads (value and commit timestamp as they are
// at its snapshot; it may run more than once, on a conflict). `page` entries are read, and at
// most that many deleted, per step. Adds to `*deleted` what it deleted. On an error (storage, a
// transaction that kept conflicting, a tenant deleted meanwhile) it stops: what it deleted
// stays deleted, and the caller's next pass tries again. It also stops, OK, between two pages
// once `stop` says so (an engine closing: a tenant with millions of entries takes thousands
// of pages). Each page's write is an UnheldTenantWrite: a tenant this instance did not hold (a
// PostgreSQL lease nobody held, or its own that may have run out) is given back after it, so
// the engine serving it is refused its mutations for at most that write.
[[nodiscard]] absl::Status PruneReservedIndex(
    TenantCommitters& tenants, const std::string& tenant, IndexId index,
    absl::FunctionRef<bool(const IndexEntry&)> expired,
    absl::FunctionRef<bool(const IndexEntry&)> still_expired, absl::FunctionRef<bool()> stop,
    uint64_t* deleted, size_t page = 512);

// A pass over every tenant started every `every` (while `may_start`), the first one at most a
// minute after `now` (so that a process restarted more often than `every` still makes passes),
// handed out a slice of `slice` tenants per call of Next, so that a loop with other work is not
// stalled by 10,000 tenants.
class TenantPass {
 public:
  TenantPass(absl::Duration every, size_t slice, absl::Time now)
      : slice_(slice), start_(now + std::min(every, absl::Minutes(1)), every) {}

  // This round's tenants (none, mostly): the rest of a pass under way, or a new pass's first.
  [[nodiscard]] std::vector<std::string> Next(Storage& storage, absl::Time now, bool may_start);

  // Whether a pass is under way (tenants are left for the next calls).
  [[nodiscard]] bool under_way() const { return !left_.empty(); }
  // When the next pass starts (for a loop's wait), as PeriodicTimer::NextRun.
  [[nodiscard]] absl::Time NextStart(absl::Time now) { return start_.NextRun(now); }

 private:
  const size_t slice_;
  PeriodicTimer start_;            // of the next pass
  std::vector<std::string> left_;  // the tenants of the pass under way not yet handled
};

}  // namespace txfn::internal

#endif  // TXFN_LIB_RESERVED_PRUNE_H_

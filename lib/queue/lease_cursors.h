// lib/queue/lease_cursors.h — where a lease that skips tenants may start
// (internal, used by SqliteQueue).
//
// A lease walks due calls in (due, seq) order. When it skips tenants (those
// whose share the scheduler already holds), every poll would walk past the
// same backlog of theirs again: a tenant with 500,000 due calls made each
// poll of the other tenants' calls step over 500,000 rows. A cursor records
// how far a lease got: "every row before (due, seq) that matches this filter
// (shard, quota class, functions) and is not of one of these skipped tenants
// has been leased or dead-lettered". A later lease with the same filter that
// skips at least those tenants starts there, so it walks only what came due
// since.
//
// The claim stays true only while no row is written with a due time at or
// before the cursor: the owner calls ForgetFrom(due) for every write (an
// enqueue of a call due in the past, a NACK or release with a past retry_at,
// an extension or lease with an odd clock, a redrive), and Clear() when another
// connection may have written the file. Rows whose lease expires need
// nothing: a lease made before the cursor was saved was seen by it, and one
// made after has its expiry past the cursor or calls ForgetFrom.
//
// Thread safety: none; the owner serialises access (SqliteQueue::mu_).
#ifndef TXFN_LIB_QUEUE_LEASE_CURSORS_H_
#define TXFN_LIB_QUEUE_LEASE_CURSORS_H_

#include <algorithm>
#include <compare>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_set.h"

namespace txfn::internal {

// A row's place in lease order.
struct DueSeq {
  int64_t due = std::numeric_limits<int64_t>::min();
  int64_t seq = std::numeric_limits<int64_t>::min();
  friend auto operator<=>(const DueSeq&, const DueSeq&) = default;
};

// What a lease asks for, apart from the tenants it skips.
struct LeaseFilterKey {
  int shard = 0;
  int quota = -1;                      // a QuotaClass, or -1 for both
  std::vector<std::string> functions;  // sorted, unique; empty: all
  friend bool operator==(const LeaseFilterKey&, const LeaseFilterKey&) = default;
};

class LeaseCursors {
 public:
  // At most this many cursors are kept (the least recently saved go first):
  // a scheduler leases with a few filters, and its skip list changes slowly.
  static constexpr size_t kMaxCursors = 32;

  // The furthest cursor of `key` whose skipped tenants are all in `skips`.
  std::optional<DueSeq> Find(const LeaseFilterKey& key,
                             const absl::flat_hash_set<std::string>& skips) const {
    std::optional<DueSeq> best;
    for (const Cursor& c : cursors_) {
      if (!(c.key == key) || (best.has_value() && c.at <= *best)) continue;
      if (std::all_of(c.skips.begin(), c.skips.end(),
                      [&](const std::string& t) { return skips.contains(t); })) {
        best = c.at;
      }
    }
    return best;
  }

  // Records that every row of `key` before `at` not of a tenant in `skips`
  // has been leased or dead-lettered. Replaces the cursor of the same key
  // and skips.
  void Save(const LeaseFilterKey& key, std::vector<std::string> skips, DueSeq at) {
    std::sort(skips.begin(), skips.end());
    skips.erase(std::unique(skips.begin(), skips.end()), skips.end());
    auto same = std::find_if(cursors_.begin(), cursors_.end(),
                             [&](const Cursor& c) { return c.key == key && c.skips == skips; });
    if (same != cursors_.end()) cursors_.erase(same);
    if (cursors_.size() >= kMaxCursors) cursors_.erase(cursors_.begin());
    cursors_.push_back({key, std::move(skips), at});
  }

  // A row was written due at `due`: cursors at or past it no longer hold.
  void ForgetFrom(int64_t due) {
    std::erase_if(cursors_, [&](const Cursor& c) { return c.at.due >= due; });
  }

  void Clear() { cursors_.clear(); }
  size_t size() const { return cursors_.size(); }

 private:
  struct Cursor {
    LeaseFilterKey key;
    std::vector<std::string> skips;  // sorted, unique
    DueSeq at;
  };
  std::vector<Cursor> cursors_;  // oldest first
};

}  // namespace txfn::internal

#endif  // TXFN_LIB_QUEUE_LEASE_CURSORS_H_

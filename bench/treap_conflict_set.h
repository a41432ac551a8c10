// bench/treap_conflict_set.h — the treap ConflictSet txfn used before the
// B+tree of txfn/conflict_set.h, kept only as a benchmark baseline
// (bench/conflict_bench.cc). Same contract as txfn::ConflictSet.
//
// Design: one treap keyed by (index id, key bytes) whose nodes carry the
// maximum timestamp of their subtree; nodes in an arena addressed by 32-bit
// indices; a FIFO of (ts, node) drives pruning.
//
// Thread safety: none (like ConflictSet).
#ifndef TXFN_BENCH_TREAP_CONFLICT_SET_H_
#define TXFN_BENCH_TREAP_CONFLICT_SET_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/types/span.h"
#include "lib/conflict_set.h"
#include "txfn/storage.h"

namespace txfn {

// The recent write history of one tenant's committer, for OCC validation.
// Not thread-safe: owned by one committer, used by its commit leader only.
// Movable (a moved-from TreapConflictSet is empty with horizon 0), not copyable.
class TreapConflictSet {
 public:
  TreapConflictSet();
  ~TreapConflictSet();
  TreapConflictSet(TreapConflictSet&& other) noexcept;
  TreapConflictSet& operator=(TreapConflictSet&& other) noexcept;
  TreapConflictSet(const TreapConflictSet&) = delete;
  TreapConflictSet& operator=(const TreapConflictSet&) = delete;

  // Records that a commit at `ts` wrote (index, key). Preconditions (assert):
  // calls come in nondecreasing `ts` order, and ts > horizon() (so ts > 0).
  // Re-adding a key moves its timestamp up. Any key bytes are allowed,
  // including the empty key and embedded '\0'.
  void Add(IndexId index, std::string_view key, Timestamp ts);

  // The newest timestamp recorded for any key of `index` in `range`; 0 if no
  // key of the range is held (an empty range always gives 0).
  [[nodiscard]] Timestamp MaxWriteTimestamp(IndexId index, const KeyRange& range) const;

  // Whether any read range contains a key written at a ts > `after`. Stops at
  // the first conflicting range. Precondition (assert): after >= horizon() —
  // below the horizon the forgotten writes could hide a conflict, so the
  // caller must reject such a transaction (FailedPrecondition) instead.
  [[nodiscard]] bool Conflicts(absl::Span<const ReadRange> reads, Timestamp after) const;

  // Forgets every write with ts <= `ts` (called as the window slides). After
  // it, horizon() == max(horizon(), ts): a caller may only validate begin
  // timestamps >= horizon(). A key re-added after ts stays, with its newer ts.
  void PruneThrough(Timestamp ts);

  // The newest timestamp pruned through so far; 0 initially.
  [[nodiscard]] Timestamp horizon() const { return horizon_; }

  // The number of distinct (index, key) pairs currently held.
  [[nodiscard]] size_t size() const { return size_; }

 private:
  static constexpr uint32_t kNil = UINT32_MAX;

  // Hot part of a treap node: everything a query touches, 32 bytes. `prefix`
  // is the index id (high 32 bits) and the first 4 key bytes, zero-padded,
  // big-endian: comparing prefixes orders nodes except on ties, which fall
  // back to the full key in keys_.
  struct Node {
    uint64_t prefix;
    Timestamp max;  // max ts in this node's subtree
    Timestamp ts;   // 0 marks a free node
    uint32_t left;
    uint32_t right;
  };
  // One Add that created or raised a node's ts, in insertion order.
  struct LogEntry {
    Timestamp ts;
    uint32_t node;
  };
  struct Bound;

  uint32_t NewNode(IndexId index, std::string_view key, Timestamp ts);
  // Negative, zero or positive as node `n` orders before, equal to or after `b`.
  int CompareNode(uint32_t n, const Bound& b) const;
  // The node holding exactly `b`, or kNil.
  uint32_t Find(const Bound& b) const;
  void Erase(uint32_t node);
  Timestamp SubtreeMax(uint32_t n) const { return n == kNil ? 0 : nodes_[n].max; }
  void Pull(uint32_t n);
  // The composite bounds of (index, range); false if the range is empty.
  // `bounded` false: no upper bound (the last index, unbounded end).
  static bool MakeBounds(IndexId index, const KeyRange& range, Bound& lo, Bound& hi, bool& bounded);
  // max(floor, the max ts over nodes in [lo, hi)) (hi == nullptr: unbounded
  // above). Skips subtrees whose max cannot raise the result; with stop_early
  // it may return any value > floor as soon as it finds one.
  Timestamp RangeMax(const Bound& lo, const Bound* hi, Timestamp floor, bool stop_early) const;
  // RangeMax's second half, from the topmost node inside [lo, hi).
  Timestamp FromFork(uint32_t fork, const Bound& lo, const Bound* hi, Timestamp floor,
                     bool stop_early) const;
  uint32_t NextPriority();

  std::vector<Node> nodes_;
  std::vector<std::string> keys_;     // per node (cold): the key bytes
  std::vector<uint32_t> priorities_;  // per node (cold): treap heap priority
  std::vector<uint32_t> free_;        // free node slots
  std::vector<LogEntry> log_;         // FIFO; live entries start at log_head_
  size_t log_head_ = 0;
  uint32_t root_ = kNil;
  size_t size_ = 0;
  Timestamp horizon_ = 0;
  Timestamp last_ts_ = 0;
  uint64_t rng_ = 0;               // splitmix64 state for priorities
  std::vector<uint32_t> scratch_;  // Add/Erase: nodes whose max must be recomputed
};

}  // namespace txfn

#endif  // TXFN_BENCH_TREAP_CONFLICT_SET_H_

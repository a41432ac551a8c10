// txfn/conflict_set.h — the committer's OCC conflict window.
//
// A ConflictSet remembers, for every (index, key) written by a recent commit,
// the newest commit timestamp that wrote it, and answers "did any commit after
// ts T write a key inside this range?" in O(log n) per range, however long the
// history (FoundationDB's ConflictSet idea). The committer validates each
// transaction's read set against it, then records the transaction's writes.
//
//   txfn::ConflictSet window;
//   window.Add(/*index=*/1, "alice", /*ts=*/10);
//   window.Add(/*index=*/1, "bob", /*ts=*/11);
//   std::vector<txfn::ReadRange> reads = {{.index = 1, .range = txfn::KeyRange::Prefix("a")}};
//   window.Conflicts(reads, /*after=*/9);    // true: "alice" was written at 10 > 9
//   window.Conflicts(reads, /*after=*/10);   // false
//   window.PruneThrough(10);                 // forgets "alice"; horizon() == 10
//
// Design: one treap keyed by (index id, key bytes) — the composite order is
// that of the 4-byte big-endian index id followed by the key, so one structure
// holds every index — whose nodes carry the maximum timestamp of their
// subtree. A range query walks two root-to-leaf paths. Nodes live in an arena
// addressed by 32-bit indices; a FIFO of (ts, node) in insertion order drives
// pruning. Costs: Add O(log n) expected, MaxWriteTimestamp O(log n) expected,
// Conflicts O(ranges * log n), PruneThrough O(log n) per forgotten write.
//
// Thread safety: none. A ConflictSet is owned by one committer and used by its
// commit leader only; it must not be touched by two threads at once.
#ifndef TXFN_CONFLICT_SET_H_
#define TXFN_CONFLICT_SET_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/types/span.h"
#include "txfn/storage.h"

namespace txfn {

// One range a transaction read: keys of `index` within `range`. A point read
// is a one-key range (KeyRange::Point), so a later insert of that key — a
// phantom — conflicts too.
struct ReadRange {
  IndexId index = 0;
  KeyRange range;
  friend bool operator==(const ReadRange&, const ReadRange&) = default;
};

// The recent write history of one tenant's committer, for OCC validation.
// Not thread-safe: owned by one committer, used by its commit leader only.
// Movable (a moved-from ConflictSet is empty with horizon 0), not copyable.
class ConflictSet {
 public:
  ConflictSet();
  ~ConflictSet();
  ConflictSet(ConflictSet&& other) noexcept;
  ConflictSet& operator=(ConflictSet&& other) noexcept;
  ConflictSet(const ConflictSet&) = delete;
  ConflictSet& operator=(const ConflictSet&) = delete;

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

#endif  // TXFN_CONFLICT_SET_H_

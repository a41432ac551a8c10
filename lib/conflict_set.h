// lib/conflict_set.h — the committer's OCC conflict window (internal: not
// installed; its node layout is the committer's business).
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
// Design: one B+tree keyed by (index id, key bytes) — the composite order is
// that of the 4-byte big-endian index id followed by the key, so one structure
// holds every index. Inner nodes keep, per child, the maximum timestamp below
// it, so a range query descends only along its two boundary paths (about four
// nodes for millions of keys) and reads the children strictly between them off
// their parent. Keys sit in the nodes as a 16-byte big-endian inline prefix
// (index id + first 12 key bytes) that decides almost every comparison; the
// full key bytes live in a slot table consulted on prefix ties. A FIFO of
// (ts, slot) in insertion order drives pruning. Costs: Add O(log n),
// MaxWriteTimestamp O(log n), Conflicts O(ranges * log n), PruneThrough
// O(log n) per forgotten write.
//
// Thread safety: none. A ConflictSet is owned by one committer and used by its
// commit leader only; it must not be touched by two threads at once.
#ifndef TXFN_LIB_CONFLICT_SET_H_
#define TXFN_LIB_CONFLICT_SET_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/types/span.h"
#include "txfn/storage.h"
#include "txfn/transaction.h"

namespace txfn {

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
  // Fanouts, chosen so a node's inline-prefix arrays span few cache lines.
  static constexpr int kLeafCap = 32;
  static constexpr int kInnerCap = 32;
  // Height bound (path arrays are this long). The tree grows a level only
  // when its root splits, and a node splits only when full; a node made by a
  // split starts half full, so each new level takes >= 16x the splits of the
  // one below: reaching height 32 would take more than 2^100 Adds.
  static constexpr int kMaxHeight = 32;

  // A position in the composite order. (p0, p1) is the inline prefix: the
  // index id (high 32 bits of p0) then the first 12 key bytes, zero-padded,
  // big-endian. Prefixes order keys except on ties, which the full key
  // bytes (`key`) decide; equal p0 implies equal index ids.
  struct Bound {
    uint64_t p0;
    uint64_t p1;
    std::string_view key;
  };
  // A leaf: `count` keys in order, structure of arrays. slot[i] names the
  // key's entry in slots_.
  struct Leaf {
    uint32_t count;
    uint64_t p0[kLeafCap];
    uint64_t p1[kLeafCap];
    Timestamp ts[kLeafCap];
    uint32_t slot[kLeafCap];  // last: a search needs it only on prefix ties
  };
  // An inner node with `count` children. Child i holds the keys k with
  // sep(i) <= k < sep(i + 1), where sep(i) is (p0[i], p1[i], slot[i]) for
  // 1 <= i < count; entry 0 has no separator (bounded by the parent's).
  // max[i] is the exact maximum timestamp in child i's subtree.
  struct Inner {
    uint32_t count;
    uint64_t p0[kInnerCap];
    uint64_t p1[kInnerCap];
    Timestamp max[kInnerCap];
    uint32_t child[kInnerCap];
    uint32_t slot[kInnerCap];  // last: a search needs it only on prefix ties
  };
  // The full key bytes of one leaf key (ts > 0) or separator (ts == 0).
  struct Slot {
    std::string key;
    IndexId index = 0;
    Timestamp ts = 0;  // the key's current ts; 0 for a separator or free slot
  };
  // One Add that created or raised a key's ts, in insertion order.
  struct LogEntry {
    Timestamp ts;
    uint32_t slot;
  };
  // One step of a root-to-leaf path: inner node `node`, its child `pos`.
  struct Step {
    uint32_t node;
    int pos;
  };

  static Bound MakeBound(IndexId index, std::string_view key);
  template <typename NodeT>
  int Compare(const NodeT& node, int i, const Bound& b) const;
  // The first i in [from, node.count) whose key is >= b (LowerBound) or > b
  // (UpperBound); node.count if none.
  template <typename NodeT>
  int LowerBound(const NodeT& node, int from, const Bound& b) const;
  template <typename NodeT>
  int UpperBound(const NodeT& node, int from, const Bound& b) const;
  // LowerBound for a bound usually close to `from`: checks `from` first.
  template <typename NodeT>
  int LowerBoundNear(const NodeT& node, int from, const Bound& b) const;
  // Prefetches what a query (whole: an update) of node `n` at `level`
  // (0 = leaf) reads.
  void PrefetchNode(uint32_t n, int level, bool whole) const;
  // The leaf whose range holds `b`; fills path[0, height_) root first.
  uint32_t Descend(const Bound& b, Step* path) const;

  uint32_t NewSlot(IndexId index, std::string_view key, Timestamp ts);
  void FreeSlot(uint32_t slot);
  uint32_t NewLeaf();
  uint32_t NewInner();
  // Inserts a new key before position `pos` of `leaf` (reached by `path`),
  // splitting nodes up the path as needed.
  void InsertIntoLeaf(uint32_t leaf, int pos, const Bound& b, Timestamp ts, uint32_t slot,
                      const Step* path);
  // Inserts (separator, child, max) as entry `pos` of path[depth].node,
  // splitting upwards as needed. The separator is (p0, p1, sep_slot).
  void InsertIntoInner(int depth, int pos, uint64_t p0, uint64_t p1, uint32_t sep_slot,
                       uint32_t child, Timestamp max, const Step* path);
  // Removes the key held by `slot` from the tree and frees the slot.
  void Erase(uint32_t slot);
  // max(floor, the max ts over keys of node `n` (at `level`, 0 = leaf) in
  // [lo, hi)); lo/hi == nullptr: unbounded on that side. Skips subtrees whose
  // max cannot raise the result; with stop_early it may return any value >
  // floor as soon as it finds one.
  Timestamp RangeMax(uint32_t n, int level, const Bound* lo, const Bound* hi, Timestamp floor,
                     bool stop_early) const;
  // The composite bounds of (index, range); false if the range is empty.
  // `bounded` false: no upper bound (the last index, unbounded end).
  static bool MakeBounds(IndexId index, const KeyRange& range, Bound& lo, Bound& hi, bool& bounded);
  void Swap(ConflictSet& other) noexcept;

  std::vector<Leaf> leaves_;
  std::vector<Inner> inners_;
  std::vector<Slot> slots_;
  std::vector<uint32_t> free_leaves_;
  std::vector<uint32_t> free_inners_;
  std::vector<uint32_t> free_slots_;
  std::vector<LogEntry> log_;  // FIFO; live entries start at log_head_
  size_t log_head_ = 0;
  uint32_t root_ = kNil;  // a leaf if height_ == 0
  int height_ = 0;        // inner levels above the leaves
  Timestamp root_max_ = 0;
  size_t size_ = 0;
  Timestamp horizon_ = 0;
  Timestamp last_ts_ = 0;
};

}  // namespace txfn

#endif  // TXFN_LIB_CONFLICT_SET_H_

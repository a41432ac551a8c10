// ConflictSet of txfn/conflict_set.h: a B+tree over (index id, key) whose
// inner nodes carry each child's max commit timestamp.
//
// Invariants (checked by the randomized tests in tests/conflict_set_test.cc):
// - Keys are strictly increasing across the leaves in tree order; inner
//   node separators partition their children's key ranges (see Inner).
// - Every node except the root has count >= 1 (empty nodes are removed at
//   once; nodes are never merged, so a node may be sparse), and the root is
//   an inner node only if it has >= 2 children.
// - Inner::max[i] == the max ts of child i's subtree, exactly, and root_max_
//   == the max ts of the whole tree (0 if empty).
// - Every key held has exactly one "live" log entry (the newest one naming its
//   slot, whose ts equals the slot's ts); any older entries naming the slot
//   carry a strictly smaller ts and precede it in the FIFO. So when
//   PruneThrough pops the live entry and frees the slot, no entry naming it
//   is left, and a reused slot can never be matched by a stale entry.
//   Separator slots have ts 0, which no log entry carries.
// - Adds come in nondecreasing ts order, so a new ts is >= every ts held: an
//   Add sets max = ts on its whole search path.
#include "lib/conflict_set.h"

#include <algorithm>
#include <array>
#include <cassert>
#include <cstdint>
#include <cstring>
#include <string_view>
#include <utility>

namespace txfn {

namespace {

// Big-endian load of up to 8 bytes of `key` from `offset`, zero-padded.
uint64_t LoadPrefix(std::string_view key, size_t offset) {
  if (key.size() >= offset + 8) {
    uint64_t v;
    std::memcpy(&v, key.data() + offset, 8);
    return __builtin_bswap64(v);
  }
  uint64_t v = 0;
  for (size_t i = offset; i < key.size(); ++i) {
    v |= static_cast<uint64_t>(static_cast<unsigned char>(key[i])) << (56 - 8 * (i - offset));
  }
  return v;
}

// Prefetches the cache lines of [begin, end), so their misses overlap
// instead of queueing behind each other in a binary search.
inline void PrefetchRange(const void* begin, const void* end) {
  const char* b = static_cast<const char*>(begin);
  const char* e = static_cast<const char*>(end);
  for (const char* c = b; c < e; c += 64) __builtin_prefetch(c);
  __builtin_prefetch(e - 1);
}

}  // namespace

ConflictSet::Bound ConflictSet::MakeBound(IndexId index, std::string_view key) {
  uint64_t p0 = static_cast<uint64_t>(index) << 32;
  if (key.size() >= 4) {
    uint32_t v;
    std::memcpy(&v, key.data(), 4);
    p0 |= __builtin_bswap32(v);
  } else {
    for (size_t i = 0; i < key.size(); ++i) {
      p0 |= static_cast<uint64_t>(static_cast<unsigned char>(key[i])) << (24 - 8 * i);
    }
  }
  return Bound{p0, key.size() > 4 ? LoadPrefix(key, 4) : 0, key};
}

ConflictSet::ConflictSet() = default;
ConflictSet::~ConflictSet() = default;

void ConflictSet::Swap(ConflictSet& other) noexcept {
  std::swap(leaves_, other.leaves_);
  std::swap(inners_, other.inners_);
  std::swap(slots_, other.slots_);
  std::swap(free_leaves_, other.free_leaves_);
  std::swap(free_inners_, other.free_inners_);
  std::swap(free_slots_, other.free_slots_);
  std::swap(log_, other.log_);
  std::swap(log_head_, other.log_head_);
  std::swap(root_, other.root_);
  std::swap(height_, other.height_);
  std::swap(root_max_, other.root_max_);
  std::swap(size_, other.size_);
  std::swap(horizon_, other.horizon_);
  std::swap(last_ts_, other.last_ts_);
}

ConflictSet::ConflictSet(ConflictSet&& other) noexcept { Swap(other); }

ConflictSet& ConflictSet::operator=(ConflictSet&& other) noexcept {
  if (this != &other) {
    ConflictSet moved(std::move(other));
    Swap(moved);
  }
  return *this;
}

template <typename NodeT>
int ConflictSet::Compare(const NodeT& node, int i, const Bound& b) const {
  if (node.p0[i] != b.p0) return node.p0[i] < b.p0 ? -1 : 1;
  if (node.p1[i] != b.p1) return node.p1[i] < b.p1 ? -1 : 1;
  // Same index and same first 12 key bytes, zero-padded: the full keys decide.
  return std::string_view(slots_[node.slot[i]].key).compare(b.key);
}

namespace {

// The first i in [from, count) with p0[i] >= key, or count. Branchless (the
// compiler emits conditional moves), so it costs no mispredictions.
inline int FirstNotLess(const uint64_t* p0, int from, int count, uint64_t key) {
  int base = from;
  int n = count - from;
  while (n > 1) {
    const int half = n / 2;
    base = p0[base + half - 1] < key ? base + half : base;
    n -= half;
  }
  return n == 1 && p0[base] < key ? base + 1 : base;
}

}  // namespace

template <typename NodeT>
int ConflictSet::LowerBound(const NodeT& node, int from, const Bound& b) const {
  const int count = static_cast<int>(node.count);
  int lo = FirstNotLess(node.p0, from, count, b.p0);
  if (lo == count || node.p0[lo] != b.p0) return lo;
  // A run of keys with b's p0 starts at lo: the rest of the key decides.
  int hi = count;
  while (lo < hi) {
    const int mid = (lo + hi) / 2;
    if (Compare(node, mid, b) < 0) {
      lo = mid + 1;
    } else {
      hi = mid;
    }
  }
  return lo;
}

template <typename NodeT>
int ConflictSet::UpperBound(const NodeT& node, int from, const Bound& b) const {
  const int count = static_cast<int>(node.count);
  int lo = FirstNotLess(node.p0, from, count, b.p0);
  if (lo == count || node.p0[lo] != b.p0) return lo;
  int hi = count;
  while (lo < hi) {
    const int mid = (lo + hi) / 2;
    if (Compare(node, mid, b) <= 0) {
      lo = mid + 1;
    } else {
      hi = mid;
    }
  }
  return lo;
}

void ConflictSet::PrefetchNode(uint32_t n, int level, bool whole) const {
  // A query reads the count and the p0 array, then one entry of the rest; an
  // update (Add/Erase) shifts every array but the key slots, which only
  // prefix ties read.
  if (level == 0) {
    const Leaf& leaf = leaves_[n];
    PrefetchRange(&leaf, whole ? static_cast<const void*>(&leaf.slot[0]) : &leaf.p1[0]);
  } else {
    const Inner& inner = inners_[n];
    PrefetchRange(&inner, whole ? static_cast<const void*>(&inner.slot[0]) : &inner.p1[0]);
  }
}

template <typename NodeT>
int ConflictSet::LowerBoundNear(const NodeT& node, int from, const Bound& b) const {
  if (from >= static_cast<int>(node.count) || Compare(node, from, b) >= 0) return from;
  return LowerBound(node, from + 1, b);
}

uint32_t ConflictSet::Descend(const Bound& b, Step* path) const {
  uint32_t n = root_;
  for (int depth = 0; depth < height_; ++depth) {
    const Inner& inner = inners_[n];
    const int pos = UpperBound(inner, 1, b) - 1;
    path[depth] = Step{n, pos};
    n = inner.child[pos];
    PrefetchNode(n, height_ - depth - 1, /*whole=*/true);
  }
  return n;
}

uint32_t ConflictSet::NewSlot(IndexId index, std::string_view key, Timestamp ts) {
  uint32_t s;
  if (!free_slots_.empty()) {
    s = free_slots_.back();
    free_slots_.pop_back();
  } else {
    assert(slots_.size() < kNil);
    s = static_cast<uint32_t>(slots_.size());
    slots_.emplace_back();
  }
  Slot& slot = slots_[s];
  slot.key.assign(key);  // a reused slot keeps its capacity: no allocation
  slot.index = index;
  slot.ts = ts;
  return s;
}

void ConflictSet::FreeSlot(uint32_t s) {
  slots_[s].ts = 0;
  free_slots_.push_back(s);
}

uint32_t ConflictSet::NewLeaf() {
  uint32_t n;
  if (!free_leaves_.empty()) {
    n = free_leaves_.back();
    free_leaves_.pop_back();
  } else {
    assert(leaves_.size() < kNil);
    n = static_cast<uint32_t>(leaves_.size());
    leaves_.emplace_back();
  }
  leaves_[n].count = 0;
  return n;
}

uint32_t ConflictSet::NewInner() {
  uint32_t n;
  if (!free_inners_.empty()) {
    n = free_inners_.back();
    free_inners_.pop_back();
  } else {
    assert(inners_.size() < kNil);
    n = static_cast<uint32_t>(inners_.size());
    inners_.emplace_back();
  }
  inners_[n].count = 0;
  return n;
}

void ConflictSet::Add(IndexId index, std::string_view key, Timestamp ts) {
  assert(ts >= last_ts_ && "ConflictSet::Add: timestamps must be nondecreasing");
  assert(ts > horizon_ && "ConflictSet::Add: ts must be above the pruning horizon");
  last_ts_ = ts;
  const Bound b = MakeBound(index, key);
  if (root_ == kNil) {
    if (slots_.capacity() == 0) {
      // A committer builds a small set per batch: skip the first regrowths.
      slots_.reserve(8);
      log_.reserve(8);
    }
    root_ = NewLeaf();
    height_ = 0;
  }
  Step path[kMaxHeight];
  const uint32_t n = Descend(b, path);
  // ts >= every ts held: it is the new max of every subtree on the path.
  for (int d = 0; d < height_; ++d) inners_[path[d].node].max[path[d].pos] = ts;
  root_max_ = ts;
  Leaf& leaf = leaves_[n];
  const int pos = LowerBound(leaf, 0, b);
  if (pos < static_cast<int>(leaf.count) && Compare(leaf, pos, b) == 0) {
    if (leaf.ts[pos] == ts) return;  // same commit wrote it twice: nothing changes
    leaf.ts[pos] = ts;
    slots_[leaf.slot[pos]].ts = ts;
    log_.push_back({ts, leaf.slot[pos]});
  } else {
    const uint32_t s = NewSlot(index, key, ts);
    log_.push_back({ts, s});
    InsertIntoLeaf(n, pos, b, ts, s, path);
    ++size_;
  }
}

void ConflictSet::InsertIntoLeaf(uint32_t n, int pos, const Bound& b, Timestamp ts, uint32_t slot,
                                 const Step* path) {
  {
    Leaf& leaf = leaves_[n];
    if (leaf.count < kLeafCap) {
      const int tail = static_cast<int>(leaf.count) - pos;
      std::memmove(&leaf.p0[pos + 1], &leaf.p0[pos], tail * sizeof(uint64_t));
      std::memmove(&leaf.p1[pos + 1], &leaf.p1[pos], tail * sizeof(uint64_t));
      std::memmove(&leaf.ts[pos + 1], &leaf.ts[pos], tail * sizeof(Timestamp));
      std::memmove(&leaf.slot[pos + 1], &leaf.slot[pos], tail * sizeof(uint32_t));
      leaf.p0[pos] = b.p0;
      leaf.p1[pos] = b.p1;
      leaf.ts[pos] = ts;
      leaf.slot[pos] = slot;
      ++leaf.count;
      return;
    }
  }
  // Split: the upper half moves to a new leaf `r`; the new key goes to its side.
  const uint32_t r = NewLeaf();  // may reallocate leaves_
  Leaf& left = leaves_[n];
  Leaf& right = leaves_[r];
  constexpr int kMid = kLeafCap / 2;
  const int moved = kLeafCap - kMid;
  std::memcpy(right.p0, &left.p0[kMid], moved * sizeof(uint64_t));
  std::memcpy(right.p1, &left.p1[kMid], moved * sizeof(uint64_t));
  std::memcpy(right.ts, &left.ts[kMid], moved * sizeof(Timestamp));
  std::memcpy(right.slot, &left.slot[kMid], moved * sizeof(uint32_t));
  right.count = moved;
  left.count = kMid;
  Leaf& target = pos <= kMid ? left : right;
  const int tpos = pos <= kMid ? pos : pos - kMid;
  {
    const int tail = static_cast<int>(target.count) - tpos;
    std::memmove(&target.p0[tpos + 1], &target.p0[tpos], tail * sizeof(uint64_t));
    std::memmove(&target.p1[tpos + 1], &target.p1[tpos], tail * sizeof(uint64_t));
    std::memmove(&target.ts[tpos + 1], &target.ts[tpos], tail * sizeof(Timestamp));
    std::memmove(&target.slot[tpos + 1], &target.slot[tpos], tail * sizeof(uint32_t));
    target.p0[tpos] = b.p0;
    target.p1[tpos] = b.p1;
    target.ts[tpos] = ts;
    target.slot[tpos] = slot;
    ++target.count;
  }
  const Timestamp left_max = *std::max_element(left.ts, left.ts + left.count);
  const Timestamp right_max = *std::max_element(right.ts, right.ts + right.count);
  // The separator is a copy of right's first key (that key may be pruned
  // while the separator stays).
  const uint64_t sep_p0 = right.p0[0];
  const uint64_t sep_p1 = right.p1[0];
  const uint32_t first = right.slot[0];
  const uint32_t sep = NewSlot(0, {}, 0);  // may reallocate slots_: copy the key after
  slots_[sep].index = slots_[first].index;
  slots_[sep].key = slots_[first].key;
  if (height_ == 0) {
    const uint32_t root = NewInner();
    Inner& inner = inners_[root];
    inner.count = 2;
    inner.child[0] = n;
    inner.max[0] = left_max;
    inner.slot[0] = kNil;
    inner.p0[0] = inner.p1[0] = 0;
    inner.child[1] = r;
    inner.max[1] = right_max;
    inner.p0[1] = sep_p0;
    inner.p1[1] = sep_p1;
    inner.slot[1] = sep;
    root_ = root;
    height_ = 1;
    return;
  }
  const int depth = height_ - 1;
  inners_[path[depth].node].max[path[depth].pos] = left_max;
  InsertIntoInner(depth, path[depth].pos + 1, sep_p0, sep_p1, sep, r, right_max, path);
}

void ConflictSet::InsertIntoInner(int depth, int pos, uint64_t p0, uint64_t p1, uint32_t sep_slot,
                                  uint32_t child, Timestamp max, const Step* path) {
  const uint32_t n = path[depth].node;
  auto insert_at = [](Inner& inner, int at, uint64_t q0, uint64_t q1, uint32_t s, uint32_t c,
                      Timestamp m) {
    const int tail = static_cast<int>(inner.count) - at;
    std::memmove(&inner.p0[at + 1], &inner.p0[at], tail * sizeof(uint64_t));
    std::memmove(&inner.p1[at + 1], &inner.p1[at], tail * sizeof(uint64_t));
    std::memmove(&inner.max[at + 1], &inner.max[at], tail * sizeof(Timestamp));
    std::memmove(&inner.child[at + 1], &inner.child[at], tail * sizeof(uint32_t));
    std::memmove(&inner.slot[at + 1], &inner.slot[at], tail * sizeof(uint32_t));
    inner.p0[at] = q0;
    inner.p1[at] = q1;
    inner.max[at] = m;
    inner.child[at] = c;
    inner.slot[at] = s;
    ++inner.count;
  };
  if (inners_[n].count < kInnerCap) {
    insert_at(inners_[n], pos, p0, p1, sep_slot, child, max);
    return;
  }
  // Split: children [kMid, kInnerCap) move to a new node `r`; the separator of
  // child kMid moves up to the parent as r's lower bound.
  const uint32_t r = NewInner();  // may reallocate inners_
  Inner& left = inners_[n];
  Inner& right = inners_[r];
  constexpr int kMid = kInnerCap / 2;
  const int moved = kInnerCap - kMid;
  std::memcpy(right.p0, &left.p0[kMid], moved * sizeof(uint64_t));
  std::memcpy(right.p1, &left.p1[kMid], moved * sizeof(uint64_t));
  std::memcpy(right.max, &left.max[kMid], moved * sizeof(Timestamp));
  std::memcpy(right.child, &left.child[kMid], moved * sizeof(uint32_t));
  std::memcpy(right.slot, &left.slot[kMid], moved * sizeof(uint32_t));
  right.count = moved;
  left.count = kMid;
  // The new entry goes after child pos - 1; pos == kMid means it follows
  // left's last child, which still works by appending to left.
  if (pos <= kMid) {
    insert_at(left, pos, p0, p1, sep_slot, child, max);
  } else {
    insert_at(right, pos - kMid, p0, p1, sep_slot, child, max);
  }
  const uint64_t up_p0 = right.p0[0];
  const uint64_t up_p1 = right.p1[0];
  const uint32_t up_slot = right.slot[0];
  right.slot[0] = kNil;
  right.p0[0] = right.p1[0] = 0;
  const Timestamp left_max = *std::max_element(left.max, left.max + left.count);
  const Timestamp right_max = *std::max_element(right.max, right.max + right.count);
  if (depth == 0) {
    assert(height_ + 1 < kMaxHeight);
    const uint32_t root = NewInner();
    Inner& inner = inners_[root];
    inner.count = 2;
    inner.child[0] = n;
    inner.max[0] = left_max;
    inner.slot[0] = kNil;
    inner.p0[0] = inner.p1[0] = 0;
    inner.child[1] = r;
    inner.max[1] = right_max;
    inner.p0[1] = up_p0;
    inner.p1[1] = up_p1;
    inner.slot[1] = up_slot;
    root_ = root;
    ++height_;
    return;
  }
  inners_[path[depth - 1].node].max[path[depth - 1].pos] = left_max;
  InsertIntoInner(depth - 1, path[depth - 1].pos + 1, up_p0, up_p1, up_slot, r, right_max, path);
}

void ConflictSet::Erase(uint32_t s) {
  const Bound b = MakeBound(slots_[s].index, slots_[s].key);
  Step path[kMaxHeight];
  const uint32_t n = Descend(b, path);
  Leaf& leaf = leaves_[n];
  const int pos = LowerBound(leaf, 0, b);
  assert(pos < static_cast<int>(leaf.count) && leaf.slot[pos] == s);
  const int tail = static_cast<int>(leaf.count) - pos - 1;
  std::memmove(&leaf.p0[pos], &leaf.p0[pos + 1], tail * sizeof(uint64_t));
  std::memmove(&leaf.p1[pos], &leaf.p1[pos + 1], tail * sizeof(uint64_t));
  std::memmove(&leaf.ts[pos], &leaf.ts[pos + 1], tail * sizeof(Timestamp));
  std::memmove(&leaf.slot[pos], &leaf.slot[pos + 1], tail * sizeof(uint32_t));
  --leaf.count;
  FreeSlot(s);
  --size_;

  // Walk up: `removed` says the node below was freed (so its entry goes);
  // otherwise `max` is its new subtree max. Stop once a max is unchanged.
  bool removed = leaf.count == 0;
  Timestamp max = removed ? 0 : *std::max_element(leaf.ts, leaf.ts + leaf.count);
  if (removed) free_leaves_.push_back(n);
  int depth = height_ - 1;
  for (; depth >= 0; --depth) {
    Inner& inner = inners_[path[depth].node];
    const int at = path[depth].pos;
    if (!removed) {
      if (inner.max[at] == max) return;  // nothing above changes
      inner.max[at] = max;
    } else {
      // Drop entry `at`. Entry 0 has no separator: if it goes, entry 1's
      // separator would become entry 0's, so that one is freed instead.
      const int drop_sep = at == 0 ? 1 : at;
      if (drop_sep < static_cast<int>(inner.count)) FreeSlot(inner.slot[drop_sep]);
      const int t = static_cast<int>(inner.count) - at - 1;
      std::memmove(&inner.p0[at], &inner.p0[at + 1], t * sizeof(uint64_t));
      std::memmove(&inner.p1[at], &inner.p1[at + 1], t * sizeof(uint64_t));
      std::memmove(&inner.max[at], &inner.max[at + 1], t * sizeof(Timestamp));
      std::memmove(&inner.child[at], &inner.child[at + 1], t * sizeof(uint32_t));
      std::memmove(&inner.slot[at], &inner.slot[at + 1], t * sizeof(uint32_t));
      --inner.count;
      if (at == 0 && inner.count > 0) {
        inner.slot[0] = kNil;
        inner.p0[0] = inner.p1[0] = 0;
      }
      if (inner.count == 0) {
        free_inners_.push_back(path[depth].node);
        continue;  // removed stays true
      }
      removed = false;
    }
    max = *std::max_element(inner.max, inner.max + inner.count);
  }
  // Reached the root: it changed (or went away).
  if (removed) {
    root_ = kNil;
    height_ = 0;
    root_max_ = 0;
    return;
  }
  root_max_ = max;
  // Collapse a root left with one child.
  while (height_ > 0 && inners_[root_].count == 1) {
    free_inners_.push_back(root_);
    root_ = inners_[root_].child[0];
    --height_;
  }
}

void ConflictSet::PruneThrough(Timestamp ts) {
  horizon_ = std::max(horizon_, ts);
  while (log_head_ < log_.size() && log_[log_head_].ts <= ts) {
    const LogEntry e = log_[log_head_++];
    if (slots_[e.slot].ts == e.ts) Erase(e.slot);  // else a stale entry: re-added later
  }
  if (log_head_ == log_.size()) {
    log_.clear();
    log_head_ = 0;
  } else if (log_head_ >= 1024 && log_head_ * 2 >= log_.size()) {
    log_.erase(log_.begin(), log_.begin() + static_cast<std::ptrdiff_t>(log_head_));
    log_head_ = 0;
  }
  if (size_ == 0 && !slots_.empty()) {  // give the memory back once the window is empty
    leaves_ = {};
    inners_ = {};
    slots_ = {};
    free_leaves_ = {};
    free_inners_ = {};
    free_slots_ = {};
    root_ = kNil;
    height_ = 0;
    root_max_ = 0;
  }
}

Timestamp ConflictSet::RangeMax(uint32_t n, int level, const Bound* lo, const Bound* hi,
                                Timestamp floor, bool stop_early) const {
  Timestamp result = floor;
  if (level == 0) {
    const Leaf& leaf = leaves_[n];
    const int count = static_cast<int>(leaf.count);
    int i = lo != nullptr ? LowerBound(leaf, 0, *lo) : 0;
    const int end = hi != nullptr ? LowerBoundNear(leaf, i, *hi) : count;
    for (; i < end; ++i) {
      if (leaf.ts[i] > result) {
        result = leaf.ts[i];
        if (stop_early) return result;
      }
    }
    return result;
  }
  const Inner& inner = inners_[n];
  const int first = lo != nullptr ? UpperBound(inner, 1, *lo) - 1 : 0;
  const int last =
      hi != nullptr ? LowerBoundNear(inner, first + 1, *hi) - 1 : static_cast<int>(inner.count) - 1;
  // Children strictly between the boundary children lie wholly inside.
  for (int i = first + 1; i < last; ++i) {
    if (inner.max[i] > result) {
      result = inner.max[i];
      if (stop_early) return result;
    }
  }
  if (first == last) {
    if (inner.max[first] > result) {
      PrefetchNode(inner.child[first], level - 1, /*whole=*/false);
      result = RangeMax(inner.child[first], level - 1, lo, hi, result, stop_early);
    }
    return result;
  }
  const bool left = inner.max[first] > result;
  const bool right = inner.max[last] > result;
  if (left) PrefetchNode(inner.child[first], level - 1, /*whole=*/false);
  if (right) PrefetchNode(inner.child[last], level - 1, /*whole=*/false);
  if (left) {
    result = RangeMax(inner.child[first], level - 1, lo, nullptr, result, stop_early);
    if (stop_early && result > floor) return result;
  }
  if (right && inner.max[last] > result) {
    result = RangeMax(inner.child[last], level - 1, nullptr, hi, result, stop_early);
  }
  return result;
}

bool ConflictSet::MakeBounds(IndexId index, const KeyRange& range, Bound& lo, Bound& hi,
                             bool& bounded) {
  if (range.IsEmpty()) return false;
  lo = MakeBound(index, range.start);
  bounded = true;
  if (range.end.has_value()) {
    hi = MakeBound(index, *range.end);
  } else if (index != UINT32_MAX) {
    // Unbounded above within the index: up to the first key of the next index.
    hi = MakeBound(index + 1, {});
  } else {
    bounded = false;  // the last index: unbounded above, period
  }
  return true;
}

Timestamp ConflictSet::MaxWriteTimestamp(IndexId index, const KeyRange& range) const {
  Bound lo{}, hi{};
  bool bounded = false;
  if (root_ == kNil || !MakeBounds(index, range, lo, hi, bounded)) return 0;
  return RangeMax(root_, height_, &lo, bounded ? &hi : nullptr, /*floor=*/0,
                  /*stop_early=*/false);
}

bool ConflictSet::Conflicts(absl::Span<const ReadRange> reads, Timestamp after) const {
  assert(after >= horizon_ && "ConflictSet::Conflicts: begin ts below the horizon");
  if (root_ == kNil || root_max_ <= after) return false;
  // Descend for up to kBatch ranges at once, one level per round, prefetching
  // each next node: the misses of independent searches overlap instead of
  // queueing behind each other (FoundationDB checks its ranges the same way).
  // A range whose boundary paths fork (it spans several children) or that
  // reaches its leaf finishes in RangeMax.
  constexpr size_t kBatch = 16;
  struct Probe {
    Bound lo;
    Bound hi;
    bool bounded;
    int level;
    uint32_t node;
  };
  std::array<Probe, kBatch> probes;
  for (size_t begin = 0; begin < reads.size(); begin += kBatch) {
    const size_t end = std::min(reads.size(), begin + kBatch);
    size_t active = 0;
    for (size_t i = begin; i < end; ++i) {
      Probe& p = probes[active];
      if (MakeBounds(reads[i].index, reads[i].range, p.lo, p.hi, p.bounded)) {
        p.node = root_;
        p.level = height_;
        ++active;
      }
    }
    while (active > 0) {
      for (size_t i = 0; i < active;) {
        Probe& p = probes[i];
        bool done = true;
        const Bound* hi = p.bounded ? &p.hi : nullptr;
        if (p.level == 0) {
          if (RangeMax(p.node, 0, &p.lo, hi, after, /*stop_early=*/true) > after) return true;
        } else {
          const Inner& inner = inners_[p.node];
          const int first = UpperBound(inner, 1, p.lo) - 1;
          const int last = hi != nullptr ? LowerBoundNear(inner, first + 1, *hi) - 1
                                         : static_cast<int>(inner.count) - 1;
          if (first != last) {
            if (RangeMax(p.node, p.level, &p.lo, hi, after, /*stop_early=*/true) > after) {
              return true;
            }
          } else if (inner.max[first] > after) {
            p.node = inner.child[first];
            --p.level;
            PrefetchNode(p.node, p.level, /*whole=*/false);
            done = false;
          }
        }
        if (done) {
          p = probes[--active];  // keep the active probes packed at the front
        } else {
          ++i;
        }
      }
    }
  }
  return false;
}

}  // namespace txfn

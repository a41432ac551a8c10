// TreapConflictSet of treap_conflict_set.h (benchmark baseline): a treap over (index id, key) whose
// nodes carry their subtree's max commit timestamp.
//
// Invariants (checked by the randomized tests in tests/conflict_set_test.cc):
// - BST order on (index, key); max-heap order on priorities_.
// - nodes_[n].max == max(nodes_[n].ts, max of both children) for every node
//   reachable from root_; a free node has ts == 0 and is not reachable.
// - Every live node has exactly one "live" log entry (the newest one naming
//   it, whose ts equals the node's ts); any older entries naming it carry a
//   strictly smaller ts and precede it in the FIFO. So when PruneThrough pops
//   the live entry and frees the node, no entry naming the node is left, and
//   a reused slot can never be matched by a stale entry.
// - Adds come in nondecreasing ts order, so a new ts is >= every ts held: an
//   Add sets max = ts on its whole search path.
#include "treap_conflict_set.h"

#include <algorithm>
#include <array>
#include <cassert>
#include <cstdint>
#include <string_view>
#include <utility>

namespace txfn {

// A position in the composite order: (index, key), with `prefix` as in Node.
struct TreapConflictSet::Bound {
  uint64_t prefix;
  std::string_view key;
};

namespace {

uint64_t MakePrefix(IndexId index, std::string_view key) {
  uint64_t prefix = static_cast<uint64_t>(index) << 32;
  const size_t n = std::min<size_t>(key.size(), 4);
  for (size_t i = 0; i < n; ++i) {
    prefix |= static_cast<uint64_t>(static_cast<unsigned char>(key[i])) << (24 - 8 * i);
  }
  return prefix;
}

}  // namespace

TreapConflictSet::TreapConflictSet() = default;
TreapConflictSet::~TreapConflictSet() = default;

TreapConflictSet::TreapConflictSet(TreapConflictSet&& other) noexcept
    : nodes_(std::move(other.nodes_)),
      keys_(std::move(other.keys_)),
      priorities_(std::move(other.priorities_)),
      free_(std::move(other.free_)),
      log_(std::move(other.log_)),
      log_head_(std::exchange(other.log_head_, 0)),
      root_(std::exchange(other.root_, kNil)),
      size_(std::exchange(other.size_, 0)),
      horizon_(std::exchange(other.horizon_, 0)),
      last_ts_(std::exchange(other.last_ts_, 0)),
      rng_(other.rng_) {
  other.nodes_.clear();
  other.keys_.clear();
  other.priorities_.clear();
  other.free_.clear();
  other.log_.clear();
}

TreapConflictSet& TreapConflictSet::operator=(TreapConflictSet&& other) noexcept {
  if (this != &other) {
    TreapConflictSet moved(std::move(other));
    std::swap(nodes_, moved.nodes_);
    std::swap(keys_, moved.keys_);
    std::swap(priorities_, moved.priorities_);
    std::swap(free_, moved.free_);
    std::swap(log_, moved.log_);
    std::swap(log_head_, moved.log_head_);
    std::swap(root_, moved.root_);
    std::swap(size_, moved.size_);
    std::swap(horizon_, moved.horizon_);
    std::swap(last_ts_, moved.last_ts_);
    std::swap(rng_, moved.rng_);
  }
  return *this;
}

uint32_t TreapConflictSet::NextPriority() {
  // splitmix64: deterministic, so runs are reproducible; the keys cannot
  // influence priorities, so expected depth stays O(log n) for any key set.
  uint64_t z = (rng_ += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return static_cast<uint32_t>((z ^ (z >> 31)) >> 32);
}

int TreapConflictSet::CompareNode(uint32_t n, const Bound& b) const {
  const uint64_t p = nodes_[n].prefix;
  if (p != b.prefix) return p < b.prefix ? -1 : 1;
  // Same index and same first (up to) 4 key bytes, zero-padded: the full keys decide.
  return std::string_view(keys_[n]).compare(b.key);
}

uint32_t TreapConflictSet::NewNode(IndexId index, std::string_view key, Timestamp ts) {
  uint32_t n;
  if (!free_.empty()) {
    n = free_.back();
    free_.pop_back();
    keys_[n].assign(key);
  } else {
    assert(nodes_.size() < kNil);
    n = static_cast<uint32_t>(nodes_.size());
    nodes_.emplace_back();
    keys_.emplace_back(key);
    priorities_.push_back(0);
  }
  nodes_[n] = Node{MakePrefix(index, key), ts, ts, kNil, kNil};
  priorities_[n] = NextPriority();
  ++size_;
  return n;
}

void TreapConflictSet::Pull(uint32_t n) {
  Node& node = nodes_[n];
  node.max = std::max({node.ts, SubtreeMax(node.left), SubtreeMax(node.right)});
}

uint32_t TreapConflictSet::Find(const Bound& b) const {
  uint32_t n = root_;
  while (n != kNil) {
    const int c = CompareNode(n, b);
    if (c == 0) return n;
    n = c < 0 ? nodes_[n].right : nodes_[n].left;
  }
  return kNil;
}

void TreapConflictSet::Add(IndexId index, std::string_view key, Timestamp ts) {
  assert(ts >= last_ts_ && "TreapConflictSet::Add: timestamps must be nondecreasing");
  assert(ts > horizon_ && "TreapConflictSet::Add: ts must be above the pruning horizon");
  last_ts_ = ts;
  const Bound b{MakePrefix(index, key), key};

  if (const uint32_t found = Find(b); found != kNil) {
    if (nodes_[found].ts == ts) return;  // same commit wrote it twice: nothing changes
    // ts >= every ts held, so every node on the path now has subtree max ts.
    for (uint32_t n = root_;;) {
      nodes_[n].max = ts;
      if (n == found) break;
      n = CompareNode(n, b) < 0 ? nodes_[n].right : nodes_[n].left;
    }
    nodes_[found].ts = ts;
    log_.push_back({ts, found});
    return;
  }

  // Allocate first: it may reallocate nodes_, and below we hold pointers into it.
  const uint32_t x = NewNode(index, key, ts);
  const uint32_t priority = priorities_[x];
  uint32_t* link = &root_;
  while (*link != kNil && priorities_[*link] > priority) {
    nodes_[*link].max = ts;  // an ancestor of x
    link = CompareNode(*link, b) < 0 ? &nodes_[*link].right : &nodes_[*link].left;
  }
  // Split the subtree at *link around the key into x's children.
  scratch_.clear();
  uint32_t t = *link;
  uint32_t* less = &nodes_[x].left;
  uint32_t* greater = &nodes_[x].right;
  while (t != kNil) {
    scratch_.push_back(t);
    if (CompareNode(t, b) < 0) {
      *less = t;
      less = &nodes_[t].right;
      t = nodes_[t].right;
    } else {
      *greater = t;
      greater = &nodes_[t].left;
      t = nodes_[t].left;
    }
  }
  *less = kNil;
  *greater = kNil;
  for (auto it = scratch_.rbegin(); it != scratch_.rend(); ++it) Pull(*it);
  *link = x;  // x.max == ts already: nothing held exceeds it
  log_.push_back({ts, x});
}

void TreapConflictSet::Erase(uint32_t x) {
  const Bound b{nodes_[x].prefix, keys_[x]};
  scratch_.clear();
  uint32_t* link = &root_;
  while (*link != x) {
    assert(*link != kNil);
    scratch_.push_back(*link);
    link = CompareNode(*link, b) < 0 ? &nodes_[*link].right : &nodes_[*link].left;
  }
  // Replace x by the merge of its children.
  uint32_t a = nodes_[x].left;
  uint32_t c = nodes_[x].right;
  while (a != kNil && c != kNil) {
    if (priorities_[a] > priorities_[c]) {
      *link = a;
      scratch_.push_back(a);
      link = &nodes_[a].right;
      a = nodes_[a].right;
    } else {
      *link = c;
      scratch_.push_back(c);
      link = &nodes_[c].left;
      c = nodes_[c].left;
    }
  }
  *link = a != kNil ? a : c;
  for (auto it = scratch_.rbegin(); it != scratch_.rend(); ++it) Pull(*it);

  nodes_[x] = Node{0, 0, 0, kNil, kNil};
  keys_[x].clear();
  free_.push_back(x);
  --size_;
}

void TreapConflictSet::PruneThrough(Timestamp ts) {
  horizon_ = std::max(horizon_, ts);
  while (log_head_ < log_.size() && log_[log_head_].ts <= ts) {
    const LogEntry e = log_[log_head_++];
    if (nodes_[e.node].ts == e.ts) Erase(e.node);  // else a stale entry: re-added later
  }
  if (log_head_ == log_.size()) {
    log_.clear();
    log_head_ = 0;
  } else if (log_head_ >= 1024 && log_head_ * 2 >= log_.size()) {
    log_.erase(log_.begin(), log_.begin() + static_cast<std::ptrdiff_t>(log_head_));
    log_head_ = 0;
  }
  if (size_ == 0) {  // give the arena back once the window is empty
    nodes_.clear();
    keys_.clear();
    priorities_.clear();
    free_.clear();
    root_ = kNil;
  }
}

Timestamp TreapConflictSet::RangeMax(const Bound& lo, const Bound* hi, Timestamp floor,
                                     bool stop_early) const {
  // Find the topmost node inside [lo, hi): the two boundary paths fork there.
  uint32_t n = root_;
  while (true) {
    if (n == kNil || nodes_[n].max <= floor) return floor;
    if (CompareNode(n, lo) < 0) {
      n = nodes_[n].right;
    } else if (hi != nullptr && CompareNode(n, *hi) >= 0) {
      n = nodes_[n].left;
    } else {
      return FromFork(n, lo, hi, floor, stop_early);
    }
  }
}

Timestamp TreapConflictSet::FromFork(uint32_t fork_index, const Bound& lo, const Bound* hi,
                                     Timestamp floor, bool stop_early) const {
  const Node& fork = nodes_[fork_index];
  Timestamp result = std::max(floor, fork.ts);
  if (stop_early && result > floor) return result;
  // Left boundary: every node >= lo on the path is inside, and so is its right subtree.
  for (uint32_t m = fork.left; m != kNil && nodes_[m].max > result;) {
    const Node& node = nodes_[m];
    if (CompareNode(m, lo) >= 0) {
      result = std::max({result, node.ts, SubtreeMax(node.right)});
      if (stop_early && result > floor) return result;
      m = node.left;
    } else {
      m = node.right;
    }
  }
  // Right boundary: every node < hi on the path is inside, and so is its left subtree.
  for (uint32_t m = fork.right; m != kNil && nodes_[m].max > result;) {
    const Node& node = nodes_[m];
    if (hi == nullptr) {  // everything to the right of the fork is inside
      result = std::max(result, node.max);
      break;
    }
    if (CompareNode(m, *hi) < 0) {
      result = std::max({result, node.ts, SubtreeMax(node.left)});
      if (stop_early && result > floor) return result;
      m = node.right;
    } else {
      m = node.left;
    }
  }
  return result;
}

bool TreapConflictSet::MakeBounds(IndexId index, const KeyRange& range, Bound& lo, Bound& hi,
                                  bool& bounded) {
  if (range.IsEmpty()) return false;
  lo = Bound{MakePrefix(index, range.start), range.start};
  bounded = true;
  if (range.end.has_value()) {
    hi = Bound{MakePrefix(index, *range.end), *range.end};
  } else if (index != UINT32_MAX) {
    // Unbounded above within the index: up to the first key of the next index.
    hi = Bound{MakePrefix(index + 1, {}), {}};
  } else {
    bounded = false;  // the last index: unbounded above, period
  }
  return true;
}

Timestamp TreapConflictSet::MaxWriteTimestamp(IndexId index, const KeyRange& range) const {
  Bound lo{}, hi{};
  bool bounded = false;
  if (!MakeBounds(index, range, lo, hi, bounded)) return 0;
  return RangeMax(lo, bounded ? &hi : nullptr, /*floor=*/0, /*stop_early=*/false);
}

bool TreapConflictSet::Conflicts(absl::Span<const ReadRange> reads, Timestamp after) const {
  assert(after >= horizon_ && "TreapConflictSet::Conflicts: begin ts below the horizon");
  if (SubtreeMax(root_) <= after) return false;
  // Descend for up to kBatch ranges at once, one level per round, prefetching
  // each next node: the misses of independent searches overlap instead of
  // queueing behind each other (FoundationDB checks its ranges the same way).
  constexpr size_t kBatch = 16;
  struct Probe {
    Bound lo;
    Bound hi;
    bool bounded;
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
        ++active;
      }
    }
    while (active > 0) {
      for (size_t i = 0; i < active;) {
        Probe& p = probes[i];
        const uint32_t n = p.node;
        bool done = false;
        if (n == kNil || nodes_[n].max <= after) {
          done = true;  // nothing inside the range is newer than `after`
        } else if (CompareNode(n, p.lo) < 0) {
          p.node = nodes_[n].right;
        } else if (p.bounded && CompareNode(n, p.hi) >= 0) {
          p.node = nodes_[n].left;
        } else {
          if (FromFork(n, p.lo, p.bounded ? &p.hi : nullptr, after, /*stop_early=*/true) > after) {
            return true;
          }
          done = true;
        }
        if (done) {
          p = probes[--active];  // keep the active probes packed at the front
        } else {
          if (p.node != kNil) __builtin_prefetch(&nodes_[p.node]);
          ++i;
        }
      }
    }
  }
  return false;
}

}  // namespace txfn

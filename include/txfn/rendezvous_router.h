// txfn/rendezvous_router.h — send a tenant's requests to the same few runners.
//
// RendezvousRouter<Node> ranks nodes (runners) for a key (a tenant id) by
// rendezvous, or highest-random-weight, hashing: every node gets a
// pseudo-random score for the key and the key goes to the best-scoring node.
// A tenant therefore lands on the same node every time and finds its caches
// warm; adding or removing one node of n moves only about 1/n of the keys (the
// keys the changed node ranks first), and every other key keeps its node.
//
// Each node admits at most `max_in_flight` requests at once (default 32).
// Acquire() hands out a Lease on the best-ranked node that has a free slot:
// the key's first choice while it has room, its second choice when the first
// is full, and so on. The Lease gives the slot back when it is destroyed.
//
//   txfn::RendezvousRouter<Runner*> router;
//   router.AddNode("runner-a", &a).IgnoreError();
//   router.AddNode("runner-b", &b, /*weight=*/2.0, /*max_in_flight=*/64).IgnoreError();
//   absl::StatusOr<txfn::RendezvousRouter<Runner*>::Lease> lease = router.Acquire("tenant-7");
//   if (!lease.ok()) return lease.status();   // ResourceExhausted: every node full
//   lease->node()->Run(request);              // the slot is freed when `lease` dies
//
// Hashing. Scores must agree between processes and machines (several front
// ends route the same tenant to the same runner), so the router never uses
// std::hash or absl::Hash, which are seeded per process. The hash is written
// out below (RendezvousHash) and is part of this header's contract:
//
//   Fnv1a64(b)   = 64-bit FNV-1a over the bytes b (offset basis
//                  0xcbf29ce484222325, prime 0x100000001b3).
//   Mix64(x)     = the splitmix64 finalizer (Stafford's "Mix13"):
//                  x ^= x >> 30; x *= 0xbf58476d1ce4e5b9;
//                  x ^= x >> 27; x *= 0x94d049bb133111eb; x ^= x >> 31.
//   Of(b)        = Mix64(Fnv1a64(b))                  — keys and node ids
//   Score(k, n)  = Mix64(Of(key) ^ Of(node id))       — one mix per node
//
// The node hash is computed once, when the node is added, so ranking a key
// against n nodes costs one Of(key) plus n Mix64.
//
// Weights. A node of weight w (its capacity relative to others) receives a
// share w / sum(w) of the keys, by weighted rendezvous hashing: with
// h = (top 53 bits of Score + 0.5) / 2^53, which lies strictly inside (0, 1),
// the node's weighted score is -w / ln(h) and the highest wins. When every
// node has the same weight, the router ranks by the raw 64-bit Score instead
// (the fast path); since -w / ln(h) never decreases as Score grows, the two
// orders agree. Ties (equal weighted scores) are broken by the raw Score, then
// by node id, so the order is total and independent of insertion order.
// Weighted scores go through std::log/std::log1p; libms that round those
// differently could disagree on a near-tie, never otherwise.
//
// Thread safety: every method of RendezvousRouter may be called concurrently
// from any thread. The node list is copy-on-write: readers (Acquire, Rank,
// Pick) copy a shared_ptr to it under a short lock and then work lock-free;
// writers (AddNode, RemoveNode) build a new list and swap it in, serialized
// among themselves. To keep readers on different cores from contending on one
// lock and one refcount, the current list is published in 16 per-CPU slots,
// each with its own lock and control block. In-flight counters are atomics;
// the cap is enforced with a compare-and-swap, so it is never exceeded, not
// even transiently. Once AddNode/RemoveNode returns, every call that starts
// afterwards sees the change; calls that overlap it may see either node list.
// A Lease is owned by one thread at a time (it is movable), and may outlive
// its node's removal and the router itself.
#ifndef TXFN_RENDEZVOUS_ROUTER_H_
#define TXFN_RENDEZVOUS_ROUTER_H_

#include <sched.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "txfn/internal/mutex.h"

namespace txfn {

// The stable hash the router ranks with (see the file comment). Pure
// functions; safe from any thread; values are fixed forever, so they may be
// stored or compared across processes.
struct RendezvousHash {
  static constexpr uint64_t kFnvOffsetBasis = 0xcbf29ce484222325ULL;
  static constexpr uint64_t kFnvPrime = 0x100000001b3ULL;

  // 64-bit FNV-1a of `bytes`.
  static constexpr uint64_t Fnv1a64(std::string_view bytes) {
    uint64_t h = kFnvOffsetBasis;
    for (char c : bytes) {
      h ^= static_cast<unsigned char>(c);
      h *= kFnvPrime;
    }
    return h;
  }

  // The splitmix64 finalizer: a bijection on 64-bit values with full avalanche.
  static constexpr uint64_t Mix64(uint64_t x) {
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebULL;
    x ^= x >> 31;
    return x;
  }

  // The hash of a key or a node id.
  static constexpr uint64_t Of(std::string_view bytes) { return Mix64(Fnv1a64(bytes)); }

  // The raw score of a node (node_hash = Of(id)) for a key (key_hash = Of(key)).
  static constexpr uint64_t Score(uint64_t key_hash, uint64_t node_hash) {
    return Mix64(key_hash ^ node_hash);
  }

  // -weight / ln(h), h = ((score >> 11) + 0.5) / 2^53. Positive and finite for
  // every score when weight is positive and finite. h is computed exactly;
  // when h >= 1/2, ln(h) is evaluated as log1p(-(1 - h)) (1 - h is exact
  // there, h is not representable near 1), else as log(h).
  static double WeightedScore(uint64_t score, double weight) {
    const uint64_t top = score >> 11;  // 53 bits
    double ln_h;
    if (top >= (uint64_t{1} << 52)) {
      // 1 - h = ((2^53 - 1 - top) + 0.5) / 2^53 and 2^53 - 1 - top < 2^52.
      const double one_minus_h = (static_cast<double>((~score) >> 11) + 0.5) * 0x1p-53;
      ln_h = std::log1p(-one_minus_h);
    } else {
      ln_h = std::log((static_cast<double>(top) + 0.5) * 0x1p-53);
    }
    return -weight / ln_h;
  }
};

// Routes keys to nodes of payload type `Node` (for example `Runner*` or a
// shared_ptr). Node must be copy-constructible for Rank() and Pick(); a Lease
// exposes it by const reference. Node payloads are immutable once added.
template <typename Node>
class RendezvousRouter {
 private:
  struct NodeState;
  struct Table;

 public:
  static constexpr int kDefaultMaxInFlight = 32;

  // One in-flight request on one node. Move-only RAII: destroying (or
  // Release()-ing, or move-assigning over) a valid Lease frees its slot
  // exactly once. A Lease keeps its node's state alive, so it stays valid and
  // releases safely after RemoveNode() of its node and after the router is
  // destroyed. A default-constructed or moved-from Lease is invalid.
  class Lease {
   public:
    Lease() = default;
    Lease(Lease&& other) noexcept : state_(std::move(other.state_)) {}
    Lease& operator=(Lease&& other) noexcept {
      if (this != &other) {
        Release();
        state_ = std::move(other.state_);
      }
      return *this;
    }
    Lease(const Lease&) = delete;
    Lease& operator=(const Lease&) = delete;
    ~Lease() { Release(); }

    // Whether this lease holds a slot.
    [[nodiscard]] bool valid() const { return state_ != nullptr; }
    explicit operator bool() const { return valid(); }

    // The node's payload and id. Require valid().
    [[nodiscard]] const Node& node() const { return state_->node; }
    [[nodiscard]] const std::string& node_id() const { return state_->id; }

    // Frees the slot now. No-op on an invalid lease.
    void Release() {
      if (state_ != nullptr) {
        state_->in_flight.fetch_sub(1, std::memory_order_release);
        state_.reset();
      }
    }

   private:
    friend class RendezvousRouter;
    explicit Lease(std::shared_ptr<NodeState> state) : state_(std::move(state)) {}

    // Aliases the snapshot the lease was taken from (it shares that
    // snapshot's control block, so taking a lease costs no extra refcount
    // operation); the snapshot's Table owns the NodeState.
    std::shared_ptr<NodeState> state_;
  };

  RendezvousRouter() {
    internal::MutexLock writer(&write_mu_);
    Publish(std::make_shared<const Table>());
  }
  RendezvousRouter(const RendezvousRouter&) = delete;
  RendezvousRouter& operator=(const RendezvousRouter&) = delete;

  // Adds node `id` (the hash input) carrying `node`. `weight` is its relative
  // capacity (share of keys); `max_in_flight` caps its concurrent leases.
  // Errors: InvalidArgument for an empty id, a weight that is not finite and
  // positive, or max_in_flight < 1; AlreadyExists if `id` is present.
  // Cost: O(n) copy of the node list.
  [[nodiscard]] absl::Status AddNode(std::string id, Node node, double weight = 1.0,
                                     int max_in_flight = kDefaultMaxInFlight) {
    if (id.empty()) return absl::InvalidArgumentError("router node id is empty");
    if (!std::isfinite(weight) || !(weight > 0)) {
      return absl::InvalidArgumentError(
          absl::StrCat("router node '", id, "': weight must be finite and > 0, got ", weight));
    }
    if (max_in_flight < 1) {
      return absl::InvalidArgumentError(
          absl::StrCat("router node '", id, "': max_in_flight must be >= 1, got ", max_in_flight));
    }
    internal::MutexLock writer(&write_mu_);
    std::shared_ptr<const Table> old = current_;
    for (const auto& s : old->states) {
      if (s->id == id) return absl::AlreadyExistsError(absl::StrCat("router node '", id, "'"));
    }
    auto state = std::make_shared<NodeState>(std::move(id), std::move(node), weight, max_in_flight);
    auto next = std::make_shared<Table>(*old);
    next->Append(std::move(state));
    next->Finish();
    Publish(std::move(next));
    return absl::OkStatus();
  }

  // Removes node `id`. Only the keys that ranked it first change their first
  // choice. Its outstanding leases stay valid and release into its (now
  // detached) counter. Errors: NotFound if absent. Cost: O(n).
  [[nodiscard]] absl::Status RemoveNode(std::string_view id) {
    internal::MutexLock writer(&write_mu_);
    std::shared_ptr<const Table> old = current_;
    auto next = std::make_shared<Table>();  // equal_weights recomputed by Append
    next->Reserve(old->size());
    bool found = false;
    for (const auto& s : old->states) {
      if (s->id == id) {
        found = true;
      } else {
        next->Append(s);
      }
    }
    if (!found) return absl::NotFoundError(absl::StrCat("router node '", std::string(id), "'"));
    next->Finish();
    Publish(std::move(next));
    return absl::OkStatus();
  }

  // A slot on the best-ranked node for `key` that is below its in-flight
  // limit. Errors: ResourceExhausted when every node is at its limit or there
  // are no nodes. Cost: one snapshot, n mixes, one CAS; when the first choice
  // is full, also an O(n log n) sort of the ranking.
  [[nodiscard]] absl::StatusOr<Lease> Acquire(std::string_view key) {
    std::shared_ptr<const Table> table = Snapshot();
    const size_t n = table->size();
    if (n == 0) return absl::ResourceExhaustedError("router has no nodes");
    const uint64_t key_hash = RendezvousHash::Of(key);
    const size_t best = table->Best(key_hash);
    if (TryAcquire(*table->states[best])) return MakeLease(std::move(table), best);
    std::vector<Scored> order = table->ScoreAll(key_hash);
    std::sort(order.begin(), order.end(), RankedBefore{table.get()});
    for (const Scored& s : order) {
      if (s.index == best) continue;
      if (TryAcquire(*table->states[s.index])) return MakeLease(std::move(table), s.index);
    }
    return absl::ResourceExhaustedError(
        absl::StrCat("all ", n, " router nodes are at their in-flight limit"));
  }

  // Like Acquire(key), but never on a node whose id `skip` holds: a request
  // that one node failed tries the next ones it has not tried. Errors:
  // ResourceExhausted when every node not skipped is at its limit, or none is
  // left. Cost: n mixes and an O(n log n) sort of the ranking.
  [[nodiscard]] absl::StatusOr<Lease> AcquireExcept(std::string_view key,
                                                    const std::vector<std::string>& skip) {
    std::shared_ptr<const Table> table = Snapshot();
    const size_t n = table->size();
    std::vector<Scored> order = table->ScoreAll(RendezvousHash::Of(key));
    std::sort(order.begin(), order.end(), RankedBefore{table.get()});
    size_t skipped = 0;
    for (const Scored& s : order) {
      NodeState& state = *table->states[s.index];
      if (std::find(skip.begin(), skip.end(), state.id) != skip.end()) {
        ++skipped;
      } else if (TryAcquire(state)) {
        return MakeLease(std::move(table), s.index);
      }
    }
    if (skipped == n) {
      return absl::ResourceExhaustedError(
          absl::StrCat("router has no node left to try (", n, " skipped)"));
    }
    return absl::ResourceExhaustedError(absl::StrCat(
        "the ", n - skipped, " router nodes left to try are at their in-flight limit"));
  }

  // The first min(k, size()) nodes for `key`, best first, regardless of load.
  [[nodiscard]] std::vector<Node> Rank(std::string_view key, size_t k) const {
    std::vector<Node> out;
    std::shared_ptr<const Table> table = Snapshot();
    for (uint32_t i : table->TopK(RendezvousHash::Of(key), k)) {
      out.push_back(table->states[i]->node);
    }
    return out;
  }

  // Like Rank(), but the node ids.
  [[nodiscard]] std::vector<std::string> RankIds(std::string_view key, size_t k) const {
    std::vector<std::string> out;
    std::shared_ptr<const Table> table = Snapshot();
    for (uint32_t i : table->TopK(RendezvousHash::Of(key), k)) out.push_back(table->states[i]->id);
    return out;
  }

  // The first-ranked node for `key` regardless of load; nullopt if there are
  // no nodes. Cost: one snapshot and n mixes, no allocation.
  [[nodiscard]] std::optional<Node> Pick(std::string_view key) const {
    std::shared_ptr<const Table> table = Snapshot();
    if (table->size() == 0) return std::nullopt;
    return table->states[table->Best(RendezvousHash::Of(key))]->node;
  }

  // Leases currently held on node `id`. Errors: NotFound if absent.
  [[nodiscard]] absl::StatusOr<int> InFlight(std::string_view id) const {
    std::shared_ptr<const Table> table = Snapshot();
    for (const auto& s : table->states) {
      if (s->id == id) return s->in_flight.load(std::memory_order_relaxed);
    }
    return absl::NotFoundError(absl::StrCat("router node '", std::string(id), "'"));
  }

  // The number of nodes.
  [[nodiscard]] size_t size() const { return Snapshot()->size(); }

 private:
  struct NodeState {
    NodeState(std::string id_in, Node node_in, double weight_in, int max_in)
        : id(std::move(id_in)),
          node(std::move(node_in)),
          weight(weight_in),
          hash(RendezvousHash::Of(id)),
          max_in_flight(max_in) {}

    const std::string id;
    const Node node;
    const double weight;
    const uint64_t hash;
    const int max_in_flight;
    std::atomic<int> in_flight{0};
  };

  // One node's place in a ranking. `weighted` is 0 for all nodes on the
  // equal-weight fast path, so the raw score decides.
  struct Scored {
    double weighted;
    uint64_t raw;
    uint32_t index;
  };

  // An immutable (once published) node list; hashes and weights are kept in
  // flat arrays so scoring streams through memory.
  struct Table {
    std::vector<uint64_t> hashes;
    std::vector<double> weights;
    std::vector<std::shared_ptr<NodeState>> states;
    bool equal_weights = true;
    bool distinct_hashes = true;  // no two node ids hash alike (set by Finish)

    size_t size() const { return states.size(); }

    void Reserve(size_t n) {
      hashes.reserve(n);
      weights.reserve(n);
      states.reserve(n);
    }

    void Append(std::shared_ptr<NodeState> s) {
      hashes.push_back(s->hash);
      weights.push_back(s->weight);
      states.push_back(std::move(s));
      equal_weights = equal_weights && weights.back() == weights.front();
    }

    // Call once after the last Append, before publishing. O(n log n).
    void Finish() {
      std::vector<uint64_t> sorted = hashes;
      std::sort(sorted.begin(), sorted.end());
      distinct_hashes = std::adjacent_find(sorted.begin(), sorted.end()) == sorted.end();
    }

    // Whether node i ranks before node j given equal weighted and raw scores.
    bool IdBefore(size_t i, size_t j) const { return states[i]->id < states[j]->id; }

    // The index of the first-ranked node. Requires size() > 0.
    size_t Best(uint64_t key_hash) const {
      const size_t n = hashes.size();
      size_t best = 0;
      uint64_t best_raw = RendezvousHash::Score(key_hash, hashes[0]);
      if (equal_weights && distinct_hashes) {
        // No two raw scores can be equal (Mix64 is a bijection), so this is a
        // plain, branch-free argmax.
        for (size_t i = 1; i < n; ++i) {
          const uint64_t raw = RendezvousHash::Score(key_hash, hashes[i]);
          const bool better = raw > best_raw;
          best = better ? i : best;
          best_raw = better ? raw : best_raw;
        }
        return best;
      }
      if (equal_weights) {
        for (size_t i = 1; i < n; ++i) {
          const uint64_t raw = RendezvousHash::Score(key_hash, hashes[i]);
          if (raw > best_raw || (raw == best_raw && IdBefore(i, best))) {
            best = i;
            best_raw = raw;
          }
        }
        return best;
      }
      double best_w = RendezvousHash::WeightedScore(best_raw, weights[0]);
      for (size_t i = 1; i < n; ++i) {
        const uint64_t raw = RendezvousHash::Score(key_hash, hashes[i]);
        // -ln(h) >= 1 - h, so weight / (1 - h) bounds the weighted score from
        // above: most nodes are ruled out without a logarithm. The margin
        // covers rounding in both computations.
        const double one_minus_h = (static_cast<double>((~raw) >> 11) + 0.5) * 0x1p-53;
        if (weights[i] < best_w * one_minus_h * (1 - 0x1p-30)) continue;
        const double w = RendezvousHash::WeightedScore(raw, weights[i]);
        if (w > best_w ||
            (w == best_w && (raw > best_raw || (raw == best_raw && IdBefore(i, best))))) {
          best = i;
          best_raw = raw;
          best_w = w;
        }
      }
      return best;
    }

    std::vector<Scored> ScoreAll(uint64_t key_hash) const {
      std::vector<Scored> out(hashes.size());
      for (size_t i = 0; i < hashes.size(); ++i) {
        const uint64_t raw = RendezvousHash::Score(key_hash, hashes[i]);
        out[i] = Scored{equal_weights ? 0.0 : RendezvousHash::WeightedScore(raw, weights[i]), raw,
                        static_cast<uint32_t>(i)};
      }
      return out;
    }

    std::vector<uint32_t> TopK(uint64_t key_hash, size_t k) const {
      std::vector<Scored> scored = ScoreAll(key_hash);
      k = std::min(k, scored.size());
      std::partial_sort(scored.begin(), scored.begin() + static_cast<std::ptrdiff_t>(k),
                        scored.end(), RankedBefore{this});
      std::vector<uint32_t> out;
      out.reserve(k);
      for (size_t i = 0; i < k; ++i) out.push_back(scored[i].index);
      return out;
    }
  };

  // Strict weak order: a ranks before b.
  struct RankedBefore {
    const Table* table;
    bool operator()(const Scored& a, const Scored& b) const {
      if (a.weighted != b.weighted) return a.weighted > b.weighted;
      if (a.raw != b.raw) return a.raw > b.raw;
      return table->IdBefore(a.index, b.index);
    }
  };

  static bool TryAcquire(NodeState& s) {
    int cur = s.in_flight.load(std::memory_order_relaxed);
    while (cur < s.max_in_flight) {
      if (s.in_flight.compare_exchange_weak(cur, cur + 1, std::memory_order_acquire,
                                            std::memory_order_relaxed)) {
        return true;
      }
    }
    return false;
  }

  static Lease MakeLease(std::shared_ptr<const Table> table, size_t index) {
    NodeState* state = table->states[index].get();
    return Lease(std::shared_ptr<NodeState>(std::move(table), state));
  }

  // Readers fetch the current Table from one of kShards slots, picked by the
  // CPU they run on, so concurrent readers on different cores touch different
  // cache lines: each slot has its own lock and its own shared_ptr control
  // block (an aliasing pointer over a per-slot holder), hence its own
  // refcount. Writers update every slot.
  static constexpr size_t kShards = 16;

  struct alignas(64) Shard {
    internal::Mutex mu;
    std::shared_ptr<const Table> table ABSL_GUARDED_BY(mu);
  };

  // The slot for the calling thread: its CPU on Linux, else a hash of its
  // thread id. Process-local and only a contention hint (never a routing
  // input), so std::hash is fine here; any slot is correct.
  static size_t ShardIndex() {
#if defined(__linux__)
    const int cpu = sched_getcpu();
    if (cpu >= 0) return static_cast<size_t>(cpu) % kShards;
#endif
    return RendezvousHash::Mix64(std::hash<std::thread::id>{}(std::this_thread::get_id())) %
           kShards;
  }

  std::shared_ptr<const Table> Snapshot() const {
    Shard& shard = shards_[ShardIndex()];
    internal::MutexLock lock(&shard.mu);
    return shard.table;
  }

  // Makes `next` current. Once Publish returns, every Snapshot() sees `next`.
  void Publish(std::shared_ptr<const Table> next) ABSL_EXCLUSIVE_LOCKS_REQUIRED(write_mu_) {
    current_ = next;
    for (Shard& shard : shards_) {
      auto holder = std::make_shared<const std::shared_ptr<const Table>>(next);
      std::shared_ptr<const Table> local(holder, holder->get());
      internal::MutexLock lock(&shard.mu);
      shard.table.swap(local);  // `local` now holds the old table, freed after unlocking
    }
  }

  // Serializes writers (held while a new Table is built and published).
  internal::Mutex write_mu_;
  std::shared_ptr<const Table> current_ ABSL_GUARDED_BY(write_mu_);
  mutable std::array<Shard, kShards> shards_;
};

}  // namespace txfn

#endif  // TXFN_RENDEZVOUS_ROUTER_H_

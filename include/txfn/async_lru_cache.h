// txfn/async_lru_cache.h — a single-flight, weighted, sharded LRU cache ("async LRU").
// (Over 700 lines because it is header-only, a template: its definitions
// follow the class, after the contract.)
//
// What it is for: the function runner's metadata and module caches, where many
// concurrent requests miss on the same key at once and the (expensive) load must
// run once. Every caller that misses while a load of its key is in flight joins
// that load and receives its result.
//
//   txfn::AsyncLruCache<std::string, Module> modules({.capacity = 64 << 20,
//       .weigher = [](const std::string&, const Module& m) { return m.size(); }});
//
//   // Blocking form: the loader runs on the calling thread if this call starts the load.
//   absl::StatusOr<std::shared_ptr<const Module>> m =
//       modules.Get(name, [&]() -> absl::StatusOr<std::shared_ptr<const Module>> {
//         return Compile(name);
//       });
//
//   // Callback form: the loader receives a Completion and may finish later, on any
//   // thread (an RPC callback, the host's executor...). `done` runs once with the result.
//   modules.GetAsync(
//       name,
//       [&](auto completion) { FetchAsync(name, [=](auto m) { completion(std::move(m)); }); },
//       [](absl::StatusOr<std::shared_ptr<const Module>> m) { /* use m */ });
//
//   // Callback form with a blocking loader run on the host's executor.
//   modules.GetAsync(
//       name, [&](std::function<void()> task) { host_pool.Schedule(std::move(task)); },
//       [&]() -> absl::StatusOr<std::shared_ptr<const Module>> { return Compile(name); },
//       [](absl::StatusOr<std::shared_ptr<const Module>> m) { /* use m */ });
//
// Semantics
// - Single flight: concurrent misses on one key run the loader exactly once; every
//   waiter of that load receives the same result.
// - Errors are not cached: a loader error reaches every waiter of that load, and the
//   in-flight entry is removed before any waiter wakes, so the next Get retries.
// - Invalidate(key) / InvalidateAll() / Put(key) during a load detach that load: its
//   result still goes to its own waiters but is NOT installed, and any Get that starts
//   after the call returns starts (or joins) a new load. So no Get that starts after
//   Invalidate(key) returns can observe a value loaded before it.
// - Capacity is a total weight (Options::weigher, default 1 per entry), enforced per
//   shard: each of the N shards owns capacity/N and evicts least recently used entries
//   of its own. (LRU with one shortcut: a hit on an entry already among the most recent
//   eighth of its shard does not move it; such an entry is never the victim, and the
//   order is exact for shards of fewer than 8 entries.) In-flight loads weigh nothing and are never
//   evicted. A value heavier than its shard's capacity is returned to its callers but not cached
//   (with num_shards = 1 that is "heavier than capacity").
// - Values are std::shared_ptr<const V>: an evicted or invalidated value stays alive
//   for whoever still holds it.
// - No thread is owned by the cache. A loader runs on the thread that started the load
//   (Get), or wherever the async loader chooses to finish (GetAsync).
// - Recursion: a loader that (directly or through other keys on the same thread) asks
//   the cache for a key whose load it is itself running gets FailedPrecondition naming
//   the key instead of deadlocking. Detection: every in-flight load records the id of
//   the thread currently running its loader (Get: the caller; GetAsync with an executor:
//   the executor thread while the loader runs; GetAsync with an AsyncLoader: the caller,
//   only while the loader call is on the stack). No thread_local or global state is
//   used. Not detected: cycles that span threads (a loader on thread A waiting for a key
//   loaded on thread B whose loader waits for A's key), and an AsyncLoader that hands
//   its work to another thread which then blocks on the same key.
// - Destruction with loads in flight is safe: the destructor completes every pending
//   waiter (GetAsync callbacks and Gets blocked on a load) with Cancelled; a loader that
//   finishes later finds its load detached and its result is dropped (the load's state
//   is kept alive by shared_ptr). A Get that is waiting for a load, or running a loader,
//   touches no member of the cache object until it returns (it holds its own reference
//   to the shared state), so the cache may be destroyed under it; the host must still
//   make sure no call *enters* the cache once destruction has begun.
//
// Concurrency design (chosen over Caffeine-style read buffers for simplicity and
// predictable LRU order): keys are hashed into N shards (default 16, rounded up to a
// power of two), each with its own txfn::internal::Mutex, LRU list and
// absl::flat_hash_map. A hit takes one shard's mutex for a map lookup and (unless the
// entry is already recent) a list splice; readers of different shards never contend.
// The fields a hit writes share the mutex's cache line, so a hit on a hot key writes two
// shared lines: the shard's first line and the value's shared_ptr count. No user code (loader,
// weigher, callback, value destructor) runs under a shard mutex.
//
// Cost: a hit is two hashes of the key (shard, map), one shard lock, a map probe, at most
// one list splice and a shared_ptr copy. A miss that starts a load also allocates the in-flight
// state and, on success, one list node; joining a load blocks on that load's own mutex,
// not the shard's. Memory: per cached entry a list node (key, shared_ptr, weight) and a
// map slot (key, iterator), so the key is stored twice.
//
// Thread safety: every public method may be called concurrently from any thread.
// Callbacks and loaders may call back into the cache (no lock is held while they run).
#ifndef TXFN_ASYNC_LRU_CACHE_H_
#define TXFN_ASYNC_LRU_CACHE_H_

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <list>
#include <memory>
#include <string>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/functional/any_invocable.h"
#include "absl/hash/hash.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "txfn/internal/mutex.h"

namespace txfn {

// K must be hashable by Hash and comparable by Eq, and copyable. V is any type.
template <typename K, typename V, typename Hash = absl::Hash<K>, typename Eq = std::equal_to<K>>
class AsyncLruCache {
 public:
  using ValuePtr = std::shared_ptr<const V>;
  using Result = absl::StatusOr<ValuePtr>;
  // Receives the result of a GetAsync exactly once.
  using Callback = absl::AnyInvocable<void(Result)>;
  // Weight of one entry. Must be cheap, must not call into the cache, and must return
  // the same weight for the same value.
  using Weigher = std::function<size_t(const K&, const V&)>;

  class Completion;
  // An asynchronous loader: called once, on the thread that calls GetAsync, with the
  // Completion of the load. It must arrange for the Completion to be called with the
  // result, now or later, from any thread.
  using AsyncLoader = absl::AnyInvocable<void(Completion)>;

  struct Options {
    // Total weight the cache holds (split evenly over the shards).
    size_t capacity = 1024;
    // Number of shards; rounded up to a power of two, and reduced while it exceeds
    // capacity so no shard has capacity 0 (capacity 0 keeps one shard).
    size_t num_shards = 16;
    // Empty: every entry weighs 1.
    Weigher weigher;
  };

  // Counters since construction (a consistent snapshot per shard, not across shards).
  struct Stats {
    uint64_t hits = 0;           // lookups answered from a cached value
    uint64_t misses = 0;         // lookups that found no value (they started or joined a load)
    uint64_t loads = 0;          // loads started (loader invocations)
    uint64_t load_errors = 0;    // loads that finished with an error (incl. a dropped Completion)
    uint64_t evictions = 0;      // entries removed to make room (not invalidations)
    size_t weight = 0;           // current total weight of cached values
    size_t entries = 0;          // current number of cached values
    size_t loads_in_flight = 0;  // attached loads (detached ones are not counted)
  };

  // The handle an AsyncLoader finishes its load with. Copyable; all copies share one
  // load. The first call delivers the result (installs it unless the load was detached,
  // then wakes every waiter); later calls are ignored. If every copy is destroyed without
  // a call, the waiters get Cancelled. Thread-safe; may outlive the cache.
  class Completion {
   public:
    // Delivers `result` (a value or an error; a null value counts as an Internal error).
    void operator()(Result result) const {
      if (pending_ != nullptr) pending_->Fire(std::move(result));
    }

   private:
    friend class AsyncLruCache;
    struct Pending;
    explicit Completion(std::shared_ptr<Pending> pending) : pending_(std::move(pending)) {}
    std::shared_ptr<Pending> pending_;
  };

  explicit AsyncLruCache(Options options = {});
  // Completes every in-flight load's waiters with Cancelled; see the file comment.
  ~AsyncLruCache();
  AsyncLruCache(const AsyncLruCache&) = delete;
  AsyncLruCache& operator=(const AsyncLruCache&) = delete;

  // Returns the cached value of `key`, or loads it. On a miss with no load in flight,
  // runs `loader()` on this thread (it must return something convertible to Result)
  // and returns its result; on a miss with a load in flight, blocks until that load
  // finishes and returns its result. Errors: whatever the loader returned (never cached);
  // FailedPrecondition if this thread is running the loader of `key` (a key cycle);
  // Cancelled if the cache is destroyed while waiting.
  template <typename Loader>
  [[nodiscard]] Result Get(const K& key, Loader&& loader);

  // Non-blocking Get. `done` (may be empty, to only warm the cache) runs exactly once: inline (on a
  // hit, on an error detected at once, or when the loader completes synchronously) or on the thread
  // that calls the load's Completion. `loader` is called only if this call starts the load.
  void GetAsync(const K& key, AsyncLoader loader, Callback done);

  // GetAsync with a blocking loader run on the host's executor: if this call starts the
  // load, `executor(task)` is called once with a no-argument task (copyable if `loader`
  // is) that runs `loader()` and completes the load; `done` then runs on that executor
  // thread (on a hit or when joining a load, as for the form above). Key cycles are detected on the
  // executor thread too. If the executor drops the task unrun, the waiters get Cancelled.
  //
  //   cache.GetAsync(key, [&](std::function<void()> task) { pool.Schedule(std::move(task)); },
  //                  [&]() -> absl::StatusOr<std::shared_ptr<const V>> { return Load(key); },
  //                  [](absl::StatusOr<std::shared_ptr<const V>> v) { ... });
  template <typename Executor, typename Loader>
  void GetAsync(const K& key, Executor&& executor, Loader loader, Callback done);

  // The cached value of `key`, or null. Never loads and never waits for a load.
  [[nodiscard]] ValuePtr GetIfPresent(const K& key);

  // Caches `value` under `key`, replacing any cached value and detaching any load in
  // flight for `key` (its waiters still get its result; it is not installed). A null
  // `value` acts as Invalidate(key). A value heavier than its shard's capacity is not
  // cached (and the old value is still removed).
  void Put(const K& key, ValuePtr value);

  // Removes `key`'s cached value and detaches its in-flight load, if any.
  void Invalidate(const K& key);
  // Invalidate for every key.
  void InvalidateAll();
  // Invalidate for every key, cached or loading, for which `pred(key)` is true. `pred`
  // runs under a shard's lock: it must be quick and must not use the cache. Visits every
  // entry (O(size)): for rare clean-ups, such as forgetting a deleted tenant's entries.
  template <typename Pred>
  void InvalidateIf(Pred pred);

  // Counters summed over the shards (each shard's read under its lock).
  [[nodiscard]] Stats stats() const;
  // The former name of stats(), kept for source compatibility.
  [[nodiscard]] Stats GetStats() const { return stats(); }
  [[nodiscard]] size_t num_shards() const { return core_->num_shards; }

 private:
  struct Node {
    K key;
    ValuePtr value;
    size_t weight;
    uint64_t stamp = 0;  // the shard's clock when this node last moved to the front
  };
  using LruList = std::list<Node>;  // front = most recently used

  // One in-flight load. Found through its shard's `loading` map while attached.
  struct Load {
    explicit Load(const K& k) : key(k), loader_thread(std::this_thread::get_id()) {}

    // Publishes the result and wakes every waiter. Returns false if already done.
    bool Complete(Result result) {
      std::vector<Callback> callbacks;
      bool wake;
      {
        internal::MutexLock lock(&mu);
        if (done) return false;
        done = true;
        this->result = result;
        callbacks.swap(this->callbacks);
        wake = waiters > 0;
      }
      if (wake) cv.SignalAll();
      if (!callbacks.empty()) {
        for (size_t i = 0; i + 1 < callbacks.size(); ++i) callbacks[i](result);
        callbacks.back()(std::move(result));
      }
      return true;
    }

    Result Wait() {
      internal::MutexLock lock(&mu);
      ++waiters;
      WaitDone();
      --waiters;
      return result;
    }

    // CondVar::Wait requires its own (private) mutex pointer, which clang's analysis
    // cannot match with `mu`; this wrapper states the real requirement.
    void WaitDone() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) ABSL_NO_THREAD_SAFETY_ANALYSIS {
      cv.Wait([this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) { return done; });
    }

    // Runs `callback` with the result when there is one (now, if already done).
    void OnDone(Callback callback) {
      Result r;
      {
        internal::MutexLock lock(&mu);
        if (!done) {
          callbacks.push_back(std::move(callback));
          return;
        }
        r = result;
      }
      callback(std::move(r));
    }

    // Marks / unmarks this thread as running the loader (see IsLoaderThread).
    void EnterLoader() {
      loader_thread.store(std::this_thread::get_id(), std::memory_order_relaxed);
    }
    void LeaveLoader() {
      std::thread::id me = std::this_thread::get_id();
      loader_thread.compare_exchange_strong(me, std::thread::id(), std::memory_order_relaxed);
    }
    bool IsLoaderThread() const {
      return loader_thread.load(std::memory_order_relaxed) == std::this_thread::get_id();
    }

    const K key;
    // Callers other than a blocking creator that will wait or have a callback: joiners,
    // plus the GetAsync that started the load. Guarded by the shard's mutex (not
    // annotated: the Load does not know its shard); final once the load is detached.
    int listeners = 0;
    // The thread running this load's loader, or a default id. A thread only ever stores
    // its own id, clears only its own id (compare-exchange) and compares with its own
    // id, so it can never see its own id unless it set it and has not cleared it;
    // relaxed ordering suffices.
    std::atomic<std::thread::id> loader_thread;
    internal::Mutex mu;
    internal::CondVar cv{&mu};
    bool done ABSL_GUARDED_BY(mu) = false;
    int waiters ABSL_GUARDED_BY(mu) = 0;  // threads blocked in Wait
    Result result ABSL_GUARDED_BY(mu);
    std::vector<Callback> callbacks ABSL_GUARDED_BY(mu);
  };

  // The fields a hit writes (mutex, hit counter, clock) share the first cache line.
  struct alignas(64) Shard {
    mutable internal::Mutex mu;
    uint64_t hits ABSL_GUARDED_BY(mu) = 0;
    uint64_t misses ABSL_GUARDED_BY(mu) = 0;
    uint64_t clock ABSL_GUARDED_BY(mu) = 0;  // counts moves to the front of `lru`
    LruList lru ABSL_GUARDED_BY(mu);
    absl::flat_hash_map<K, typename LruList::iterator, Hash, Eq> entries ABSL_GUARDED_BY(mu);
    absl::flat_hash_map<K, std::shared_ptr<Load>, Hash, Eq> loading ABSL_GUARDED_BY(mu);
    size_t capacity = 0;  // set before the cache is shared
    size_t weight ABSL_GUARDED_BY(mu) = 0;
    uint64_t loads ABSL_GUARDED_BY(mu) = 0;
    uint64_t load_errors ABSL_GUARDED_BY(mu) = 0;
    uint64_t evictions ABSL_GUARDED_BY(mu) = 0;
  };

  // Everything a load needs to finish; shared with Completions so it outlives the cache.
  struct Core {
    std::unique_ptr<Shard[]> shards;
    size_t num_shards = 1;
    int shard_shift = 64;  // 64 - log2(num_shards)
    Weigher weigher;
    Hash hash;

    size_t Weigh(const K& key, const V& value) const { return weigher ? weigher(key, value) : 1; }
    size_t ShardOf(const K& key) const {
      if (shard_shift >= 64) return 0;
      return static_cast<size_t>(static_cast<uint64_t>(hash(key)) >> shard_shift);
    }
  };

  // Where a miss stands after looking in its shard.
  struct Miss {
    std::shared_ptr<Load> load;
    bool started = false;  // this call created the load and must run the loader
  };

  static std::string DescribeKey(const K& key) {
    if constexpr (requires { absl::StrCat(key); }) {
      return absl::StrCat("'", key, "'");
    } else {
      return "(unprintable key)";
    }
  }

  static absl::Status CycleError(const K& key) {
    return absl::FailedPreconditionError(
        absl::StrCat("AsyncLruCache: key cycle: the loader of key ", DescribeKey(key),
                     " asked for that key on its own thread while loading it"));
  }

  static void Normalize(Result& result) {
    if (result.ok() && *result == nullptr) {
      result = absl::InternalError("AsyncLruCache: loader returned a null value");
    }
  }

  // Records a hit on `it`. A node already among the most recent eighth of its shard
  // (fewer than size/8 moves to the front since its own) stays where it is: it cannot be
  // the eviction victim, and not moving it spares the list writes that would otherwise
  // bounce cache lines between readers of hot keys. With fewer than 8 entries this is
  // exact LRU.
  static void Touch(Shard& s, typename LruList::iterator it) ABSL_EXCLUSIVE_LOCKS_REQUIRED(s.mu) {
    if (s.clock - it->stamp <= s.entries.size() / 8) return;
    s.lru.splice(s.lru.begin(), s.lru, it);
    it->stamp = ++s.clock;
  }

  // Caches `value` as most recently used, replacing any value of `key` and evicting from
  // the tail. What it drops goes to `dead` / `old`, to be destroyed after unlocking.
  static void Upsert(Shard& s, const K& key, ValuePtr value, size_t weight, LruList& dead,
                     ValuePtr& old) ABSL_EXCLUSIVE_LOCKS_REQUIRED(s.mu) {
    auto [it, inserted] = s.entries.try_emplace(key);
    if (!inserted) {
      Node& node = *it->second;
      if (weight > s.capacity) {
        s.weight -= node.weight;
        dead.splice(dead.end(), s.lru, it->second);
        s.entries.erase(it);
        old = std::move(value);
        return;
      }
      s.weight = s.weight - node.weight + weight;
      old = std::move(node.value);
      node.value = std::move(value);
      node.weight = weight;
      s.lru.splice(s.lru.begin(), s.lru, it->second);
      node.stamp = ++s.clock;
    } else {
      if (weight > s.capacity) {
        s.entries.erase(it);
        old = std::move(value);
        return;
      }
      s.lru.push_front(Node{key, std::move(value), weight, ++s.clock});
      it->second = s.lru.begin();
      s.weight += weight;
    }
    // The new value fits, so this never evicts it.
    while (s.weight > s.capacity) {
      auto victim = std::prev(s.lru.end());
      s.weight -= victim->weight;
      s.entries.erase(victim->key);
      dead.splice(dead.end(), s.lru, victim);
      ++s.evictions;
    }
  }

  // Removes `key`'s value and detaches its load; the caller destroys both unlocked.
  static void Remove(Shard& s, const K& key, LruList& dead, std::shared_ptr<Load>& detached)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(s.mu) {
    if (auto it = s.entries.find(key); it != s.entries.end()) {
      s.weight -= it->second->weight;
      dead.splice(dead.end(), s.lru, it->second);
      s.entries.erase(it);
    }
    if (auto it = s.loading.find(key); it != s.loading.end()) {
      detached = std::move(it->second);
      s.loading.erase(it);
    }
  }

  // Finishes `load` with `result`: detaches it, installs the value if it was still
  // attached, then wakes its waiters (after the detach, so a woken waiter's next Get
  // sees the outcome).
  static void Finish(Core& core, size_t shard, const std::shared_ptr<Load>& load, Result result) {
    Normalize(result);
    const size_t weight = result.ok() ? core.Weigh(load->key, **result) : 0;
    LruList dead;
    ValuePtr old;
    int listeners;
    Shard& s = core.shards[shard];
    {
      internal::MutexLock lock(&s.mu);
      if (!result.ok()) ++s.load_errors;
      auto it = s.loading.find(load->key);
      if (it != s.loading.end() && it->second == load) {
        s.loading.erase(it);
        if (result.ok()) Upsert(s, load->key, *result, weight, dead, old);
      }
      // Detached now (or before), so no one can join any more: the count is final.
      listeners = load->listeners;
    }
    // A blocking Get whose load nobody joined returns its own result: skip publishing.
    if (listeners > 0) load->Complete(std::move(result));
  }

  // Looks `key` up. On a hit returns the value in `*hit`; else joins or starts a load.
  // `async` says the caller will register a callback on the load (GetAsync).
  Miss Lookup(Shard& s, const K& key, ValuePtr* hit, bool async) {
    internal::MutexLock lock(&s.mu);
    if (auto it = s.entries.find(key); it != s.entries.end()) {
      ++s.hits;
      Touch(s, it->second);
      *hit = it->second->value;
      return {};
    }
    ++s.misses;
    auto [lit, inserted] = s.loading.try_emplace(key);
    if (inserted) {
      lit->second = std::make_shared<Load>(key);
      ++s.loads;
      if (async) lit->second->listeners = 1;
    } else {
      ++lit->second->listeners;
    }
    return Miss{lit->second, inserted};
  }

  std::shared_ptr<Core> core_;
};

template <typename K, typename V, typename Hash, typename Eq>
struct AsyncLruCache<K, V, Hash, Eq>::Completion::Pending {
  Pending(std::shared_ptr<Core> c, size_t s, std::shared_ptr<Load> l)
      : core(std::move(c)), shard(s), load(std::move(l)) {}
  ~Pending() {
    if (!fired.exchange(true)) {
      Finish(*core, shard, load,
             absl::CancelledError(absl::StrCat("AsyncLruCache: the loader of key ",
                                               DescribeKey(load->key),
                                               " dropped its Completion without calling it")));
    }
  }
  Pending(const Pending&) = delete;
  Pending& operator=(const Pending&) = delete;

  void Fire(Result result) {
    if (!fired.exchange(true)) Finish(*core, shard, load, std::move(result));
  }

  const std::shared_ptr<Core> core;
  const size_t shard;
  const std::shared_ptr<Load> load;
  std::atomic<bool> fired{false};
};

template <typename K, typename V, typename Hash, typename Eq>
AsyncLruCache<K, V, Hash, Eq>::AsyncLruCache(Options options) : core_(std::make_shared<Core>()) {
  size_t n = 1;
  int bits = 0;
  while (n < options.num_shards) {
    n <<= 1;
    ++bits;
  }
  while (n > 1 && n > options.capacity) {
    n >>= 1;
    --bits;
  }
  core_->num_shards = n;
  core_->shard_shift = 64 - bits;
  core_->weigher = std::move(options.weigher);
  core_->shards = std::make_unique<Shard[]>(n);
  for (size_t i = 0; i < n; ++i) {
    core_->shards[i].capacity = options.capacity / n + (i < options.capacity % n ? 1 : 0);
  }
}

template <typename K, typename V, typename Hash, typename Eq>
AsyncLruCache<K, V, Hash, Eq>::~AsyncLruCache() {
  std::vector<std::shared_ptr<Load>> orphans;
  for (size_t i = 0; i < core_->num_shards; ++i) {
    Shard& s = core_->shards[i];
    LruList dead;
    internal::MutexLock lock(&s.mu);
    for (auto& [key, load] : s.loading) orphans.push_back(std::move(load));
    s.loading.clear();
    s.entries.clear();
    dead.swap(s.lru);
    s.weight = 0;
  }
  for (auto& load : orphans) {
    load->Complete(absl::CancelledError(
        absl::StrCat("AsyncLruCache destroyed while loading key ", DescribeKey(load->key))));
  }
}

template <typename K, typename V, typename Hash, typename Eq>
template <typename Loader>
auto AsyncLruCache<K, V, Hash, Eq>::Get(const K& key, Loader&& loader) -> Result {
  static_assert(std::is_invocable_v<Loader&>, "loader must be callable with no arguments");
  const size_t shard = core_->ShardOf(key);
  ValuePtr hit;
  Miss miss = Lookup(core_->shards[shard], key, &hit, false);
  if (miss.load == nullptr) return hit;
  if (!miss.started) {
    if (miss.load->IsLoaderThread()) {
      return CycleError(key);
    }
    return miss.load->Wait();
  }
  // From here on only locals are used, so the cache may be destroyed while the loader
  // runs (see the file comment).
  std::shared_ptr<Core> core = core_;
  // Finishes the load even if the loader unwinds (exceptions are not used in txfn, but a
  // host's loader might throw; its waiters then get Cancelled rather than hang).
  struct Guard {
    ~Guard() {
      if (!finished) {
        Finish(*core, shard, load, absl::CancelledError("AsyncLruCache: loader did not return"));
      }
    }
    Core* core;
    size_t shard;
    const std::shared_ptr<Load>& load;
    bool finished = false;
  } guard{core.get(), shard, miss.load};
  Result result = std::invoke(loader);
  Normalize(result);
  guard.finished = true;
  Finish(*core, shard, miss.load, result);
  return result;
}

template <typename K, typename V, typename Hash, typename Eq>
void AsyncLruCache<K, V, Hash, Eq>::GetAsync(const K& key, AsyncLoader loader, Callback done) {
  if (!done) done = [](Result) {};  // an empty callback just discards the result
  const size_t shard = core_->ShardOf(key);
  ValuePtr hit;
  Miss miss = Lookup(core_->shards[shard], key, &hit, true);
  if (miss.load == nullptr) {
    done(std::move(hit));
    return;
  }
  if (!miss.started) {
    if (miss.load->IsLoaderThread()) {
      done(CycleError(key));
      return;
    }
    miss.load->OnDone(std::move(done));
    return;
  }
  // Registered before the loader runs, so a synchronous completion reaches it.
  miss.load->OnDone(std::move(done));
  Completion completion(std::make_shared<typename Completion::Pending>(core_, shard, miss.load));
  if (loader) {
    loader(std::move(completion));
  } else {
    completion(absl::InvalidArgumentError("AsyncLruCache::GetAsync: empty loader"));
  }
  miss.load->LeaveLoader();
}

template <typename K, typename V, typename Hash, typename Eq>
template <typename Executor, typename Loader>
void AsyncLruCache<K, V, Hash, Eq>::GetAsync(const K& key, Executor&& executor, Loader loader,
                                             Callback done) {
  static_assert(std::is_invocable_v<Loader&>, "loader must be callable with no arguments");
  GetAsync(
      key,
      [&executor, loader = std::move(loader)](Completion completion) mutable {
        std::shared_ptr<Load> load = completion.pending_->load;
        executor([completion = std::move(completion), load = std::move(load),
                  loader = std::move(loader)]() mutable {
          load->EnterLoader();
          Result result = std::invoke(loader);
          load->LeaveLoader();
          completion(std::move(result));
        });
      },
      std::move(done));
}

template <typename K, typename V, typename Hash, typename Eq>
auto AsyncLruCache<K, V, Hash, Eq>::GetIfPresent(const K& key) -> ValuePtr {
  Shard& s = core_->shards[core_->ShardOf(key)];
  internal::MutexLock lock(&s.mu);
  auto it = s.entries.find(key);
  if (it == s.entries.end()) {
    ++s.misses;
    return nullptr;
  }
  ++s.hits;
  Touch(s, it->second);
  return it->second->value;
}

template <typename K, typename V, typename Hash, typename Eq>
void AsyncLruCache<K, V, Hash, Eq>::Put(const K& key, ValuePtr value) {
  if (value == nullptr) {
    Invalidate(key);
    return;
  }
  const size_t weight = core_->Weigh(key, *value);
  LruList dead;
  ValuePtr old;
  std::shared_ptr<Load> detached;
  Shard& s = core_->shards[core_->ShardOf(key)];
  internal::MutexLock lock(&s.mu);
  if (!s.loading.empty()) {
    if (auto it = s.loading.find(key); it != s.loading.end()) {
      detached = std::move(it->second);
      s.loading.erase(it);
    }
  }
  Upsert(s, key, std::move(value), weight, dead, old);
}

template <typename K, typename V, typename Hash, typename Eq>
void AsyncLruCache<K, V, Hash, Eq>::Invalidate(const K& key) {
  LruList dead;
  std::shared_ptr<Load> detached;
  Shard& s = core_->shards[core_->ShardOf(key)];
  internal::MutexLock lock(&s.mu);
  Remove(s, key, dead, detached);
}

template <typename K, typename V, typename Hash, typename Eq>
void AsyncLruCache<K, V, Hash, Eq>::InvalidateAll() {
  for (size_t i = 0; i < core_->num_shards; ++i) {
    Shard& s = core_->shards[i];
    LruList dead;
    absl::flat_hash_map<K, std::shared_ptr<Load>, Hash, Eq> detached;
    internal::MutexLock lock(&s.mu);
    s.entries.clear();
    dead.swap(s.lru);
    detached.swap(s.loading);
    s.weight = 0;
  }
}

template <typename K, typename V, typename Hash, typename Eq>
template <typename Pred>
void AsyncLruCache<K, V, Hash, Eq>::InvalidateIf(Pred pred) {
  for (size_t i = 0; i < core_->num_shards; ++i) {
    Shard& s = core_->shards[i];
    LruList dead;
    std::vector<std::shared_ptr<Load>> detached;
    internal::MutexLock lock(&s.mu);
    std::vector<K> doomed;
    for (const auto& [key, it] : s.entries) {
      if (pred(key)) doomed.push_back(key);
    }
    for (const auto& [key, load] : s.loading) {
      if (pred(key) && !s.entries.contains(key)) doomed.push_back(key);
    }
    for (const K& key : doomed) Remove(s, key, dead, detached.emplace_back());
  }
}

template <typename K, typename V, typename Hash, typename Eq>
auto AsyncLruCache<K, V, Hash, Eq>::stats() const -> Stats {
  Stats stats;
  for (size_t i = 0; i < core_->num_shards; ++i) {
    const Shard& s = core_->shards[i];
    internal::MutexLock lock(&s.mu);
    stats.hits += s.hits;
    stats.misses += s.misses;
    stats.loads += s.loads;
    stats.load_errors += s.load_errors;
    stats.evictions += s.evictions;
    stats.weight += s.weight;
    stats.entries += s.entries.size();
    stats.loads_in_flight += s.loading.size();
  }
  return stats;
}

}  // namespace txfn

#endif  // TXFN_ASYNC_LRU_CACHE_H_

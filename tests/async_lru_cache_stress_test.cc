// Stress test for AsyncLruCache: many threads, Zipfian keys, random invalidations,
// puts and failing loaders, blocking and asynchronous loads (completed on other
// threads). Checks two invariants:
//
// 1. Single flight per generation. Every key has a generation, bumped by the test
//    before each Invalidate/Put/InvalidateAll of it and published after the call
//    returns. A load is "checked" when no write of its key was in progress when its Get
//    began and none began before its loader ran; for such loads the loader registers
//    (key, generation) while it runs and no two may be registered at once. (Unchecked
//    loads may legitimately overlap: a write can detach a load before its loader runs,
//    and the next load then reads the same generation.)
// 2. Freshness. A Get that starts after a write of its key was published never returns
//    a value whose generation is older than that write (each loader encodes the
//    generation it read into the value).
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <deque>
#include <functional>
#include <memory>
#include <random>
#include <shared_mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "gtest/gtest.h"
#include "txfn/async_lru_cache.h"
#include "txfn/internal/mutex.h"

namespace txfn {
namespace {

constexpr int kKeys = 1000;
constexpr int kThreads = 4;
constexpr int kOpsPerThread = 200000;

struct Val {
  int key;
  uint64_t gen;
};
using Cache = AsyncLruCache<int, Val>;
using Result = Cache::Result;

struct KeyState {
  std::atomic<uint64_t> gen{0};        // bumped before a write's cache call
  std::atomic<uint64_t> published{0};  // == gen once that call has returned
  std::mutex writer;                   // serialises writes of this key
  internal::Mutex mu;
  std::vector<uint64_t> active ABSL_GUARDED_BY(mu);  // generations of running checked loads
};

class Harness {
 public:
  Harness() : keys_(std::make_unique<KeyState[]>(kKeys)) {
    Cache::Options options;
    options.capacity = 200;
    options.num_shards = 8;
    cache_ = std::make_unique<Cache>(std::move(options));
    // Zipf(0.99) CDF over the key ranks.
    cdf_.resize(kKeys);
    double sum = 0;
    for (int i = 0; i < kKeys; ++i) {
      sum += 1.0 / std::pow(i + 1, 0.99);
      cdf_[i] = sum;
    }
    for (double& c : cdf_) c /= sum;
  }

  void Worker(int seed) {
    std::mt19937_64 rng(seed);
    std::uniform_real_distribution<double> unit(0, 1);
    for (int op = 0; op < kOpsPerThread; ++op) {
      RunParked(rng);
      const int key =
          static_cast<int>(std::lower_bound(cdf_.begin(), cdf_.end(), unit(rng)) - cdf_.begin());
      const double r = unit(rng);
      if (r < 0.55) {
        BlockingGet(key, rng());
      } else if (r < 0.90) {
        AsyncGet(key, rng());
      } else if (r < 0.96) {
        Write(key, /*put=*/false);
      } else if (r < 0.9995) {
        Write(key, /*put=*/true);
      } else {
        WriteAll();
      }
    }
  }

  // Completes parked async loads until none remain (after the workers stop).
  void Drain() {
    std::mt19937_64 rng(7);
    while (RunParked(rng)) {
    }
  }

  Cache::Stats Stats() const { return cache_->stats(); }
  void DestroyCache() { cache_.reset(); }

  std::atomic<int> duplicate_loads{0};
  std::atomic<int> stale_values{0};
  std::atomic<int> bad_errors{0};
  std::atomic<int> errors_seen{0};
  std::atomic<int> async_issued{0};
  std::atomic<int> async_done{0};
  std::atomic<int> checked_loads{0};

 private:
  // Generation snapshot taken when a Get starts.
  struct Start {
    uint64_t gen;
    bool quiet;      // no write of the key was in progress
    uint64_t fresh;  // the newest published write: results must be at least this new
  };

  Start Begin(int key) {
    KeyState& k = keys_[key];
    uint64_t published = k.published.load();
    uint64_t gen = k.gen.load();
    uint64_t published_after = k.published.load();
    return Start{gen, published_after == gen, published};
  }

  // The body of a load: reads the generation, registers a checked load, maybe fails.
  Result Load(int key, Start start, uint64_t dice) {
    KeyState& k = keys_[key];
    const uint64_t gen = k.gen.load();
    const bool checked = start.quiet && gen == start.gen;
    if (checked) {
      checked_loads.fetch_add(1);
      internal::MutexLock lock(&k.mu);
      if (std::find(k.active.begin(), k.active.end(), gen) != k.active.end()) {
        duplicate_loads.fetch_add(1);
        ADD_FAILURE() << "two concurrent loads of key " << key << " generation " << gen;
      }
      k.active.push_back(gen);
    }
    std::this_thread::yield();  // widen the window in which others join
    if (checked) {
      internal::MutexLock lock(&k.mu);
      k.active.erase(std::find(k.active.begin(), k.active.end(), gen));
    }
    if (dice % 10 == 0) return absl::UnavailableError("injected loader failure");
    return std::make_shared<const Val>(Val{key, gen});
  }

  void Check(int key, const Start& start, const Result& r) {
    if (!r.ok()) {
      errors_seen.fetch_add(1);
      const bool injected = r.status().code() == absl::StatusCode::kUnavailable;
      const bool dropped = r.status().code() == absl::StatusCode::kCancelled &&
                           r.status().message().find("dropped") != std::string::npos;
      if (!injected && !dropped) {
        bad_errors.fetch_add(1);
        ADD_FAILURE() << "unexpected error for key " << key << ": " << r.status();
      }
      return;
    }
    const Val& v = **r;
    if (v.key != key || v.gen < start.fresh) {
      stale_values.fetch_add(1);
      ADD_FAILURE() << "key " << key << " got value of key " << v.key << " generation " << v.gen
                    << ", but generation " << start.fresh << " was published before the Get";
    }
  }

  void BlockingGet(int key, uint64_t dice) {
    const Start start = Begin(key);
    Result r = cache_->Get(key, [&] { return Load(key, start, dice); });
    Check(key, start, r);
  }

  void AsyncGet(int key, uint64_t dice) {
    const Start start = Begin(key);
    async_issued.fetch_add(1);
    if ((dice >> 16) % 2 == 0) {
      // A blocking loader on an "executor" that runs the task inline or parks it.
      cache_->GetAsync(
          key,
          [this, dice](std::function<void()> task) {
            if (dice % 4 == 0) {
              task();
              return;
            }
            internal::MutexLock lock(&parked_mu_);
            parked_.push_back(std::move(task));
          },
          [this, key, start, dice] { return Load(key, start, dice); },
          [this, key, start](Result r) {
            Check(key, start, r);
            async_done.fetch_add(1);
          });
      return;
    }
    cache_->GetAsync(
        key,
        [this, key, start, dice](Cache::Completion done) {
          if (dice % 3 == 0) {  // completes inline
            done(Load(key, start, dice));
            return;
          }
          if (dice % 97 == 1) return;  // drops the Completion: waiters get Cancelled
          internal::MutexLock lock(&parked_mu_);
          parked_.push_back([this, key, start, dice, done] { done(Load(key, start, dice)); });
        },
        [this, key, start](Result r) {
          Check(key, start, r);
          async_done.fetch_add(1);
        });
  }

  void Write(int key, bool put) {
    std::shared_lock<std::shared_mutex> all(all_writers_);
    KeyState& k = keys_[key];
    std::lock_guard<std::mutex> lock(k.writer);
    const uint64_t gen = k.gen.fetch_add(1) + 1;
    if (put) {
      cache_->Put(key, std::make_shared<const Val>(Val{key, gen}));
    } else {
      cache_->Invalidate(key);
    }
    k.published.store(gen);
  }

  void WriteAll() {
    std::unique_lock<std::shared_mutex> all(all_writers_);
    for (int i = 0; i < kKeys; ++i) keys_[i].gen.fetch_add(1);
    cache_->InvalidateAll();
    for (int i = 0; i < kKeys; ++i) keys_[i].published.store(keys_[i].gen.load());
  }

  // Runs up to a few parked loads, on this thread. Returns whether it ran any.
  bool RunParked(std::mt19937_64& rng) {
    bool ran = false;
    for (int i = 0; i < 2; ++i) {
      std::function<void()> task;
      {
        internal::MutexLock lock(&parked_mu_);
        if (parked_.empty()) break;
        // Not always in order, so loads finish out of order.
        size_t pick = rng() % parked_.size();
        task = std::move(parked_[pick]);
        parked_.erase(parked_.begin() + static_cast<std::ptrdiff_t>(pick));
      }
      task();
      ran = true;
    }
    return ran;
  }

  std::unique_ptr<KeyState[]> keys_;
  std::vector<double> cdf_;
  std::unique_ptr<Cache> cache_;
  std::shared_mutex all_writers_;
  internal::Mutex parked_mu_;
  std::deque<std::function<void()>> parked_ ABSL_GUARDED_BY(parked_mu_);
};

TEST(AsyncLruCacheStressTest, SingleFlightPerGenerationAndNoStaleReads) {
  Harness h;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) threads.emplace_back([&h, t] { h.Worker(1000 + t); });
  for (auto& t : threads) t.join();
  h.Drain();
  EXPECT_EQ(h.async_done.load(), h.async_issued.load());
  const Cache::Stats stats = h.Stats();
  EXPECT_EQ(stats.loads_in_flight, 0u);
  h.DestroyCache();
  EXPECT_EQ(h.duplicate_loads.load(), 0);
  EXPECT_EQ(h.stale_values.load(), 0);
  EXPECT_EQ(h.bad_errors.load(), 0);
  // The run exercised what it claims to.
  EXPECT_GT(h.checked_loads.load(), 1000);
  EXPECT_GT(h.errors_seen.load(), 100);
  // Some misses joined a load in flight instead of starting one.
  EXPECT_GT(stats.misses, stats.loads);
  std::printf(
      "checked loads %d, errors %d, async gets %d; cache: %llu hits, %llu misses, "
      "%llu loads, %llu evictions\n",
      h.checked_loads.load(), h.errors_seen.load(), h.async_issued.load(),
      static_cast<unsigned long long>(stats.hits), static_cast<unsigned long long>(stats.misses),
      static_cast<unsigned long long>(stats.loads),
      static_cast<unsigned long long>(stats.evictions));
}

TEST(AsyncLruCacheStressTest, DestroyWhileAsyncLoadsPending) {
  // Loads parked on another thread's queue outlive the cache; every callback still
  // runs exactly once (with its result or Cancelled).
  for (int round = 0; round < 20; ++round) {
    internal::Mutex mu;
    std::vector<Cache::Completion> parked;
    std::atomic<int> issued = 0;
    std::atomic<int> done = 0;
    auto cache = std::make_unique<Cache>();
    std::vector<std::thread> threads;
    for (int t = 0; t < 3; ++t) {
      threads.emplace_back([&, t] {
        for (int i = 0; i < 50; ++i) {
          issued.fetch_add(1);
          cache->GetAsync(
              (i * 7 + t) % 20,
              [&](Cache::Completion c) {
                internal::MutexLock lock(&mu);
                parked.push_back(std::move(c));
              },
              [&](Result r) {
                EXPECT_TRUE(r.ok() || r.status().code() == absl::StatusCode::kCancelled);
                done.fetch_add(1);
              });
        }
      });
    }
    std::thread completer([&] {
      for (int i = 0; i < 40; ++i) {
        std::vector<Cache::Completion> batch;
        {
          internal::MutexLock lock(&mu);
          batch.swap(parked);
        }
        for (auto& c : batch) c(std::make_shared<const Val>(Val{0, 0}));
        std::this_thread::yield();
      }
    });
    for (auto& t : threads) t.join();
    cache.reset();
    completer.join();
    {
      internal::MutexLock lock(&mu);
      parked.clear();  // late drops after destruction: harmless
    }
    EXPECT_EQ(done.load(), issued.load());
  }
}

}  // namespace
}  // namespace txfn

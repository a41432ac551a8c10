#include "txfn/async_lru_cache.h"

#include <atomic>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "txfn/internal/mutex.h"

namespace txfn {
namespace {

using ::testing::HasSubstr;

using Cache = AsyncLruCache<std::string, int>;
using Result = Cache::Result;

Result Value(int v) { return std::make_shared<const int>(v); }

// A loader that counts its calls and returns `value`.
struct CountingLoader {
  std::atomic<int>* calls;
  int value;
  Result operator()() const {
    calls->fetch_add(1);
    return Value(value);
  }
};

// Collects GetAsync results.
struct Results {
  std::vector<Result> got;
  Cache::Callback Collect() {
    return [this](Result r) { got.push_back(std::move(r)); };
  }
};

// An async loader that parks its Completion for the test to call later.
struct ParkedLoader {
  std::vector<Cache::Completion>* parked;
  std::atomic<int>* calls;
  void operator()(Cache::Completion c) const {
    calls->fetch_add(1);
    parked->push_back(std::move(c));
  }
};

Cache::Options OneShard(size_t capacity) {
  Cache::Options o;
  o.capacity = capacity;
  o.num_shards = 1;
  return o;
}

TEST(AsyncLruCacheTest, LoadsOnMissThenHits) {
  Cache cache;
  std::atomic<int> calls = 0;
  Result a = cache.Get("k", CountingLoader{&calls, 7});
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(**a, 7);
  Result b = cache.Get("k", CountingLoader{&calls, 8});
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(a->get(), b->get());
  EXPECT_EQ(calls, 1);
  Cache::Stats s = cache.stats();
  EXPECT_EQ(s.hits, 1u);
  EXPECT_EQ(s.misses, 1u);
  EXPECT_EQ(s.loads, 1u);
  EXPECT_EQ(s.load_errors, 0u);
  EXPECT_EQ(s.entries, 1u);
  EXPECT_EQ(s.weight, 1u);
  EXPECT_EQ(s.loads_in_flight, 0u);
}

TEST(AsyncLruCacheTest, ConcurrentBlockingMissesRunLoaderOnce) {
  constexpr int kThreads = 8;
  Cache cache;
  std::atomic<int> calls = 0;
  std::vector<Result> results(kThreads);
  std::vector<std::thread> threads;
  for (int i = 0; i < kThreads; ++i) {
    threads.emplace_back([&, i] {
      results[i] = cache.Get("k", [&]() -> Result {
        calls.fetch_add(1);
        // Hold the load open until every thread has missed (and so joined it).
        while (cache.stats().misses < kThreads) std::this_thread::yield();
        return Value(42);
      });
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(calls, 1);
  for (const Result& r : results) {
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(r->get(), results[0]->get());
  }
  EXPECT_EQ(cache.stats().loads, 1u);
}

TEST(AsyncLruCacheTest, AsyncMissesJoinOneLoadCompletedLater) {
  Cache cache;
  std::vector<Cache::Completion> parked;
  std::atomic<int> calls = 0;
  Results results;
  for (int i = 0; i < 3; ++i) cache.GetAsync("k", ParkedLoader{&parked, &calls}, results.Collect());
  EXPECT_EQ(calls, 1);
  EXPECT_TRUE(results.got.empty());
  EXPECT_EQ(cache.stats().loads_in_flight, 1u);
  ASSERT_EQ(parked.size(), 1u);
  parked[0](Value(5));
  ASSERT_EQ(results.got.size(), 3u);
  for (const Result& r : results.got) {
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(**r, 5);
  }
  // Installed: the next lookup hits inline without a load.
  cache.GetAsync("k", ParkedLoader{&parked, &calls}, results.Collect());
  EXPECT_EQ(calls, 1);
  EXPECT_EQ(results.got.size(), 4u);
  // A second call of the Completion is ignored.
  parked[0](Value(6));
  EXPECT_EQ(*cache.GetIfPresent("k"), 5);
}

TEST(AsyncLruCacheTest, SynchronousAsyncLoaderCallsBackInline) {
  Cache cache;
  Results results;
  cache.GetAsync(
      "k", [](Cache::Completion c) { c(Value(1)); }, results.Collect());
  ASSERT_EQ(results.got.size(), 1u);
  EXPECT_EQ(**results.got[0], 1);
}

TEST(AsyncLruCacheTest, GetAsyncWithoutCallbackWarmsTheCache) {
  Cache cache;
  cache.GetAsync(
      "k", [](Cache::Completion c) { c(Value(2)); }, nullptr);
  EXPECT_EQ(*cache.GetIfPresent("k"), 2);
}

// A one-thread host executor.
class TestExecutor {
 public:
  TestExecutor() : worker_([this] { Run(); }) {}
  ~TestExecutor() {
    {
      internal::MutexLock lock(&mu_);
      stop_ = true;
    }
    cv_.SignalAll();
    worker_.join();
  }
  void Schedule(std::function<void()> task) {
    {
      internal::MutexLock lock(&mu_);
      tasks_.push_back(std::move(task));
    }
    cv_.SignalAll();
  }
  std::thread::id id() const { return worker_.get_id(); }

 private:
  void Run() {
    for (;;) {
      std::function<void()> task;
      {
        internal::MutexLock lock(&mu_);
        WaitForWork();
        if (tasks_.empty()) return;
        task = std::move(tasks_.front());
        tasks_.pop_front();
      }
      task();
    }
  }
  // CondVar::Wait's annotation names the CondVar's own mutex pointer, which clang cannot
  // match with mu_: wait through a helper that states the real requirement.
  void WaitForWork() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) ABSL_NO_THREAD_SAFETY_ANALYSIS {
    cv_.Wait([this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return stop_ || !tasks_.empty(); });
  }

  internal::Mutex mu_;
  internal::CondVar cv_{&mu_};
  std::deque<std::function<void()>> tasks_ ABSL_GUARDED_BY(mu_);
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::thread worker_;  // last: starts after the fields it uses
};

TEST(AsyncLruCacheTest, AsyncLoaderCompletesOnHostExecutor) {
  TestExecutor executor;
  Cache cache;
  std::atomic<std::thread::id> loaded_on;
  std::atomic<int> done = 0;
  for (int i = 0; i < 4; ++i) {
    cache.GetAsync(
        "k",
        [&](Cache::Completion c) {
          executor.Schedule([&, c] {
            loaded_on = std::this_thread::get_id();
            c(Value(9));
          });
        },
        [&](Result r) {
          EXPECT_TRUE(r.ok() && **r == 9);
          done.fetch_add(1);
        });
  }
  // A blocking Get from this thread joins the same load.
  Result r = cache.Get("k", []() -> Result { return Value(-1); });
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(**r, 9);
  EXPECT_EQ(loaded_on.load(), executor.id());
  EXPECT_EQ(cache.stats().loads, 1u);
  while (done.load() < 4) std::this_thread::yield();
}

TEST(AsyncLruCacheTest, ExecutorOverloadRunsLoaderOnExecutor) {
  TestExecutor executor;
  Cache cache;
  auto schedule = [&](std::function<void()> task) { executor.Schedule(std::move(task)); };
  std::atomic<int> calls = 0;
  std::atomic<int> done = 0;
  std::atomic<std::thread::id> loaded_on;
  std::atomic<std::thread::id> called_back_on;
  // The load waits until all three requests are made, so that the later two
  // join it: a request made after the load completed is a hit, answered inline.
  std::atomic<bool> all_requested = false;
  for (int i = 0; i < 3; ++i) {
    cache.GetAsync(
        "k", schedule,
        [&]() -> Result {
          while (!all_requested.load()) std::this_thread::yield();
          calls.fetch_add(1);
          loaded_on = std::this_thread::get_id();
          return Value(11);
        },
        [&](Result r) {
          EXPECT_TRUE(r.ok() && **r == 11);
          called_back_on = std::this_thread::get_id();
          done.fetch_add(1);
        });
  }
  all_requested = true;
  while (done.load() < 3) std::this_thread::yield();
  EXPECT_EQ(calls, 1);
  EXPECT_EQ(loaded_on.load(), executor.id());
  EXPECT_EQ(called_back_on.load(), executor.id());
}

TEST(AsyncLruCacheTest, KeyCycleOnExecutorThreadFailsFast) {
  TestExecutor executor;
  Cache cache;
  auto schedule = [&](std::function<void()> task) { executor.Schedule(std::move(task)); };
  std::atomic<bool> finished = false;
  Result inner;
  Result outer;
  cache.GetAsync(
      "k", schedule,
      [&]() -> Result {
        inner = cache.Get("k", []() -> Result { return Value(0); });  // would deadlock
        return Value(1);
      },
      [&](Result r) {
        outer = std::move(r);
        finished = true;
      });
  while (!finished) std::this_thread::yield();
  EXPECT_EQ(inner.status().code(), absl::StatusCode::kFailedPrecondition);
  ASSERT_TRUE(outer.ok());
  EXPECT_EQ(**outer, 1);
}

TEST(AsyncLruCacheTest, ExecutorDroppingTaskCancelsWaiters) {
  Cache cache;
  Results results;
  cache.GetAsync(
      "k", [](std::function<void()>) {}, []() -> Result { return Value(1); }, results.Collect());
  ASSERT_EQ(results.got.size(), 1u);
  EXPECT_EQ(results.got[0].status().code(), absl::StatusCode::kCancelled);
}

TEST(AsyncLruCacheTest, ErrorReachesEveryWaiterAndIsNotCached) {
  Cache cache;
  std::vector<Cache::Completion> parked;
  std::atomic<int> calls = 0;
  std::vector<Result> results;
  std::optional<Result> retried;
  for (int i = 0; i < 3; ++i) {
    cache.GetAsync("k", ParkedLoader{&parked, &calls}, [&](Result r) {
      results.push_back(r);
      // The failed load is gone before waiters wake: a Get from a callback retries.
      if (!retried) retried = cache.Get("k", []() -> Result { return Value(3); });
    });
  }
  parked[0](absl::UnavailableError("disk on fire"));
  ASSERT_EQ(results.size(), 3u);
  for (const Result& r : results) {
    EXPECT_EQ(r.status().code(), absl::StatusCode::kUnavailable);
    EXPECT_THAT(r.status().message(), HasSubstr("disk on fire"));
  }
  ASSERT_TRUE(retried.has_value());
  ASSERT_TRUE(retried->ok());
  EXPECT_EQ(***retried, 3);
  Cache::Stats s = cache.stats();
  EXPECT_EQ(s.loads, 2u);
  EXPECT_EQ(s.load_errors, 1u);
}

TEST(AsyncLruCacheTest, BlockingErrorIsNotCached) {
  Cache cache;
  std::atomic<int> calls = 0;
  Result r = cache.Get("k", [&]() -> Result {
    calls.fetch_add(1);
    return absl::NotFoundError("nope");
  });
  EXPECT_EQ(r.status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(cache.GetIfPresent("k"), nullptr);
  r = cache.Get("k", CountingLoader{&calls, 1});
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(calls, 2);
}

TEST(AsyncLruCacheTest, NullValueIsAnInternalError) {
  Cache cache;
  Result r = cache.Get("k", []() -> Result { return Cache::ValuePtr(); });
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInternal);
  EXPECT_EQ(cache.stats().entries, 0u);
}

TEST(AsyncLruCacheTest, InvalidateDuringLoadKeepsResultOutOfCache) {
  Cache cache;
  std::vector<Cache::Completion> parked;
  std::atomic<int> calls = 0;
  Results before;
  cache.GetAsync("k", ParkedLoader{&parked, &calls}, before.Collect());
  cache.Invalidate("k");
  // A lookup that starts after Invalidate returned does not join the old load.
  Results after;
  cache.GetAsync("k", ParkedLoader{&parked, &calls}, after.Collect());
  EXPECT_EQ(calls, 2);
  ASSERT_EQ(parked.size(), 2u);
  parked[0](Value(1));  // the stale load
  ASSERT_EQ(before.got.size(), 1u);
  EXPECT_EQ(**before.got[0], 1);
  EXPECT_TRUE(after.got.empty());
  EXPECT_EQ(cache.GetIfPresent("k"), nullptr);
  parked[1](Value(2));
  ASSERT_EQ(after.got.size(), 1u);
  EXPECT_EQ(**after.got[0], 2);
  EXPECT_EQ(*cache.GetIfPresent("k"), 2);
}

TEST(AsyncLruCacheTest, PutDuringLoadWins) {
  Cache cache;
  std::vector<Cache::Completion> parked;
  std::atomic<int> calls = 0;
  Results results;
  cache.GetAsync("k", ParkedLoader{&parked, &calls}, results.Collect());
  cache.Put("k", std::make_shared<const int>(10));
  parked[0](Value(1));
  ASSERT_EQ(results.got.size(), 1u);
  EXPECT_EQ(**results.got[0], 1);
  EXPECT_EQ(*cache.GetIfPresent("k"), 10);
}

TEST(AsyncLruCacheTest, PutReplacesAndNullPutInvalidates) {
  Cache cache;
  cache.Put("k", std::make_shared<const int>(1));
  cache.Put("k", std::make_shared<const int>(2));
  EXPECT_EQ(*cache.GetIfPresent("k"), 2);
  EXPECT_EQ(cache.stats().entries, 1u);
  cache.Put("k", nullptr);
  EXPECT_EQ(cache.GetIfPresent("k"), nullptr);
  EXPECT_EQ(cache.stats().weight, 0u);
}

TEST(AsyncLruCacheTest, InvalidateAllClearsValuesAndDetachesLoads) {
  Cache cache;
  for (int i = 0; i < 50; ++i) cache.Put(std::to_string(i), std::make_shared<const int>(i));
  std::vector<Cache::Completion> parked;
  std::atomic<int> calls = 0;
  Results results;
  cache.GetAsync("loading", ParkedLoader{&parked, &calls}, results.Collect());
  cache.InvalidateAll();
  Cache::Stats s = cache.stats();
  EXPECT_EQ(s.entries, 0u);
  EXPECT_EQ(s.weight, 0u);
  EXPECT_EQ(s.loads_in_flight, 0u);
  EXPECT_EQ(cache.GetIfPresent("7"), nullptr);
  parked[0](Value(1));
  ASSERT_EQ(results.got.size(), 1u);
  EXPECT_TRUE(results.got[0].ok());
  EXPECT_EQ(cache.GetIfPresent("loading"), nullptr);
}

TEST(AsyncLruCacheTest, InvalidateIfRemovesOnlyMatchingValuesAndLoads) {
  Cache cache;
  for (int i = 0; i < 50; ++i) {
    cache.Put(absl::StrCat(i % 2 == 0 ? "gone/" : "kept/", i), std::make_shared<const int>(i));
  }
  std::vector<Cache::Completion> parked;
  std::atomic<int> calls = 0;
  Results gone, kept;
  cache.GetAsync("gone/loading", ParkedLoader{&parked, &calls}, gone.Collect());
  cache.GetAsync("kept/loading", ParkedLoader{&parked, &calls}, kept.Collect());
  cache.InvalidateIf([](const std::string& key) { return key.starts_with("gone/"); });
  Cache::Stats s = cache.stats();
  EXPECT_EQ(s.entries, 25u);
  EXPECT_EQ(s.loads_in_flight, 1u);
  EXPECT_EQ(cache.GetIfPresent("gone/4"), nullptr);
  EXPECT_EQ(*cache.GetIfPresent("kept/5"), 5);
  ASSERT_EQ(parked.size(), 2u);
  parked[0](Value(1));  // the detached load answers its waiter but is not cached
  parked[1](Value(2));
  ASSERT_EQ(gone.got.size(), 1u);
  EXPECT_EQ(**gone.got[0], 1);
  EXPECT_EQ(cache.GetIfPresent("gone/loading"), nullptr);
  EXPECT_EQ(*cache.GetIfPresent("kept/loading"), 2);
}

TEST(AsyncLruCacheTest, EvictsLeastRecentlyUsed) {
  Cache cache(OneShard(3));
  std::atomic<int> calls = 0;
  for (const char* k : {"a", "b", "c"}) ASSERT_TRUE(cache.Get(k, CountingLoader{&calls, 0}).ok());
  ASSERT_TRUE(cache.Get("a", CountingLoader{&calls, 0}).ok());  // a is now most recent
  ASSERT_TRUE(cache.Get("d", CountingLoader{&calls, 0}).ok());  // evicts b
  EXPECT_EQ(cache.GetIfPresent("b"), nullptr);
  EXPECT_NE(cache.GetIfPresent("a"), nullptr);
  EXPECT_NE(cache.GetIfPresent("c"), nullptr);
  EXPECT_NE(cache.GetIfPresent("d"), nullptr);
  Cache::Stats s = cache.stats();
  EXPECT_EQ(s.evictions, 1u);
  EXPECT_EQ(s.entries, 3u);
  EXPECT_EQ(s.weight, 3u);
}

TEST(AsyncLruCacheTest, LargerShardsStillEvictLeastRecentlyUsed) {
  // Past 8 entries a hit on an already-recent entry skips the list move; eviction must
  // still take the least recently used entries and never one that keeps being hit.
  Cache cache(OneShard(64));
  for (int i = 0; i < 64; ++i) cache.Put(std::to_string(i), std::make_shared<const int>(i));
  ASSERT_NE(cache.GetIfPresent("0"), nullptr);  // the oldest becomes the newest
  cache.Put("new", std::make_shared<const int>(-1));
  EXPECT_NE(cache.GetIfPresent("0"), nullptr);
  EXPECT_EQ(cache.GetIfPresent("1"), nullptr);
  for (int i = 0; i < 500; ++i) {
    ASSERT_NE(cache.GetIfPresent("0"), nullptr) << i;
    ASSERT_NE(cache.GetIfPresent("new"), nullptr) << i;
    cache.Put("more" + std::to_string(i), std::make_shared<const int>(i));
  }
  for (int i = 2; i < 64; ++i) EXPECT_EQ(cache.GetIfPresent(std::to_string(i)), nullptr);
  EXPECT_EQ(cache.stats().entries, 64u);
}

TEST(AsyncLruCacheTest, WeigherBoundsTotalWeight) {
  Cache::Options o = OneShard(10);
  o.weigher = [](const std::string&, const int& v) { return static_cast<size_t>(v); };
  Cache cache(o);
  cache.Put("four", std::make_shared<const int>(4));
  cache.Put("three", std::make_shared<const int>(3));
  cache.Put("two", std::make_shared<const int>(2));
  EXPECT_EQ(cache.stats().weight, 9u);
  cache.Put("six", std::make_shared<const int>(6));  // evicts four, then three
  Cache::Stats s = cache.stats();
  EXPECT_EQ(s.weight, 8u);
  EXPECT_EQ(s.evictions, 2u);
  EXPECT_EQ(cache.GetIfPresent("four"), nullptr);
  EXPECT_EQ(cache.GetIfPresent("three"), nullptr);
  EXPECT_NE(cache.GetIfPresent("two"), nullptr);
}

TEST(AsyncLruCacheTest, ValueHeavierThanCapacityIsReturnedNotCached) {
  Cache::Options o = OneShard(10);
  o.weigher = [](const std::string&, const int& v) { return static_cast<size_t>(v); };
  Cache cache(o);
  cache.Put("small", std::make_shared<const int>(5));
  std::atomic<int> calls = 0;
  Result r = cache.Get("huge", CountingLoader{&calls, 11});
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(**r, 11);
  EXPECT_EQ(cache.GetIfPresent("huge"), nullptr);
  EXPECT_NE(cache.GetIfPresent("small"), nullptr);  // nothing was evicted for it
  ASSERT_TRUE(cache.Get("huge", CountingLoader{&calls, 11}).ok());
  EXPECT_EQ(calls, 2);
  EXPECT_EQ(cache.stats().evictions, 0u);
}

TEST(AsyncLruCacheTest, InFlightLoadsWeighNothingAndAreNotEvicted) {
  Cache cache(OneShard(2));
  std::vector<Cache::Completion> parked;
  std::atomic<int> calls = 0;
  Results results;
  cache.GetAsync("slow", ParkedLoader{&parked, &calls}, results.Collect());
  for (int i = 0; i < 10; ++i) cache.Put(std::to_string(i), std::make_shared<const int>(i));
  Cache::Stats s = cache.stats();
  EXPECT_EQ(s.weight, 2u);
  EXPECT_EQ(s.entries, 2u);
  EXPECT_EQ(s.loads_in_flight, 1u);
  cache.GetAsync("slow", ParkedLoader{&parked, &calls}, results.Collect());  // still joins
  EXPECT_EQ(calls, 1);
  parked[0](Value(1));
  EXPECT_EQ(results.got.size(), 2u);
  EXPECT_NE(cache.GetIfPresent("slow"), nullptr);
  EXPECT_EQ(cache.stats().weight, 2u);
}

TEST(AsyncLruCacheTest, EvictedValueStaysAliveForHolders) {
  Cache cache(OneShard(1));
  Result held = cache.Get("a", []() -> Result { return Value(1); });
  ASSERT_TRUE(held.ok());
  cache.Put("b", std::make_shared<const int>(2));
  EXPECT_EQ(cache.GetIfPresent("a"), nullptr);
  EXPECT_EQ(**held, 1);
  EXPECT_EQ(held->use_count(), 1);
}

TEST(AsyncLruCacheTest, RecursiveGetOfOwnKeyFailsFast) {
  Cache cache;
  Result inner;
  Result outer = cache.Get("self", [&]() -> Result {
    inner = cache.Get("self", []() -> Result { return Value(0); });
    return Value(1);
  });
  EXPECT_EQ(inner.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(inner.status().message(), HasSubstr("'self'"));
  EXPECT_THAT(inner.status().message(), HasSubstr("cycle"));
  ASSERT_TRUE(outer.ok());
  EXPECT_EQ(**outer, 1);
}

TEST(AsyncLruCacheTest, IndirectKeyCycleFailsFast) {
  Cache cache;
  Result a = cache.Get("a", [&]() -> Result {
    Result b = cache.Get("b", [&]() -> Result {
      Result again = cache.Get("a", []() -> Result { return Value(0); });
      if (!again.ok()) return again.status();
      return Value(2);
    });
    if (!b.ok()) return b.status();
    return Value(1);
  });
  EXPECT_EQ(a.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(a.status().message(), HasSubstr("'a'"));
  // Nothing was cached or left in flight.
  EXPECT_EQ(cache.stats().loads_in_flight, 0u);
  EXPECT_EQ(cache.stats().entries, 0u);
}

TEST(AsyncLruCacheTest, RecursiveGetAsyncOfOwnKeyFailsFast) {
  Cache cache;
  Results inner;
  Results outer;
  cache.GetAsync(
      "self",
      [&](Cache::Completion c) {
        cache.GetAsync(
            "self", [](Cache::Completion c2) { c2(Value(0)); }, inner.Collect());
        c(Value(1));
      },
      outer.Collect());
  ASSERT_EQ(inner.got.size(), 1u);
  EXPECT_EQ(inner.got[0].status().code(), absl::StatusCode::kFailedPrecondition);
  ASSERT_EQ(outer.got.size(), 1u);
  EXPECT_TRUE(outer.got[0].ok());
}

TEST(AsyncLruCacheTest, SameThreadMayJoinAsyncLoadAfterLoaderReturned) {
  // The loader call has returned, so this thread is no longer "the loader": no cycle.
  Cache cache;
  std::vector<Cache::Completion> parked;
  std::atomic<int> calls = 0;
  Results first;
  Results second;
  cache.GetAsync("k", ParkedLoader{&parked, &calls}, first.Collect());
  cache.GetAsync("k", ParkedLoader{&parked, &calls}, second.Collect());
  EXPECT_TRUE(second.got.empty());
  parked[0](Value(4));
  ASSERT_EQ(second.got.size(), 1u);
  EXPECT_TRUE(second.got[0].ok());
}

TEST(AsyncLruCacheTest, DroppedCompletionCancelsWaiters) {
  Cache cache;
  std::vector<Cache::Completion> parked;
  std::atomic<int> calls = 0;
  Results results;
  cache.GetAsync("k", ParkedLoader{&parked, &calls}, results.Collect());
  cache.GetAsync("k", ParkedLoader{&parked, &calls}, results.Collect());
  parked.clear();
  ASSERT_EQ(results.got.size(), 2u);
  for (const Result& r : results.got) {
    EXPECT_EQ(r.status().code(), absl::StatusCode::kCancelled);
    EXPECT_THAT(r.status().message(), HasSubstr("dropped its Completion"));
  }
  EXPECT_EQ(cache.stats().loads_in_flight, 0u);
  EXPECT_EQ(cache.stats().load_errors, 1u);
}

TEST(AsyncLruCacheTest, DestroyWithLoadsInFlightCancelsWaiters) {
  std::vector<Cache::Completion> parked;
  std::atomic<int> calls = 0;
  Results results;
  {
    Cache cache;
    cache.GetAsync("a", ParkedLoader{&parked, &calls}, results.Collect());
    cache.GetAsync("a", ParkedLoader{&parked, &calls}, results.Collect());
    cache.GetAsync("b", ParkedLoader{&parked, &calls}, results.Collect());
  }
  ASSERT_EQ(results.got.size(), 3u);
  for (const Result& r : results.got) {
    EXPECT_EQ(r.status().code(), absl::StatusCode::kCancelled);
    EXPECT_THAT(r.status().message(), HasSubstr("destroyed"));
  }
  // Completing after the cache is gone is harmless and calls nobody.
  parked[0](Value(1));
  parked.clear();
  EXPECT_EQ(results.got.size(), 3u);
}

TEST(AsyncLruCacheTest, DestroyWakesBlockedGetAndLoaderMayFinishLater) {
  std::vector<Cache::Completion> parked;
  std::atomic<int> calls = 0;
  auto cache = std::make_unique<Cache>();
  cache->GetAsync("k", ParkedLoader{&parked, &calls}, [](Result) {});
  Result waited;
  std::atomic<bool> waiting = false;
  std::thread waiter([&] {
    waiting = true;
    waited = cache->Get("k", []() -> Result { return Value(0); });
  });
  // Destroy once the waiter has joined the load (it counts a miss first).
  while (!waiting || cache->stats().misses < 2) std::this_thread::yield();
  cache.reset();
  waiter.join();
  EXPECT_EQ(waited.status().code(), absl::StatusCode::kCancelled);
  parked[0](Value(1));
}

TEST(AsyncLruCacheTest, DestroyWhileBlockingLoaderRuns) {
  auto cache = std::make_unique<Cache>();
  std::atomic<bool> in_loader = false;
  std::atomic<bool> release = false;
  Result loaded;
  std::thread loader_thread([&] {
    loaded = cache->Get("k", [&]() -> Result {
      in_loader = true;
      while (!release) std::this_thread::yield();
      return Value(3);
    });
  });
  while (!in_loader) std::this_thread::yield();
  cache.reset();
  release = true;
  loader_thread.join();
  ASSERT_TRUE(loaded.ok());  // the loader's own caller gets its result
  EXPECT_EQ(**loaded, 3);
}

TEST(AsyncLruCacheTest, ShardsSplitCapacity) {
  Cache::Options o;
  o.capacity = 100;
  o.num_shards = 5;  // rounded up to 8
  Cache cache(o);
  EXPECT_EQ(cache.num_shards(), 8u);
  for (int i = 0; i < 1000; ++i) cache.Put(std::to_string(i), std::make_shared<const int>(i));
  Cache::Stats s = cache.stats();
  EXPECT_LE(s.weight, 100u);
  EXPECT_GT(s.weight, 80u);  // every shard fills up with 1000 keys
  EXPECT_EQ(s.evictions, 1000u - s.entries);

  Cache::Options tiny;
  tiny.capacity = 3;
  tiny.num_shards = 16;
  EXPECT_EQ(Cache(tiny).num_shards(), 2u);  // no shard with capacity 0
}

struct OpaqueKey {
  int id;
  bool operator==(const OpaqueKey&) const = default;
  template <typename H>
  friend H AbslHashValue(H h, const OpaqueKey& k) {
    return H::combine(std::move(h), k.id);
  }
};

TEST(AsyncLruCacheTest, UnprintableKeysStillGetAnError) {
  using Key = OpaqueKey;
  AsyncLruCache<Key, int> cache;
  absl::StatusOr<std::shared_ptr<const int>> inner;
  auto outer = cache.Get(Key{1}, [&]() -> absl::StatusOr<std::shared_ptr<const int>> {
    inner = cache.Get(Key{1}, [] { return absl::StatusOr<std::shared_ptr<const int>>(); });
    return std::make_shared<const int>(1);
  });
  EXPECT_TRUE(outer.ok());
  EXPECT_EQ(inner.status().code(), absl::StatusCode::kFailedPrecondition);
}

}  // namespace
}  // namespace txfn

// A v8::Platform whose page allocator reuses freed V8 heap pages
// (lib/v8/page_caching_platform.h). Compiled with -fno-rtti (subclasses V8).
#include "lib/v8/page_caching_platform.h"

#include <sys/mman.h>

#include <cstring>
#include <utility>
#include <vector>

#include "absl/container/btree_map.h"
#include "txfn/internal/mutex.h"
#include "v8-platform.h"

namespace txfn::internal {
namespace {

using Permission = v8::PageAllocator::Permission;

// Caches only plain data reservations (kNoAccess or kReadWrite when
// allocated): never anything that was or will be executable.
bool Cacheable(Permission p) { return p == Permission::kNoAccess || p == Permission::kReadWrite; }

class CachingPageAllocator final : public v8::PageAllocator {
 public:
  CachingPageAllocator(v8::PageAllocator* base, size_t max_cached_bytes)
      : base_(base), max_cached_bytes_(max_cached_bytes) {}

  size_t AllocatePageSize() override { return base_->AllocatePageSize(); }
  size_t CommitPageSize() override { return base_->CommitPageSize(); }
  void SetRandomMmapSeed(int64_t seed) override { base_->SetRandomMmapSeed(seed); }
  void* GetRandomMmapAddr() override { return base_->GetRandomMmapAddr(); }

  void* AllocatePages(void* hint, size_t length, size_t alignment,
                      Permission permissions) override {
    if (!Cacheable(permissions)) return base_->AllocatePages(hint, length, alignment, permissions);
    if (void* reused = TakeCached(length, alignment)) {
      // Still mapped and (mostly) resident: make it writable, zero it as a
      // fresh mapping would be, then give it the asked-for permissions with
      // mprotect alone (V8's own kNoAccess would also discard the pages).
      if (::mprotect(reused, length, PROT_READ | PROT_WRITE) == 0) {
        std::memset(reused, 0, length);
        if (permissions == Permission::kReadWrite || ::mprotect(reused, length, PROT_NONE) == 0) {
          Track(reused, length);
          return reused;
        }
      }
      base_->FreePages(reused, length);  // cannot reuse it: really free it
    }
    void* fresh = base_->AllocatePages(hint, length, alignment, permissions);
    if (fresh != nullptr) Track(fresh, length);
    return fresh;
  }

  bool FreePages(void* address, size_t length) override {
    {
      MutexLock lock(&mu_);
      auto it = tracked_.find(address);
      if (it != tracked_.end()) {
        const bool whole = it->second == length;
        tracked_.erase(it);
        if (whole && cached_bytes_ + length <= max_cached_bytes_) {
          cache_.push_back({address, length});
          cached_bytes_ += length;
          ++stats_.cached;
          return true;
        }
      }
    }
    return base_->FreePages(address, length);
  }

  bool ReleasePages(void* address, size_t length, size_t new_length) override {
    {
      MutexLock lock(&mu_);
      auto it = tracked_.find(address);
      if (it != tracked_.end()) it->second = new_length;
    }
    return base_->ReleasePages(address, length, new_length);
  }

  bool SetPermissions(void* address, size_t length, Permission permissions) override {
    // Any part made executable: never cache the allocation it belongs to.
    if (!Cacheable(permissions)) UntrackContaining(address);
    return base_->SetPermissions(address, length, permissions);
  }
  bool DiscardSystemPages(void* address, size_t size) override {
    return base_->DiscardSystemPages(address, size);
  }
  bool DecommitPages(void* address, size_t size) override {
    return base_->DecommitPages(address, size);
  }
  bool ReserveForSharedMemoryMapping(void* address, size_t size) override {
    return base_->ReserveForSharedMemoryMapping(address, size);
  }
  std::unique_ptr<SharedMemory> AllocateSharedPages(size_t length,
                                                    const void* original_address) override {
    return base_->AllocateSharedPages(length, original_address);
  }
  bool CanAllocateSharedPages() override { return base_->CanAllocateSharedPages(); }

  // Really frees every cached range (V8 is short of memory).
  void Flush() {
    std::vector<Range> ranges;
    {
      MutexLock lock(&mu_);
      ranges.swap(cache_);
      cached_bytes_ = 0;
    }
    for (const Range& r : ranges) base_->FreePages(r.address, r.length);
  }

  PageCacheStats stats() {
    MutexLock lock(&mu_);
    PageCacheStats s = stats_;
    s.cached_bytes = cached_bytes_;
    return s;
  }

 private:
  struct Range {
    void* address;
    size_t length;
  };

  // The most recently freed cached range of `length` aligned to `alignment`.
  void* TakeCached(size_t length, size_t alignment) {
    MutexLock lock(&mu_);
    for (size_t i = cache_.size(); i-- > 0;) {
      const Range r = cache_[i];
      if (r.length != length || reinterpret_cast<uintptr_t>(r.address) % alignment != 0) continue;
      cache_.erase(cache_.begin() + static_cast<std::ptrdiff_t>(i));
      cached_bytes_ -= length;
      ++stats_.reused;
      return r.address;
    }
    return nullptr;
  }
  void Track(void* address, size_t length) {
    MutexLock lock(&mu_);
    tracked_[address] = length;
  }
  // Forgets the tracked allocation that contains `address`, if any.
  void UntrackContaining(void* address) {
    MutexLock lock(&mu_);
    auto it = tracked_.upper_bound(address);  // the first starting after it
    if (it == tracked_.begin()) return;
    --it;
    const auto start = reinterpret_cast<uintptr_t>(it->first);
    if (reinterpret_cast<uintptr_t>(address) < start + it->second) tracked_.erase(it);
  }

  v8::PageAllocator* const base_;
  const size_t max_cached_bytes_;
  Mutex mu_;
  // Cacheable allocations now live, by start address -> length (ordered, to
  // find the one containing an address).
  absl::btree_map<void*, size_t> tracked_ ABSL_GUARDED_BY(mu_);
  std::vector<Range> cache_ ABSL_GUARDED_BY(mu_);  // freed, still mapped; newest last
  size_t cached_bytes_ ABSL_GUARDED_BY(mu_) = 0;
  PageCacheStats stats_ ABSL_GUARDED_BY(mu_);
};

class PageCachingPlatform final : public v8::Platform {
 public:
  PageCachingPlatform(v8::Platform* inner, size_t max_cached_bytes)
      : inner_(inner), pages_(inner->GetPageAllocator(), max_cached_bytes) {}

  v8::PageAllocator* GetPageAllocator() override { return &pages_; }
  PageCacheStats page_cache_stats() { return pages_.stats(); }

  // Everything else is the inner platform's.
  v8::ZoneBackingAllocator* GetZoneBackingAllocator() override {
    return inner_->GetZoneBackingAllocator();
  }
  // Short of memory: the cache goes first.
  void OnCriticalMemoryPressure() override {
    pages_.Flush();
    inner_->OnCriticalMemoryPressure();
  }
  bool OnCriticalMemoryPressure(size_t length) override {
    const bool freed = pages_.stats().cached_bytes > 0;
    pages_.Flush();
    return inner_->OnCriticalMemoryPressure(length) || freed;
  }
  int NumberOfWorkerThreads() override { return inner_->NumberOfWorkerThreads(); }
  std::shared_ptr<v8::TaskRunner> GetForegroundTaskRunner(v8::Isolate* isolate) override {
    return inner_->GetForegroundTaskRunner(isolate);
  }
  void CallOnWorkerThread(std::unique_ptr<v8::Task> task) override {
    inner_->CallOnWorkerThread(std::move(task));
  }
  void CallBlockingTaskOnWorkerThread(std::unique_ptr<v8::Task> task) override {
    inner_->CallBlockingTaskOnWorkerThread(std::move(task));
  }
  void CallLowPriorityTaskOnWorkerThread(std::unique_ptr<v8::Task> task) override {
    inner_->CallLowPriorityTaskOnWorkerThread(std::move(task));
  }
  void CallDelayedOnWorkerThread(std::unique_ptr<v8::Task> task, double delay) override {
    inner_->CallDelayedOnWorkerThread(std::move(task), delay);
  }
  bool IdleTasksEnabled(v8::Isolate* isolate) override { return inner_->IdleTasksEnabled(isolate); }
  std::unique_ptr<v8::JobHandle> PostJob(v8::TaskPriority priority,
                                         std::unique_ptr<v8::JobTask> job_task) override {
    return inner_->PostJob(priority, std::move(job_task));
  }
  double MonotonicallyIncreasingTime() override { return inner_->MonotonicallyIncreasingTime(); }
  double CurrentClockTimeMillis() override { return inner_->CurrentClockTimeMillis(); }
  StackTracePrinter GetStackTracePrinter() override { return inner_->GetStackTracePrinter(); }
  v8::TracingController* GetTracingController() override { return inner_->GetTracingController(); }
  void DumpWithoutCrashing() override { inner_->DumpWithoutCrashing(); }
  v8::HighAllocationThroughputObserver* GetHighAllocationThroughputObserver() override {
    return inner_->GetHighAllocationThroughputObserver();
  }

 private:
  v8::Platform* const inner_;
  CachingPageAllocator pages_;
};

}  // namespace

std::unique_ptr<v8::Platform> NewPageCachingPlatform(v8::Platform* inner, size_t max_cached_bytes) {
  return std::make_unique<PageCachingPlatform>(inner, max_cached_bytes);
}

std::unique_ptr<v8::PageAllocator> NewCachingPageAllocator(v8::PageAllocator* base,
                                                           size_t max_cached_bytes) {
  return std::make_unique<CachingPageAllocator>(base, max_cached_bytes);
}

PageCacheStats GetPageCacheStats(v8::PageAllocator* caching_allocator) {
  // The caller guarantees it came from NewCachingPageAllocator.
  return static_cast<CachingPageAllocator*>(caching_allocator)->stats();
}

PageCacheStats GetPageCacheStats(v8::Platform* platform) {
  // The caller guarantees `platform` came from NewPageCachingPlatform.
  return static_cast<PageCachingPlatform*>(platform)->page_cache_stats();
}

}  // namespace txfn::internal

// lib/v8/page_caching_platform.h — txfn's own v8::Platform: libplatform's
// default platform with a page allocator that keeps freed V8 heap pages.
//
// Why: a fresh context per request allocates a few hundred KiB of V8 heap;
// after each garbage collection V8 unmaps the emptied pages (on a background
// thread) and the next contexts fault new ones in, zero-filled by the kernel.
// That churn cost about a quarter of a request's CPU. This allocator keeps up
// to `max_cached_bytes` of freed page ranges mapped and hands them out again,
// zeroed by memset and with the asked-for permissions, as AllocatePages
// promises.
#ifndef TXFN_LIB_V8_PAGE_CACHING_PLATFORM_H_
#define TXFN_LIB_V8_PAGE_CACHING_PLATFORM_H_

#include <cstddef>
#include <cstdint>
#include <memory>

namespace v8 {
class PageAllocator;
class Platform;
}  // namespace v8

namespace txfn::internal {

struct PageCacheStats {
  uint64_t reused = 0;  // AllocatePages served from the cache
  uint64_t cached = 0;  // FreePages kept in the cache
  size_t cached_bytes = 0;
};

// Wraps `inner` (a libplatform default platform, still to be used for
// v8::platform::PumpMessageLoop); forwards everything but GetPageAllocator.
// Thread-safe like the platform it wraps.
std::unique_ptr<v8::Platform> NewPageCachingPlatform(v8::Platform* inner, size_t max_cached_bytes);

// The allocator alone, over `base` (for tests). Every range it hands out is
// zero-filled with the permissions asked for. Only ranges allocated kNoAccess
// or kReadWrite, never made executable, freed whole, are cached.
std::unique_ptr<v8::PageAllocator> NewCachingPageAllocator(v8::PageAllocator* base,
                                                           size_t max_cached_bytes);
PageCacheStats GetPageCacheStats(v8::PageAllocator* caching_allocator);

// The cache's counters. `platform` must come from NewPageCachingPlatform.
PageCacheStats GetPageCacheStats(v8::Platform* platform);

}  // namespace txfn::internal

#endif  // TXFN_LIB_V8_PAGE_CACHING_PLATFORM_H_

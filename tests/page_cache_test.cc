// The page cache under txfn's V8 platform (lib/v8/page_caching_platform.h):
// reused ranges are zero-filled with the permissions asked for; executable or
// partly freed ranges are never reused; the cache stays within its bound.
#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <memory>
#include <optional>

#include "gtest/gtest.h"
#include "lib/v8/page_caching_platform.h"
#include "lib/v8/platform.h"
#include "libplatform/libplatform.h"
#include "txfn/isolate_scheduler.h"
#include "v8.h"

namespace txfn::internal {
namespace {

using Permission = v8::PageAllocator::Permission;

class PageCacheTest : public ::testing::Test {
 protected:
  void Make(size_t max_cached_bytes) {
    pages_ = NewCachingPageAllocator(platform_->GetPageAllocator(), max_cached_bytes);
  }
  bool AllZero(const void* p, size_t n) {
    const auto* bytes = static_cast<const unsigned char*>(p);
    for (size_t i = 0; i < n; ++i) {
      if (bytes[i] != 0) return false;
    }
    return true;
  }
  // A range allocated read-write, filled with non-zero bytes and freed (so
  // cached); nullptr if the allocation failed.
  void* FreedDirtyRange(size_t size) {
    void* p = pages_->AllocatePages(nullptr, size, page_, Permission::kReadWrite);
    if (p == nullptr) return nullptr;
    std::memset(p, 0xAB, size);
    return pages_->FreePages(p, size) ? p : nullptr;
  }
  // Whether `p` can be read, probed without faulting: write(2) from it to a
  // pipe fails with EFAULT if not.
  static bool Readable(const void* p) {
    int fds[2];
    if (pipe(fds) != 0) return false;
    const bool ok = write(fds[1], p, 1) == 1;
    close(fds[0]);
    close(fds[1]);
    return ok;
  }

  std::unique_ptr<v8::Platform> platform_ = v8::platform::NewDefaultPlatform();
  const size_t page_ = platform_->GetPageAllocator()->AllocatePageSize();
  std::unique_ptr<v8::PageAllocator> pages_;
};

TEST_F(PageCacheTest, AFreedRangeIsReusedZeroFilled) {
  Make(16 * 1024 * 1024);
  const size_t size = 4 * page_;
  void* a = FreedDirtyRange(size);
  ASSERT_NE(a, nullptr);
  EXPECT_EQ(GetPageCacheStats(pages_.get()).cached, 1u);
  void* b = pages_->AllocatePages(nullptr, size, page_, Permission::kReadWrite);
  ASSERT_EQ(b, a);
  EXPECT_TRUE(AllZero(b, size));
  EXPECT_EQ(GetPageCacheStats(pages_.get()).reused, 1u);
  EXPECT_TRUE(pages_->FreePages(b, size));
}

TEST_F(PageCacheTest, AReusedRangeAskedForWithoutAccessIsInaccessibleUntilCommitted) {
  Make(16 * 1024 * 1024);
  const size_t size = 2 * page_;
  void* a = FreedDirtyRange(size);
  ASSERT_NE(a, nullptr);
  void* b = pages_->AllocatePages(nullptr, size, page_, Permission::kNoAccess);
  ASSERT_EQ(b, a);
  EXPECT_FALSE(Readable(b));
  ASSERT_TRUE(pages_->SetPermissions(b, size, Permission::kReadWrite));
  EXPECT_TRUE(Readable(b));
  EXPECT_TRUE(AllZero(b, size));
  EXPECT_TRUE(pages_->FreePages(b, size));
}

TEST_F(PageCacheTest, ExecutableOrPartlyFreedRangesAreNeverCached) {
  Make(16 * 1024 * 1024);
  const size_t size = 2 * page_;
  void* code = pages_->AllocatePages(nullptr, size, page_, Permission::kNoAccess);
  ASSERT_NE(code, nullptr);
  ASSERT_TRUE(pages_->SetPermissions(code, size, Permission::kReadExecute));
  ASSERT_TRUE(pages_->FreePages(code, size));
  // Only its second page made executable (as V8 does for a code area).
  void* code_area = pages_->AllocatePages(nullptr, size, page_, Permission::kNoAccess);
  ASSERT_NE(code_area, nullptr);
  ASSERT_TRUE(pages_->SetPermissions(static_cast<char*>(code_area) + page_, page_,
                                     Permission::kReadExecute));
  ASSERT_TRUE(pages_->FreePages(code_area, size));
  void* rwx = pages_->AllocatePages(nullptr, size, page_, Permission::kReadWriteExecute);
  ASSERT_NE(rwx, nullptr);
  ASSERT_TRUE(pages_->FreePages(rwx, size));
  void* part = pages_->AllocatePages(nullptr, size, page_, Permission::kReadWrite);
  ASSERT_NE(part, nullptr);
  ASSERT_TRUE(pages_->FreePages(part, page_));  // the first half only
  ASSERT_TRUE(pages_->FreePages(static_cast<char*>(part) + page_, page_));
  EXPECT_EQ(GetPageCacheStats(pages_.get()).cached, 0u);
}

TEST_F(PageCacheTest, AShrunkRangeIsCachedAtItsNewLength) {
  Make(16 * 1024 * 1024);
  void* a = pages_->AllocatePages(nullptr, 4 * page_, page_, Permission::kReadWrite);
  ASSERT_NE(a, nullptr);
  ASSERT_TRUE(pages_->ReleasePages(a, 4 * page_, 2 * page_));
  ASSERT_TRUE(pages_->FreePages(a, 2 * page_));
  EXPECT_EQ(GetPageCacheStats(pages_.get()).cached_bytes, 2 * page_);
  // Only a request of the same length reuses it.
  void* other = pages_->AllocatePages(nullptr, 4 * page_, page_, Permission::kReadWrite);
  EXPECT_NE(other, a);
  void* same = pages_->AllocatePages(nullptr, 2 * page_, page_, Permission::kReadWrite);
  EXPECT_EQ(same, a);
  EXPECT_TRUE(pages_->FreePages(other, 4 * page_));
  EXPECT_TRUE(pages_->FreePages(same, 2 * page_));
}

TEST_F(PageCacheTest, TheCacheStaysWithinItsBound) {
  Make(3 * page_);
  void* a = pages_->AllocatePages(nullptr, 2 * page_, page_, Permission::kReadWrite);
  void* b = pages_->AllocatePages(nullptr, 2 * page_, page_, Permission::kReadWrite);
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  ASSERT_TRUE(pages_->FreePages(a, 2 * page_));
  ASSERT_TRUE(pages_->FreePages(b, 2 * page_));  // would exceed 3 pages: really freed
  PageCacheStats stats = GetPageCacheStats(pages_.get());
  EXPECT_EQ(stats.cached, 1u);
  EXPECT_EQ(stats.cached_bytes, 2 * page_);
}

TEST_F(PageCacheTest, AMisalignedCachedRangeIsNotHandedOut) {
  Make(64 * 1024 * 1024);
  const size_t alignment = 64 * page_;
  void* a = pages_->AllocatePages(nullptr, page_, page_, Permission::kReadWrite);
  ASSERT_NE(a, nullptr);
  const bool aligned = reinterpret_cast<uintptr_t>(a) % alignment == 0;
  ASSERT_TRUE(pages_->FreePages(a, page_));
  void* b = pages_->AllocatePages(nullptr, page_, alignment, Permission::kReadWrite);
  ASSERT_NE(b, nullptr);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(b) % alignment, 0u);
  EXPECT_EQ(b == a, aligned);
  EXPECT_TRUE(pages_->FreePages(b, page_));
}

// txfn's own platform serves V8 through the cache, and V8 does reuse pages.
TEST(PageCachePlatformTest, V8HeapPagesAreReusedThroughTxfnsPlatform) {
  std::optional<PageCacheStats> stats = V8PageCacheStats();
  ASSERT_TRUE(stats.has_value());
  v8::Isolate::CreateParams params;
  std::unique_ptr<v8::ArrayBuffer::Allocator> buffers(
      v8::ArrayBuffer::Allocator::NewDefaultAllocator());
  params.array_buffer_allocator = buffers.get();
  for (int round = 0; round < 3; ++round) {
    v8::Isolate* isolate = v8::Isolate::New(params);
    {
      v8::Isolate::Scope isolate_scope(isolate);
      for (int i = 0; i < 20; ++i) {
        v8::HandleScope scope(isolate);
        v8::Local<v8::Context> context = v8::Context::New(isolate);
        (void)context;
      }
    }
    isolate->Dispose();
  }
  EXPECT_GT(V8PageCacheStats()->reused, stats->reused);
  // Under critical memory pressure the cache is emptied first.
  EXPECT_GT(V8PageCacheStats()->cached_bytes, 0u);
  txfn::V8Platform()->OnCriticalMemoryPressure();
  EXPECT_EQ(V8PageCacheStats()->cached_bytes, 0u);
}

}  // namespace
}  // namespace txfn::internal

// lib/v8/array_buffer_allocator.h — an ArrayBuffer allocator per isolate that
// counts what it hands out against a limit.
//
// V8's heap limit does not cover ArrayBuffer backing stores: they come from
// the embedder's allocator, so without this one request could hold gigabytes
// of buffers. An allocation that would take the isolate's live buffers past
// the limit is refused (nullptr): V8 then collects garbage and retries, and
// if it is still refused throws RangeError "Array buffer allocation failed".
//
//   auto budget = std::make_shared<ArrayBufferBudget>(64 << 20);
//   params.array_buffer_allocator_shared = NewCountingArrayBufferAllocator(budget);
//
// Thread safety: Allocate runs on the isolate's thread, Free on whichever
// thread V8 releases a backing store (the array buffer sweeper runs in the
// background): the budget is atomic. Pass the allocator through
// CreateParams::array_buffer_allocator_shared, so backing stores that
// outlive the isolate keep it alive.
#ifndef TXFN_LIB_V8_ARRAY_BUFFER_ALLOCATOR_H_
#define TXFN_LIB_V8_ARRAY_BUFFER_ALLOCATOR_H_

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>

#include "v8-array-buffer.h"

namespace txfn::internal {

// What one isolate's buffers may take, and what they take now.
struct ArrayBufferBudget {
  explicit ArrayBufferBudget(size_t limit) : limit_bytes(limit) {}
  const size_t limit_bytes;
  std::atomic<size_t> live_bytes{0};  // allocated and not yet freed
  std::atomic<uint64_t> refused{0};   // allocations refused (V8 may have retried after a GC)
};

// A V8 allocator (calloc/malloc underneath) that keeps `budget`.
std::shared_ptr<v8::ArrayBuffer::Allocator> NewCountingArrayBufferAllocator(
    std::shared_ptr<ArrayBufferBudget> budget);

}  // namespace txfn::internal

#endif  // TXFN_LIB_V8_ARRAY_BUFFER_ALLOCATOR_H_

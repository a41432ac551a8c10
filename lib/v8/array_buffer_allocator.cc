// Built with -fno-rtti: it subclasses a V8 class (see lib/v8/CMakeLists.txt).
#include "lib/v8/array_buffer_allocator.h"

#include <cstdlib>
#include <memory>
#include <utility>

namespace txfn::internal {
namespace {

class CountingAllocator final : public v8::ArrayBuffer::Allocator {
 public:
  explicit CountingAllocator(std::shared_ptr<ArrayBufferBudget> budget)
      : budget_(std::move(budget)) {}

  void* Allocate(size_t length) override {
    if (!Reserve(length)) return nullptr;
    void* p = std::calloc(length == 0 ? 1 : length, 1);
    if (p == nullptr) Unreserve(length);
    return p;
  }
  void* AllocateUninitialized(size_t length) override {
    if (!Reserve(length)) return nullptr;
    void* p = std::malloc(length == 0 ? 1 : length);
    if (p == nullptr) Unreserve(length);
    return p;
  }
  void Free(void* data, size_t length) override {
    std::free(data);
    Unreserve(length);
  }

 private:
  bool Reserve(size_t length) {
    size_t live = budget_->live_bytes.load(std::memory_order_relaxed);
    do {
      if (length > budget_->limit_bytes || live > budget_->limit_bytes - length) {
        budget_->refused.fetch_add(1, std::memory_order_relaxed);
        return false;
      }
    } while (
        !budget_->live_bytes.compare_exchange_weak(live, live + length, std::memory_order_relaxed));
    return true;
  }
  void Unreserve(size_t length) {
    budget_->live_bytes.fetch_sub(length, std::memory_order_relaxed);
  }

  const std::shared_ptr<ArrayBufferBudget> budget_;
};

}  // namespace

std::shared_ptr<v8::ArrayBuffer::Allocator> NewCountingArrayBufferAllocator(
    std::shared_ptr<ArrayBufferBudget> budget) {
  return std::make_shared<CountingAllocator>(std::move(budget));
}

}  // namespace txfn::internal

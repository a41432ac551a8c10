// The DurableQueue concurrency conformance (many lessees racing) for every
// adapter, built for ThreadSanitizer.
#include <memory>

#include "gtest/gtest.h"
#include "txfn/in_memory_queue.h"
#include "txfn/testing/durable_queue_conformance.h"

namespace txfn {
namespace {

TXFN_INSTANTIATE_DURABLE_QUEUE_CONCURRENCY_CONFORMANCE(InMemoryThreeShards, [] {
  return std::make_unique<InMemoryQueue>(InMemoryQueueOptions{.shards = 3});
});

}  // namespace
}  // namespace txfn

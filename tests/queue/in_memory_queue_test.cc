// InMemoryQueue and ShardedQueue: the DurableQueue conformance suite, with
// one shard and with several.
#include "txfn/in_memory_queue.h"

#include <memory>

#include "gtest/gtest.h"
#include "txfn/testing/durable_queue_conformance.h"

namespace txfn {
namespace {

TXFN_INSTANTIATE_DURABLE_QUEUE_CONFORMANCE(InMemory,
                                           [] { return std::make_unique<InMemoryQueue>(); });
TXFN_INSTANTIATE_DURABLE_QUEUE_CONFORMANCE(InMemoryFourShards, [] {
  return std::make_unique<InMemoryQueue>(InMemoryQueueOptions{.shards = 4});
});

}  // namespace
}  // namespace txfn

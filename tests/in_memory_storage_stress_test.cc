// InMemoryStorage under concurrency: the concurrent part of the conformance
// suite, built in the ThreadSanitizer flavour.
#include <memory>

#include "gtest/gtest.h"
#include "txfn/in_memory_storage.h"
#include "txfn/testing/storage_conformance.h"

TXFN_INSTANTIATE_STORAGE_CONCURRENCY_CONFORMANCE(InMemory, [] {
  return std::make_unique<txfn::InMemoryStorage>();
});

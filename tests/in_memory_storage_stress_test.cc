// InMemoryStorage under concurrency: the concurrent part of the conformance
// suite, built in the ThreadSanitizer flavour. Also run through a
// FaultInjectingStorage (no faults), whose own locking is under test too.
#include <memory>

#include "gtest/gtest.h"
#include "txfn/in_memory_storage.h"
#include "txfn/testing/fault_injecting_storage.h"
#include "txfn/testing/storage_conformance.h"

TXFN_INSTANTIATE_STORAGE_CONCURRENCY_CONFORMANCE(InMemory, [] {
  return std::make_unique<txfn::InMemoryStorage>();
});

TXFN_INSTANTIATE_STORAGE_CONCURRENCY_CONFORMANCE(FaultInjectingPassThrough, [] {
  return std::make_unique<txfn::testing::FaultInjectingStorage>(
      std::make_shared<txfn::InMemoryStorage>(), /*seed=*/1);
});

// custom_storage_conformance: the Storage conformance suite run against the
// example's CountingStorage (wrapping InMemoryStorage). One macro is all an
// adapter author writes; link txfn::testing and GTest::gtest_main.
#include <memory>

#include "counting_storage.h"
#include "txfn/in_memory_storage.h"
#include "txfn/testing/storage_conformance.h"

TXFN_INSTANTIATE_STORAGE_CONFORMANCE(CountingStorage, [] {
  return std::make_unique<example::CountingStorage>(std::make_shared<txfn::InMemoryStorage>());
});

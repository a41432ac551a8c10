// An adapter author's test against an installed txfn: the Storage conformance
// suite (txfn::testing) run on InMemoryStorage, as it would be on their adapter.
#include <memory>

#include "txfn/in_memory_storage.h"
#include "txfn/testing/storage_conformance.h"

TXFN_INSTANTIATE_STORAGE_CONFORMANCE(InMemory,
                                     [] { return std::make_unique<txfn::InMemoryStorage>(); });

// PostgresStorage under concurrent readers and writers: the concurrency half of the Storage
// conformance suite, built for ThreadSanitizer too (the pool, the leases and the in-doubt
// set are shared between threads).
#include <cstdio>
#include <cstdlib>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/postgres/pg_storage_test_util.h"
#include "tests/postgres/pg_test_util.h"
#include "txfn/postgres_storage.h"
#include "txfn/testing/storage_conformance.h"

namespace txfn {
namespace {

// A pool of two connections, so readers and writers also wait for one another.
TXFN_INSTANTIATE_STORAGE_CONCURRENCY_CONFORMANCE(PostgresStress, [] {
  return std::unique_ptr<Storage>(testing::TempPostgresStorage::Make({.max_connections = 2}));
});

}  // namespace
}  // namespace txfn

// Without a server (and outside CI) the suite is filtered out.
int main(int argc, char** argv) {
  ::testing::InitGoogleMock(&argc, argv);
  txfn::testing::FilterOutWithoutServer("*");
  return RUN_ALL_TESTS();
}

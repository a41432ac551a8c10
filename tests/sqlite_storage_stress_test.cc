// SqliteStorage under concurrent readers and writers: the concurrency half of
// the Storage conformance suite, built for ThreadSanitizer too.
#include "sqlite_test_util.h"
#include "txfn/sqlite_storage.h"
#include "txfn/testing/storage_conformance.h"

namespace txfn {
namespace {

using testing_util::TempSqliteStorage;

// A small read pool, so readers also wait for one another.
TXFN_INSTANTIATE_STORAGE_CONCURRENCY_CONFORMANCE(SqliteStress, [] {
  return TempSqliteStorage::Make(
      {.synchronous = SqliteOptions::Synchronous::kOff, .max_read_connections = 2});
});

}  // namespace
}  // namespace txfn

// SqliteStorage: the Storage conformance suite (with reopen), the committer
// on top of it, and opening bad files.
#include "txfn/sqlite_storage.h"

#include <memory>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "sqlite_test_util.h"
#include "txfn/testing/storage_conformance.h"

namespace txfn {
namespace {

using testing_util::TempSqliteStorage;

// synchronous=OFF keeps the suite fast; durability is the crash test's job.
TXFN_INSTANTIATE_STORAGE_CONFORMANCE(
    Sqlite, [] { return TempSqliteStorage::Make({.synchronous = SqliteOptions::Synchronous::kOff}); },
    &TempSqliteStorage::Reopen);

}  // namespace
}  // namespace txfn

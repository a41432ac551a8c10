// Test helpers for SqliteStorage: temporary directories and a Storage that
// owns its database directory (for the conformance suite's factories).
#ifndef TXFN_TESTS_SQLITE_TEST_UTIL_H_
#define TXFN_TESTS_SQLITE_TEST_UTIL_H_

#include <memory>
#include <string>
#include <utility>

#include "gtest/gtest.h"
#include "temp_dir.h"
#include "txfn/sqlite_storage.h"
#include "txfn/storage_wrapper.h"

namespace txfn::testing_util {

// A SqliteStorage on a file in its own TempDir, removed with it.
class TempSqliteStorage final : public StorageWrapper {
 public:
  static std::unique_ptr<Storage> Make(SqliteOptions options = {}) {
    auto dir = std::make_shared<TempDir>();
    return Open(std::move(dir), options);
  }
  // Closes `old` (a TempSqliteStorage) and opens its file again.
  static std::unique_ptr<Storage> Reopen(std::unique_ptr<Storage> old) {
    auto* temp = dynamic_cast<TempSqliteStorage*>(old.get());
    if (temp == nullptr) return nullptr;
    std::shared_ptr<TempDir> dir = temp->dir_;
    SqliteOptions options = temp->options_;
    old.reset();
    return Open(std::move(dir), options);
  }

  SqliteStorage& inner() { return *inner_; }
  const std::string& dir() const { return dir_->path(); }

 private:
  static std::unique_ptr<Storage> Open(std::shared_ptr<TempDir> dir, SqliteOptions options) {
    auto storage = SqliteStorage::Open(dir->File("txfn.db"), options);
    if (!storage.ok()) {
      ADD_FAILURE() << storage.status();
      return nullptr;
    }
    return std::unique_ptr<Storage>(
        new TempSqliteStorage(std::move(dir), options, *std::move(storage)));
  }
  TempSqliteStorage(std::shared_ptr<TempDir> dir, SqliteOptions options,
                    std::unique_ptr<SqliteStorage> inner)
      : StorageWrapper(inner.get()),
        dir_(std::move(dir)),
        options_(std::move(options)),
        inner_(std::move(inner)) {}

  // Declared first: destroyed after inner_ closes the database.
  std::shared_ptr<TempDir> dir_;
  SqliteOptions options_;
  std::unique_ptr<SqliteStorage> inner_;
};

}  // namespace txfn::testing_util

#endif  // TXFN_TESTS_SQLITE_TEST_UTIL_H_

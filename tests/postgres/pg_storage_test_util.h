// tests/postgres/pg_storage_test_util.h — a PostgresStorage on a database of its own, for the
// conformance suite's factories and the PostgreSQL storage tests.
#ifndef TXFN_TESTS_POSTGRES_PG_STORAGE_TEST_UTIL_H_
#define TXFN_TESTS_POSTGRES_PG_STORAGE_TEST_UTIL_H_

#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <utility>

#include "gtest/gtest.h"
#include "tests/postgres/pg_test_util.h"
#include "txfn/postgres_storage.h"
#include "txfn/storage_wrapper.h"

namespace txfn::testing {

// A schema of its own in the server's "postgres" database, created by Create() and dropped
// (with everything in it) when this goes away: much cheaper than a database per test.
// url() sets the connection's search_path to it, so PostgresStorage creates its tables
// there, and (unless constructed with fast = false) turns synchronous_commit off.
class PgTestSchema {
 public:
  // `fast`: synchronous_commit off (see Create).
  explicit PgTestSchema(bool fast = true) : fast_(fast) {
    static std::atomic<int> counter{0};
    name_ = internal::StrCat("txfn_test_", getpid(), "_", counter.fetch_add(1));
  }
  ~PgTestSchema() {
    if (!created_) return;
    auto admin = pg_internal::PgConnection::Open(url_);
    if (admin.ok()) (void)(*admin)->Exec(internal::StrCat("DROP SCHEMA ", name_, " CASCADE"));
  }
  PgTestSchema(const PgTestSchema&) = delete;
  PgTestSchema& operator=(const PgTestSchema&) = delete;

  absl::Status Create() {
    auto url = pg_internal::WithDatabase(PgServerUrl(), "postgres");
    if (!url.ok()) return url.status();
    // synchronous_commit=off keeps the suites fast (a commit does not wait for its WAL
    // flush; the server still never shows a partial commit); durability across a server
    // crash is the crash tests' job, on a server of their own.
    url_ = internal::StrCat(*url, " options='-csearch_path=", name_,
                            fast_ ? " -csynchronous_commit=off'" : "'");
    auto admin = pg_internal::PgConnection::Open(url_);
    if (!admin.ok()) return admin.status();
    auto created = (*admin)->Exec(
        internal::StrCat("DROP SCHEMA IF EXISTS ", name_, " CASCADE; CREATE SCHEMA ", name_));
    if (!created.ok()) return created.status();
    created_ = true;
    return absl::OkStatus();
  }

  // The connection string: the "postgres" database, search_path = this schema.
  const std::string& url() const { return url_; }
  const std::string& name() const { return name_; }

 private:
  bool fast_;
  std::string name_;
  std::string url_;
  bool created_ = false;
};

// For a test binary's own main(), after InitGoogleTest: without a server (and outside CI)
// filters out the tests matching `pattern` — the conformance suites, whose fixtures cannot
// skip themselves — and says so; TXFN_REQUIRE_PG_SERVER skips the others.
inline void FilterOutWithoutServer(const std::string& pattern) {
  if (!PgServerUrl().empty() || std::getenv("CI") != nullptr) return;
  std::fprintf(stderr, "no PostgreSQL server (TXFN_TEST_PG): %s skipped\n", pattern.c_str());
  std::string filter = GTEST_FLAG_GET(filter);
  GTEST_FLAG_SET(filter, filter + (filter.find('-') == std::string::npos ? "-" : ":") + pattern);
}

// A PostgresStorage that owns its test schema (dropped after the storage closes).
class TempPostgresStorage final : public StorageWrapper {
 public:
  // A new database and a storage on it; nullptr (and a test failure) on error. `options.url`
  // is filled in.
  static std::unique_ptr<TempPostgresStorage> Make(PostgresStorageOptions options = {}) {
    auto db = std::make_shared<PgTestSchema>();
    if (absl::Status s = db->Create(); !s.ok()) {
      ADD_FAILURE() << s;
      return nullptr;
    }
    return Open(std::move(db), std::move(options));
  }
  // Closes `old` (a TempPostgresStorage) and opens a new storage on its schema, as a
  // restarted process would.
  static std::unique_ptr<Storage> Reopen(std::unique_ptr<Storage> old) {
    auto* temp = dynamic_cast<TempPostgresStorage*>(old.get());
    if (temp == nullptr) return nullptr;
    std::shared_ptr<PgTestSchema> db = temp->db_;
    PostgresStorageOptions options = temp->options_;
    old.reset();
    return Open(std::move(db), std::move(options));
  }
  // Another storage (another "process") on the same schema.
  std::unique_ptr<TempPostgresStorage> Another(PostgresStorageOptions options) const {
    return Open(db_, std::move(options));
  }

  PostgresStorage& inner() { return *inner_; }
  const PgTestSchema& db() const { return *db_; }

 private:
  static std::unique_ptr<TempPostgresStorage> Open(std::shared_ptr<PgTestSchema> db,
                                                   PostgresStorageOptions options) {
    options.url = db->url();
    auto storage = PostgresStorage::Open(options);
    if (!storage.ok()) {
      ADD_FAILURE() << storage.status();
      return nullptr;
    }
    return std::unique_ptr<TempPostgresStorage>(
        new TempPostgresStorage(std::move(db), std::move(options), *std::move(storage)));
  }
  TempPostgresStorage(std::shared_ptr<PgTestSchema> db, PostgresStorageOptions options,
                      std::unique_ptr<PostgresStorage> inner)
      : StorageWrapper(inner.get()),
        db_(std::move(db)),
        options_(std::move(options)),
        inner_(std::move(inner)) {}

  // Declared first: dropped after inner_ closes its connections.
  std::shared_ptr<PgTestSchema> db_;
  PostgresStorageOptions options_;
  std::unique_ptr<PostgresStorage> inner_;
};

}  // namespace txfn::testing

#endif  // TXFN_TESTS_POSTGRES_PG_STORAGE_TEST_UTIL_H_

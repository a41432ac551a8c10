// tests/postgres/pg_test_util.h — a fresh database per test on the tests' PostgreSQL server.
//
// scripts/test starts a private server (scripts/pg-cluster) and exports TXFN_TEST_PG, its
// connection string. Without it a test is skipped, except under CI=true, where it fails: CI
// must never pass by skipping the PostgreSQL tests.
//
//   TEST(PgThing, Works) {
//     TXFN_REQUIRE_PG_SERVER();
//     PgTestDatabase db;
//     ASSERT_TRUE(db.Create().ok());
//     ... PgConnection::Open(db.url()) ...
//   }  // the database is dropped
#ifndef TXFN_TESTS_POSTGRES_PG_TEST_UTIL_H_
#define TXFN_TESTS_POSTGRES_PG_TEST_UTIL_H_

#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "gtest/gtest.h"
#include "lib/postgres/pg_connection.h"
#include "txfn/internal/strings.h"

namespace txfn::testing {

// The tests' server, or empty when none was started.
inline std::string PgServerUrl() {
  const char* url = std::getenv("TXFN_TEST_PG");
  return url != nullptr ? url : "";
}

#define TXFN_REQUIRE_PG_SERVER()                                                         \
  do {                                                                                   \
    if (::txfn::testing::PgServerUrl().empty()) {                                        \
      if (std::getenv("CI") != nullptr) FAIL() << "CI=true but TXFN_TEST_PG is not set"; \
      GTEST_SKIP() << "no PostgreSQL server: run scripts/test, or set TXFN_TEST_PG";     \
    }                                                                                    \
  } while (0)

// A database of its own, created by Create() and dropped (with its connections) when this
// goes away. Names are unique per process and test run.
class PgTestDatabase {
 public:
  PgTestDatabase() {
    static std::atomic<int> counter{0};
    name_ = internal::StrCat("txfn_test_", getpid(), "_", counter.fetch_add(1));
  }
  ~PgTestDatabase() {
    if (!created_) return;
    auto admin = pg_internal::PgConnection::Open(PgServerUrl());
    if (admin.ok())
      (void)(*admin)->Exec(internal::StrCat("DROP DATABASE ", name_, " WITH (FORCE)"));
  }
  PgTestDatabase(const PgTestDatabase&) = delete;
  PgTestDatabase& operator=(const PgTestDatabase&) = delete;

  absl::Status Create() {
    auto admin = pg_internal::PgConnection::Open(PgServerUrl());
    if (!admin.ok()) return admin.status();
    (void)(*admin)->Exec(internal::StrCat("DROP DATABASE IF EXISTS ", name_, " WITH (FORCE)"));
    auto created = (*admin)->Exec(internal::StrCat("CREATE DATABASE ", name_));
    if (!created.ok()) return created.status();
    created_ = true;
    auto url = pg_internal::WithDatabase(PgServerUrl(), name_);
    if (!url.ok()) return url.status();
    url_ = *url;
    return absl::OkStatus();
  }

  // The connection string of this database.
  const std::string& url() const { return url_; }
  const std::string& name() const { return name_; }

 private:
  std::string name_;
  std::string url_;
  bool created_ = false;
};

// Makes the server process end at the COMMIT of a transaction (or of one statement outside a
// transaction) that did `events` ("INSERT", "UPDATE OR DELETE", ...) on `table`, as a server
// shutdown would: a deferred trigger ends it, so nothing commits, and the client cannot tell.
inline absl::Status EndAtCommitAfter(pg_internal::PgConnection& admin, std::string_view table,
                                     std::string_view events) {
  return admin
      .Exec(internal::StrCat(
          "CREATE OR REPLACE FUNCTION end_at_commit() RETURNS trigger LANGUAGE plpgsql AS $$ "
          "BEGIN PERFORM pg_terminate_backend(pg_backend_pid()); PERFORM pg_sleep(5); RETURN "
          "NULL; END $$; CREATE CONSTRAINT TRIGGER end_at_commit AFTER ",
          events, " ON ", table,
          " DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION end_at_commit()"))
      .status();
}
inline absl::Status StopEndingAtCommit(pg_internal::PgConnection& admin, std::string_view table) {
  return admin.Exec(internal::StrCat("DROP TRIGGER end_at_commit ON ", table)).status();
}

}  // namespace txfn::testing

#endif  // TXFN_TESTS_POSTGRES_PG_TEST_UTIL_H_

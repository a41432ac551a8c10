// bench/pg_bench_util.h — a schema of its own on the benchmarks' PostgreSQL server
// (TXFN_TEST_PG, started by scripts/pg-cluster), dropped at the end.
#ifndef TXFN_BENCH_PG_BENCH_UTIL_H_
#define TXFN_BENCH_PG_BENCH_UTIL_H_

#include <unistd.h>

#include <cstdlib>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "fmt/core.h"
#include "lib/postgres/pg_connection.h"

namespace txfn::bench {

class PgBenchSchema {
 public:
  // FailedPrecondition without TXFN_TEST_PG; the server's errors otherwise.
  static absl::StatusOr<std::unique_ptr<PgBenchSchema>> Create() {
    const char* server = std::getenv("TXFN_TEST_PG");
    if (server == nullptr || *server == '\0') {
      return absl::FailedPreconditionError(
          "TXFN_TEST_PG is not set: start a server with scripts/pg-cluster");
    }
    static int counter = 0;
    auto schema = std::unique_ptr<PgBenchSchema>(new PgBenchSchema);
    schema->name_ = fmt::format("txfn_bench_{}_{}", getpid(), counter++);
    absl::StatusOr<std::string> base = pg_internal::WithDatabase(server, "postgres");
    if (!base.ok()) return base.status();
    schema->url_ = fmt::format("{} options='-csearch_path={}'", *base, schema->name_);
    auto admin = pg_internal::PgConnection::Open(schema->url_);
    if (!admin.ok()) return admin.status();
    if (auto s = (*admin)->Exec(fmt::format("CREATE SCHEMA {}", schema->name_)); !s.ok()) {
      return s.status();
    }
    schema->created_ = true;
    return schema;
  }
  ~PgBenchSchema() {
    if (!created_) return;
    if (auto admin = pg_internal::PgConnection::Open(url_); admin.ok()) {
      (void)(*admin)->Exec(fmt::format("DROP SCHEMA {} CASCADE", name_));
    }
  }
  // A connection string whose search_path is the schema.
  const std::string& url() const { return url_; }

 private:
  PgBenchSchema() = default;
  std::string name_, url_;
  bool created_ = false;
};

}  // namespace txfn::bench

#endif  // TXFN_BENCH_PG_BENCH_UTIL_H_

// The libpq wrapper shared by the PostgreSQL adapters: results, parameters, error mapping.
#include "lib/postgres/pg_connection.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "tests/postgres/pg_test_util.h"
#include "txfn/internal/strings.h"

namespace txfn::pg_internal {
namespace {

using ::txfn::testing::PgServerUrl;
using ::txfn::testing::PgTestDatabase;

TEST(PgConnection, MalformedUrlIsInvalidArgument) {
  auto conn = PgConnection::Open("host='unterminated");
  ASSERT_FALSE(conn.ok());
  EXPECT_EQ(conn.status().code(), absl::StatusCode::kInvalidArgument) << conn.status();
}

TEST(PgConnection, UnreachableServerIsUnavailable) {
  auto conn = PgConnection::Open("host=/nonexistent-txfn-socket-dir dbname=x connect_timeout=2");
  ASSERT_FALSE(conn.ok());
  EXPECT_EQ(conn.status().code(), absl::StatusCode::kUnavailable) << conn.status();
}

// A server that accepted the TCP connection and never answers (a hung host, a black hole
// behind a proxy): libpq alone waits forever for its first reply. The default
// connect_timeout makes that an error.
TEST(PgConnection, ASilentServerIsUnavailableAfterTheDefaultConnectTimeout) {
  if (std::getenv("PGCONNECT_TIMEOUT") != nullptr) GTEST_SKIP() << "PGCONNECT_TIMEOUT is set";
  const int listener = socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(listener, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t size = sizeof(address);
  ASSERT_EQ(bind(listener, reinterpret_cast<sockaddr*>(&address), size), 0);
  ASSERT_EQ(listen(listener, 8), 0);  // the kernel completes handshakes; nobody accepts
  ASSERT_EQ(getsockname(listener, reinterpret_cast<sockaddr*>(&address), &size), 0);
  const absl::Time start = absl::Now();
  auto conn = PgConnection::Open(
      internal::StrCat("host=127.0.0.1 port=", ntohs(address.sin_port), " dbname=x user=x"));
  const absl::Duration waited = absl::Now() - start;
  close(listener);
  ASSERT_FALSE(conn.ok());
  EXPECT_EQ(conn.status().code(), absl::StatusCode::kUnavailable) << conn.status();
  EXPECT_NE(conn.status().message().find("timeout"), std::string::npos) << conn.status();
  EXPECT_GE(waited, absl::Seconds(9)) << "gave up before connect_timeout=10";
  EXPECT_LT(waited, absl::Seconds(60));
}

// What the connection was opened with: `keyword`'s value, or empty.
std::string ConnectionSetting(const PgConnection& conn, std::string_view keyword) {
  std::string value;
  PQconninfoOption* options = PQconninfo(conn.raw());
  for (PQconninfoOption* o = options; o != nullptr && o->keyword != nullptr; ++o) {
    if (keyword == o->keyword && o->val != nullptr) value = o->val;
  }
  PQconninfoFree(options);
  return value;
}

TEST(PgConnection, TimeoutsAndKeepalivesDefaultUnlessTheUrlSetsThem) {
  TXFN_REQUIRE_PG_SERVER();
  auto plain = PgConnection::Open(PgServerUrl());
  ASSERT_TRUE(plain.ok()) << plain.status();
  if (std::getenv("PGCONNECT_TIMEOUT") == nullptr) {
    EXPECT_EQ(ConnectionSetting(**plain, "connect_timeout"), "10");
  }
  EXPECT_EQ(ConnectionSetting(**plain, "keepalives"), "1");
  EXPECT_EQ(ConnectionSetting(**plain, "keepalives_idle"), "30");
  EXPECT_EQ(ConnectionSetting(**plain, "tcp_user_timeout"), "30000");
  // The url's values win (a URI's query parameters, or keyword=value pairs).
  const std::string& url = PgServerUrl();
  const std::string separator = url.find("://") == std::string::npos ? " "
                                : url.find('?') == std::string::npos ? "?"
                                                                     : "&";
  auto tuned = PgConnection::Open(
      internal::StrCat(url, separator, "connect_timeout=3", separator, "keepalives=0"));
  ASSERT_TRUE(tuned.ok()) << tuned.status();
  EXPECT_EQ(ConnectionSetting(**tuned, "connect_timeout"), "3");
  EXPECT_EQ(ConnectionSetting(**tuned, "keepalives"), "0");
  EXPECT_EQ(ConnectionSetting(**tuned, "tcp_user_timeout"), "30000");
  auto rows = (*tuned)->Exec("SELECT 1");
  ASSERT_TRUE(rows.ok()) << rows.status();
}

TEST(PgConnection, WithDatabaseReplacesOnlyTheDatabase) {
  auto url = WithDatabase("postgresql:///postgres?host=/tmp/s&user=u", "it's");
  ASSERT_TRUE(url.ok()) << url.status();
  EXPECT_NE(url->find("dbname='it\\'s'"), std::string::npos) << *url;
  EXPECT_NE(url->find("host='/tmp/s'"), std::string::npos) << *url;
  EXPECT_NE(url->find("user='u'"), std::string::npos) << *url;
  EXPECT_EQ(url->find("postgres'"), std::string::npos) << *url;
}

TEST(PgConnection, BytesAndIntegersRoundTrip) {
  TXFN_REQUIRE_PG_SERVER();
  PgTestDatabase db;
  ASSERT_TRUE(db.Create().ok());
  auto conn = PgConnection::Open(db.url());
  ASSERT_TRUE(conn.ok()) << conn.status();
  ASSERT_TRUE((*conn)->Exec("CREATE TABLE t (k bytea PRIMARY KEY, n bigint, s text)").ok());
  const std::string key("a\0b\xff", 4);
  auto inserted = (*conn)->Exec(
      "INSERT INTO t VALUES ($1, $2, $3), ($4, NULL, NULL)",
      {PgParam::Bytes(key), PgParam::Int(-1234567890123), PgParam::Text("x"), PgParam::Bytes("z")});
  ASSERT_TRUE(inserted.ok()) << inserted.status();
  EXPECT_EQ(inserted->AffectedRows(), 2);
  for (bool binary : {false, true}) {
    auto r = (*conn)->Exec("SELECT k, n, s FROM t ORDER BY k", {}, binary);
    ASSERT_TRUE(r.ok()) << r.status();
    ASSERT_EQ(r->rows(), 2);
    EXPECT_EQ(r->Bytes(0, 0), key) << "binary=" << binary;
    EXPECT_EQ(r->Int(0, 1), -1234567890123) << "binary=" << binary;
    EXPECT_EQ(r->Bytes(0, 2), "x");
    EXPECT_TRUE(r->IsNull(1, 1));
    EXPECT_EQ(r->Bytes(1, 0), "z");
  }
}

TEST(PgConnection, ServerErrorsMapToStatusCodes) {
  TXFN_REQUIRE_PG_SERVER();
  PgTestDatabase db;
  ASSERT_TRUE(db.Create().ok());
  auto conn = PgConnection::Open(db.url());
  ASSERT_TRUE(conn.ok()) << conn.status();
  ASSERT_TRUE((*conn)->Exec("CREATE TABLE u (k int PRIMARY KEY)").ok());
  ASSERT_TRUE((*conn)->Exec("INSERT INTO u VALUES (1)").ok());
  auto duplicate = (*conn)->Exec("INSERT INTO u VALUES (1)");
  EXPECT_EQ(duplicate.status().code(), absl::StatusCode::kAlreadyExists) << duplicate.status();
  EXPECT_NE(duplicate.status().message().find("INSERT INTO u"), std::string::npos);
  auto bad_value = (*conn)->Exec("SELECT 1 / 0");
  EXPECT_EQ(bad_value.status().code(), absl::StatusCode::kInvalidArgument) << bad_value.status();
  auto bad_sql = (*conn)->Exec("SELEC 1");
  EXPECT_EQ(bad_sql.status().code(), absl::StatusCode::kInternal) << bad_sql.status();
  EXPECT_FALSE((*conn)->broken());
}

TEST(PgConnection, KilledBackendIsUnavailableAndBroken) {
  TXFN_REQUIRE_PG_SERVER();
  PgTestDatabase db;
  ASSERT_TRUE(db.Create().ok());
  auto victim = PgConnection::Open(db.url());
  auto killer = PgConnection::Open(db.url());
  ASSERT_TRUE(victim.ok() && killer.ok());
  auto killed =
      (*killer)->Exec("SELECT pg_terminate_backend($1)", {PgParam::Int((*victim)->backend_pid())});
  ASSERT_TRUE(killed.ok()) << killed.status();
  auto after = (*victim)->Exec("SELECT 1");
  ASSERT_FALSE(after.ok());
  EXPECT_EQ(after.status().code(), absl::StatusCode::kUnavailable) << after.status();
  EXPECT_TRUE((*victim)->broken());
}

// A statement's rows reach the client before its implicit transaction commits; a commit
// that then fails (here a deferred trigger) must make every way of running it an error, and
// leave nothing written.
TEST(PgConnection, RowsFollowedByAFailedCommitAreAnError) {
  TXFN_REQUIRE_PG_SERVER();
  PgTestDatabase db;
  ASSERT_TRUE(db.Create().ok());
  auto conn = PgConnection::Open(db.url());
  ASSERT_TRUE(conn.ok()) << conn.status();
  ASSERT_TRUE((*conn)
                  ->Exec("CREATE TABLE u (k int); "
                         "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$ "
                         "BEGIN RAISE EXCEPTION 'refused at commit'; END $$; "
                         "CREATE CONSTRAINT TRIGGER refuse AFTER INSERT ON u DEFERRABLE "
                         "INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION refuse()")
                  .ok());
  constexpr std::string_view kInsert = "INSERT INTO u VALUES ($1) RETURNING k";
  std::vector<absl::Status> outcomes;
  outcomes.push_back((*conn)->Exec("INSERT INTO u VALUES (1) RETURNING k").status());
  outcomes.push_back((*conn)->Exec(kInsert, {PgParam::Int(2)}).status());
  outcomes.push_back((*conn)->ExecPrepared(kInsert, {PgParam::Int(3)}).status());
  std::vector<PgParam> four = {PgParam::Int(4)};
  ASSERT_TRUE((*conn)->Send(kInsert, four).ok());
  outcomes.push_back((*conn)->Receive(kInsert).status());
  for (const absl::Status& s : outcomes) {
    EXPECT_FALSE(s.ok());
    EXPECT_NE(s.message().find("refused at commit"), std::string::npos) << s;
  }
  EXPECT_FALSE((*conn)->broken());
  auto rows = (*conn)->Exec("SELECT count(*) FROM u");
  ASSERT_TRUE(rows.ok()) << rows.status();
  EXPECT_EQ(rows->Int(0, 0), 0);
}

}  // namespace
}  // namespace txfn::pg_internal

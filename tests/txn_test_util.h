// Shared fixtures for the transaction and committer tests.
#ifndef TXFN_TESTS_TXN_TEST_UTIL_H_
#define TXFN_TESTS_TXN_TEST_UTIL_H_

#include <atomic>
#include <memory>
#include <string>

#include "gtest/gtest.h"
#include "txfn/committer.h"
#include "txfn/in_memory_storage.h"
#include "txfn/schema.h"
#include "txfn/status_macros.h"
#include "txfn/transaction.h"

namespace txfn::testing_util {

// Like TXFN_ASSIGN_OR_RETURN (status_macros.h), but a gtest assertion.
#define TXFN_ASSERT_OK_AND_ASSIGN(lhs, expr) \
  TXFN_ASSERT_OK_AND_ASSIGN_IMPL_(TXFN_STATUS_CONCAT_(txfn_statusor_, __LINE__), lhs, expr)
// NOLINTBEGIN(bugprone-macro-parentheses): `statusor` names a variable.
#define TXFN_ASSERT_OK_AND_ASSIGN_IMPL_(statusor, lhs, expr) \
  auto statusor = (expr);                                    \
  ASSERT_TRUE(statusor.ok()) << statusor.status();           \
  lhs = *std::move(statusor)
// NOLINTEND(bugprone-macro-parentheses)

// A clock that advances 1 µs per reading, so timestamps are deterministic.
class FakeClock {
 public:
  Timestamp Now() { return now_.fetch_add(1000) + 1000; }
  void Advance(Timestamp nanos) { now_.fetch_add(nanos); }
  std::function<Timestamp()> AsFunction() {
    return [this] { return Now(); };
  }

 private:
  std::atomic<Timestamp> now_{1'000'000'000};
};

inline Schema TestSchema() {
  auto schema = Schema::FromJson(R"({"tables": {
    "accounts": {"fields": {"owner": "string", "balance": "int64"},
                 "indexes": {"by_owner": ["owner"]}},
    "messages": {"fields": {"channel": "string", "body": "string", "likes": "int64?"},
                 "indexes": {"by_channel": ["channel", "likes"]}},
    "notes": {}
  }})");
  EXPECT_TRUE(schema.ok()) << schema.status();
  return *schema;
}

// Deploys TestSchema() into a fresh tenant "t" and returns its committer.
inline std::unique_ptr<Committer> OpenWithSchema(std::shared_ptr<Storage> storage,
                                                 CommitterOptions options = {},
                                                 const Schema& schema = TestSchema()) {
  auto committer = Committer::Open(std::move(storage), "t", std::move(options));
  EXPECT_TRUE(committer.ok()) << committer.status();
  Transaction deploy((*committer)->Latest());
  absl::Status s = deploy.DeploySchema(schema);
  EXPECT_TRUE(s.ok()) << s;
  auto ts = (*committer)->Commit(deploy.Prepare());
  EXPECT_TRUE(ts.ok()) << ts.status();
  return *std::move(committer);
}

inline Value Obj(Value::Object fields) { return Value::FromObject(std::move(fields)); }
inline Value Str(std::string s) { return Value::String(std::move(s)); }
inline Value I64(int64_t v) { return Value::Int64(v); }

}  // namespace txfn::testing_util

#endif  // TXFN_TESTS_TXN_TEST_UTIL_H_
